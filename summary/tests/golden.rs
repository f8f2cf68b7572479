//! Golden-file test of the query answer's wire format: a full `StoredRun` with every
//! field set must serialize byte for byte to `fixtures/stored_run.json` and parse back
//! to the same value. Set `UPDATE_GOLDEN=1` to rewrite the fixture after a deliberate,
//! additive change.

use summary::behind::{self, Behind, Cause, HolderKind};
use summary::starvation::{
    CommandSummary, DiskIo, MemoryDetail, Pressure, RunQueueWait, Stall, Throttling, Verdict,
};
use summary::timeline::{ContainerTimeline, Timeline};
use summary::{
    Accumulator, CollectorInfo, ContainerSummary, Limits, NetworkSummary, ProcessSummary,
    RunSummary, SCALE_BYTES, SCALE_CORES, SCALE_PERCENT, SCHEMA_VERSION, Source, Stats, StoredRun,
};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/stored_run.json"
);

fn stats(base: f64) -> Stats {
    Stats {
        peak: base * 2.0,
        p99: base * 1.875,
        p95: base * 1.75,
        p75: base * 1.5,
        p50: base,
        avg: base * 1.125,
    }
}

fn expected() -> StoredRun {
    let mut cpu = Accumulator::new(SCALE_CORES);
    let mut mem = Accumulator::new(SCALE_BYTES);
    let mut total = Accumulator::new(SCALE_PERCENT);
    for i in 0..11u32 {
        cpu.record(f64::from(i) * 0.25);
        mem.record(f64::from(18_000_000 + i * 4096));
        total.record(f64::from(i) * 7.5);
    }
    StoredRun {
        id: 1,
        organization: "my-org".into(),
        repository: "my-org/my-repo".into(),
        workflow: "ci.yml".into(),
        job: "build".into(),
        run_id: "run-123".into(),
        run_attempt: "1".into(),
        received_at: "2026-02-06T14:30:23.056Z".into(),
        payload: RunSummary {
            schema_version: SCHEMA_VERSION,
            start_time: "2026-02-06T14:30:02.185Z".into(),
            end_time: "2026-02-06T14:30:22.190Z".into(),
            duration_seconds: 20.005,
            sample_count: 11,
            // Backed by the histogram below: validation checks that they agree.
            cpu_total_percent: total.stats(),
            mem_used_bytes: stats(1_073_741_824.0),
            cpu_source: Source::Ebpf,
            containers: vec![
                ContainerSummary {
                    name: "runner".into(),
                    cpu_cores: cpu.stats(),
                    memory_bytes: mem.stats(),
                    cpu_seconds: 27.5,
                    cpu_source: Source::Ebpf,
                    memory_source: Source::Cgroup,
                    memory_peak_bytes: Some(18_567_168),
                    oom_kills: 1,
                    network: Some(NetworkSummary {
                        namespace: "net:[4026531840]".into(),
                        rx_bytes: 1_000_000,
                        tx_bytes: 250_000,
                        rx_bytes_per_sec: stats(50_000.0),
                        tx_bytes_per_sec: stats(12_500.0),
                    }),
                    limits: Some(Limits {
                        cpu_cores: Some(2.0),
                        memory_bytes: Some(1 << 30),
                    }),
                    cpu_to_limit: Some(stats(0.5)),
                    memory_to_limit: Some(stats(0.25)),
                    histograms: Some(
                        [
                            ("cpu_cores".to_string(), cpu.encode()),
                            ("memory_bytes".to_string(), mem.encode()),
                        ]
                        .into(),
                    ),
                    cpu_throttling: Some(Throttling {
                        quota_cores: Some(2.0),
                        periods: 200,
                        throttled_periods: 40,
                        throttled_seconds: 1.5,
                        throttled_period_share: 0.2,
                        bursts: Some(0),
                        burst_seconds: Some(0.0),
                    }),
                    pressure: Some(Pressure {
                        cpu: Some(Stall {
                            some_seconds: 3.0,
                            some_share: 0.15,
                            full_seconds: Some(1.0),
                            full_share: Some(0.05),
                        }),
                        memory: Some(Stall {
                            some_seconds: 0.5,
                            some_share: 0.025,
                            full_seconds: Some(0.25),
                            full_share: Some(0.0125),
                        }),
                        io: None,
                    }),
                    run_queue_wait: Some(RunQueueWait {
                        seconds: 2.5,
                        share: 0.083,
                        tasks_waiting: Some(0.125),
                        source: Source::Ebpf,
                        behind: vec![
                            Behind::new(
                                HolderKind::OtherJob,
                                "build-7",
                                Some("acme/widgets ci lint #41".into()),
                                1.5,
                            ),
                            Behind::new(HolderKind::Quota, behind::QUOTA, None, 0.75),
                            Behind::new(HolderKind::Itself, "runner", None, 0.25),
                        ],
                    }),
                    disk_io: Some(DiskIo {
                        read_bytes: 4096,
                        write_bytes: 1_048_576,
                        read_ops: 1,
                        write_ops: 256,
                        read_bytes_per_sec: stats(200.0),
                        write_bytes_per_sec: stats(50_000.0),
                    }),
                    memory_detail: Some(MemoryDetail {
                        anon_bytes: Some(12_000_000),
                        file_bytes: Some(6_000_000),
                        kernel_bytes: Some(500_000),
                        sock_bytes: Some(0),
                        major_faults: Some(3),
                        high_events: Some(0),
                        max_events: Some(1),
                    }),
                    verdict: Some(Verdict {
                        starved: true,
                        by: vec!["cpu".into(), "memory".into()],
                        text: "CPU-starved for 20 % of the run: throttled 20 % of periods (quota 2 cores), waiting for a CPU 8 %, CPU pressure 15 %; memory-starved: 1 OOM kill(s), memory pressure stalled it 0.5 s (2 %)".into(),
                        cause: Some(Cause::SelfInflicted),
                    }),
                },
                ContainerSummary {
                    name: "sidecar".into(),
                    cpu_cores: stats(0.125),
                    memory_bytes: stats(4_194_304.0),
                    cpu_source: Source::Proc,
                    memory_source: Source::Proc,
                    ..Default::default()
                },
            ],
            top_cpu_processes: vec![ProcessSummary {
                pid: 4242,
                name: "cargo".into(),
                peak_cpu_percent: 187.5,
                peak_mem_rss_bytes: 123_456_789,
                cpu_seconds: 25.25,
                container: Some("runner".into()),
                exited: true,
            }],
            top_mem_processes: vec![ProcessSummary {
                pid: 7,
                name: "node".into(),
                peak_cpu_percent: 12.5,
                peak_mem_rss_bytes: 987_654_321,
                cpu_seconds: 1.5,
                container: None,
                exited: false,
            }],
            histograms: Some([("cpu_total_percent".to_string(), total.encode())].into()),
            collector: Some(CollectorInfo {
                version: "0.1.0".into(),
                mode: "sidecar".into(),
                ebpf: true,
            }),
            top_commands: vec![CommandSummary {
                name: "cc1".into(),
                processes: 400,
                cpu_seconds: 312.0,
                peak_rss_bytes: 150_000_000,
                longest_seconds: 4.5,
            }],
            verdict: Some(Verdict {
                starved: true,
                by: vec!["cpu".into(), "memory".into()],
                text: "runner: CPU-starved for 20 % of the run".into(),
                cause: Some(Cause::SelfInflicted),
            }),
            timeline: Some(Timeline {
                bucket_seconds: 0.4,
                containers: vec![ContainerTimeline {
                    name: "runner".into(),
                    start_seconds: 0.0,
                    cpu_millicores: vec![0, 1500, 2000],
                    cpu_millicores_max: vec![0, 2000, 2000],
                    memory_mib: vec![10, 200, 380],
                    memory_mib_max: vec![12, 260, 400],
                    network_kib_per_sec: vec![0, 64, 64],
                    disk_kib_per_sec: Vec::new(),
                    run_queue_wait_millicores: vec![0, 500, 1000],
                    cpu_pressure_percent: vec![0, 40, 60],
                }],
            }),
        },
    }
}

#[test]
fn stored_run_matches_golden_file() {
    let value = expected();
    let mut json = serde_json::to_string_pretty(&value).unwrap();
    json.push('\n');
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(FIXTURE, &json).unwrap();
    }
    let golden = std::fs::read_to_string(FIXTURE).unwrap();
    assert_eq!(
        json, golden,
        "serialization changed; rerun with UPDATE_GOLDEN=1 if intended"
    );
    let parsed: StoredRun = serde_json::from_str(&golden).unwrap();
    assert_eq!(parsed, value);
    parsed.payload.validate().unwrap();
    // The serialized histograms in the fixture decode to the stats stored beside them.
    let c = &parsed.payload.containers[0];
    let hist = &c.histograms.as_ref().unwrap()["cpu_cores"];
    let decoded = Accumulator::decode(hist).unwrap();
    assert_eq!(decoded.sample_count(), 11);
    assert_eq!(decoded.stats().p50, c.cpu_cores.p50);
}

#[test]
fn golden_file_is_an_array_element_of_the_seed_shape() {
    let golden = std::fs::read_to_string(FIXTURE).unwrap();
    let v: serde_json::Value = serde_json::from_str(&golden).unwrap();
    for key in [
        "id",
        "organization",
        "repository",
        "workflow",
        "job",
        "run_id",
        "received_at",
        "payload",
    ] {
        assert!(v.get(key).is_some(), "{key}");
    }
    let payload = &v["payload"];
    for key in [
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
        assert!(payload.get(key).is_some(), "{key}");
    }
    for key in ["peak", "p99", "p95", "p75", "p50", "avg"] {
        assert!(
            payload["containers"][0]["cpu_cores"].get(key).is_some(),
            "{key}"
        );
    }
    for key in ["pid", "name", "peak_cpu_percent", "peak_mem_rss_bytes"] {
        assert!(payload["top_cpu_processes"][0].get(key).is_some(), "{key}");
    }
}
