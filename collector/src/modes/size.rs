//! `collector size FILE...`: the receiver's sizing computation
//! ([`summary::sizing::recommend`]) on local summaries, for people without a receiver.

use std::process::ExitCode;

use anyhow::Context;
use summary::sizing::{self, Sizing, SizingParams, SizingRun, quantity};

use super::show::{parse_runs, read_input};
use crate::settings::cli::SizeArgs;

pub fn size(args: &SizeArgs) -> anyhow::Result<ExitCode> {
    let mut runs = Vec::new();
    for (i, file) in args.files.iter().enumerate() {
        let text = read_input(Some(file))?;
        let read = parse_runs(&text).with_context(|| format!("reading {}", file.display()))?;
        for (j, r) in read.into_iter().enumerate() {
            r.summary
                .validate()
                .with_context(|| format!("{}: run {}", file.display(), j + 1))?;
            let time_ms = summary::time::parse_rfc3339(&r.summary.start_time)
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as i64);
            let id = r.run_id.unwrap_or_else(|| {
                let name = file.file_name().unwrap_or_default().to_string_lossy();
                if j == 0 {
                    name.into_owned()
                } else {
                    format!("{name}#{}", j + 1)
                }
            });
            runs.push((time_ms, i, j, id, r.summary));
        }
    }
    // Oldest first; ties keep the order given.
    runs.sort_by_key(|(t, i, j, ..)| (*t, *i, *j));
    let params = SizingParams {
        runs: args.runs,
        buffer_percent: args.buffer,
        cpu_percentile: args.cpu_percentile,
        cpu_limit: args.cpu_limit,
        classes: args
            .runner_classes
            .as_ref()
            .map(|c| c.0.clone())
            .unwrap_or_default(),
    };
    let view: Vec<SizingRun<'_>> = runs
        .iter()
        .map(|(t, _, _, id, s)| SizingRun {
            time_ms: *t,
            run_id: id,
            summary: s,
        })
        .collect();
    let answer = sizing::recommend(&view, &params);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{}", report(&answer));
    }
    Ok(ExitCode::SUCCESS)
}

/// The answer for a terminal: a table, the reasons, the block to paste.
pub fn report(s: &Sizing) -> String {
    let mut out = format!(
        "sizing from {} of {} runs ({}), CPU {} + {:.0} %\n\n",
        s.runs_considered,
        s.runs_available,
        match s.confidence {
            sizing::Confidence::None => "no runs",
            sizing::Confidence::Provisional => "provisional",
            sizing::Confidence::Confident => "confident",
        },
        s.cpu_percentile.as_str(),
        s.buffer_percent
    );
    let width = s
        .containers
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(9);
    out.push_str(&format!(
        "{:<width$}  {:>11}  {:>9}  {:>14}  {:>14}  flags\n",
        "container", "cpu request", "cpu limit", "memory request", "memory limit"
    ));
    let row = |name: &str, r: &sizing::Resources, flags: String| {
        format!(
            "{:<width$}  {:>11}  {:>9}  {:>14}  {:>14}  {}\n",
            name,
            quantity::cpu(r.cpu_request_cores),
            r.cpu_limit_cores.map_or("-".to_owned(), quantity::cpu),
            quantity::memory(r.memory_request_bytes),
            quantity::memory(r.memory_limit_bytes),
            flags
        )
    };
    for c in &s.containers {
        let flags: Vec<String> = c
            .flags
            .iter()
            .map(|f| {
                serde_json::to_value(f)
                    .map_or(String::new(), |v| v.as_str().unwrap_or("").to_owned())
            })
            .chain(c.cpu.cpu_bound.then(|| "cpu_bound".to_owned()))
            .chain(
                (c.memory.oom_killed_runs > 0).then(|| format!("oom×{}", c.memory.oom_killed_runs)),
            )
            .collect();
        out.push_str(&row(&c.name, &c.resources, flags.join(" ")));
    }
    if s.containers.len() > 1 {
        out.push_str(&row("job", &s.pod, String::new()));
    }
    for n in &s.notes {
        out.push_str(&format!("\n{n}"));
    }
    out.push_str("\n\nwhy:\n");
    for c in &s.containers {
        for w in &c.explanation {
            out.push_str(&format!("  {}: {w}\n", c.name));
        }
    }
    if !s.containers.is_empty() {
        out.push_str("\nresources:\n");
        out.push_str(&s.kubernetes);
    }
    out
}
