//! The writer thread: group commit. Everything queued (up to [`MAX_BATCH`]) goes into one
//! write transaction with [`Durability::Immediate`]; every request of the batch is
//! answered only after the commit.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use redb::{Database, Durability, ReadableTable};
use tokio::sync::{mpsc, oneshot};

use super::records::{NewRun, write_value};
use super::schema::{META, META_NEXT_ID, RUNS, RUNS_BY_TIME};
use super::{Inserted, StoreError, StoreOptions};
use crate::metrics::Metrics;

/// Most operations committed in one write transaction.
pub const MAX_BATCH: usize = 1024;

/// Work for the writer thread.
pub(super) enum WriteOp {
    Insert(NewRun, oneshot::Sender<Result<Inserted, String>>),
    Prune {
        cutoff_ms: u64,
        reply: oneshot::Sender<Result<u64, String>>,
    },
}

/// `clock()` in Unix milliseconds.
pub(super) fn unix_ms(clock: fn() -> SystemTime) -> u64 {
    clock()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(super) fn writer_loop(
    db: &Database,
    mut rx: mpsc::Receiver<WriteOp>,
    options: StoreOptions,
    metrics: &Metrics,
) {
    let max = if options.group_commit { MAX_BATCH } else { 1 };
    let mut batch = Vec::with_capacity(max);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < max {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let size = batch.len();
        match commit_batch(db, &batch, unix_ms(options.clock)) {
            Ok(results) => {
                metrics.observe_commit(size, started.elapsed());
                for (op, result) in batch.drain(..).zip(results) {
                    match (op, result) {
                        (WriteOp::Insert(_, reply), Outcome::Inserted(ins)) => {
                            let _ = reply.send(Ok(ins));
                        }
                        (WriteOp::Prune { reply, .. }, Outcome::Pruned(n)) => {
                            let _ = reply.send(Ok(n));
                        }
                        (WriteOp::Insert(_, reply), _) => {
                            let _ = reply.send(Err("internal: mismatched outcome".into()));
                        }
                        (WriteOp::Prune { reply, .. }, _) => {
                            let _ = reply.send(Err("internal: mismatched outcome".into()));
                        }
                    }
                }
            }
            Err(e) => {
                metrics.commit_failures.inc();
                tracing::error!(error = %e, batch = size, "write transaction failed");
                let msg = e.to_string();
                for op in batch.drain(..) {
                    match op {
                        WriteOp::Insert(_, reply) => {
                            let _ = reply.send(Err(msg.clone()));
                        }
                        WriteOp::Prune { reply, .. } => {
                            let _ = reply.send(Err(msg.clone()));
                        }
                    }
                }
            }
        }
    }
    tracing::debug!("writer stopped");
}

enum Outcome {
    Inserted(Inserted),
    Pruned(u64),
}

/// Most runs deleted by one prune operation; the retention task repeats until done.
const PRUNE_CHUNK: usize = 10_000;

fn commit_batch(
    db: &Database,
    batch: &[WriteOp],
    received_ms: u64,
) -> Result<Vec<Outcome>, StoreError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate);
    let mut outcomes = Vec::with_capacity(batch.len());
    {
        let mut meta = txn.open_table(META)?;
        let mut runs = txn.open_table(RUNS)?;
        let mut by_time = txn.open_table(RUNS_BY_TIME)?;
        let mut next_id = meta.get(META_NEXT_ID)?.map(|v| v.value()).unwrap_or(1);
        let received_at = summary::time::format_unix_millis(received_ms as i64);
        let mut key = Vec::new();
        for op in batch {
            match op {
                WriteOp::Insert(run, _) => {
                    let id = next_id;
                    next_id += 1;
                    key.clear();
                    key.extend_from_slice(&run.job_key);
                    key.extend_from_slice(&(u64::MAX - id).to_be_bytes());
                    // The value goes straight into the page redb reserves for it.
                    let id_text = id.to_string();
                    let parts = run.value_parts(id_text.as_bytes(), &received_at);
                    let len = parts.iter().map(|p| p.len()).sum::<usize>() + 1;
                    let len = u32::try_from(len).map_err(|_| {
                        StoreError::Db(Box::new(redb::StorageError::ValueTooLarge(len).into()))
                    })?;
                    write_value(&parts, runs.insert_reserve(key.as_slice(), len)?.as_mut());
                    by_time.insert((received_ms, id), key.as_slice())?;
                    outcomes.push(Outcome::Inserted(Inserted {
                        id,
                        received_at: received_at.clone(),
                    }));
                }
                WriteOp::Prune { cutoff_ms, .. } => {
                    let mut doomed = Vec::new();
                    for item in by_time
                        .range((0u64, 0u64)..(*cutoff_ms, 0u64))?
                        .take(PRUNE_CHUNK)
                    {
                        let (k, v) = item?;
                        doomed.push((k.value(), v.value().to_vec()));
                    }
                    for (time_key, run_key) in &doomed {
                        runs.remove(run_key.as_slice())?;
                        by_time.remove(*time_key)?;
                    }
                    outcomes.push(Outcome::Pruned(doomed.len() as u64));
                }
            }
        }
        meta.insert(META_NEXT_ID, next_id)?;
    }
    txn.commit()?;
    Ok(outcomes)
}
