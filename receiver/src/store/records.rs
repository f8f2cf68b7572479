//! The stored value of a run: encoded by the request task, so the writer thread only
//! copies bytes into the page redb reserves for it.

use serde::Serialize;
use summary::Execution;

use super::StoreError;
use super::schema::job_key;

/// A run to store, encoded by the request task so the writer thread only copies bytes.
///
/// The stored value is the JSON of a [`summary::StoredRun`] with the fields in the order
/// the query returns them: `{"id":ID` + `head` + `,"received_at":"TIME","payload":` +
/// `payload` + `}`. The id and the receive time are the writer's to assign.
#[derive(Debug)]
pub struct NewRun {
    /// [`job_key`] of the run's identity (the [`super::schema::RUNS`] key prefix).
    pub(super) job_key: Vec<u8>,
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
