//! The PostgreSQL backend: receivers keep nothing of their own, so any number of them can
//! share one database behind a load balancer, and the database's own replication and
//! backups are the only ones needed.
//!
//! - `schema.rs`: versioned migrations, run at start;
//! - `writer.rs`: group commit (every queued push in one transaction, with batched
//!   statements), retention and the sizer's answers;
//! - this file: [`PgStore`]: the pool, reads, and the health the `/healthz` probe reports.
//!
//! A 2xx is still a durable commit: every session runs with `synchronous_commit=on`. A
//! database that cannot be reached makes requests fail with 503 (`store unavailable:
//! ...`) after at most `--db-timeout`; the pool connects again by itself once it is back.

mod schema;
mod writer;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use summary::fleet::{JobAggregate, RunRow, SizingShort};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::NoTls;

pub use schema::SCHEMA_VERSION;

use super::{Inserted, NewRun, Page, StoreError, StoreOptions, decode_aggregate};
use crate::config::PgUrl;
use crate::metrics::Metrics;
use writer::WriteOp;

/// How often the health probe checks the database.
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// A database error as a store error: a lost or refused connection, or a server that is
/// shutting down or starting, makes the store unavailable (503, retried); anything else is
/// a database error (500).
pub(super) fn pg_error(e: tokio_postgres::Error) -> StoreError {
    let code = e.code().map(|c| c.code().to_owned());
    match code.as_deref() {
        None => StoreError::Unavailable(format!("database unavailable: {e}")),
        Some(c) if c.starts_with("08") || c.starts_with("57") || c == "53300" => {
            StoreError::Unavailable(format!("database unavailable: {e}"))
        }
        Some(c) => StoreError::Postgres(format!("{e} (SQLSTATE {c})")),
    }
}

fn pool_error(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => pg_error(e),
        other => StoreError::Unavailable(format!("database unavailable: {other}")),
    }
}

/// What the receivers share: the pool and the store's health.
#[derive(Debug)]
struct Shared {
    pool: Pool,
    /// Why the last operation could not reach the database, until one succeeds.
    health: Mutex<Option<String>>,
}

impl Shared {
    /// Records the outcome of an operation for `/healthz`.
    fn observe<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Ok(mut h) = self.health.lock() {
            match &result {
                Err(StoreError::Unavailable(reason)) => *h = Some(reason.clone()),
                Ok(_) => *h = None,
                Err(_) => {}
            }
        }
        result
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }
}

/// The PostgreSQL store.
#[derive(Debug)]
pub struct PgStore {
    shared: Arc<Shared>,
    tx: Mutex<Option<mpsc::Sender<WriteOp>>>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    probe: tokio::task::JoinHandle<()>,
    /// How new runs are stored (packed by the request task in [`PgStore::insert`]).
    compression: super::Compression,
    /// Whether the writer task compresses instead ([`StoreOptions::compress_in_writer`]).
    compress_in_writer: bool,
}

impl PgStore {
    /// Connects, migrates the schema and starts the writer. `options.headroom_bytes` has no
    /// meaning here; the pool's size and timeout are the receiver's `--db-pool-size` and
    /// `--db-timeout` (in `options`).
    pub async fn open(
        url: &PgUrl,
        options: StoreOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = url
            .expose()
            .parse()
            .map_err(|_| StoreError::Postgres(format!("not a PostgreSQL URL: {url}")))?;
        // Durable 2xx whatever the server's default; a name to find us in pg_stat_activity.
        config.options("-c synchronous_commit=on");
        config.application_name("collector-receiver");
        config.connect_timeout(options.db_timeout);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.db_pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.db_timeout))
            .create_timeout(Some(options.db_timeout))
            .recycle_timeout(Some(options.db_timeout))
            .build()
            .map_err(|e| StoreError::Postgres(format!("connection pool: {e}")))?;
        let shared = Arc::new(Shared {
            pool,
            health: Mutex::new(None),
        });
        let mut client = shared.client().await?;
        let found = schema::migrate(&mut client).await?;
        drop(client);
        tracing::info!(
            db = %url,
            schema_version = SCHEMA_VERSION,
            found_version = found,
            "PostgreSQL store open"
        );
        let (tx, rx) = mpsc::channel(8 * writer::MAX_BATCH);
        let (compression, compress_in_writer) = (options.compression, options.compress_in_writer);
        let writer = tokio::spawn(writer::run(shared.clone(), rx, options, metrics));
        let probe = tokio::spawn(probe(Arc::downgrade(&shared)));
        Ok(Self {
            shared,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            probe,
            compression,
            compress_in_writer,
        })
    }

    async fn send<T>(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> WriteOp,
    ) -> Result<T, StoreError> {
        let sender = self
            .tx
            .lock()
            .map_err(|_| StoreError::Closed)?
            .clone()
            .ok_or(StoreError::Closed)?;
        let (reply, rx) = oneshot::channel();
        sender
            .send(op(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Stores a run; returns once it is durably committed.
    pub async fn insert(&self, mut run: NewRun) -> Result<Inserted, StoreError> {
        // Compressed here, on the request's task, unless the writer is to.
        if !self.compress_in_writer {
            run.pack(self.compression);
        }
        self.send(|reply| WriteOp::Insert(Box::new(run), reply))
            .await
    }

    /// Deletes up to a chunk of runs received before `cutoff_ms`; returns how many.
    pub async fn prune_before(&self, cutoff_ms: u64) -> Result<u64, StoreError> {
        self.send(|reply| WriteOp::Prune { cutoff_ms, reply }).await
    }

    /// Stores the sizer's answer unless a newer one is there.
    pub async fn set_sizing(
        &self,
        job_key: &[u8],
        sizing: &SizingShort,
    ) -> Result<bool, StoreError> {
        let result = writer::set_sizing(&self.shared, job_key, sizing).await;
        self.shared.observe(result)
    }

    /// One job's runs, newest first (as [`super::Store::query`]).
    pub async fn query(
        &self,
        job_key: &[u8],
        limit: usize,
        before_id: Option<u64>,
        max_bytes: usize,
    ) -> Result<Page, StoreError> {
        let result = async {
            if before_id == Some(0) {
                return Ok(Page::default());
            }
            let client = self.shared.client().await?;
            let before = before_id.map_or(i64::MAX, |id| id as i64);
            let stmt = client
                .prepare_cached(
                    "SELECT id, received_ms, head, payload FROM runs
                     WHERE job_key = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
                )
                .await
                .map_err(pg_error)?;
            let fetch = (limit.min(10_000) + 1) as i64;
            let rows = client
                .query(&stmt, &[&job_key, &before, &fetch])
                .await
                .map_err(pg_error)?;
            let mut page = Page::default();
            for row in &rows {
                if !page.offer(
                    row.get::<_, i64>(0) as u64,
                    &stored_value(row)?,
                    limit,
                    max_bytes,
                ) {
                    break;
                }
            }
            Ok(page)
        }
        .await;
        self.shared.observe(result)
    }

    /// Stored runs, all jobs.
    pub async fn count(&self) -> Result<u64, StoreError> {
        let result = async {
            let client = self.shared.client().await?;
            let row = client
                .query_one("SELECT count(*) FROM runs", &[])
                .await
                .map_err(pg_error)?;
            Ok(row.get::<_, i64>(0) as u64)
        }
        .await;
        self.shared.observe(result)
    }

    /// Every job's aggregate.
    pub async fn jobs(&self) -> Result<Vec<JobAggregate>, StoreError> {
        let result = async {
            let client = self.shared.client().await?;
            let stmt = client
                .prepare_cached("SELECT aggregate FROM jobs WHERE length(aggregate) > 0")
                .await
                .map_err(pg_error)?;
            let rows = client.query(&stmt, &[]).await.map_err(pg_error)?;
            Ok(rows
                .iter()
                .filter_map(|r| decode_aggregate(r.get(0)))
                .collect())
        }
        .await;
        self.shared.observe(result)
    }

    /// One job's aggregate.
    pub async fn job(&self, job_key: &[u8]) -> Result<Option<JobAggregate>, StoreError> {
        let result = async {
            let client = self.shared.client().await?;
            let row = client
                .query_opt("SELECT aggregate FROM jobs WHERE job_key = $1", &[&job_key])
                .await
                .map_err(pg_error)?;
            Ok(row.and_then(|r| decode_aggregate(r.get(0))))
        }
        .await;
        self.shared.observe(result)
    }

    /// One job's rows, newest first, and the id to continue from.
    pub async fn history(
        &self,
        job_key: &[u8],
        limit: usize,
        before_id: Option<u64>,
    ) -> Result<(Vec<RunRow>, Option<u64>), StoreError> {
        let result = async {
            if before_id == Some(0) {
                return Ok((Vec::new(), None));
            }
            let client = self.shared.client().await?;
            let before = before_id.map_or(i64::MAX, |id| id as i64);
            let fetch = (limit.min(10_000) + 1) as i64;
            let stmt = client
                .prepare_cached(
                    "SELECT id, received_ms, row_json FROM runs WHERE job_key = $1 AND id < $2
                     ORDER BY id DESC LIMIT $3",
                )
                .await
                .map_err(pg_error)?;
            let rows = client
                .query(&stmt, &[&job_key, &before, &fetch])
                .await
                .map_err(pg_error)?;
            let mut out: Vec<RunRow> = Vec::with_capacity(limit);
            out.extend(
                rows.iter()
                    .take(limit)
                    .filter_map(|r| writer::read_row(r.get(0), r.get(1), r.get(2))),
            );
            let next = (rows.len() > limit)
                .then(|| out.last().map(|r| r.id))
                .flatten();
            Ok((out, next))
        }
        .await;
        self.shared.observe(result)
    }

    /// One stored run of a job.
    pub async fn run(&self, job_key: &[u8], id: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let result = async {
            let client = self.shared.client().await?;
            let row = client
                .query_opt(
                    "SELECT id, received_ms, head, payload FROM runs WHERE job_key = $1 AND id = $2",
                    &[&job_key, &(id as i64)],
                )
                .await
                .map_err(pg_error)?;
            row.as_ref().map(stored_value).transpose()
        }
        .await;
        self.shared.observe(result)
    }

    /// Why requests fail now (the database cannot be reached), if they do.
    pub fn unavailable(&self) -> Option<String> {
        self.shared.health.lock().ok().and_then(|h| h.clone())
    }

    /// Lets the writer finish everything queued, then closes the pool.
    pub async fn close(&self) {
        let sender = self.tx.lock().ok().and_then(|mut g| g.take());
        drop(sender);
        let writer = self.writer.lock().ok().and_then(|mut g| g.take());
        if let Some(handle) = writer {
            let _ = handle.await;
        }
        self.probe.abort();
        self.shared.pool.close();
    }
}

/// The stored run's JSON, exactly as the redb backend answers it: from plain pieces, or
/// a packed payload ([`super::codec`]).
fn stored_value(row: &tokio_postgres::Row) -> Result<Vec<u8>, StoreError> {
    let id: i64 = row.get(0);
    let received_ms: i64 = row.get(1);
    let head: &[u8] = row.get(2);
    let payload: &[u8] = row.get(3);
    super::codec::stored_json_pieces(id as u64, received_ms, head, payload).map_err(|source| {
        StoreError::Corrupt {
            id: id as u64,
            source,
        }
    })
}

/// Checks the database every [`PROBE_EVERY`] while the store lives, so `/healthz` says it
/// is down (or back) even when no request comes.
async fn probe(shared: std::sync::Weak<Shared>) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let result = async {
            let client = shared.client().await?;
            client.simple_query("SELECT 1").await.map_err(pg_error)?;
            Ok(())
        }
        .await;
        let was = shared.health.lock().ok().and_then(|h| h.clone());
        let _ = shared.observe(result);
        let now = shared.health.lock().ok().and_then(|h| h.clone());
        match (&was, &now) {
            (None, Some(reason)) => tracing::warn!(reason, "PostgreSQL unavailable"),
            (Some(_), None) => tracing::info!("PostgreSQL available again"),
            _ => {}
        }
    }
}
