//! Container memory: cgroup counters where the container's cgroup has them (current, true
//! peak, OOM kills, anonymous memory), else the summed RSS of its processes.
//!
//! The full reading is taken at the slow tick. Where it came from cgroup files, the CPU tick
//! also reads the current-usage file alone (one small read per container) and records that
//! as the sample, so a short spike between two slow ticks is seen; the slow tick then
//! records no sample of its own.

use std::collections::BTreeSet;

use summary::Source;

use super::{Sampler, grouping::ContainerName};
use crate::sources::cgroupfs::{self, CgroupPath};

impl Sampler {
    /// Gives run mode's single container its cgroups before any scan (a command that ends
    /// before the first scan still has its CPU counted and its peak read). Those without
    /// memory files (the v2 one on a hybrid host) are skipped when memory is read.
    pub fn pin_memory_cgroups(&mut self, cgroups: impl IntoIterator<Item = CgroupPath>) {
        let Some(name) = self.cfg.single_container.clone() else {
            return;
        };
        let limits = self.cfg.limits.get(name.as_str()).copied();
        let c = self
            .containers
            .entry(name.clone())
            .or_insert_with(|| super::container::Container::new(limits));
        for cgroup in cgroups {
            // The v2 one is also where its CPU is counted (eBPF by cgroup id): known before
            // any scan, so a command that ends before the first one is still counted.
            if let CgroupPath::V2(path) = &cgroup
                && c.cgroups.insert(cgroup.clone())
                && let Some(dir) = self.mounts.v2_dir(path)
                && let Ok(id) = cgroupfs::cgroup_id(&dir)
            {
                c.cgroup_ids.insert(id);
                self.container_of_cgroup.insert(id, name.clone());
            }
            c.memory.pinned.insert(cgroup);
        }
    }

    /// Raises run mode's container peak to what the kernel reports for the command's
    /// children (`ru_maxrss`): a cgroup peak or samples can only be lower when they missed
    /// part of the command.
    pub fn raise_memory_peak(&mut self, bytes: u64) {
        let Some(name) = &self.cfg.single_container else {
            return;
        };
        if let Some(c) = self.containers.get_mut(name) {
            c.memory.raise_peak(bytes);
        }
    }

    /// The CPU tick's memory reading: the current-usage files found at the last full
    /// reading, for containers that are alive (or pinned).
    pub(super) fn sample_memory_fast(&mut self) {
        for c in self.containers.values_mut() {
            let watched = c.alive || !c.memory.pinned.is_empty();
            if !watched || c.memory.counters.is_empty() {
                continue;
            }
            let mut total = 0;
            let mut complete = true;
            for file in &c.memory.counters {
                match self.counters.read(file).and_then(cgroupfs::parse_u64) {
                    Some(v) => total += v,
                    None => complete = false,
                }
            }
            // A cgroup that went away: the next full reading finds what is left.
            if complete {
                c.record_memory(total);
                c.memory.fast_since_slow = true;
            }
        }
    }

    /// The full reading at the slow tick, of the live containers and, once more, of those
    /// that `ended` since the last one: their cgroups' peak, events and OOM kills up to the
    /// end (no sample is taken of what is left in a cgroup without processes).
    pub(super) fn sample_memory(&mut self, ended: &[ContainerName]) {
        let mut names: BTreeSet<ContainerName> =
            self.live_containers().into_iter().cloned().collect();
        names.extend(
            self.containers
                .iter()
                .filter(|(_, c)| !c.memory.pinned.is_empty())
                .map(|(name, _)| name.clone()),
        );
        let gone: BTreeSet<&ContainerName> = ended.iter().filter(|n| !names.contains(*n)).collect();
        names.extend(gone.iter().map(|n| (*n).clone()));
        for name in names {
            let gone = gone.contains(&name);
            let Some(c) = self.containers.get_mut(&name) else {
                continue;
            };
            let mut total = 0;
            let mut anon: Option<u64> = None;
            let kills_before = c.memory.oom_kills;
            let mut readings = read_all(&self.mounts, c.memory.pinned.iter().cloned().collect());
            if readings.is_empty() {
                readings = read_all(&self.mounts, distinct_roots(&c.cgroups));
            }
            let all_v2 = c.cgroups.iter().all(|cg| matches!(cg, CgroupPath::V2(_)));
            if readings.is_empty() && all_v2 && self.mounts.v1.contains_key("memory") {
                // A hybrid host: the v2 cgroups have no memory files; the v1 memory
                // controller has the same processes in cgroups of their own.
                let v1 = self
                    .processes
                    .values()
                    .filter(|p| p.container == name)
                    .filter_map(|p| p.memory_v1.clone().map(CgroupPath::V1));
                c.memory.v1.extend(v1);
                readings = read_all(&self.mounts, distinct_roots(&c.memory.v1));
            }
            let from_cgroup = !readings.is_empty();
            c.memory.counters.clear();
            let mut detail = cgroupfs::MemoryReading::default();
            for (cgroup, m) in readings {
                total += m.current;
                add_detail(&mut detail, &m);
                let events = [m.major_faults, m.high_events, m.max_events];
                c.memory
                    .add_events(cgroup.clone(), events, self.slow_ticks <= 1);
                c.memory
                    .counters
                    .extend(cgroupfs::memory_current_file(&self.mounts, &cgroup));
                if let Some(a) = m.anon {
                    anon = Some(anon.unwrap_or(0) + a);
                }
                if let Some(peak) = m.peak {
                    c.memory.raise_peak(peak);
                }
                if let Some(kills) = m.oom_kills {
                    // Kills before the run (a cgroup seen at the first scan) are not ours.
                    let base = *self
                        .oom_baseline
                        .entry(cgroup)
                        .or_insert(if self.slow_ticks <= 1 { kills } else { 0 });
                    c.memory.oom_kills = c.memory.oom_kills.max(kills.saturating_sub(base));
                }
            }
            if gone {
                if let Some(live) = &self.cfg.live {
                    let id = self.identities.get(&name).unwrap_or(&self.cfg.identity);
                    let l = c.live_labels(&name, id, c.memory.source);
                    live.add_oom_kills(&l, c.memory.oom_kills - kills_before);
                }
                continue;
            }
            if from_cgroup {
                c.memory.add_detail(total, detail);
            } else {
                total = self
                    .processes
                    .values()
                    .filter(|p| p.container == name)
                    .map(|p| p.rss)
                    .sum();
            }
            c.memory.source = if from_cgroup {
                Source::Cgroup
            } else {
                Source::Proc
            };
            if std::mem::take(&mut c.memory.fast_since_slow) {
                c.memory.last = Some(total);
            } else {
                c.record_memory(total);
            }
            if let Some(live) = &self.cfg.live {
                let id = self.identities.get(&name).unwrap_or(&self.cfg.identity);
                let l = c.live_labels(&name, id, c.memory.source);
                live.set_memory(&l, total, anon);
                if let Some(limits) = &c.limits {
                    live.set_limits(&l, limits);
                }
                live.add_oom_kills(&l, c.memory.oom_kills - kills_before);
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

/// Adds the by-kind figures of one cgroup's reading to a container's.
fn add_detail(into: &mut cgroupfs::MemoryReading, m: &cgroupfs::MemoryReading) {
    let add = |a: &mut Option<u64>, b: Option<u64>| {
        if let Some(b) = b {
            *a = Some(a.unwrap_or(0).saturating_add(b));
        }
    };
    add(&mut into.anon, m.anon);
    add(&mut into.file, m.file);
    add(&mut into.kernel, m.kernel);
    add(&mut into.sock, m.sock);
}

/// cgroups of the set that are not below another member (so nested cgroups are not counted
/// twice).
pub(super) fn distinct_roots(cgroups: &BTreeSet<CgroupPath>) -> Vec<CgroupPath> {
    cgroups
        .iter()
        .filter(|c| !cgroups.iter().any(|other| c.is_below(other)))
        .cloned()
        .collect()
}
