//! `cargo xtask demo`: the main job on a fresh machine, end to end.
//!
//! Builds the collector (with eBPF) and the receiver, starts the receiver on a local redb file,
//! issues a push token, runs the collector over a sample workload spread over three cgroups
//! (short-lived CPU burners, a process holding memory, and network traffic over a veth pair
//! into a network namespace of its own), stops it so it pushes its summary, queries the
//! receiver and prints the stored summary. The database stays for the user to query with curl.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::util::{self, step};

const READ_TOKEN: &str = "demo-read-token-change-me";
const HMAC_KEY: &str = "demo-hmac-key-change-me-too";
const NETNS: &str = "collector-demo";
const SCOPE: &str =
    r#"{"organization":"demo-org","repository":"demo-repo","workflow":"demo.yml","job":"build"}"#;

/// Kills and reaps a child on drop (the demo never leaves processes behind).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run(object: &Path, seconds: u64, wait: bool) -> Result<()> {
    if !testkit::is_root() {
        bail!("the demo creates cgroups and a network namespace: run it as root");
    }
    util::ensure_debs(&["iproute2", "curl"])?;
    step("building the collector and the receiver (release)");
    util::run(
        util::cargo()
            .args([
                "build",
                "--release",
                "--bin",
                "collector",
                "--bin",
                "receiver",
            ])
            .env("COLLECTOR_EBPF_OBJECT", object),
    )?;
    let bin = util::root().join("target/release");
    let dir = util::root().join("target/demo");
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("metrics.db");

    // 1. The receiver: on 127.0.0.1:8080 if it is free (an address to remember for the
    // page), else on a port of the kernel's choosing; it says which in --addr-file.
    step(format!("starting the receiver with {}", db.display()));
    let (mut receiver, addr) = match start_receiver(&bin, &dir, &db, "127.0.0.1:8080") {
        Ok(started) => started,
        Err(e) => {
            step(format!("{e:#}; trying another port"));
            start_receiver(&bin, &dir, &db, "127.0.0.1:0")?
        }
    };
    step(format!("the receiver listens on http://{addr}"));

    // 2. A push token for the demo job.
    step("issuing a push token: POST /api/v1/token");
    let (status, body) = http(addr, "POST", "/api/v1/token", Some(READ_TOKEN), Some(SCOPE))?;
    if status != 200 {
        bail!("token request failed with {status}: {body}");
    }
    let token = serde_json::from_str::<serde_json::Value>(&body)?["token"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no token in the answer: {body}"))?;

    // 3. The workload's cgroups and network namespace.
    let mount = cgroup2_mount(&bin)?;
    let root = mount.join("collector-demo");
    let cgroups = Cgroups::create(&root, &["build", "memory", "network"])?;
    let network = Netns::create();
    if let Err(e) = &network {
        step(format!("skipping the network workload: {e:#}"));
    }

    // 4. The collector, in sidecar mode, measuring the whole machine.
    step("starting the collector (sidecar mode, 1 s interval)");
    let collector_log = dir.join("collector.log");
    let limits = r#"{"/collector-demo/build":{"cpu":"1","memory":"256Mi"},"/collector-demo/memory":{"cpu":"500m","memory":"512Mi"}}"#;
    let mut collector = Guard(
        util::die_with_parent(&mut Command::new(bin.join("collector")))
            .args(["--interval=1s", "--top=8"])
            .arg(format!("--push-endpoint=http://{addr}/api/v1/metrics"))
            .arg(format!("--push-token={token}"))
            .arg(format!(
                "--summary-file={}",
                dir.join("summary.json").display()
            ))
            .envs([
                ("GITHUB_REPOSITORY_OWNER", "demo-org"),
                ("GITHUB_REPOSITORY", "demo-org/demo-repo"),
                ("GITHUB_WORKFLOW", "demo.yml"),
                ("GITHUB_JOB", "build"),
                ("GITHUB_RUN_ID", &format!("demo-{}", std::process::id())),
                ("CGROUP_LIMITS", limits),
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&collector_log)?)
            .spawn()
            .context("starting the collector")?,
    );
    // It measures once it says so (the eBPF program loads first).
    util::wait_for(
        Duration::from_secs(60),
        "the collector to start measuring",
        || {
            if let Ok(Some(status)) = collector.0.try_wait() {
                return Some(Err(anyhow::anyhow!(
                    "the collector exited with {status}; see {}",
                    collector_log.display()
                )));
            }
            let log = std::fs::read_to_string(&collector_log).unwrap_or_default();
            log.contains("collecting until").then_some(Ok(()))
        },
    )??;

    // 5. The workload.
    step(format!("running the workload for about {seconds} s"));
    let mut workers = Vec::new();
    let burn = "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done";
    for _ in 0..2 {
        // Short-lived processes: a few tens of ms each, too short for /proc polling.
        let script = format!(
            "end=$(( $(date +%s) + {seconds} )); while [ $(date +%s) -lt $end ]; do sh -c '{burn}'; done"
        );
        workers.push(cgroups.spawn("build", &["sh", "-c", &script])?);
    }
    let mem = format!("(head -c 300M /dev/zero; sleep {seconds}) | tail -c 300M > /dev/null");
    workers.push(cgroups.spawn("memory", &["sh", "-c", &mem])?);
    let sink = match &network {
        Ok(ns) => {
            let (sink, port) = ns.sink()?;
            let send = format!(
                "end=$(( $(date +%s) + {seconds} )); while [ $(date +%s) -lt $end ]; do head -c 20M /dev/zero > /dev/tcp/{}/{port}; sleep 0.5; done",
                Netns::HOST_ADDR
            );
            workers.push(cgroups.spawn(
                "network",
                &["ip", "netns", "exec", NETNS, "bash", "-c", &send],
            )?);
            Some(sink)
        }
        Err(_) => None,
    };
    let started = Instant::now();
    let limit = Duration::from_secs(seconds + 30);
    for mut w in workers {
        util::wait_for(limit, "the workload to finish", || {
            w.0.try_wait().ok().flatten()
        })?;
    }
    drop(sink);
    step(format!(
        "workload done after {:.1?}; stopping the collector (SIGTERM)",
        started.elapsed()
    ));

    // 6. Stop the collector: it takes a final sample and pushes its summary.
    util::run(Command::new("kill").args(["-TERM", &collector.0.id().to_string()]))?;
    let status = util::wait_for(Duration::from_secs(60), "the collector to exit", || {
        collector.0.try_wait().ok().flatten()
    })
    .with_context(|| format!("see {}", collector_log.display()))?;
    let log = std::fs::read_to_string(&collector_log).unwrap_or_default();
    if !status.success() || !log.contains("summary pushed") {
        bail!("the collector did not push its summary ({status}); its log:\n{log}");
    }
    drop(cgroups);
    drop(network);

    // 7. Query the receiver and show what it stored.
    let path = "/api/v1/metrics/repo/demo-org/demo-repo/demo.yml/build?limit=1";
    step(format!("querying the receiver: GET {path}"));
    let (status, body) = http(addr, "GET", path, Some(READ_TOKEN), None)?;
    if status != 200 {
        bail!("query failed with {status}: {body}");
    }
    let mut show = Command::new(bin.join("collector"))
        .arg("show")
        .stdin(Stdio::piped())
        .spawn()
        .context("starting collector show")?;
    show.stdin.take().unwrap().write_all(body.as_bytes())?;
    show.wait()?;

    // 8. More jobs, a few runs each, for the fleet view.
    step("measuring three more jobs, three runs each, for the fleet view");
    let scope_all =
        r#"{"organization":"demo-org","repository":"demo-repo","workflow":"demo.yml","job":"*"}"#;
    let (status, body) = http(
        addr,
        "POST",
        "/api/v1/token",
        Some(READ_TOKEN),
        Some(scope_all),
    )?;
    if status != 200 {
        bail!("token request failed with {status}: {body}");
    }
    let token_all = serde_json::from_str::<serde_json::Value>(&body)?["token"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no token in the answer: {body}"))?;
    crate::demo_jobs::run_all(&bin, &dir, addr, &token_all, 3)?;

    println!(
        "\nThe fleet view: open http://{addr}/ and sign in with the read token\n\n  {READ_TOKEN}\n\n\
         The API answers the same with the token as a bearer, e.g.\n  \
         curl -H 'Authorization: Bearer {READ_TOKEN}' 'http://{addr}/api/v1/jobs?sort=waste'\n  \
         curl -s -H 'Authorization: Bearer {READ_TOKEN}' http://{addr}/api/v1/metrics/repo/demo-org/demo-repo/demo.yml/build | {bin}/collector show\n\n\
         The database is {db}; logs are in {dir}.",
        db = db.display(),
        bin = bin.display(),
        dir = dir.display(),
    );
    if wait {
        println!("\nThe receiver keeps serving until Ctrl-C.");
        // Ctrl-C reaches the receiver (same process group), which shuts down gracefully; a
        // signal to this process alone is passed on to it. Either way this process waits
        // for it instead of dying first.
        util::forward_signals_to(receiver.0.id());
        let status = receiver.0.wait()?;
        step(format!("the receiver stopped ({status})"));
    } else {
        // The guard stops it.
        drop(receiver);
        println!(
            "\nTo serve the page again:\n  {bin}/receiver --addr=127.0.0.1:8080 --db={db} --read-token={READ_TOKEN} --hmac-key={HMAC_KEY}",
            db = db.display(),
            bin = bin.display(),
        );
    }
    Ok(())
}

/// Starts the receiver on `addr` and waits until it says where it listens.
fn start_receiver(bin: &Path, dir: &Path, db: &Path, addr: &str) -> Result<(Guard, SocketAddr)> {
    let receiver_log = std::fs::File::create(dir.join("receiver.log"))?;
    let addr_file = dir.join("receiver.addr");
    let _ = std::fs::remove_file(&addr_file);
    let mut receiver = Guard(
        util::die_with_parent(&mut Command::new(bin.join("receiver")))
            .arg(format!("--addr={addr}"))
            .arg(format!("--addr-file={}", addr_file.display()))
            .arg(format!("--db={}", db.display()))
            .args([
                format!("--read-token={READ_TOKEN}"),
                format!("--hmac-key={HMAC_KEY}"),
            ])
            .stdout(Stdio::null())
            .stderr(receiver_log)
            .spawn()
            .context("starting the receiver")?,
    );
    let addr: SocketAddr =
        util::wait_for(Duration::from_secs(30), "the receiver to start", || {
            if let Ok(Some(status)) = receiver.0.try_wait() {
                let log = std::fs::read_to_string(dir.join("receiver.log")).unwrap_or_default();
                return Some(Err(anyhow::anyhow!(
                    "the receiver exited with {status}: {}",
                    log.lines().last().unwrap_or("")
                )));
            }
            let text = std::fs::read_to_string(&addr_file).ok()?;
            text.trim().parse().ok().map(Ok)
        })??;
    Ok((receiver, addr))
}

/// One request to the receiver: (status, body).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<(u16, String)> {
    let method = http_client::Method::from_bytes(method.as_bytes())?;
    let mut request = http_client::Request::to(method, addr, path).timeout(Duration::from_secs(30));
    if let Some(token) = token {
        request = request.bearer(token);
    }
    if let Some(body) = body {
        request = request.json(body.to_owned());
    }
    let response = http_client::blocking::request(request)?;
    Ok((response.status.as_u16(), response.text().into_owned()))
}

/// The cgroup v2 mount, as the collector itself finds it (`collector check`).
fn cgroup2_mount(bin: &Path) -> Result<PathBuf> {
    let out = Command::new(bin.join("collector"))
        .args(["check", "--cpu-source", "proc", "--log-level", "error"])
        .output()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("cgroup v2: "))
        .filter(|m| m.starts_with('/'))
        .map(PathBuf::from)
        .context("no cgroup v2 hierarchy is mounted; the demo needs one")
}

struct Cgroups {
    root: PathBuf,
    names: Vec<String>,
}

impl Cgroups {
    fn create(root: &Path, names: &[&str]) -> Result<Self> {
        std::fs::create_dir_all(root).with_context(|| format!("mkdir {}", root.display()))?;
        for n in names {
            let dir = root.join(n);
            if !dir.is_dir() {
                std::fs::create_dir(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
            }
        }
        Ok(Self {
            root: root.to_owned(),
            names: names.iter().map(|s| s.to_string()).collect(),
        })
    }

    /// Runs `argv` inside cgroup `name`: a shell writes its own pid there, then execs.
    fn spawn(&self, name: &str, argv: &[&str]) -> Result<Guard> {
        let procs = self.root.join(name).join("cgroup.procs");
        let mut cmd = Command::new("sh");
        util::die_with_parent(&mut cmd)
            .arg("-c")
            .arg(format!("echo $$ > '{}' && exec \"$@\"", procs.display()))
            .arg("sh")
            .args(argv);
        Ok(Guard(
            cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?,
        ))
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = std::fs::remove_dir(self.root.join(n));
        }
        let _ = std::fs::remove_dir(&self.root);
    }
}

/// A network namespace joined to the host by a veth pair (link-local addresses of our own).
struct Netns;

impl Netns {
    const HOST_ADDR: &'static str = "169.254.77.1";
    const NS_ADDR: &'static str = "169.254.77.2";

    fn create() -> Result<Self> {
        let _ = Command::new("ip")
            .args(["netns", "del", NETNS])
            .stderr(Stdio::null())
            .status();
        let ip = |args: &[&str]| -> Result<()> {
            let out = Command::new("ip")
                .args(args)
                .output()
                .context("running ip (iproute2)")?;
            if !out.status.success() {
                bail!(
                    "ip {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            Ok(())
        };
        ip(&["netns", "add", NETNS])?;
        let ns = Netns;
        ip(&[
            "link",
            "add",
            "cdemo-host",
            "type",
            "veth",
            "peer",
            "name",
            "cdemo-ns",
            "netns",
            NETNS,
        ])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/30", Self::HOST_ADDR),
            "dev",
            "cdemo-host",
        ])?;
        ip(&["link", "set", "cdemo-host", "up"])?;
        ip(&[
            "-n",
            NETNS,
            "addr",
            "add",
            &format!("{}/30", Self::NS_ADDR),
            "dev",
            "cdemo-ns",
        ])?;
        ip(&["-n", NETNS, "link", "set", "cdemo-ns", "up"])?;
        ip(&["-n", NETNS, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A TCP sink on the host side of the pair that reads and discards; stops when dropped.
    fn sink(&self) -> Result<(Sink, u16)> {
        let listener = TcpListener::bind((Self::HOST_ADDR, 0))?;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok((
            Sink {
                stop,
                thread: Some(thread),
            },
            port,
        ))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", NETNS]).status();
        let _ = Command::new("ip")
            .args(["link", "del", "cdemo-host"])
            .stderr(Stdio::null())
            .status();
    }
}

struct Sink {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
