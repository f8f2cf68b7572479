//! A simulated CI node: several concurrent "jobs", each a Kubernetes-shaped pod of two
//! containers (cgroups), whose runner processes carry GITHUB_* variables and whose service
//! process does not, start and end at different times under one `collector node`. Each job
//! gets exactly one summary at a real receiver, with the right identity, and its CPU within
//! 3 % of the pod cgroup's own accounting. Then the collector is restarted in the middle of
//! two jobs: one that runs on and one that ends while the collector is down.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use common::*;
use summary::StoredRun;

/// A fake pod: `<root>/kubepods/besteffort/pod<uid>/<container id>` for runner and service.
struct Pod {
    dir: PathBuf,
    runner: PathBuf,
    service: PathBuf,
    repo: String,
    job: String,
}

impl Pod {
    fn new(root: &Path, n: u32) -> Self {
        // Pods differ in their first 8 uid characters (the short pod name keeps those).
        let uid = format!(
            "{n:04x}{:04x}-0000-4000-8000-{:012x}",
            std::process::id() & 0xffff,
            n
        );
        let dir = root.join("kubepods/besteffort").join(format!("pod{uid}"));
        // Container ids differ in their first 12 characters (the short id names them).
        let runner = dir.join(format!("{:012x}{:052x}", u64::from(n) * 2 + 1, 0));
        let service = dir.join(format!("{:012x}{:052x}", u64::from(n) * 2 + 2, 0));
        for d in [&runner, &service] {
            std::fs::create_dir_all(d).unwrap();
        }
        Self {
            dir,
            runner,
            service,
            repo: format!("sim-org/repo-{n}"),
            job: format!("build-{n}"),
        }
    }

    /// Starts the runner (with the job's identity) and the service (without).
    fn start(&self, runner_script: &str, service_secs: f32) -> Vec<Child> {
        let spawn = |cgroup: &Path, script: &str, identity: bool| {
            let mut cmd = Command::new("sh");
            cmd.arg("-c")
                .arg(format!(
                    "echo $$ > {}/cgroup.procs && exec bash -c '{script}'",
                    cgroup.display()
                ))
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if identity {
                cmd.envs([
                    ("GITHUB_REPOSITORY", self.repo.as_str()),
                    ("GITHUB_WORKFLOW", "ci.yml"),
                    ("GITHUB_JOB", self.job.as_str()),
                    ("GITHUB_RUN_ID", "1001"),
                ]);
            }
            cmd.spawn().unwrap()
        };
        vec![
            spawn(&self.runner, runner_script, true),
            spawn(&self.service, &format!("sleep {service_secs}"), false),
        ]
    }

    fn runs(&self, port: u16) -> Vec<StoredRun> {
        let repo = self.repo.split('/').nth(1).unwrap();
        let path = format!("/api/v1/metrics/repo/sim-org/{repo}/ci.yml/{}", self.job);
        let (status, body) = http(port, "GET", &path, Some(READ_TOKEN), None).unwrap();
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    fn remove(&self) {
        for d in [&self.runner, &self.service, &self.dir] {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Burns about `secs` of one core in short-lived subshells (fork-heavy, like a build).
fn burner(secs: f32) -> String {
    format!(
        "end=$((SECONDS+{})); while ((SECONDS<end)); do (i=0; while ((i<3000)); do ((i++)); done); done",
        secs.ceil() as u32
    )
}

fn node_collector(spool: &Path, port: u16, token: &str, log: &Path) -> Killed {
    Killed(
        Command::new(env!("CARGO_BIN_EXE_collector"))
            .args([
                "node",
                "--interval=300ms",
                "--job-grace=900ms",
                "--checkpoint-interval=600ms",
            ])
            .env("RUST_LOG", "info,collector::node=debug")
            .arg(format!("--spool-dir={}", spool.display()))
            .arg(format!(
                "--push-endpoint=http://127.0.0.1:{port}/api/v1/metrics"
            ))
            .arg(format!("--push-token={token}"))
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                    .unwrap(),
            )
            .spawn()
            .unwrap(),
    )
}

/// A node collector sees every process on the machine, so the two tests take turns.
static ONE_NODE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Prints the collector's log if the test fails, so a failure explains itself.
struct DumpLogOnPanic(PathBuf);

impl Drop for DumpLogOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- collector log ---\n{}",
                std::fs::read_to_string(&self.0).unwrap_or_default()
            );
        }
    }
}

fn wait_all(children: Vec<Child>) {
    for mut c in children {
        c.wait().unwrap();
    }
}

#[test]
fn simulated_node() {
    let _turn = ONE_NODE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !is_root() {
        assert!(!required_in_ci(), "needs root");
        eprintln!("skipping the simulated node: needs root to create cgroups");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_receiver, port) = start_receiver(dir.path());
    // A wildcard token for the whole organization, as a node collector has.
    let token = push_token(
        port,
        r#"{"organization":"sim-org","repository":"*","workflow":"*","job":"*"}"#,
    );
    let spool = dir.path().join("spool");
    let log = dir.path().join("collector.log");
    let _dump = DumpLogOnPanic(log.clone());
    let root = cgroup2_mount().join(format!("sim-node-{}", std::process::id()));
    let _cleanup = CgroupTree(root.clone());
    let mut collector = node_collector(&spool, port, &token, &log);
    std::thread::sleep(Duration::from_millis(800));

    // Three jobs, staggered.
    let pods: Vec<Pod> = (1..=3).map(|n| Pod::new(&root, n)).collect();
    let mut running = Vec::new();
    // Jobs last seconds, like real ones: a job must outlive two scans to be identified.
    running.push(pods[0].start(&burner(2.5), 3.0));
    std::thread::sleep(Duration::from_millis(700));
    running.push(pods[1].start(&burner(2.0), 2.5));
    std::thread::sleep(Duration::from_millis(500));
    running.push(pods[2].start(&burner(3.0), 1.0));
    for r in running {
        wait_all(r);
    }
    std::thread::sleep(Duration::from_millis(200));
    let truth: Vec<u64> = pods.iter().map(|p| cgroup_usage_ns(&p.dir)).collect();
    pods.iter().for_each(Pod::remove);

    for (pod, truth) in pods.iter().zip(&truth) {
        let runs = wait_for(
            &format!("the summary of {}", pod.job),
            Duration::from_secs(30),
            || {
                let r = pod.runs(port);
                (!r.is_empty()).then_some(r)
            },
        );
        let run = &runs[0];
        assert_eq!(
            (
                run.organization.as_str(),
                run.repository.as_str(),
                run.workflow.as_str(),
                run.job.as_str(),
                run.run_id.as_str()
            ),
            (
                "sim-org",
                pod.repo.as_str(),
                "ci.yml",
                pod.job.as_str(),
                "1001"
            )
        );
        run.payload.validate().unwrap();
        assert_eq!(
            run.payload.containers.len(),
            2,
            "runner and service: {:?}",
            run.payload
                .containers
                .iter()
                .map(|c| &c.name)
                .collect::<Vec<_>>()
        );
        let cpu: f64 = run.payload.containers.iter().map(|c| c.cpu_seconds).sum();
        let truth = *truth as f64 / 1e9;
        println!(
            "{}: collector {cpu:.4} s, pod cgroup {truth:.4} s, ratio {:.4}",
            pod.job,
            cpu / truth
        );
        assert!(
            (cpu / truth - 1.0).abs() <= 0.03,
            "{}: {cpu} vs {truth}",
            pod.job
        );
    }
    // Exactly one summary each, also a little later.
    std::thread::sleep(Duration::from_secs(1));
    for pod in &pods {
        assert_eq!(pod.runs(port).len(), 1, "{} pushed more than once", pod.job);
    }

    // A restart in the middle: job 4 runs on across it, job 5 ends while the collector is down.
    let (p4, p5) = (Pod::new(&root, 4), Pod::new(&root, 5));
    let j4 = p4.start(&burner(4.0), 4.0);
    let j5 = p5.start(&burner(2.0), 2.0);
    std::thread::sleep(Duration::from_millis(1500));
    unsafe { libc::kill(collector.0.id() as i32, libc::SIGTERM) };
    collector.0.wait().unwrap();
    wait_all(j5);
    std::thread::sleep(Duration::from_millis(300));
    let _collector = node_collector(&spool, port, &token, &log);
    wait_all(j4);
    std::thread::sleep(Duration::from_millis(200));
    let (t4, t5) = (
        cgroup_usage_ns(&p4.dir) as f64 / 1e9,
        cgroup_usage_ns(&p5.dir) as f64 / 1e9,
    );
    p4.remove();
    p5.remove();
    for (pod, truth) in [(&p4, t4), (&p5, t5)] {
        let runs = wait_for(
            &format!("the summary of {} after the restart", pod.job),
            Duration::from_secs(30),
            || {
                let r = pod.runs(port);
                (!r.is_empty()).then_some(r)
            },
        );
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(pod.runs(port).len(), 1, "{} pushed more than once", pod.job);
        let cpu: f64 = runs[0]
            .payload
            .containers
            .iter()
            .map(|c| c.cpu_seconds)
            .sum();
        println!(
            "{} across a restart: collector {cpu:.4} s, pod cgroup {truth:.4} s (the downtime is not measured)",
            pod.job
        );
        assert!(
            cpu > 0.3 * truth && cpu <= truth * 1.03,
            "{}: {cpu} vs {truth}",
            pod.job
        );
    }
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn receiver_outage_is_survived_through_the_spool() {
    let _turn = ONE_NODE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !is_root() {
        assert!(!required_in_ci(), "needs root");
        eprintln!("skipping: needs root to create cgroups");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Tokens are stateless: one issued by a receiver with the same key is valid at any other.
    let token = {
        let (_issuer, port) = start_receiver(&dir.path().join("issuer"));
        push_token(
            port,
            r#"{"organization":"sim-org","repository":"*","workflow":"*","job":"*"}"#,
        )
    };
    let port = free_port(); // the receiver is down: nothing listens here yet
    let spool = dir.path().join("spool");
    let log = dir.path().join("collector.log");
    let _dump = DumpLogOnPanic(log.clone());
    let root = cgroup2_mount().join(format!("sim-outage-{}", std::process::id()));
    let _cleanup = CgroupTree(root.clone());
    let _collector = node_collector(&spool, port, &token, &log);
    std::thread::sleep(Duration::from_millis(800));

    let pod = Pod::new(&root, 7);
    wait_all(pod.start(&burner(2.0), 2.0));
    let truth = cgroup_usage_ns(&pod.dir) as f64 / 1e9;
    pod.remove();
    // The job ends, its summary is spooled and retried while the receiver is down.
    wait_for("the summary in the spool", Duration::from_secs(30), || {
        let files = std::fs::read_dir(&spool)
            .ok()?
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .count();
        (files == 1).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    // The receiver comes up; the spooled summary arrives, once.
    let _receiver = start_receiver_on(&dir.path().join("db"), port);
    let runs = wait_for(
        "the spooled summary at the receiver",
        Duration::from_secs(60),
        || {
            let r = pod.runs(port);
            (!r.is_empty()).then_some(r)
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(pod.runs(port).len(), 1, "pushed more than once");
    let cpu: f64 = runs[0]
        .payload
        .containers
        .iter()
        .map(|c| c.cpu_seconds)
        .sum();
    println!("after an outage: collector {cpu:.4} s, pod cgroup {truth:.4} s");
    assert!((cpu / truth - 1.0).abs() <= 0.03, "{cpu} vs {truth}");
    let left = std::fs::read_dir(&spool)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .count();
    assert_eq!(left, 0, "the spool is empty once acknowledged");
}
