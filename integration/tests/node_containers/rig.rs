//! The rig of `main.rs`'s tests: podman (Debian's, with a static busybox as the image's
//! root), a real receiver, a node collector, and each job's container with its cgroup's own
//! CPU counters to compare against.

use super::*;

/// What both tests share: a receiver, podman, a busybox root filesystem. Fields drop in
/// order: the containers first, the directory last.
pub(crate) struct Rig {
    pub(crate) podman: Podman,
    pub(crate) receiver: Receiver,
    pub(crate) token: String,
    pub(crate) spool: PathBuf,
    pub(crate) rootfs: PathBuf,
    pub(crate) ulimits: Vec<String>,
    pub(crate) dir: tempfile::TempDir,
}

impl Rig {
    /// `None` (after printing SKIP) where the test cannot run; a panic instead under CI.
    pub(crate) fn new() -> Option<Self> {
        if !testkit::require_root("runs podman containers and a node collector") {
            return None;
        }
        let tools = find_tools();
        if !testkit::require(
            "runs podman with runc on a busybox root filesystem (`cargo xtask test` installs \
             podman, runc and busybox-static)",
            tools.as_ref().map(|_| ()).map_err(Clone::clone),
        ) {
            return None;
        }
        let busybox = tools.unwrap();
        println!("cgroup layout: {}", cgroup_layout());
        let dir = tempfile::tempdir().unwrap();
        let rootfs = busybox_rootfs(dir.path(), &busybox);
        let podman = Podman::new(&dir.path().join("podman"));
        let receiver = Receiver::start(&dir.path().join("receiver"));
        // A wildcard token for the whole organization, as a node collector has.
        let token = receiver.push_token(WILDCARD);
        Some(Self {
            podman,
            receiver,
            token,
            spool: dir.path().join("spool"),
            rootfs,
            ulimits: ulimits(),
            dir,
        })
    }

    /// A node collector; returns once it measures (eBPF attached, first scan under way).
    pub(crate) fn node_collector(&self) -> Proc {
        let p = Proc::spawn(
            collector()
                .args(["node", "--interval=500ms", "--job-grace=1500ms"])
                .env(
                    "RUST_LOG",
                    std::env::var("NODE_CONTAINERS_LOG")
                        .unwrap_or_else(|_| "info,collector::modes::node=debug".to_owned()),
                )
                .arg(format!("--spool-dir={}", self.spool.display()))
                .arg(format!(
                    "--push-endpoint={}",
                    self.receiver.url("/api/v1/metrics")
                ))
                .arg(format!("--push-token={}", self.token))
                .stdout(Stdio::null()),
        );
        p.wait_for_lines("node mode: measuring", 1, DEADLINE);
        p
    }
}

/// One CI job: a container with its own identity.
pub(crate) struct Job {
    pub(crate) round: usize,
    pub(crate) repo: String,
    pub(crate) job: String,
    pub(crate) run_id: String,
    /// podman's name for the container, and its id.
    pub(crate) name: String,
    pub(crate) id: String,
    /// Holds `go` (the FIFO the job waits on) and `done` (written by the job); `/ctl` inside.
    pub(crate) ctl: PathBuf,
    pub(crate) cgroup: ContainerCgroup,
    /// The cgroup's own total once the job said it was done.
    pub(crate) truth: Option<CpuNs>,
    pub(crate) released: bool,
}

impl Job {
    /// Starts the job's container: busy for `centis` hundredths of a second (with a second
    /// busy process beside the first when `background`), then done.
    #[track_caller]
    pub(crate) fn start(
        rig: &Rig,
        round: usize,
        slot: usize,
        centis: u32,
        background: bool,
    ) -> Self {
        let name = format!("job-{}-{round}-{slot}", std::process::id());
        let ctl = rig.dir.path().join("ctl").join(&name);
        fs::create_dir_all(&ctl).unwrap();
        common::mkfifo(&ctl.join("go"));
        let repo = format!("repo-{round}-{slot}");
        let job = format!("build-{slot}");
        let run_id = format!("{}{round:02}{slot:02}", std::process::id());
        let mut args: Vec<String> = vec![
            "run".into(),
            "--detach".into(),
            format!("--name={name}"),
            format!("--cgroup-parent={}", rig.podman.parent),
            "--network=none".into(),
            format!("--volume={}:/ctl", ctl.display()),
        ];
        args.extend(rig.ulimits.iter().cloned());
        for (key, value) in [
            ("GITHUB_REPOSITORY", format!("{ORG}/{repo}")),
            ("GITHUB_WORKFLOW", "ci.yml".to_owned()),
            ("GITHUB_JOB", job.clone()),
            ("GITHUB_RUN_ID", run_id.clone()),
        ] {
            args.push("--env".to_owned());
            args.push(format!("{key}={value}"));
        }
        args.extend([
            "--rootfs".to_owned(),
            rig.rootfs.display().to_string(),
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            job_script(centis, background),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let id = rig.podman.run(&args);
        let pid = rig
            .podman
            .run(&["inspect", "--format", "{{.State.Pid}}", &name]);
        let cgroup = ContainerCgroup::of_pid(&pid);
        Self {
            round,
            repo,
            job,
            run_id,
            name,
            id,
            ctl,
            cgroup,
            truth: None,
            released: false,
        }
    }

    /// Once the job is done: reads its cgroup's total, then lets the job end.
    pub(crate) fn poll(&mut self) {
        if self.truth.is_none() && self.ctl.join("done").exists() {
            self.truth = Some(self.cgroup.cpu_ns());
        }
        if self.truth.is_some() && !self.released {
            self.released = common::release(&self.ctl.join("go"));
        }
    }

    pub(crate) fn label(&self) -> String {
        format!("r{}/{}", self.round, self.job)
    }

    pub(crate) fn runs(&self, receiver: &Receiver) -> Vec<StoredRun> {
        let path = format!(
            "/api/v1/metrics/repo/{ORG}/{}/ci.yml/{}",
            self.repo, self.job
        );
        let r = receiver.http("GET", &path, Some(READ_TOKEN), None);
        assert_eq!(r.status, 200, "{}", r.text());
        serde_json::from_slice(&r.body).unwrap()
    }

    /// Its first summary, once it has arrived.
    pub(crate) fn summary(&self, receiver: &Receiver) -> StoredRun {
        let what = format!("the summary of {} ({})", self.label(), self.name);
        wait_for(DEADLINE, &what, || self.runs(receiver).into_iter().next())
    }

    /// Prints the job's figures; returns what is wrong with its summary. `before_collector`:
    /// the job was running when the collector started.
    pub(crate) fn check(
        &self,
        run: &StoredRun,
        count: usize,
        before_collector: bool,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        let label = self.label();
        let want = (
            ORG.to_owned(),
            format!("{ORG}/{}", self.repo),
            "ci.yml".to_owned(),
            self.job.clone(),
            self.run_id.clone(),
        );
        let got = (
            run.organization.clone(),
            run.repository.clone(),
            run.workflow.clone(),
            run.job.clone(),
            run.run_id.clone(),
        );
        if got != want {
            problems.push(format!("{label}: identity {got:?}, expected {want:?}"));
        }
        if count != 1 {
            problems.push(format!("{label}: {count} summaries, expected exactly one"));
        }
        if let Err(e) = run.payload.validate() {
            problems.push(format!("{label}: invalid summary: {e}"));
        }
        // A job already running when the collector started has CPU from before its first
        // reading, which has no time to be drawn at: its timeline holds less.
        if !before_collector {
            for p in timeline_problems(&run.payload) {
                problems.push(format!("{label}: {p}"));
            }
        }
        let names: Vec<&str> = run
            .payload
            .containers
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        let container = format!("podman:{}", &self.id[..12]);
        if names != [container.as_str()] {
            problems.push(format!(
                "{label}: containers {names:?}, expected [{container:?}]"
            ));
        }
        let cpu: f64 = run.payload.containers.iter().map(|c| c.cpu_seconds).sum();
        let sources: Vec<String> = run
            .payload
            .containers
            .iter()
            .map(|c| format!("{:?}", c.cpu_source))
            .collect();
        let truth = self.truth.expect("read when the job was done");
        let Some(total) = truth.truth() else {
            problems.push(format!("{label}: the container cgroup had no CPU counter"));
            return problems;
        };
        let total = total as f64 / 1e9;
        let ratio = cpu / total;
        println!(
            "{label:<10} {container:<20} {cpu:>12.4} {total:>12.4} {ratio:>8.4} {:>14}  {}",
            truth
                .v1
                .map_or("-".to_owned(), |v| format!("{:.4}", v as f64 / 1e9)),
            sources.join(",")
        );
        if (ratio - 1.0).abs() > TOLERANCE {
            problems.push(format!(
                "{label} ({}): collector {cpu:.4} s, container cgroup {total:.4} s, ratio {ratio:.4}",
                self.name
            ));
        }
        problems
    }
}

/// The job: a busybox sh loop busy until its deadline (read from /proc/uptime, no fork),
/// forking short-lived subshells, exec'ing /bin/true and substituting a command on the way
/// (the short-lived processes a build is made of); with `background` a second busy process
/// beside it. Then it says it is done and waits to be released.
pub(crate) fn job_script(centis: u32, background: bool) -> String {
    let background = if background {
        "( while now; [ $c -lt $end ]; do spin 2000; done ) &"
    } else {
        ""
    };
    format!(
        r#"now() {{ read up _ < /proc/uptime; c=${{up%.*}}${{up#*.}}; }}
spin() {{ i=0; while [ $i -lt $1 ]; do i=$((i+1)); done; }}
now; end=$((c + {centis}))
{background}
while now; [ $c -lt $end ]; do
  spin 2000
  ( spin 500 )
  /bin/true
  x=$(echo y)
done
wait
: > /ctl/done
read x < /ctl/go
"#
    )
}

/// A container's own cgroups, found from its main process.
pub(crate) struct ContainerCgroup {
    /// v2 path (as in /proc/PID/cgroup) and directory, when it has a v2 cgroup of its own.
    pub(crate) v2: Option<(String, PathBuf)>,
    /// v1 `cpuacct` path and directory, on hybrid hosts.
    pub(crate) v1: Option<(String, PathBuf)>,
}

/// A cgroup's CPU nanoseconds, as the kernel counts them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CpuNs {
    pub(crate) v2: Option<u64>,
    pub(crate) v1: Option<u64>,
}

impl CpuNs {
    /// What the job is compared with: the v2 counter where the container has a v2 cgroup
    /// (what the collector groups it by), else the v1 one.
    pub(crate) fn truth(&self) -> Option<u64> {
        self.v2.or(self.v1)
    }
}

impl ContainerCgroup {
    #[track_caller]
    pub(crate) fn of_pid(pid: &str) -> Self {
        let text = fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .unwrap_or_else(|e| panic!("the container's process {pid}: {e}"));
        let mut v2 = None;
        let mut v1 = None;
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(hierarchy), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if hierarchy == "0" && controllers.is_empty() && path != "/" {
                v2 = Some((
                    path.to_owned(),
                    cgroup2_mount().join(path.trim_start_matches('/')),
                ));
            }
            if controllers.split(',').any(|c| c == "cpuacct")
                && let Some(mount) = cgroup_v1_mount("cpuacct")
            {
                v1 = Some((path.to_owned(), mount.join(path.trim_start_matches('/'))));
            }
        }
        assert!(
            v2.is_some() || v1.is_some(),
            "the container's process {pid} is in no cgroup of its own:\n{text}"
        );
        Self { v2, v1 }
    }

    pub(crate) fn describe(&self) -> String {
        let v2 = self
            .v2
            .as_ref()
            .map_or("none of its own", |(p, _)| p.as_str());
        match &self.v1 {
            Some((p, _)) => format!("v2 {v2}, v1 cpuacct {p}"),
            None => format!("v2 {v2}"),
        }
    }

    #[track_caller]
    pub(crate) fn cpu_ns(&self) -> CpuNs {
        CpuNs {
            v2: self.v2.as_ref().map(|(_, dir)| cgroup_usage_ns(dir)),
            v1: self.v1.as_ref().map(|(_, dir)| {
                let path = dir.join("cpuacct.usage");
                fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
                    .unwrap_or_else(|| panic!("reading {}", path.display()))
            }),
        }
    }
}

/// podman as the tests run it. Dropping it removes every container (their processes with
/// them) and the cgroups podman made.
pub(crate) struct Podman {
    /// `--root`, `--runroot` and `--tmpdir` live here: nothing outside the test's directory.
    pub(crate) dir: PathBuf,
    /// Every container's `--cgroup-parent` (conmon goes below it too).
    pub(crate) parent: String,
}

impl Podman {
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            parent: format!("/podman-test-{}", std::process::id()),
        }
    }

    pub(crate) fn command(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.arg(format!("--root={}", self.dir.join("root").display()))
            .arg(format!("--runroot={}", self.dir.join("run").display()))
            .arg(format!("--tmpdir={}", self.dir.join("tmp").display()))
            .args([
                "--storage-driver=vfs",
                "--events-backend=none",
                "--runtime=runc",
                "--cgroup-manager=cgroupfs",
            ])
            .stdin(Stdio::null());
        cmd
    }

    /// Runs a podman command to its end; its output, or a panic with its errors.
    #[track_caller]
    pub(crate) fn run(&self, args: &[&str]) -> String {
        let out = self
            .command()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running podman: {e}"));
        assert!(
            out.status.success(),
            "podman {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Waits until the container has exited.
    #[track_caller]
    pub(crate) fn wait_exited(&self, name: &str) {
        let mut wait = Proc::spawn(self.command().args(["wait", name]).stdout(Stdio::null()));
        let (status, log) = wait.wait(DEADLINE);
        assert!(status.success(), "podman wait {name}: {log}");
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self
            .command()
            .args(["rm", "--all", "--force", "--time=0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // Whatever podman could not remove: kill what is left in the cgroups, then remove
        // them in every hierarchy.
        let dirs: Vec<PathBuf> = cgroup_mounts()
            .iter()
            .map(|m| m.join(self.parent.trim_start_matches('/')))
            .filter(|d| d.is_dir())
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids: Vec<i32> = dirs.iter().flat_map(|d| pids_below(d)).collect();
            if pids.is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in pids {
                // SAFETY: kill(2) has no memory effects; these are the test's containers.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for dir in dirs {
            drop(CgroupTree(dir));
        }
    }
}

/// Pids in a cgroup and below it.
pub(crate) fn pids_below(dir: &Path) -> Vec<i32> {
    let mut pids: Vec<i32> = fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            pids.extend(pids_below(&entry.path()));
        }
    }
    pids
}

/// Mount points of every cgroup hierarchy (v2 and each v1 one, named ones included).
pub(crate) fn cgroup_mounts() -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let fs_type = post.split_whitespace().next()?;
            let mount_point = pre.split_whitespace().nth(4)?;
            matches!(fs_type, "cgroup" | "cgroup2").then(|| PathBuf::from(mount_point))
        })
        .collect()
}

/// `--ulimit` flags: podman's defaults (1048576 open files, and processes) exceed a low hard
/// limit, which runc cannot raise. At most 1024 of each, within this process's hard limits.
pub(crate) fn ulimits() -> Vec<String> {
    [
        (libc::RLIMIT_NOFILE, "nofile"),
        (libc::RLIMIT_NPROC, "nproc"),
    ]
    .into_iter()
    .map(|(resource, name)| {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct it is given.
        let ok = unsafe { libc::getrlimit(resource, &mut limit) } == 0;
        let n = if ok { limit.rlim_max.min(1024) } else { 1024 };
        format!("--ulimit={name}={n}:{n}")
    })
    .collect()
}

/// podman and runc on the PATH, and a statically linked busybox (the root filesystem has no
/// libc); returns busybox's path.
pub(crate) fn find_tools() -> Result<PathBuf, String> {
    for tool in ["podman", "runc", "conmon"] {
        testkit::which(tool).ok_or_else(|| format!("{tool} is not installed"))?;
    }
    let busybox = testkit::which("busybox").ok_or("busybox is not installed")?;
    static_elf(&busybox)?;
    Ok(busybox)
}

/// `Ok` if `path` is a 64-bit little-endian ELF executable without a program interpreter.
pub(crate) fn static_elf(path: &Path) -> Result<(), String> {
    let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let field = |offset: usize, len: usize| -> Option<u64> {
        let b = bytes.get(offset..offset + len)?;
        Some(
            b.iter()
                .rev()
                .fold(0, |acc, byte| acc << 8 | u64::from(*byte)),
        )
    };
    if bytes.get(..6) != Some(b"\x7fELF\x02\x01") {
        return Err(format!(
            "{} is not a 64-bit little-endian ELF file",
            path.display()
        ));
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) =
        (field(0x20, 8), field(0x36, 2), field(0x38, 2))
    else {
        return Err(format!("{}: truncated ELF header", path.display()));
    };
    const PT_INTERP: u64 = 3;
    let dynamic = (0..phnum).any(|i| field((phoff + i * phentsize) as usize, 4) == Some(PT_INTERP));
    if dynamic {
        return Err(format!(
            "{} is dynamically linked, and the containers have no libc: install busybox-static",
            path.display()
        ));
    }
    Ok(())
}

/// A root filesystem of one static busybox and a link per applet.
pub(crate) fn busybox_rootfs(dir: &Path, busybox: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for sub in ["bin", "proc", "sys", "dev", "etc", "tmp", "ctl"] {
        fs::create_dir_all(root.join(sub)).unwrap();
    }
    fs::copy(busybox, root.join("bin/busybox")).unwrap();
    let list = Command::new(busybox).arg("--list").output().unwrap();
    assert!(list.status.success(), "busybox --list: {list:?}");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if !applet.is_empty() && applet != "busybox" && !applet.contains('/') {
            symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
    }
    root
}
