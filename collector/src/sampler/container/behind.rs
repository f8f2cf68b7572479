//! Who held the CPU while a container waited (eBPF): its wait totals by holder cgroup, each
//! holder as last named, and the summary's ranked list (`summary::behind`). The totals are
//! read and the holders named in `sampler/behind.rs`.

use std::collections::HashMap;

use summary::behind::{self, Behind, HolderKind};

use crate::sampler::grouping::ContainerName;

/// A holder as named for the waiter: what it is to it, its name, and its job where that is
/// another one.
pub(crate) type Named = (HolderKind, String, Option<String>);

/// One container's attribution so far.
#[derive(Debug, Default)]
pub(crate) struct Attribution {
    /// Wait nanoseconds behind each holder cgroup since the eBPF program attached (like the
    /// wait's own total, which counts from the attach too), as of the last reading.
    ns: HashMap<u64, u64>,
    /// Each holder as last named: a holder that ends (and is forgotten) keeps its name.
    names: HashMap<u64, Named>,
    /// `ns` as last fed to the live series.
    live_ns: HashMap<u64, u64>,
}

impl Attribution {
    /// Whether `holder` has been named.
    pub(crate) fn knows(&self, holder: u64) -> bool {
        self.names.contains_key(&holder)
    }

    /// Takes a reading: the totals by holder, and the holders (re)named.
    pub(crate) fn update(&mut self, ns: HashMap<u64, u64>, named: Vec<(u64, Named)>) {
        self.ns = ns;
        self.names.extend(named);
    }

    /// The growth by holder since the last call, by its live `behind` label, largest first
    /// (the first few holders get their own series).
    pub(crate) fn publish(&mut self) -> Vec<(String, u64)> {
        let mut added: Vec<(String, u64)> = self
            .ns
            .iter()
            .map(|(h, v)| {
                let before = self.live_ns.get(h).copied().unwrap_or(0);
                (live_label(self.names.get(h), *h), v.saturating_sub(before))
            })
            .filter(|(_, d)| *d > 0)
            .collect();
        added.sort_by_key(|(_, d)| std::cmp::Reverse(*d));
        self.live_ns.clone_from(&self.ns);
        added
    }

    /// The entries, named, in nanoseconds' order of no importance (ranked later).
    fn entries(&self) -> Vec<Behind> {
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

    /// The `behind` list as the summary shows it: steal out of nobody, the throttled part
    /// as its quota's, ranked to add up to `wait_seconds`.
    pub(crate) fn summary(
        &self,
        wait_seconds: f64,
        throttled_seconds: Option<f64>,
        steal_share: f64,
    ) -> Vec<Behind> {
        let entries = self.entries();
        if entries.is_empty() {
            return entries;
        }
        // Scaled first, so steal and the quota are taken from the wait as finally read.
        let entries = behind::scale(entries, wait_seconds);
        let entries = behind::with_steal(entries, wait_seconds, steal_share);
        let entries = behind::with_quota(entries, throttled_seconds.unwrap_or(0.0));
        behind::rank(entries, wait_seconds)
    }
}

/// The live series' `behind` label of a holder.
fn live_label(named: Option<&Named>, holder: u64) -> String {
    match named {
        _ if holder == 0 => "nobody".to_owned(),
        Some((HolderKind::Itself, _, _)) => "itself".to_owned(),
        Some((_, name, _)) => name.clone(),
        None => ContainerName::HOST.to_owned(),
    }
}
