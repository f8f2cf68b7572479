//! The run summary: the one definition of the data the collector pushes and the receiver
//! stores and answers with.
//!
//! # Layout
//!
//! - this file: the wire types ([`RunSummary`], [`ContainerSummary`], [`ProcessSummary`],
//!   [`Stats`], ...), the push body [`MetricsPush`] with its [`Execution`] identity, and
//!   the query answer element [`StoredRun`]. The JSON names are the seed README's; every
//!   addition is a new field with a default, so a seed-format summary still parses.
//! - [`accumulator`]: the HDR-histogram [`Accumulator`] that turns samples into [`Stats`].
//! - [`validate`]: checks on untrusted summaries ([`ValidationError`] names the field).
//! - [`time`]: RFC 3339 formatting and parsing without a date library.
//! - [`duration`]: the duration syntax of every command line (`500ms`, `1m 30s`, `1.5`),
//!   positive only.
//! - [`merge`]: one run from two summaries (node mode across a collector restart).
//! - [`sizing`]: what a job should get from its history ([`sizing::recommend`]), used by
//!   the receiver's sizing endpoint, `collector size` and the backtest.
//! - [`starvation`]: throttling, pressure, run-queue wait, disk I/O, memory detail, commands,
//!   and the one-line verdict made from them.
//! - [`behind`]: who held the CPU while a container waited, and whether that wait was
//!   self-inflicted (more cores help) or contention (isolation helps).
//! - [`timeline`]: the run over time, per container, in buckets that double as the run
//!   grows, at most [`timeline::MAX_POINTS`] per series.
//! - [`fleet`]: the fleet view's per-run rows, per-job aggregates, job list entries and
//!   fleet totals (the receiver's job list, history and fleet endpoints, and its web page).
//! - [`exposition`]: the `/metrics` text shared by the collector and the receiver
//!   (OpenMetrics for Prometheus, the classic format for everyone else).
//! - [`stats`]: mean and median of a handful of values.
//! - [`units`]: bytes for people, the one format of the collector's reports, the
//!   receiver's pages and the sizing explanations.

pub mod accumulator;
pub mod behind;
pub mod duration;
pub mod exposition;
pub mod fleet;
pub mod merge;
pub mod sizing;
pub mod starvation;
pub mod stats;
pub mod time;
pub mod timeline;
pub mod units;
pub mod validate;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use accumulator::{
    Accumulator, EncodedHistogram, HistogramError, SCALE_BYTES, SCALE_CORES, SCALE_PERCENT,
};
pub use validate::ValidationError;

/// Version of the summary schema this crate writes and understands.
pub const SCHEMA_VERSION: u32 = 1;

fn schema_version_default() -> u32 {
    // Summaries without the field are the seed's format, which version 1 is a superset of.
    SCHEMA_VERSION
}

/// Run-level statistics of one metric.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// Largest sample.
    pub peak: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 75th percentile.
    pub p75: f64,
    /// Median.
    pub p50: f64,
    /// Arithmetic mean.
    pub avg: f64,
}

/// Where a figure came from, most exact first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Per-cgroup on-CPU time counted by the eBPF `sched_switch` program.
    Ebpf,
    /// cgroupfs counters (`cpu.stat`, `memory.current`, ...).
    Cgroup,
    /// `/proc` polling (the seed's method).
    #[default]
    Proc,
}

impl Source {
    /// The name used in summaries and metric labels: `ebpf`, `cgroup` or `proc`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ebpf => "ebpf",
            Self::Cgroup => "cgroup",
            Self::Proc => "proc",
        }
    }
}

/// Named serialized histograms of a summary, so runs can be merged later.
///
/// Keys are the metric names of [`hist`]; a `BTreeMap` keeps the JSON deterministic.
pub type Histograms = BTreeMap<String, EncodedHistogram>;

/// Keys of [`Histograms`]: each is the name of the stats field the histogram backs.
pub mod hist {
    /// The run's `cpu_total_percent`.
    pub const CPU_TOTAL_PERCENT: &str = "cpu_total_percent";
    /// The run's `mem_used_bytes`.
    pub const MEM_USED_BYTES: &str = "mem_used_bytes";
    /// A container's `cpu_cores`.
    pub const CPU_CORES: &str = "cpu_cores";
    /// A container's `memory_bytes`.
    pub const MEMORY_BYTES: &str = "memory_bytes";
}

/// Which collector produced a summary.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CollectorInfo {
    /// Collector version (crate version).
    pub version: String,
    /// Mode: `sidecar`, `run` or `node`.
    pub mode: String,
    /// Whether the eBPF CPU accounting was active.
    pub ebpf: bool,
}

/// The summary of one run: the seed's "payload".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Schema version ([`SCHEMA_VERSION`]); absent in the seed's format, read as 1.
    #[serde(default = "schema_version_default")]
    pub schema_version: u32,
    /// First sample, RFC 3339 UTC (`2026-02-06T14:30:02.185Z`).
    pub start_time: String,
    /// Last sample, RFC 3339 UTC.
    pub end_time: String,
    /// `end_time - start_time` in seconds.
    pub duration_seconds: f64,
    /// Number of system-level samples taken.
    pub sample_count: u64,
    /// System-wide CPU, 0-100 %.
    pub cpu_total_percent: Stats,
    /// System-wide used memory, bytes.
    pub mem_used_bytes: Stats,
    /// Source of the system CPU figures.
    #[serde(default)]
    pub cpu_source: Source,
    /// Per-container figures.
    #[serde(default)]
    pub containers: Vec<ContainerSummary>,
    /// Processes with the highest peak CPU.
    #[serde(default)]
    pub top_cpu_processes: Vec<ProcessSummary>,
    /// Processes with the highest peak RSS.
    #[serde(default)]
    pub top_mem_processes: Vec<ProcessSummary>,
    /// Serialized histograms of the system metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histograms: Option<Histograms>,
    /// The collector that produced this summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collector: Option<CollectorInfo>,
    /// Processes grouped by command name, most CPU first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_commands: Vec<starvation::CommandSummary>,
    /// Was the job held back: its containers' verdicts in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<starvation::Verdict>,
    /// The run over time, per container (see [`timeline`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<timeline::Timeline>,
}

impl Default for RunSummary {
    fn default() -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            start_time: time::format_unix_millis(0),
            end_time: time::format_unix_millis(0),
            duration_seconds: 0.0,
            sample_count: 0,
            cpu_total_percent: Stats::default(),
            mem_used_bytes: Stats::default(),
            cpu_source: Source::default(),
            containers: Vec::new(),
            top_cpu_processes: Vec::new(),
            top_mem_processes: Vec::new(),
            histograms: None,
            collector: None,
            top_commands: Vec::new(),
            verdict: None,
            timeline: None,
        }
    }
}

/// Network totals and rates of a container (loopback excluded).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NetworkSummary {
    /// The network namespace(s) counted, as `net:[inode]`. Containers that share one (a
    /// Kubernetes pod) report the same traffic; de-duplicate by this field before adding up.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Bytes received over the run.
    pub rx_bytes: u64,
    /// Bytes sent over the run.
    pub tx_bytes: u64,
    /// Receive rate, bytes per second.
    pub rx_bytes_per_sec: Stats,
    /// Send rate, bytes per second.
    pub tx_bytes_per_sec: Stats,
}

/// Configured limits of a container.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Limits {
    /// CPU limit in cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_cores: Option<f64>,
    /// Memory limit in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
}

/// Figures of one container.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ContainerSummary {
    /// Container name.
    pub name: String,
    /// CPU used, in cores (`2.0` = two full cores).
    pub cpu_cores: Stats,
    /// Memory used, bytes.
    pub memory_bytes: Stats,
    /// Total CPU time over the run, seconds.
    #[serde(default)]
    pub cpu_seconds: f64,
    /// Source of the CPU figures.
    #[serde(default)]
    pub cpu_source: Source,
    /// Source of the memory figures.
    #[serde(default)]
    pub memory_source: Source,
    /// True peak from cgroup `memory.peak`, where the kernel has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_peak_bytes: Option<u64>,
    /// OOM kills (`memory.events` `oom_kill`) during the run.
    #[serde(default)]
    pub oom_kills: u64,
    /// Network figures, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkSummary>,
    /// Configured limits, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// CPU usage divided by the CPU limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_to_limit: Option<Stats>,
    /// Memory usage divided by the memory limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_to_limit: Option<Stats>,
    /// Serialized histograms of this container's metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histograms: Option<Histograms>,
    /// CPU bandwidth throttling over the run, where the cgroup has `cpu.stat` counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_throttling: Option<starvation::Throttling>,
    /// Pressure stall information over the run, where the cgroup has PSI files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pressure: Option<starvation::Pressure>,
    /// How long its runnable tasks waited for a CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_queue_wait: Option<starvation::RunQueueWait>,
    /// Block I/O over the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_io: Option<starvation::DiskIo>,
    /// Memory by kind at the peak, and memory events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_detail: Option<starvation::MemoryDetail>,
    /// Was it held back: the one-line answer from the figures above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<starvation::Verdict>,
}

/// Figures of one process.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ProcessSummary {
    /// Process id.
    pub pid: i32,
    /// Command name (`comm`).
    pub name: String,
    /// Peak CPU, where 100 % is one core.
    pub peak_cpu_percent: f64,
    /// Peak resident memory, bytes.
    pub peak_mem_rss_bytes: u64,
    /// Total CPU time over the run, seconds.
    #[serde(default)]
    pub cpu_seconds: f64,
    /// Container the process belonged to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Whether the process exited before the end of the run.
    #[serde(default)]
    pub exited: bool,
}

/// Who ran: the identity a summary is stored and queried under.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Execution {
    /// Organization (`GITHUB_REPOSITORY_OWNER`).
    pub organization: String,
    /// Repository, usually `org/repo` (`GITHUB_REPOSITORY`).
    pub repository: String,
    /// Workflow (`GITHUB_WORKFLOW`).
    pub workflow: String,
    /// Job (`GITHUB_JOB`).
    pub job: String,
    /// Run id (`GITHUB_RUN_ID`).
    pub run_id: String,
    /// Attempt of the run (`GITHUB_RUN_ATTEMPT`: `1`, then `2` for a re-run); empty where
    /// unknown. Absent in older payloads; not written when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run_attempt: String,
}

/// The repository as stored and queried: `repository` without a leading `org/` when that
/// names `organization` (`GITHUB_REPOSITORY` is `org/repo`, the seed's token request says
/// `repo`; both are the same repository).
pub fn canonical_repository<'a>(organization: &str, repository: &'a str) -> &'a str {
    match repository.strip_prefix(organization) {
        Some(rest) if !organization.is_empty() => rest.strip_prefix('/').unwrap_or(repository),
        _ => repository,
    }
}

impl Execution {
    /// `org/repo workflow job #run` for a person; `None` when nothing identifies the job.
    pub fn label(&self) -> Option<String> {
        if self.repository.is_empty() && self.job.is_empty() {
            return None;
        }
        let mut parts: Vec<&str> = [&self.repository, &self.workflow, &self.job]
            .into_iter()
            .map(String::as_str)
            .filter(|p| !p.is_empty())
            .collect();
        let run = format!("#{}", self.run_id);
        if !self.run_id.is_empty() {
            parts.push(&run);
        }
        Some(parts.join(" "))
    }

    /// Reads the identity from environment-like lookups: `GITHUB_*` variables, with the
    /// `FORGEJO_*` equivalents accepted when a `GITHUB_*` one is unset or empty. The
    /// organization falls back to the part of the repository before its first `/`.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let var = |suffix: &str| {
            ["GITHUB_", "FORGEJO_"]
                .iter()
                .find_map(|prefix| lookup(&format!("{prefix}{suffix}")).filter(|v| !v.is_empty()))
                .unwrap_or_default()
        };
        let repository = var("REPOSITORY");
        let mut organization = var("REPOSITORY_OWNER");
        if organization.is_empty() {
            if let Some((org, _)) = repository.split_once('/') {
                organization = org.to_string();
            }
        }
        Self {
            organization,
            repository,
            workflow: var("WORKFLOW"),
            job: var("JOB"),
            run_id: var("RUN_ID"),
            run_attempt: var("RUN_ATTEMPT"),
        }
    }
}

/// The body of `POST /api/v1/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsPush {
    /// Who ran.
    pub execution: Execution,
    /// What was measured.
    pub summary: RunSummary,
}

/// One element of the answer of `GET /api/v1/metrics/repo/...`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRun {
    /// Receiver-assigned id, increasing in order of receipt.
    pub id: u64,
    /// Organization.
    pub organization: String,
    /// Repository as pushed.
    pub repository: String,
    /// Workflow.
    pub workflow: String,
    /// Job.
    pub job: String,
    /// Run id.
    pub run_id: String,
    /// Attempt of the run, where the collector knew it (absent when empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run_attempt: String,
    /// When the receiver stored it, RFC 3339 UTC.
    pub received_at: String,
    /// The summary as pushed.
    pub payload: RunSummary,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_payload_parses_with_defaults() {
        let json = r#"{
            "start_time": "2026-02-06T14:30:02.185Z",
            "end_time": "2026-02-06T14:30:22.190Z",
            "duration_seconds": 20.0,
            "sample_count": 11,
            "cpu_total_percent": { "peak": 50.0, "avg": 20.0, "p50": 18.0 },
            "mem_used_bytes": { "peak": 1000, "avg": 900 },
            "containers": [
              { "name": "runner",
                "cpu_cores": { "peak": 2.007, "avg": 1.5, "p50": 1.817, "p95": 2.004 },
                "memory_bytes": { "peak": 18567168, "avg": 18567168 } }
            ],
            "top_cpu_processes": [
              { "pid": 42, "name": "node", "peak_cpu_percent": 180.5, "peak_mem_rss_bytes": 1024 }
            ],
            "top_mem_processes": []
        }"#;
        let s: RunSummary = serde_json::from_str(json).unwrap();
        assert_eq!(s.schema_version, SCHEMA_VERSION);
        assert_eq!(s.cpu_source, Source::Proc);
        assert_eq!(s.containers[0].cpu_cores.p95, 2.004);
        assert_eq!(s.containers[0].cpu_cores.p99, 0.0);
        assert_eq!(s.top_cpu_processes[0].pid, 42);
        assert!(!s.top_cpu_processes[0].exited);
    }

    #[test]
    fn source_is_lowercase() {
        assert_eq!(serde_json::to_string(&Source::Ebpf).unwrap(), "\"ebpf\"");
        assert_eq!(
            serde_json::to_string(&Source::Cgroup).unwrap(),
            "\"cgroup\""
        );
        assert_eq!(serde_json::to_string(&Source::Proc).unwrap(), "\"proc\"");
    }

    #[test]
    fn execution_from_env_prefers_github() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let e = Execution::from_env(env(&[
            ("GITHUB_REPOSITORY", "gh-org/repo"),
            ("FORGEJO_REPOSITORY", "fj-org/other"),
            ("FORGEJO_WORKFLOW", "ci.yml"),
            ("GITHUB_JOB", "build"),
            ("FORGEJO_RUN_ID", "7"),
            ("FORGEJO_RUN_ATTEMPT", "2"),
        ]));
        assert_eq!(e.organization, "gh-org");
        assert_eq!(e.repository, "gh-org/repo");
        assert_eq!(e.workflow, "ci.yml");
        assert_eq!(e.job, "build");
        assert_eq!(e.run_id, "7");
        assert_eq!(e.run_attempt, "2");
        let e = Execution::from_env(env(&[
            ("GITHUB_REPOSITORY_OWNER", "owner"),
            ("GITHUB_REPOSITORY", "x/y"),
        ]));
        assert_eq!(e.organization, "owner");
        assert_eq!(Execution::from_env(|_| None), Execution::default());
    }

    #[test]
    fn run_attempt_is_additive() {
        let old =
            r#"{"organization":"o","repository":"o/r","workflow":"w","job":"j","run_id":"1"}"#;
        let e: Execution = serde_json::from_str(old).unwrap();
        assert_eq!(e.run_attempt, "");
        // Not written when empty: an old receiver sees the old shape.
        assert_eq!(serde_json::to_string(&e).unwrap(), old);
        let e = Execution {
            run_attempt: "3".into(),
            ..e
        };
        assert!(
            serde_json::to_string(&e)
                .unwrap()
                .ends_with(r#","run_attempt":"3"}"#)
        );
    }

    #[test]
    fn canonical_repository_strips_own_org_only() {
        assert_eq!(canonical_repository("my-org", "my-org/my-repo"), "my-repo");
        assert_eq!(canonical_repository("my-org", "my-repo"), "my-repo");
        assert_eq!(
            canonical_repository("my-org", "other/my-repo"),
            "other/my-repo"
        );
        assert_eq!(canonical_repository("my", "my-org/x"), "my-org/x");
        assert_eq!(canonical_repository("o", "o/"), "");
        assert_eq!(canonical_repository("", "/x"), "/x");
    }
}
