//! The anchors' algorithms, from `../shared/design/sizing-anchors.md`, over the same
//! histories. They sample memory (a /proc or Prometheus sample every interval), so they read
//! the sampled peak (`memory_bytes.peak`); only ours reads the kernel's true peak.

use summary::{Accumulator, ContainerSummary, SCALE_CORES, hist, sizing::SizingRun};

const MIB: f64 = (1u64 << 20) as f64;
const GIB: f64 = 1024.0 * MIB;

/// A recommendation for the job's (one) container: CPU request, memory limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rec {
    pub cpu_cores: f64,
    pub memory_bytes: f64,
}

fn container<'a>(run: &SizingRun<'a>) -> Option<&'a ContainerSummary> {
    run.summary.containers.first()
}

fn cpu_histogram(c: &ContainerSummary) -> Option<Accumulator> {
    Accumulator::decode(c.histograms.as_ref()?.get(hist::CPU_CORES)?).ok()
}

/// The limit the run had, else 4 GiB.
fn current_limit(c: &ContainerSummary) -> f64 {
    c.limits
        .and_then(|l| l.memory_bytes)
        .map_or(4.0 * GIB, |b| b as f64)
}

/// CI Sizer: the last 5 runs not OOM-killed. CPU: max of their p95 + 20 %, up to the next
/// 0.5 core. Memory: max of their peaks + a staircase margin (20 % below 1 GiB, 10 % to
/// 4 GiB, 5 % above), up to a power of two in MiB. No clean run: 500m / 4 GiB; one or two:
/// 3 × the observed peak. After k consecutive OOMs: the current limit × 2^k.
pub fn ci_sizer(history: &[SizingRun<'_>]) -> Rec {
    let consecutive_ooms = history
        .iter()
        .rev()
        .take_while(|r| container(r).is_some_and(|c| c.oom_kills > 0))
        .count();
    let clean: Vec<&ContainerSummary> = history
        .iter()
        .rev()
        .filter_map(container)
        .filter(|c| c.oom_kills == 0)
        .take(5)
        .collect();
    if consecutive_ooms > 0 {
        let c = history.last().and_then(container);
        let current = c.map_or(4.0 * GIB, current_limit);
        let cpu = clean.iter().map(|c| c.cpu_cores.p95).fold(0.5, f64::max);
        return Rec {
            cpu_cores: (cpu * 1.2 * 2.0).ceil() / 2.0,
            memory_bytes: (current * 2f64.powi(consecutive_ooms as i32)).min(64.0 * GIB),
        };
    }
    if clean.is_empty() {
        return Rec {
            cpu_cores: 0.5,
            memory_bytes: 4.0 * GIB,
        };
    }
    let peak = clean
        .iter()
        .map(|c| c.memory_bytes.peak)
        .fold(0.0, f64::max);
    let cpu = clean.iter().map(|c| c.cpu_cores.p95).fold(0.0, f64::max);
    if clean.len() < 3 {
        return Rec {
            cpu_cores: (cpu * 3.0 * 2.0).ceil() / 2.0,
            memory_bytes: 3.0 * peak,
        };
    }
    let margin = if peak < GIB {
        1.2
    } else if peak < 4.0 * GIB {
        1.1
    } else {
        1.05
    };
    let mib = (peak * margin / MIB).ceil().max(1.0);
    Rec {
        cpu_cores: ((cpu * 1.2 * 2.0).ceil() / 2.0).max(0.5),
        memory_bytes: mib.log2().ceil().exp2() * MIB,
    }
}

/// krr `simple`: CPU p95 of the usage samples of the last 14 days (max over pods: one
/// container here), memory the max sampled peak × 1.15 (its OOM option is off by default),
/// rounded up to 1m and 1 MiB, at least 10m and 100 MiB. With under 3 hours of history it
/// gives no recommendation: the current limits stay.
pub fn krr(history: &[SizingRun<'_>]) -> Rec {
    let Some(last) = history.last() else {
        return Rec {
            cpu_cores: 0.5,
            memory_bytes: 4.0 * GIB,
        };
    };
    let since = last.time_ms - 14 * 86_400_000;
    let recent: Vec<&SizingRun<'_>> = history.iter().filter(|r| r.time_ms >= since).collect();
    let span_ms = last.time_ms - recent.first().map_or(last.time_ms, |r| r.time_ms) + 600_000;
    if span_ms < 3 * 3_600_000 {
        let c = container(last);
        return Rec {
            cpu_cores: c
                .and_then(|c| c.limits)
                .and_then(|l| l.cpu_cores)
                .unwrap_or(1.0),
            memory_bytes: c.map_or(4.0 * GIB, current_limit),
        };
    }
    let mut merged = Accumulator::new(SCALE_CORES);
    let mut peak: f64 = 0.0;
    for r in &recent {
        if let Some(c) = container(r) {
            if let Some(h) = cpu_histogram(c) {
                let _ = merged.merge(&h);
            }
            peak = peak.max(c.memory_bytes.peak);
        }
    }
    Rec {
        cpu_cores: ((merged.stats().p95 * 1000.0).ceil() / 1000.0).max(0.01),
        memory_bytes: ((peak * 1.15 / MIB).ceil() * MIB).max(100.0 * MIB),
    }
}

/// VPA-like: samples weighted by a 24 h half-life decay. Memory: one peak per 24 h window
/// (the sampled one); an OOM adds max(used + 100 MiB, used × 1.2). Target: the weighted p90
/// of CPU samples and of memory peaks, + 15 %; at least 25m and 250 MB.
pub fn vpa(history: &[SizingRun<'_>]) -> Rec {
    let Some(last) = history.last() else {
        return Rec {
            cpu_cores: 0.5,
            memory_bytes: 4.0 * GIB,
        };
    };
    let weight = |t: i64| 0.5f64.powf((last.time_ms - t) as f64 / 86_400_000.0);
    // CPU: every run's samples, weighted (integer weights to reuse HDR merging: ×100).
    let mut cpu = Accumulator::new(SCALE_CORES);
    // Memory: (peak, weight) per 24 h window, the largest in each.
    let mut windows: Vec<(i64, f64, f64)> = Vec::new();
    for r in history {
        let Some(c) = container(r) else { continue };
        let w = weight(r.time_ms);
        if let Some(h) = cpu_histogram(c) {
            let _ = cpu.merge_weighted(&h, (w * 100.0).round().max(1.0) as u64);
        }
        let mut peak = c.memory_bytes.peak;
        if c.oom_kills > 0 {
            peak = (peak + 100.0 * MIB).max(peak * 1.2);
        }
        let day = (last.time_ms - r.time_ms) / 86_400_000;
        match windows.iter_mut().find(|(d, _, _)| *d == day) {
            Some(win) => win.1 = win.1.max(peak),
            None => windows.push((day, peak, weight(r.time_ms))),
        }
    }
    windows.retain(|(d, _, _)| *d < 8);
    let memory = weighted_quantile(windows.iter().map(|(_, p, w)| (*p, *w)).collect(), 0.9);
    Rec {
        cpu_cores: (cpu_p90(&cpu) * 1.15).max(0.025),
        memory_bytes: (memory * 1.15).max(250e6),
    }
}

/// p90 from an accumulator's percentiles (it keeps p75 and p95): linear between them.
fn cpu_p90(a: &Accumulator) -> f64 {
    let s = a.stats();
    s.p75 + (s.p95 - s.p75) * 0.75
}

/// The `q` quantile of weighted values.
fn weighted_quantile(mut v: Vec<(f64, f64)>, q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = v.iter().map(|(_, w)| w).sum();
    let mut acc = 0.0;
    for (value, w) in &v {
        acc += w;
        if acc >= q * total {
            return *value;
        }
    }
    v.last().map_or(0.0, |(value, _)| *value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use summary::{Limits, RunSummary, Stats};

    fn run(peak_mib: f64, p95: f64, oom: u64) -> RunSummary {
        RunSummary {
            containers: vec![ContainerSummary {
                name: "build".into(),
                cpu_cores: Stats {
                    p95,
                    ..Default::default()
                },
                memory_bytes: Stats {
                    peak: peak_mib * MIB,
                    ..Default::default()
                },
                oom_kills: oom,
                limits: Some(Limits {
                    cpu_cores: Some(4.0),
                    memory_bytes: Some(2048 << 20),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn view(runs: &[RunSummary]) -> Vec<SizingRun<'_>> {
        runs.iter()
            .enumerate()
            .map(|(i, s)| SizingRun {
                time_ms: i as i64 * 6 * 3_600_000,
                run_id: "r",
                summary: s,
            })
            .collect()
    }

    #[test]
    fn ci_sizer_numbers() {
        // Peaks up to 1500 MiB: + 10 % = 1650 MiB, up to 2048 MiB. CPU 1.1 × 1.2 = 1.32 → 1.5.
        let runs: Vec<_> = [1000.0, 1500.0, 1200.0]
            .iter()
            .map(|p| run(*p, 1.1, 0))
            .collect();
        let r = ci_sizer(&view(&runs));
        assert_eq!(r.memory_bytes, 2048.0 * MIB);
        assert_eq!(r.cpu_cores, 1.5);
        // Learning: one run, 3 × its peak.
        assert_eq!(ci_sizer(&view(&runs[..1])).memory_bytes, 3000.0 * MIB);
        // Two consecutive OOMs at a 2 GiB limit: × 4.
        let mut oom = runs.clone();
        oom.push(run(2048.0, 1.0, 1));
        oom.push(run(2048.0, 1.0, 1));
        assert_eq!(ci_sizer(&view(&oom)).memory_bytes, 8192.0 * MIB);
        // Below 1 GiB the margin is 20 %: 900 × 1.2 = 1080 → 2048 MiB.
        let small: Vec<_> = (0..3).map(|_| run(900.0, 0.2, 0)).collect();
        assert_eq!(ci_sizer(&view(&small)).memory_bytes, 2048.0 * MIB);
        assert_eq!(ci_sizer(&view(&small)).cpu_cores, 0.5);
    }

    #[test]
    fn krr_numbers() {
        let runs: Vec<_> = [1000.0, 1500.0, 1200.0]
            .iter()
            .map(|p| run(*p, 1.1, 0))
            .collect();
        // Twelve hours of history: max peak 1500 MiB × 1.15 = 1725 MiB.
        assert_eq!(krr(&view(&runs)).memory_bytes, 1725.0 * MIB);
        // Under three hours: no recommendation, the current 2 GiB stays.
        assert_eq!(krr(&view(&runs[..1])).memory_bytes, 2048.0 * MIB);
        // At least 100 MiB.
        let tiny: Vec<_> = (0..3).map(|_| run(10.0, 0.0, 0)).collect();
        assert_eq!(krr(&view(&tiny)).memory_bytes, 100.0 * MIB);
    }

    #[test]
    fn vpa_numbers() {
        // Four runs a day: one window, its peak 1500 MiB, × 1.15.
        let runs: Vec<_> = [1000.0, 1500.0, 1200.0]
            .iter()
            .map(|p| run(*p, 1.1, 0))
            .collect();
        assert!((vpa(&view(&runs)).memory_bytes - 1725.0 * MIB).abs() < 1.0);
        // An OOM at 2 GiB adds max(2 GiB + 100 MiB, 2 GiB × 1.2) = 2457.6 MiB.
        let oom = vec![run(2048.0, 1.0, 1)];
        assert!((vpa(&view(&oom)).memory_bytes - 2457.6 * 1.15 * MIB).abs() < 1.0);
        assert_eq!(
            weighted_quantile(vec![(1.0, 1.0), (2.0, 1.0), (3.0, 8.0)], 0.9),
            3.0
        );
    }
}
