//! The on-disk layout: every table, its key and value, and the schema version. Table
//! names carry the layout version; a file of another version is refused at open.

use redb::{Database, Durability, ReadableTable, TableDefinition};

use super::StoreError;
use crate::auth::canonical_repository;

/// Version of the on-disk layout below; stored in [`META`] and checked at open.
pub const SCHEMA_VERSION: u64 = 1;

/// Bookkeeping. Key: a name. Value: a number.
/// - `"schema_version"`: the layout version ([`SCHEMA_VERSION`]) the file was created with.
/// - `"next_id"`: the id the next stored run gets (ids start at 1 and never repeat).
pub const META: TableDefinition<'static, &str, u64> = TableDefinition::new("meta_v1");

/// The stored runs.
///
/// Key: `job_key || u64_be(u64::MAX - id)` where `job_key` is [`job_key`]'s
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

pub(super) const META_SCHEMA: &str = "schema_version";
pub(super) const META_NEXT_ID: &str = "next_id";

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

pub(super) fn run_key(job_key: &[u8], id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(job_key.len() + 8);
    key.extend_from_slice(job_key);
    key.extend_from_slice(&(u64::MAX - id).to_be_bytes());
    key
}

/// Creates the tables of a new file, or checks the schema version of an existing one.
pub(super) fn create_or_check(db: &Database) -> Result<(), StoreError> {
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
    Ok(())
}
