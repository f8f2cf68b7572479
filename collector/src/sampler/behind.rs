//! Who held the CPU while each container waited: the eBPF program's (waiter, holder) wait
//! totals, summed over the container's cgroups and named for a person: itself, another
//! container of its job, another job's container (with that job's identity, in node mode),
//! the host, nobody. Each container keeps its totals in its `behind` field
//! (`container/behind.rs`), which makes the summary's list.

use std::collections::HashMap;

use collector_common::WaitPair;
use summary::behind::{self, HolderKind};

use super::{Sampler, container::Named, grouping::ContainerName};
use crate::sources::cpu_source::CpuSource;

/// What a holder cgroup is to the container that waited (pure: the lookups are the
/// caller's). `holder` is `None` for a cgroup that is in no container the collector knows.
pub(super) fn classify(
    waiter: (&ContainerName, Option<&str>),
    holder_id: u64,
    holder: Option<(&ContainerName, Option<&str>)>,
    own_ids: bool,
) -> Named {
    if holder_id == 0 {
        return (HolderKind::Nobody, behind::NOBODY.to_owned(), None);
    }
    if own_ids {
        return (HolderKind::Itself, waiter.0.to_string(), None);
    }
    match holder {
        None => (HolderKind::Host, ContainerName::HOST.to_owned(), None),
        Some((name, job)) if name.as_str() == ContainerName::HOST || job.is_none() => {
            (HolderKind::Host, name.to_string(), None)
        }
        Some((name, job)) if job == waiter.1 => (HolderKind::OwnJob, name.to_string(), None),
        // The host's wait behind the job's containers: their job has no name when nothing
        // identified it.
        Some((name, job)) => (
            HolderKind::OtherJob,
            name.to_string(),
            job.filter(|j| !j.is_empty()).map(str::to_owned),
        ),
    }
}

impl Sampler {
    /// The job a container belongs to, as a label; `None` for the host and, in node mode,
    /// for containers of no job.
    fn job_label(&self, name: &ContainerName) -> Option<String> {
        if name.as_str() == ContainerName::HOST {
            return None;
        }
        if self.cfg.jobs_per_container {
            return self.identities.get(name).and_then(|e| e.label());
        }
        // One job: even without an identity, its containers are one another's.
        Some(self.cfg.identity.label().unwrap_or_default())
    }

    /// Reads the attribution totals (at the slow tick: a walk of the whole map) and folds
    /// them into each container whose wait comes from eBPF.
    pub(super) fn read_behind(&mut self) {
        let CpuSource::Ebpf(ebpf) = &mut self.cpu else {
            return;
        };
        if !ebpf.run_delay_available() {
            return;
        }
        let totals: HashMap<WaitPair, u64> = match ebpf.wait_behind() {
            Ok(t) => t.clone(),
            Err(e) => {
                self.read_errors += 1;
                tracing::debug!("reading the wait attribution map: {e}");
                return;
            }
        };
        // Holder id -> container, from every container's ids.
        let owner: HashMap<u64, &ContainerName> = self
            .containers
            .iter()
            .flat_map(|(name, c)| c.cgroup_ids.iter().map(move |id| (*id, name)))
            .collect();
        let mut by_waiter: HashMap<u64, Vec<(u64, u64)>> = HashMap::new();
        for (pair, ns) in &totals {
            by_waiter
                .entry(pair.waiter)
                .or_default()
                .push((pair.holder, *ns));
        }
        let mut updates: Vec<Update> = Vec::new();
        for (name, c) in &self.containers {
            if c.cgroup_ids.is_empty() || c.wait.source != Some(summary::Source::Ebpf) {
                continue;
            }
            let own_job = self.job_label(name);
            let mut ns: HashMap<u64, u64> = HashMap::new();
            for id in &c.cgroup_ids {
                for (holder, v) in by_waiter.get(id).into_iter().flatten() {
                    *ns.entry(*holder).or_default() += v;
                }
            }
            // Named again at each reading: a job is identified a few scans after it starts.
            // A holder no longer known (forgotten) keeps the name it had.
            let named = ns
                .keys()
                .filter_map(|h| {
                    let holder = owner.get(h).map(|n| (*n, self.job_label(n)));
                    if holder.is_none() && *h != 0 && c.behind.knows(*h) {
                        return None;
                    }
                    let holder = holder.as_ref().map(|(n, j)| (*n, j.as_deref()));
                    let kind = classify(
                        (name, own_job.as_deref()),
                        *h,
                        holder,
                        c.cgroup_ids.contains(h),
                    );
                    Some((*h, kind))
                })
                .collect();
            updates.push((name.clone(), ns, named));
        }
        let live = self.cfg.live.clone();
        for (name, ns, named) in updates {
            let id = self.identities.get(&name).unwrap_or(&self.cfg.identity);
            let Some(c) = self.containers.get_mut(&name) else {
                continue;
            };
            c.behind.update(ns, named);
            let added = c.behind.publish();
            if let Some(live) = live.as_deref().filter(|_| c.alive) {
                let l = c.live_labels(&name, id, summary::Source::Ebpf);
                for (holder, d) in added {
                    live.add_run_queue_wait_behind(&l, &holder, d as f64 / 1e9);
                }
            }
        }
    }

    /// Share of the node's CPU time the hypervisor stole since the first reading.
    pub(super) fn steal_share(&self) -> f64 {
        match (&self.first_system, &self.last_system) {
            (Some(first), Some((_, last))) => {
                let total = last.total().saturating_sub(first.total());
                let steal = last.steal.saturating_sub(first.steal);
                if total > 0 {
                    steal as f64 / total as f64
                } else {
                    0.0
                }
            }
            _ => 0.0,
        }
    }
}

/// A container's new totals by holder, and holders (re)named.
type Update = (ContainerName, HashMap<u64, u64>, Vec<(u64, Named)>);

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> ContainerName {
        ContainerName::mapped(s.to_owned(), None)
    }

    #[test]
    fn holders_are_named_for_the_waiter() {
        let (me, b, host) = (n("build"), n("db"), n(ContainerName::HOST));
        let waiter = (&me, Some("o/r ci build #1"));
        assert_eq!(classify(waiter, 0, None, false).0, HolderKind::Nobody);
        assert_eq!(
            classify(waiter, 7, Some((&me, Some("o/r ci build #1"))), true).0,
            HolderKind::Itself
        );
        assert_eq!(
            classify(waiter, 8, Some((&b, Some("o/r ci build #1"))), false),
            (HolderKind::OwnJob, "db".to_owned(), None)
        );
        assert_eq!(
            classify(waiter, 8, Some((&b, Some("o/r ci lint #2"))), false),
            (
                HolderKind::OtherJob,
                "db".to_owned(),
                Some("o/r ci lint #2".to_owned())
            )
        );
        assert_eq!(
            classify(waiter, 9, Some((&host, None)), false).0,
            HolderKind::Host
        );
        assert_eq!(
            classify(waiter, 9, Some((&b, None)), false),
            (HolderKind::Host, "db".to_owned(), None),
            "a container of no job"
        );
        assert_eq!(
            classify(waiter, 10, None, false),
            (HolderKind::Host, "host".to_owned(), None),
            "a cgroup of no container"
        );
    }
}
