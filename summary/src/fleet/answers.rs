//! The answers made from what is kept ([`super::kept`]): a job's [`JobEntry`] for the job
//! list with its [`Waste`], the list's order ([`SortBy`], [`sort`]) and the [`FleetTotals`].

use serde::{Deserialize, Serialize};

use super::kept::{Day, JobAggregate, SizingShort};

/// The waste score weighs one core like 4 GiB, the ratio of general-purpose cloud machines.
pub const GIB_PER_CORE: f64 = 4.0;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Reserved but not used, over a window.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Waste {
    /// Idle reserved CPU, core-hours, and memory above the peak, GiB-hours.
    pub core_hours: f64,
    pub gib_hours: f64,
    /// `core_hours + gib_hours / GIB_PER_CORE`: one number to sort by.
    pub score: f64,
    /// Share of the reservation not used (CPU and memory averaged, where limits are known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unused_share: Option<f64>,
}

fn waste(w: &Day) -> Waste {
    let core_hours = (w.cpu_reserved - w.cpu_used_limited).max(0.0) / 3600.0;
    let gib_hours = (w.memory_reserved - w.memory_used_limited).max(0.0) / GIB / 3600.0;
    let shares: Vec<f64> = [
        (w.cpu_reserved, w.cpu_used_limited),
        (w.memory_reserved, w.memory_used_limited),
    ]
    .iter()
    .filter(|(reserved, _)| *reserved > 0.0)
    .map(|(reserved, used)| ((reserved - used) / reserved).clamp(0.0, 1.0))
    .collect();
    Waste {
        core_hours,
        gib_hours,
        score: core_hours + gib_hours / GIB_PER_CORE,
        unused_share: (!shares.is_empty())
            .then(|| shares.iter().sum::<f64>() / shares.len() as f64),
    }
}

/// One job of the job list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEntry {
    pub organization: String,
    pub repository: String,
    pub workflow: String,
    pub job: String,
    /// Runs stored, and in the window.
    pub runs: u64,
    pub runs_in_window: u64,
    pub last_run_at: String,
    pub last_run_id: String,
    /// Over the recent runs (up to [`RECENT_RUNS`](super::RECENT_RUNS)): median duration and CPU p95, largest
    /// CPU and memory peak; the newest run's limits, and the figures over them.
    pub duration_seconds: f64,
    pub cpu_p95_cores: f64,
    pub cpu_peak_cores: f64,
    pub memory_peak_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_limit_cores: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_to_limit: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_to_limit: Option<f64>,
    /// In the window: OOM kills and starved runs; and whether the newest run was starved.
    pub oom_kills: u64,
    pub starved_runs: u64,
    pub starved_share: f64,
    pub last_starved: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_starved_by: Vec<String>,
    /// What held the newest run back, where it was CPU-starved (see `RunRow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_held_back_by: Option<String>,
    pub waste: Waste,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sizing: Option<SizingShort>,
}

fn median(mut v: Vec<f64>) -> f64 {
    crate::stats::median(&mut v)
}

impl JobEntry {
    /// The entry of `a` over the window from `since_ms`.
    pub fn of(a: &JobAggregate, since_ms: i64) -> Self {
        let w = a.window(since_ms);
        let newest = a.recent.first();
        let cpu_p95 = median(a.recent.iter().map(|r| r.cpu_p95_cores).collect());
        let memory_peak = a
            .recent
            .iter()
            .map(|r| r.memory_peak_bytes)
            .max()
            .unwrap_or(0);
        let cpu_limit = newest.and_then(|r| r.cpu_limit_cores);
        let memory_limit = newest.and_then(|r| r.memory_limit_bytes);
        Self {
            organization: a.organization.clone(),
            repository: a.repository.clone(),
            workflow: a.workflow.clone(),
            job: a.job.clone(),
            runs: a.runs,
            runs_in_window: w.runs,
            last_run_at: newest.map(|r| r.time.clone()).unwrap_or_default(),
            last_run_id: newest.map(|r| r.run_id.clone()).unwrap_or_default(),
            duration_seconds: median(a.recent.iter().map(|r| r.duration_seconds).collect()),
            cpu_p95_cores: cpu_p95,
            cpu_peak_cores: a
                .recent
                .iter()
                .map(|r| r.cpu_peak_cores)
                .fold(0.0, f64::max),
            memory_peak_bytes: memory_peak,
            cpu_limit_cores: cpu_limit,
            memory_limit_bytes: memory_limit,
            cpu_to_limit: cpu_limit.filter(|l| *l > 0.0).map(|l| cpu_p95 / l),
            memory_to_limit: memory_limit
                .filter(|l| *l > 0)
                .map(|l| memory_peak as f64 / l as f64),
            oom_kills: w.oom_kills,
            starved_runs: w.starved_runs,
            starved_share: if w.runs > 0 {
                w.starved_runs as f64 / w.runs as f64
            } else {
                0.0
            },
            last_starved: newest.is_some_and(|r| r.starved),
            last_starved_by: newest.map(|r| r.starved_by.clone()).unwrap_or_default(),
            last_held_back_by: newest.and_then(|r| r.held_back_by.clone()),
            waste: waste(&w),
            sizing: a.sizing.clone(),
        }
    }
}

/// What the job list is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortBy {
    /// Waste score, largest first.
    #[default]
    Waste,
    /// Share of starved runs in the window, then starved runs, largest first.
    Starvation,
    /// Median duration, longest first.
    Duration,
    /// OOM kills in the window, most first.
    Ooms,
    /// Organization, repository, workflow, job, A to Z.
    Name,
}

impl SortBy {
    /// The names the API takes.
    pub const NAMES: &'static str = "waste, starvation, duration, ooms, name";

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "waste" => Self::Waste,
            "starvation" => Self::Starvation,
            "duration" => Self::Duration,
            "ooms" => Self::Ooms,
            "name" => Self::Name,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waste => "waste",
            Self::Starvation => "starvation",
            Self::Duration => "duration",
            Self::Ooms => "ooms",
            Self::Name => "name",
        }
    }
}

fn name_order(a: &JobEntry, b: &JobEntry) -> std::cmp::Ordering {
    (&a.organization, &a.repository, &a.workflow, &a.job).cmp(&(
        &b.organization,
        &b.repository,
        &b.workflow,
        &b.job,
    ))
}

/// Sorts entries by `by` (its natural direction; `reverse` flips it), ties by name.
pub fn sort(entries: &mut [JobEntry], by: SortBy, reverse: bool) {
    entries.sort_by(|a, b| {
        let primary = match by {
            SortBy::Waste => b.waste.score.total_cmp(&a.waste.score),
            SortBy::Starvation => b
                .starved_share
                .total_cmp(&a.starved_share)
                .then(b.starved_runs.cmp(&a.starved_runs)),
            SortBy::Duration => b.duration_seconds.total_cmp(&a.duration_seconds),
            SortBy::Ooms => b.oom_kills.cmp(&a.oom_kills),
            SortBy::Name => name_order(a, b),
        };
        let primary = if reverse { primary.reverse() } else { primary };
        primary.then_with(|| name_order(a, b))
    });
}

/// The whole fleet (or the filtered part) over a window.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FleetTotals {
    pub window_seconds: u64,
    /// Jobs with a run in the window, and of them: without limits, starved at least once,
    /// OOM-killed at least once.
    pub jobs: u64,
    pub jobs_without_limits: u64,
    pub starved_jobs: u64,
    pub oom_jobs: u64,
    pub runs: u64,
    pub run_hours: f64,
    pub oom_kills: u64,
    /// Over the runs with limits: reserved, used, and what right-sizing would free (each
    /// job's current limit above its recommendation, over its runs' hours).
    pub cpu_reserved_core_hours: f64,
    pub cpu_used_core_hours: f64,
    pub cpu_freed_core_hours: f64,
    pub memory_reserved_gib_hours: f64,
    pub memory_used_gib_hours: f64,
    pub memory_freed_gib_hours: f64,
    /// The freed amounts as cores and GiB held all the time over the window.
    pub cpu_freed_cores: f64,
    pub memory_freed_gib: f64,
}

/// Sums the aggregates' days from `since_ms` on; `window_seconds` is the window's length.
pub fn totals<'a>(
    jobs: impl IntoIterator<Item = &'a JobAggregate>,
    since_ms: i64,
    window_seconds: u64,
) -> FleetTotals {
    let mut t = FleetTotals {
        window_seconds,
        ..FleetTotals::default()
    };
    for a in jobs {
        let w = a.window(since_ms);
        if w.runs == 0 {
            continue;
        }
        t.jobs += 1;
        t.runs += w.runs;
        t.run_hours += w.seconds / 3600.0;
        t.oom_kills += w.oom_kills;
        t.jobs_without_limits +=
            u64::from(w.cpu_limited_seconds == 0.0 && w.memory_limited_seconds == 0.0);
        t.starved_jobs += u64::from(w.starved_runs > 0);
        t.oom_jobs += u64::from(w.oom_kills > 0);
        t.cpu_reserved_core_hours += w.cpu_reserved / 3600.0;
        t.cpu_used_core_hours += w.cpu_used_limited / 3600.0;
        t.memory_reserved_gib_hours += w.memory_reserved / GIB / 3600.0;
        t.memory_used_gib_hours += w.memory_used_limited / GIB / 3600.0;
        let newest = a.recent.first();
        if let (Some(s), Some(r)) = (&a.sizing, newest) {
            if let Some(limit) = r.cpu_limit_cores {
                let freed = (limit - s.recommended.cpu_request_cores).max(0.0);
                t.cpu_freed_core_hours += freed * w.cpu_limited_seconds / 3600.0;
            }
            if let Some(limit) = r.memory_limit_bytes {
                let freed = limit.saturating_sub(s.recommended.memory_limit_bytes) as f64;
                t.memory_freed_gib_hours += freed / GIB * w.memory_limited_seconds / 3600.0;
            }
        }
    }
    let hours = window_seconds as f64 / 3600.0;
    if hours > 0.0 {
        t.cpu_freed_cores = t.cpu_freed_core_hours / hours;
        t.memory_freed_gib = t.memory_freed_gib_hours / hours;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::kept::DAY_MS;
    use crate::fleet::kept::tests::row;
    use crate::sizing::{Confidence, Resources};

    #[test]
    fn entry_waste_and_totals() {
        let mut a = JobAggregate::new("o", "r", "w", "j");
        a.add(&row(1, 10, 0.5, Some(2.0)));
        a.add(&row(2, 10, 1.5, Some(2.0)));
        let e = JobEntry::of(&a, 0);
        assert_eq!(e.runs_in_window, 2);
        assert_eq!(e.cpu_p95_cores, 1.0);
        assert_eq!(e.cpu_limit_cores, Some(2.0));
        assert_eq!(e.cpu_to_limit, Some(0.5));
        // Reserved 2 cores x 2 h, used 0.5 + 1.5 core-hours: 2 core-hours idle.
        assert!((e.waste.core_hours - 2.0).abs() < 1e-9);
        // 4 GiB reserved, 1 GiB peak, 2 h: 6 GiB-hours.
        assert!((e.waste.gib_hours - 6.0).abs() < 1e-9);
        assert!((e.waste.score - 3.5).abs() < 1e-9);
        assert_eq!(e.waste.unused_share, Some(0.625));
        // Outside the window: nothing counted.
        assert_eq!(JobEntry::of(&a, 11 * DAY_MS).runs_in_window, 0);

        a.sizing = Some(SizingShort {
            at_id: 2,
            confidence: Confidence::Provisional,
            runs_considered: 2,
            recommended: Resources {
                cpu_request_cores: 1.5,
                cpu_limit_cores: None,
                memory_request_bytes: 2 << 30,
                memory_limit_bytes: 2 << 30,
            },
            current: None,
            runner_class: None,
        });
        assert!(!a.sizing_stale());
        let t = totals([&a], 0, 86_400);
        assert_eq!((t.jobs, t.runs, t.jobs_without_limits), (1, 2, 0));
        assert!((t.cpu_reserved_core_hours - 4.0).abs() < 1e-9);
        assert!((t.cpu_used_core_hours - 2.0).abs() < 1e-9);
        // 0.5 core over 2 h; 2 GiB over 2 h.
        assert!((t.cpu_freed_core_hours - 1.0).abs() < 1e-9);
        assert!((t.memory_freed_gib_hours - 4.0).abs() < 1e-9);
        assert!((t.cpu_freed_cores - 1.0 / 24.0).abs() < 1e-9);
    }

    #[test]
    fn sorting() {
        let mk = |job: &str, score: f64, ooms: u64| {
            let mut a = JobAggregate::new("o", "r", "w", job);
            a.add(&row(1, 1, 1.0, None));
            let mut e = JobEntry::of(&a, 0);
            e.waste.score = score;
            e.oom_kills = ooms;
            e
        };
        let mut v = vec![mk("b", 1.0, 0), mk("a", 1.0, 3), mk("c", 5.0, 1)];
        sort(&mut v, SortBy::Waste, false);
        assert_eq!(
            v.iter().map(|e| e.job.as_str()).collect::<Vec<_>>(),
            ["c", "a", "b"]
        );
        sort(&mut v, SortBy::Ooms, false);
        assert_eq!(v[0].job, "a");
        sort(&mut v, SortBy::Name, false);
        assert_eq!(v[0].job, "a");
        sort(&mut v, SortBy::Name, true);
        assert_eq!(v[0].job, "c");
        sort(&mut v, SortBy::Waste, true);
        assert_eq!(v[2].job, "c");
        for s in SortBy::NAMES.split(", ") {
            assert_eq!(SortBy::parse(s).unwrap().as_str(), s);
        }
        assert_eq!(SortBy::parse("size"), None);
    }
}
