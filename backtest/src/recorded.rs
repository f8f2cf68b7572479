//! Histories recorded by the real collector: `histories/<job>/*.json`, each a run summary
//! (`collector run --json` output) or a summary file. The truth of a recorded run is what it
//! measured: its true memory peak and its mean CPU; none of them was OOM-killed.

use std::path::Path;

use anyhow::Context;
use summary::RunSummary;

use crate::generator::Run;

/// The recorded jobs under `dir`, by name, each oldest first.
pub fn load(dir: &Path) -> anyhow::Result<Vec<(String, Vec<Run>)>> {
    let mut jobs = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for job in entries.into_iter().filter(|e| e.path().is_dir()) {
        let name = job.file_name().to_string_lossy().into_owned();
        let mut runs = Vec::new();
        for file in std::fs::read_dir(job.path())? {
            let path = file?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let value: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", path.display()))?;
            let summary: RunSummary = match value.get("summary") {
                Some(s) => serde_json::from_value(s.clone()),
                None => serde_json::from_value(value),
            }
            .with_context(|| format!("{} is not a run summary", path.display()))?;
            let time_ms = summary::time::parse_rfc3339(&summary.start_time)
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as i64);
            let c = summary
                .containers
                .first()
                .with_context(|| format!("{} has no container", path.display()))?;
            let need_bytes = c
                .memory_peak_bytes
                .map_or(c.memory_bytes.peak, |p| p as f64);
            let need_cores = c.cpu_seconds / summary.duration_seconds.max(1e-3);
            let run_id = path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            runs.push(Run {
                time_ms,
                run_id,
                summary,
                need_bytes,
                need_cores,
            });
        }
        runs.sort_by_key(|r| r.time_ms);
        if runs.len() >= 2 {
            jobs.push((name, runs));
        }
    }
    Ok(jobs)
}
