//! A run to store, as the request task encodes it for either backend: the stored JSON's
//! pieces, its job's key and its idempotency key, and its row for the job list.

use serde::Serialize;
use sha2::{Digest, Sha256};
use summary::Execution;

use super::StoreError;
use crate::auth::canonical_repository;

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
    pub(super) head: Vec<u8>,
    /// The summary's JSON.
    pub(super) payload: Vec<u8>,
    /// Organization, repository, workflow and job as pushed (a new job's aggregate).
    pub(super) identity: Box<[String; 4]>,
    /// The run's row for the job list and history ([`NewRun::with_row`]); without one
    /// (a payload that is not a summary, in tests) the run counts with zero figures.
    pub(super) row: Box<summary::fleet::RunRow>,
    /// `head ‖ payload` compressed ([`super::codec::pack`]), once [`NewRun::pack`] ran with
    /// compression on: the backend stores this instead of the plain pieces.
    pub(super) packed: Option<Vec<u8>>,
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
            packed: None,
        })
    }

    /// Compresses the stored value (by the request task, before the writer sees the run,
    /// so the writer only copies bytes); `Off` leaves it plain.
    pub fn pack(&mut self, compression: super::Compression) {
        if self.packed.is_none() {
            self.packed = super::codec::pack(&self.head, &self.payload, compression);
        }
    }

    /// What [`NewRun::pack`] compresses: `head ‖ payload` (dictionary training samples).
    pub fn packable(&self) -> Vec<u8> {
        [self.head.as_slice(), &self.payload].concat()
    }

    /// The stored value's size in bytes: packed, or plain JSON without id and time.
    pub fn stored_len(&self) -> usize {
        self.packed
            .as_ref()
            .map_or(self.head.len() + self.payload.len(), Vec::len)
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

/// The stored JSON of run `id` received at `received_ms` from its pieces (as
/// [`NewRun::value_parts`] lays them out), for a backend that stores the pieces.
pub(super) fn assemble(id: u64, head: &[u8], received_ms: i64, payload: &[u8]) -> Vec<u8> {
    let id = id.to_string();
    let received_at = summary::time::format_unix_millis(received_ms);
    let mut out = Vec::with_capacity(head.len() + payload.len() + 64);
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(head);
    out.extend_from_slice(b",\"received_at\":\"");
    out.extend_from_slice(received_at.as_bytes());
    out.extend_from_slice(b"\",\"payload\":");
    out.extend_from_slice(payload);
    out.push(b'}');
    out
}

/// The `job_key` prefix of `RUNS` keys: each of organization, canonical repository,
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

/// The `RUN_DEDUP` key of a run: its job, run id and attempt, and the SHA-256 of its
/// summary's JSON.
///
/// The summary's hash is part of the key because the identity alone does not make a run
/// unique: the legs of a matrix job share `GITHUB_JOB`, `GITHUB_RUN_ID` and the attempt,
/// as do two `collector run` commands in one job. A retry sends the same summary, so it
/// has the same key; where the run id is empty, the hash is the whole difference.
pub fn dedup_key(job_key: &[u8], run_id: &str, run_attempt: &str, payload: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(job_key.len() + 8 + run_id.len() + run_attempt.len() + 32);
    key.extend_from_slice(job_key);
    for part in [run_id, run_attempt] {
        key.extend_from_slice(&(part.len() as u32).to_be_bytes());
        key.extend_from_slice(part.as_bytes());
    }
    key.extend_from_slice(&Sha256::digest(payload));
    key
}
