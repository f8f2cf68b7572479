//! Run-queue wait: how long each container's runnable tasks waited for a CPU.
//!
//! From eBPF where the container's CPU comes from eBPF (the growth of every task's
//! `sched_info.run_delay`, summed per cgroup by the `sched_switch` program: short-lived
//! processes included), else from `/proc/PID/task/*/schedstat` of the processes each scan
//! sees (live processes only: a process that lives between two scans, and a thread's wait
//! after the last scan before it exits, are missed; the source field says `proc`). Each
//! container keeps its figure in its `wait` field (`container/wait.rs`).

use std::{collections::HashMap, time::Instant};

use summary::{Source, timeline::Series};

use super::{Sampler, container::Container, grouping::ContainerName};
use crate::{
    output::live::LiveMetrics,
    sources::{cpu_source::CpuSource, procfs},
};

/// Growth of a process's summed `run_delay` between two scans. Its threads' sum falls when a
/// thread exits: that is not growth, and the new sum is the next base.
pub(super) fn process_growth(prev: Option<u64>, now: u64) -> u64 {
    prev.map_or(0, |p| now.saturating_sub(p))
}

impl Sampler {
    /// Whether a container's wait comes from eBPF: its CPU does, and the kernel has
    /// `sched_info.run_delay`.
    fn ebpf_wait(&self, c: &Container) -> bool {
        matches!(&self.cpu, CpuSource::Ebpf(e) if e.run_delay_available())
            && c.cpu.source == Some(Source::Ebpf)
            && !c.cgroup_ids.is_empty()
    }

    /// eBPF: folds the cgroups' wait totals (read with the CPU totals at this CPU tick) into
    /// each eBPF container's figure, and feeds the live counter.
    pub(super) fn wait_tick(&mut self, totals: &HashMap<u64, u64>) {
        let live = self.cfg.live.clone();
        let names: Vec<ContainerName> = self
            .containers
            .iter()
            .filter(|(_, c)| self.ebpf_wait(c) && c.wait.source != Some(Source::Proc))
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            let Some(c) = self.containers.get_mut(&name) else {
                continue;
            };
            let ns = c.cgroup_ids.iter().filter_map(|id| totals.get(id)).sum();
            let added = c.wait.cumulative(Source::Ebpf, ns);
            let id = self.identities.get(&name).unwrap_or(&self.cfg.identity);
            publish(c, &name, id, live.as_deref(), Source::Ebpf, added);
        }
    }

    /// The /proc fallback, at the slow tick after the scan: each process's summed thread
    /// `run_delay` growth since the previous scan, for containers whose wait eBPF does not
    /// give. A process first seen after the first scan started during the run: its whole
    /// wait counts. Only those containers' processes are read.
    pub(super) fn proc_wait(&mut self) {
        let proc_fallback: Vec<ContainerName> = self
            .containers
            .iter()
            .filter(|(_, c)| c.cpu.source.is_some() && !self.ebpf_wait(c))
            .filter(|(_, c)| c.wait.source != Some(Source::Ebpf))
            .map(|(n, _)| n.clone())
            .collect();
        if proc_fallback.is_empty() {
            return;
        }
        let mut growth: HashMap<ContainerName, u64> = HashMap::new();
        let first_scan = self.slow_ticks <= 1;
        for (pid, p) in self.processes.iter_mut() {
            if !proc_fallback.contains(&p.container) {
                continue;
            }
            // A single-threaded process is its leader's file: one read, no task listing.
            let read = if p.threads <= 1 {
                match self.reader.read_pid(&self.cfg.proc_root, *pid, "schedstat") {
                    Ok(Some(text)) => procfs::parse_schedstat(&text)
                        .map(Some)
                        .map_err(anyhow::Error::from),
                    Ok(None) => Ok(None),
                    Err(e) => Err(e),
                }
            } else {
                procfs::read_process_schedstat(&self.cfg.proc_root, *pid)
            };
            let now = match read {
                Ok(Some(s)) => s.run_delay_ns,
                Ok(None) => continue,
                Err(e) => {
                    self.read_errors += 1;
                    tracing::debug!("skipping the run-queue wait of pid {pid}: {e:#}");
                    continue;
                }
            };
            // First sight: a base at the first scan; whole wait for a process that started
            // during the run.
            let prev = p.run_delay_ns.or((!first_scan).then_some(0));
            *growth.entry(p.container.clone()).or_default() += process_growth(prev, now);
            p.run_delay_ns = Some(now);
        }
        let live = self.cfg.live.clone();
        for name in proc_fallback {
            let Some(c) = self.containers.get_mut(&name) else {
                continue;
            };
            let added = growth.get(&name).copied().unwrap_or(0);
            c.wait.add(Source::Proc, added);
            let id = self.identities.get(&name).unwrap_or(&self.cfg.identity);
            publish(c, &name, id, live.as_deref(), Source::Proc, added);
        }
    }
}

/// What a reading added goes to the timeline (as a rate over the time since the previous
/// one) and to the live counter.
fn publish(
    c: &mut Container,
    name: &ContainerName,
    id: &summary::Execution,
    live: Option<&LiveMetrics>,
    source: Source,
    added: u64,
) {
    let now = Instant::now();
    if let Some((then, rate)) = c.wait.rate(now, added) {
        c.timeline.span(Series::Wait, then, now, rate);
    }
    if let Some(live) = live.filter(|_| c.alive && added > 0) {
        let l = c.live_labels(name, id, source);
        live.add_run_queue_wait(&l, added as f64 / 1e9);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_exit_is_not_growth() {
        assert_eq!(process_growth(None, 500), 0);
        assert_eq!(process_growth(Some(0), 500), 500);
        assert_eq!(process_growth(Some(200), 500), 300);
        assert_eq!(process_growth(Some(500), 120), 0);
    }
}
