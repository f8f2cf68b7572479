//! The live metrics against a real Prometheus (Debian's `prometheus` package), started on
//! loopback by the test: it scrapes the collector's and the receiver's `/metrics`; after a
//! workload runs in a cgroup of its own, PromQL returns its series with plausible values, the
//! series disappear after the container ends, and `promtool check metrics` passes on both.
//!
//! Needs root (cgroups), `prometheus`, `promtool` and `curl` (`cargo xtask test` installs
//! them). Under `CI=true` a missing piece fails the test; elsewhere it is skipped with the
//! reason.

mod common;

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use common::{Killed, cgroup2_mount, free_port, wait_for};

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

fn missing_prerequisite() -> Option<String> {
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root to create cgroups".into());
    }
    for tool in ["prometheus", "promtool", "curl"] {
        if Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            return Some(format!(
                "{tool} is not installed (apt-get install prometheus curl)"
            ));
        }
    }
    None
}

#[test]
fn prometheus_scrapes_collector_and_receiver() {
    if let Some(why) = missing_prerequisite() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "required in CI: {why}"
        );
        eprintln!("skipping the Prometheus test: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (receiver_port, collector_port, prom_port) = (free_port(), free_port(), free_port());

    let receiver_bin = common::receiver_binary();
    let _receiver = Killed(
        Command::new(&receiver_bin)
            .arg(format!("--addr=127.0.0.1:{receiver_port}"))
            .arg(format!("--db={}", dir.path().join("m.db").display()))
            .args([
                "--read-token=prom-test-read-token",
                "--hmac-key=prom-test-hmac-key-000",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let cgroup = cgroup2_mount().join(format!("prom-test-{}", std::process::id()));
    let _ = std::fs::remove_dir(&cgroup);
    std::fs::create_dir(&cgroup).unwrap();
    let _cleanup = common::CgroupTree(cgroup.clone());
    let container = format!("/prom-test-{}", std::process::id());

    let _collector = Killed(
        Command::new(env!("CARGO_BIN_EXE_collector"))
            .args([
                "--interval=500ms",
                &format!("--metrics-addr=127.0.0.1:{collector_port}"),
            ])
            .envs([
                ("GITHUB_REPOSITORY", "prom-org/prom-repo"),
                ("GITHUB_WORKFLOW", "ci.yml"),
                ("GITHUB_JOB", "build"),
                ("GITHUB_RUN_ID", "42"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

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
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for("both targets up", Duration::from_secs(30), || {
        let up = query(prom_port, "sum(up)");
        (up.first().map(value) == Some(2.0)).then_some(())
    });

    // A workload in its own cgroup: about 4 s of one core.
    let procs = cgroup.join("cgroup.procs");
    let workload = Command::new("sh")
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
    let cpu = wait_for(
        "the workload's CPU in Prometheus",
        Duration::from_secs(30),
        || {
            let r = query(
                prom_port,
                &format!("ci_collector_container_cpu_seconds_total{selector}"),
            );
            r.first().map(value).filter(|v| *v >= 2.0)
        },
    );
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
    Killed(workload).0.wait().ok();
    std::fs::remove_dir(&cgroup).ok();
    wait_for(
        "the ended container's series to disappear",
        Duration::from_secs(30),
        || {
            query(
                prom_port,
                &format!("ci_collector_container_cpu_seconds_total{selector}"),
            )
            .is_empty()
            .then_some(())
        },
    );

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
