//! The on-disk layout: every table, its key and value, and the schema version. Table
//! names carry the layout version; a file of another version is refused at open.

use redb::TableDefinition;

/// Version of the on-disk layout below; stored in [`META`] and checked at open.
///
/// - 1: [`META`], [`RUNS`], [`RUNS_BY_TIME`].
/// - 2: plus [`RUN_DEDUP`] and [`RUN_DEDUP_BY_ID`] (idempotent pushes). A version-1 file
///   is migrated at open: the index is built for the runs it holds.
///
/// - 3: plus [`RUN_ROWS`] and [`JOBS`] (the job list and history). A version-2 file is
///   migrated at open: rows and aggregates are built from the runs it holds.
///
/// - 4: [`RUNS`] values may be packed (zstd, see `store/codec.rs`) as well as plain JSON.
///   A version-3 file opens as 4 without a rewrite: its plain rows read as they are, and
///   new rows are packed. (The version keeps an older receiver from misreading a packed
///   row.)
///
/// A file of a newer version is refused (a newer receiver wrote it).
pub const SCHEMA_VERSION: u64 = 4;

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
/// Value: the UTF-8 JSON of the [`summary::StoredRun`] exactly as the query API returns it
/// (plain, starting with `{`), or since version 4 that JSON packed: a header with the
/// receive time and the zstd dictionary, then a zstd frame of its pieces
/// ([`crate::store::codec`]).
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

/// The id at the end of a [`RUNS`] key.
pub(super) fn id_of_run_key(key: &[u8]) -> Option<u64> {
    let inv: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::MAX - u64::from_be_bytes(inv))
}
