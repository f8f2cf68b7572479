//! What the checks' tests share: a valid push, the clock it is checked against, and a
//! container with real histograms.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{
    Accumulator, ContainerSummary, Execution, MetricsPush, ProcessSummary, RunSummary, SCALE_BYTES,
    SCALE_CORES, hist,
};

/// 2026-02-06T14:31:00Z, just after the test summary's end.
pub(super) fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_770_388_260)
}

/// A valid push: one container, one process.
pub(super) fn push() -> MetricsPush {
    MetricsPush {
        execution: Execution {
            organization: "o".into(),
            repository: "o/r".into(),
            workflow: "w".into(),
            job: "j".into(),
            run_id: "1".into(),
            run_attempt: "1".into(),
        },
        summary: RunSummary {
            start_time: "2026-02-06T14:30:02.185Z".into(),
            end_time: "2026-02-06T14:30:22.190Z".into(),
            duration_seconds: 20.005,
            containers: vec![ContainerSummary {
                name: "runner".into(),
                ..Default::default()
            }],
            top_cpu_processes: vec![ProcessSummary {
                pid: 1,
                name: "sh".into(),
                ..Default::default()
            }],
            ..Default::default()
        },
    }
}

/// A container with real histograms whose stats come from the same accumulators.
pub(super) fn measured_container() -> ContainerSummary {
    let mut cpu = Accumulator::new(SCALE_CORES);
    let mut mem = Accumulator::new(SCALE_BYTES);
    for i in 0..50u32 {
        cpu.record(f64::from(i) * 0.037);
        mem.record(f64::from(100_000_000 + i * 12_345));
    }
    ContainerSummary {
        name: "runner".into(),
        cpu_cores: cpu.stats(),
        memory_bytes: mem.stats(),
        histograms: Some(
            [
                (hist::CPU_CORES.to_string(), cpu.encode()),
                (hist::MEMORY_BYTES.to_string(), mem.encode()),
            ]
            .into(),
        ),
        ..Default::default()
    }
}
