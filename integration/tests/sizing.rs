//! Sizing end to end: a real receiver (127.0.0.1:0, a real redb file) with pushed summaries
//! answers `GET /api/v1/sizing/repo/...`, and `collector size` on the same summaries as
//! local files gives the same recommendation.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use summary::{
    Accumulator, ContainerSummary, Execution, Histograms, Limits, MetricsPush, RunSummary,
    SCALE_BYTES, SCALE_CORES, hist,
};
use testkit::{JsonResponse, READ_TOKEN, Receiver};

mod common;

const MIB: u64 = 1 << 20;

fn container(name: &str, cores: f64, peak: u64, limits: Limits, oom: u64) -> ContainerSummary {
    let mut cpu = Accumulator::new(SCALE_CORES);
    let mut mem = Accumulator::new(SCALE_BYTES);
    for i in 0..100 {
        // 95 samples around `cores`, 5 bursts at twice it.
        cpu.record(if i % 20 == 0 { 2.0 * cores } else { cores });
        mem.record(peak as f64 * (0.5 + (i % 10) as f64 / 20.0));
    }
    let mut h = Histograms::new();
    h.insert(hist::CPU_CORES.to_owned(), cpu.encode());
    h.insert(hist::MEMORY_BYTES.to_owned(), mem.encode());
    ContainerSummary {
        name: name.to_owned(),
        cpu_cores: cpu.stats(),
        memory_bytes: mem.stats(),
        cpu_seconds: cores * 100.0,
        memory_peak_bytes: Some(peak),
        oom_kills: oom,
        limits: Some(limits),
        histograms: Some(h),
        ..Default::default()
    }
}

/// Run `i` of 8, started `minutes_ago`.
fn run(i: u64, minutes_ago: u64) -> RunSummary {
    let start = SystemTime::now() - Duration::from_secs(minutes_ago * 60);
    let ms = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let end = start + Duration::from_secs(100);
    RunSummary {
        start_time: summary::time::format_unix_millis(ms(start)),
        end_time: summary::time::format_unix_millis(ms(end)),
        duration_seconds: 100.0,
        sample_count: 100,
        containers: vec![
            container(
                "build",
                1.0,
                (1000 + 10 * i) * MIB,
                Limits {
                    cpu_cores: Some(4.0),
                    memory_bytes: Some(4096 * MIB),
                },
                0,
            ),
            // The sidecar was OOM-killed at its 256 MiB limit in run 7.
            container(
                "cache",
                0.1,
                if i == 7 { 256 * MIB } else { 150 * MIB },
                Limits {
                    cpu_cores: Some(0.5),
                    memory_bytes: Some(256 * MIB),
                },
                u64::from(i == 7),
            ),
        ],
        ..Default::default()
    }
}

fn execution(i: u64) -> Execution {
    Execution {
        organization: "acme".into(),
        repository: "acme/app".into(),
        workflow: "ci.yml".into(),
        job: "build".into(),
        run_id: format!("run-{i}"),
        run_attempt: "1".into(),
    }
}

#[test]
fn sizing_endpoint_and_collector_size_agree() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::builder(dir.path())
        .arg("--runner-classes=small=2c/2Gi,medium=4c/8Gi")
        .start();
    let token = receiver.push_token(
        r#"{"organization":"acme","repository":"app","workflow":"ci.yml","job":"build"}"#,
    );
    // An old run outside a one-hour window, then eight recent ones.
    let mut pushes = vec![MetricsPush {
        execution: execution(99),
        summary: run(99, 120),
    }];
    pushes.extend((0..8).map(|i| MetricsPush {
        execution: execution(i),
        summary: run(i, 50 - i * 5),
    }));
    let files = tempfile::tempdir().unwrap();
    for (n, p) in pushes.iter().enumerate() {
        let body = serde_json::to_vec(p).unwrap();
        let r = receiver.http("POST", "/api/v1/metrics", Some(&token), Some(&body));
        assert_eq!(r.status, 201, "{}", r.text());
        if n > 0 {
            std::fs::write(files.path().join(format!("{n}.json")), &body).unwrap();
        }
    }
    let path = "/api/v1/sizing/repo/acme/app/ci.yml/build";
    assert_eq!(receiver.http("GET", path, None, None).status, 401);
    let bad = receiver.http("GET", &format!("{path}?runs=0"), Some(READ_TOKEN), None);
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(bad.text().contains("runs must be"), "{}", bad.text());

    let r = receiver.http(
        "GET",
        &format!("{path}?window=1h&buffer=15&cpu_percentile=p95"),
        Some(READ_TOKEN),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = r.json();
    println!("{}", serde_json::to_string_pretty(&answer).unwrap());
    assert_eq!(answer["job"], "build");
    assert_eq!(answer["window_seconds"], 3600);
    // The run of two hours ago is outside the window.
    assert_eq!(answer["runs_considered"], 8);
    assert_eq!(answer["confidence"], "confident");
    let containers = answer["containers"].as_array().unwrap();
    let by = |name: &str| {
        containers
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
            .clone()
    };
    let build = by("build");
    // Largest true peak 1070 MiB (run-7) × 1.15 = 1230.5 MiB, up to 32 MiB steps: 1248Mi.
    assert_eq!(build["memory"]["peak_run_id"], "run-7");
    assert_eq!(build["memory"]["true_peak"], true);
    assert_eq!(build["quantities"]["limits"]["memory"], "1248Mi");
    assert_eq!(build["quantities"]["requests"]["memory"], "1248Mi");
    // p95 of the merged runs is 1 core (5 % of samples burst to 2): 1.15 cores.
    assert_eq!(build["quantities"]["requests"]["cpu"], "1150m");
    assert!(build["quantities"]["limits"].get("cpu").is_none());
    // The OOM-killed sidecar is raised above the limit that killed it: 256 MiB × 1.5.
    let cache = by("cache");
    assert_eq!(cache["memory"]["oom_killed_runs"], 1);
    assert_eq!(cache["quantities"]["limits"]["memory"], "384Mi");
    assert_eq!(answer["runner_class"]["name"], "small");
    let kube = answer["kubernetes"].as_str().unwrap();
    assert!(
        kube.contains("  - name: build\n    resources:\n      requests:\n        cpu: \"1150m\""),
        "{kube}"
    );
    let explanation = build["explanation"].to_string();
    assert!(
        explanation.contains("run-7") && explanation.contains("frees"),
        "{explanation}"
    );

    // The same summaries as local files.
    let mut args: Vec<String> = vec!["size".into(), "--json".into()];
    args.extend(
        (1..pushes.len()).map(|n| files.path().join(format!("{n}.json")).display().to_string()),
    );
    args.push("--runner-classes=small=2c/2Gi,medium=4c/8Gi".into());
    let out = common::collector().args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let local: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(local["containers"], answer["containers"]);
    assert_eq!(local["pod"], answer["pod"]);
    assert_eq!(local["kubernetes"], answer["kubernetes"]);
    // And as a report for people.
    let human: Vec<&String> = args.iter().filter(|a| *a != "--json").collect();
    let out = common::collector().args(&human).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("build") && text.contains("1248Mi") && text.contains("oom×1"),
        "{text}"
    );
}
