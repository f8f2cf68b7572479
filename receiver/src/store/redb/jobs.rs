//! The fleet view's tables: one [`RunRow`] per stored run ([`RUN_ROWS`]) and one
//! [`JobAggregate`] per job ([`JOBS`]), written in the transaction that stores the run, so
//! they survive a restart and a crash exactly like the runs.
//!
//! - [`count_run`]: the writer adds a stored run to its job's aggregate;
//! - [`rebuild`]: after retention deleted runs, a job's aggregate is made again from the
//!   rows left (or removed with the last one);
//! - [`migrate_from_v2`]: a version-2 file gets its rows and aggregates at open;
//! - reads: [`aggregates`], [`aggregate`], [`history`].

use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata, Table};
use summary::fleet::{JobAggregate, RunRow};

use super::StoreError;
use super::schema::{JOBS, RUN_ROWS, run_key};
use crate::store::decode_aggregate;

/// The [`JOBS`] table, open in a write transaction.
pub(super) type JobsTable<'t> = Table<'t, &'static [u8], &'static [u8]>;
/// The [`RUN_ROWS`] table, open in a write transaction.
pub(super) type RowsTable<'t> = Table<'t, &'static [u8], &'static [u8]>;

/// Stores `row` (stamped with its id) under `run_key` and counts it in the job's aggregate.
pub(super) fn count_run(
    jobs: &mut JobsTable<'_>,
    rows: &mut RowsTable<'_>,
    job_key: &[u8],
    identity: &[String; 4],
    run_key: &[u8],
    row: &RunRow,
) -> Result<(), StoreError> {
    rows.insert(run_key, serde_json::to_vec(row)?.as_slice())?;
    let mut aggregate = jobs
        .get(job_key)?
        .and_then(|v| decode_aggregate(v.value()))
        .unwrap_or_else(|| {
            let [o, r, w, j] = identity;
            JobAggregate::new(o, r, w, j)
        });
    aggregate.add(row);
    jobs.insert(job_key, serde_json::to_vec(&aggregate)?.as_slice())?;
    Ok(())
}

/// Makes the aggregate of `job_key` again from its rows (after runs were deleted); the
/// sizing answer stays until the background sizer replaces it. Removes it without rows.
pub(super) fn rebuild(
    jobs: &mut JobsTable<'_>,
    rows: &RowsTable<'_>,
    job_key: &[u8],
) -> Result<(), StoreError> {
    let Some(old) = jobs.get(job_key)?.and_then(|v| decode_aggregate(v.value())) else {
        return Ok(());
    };
    let (start, end) = (run_key(job_key, u64::MAX), run_key(job_key, 0));
    let mut newest_first = Vec::new();
    for item in rows.range::<&[u8]>(start.as_slice()..=end.as_slice())? {
        let (_, v) = item?;
        if let Ok(row) = serde_json::from_slice::<RunRow>(v.value()) {
            newest_first.push(row);
        }
    }
    if newest_first.is_empty() {
        jobs.remove(job_key)?;
        return Ok(());
    }
    let fresh = old.rebuilt(newest_first.iter().rev());
    jobs.insert(job_key, serde_json::to_vec(&fresh)?.as_slice())?;
    Ok(())
}

/// Puts the background sizer's answer into a job's aggregate, unless the job is gone or
/// already has an answer at least as new. Returns whether it did.
pub(super) fn set_sizing(
    jobs: &mut JobsTable<'_>,
    job_key: &[u8],
    sizing: &summary::fleet::SizingShort,
) -> Result<bool, StoreError> {
    let Some(mut aggregate) = jobs.get(job_key)?.and_then(|v| decode_aggregate(v.value())) else {
        return Ok(false);
    };
    if !aggregate.offer_sizing(sizing) {
        return Ok(false);
    }
    jobs.insert(job_key, serde_json::to_vec(&aggregate)?.as_slice())?;
    Ok(true)
}

/// Every job's aggregate (unreadable ones are skipped with a warning).
pub(super) fn aggregates(txn: &ReadTransaction) -> Result<Vec<JobAggregate>, StoreError> {
    let table = txn.open_table(JOBS)?;
    let mut out = Vec::with_capacity(table.len()? as usize);
    for item in table.iter()? {
        let (_, v) = item?;
        out.extend(decode_aggregate(v.value()));
    }
    Ok(out)
}

/// One job's aggregate.
pub(super) fn aggregate(
    txn: &ReadTransaction,
    job_key: &[u8],
) -> Result<Option<JobAggregate>, StoreError> {
    let table = txn.open_table(JOBS)?;
    Ok(table
        .get(job_key)?
        .and_then(|v| decode_aggregate(v.value())))
}

/// One job's rows, newest first: at most `limit`, older than run `before_id` if given;
/// and the id to continue from when more may follow.
pub(super) fn history(
    txn: &ReadTransaction,
    job_key: &[u8],
    limit: usize,
    before_id: Option<u64>,
) -> Result<(Vec<RunRow>, Option<u64>), StoreError> {
    let table = txn.open_table(RUN_ROWS)?;
    let start = match before_id {
        Some(0) => return Ok((Vec::new(), None)),
        Some(id) => run_key(job_key, id - 1),
        None => run_key(job_key, u64::MAX),
    };
    let end = run_key(job_key, 0);
    let mut rows = Vec::new();
    for item in table.range::<&[u8]>(start.as_slice()..=end.as_slice())? {
        let (_, v) = item?;
        if rows.len() == limit {
            let next = rows_last_id(&rows);
            return Ok((rows, next));
        }
        match serde_json::from_slice::<RunRow>(v.value()) {
            Ok(row) => rows.push(row),
            Err(e) => tracing::warn!(error = %e, "skipping a run row that does not parse"),
        }
    }
    Ok((rows, None))
}

fn rows_last_id(rows: &[RunRow]) -> Option<u64> {
    rows.last().map(|r| r.id)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use summary::{ContainerSummary, Execution, Limits, RunSummary, Stats};

    use super::super::schema::{JOBS, META, META_SCHEMA, RUN_ROWS};
    use super::super::{NewRun, RedbStore as Store, StoreOptions};

    fn push(job: &str, run: u32, cpu: f64, starved: bool) -> NewRun {
        let execution = Execution {
            organization: "o".into(),
            repository: "o/r".into(),
            workflow: "w".into(),
            job: job.into(),
            run_id: run.to_string(),
            run_attempt: String::new(),
        };
        let summary = RunSummary {
            start_time: "2026-02-06T14:00:00Z".into(),
            duration_seconds: 60.0,
            containers: vec![ContainerSummary {
                name: "build".into(),
                cpu_cores: Stats {
                    p95: cpu,
                    peak: cpu,
                    ..Stats::default()
                },
                cpu_seconds: cpu * 60.0,
                limits: Some(Limits {
                    cpu_cores: Some(2.0),
                    memory_bytes: Some(1 << 30),
                }),
                verdict: Some(summary::starvation::Verdict {
                    starved,
                    by: if starved { vec!["cpu".into()] } else { vec![] },
                    text: String::new(),
                    cause: None,
                }),
                ..ContainerSummary::default()
            }],
            ..RunSummary::default()
        };
        NewRun::of_push(&execution, &summary).unwrap()
    }

    #[tokio::test]
    async fn aggregates_follow_inserts_prunes_and_a_v2_migration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        let store = Store::open(&path, StoreOptions::default(), Arc::default()).unwrap();
        for n in 1..=12 {
            store.insert(push("a", n, 0.5, n % 3 == 0)).await.unwrap();
        }
        store.insert(push("b", 1, 1.0, false)).await.unwrap();
        // A repeated push is not counted twice.
        assert!(
            store
                .insert(push("b", 1, 1.0, false))
                .await
                .unwrap()
                .replayed
        );
        let jobs = store.jobs().unwrap();
        assert_eq!(jobs.len(), 2);
        let a = jobs.iter().find(|j| j.job == "a").unwrap();
        assert_eq!((a.runs, a.last_id, a.repository.as_str()), (12, 12, "r"));
        assert_eq!(a.days[0].starved_runs, 4);
        assert!(a.sizing_stale());
        let key = crate::store::job_key("o", "r", "w", "a");
        let (rows, next) = store.history(&key, 5, None).unwrap();
        assert_eq!(
            rows.iter().map(|r| r.id).collect::<Vec<_>>(),
            [12, 11, 10, 9, 8]
        );
        assert_eq!(next, Some(8));
        let (rows, next) = store.history(&key, 50, next).unwrap();
        assert_eq!((rows.len(), next), (7, None));
        assert_eq!(rows[0].cpu_limit_cores, Some(2.0));
        assert!(store.run(&key, 3).unwrap().is_some());
        assert!(store.run(&key, 13).unwrap().is_none());

        // The sizer's answer is kept unless an older one comes after it.
        let sizing = summary::fleet::SizingShort {
            at_id: 12,
            confidence: summary::sizing::Confidence::Confident,
            runs_considered: 12,
            recommended: summary::sizing::Resources::default(),
            current: None,
            runner_class: None,
        };
        assert!(store.set_sizing(key.clone(), sizing.clone()).await.unwrap());
        let older = summary::fleet::SizingShort {
            at_id: 5,
            ..sizing.clone()
        };
        assert!(!store.set_sizing(key.clone(), older).await.unwrap());
        assert!(!store.job(&key).unwrap().unwrap().sizing_stale());
        let before = store.jobs().unwrap();
        store.close().await;
        drop(store);

        // A version-2 file: the tables are built again at open, the same.
        {
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.delete_table(JOBS).unwrap();
            txn.delete_table(RUN_ROWS).unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(META_SCHEMA, 2)
                .unwrap();
            txn.commit().unwrap();
        }
        let store = Store::open(&path, StoreOptions::default(), Arc::default()).unwrap();
        let after = store.jobs().unwrap();
        assert_eq!(after.len(), 2);
        for (x, y) in before.iter().zip(&after) {
            assert_eq!((x.runs, &x.recent, &x.days), (y.runs, &y.recent, &y.days));
        }

        // Retention: every run goes, and the aggregates with them.
        assert_eq!(store.prune_before(u64::MAX).await.unwrap(), 13);
        assert!(store.jobs().unwrap().is_empty());
        assert!(store.history(&key, 10, None).unwrap().0.is_empty());
        store.close().await;
    }
}
