//! The one runner every measuring mode goes through: it builds the sampler from the
//! [`Settings`], starts the live metrics, runs the tick and signal loop, and takes the final
//! readings with a second signal meaning "exit now".

use std::{future::Future, sync::Arc};

use summary::Execution;
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    time::{Interval, MissedTickBehavior},
};

use crate::{
    output::live::{self, LiveMetrics},
    sampler::{
        Sampler, SamplerConfig, Scope,
        grouping::{ContainerName, Grouper},
    },
    settings::Settings,
};

/// What a mode measures.
pub struct Measure {
    pub scope: Scope,
    pub grouper: Grouper,
    /// The only container (run mode), else grouping by cgroup.
    pub single_container: Option<ContainerName>,
    /// Identity labelling the live metrics (node mode labels per job instead).
    pub identity: Execution,
    /// Whether `CGROUP_LIMITS` applies (not in node mode: limits are per job there).
    pub use_limits: bool,
    pub exclude_own_netns: bool,
    /// Containers belong to different jobs (node mode), named by `Sampler::set_identity`;
    /// otherwise every container but `host` is the one job's.
    pub jobs_per_container: bool,
}

/// What the loop does with a signal.
#[derive(Clone, Copy, Debug)]
pub enum OnSignal {
    /// Stop measuring (sidecar, node).
    Stop,
    /// Pass it to this process (run mode's command) and go on.
    Forward(i32),
}

/// Why the loop ended.
pub enum Ended<T> {
    Signal(i32),
    Done(T),
}

pub struct Runner {
    pub sampler: Sampler,
    slow: Interval,
    fast: Interval,
    /// Taken by [`Runner::finish`], which hands them to the second-signal watcher.
    signals: Option<Signals>,
}

impl Runner {
    /// Picks the CPU source, starts `--metrics-addr` and builds the sampler.
    pub async fn start(settings: &Settings, measure: Measure) -> anyhow::Result<Self> {
        // Signals first: one arriving while eBPF loads must stop us cleanly, not kill us.
        let signals = Signals::new()?;
        let cpu = settings.cpu_source()?;
        let live = start_live_metrics(settings).await?;
        let common = &settings.common;
        let sampler = Sampler::new(
            SamplerConfig {
                proc_root: common.proc_path.clone(),
                top: common.top,
                scope: measure.scope,
                grouper: measure.grouper,
                limits: if measure.use_limits {
                    settings.limits.clone()
                } else {
                    Default::default()
                },
                single_container: measure.single_container,
                identity: measure.identity,
                live,
                exclude_own_netns: measure.exclude_own_netns,
                jobs_per_container: measure.jobs_per_container,
            },
            settings.mounts.clone(),
            cpu,
        );
        // A late slow tick is delayed, a late fast one skipped.
        let mut slow = tokio::time::interval(common.interval);
        let mut fast = tokio::time::interval(common.cpu_interval);
        slow.set_missed_tick_behavior(MissedTickBehavior::Delay);
        fast.set_missed_tick_behavior(MissedTickBehavior::Skip);
        Ok(Self {
            sampler,
            slow,
            fast,
            signals: Some(signals),
        })
    }

    /// Ticks until `until` completes or (with [`OnSignal::Stop`]) a signal arrives. Every
    /// slow tick takes a /proc scan and a CPU reading, then calls `after_slow`; every fast
    /// one reads the cheap counters ([`Sampler::fast_tick`]).
    pub async fn run_until<T>(
        &mut self,
        until: impl Future<Output = T>,
        on_signal: OnSignal,
        mut after_slow: impl FnMut(&mut Sampler),
    ) -> Ended<T> {
        tokio::pin!(until);
        let signals = self.signals.as_mut().expect("run_until before finish");
        loop {
            tokio::select! {
                out = &mut until => return Ended::Done(out),
                sig = signals.recv() => match on_signal {
                    OnSignal::Stop => return Ended::Signal(sig),
                    OnSignal::Forward(pid) => {
                        tracing::info!("forwarding signal {sig} to the command");
                        // SAFETY: plain kill(2) on our own child.
                        unsafe { libc::kill(pid, sig) };
                    }
                },
                _ = self.slow.tick() => {
                    self.sampler.slow_tick();
                    self.sampler.cpu_tick();
                    after_slow(&mut self.sampler);
                }
                // Cheap CPU counters and cgroup memory files; nothing when neither exists.
                _ = self.fast.tick() => self.sampler.fast_tick(),
            }
        }
    }

    /// Takes the final readings. From here a further signal exits at once, without
    /// whatever the mode still does (pushing, checkpointing).
    pub fn finish(&mut self) {
        if let Some(mut signals) = self.signals.take() {
            tokio::spawn(async move {
                let sig = signals.recv().await;
                eprintln!("second signal ({sig}): exiting at once");
                std::process::exit(128 + sig);
            });
        }
        self.sampler.slow_tick();
        self.sampler.cpu_tick();
    }
}

/// Starts the `/metrics` server when `--metrics-addr` is set; it lives as long as the process.
async fn start_live_metrics(settings: &Settings) -> anyhow::Result<Option<Arc<LiveMetrics>>> {
    let Some(addr) = settings.common.metrics_addr else {
        return Ok(None);
    };
    let metrics = Arc::new(LiveMetrics::default());
    live::serve(addr, metrics.clone()).await?;
    Ok(Some(metrics))
}

/// SIGINT, SIGTERM, SIGHUP and SIGQUIT: each stops a measuring mode with a summary (or is
/// forwarded to run mode's command) instead of killing the collector.
struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
    quit: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
            quit: signal(SignalKind::quit())?,
        })
    }

    async fn recv(&mut self) -> i32 {
        tokio::select! {
            _ = self.int.recv() => libc::SIGINT,
            _ = self.term.recv() => libc::SIGTERM,
            _ = self.hup.recv() => libc::SIGHUP,
            _ = self.quit.recv() => libc::SIGQUIT,
        }
    }
}
