//! Property tests: every wire type survives a JSON round trip unchanged.

use proptest::prelude::*;
use summary::{
    ContainerSummary, Execution, Limits, MetricsPush, NetworkSummary, ProcessSummary, RunSummary,
    Source, Stats,
};

/// Finite non-negative floats with exact short decimal forms (thousandths).
fn num() -> impl Strategy<Value = f64> {
    (0u64..(1 << 40)).prop_map(|n| n as f64 / 1000.0)
}

fn stats() -> impl Strategy<Value = Stats> {
    (num(), num(), num(), num(), num(), num()).prop_map(|(peak, p99, p95, p75, p50, avg)| Stats {
        peak,
        p99,
        p95,
        p75,
        p50,
        avg,
    })
}

fn source() -> impl Strategy<Value = Source> {
    prop_oneof![Just(Source::Ebpf), Just(Source::Cgroup), Just(Source::Proc)]
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,12}"
}

fn container() -> impl Strategy<Value = ContainerSummary> {
    (
        (text(), stats(), stats(), num(), source(), source()),
        (
            proptest::option::of(any::<u64>()),
            any::<u64>(),
            proptest::option::of((any::<u64>(), any::<u64>(), stats(), stats())),
            proptest::option::of((
                proptest::option::of(num()),
                proptest::option::of(any::<u64>()),
            )),
            proptest::option::of(stats()),
        ),
    )
        .prop_map(
            |((name, cpu_cores, memory_bytes, cpu_seconds, cpu_source, memory_source), rest)| {
                let (memory_peak_bytes, oom_kills, network, limits, cpu_to_limit) = rest;
                ContainerSummary {
                    name,
                    cpu_cores,
                    memory_bytes,
                    cpu_seconds,
                    cpu_source,
                    memory_source,
                    memory_peak_bytes,
                    oom_kills,
                    network: network.map(|(rx_bytes, tx_bytes, rx, tx)| NetworkSummary {
                        namespace: String::new(),
                        rx_bytes,
                        tx_bytes,
                        rx_bytes_per_sec: rx,
                        tx_bytes_per_sec: tx,
                    }),
                    limits: limits.map(|(cpu_cores, memory_bytes)| Limits {
                        cpu_cores,
                        memory_bytes,
                    }),
                    cpu_to_limit,
                    memory_to_limit: cpu_to_limit,
                    histograms: None,
                    ..Default::default()
                }
            },
        )
}

fn process() -> impl Strategy<Value = ProcessSummary> {
    (
        any::<i32>(),
        text(),
        num(),
        any::<u64>(),
        num(),
        proptest::option::of(text()),
        any::<bool>(),
    )
        .prop_map(
            |(pid, name, peak_cpu_percent, peak_mem_rss_bytes, cpu_seconds, container, exited)| {
                ProcessSummary {
                    pid,
                    name,
                    peak_cpu_percent,
                    peak_mem_rss_bytes,
                    cpu_seconds,
                    container,
                    exited,
                }
            },
        )
}

fn summary() -> impl Strategy<Value = RunSummary> {
    (
        (
            0i64..4_102_444_800_000,
            0i64..1_000_000_000,
            num(),
            any::<u64>(),
            stats(),
            stats(),
        ),
        (
            source(),
            proptest::collection::vec(container(), 0..4),
            proptest::collection::vec(process(), 0..4),
            proptest::collection::vec(process(), 0..4),
        ),
    )
        .prop_map(
            |((start, len, duration_seconds, sample_count, cpu, mem), rest)| {
                let (cpu_source, containers, top_cpu_processes, top_mem_processes) = rest;
                RunSummary {
                    start_time: summary::time::format_unix_millis(start),
                    end_time: summary::time::format_unix_millis(start + len),
                    duration_seconds,
                    sample_count,
                    cpu_total_percent: cpu,
                    mem_used_bytes: mem,
                    cpu_source,
                    containers,
                    top_cpu_processes,
                    top_mem_processes,
                    ..Default::default()
                }
            },
        )
}

fn execution() -> impl Strategy<Value = Execution> {
    (text(), text(), text(), text(), text(), text()).prop_map(
        |(organization, repository, workflow, job, run_id, run_attempt)| Execution {
            organization,
            repository,
            workflow,
            job,
            run_id,
            run_attempt,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn push_round_trips(execution in execution(), summary in summary()) {
        let push = MetricsPush { execution, summary };
        let json = serde_json::to_vec(&push).unwrap();
        let back: MetricsPush = serde_json::from_slice(&json).unwrap();
        prop_assert_eq!(&back, &push);
    }

    #[test]
    fn timestamps_round_trip(ms in -62_135_596_800_000i64..253_402_300_799_999) {
        let s = summary::time::format_unix_millis(ms);
        prop_assert_eq!(summary::time::parse_rfc3339_nanos(&s), Some(i128::from(ms) * 1_000_000));
    }

    #[test]
    fn parser_never_panics(s in "\\PC{0,40}") {
        let _ = summary::time::parse_rfc3339_nanos(&s);
    }
}
