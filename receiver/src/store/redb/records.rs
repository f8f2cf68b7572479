//! The stored value of a run: encoded by the request task, so the writer thread only
//! copies bytes into the page redb reserves for it. And what makes a repeated push
//! harmless: the run's dedup key ([`super::schema::dedup_key`]), looked up and recorded
//! in the write transaction that stores the run.

use std::borrow::Cow;

use redb::{ReadableTable, Table};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Inserted, NewRun, StoreError};
use crate::store::dedup_key;

/// Writes `parts` one after the other into `out`, which is exactly as long as all of them
/// plus a closing `}`.
pub(super) fn write_value(parts: &[&[u8]], out: &mut [u8]) {
    let mut at = 0;
    for part in parts {
        out[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    out[at] = b'}';
}

/// The [`super::schema::RUN_DEDUP`] table, open in a write transaction.
pub(super) type DedupTable<'t> = Table<'t, &'static [u8], (u64, u64)>;
/// The [`super::schema::RUN_DEDUP_BY_ID`] table, open in a write transaction.
pub(super) type DedupByIdTable<'t> = Table<'t, u64, &'static [u8]>;

/// The run already stored with `run`'s dedup key (the same job, run id, attempt and
/// summary), answered as if this push had stored it. Inside the batch's write
/// transaction, so a twin earlier in the same batch counts too.
pub(super) fn stored_twin(
    dedup: &DedupTable<'_>,
    run: &NewRun,
) -> Result<Option<Inserted>, StoreError> {
    Ok(dedup.get(run.dedup_key.as_slice())?.map(|v| {
        let (id, received_ms) = v.value();
        Inserted {
            id,
            received_at: summary::time::format_unix_millis(received_ms as i64),
            replayed: true,
        }
    }))
}

/// Records that run `id`, received at `received_ms`, has the dedup key `key`. If another
/// run already has it (two copies stored before this index existed), the older one stays
/// the answer.
pub(super) fn remember(
    dedup: &mut DedupTable<'_>,
    by_id: &mut DedupByIdTable<'_>,
    key: &[u8],
    id: u64,
    received_ms: u64,
) -> Result<(), StoreError> {
    let existing = dedup.get(key)?.map(|v| v.value().0);
    match existing {
        Some(older) if older <= id => return Ok(()),
        Some(newer) => {
            by_id.remove(newer)?;
        }
        None => {}
    }
    dedup.insert(key, (id, received_ms))?;
    by_id.insert(id, key)?;
    Ok(())
}

/// Forgets the dedup key of run `id`, which retention deletes: a push of it after that is
/// a new run.
pub(super) fn forget(
    dedup: &mut DedupTable<'_>,
    by_id: &mut DedupByIdTable<'_>,
    id: u64,
) -> Result<(), StoreError> {
    let key = by_id.remove(id)?.map(|k| k.value().to_vec());
    if let Some(key) = key {
        let points_here = dedup
            .get(key.as_slice())?
            .is_some_and(|v| v.value().0 == id);
        if points_here {
            dedup.remove(key.as_slice())?;
        }
    }
    Ok(())
}

/// What the dedup index needs from a stored value.
#[derive(Deserialize)]
struct StoredParts<'a> {
    #[serde(borrow)]
    run_id: Cow<'a, str>,
    #[serde(default, borrow)]
    run_attempt: Cow<'a, str>,
    #[serde(borrow)]
    received_at: Cow<'a, str>,
    #[serde(borrow)]
    payload: &'a RawValue,
}

/// The dedup key and receive time (Unix ms) of a stored run, from its [`super::schema::RUNS`]
/// key and value: what [`NewRun::new`] computed when it was pushed. `None` if the value is
/// not a stored run.
pub(super) fn dedup_of_stored(run_key: &[u8], value: &[u8]) -> Option<(Vec<u8>, u64)> {
    let job_key = run_key.get(..run_key.len().checked_sub(8)?)?;
    let parts: StoredParts<'_> = serde_json::from_slice(value).ok()?;
    let received_ms = summary::time::parse_rfc3339_nanos(&parts.received_at)? / 1_000_000;
    Some((
        dedup_key(
            job_key,
            &parts.run_id,
            &parts.run_attempt,
            parts.payload.get().as_bytes(),
        ),
        u64::try_from(received_ms).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use redb::{Database, ReadableTableMetadata as _};

    use super::super::schema::{RUN_DEDUP, RUN_DEDUP_BY_ID};
    use super::*;
    use summary::Execution;

    fn run(payload: u32) -> NewRun {
        let execution = Execution {
            organization: "o".into(),
            repository: "r".into(),
            workflow: "w".into(),
            job: "j".into(),
            run_id: "1".into(),
            run_attempt: String::new(),
        };
        NewRun::new(&execution, &serde_json::json!({ "p": payload })).unwrap()
    }

    /// Group commit: a push earlier in the same write transaction is a twin too, so two
    /// identical pushes in one batch store one run.
    #[test]
    fn a_twin_earlier_in_the_same_transaction_counts() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("t.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut dedup = txn.open_table(RUN_DEDUP).unwrap();
            let mut by_id = txn.open_table(RUN_DEDUP_BY_ID).unwrap();
            let (a, b, c) = (run(1), run(1), run(2));
            assert_eq!(a.dedup_key, b.dedup_key);
            assert_ne!(a.dedup_key, c.dedup_key);
            assert_eq!(stored_twin(&dedup, &a).unwrap(), None);
            remember(&mut dedup, &mut by_id, &a.dedup_key, 7, 1_000).unwrap();
            assert_eq!(
                stored_twin(&dedup, &b).unwrap(),
                Some(Inserted {
                    id: 7,
                    received_at: "1970-01-01T00:00:01.000Z".into(),
                    replayed: true
                })
            );
            assert_eq!(stored_twin(&dedup, &c).unwrap(), None);
            // An older copy wins; forgetting the loser leaves the winner's entry.
            remember(&mut dedup, &mut by_id, &a.dedup_key, 3, 500).unwrap();
            remember(&mut dedup, &mut by_id, &a.dedup_key, 9, 900).unwrap();
            assert_eq!(stored_twin(&dedup, &b).unwrap().unwrap().id, 3);
            forget(&mut dedup, &mut by_id, 9).unwrap();
            forget(&mut dedup, &mut by_id, 7).unwrap();
            assert_eq!(stored_twin(&dedup, &b).unwrap().unwrap().id, 3);
            forget(&mut dedup, &mut by_id, 3).unwrap();
            assert_eq!(stored_twin(&dedup, &b).unwrap(), None);
            assert_eq!((dedup.len().unwrap(), by_id.len().unwrap()), (0, 0));
        }
        txn.commit().unwrap();
    }

    #[test]
    fn dedup_key_of_a_stored_value_is_the_pushed_one() {
        let r = run(5);
        let parts = r.value_parts(b"42", "2026-02-06T14:30:23.056Z");
        let mut value = vec![0u8; parts.iter().map(|p| p.len()).sum::<usize>() + 1];
        write_value(&parts, &mut value);
        let key = super::super::schema::run_key(&r.job_key, 42);
        assert_eq!(
            dedup_of_stored(&key, &value),
            Some((r.dedup_key.clone(), 1_770_388_223_056))
        );
        assert_eq!(dedup_of_stored(&key, b"{}"), None);
        assert_eq!(dedup_of_stored(b"short", &value), None);
    }
}
