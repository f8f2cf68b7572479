//! The writer thread: group commit. Everything queued (up to [`MAX_BATCH`]) goes into one
//! write transaction with [`Durability::Immediate`] and quick repair; every request of the
//! batch is answered only after the commit.
//!
//! A commit that fails with an I/O error makes the store unavailable (`recovery`): the
//! writer then answers everything queued at once with [`StoreError::Unavailable`] and
//! retries the recovery with back-off, until the store is writable again or closed.

use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableTable};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};

use super::NewRun;
use super::jobs::{count_run, rebuild, set_sizing};
use super::records::{forget, remember, stored_twin, write_value};
use super::recovery::{Handle, io_reason};
use super::schema::{
    JOBS, META, META_NEXT_ID, RUN_DEDUP, RUN_DEDUP_BY_ID, RUN_ROWS, RUNS, RUNS_BY_TIME,
};
use super::{Inserted, StoreError, StoreOptions};
use crate::metrics::Metrics;
use crate::store::codec::set_received_ms;
use crate::store::unix_ms;

/// Most operations committed in one write transaction.
pub const MAX_BATCH: usize = 1024;

/// First pause between two recovery attempts; it doubles up to [`RECOVERY_MAX_PAUSE`].
const RECOVERY_FIRST_PAUSE: Duration = Duration::from_millis(50);
/// Longest pause between two recovery attempts.
const RECOVERY_MAX_PAUSE: Duration = Duration::from_secs(1);
/// How often the queue is answered while the store is unavailable.
const UNAVAILABLE_POLL: Duration = Duration::from_millis(10);

/// Work for the writer thread.
pub(super) enum WriteOp {
    Insert(NewRun, oneshot::Sender<Result<Inserted, StoreError>>),
    Prune {
        cutoff_ms: u64,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    /// The background sizer's answer for a job.
    SetSizing {
        job_key: Vec<u8>,
        sizing: summary::fleet::SizingShort,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    /// A read hit an I/O error: start recovering (nothing to answer).
    Recover,
}

impl WriteOp {
    /// Answers the operation with an error.
    fn fail(self, error: StoreError) {
        match self {
            WriteOp::Insert(_, reply) => {
                let _ = reply.send(Err(error));
            }
            WriteOp::Prune { reply, .. } | WriteOp::SetSizing { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            WriteOp::Recover => {}
        }
    }
}

pub(super) fn writer_loop(
    handle: &Handle,
    mut rx: mpsc::Receiver<WriteOp>,
    options: StoreOptions,
    metrics: &Metrics,
) {
    let max = if options.group_commit { MAX_BATCH } else { 1 };
    let mut batch = Vec::with_capacity(max);
    loop {
        if handle.unavailable().is_some() && !recover(handle, &mut rx) {
            break;
        }
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        batch.push(first);
        while batch.len() < max {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        batch.retain(|op| !matches!(op, WriteOp::Recover));
        if options.compress_in_writer {
            for op in &mut batch {
                if let WriteOp::Insert(run, _) = op {
                    run.pack(options.compression);
                }
            }
        }
        if batch.is_empty() {
            continue;
        }
        let opened = match handle.current() {
            Ok(opened) => opened,
            Err(_) => {
                // A read failed meanwhile; `recover` runs next.
                let reason = unavailable_reason(handle);
                for op in batch.drain(..) {
                    op.fail(StoreError::Unavailable(reason.clone()));
                }
                continue;
            }
        };
        let started = Instant::now();
        let size = batch.len();
        match commit_batch(&opened.db, &batch, unix_ms(options.clock)) {
            Ok(results) => {
                metrics.observe_commit(size, started.elapsed());
                for (op, result) in batch.drain(..).zip(results) {
                    match (op, result) {
                        (WriteOp::Insert(_, reply), Outcome::Inserted(ins)) => {
                            let _ = reply.send(Ok(ins));
                        }
                        (
                            WriteOp::Prune { reply, .. } | WriteOp::SetSizing { reply, .. },
                            Outcome::Pruned(n),
                        ) => {
                            let _ = reply.send(Ok(n));
                        }
                        (op, _) => {
                            op.fail(StoreError::Thread("internal: mismatched outcome".into()));
                        }
                    }
                }
            }
            Err(e) => {
                metrics.commit_failures.inc();
                tracing::error!(error = %e, batch = size, "write transaction failed");
                let reason = io_reason(&e);
                if let Some(reason) = &reason {
                    drop(opened.db);
                    handle.fail(opened.generation, reason);
                }
                let msg = e.to_string();
                for op in batch.drain(..) {
                    op.fail(match &reason {
                        Some(reason) => StoreError::Unavailable(reason.clone()),
                        None => StoreError::Thread(msg.clone()),
                    });
                }
            }
        }
    }
    tracing::debug!("writer stopped");
}

/// Why the store is unavailable.
fn unavailable_reason(handle: &Handle) -> String {
    handle
        .unavailable()
        .unwrap_or_else(|| "the database is being reopened".into())
}

/// While the store is unavailable: answers everything queued with the reason and retries
/// [`Handle::try_recover`] with back-off. Returns `true` once the store is writable again,
/// `false` if the store was closed meanwhile.
fn recover(handle: &Handle, rx: &mut mpsc::Receiver<WriteOp>) -> bool {
    let mut pause = RECOVERY_FIRST_PAUSE;
    let mut next_attempt = Instant::now();
    let mut last_reason = String::new();
    loop {
        loop {
            match rx.try_recv() {
                Ok(op) => op.fail(StoreError::Unavailable(unavailable_reason(handle))),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
        if Instant::now() >= next_attempt {
            match handle.try_recover() {
                Ok(()) => return true,
                Err(reason) => {
                    if reason != last_reason {
                        tracing::warn!(reason, "store still unavailable; retrying");
                    } else {
                        tracing::debug!(reason, retry_in = ?pause, "store still unavailable");
                    }
                    last_reason = reason;
                    next_attempt = Instant::now() + pause;
                    pause = (pause * 2).min(RECOVERY_MAX_PAUSE);
                }
            }
        }
        std::thread::sleep(UNAVAILABLE_POLL);
    }
}

enum Outcome {
    Inserted(Inserted),
    /// Runs pruned, or aggregates updated by a sizing answer.
    Pruned(u64),
    /// A [`WriteOp::Recover`] (nothing written, nothing to answer).
    Nothing,
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
    // Saves the allocator state with the commit: reopening after a crash is then fast
    // whatever the file's size (see `recovery`).
    txn.set_quick_repair(true);
    let mut outcomes = Vec::with_capacity(batch.len());
    {
        let mut meta = txn.open_table(META)?;
        let mut runs = txn.open_table(RUNS)?;
        let mut by_time = txn.open_table(RUNS_BY_TIME)?;
        let mut dedup = txn.open_table(RUN_DEDUP)?;
        let mut dedup_by_id = txn.open_table(RUN_DEDUP_BY_ID)?;
        let mut jobs = txn.open_table(JOBS)?;
        let mut rows = txn.open_table(RUN_ROWS)?;
        let mut next_id = meta.get(META_NEXT_ID)?.map(|v| v.value()).unwrap_or(1);
        let received_at = summary::time::format_unix_millis(received_ms as i64);
        let mut key = Vec::new();
        for op in batch {
            match op {
                WriteOp::Insert(run, _) => {
                    // A repeated push (also one earlier in this batch) stores nothing.
                    if let Some(twin) = stored_twin(&dedup, run)? {
                        outcomes.push(Outcome::Inserted(twin));
                        continue;
                    }
                    let id = next_id;
                    next_id += 1;
                    key.clear();
                    key.extend_from_slice(&run.job_key);
                    key.extend_from_slice(&(u64::MAX - id).to_be_bytes());
                    // The value goes straight into the page redb reserves for it: the
                    // packed one with its receive time, or the plain JSON.
                    let id_text = id.to_string();
                    let parts = run.value_parts(id_text.as_bytes(), &received_at);
                    let len = match &run.packed {
                        Some(p) => p.len(),
                        None => parts.iter().map(|p| p.len()).sum::<usize>() + 1,
                    };
                    let len = u32::try_from(len).map_err(|_| {
                        StoreError::Db(Box::new(redb::StorageError::ValueTooLarge(len).into()))
                    })?;
                    let mut slot = runs.insert_reserve(key.as_slice(), len)?;
                    match &run.packed {
                        Some(p) => {
                            let out = slot.as_mut();
                            out.copy_from_slice(p);
                            set_received_ms(out, received_ms);
                        }
                        None => write_value(&parts, slot.as_mut()),
                    }
                    drop(slot);
                    by_time.insert((received_ms, id), key.as_slice())?;
                    remember(
                        &mut dedup,
                        &mut dedup_by_id,
                        &run.dedup_key,
                        id,
                        received_ms,
                    )?;
                    let mut row = (*run.row).clone();
                    row.stamp(id, received_ms as i64);
                    count_run(
                        &mut jobs,
                        &mut rows,
                        &run.job_key,
                        &run.identity,
                        &key,
                        &row,
                    )?;
                    outcomes.push(Outcome::Inserted(Inserted {
                        id,
                        received_at: received_at.clone(),
                        replayed: false,
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
                    let mut touched = std::collections::BTreeSet::new();
                    for (time_key, run_key) in &doomed {
                        runs.remove(run_key.as_slice())?;
                        rows.remove(run_key.as_slice())?;
                        by_time.remove(*time_key)?;
                        forget(&mut dedup, &mut dedup_by_id, time_key.1)?;
                        touched.insert(&run_key[..run_key.len().saturating_sub(8)]);
                    }
                    for job_key in touched {
                        rebuild(&mut jobs, &rows, job_key)?;
                    }
                    outcomes.push(Outcome::Pruned(doomed.len() as u64));
                }
                WriteOp::SetSizing {
                    job_key, sizing, ..
                } => {
                    let updated = set_sizing(&mut jobs, job_key, sizing)?;
                    outcomes.push(Outcome::Pruned(u64::from(updated)));
                }
                WriteOp::Recover => outcomes.push(Outcome::Nothing),
            }
        }
        meta.insert(META_NEXT_ID, next_id)?;
    }
    txn.commit()?;
    Ok(outcomes)
}
