//! Each container's starvation, read at the slow tick: throttling, pressure stall
//! information and block I/O from its cgroups ([`crate::sources::starvation`]), kept in its
//! `starvation` field (`container/starvation.rs`, which also makes the summary's figures),
//! and fed to the live metrics.

use std::time::Instant;

use super::{Sampler, grouping::ContainerName, memory::distinct_roots};
use crate::sources::{
    cgroupfs::CgroupPath,
    starvation::{self, Quota, StarvationCounters},
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
                .filter(|(name, c)| !c.memory.pinned.is_empty() && !live.contains(name))
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
        c.starvation.v1_twins.extend(twins);
        let mut cgroups = distinct_roots(&c.cgroups);
        cgroups.extend(distinct_roots(&c.starvation.v1_twins));
        let mut quota = Quota::Unknown;
        for cg in cgroups {
            let reading = starvation::read_starvation(&self.mounts, &cg);
            if reading == StarvationCounters::default() {
                continue;
            }
            // Counters of a cgroup found at the first scan started before the run, but
            // for run mode's own cgroups (pinned), which the run made: they start at 0.
            let before_run = self.slow_ticks <= 1 && !c.memory.pinned.contains(&cg);
            if quota == Quota::Unknown {
                quota = starvation::read_quota(&self.mounts, &cg);
            }
            c.starvation.add_reading(cg, reading, before_run);
        }
        if quota != Quota::Unknown {
            c.starvation.quota = quota;
        }
        let total = c.starvation.total();
        c.starvation.record_window(now, &total, &mut c.timeline);
        if let Some(live) = &self.cfg.live {
            let delta = c.starvation.publish(total);
            let id = self.identities.get(&name).unwrap_or(&self.cfg.identity);
            // The kernel's cgroup counters, whatever the CPU and memory sources are.
            let l = c.live_labels(&name, id, summary::Source::Cgroup);
            live.add_starvation(&l, &delta);
        }
    }
}
