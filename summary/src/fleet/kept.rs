//! What is kept as runs are pushed: one compact [`RunRow`] per stored run, and a job's
//! [`JobAggregate`] (its newest rows, its runs summed per [`Day`], its [`SizingShort`])
//! updated with each one, so the job list never reads every run.

use serde::{Deserialize, Serialize};

use crate::sizing::{Confidence, Resources, Sizing};
use crate::{RunSummary, canonical_repository};

/// Runs kept inline in an aggregate for the "recent" figures of the job list.
pub const RECENT_RUNS: usize = 10;
/// Days of totals kept in an aggregate (the longest window the totals can cover).
pub const MAX_DAYS: usize = 92;
/// A UTC day, in milliseconds.
pub(super) const DAY_MS: i64 = 86_400_000;

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
                .and_then(|_| crate::starvation::held_back_by(c)),
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
    pub(super) fn window(&self, since_ms: i64) -> Day {
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A one-hour run `id` on `day` using `cpu` cores, under `limit` cores and 4 GiB if
    /// given (the answers' tests use it too).
    pub(in crate::fleet) fn row(id: u64, day: i64, cpu: f64, limit: Option<f64>) -> RunRow {
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
