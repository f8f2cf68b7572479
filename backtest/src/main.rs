//! `cargo xtask bench sizing`: replays job histories and scores our right-sizing
//! (`summary::sizing`) against CI Sizer, krr's `simple` strategy and a VPA-like recommender,
//! side by side: under-provisioned runs (the true peak above the recommended limit: an OOM
//! kill) and waste (recommended minus used, memory and CPU).
//!
//! - [`generator`]: synthetic families (steady, noisy, bursty CPU, growing memory, a step
//!   change, two clusters, OOM-prone, a short spike), as real summaries.
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

fn row(name: &str, scores: &[Score; 4]) {
    let cells: Vec<String> = scores
        .iter()
        .map(|s| {
            format!(
                "{:>4} {:>7.2} {:>6.2}",
                s.under,
                s.memory_per_run(),
                s.cpu_per_run()
            )
        })
        .collect();
    let best_under = scores.iter().map(|s| s.under).min().unwrap_or(0);
    // Fewest under-provisioned runs, then least memory waste among those.
    let winner = scores
        .iter()
        .enumerate()
        .filter(|(_, s)| s.under == best_under)
        .min_by(|a, b| a.1.memory_per_run().total_cmp(&b.1.memory_per_run()))
        .map_or("-", |(i, _)| ALGORITHMS[i]);
    println!(
        "{name:<16} {:>5} | {} | {winner}",
        scores[0].runs,
        cells.join(" | ")
    );
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (jobs, runs) = if args.small { (3, 12) } else { (10, 30) };
    println!(
        "right-sizing backtest: {jobs} jobs × {runs} runs per family, seed {}",
        args.seed
    );
    println!("each run is scored against a recommendation from the runs before it only\n");
    let header: Vec<String> = ALGORITHMS.iter().map(|a| format!("{a:>19}")).collect();
    println!(
        "{:<16} {:>5} | {} | fewest OOMs, then least memory",
        "",
        "",
        header.join(" | ")
    );
    println!(
        "{:<16} {:>5} | {} |",
        "family",
        "runs",
        ["under  GiB/run cores"; 4]
            .map(|h| format!("{h:>19}"))
            .join(" | ")
    );
    let mut overall = [Score::default(); 4];
    let mut rng = Rng::new(args.seed);
    for family in FAMILIES {
        let mut total = [Score::default(); 4];
        for _ in 0..jobs {
            let scores = replay(&history(family, runs, &mut rng));
            for (t, s) in total.iter_mut().zip(&scores) {
                t.add(s);
            }
        }
        row(family, &total);
        for (o, s) in overall.iter_mut().zip(&total) {
            o.add(s);
        }
    }
    match recorded::load(&args.recorded) {
        Ok(recorded) if !recorded.is_empty() => {
            for (name, history) in recorded {
                let scores = replay(&history);
                row(&format!("rec:{name}"), &scores);
                for (o, s) in overall.iter_mut().zip(&scores) {
                    o.add(s);
                }
            }
        }
        Ok(_) => println!("(no recorded histories in {})", args.recorded.display()),
        Err(e) => println!("(recorded histories not read: {e:#})"),
    }
    row("overall", &overall);
    println!(
        "\nunder: runs whose true memory peak exceeded the recommended limit (an OOM kill);\n\
         GiB/run, cores: mean waste per run (recommended minus used, when positive).\n\
         The baselines read the sampled memory peak, as their collectors do; ours reads the\n\
         kernel's true peak (memory.peak), which the summaries carry."
    );
    Ok(())
}
