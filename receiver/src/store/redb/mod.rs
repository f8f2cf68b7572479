//! The redb backend (the default: one embedded file): tables, the group-commit writer,
//! queries and retention.
//!
//! - [`schema`]: every table (key and value layout), [`SCHEMA_VERSION`];
//! - `jobs`: the job list's per-run rows and per-job aggregates, and their reads;
//! - `records`: the stored value of a run ([`NewRun`]), encoded before the writer sees it;
//! - `writer`: the writer thread and its group commit;
//! - `space`: the file's size and the bytes redb has allocated in it (`/metrics`);
//! - `recovery`: opening the database (quick repair), and reopening it after an I/O error
//!   (a full disk) without a restart;
//! - this file: [`RedbStore`] and its queries.
//!
//! Every write goes through one writer thread. Requests send `(record, reply)` over a
//! channel, the record already encoded by the request task ([`NewRun`]); the writer
//! takes everything queued (up to [`MAX_BATCH`]) into **one** write transaction with
//! [`redb::Durability::Immediate`], commits, and only then answers every request of the batch.
//! So a 2xx still means "durably committed", while concurrent pushes share one fsync.
//! With group commit off (the benchmark baseline, the seed's design) every record gets a
//! transaction of its own.
//!
//! Reads use redb's MVCC read transactions and never wait for the writer.

#[cfg(test)]
mod compat_tests;
mod jobs;
mod migrate;
mod reads;
mod records;
mod recovery;
pub mod schema;
mod space;
mod writer;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use redb::ReadableTableMetadata;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;

pub use schema::SCHEMA_VERSION;
pub use writer::MAX_BATCH;

pub use super::NewRun;
use super::{Inserted, Page, StoreError, StoreOptions};

use recovery::{Handle, io_reason};
use schema::{RUNS, run_key};
use writer::{WriteOp, writer_loop};

/// The database and its writer.
pub struct RedbStore {
    /// The redb database and the store's health; shared with read tasks and the writer
    /// thread, which reopens the database after an I/O error.
    db: Arc<Handle>,
    /// Queue to the writer thread; `None` once closing has begun.
    tx: Mutex<Option<mpsc::Sender<WriteOp>>>,
    /// The writer thread, joined by [`Store::close`].
    writer: Mutex<Option<JoinHandle<()>>>,
    /// How new runs are stored (packed by the request task in [`RedbStore::insert`]).
    compression: super::Compression,
    /// Whether the writer thread compresses instead ([`StoreOptions::compress_in_writer`]).
    compress_in_writer: bool,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens (or creates) the database at `path`, checks its schema version and starts
    /// the writer thread. After a crash this takes milliseconds whatever the file's size
    /// (quick repair, see `recovery`).
    pub fn open(
        path: &Path,
        options: StoreOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        let db = Arc::new(Handle::open(path, options.headroom_bytes, metrics.clone())?);
        let (tx, rx) = mpsc::channel(8 * MAX_BATCH);
        let writer_db = db.clone();
        let writer = std::thread::Builder::new()
            .name("redb-writer".into())
            .spawn(move || writer_loop(&writer_db, rx, options, &metrics))
            .map_err(|e| StoreError::Thread(e.to_string()))?;
        Ok(Self {
            db,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            compression: options.compression,
            compress_in_writer: options.compress_in_writer,
        })
    }

    fn sender(&self) -> Result<mpsc::Sender<WriteOp>, StoreError> {
        self.tx
            .lock()
            .map_err(|_| StoreError::Closed)?
            .clone()
            .ok_or(StoreError::Closed)
    }

    /// Stores a run; returns once it is durably committed.
    pub async fn insert(&self, mut run: NewRun) -> Result<Inserted, StoreError> {
        // Compressed here, on the request's task: the writer thread only copies bytes.
        if !self.compress_in_writer {
            run.pack(self.compression);
        }
        let (reply, rx) = oneshot::channel();
        self.sender()?
            .send(WriteOp::Insert(run, reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        match rx.await {
            Ok(Ok(inserted)) => Ok(inserted),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(StoreError::Closed),
        }
    }

    /// Deletes every run received before `cutoff_ms` (Unix milliseconds); returns how many.
    pub async fn prune_before(&self, cutoff_ms: u64) -> Result<u64, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.sender()?
            .send(WriteOp::Prune { cutoff_ms, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        match rx.await {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(StoreError::Closed),
        }
    }

    /// The runs of one job, newest first: at most `limit`, older than the run `before_id`
    /// if given. Blocking (call from `spawn_blocking`).
    pub fn query(
        &self,
        job_key: &[u8],
        limit: usize,
        before_id: Option<u64>,
    ) -> Result<Page, StoreError> {
        self.query_bounded(job_key, limit, before_id, usize::MAX)
    }

    /// As [`RedbStore::query`], and the page's runs, one JSON array, take at most `max_bytes`:
    /// the run that would go over it starts the next page. A page always has at least one
    /// run (stored runs are bounded by the body limit), even one larger than `max_bytes`.
    pub fn query_bounded(
        &self,
        job_key: &[u8],
        limit: usize,
        before_id: Option<u64>,
        max_bytes: usize,
    ) -> Result<Page, StoreError> {
        let opened = self.db.current()?;
        let result = (|| {
            let txn = opened.db.begin_read()?;
            let table = txn.open_table(RUNS)?;
            let start = match before_id {
                Some(0) => return Ok(Page::default()),
                Some(id) => run_key(job_key, id - 1),
                None => run_key(job_key, u64::MAX),
            };
            let end = run_key(job_key, 0);
            let mut page = Page::default();
            for item in table.range::<&[u8]>(start.as_slice()..=end.as_slice())? {
                let (k, v) = item?;
                let key = k.value();
                let mut inv = [0u8; 8];
                inv.copy_from_slice(&key[key.len().saturating_sub(8)..]);
                let id = u64::MAX - u64::from_be_bytes(inv);
                let json = super::codec::stored_json(id, v.value())
                    .map_err(|source| StoreError::Corrupt { id, source })?;
                if !page.offer(id, &json, limit, max_bytes) {
                    break;
                }
            }
            Ok(page)
        })();
        self.check_io(opened.generation, result)
    }

    /// Number of stored runs (all jobs).
    pub fn count(&self) -> Result<u64, StoreError> {
        let opened = self.db.current()?;
        let result = (|| {
            let txn = opened.db.begin_read()?;
            Ok(txn.open_table(RUNS)?.len()?)
        })();
        self.check_io(opened.generation, result)
    }

    /// Why writes are refused, while the store recovers from an I/O error.
    pub fn unavailable(&self) -> Option<String> {
        self.db.unavailable()
    }

    /// A read's `result`: an I/O error makes the store unavailable (and wakes the writer
    /// thread, which reopens the database).
    fn check_io<T>(&self, generation: u64, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match result {
            Err(e) => match io_reason(&e) {
                Some(reason) => {
                    self.db.fail(generation, &reason);
                    if let Ok(tx) = self.sender() {
                        // A full queue means the writer is busy and will see the failure.
                        let _ = tx.try_send(WriteOp::Recover);
                    }
                    Err(StoreError::Unavailable(reason))
                }
                None => Err(e),
            },
            ok => ok,
        }
    }

    /// Stops accepting writes, lets the writer finish everything queued, and joins it.
    /// The database file is closed when the last reference to the store is dropped.
    pub async fn close(&self) {
        let sender = self.tx.lock().ok().and_then(|mut g| g.take());
        drop(sender);
        let writer = self.writer.lock().ok().and_then(|mut g| g.take());
        if let Some(handle) = writer {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use summary::Execution;

    use redb::Database;

    use super::schema::{META, META_SCHEMA};
    use super::*;
    use crate::store::job_key;
    type Store = RedbStore;

    fn run(org: &str, repo: &str, n: u32) -> NewRun {
        let execution = Execution {
            organization: org.into(),
            repository: repo.into(),
            workflow: "w".into(),
            job: "j".into(),
            run_id: n.to_string(),
            run_attempt: String::new(),
        };
        NewRun::new(&execution, &serde_json::json!({ "n": n })).unwrap()
    }

    fn ids(page: &Page) -> Vec<u64> {
        page.runs
            .iter()
            .map(|r| {
                serde_json::from_slice::<serde_json::Value>(r).unwrap()["id"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    }

    #[tokio::test]
    async fn insert_query_paginate_prune_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        let store = Store::open(&path, StoreOptions::default(), Arc::default()).unwrap();
        for n in 0..5 {
            store.insert(run("o", "o/r", n)).await.unwrap();
            store.insert(run("o", "other", n)).await.unwrap();
        }
        // Both repository spellings are one job.
        let key = job_key("o", "r", "w", "j");
        let page = store.query(&key, 3, None).unwrap();
        assert_eq!(ids(&page), vec![9, 7, 5]);
        assert_eq!(page.next, Some(5));
        let page = store.query(&key, 3, page.next).unwrap();
        assert_eq!(ids(&page), vec![3, 1]);
        assert_eq!(page.next, None);
        assert_eq!(store.query(&key, 2, Some(1)).unwrap().runs.len(), 0);
        let v: serde_json::Value =
            serde_json::from_slice(&store.query(&key, 1, None).unwrap().runs[0]).unwrap();
        assert_eq!(v["repository"], "o/r");
        assert_eq!(v["payload"]["n"], 4);
        assert_eq!(store.prune_before(0).await.unwrap(), 0);
        assert_eq!(store.prune_before(u64::MAX).await.unwrap(), 10);
        assert_eq!(store.count().unwrap(), 0);
        store.insert(run("o", "r", 9)).await.unwrap();
        store.close().await;
        assert!(matches!(
            store.insert(run("o", "r", 1)).await,
            Err(StoreError::Closed)
        ));
        drop(store);
        let store = Store::open(&path, StoreOptions::default(), Arc::default()).unwrap();
        // Ids never repeat, even after pruning and reopening.
        assert_eq!(ids(&store.query(&key, 10, None).unwrap()), vec![11]);
        store.close().await;
    }

    #[tokio::test]
    async fn stored_value_is_the_serde_encoding_of_stored_run() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &dir.path().join("t.redb"),
            StoreOptions::default(),
            Arc::default(),
        )
        .unwrap();
        let execution = Execution {
            organization: "o \"quoted\"".into(),
            repository: "o/r\\é".into(),
            workflow: "w\u{1F600}".into(),
            job: "j/</script>".into(),
            run_id: String::new(),
            run_attempt: "2".into(),
        };
        let summary = summary::RunSummary {
            start_time: "2026-02-06T14:30:02.185Z".into(),
            end_time: "2026-02-06T14:40:02.185Z".into(),
            duration_seconds: 600.25,
            ..Default::default()
        };
        let inserted = store
            .insert(NewRun::new(&execution, &summary).unwrap())
            .await
            .unwrap();
        let e = &execution;
        let key = job_key(&e.organization, &e.repository, &e.workflow, &e.job);
        let stored = store.query(&key, 1, None).unwrap().runs.remove(0);
        let expected = serde_json::to_vec(&summary::StoredRun {
            id: inserted.id,
            organization: execution.organization,
            repository: execution.repository,
            workflow: execution.workflow,
            job: execution.job,
            run_id: execution.run_id,
            run_attempt: execution.run_attempt,
            received_at: inserted.received_at,
            payload: summary,
        })
        .unwrap();
        assert_eq!(
            String::from_utf8(stored).unwrap(),
            String::from_utf8(expected).unwrap()
        );
        store.close().await;
    }

    #[tokio::test]
    async fn schema_mismatch_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(META_SCHEMA, 99)
                .unwrap();
            txn.commit().unwrap();
        }
        let err = Store::open(&path, StoreOptions::default(), Arc::default()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("99") && msg.contains(&SCHEMA_VERSION.to_string()),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn concurrent_inserts_share_commits() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::default());
        let store = Arc::new(
            Store::open(
                &dir.path().join("t.redb"),
                StoreOptions::default(),
                metrics.clone(),
            )
            .unwrap(),
        );
        let mut tasks = Vec::new();
        for n in 0..200 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                s.insert(run("o", "r", n)).await.unwrap().id
            }));
        }
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.unwrap());
        }
        got.sort_unstable();
        assert_eq!(got, (1..=200).collect::<Vec<_>>());
        assert!(metrics.commits() < 200, "{} commits", metrics.commits());
        store.close().await;
    }

    /// A run as the collector pushes it: identity and a summary-like payload.
    fn pushed(run_id: &str, attempt: &str, payload: u32) -> NewRun {
        let execution = Execution {
            organization: "o".into(),
            repository: "o/r".into(),
            workflow: "w".into(),
            job: "j".into(),
            run_id: run_id.into(),
            run_attempt: attempt.into(),
        };
        NewRun::new(&execution, &serde_json::json!({ "samples": payload })).unwrap()
    }

    #[tokio::test]
    async fn repeated_inserts_store_one_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        let metrics = Arc::new(Metrics::default());
        let store = Arc::new(Store::open(&path, StoreOptions::default(), metrics.clone()).unwrap());
        let first = store.insert(pushed("7", "1", 1)).await.unwrap();
        assert!(!first.replayed);
        let again = store.insert(pushed("7", "1", 1)).await.unwrap();
        assert_eq!(
            again,
            Inserted {
                replayed: true,
                ..first.clone()
            }
        );
        // 32 identical pushes at once (most of them in one batch), beside 32 distinct ones.
        let mut tasks = Vec::new();
        for n in 0..64u32 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                let run = if n % 2 == 0 {
                    pushed("8", "1", 8)
                } else {
                    pushed(&format!("d{n}"), "1", n)
                };
                (n, s.insert(run).await.unwrap())
            }));
        }
        let mut twins = Vec::new();
        for t in tasks {
            let (n, ins) = t.await.unwrap();
            if n % 2 == 0 {
                twins.push(ins);
            } else {
                assert!(!ins.replayed);
            }
        }
        assert!(twins.iter().all(|t| t.id == twins[0].id), "{twins:?}");
        assert_eq!(twins.iter().filter(|t| !t.replayed).count(), 1);
        assert_eq!(store.count().unwrap(), 1 + 1 + 32);
        // Another attempt, another summary or another run id: new runs.
        for run in [
            pushed("7", "2", 1),
            pushed("7", "1", 2),
            pushed("9", "1", 1),
        ] {
            assert!(!store.insert(run).await.unwrap().replayed);
        }
        assert_eq!(store.count().unwrap(), 37);
        store.close().await;
        drop(store);
        // The index is durable: a retry after a restart is still a replay.
        let store = Store::open(&path, StoreOptions::default(), Arc::default()).unwrap();
        assert_eq!(store.insert(pushed("7", "1", 1)).await.unwrap(), again);
        assert_eq!(store.count().unwrap(), 37);
        store.close().await;
    }

    #[tokio::test]
    async fn retention_forgets_pruned_runs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &dir.path().join("t.redb"),
            StoreOptions::default(),
            Arc::default(),
        )
        .unwrap();
        let first = store.insert(pushed("1", "", 1)).await.unwrap();
        assert_eq!(store.prune_before(u64::MAX).await.unwrap(), 1);
        // Pruned means gone: the same push stores it again, under a new id.
        let again = store.insert(pushed("1", "", 1)).await.unwrap();
        assert!(!again.replayed);
        assert!(again.id > first.id);
        assert_eq!(store.count().unwrap(), 1);
        let txn = store.db.current().unwrap().db.begin_read().unwrap();
        assert_eq!(txn.open_table(schema::RUN_DEDUP).unwrap().len().unwrap(), 1);
        assert_eq!(
            txn.open_table(schema::RUN_DEDUP_BY_ID)
                .unwrap()
                .len()
                .unwrap(),
            1
        );
        drop(txn);
        store.close().await;
    }

    /// Writes a file as a schema-1 receiver did: its three tables, no dedup index.
    fn write_v1_file(path: &Path, runs: &[(u64, &NewRun)]) {
        use super::records::write_value;
        use super::schema::{META_NEXT_ID, RUNS_BY_TIME};
        let db = Database::create(path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn.open_table(META).unwrap();
            meta.insert(META_SCHEMA, 1).unwrap();
            meta.insert(META_NEXT_ID, runs.len() as u64 + 1).unwrap();
            let mut table = txn.open_table(RUNS).unwrap();
            let mut by_time = txn.open_table(RUNS_BY_TIME).unwrap();
            for (id, run) in runs {
                let received_ms = 1_770_388_223_056 + id;
                let received_at = summary::time::format_unix_millis(received_ms as i64);
                let id_text = id.to_string();
                let parts = run.value_parts(id_text.as_bytes(), &received_at);
                let len = parts.iter().map(|p| p.len()).sum::<usize>() + 1;
                let key = run_key(&run.job_key, *id);
                let mut value = vec![0u8; len];
                write_value(&parts, &mut value);
                table.insert(key.as_slice(), value.as_slice()).unwrap();
                by_time.insert((received_ms, *id), key.as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
    }

    #[tokio::test]
    async fn version_1_files_are_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        let retried = pushed("5", "", 5);
        let anonymous = pushed("", "", 6);
        let other = pushed("6", "", 6);
        // Runs 1 and 2 are the same push stored twice: the defect the index fixes.
        let twin = pushed("5", "", 5);
        write_v1_file(
            &path,
            &[(1, &retried), (2, &twin), (3, &anonymous), (4, &other)],
        );
        let store = Store::open(&path, StoreOptions::default(), Arc::default()).unwrap();
        {
            let txn = store.db.current().unwrap().db.begin_read().unwrap();
            let meta = txn.open_table(META).unwrap();
            assert_eq!(
                meta.get(META_SCHEMA).unwrap().unwrap().value(),
                SCHEMA_VERSION
            );
        }
        // Every stored run is a replay now; the older copy is the answer.
        let ins = store.insert(pushed("5", "", 5)).await.unwrap();
        assert_eq!(
            ins,
            Inserted {
                id: 1,
                received_at: "2026-02-06T14:30:23.057Z".into(),
                replayed: true
            }
        );
        assert_eq!(store.insert(pushed("", "", 6)).await.unwrap().id, 3);
        assert_eq!(store.insert(pushed("6", "", 6)).await.unwrap().id, 4);
        assert_eq!(store.count().unwrap(), 4);
        let new = store.insert(pushed("6", "1", 6)).await.unwrap();
        assert_eq!((new.id, new.replayed), (5, false));
        store.close().await;
        drop(store);
        // Opening a migrated file again changes nothing.
        let store = Store::open(&path, StoreOptions::default(), Arc::default()).unwrap();
        assert!(store.insert(pushed("5", "", 5)).await.unwrap().replayed);
        assert_eq!(store.count().unwrap(), 5);
        store.close().await;
    }

    #[tokio::test]
    async fn newer_files_are_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(META_SCHEMA, SCHEMA_VERSION + 1)
                .unwrap();
            txn.commit().unwrap();
        }
        let msg = Store::open(&path, StoreOptions::default(), Arc::default())
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "database schema version 5 cannot be opened by this receiver (schema version 4; \
             it opens and migrates versions 1 to 4): use a receiver of a matching or newer \
             version, or a new --db file"
        );
    }
}
