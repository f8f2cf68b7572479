//! Replaying a history: for each run k, every algorithm recommends from the runs before k
//! only, and that is scored against run k's truth. An **under-provisioned** run is one whose
//! true memory need exceeds the recommended limit (it would have been OOM-killed). **Waste**
//! is what was recommended beyond what the run used: memory limit − true peak, and CPU
//! request − mean cores, each when positive, summed over a run's containers, then summed
//! over the scored runs (GiB·runs, core·runs) and shown as a mean per scored run.

use summary::sizing::{self, SizingParams, SizingRun};

use crate::baselines::{self, Rec};
use crate::generator::{Need, Run};

const GIB: f64 = (1u64 << 30) as f64;

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

fn ours(history: &[SizingRun<'_>]) -> Vec<(String, Rec)> {
    let s = sizing::recommend(history, &SizingParams::default());
    s.containers
        .into_iter()
        .map(|c| {
            let rec = Rec {
                cpu_cores: c.resources.cpu_request_cores,
                memory_bytes: c.resources.memory_limit_bytes as f64,
            };
            (c.name, rec)
        })
        .collect()
}

fn recommend(algorithm: &str, history: &[SizingRun<'_>]) -> Vec<(String, Rec)> {
    match algorithm {
        "ours" => ours(history),
        "ci-sizer" => baselines::per_container(history, baselines::ci_sizer),
        "krr" => baselines::per_container(history, baselines::krr),
        "vpa" => baselines::per_container(history, baselines::vpa),
        _ => unreachable!("unknown algorithm {algorithm}"),
    }
}

/// Scores one recommendation against one run's truth. The run is under-provisioned when
/// any container's true peak exceeds its limit (one OOM kill fails the job); waste adds up
/// over the containers. A container the recommendation does not name gets the default.
pub fn score_run(recs: &[(String, Rec)], need: &[Need]) -> Score {
    let mut s = Score {
        runs: 1,
        ..Score::default()
    };
    let mut under = false;
    for n in need {
        let rec = recs
            .iter()
            .find(|(name, _)| *name == n.container)
            .map_or(baselines::DEFAULT, |(_, r)| *r);
        under |= n.memory_bytes > rec.memory_bytes;
        s.memory_waste_gib += (rec.memory_bytes - n.memory_bytes).max(0.0) / GIB;
        s.cpu_waste_cores += (rec.cpu_cores - n.cores).max(0.0);
    }
    s.under = usize::from(under);
    s
}

/// Every algorithm's score on one history (runs oldest first; the first is not scored,
/// having nothing before it).
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
        for (a, score) in ALGORITHMS.iter().zip(scores.iter_mut()) {
            score.add(&score_run(&recommend(a, &view[..k]), &runs[k].need));
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

    fn need(container: &str, gib: f64, cores: f64) -> Need {
        Need {
            container: container.into(),
            memory_bytes: gib * GIB,
            cores,
        }
    }

    #[test]
    fn a_run_is_under_provisioned_when_any_container_would_be_killed() {
        let recs = vec![
            (
                "build".to_owned(),
                Rec {
                    cpu_cores: 2.0,
                    memory_bytes: 2.0 * GIB,
                },
            ),
            (
                "db".to_owned(),
                Rec {
                    cpu_cores: 0.5,
                    memory_bytes: 0.5 * GIB,
                },
            ),
        ];
        // build wastes 0.5 GiB and 0.5 core; db is 0.25 GiB short, wastes 0.25 core.
        let s = score_run(&recs, &[need("build", 1.5, 1.5), need("db", 0.75, 0.25)]);
        assert_eq!((s.runs, s.under), (1, 1));
        assert!((s.memory_waste_gib - 0.5).abs() < 1e-9);
        assert!((s.cpu_waste_cores - 0.75).abs() < 1e-9);
        // A container it does not name gets the default, 4 GiB.
        let s = score_run(&recs[..1], &[need("db", 1.0, 0.0)]);
        assert_eq!(s.under, 0);
        assert!((s.memory_waste_gib - 3.0).abs() < 1e-9);
    }
}
