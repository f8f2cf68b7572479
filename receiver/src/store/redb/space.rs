//! The file's size and what redb has allocated in it, for `/metrics` after retention:
//! pages freed by pruning are reused by later commits, so under retention the file stops
//! growing and the allocated bytes follow the runs kept.

use super::{RedbStore, StoreError};
use crate::store::Space;

impl RedbStore {
    /// The file's size and the bytes of its allocated pages. Blocking (call from
    /// `spawn_blocking`); it walks every tree (redb's `stats`) in a write transaction that
    /// is then dropped, so it holds the writer for that long: call it after a retention
    /// round, not per request.
    pub fn space(&self) -> Result<Space, StoreError> {
        let opened = self.db.current()?;
        let result = (|| {
            let file_bytes = std::fs::metadata(self.db.path())
                .map_err(|e| StoreError::Db(Box::new(redb::StorageError::Io(e).into())))?
                .len();
            let txn = opened.db.begin_write()?;
            let stats = txn.stats()?;
            txn.abort()?;
            Ok(Space {
                file_bytes,
                allocated_bytes: stats.allocated_pages() * stats.page_size() as u64,
                stored_bytes: stats.stored_bytes(),
                fragmented_bytes: stats.fragmented_bytes(),
            })
        })();
        self.check_io(opened.generation, result)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use summary::Execution;

    use super::super::NewRun;
    use super::*;
    use crate::store::StoreOptions;

    fn run(cycle: u32, n: u32) -> NewRun {
        let execution = Execution {
            organization: "o".into(),
            repository: "o/r".into(),
            workflow: "w".into(),
            job: format!("j{}", n % 7),
            run_id: format!("{cycle}-{n}"),
            run_attempt: String::new(),
        };
        // About 6 KB of JSON that compresses to a few hundred bytes and more.
        let series: Vec<u32> = (0..600)
            .map(|i| (i * 7919 + n * 31 + cycle) % 1000)
            .collect();
        NewRun::new(&execution, &serde_json::json!({ "n": n, "cpu": series })).unwrap()
    }

    #[tokio::test]
    async fn pruning_then_refilling_reuses_the_space() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(
            &dir.path().join("t.redb"),
            StoreOptions::default(),
            Arc::default(),
        )
        .unwrap();
        let mut sizes = Vec::new();
        for cycle in 0..5 {
            for n in 0..400 {
                store.insert(run(cycle, n)).await.unwrap();
            }
            let full = store.space().unwrap();
            assert!(full.allocated_bytes <= full.file_bytes, "{full:?}");
            while store.prune_before(u64::MAX).await.unwrap() > 0 {}
            let empty = store.space().unwrap();
            // Pages freed by the last commits are released by the next ones (redb keeps
            // them until no transaction can see them), so not everything is back yet.
            assert!(
                empty.allocated_bytes < full.allocated_bytes,
                "{full:?} then {empty:?}"
            );
            sizes.push(full.file_bytes);
        }
        // The first cycle grew the file; later ones refill the pages it freed.
        let first = sizes[0];
        assert!(
            sizes.iter().all(|s| *s <= first + first / 4),
            "file sizes per cycle: {sizes:?}"
        );
        store.close().await;
    }
}
