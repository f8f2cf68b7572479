//! The on-disk layout: every table, its key and value, and the schema version. Table
//! names carry the layout version; a file of another version is refused at open.

use std::ops::Bound;

use redb::{Database, Durability, ReadableTable, TableDefinition};

use super::StoreError;
use super::records::{dedup_of_stored, remember};

/// Version of the on-disk layout below; stored in [`META`] and checked at open.
///
/// - 1: [`META`], [`RUNS`], [`RUNS_BY_TIME`].
/// - 2: plus [`RUN_DEDUP`] and [`RUN_DEDUP_BY_ID`] (idempotent pushes). A version-1 file
///   is migrated at open: the index is built for the runs it holds.
///
/// - 3: plus [`RUN_ROWS`] and [`JOBS`] (the job list and history). A version-2 file is
///   migrated at open: rows and aggregates are built from the runs it holds.
///
/// A file of a newer version is refused (a newer receiver wrote it).
pub const SCHEMA_VERSION: u64 = 3;

/// Bookkeeping. Key: a name. Value: a number.
/// - `"schema_version"`: the layout version ([`SCHEMA_VERSION`]) the file was created with.
/// - `"next_id"`: the id the next stored run gets (ids start at 1 and never repeat).
pub const META: TableDefinition<'static, &str, u64> = TableDefinition::new("meta_v1");

/// The stored runs.
///
/// Key: `job_key || u64_be(u64::MAX - id)` where `job_key` is [`job_key`](crate::store::job_key)'s
/// length-prefixed (organization, canonical repository, workflow, job). Ids increase in
/// order of receipt, so ascending keys within one job prefix are "this job's runs, newest
/// first", answered by one range scan.
///
/// Value: the UTF-8 JSON of the [`summary::StoredRun`] exactly as the query API returns it.
pub const RUNS: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("runs_v1");

/// Retention index. Key: `(received_at_unix_ms, id)`. Value: the run's key in [`RUNS`].
/// A range scan up to a cutoff finds every run older than it.
pub const RUNS_BY_TIME: TableDefinition<'static, (u64, u64), &[u8]> =
    TableDefinition::new("runs_by_time_v1");

/// Idempotent pushes: which stored run a push of the same run is.
///
/// Key: [`dedup_key`](crate::store::dedup_key): `job_key || u32_be(len) || run_id || u32_be(len) || run_attempt ||
/// SHA-256(payload)`, where `payload` is the summary's JSON as stored (the request task
/// normalizes it, so a retry of the same body gives the same bytes). Value: `(id,
/// received_at_unix_ms)` of the run that stored it. Written in the write transaction that
/// stores the run; a push whose key is present stores nothing and is answered with this id.
pub const RUN_DEDUP: TableDefinition<'static, &[u8], (u64, u64)> =
    TableDefinition::new("run_dedup_v1");

/// The reverse of [`RUN_DEDUP`], for retention. Key: a run's id. Value: its [`RUN_DEDUP`]
/// key (only for the run that key points to).
pub const RUN_DEDUP_BY_ID: TableDefinition<'static, u64, &[u8]> =
    TableDefinition::new("run_dedup_by_id_v1");

/// One [`summary::fleet::RunRow`] per stored run, for the history answer and for
/// rebuilding an aggregate after retention. Key: the run's [`RUNS`] key. Value: its JSON.
pub const RUN_ROWS: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("run_rows_v1");

/// One [`summary::fleet::JobAggregate`] per job with stored runs, updated in the write
/// transaction that stores each run. Key: [`job_key`](crate::store::job_key). Value: its JSON.
pub const JOBS: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("jobs_v1");

pub(super) const META_SCHEMA: &str = "schema_version";
pub(super) const META_NEXT_ID: &str = "next_id";

pub(crate) fn run_key(job_key: &[u8], id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(job_key.len() + 8);
    key.extend_from_slice(job_key);
    key.extend_from_slice(&(u64::MAX - id).to_be_bytes());
    key
}

/// Creates the tables of a new file, or checks the schema version of an existing one and
/// migrates an older one ([`SCHEMA_VERSION`]).
pub(super) fn create_or_check(db: &Database) -> Result<(), StoreError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate);
    let found = {
        let mut meta = txn.open_table(META)?;
        let found = meta.get(META_SCHEMA)?.map(|v| v.value());
        match found {
            Some(v) if (1..=SCHEMA_VERSION).contains(&v) => {}
            Some(v) => {
                return Err(StoreError::SchemaMismatch {
                    found: v,
                    expected: SCHEMA_VERSION,
                });
            }
            None => {
                meta.insert(META_SCHEMA, SCHEMA_VERSION)?;
                meta.insert(META_NEXT_ID, 1)?;
            }
        }
        txn.open_table(RUNS)?;
        txn.open_table(RUNS_BY_TIME)?;
        txn.open_table(RUN_DEDUP)?;
        txn.open_table(RUN_DEDUP_BY_ID)?;
        txn.open_table(RUN_ROWS)?;
        txn.open_table(JOBS)?;
        found
    };
    txn.commit()?;
    if found == Some(1) {
        let indexed = migrate_from_v1(db)?;
        tracing::info!(
            runs = indexed,
            "database migrated from schema version 1 to 2: idempotency index built"
        );
    }
    if matches!(found, Some(1 | 2)) {
        let counted = super::jobs::migrate_from_v2(db)?;
        tracing::info!(
            runs = counted,
            "database migrated from schema version 2 to 3: job list and history built"
        );
    }
    Ok(())
}

/// Runs indexed per transaction by [`migrate_from_v1`].
const MIGRATION_CHUNK: usize = 10_000;

/// Builds [`RUN_DEDUP`] and [`RUN_DEDUP_BY_ID`] for the runs of a version-1 file, in
/// transactions of [`MIGRATION_CHUNK`] runs; the last one sets the schema version. A crash
/// in between leaves version 1 and the next open starts again (the entries are the same).
/// Returns how many runs were indexed.
fn migrate_from_v1(db: &Database) -> Result<u64, StoreError> {
    let mut after: Option<Vec<u8>> = None;
    let mut indexed = 0u64;
    loop {
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        let done = {
            let runs = txn.open_table(RUNS)?;
            let mut dedup = txn.open_table(RUN_DEDUP)?;
            let mut by_id = txn.open_table(RUN_DEDUP_BY_ID)?;
            let range = match &after {
                None => runs.range::<&[u8]>(..)?,
                Some(k) => {
                    runs.range::<&[u8]>((Bound::Excluded(k.as_slice()), Bound::Unbounded))?
                }
            };
            let mut seen = 0;
            let mut last = None;
            for item in range.take(MIGRATION_CHUNK) {
                let (k, v) = item?;
                let key = k.value();
                seen += 1;
                last = Some(key.to_vec());
                let Some(id) = id_of_run_key(key) else {
                    continue;
                };
                match dedup_of_stored(key, v.value()) {
                    Some((dedup_key, received_ms)) => {
                        remember(&mut dedup, &mut by_id, &dedup_key, id, received_ms)?;
                        indexed += 1;
                    }
                    None => tracing::warn!(id, "stored run not indexed: unreadable value"),
                }
            }
            if last.is_some() {
                after = last;
            }
            let done = seen < MIGRATION_CHUNK;
            if done {
                txn.open_table(META)?.insert(META_SCHEMA, 2)?;
            }
            done
        };
        txn.commit()?;
        if done {
            return Ok(indexed);
        }
    }
}

/// The id at the end of a [`RUNS`] key.
pub(super) fn id_of_run_key(key: &[u8]) -> Option<u64> {
    let inv: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::MAX - u64::from_be_bytes(inv))
}
