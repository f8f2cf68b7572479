//! The fleet view's figures, pure: one compact [`RunRow`] per stored run, a job's
//! [`JobAggregate`] kept up to date as runs arrive (so the job list never reads every run),
//! and the answers made from aggregates: [`JobEntry`] for the job list and [`FleetTotals`].
//!
//! Units: cores, bytes and seconds in rows; core-hours and GiB-hours in totals. "Reserved"
//! is the limit (the only reservation a cgroup shows); "used" is the CPU time actually used,
//! and for memory the run's peak held for its whole duration (what a limit must cover).

use serde::{Deserialize, Serialize};

use crate::sizing::{Confidence, Resources, Sizing};
use crate::{RunSummary, canonical_repository};

/// Runs kept inline in an aggregate for the "recent" figures of the job list.
pub const RECENT_RUNS: usize = 10;
/// Days of totals kept in an aggregate (the longest window the totals can cover).
pub const MAX_DAYS: usize = 92;
/// The waste score weighs one core like 4 GiB, the ratio of general-purpose cloud machines.
pub const GIB_PER_CORE: f64 = 4.0;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const DAY_MS: i64 = 86_400_000;

/// One stored run in a few numbers: the per-job history answer, one row per run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RunRow {
    /// The stored run's id (assigned by the receiver).
    pub id: u64,
    pub run_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run_attempt: String,
    /// When the run started (else when it was received), RFC 3339 and Unix milliseconds.
    pub time: String,
    pub time_ms: i64,
    pub duration_seconds: f64,
    /// The job's CPU: the sums over its containers of each one's p95 and peak (an upper
    /// bound of the pod's own), cores. 0 for a summary without containers: the seed's
    /// `cpu_total_percent` is a share of a machine whose core count it does not give.
    pub cpu_p95_cores: f64,
    pub cpu_peak_cores: f64,
    /// CPU time used, core-seconds.
    pub cpu_seconds: f64,
    /// Sum of the containers' memory peaks, bytes.
    pub memory_peak_bytes: u64,
    /// Sums of the containers' limits, where every container has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_limit_cores: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_bytes: Option<u64>,
    pub oom_kills: u64,
    /// CPU throttled and run-queue wait, seconds, summed over containers.
    pub throttled_seconds: f64,
    pub wait_seconds: f64,
    /// The starvation verdict: starved, and by what (`cpu`, `memory`, `io`).
    pub starved: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub starved_by: Vec<String>,
    /// For a CPU-starved run: whether more cores or isolation helps, and who held the CPU
    /// most (`contention: lint-7 (acme/web ci lint #3) 21.0 s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_back_by: Option<String>,
}

fn all_some<T: Copy>(it: impl Iterator<Item = Option<T>>) -> Option<Vec<T>> {
    it.collect()
}

impl RunRow {
    /// The row of a run (id 0, time from the summary's start: see [`RunRow::stamp`]).
    pub fn of(summary: &RunSummary, run_id: &str, run_attempt: &str) -> Self {
        let c = &summary.containers;
        let duration = summary.duration_seconds.max(0.0);
        let (cpu_p95, cpu_peak, cpu_seconds, memory_peak) = if c.is_empty() {
            (0.0, 0.0, 0.0, summary.mem_used_bytes.peak as u64)
        } else {
            (
                c.iter().map(|c| c.cpu_cores.p95).sum(),
                c.iter().map(|c| c.cpu_cores.peak).sum(),
                c.iter().map(|c| c.cpu_seconds).sum(),
                c.iter()
                    .map(|c| c.memory_peak_bytes.unwrap_or(c.memory_bytes.peak as u64))
                    .sum(),
            )
        };
        let limits = |f: fn(&crate::Limits) -> Option<f64>| {
            (!c.is_empty())
                .then(|| all_some(c.iter().map(|c| c.limits.as_ref().and_then(f))))
                .flatten()
                .map(|v| v.iter().sum::<f64>())
        };
        let verdict = summary
            .verdict
            .clone()
            .or_else(|| crate::starvation::job_verdict(c));
        let time_ms = crate::time::parse_rfc3339(&summary.start_time)
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64);
        Self {
            id: 0,
            run_id: run_id.to_owned(),
            run_attempt: run_attempt.to_owned(),
            time: String::new(),
            time_ms,
            duration_seconds: duration,
            cpu_p95_cores: cpu_p95,
            cpu_peak_cores: cpu_peak,
            cpu_seconds,
            memory_peak_bytes: memory_peak,
            cpu_limit_cores: limits(|l| l.cpu_cores),
            memory_limit_bytes: limits(|l| l.memory_bytes.map(|b| b as f64)).map(|b| b as u64),
            oom_kills: c.iter().map(|c| c.oom_kills).sum(),
            throttled_seconds: c
                .iter()
                .filter_map(|c| c.cpu_throttling.map(|t| t.throttled_seconds))
                .sum(),
            wait_seconds: c
                .iter()
                .filter_map(|c| c.run_queue_wait.as_ref().map(|w| w.seconds))
                .sum(),
            held_back_by: verdict
                .as_ref()
                .filter(|v| v.starved)
                .and_then(|_| crate::behind::held_back_by(c)),
            starved: verdict.as_ref().is_some_and(|v| v.starved),
            starved_by: verdict.map(|v| v.by).unwrap_or_default(),
        }
    }

    /// Sets the id the receiver assigned, and the time from `received_ms` where the
    /// summary had no start time.
    pub fn stamp(&mut self, id: u64, received_ms: i64) {
        self.id = id;
        if self.time_ms <= 0 {
            self.time_ms = received_ms;
        }
        self.time = crate::time::format_unix_millis(self.time_ms);
    }
}

/// One day of a job's runs (UTC days since the Unix epoch), summed.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Day {
    pub day: i64,
    pub runs: u64,
    pub seconds: f64,
    pub oom_kills: u64,
    pub starved_runs: u64,
    /// CPU used, core-seconds; and reserved (limit x duration) over the runs with a limit,
    /// with the CPU those same runs used.
    pub cpu_used: f64,
    pub cpu_reserved: f64,
    pub cpu_used_limited: f64,
    pub cpu_limited_seconds: f64,
    /// Memory held (peak x duration) and reserved, byte-seconds, as for CPU.
    pub memory_used: f64,
    pub memory_reserved: f64,
    pub memory_used_limited: f64,
    pub memory_limited_seconds: f64,
}

impl Day {
    fn add(&mut self, r: &RunRow) {
        let d = r.duration_seconds;
        self.runs += 1;
        self.seconds += d;
        self.oom_kills += r.oom_kills;
        self.starved_runs += u64::from(r.starved);
        self.cpu_used += r.cpu_seconds;
        self.memory_used += r.memory_peak_bytes as f64 * d;
        if let Some(limit) = r.cpu_limit_cores {
            self.cpu_reserved += limit * d;
            self.cpu_used_limited += r.cpu_seconds;
            self.cpu_limited_seconds += d;
        }
        if let Some(limit) = r.memory_limit_bytes {
            self.memory_reserved += limit as f64 * d;
            self.memory_used_limited += r.memory_peak_bytes as f64 * d;
            self.memory_limited_seconds += d;
        }
    }
}

/// The sizing answer in short, kept in the aggregate (computed in the background after runs
/// arrive, so the job list does not size every job on every request).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SizingShort {
    /// The newest run id it was computed with.
    pub at_id: u64,
    pub confidence: Confidence,
    pub runs_considered: usize,
    /// What the job should get (pod totals) and what it has now, where known.
    pub recommended: Resources,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<Resources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_class: Option<String>,
}

impl SizingShort {
    /// The short form of a full answer computed with runs up to `at_id`.
    pub fn of(s: &Sizing, at_id: u64) -> Self {
        Self {
            at_id,
            confidence: s.confidence,
            runs_considered: s.runs_considered,
            recommended: s.pod,
            current: s.current,
            runner_class: s.runner_class.as_ref().map(|c| c.name.clone()),
        }
    }
}

/// A job's stored runs in aggregate, updated as each run is stored.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct JobAggregate {
    pub organization: String,
    /// Canonical (without a leading `organization/`).
    pub repository: String,
    pub workflow: String,
    pub job: String,
    /// Runs stored, and the newest one's id.
    pub runs: u64,
    pub last_id: u64,
    /// The newest [`RECENT_RUNS`] rows, newest first.
    pub recent: Vec<RunRow>,
    /// Per-day sums, oldest first, at most [`MAX_DAYS`].
    pub days: Vec<Day>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sizing: Option<SizingShort>,
}

impl JobAggregate {
    /// An empty aggregate of a job.
    pub fn new(organization: &str, repository: &str, workflow: &str, job: &str) -> Self {
        Self {
            organization: organization.to_owned(),
            repository: canonical_repository(organization, repository).to_owned(),
            workflow: workflow.to_owned(),
            job: job.to_owned(),
            ..Self::default()
        }
    }

    /// Counts a stored run (rows arrive in id order; older days than kept are dropped).
    pub fn add(&mut self, row: &RunRow) {
        self.runs += 1;
        self.last_id = self.last_id.max(row.id);
        let at = self.recent.partition_point(|r| r.id > row.id);
        self.recent.insert(at, row.clone());
        self.recent.truncate(RECENT_RUNS);
        let day = row.time_ms.div_euclid(DAY_MS);
        match self.days.binary_search_by_key(&day, |d| d.day) {
            Ok(i) => self.days[i].add(row),
            Err(i) => {
                let mut d = Day {
                    day,
                    ..Day::default()
                };
                d.add(row);
                self.days.insert(i, d);
            }
        }
        if self.days.len() > MAX_DAYS {
            let extra = self.days.len() - MAX_DAYS;
            self.days.drain(..extra);
        }
    }

    /// The same job's aggregate made again from the rows left (oldest first), after runs
    /// were deleted; the sizing answer stays until a newer one comes.
    pub fn rebuilt<'a>(&self, rows_oldest_first: impl IntoIterator<Item = &'a RunRow>) -> Self {
        let mut fresh = Self {
            sizing: self.sizing.clone(),
            ..Self::new(
                &self.organization,
                &self.repository,
                &self.workflow,
                &self.job,
            )
        };
        for row in rows_oldest_first {
            fresh.add(row);
        }
        fresh
    }

    /// Takes the background sizer's answer unless one at least as new is there; whether it
    /// did.
    pub fn offer_sizing(&mut self, sizing: &SizingShort) -> bool {
        if self
            .sizing
            .as_ref()
            .is_some_and(|s| s.at_id >= sizing.at_id)
        {
            return false;
        }
        self.sizing = Some(sizing.clone());
        true
    }

    /// The sizing answer is older than the newest run.
    pub fn sizing_stale(&self) -> bool {
        self.sizing.as_ref().is_none_or(|s| s.at_id < self.last_id)
    }

    /// Days from `since_ms` on, summed.
    fn window(&self, since_ms: i64) -> Day {
        let first = since_ms.div_euclid(DAY_MS);
        let mut sum = Day::default();
        for d in self.days.iter().filter(|d| d.day >= first) {
            sum.runs += d.runs;
            sum.seconds += d.seconds;
            sum.oom_kills += d.oom_kills;
            sum.starved_runs += d.starved_runs;
            sum.cpu_used += d.cpu_used;
            sum.cpu_reserved += d.cpu_reserved;
            sum.cpu_used_limited += d.cpu_used_limited;
            sum.cpu_limited_seconds += d.cpu_limited_seconds;
            sum.memory_used += d.memory_used;
            sum.memory_reserved += d.memory_reserved;
            sum.memory_used_limited += d.memory_used_limited;
            sum.memory_limited_seconds += d.memory_limited_seconds;
        }
        sum
    }

    /// The newest run's time, Unix milliseconds.
    pub fn last_time_ms(&self) -> i64 {
        self.recent.first().map_or(0, |r| r.time_ms)
    }
}

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
    /// Over the recent runs (up to [`RECENT_RUNS`]): median duration and CPU p95, largest
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
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
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

    fn row(id: u64, day: i64, cpu: f64, limit: Option<f64>) -> RunRow {
        let mut r = RunRow {
            run_id: format!("r{id}"),
            time_ms: day * DAY_MS + 1000,
            duration_seconds: 3600.0,
            cpu_p95_cores: cpu,
            cpu_peak_cores: cpu * 1.5,
            cpu_seconds: cpu * 3600.0,
            memory_peak_bytes: 1 << 30,
            cpu_limit_cores: limit,
            memory_limit_bytes: limit.map(|_| 4 << 30),
            ..RunRow::default()
        };
        r.stamp(id, 0);
        r
    }

    #[test]
    fn aggregate_keeps_recent_rows_and_days() {
        let mut a = JobAggregate::new("o", "o/r", "w", "j");
        assert_eq!(a.repository, "r");
        for id in 1..=15 {
            a.add(&row(id, 100 + id as i64 / 5, 1.0, Some(2.0)));
        }
        assert_eq!(a.runs, 15);
        assert_eq!(a.last_id, 15);
        assert_eq!(a.recent.len(), RECENT_RUNS);
        assert_eq!(a.recent[0].id, 15);
        assert_eq!(a.days.len(), 4);
        assert_eq!(a.days.iter().map(|d| d.runs).sum::<u64>(), 15);
        let w = a.window(103 * DAY_MS);
        assert_eq!(w.runs, 1);
        for id in 0..200 {
            a.add(&row(100 + id, 1000 + id as i64, 1.0, None));
        }
        assert_eq!(a.days.len(), MAX_DAYS);
        assert_eq!(a.days[0].day, 1000 + 200 - MAX_DAYS as i64);
    }

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

    #[test]
    fn row_of_a_summary_without_containers() {
        let s = RunSummary {
            start_time: "2026-01-02T03:04:05Z".into(),
            duration_seconds: 10.0,
            mem_used_bytes: crate::Stats {
                peak: 2048.0,
                ..Default::default()
            },
            ..Default::default()
        };
        let mut r = RunRow::of(&s, "7", "");
        r.stamp(3, 99);
        assert_eq!((r.cpu_p95_cores, r.cpu_seconds), (0.0, 0.0));
        assert_eq!(r.memory_peak_bytes, 2048);
        assert_eq!(r.time, "2026-01-02T03:04:05.000Z");
        assert_eq!(r.cpu_limit_cores, None);
    }
}
