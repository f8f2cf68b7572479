//! The modes: sidecar (the default), `run -- CMD` and `check`. Each wires the sampler to
//! timers and signals and decides what happens to the summary.

use std::{
    collections::HashMap,
    ffi::OsString,
    io::IsTerminal,
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::Context;
use summary::{CollectorInfo, Execution, MetricsPush, RunSummary};
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    cgroupfs::{self, Mounts},
    cli::{Common, LogFormat, RunArgs},
    containers::{self, Grouper, ProcessMap},
    ebpf, limits,
    push::{self, PushTarget},
    report,
    sampler::{Sampler, SamplerConfig, Scope},
    source::CpuSource,
};

/// Sets up tracing to stderr in the chosen format. `RUST_LOG` overrides `--log-level`.
pub fn init_logging(common: &Common) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(f) if !f.is_empty() => tracing_subscriber::EnvFilter::new(f),
        _ => {
            let level = common.log_level.to_ascii_lowercase();
            anyhow::ensure!(
                matches!(
                    level.as_str(),
                    "error" | "warn" | "info" | "debug" | "trace"
                ),
                "invalid --log-level {:?}: use error, warn, info, debug or trace",
                common.log_level
            );
            // aya's own debug chatter stays out unless asked for with RUST_LOG.
            tracing_subscriber::EnvFilter::new(format!("{level},aya=warn,aya_obj=warn"))
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match common.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
    Ok(())
}

/// `CGROUP_PROCESS_MAP` and `CGROUP_LIMITS` from the environment; errors name the variable.
fn grouping_from_env() -> anyhow::Result<(Grouper, HashMap<String, summary::Limits>)> {
    let map = match std::env::var(containers::ENV_VAR) {
        Ok(json) => ProcessMap::from_json(&json)?,
        Err(_) => ProcessMap::default(),
    };
    let limits = match std::env::var(limits::ENV_VAR) {
        Ok(json) => limits::parse_limits(&json)?,
        Err(_) => HashMap::new(),
    };
    Ok((Grouper::new(map), limits))
}

fn push_target(common: &Common) -> anyhow::Result<Option<PushTarget>> {
    common
        .push_endpoint
        .as_deref()
        .map(|e| PushTarget::new(e, common.push_token.clone(), common.push_timeout))
        .transpose()
        .map_err(Into::into)
}

/// The slow (`--interval`: /proc, memory, network) and fast (`--cpu-interval`: cheap CPU
/// counters) timers every mode runs on. A late slow tick is delayed, a late fast one skipped.
pub(crate) fn tickers(common: &Common) -> (tokio::time::Interval, tokio::time::Interval) {
    let mut slow = tokio::time::interval(common.interval);
    let mut fast = tokio::time::interval(common.cpu_interval);
    slow.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    fast.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    (slow, fast)
}

/// Starts the `/metrics` server when `--metrics-addr` is set.
pub(crate) async fn start_live_metrics(
    common: &Common,
) -> anyhow::Result<Option<std::sync::Arc<crate::live::LiveMetrics>>> {
    let Some(addr) = common.metrics_addr else {
        return Ok(None);
    };
    let live = std::sync::Arc::new(crate::live::LiveMetrics::default());
    // The server task lives as long as the runtime (the process).
    crate::live::serve(addr, live.clone()).await?;
    Ok(Some(live))
}

fn collector_info(mode: &str, cpu: &CpuSource) -> CollectorInfo {
    CollectorInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        mode: mode.to_owned(),
        ebpf: matches!(cpu, CpuSource::Ebpf(_)),
    }
}

/// The seed's mode: measure everything visible until SIGINT/SIGTERM, then push one summary.
pub async fn sidecar(common: Common) -> anyhow::Result<ExitCode> {
    let (grouper, limits) = grouping_from_env()?;
    let target = push_target(&common)?;
    let execution = Execution::from_env(|k| std::env::var(k).ok());
    if target.is_some() && execution.organization.is_empty() {
        tracing::warn!(
            "GITHUB_REPOSITORY(_OWNER) is not set: the receiver will refuse a summary without an organization"
        );
    }
    let mounts = Mounts::discover().unwrap_or_default();
    let cpu = CpuSource::pick(common.cpu_choice(), &mounts)?;
    let mut sampler = Sampler::new(
        SamplerConfig {
            proc_root: common.proc_path.clone(),
            top: common.top,
            scope: Scope::All,
            grouper,
            limits,
            single_container: None,
            mode: "sidecar",
            identity: execution.clone(),
            live: start_live_metrics(&common).await?,
            exclude_own_netns: false,
        },
        cpu,
    )?;
    tracing::info!(interval = ?common.interval, proc_path = %common.proc_path.display(), "collecting until SIGINT or SIGTERM");

    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let (mut slow, mut fast) = crate::app::tickers(&common);
    let cheap = sampler.cpu_is_cheap();
    loop {
        tokio::select! {
            _ = slow.tick() => {
                sampler.slow_tick();
                sampler.cpu_tick();
                log_interval(&sampler);
            }
            _ = fast.tick(), if cheap => sampler.cpu_tick(),
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    // A second signal means "now": exit without the summary.
    tokio::spawn(async move {
        tokio::select! { _ = sigint.recv() => {}, _ = sigterm.recv() => {} }
        eprintln!("second signal: exiting at once without a summary");
        std::process::exit(130);
    });
    tracing::info!("stopping: taking a final sample and building the summary");
    sampler.slow_tick();
    sampler.cpu_tick();
    let summary = sampler.summary(collector_info("sidecar", sampler.cpu_source()));
    deliver(&common, target.as_ref(), execution, summary, false).await?;
    Ok(ExitCode::SUCCESS)
}

fn log_interval(sampler: &Sampler) {
    let r = sampler.interval_report();
    let containers = serde_json::to_string(&r.containers).unwrap_or_default();
    tracing::info!(
        target: "collector::sample",
        cpu_total_percent = r.cpu_total_percent.map(|p| (p * 10.0).round() / 10.0),
        mem_used_bytes = r.mem_used_bytes,
        processes = sampler.process_count(),
        containers = %containers,
        "sample"
    );
}

/// Pushes the summary (or prints it when there is no endpoint); on failure writes it to a
/// file and says where. `quiet` keeps stdout for the caller (run mode prints its own).
async fn deliver(
    common: &Common,
    target: Option<&PushTarget>,
    execution: Execution,
    summary: RunSummary,
    quiet: bool,
) -> anyhow::Result<()> {
    let file = common
        .summary_file
        .clone()
        .unwrap_or_else(|| default_summary_file(&execution, &summary));
    let push = MetricsPush { execution, summary };
    let Some(target) = target else {
        if !quiet {
            println!("{}", serde_json::to_string_pretty(&push.summary)?);
        }
        return Ok(());
    };
    if let Err(e) = push::push(target, &push).await {
        tracing::error!("could not push the summary: {e}");
        match push::write_summary_file(&push, &file) {
            Ok(path) => tracing::warn!(
                "summary written to {} (push it later or read it there)",
                path.display()
            ),
            Err(w) => {
                tracing::error!(
                    "could not write the summary file either ({w}); printing it to stdout"
                );
                println!("{}", serde_json::to_string_pretty(&push)?);
            }
        }
    }
    Ok(())
}

fn default_summary_file(execution: &Execution, summary: &RunSummary) -> PathBuf {
    let id = if execution.run_id.is_empty() {
        summary.start_time.replace([':', '.'], "-")
    } else {
        execution
            .run_id
            .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_")
    };
    PathBuf::from(format!("collector-summary-{id}.json"))
}

/// `collector run -- CMD`: run it in a cgroup of its own, measure, report, exit with its status.
pub async fn run(common: Common, args: RunArgs) -> anyhow::Result<ExitCode> {
    let (_, limits) = grouping_from_env()?;
    let target = push_target(&common)?;
    let mounts = Mounts::discover().unwrap_or_default();
    let name = args.name.clone().unwrap_or_else(|| {
        Path::new(&args.command[0])
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    });
    let cgroup = match RunCgroup::create(&mounts) {
        Ok(cg) => Some(cg),
        Err(e) => {
            tracing::warn!(
                "cannot create a cgroup for the command ({e:#}): measuring its process tree instead; processes that leave the tree (daemons) are not counted"
            );
            None
        }
    };
    let cpu = CpuSource::pick(common.cpu_choice(), &mounts)?;

    let mut command = tokio::process::Command::new(&args.command[0]);
    command.args(&args.command[1..]);
    if let Some(cg) = &cgroup {
        let procs = std::ffi::CString::new(
            cg.dir
                .join("cgroup.procs")
                .into_os_string()
                .into_encoded_bytes(),
        )?;
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(move || join_cgroup(&procs));
        }
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {:?}", args.command[0]))?;
    let pid = child.id().context("child has no pid")? as i32;
    let scope = match &cgroup {
        Some(cg) => Scope::Cgroup(cg.path.clone()),
        None => Scope::Tree(pid),
    };
    let mut sampler = Sampler::new(
        SamplerConfig {
            proc_root: common.proc_path.clone(),
            top: common.top,
            scope,
            grouper: Grouper::default(),
            limits,
            single_container: Some(name.clone()),
            mode: "run",
            identity: Execution::from_env(|k| std::env::var(k).ok()),
            live: start_live_metrics(&common).await?,
            exclude_own_netns: true,
        },
        cpu,
    )?;

    let mut signals = Vec::new();
    for kind in [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
        SignalKind::quit(),
    ] {
        signals.push((kind, signal(kind)?));
    }
    let (fwd_tx, mut fwd_rx) = tokio::sync::mpsc::unbounded_channel::<i32>();
    for (kind, mut stream) in signals {
        let tx = fwd_tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                let _ = tx.send(kind.as_raw_value());
            }
        });
    }
    let (mut slow, mut fast) = crate::app::tickers(&common);
    let cheap = sampler.cpu_is_cheap();
    let status = loop {
        tokio::select! {
            status = child.wait() => break status?,
            Some(sig) = fwd_rx.recv() => {
                tracing::info!("forwarding signal {sig} to the command");
                // SAFETY: plain kill(2) on our own child.
                unsafe { libc::kill(pid, sig) };
            }
            _ = slow.tick() => sampler.slow_tick(),
            _ = fast.tick(), if cheap => sampler.cpu_tick(),
        }
    };
    // Let the last switches of the command land, then take the final readings.
    tokio::time::sleep(Duration::from_millis(50)).await;
    sampler.slow_tick();
    sampler.cpu_tick();
    drop(cgroup);
    let summary = sampler.summary(collector_info("run", sampler.cpu_source()));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        let headline = report::run_headline(&display_command(&args.command), status, &summary);
        print!("{}", report::table(&headline, &summary));
    }
    if target.is_some() {
        let execution = Execution::from_env(|k| std::env::var(k).ok());
        deliver(&common, target.as_ref(), execution, summary, true).await?;
    }
    Ok(exit_code(status))
}

/// The command's status as ours: its code, or 128 + the signal that killed it.
fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn display_command(command: &[OsString]) -> String {
    command
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writes "0" (the calling process) into a cgroup.procs file. Runs between fork and exec.
fn join_cgroup(procs: &std::ffi::CStr) -> std::io::Result<()> {
    // SAFETY: open/write/close are async-signal-safe; the buffer and path are valid.
    unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let ok = libc::write(fd, b"0\n".as_ptr().cast(), 2) == 2;
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if ok { Ok(()) } else { Err(err) }
    }
}

/// The command's own cgroup: a child of the collector's cgroup v2.
struct RunCgroup {
    /// Path relative to the v2 mount (as in /proc/PID/cgroup).
    path: String,
    dir: PathBuf,
}

impl RunCgroup {
    fn create(mounts: &Mounts) -> anyhow::Result<Self> {
        mounts
            .v2
            .as_ref()
            .context("no cgroup v2 hierarchy is mounted")?;
        let own =
            std::fs::read_to_string("/proc/self/cgroup").context("reading /proc/self/cgroup")?;
        let own = crate::procfs::cgroup_v2_path(&crate::procfs::parse_pid_cgroup(&own))
            .context("this process has no cgroup v2 path")?
            .to_owned();
        let path = format!(
            "{}/collector-run-{}",
            own.trim_end_matches('/'),
            std::process::id()
        );
        let dir = mounts
            .v2_dir(&path)
            .context("cgroup outside this namespace")?;
        std::fs::create_dir(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        tracing::debug!(cgroup = %dir.display(), id = cgroupfs::cgroup_id(&dir).unwrap_or(0), "command cgroup created");
        Ok(Self { path, dir })
    }
}

/// Removed when done (also on early errors); one left busy by daemons of the command stays.
impl Drop for RunCgroup {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            tracing::warn!(
                "leaving {} in place: {e} (processes of the command are still running in it)",
                self.dir.display()
            );
        }
    }
}

/// `collector show`: a summary as a table. Accepts what the collector and the receiver
/// produce: a summary, a summary file (`{execution, summary}`), or a query answer (a list of
/// stored runs, or one).
pub fn show(file: Option<&Path>) -> anyhow::Result<ExitCode> {
    use std::io::Read;
    let mut text = String::new();
    match file {
        Some(path) if path != Path::new("-") => {
            text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?
        }
        _ => {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading standard input")?;
        }
    }
    let value: serde_json::Value = serde_json::from_str(&text).context("the input is not JSON")?;
    let runs: Vec<serde_json::Value> = match value {
        serde_json::Value::Array(items) => items,
        other => vec![other],
    };
    if runs.is_empty() {
        println!("no runs");
    }
    for run in runs {
        let (headline, summary) = if run.get("payload").is_some() {
            let stored: summary::StoredRun =
                serde_json::from_value(run).context("not a stored run")?;
            let headline = format!(
                "run {} #{} of {}/{} {} (received {})",
                stored.run_id,
                stored.id,
                stored.repository,
                stored.workflow,
                stored.job,
                stored.received_at
            );
            (headline, stored.payload)
        } else if run.get("summary").is_some() {
            let push: MetricsPush = serde_json::from_value(run).context("not a summary file")?;
            let e = &push.execution;
            (
                format!(
                    "run {} of {} {} {}",
                    e.run_id, e.repository, e.workflow, e.job
                ),
                push.summary,
            )
        } else {
            let summary: RunSummary = serde_json::from_value(run).context("not a run summary")?;
            ("run summary".to_owned(), summary)
        };
        print!("{}", report::table(&headline, &summary));
    }
    Ok(ExitCode::SUCCESS)
}

/// `collector check`.
pub fn check(common: &Common) -> ExitCode {
    if !ebpf::object_embedded() {
        tracing::warn!("built without the eBPF object: running without eBPF");
    }
    let mounts = Mounts::discover().unwrap_or_default();
    let source = match CpuSource::pick(common.cpu_choice(), &mounts) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e:#}");
            return ExitCode::from(2);
        }
    };
    println!("cpu source: {}", source.name());
    match &mounts.v2 {
        Some(m) => println!("cgroup v2: {}", m.display()),
        None => println!("cgroup v2: not mounted"),
    }
    ExitCode::SUCCESS
}
