//! PostgreSQL group commit: the writer task takes everything queued (up to [`MAX_BATCH`])
//! into one transaction of a few batched statements (the runs with their rows, their jobs'
//! aggregates), commits with `synchronous_commit=on`, and only then answers every push of
//! the batch. A lost connection fails the batch with 503; a deadlock with another replica
//! (both updating one job's aggregate) is retried.
//!
//! Aggregates are read `FOR UPDATE` in key order, so two receivers storing runs of the same
//! jobs take their locks in the same order.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use summary::fleet::{JobAggregate, RunRow, SizingShort};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;

use super::{Shared, pg_error};
use crate::metrics::Metrics;
use crate::store::decode_aggregate;
use crate::store::{Inserted, NewRun, StoreError, StoreOptions};

/// Most pushes committed in one transaction.
pub const MAX_BATCH: usize = 512;
/// Runs deleted per retention transaction.
const PRUNE_CHUNK: i64 = 5_000;
/// Attempts of a transaction that deadlocked or failed to serialize.
const ATTEMPTS: usize = 4;

/// Where a push's answer goes.
type Reply = oneshot::Sender<Result<Inserted, StoreError>>;

/// Work for the writer task.
pub(super) enum WriteOp {
    Insert(Box<NewRun>, Reply),
    Prune {
        cutoff_ms: u64,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
}

/// The writer task: batches until the channel closes.
pub(super) async fn run(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<WriteOp>,
    options: StoreOptions,
    metrics: Arc<Metrics>,
) {
    let max = if options.group_commit { MAX_BATCH } else { 1 };
    let mut batch: Vec<(Box<NewRun>, Reply)> = Vec::with_capacity(max);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(op) = next.take() {
            match op {
                WriteOp::Insert(run, reply) => batch.push((run, reply)),
                WriteOp::Prune { cutoff_ms, reply } => {
                    let result = prune(&shared, cutoff_ms).await;
                    let _ = reply.send(shared.observe(result));
                }
            }
            if batch.len() < max {
                next = rx.try_recv().ok();
            }
        }
        if batch.is_empty() {
            continue;
        }
        if options.compress_in_writer {
            for (run, _) in &mut batch {
                run.pack(options.compression);
            }
        }
        let started = Instant::now();
        let received_ms = crate::store::unix_ms(options.clock);
        let runs: Vec<&NewRun> = batch.iter().map(|(r, _)| r.as_ref()).collect();
        let mut result = commit_runs(&shared, &runs, received_ms).await;
        for _ in 1..ATTEMPTS {
            match &result {
                Err(StoreError::Postgres(msg)) if retryable(msg) => {
                    tracing::debug!(error = msg, "group commit retried");
                    result = commit_runs(&shared, &runs, received_ms).await;
                }
                _ => break,
            }
        }
        drop(runs);
        match shared.observe(result) {
            Ok(answers) => {
                metrics.observe_commit(batch.len(), started.elapsed());
                for ((_, reply), answer) in batch.drain(..).zip(answers) {
                    let _ = reply.send(Ok(answer));
                }
            }
            Err(e) => {
                metrics.commit_failures.inc();
                tracing::error!(error = %e, batch = batch.len(), "group commit failed");
                let text = e.to_string();
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(match &e {
                        StoreError::Unavailable(r) => StoreError::Unavailable(r.clone()),
                        _ => StoreError::Postgres(text.clone()),
                    }));
                }
            }
        }
    }
    tracing::debug!("PostgreSQL writer stopped");
}

/// Deadlock (40P01) or serialization failure (40001).
fn retryable(msg: &str) -> bool {
    msg.contains("(SQLSTATE 40P01)") || msg.contains("(SQLSTATE 40001)")
}

/// Stores `runs` in one transaction; one answer per run, in order.
///
/// Four round trips whatever the batch's size: BEGIN; the runs' insert and the aggregates'
/// lock, pipelined; the aggregates' update; COMMIT (plus one lookup when a push repeats a
/// stored run). A run's row is stored without its id and receive time, which are columns
/// of their own and stamped when the row is read.
async fn commit_runs(
    shared: &Shared,
    runs: &[&NewRun],
    received_ms: u64,
) -> Result<Vec<Inserted>, StoreError> {
    let mut client = shared.client().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    let received = received_ms as i64;
    let received_at = summary::time::format_unix_millis(received);
    let job_keys: Vec<&[u8]> = runs.iter().map(|r| r.job_key.as_slice()).collect();
    let times: Vec<i64> = vec![received; runs.len()];
    // A packed run: its payload holds head and payload (the receive time in it stays 0:
    // the column is the one read).
    let heads: Vec<&[u8]> = runs
        .iter()
        .map(|r| match r.packed {
            Some(_) => &[][..],
            None => r.head.as_slice(),
        })
        .collect();
    let payloads: Vec<&[u8]> = runs
        .iter()
        .map(|r| r.packed.as_deref().unwrap_or(&r.payload))
        .collect();
    let rows: Vec<Vec<u8>> = runs
        .iter()
        .map(|r| serde_json::to_vec(r.row.as_ref()))
        .collect::<Result<_, _>>()?;
    let dedups: Vec<&[u8]> = runs.iter().map(|r| r.dedup_key.as_slice()).collect();
    let mut keys: Vec<&[u8]> = job_keys.clone();
    keys.sort_unstable();
    keys.dedup();
    let insert_runs = tx
        .prepare_cached(
            "INSERT INTO runs (job_key, received_ms, head, payload, row_json, dedup_key)
             SELECT * FROM unnest($1::bytea[], $2::int8[], $3::bytea[], $4::bytea[], $5::bytea[],
                                  $6::bytea[])
             ON CONFLICT (dedup_key) DO NOTHING RETURNING id, dedup_key",
        )
        .await
        .map_err(pg_error)?;
    // The jobs' aggregates: created empty if new, and locked (an upsert that updates takes
    // the row lock) in key order, returning what is there now.
    let lock_jobs = tx
        .prepare_cached(
            "INSERT INTO jobs (job_key, aggregate)
             SELECT k, ''::bytea FROM unnest($1::bytea[]) AS k ORDER BY k
             ON CONFLICT (job_key) DO UPDATE SET aggregate = jobs.aggregate
             RETURNING job_key, aggregate",
        )
        .await
        .map_err(pg_error)?;
    let run_params: [&(dyn ToSql + Sync); 6] =
        [&job_keys, &times, &heads, &payloads, &rows, &dedups];
    let lock_params: [&(dyn ToSql + Sync); 1] = [&keys];
    let (inserted, current) = tokio::join!(
        tx.query(&insert_runs, &run_params),
        tx.query(&lock_jobs, &lock_params)
    );
    let mut new_ids: HashMap<Vec<u8>, u64> = inserted
        .map_err(pg_error)?
        .iter()
        .map(|r| (r.get::<_, Vec<u8>>(1), r.get::<_, i64>(0) as u64))
        .collect();
    let current: HashMap<Vec<u8>, Vec<u8>> = current
        .map_err(pg_error)?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // Runs stored before (a retry), answered with the first push's id and time.
    let mut stored_before: HashMap<Vec<u8>, (u64, i64)> = HashMap::new();
    if new_ids.len() < runs.len() {
        let missing: Vec<&[u8]> = dedups
            .iter()
            .copied()
            .filter(|k| !new_ids.contains_key(*k))
            .collect();
        let found = tx
            .query(
                "SELECT dedup_key, id, received_ms FROM runs WHERE dedup_key = ANY($1)",
                &[&missing],
            )
            .await
            .map_err(pg_error)?;
        for r in found {
            stored_before.insert(r.get(0), (r.get::<_, i64>(1) as u64, r.get(2)));
        }
    }
    let mut answers = Vec::with_capacity(runs.len());
    let mut by_job: BTreeMap<&[u8], (&NewRun, Vec<RunRow>)> = BTreeMap::new();
    for run in runs {
        if let Some(id) = new_ids.remove(&run.dedup_key) {
            let mut row = (*run.row).clone();
            row.stamp(id, received);
            by_job
                .entry(run.job_key.as_slice())
                .or_insert_with(|| (*run, Vec::new()))
                .1
                .push(row);
            answers.push(Inserted {
                id,
                received_at: received_at.clone(),
                replayed: false,
            });
            stored_before.insert(run.dedup_key.clone(), (id, received));
        } else {
            let (id, ms) = stored_before.get(&run.dedup_key).copied().ok_or_else(|| {
                StoreError::Postgres("a deduplicated run is missing from the database".into())
            })?;
            answers.push(Inserted {
                id,
                received_at: summary::time::format_unix_millis(ms),
                replayed: true,
            });
        }
    }
    if !by_job.is_empty() {
        let mut updated_keys: Vec<&[u8]> = Vec::with_capacity(by_job.len());
        let mut values: Vec<Vec<u8>> = Vec::with_capacity(by_job.len());
        for (key, (run, rows)) in &by_job {
            let mut aggregate = current
                .get(*key)
                .and_then(|v| decode_aggregate(v))
                .unwrap_or_else(|| {
                    let [o, r, w, j] = run.identity.as_ref();
                    JobAggregate::new(o, r, w, j)
                });
            for row in rows {
                aggregate.add(row);
            }
            updated_keys.push(key);
            values.push(serde_json::to_vec(&aggregate)?);
        }
        let update = tx
            .prepare_cached(
                "UPDATE jobs SET aggregate = u.a FROM unnest($1::bytea[], $2::bytea[]) AS u(k, a)
                 WHERE jobs.job_key = u.k",
            )
            .await
            .map_err(pg_error)?;
        tx.execute(&update, &[&updated_keys, &values])
            .await
            .map_err(pg_error)?;
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(answers)
}

/// A stored row as read: stamped with its run's id and receive time (see [`commit_runs`]).
pub(super) fn read_row(id: i64, received_ms: i64, json: &[u8]) -> Option<RunRow> {
    match serde_json::from_slice::<RunRow>(json) {
        Ok(mut row) => {
            row.stamp(id as u64, received_ms);
            Some(row)
        }
        Err(e) => {
            tracing::warn!(error = %e, "skipping a run row that does not parse");
            None
        }
    }
}

/// Deletes up to [`PRUNE_CHUNK`] runs received before `cutoff_ms` (their rows are in
/// them) and rebuilds the aggregates of their jobs.
async fn prune(shared: &Shared, cutoff_ms: u64) -> Result<u64, StoreError> {
    let mut client = shared.client().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    let deleted = tx
        .query(
            "DELETE FROM runs WHERE id IN (
                SELECT id FROM runs WHERE received_ms < $1 ORDER BY id LIMIT $2
                FOR UPDATE SKIP LOCKED)
             RETURNING job_key",
            &[&(cutoff_ms.min(i64::MAX as u64) as i64), &PRUNE_CHUNK],
        )
        .await
        .map_err(pg_error)?;
    let mut jobs: Vec<Vec<u8>> = deleted.iter().map(|r| r.get(0)).collect();
    jobs.sort();
    jobs.dedup();
    for key in &jobs {
        let Some(old) = tx
            .query_opt(
                "SELECT aggregate FROM jobs WHERE job_key = $1 FOR UPDATE",
                &[key],
            )
            .await
            .map_err(pg_error)?
            .and_then(|r| decode_aggregate(r.get(0)))
        else {
            continue;
        };
        let rows = tx
            .query(
                "SELECT id, received_ms, row_json FROM runs WHERE job_key = $1 ORDER BY id",
                &[key],
            )
            .await
            .map_err(pg_error)?;
        if rows.is_empty() {
            tx.execute("DELETE FROM jobs WHERE job_key = $1", &[key])
                .await
                .map_err(pg_error)?;
            continue;
        }
        let fresh = old.rebuilt(
            rows.iter()
                .filter_map(|r| read_row(r.get(0), r.get(1), r.get(2)))
                .collect::<Vec<_>>()
                .iter(),
        );
        tx.execute(
            "UPDATE jobs SET aggregate = $2 WHERE job_key = $1",
            &[key, &serde_json::to_vec(&fresh)?],
        )
        .await
        .map_err(pg_error)?;
    }
    tx.commit().await.map_err(pg_error)?;
    Ok(deleted.len() as u64)
}

/// Puts the sizer's answer into the job's aggregate unless one at least as new is there.
pub(super) async fn set_sizing(
    shared: &Shared,
    job_key: &[u8],
    sizing: &SizingShort,
) -> Result<bool, StoreError> {
    let mut client = shared.client().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    let Some(mut aggregate) = tx
        .query_opt(
            "SELECT aggregate FROM jobs WHERE job_key = $1 FOR UPDATE",
            &[&job_key],
        )
        .await
        .map_err(pg_error)?
        .and_then(|r| decode_aggregate(r.get(0)))
    else {
        return Ok(false);
    };
    if !aggregate.offer_sizing(sizing) {
        return Ok(false);
    }
    tx.execute(
        "UPDATE jobs SET aggregate = $2 WHERE job_key = $1",
        &[&job_key, &serde_json::to_vec(&aggregate)?],
    )
    .await
    .map_err(pg_error)?;
    tx.commit().await.map_err(pg_error)?;
    Ok(true)
}
