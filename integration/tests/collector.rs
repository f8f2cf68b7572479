//! The collector binary end to end: real processes in real cgroups, a real receiver on
//! 127.0.0.1:0 with a real redb file.

use std::{
    process::{Output, Stdio},
    time::{Duration, Instant},
};

use summary::{MetricsPush, RunSummary, Source, StoredRun};
use testkit::{READ_TOKEN, Receiver, requirements_enforced as ebpf_required};

mod common;

use common::{Proc, collector};

/// 150 short-lived subshells that each burn a few ms, then bash's own account of its and its
/// children's CPU (`times`) on stderr: the getrusage ground truth.
const SHORT_CHILDREN: &str =
    "for i in $(seq 150); do (i=0; while ((i<3000)); do ((i++)); done); done; times >&2";

/// Seconds from bash's `times` output: two lines like `0m0.010s 0m0.002s` (the shell's
/// user and system time, then its children's).
fn rusage_from_times(stderr: &str) -> f64 {
    let secs = |field: &str| -> Option<f64> {
        let (m, s) = field.strip_suffix('s')?.split_once('m')?;
        Some(m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
    };
    let rows: Vec<f64> = stderr
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 2)
                .then(|| Some(secs(f[0])? + secs(f[1])?))
                .flatten()
        })
        .collect();
    assert!(rows.len() >= 2, "no `times` output in: {stderr}");
    rows[rows.len() - 2..].iter().sum()
}

fn run_collector(args: &[&str], envs: &[(&str, &str)]) -> Output {
    collector()
        .args(args)
        .envs(envs.iter().copied())
        .env("RUST_LOG", "info")
        .output()
        .unwrap()
}

#[test]
fn run_agrees_with_getrusage_for_many_short_children() {
    if !testkit::require_root("creates the command's cgroup") {
        return;
    }
    println!("cgroup layout: {}", common::cgroup_layout());
    for no_ebpf in [false, true] {
        let mut args = vec!["run", "--json"];
        if no_ebpf {
            args.push("--no-ebpf");
        }
        args.extend(["--", "bash", "-c", SHORT_CHILDREN]);
        let out = run_collector(&args, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let summary: RunSummary = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        let truth = rusage_from_times(&stderr);
        let measured = summary.containers[0].cpu_seconds;
        println!(
            "{:?}: collector {measured:.4} s, rusage {truth:.4} s, ratio {:.4}",
            summary.cpu_source,
            measured / truth
        );
        assert!(
            (measured / truth - 1.0).abs() <= 0.03,
            "{measured} vs {truth}"
        );
        match (no_ebpf, summary.cpu_source) {
            (false, Source::Ebpf) => {
                // Short-lived processes appear by name, with exact CPU.
                let short = summary
                    .top_cpu_processes
                    .iter()
                    .filter(|p| p.exited && p.name == "bash")
                    .count();
                assert!(short >= 3, "{:?}", summary.top_cpu_processes);
            }
            (false, other) => assert!(!ebpf_required(), "eBPF required but source is {other:?}"),
            (true, s) => assert_ne!(s, Source::Ebpf),
        }
        assert_eq!(summary.containers[0].name, "bash");
        summary.validate().unwrap();
    }
}

#[test]
fn run_exits_with_the_command_status() {
    let out = run_collector(&["run", "--", "sh", "-c", "exit 7"], &[]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("exited with status 7"), "{stdout}");
    let out = run_collector(&["run", "--", "sh", "-c", "kill -TERM $$"], &[]);
    assert_eq!(out.status.code(), Some(128 + 15));
    let out = run_collector(&["run", "--", "/nonexistent/program"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("starting"));
}

#[test]
fn bad_environment_is_a_clear_error() {
    let out = run_collector(
        &["run", "--", "true"],
        &[("CGROUP_LIMITS", r#"{"runner":{"memory":"12Qi"}}"#)],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"container "runner""#) && stderr.contains("12Qi"),
        "{stderr}"
    );
    let out = run_collector(
        &["run", "--", "true"],
        &[("CGROUP_PROCESS_MAP", "{not json")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CGROUP_PROCESS_MAP"));
    let out = run_collector(&["--interval", "0s"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

const IDENTITY: [(&str, &str); 5] = [
    ("GITHUB_REPOSITORY_OWNER", "my-org"),
    ("GITHUB_REPOSITORY", "my-org/my-repo"),
    ("GITHUB_WORKFLOW", "ci.yml"),
    ("GITHUB_JOB", "build"),
    ("GITHUB_RUN_ID", "run-123"),
];

#[test]
fn pushed_summary_is_accepted_and_queryable() {
    let db = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(db.path());
    let token = receiver.push_token(
        r#"{"organization":"my-org","repository":"my-repo","workflow":"ci.yml","job":"build"}"#,
    );
    let endpoint = receiver.url("/api/v1/metrics");
    let out = run_collector(
        &[
            "run",
            "--push-endpoint",
            &endpoint,
            "--push-token",
            &token,
            "--interval",
            "200ms",
            "--",
            "bash",
            "-c",
            "i=0; while ((i<200000)); do ((i++)); done",
        ],
        &IDENTITY,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("summary pushed"), "{stderr}");

    let answer = receiver.http(
        "GET",
        "/api/v1/metrics/repo/my-org/my-repo/ci.yml/build",
        Some(READ_TOKEN),
        None,
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    let runs: Vec<StoredRun> = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(
        (
            run.organization.as_str(),
            run.repository.as_str(),
            run.run_id.as_str()
        ),
        ("my-org", "my-org/my-repo", "run-123")
    );
    run.payload.validate().unwrap();
    let c = &run.payload.containers[0];
    assert_eq!(c.name, "bash");
    assert!(c.cpu_seconds > 0.05, "{c:?}");
    assert!(c.memory_bytes.peak > 0.0);
    assert!(run.payload.sample_count >= 1);
    assert!(
        run.payload
            .collector
            .as_ref()
            .is_some_and(|i| i.mode == "run")
    );

    // A token for another job cannot push this identity: the summary goes to a file instead.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("summary.json");
    let wrong = receiver.push_token(
        r#"{"organization":"my-org","repository":"my-repo","workflow":"ci.yml","job":"test"}"#,
    );
    let out = run_collector(
        &[
            "run",
            "--push-endpoint",
            &endpoint,
            "--push-token",
            &wrong,
            "--summary-file",
            file.to_str().unwrap(),
            "--",
            "true",
        ],
        &IDENTITY,
    );
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("403"), "{stderr}");
    let saved: MetricsPush = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(saved.execution.job, "build");
}

#[test]
fn sidecar_writes_the_summary_when_the_receiver_is_down_and_second_signal_exits() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.json");
    // A receiver that was there and is gone: nothing listens on its port.
    let mut receiver = Receiver::start(&dir.path().join("db"));
    let endpoint = receiver.url("/api/v1/metrics");
    receiver.sigkill();
    let spawn = |timeout: &str| {
        Proc::spawn(
            collector()
                .args([
                    "--interval",
                    "200ms",
                    "--push-endpoint",
                    &endpoint,
                    "--push-timeout",
                    timeout,
                    "--summary-file",
                ])
                .arg(&file)
                .envs(IDENTITY)
                .stdout(Stdio::null()),
        )
    };
    // First: one signal after three samples, a short push deadline, then the file.
    let mut child = spawn("1s");
    child.wait_for_lines("sample", 3, Duration::from_secs(30));
    child.signal(libc::SIGTERM);
    let (status, stderr) = child.wait(Duration::from_secs(30));
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("summary written to"), "{stderr}");
    let saved: MetricsPush = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert!(
        saved.summary.sample_count >= 3,
        "{:?}",
        saved.summary.sample_count
    );
    assert!(!saved.summary.containers.is_empty());
    assert_eq!(saved.execution.run_id, "run-123");
    saved.summary.validate().unwrap();

    // Then: a long push deadline, interrupted by a second signal once the push retries.
    std::fs::remove_file(&file).unwrap();
    let mut child = spawn("60s");
    child.wait_for_lines("sample", 1, Duration::from_secs(30));
    child.signal(libc::SIGTERM);
    child.wait_for_lines("push failed", 1, Duration::from_secs(30));
    let started = Instant::now();
    child.signal(libc::SIGINT);
    let (status, stderr) = child.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(128 + libc::SIGINT), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        !file.exists(),
        "the second signal exits without the summary"
    );
}
