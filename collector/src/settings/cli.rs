//! Command-line interface. The flags and environment variables of the seed collector are
//! kept as they were (`--interval`, `--proc-path`, `--log-level`, `--log-format`, `--top`,
//! `--push-endpoint`, `--push-token`/`COLLECTOR_PUSH_TOKEN`); everything else is added.

use std::{ffi::OsString, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use summary::duration::parse_duration;

const AFTER_HELP: &str = "\
Modes:
  collector [OPTIONS]                 sidecar: measure everything visible in --proc-path until
                                      SIGINT/SIGTERM, then push one summary (or print it)
  collector run [OPTIONS] -- CMD...   run CMD in a cgroup of its own, measure it, print a table
                                      (or --json), push if --push-endpoint is set, exit with
                                      CMD's status
  collector node [OPTIONS]            one per CI node (DaemonSet): every job found from its
                                      processes' GITHUB_* variables, one summary per job at its end
  collector check                     say which CPU source (eBPF, cgroup, /proc) works here
  collector show [FILE]               print a summary (file, run --json, or query answer) as a table

Environment:
  GITHUB_REPOSITORY_OWNER, GITHUB_REPOSITORY, GITHUB_WORKFLOW, GITHUB_JOB, GITHUB_RUN_ID,
  GITHUB_RUN_ATTEMPT
      run identity of the pushed summary (FORGEJO_* equivalents are accepted)
  COLLECTOR_PUSH_TOKEN   Bearer token for the push endpoint (same as --push-token)
  CGROUP_PROCESS_MAP     JSON: process name -> container name, e.g. {\"node\":\"runner\"}
  CGROUP_LIMITS          JSON: container -> {\"cpu\": \"500m\", \"memory\": \"1Gi\"} (Kubernetes notation)
  RUST_LOG               fine-grained log filter (overrides --log-level)

CPU comes from eBPF (exact, every context switch) when it can be loaded (root or CAP_BPF +
CAP_PERFMON, kernel BTF), else from cgroup cpu.stat/cpuacct, else from /proc polling. The
summary says which source each figure came from.";

/// `collector --version`: the version, the commit it was built from and whether the eBPF
/// object is embedded, e.g. `0.1.0 (commit 3f2a9c1d0b4e, eBPF embedded)` (see build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("COLLECTOR_VERSION_DETAIL"),
    ")"
);

#[derive(Parser, Debug)]
#[command(name = "collector", version = VERSION, about = "Measures CPU, memory and network of CI jobs and their containers", after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a command in a cgroup of its own, measure it, and exit with its status.
    Run(RunArgs),
    /// Node mode (a privileged DaemonSet): measure every CI job on this node and push one
    /// summary per job when it ends (needs a wildcard-scoped push token).
    Node(NodeArgs),
    /// Report which CPU source this machine allows (eBPF, cgroup counters or /proc) and why.
    Check,
    /// Print a summary as a table: a summary file, `run --json` output, or a receiver query
    /// answer (`curl .../api/v1/metrics/repo/... | collector show`).
    Show {
        /// JSON file to read; `-` or nothing reads standard input.
        file: Option<PathBuf>,
        /// Print a Markdown report (tables, verdicts, Mermaid charts) instead of the table.
        #[arg(long)]
        markdown: bool,
    },
    /// What a job should get (CPU request, memory request and limit, per container and for
    /// the job), from local summaries of its runs: `run --json` output, summary files or
    /// receiver query answers. The same computation as the receiver's sizing endpoint.
    Size(SizeArgs),
}

#[derive(Args, Debug)]
pub struct SizeArgs {
    /// Summary files, one run or many each; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Most recent runs considered (1 to 100).
    #[arg(long, default_value_t = summary::sizing::DEFAULT_RUNS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100))]
    pub runs: usize,
    /// Margin on top of what was used, percent (0 to 200).
    #[arg(long, default_value_t = summary::sizing::DEFAULT_BUFFER_PERCENT, value_parser = parse_buffer)]
    pub buffer: f64,
    /// Statistic of the runs' CPU the request is based on: peak, p99, p95, p75, p50, avg.
    #[arg(long, default_value = "p95", value_parser = parse_percentile)]
    pub cpu_percentile: summary::sizing::Percentile,
    /// Also recommend a CPU limit (by default none: a limit throttles a CI job whenever it
    /// bursts, which only lengthens it).
    #[arg(long)]
    pub cpu_limit: bool,
    /// Runner classes to pick from, `NAME=CPU/MEMORY` separated by commas
    /// (`small=2c/4Gi,medium=4c/8Gi,large=8c/16Gi`).
    #[arg(long, value_name = "CLASSES", value_parser = parse_classes)]
    pub runner_classes: Option<RunnerClasses>,
    /// Print the answer as JSON (the sizing endpoint's fields) instead of a report.
    #[arg(long)]
    pub json: bool,
}

/// `--runner-classes`, parsed.
#[derive(Debug, Clone)]
pub struct RunnerClasses(pub Vec<summary::sizing::RunnerClass>);

fn parse_classes(s: &str) -> Result<RunnerClasses, String> {
    summary::sizing::quantity::parse_classes(s).map(RunnerClasses)
}

fn parse_buffer(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|b| b.is_finite() && (0.0..=200.0).contains(b))
        .ok_or_else(|| format!("{s:?} is not a percentage from 0 to 200"))
}

fn parse_percentile(s: &str) -> Result<summary::sizing::Percentile, String> {
    summary::sizing::Percentile::parse(s)
        .ok_or_else(|| format!("{s:?} is not one of peak, p99, p95, p75, p50, avg"))
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Print the JSON summary instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Print a Markdown report instead of a table (for a CI job summary or a comment): the
    /// table, the verdicts, the top commands, and CPU and memory over time as Mermaid charts.
    #[arg(long, conflicts_with = "json")]
    pub markdown: bool,
    /// Append that Markdown report to this file, as well as printing the table (for
    /// example `--markdown-file "$GITHUB_STEP_SUMMARY"`, or Forgejo's equivalent).
    #[arg(long, value_name = "PATH")]
    pub markdown_file: Option<PathBuf>,
    /// Container name in the summary (default: the command's file name).
    #[arg(long)]
    pub name: Option<String>,
    /// The command and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<OsString>,
}

#[derive(Args, Debug)]
pub struct NodeArgs {
    /// What makes up a job: its Kubernetes pod (every container of it) or only the container
    /// whose processes carry the job's GITHUB_*/FORGEJO_* variables.
    #[arg(long, value_enum, default_value_t = GroupBy::Pod)]
    pub group_by: GroupBy,
    /// Where finished jobs' summaries wait for the receiver, and active jobs' checkpoints
    /// live (survives restarts; put it on the host).
    #[arg(long, default_value = "/var/lib/ci-collector/spool")]
    pub spool_dir: PathBuf,
    /// Most bytes of summaries kept while the receiver is unreachable; past that the oldest
    /// are dropped (and logged).
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub spool_max_bytes: u64,
    /// How long a job must have no process before it counts as ended.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub job_grace: Duration,
    /// How often active jobs are checkpointed to the spool directory.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub checkpoint_interval: Duration,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    Pod,
    Container,
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// How often to sample processes, memory and network (e.g. 2s, 500ms, 1m).
    #[arg(long, global = true, default_value = "5s", value_parser = parse_duration)]
    pub interval: Duration,
    /// How often to read container CPU when the counters are cheap (eBPF or cgroup), and
    /// container memory where it is a cgroup counter. With the /proc fallback both follow
    /// --interval.
    #[arg(long, global = true, default_value = "100ms", value_parser = parse_duration)]
    pub cpu_interval: Duration,
    /// Root of the proc filesystem to read (e.g. a host's /proc mounted elsewhere).
    #[arg(long, global = true, default_value = "/proc")]
    pub proc_path: PathBuf,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, global = true, default_value = "info")]
    pub log_level: String,
    /// Log and per-interval output format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// How many processes to list in top_cpu_processes and top_mem_processes.
    #[arg(long, global = true, default_value_t = 5)]
    pub top: usize,
    /// Receiver endpoint to push the summary to, e.g. http://receiver:8080/api/v1/metrics.
    #[arg(long, global = true)]
    pub push_endpoint: Option<String>,
    /// Bearer push token (from POST /api/v1/token).
    #[arg(
        long,
        global = true,
        env = "COLLECTOR_PUSH_TOKEN",
        hide_env_values = true
    )]
    pub push_token: Option<String>,
    /// How long to keep retrying the push before writing the summary to --summary-file.
    #[arg(long, global = true, default_value = "30s", value_parser = parse_duration)]
    pub push_timeout: Duration,
    /// Where to write the summary when it cannot be pushed (default:
    /// ./collector-summary-<run id or start time>.json, or the temp directory if the current
    /// one is not writable).
    #[arg(long, global = true)]
    pub summary_file: Option<PathBuf>,
    /// Serve live per-container metrics for Prometheus at http://ADDR/metrics (e.g.
    /// 127.0.0.1:9464). Off unless set: the figures name jobs and repositories.
    #[arg(long, global = true, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Do not try eBPF; use cgroup counters or /proc (same as --cpu-source cgroup).
    #[arg(long, global = true)]
    pub no_ebpf: bool,
    /// Where container CPU comes from: auto tries eBPF, then cgroup counters, then /proc;
    /// naming one uses only that (and fails if it is not available).
    #[arg(long, global = true, value_enum, default_value_t = CpuSourceChoice::Auto)]
    pub cpu_source: CpuSourceChoice,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuSourceChoice {
    Auto,
    Ebpf,
    Cgroup,
    Proc,
}

impl Common {
    /// The effective choice (`--no-ebpf` narrows `auto`).
    pub fn cpu_choice(&self) -> CpuSourceChoice {
        match (self.cpu_source, self.no_ebpf) {
            (CpuSourceChoice::Auto, true) => CpuSourceChoice::Cgroup,
            (choice, _) => choice,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names_the_commit_and_the_ebpf_object() {
        use clap::CommandFactory;
        let line = Cli::command().render_version();
        let embedded = if crate::sources::ebpf::object_embedded() {
            "eBPF embedded"
        } else {
            "eBPF not embedded"
        };
        assert!(
            line.starts_with(&format!("collector {} (commit ", env!("CARGO_PKG_VERSION")))
                && line.trim_end().ends_with(&format!(", {embedded})")),
            "{line:?}"
        );
    }

    #[test]
    fn seed_flags_parse() {
        let cli = Cli::try_parse_from([
            "collector",
            "--interval=2s",
            "--top=10",
            "--push-endpoint=http://r:8080/api/v1/metrics",
            "--push-token",
            "abc",
            "--log-format",
            "json",
            "--proc-path",
            "/host/proc",
        ])
        .unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.common.interval, Duration::from_secs(2));
        assert_eq!(cli.common.top, 10);
        assert_eq!(cli.common.log_format, LogFormat::Json);
        let run = Cli::try_parse_from(["collector", "run", "--json", "--", "make", "-j4"]).unwrap();
        match run.command {
            Some(Command::Run(r)) => {
                assert!(r.json);
                assert_eq!(
                    r.command,
                    vec![OsString::from("make"), OsString::from("-j4")]
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
