//! Container CPU: cheap counters at every CPU tick (eBPF totals, else cgroup counters), and
//! the /proc tick-delta fallback at the slow tick.

use std::{
    collections::{BTreeSet, HashMap},
    time::Instant,
};

use summary::Source;

use super::{
    Sampler,
    container::{CpuCounters, CpuReading},
    grouping::ContainerName,
};
use crate::sources::{
    cgroupfs::{self, CgroupPath},
    cpu_source::CpuSource,
    cpu_totals::aggregate_exits,
};

impl Sampler {
    /// Reads container CPU from the cheap counters: eBPF for containers grouped by a cgroup v2
    /// path, cgroup `cpu.stat`/`cpuacct.usage` for the others where readable. Containers with
    /// neither get /proc tick deltas at the slow tick. Also drains eBPF exit records.
    pub fn cpu_tick(&mut self) {
        let now = Instant::now();
        let mut totals = None;
        let mut waits = None;
        let mut ended = Vec::new();
        if let CpuSource::Ebpf(ebpf) = &mut self.cpu {
            let with_wait = ebpf.run_delay_available();
            // Only the containers' own cgroups: the whole map is walked at the slow tick.
            let ids: BTreeSet<u64> = self
                .containers
                .values()
                .flat_map(|c| c.cgroup_ids.iter().copied())
                .collect();
            match ebpf.cgroup_times_of(&ids) {
                Ok((t, w)) => {
                    // Copies of the containers' entries only (the maps hold every cgroup).
                    let ours = |m: &HashMap<u64, u64>| -> HashMap<u64, u64> {
                        ids.iter()
                            .filter_map(|id| Some((*id, *m.get(id)?)))
                            .collect()
                    };
                    totals = Some(ours(t));
                    waits = with_wait.then(|| ours(w));
                }
                Err(e) => {
                    self.read_errors += 1;
                    tracing::warn!("reading eBPF CPU totals: {e}");
                }
            }
            let exits = ebpf.drain_exits();
            ebpf.flush_logs();
            let exits = aggregate_exits(&exits);
            ended = self.record_exits(exits);
        }
        let cgroup_allowed = !matches!(self.cpu, CpuSource::Proc { .. });
        let live = self.cfg.live.as_deref();
        for (name, c) in self.containers.iter_mut() {
            if c.cgroups.is_empty() {
                // Nothing known of it yet (run mode's container before its first scan):
                // deciding on /proc now would fix the source before its cgroup is found.
                continue;
            }
            let id = self.identities.get(name).unwrap_or(&self.cfg.identity);
            let reading = |source, cumulative_ns, smooth_ns| CpuReading {
                name,
                id,
                live,
                counters: CpuCounters {
                    source,
                    now,
                    cumulative_ns,
                    smooth_ns,
                    cpus: self.cpus,
                },
            };
            let use_ebpf =
                matches!(c.cpu.source, None | Some(Source::Ebpf)) && !c.cgroup_ids.is_empty();
            if let (true, Some(totals)) = (use_ebpf, &totals) {
                let ns = c.cgroup_ids.iter().filter_map(|id| totals.get(id)).sum();
                // The cgroups' own usage counters pace the cores samples (outermost v2
                // ones: the counters are hierarchical); eBPF gives the exact total.
                // Not the root's: it counts the whole machine, not the processes in it.
                let mut smooth = Some(0u64);
                let mut which = std::collections::hash_map::DefaultHasher::new();
                for cg in c.cgroups.iter().filter(|cg| {
                    matches!(cg, CgroupPath::V2(_)) && !c.cgroups.iter().any(|o| cg.is_below(o))
                }) {
                    std::hash::Hash::hash(cg.path(), &mut which);
                    let own = (cg.path() != "/")
                        .then(|| cgroupfs::read_cpu_usage_ns(&mut self.counters, &self.mounts, cg))
                        .flatten();
                    smooth = smooth.zip(own).map(|(a, b)| a + b);
                }
                let which = std::hash::Hasher::finish(&which);
                c.cpu_reading(reading(Source::Ebpf, ns, smooth.map(|s| (which, s))));
                continue;
            }
            if !matches!(c.cpu.source, None | Some(Source::Cgroup)) {
                continue;
            }
            if !cgroup_allowed {
                c.cpu.cheap_unavailable = true;
                continue;
            }
            let mut sum = 0;
            let mut any = false;
            for cgroup in &c.cgroups {
                let value = cgroupfs::read_cpu_usage_ns(&mut self.counters, &self.mounts, cgroup)
                    .or_else(|| self.cgroup_cpu_last.get(cgroup).copied());
                if let Some(v) = value {
                    any = true;
                    self.cgroup_cpu_last.insert(cgroup.clone(), v);
                    let base = self.cgroup_cpu_baseline.get(cgroup).copied().unwrap_or(0);
                    sum += v.saturating_sub(base);
                }
            }
            if any {
                c.cpu_reading(reading(Source::Cgroup, sum, None));
            } else {
                // Neither eBPF nor a readable cgroup counter: /proc it is.
                c.cpu.cheap_unavailable |= c.cpu.source.is_none();
            }
        }
        if let Some(waits) = waits {
            self.wait_tick(&waits);
        }
        // The exit records say at once when a container's processes have all ended: its
        // throttling, pressure and I/O are read now, while its cgroups are surely there
        // (a container runtime removes them soon after), not at the next scan.
        for name in ended {
            tracing::debug!(container = %name, "its processes have all exited: reading its counters now");
            self.read_starvation_of(now, &name);
        }
    }

    /// /proc fallback: container CPU from process tick deltas (the last ticks of processes
    /// that exit between two scans are lost: the known limit of polling).
    pub(super) fn proc_cpu(&mut self, now: Instant) {
        let mut per_container: HashMap<&ContainerName, u64> = HashMap::new();
        for p in self.processes.values() {
            *per_container.entry(&p.container).or_default() += p.window_ticks;
        }
        let ns_per_tick = 1_000_000_000 / self.ticks_per_sec.max(1);
        let live = self.cfg.live.as_deref();
        for (name, c) in self.containers.iter_mut() {
            // Counted for every container, so one that turns out to need /proc has its
            // first window too; recorded only for those (the others use a cheap counter).
            c.cpu.proc_ticks += per_container.get(name).copied().unwrap_or(0);
            match c.cpu.source {
                Some(Source::Proc) => {}
                None if c.cpu.cheap_unavailable => c.cpu.source = Some(Source::Proc),
                _ => continue,
            }
            let counters = CpuCounters {
                source: Source::Proc,
                now,
                cumulative_ns: c.cpu.proc_ticks * ns_per_tick,
                smooth_ns: None,
                cpus: self.cpus,
            };
            c.cpu_reading(CpuReading {
                name,
                id: self.identities.get(name).unwrap_or(&self.cfg.identity),
                live,
                counters,
            });
        }
    }
}
