//! The spool: finished jobs' summaries wait here for the receiver (bounded in bytes), and
//! active jobs' checkpoints live in `active/`; refused summaries go to `rejected/`.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::SystemTime,
};

use anyhow::Context;
use summary::MetricsPush;

use super::identity::job_key;
use crate::output::{
    file::write_atomically,
    push::{self, PushError, PushTarget},
};

/// Summaries waiting for the receiver, one file each, bounded in bytes.
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
}

impl Spool {
    pub fn open(dir: &Path, max_bytes: u64) -> anyhow::Result<Self> {
        for sub in ["", "active", "rejected"] {
            std::fs::create_dir_all(dir.join(sub)).with_context(|| {
                format!("creating the spool directory {}", dir.join(sub).display())
            })?;
        }
        Ok(Self {
            dir: dir.to_owned(),
            max_bytes,
        })
    }

    /// Adds a finished job's summary, then drops the oldest entries past the size bound.
    pub fn add(&self, push: &MetricsPush) -> anyhow::Result<PathBuf> {
        // Names sort oldest first: the time, then a sequence for adds within one millisecond.
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let millis = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed) % 1_000_000;
        let path = self.dir.join(format!(
            "{millis:015}-{seq:06}-{}.json",
            job_key(&push.execution)
        ));
        write_atomically(&path, &serde_json::to_vec(push)?)?;
        let mut entries = self.pending();
        let mut total: u64 = entries
            .iter()
            .filter_map(|p| p.metadata().ok())
            .map(|m| m.len())
            .sum();
        while total > self.max_bytes && entries.len() > 1 {
            let oldest = entries.remove(0);
            let size = oldest.metadata().map(|m| m.len()).unwrap_or(0);
            tracing::error!(
                "spool over --spool-max-bytes ({} bytes): dropping the oldest summary {}",
                self.max_bytes,
                oldest.display()
            );
            let _ = std::fs::remove_file(&oldest);
            total = total.saturating_sub(size);
        }
        Ok(path)
    }

    /// Summaries not yet acknowledged, oldest first.
    pub fn pending(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        files
    }

    pub(super) fn checkpoint_path(&self, key: &str) -> PathBuf {
        self.dir.join("active").join(format!("{key}.json"))
    }

    pub(super) fn checkpoints(&self) -> Vec<(String, MetricsPush)> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.dir.join("active"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = entry.path();
            let Some(key) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
                continue;
            };
            match std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
            {
                Some(push) => out.push((key, push)),
                None => tracing::warn!("ignoring the unreadable checkpoint {}", path.display()),
            }
        }
        out
    }

    fn reject(&self, path: &Path) {
        if let Some(name) = path.file_name() {
            let _ = std::fs::rename(path, self.dir.join("rejected").join(name));
        }
    }
}

/// Pushes what the spool holds, oldest first, until it is empty or the receiver fails.
/// Returns how many were acknowledged.
pub(super) async fn drain_spool(spool: &Spool, target: &PushTarget) -> Result<usize, String> {
    let mut pushed = 0;
    for path in spool.pending() {
        let push: MetricsPush = match std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
        {
            Some(p) => p,
            None => {
                tracing::error!("unreadable summary {} moved to rejected/", path.display());
                spool.reject(&path);
                continue;
            }
        };
        match push::push(target, &push).await {
            Ok(_) => {
                let _ = std::fs::remove_file(&path);
                pushed += 1;
                tracing::info!(job = %push.execution.job, run_id = %push.execution.run_id, repository = %push.execution.repository, "job summary pushed");
            }
            Err(PushError::Refused { status, body }) => {
                tracing::error!(
                    "the receiver refused {} ({status}: {body}); kept in rejected/",
                    path.display()
                );
                spool.reject(&path);
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(pushed)
}

#[cfg(test)]
mod tests {
    use summary::Execution;

    use super::*;

    #[test]
    fn spool_is_bounded_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let push = |run: &str| MetricsPush {
            execution: Execution {
                run_id: run.into(),
                ..Default::default()
            },
            summary: Default::default(),
        };
        let one = serde_json::to_vec(&push("1")).unwrap().len() as u64;
        let spool = Spool::open(dir.path(), one * 2 + one / 2).unwrap();
        for run in ["1", "2", "3"] {
            spool.add(&push(run)).unwrap();
        }
        let left: Vec<String> = spool
            .pending()
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        assert_eq!(left.len(), 2);
        assert!(left[0].contains(r#""run_id":"2""#) && left[1].contains(r#""run_id":"3""#));
    }
}
