//! `cargo xtask bench sizing`: replays job histories and scores our right-sizing
//! (`summary::sizing`) against CI Sizer, krr's `simple` strategy and a VPA-like recommender,
//! side by side: under-provisioned runs (the true peak above the recommended limit: an OOM
//! kill) and waste (recommended minus used, memory and CPU).
//!
//! - [`generator`]: synthetic families (steady, noisy, bursty CPU, growing memory, a step
//!   change, two clusters, OOM-prone, a short spike, a sidecar), as real summaries.
//! - [`recorded`]: histories the real collector recorded (`backtest/histories/`).
//! - [`baselines`]: the anchors' algorithms; [`score`]: the replay.

mod baselines;
mod generator;
mod recorded;
mod score;

use std::path::PathBuf;

use clap::Parser;

use generator::{FAMILIES, Rng, history};
use score::{ALGORITHMS, Score, replay};

#[derive(Parser)]
#[command(
    name = "backtest",
    about = "Backtest of right-sizing: ours against CI Sizer, krr and a VPA-like recommender"
)]
struct Args {
    /// The quick set (CI): 3 jobs of 12 runs per family instead of 10 of 30.
    #[arg(long)]
    small: bool,
    /// Seed of the synthetic histories.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Recorded histories (one folder of run summaries per job).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/histories"))]
    recorded: PathBuf,
}

/// The best of `scores`: fewest under-provisioned runs, then least memory waste, then least
/// CPU waste (an OOM kill costs a rerun; memory is what packs a node).
fn winner(scores: &[Score]) -> usize {
    (0..scores.len())
        .min_by(|&a, &b| {
            let (x, y) = (&scores[a], &scores[b]);
            x.under
                .cmp(&y.under)
                .then(x.memory_per_run().total_cmp(&y.memory_per_run()))
                .then(x.cpu_per_run().total_cmp(&y.cpu_per_run()))
        })
        .unwrap_or(0)
}

/// One line saying who wins a row, and how ours compares with the best baseline.
fn verdict(name: &str, scores: &[Score; 4]) -> String {
    let w = ALGORITHMS[winner(scores)];
    let b = 1 + winner(&scores[1..]);
    let (ours, base) = (&scores[0], &scores[b]);
    let mut short = Vec::new();
    if ours.under > base.under {
        short.push(format!(
            "{} under-provisioned vs {}",
            ours.under, base.under
        ));
    }
    if ours.memory_per_run() > base.memory_per_run() {
        short.push(format!(
            "memory waste {:.2} vs {:.2} GiB/run",
            ours.memory_per_run(),
            base.memory_per_run()
        ));
    }
    if ours.cpu_per_run() > base.cpu_per_run() {
        short.push(format!(
            "CPU waste {:.2} vs {:.2} cores/run",
            ours.cpu_per_run(),
            base.cpu_per_run()
        ));
    }
    let against = if short.is_empty() {
        format!(
            "ours beats the best baseline ({}) on all three",
            ALGORITHMS[b]
        )
    } else {
        format!(
            "ours vs the best baseline ({}): {}",
            ALGORITHMS[b],
            short.join(", ")
        )
    };
    format!("{name:<18} {w} wins; {against}")
}

fn row(name: &str, scores: &[Score; 4]) {
    let cells: Vec<String> = scores
        .iter()
        .map(|s| {
            format!(
                "{:>5} {:>7.2} {:>5.2}",
                s.under,
                s.memory_per_run(),
                s.cpu_per_run()
            )
        })
        .collect();
    println!("{name:<18} {:>5} | {} |", scores[0].runs, cells.join(" | "));
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (jobs, runs) = if args.small { (3, 12) } else { (10, 30) };
    let recorded = recorded::load(&args.recorded)
        .map_err(|e| eprintln!("recorded histories not read: {e:#}"))
        .unwrap_or_default();
    println!(
        "right-sizing backtest: {jobs} jobs × {runs} runs per synthetic family (seed {}), {} recorded jobs",
        args.seed,
        recorded.len()
    );
    println!("every run k is scored against each algorithm's answer from runs 0..k-1 only\n");
    let names: Vec<String> = ALGORITHMS.iter().map(|a| format!("{a:^19}")).collect();
    println!("{:<18} {:>5} | {} |", "", "", names.join(" | "));
    let header = ["under GiB/run cores"; 4].map(|h| format!("{h:>19}"));
    println!("{:<18} {:>5} | {} |", "family", "runs", header.join(" | "));
    let mut rows: Vec<(String, [Score; 4])> = Vec::new();
    let mut rng = Rng::new(args.seed);
    for family in FAMILIES {
        let mut total = [Score::default(); 4];
        for _ in 0..jobs {
            for (t, s) in total
                .iter_mut()
                .zip(&replay(&history(family, runs, &mut rng)))
            {
                t.add(s);
            }
        }
        rows.push((family.to_string(), total));
    }
    for (name, history) in &recorded {
        rows.push((format!("rec:{name}"), replay(history)));
    }
    let mut overall = [Score::default(); 4];
    for (name, scores) in &rows {
        row(name, scores);
        for (o, s) in overall.iter_mut().zip(scores) {
            o.add(s);
        }
    }
    row("overall", &overall);
    println!(
        "\nunder: runs whose true memory peak exceeded the recommended limit (it would have been\n\
         OOM-killed). GiB/run, cores: waste, the mean per scored run of recommended minus used\n\
         (memory limit minus true peak; CPU request minus mean cores; each when positive,\n\
         summed over the run's containers).\n\
         Data: the baselines read the sampled memory peak (memory_bytes.peak), as their\n\
         collectors sample; ours also reads the kernel's true peak (memory_peak_bytes), the data\n\
         advantage we claim. In rec: histories the collector reports the true peak in both, so\n\
         there the baselines see it too. An OOM-killed run's need is unknown to every algorithm.\n"
    );
    println!("who wins (fewest under-provisioned runs, then least memory, then least CPU waste):");
    for (name, scores) in rows.iter().chain([&("overall".to_string(), overall)]) {
        println!("{}", verdict(name, scores));
    }
    Ok(())
}
