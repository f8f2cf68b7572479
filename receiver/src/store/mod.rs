//! Where runs are stored: one interface, [`Store`], over two backends that answer the
//! same JSON byte for byte.
//!
//! - [`redb`]: one embedded file, the default (nothing to install);
//! - [`postgres`]: a PostgreSQL database shared by any number of stateless receivers;
//! - `run.rs`: [`NewRun`], a run as the request task encodes it for either backend, and
//!   the keys every backend uses ([`job_key`], [`dedup_key`]);
//! - this file: [`Store`], its errors and the answers' types.
//!
//! Every method is async; the redb backend's blocking reads run on tokio's blocking pool.

pub mod codec;
pub mod postgres;
pub mod redb;
mod run;
pub mod split;

use std::sync::Arc;
use std::time::SystemTime;

use summary::fleet::{JobAggregate, RunRow, SizingShort};

use crate::config::Database;
use crate::metrics::Metrics;

pub use codec::{CodecError, Compression};
pub use run::{NewRun, dedup_key, job_key};

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb failed.
    #[error("database error: {0}")]
    Db(Box<::redb::Error>),
    /// The file was written by a receiver with another layout.
    #[error(
        "database schema version {found} cannot be opened by this receiver (schema version \
         {expected}; it opens and migrates versions 1 to {expected}): use a receiver of a \
         matching or newer version, or a new --db file"
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
    /// An I/O error (a full disk, EIO) made the database unusable until it is reopened,
    /// which the store retries by itself; the reason is the error.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored value could not be encoded.
    #[error("encoding error: {0}")]
    Encode(#[from] serde_json::Error),
    /// A stored run that cannot be read back (a corrupt or unknown row format).
    #[error("stored run {id}: {source}")]
    Corrupt {
        /// The run's id.
        id: u64,
        source: CodecError,
    },
    /// The writer thread could not be started or stopped.
    #[error("writer thread: {0}")]
    Thread(String),
    /// PostgreSQL answered with an error (not a lost connection: that is `Unavailable`).
    #[error("database error: {0}")]
    Postgres(String),
    /// A PostgreSQL database of a newer schema than this receiver's.
    #[error(
        "the PostgreSQL database has schema version {found}; this receiver knows versions up \
         to {known}: use a receiver of a matching or newer version"
    )]
    PostgresTooNew {
        /// Version found in the database.
        found: i64,
        /// Newest version this build knows.
        known: i64,
    },
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
    ::redb::DatabaseError,
    ::redb::TransactionError,
    ::redb::TableError,
    ::redb::StorageError,
    ::redb::CommitError
);

/// What the store assigned to a stored run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inserted {
    /// The run's id.
    pub id: u64,
    /// When it was stored, RFC 3339 UTC.
    pub received_at: String,
    /// The push repeated a run stored before (same job, run id, attempt and summary):
    /// nothing new was stored, and `id` and `received_at` are the first push's.
    pub replayed: bool,
}

/// One page of a query.
#[derive(Debug, Default)]
pub struct Page {
    /// Stored runs as JSON, newest first.
    pub runs: Vec<Vec<u8>>,
    /// Cursor for the next page: the id of the last run on this one, if more may follow.
    pub next: Option<u64>,
    /// The id of the last run on the page so far, and the page's JSON size.
    last_id: Option<u64>,
    bytes: usize,
}

impl Page {
    /// Adds run `id` (its stored JSON `value`) to a page being filled newest first, unless
    /// the page already has `limit` runs or `value` would take it, as one JSON array, over
    /// `max_bytes` (a page always takes its first run). Returns `false` once full: `next`
    /// then says where the following page starts.
    pub(crate) fn offer(&mut self, id: u64, value: &[u8], limit: usize, max_bytes: usize) -> bool {
        // `[`, `]` and a `,` between runs.
        let bytes = self.bytes.max(1);
        if self.runs.len() == limit
            || (!self.runs.is_empty() && bytes.saturating_add(value.len() + 1) > max_bytes)
        {
            self.next = self.last_id;
            return false;
        }
        self.bytes = bytes + value.len() + 1;
        self.runs.push(value.to_vec());
        self.last_id = Some(id);
        true
    }
}

/// A job's aggregate as stored (JSON); `None` for an empty value (a PostgreSQL job whose
/// first run is not committed yet) or one that does not parse (logged).
pub(crate) fn decode_aggregate(bytes: &[u8]) -> Option<JobAggregate> {
    if bytes.is_empty() {
        return None;
    }
    match serde_json::from_slice(bytes) {
        Ok(a) => Some(a),
        Err(e) => {
            tracing::warn!(error = %e, "skipping a job aggregate that does not parse");
            None
        }
    }
}

/// Bytes on disk of a redb store ([`Store::space`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// The file's length.
    pub file_bytes: u64,
    /// The bytes of the pages redb has allocated in it; the rest is free for reuse.
    pub allocated_bytes: u64,
    /// Of those, the keys and values in leaf pages (redb's `stored_leaf_bytes`).
    pub stored_bytes: u64,
    /// And what is lost to page rounding and free pages (redb's `fragmented_bytes`).
    pub fragmented_bytes: u64,
}

/// How the store commits.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// Share one write transaction between everything queued (on by default). Off, every
    /// push commits alone: the seed's design, kept as the benchmark baseline.
    pub group_commit: bool,
    /// The wall clock that stamps `received_at` ([`SystemTime::now`] unless a test shifts it).
    pub clock: fn() -> SystemTime,
    /// Free bytes the file system must have before writes resume after an I/O error (the
    /// largest accepted body). redb only.
    pub headroom_bytes: u64,
    /// PostgreSQL only: most connections, and how long to wait for one.
    pub db_pool_size: usize,
    pub db_timeout: std::time::Duration,
    /// How new runs are stored (compressed with zstd and the shipped dictionary unless a
    /// benchmark compares); rows of every format are read.
    pub compression: Compression,
    /// Compress in the writer (thread or task) instead of the request's task: the
    /// benchmark's comparison (`--store-compress-in-writer`); off by default.
    pub compress_in_writer: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            group_commit: true,
            clock: SystemTime::now,
            headroom_bytes: 1024 * 1024,
            db_pool_size: 16,
            db_timeout: std::time::Duration::from_secs(5),
            compression: Compression::default(),
            compress_in_writer: false,
        }
    }
}

/// `clock()` in Unix milliseconds.
pub(crate) fn unix_ms(clock: fn() -> SystemTime) -> u64 {
    clock()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The store: one of the two backends behind the same methods.
#[derive(Debug)]
pub enum Store {
    /// An embedded redb file.
    Redb(Arc<redb::RedbStore>),
    /// A PostgreSQL database.
    Postgres(postgres::PgStore),
}

/// Runs a blocking read of the redb backend on the blocking pool.
async fn blocking<T: Send + 'static>(
    db: &Arc<redb::RedbStore>,
    read: impl FnOnce(&redb::RedbStore) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || read(&db))
        .await
        .map_err(|e| StoreError::Thread(format!("read task: {e}")))?
}

impl Store {
    /// Opens (or creates) the database `db` names: a redb file, or a PostgreSQL database
    /// (migrated to this receiver's schema first).
    pub async fn open(
        db: &Database,
        options: StoreOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        match db {
            Database::File(path) => {
                let path = path.clone();
                let store = tokio::task::spawn_blocking(move || {
                    redb::RedbStore::open(&path, options, metrics)
                })
                .await
                .map_err(|e| StoreError::Thread(format!("open task: {e}")))??;
                Ok(Self::Redb(Arc::new(store)))
            }
            Database::Postgres(url) => Ok(Self::Postgres(
                postgres::PgStore::open(url, options, metrics).await?,
            )),
        }
    }

    /// The backend's name, for logs: `redb` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Redb(_) => "redb",
            Self::Postgres(_) => "postgres",
        }
    }

    /// Stores a run; returns once it is durably committed.
    pub async fn insert(&self, run: NewRun) -> Result<Inserted, StoreError> {
        match self {
            Self::Redb(db) => db.insert(run).await,
            Self::Postgres(db) => db.insert(run).await,
        }
    }

    /// Deletes up to a chunk of runs received before `cutoff_ms`; returns how many (the
    /// caller repeats until 0).
    pub async fn prune_before(&self, cutoff_ms: u64) -> Result<u64, StoreError> {
        match self {
            Self::Redb(db) => db.prune_before(cutoff_ms).await,
            Self::Postgres(db) => db.prune_before(cutoff_ms).await,
        }
    }

    /// One job's runs, newest first: at most `limit`, older than run `before_id` if given,
    /// and within `max_bytes` as one JSON array (always at least one run).
    pub async fn query(
        &self,
        job_key: Vec<u8>,
        limit: usize,
        before_id: Option<u64>,
        max_bytes: usize,
    ) -> Result<Page, StoreError> {
        match self {
            Self::Redb(db) => {
                blocking(db, move |db| {
                    db.query_bounded(&job_key, limit, before_id, max_bytes)
                })
                .await
            }
            Self::Postgres(db) => db.query(&job_key, limit, before_id, max_bytes).await,
        }
    }

    /// Stored runs, all jobs.
    pub async fn count(&self) -> Result<u64, StoreError> {
        match self {
            Self::Redb(db) => blocking(db, |db| db.count()).await,
            Self::Postgres(db) => db.count().await,
        }
    }

    /// The redb file's size and allocated bytes (`None` on PostgreSQL, whose space
    /// autovacuum manages). It holds the writer while it walks the file: after retention
    /// rounds, not per request.
    pub async fn space(&self) -> Result<Option<Space>, StoreError> {
        match self {
            Self::Redb(db) => blocking(db, |db| db.space().map(Some)).await,
            Self::Postgres(_) => Ok(None),
        }
    }

    /// Every job's aggregate.
    pub async fn jobs(&self) -> Result<Vec<JobAggregate>, StoreError> {
        match self {
            Self::Redb(db) => blocking(db, |db| db.jobs()).await,
            Self::Postgres(db) => db.jobs().await,
        }
    }

    /// One job's aggregate.
    pub async fn job(&self, job_key: Vec<u8>) -> Result<Option<JobAggregate>, StoreError> {
        match self {
            Self::Redb(db) => blocking(db, move |db| db.job(&job_key)).await,
            Self::Postgres(db) => db.job(&job_key).await,
        }
    }

    /// One job's rows, newest first, and the id to continue from.
    pub async fn history(
        &self,
        job_key: Vec<u8>,
        limit: usize,
        before_id: Option<u64>,
    ) -> Result<(Vec<RunRow>, Option<u64>), StoreError> {
        match self {
            Self::Redb(db) => blocking(db, move |db| db.history(&job_key, limit, before_id)).await,
            Self::Postgres(db) => db.history(&job_key, limit, before_id).await,
        }
    }

    /// One stored run of a job, as the query returns it.
    pub async fn run(&self, job_key: Vec<u8>, id: u64) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Self::Redb(db) => blocking(db, move |db| db.run(&job_key, id)).await,
            Self::Postgres(db) => db.run(&job_key, id).await,
        }
    }

    /// Stores the background sizer's answer; whether it replaced an older one.
    pub async fn set_sizing(
        &self,
        job_key: Vec<u8>,
        sizing: SizingShort,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Redb(db) => db.set_sizing(job_key, sizing).await,
            Self::Postgres(db) => db.set_sizing(&job_key, &sizing).await,
        }
    }

    /// Why writes are refused now, while the store recovers by itself.
    pub fn unavailable(&self) -> Option<String> {
        match self {
            Self::Redb(db) => db.unavailable(),
            Self::Postgres(db) => db.unavailable(),
        }
    }

    /// Finishes what is queued and closes.
    pub async fn close(&self) {
        match self {
            Self::Redb(db) => db.close().await,
            Self::Postgres(db) => db.close().await,
        }
    }
}
