//! End to end, following the seed README's "Local" section command for command with the real
//! binaries and curl: start the receiver, issue a push token, run the collector with it, stop
//! the collector (it pushes), query with the read token, check the payload.
//!
//! Differences from the seed's text, each forced by something the seed did not have to
//! handle: port 0 on loopback instead of :8080 (tests run in parallel; the receiver says
//! which port it got), and secrets of at least 16 bytes (the receiver refuses weak ones; the
//! seed's `my-hmac-key` is 11).

mod common;

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use common::{Proc, collector};

use summary::StoredRun;

const READ_TOKEN: &str = "my-secret-token-0123";
const HMAC_KEY: &str = "my-hmac-key-0123456789";

fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl is installed (cargo xtask test installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn seed_local_section_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    // ./receiver --addr=:8080 --db=metrics.db --read-token=my-secret-token --hmac-key=my-hmac-key
    let receiver = testkit::Receiver::builder(dir.path())
        .arg(format!("--read-token={READ_TOKEN}"))
        .arg(format!("--hmac-key={HMAC_KEY}"))
        .start();
    let base = format!("http://localhost:{}", receiver.port());
    let (status, body) = curl(&[&format!("{base}/healthz")]);
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));

    // PUSH_TOKEN=$(curl -s -X POST http://localhost:8080/api/v1/token -H "Authorization: Bearer ..."
    //   -H "Content-Type: application/json" -d '{...}' | jq -r .token)
    let (status, body) = curl(&[
        "-X",
        "POST",
        &format!("{base}/api/v1/token"),
        "-H",
        &format!("Authorization: Bearer {READ_TOKEN}"),
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"organization":"my-org","repository":"my-repo","workflow":"ci.yml","job":"build"}"#,
    ]);
    assert_eq!(status, 200, "{body}");
    let push_token = serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();

    // ./collector --interval=2s --top=10 --push-endpoint=http://localhost:8080/api/v1/metrics
    //   --push-token=$PUSH_TOKEN
    let mut collector = Proc::spawn(
        collector()
            .current_dir(dir.path())
            .args([
                "--interval=2s",
                "--top=10",
                &format!("--push-endpoint={base}/api/v1/metrics"),
            ])
            .arg(format!("--push-token={push_token}"))
            .envs([
                ("GITHUB_REPOSITORY_OWNER", "my-org"),
                ("GITHUB_REPOSITORY", "my-org/my-repo"),
                ("GITHUB_WORKFLOW", "ci.yml"),
                ("GITHUB_JOB", "build"),
                ("GITHUB_RUN_ID", "run-123"),
            ])
            .stdout(Stdio::null()),
    );
    // ... wait for data collection (three samples), then trigger the shutdown summary.
    collector.wait_for_lines("sample", 3, Duration::from_secs(30));
    collector.signal(libc::SIGTERM);
    let (status, stderr) = collector.wait(Duration::from_secs(30));
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("summary pushed"), "{stderr}");

    // curl -H "Authorization: Bearer my-secret-token" http://localhost:8080/api/v1/metrics/repo/my-org/my-repo/ci.yml/build
    let (status, body) = curl(&[
        "-H",
        &format!("Authorization: Bearer {READ_TOKEN}"),
        &format!("{base}/api/v1/metrics/repo/my-org/my-repo/ci.yml/build"),
    ]);
    assert_eq!(status, 200, "{body}");

    // The seed's "API Response" shape, field by field.
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let run = &json.as_array().expect("an array of runs")[0];
    for (field, value) in [
        ("organization", "my-org"),
        ("repository", "my-org/my-repo"),
        ("workflow", "ci.yml"),
        ("job", "build"),
        ("run_id", "run-123"),
    ] {
        assert_eq!(run[field], value, "{field}");
    }
    assert!(run["id"].is_u64() && run["received_at"].is_string());
    let payload = &run["payload"];
    for field in [
        "start_time",
        "end_time",
        "duration_seconds",
        "sample_count",
        "cpu_total_percent",
        "mem_used_bytes",
        "containers",
        "top_cpu_processes",
        "top_mem_processes",
    ] {
        assert!(!payload[field].is_null(), "payload.{field} missing");
    }
    for stat in ["peak", "p99", "p95", "p75", "p50", "avg"] {
        assert!(
            payload["cpu_total_percent"][stat].is_number(),
            "cpu_total_percent.{stat}"
        );
        assert!(
            payload["mem_used_bytes"][stat].is_number(),
            "mem_used_bytes.{stat}"
        );
    }
    assert!(
        payload["sample_count"].as_u64().unwrap() >= 2,
        "{}",
        payload["sample_count"]
    );
    assert!(payload["duration_seconds"].as_f64().unwrap() >= 4.0);
    let containers = payload["containers"].as_array().unwrap();
    assert!(!containers.is_empty());
    for c in containers {
        assert!(
            c["name"].is_string()
                && c["cpu_cores"]["peak"].is_number()
                && c["memory_bytes"]["avg"].is_number(),
            "{c}"
        );
    }
    let top = payload["top_cpu_processes"].as_array().unwrap();
    assert!(!top.is_empty() && top.len() <= 10);
    for p in top {
        assert!(
            p["pid"].is_i64()
                && p["name"].is_string()
                && p["peak_cpu_percent"].is_number()
                && p["peak_mem_rss_bytes"].is_u64(),
            "{p}"
        );
    }
    // Through the shared types, too.
    let runs: Vec<StoredRun> = serde_json::from_value(json).unwrap();
    runs[0].payload.validate().unwrap();
    // The timeline went to the receiver and came back: every container that has one.
    let timeline = runs[0].payload.timeline.as_ref().expect("a timeline");
    let bytes = serde_json::to_string(timeline).unwrap().len();
    println!(
        "timeline: {} containers, {} points of {} s, {bytes} bytes of JSON",
        timeline.containers.len(),
        timeline
            .containers
            .iter()
            .map(|c| c.len())
            .max()
            .unwrap_or(0),
        timeline.bucket_seconds
    );
    assert!(timeline.containers.iter().all(|c| !c.is_empty()));

    // The Docker Compose section's query form: the repository percent-encoded.
    let (status, body) = curl(&[
        "-H",
        &format!("Authorization: Bearer {READ_TOKEN}"),
        &format!("{base}/api/v1/metrics/repo/my-org/my-org%2Fmy-repo/ci.yml/build"),
    ]);
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Vec<StoredRun>>(&body).unwrap().len(),
        1
    );
    // And the read token is required.
    assert_eq!(
        curl(&[&format!(
            "{base}/api/v1/metrics/repo/my-org/my-repo/ci.yml/build"
        )])
        .0,
        401
    );
}
