//! Replaying a history: for each run k, every algorithm recommends from the runs before k
//! only, and that is scored against run k's truth. An **under-provisioned** run is one whose
//! true memory need exceeds the recommended limit (it would have been OOM-killed). **Waste**
//! is what was recommended beyond what the run used: memory limit − true peak, and CPU
//! request − mean cores, each when positive, averaged over the scored runs.

use summary::sizing::{self, SizingParams, SizingRun};

use crate::baselines::{self, Rec};
use crate::generator::Run;

/// The algorithms, in the table's order.
pub const ALGORITHMS: [&str; 4] = ["ours", "ci-sizer", "krr", "vpa"];

/// One algorithm's score on some histories.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Score {
    pub runs: usize,
    pub under: usize,
    /// Sums over scored runs: GiB of memory, cores of CPU.
    pub memory_waste_gib: f64,
    pub cpu_waste_cores: f64,
}

impl Score {
    pub fn add(&mut self, other: &Score) {
        self.runs += other.runs;
        self.under += other.under;
        self.memory_waste_gib += other.memory_waste_gib;
        self.cpu_waste_cores += other.cpu_waste_cores;
    }

    /// Mean waste per scored run.
    pub fn memory_per_run(&self) -> f64 {
        self.memory_waste_gib / self.runs.max(1) as f64
    }

    pub fn cpu_per_run(&self) -> f64 {
        self.cpu_waste_cores / self.runs.max(1) as f64
    }
}

fn ours(history: &[SizingRun<'_>]) -> Rec {
    let s = sizing::recommend(history, &SizingParams::default());
    match s.containers.first() {
        Some(c) => Rec {
            cpu_cores: c.resources.cpu_request_cores,
            memory_bytes: c.resources.memory_limit_bytes as f64,
        },
        None => Rec {
            cpu_cores: 0.5,
            memory_bytes: 4.0 * (1u64 << 30) as f64,
        },
    }
}

fn recommend(algorithm: &str, history: &[SizingRun<'_>]) -> Rec {
    match algorithm {
        "ours" => ours(history),
        "ci-sizer" => baselines::ci_sizer(history),
        "krr" => baselines::krr(history),
        "vpa" => baselines::vpa(history),
        _ => unreachable!("unknown algorithm {algorithm}"),
    }
}

/// Every algorithm's score on one history (runs oldest first; the first is not scored).
pub fn replay(runs: &[Run]) -> [Score; 4] {
    let view: Vec<SizingRun<'_>> = runs
        .iter()
        .map(|r| SizingRun {
            time_ms: r.time_ms,
            run_id: &r.run_id,
            summary: &r.summary,
        })
        .collect();
    let mut scores = [Score::default(); 4];
    for k in 1..runs.len() {
        let truth = &runs[k];
        for (a, score) in ALGORITHMS.iter().zip(scores.iter_mut()) {
            let rec = recommend(a, &view[..k]);
            score.runs += 1;
            if truth.need_bytes > rec.memory_bytes {
                score.under += 1;
            }
            score.memory_waste_gib +=
                (rec.memory_bytes - truth.need_bytes).max(0.0) / (1u64 << 30) as f64;
            score.cpu_waste_cores += (rec.cpu_cores - truth.need_cores).max(0.0);
        }
    }
    scores
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::{Rng, history};

    #[test]
    fn every_run_after_the_first_is_scored_by_every_algorithm() {
        let runs = history("steady", 6, &mut Rng::new(3));
        let scores = replay(&runs);
        for s in scores {
            assert_eq!(s.runs, 5);
            assert!(s.memory_waste_gib >= 0.0 && s.cpu_waste_cores >= 0.0);
        }
    }
}
