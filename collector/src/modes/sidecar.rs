//! The seed's mode: measure everything visible until a signal, then push one summary.

use std::process::ExitCode;

use summary::MetricsPush;

use super::runner::{Measure, OnSignal, Runner};
use crate::{output::push, sampler::Sampler, sampler::Scope, settings::Settings};

pub async fn run(settings: Settings) -> anyhow::Result<ExitCode> {
    if settings.push.is_some() && settings.identity.organization.is_empty() {
        tracing::warn!(
            "GITHUB_REPOSITORY(_OWNER) is not set: the receiver will refuse a summary without an organization"
        );
    }
    let mut runner = Runner::start(
        &settings,
        Measure {
            scope: Scope::All,
            grouper: crate::sampler::grouping::Grouper::new(settings.process_map.clone()),
            single_container: None,
            identity: settings.identity.clone(),
            use_limits: true,
            exclude_own_netns: false,
            jobs_per_container: false,
        },
    )
    .await?;
    let common = &settings.common;
    tracing::info!(interval = ?common.interval, proc_path = %common.proc_path.display(), "collecting until SIGINT or SIGTERM");
    runner
        .run_until(std::future::pending::<()>(), OnSignal::Stop, log_interval)
        .await;
    tracing::info!("stopping: taking a final sample and building the summary");
    runner.finish();
    let push = MetricsPush {
        execution: settings.identity.clone(),
        summary: runner
            .sampler
            .summary(runner.sampler.collector_info("sidecar")),
    };
    let file = common.summary_file.as_deref();
    push::deliver(settings.push.as_ref(), file, push, true).await?;
    Ok(ExitCode::SUCCESS)
}

/// The per-interval sample line (`--log-format` decides text or JSON).
fn log_interval(sampler: &mut Sampler) {
    let r = sampler.interval_report();
    let containers = serde_json::to_string(&r.containers).unwrap_or_default();
    tracing::info!(
        target: "collector::sample",
        cpu_total_percent = r.cpu_total_percent.map(|p| (p * 10.0).round() / 10.0),
        mem_used_bytes = r.mem_used_bytes,
        processes = sampler.process_count(),
        containers = %containers,
        "sample"
    );
}
