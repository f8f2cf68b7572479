//! The redb store: tables, the group-commit writer, queries and retention.
//!
//! - [`schema`]: every table (key and value layout), [`SCHEMA_VERSION`], [`job_key`];
//! - `records`: the stored value of a run ([`NewRun`]), encoded before the writer sees it;
//! - `writer`: the writer thread and its group commit;
//! - this file: [`Store`], its errors and queries.
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

mod records;
pub mod schema;
mod writer;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::SystemTime;

use redb::{Database, ReadableTableMetadata};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;

pub use records::NewRun;
pub use schema::{SCHEMA_VERSION, job_key};
pub use writer::MAX_BATCH;

use schema::{RUNS, run_key};
use writer::{WriteOp, writer_loop};

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb failed.
    #[error("database error: {0}")]
    Db(Box<redb::Error>),
    /// The file was written by a receiver with another layout.
    #[error(
        "database schema version {found} does not match this receiver's schema version {expected}; \
         use a receiver of the matching version or a new --db file"
    )]
    SchemaMismatch {
        /// Version found in the file.
        found: u64,
        /// Version this build writes.
        expected: u64,
    },
    /// The store is shutting down.
    #[error("store is closed")]
    Closed,
    /// A stored value could not be encoded.
    #[error("encoding error: {0}")]
    Encode(#[from] serde_json::Error),
    /// The writer thread could not be started or stopped.
    #[error("writer thread: {0}")]
    Thread(String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(Box::new(e.into()))
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// What the store assigned to a stored run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inserted {
    /// The run's id.
    pub id: u64,
    /// When it was stored, RFC 3339 UTC.
    pub received_at: String,
}

/// One page of a query.
#[derive(Debug, Default)]
pub struct Page {
    /// Stored runs as JSON, newest first.
    pub runs: Vec<Vec<u8>>,
    /// Cursor for the next page: the id of the last run on this one, if more may follow.
    pub next: Option<u64>,
}

/// How the store commits.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// Share one write transaction between everything queued (on by default). Off, every
    /// push commits alone: the seed's design, kept as the benchmark baseline.
    pub group_commit: bool,
    /// The wall clock that stamps `received_at` ([`SystemTime::now`] unless a test shifts it).
    pub clock: fn() -> SystemTime,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            group_commit: true,
            clock: SystemTime::now,
        }
    }
}

/// The database and its writer.
pub struct Store {
    /// The redb database; shared with read tasks.
    db: Arc<Database>,
    /// Queue to the writer thread; `None` once closing has begun.
    tx: Mutex<Option<mpsc::Sender<WriteOp>>>,
    /// The writer thread, joined by [`Store::close`].
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the database at `path`, checks its schema version and starts
    /// the writer thread.
    pub fn open(
        path: &Path,
        options: StoreOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        let db = Database::create(path)?;
        schema::create_or_check(&db)?;
        let db = Arc::new(db);
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
    pub async fn insert(&self, run: NewRun) -> Result<Inserted, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.sender()?
            .send(WriteOp::Insert(run, reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        match rx.await {
            Ok(Ok(inserted)) => Ok(inserted),
            Ok(Err(e)) => Err(StoreError::Thread(e)),
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
            Ok(Err(e)) => Err(StoreError::Thread(e)),
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
        let txn = self.db.begin_read()?;
        let table = txn.open_table(RUNS)?;
        let start = match before_id {
            Some(0) => return Ok(Page::default()),
            Some(id) => run_key(job_key, id - 1),
            None => run_key(job_key, u64::MAX),
        };
        let end = run_key(job_key, 0);
        let mut page = Page::default();
        let mut last_id = None;
        for item in table.range::<&[u8]>(start.as_slice()..=end.as_slice())? {
            let (k, v) = item?;
            if page.runs.len() == limit {
                page.next = last_id;
                break;
            }
            let key = k.value();
            let mut inv = [0u8; 8];
            inv.copy_from_slice(&key[key.len().saturating_sub(8)..]);
            last_id = Some(u64::MAX - u64::from_be_bytes(inv));
            page.runs.push(v.value().to_vec());
        }
        Ok(page)
    }

    /// Number of stored runs (all jobs).
    pub fn count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(RUNS)?.len()?)
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

    use super::schema::{META, META_SCHEMA};
    use super::*;

    fn run(org: &str, repo: &str, n: u32) -> NewRun {
        let execution = Execution {
            organization: org.into(),
            repository: repo.into(),
            workflow: "w".into(),
            job: "j".into(),
            run_id: n.to_string(),
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
}
