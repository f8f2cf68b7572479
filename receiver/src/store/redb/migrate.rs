//! Opening a file: the tables of a new one, or the schema version of an existing one
//! checked and an older one migrated in place, in chunks a crash can resume
//! (`SCHEMA_VERSION` history: 1 runs, 2 the idempotency index, 3 the job list and history).

use std::ops::Bound;

use redb::{Database, Durability, ReadableTable};
use summary::StoredRun;
use summary::fleet::RunRow;

use super::StoreError;
use super::jobs::count_run;
use super::records::{dedup_of_stored, remember};
use super::schema::*;
use crate::store::job_key;

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
    if found == Some(3) {
        // Packed rows are new rows only: nothing to rewrite.
        txn.open_table(META)?.insert(META_SCHEMA, SCHEMA_VERSION)?;
        tracing::info!("database schema version 3 opens as 4: new runs are stored compressed");
    }
    txn.commit()?;
    if found == Some(1) {
        let indexed = migrate_from_v1(db)?;
        tracing::info!(
            runs = indexed,
            "database migrated from schema version 1 to 2: idempotency index built"
        );
    }
    if matches!(found, Some(1 | 2)) {
        let counted = migrate_from_v2(db)?;
        tracing::info!(
            runs = counted,
            "database migrated from schema version 2 to 3: job list and history built"
        );
    }
    Ok(())
}

/// Runs indexed per transaction by [`migrate_from_v1`].
const V1_CHUNK: usize = 10_000;

/// Builds [`RUN_DEDUP`] and [`RUN_DEDUP_BY_ID`] for the runs of a version-1 file, in
/// transactions of [`V1_CHUNK`] runs; the last one sets the schema version. A crash
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
            for item in range.take(V1_CHUNK) {
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
            let done = seen < V1_CHUNK;
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

/// Runs read per transaction by [`migrate_from_v2`].
const V2_CHUNK: usize = 5_000;

/// Builds [`RUN_ROWS`] and [`JOBS`] for the runs of a version-2 file, in transactions of
/// [`V2_CHUNK`] runs; the last sets the schema version. A crash in between leaves
/// version 2 and the next open starts again from empty tables. Returns the runs counted.
fn migrate_from_v2(db: &Database) -> Result<u64, StoreError> {
    // A migration that crashed half-way left partial tables: start them again.
    {
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        txn.delete_table(JOBS)?;
        txn.delete_table(RUN_ROWS)?;
        txn.open_table(JOBS)?;
        txn.open_table(RUN_ROWS)?;
        txn.commit()?;
    }
    let mut after: Option<Vec<u8>> = None;
    let mut counted = 0u64;
    loop {
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        let done = {
            let runs = txn.open_table(RUNS)?;
            let mut jobs = txn.open_table(JOBS)?;
            let mut rows = txn.open_table(RUN_ROWS)?;
            let range = match &after {
                None => runs.range::<&[u8]>(..)?,
                Some(k) => {
                    runs.range::<&[u8]>((Bound::Excluded(k.as_slice()), Bound::Unbounded))?
                }
            };
            let mut seen = 0;
            for item in range.take(V2_CHUNK) {
                let (k, v) = item?;
                let key = k.value();
                seen += 1;
                after = Some(key.to_vec());
                let id = id_of_run_key(key);
                let json = id.and_then(|id| crate::store::codec::stored_json(id, v.value()).ok());
                let (Some(id), Some(Ok(run))) =
                    (id, json.map(|j| serde_json::from_slice::<StoredRun>(&j)))
                else {
                    tracing::warn!("stored run left out of the job list: unreadable value");
                    continue;
                };
                let received_ms = summary::time::parse_rfc3339(&run.received_at)
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_millis() as i64);
                let mut row = RunRow::of(&run.payload, &run.run_id, &run.run_attempt);
                row.stamp(id, received_ms);
                let identity = [run.organization, run.repository, run.workflow, run.job];
                let jk = job_key(&identity[0], &identity[1], &identity[2], &identity[3]);
                count_run(&mut jobs, &mut rows, &jk, &identity, key, &row)?;
                counted += 1;
            }
            let done = seen < V2_CHUNK;
            if done {
                txn.open_table(META)?.insert(META_SCHEMA, SCHEMA_VERSION)?;
            } else {
                tracing::info!(runs = counted, "building the job list from stored runs");
            }
            done
        };
        txn.commit()?;
        if done {
            return Ok(counted);
        }
    }
}
