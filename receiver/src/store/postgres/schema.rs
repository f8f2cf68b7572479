//! The PostgreSQL schema: versioned migrations, applied at start under an advisory lock (so
//! replicas starting together migrate once), each in the transaction that records it. A
//! database of a newer version than this receiver knows is refused.
//!
//! - `runs`: one row per stored run: its job's key, the receive time, the stored JSON's
//!   pieces (`head` and `payload`, joined with the id and time when read, so both backends
//!   answer the same bytes) and the idempotency key, unique.
//!   With them, the run's row for the job list and history (`row_json`), written once its
//!   id is known.
//!   Since version 2 a run may be packed: `payload` then holds the zstd-compressed
//!   `head ‖ payload` ([`crate::store::codec`]) and `head` is empty.
//! - `jobs`: each job's aggregate (JSON); an empty value is a job whose first run is being
//!   stored by a transaction that has not committed yet.

use deadpool_postgres::Client;

use super::pg_error;
use crate::store::StoreError;

/// The migrations, in order: version N is `MIGRATIONS[N - 1]`.
const MIGRATIONS: &[&str] = &[
    // 1: runs (with their rows) and aggregates.
    "CREATE TABLE runs (
        id bigserial PRIMARY KEY,
        job_key bytea NOT NULL,
        received_ms bigint NOT NULL,
        head bytea NOT NULL,
        payload bytea NOT NULL,
        row_json bytea NOT NULL,
        dedup_key bytea NOT NULL,
        CONSTRAINT runs_dedup_key UNIQUE (dedup_key)
    );
    CREATE INDEX runs_by_job ON runs (job_key, id DESC);
    -- Retention only: a BRIN index costs next to nothing per insert, and runs arrive in
    -- time order.
    CREATE INDEX runs_by_time ON runs USING brin (received_ms);
    -- Summaries are small JSON: stored out of line uncompressed, which saves CPU per push.
    ALTER TABLE runs ALTER COLUMN payload SET STORAGE EXTERNAL;
    CREATE TABLE jobs (
        job_key bytea PRIMARY KEY,
        aggregate bytea NOT NULL
    );",
    // 2: `payload` may be packed (zstd, `store/codec.rs`; `head` then empty): new rows
    // only, nothing rewritten. Retention's deletes are vacuumed by autovacuum soon after
    // each prune (1 % of the table dead, not the default 20 %), so their space is reused
    // by new runs instead of the table growing by a fifth first.
    "ALTER TABLE runs SET (
        autovacuum_vacuum_scale_factor = 0.01,
        autovacuum_vacuum_threshold = 1000,
        toast.autovacuum_vacuum_scale_factor = 0.01,
        toast.autovacuum_vacuum_threshold = 1000
    );",
];

/// The schema version this receiver writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// An arbitrary constant: the advisory lock migrations hold.
const MIGRATION_LOCK: i64 = 0x636f_6c6c_6563_7472;

/// Brings the database to [`SCHEMA_VERSION`]; returns the version found.
pub async fn migrate(client: &mut Client) -> Result<i64, StoreError> {
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_error)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS receiver_schema (
            id int PRIMARY KEY CHECK (id = 1),
            version bigint NOT NULL
        )",
    )
    .await
    .map_err(pg_error)?;
    let found: i64 = tx
        .query_opt("SELECT version FROM receiver_schema WHERE id = 1", &[])
        .await
        .map_err(pg_error)?
        .map_or(0, |r| r.get(0));
    if found > SCHEMA_VERSION {
        return Err(StoreError::PostgresTooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(sql).await.map_err(pg_error)?;
        tracing::info!(version = i + 1, "PostgreSQL schema migrated");
    }
    tx.execute(
        "INSERT INTO receiver_schema (id, version) VALUES (1, $1)
         ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version",
        &[&SCHEMA_VERSION],
    )
    .await
    .map_err(pg_error)?;
    tx.commit().await.map_err(pg_error)?;
    Ok(found)
}
