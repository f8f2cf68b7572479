//! The redb store: tables, the group-commit writer, queries and retention.
//!
//! Every write goes through one writer thread. Requests send `(record, reply)` over a
//! channel, the record already encoded by the request task ([`NewRun`]); the writer
//! takes everything queued (up to [`MAX_BATCH`]) into **one** write transaction with
//! [`Durability::Immediate`], commits, and only then answers every request of the batch.
//! So a 2xx still means "durably committed", while concurrent pushes share one fsync.
//! With group commit off (the benchmark baseline, the seed's design) every record gets a
//! transaction of its own.
//!
//! Reads use redb's MVCC read transactions and never wait for the writer.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::Serialize;
use summary::Execution;
use tokio::sync::{mpsc, oneshot};

use crate::auth::canonical_repository;
use crate::metrics::Metrics;

/// Version of the on-disk layout below; stored in [`META`] and checked at open.
pub const SCHEMA_VERSION: u64 = 1;

/// Most operations committed in one write transaction.
pub const MAX_BATCH: usize = 1024;

/// Bookkeeping. Key: a name. Value: a number.
/// - `"schema_version"`: the layout version ([`SCHEMA_VERSION`]) the file was created with.
/// - `"next_id"`: the id the next stored run gets (ids start at 1 and never repeat).
const META: TableDefinition<'static, &str, u64> = TableDefinition::new("meta_v1");

/// The stored runs.
///
/// Key: `job_key || u64_be(u64::MAX - id)` where `job_key` is [`job_key`]'s
/// length-prefixed (organization, canonical repository, workflow, job). Ids increase in
/// order of receipt, so ascending keys within one job prefix are "this job's runs, newest
/// first", answered by one range scan.
///
/// Value: the UTF-8 JSON of the [`summary::StoredRun`] exactly as the query API returns it.
const RUNS: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("runs_v1");

/// Retention index. Key: `(received_at_unix_ms, id)`. Value: the run's key in [`RUNS`].
/// A range scan up to a cutoff finds every run older than it.
const RUNS_BY_TIME: TableDefinition<'static, (u64, u64), &[u8]> =
    TableDefinition::new("runs_by_time_v1");

const META_SCHEMA: &str = "schema_version";
const META_NEXT_ID: &str = "next_id";

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

/// The `job_key` prefix of [`RUNS`] keys: each of organization, canonical repository,
/// workflow and job as `u32_be(len) || bytes`.
pub fn job_key(organization: &str, repository: &str, workflow: &str, job: &str) -> Vec<u8> {
    let repository = canonical_repository(organization, repository);
    let mut key =
        Vec::with_capacity(16 + organization.len() + repository.len() + workflow.len() + job.len());
    for part in [organization, repository, workflow, job] {
        key.extend_from_slice(&(part.len() as u32).to_be_bytes());
        key.extend_from_slice(part.as_bytes());
    }
    key
}

fn run_key(job_key: &[u8], id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(job_key.len() + 8);
    key.extend_from_slice(job_key);
    key.extend_from_slice(&(u64::MAX - id).to_be_bytes());
    key
}

/// A run to store, encoded by the request task so the writer thread only copies bytes.
///
/// The stored value is the JSON of a [`summary::StoredRun`] with the fields in the order
/// the query returns them: `{"id":ID` + `head` + `,"received_at":"TIME","payload":` +
/// `payload` + `}`. The id and the receive time are the writer's to assign.
#[derive(Debug)]
pub struct NewRun {
    /// [`job_key`] of the run's identity (the [`RUNS`] key prefix).
    job_key: Vec<u8>,
    /// `,"organization":...,"repository":...,"workflow":...,"job":...,"run_id":...`.
    head: Vec<u8>,
    /// The summary's JSON.
    payload: Vec<u8>,
}

/// The identity fields of a stored run, in [`summary::StoredRun`]'s order.
#[derive(Serialize)]
struct Identity<'a> {
    organization: &'a str,
    repository: &'a str,
    workflow: &'a str,
    job: &'a str,
    run_id: &'a str,
}

impl NewRun {
    /// Encodes a run: `execution` is who ran (as pushed), `summary` the validated summary.
    pub fn new(execution: &Execution, summary: &impl Serialize) -> Result<Self, StoreError> {
        let e = execution;
        let mut head = Vec::with_capacity(
            96 + e.organization.len()
                + e.repository.len()
                + e.workflow.len()
                + e.job.len()
                + e.run_id.len(),
        );
        serde_json::to_writer(
            &mut head,
            &Identity {
                organization: &e.organization,
                repository: &e.repository,
                workflow: &e.workflow,
                job: &e.job,
                run_id: &e.run_id,
            },
        )?;
        // `{"organization":...}` -> `,"organization":...`: the object's braces go.
        head[0] = b',';
        head.pop();
        let mut payload = Vec::with_capacity(8 * 1024);
        serde_json::to_writer(&mut payload, summary)?;
        Ok(Self {
            job_key: job_key(&e.organization, &e.repository, &e.workflow, &e.job),
            head,
            payload,
        })
    }

    /// The stored value's pieces for `id` received at `received_at`, in order. Their
    /// concatenation is the JSON of the stored run (`received_at` comes from
    /// [`summary::time::format_unix_millis`]: digits, `-`, `:`, `.`, `T`, `Z`, nothing
    /// to escape).
    fn value_parts<'a>(&'a self, id: &'a [u8], received_at: &'a str) -> [&'a [u8]; 7] {
        [
            b"{\"id\":",
            id,
            &self.head,
            b",\"received_at\":\"",
            received_at.as_bytes(),
            b"\",\"payload\":",
            &self.payload,
        ]
    }
}

/// Writes `parts` one after the other into `out`, which is exactly as long as all of them
/// plus a closing `}`.
fn write_value(parts: &[&[u8]], out: &mut [u8]) {
    let mut at = 0;
    for part in parts {
        out[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    out[at] = b'}';
}

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

/// Work for the writer thread.
enum WriteOp {
    Insert(NewRun, oneshot::Sender<Result<Inserted, String>>),
    Prune {
        cutoff_ms: u64,
        reply: oneshot::Sender<Result<u64, String>>,
    },
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

/// `clock()` in Unix milliseconds.
fn unix_ms(clock: fn() -> SystemTime) -> u64 {
    clock()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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
        {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate);
            {
                let mut meta = txn.open_table(META)?;
                let found = meta.get(META_SCHEMA)?.map(|v| v.value());
                match found {
                    Some(v) if v != SCHEMA_VERSION => {
                        return Err(StoreError::SchemaMismatch {
                            found: v,
                            expected: SCHEMA_VERSION,
                        });
                    }
                    Some(_) => {}
                    None => {
                        meta.insert(META_SCHEMA, SCHEMA_VERSION)?;
                        meta.insert(META_NEXT_ID, 1)?;
                    }
                }
                txn.open_table(RUNS)?;
                txn.open_table(RUNS_BY_TIME)?;
            }
            txn.commit()?;
        }
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

fn writer_loop(
    db: &Database,
    mut rx: mpsc::Receiver<WriteOp>,
    options: StoreOptions,
    metrics: &Metrics,
) {
    let max = if options.group_commit { MAX_BATCH } else { 1 };
    let mut batch = Vec::with_capacity(max);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < max {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let size = batch.len();
        match commit_batch(db, &batch, unix_ms(options.clock)) {
            Ok(results) => {
                metrics.observe_commit(size, started.elapsed());
                for (op, result) in batch.drain(..).zip(results) {
                    match (op, result) {
                        (WriteOp::Insert(_, reply), Outcome::Inserted(ins)) => {
                            let _ = reply.send(Ok(ins));
                        }
                        (WriteOp::Prune { reply, .. }, Outcome::Pruned(n)) => {
                            let _ = reply.send(Ok(n));
                        }
                        (WriteOp::Insert(_, reply), _) => {
                            let _ = reply.send(Err("internal: mismatched outcome".into()));
                        }
                        (WriteOp::Prune { reply, .. }, _) => {
                            let _ = reply.send(Err("internal: mismatched outcome".into()));
                        }
                    }
                }
            }
            Err(e) => {
                metrics.commit_failures.inc();
                tracing::error!(error = %e, batch = size, "write transaction failed");
                let msg = e.to_string();
                for op in batch.drain(..) {
                    match op {
                        WriteOp::Insert(_, reply) => {
                            let _ = reply.send(Err(msg.clone()));
                        }
                        WriteOp::Prune { reply, .. } => {
                            let _ = reply.send(Err(msg.clone()));
                        }
                    }
                }
            }
        }
    }
    tracing::debug!("writer stopped");
}

enum Outcome {
    Inserted(Inserted),
    Pruned(u64),
}

/// Most runs deleted by one prune operation; the retention task repeats until done.
const PRUNE_CHUNK: usize = 10_000;

fn commit_batch(
    db: &Database,
    batch: &[WriteOp],
    received_ms: u64,
) -> Result<Vec<Outcome>, StoreError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate);
    let mut outcomes = Vec::with_capacity(batch.len());
    {
        let mut meta = txn.open_table(META)?;
        let mut runs = txn.open_table(RUNS)?;
        let mut by_time = txn.open_table(RUNS_BY_TIME)?;
        let mut next_id = meta.get(META_NEXT_ID)?.map(|v| v.value()).unwrap_or(1);
        let received_at = summary::time::format_unix_millis(received_ms as i64);
        let mut key = Vec::new();
        for op in batch {
            match op {
                WriteOp::Insert(run, _) => {
                    let id = next_id;
                    next_id += 1;
                    key.clear();
                    key.extend_from_slice(&run.job_key);
                    key.extend_from_slice(&(u64::MAX - id).to_be_bytes());
                    // The value goes straight into the page redb reserves for it.
                    let id_text = id.to_string();
                    let parts = run.value_parts(id_text.as_bytes(), &received_at);
                    let len = parts.iter().map(|p| p.len()).sum::<usize>() + 1;
                    let len = u32::try_from(len).map_err(|_| {
                        StoreError::Db(Box::new(redb::StorageError::ValueTooLarge(len).into()))
                    })?;
                    write_value(&parts, runs.insert_reserve(key.as_slice(), len)?.as_mut());
                    by_time.insert((received_ms, id), key.as_slice())?;
                    outcomes.push(Outcome::Inserted(Inserted {
                        id,
                        received_at: received_at.clone(),
                    }));
                }
                WriteOp::Prune { cutoff_ms, .. } => {
                    let mut doomed = Vec::new();
                    for item in by_time
                        .range((0u64, 0u64)..(*cutoff_ms, 0u64))?
                        .take(PRUNE_CHUNK)
                    {
                        let (k, v) = item?;
                        doomed.push((k.value(), v.value().to_vec()));
                    }
                    for (time_key, run_key) in &doomed {
                        runs.remove(run_key.as_slice())?;
                        by_time.remove(*time_key)?;
                    }
                    outcomes.push(Outcome::Pruned(doomed.len() as u64));
                }
            }
        }
        meta.insert(META_NEXT_ID, next_id)?;
    }
    txn.commit()?;
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
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
