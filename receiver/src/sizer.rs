//! The background sizer: keeps each job's sizing answer in short in its aggregate
//! ([`summary::fleet::SizingShort`]), so the job list can show a recommendation for every
//! job without sizing a thousand jobs on each request.
//!
//! A stored push marks its job; the sizer wakes, waits `GATHER` so a burst of pushes
//! of one job is sized once, and sizes each marked job from its stored runs with the
//! default parameters (the configured runner classes included). At start it marks every
//! job whose answer is older than its newest run, so a crash or restart loses nothing.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use summary::fleet::SizingShort;
use summary::sizing::SizingParams;
use tokio::sync::{Notify, watch};

use crate::api::sizing::{DEFAULT_WINDOW, compute};
use crate::store::Store;

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
