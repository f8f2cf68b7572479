//! The anchors' algorithms, from `../shared/design/sizing-anchors.md`, over the same
//! histories. They sample memory (a /proc or Prometheus sample every interval), so they read
//! the sampled peak (`memory_bytes.peak`); only ours reads the kernel's true peak
//! (`memory_peak_bytes`). Each works per container, as all three do.

use summary::{Accumulator, ContainerSummary, SCALE_CORES, hist, sizing::SizingRun};

const MIB: f64 = (1u64 << 20) as f64;
const GIB: f64 = 1024.0 * MIB;

/// A recommendation for one container: CPU request, memory limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rec {
    pub cpu_cores: f64,
    pub memory_bytes: f64,
}

/// Nothing to go on: what a runner without history gets (CI Sizer's `unknown` phase).
pub const DEFAULT: Rec = Rec {
    cpu_cores: 0.5,
    memory_bytes: 4.0 * GIB,
};

/// One container's runs: (start, its summary in that run), oldest first.
type Seen<'a> = [(i64, &'a ContainerSummary)];

/// Applies a per-container algorithm to every container of a history, by name, in the
/// order they first appear.
pub fn per_container(
    history: &[SizingRun<'_>],
    algorithm: fn(&Seen<'_>) -> Rec,
) -> Vec<(String, Rec)> {
    let mut names: Vec<&str> = Vec::new();
    for r in history {
        for c in &r.summary.containers {
            if !names.contains(&c.name.as_str()) {
                names.push(&c.name);
            }
        }
    }
    names
        .into_iter()
        .map(|name| {
            let seen: Vec<(i64, &ContainerSummary)> = history
                .iter()
                .filter_map(|r| {
                    let c = r.summary.containers.iter().find(|c| c.name == name)?;
                    Some((r.time_ms, c))
                })
                .collect();
            (name.to_owned(), algorithm(&seen))
        })
        .collect()
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
/// 4 GiB, 5 % above), up to a power of two in MiB. No clean run: 500m / 4 GiB; one or two
/// (learning): 3 × the observed memory peak (the doc says "peak": CPU keeps its formula,
/// the reading kinder to CI Sizer). After k consecutive OOMs: the current limit × 2^k,
/// capped at a 64 GiB node. Its pod-total ceiling is left out (it never binds here).
pub fn ci_sizer(seen: &Seen<'_>) -> Rec {
    let consecutive_ooms = seen
        .iter()
        .rev()
        .take_while(|(_, c)| c.oom_kills > 0)
        .count();
    let clean: Vec<&ContainerSummary> = seen
        .iter()
        .rev()
        .map(|(_, c)| *c)
        .filter(|c| c.oom_kills == 0)
        .take(5)
        .collect();
    if consecutive_ooms > 0 {
        let current = seen.last().map_or(4.0 * GIB, |(_, c)| current_limit(c));
        let cpu = clean.iter().map(|c| c.cpu_cores.p95).fold(0.5, f64::max);
        return Rec {
            cpu_cores: (cpu * 1.2 * 2.0).ceil() / 2.0,
            memory_bytes: (current * 2f64.powi(consecutive_ooms as i32)).min(64.0 * GIB),
        };
    }
    if clean.is_empty() {
        return DEFAULT;
    }
    let peak = clean
        .iter()
        .map(|c| c.memory_bytes.peak)
        .fold(0.0, f64::max);
    let cpu = clean.iter().map(|c| c.cpu_cores.p95).fold(0.0, f64::max);
    let cpu_cores = ((cpu * 1.2 * 2.0).ceil() / 2.0).max(0.5);
    if clean.len() < 3 {
        return Rec {
            cpu_cores,
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
        cpu_cores,
        memory_bytes: mib.log2().ceil().exp2() * MIB,
    }
}

/// krr `simple`: CPU p95 of the usage samples of the last 14 days (max over pods: one
/// container here), memory the max sampled peak × 1.15 (its OOM option is off by default),
/// rounded up to 1m and 1 MiB, at least 10m and 100 MiB. With under 3 hours of history it
/// gives no recommendation: the current limits stay.
pub fn krr(seen: &Seen<'_>) -> Rec {
    let Some(&(last_ms, last)) = seen.last() else {
        return DEFAULT;
    };
    let since = last_ms - 14 * 86_400_000;
    let recent: Vec<&ContainerSummary> = seen
        .iter()
        .filter(|(t, _)| *t >= since)
        .map(|(_, c)| *c)
        .collect();
    let first_ms = seen
        .iter()
        .find(|(t, _)| *t >= since)
        .map_or(last_ms, |(t, _)| *t);
    // From the first run's start to the last's: one run alone is not 3 h of history.
    if last_ms - first_ms < 3 * 3_600_000 {
        return Rec {
            cpu_cores: last.limits.and_then(|l| l.cpu_cores).unwrap_or(1.0),
            memory_bytes: current_limit(last),
        };
    }
    let mut merged = Accumulator::new(SCALE_CORES);
    let mut peak: f64 = 0.0;
    for c in recent {
        if let Some(h) = cpu_histogram(c) {
            let _ = merged.merge(&h);
        }
        peak = peak.max(c.memory_bytes.peak);
    }
    Rec {
        cpu_cores: ((merged.stats().p95 * 1000.0).ceil() / 1000.0).max(0.01),
        memory_bytes: ((peak * 1.15 / MIB).ceil() * MIB).max(100.0 * MIB),
    }
}

/// VPA-like: samples weighted by a 24 h half-life decay. Memory: one peak per 24 h window,
/// 8 windows (the sampled peak); an OOM-killed run's sample is max(used + 100 MiB,
/// used × 1.2), "used" being the limit it was killed at. Target: the weighted p90 of CPU
/// samples and of memory peaks, + 15 %; at least 25m and 250 MB. Its CPU weight
/// max(request, 0.1 core) is a constant factor on one job and is left out, as are its
/// confidence bounds (only the target is a request).
pub fn vpa(seen: &Seen<'_>) -> Rec {
    let Some(&(last_ms, _)) = seen.last() else {
        return DEFAULT;
    };
    let weight = |t: i64| 0.5f64.powf((last_ms - t) as f64 / 86_400_000.0);
    // CPU: every run's samples, weighted (integer weights to reuse HDR merging: ×100).
    let mut cpu = Accumulator::new(SCALE_CORES);
    // Memory: (peak, weight) per 24 h window, the largest in each.
    let mut windows: Vec<(i64, f64, f64)> = Vec::new();
    for &(t, c) in seen {
        let w = weight(t);
        if let Some(h) = cpu_histogram(c) {
            let _ = cpu.merge_weighted(&h, (w * 100.0).round().max(1.0) as u64);
        }
        let mut peak = c.memory_bytes.peak;
        if c.oom_kills > 0 {
            // Killed at its limit: the VPA's synthetic sample above what was used.
            let used = c
                .limits
                .and_then(|l| l.memory_bytes)
                .map_or(peak, |l| l as f64);
            peak = (used + 100.0 * MIB).max(used * 1.2);
        }
        let day = (last_ms - t) / 86_400_000;
        match windows.iter_mut().find(|(d, _, _)| *d == day) {
            // The window's sample is its peak, weighted by when the peak was seen.
            Some(win) if peak >= win.1 => *win = (day, peak, w),
            Some(_) => {}
            None => windows.push((day, peak, w)),
        }
    }
    windows.retain(|(d, _, _)| *d < 8);
    let memory = weighted_quantile(windows.iter().map(|(_, p, w)| (*p, *w)).collect(), 0.9);
    Rec {
        cpu_cores: (cpu_p90(&cpu) * 1.15).max(0.025),
        memory_bytes: (memory * 1.15).max(250e6),
    }
}

/// The p90 of an accumulator's samples. It only reports p50/p75/p95/p99, so pad it with as
/// many zeros as it has samples: the padded p95 is the 0.9 × n-th sample, the p90.
fn cpu_p90(a: &Accumulator) -> f64 {
    let mut zero = Accumulator::new(a.scale());
    zero.record(0.0);
    let mut padded = a.clone();
    match padded.merge_weighted(&zero, a.sample_count()) {
        Ok(()) => padded.stats().p95,
        Err(_) => a.stats().p95,
    }
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

    /// The algorithm's answer for the one container of runs six hours apart.
    fn on(algorithm: fn(&Seen<'_>) -> Rec, runs: &[RunSummary]) -> Rec {
        let view: Vec<SizingRun<'_>> = runs
            .iter()
            .enumerate()
            .map(|(i, s)| SizingRun {
                time_ms: i as i64 * 6 * 3_600_000,
                run_id: "r",
                summary: s,
            })
            .collect();
        let recs = per_container(&view, algorithm);
        assert_eq!(recs.len(), 1);
        recs[0].1
    }

    #[test]
    fn ci_sizer_numbers() {
        // Peaks up to 1500 MiB: + 10 % = 1650 MiB, up to 2048 MiB. CPU 1.1 × 1.2 = 1.32 → 1.5.
        let runs: Vec<_> = [1000.0, 1500.0, 1200.0]
            .iter()
            .map(|p| run(*p, 1.1, 0))
            .collect();
        let r = on(ci_sizer, &runs);
        assert_eq!(r.memory_bytes, 2048.0 * MIB);
        assert_eq!(r.cpu_cores, 1.5);
        // Learning: one run, 3 × its peak; CPU as confident.
        assert_eq!(on(ci_sizer, &runs[..1]).memory_bytes, 3000.0 * MIB);
        assert_eq!(on(ci_sizer, &runs[..1]).cpu_cores, 1.5);
        // Two consecutive OOMs at a 2 GiB limit: × 4.
        let mut oom = runs.clone();
        oom.push(run(2048.0, 1.0, 1));
        oom.push(run(2048.0, 1.0, 1));
        assert_eq!(on(ci_sizer, &oom).memory_bytes, 8192.0 * MIB);
        // Below 1 GiB the margin is 20 %: 900 × 1.2 = 1080 → 2048 MiB.
        let small: Vec<_> = (0..3).map(|_| run(900.0, 0.2, 0)).collect();
        assert_eq!(on(ci_sizer, &small).memory_bytes, 2048.0 * MIB);
        assert_eq!(on(ci_sizer, &small).cpu_cores, 0.5);
    }

    #[test]
    fn krr_numbers() {
        let runs: Vec<_> = [1000.0, 1500.0, 1200.0]
            .iter()
            .map(|p| run(*p, 1.1, 0))
            .collect();
        // Twelve hours of history: max peak 1500 MiB × 1.15 = 1725 MiB.
        assert_eq!(on(krr, &runs).memory_bytes, 1725.0 * MIB);
        // Under three hours: no recommendation, the current 2 GiB stays.
        assert_eq!(on(krr, &runs[..1]).memory_bytes, 2048.0 * MIB);
        // At least 100 MiB.
        let tiny: Vec<_> = (0..3).map(|_| run(10.0, 0.0, 0)).collect();
        assert_eq!(on(krr, &tiny).memory_bytes, 100.0 * MIB);
    }

    #[test]
    fn vpa_numbers() {
        // Four runs a day: one window, its peak 1500 MiB, × 1.15.
        let runs: Vec<_> = [1000.0, 1500.0, 1200.0]
            .iter()
            .map(|p| run(*p, 1.1, 0))
            .collect();
        assert!((on(vpa, &runs).memory_bytes - 1725.0 * MIB).abs() < 1.0);
        // An OOM at 2 GiB adds max(2 GiB + 100 MiB, 2 GiB × 1.2) = 2457.6 MiB.
        let oom = vec![run(2048.0, 1.0, 1)];
        assert!((on(vpa, &oom).memory_bytes - 2457.6 * 1.15 * MIB).abs() < 1.0);
        assert_eq!(
            weighted_quantile(vec![(1.0, 1.0), (2.0, 1.0), (3.0, 8.0)], 0.9),
            3.0
        );
    }

    /// A run whose CPU samples are `samples` (cores), with their histogram.
    fn cpu_run(samples: &[(usize, f64)]) -> RunSummary {
        let mut a = Accumulator::new(SCALE_CORES);
        for &(n, v) in samples {
            (0..n).for_each(|_| a.record(v));
        }
        let mut r = run(500.0, a.stats().p95, 0);
        let c = &mut r.containers[0];
        c.cpu_cores = a.stats();
        c.histograms = Some([(hist::CPU_CORES.to_owned(), a.encode())].into());
        r
    }

    #[test]
    fn krr_takes_p95_of_the_merged_samples_where_ci_sizer_takes_the_largest_run_p95() {
        // One run bursts to 3 cores in 10 % of its samples: its own p95 is 3, but over the
        // 300 samples of three runs the bursts are 3.3 %, so the merged p95 is 1.
        let runs = vec![
            cpu_run(&[(90, 1.0), (10, 3.0)]),
            cpu_run(&[(100, 1.0)]),
            cpu_run(&[(100, 1.0)]),
        ];
        assert_eq!(on(krr, &runs).cpu_cores, 1.0);
        // 3 × 1.2 = 3.6, up to 4.0.
        assert_eq!(on(ci_sizer, &runs).cpu_cores, 4.0);
        // VPA: p90 of the weighted samples (1 core) + 15 %.
        assert!((on(vpa, &runs).cpu_cores - 1.15).abs() < 0.01);
    }

    #[test]
    fn the_p90_is_exact_within_the_histogram() {
        let mut a = Accumulator::new(SCALE_CORES);
        (1..=100).for_each(|i| a.record(i as f64 / 100.0));
        assert_eq!(cpu_p90(&a), 0.9);
        // Bursts in 8 % of the samples are above the p90.
        let mut b = Accumulator::new(SCALE_CORES);
        (0..92).for_each(|_| b.record(0.6));
        (0..8).for_each(|_| b.record(3.8));
        assert_eq!(cpu_p90(&b), 0.6);
    }

    #[test]
    fn ci_sizer_reads_the_last_five_clean_runs_only() {
        // A 3000 MiB run six runs ago is out of the window: 400 × 1.2 = 480, up to 512 MiB.
        let mut runs = vec![run(3000.0, 1.0, 0)];
        runs.extend((0..5).map(|_| run(400.0, 1.0, 0)));
        assert_eq!(on(ci_sizer, &runs).memory_bytes, 512.0 * MIB);
        // An OOM-killed run that is not the latest is skipped, not doubled.
        let mut runs: Vec<_> = (0..3).map(|_| run(400.0, 1.0, 0)).collect();
        runs.insert(1, run(2048.0, 1.0, 1));
        assert_eq!(on(ci_sizer, &runs).memory_bytes, 512.0 * MIB);
    }

    #[test]
    fn vpa_forgets_old_peaks_with_a_24_hour_half_life() {
        // A 3000 MiB peak three days before twelve 1000 MiB runs: its window weighs 1/8
        // against 1, 1/2 and 1/4 for the three recent ones, above the p90: 1000 × 1.15.
        let mut runs = vec![run(3000.0, 1.0, 0)];
        runs.extend((0..12).map(|_| run(1000.0, 1.0, 0)));
        assert!((on(vpa, &runs).memory_bytes - 1150.0 * MIB).abs() < 1.0);
        // krr keeps 14 days: 3000 × 1.15.
        assert_eq!(on(krr, &runs).memory_bytes, 3450.0 * MIB);
    }

    #[test]
    fn every_container_gets_its_own_answer() {
        let mut r = run(1000.0, 1.0, 0);
        let mut db = r.containers[0].clone();
        db.name = "postgres".into();
        db.memory_bytes.peak = 200.0 * MIB;
        r.containers.push(db);
        let runs = [r.clone(), r.clone(), r];
        let view: Vec<SizingRun<'_>> = runs
            .iter()
            .enumerate()
            .map(|(i, s)| SizingRun {
                time_ms: i as i64 * 6 * 3_600_000,
                run_id: "r",
                summary: s,
            })
            .collect();
        let recs = per_container(&view, krr);
        assert_eq!(recs[0].0, "build");
        assert_eq!(recs[0].1.memory_bytes, 1150.0 * MIB);
        assert_eq!(recs[1].0, "postgres");
        assert_eq!(recs[1].1.memory_bytes, 230.0 * MIB);
    }
}
