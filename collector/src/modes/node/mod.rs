//! Node mode: one collector per CI node measures every job running there and pushes one
//! summary per job when it ends.
//!
//! - **Jobs** are found from their processes' environment (`/proc/PID/environ`, read once per
//!   new process): `GITHUB_REPOSITORY`, `GITHUB_WORKFLOW`, `GITHUB_JOB`, `GITHUB_RUN_ID`, or
//!   their `FORGEJO_*` equivalents. A process with an identity claims its group: the
//!   Kubernetes pod (`--group-by pod`, the default) or its own container; every container of
//!   the group belongs to the job, so sidecars without the variables are counted too.
//! - **A job ends** when none of its containers has had a process for `--job-grace`. Its
//!   summary (the same per-container breakdown as sidecar mode) is written to the spool and
//!   pushed with a wildcard-scoped push token; then everything kept about it is dropped.
//! - **The spool** (`--spool-dir`) holds summaries until the receiver acknowledges them: a
//!   receiver outage delays pushes, it does not lose them. It is bounded by
//!   `--spool-max-bytes`; past that the oldest summaries are dropped, with an error log.
//! - **Restarts**: active jobs are checkpointed (their summary so far) every
//!   `--checkpoint-interval` and on SIGTERM. After a restart a checkpoint is merged into the
//!   job when it is still running, or pushed as the job's summary when it ended meanwhile.
//!   What is lost: the time the collector was down (a job that ran entirely in that gap is
//!   not seen at all), and after a crash whatever happened since the last checkpoint. A
//!   summary is deleted from the spool right after the receiver's 2xx; a crash between the
//!   two would push it again on restart.
//!
//! Files: [`identity`] (who a job is), [`jobs`] (the per-tick bookkeeping), [`spool`] (the
//! bounded on-disk queue and checkpoints).

mod identity;
mod jobs;
mod spool;

use std::{process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context;

pub use self::identity::{group_of, identity_from_environ, job_key};
pub use self::spool::Spool;
use self::{jobs::NodeState, spool::drain_spool};
use super::runner::{Measure, OnSignal, Runner};
use crate::{
    output::push::{self, PushTarget},
    sampler::Scope,
    settings::{Settings, cli::NodeArgs},
};

/// `collector node`.
pub async fn run(settings: Settings, args: NodeArgs) -> anyhow::Result<ExitCode> {
    let common = &settings.common;
    let endpoint = common
        .push_endpoint
        .as_deref()
        .context("node mode needs --push-endpoint (and a wildcard-scoped --push-token)")?;
    // Each push attempt gets a short deadline; the spool retries across rounds.
    let target = PushTarget::new(endpoint, common.push_token.clone(), Duration::from_secs(10))?;
    let spool = Arc::new(Spool::open(&args.spool_dir, args.spool_max_bytes)?);
    let mut runner = Runner::start(
        &settings,
        Measure {
            scope: Scope::All,
            grouper: Default::default(),
            single_container: None,
            identity: Default::default(),
            use_limits: false,
            exclude_own_netns: false,
            jobs_per_container: true,
        },
    )
    .await?;

    // Pusher: drains the spool whenever told to, and retries with backoff.
    let (wake, mut woken) = tokio::sync::mpsc::channel::<()>(16);
    let pusher = {
        let spool = spool.clone();
        tokio::spawn(async move {
            let mut delays = push::backoff(Duration::from_secs(1), Duration::from_secs(60));
            loop {
                let wait = match drain_spool(&spool, &target).await {
                    Ok(_) => {
                        delays = push::backoff(Duration::from_secs(1), Duration::from_secs(60));
                        Duration::from_secs(1)
                    }
                    Err(e) => {
                        let wait = delays.next().unwrap_or(Duration::from_secs(60));
                        tracing::warn!(
                            "receiver unavailable ({e}); {} summaries spooled, retrying in {wait:.1?}",
                            spool.pending().len()
                        );
                        wait
                    }
                };
                tokio::select! {
                    _ = woken.recv() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        })
    };
    let _ = wake.try_send(());

    let checkpoints = spool.checkpoints().into_iter().collect();
    let mut state = NodeState::new(
        checkpoints,
        &args,
        common.interval,
        common.proc_path.clone(),
    );
    if state.pending_checkpoints() > 0 {
        tracing::info!(
            "resuming: {} job checkpoints from before the restart",
            state.pending_checkpoints()
        );
    }
    tracing::info!(group_by = ?args.group_by, spool = %args.spool_dir.display(), "node mode: measuring every CI job on this node");

    let top = common.top;
    runner
        .run_until(std::future::pending::<()>(), OnSignal::Stop, |sampler| {
            if state.tick(sampler, &spool, top) > 0 {
                let _ = wake.try_send(());
            }
        })
        .await;
    tracing::info!(
        "stopping: checkpointing {} active jobs",
        state.active_jobs()
    );
    runner.finish();
    state.checkpoint_all(&runner.sampler, &spool);
    pusher.abort();
    // One last chance for what is spooled; what is left waits for the next start.
    let last = PushTarget::new(endpoint, common.push_token.clone(), common.push_timeout)?;
    match tokio::time::timeout(common.push_timeout, drain_spool(&spool, &last)).await {
        Ok(Ok(n)) if n > 0 => tracing::info!("pushed {n} spooled summaries"),
        Ok(Err(e)) => tracing::warn!(
            "{} summaries stay spooled for the next start: {e}",
            spool.pending().len()
        ),
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}
