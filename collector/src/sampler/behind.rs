//! Who held the CPU while each container waited: the eBPF program's (waiter, holder) wait
//! totals, summed over the container's cgroups and named for a person: itself, another
//! container of its job, another job's container (with that job's identity, in node mode),
//! the host, nobody. The summary then counts the throttled part as the quota's, moves the
//! hypervisor's steal out of "nobody" and ranks the list (`summary::behind`).

use std::collections::HashMap;

use collector_common::WaitPair;
use summary::behind::{self, Behind, HolderKind};

use super::{Sampler, container::Container, grouping::ContainerName};
use crate::sources::cpu_source::CpuSource;

/// One container's attribution so far.
#[derive(Debug, Default)]
pub(super) struct Attribution {
    /// Wait nanoseconds behind each holder cgroup since the eBPF program attached (like the
    /// wait's own total, which counts from the attach too), as of the last reading.
    ns: HashMap<u64, u64>,
    /// Each holder as last named: a holder that ends (and is forgotten) keeps its name.
    names: HashMap<u64, Named>,
    /// `ns` as last fed to the live series.
    live_ns: HashMap<u64, u64>,
}

impl Attribution {
    /// The entries, named, in nanoseconds' order of no importance (ranked later).
    pub(super) fn entries(&self) -> Vec<Behind> {
        self.ns
            .iter()
            .filter(|(_, ns)| **ns > 0)
            .map(|(holder, ns)| {
                let (kind, name, job) = self.names.get(holder).cloned().unwrap_or((
                    HolderKind::Host,
                    ContainerName::HOST.to_owned(),
                    None,
                ));
                Behind::new(kind, &name, job, *ns as f64 / 1e9)
            })
            .collect()
    }
}

/// What a holder cgroup is to the container that waited (pure: the lookups are the
/// caller's). `holder` is `None` for a cgroup that is in no container the collector knows.
pub(super) fn classify(
    waiter: (&ContainerName, Option<&str>),
    holder_id: u64,
    holder: Option<(&ContainerName, Option<&str>)>,
    own_ids: bool,
) -> (HolderKind, String, Option<String>) {
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
                    if holder.is_none() && *h != 0 && c.behind.names.contains_key(h) {
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
            c.behind.ns = ns;
            c.behind.names.extend(named);
            if let Some(live) = live.as_deref().filter(|_| c.alive) {
                let mut added: Vec<(String, u64)> = c
                    .behind
                    .ns
                    .iter()
                    .map(|(h, v)| {
                        let before = c.behind.live_ns.get(h).copied().unwrap_or(0);
                        (
                            live_label(c.behind.names.get(h), *h),
                            v.saturating_sub(before),
                        )
                    })
                    .filter(|(_, d)| *d > 0)
                    .collect();
                // The largest first: the first few holders get their own series.
                added.sort_by_key(|(_, d)| std::cmp::Reverse(*d));
                let l = c.live_labels(&name, id, summary::Source::Ebpf);
                for (holder, d) in added {
                    live.add_run_queue_wait_behind(&l, &holder, d as f64 / 1e9);
                }
            }
            c.behind.live_ns.clone_from(&c.behind.ns);
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

type Named = (HolderKind, String, Option<String>);

/// The live series' `behind` label of a holder.
fn live_label(named: Option<&Named>, holder: u64) -> String {
    match named {
        _ if holder == 0 => "nobody".to_owned(),
        Some((HolderKind::Itself, _, _)) => "itself".to_owned(),
        Some((_, name, _)) => name.clone(),
        None => ContainerName::HOST.to_owned(),
    }
}
/// A container's new totals by holder, and holders (re)named.
type Update = (ContainerName, HashMap<u64, u64>, Vec<(u64, Named)>);

/// The container's `behind` list as the summary shows it: steal out of nobody, the throttled
/// part as its quota's, ranked to add up to `wait_seconds`.
pub(super) fn summary_list(
    c: &Container,
    wait_seconds: f64,
    throttled_seconds: Option<f64>,
    steal_share: f64,
) -> Vec<Behind> {
    let entries = c.behind.entries();
    if entries.is_empty() {
        return entries;
    }
    // Scaled first, so steal and the quota are taken from the wait as finally read.
    let entries = behind::scale(entries, wait_seconds);
    let entries = behind::with_steal(entries, wait_seconds, steal_share);
    let entries = behind::with_quota(entries, throttled_seconds.unwrap_or(0.0));
    behind::rank(entries, wait_seconds)
}

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
