//! The CPU request of one container from its runs' CPU distributions.
//!
//! - Each run's HDR histogram of CPU cores (one sample per CPU interval) is merged into one
//!   distribution without loss, recent runs weighing more (weight 4 for the newest, halving
//!   every 5 runs, at least 1). Runs without a histogram add an approximation from their
//!   percentiles.
//! - The request is the asked statistic (p95 by default) of that distribution plus the
//!   margin, rounded up to 10 millicores, at least 10m.
//! - A step change keeps only the runs after it.
//! - A job that sits at its CPU limit most of the time is CPU-bound: more cores would
//!   shorten it, so the request is not set below the limit, and the answer says so.
//! - No CPU limit unless asked: a limit throttles a CI job whenever it bursts.

use serde::{Deserialize, Serialize};

use super::Percentile;
use super::history::{self, Flag};
use crate::{Accumulator, SCALE_CORES, Stats};

/// Recommendations are rounded up to this many cores.
pub const ROUND_CORES: f64 = 0.01;
/// Share of the limit at which a run's median counts as at the limit.
pub const AT_LIMIT: f64 = 0.9;
/// Weight of the newest run, and the runs over which it halves.
const NEWEST_WEIGHT: f64 = 4.0;
const HALF_LIFE_RUNS: f64 = 5.0;

/// One run's CPU, as the sizing sees it.
#[derive(Debug, Clone)]
pub struct CpuObservation {
    pub run_id: String,
    /// The run's CPU-cores histogram, where the summary carries one.
    pub histogram: Option<Accumulator>,
    pub stats: Stats,
    pub limit_cores: Option<f64>,
    /// Share of the run its work was held back, where the summary says: the larger of its
    /// run-queue wait share (of runnable time; throttled time counts, as the tasks stay
    /// queued) and its throttled seconds over the run's wall time.
    pub held_share: Option<f64>,
    /// Run-queue wait behind other jobs, the host and the hypervisor, seconds: more cores
    /// would not have made it up.
    pub contention_seconds: f64,
}

/// What a run's starvation figures say of how much it was held back (see
/// [`CpuObservation::held_share`]); `None` where it carries neither figure.
pub fn held_share(
    wait_share: Option<f64>,
    throttled_seconds: Option<f64>,
    wall_seconds: f64,
) -> Option<f64> {
    let throttled = throttled_seconds
        .filter(|_| wall_seconds > 0.0)
        .map(|t| (t / wall_seconds).clamp(0.0, 1.0));
    match (wait_share.map(|w| w.clamp(0.0, 1.0)), throttled) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The CPU part of a container's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuSizing {
    pub request_cores: f64,
    /// Only when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_cores: Option<f64>,
    /// The statistic of the merged distribution the request is based on, and its value.
    pub percentile: Percentile,
    pub used_cores: f64,
    /// Largest sample of any run considered.
    pub peak_cores: f64,
    /// Runs whose histograms were merged (the others added an approximation).
    pub runs_with_histograms: usize,
    /// Sits at its CPU limit in most runs: more cores would shorten it.
    pub cpu_bound: bool,
    /// For a CPU-bound job whose runs carry run-queue wait or throttling: the median share
    /// of those runs it was held back, about how much shorter enough cores would make it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_back_share: Option<f64>,
    pub margin_percent: f64,
}

/// The CPU recommendation from `runs` (oldest first).
pub fn size(
    runs: &[CpuObservation],
    percentile: Percentile,
    buffer_percent: f64,
    want_limit: bool,
) -> (CpuSizing, Vec<Flag>, Vec<String>) {
    let mut why = Vec::new();
    let mut flags = Vec::new();
    let buffer = buffer_percent.max(0.0) / 100.0;
    let means: Vec<f64> = runs.iter().map(|r| r.stats.avg).collect();
    let shape = history::shape(&means);
    let mut from = 0;
    if let Some(step) = shape.step {
        flags.push(Flag::StepChange);
        from = step.at;
        why.push(format!(
            "cpu: the mean changed from {:.2} to {:.2} cores at run {}; only the {} runs since are used",
            step.before,
            step.after,
            runs[step.at].run_id,
            runs.len() - step.at
        ));
    }
    if shape.trend.is_some() {
        flags.push(Flag::Trend);
        why.push("cpu: the mean changes run over run (a trend): recent runs weigh most".to_owned());
    }
    if let Some(c) = shape.clusters {
        flags.push(Flag::TwoClusters);
        why.push(format!(
            "cpu: the runs form two clusters ({} around {:.2} cores, {} around {:.2}): probably two kinds of run under one job name",
            c.low_runs, c.low, c.high_runs, c.high
        ));
    }
    let recent = &runs[from..];
    let mut merged = Accumulator::new(SCALE_CORES);
    let mut with_hist = 0;
    for (age, r) in recent.iter().rev().enumerate() {
        let weight = (NEWEST_WEIGHT * 0.5f64.powf(age as f64 / HALF_LIFE_RUNS))
            .round()
            .max(1.0) as u64;
        let approx;
        let h = match &r.histogram {
            Some(h) if h.scale() == SCALE_CORES && h.sample_count() > 0 => {
                with_hist += 1;
                h
            }
            _ => {
                approx = from_stats(&r.stats);
                &approx
            }
        };
        // Same scale by construction, so this cannot fail.
        let _ = merged.merge_weighted(h, weight);
    }
    let s = merged.stats();
    let used = match percentile {
        Percentile::Peak => s.peak,
        Percentile::P99 => s.p99,
        Percentile::P95 => s.p95,
        Percentile::P75 => s.p75,
        Percentile::P50 => s.p50,
        Percentile::Avg => s.avg,
    };
    if !recent.is_empty() {
        why.push(format!(
            "cpu: {} runs' CPU distributions merged ({} from histograms), newest weighing 4× and halving every 5 runs: {} {:.3} cores, peak {:.3}",
            recent.len(),
            with_hist,
            percentile.as_str(),
            used,
            s.peak
        ));
    } else {
        why.push("cpu: no run: nothing to size from".to_owned());
    }
    let mut request = round_up(used * (1.0 + buffer));
    why.push(format!(
        "cpu: + {:.0} % margin, rounded up to 10m: {:.2} cores",
        buffer * 100.0,
        request
    ));
    // CPU-bound: the median sample at (nearly) the limit in most runs.
    let at_limit: Vec<&CpuObservation> = recent
        .iter()
        .filter(|r| {
            r.limit_cores
                .is_some_and(|l| l > 0.0 && r.stats.p50 >= AT_LIMIT * l)
        })
        .collect();
    let cpu_bound = !recent.is_empty() && at_limit.len() * 2 > recent.len();
    let mut held_back_share = None;
    if cpu_bound {
        let limit = at_limit
            .iter()
            .filter_map(|r| r.limit_cores)
            .fold(0.0, f64::max);
        let mut held: Vec<f64> = at_limit.iter().filter_map(|r| r.held_share).collect();
        held.sort_by(f64::total_cmp);
        held_back_share = held.get(held.len() / 2).copied();
        let by_how_much = match held_back_share {
            Some(share) => format!(
                "in the median of the {} runs with throttling or run-queue wait figures it was held back {:.0} % of the time, so enough cores could make it up to about {:.0} % shorter",
                held.len(),
                share * 100.0,
                share * 100.0
            ),
            None => "these summaries carry no throttling or run-queue wait figures, so by how much is not known".to_owned(),
        };
        why.push(format!(
            "cpu: CPU-bound: its median sits at its {limit:.2}-core limit in {} of {} runs, so more cores would shorten it; the request is kept at least at the limit; {by_how_much}",
            at_limit.len(),
            recent.len()
        ));
        request = request.max(round_up(limit));
    }
    // Contention: said whether or not it is CPU-bound, as no number of cores fixes it.
    let mut contended: Vec<f64> = recent
        .iter()
        .map(|r| r.contention_seconds)
        .filter(|s| *s >= crate::starvation::MIN_LOST_SECONDS)
        .collect();
    if !contended.is_empty() {
        contended.sort_by(f64::total_cmp);
        why.push(format!(
            "cpu: in {} of {} runs it waited for CPUs that other jobs or the host held (median {:.1} s): more cores would not have made that up; isolation or a less loaded node would",
            contended.len(),
            recent.len(),
            contended[contended.len() / 2]
        ));
    }
    let limit_cores = want_limit.then(|| {
        let l = round_up((s.peak * (1.0 + buffer)).max(request));
        why.push(format!(
            "cpu: limit {l:.2} cores (peak + margin), as asked: a CPU limit throttles the job whenever it bursts past it"
        ));
        l
    });
    if !want_limit {
        why.push("cpu: no CPU limit: a limit throttles a CI job whenever it bursts, which only lengthens it; ask with cpu_limit=true".to_owned());
    }
    (
        CpuSizing {
            request_cores: request,
            limit_cores,
            percentile,
            used_cores: used,
            peak_cores: s.peak,
            runs_with_histograms: with_hist,
            cpu_bound,
            held_back_share,
            margin_percent: buffer * 100.0,
        },
        flags,
        why,
    )
}

/// A stand-in distribution from a run's percentiles (100 samples).
fn from_stats(s: &Stats) -> Accumulator {
    let mut a = Accumulator::new(SCALE_CORES);
    for (value, n) in [
        (s.p50, 50),
        (s.p75, 25),
        (s.p95, 20),
        (s.p99, 4),
        (s.peak, 1),
    ] {
        for _ in 0..n {
            a.record(value);
        }
    }
    a
}

fn round_up(cores: f64) -> f64 {
    let c = if cores.is_finite() {
        cores.max(0.0)
    } else {
        0.0
    };
    ((c / ROUND_CORES - 1e-9).ceil() * ROUND_CORES).max(ROUND_CORES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: usize, samples: &[f64], limit: Option<f64>) -> CpuObservation {
        let mut h = Accumulator::new(SCALE_CORES);
        for s in samples {
            h.record(*s);
        }
        CpuObservation {
            run_id: id.to_string(),
            stats: h.stats(),
            histogram: Some(h),
            limit_cores: limit,
            held_share: None,
            contention_seconds: 0.0,
        }
    }

    #[test]
    fn p95_of_the_merged_runs_plus_margin() {
        // 95 samples at 1 core, 5 at 3: p95 is 1 core.
        let samples: Vec<f64> = (0..100).map(|i| if i < 95 { 1.0 } else { 3.0 }).collect();
        let runs: Vec<_> = (0..5).map(|i| run(i, &samples, None)).collect();
        let (c, _, why) = size(&runs, Percentile::P95, 15.0, false);
        assert!((c.used_cores - 1.0).abs() < 0.01, "{c:?}");
        assert!((c.request_cores - 1.15).abs() < 1e-9, "{c:?} {why:?}");
        assert!(c.limit_cores.is_none() && !c.cpu_bound);
        assert_eq!(c.runs_with_histograms, 5);
        let (c, _, _) = size(&runs, Percentile::Peak, 0.0, true);
        assert!((c.request_cores - 3.0).abs() < 0.011 && c.limit_cores == Some(c.request_cores));
    }

    #[test]
    fn recent_runs_weigh_more() {
        let mut runs: Vec<_> = (0..5).map(|i| run(i, &[1.0; 100], None)).collect();
        runs.push(run(5, &[2.0; 100], None));
        // Weights 3,3,3,2,2 (ages 1 to 5) for the 1-core runs and 4 for the newest: the
        // mean is (13 × 1 + 4 × 2) / 17, above the unweighted 7 / 6.
        let (c, _, _) = size(&runs, Percentile::Avg, 0.0, false);
        assert!((c.used_cores - 21.0 / 17.0).abs() < 0.01, "{c:?}");
    }

    #[test]
    fn a_job_at_its_limit_is_cpu_bound() {
        let runs: Vec<_> = (0..4).map(|i| run(i, &[1.98; 50], Some(2.0))).collect();
        let (c, _, why) = size(&runs, Percentile::P50, 0.0, false);
        assert!(c.cpu_bound, "{why:?}");
        assert!(c.request_cores >= 2.0);
        assert!(why.iter().any(|w| w.contains("CPU-bound")));
        assert_eq!(c.held_back_share, None);
        assert!(why.iter().any(|w| w.contains("by how much is not known")));
        // With figures: the median of the runs' held-back shares.
        let runs: Vec<_> = [0.1, 0.3, 0.2, 0.9]
            .iter()
            .enumerate()
            .map(|(i, h)| CpuObservation {
                held_share: Some(*h),
                contention_seconds: 0.0,
                ..run(i, &[1.98; 50], Some(2.0))
            })
            .collect();
        let (c, _, why) = size(&runs, Percentile::P50, 0.0, false);
        assert_eq!(c.held_back_share, Some(0.3));
        assert!(
            why.iter()
                .any(|w| w.contains("held back 30 %") && w.contains("about 30 % shorter")),
            "{why:?}"
        );
    }

    #[test]
    fn held_share_takes_the_larger_figure() {
        assert_eq!(held_share(None, None, 10.0), None);
        assert_eq!(held_share(Some(0.2), None, 10.0), Some(0.2));
        assert_eq!(held_share(None, Some(5.0), 10.0), Some(0.5));
        assert_eq!(held_share(Some(0.2), Some(5.0), 10.0), Some(0.5));
        assert_eq!(held_share(Some(0.7), Some(5.0), 10.0), Some(0.7));
        // No wall time: throttling says nothing; shares stay within 0..1.
        assert_eq!(held_share(None, Some(5.0), 0.0), None);
        assert_eq!(held_share(Some(1.5), Some(50.0), 10.0), Some(1.0));
    }

    #[test]
    fn runs_without_histograms_use_their_percentiles() {
        let mut r = run(0, &[0.5; 10], None);
        r.histogram = None;
        let (c, _, _) = size(&[r], Percentile::P95, 0.0, false);
        assert_eq!(c.runs_with_histograms, 0);
        assert!((c.request_cores - 0.5).abs() < 1e-9, "{c:?}");
        let (c, _, _) = size(&[], Percentile::P95, 15.0, false);
        assert_eq!(c.request_cores, ROUND_CORES);
    }
}
