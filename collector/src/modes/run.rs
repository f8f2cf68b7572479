//! `collector run -- CMD`: runs the command in a cgroup of its own, measures it, prints a
//! table (or `--json`), pushes when asked, and exits with the command's status.

use std::{
    ffi::OsString,
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::Context;
use summary::MetricsPush;

use super::runner::{Ended, Measure, OnSignal, Runner};
use crate::{
    output::{markdown, push, report},
    sampler::{Scope, grouping::ContainerName},
    settings::{Settings, cli::RunArgs},
    sources::{
        cgroupfs::{self, CgroupPath, Mounts},
        procfs,
    },
};

pub async fn run(settings: Settings, args: RunArgs) -> anyhow::Result<ExitCode> {
    let name = args.name.clone().unwrap_or_else(|| {
        Path::new(&args.command[0])
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    });
    let cgroup = match RunCgroup::create(&settings.mounts) {
        Ok(cg) => Some(cg),
        Err(e) => {
            tracing::warn!(
                "cannot create a cgroup for the command ({e:#}): measuring its process tree instead; processes that leave the tree (daemons) are not counted"
            );
            None
        }
    };
    // Hybrid hosts keep the memory controller in v1: a twin there gives the true peak.
    let memory_v1 = match MemoryCgroupV1::create(&settings.mounts) {
        Ok(cg) => cg,
        Err(e) => {
            tracing::warn!(
                "cannot create a v1 memory cgroup for the command ({e:#}): its memory is its processes' polled RSS"
            );
            None
        }
    };
    let mut command = tokio::process::Command::new(&args.command[0]);
    command.args(&args.command[1..]);
    let procs = |dir: &Path| {
        std::ffi::CString::new(
            dir.join("cgroup.procs")
                .into_os_string()
                .into_encoded_bytes(),
        )
    };
    let v2_procs = cgroup.as_ref().map(|cg| procs(&cg.dir)).transpose()?;
    let v1_procs = memory_v1.as_ref().map(|cg| procs(&cg.dir)).transpose()?;
    if v2_procs.is_some() || v1_procs.is_some() {
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(move || {
                // Best effort: a failure shows in /proc/PID/cgroup, checked after the start.
                if let Some(v1) = &v1_procs {
                    let _ = join_cgroup(v1);
                }
                v2_procs.as_deref().map_or(Ok(()), join_cgroup)
            });
        }
    }
    // The CPU source is picked before the command starts, so its first slices are counted.
    let mut runner = Runner::start(
        &settings,
        Measure {
            // Replaced below once the command's pid is known (tree scope).
            scope: match &cgroup {
                Some(cg) => Scope::Cgroup(cg.path.clone()),
                None => Scope::Tree(0),
            },
            grouper: Default::default(),
            single_container: Some(ContainerName::mapped(name, None)),
            identity: settings.identity.clone(),
            use_limits: true,
            exclude_own_netns: true,
            jobs_per_container: false,
        },
    )
    .await?;
    // Known before the command starts: a short one may end before any scan finds it.
    let mut pinned: Vec<_> = cgroup
        .iter()
        .map(|cg| CgroupPath::V2(cg.path.clone()))
        .collect();
    pinned.extend(memory_v1.iter().map(|cg| CgroupPath::V1(cg.path.clone())));
    runner.sampler.pin_memory_cgroups(pinned);
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {:?}", args.command[0]))?;
    let pid = child.id().context("child has no pid")? as i32;
    if cgroup.is_none() {
        runner.sampler.set_scope(Scope::Tree(pid));
    }
    if let Some(cg) = &memory_v1 {
        cg.check_joined(pid);
    }
    let status = match runner
        .run_until(child.wait(), OnSignal::Forward(pid), |_| {})
        .await
    {
        Ended::Done(status) => status?,
        Ended::Signal(_) => unreachable!("run mode forwards signals"),
    };
    // The command is reaped and the collector has no other children: the kernel's peak
    // RSS of its largest descendant is a floor for the container's peak.
    if let Some(bytes) = children_max_rss() {
        runner.sampler.raise_memory_peak(bytes);
    }
    // The final readings once the command's last switches have landed: its exit record has
    // come (eBPF) and its CPU total reads the same twice.
    let settling = tokio::time::Instant::now();
    let deadline = settling + Duration::from_millis(250);
    let mut last = None;
    loop {
        runner.sampler.cpu_tick();
        let now = Some(runner.sampler.cpu_ns_total());
        if (runner.sampler.exit_seen(pid) && now == last) || tokio::time::Instant::now() >= deadline
        {
            break;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tracing::debug!(waited = ?settling.elapsed(), "the command's last switches landed");
    runner.finish();
    drop(cgroup);
    drop(memory_v1);
    let summary = runner.sampler.summary(runner.sampler.collector_info("run"));
    let headline = report::run_headline(&display_command(&args.command), status, &summary);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if args.markdown {
        print!("{}", markdown::report(headline.trim(), &summary));
    } else {
        print!("{}", report::table(&headline, &summary));
    }
    if let Some(path) = &args.markdown_file {
        append_report(path, &markdown::report(headline.trim(), &summary));
    }
    let push = MetricsPush {
        execution: settings.identity.clone(),
        summary,
    };
    let file = settings.common.summary_file.as_deref();
    push::deliver(settings.push.as_ref(), file, push, false).await?;
    Ok(exit_code(status))
}

/// Appends the Markdown report to `path` (a job summary file): a failure is logged, never
/// the run's failure.
fn append_report(path: &std::path::Path, report: &str) {
    use std::io::Write;
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(format!("{report}\n").as_bytes()));
    match written {
        Ok(()) => tracing::info!("Markdown report appended to {}", path.display()),
        Err(e) => tracing::error!(
            "could not append the Markdown report to {}: {e}",
            path.display()
        ),
    }
}

/// The command's status as ours: its code, or 128 + the signal that killed it.
fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// The command as a shell would need it typed (`sh -c 'perl -e ...'`).
fn display_command(command: &[OsString]) -> String {
    command
        .iter()
        .map(|a| report::shell_quote(&a.to_string_lossy()))
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
        let own = procfs::cgroup_v2_path(&procfs::parse_pid_cgroup(&own))
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
        remove_cgroup(&self.dir);
    }
}

/// The command's cgroup in the v1 memory controller (hybrid hosts): a child of the
/// collector's own there, named like the v2 one (`collector-run-PID`), so the sampler treats
/// the two as twins.
struct MemoryCgroupV1 {
    /// Path relative to the memory controller's mount (as in /proc/PID/cgroup).
    path: String,
    dir: PathBuf,
}

impl MemoryCgroupV1 {
    /// `None` where no v1 memory controller is mounted (pure v2 hosts).
    fn create(mounts: &Mounts) -> anyhow::Result<Option<Self>> {
        if !mounts.v1.contains_key("memory") {
            return Ok(None);
        }
        let own =
            std::fs::read_to_string("/proc/self/cgroup").context("reading /proc/self/cgroup")?;
        let lines = procfs::parse_pid_cgroup(&own);
        // The root is not listed as a path of its own.
        let own = procfs::cgroup_v1_controller_path(&lines, "memory").unwrap_or("/");
        let path = format!(
            "{}/collector-run-{}",
            own.trim_end_matches('/'),
            std::process::id()
        );
        let dir = mounts
            .v1_dir("memory", &path)
            .context("no v1 memory controller")?;
        std::fs::create_dir(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        tracing::debug!(cgroup = %dir.display(), "command memory cgroup (v1) created");
        Ok(Some(Self { path, dir }))
    }

    /// Warns when the command is not in it (joining between fork and exec cannot log).
    fn check_joined(&self, pid: i32) {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
            return; // already gone: nothing to say about it
        };
        // A zombie (a command that ended already) no longer shows its cgroups: only a
        // process still running after its cgroups were read tells.
        let running = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| !matches!(state, "Z" | "X"))
        });
        let lines = procfs::parse_pid_cgroup(&text);
        let joined =
            procfs::cgroup_v1_controller_path(&lines, "memory") == Some(self.path.as_str());
        if running && !joined {
            tracing::warn!(
                "the command did not join {}: its memory peak is not its own",
                self.dir.display()
            );
        }
    }
}

impl Drop for MemoryCgroupV1 {
    fn drop(&mut self) {
        remove_cgroup(&self.dir);
    }
}

fn remove_cgroup(dir: &Path) {
    if let Err(e) = std::fs::remove_dir(dir) {
        tracing::warn!(
            "leaving {} in place: {e} (processes of the command are still running in it)",
            dir.display()
        );
    }
}

/// The largest peak RSS among the reaped descendants (`getrusage(RUSAGE_CHILDREN)`), bytes.
fn children_max_rss() -> Option<u64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the rusage it is given a valid pointer to.
    let ok = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr()) } == 0;
    // SAFETY: zeroed is a valid rusage, and getrusage succeeded.
    let usage = unsafe { usage.assume_init() };
    // ru_maxrss is in KiB on Linux.
    ok.then(|| {
        u64::try_from(usage.ru_maxrss)
            .unwrap_or(0)
            .saturating_mul(1024)
    })
}
