//! The live metrics against a real Prometheus (Debian's `prometheus` package), started on
//! loopback by the test: it scrapes the collector's and the receiver's `/metrics`; after a
//! workload runs in a cgroup of its own, PromQL returns its series with plausible values, the
//! series disappear after the container ends, an OOM kill in a memory-limited cgroup moves
//! `ci_collector_container_oom_kills_total`, and `promtool check metrics` passes on both.
//!
//! Needs root (cgroups), `prometheus`, `promtool` and `curl` (`cargo xtask test` installs
//! them). Under `CI=true` a missing piece fails the test; elsewhere it is skipped with the
//! reason.

mod common;

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use common::{CgroupTree, Proc, cgroup_v1_mount, cgroup2_mount, collector, listening_port};
use testkit::{Receiver, wait_for};

const DEADLINE: Duration = Duration::from_secs(60);

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Result vector of an instant PromQL query.
fn query(prometheus: u16, promql: &str) -> Vec<serde_json::Value> {
    let body = curl(&[
        &format!("http://127.0.0.1:{prometheus}/api/v1/query"),
        "--data-urlencode",
        &format!("query={promql}"),
    ]);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn value(sample: &serde_json::Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn prerequisites() -> Result<(), String> {
    for tool in ["prometheus", "promtool", "curl", "python3"] {
        if Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            return Err(format!(
                "{tool} is not installed (apt-get install prometheus curl python3)"
            ));
        }
    }
    Ok(())
}

/// A cgroup named `name` with a memory limit: in the v2 hierarchy, and on hybrid hosts also
/// in the v1 memory controller (where the limit is enforced there). Returns the directories
/// to join, each removed when the test ends.
fn memory_limited_cgroup(name: &str, limit: u64) -> Vec<CgroupTree> {
    let v2 = cgroup2_mount().join(name);
    std::fs::create_dir(&v2).unwrap();
    let mut dirs = vec![CgroupTree(v2.clone())];
    match cgroup_v1_mount("memory") {
        Some(v1) => {
            let v1 = v1.join(name);
            std::fs::create_dir(&v1).unwrap();
            std::fs::write(v1.join("memory.limit_in_bytes"), limit.to_string()).unwrap();
            dirs.push(CgroupTree(v1));
        }
        None => {
            let parent_controllers = cgroup2_mount().join("cgroup.subtree_control");
            let _ = std::fs::write(parent_controllers, "+memory");
            std::fs::write(v2.join("memory.max"), limit.to_string()).unwrap();
            let _ = std::fs::write(v2.join("memory.swap.max"), "0");
        }
    }
    dirs
}

#[test]
fn prometheus_scrapes_collector_and_receiver() {
    if !testkit::require_root("creates cgroups")
        || !testkit::require("runs Prometheus", prerequisites())
    {
        return;
    }
    println!("cgroup layout: {}", common::cgroup_layout());
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(&dir.path().join("receiver"));
    let receiver_port = receiver.port();

    let cgroup = cgroup2_mount().join(format!("prom-test-{}", std::process::id()));
    let _ = std::fs::remove_dir(&cgroup);
    std::fs::create_dir(&cgroup).unwrap();
    let _cleanup = CgroupTree(cgroup.clone());
    let container = format!("/prom-test-{}", std::process::id());

    let collector = Proc::spawn(
        collector()
            .args(["--interval=500ms", "--metrics-addr=127.0.0.1:0"])
            .envs([
                ("GITHUB_REPOSITORY", "prom-org/prom-repo"),
                ("GITHUB_WORKFLOW", "ci.yml"),
                ("GITHUB_JOB", "build"),
                ("GITHUB_RUN_ID", "42"),
            ])
            .stdout(Stdio::null()),
    );
    let collector_port = listening_port(collector.child.id(), DEADLINE);

    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
             - job_name: collector\n    static_configs: [{{targets: ['127.0.0.1:{collector_port}']}}]\n  \
             - job_name: receiver\n    static_configs: [{{targets: ['127.0.0.1:{receiver_port}']}}]\n"
        ),
    )
    .unwrap();
    let prometheus = Proc::spawn(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg("--web.listen-address=127.0.0.1:0")
            .stdout(Stdio::null()),
    );
    let prom_port = listening_port(prometheus.child.id(), DEADLINE);
    wait_for(DEADLINE, "both targets up", || {
        let up = query(prom_port, "sum(up)");
        (up.first().map(value) == Some(2.0)).then_some(())
    });

    // A workload in its own cgroup: about 4 s of one core.
    let procs = cgroup.join("cgroup.procs");
    let mut workload = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {} && exec bash -c 'end=$((SECONDS+4)); while ((SECONDS<end)); do :; done'",
            procs.display()
        ))
        .spawn()
        .unwrap();
    let selector = format!(
        r#"{{container="{container}",repository="prom-org/prom-repo",ci_job="build",run_id="42"}}"#
    );
    let cpu = wait_for(DEADLINE, "the workload's CPU in Prometheus", || {
        let r = query(
            prom_port,
            &format!("ci_collector_container_cpu_seconds_total{selector}"),
        );
        r.first().map(value).filter(|v| *v >= 2.0)
    });
    println!("cpu seconds seen by Prometheus: {cpu:.2}");
    assert!(cpu <= 10.0, "implausible CPU {cpu}");
    let mem = query(
        prom_port,
        &format!("ci_collector_container_memory_bytes{selector}"),
    );
    assert!(
        mem.first()
            .map(value)
            .is_some_and(|m| m > 100_000.0 && m < 1e9),
        "{mem:?}"
    );
    let rate = query(
        prom_port,
        &format!("rate(ci_collector_container_cpu_seconds_total{selector}[3s])"),
    );
    assert!(
        rate.first().map(value).is_some_and(|r| r > 0.3 && r < 2.5),
        "cores {rate:?}"
    );
    assert!(!query(prom_port, "ci_collector_samples_total").is_empty());
    assert!(
        !query(prom_port, r#"{job="receiver",__name__=~"receiver_.*"}"#).is_empty(),
        "receiver metrics scraped"
    );

    // After the container ends its series go away.
    workload.wait().unwrap();
    std::fs::remove_dir(&cgroup).ok();
    wait_for(
        DEADLINE,
        "the ended container's series to disappear",
        || {
            query(
                prom_port,
                &format!("ci_collector_container_cpu_seconds_total{selector}"),
            )
            .is_empty()
            .then_some(())
        },
    );

    // An OOM kill: a process that touches 200 MB in a 64 MiB cgroup is killed; the shell
    // that started it lives on, so the container (and its series) stays.
    let oom_name = format!("prom-oom-{}", std::process::id());
    let oom_cgroups = memory_limited_cgroup(&oom_name, 64 << 20);
    let joins: String = oom_cgroups
        .iter()
        .map(|d| format!("echo $$ > {}/cgroup.procs && ", d.0.display()))
        .collect();
    let mut oom_workload = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{joins}python3 -c 'x = bytearray(b\"x\" * (200 << 20))'; exec sleep 30"
        ))
        .spawn()
        .unwrap();
    let oom_selector = format!(r#"{{container="/{oom_name}",run_id="42"}}"#);
    let kills = wait_for(DEADLINE, "the OOM kill in Prometheus", || {
        let r = query(
            prom_port,
            &format!("ci_collector_container_oom_kills_total{oom_selector}"),
        );
        r.first().map(value).filter(|v| *v >= 1.0)
    });
    println!("OOM kills seen by Prometheus: {kills}");
    assert_eq!(kills, 1.0);
    let _ = oom_workload.kill();
    oom_workload.wait().unwrap();

    // promtool accepts both expositions as a plain scraper sees them.
    for (name, port) in [("collector", collector_port), ("receiver", receiver_port)] {
        let text = curl(&[&format!("http://127.0.0.1:{port}/metrics")]);
        let mut check = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        check
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = check.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics on the {name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
