//! Per-container state over a run: who it is (its cgroups, limits, live-metric label sets)
//! and one field per aspect, each a type of its own here: CPU ([`cpu`]), memory
//! ([`memory`]), network ([`network`]), starvation ([`starvation`]: throttling, pressure,
//! block I/O), run-queue wait ([`wait`]) and who held the CPU meanwhile ([`behind`]), the
//! processes that ended ([`commands`]) and the figures over time ([`timeline`]). The
//! sampler's files read them; none of these files knows the sampler.

mod behind;
mod commands;
mod cpu;
mod memory;
mod network;
mod starvation;
mod timeline;
mod wait;

use std::collections::{BTreeSet, HashSet};

use summary::{Limits, Source};

use self::{
    behind::Attribution, commands::Commands, cpu::Cpu, memory::Memory, network::Network,
    starvation::Starvation, timeline::Timeline, wait::Wait,
};
pub(super) use self::{behind::Named, commands::CommandAgg, cpu::CpuCounters};
use crate::{
    output::live::{self, ContainerLabels, LiveMetrics},
    sampler::grouping::ContainerName,
    sources::cgroupfs::CgroupPath,
};

/// Per-container state over the run.
pub(super) struct Container {
    /// cgroups its processes have lived in (kept after they go: their CPU still counts).
    pub(super) cgroups: BTreeSet<CgroupPath>,
    /// cgroup v2 ids of those paths, for eBPF totals.
    pub(super) cgroup_ids: BTreeSet<u64>,
    /// Its CPU and memory limits (`CGROUP_LIMITS`), for the samples' share of them.
    pub(super) limits: Option<Limits>,
    /// Whether it had live processes at the last scan.
    pub(super) alive: bool,
    /// Live-metric label sets created for it (deleted when it ends).
    pub(super) live_sets: HashSet<ContainerLabels>,
    pub(super) cpu: Cpu,
    pub(super) memory: Memory,
    pub(super) network: Network,
    pub(super) starvation: Starvation,
    pub(super) wait: Wait,
    pub(super) behind: Attribution,
    /// Its processes that ended, by command name.
    pub(super) commands: Commands,
    /// Its figures over time, from when it was first seen.
    pub(super) timeline: Timeline,
}

/// One CPU reading of a container, with what labels its live metric.
pub(super) struct CpuReading<'a> {
    pub(super) name: &'a ContainerName,
    pub(super) id: &'a summary::Execution,
    pub(super) live: Option<&'a LiveMetrics>,
    pub(super) counters: CpuCounters,
}

impl Container {
    pub(super) fn new(limits: Option<Limits>) -> Self {
        Self {
            cgroups: BTreeSet::new(),
            cgroup_ids: BTreeSet::new(),
            limits,
            alive: false,
            live_sets: HashSet::new(),
            cpu: Cpu::new(),
            memory: Memory::new(),
            network: Network::new(),
            starvation: Starvation::new(),
            wait: Wait::default(),
            behind: Attribution::default(),
            commands: Commands::default(),
            timeline: Timeline::new(),
        }
    }

    /// Takes a CPU reading (on the timeline, against the CPU limit), and feeds the live
    /// metrics while the container is alive.
    pub(super) fn cpu_reading(&mut self, reading: CpuReading<'_>) {
        let limit = self.limits.and_then(|l| l.cpu_cores);
        let added = self.cpu.read(&reading.counters, &mut self.timeline, limit);
        if let Some(live) = reading.live.filter(|_| self.alive) {
            let l = self.live_labels(reading.name, reading.id, reading.counters.source);
            live.add_cpu_seconds(&l, added as f64 / 1e9);
        }
    }

    /// Records one memory sample (bytes in use now), on the timeline and against the memory
    /// limit.
    pub(super) fn record_memory(&mut self, bytes: u64) {
        let limit = self.limits.and_then(|l| l.memory_bytes);
        self.memory.record(bytes, &mut self.timeline, limit);
    }

    /// The label set for a figure of this container from `source`, remembered for deletion.
    pub(super) fn live_labels(
        &mut self,
        name: &ContainerName,
        id: &summary::Execution,
        source: Source,
    ) -> ContainerLabels {
        let l = live::labels(name.as_str(), id, source);
        self.live_sets.insert(l.clone());
        l
    }
}
