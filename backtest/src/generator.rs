//! Synthetic job histories of the kinds CI has, as real run summaries (HDR histograms and
//! all), with the truth the algorithms never see: each run's true memory need and mean CPU.

use summary::{
    Accumulator, ContainerSummary, Histograms, Limits, RunSummary, SCALE_BYTES, SCALE_CORES, hist,
};

pub const MIB: f64 = (1u64 << 20) as f64;
/// Runs start this far apart (four a day: the VPA's 24 h decay matters).
pub const RUN_SPACING_MS: i64 = 6 * 3_600_000;

/// A tiny deterministic PRNG (SplitMix64): the same seed gives the same histories.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Roughly normal (sum of four uniforms), mean 0, standard deviation 1.
    pub fn normal(&mut self) -> f64 {
        ((0..4).map(|_| self.unit()).sum::<f64>() - 2.0) * (3.0f64).sqrt()
    }
}

/// What a run of one container really needed: for scoring only, never shown to an algorithm.
#[derive(Debug, Clone, PartialEq)]
pub struct Need {
    pub container: String,
    /// The peak it would have reached had nothing stopped it, bytes.
    pub memory_bytes: f64,
    /// Its mean CPU, cores.
    pub cores: f64,
}

/// One run as the algorithms see it, and the truth for scoring.
pub struct Run {
    pub time_ms: i64,
    pub run_id: String,
    pub summary: RunSummary,
    /// Per container, in the summary's order.
    pub need: Vec<Need>,
}

/// What one container does in one run.
struct Shape {
    name: &'static str,
    /// Mean CPU and its relative spread within the run; bursts to `burst` cores in a share
    /// of the samples.
    cores: f64,
    spread: f64,
    burst: f64,
    burst_share: f64,
    /// True memory peak, and the share of it that sampling every 5 s sees (below 1 for a
    /// spike shorter than an interval).
    peak_mib: f64,
    sampled_share: f64,
    limit_mib: f64,
    limit_cores: f64,
}

pub const FAMILIES: &[&str] = &[
    "steady",
    "noisy",
    "bursty-cpu",
    "growing-memory",
    "step-change",
    "two-clusters",
    "oom-prone",
    "short-spike",
    "with-sidecar",
];

fn jitter(rng: &mut Rng, sd: f64) -> f64 {
    (1.0 + sd * rng.normal()).max(0.3)
}

/// A build container: 1.5 cores, 1.8 GiB, limits 4 cores / 4 GiB.
fn build(rng: &mut Rng) -> Shape {
    Shape {
        name: "build",
        cores: 1.5 * jitter(rng, 0.05),
        spread: 0.2,
        burst: 0.0,
        burst_share: 0.0,
        peak_mib: 1800.0 * jitter(rng, 0.03),
        sampled_share: 0.97,
        limit_mib: 4096.0,
        limit_cores: 4.0,
    }
}

/// Run `i` of `n` of a job of `family`, one shape per container.
fn shapes(family: &str, i: usize, n: usize, rng: &mut Rng) -> Vec<Shape> {
    let mut s = build(rng);
    match family {
        "steady" => {}
        "noisy" => {
            s.cores = 1.5 * jitter(rng, 0.25);
            s.peak_mib = 1800.0 * jitter(rng, 0.15);
        }
        "bursty-cpu" => {
            s.cores = 0.6 * jitter(rng, 0.1);
            s.burst = 3.8;
            s.burst_share = 0.08;
        }
        "growing-memory" => s.peak_mib = (1200.0 + 40.0 * i as f64) * jitter(rng, 0.02),
        "step-change" => {
            if i >= n / 2 {
                s.peak_mib *= 1.6;
                s.cores *= 1.5;
            }
        }
        "two-clusters" => {
            // Matrix legs under one job name, alternating.
            if i % 2 == 1 {
                s.peak_mib = 3200.0 * jitter(rng, 0.03);
                s.cores = 3.0 * jitter(rng, 0.05);
            } else {
                s.peak_mib = 900.0 * jitter(rng, 0.03);
                s.cores = 0.8 * jitter(rng, 0.05);
            }
        }
        "oom-prone" => {
            // It needs about 1.1 GiB, noisily, under a tight 1 GiB limit.
            s.peak_mib = 1100.0 * jitter(rng, 0.08);
            s.limit_mib = 1024.0;
        }
        "short-spike" => {
            // A link step spikes for a second: 5 s sampling sees 60-85 % of it.
            s.peak_mib = 2600.0 * jitter(rng, 0.04);
            s.sampled_share = 0.6 + 0.25 * rng.unit();
        }
        "with-sidecar" => {
            // A database sidecar that spikes briefly while the tests load fixtures.
            let db = Shape {
                name: "postgres",
                cores: 0.2 * jitter(rng, 0.1),
                spread: 0.5,
                peak_mib: 450.0 * jitter(rng, 0.06),
                sampled_share: 0.55 + 0.3 * rng.unit(),
                limit_mib: 1024.0,
                limit_cores: 1.0,
                ..build(rng)
            };
            return vec![s, db];
        }
        _ => unreachable!("unknown family {family}"),
    }
    vec![s]
}

/// `n` runs of a job of `family`, six hours apart.
pub fn history(family: &str, n: usize, rng: &mut Rng) -> Vec<Run> {
    (0..n)
        .map(|i| {
            let time_ms = 1_780_000_000_000 + i as i64 * RUN_SPACING_MS;
            let mut containers = Vec::new();
            let mut need = Vec::new();
            for s in shapes(family, i, n, rng) {
                let (c, cores) = container_of(&s, rng);
                containers.push(c);
                need.push(Need {
                    container: s.name.into(),
                    memory_bytes: s.peak_mib * MIB,
                    cores,
                });
            }
            Run {
                time_ms,
                run_id: format!("{family}-{i}"),
                summary: RunSummary {
                    start_time: summary::time::format_unix_millis(time_ms),
                    end_time: summary::time::format_unix_millis(time_ms + 600_000),
                    duration_seconds: DURATION_S,
                    sample_count: MEMORY_SAMPLES,
                    containers,
                    ..Default::default()
                },
                need,
            }
        })
        .collect()
}

const DURATION_S: f64 = 600.0;
/// CPU every 100 ms, memory every 5 s, over ten minutes.
const CPU_SAMPLES: u64 = 6000;
const MEMORY_SAMPLES: u64 = 120;

/// The container's summary, and its true mean CPU.
fn container_of(s: &Shape, rng: &mut Rng) -> (ContainerSummary, f64) {
    let mut cpu = Accumulator::new(SCALE_CORES);
    let mut sum = 0.0;
    for _ in 0..CPU_SAMPLES {
        let mut c = s.cores * (1.0 + s.spread * rng.normal());
        if rng.unit() < s.burst_share {
            c = s.burst;
        }
        let c = c.clamp(0.0, s.limit_cores);
        sum += c;
        cpu.record(c);
    }
    let mean_cores = sum / CPU_SAMPLES as f64;
    let limit = s.limit_mib * MIB;
    // Over the limit the kernel kills it: the high-water mark is the limit, the need unknown.
    let killed = s.peak_mib * MIB > limit;
    let true_peak = (s.peak_mib * MIB).min(limit);
    let mut mem = Accumulator::new(SCALE_BYTES);
    for k in 0..MEMORY_SAMPLES {
        // Memory climbs over the first 200 s to what sampling sees of the peak, and stays.
        let level = (k as f64 / 40.0).min(1.0) * s.sampled_share * true_peak;
        mem.record(level * (1.0 - 0.02 * rng.unit()));
    }
    let mut histograms = Histograms::new();
    histograms.insert(hist::CPU_CORES.into(), cpu.encode());
    histograms.insert(hist::MEMORY_BYTES.into(), mem.encode());
    let c = ContainerSummary {
        name: s.name.into(),
        cpu_cores: cpu.stats(),
        memory_bytes: mem.stats(),
        cpu_seconds: mean_cores * DURATION_S,
        memory_peak_bytes: Some(true_peak as u64),
        oom_kills: u64::from(killed),
        limits: Some(Limits {
            cpu_cores: Some(s.limit_cores),
            memory_bytes: Some(limit as u64),
        }),
        histograms: Some(histograms),
        ..Default::default()
    };
    (c, mean_cores)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histories_are_deterministic_and_valid() {
        for f in FAMILIES {
            let a = history(f, 6, &mut Rng::new(7));
            let b = history(f, 6, &mut Rng::new(7));
            assert_eq!(a.len(), 6);
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(x.summary, y.summary, "{f}");
                x.summary.validate().unwrap_or_else(|e| panic!("{f}: {e}"));
            }
        }
    }

    #[test]
    fn an_oom_prone_job_is_killed_at_its_limit_and_a_spike_is_missed_by_sampling() {
        let runs = history("oom-prone", 40, &mut Rng::new(1));
        let killed: Vec<&Run> = runs
            .iter()
            .filter(|r| r.summary.containers[0].oom_kills > 0)
            .collect();
        assert!(!killed.is_empty() && killed.len() < runs.len());
        for r in killed {
            let c = &r.summary.containers[0];
            assert_eq!(c.memory_peak_bytes, Some(1024 << 20));
            assert!(r.need[0].memory_bytes > (1024u64 << 20) as f64);
        }
        for r in history("short-spike", 5, &mut Rng::new(2)) {
            let c = &r.summary.containers[0];
            assert!(c.memory_bytes.peak < 0.9 * c.memory_peak_bytes.unwrap() as f64);
            assert_eq!(c.memory_peak_bytes, Some(r.need[0].memory_bytes as u64));
        }
        let two = history("with-sidecar", 3, &mut Rng::new(4));
        let names: Vec<&str> = two[0]
            .summary
            .containers
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["build", "postgres"]);
        assert_eq!(two[0].need.len(), 2);
    }
}
