//! Each container's starvation: throttling, pressure stall information and block I/O from
//! its cgroups ([`crate::sources::starvation`]), read at the slow tick, and their growth over
//! the run in the summary's terms.

use std::time::Instant;

use summary::{
    starvation::{DiskIo, MemoryDetail, Pressure, Stall, Throttling},
    timeline::Series,
};

use super::{Sampler, container::Container, grouping::ContainerName, memory::distinct_roots};
use crate::{
    output::live::StarvationDelta,
    sources::{
        cgroupfs::CgroupPath,
        starvation::{self, StarvationCounters},
    },
};

impl Sampler {
    /// Reads the live containers' counters, and once more those of the containers that
    /// `ended` since the last reading: what their cgroups counted after that reading (the
    /// tail of a container that ends before the collector) is theirs too.
    pub(super) fn sample_starvation(&mut self, now: Instant, ended: &[ContainerName]) {
        let mut live: Vec<ContainerName> = self.live_containers().into_iter().cloned().collect();
        // Run mode's own cgroup is read to the end, the final reading after its command
        // exited included: a command shorter than an interval has only that one.
        live.extend(
            self.containers
                .iter()
                .filter(|(name, c)| !c.memory_pinned.is_empty() && !live.contains(name))
                .map(|(name, _)| name.clone())
                .collect::<Vec<_>>(),
        );
        for name in ended {
            if !live.contains(name) {
                live.push(name.clone());
            }
        }
        for name in live {
            self.read_starvation_of(now, &name);
        }
    }

    /// Reads one container's throttling, pressure and I/O counters and folds them in.
    pub(super) fn read_starvation_of(&mut self, now: Instant, name: &ContainerName) {
        let name = name.clone();
        let twins: Vec<CgroupPath> = self
            .processes
            .values()
            .filter(|p| p.container == name)
            .flat_map(|p| [p.cpu_v1.clone(), p.blkio_v1.clone()])
            .flatten()
            .map(CgroupPath::V1)
            .collect();
        let Some(c) = self.containers.get_mut(&name) else {
            return;
        };
        c.starvation_v1.extend(twins);
        let mut cgroups = distinct_roots(&c.cgroups);
        cgroups.extend(distinct_roots(&c.starvation_v1));
        let mut quota = None;
        for cg in cgroups {
            let reading = starvation::read_starvation(&self.mounts, &cg);
            if reading == StarvationCounters::default() {
                continue;
            }
            // Counters of a cgroup found at the first scan started before the run, but
            // for run mode's own cgroups (pinned), which the run made: they start at 0.
            let first = self.slow_ticks <= 1 && !c.memory_pinned.contains(&cg);
            c.starvation_base.entry(cg.clone()).or_insert(if first {
                reading
            } else {
                StarvationCounters::default()
            });
            c.starvation_last.insert(cg.clone(), reading);
            if quota.is_none() {
                quota = starvation::read_quota(&self.mounts, &cg);
            }
        }
        if quota.is_some() {
            c.quota = quota;
        }
        let total = starvation_total(c);
        // The share of the time since the previous reading some task stalled on CPU.
        if let (Some((then, before)), Some(some)) = (c.starvation_seen, total.cpu_some_us) {
            let dt = now.saturating_duration_since(then).as_secs_f64();
            if dt > 0.0 {
                let stalled = some.saturating_sub(before) as f64 / 1e6;
                c.timeline_span(Series::CpuPressure, then, now, (stalled / dt).min(1.0));
            }
        }
        c.starvation_seen = total.cpu_some_us.map(|some| (now, some));
        if let Some(live) = &self.cfg.live {
            let delta = total.growth_since(&c.starvation_published);
            let secs = |us: Option<u64>| us.map(|v| v as f64 / 1e6);
            let id = self.identities.get(&name).unwrap_or(&self.cfg.identity);
            // The kernel's cgroup counters, whatever the CPU and memory sources are.
            let l = c.live_labels(&name, id, summary::Source::Cgroup);
            live.add_starvation(
                &l,
                &StarvationDelta {
                    throttled_seconds: secs(delta.throttled_us),
                    cpu_some_seconds: secs(delta.cpu_some_us),
                    memory_some_seconds: secs(delta.memory_some_us),
                    io_some_seconds: secs(delta.io_some_us),
                    read_bytes: delta.read_bytes,
                    write_bytes: delta.write_bytes,
                },
            );
            c.starvation_published = total;
        }
        if let (Some(r), Some(w)) = (total.read_bytes, total.write_bytes) {
            if let Some((then, pr, pw)) = c.last_io {
                let dt = now.saturating_duration_since(then).as_secs_f64();
                if dt > 0.0 {
                    let (read, written) = (
                        r.saturating_sub(pr) as f64 / dt,
                        w.saturating_sub(pw) as f64 / dt,
                    );
                    c.read_rate.record(read);
                    c.write_rate.record(written);
                    c.timeline_span(Series::Disk, then, now, read + written);
                }
            }
            c.last_io = Some((now, r, w));
        }
    }
}

/// The growth of a container's counters over the run, summed over its cgroups.
pub(super) fn starvation_total(c: &Container) -> StarvationCounters {
    let mut total = StarvationCounters::default();
    for (cg, last) in &c.starvation_last {
        let base = c.starvation_base.get(cg).copied().unwrap_or_default();
        total.add(&last.growth_since(&base));
    }
    total
}

/// The summary's starvation figures of a container over `duration` seconds.
pub(super) fn figures(
    c: &Container,
    duration: f64,
) -> (
    Option<Throttling>,
    Option<Pressure>,
    Option<DiskIo>,
    Option<MemoryDetail>,
) {
    let t = starvation_total(c);
    let secs = |us: Option<u64>| us.map(|v| v as f64 / 1e6);
    let share = |s: f64| {
        if duration > 0.0 {
            (s / duration).min(1.0)
        } else {
            0.0
        }
    };
    let throttling = (t.periods.is_some() || c.quota.is_some()).then(|| {
        let periods = t.periods.unwrap_or(0);
        let throttled = t.throttled_periods.unwrap_or(0).min(periods);
        Throttling {
            quota_cores: c.quota.flatten(),
            periods,
            throttled_periods: throttled,
            throttled_seconds: secs(t.throttled_us).unwrap_or(0.0),
            throttled_period_share: if periods > 0 {
                throttled as f64 / periods as f64
            } else {
                0.0
            },
            bursts: t.bursts,
            burst_seconds: secs(t.burst_us),
        }
    });
    let stall = |some: Option<u64>, full: Option<u64>| {
        let some = secs(some)?;
        let full = secs(full);
        Some(Stall {
            some_seconds: some,
            some_share: share(some),
            full_seconds: full,
            full_share: full.map(share),
        })
    };
    let pressure = Pressure {
        cpu: stall(t.cpu_some_us, t.cpu_full_us),
        memory: stall(t.memory_some_us, t.memory_full_us),
        io: stall(t.io_some_us, t.io_full_us),
    };
    let pressure = (pressure != Pressure::default()).then_some(pressure);
    let disk = (t.read_bytes.is_some() || t.write_bytes.is_some()).then(|| DiskIo {
        read_bytes: t.read_bytes.unwrap_or(0),
        write_bytes: t.write_bytes.unwrap_or(0),
        read_ops: t.read_ops.unwrap_or(0),
        write_ops: t.write_ops.unwrap_or(0),
        read_bytes_per_sec: c.read_rate.stats(),
        write_bytes_per_sec: c.write_rate.stats(),
    });
    let memory = c.detail_at_peak.map(|(_, d)| {
        let mut events = [None::<u64>; 3];
        for (first, last) in c.mem_events.values() {
            for i in 0..3 {
                if let Some(l) = last[i] {
                    let grown = l.saturating_sub(first[i].unwrap_or(0));
                    events[i] = Some(events[i].unwrap_or(0).saturating_add(grown));
                }
            }
        }
        MemoryDetail {
            anon_bytes: d.anon,
            file_bytes: d.file,
            kernel_bytes: d.kernel,
            sock_bytes: d.sock,
            major_faults: events[0],
            high_events: events[1],
            max_events: events[2],
        }
    });
    (throttling, pressure, disk, memory)
}
