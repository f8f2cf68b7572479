//! The sizing of a job from its stored runs ([`compute`], which the sizing endpoint and the
//! web page call too), and the background sizer: keeps each job's sizing answer in short in its aggregate
//! ([`summary::fleet::SizingShort`]), so the job list can show a recommendation for every
//! job without sizing a thousand jobs on each request.
//!
//! A stored push marks its job; the sizer wakes, waits `GATHER` so a burst of pushes
//! of one job is sized once, and sizes each marked job from its stored runs with the
//! default parameters (the configured runner classes included). At start it marks every
//! job whose answer is older than its newest run, so a crash or restart loses nothing.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use summary::StoredRun;
use summary::fleet::SizingShort;
use summary::sizing::{self, Sizing, SizingParams, SizingRun};
use tokio::sync::{Notify, watch};

use crate::fleet::DEFAULT_WINDOW;
use crate::store::{Store, StoreError};

/// How long the sizer gathers marks before it works through them.
const GATHER: Duration = Duration::from_millis(250);

/// Jobs waiting for a new sizing answer.
#[derive(Debug, Default)]
pub struct Sizer {
    dirty: Mutex<HashSet<Vec<u8>>>,
    wake: Notify,
}

impl Sizer {
    /// Marks a job whose runs changed.
    pub fn mark(&self, job_key: Vec<u8>) {
        if let Ok(mut dirty) = self.dirty.lock() {
            dirty.insert(job_key);
        }
        self.wake.notify_one();
    }

    fn take(&self) -> Vec<Vec<u8>> {
        self.dirty
            .lock()
            .map(|mut d| d.drain().collect())
            .unwrap_or_default()
    }

    /// Sizes marked jobs until `closing` turns true.
    pub async fn run(
        self: Arc<Self>,
        store: Arc<Store>,
        classes: Vec<summary::sizing::RunnerClass>,
        clock: fn() -> std::time::SystemTime,
        mut closing: watch::Receiver<bool>,
    ) {
        match store.jobs().await {
            Ok(jobs) => {
                for a in jobs.iter().filter(|a| a.sizing_stale()) {
                    self.mark(crate::store::job_key(
                        &a.organization,
                        &a.repository,
                        &a.workflow,
                        &a.job,
                    ));
                }
            }
            Err(e) => tracing::warn!(error = %e, "sizer: could not read the job list"),
        }
        let params = SizingParams {
            classes,
            ..SizingParams::default()
        };
        loop {
            tokio::select! {
                () = self.wake.notified() => {}
                _ = closing.wait_for(|c| *c) => return,
            }
            tokio::select! {
                () = tokio::time::sleep(GATHER) => {}
                _ = closing.wait_for(|c| *c) => return,
            }
            for key in self.take() {
                if *closing.borrow() {
                    return;
                }
                let (sizing, newest) = match compute(&store, &key, &params, DEFAULT_WINDOW, clock())
                    .await
                {
                    Ok(answer) => answer,
                    Err(e) => {
                        tracing::warn!(error = %e, "sizer: could not size a job; it is retried at the next push");
                        continue;
                    }
                };
                if newest == 0 {
                    continue;
                }
                if let Err(e) = store
                    .set_sizing(key, SizingShort::of(&sizing, newest))
                    .await
                {
                    tracing::warn!(error = %e, "sizer: could not store a sizing answer");
                }
            }
        }
    }
}

/// The sizing of the job `key` from its most recent `params.runs` runs that started within
/// `window` before `now`, and the newest stored run's id (0 without runs). Blocking.
pub(crate) async fn compute(
    store: &Store,
    key: &[u8],
    params: &SizingParams,
    window: Duration,
    now: SystemTime,
) -> Result<(Sizing, u64), StoreError> {
    let since = now.checked_sub(window).unwrap_or(SystemTime::UNIX_EPOCH);
    let page = store
        .query(key.to_vec(), params.runs, None, usize::MAX)
        .await?;
    let params = params.clone();
    // Merging histograms is CPU work (milliseconds): off the request threads.
    tokio::task::spawn_blocking(move || {
        let mut newest = 0;
        let mut stored: Vec<StoredRun> = page
            .runs
            .iter()
            .filter_map(|raw| match serde_json::from_slice::<StoredRun>(raw) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(error = %e, "skipping a stored run that does not parse");
                    None
                }
            })
            .inspect(|r| newest = newest.max(r.id))
            .filter(|r| started(r).is_some_and(|t| t >= since))
            .collect();
        stored.reverse();
        let runs: Vec<SizingRun<'_>> = stored
            .iter()
            .map(|r| SizingRun {
                time_ms: started(r)
                    .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_millis() as i64),
                run_id: &r.run_id,
                summary: &r.payload,
            })
            .collect();
        (sizing::recommend(&runs, &params), newest)
    })
    .await
    .map_err(|e| StoreError::Thread(format!("sizing task: {e}")))
}

/// When a run started: its summary's start, else when it was received.
fn started(r: &StoredRun) -> Option<SystemTime> {
    summary::time::parse_rfc3339(&r.payload.start_time)
        .or_else(|| summary::time::parse_rfc3339(&r.received_at))
}
