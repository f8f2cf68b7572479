//! `collector show`: prints a summary as a table, or as a Markdown report.

use std::{path::Path, process::ExitCode};

use anyhow::Context;
use summary::{MetricsPush, RunSummary};

use crate::output::{markdown, report};

/// One run read from a JSON document: a headline naming it, its run id where known, and
/// its summary.
pub struct ReadRun {
    pub headline: String,
    pub run_id: Option<String>,
    pub summary: RunSummary,
}

/// Reads `path` (`-` or `None`: standard input) whole.
pub fn read_input(path: Option<&Path>) -> anyhow::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    match path {
        Some(path) if path != Path::new("-") => {
            text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?
        }
        _ => {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading standard input")?;
        }
    }
    Ok(text)
}

/// The runs of what the collector and the receiver produce: a summary, a summary file
/// (`{execution, summary}`), or a query answer (a list of stored runs, or one).
pub fn parse_runs(text: &str) -> anyhow::Result<Vec<ReadRun>> {
    let value: serde_json::Value = serde_json::from_str(text).context("the input is not JSON")?;
    let runs: Vec<serde_json::Value> = match value {
        serde_json::Value::Array(items) => items,
        other => vec![other],
    };
    let mut out = Vec::with_capacity(runs.len());
    for run in runs {
        out.push(if run.get("payload").is_some() {
            let stored: summary::StoredRun =
                serde_json::from_value(run).context("not a stored run")?;
            ReadRun {
                headline: format!(
                    "run {} #{} of {}/{} {} (received {})",
                    stored.run_id,
                    stored.id,
                    stored.repository,
                    stored.workflow,
                    stored.job,
                    stored.received_at
                ),
                run_id: Some(stored.run_id),
                summary: stored.payload,
            }
        } else if run.get("summary").is_some() {
            let push: MetricsPush = serde_json::from_value(run).context("not a summary file")?;
            let e = push.execution;
            ReadRun {
                headline: format!(
                    "run {} of {} {} {}",
                    e.run_id, e.repository, e.workflow, e.job
                ),
                run_id: Some(e.run_id).filter(|r| !r.is_empty()),
                summary: push.summary,
            }
        } else {
            ReadRun {
                headline: "run summary".to_owned(),
                run_id: None,
                summary: serde_json::from_value(run).context("not a run summary")?,
            }
        });
    }
    Ok(out)
}

/// `collector show`: a summary as a table. Accepts what [`parse_runs`] reads.
pub fn show(file: Option<&Path>, markdown: bool) -> anyhow::Result<ExitCode> {
    let runs = parse_runs(&read_input(file)?)?;
    if runs.is_empty() {
        println!("no runs");
    }
    for run in runs {
        if markdown {
            print!("{}", markdown::report(run.headline.trim(), &run.summary));
        } else {
            print!("{}", report::table(&run.headline, &run.summary));
        }
    }
    Ok(ExitCode::SUCCESS)
}
