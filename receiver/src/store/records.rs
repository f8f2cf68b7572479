//! The stored value of a run: encoded by the request task, so the writer thread only
//! copies bytes into the page redb reserves for it. And what makes a repeated push
//! harmless: the run's dedup key ([`super::schema::dedup_key`]), looked up and recorded
//! in the write transaction that stores the run.

use std::borrow::Cow;

use redb::{ReadableTable, Table};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use summary::Execution;

use super::schema::{dedup_key, job_key};
use super::{Inserted, StoreError};

/// A run to store, encoded by the request task so the writer thread only copies bytes.
///
/// The stored value is the JSON of a [`summary::StoredRun`] with the fields in the order
/// the query returns them: `{"id":ID` + `head` + `,"received_at":"TIME","payload":` +
/// `payload` + `}`. The id and the receive time are the writer's to assign.
#[derive(Debug)]
pub struct NewRun {
    /// [`job_key`] of the run's identity (the [`super::schema::RUNS`] key prefix).
    pub(super) job_key: Vec<u8>,
    /// [`dedup_key`] of the run: the [`super::schema::RUN_DEDUP`] key.
    pub(super) dedup_key: Vec<u8>,
    /// `,"organization":...,"repository":...,"workflow":...,"job":...,"run_id":...`
    /// (and `,"run_attempt":...` when known).
    head: Vec<u8>,
    /// The summary's JSON.
    payload: Vec<u8>,
    /// Organization, repository, workflow and job as pushed (a new job's aggregate).
    pub(super) identity: Box<[String; 4]>,
    /// The run's row for the job list and history ([`NewRun::with_row`]); without one
    /// (a payload that is not a summary, in tests) the run counts with zero figures.
    pub(super) row: Box<summary::fleet::RunRow>,
}

/// The identity fields of a stored run, in [`summary::StoredRun`]'s order.
#[derive(Serialize)]
struct Identity<'a> {
    organization: &'a str,
    repository: &'a str,
    workflow: &'a str,
    job: &'a str,
    run_id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    run_attempt: &'a str,
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
                + e.run_id.len()
                + e.run_attempt.len(),
        );
        serde_json::to_writer(
            &mut head,
            &Identity {
                organization: &e.organization,
                repository: &e.repository,
                workflow: &e.workflow,
                job: &e.job,
                run_id: &e.run_id,
                run_attempt: &e.run_attempt,
            },
        )?;
        // `{"organization":...}` -> `,"organization":...`: the object's braces go.
        head[0] = b',';
        head.pop();
        let mut payload = Vec::with_capacity(8 * 1024);
        serde_json::to_writer(&mut payload, summary)?;
        let job_key = job_key(&e.organization, &e.repository, &e.workflow, &e.job);
        Ok(Self {
            dedup_key: dedup_key(&job_key, &e.run_id, &e.run_attempt, &payload),
            job_key,
            head,
            payload,
            identity: Box::new([
                e.organization.clone(),
                e.repository.clone(),
                e.workflow.clone(),
                e.job.clone(),
            ]),
            row: Box::new(summary::fleet::RunRow {
                run_id: e.run_id.clone(),
                run_attempt: e.run_attempt.clone(),
                ..Default::default()
            }),
        })
    }

    /// Encodes a pushed run with its row ([`summary::fleet::RunRow::of`] its summary).
    pub fn of_push(
        execution: &Execution,
        summary: &summary::RunSummary,
    ) -> Result<Self, StoreError> {
        let mut run = Self::new(execution, summary)?;
        *run.row = summary::fleet::RunRow::of(summary, &execution.run_id, &execution.run_attempt);
        Ok(run)
    }

    /// The run's job: the key prefix of its job's runs ([`job_key`]).
    pub fn job_key(&self) -> &[u8] {
        &self.job_key
    }

    /// The stored value's pieces for `id` received at `received_at`, in order. Their
    /// concatenation is the JSON of the stored run (`received_at` comes from
    /// [`summary::time::format_unix_millis`]: digits, `-`, `:`, `.`, `T`, `Z`, nothing
    /// to escape).
    pub(super) fn value_parts<'a>(&'a self, id: &'a [u8], received_at: &'a str) -> [&'a [u8]; 7] {
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
