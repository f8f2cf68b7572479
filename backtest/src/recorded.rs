//! Histories recorded by the real collector: `histories/<job>/*.json`, each a run summary
//! (`collector run --json` output, a summary file, or a receiver answer with a `summary`).
//! The truth of a recorded run is what it measured: its true memory peak and mean CPU. The
//! collector reports the true peak in `memory_bytes.peak` too, so on these histories the
//! baselines see it as well: they test the algorithms, not the sampling.

use std::path::Path;

use anyhow::Context;
use summary::RunSummary;

use crate::generator::{Need, Run};

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
            anyhow::ensure!(
                !summary.containers.is_empty(),
                "{} has no container",
                path.display()
            );
            let need = truth(&summary);
            let run_id = path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            runs.push(Run {
                time_ms,
                run_id,
                summary,
                need,
            });
        }
        runs.sort_by_key(|r| r.time_ms);
        // Recorded back to back, replayed as a CI job's runs six hours apart, so krr's 3 h
        // minimum and the VPA's 24 h decay act as they would on a real job.
        for (i, r) in runs.iter_mut().enumerate() {
            r.time_ms = i as i64 * crate::generator::RUN_SPACING_MS;
        }
        if runs.len() >= 2 {
            jobs.push((name, runs));
        }
    }
    Ok(jobs)
}

/// What each container of a recorded run used: the true peak (the sampled one where the
/// kernel had none) and the mean CPU. A killed run needed more than that: a lower bound.
fn truth(s: &RunSummary) -> Vec<Need> {
    s.containers
        .iter()
        .map(|c| Need {
            container: c.name.clone(),
            memory_bytes: c
                .memory_peak_bytes
                .map_or(c.memory_bytes.peak, |p| p as f64),
            cores: c.cpu_seconds / s.duration_seconds.max(1e-3),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_each_job_oldest_first_and_skips_other_files() {
        let dir = std::env::temp_dir().join(format!("backtest-recorded-{}", std::process::id()));
        let job = dir.join("job");
        std::fs::create_dir_all(&job).unwrap();
        for (file, start, peak) in [
            ("b.json", "2026-01-01T00:00:02Z", 300),
            ("a.json", "2026-01-01T00:00:05Z", 200),
        ] {
            let run = RunSummary {
                start_time: start.into(),
                duration_seconds: 2.0,
                containers: vec![summary::ContainerSummary {
                    name: "c".into(),
                    cpu_seconds: 3.0,
                    memory_peak_bytes: Some(peak),
                    ..Default::default()
                }],
                ..Default::default()
            };
            std::fs::write(job.join(file), serde_json::to_string(&run).unwrap()).unwrap();
        }
        std::fs::write(job.join("notes.txt"), "not a run").unwrap();
        let jobs = load(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(jobs.len(), 1);
        let runs = &jobs[0].1;
        assert_eq!(runs[0].run_id, "b");
        assert_eq!(runs[1].time_ms, crate::generator::RUN_SPACING_MS);
        assert_eq!(runs[1].need[0].memory_bytes, 200.0);
        assert_eq!(runs[1].need[0].cores, 1.5);
    }
}
