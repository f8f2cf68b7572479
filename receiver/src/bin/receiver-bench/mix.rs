//! A realistic mix of stored runs, for the storage benchmark and the dictionary's training:
//!
//! - 60 % short jobs (20 s to 15 min, 1 to 3 containers): histograms, top processes, a
//!   timeline of one point per 10 s bucket (at most [`summary::timeline::MAX_POINTS`]);
//! - 10 % two-hour jobs with full timelines (3 containers, every series, 360 points each)
//!   and histograms of 72,000 samples;
//! - 30 % seed-format runs: only the seed README's fields (no histograms, no timeline).
//!
//! Each kind is a pool of templates drawn from a seeded generator (values that wander and
//! jitter like real readings, so the compressor sees no repeated summary); a run is a
//! template with its own run id and times. The dictionary is trained on another seed than
//! the one measured.

use summary::timeline::{ContainerTimeline, Timeline};
use summary::{
    Accumulator, CollectorInfo, ContainerSummary, Execution, Limits, MetricsPush, ProcessSummary,
    RunSummary, SCALE_BYTES, SCALE_CORES, SCALE_PERCENT, Source, Stats,
};

/// xorshift64*: enough randomness for plausible readings, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

/// The kinds of run in the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Short,
    Long,
    Seed,
}

/// Which kind run `i` is: 6 short, 1 long, 3 seed-format in every 10.
pub fn kind_of(i: u64) -> Kind {
    match i % 10 {
        0..=5 => Kind::Short,
        6 => Kind::Long,
        _ => Kind::Seed,
    }
}

const NAMES: [&str; 8] = [
    "cargo", "rustc", "cc1", "ld", "node", "python3", "git", "sh",
];
const CONTAINERS: [&str; 3] = ["runner", "postgres", "redis"];

/// A series that moves in phases (a level held for a while, then another) with jitter
/// proportional to the level: how CPU and memory of a CI job look.
fn series(rng: &mut Rng, n: usize, level: f64, spread: f64) -> Vec<u32> {
    let mut v = level;
    let mut left = 0;
    (0..n)
        .map(|_| {
            if left == 0 {
                v = (level * rng.range(0.2, 1.8)).max(0.0);
                left = 3 + rng.next() % 30;
            }
            left -= 1;
            (v + rng.range(-spread, spread)).max(0.0).round() as u32
        })
        .collect()
}

/// Network, disk, wait, pressure: mostly nothing, in bursts.
fn bursts(rng: &mut Rng, n: usize, level: f64) -> Vec<u32> {
    let mut left = 0u64;
    (0..n)
        .map(|_| {
            if left == 0 && rng.unit() < 0.1 {
                left = 1 + rng.next() % 8;
            }
            if left > 0 {
                left -= 1;
                (level * rng.range(0.1, 2.0)).round() as u32
            } else {
                0
            }
        })
        .collect()
}

fn timeline(rng: &mut Rng, points: usize, bucket: f64, containers: usize, full: bool) -> Timeline {
    Timeline {
        bucket_seconds: bucket,
        containers: (0..containers)
            .map(|c| {
                let level = rng.range(200.0, 1800.0);
                let cpu = series(rng, points, level, level / 10.0);
                let cpu_max = cpu.iter().map(|v| v + (rng.next() % 300) as u32).collect();
                let level = rng.range(80.0, 3000.0);
                let mem = series(rng, points, level, 3.0);
                let mem_max = mem.iter().map(|v| v + (rng.next() % 8) as u32).collect();
                let extra = |rng: &mut Rng, level: f64| {
                    if full {
                        bursts(rng, points, level)
                    } else {
                        Vec::new()
                    }
                };
                ContainerTimeline {
                    name: CONTAINERS[c].into(),
                    start_seconds: 0.0,
                    cpu_millicores: cpu,
                    cpu_millicores_max: cpu_max,
                    memory_mib: mem,
                    memory_mib_max: mem_max,
                    network_kib_per_sec: extra(rng, 300.0),
                    disk_kib_per_sec: extra(rng, 2000.0),
                    run_queue_wait_millicores: extra(rng, 40.0),
                    cpu_pressure_percent: extra(rng, 5.0),
                }
            })
            .collect(),
    }
}

fn processes(rng: &mut Rng, container: &str) -> Vec<ProcessSummary> {
    (0..10)
        .map(|i| ProcessSummary {
            pid: 1000 + (rng.next() % 60_000) as i32,
            name: NAMES[(rng.next() % NAMES.len() as u64) as usize].into(),
            peak_cpu_percent: (rng.range(1.0, 200.0) * 10.0).round() / 10.0,
            peak_mem_rss_bytes: (rng.range(1e6, 2e9)) as u64,
            cpu_seconds: rng.range(0.01, 300.0),
            container: Some(container.into()),
            exited: i % 3 == 0,
        })
        .collect()
}

/// One template of `kind`, from `seed`.
pub fn template(kind: Kind, seed: u64) -> RunSummary {
    let mut rng = Rng::new(seed);
    let (duration, containers, samples) = match kind {
        Kind::Short => {
            let d = rng.range(20.0, 900.0).round();
            (d, 1 + (rng.next() % 3) as usize, d as u32)
        }
        Kind::Long => (7200.0, 3, 72_000),
        Kind::Seed => {
            let d = rng.range(20.0, 1800.0).round();
            (d, 1 + (rng.next() % 2) as usize, d as u32)
        }
    };
    let seed_only = kind == Kind::Seed;
    let mut total = Accumulator::new(SCALE_PERCENT);
    let mut used = Accumulator::new(SCALE_BYTES);
    let mut list = Vec::new();
    let mut hists = Vec::new();
    for name in CONTAINERS.iter().take(containers) {
        let mut cpu = Accumulator::new(SCALE_CORES);
        let mut mem = Accumulator::new(SCALE_BYTES);
        let (cpu_level, mem_level) = (rng.range(0.1, 3.5), rng.range(5e7, 3e9));
        for _ in 0..samples {
            let v = (cpu_level * rng.range(0.2, 1.6)).max(0.0);
            cpu.record(v);
            mem.record(mem_level * rng.range(0.6, 1.1));
            total.record((v * 25.0).min(100.0));
            used.record(mem_level * rng.range(0.9, 1.2));
        }
        let limits = Limits {
            cpu_cores: Some(f64::from(1 + (rng.next() % 8) as u32)),
            memory_bytes: Some((1 + rng.next() % 16) << 30),
        };
        let name = name.to_string();
        hists.push((cpu.encode(), mem.encode()));
        list.push(ContainerSummary {
            name,
            cpu_cores: cpu.stats(),
            memory_bytes: mem.stats(),
            cpu_seconds: cpu.stats().avg * duration,
            cpu_source: if seed_only {
                Source::Proc
            } else {
                Source::Ebpf
            },
            memory_source: if seed_only {
                Source::Proc
            } else {
                Source::Cgroup
            },
            memory_peak_bytes: (!seed_only).then(|| mem.stats().peak as u64 + 4096),
            limits: (!seed_only).then_some(limits),
            cpu_to_limit: (!seed_only).then(|| scaled(cpu.stats(), limits.cpu_cores)),
            ..Default::default()
        });
    }
    let mut summary = RunSummary {
        start_time: String::new(),
        end_time: String::new(),
        duration_seconds: duration,
        sample_count: u64::from(samples),
        cpu_total_percent: total.stats(),
        mem_used_bytes: used.stats(),
        cpu_source: if seed_only {
            Source::Proc
        } else {
            Source::Ebpf
        },
        top_cpu_processes: processes(&mut rng, "runner"),
        top_mem_processes: processes(&mut rng, "runner"),
        containers: list,
        ..Default::default()
    };
    if !seed_only {
        for (c, (cpu, mem)) in summary.containers.iter_mut().zip(hists) {
            c.histograms = Some(
                [
                    (summary::hist::CPU_CORES.into(), cpu),
                    (summary::hist::MEMORY_BYTES.into(), mem),
                ]
                .into(),
            );
        }
        summary.histograms = Some(
            [
                (summary::hist::CPU_TOTAL_PERCENT.into(), total.encode()),
                (summary::hist::MEM_USED_BYTES.into(), used.encode()),
            ]
            .into(),
        );
        summary.collector = Some(CollectorInfo {
            version: "0.1.0".into(),
            mode: "run".into(),
            ebpf: true,
        });
        let (points, bucket) = match kind {
            Kind::Long => (summary::timeline::MAX_POINTS, 20.0),
            _ => (((duration / 10.0).ceil() as usize).max(1), 10.0),
        };
        summary.timeline = Some(timeline(
            &mut rng,
            points,
            bucket,
            containers,
            kind == Kind::Long,
        ));
    }
    summary
}

fn scaled(s: Stats, by: Option<f64>) -> Stats {
    let d = by.unwrap_or(1.0);
    Stats {
        peak: s.peak / d,
        p99: s.p99 / d,
        p95: s.p95 / d,
        p75: s.p75 / d,
        p50: s.p50 / d,
        avg: s.avg / d,
    }
}

/// Templates per kind.
pub const POOL: u64 = 48;

/// The template pools, from `seed`: `[short, long, seed-format]`.
pub fn pools(seed: u64) -> [Vec<RunSummary>; 3] {
    let pool = |kind, base: u64| (0..POOL).map(|i| template(kind, base + i)).collect();
    [
        pool(Kind::Short, seed),
        pool(Kind::Long, seed + 1_000),
        pool(Kind::Seed, seed + 2_000),
    ]
}

/// Run `i` of the mix in job `i % jobs`: a template with its own run id and times (a run
/// every 30 s from 2025-12-01: a million runs span a year).
pub fn run(pools: &[Vec<RunSummary>; 3], i: u64, jobs: u64) -> MetricsPush {
    let pool = match kind_of(i) {
        Kind::Short => &pools[0],
        Kind::Long => &pools[1],
        Kind::Seed => &pools[2],
    };
    let mut summary = pool[((i / 10) % POOL) as usize].clone();
    let start_ms = 1_764_547_200_000 + i as i64 * 30_000;
    summary.start_time = summary::time::format_unix_millis(start_ms);
    summary.end_time =
        summary::time::format_unix_millis(start_ms + (summary.duration_seconds * 1000.0) as i64);
    let job = i % jobs.max(1);
    MetricsPush {
        execution: Execution {
            organization: "bench-org".into(),
            repository: format!("bench-org/repo-{:03}", job % 97),
            workflow: "ci.yml".into(),
            job: format!("job-{job:05}"),
            run_id: format!("{}", 9_000_000_000u64 + i),
            run_attempt: "1".into(),
        },
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_is_valid_and_varied() {
        let pools = pools(7);
        for i in 0..30 {
            let push = run(&pools, i, 5);
            push.validate().unwrap();
        }
        let a = serde_json::to_vec(&run(&pools, 0, 5).summary).unwrap();
        let b = serde_json::to_vec(&run(&pools, 10, 5).summary).unwrap();
        assert_ne!(a, b);
    }
}
