//! What the cross-binary tests share besides `testkit`: the collector binary, a child
//! process whose log can be waited on, and cgroups made by a test.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

/// The collector binary of this build, beside the receiver's (`target/<profile>/`).
pub fn collector_binary() -> PathBuf {
    // The test binary is `target/<profile>/deps/<test>-<hash>`.
    let exe = std::env::current_exe().expect("the path of the test binary");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .join("collector");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build -p collector` (same profile as the tests) first",
        path.display()
    );
    path
}

/// A command for the collector binary.
pub fn collector() -> Command {
    Command::new(collector_binary())
}

/// A child process killed and reaped when dropped, whose stderr is collected line by line
/// so a test can wait for what it logs.
pub struct Proc {
    pub child: Child,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Proc {
    /// Spawns `cmd` with stderr captured (stdout as the command set it).
    #[track_caller]
    pub fn spawn(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Self {
            child,
            log,
            reader: Some(reader),
        }
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// How many logged lines contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// Waits until `n` logged lines contain `needle`.
    #[track_caller]
    pub fn wait_for_lines(&self, needle: &str, n: usize, deadline: Duration) {
        let what = format!("{n} log lines containing {needle:?}");
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            testkit::wait_until(deadline, &what, || self.count(needle) >= n)
        }));
        if ok.is_err() {
            panic!("timed out waiting for {what}; log:\n{}", self.log());
        }
    }

    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own, not yet reaped, child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits for the exit; the whole log once it has ended.
    #[track_caller]
    pub fn wait(&mut self, deadline: Duration) -> (std::process::ExitStatus, String) {
        let child = &mut self.child;
        let status = testkit::wait_for(deadline, "the process to exit", || {
            child.try_wait().expect("waiting for the child")
        });
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        (status, self.log())
    }
}

/// Killed and reaped when dropped; a failing test also shows what it logged.
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {:?} log ---\n{}", self.child.id(), self.log());
        }
    }
}

/// Files of `dir` with the extension `ext` (0 when the directory is missing).
pub fn count_files(dir: &Path, ext: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == ext))
                .count()
        })
        .unwrap_or(0)
}

/// The cgroup v2 mount of this machine (from mountinfo).
pub fn cgroup2_mount() -> PathBuf {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    collector::sources::cgroupfs::cgroup2_mount_point(&text).expect("cgroup v2 mount")
}

/// The v1 mount of a controller, on hybrid hosts.
pub fn cgroup_v1_mount(controller: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    collector::sources::cgroupfs::Mounts::parse(&text)
        .v1
        .get(controller)
        .cloned()
}

/// `pure v2` or `hybrid`, for the tests to say which layout they ran on.
pub fn cgroup_layout() -> &'static str {
    if cgroup_v1_mount("memory").is_some() || cgroup_v1_mount("cpuacct").is_some() {
        "hybrid (v1 controllers, v2 beside them)"
    } else {
        "pure v2"
    }
}

/// `usage_usec` of a cgroup's cpu.stat, in ns.
pub fn cgroup_usage_ns(dir: &Path) -> u64 {
    let text = std::fs::read_to_string(dir.join("cpu.stat")).unwrap();
    collector::sources::cgroupfs::parse_keyed(&text, "usage_usec").expect("usage_usec") * 1000
}

/// A cgroup subtree made by a test, removed (deepest first) when dropped, also when the test
/// fails, so failed runs leave nothing behind.
pub struct CgroupTree(pub PathBuf);

impl Drop for CgroupTree {
    fn drop(&mut self) {
        fn remove(dir: &Path) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        remove(&e.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
        remove(&self.0);
    }
}

/// The TCP port process `pid` listens on, once it does: servers started on port 0 (the
/// collector's `--metrics-addr`, Prometheus) are found from their sockets in /proc, so no
/// port is ever picked by the test, closed and bound again.
pub fn listening_port(pid: u32, deadline: Duration) -> u16 {
    testkit::wait_for(deadline, &format!("process {pid} to listen"), || {
        let sockets: std::collections::HashSet<String> =
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .ok()?
                .flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter_map(|target| {
                    let t = target.to_string_lossy();
                    Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
                })
                .collect();
        let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).ok()?;
        table.lines().skip(1).find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is `IP:PORT` in hex; state 0A is LISTEN; field 9 the inode.
            let listening = f.get(3) == Some(&"0A") && sockets.contains(*f.get(9)?);
            let port = f.get(1)?.rsplit_once(':')?.1;
            listening
                .then(|| u16::from_str_radix(port, 16).ok())
                .flatten()
        })
    })
}

/// A sidecar collector with `args` (its intervals) writing its summary to `file` (its
/// stdout), once a sample of it names every one of `names`.
#[track_caller]
pub fn sidecar_sampling(args: &[&str], names: &[&str], file: &Path) -> Proc {
    let sidecar = Proc::spawn(
        collector()
            .args(args)
            // With the line that says a container's counters were read at its end.
            .env("RUST_LOG", "info,collector::sampler::cpu=debug")
            .stdout(std::fs::File::create(file).unwrap()),
    );
    testkit::wait_until(
        Duration::from_secs(60),
        "the sidecar to sample the test's cgroups",
        || {
            sidecar
                .log()
                .lines()
                .any(|l| l.contains("sample") && names.iter().all(|n| l.contains(n)))
        },
    );
    sidecar
}

/// Stops a sidecar collector with SIGTERM and returns the summary it wrote to `file`
/// (its stdout), checked.
#[track_caller]
pub fn stop_sidecar(sidecar: &mut Proc, file: &Path) -> summary::RunSummary {
    sidecar.signal(libc::SIGTERM);
    let (status, stderr) = sidecar.wait(Duration::from_secs(60));
    assert!(status.success(), "{stderr}");
    let summary: summary::RunSummary = serde_json::from_slice(&std::fs::read(file).unwrap())
        .unwrap_or_else(|e| panic!("the summary in {}: {e}", file.display()));
    checked(summary)
}

/// The summary's container whose name contains `name`.
#[track_caller]
pub fn container_named<'a>(
    summary: &'a summary::RunSummary,
    name: &str,
) -> &'a summary::ContainerSummary {
    summary
        .containers
        .iter()
        .find(|c| c.name.contains(name))
        .unwrap_or_else(|| panic!("no container {name} in the summary"))
}

/// A FIFO a test's job blocks on (using no CPU) until the test releases it.
#[track_caller]
pub fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(
        rc,
        0,
        "mkfifo {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// Writes to the FIFO the job waits on; `false` while no one reads it yet.
#[track_caller]
pub fn release(fifo: &Path) -> bool {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    match std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(fifo)
    {
        Ok(mut f) => {
            f.write_all(b"go\n")
                .unwrap_or_else(|e| panic!("writing {}: {e}", fifo.display()));
            true
        }
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => false,
        Err(e) => panic!("opening {}: {e}", fifo.display()),
    }
}

/// Checks every run a test reads: valid, and each container's timeline CPU buckets add up
/// to its `cpu_seconds` (see [`timeline_problems`]). Returns it.
#[track_caller]
pub fn checked(summary: summary::RunSummary) -> summary::RunSummary {
    summary.validate().unwrap();
    let problems = timeline_problems(&summary);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    summary
}

/// Containers whose timeline CPU buckets do not add up to their `cpu_seconds` within 2 %
/// (or, for a container of a few milliseconds of CPU, two millicores over one bucket: the
/// wire form's whole millicores are rounded once when a timeline is written and once more
/// when two pieces of a run are merged across a collector restart).
pub fn timeline_problems(summary: &summary::RunSummary) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(t) = &summary.timeline {
        for ct in &t.containers {
            let Some(c) = summary.containers.iter().find(|c| c.name == ct.name) else {
                continue;
            };
            let buckets = ct.cpu_seconds(t.bucket_seconds);
            let slack = (0.02 * c.cpu_seconds).max(0.002 * t.bucket_seconds);
            if (buckets - c.cpu_seconds).abs() > slack {
                out.push(format!(
                    "{}: timeline buckets {buckets} s vs cpu_seconds {} s ({} buckets of {} s)",
                    c.name,
                    c.cpu_seconds,
                    ct.cpu_millicores.len(),
                    t.bucket_seconds
                ));
            }
        }
    }
    out
}

/// `GET path` on 127.0.0.1:`port` (HTTP/1.0, no keep-alive): the body, or `None` when the
/// server cannot be reached or answers otherwise than 200.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.to_owned())
        .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_owned()))
}
