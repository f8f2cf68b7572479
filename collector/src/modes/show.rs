//! `collector show`: prints a summary as a table.

use std::{path::Path, process::ExitCode};

use anyhow::Context;
use summary::{MetricsPush, RunSummary};

use crate::output::report;

/// `collector show`: a summary as a table. Accepts what the collector and the receiver
/// produce: a summary, a summary file (`{execution, summary}`), or a query answer (a list of
/// stored runs, or one).
pub fn show(file: Option<&Path>) -> anyhow::Result<ExitCode> {
    use std::io::Read;
    let mut text = String::new();
    match file {
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
    let value: serde_json::Value = serde_json::from_str(&text).context("the input is not JSON")?;
    let runs: Vec<serde_json::Value> = match value {
        serde_json::Value::Array(items) => items,
        other => vec![other],
    };
    if runs.is_empty() {
        println!("no runs");
    }
    for run in runs {
        let (headline, summary) = if run.get("payload").is_some() {
            let stored: summary::StoredRun =
                serde_json::from_value(run).context("not a stored run")?;
            let headline = format!(
                "run {} #{} of {}/{} {} (received {})",
                stored.run_id,
                stored.id,
                stored.repository,
                stored.workflow,
                stored.job,
                stored.received_at
            );
            (headline, stored.payload)
        } else if run.get("summary").is_some() {
            let push: MetricsPush = serde_json::from_value(run).context("not a summary file")?;
            let e = &push.execution;
            (
                format!(
                    "run {} of {} {} {}",
                    e.run_id, e.repository, e.workflow, e.job
                ),
                push.summary,
            )
        } else {
            let summary: RunSummary = serde_json::from_value(run).context("not a run summary")?;
            ("run summary".to_owned(), summary)
        };
        print!("{}", report::table(&headline, &summary));
    }
    Ok(ExitCode::SUCCESS)
}
