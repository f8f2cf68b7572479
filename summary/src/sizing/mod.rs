//! Right-sizing: what a job should get, from its own history, with the reasons.
//!
//! Pure functions over run summaries (no I/O, no clock): the receiver's sizing endpoint,
//! `collector size` and the backtest (`cargo xtask bench sizing`) all call [`recommend`].
//!
//! - [`memory`]: the memory request and limit from each run's true peak, with OOM-killed
//!   and near-limit runs treated as censored ("needed more than the limit").
//! - [`cpu`]: the CPU request from the runs' merged HDR histograms, recent runs weighing
//!   more; CPU-bound jobs are noticed.
//! - [`history`]: step changes, trends and two-cluster histories.
//! - [`quantity`]: Kubernetes quantities (`"750m"`, `"1536Mi"`) and runner classes.

pub mod cpu;
pub mod history;
pub mod memory;
pub mod quantity;
mod recommend;

use serde::{Deserialize, Serialize};

pub use recommend::recommend;

use crate::RunSummary;

/// Default number of most recent runs considered.
pub const DEFAULT_RUNS: usize = 20;
/// Most runs considered (CI Sizer's bound).
pub const MAX_RUNS: usize = 100;
/// Default margin on top of what was used, percent (CI Sizer's `buffer`).
pub const DEFAULT_BUFFER_PERCENT: f64 = 15.0;
/// Runs below which an answer is provisional.
pub const CONFIDENT_RUNS: usize = 5;

/// One stored run, as the sizing sees it. Oldest first in a history.
#[derive(Debug, Clone, Copy)]
pub struct SizingRun<'a> {
    /// Start of the run, Unix milliseconds.
    pub time_ms: i64,
    /// The run id (`GITHUB_RUN_ID`), to name the run that set a figure.
    pub run_id: &'a str,
    pub summary: &'a RunSummary,
}

/// Which statistic of a run's CPU distribution the request is based on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Percentile {
    Peak,
    P99,
    #[default]
    P95,
    P75,
    P50,
    Avg,
}

impl Percentile {
    /// CI Sizer's names: `peak`, `p99`, `p95`, `p75`, `p50`, `avg`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "peak" | "max" => Self::Peak,
            "p99" => Self::P99,
            "p95" => Self::P95,
            "p75" => Self::P75,
            "p50" => Self::P50,
            "avg" => Self::Avg,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Peak => "peak",
            Self::P99 => "p99",
            Self::P95 => "p95",
            Self::P75 => "p75",
            Self::P50 => "p50",
            Self::Avg => "avg",
        }
    }

    /// The quantile (0..=1) of a histogram; `None` for the mean.
    pub fn quantile(self) -> Option<f64> {
        match self {
            Self::Peak => Some(1.0),
            Self::P99 => Some(0.99),
            Self::P95 => Some(0.95),
            Self::P75 => Some(0.75),
            Self::P50 => Some(0.50),
            Self::Avg => None,
        }
    }
}

/// A runner class the operator offers (`small=2c/4Gi`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunnerClass {
    pub name: String,
    pub cpu_cores: f64,
    pub memory_bytes: u64,
}

/// What the caller asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct SizingParams {
    /// Most recent runs considered, 1..=[`MAX_RUNS`].
    pub runs: usize,
    /// Margin on top of what was used, percent.
    pub buffer_percent: f64,
    /// Statistic of each run's CPU the request is based on.
    pub cpu_percentile: Percentile,
    /// Also recommend a CPU limit (off by default: limits throttle CI jobs).
    pub cpu_limit: bool,
    /// Runner classes, smallest first after sorting; empty when none are configured.
    pub classes: Vec<RunnerClass>,
}

impl Default for SizingParams {
    fn default() -> Self {
        Self {
            runs: DEFAULT_RUNS,
            buffer_percent: DEFAULT_BUFFER_PERCENT,
            cpu_percentile: Percentile::default(),
            cpu_limit: false,
            classes: Vec::new(),
        }
    }
}

/// How much an answer can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// No usable run: a safe default.
    None,
    /// Fewer than [`CONFIDENT_RUNS`] runs: a safe answer, with a wide margin.
    Provisional,
    /// Enough runs.
    Confident,
}

/// The sizing answer for a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sizing {
    /// Runs the answer is based on (the most recent `runs` of those given).
    pub runs_considered: usize,
    /// Runs given (in the window).
    pub runs_available: usize,
    pub confidence: Confidence,
    /// The statistic and margin used, as asked.
    pub cpu_percentile: Percentile,
    pub buffer_percent: f64,
    /// Per container, by name.
    pub containers: Vec<ContainerSizing>,
    /// The job (pod) as a whole: the containers' sums.
    pub pod: Resources,
    /// Pod totals as they are now, where every container's limits are known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<Resources>,
    /// The smallest configured runner class that fits the pod, where classes are given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_class: Option<RunnerClass>,
    /// A ready-to-paste Kubernetes `containers:` list with each `resources:` block (YAML).
    pub kubernetes: String,
    /// Notes on the job as a whole (provisional answer, too few runs, no CPU limit, ...).
    pub notes: Vec<String>,
}

/// Requests and limits.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Resources {
    pub cpu_request_cores: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_limit_cores: Option<f64>,
    pub memory_request_bytes: u64,
    pub memory_limit_bytes: u64,
}

/// The answer for one container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerSizing {
    pub name: String,
    /// Runs this container appeared in.
    pub runs: usize,
    pub cpu: cpu::CpuSizing,
    pub memory: memory::MemorySizing,
    /// The recommendation in Kubernetes terms.
    pub resources: Resources,
    /// Kubernetes quantities of `resources`: `{"requests": {"cpu": "750m", "memory":
    /// "1536Mi"}, "limits": {"memory": "1536Mi"}}`.
    pub quantities: quantity::KubeResources,
    /// The container's limits as the last run saw them, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<crate::Limits>,
    /// What the history looks like: `step_change`, `trend`, `two_clusters`.
    pub flags: Vec<history::Flag>,
    /// Why, in sentences: which run set each figure, margins and rounding, OOM history,
    /// the comparison with the current limits.
    pub explanation: Vec<String>,
}
