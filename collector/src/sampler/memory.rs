//! Container memory: cgroup counters where the container's cgroup has them (current, true
//! peak, OOM kills, anonymous memory), else the summed RSS of its processes.

use std::collections::BTreeSet;

use summary::Source;

use super::Sampler;
use crate::sources::cgroupfs::{self, CgroupPath};

impl Sampler {
    pub(super) fn sample_memory(&mut self) {
        let live = self.live_containers();
        let live: Vec<_> = live.into_iter().cloned().collect();
        for name in live {
            let Some(c) = self.containers.get_mut(&name) else {
                continue;
            };
            let mut total = 0;
            let mut anon: Option<u64> = None;
            let mut from_cgroup = false;
            let kills_before = c.oom_kills;
            let mut readings: Vec<(CgroupPath, cgroupfs::MemoryReading)> =
                read_all(&self.mounts, distinct_roots(&c.cgroups));
            let all_v2 = c.cgroups.iter().all(|cg| matches!(cg, CgroupPath::V2(_)));
            if readings.is_empty() && all_v2 && self.mounts.v1.contains_key("memory") {
                // A hybrid host: the v2 cgroups have no memory files; the v1 memory
                // controller has the same processes in cgroups of their own.
                let v1 = self
                    .processes
                    .values()
                    .filter(|p| p.container == name)
                    .filter_map(|p| p.memory_v1.clone().map(CgroupPath::V1));
                c.memory_v1.extend(v1);
                readings = read_all(&self.mounts, distinct_roots(&c.memory_v1));
            }
            for (cgroup, m) in readings {
                from_cgroup = true;
                total += m.current;
                if let Some(a) = m.anon {
                    anon = Some(anon.unwrap_or(0) + a);
                }
                if let Some(peak) = m.peak {
                    c.memory_peak = Some(c.memory_peak.unwrap_or(0).max(peak));
                }
                if let Some(kills) = m.oom_kills {
                    // Kills before the run (a cgroup seen at the first scan) are not ours.
                    let base = *self
                        .oom_baseline
                        .entry(cgroup)
                        .or_insert(if self.slow_ticks <= 1 { kills } else { 0 });
                    c.oom_kills = c.oom_kills.max(kills.saturating_sub(base));
                }
            }
            if !from_cgroup {
                total = self
                    .processes
                    .values()
                    .filter(|p| p.container == name)
                    .map(|p| p.rss)
                    .sum();
            }
            c.memory_source = if from_cgroup {
                Source::Cgroup
            } else {
                Source::Proc
            };
            c.memory.record(total as f64);
            c.last_memory = Some(total);
            if let Some(live) = &self.cfg.live {
                let id = self.identities.get(&name).unwrap_or(&self.cfg.identity);
                let l = c.live_labels(&name, id, c.memory_source);
                live.set_memory(&l, total, anon);
                if let Some(limits) = &c.limits {
                    live.set_limits(&l, limits);
                }
                live.add_oom_kills(&l, c.oom_kills - kills_before);
            }
            if let Some(limit) = c.limits.and_then(|l| l.memory_bytes).filter(|l| *l > 0) {
                c.memory_to_limit.record(total as f64 / limit as f64);
            }
        }
    }
}

/// The memory readings of the cgroups that have memory files.
fn read_all(
    mounts: &cgroupfs::Mounts,
    cgroups: Vec<CgroupPath>,
) -> Vec<(CgroupPath, cgroupfs::MemoryReading)> {
    cgroups
        .into_iter()
        .filter_map(|cg| Some((cg.clone(), cgroupfs::read_memory(mounts, &cg)?)))
        .collect()
}

/// cgroups of the set that are not below another member (so nested cgroups are not counted
/// twice).
fn distinct_roots(cgroups: &BTreeSet<CgroupPath>) -> Vec<CgroupPath> {
    cgroups
        .iter()
        .filter(|c| !cgroups.iter().any(|other| c.is_below(other)))
        .cloned()
        .collect()
}
