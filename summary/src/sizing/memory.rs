//! The memory request and limit of one container from its runs' peaks.
//!
//! - The base is the largest peak of the runs considered (the kernel's true peak,
//!   `memory.peak`, where the summary has it; else the sampled one, which can miss short
//!   spikes). With n similar runs, the chance that the next one exceeds their largest is
//!   about 1/(n+1): a margin covers the rest, wider while there are few runs.
//! - A run that was OOM-killed, or whose peak came within 5 % of its limit, did not show its
//!   need: it is censored ("needed more than the limit"), never a normal sample. When such a
//!   run needed more than any run that completed, the limit is raised well above the one that
//!   killed it (×1.5, and ×1.5 again for each higher limit that also killed it, at most ×4):
//!   large enough to stop the next kill; kills repeated at one limit do not compound, so it
//!   cannot run away.
//! - A step change keeps only the runs after it; a trend is projected a few runs ahead.
//! - The request equals the limit: a job above its memory request is the first evicted
//!   when the node runs short.

use serde::{Deserialize, Serialize};

use super::history::{self, Flag};
use crate::units;

const MIB: u64 = 1 << 20;
/// Recommendations are rounded up to this.
pub const ROUND_BYTES: u64 = 32 * MIB;
/// The smallest recommendation.
pub const MIN_BYTES: u64 = 64 * MIB;
/// A peak at or above this share of the limit marks the run as censored.
pub const NEAR_LIMIT: f64 = 0.95;
/// The raise after a kill, and its cap.
const OOM_RAISE: f64 = 1.5;
const OOM_RAISE_MAX: f64 = 4.0;
/// Runs a trend is projected ahead.
const TREND_AHEAD: f64 = 3.0;

/// One run's memory, as the sizing sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryObservation {
    pub run_id: String,
    /// The peak: the true one where known.
    pub peak_bytes: u64,
    /// Whether `peak_bytes` is the kernel's high-water mark (else a sampled maximum).
    pub true_peak: bool,
    pub limit_bytes: Option<u64>,
    pub oom_kills: u64,
}

impl MemoryObservation {
    /// Killed, or so close to its limit that it may have been held back.
    pub fn censored(&self) -> bool {
        self.oom_kills > 0
            || self
                .limit_bytes
                .is_some_and(|l| l > 0 && self.peak_bytes as f64 >= NEAR_LIMIT * l as f64)
    }
}

/// The memory part of a container's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemorySizing {
    pub request_bytes: u64,
    pub limit_bytes: u64,
    /// The largest peak of a run that completed within its limit, and that run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_run_id: Option<String>,
    /// Whether that peak is the kernel's true peak.
    pub true_peak: bool,
    /// Runs OOM-killed, and runs that came within 5 % of their limit.
    pub oom_killed_runs: usize,
    pub near_limit_runs: usize,
    /// Margin applied on top of the base, percent.
    pub margin_percent: f64,
}

/// The memory recommendation from `runs` (oldest first), with a margin of `buffer_percent`,
/// and sentences that say why.
pub fn size(
    runs: &[MemoryObservation],
    buffer_percent: f64,
) -> (MemorySizing, Vec<Flag>, Vec<String>) {
    let mut why = Vec::new();
    let mut flags = Vec::new();
    let buffer = buffer_percent.max(0.0) / 100.0;
    let clean: Vec<&MemoryObservation> = runs.iter().filter(|r| !r.censored()).collect();
    let killed = runs.iter().filter(|r| r.oom_kills > 0).count();
    let near = runs
        .iter()
        .filter(|r| r.oom_kills == 0 && r.censored())
        .count();

    // The runs that still describe the job: after a step, only the later ones.
    let peaks: Vec<f64> = clean.iter().map(|r| r.peak_bytes as f64).collect();
    let shape = history::shape(&peaks);
    let mut from = 0;
    if let Some(step) = shape.step {
        flags.push(Flag::StepChange);
        from = step.at;
        why.push(format!(
            "memory: the peaks changed from about {} to {} at run {}; only the {} runs since are used",
            units::bytes(step.before),
            units::bytes(step.after),
            clean[step.at].run_id,
            clean.len() - step.at
        ));
    }
    let recent = &clean[from..];
    let top = recent.iter().max_by_key(|r| r.peak_bytes);
    let mut base = top.map_or(0.0, |r| r.peak_bytes as f64);
    if let Some(r) = top {
        why.push(format!(
            "memory: largest peak {} in run {} ({}), of {} runs that completed within their limit",
            units::bytes(r.peak_bytes as f64),
            r.run_id,
            if r.true_peak {
                "the kernel's true peak"
            } else {
                "a sampled peak: spikes between samples are missed"
            },
            recent.len()
        ));
    }
    if let Some(t) = shape.trend.filter(|t| t.slope > 0.0) {
        flags.push(Flag::Trend);
        let projected = t.last + t.slope * TREND_AHEAD;
        if projected > base {
            why.push(format!(
                "memory: grows about {} per run; projected {} runs ahead: {}",
                units::bytes(t.slope),
                TREND_AHEAD,
                units::bytes(projected)
            ));
            base = projected;
        }
    }
    if let Some(c) = shape.clusters {
        flags.push(Flag::TwoClusters);
        why.push(format!(
            "memory: the runs form two clusters ({} around {}, {} around {}), probably two kinds of run under one job name (matrix legs?): sized for the larger; give them job names of their own to size them apart",
            c.low_runs,
            units::bytes(c.low),
            c.high_runs,
            units::bytes(c.high)
        ));
    }
    // Few runs: the next one is likelier to exceed the largest seen.
    let n = recent.len();
    let extra = if n == 0 {
        0.0
    } else if n < super::CONFIDENT_RUNS {
        0.5 / n as f64
    } else {
        0.0
    };
    let margin = buffer + extra;
    let mut target = base * (1.0 + margin);
    if n > 0 {
        why.push(format!(
            "memory: + {:.0} % margin{} = {}",
            margin * 100.0,
            if extra > 0.0 {
                format!(
                    " ({:.0} % of it because only {n} runs are known)",
                    extra * 100.0
                )
            } else {
                String::new()
            },
            units::bytes(target)
        ));
    }

    // Censored runs: they needed more than their limit.
    let censored: Vec<&MemoryObservation> = runs.iter().filter(|r| r.censored()).collect();
    if let Some(worst) = censored
        .iter()
        .max_by_key(|r| r.limit_bytes.unwrap_or(r.peak_bytes).max(r.peak_bytes))
    {
        let floor = worst
            .limit_bytes
            .unwrap_or(worst.peak_bytes)
            .max(worst.peak_bytes) as f64;
        // Escalate only on evidence that a raise was not enough: kills at successively
        // higher limits. Kills again and again at one limit say only "more than that".
        let mut levels: Vec<f64> = censored
            .iter()
            .map(|r| r.limit_bytes.unwrap_or(r.peak_bytes).max(r.peak_bytes) as f64)
            .filter(|l| *l >= base)
            .collect();
        levels.sort_by(f64::total_cmp);
        levels.dedup_by(|a, b| *a <= *b * 1.03);
        let at_levels = levels.len().max(1);
        let raise = OOM_RAISE.powi(at_levels as i32).min(OOM_RAISE_MAX);
        let what = if worst.oom_kills > 0 {
            "was OOM-killed at"
        } else {
            "came within 5 % of"
        };
        if floor >= base {
            let needed = floor * raise;
            why.push(format!(
                "memory: run {} {what} its limit of {}, so it needed more ({} censored run(s), at {} rising limit level(s)): raised ×{raise:.2} to {}",
                worst.run_id,
                units::bytes(floor),
                censored.len(),
                at_levels,
                units::bytes(needed)
            ));
            target = target.max(needed);
        } else {
            why.push(format!(
                "memory: run {} {what} its limit of {}, below what completed runs used since; no raise needed",
                worst.run_id,
                units::bytes(floor)
            ));
        }
    }
    if runs.is_empty() {
        why.push("memory: no run: nothing to size from".to_owned());
    }
    let limit = round_up(target);
    why.push(format!(
        "memory: rounded up to {} MiB steps: request = limit = {} (a job above its memory request is the first evicted when the node runs short)",
        ROUND_BYTES / MIB,
        units::bytes(limit as f64)
    ));
    (
        MemorySizing {
            request_bytes: limit,
            limit_bytes: limit,
            peak_bytes: top.map(|r| r.peak_bytes),
            peak_run_id: top.map(|r| r.run_id.clone()),
            true_peak: top.is_some_and(|r| r.true_peak),
            oom_killed_runs: killed,
            near_limit_runs: near,
            margin_percent: margin * 100.0,
        },
        flags,
        why,
    )
}

fn round_up(bytes: f64) -> u64 {
    let b = if bytes.is_finite() {
        bytes.max(0.0)
    } else {
        0.0
    };
    let b = (b.min(1e18) as u64).max(MIN_BYTES);
    b.div_ceil(ROUND_BYTES) * ROUND_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(id: usize, peak_mib: u64, limit_mib: Option<u64>, oom: u64) -> MemoryObservation {
        MemoryObservation {
            run_id: id.to_string(),
            peak_bytes: peak_mib * MIB,
            true_peak: true,
            limit_bytes: limit_mib.map(|l| l * MIB),
            oom_kills: oom,
        }
    }

    #[test]
    fn steady_runs_get_the_peak_plus_margin() {
        let runs: Vec<_> = (0..10)
            .map(|i| obs(i, 1000 + (i as u64 % 3) * 10, Some(4096), 0))
            .collect();
        let (m, flags, why) = size(&runs, 15.0);
        assert!(flags.is_empty(), "{flags:?}");
        // 1020 MiB × 1.15 = 1173 MiB, rounded up to 1184 MiB.
        assert_eq!(m.limit_bytes, 1184 * MIB, "{why:?}");
        assert_eq!(m.request_bytes, m.limit_bytes);
        // The most recent run with the largest peak.
        assert_eq!(m.peak_run_id.as_deref(), Some("8"));
    }

    #[test]
    fn few_runs_get_a_wider_margin() {
        let (m, _, _) = size(&[obs(0, 1000, None, 0)], 15.0);
        // 1000 × (1 + 0.15 + 0.5)
        assert_eq!(m.limit_bytes, round_up(1650.0 * MIB as f64));
    }

    #[test]
    fn an_oom_kill_is_censored_and_raises_enough() {
        // Completed runs peaked at 900 MiB with a 1 GiB limit; the last was killed at it.
        let mut runs: Vec<_> = (0..6).map(|i| obs(i, 900, Some(1024), 0)).collect();
        runs.push(obs(6, 1024, Some(1024), 1));
        let (m, _, why) = size(&runs, 15.0);
        assert_eq!(m.oom_killed_runs, 1);
        assert_eq!(m.limit_bytes, round_up(1536.0 * MIB as f64), "{why:?}");
        // More kills at the same limit do not compound (no runaway) ...
        for i in 7..20 {
            runs.push(obs(i, 1024, Some(1024), 1));
        }
        let limit = |runs: &[MemoryObservation]| size(runs, 15.0).0.limit_bytes;
        assert_eq!(limit(&runs), round_up(1536.0 * MIB as f64));
        // ... a kill at a raised limit too does: ×1.5 twice, over the higher limit.
        runs.push(obs(20, 1536, Some(1536), 1));
        assert_eq!(limit(&runs), round_up(3456.0 * MIB as f64));
        // Never beyond ×4.
        runs.push(obs(21, 2048, Some(2048), 1));
        runs.push(obs(22, 3000, Some(3000), 1));
        assert_eq!(limit(&runs), round_up(12000.0 * MIB as f64));
    }

    #[test]
    fn a_near_limit_run_is_censored_too() {
        let r = obs(0, 990, Some(1024), 0);
        assert!(r.censored());
        assert!(!obs(0, 900, Some(1024), 0).censored());
        let (m, _, _) = size(&[r], 15.0);
        assert_eq!((m.near_limit_runs, m.oom_killed_runs), (1, 0));
        assert!(m.limit_bytes >= 1536 * MIB);
    }

    #[test]
    fn an_old_kill_below_later_peaks_adds_nothing() {
        let mut runs = vec![obs(0, 512, Some(512), 1)];
        runs.extend((1..8).map(|i| obs(i, 1000, Some(2048), 0)));
        let (m, _, _) = size(&runs, 15.0);
        assert_eq!(m.limit_bytes, round_up(1150.0 * MIB as f64));
    }

    #[test]
    fn a_step_keeps_the_later_runs_and_a_trend_projects() {
        let mut runs: Vec<_> = (0..6).map(|i| obs(i, 2000, None, 0)).collect();
        runs.extend((6..12).map(|i| obs(i, 1000, None, 0)));
        let (m, flags, _) = size(&runs, 15.0);
        assert_eq!(flags, [Flag::StepChange]);
        assert_eq!(m.limit_bytes, round_up(1150.0 * MIB as f64));
        let grow: Vec<_> = (0..10)
            .map(|i| obs(i, 1000 + 50 * i as u64, None, 0))
            .collect();
        let (m, flags, _) = size(&grow, 15.0);
        assert_eq!(flags, [Flag::Trend]);
        // 1450 + 3 × 50 = 1600, × 1.15
        assert_eq!(m.limit_bytes, round_up(1840.0 * MIB as f64));
    }

    #[test]
    fn nothing_is_still_an_answer() {
        let (m, _, why) = size(&[], 15.0);
        assert_eq!(m.limit_bytes, MIN_BYTES);
        assert!(!why.is_empty());
    }
}
