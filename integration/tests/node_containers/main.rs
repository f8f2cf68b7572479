//! Real containers as CI jobs under one `collector node`: podman with runc runs a busybox
//! root filesystem (`--rootfs`, so no image registry is needed), each container a job with
//! its own `GITHUB_*` variables, several at once, over several rounds. Every job gets exactly
//! one summary, with its identity and its one container, and CPU within 1 % of the
//! container cgroup's own total.
//!
//! How podman runs here (`cargo xtask test` installs `podman runc busybox-static`):
//! - runc, because crun refuses hybrid cgroup hosts; the cgroupfs manager (CI machines have
//!   no systemd), under a cgroup parent of the test's own, so cleanup knows what to remove;
//! - podman's state in the test's temporary directory (`--root`, `--runroot`, `--tmpdir`), with
//!   the vfs storage driver, which works on any file system; `--network none`;
//! - open files and processes limited to at most 1024: podman's defaults (1048576) exceed a
//!   low hard limit, which runc cannot raise (`error setting rlimits for ready process`).
//!
//! The truth: each job's last command writes `/ctl/done` and then blocks reading a FIFO; the
//! test reads the container cgroup's `cpu.stat` `usage_usec` (and, on hybrid hosts,
//! `cpuacct.usage`) while the cgroup still exists, then releases the job. What it does after
//! that (wake up, exit) costs microseconds.
//!
//! A second test starts a job before the collector: a job already running when the collector
//! starts (a DaemonSet scheduled after the runner pods, a collector started right before its
//! jobs) is counted whole, from its cgroup's own counter.

#[path = "../common/mod.rs"]
mod common;
mod rig;

use std::{
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::*;
use rig::*;
use summary::StoredRun;
use testkit::{READ_TOKEN, Receiver, wait_for, wait_until};

const ORG: &str = "podman-org";
const WILDCARD: &str = r#"{"organization":"podman-org","repository":"*","workflow":"*","job":"*"}"#;
/// Jobs running at once in each round, and rounds.
const JOBS: usize = 4;
const ROUNDS: usize = 5;
/// Largest accepted |collector / cgroup - 1|.
const TOLERANCE: f64 = 0.01;
/// Long enough for anything here on a loaded 2-core machine; conditions end waits early.
const DEADLINE: Duration = Duration::from_secs(90);

/// A node collector sees every process on the machine, and podman takes locks: one test at
/// a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn podman_containers_are_measured_as_jobs() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(rig) = Rig::new() else { return };
    let collector = rig.node_collector();

    let mut jobs: Vec<Job> = Vec::new();
    for round in 0..ROUNDS {
        let first = jobs.len();
        for slot in 0..JOBS {
            // 2.5 to 4 s of wall time each; every other job has a second busy process.
            let job = Job::start(&rig, round, slot, 250 + 50 * slot as u32, slot % 2 == 1);
            if jobs.is_empty() {
                println!("container cgroups: {}", job.cgroup.describe());
            }
            jobs.push(job);
        }
        let round_jobs = &mut jobs[first..];
        wait_until(
            DEADLINE,
            &format!("the jobs of round {round} to be done and released"),
            || {
                round_jobs.iter_mut().for_each(Job::poll);
                round_jobs.iter().all(|j| j.released)
            },
        );
        for job in round_jobs.iter() {
            rig.podman.wait_exited(&job.name);
            rig.podman.run(&["rm", &job.name]);
        }
    }

    // Every summary, then exactly one each once nothing is left to push.
    let runs: Vec<StoredRun> = jobs.iter().map(|job| job.summary(&rig.receiver)).collect();
    wait_until(DEADLINE, "the spool to empty", || {
        count_files(&rig.spool, "json") == 0
    });
    let counts: Vec<usize> = jobs.iter().map(|j| j.runs(&rig.receiver).len()).collect();

    let mut problems = Vec::new();
    println!(
        "{:<10} {:<20} {:>12} {:>12} {:>8} {:>14}  source",
        "job", "container", "collector s", "cgroup s", "ratio", "cpuacct s (v1)"
    );
    for ((job, run), count) in jobs.iter().zip(&runs).zip(&counts) {
        problems.extend(job.check(run, *count, false));
    }
    let log = collector.log();
    // How each job's CPU was counted (eBPF health included): the first thing to read when
    // a ratio is off.
    if std::env::var_os("NODE_CONTAINERS_VERBOSE").is_some() {
        log.lines()
            .filter(|l| l.contains("CPU of"))
            .for_each(|l| println!("{l}"));
    }
    if log.contains("panicked") {
        problems.push("the collector panicked".to_owned());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_job_running_before_the_collector_starts_is_counted_whole() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(rig) = Rig::new() else { return };
    let mut job = Job::start(&rig, 0, 9, 500, false);
    println!("container cgroups: {}", job.cgroup.describe());
    // Well under way (a third of a second of CPU) before the collector is.
    wait_until(DEADLINE, "the job to use 0.3 s of CPU", || {
        job.cgroup.cpu_ns().truth().unwrap_or(0) >= 300_000_000
    });
    let before = job.cgroup.cpu_ns().truth().unwrap_or(0);
    let collector = rig.node_collector();
    wait_until(DEADLINE, "the job to be done and released", || {
        job.poll();
        job.released
    });
    rig.podman.wait_exited(&job.name);
    rig.podman.run(&["rm", &job.name]);
    let run = job.summary(&rig.receiver);
    wait_until(DEADLINE, "the spool to empty", || {
        count_files(&rig.spool, "json") == 0
    });
    let count = job.runs(&rig.receiver).len();
    println!(
        "{:.4} s of CPU before the collector started",
        before as f64 / 1e9
    );
    let problems = job.check(&run, count, true);
    assert!(
        problems.is_empty(),
        "{}\n--- collector log ---\n{}",
        problems.join("\n"),
        collector.log()
    );
}
