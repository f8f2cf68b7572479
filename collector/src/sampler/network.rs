//! Container network: one process per network namespace reads its interface counters
//! (loopback excluded); every container in that namespace gets its traffic.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    os::unix::fs::MetadataExt,
    time::Duration,
};

use summary::{Source, timeline::Series};

use super::{NetNs, Sampler, grouping::ContainerName, rates::CounterRate};
use crate::sources::procfs;

impl Sampler {
    pub(super) fn sample_network(&mut self, window: Option<Duration>) {
        let own = if self.cfg.exclude_own_netns {
            std::fs::metadata(self.cfg.proc_root.join("self/ns/net"))
                .ok()
                .map(|m| m.ino())
        } else {
            None
        };
        let mut readers: BTreeMap<u64, (i32, BTreeSet<ContainerName>)> = BTreeMap::new();
        for (pid, p) in &self.processes {
            if let Some(ns) = p.netns.filter(|ns| Some(*ns) != own) {
                let e = readers.entry(ns).or_insert((*pid, BTreeSet::new()));
                e.1.insert(p.container.clone());
            }
        }
        for (ns, (pid, containers)) in readers {
            let devices = match procfs::read_net_dev(&self.cfg.proc_root, pid) {
                Ok(Some(d)) => d,
                _ => continue,
            };
            let (rx, tx) = devices
                .iter()
                .filter(|d| d.iface != "lo")
                .fold((0u64, 0u64), |(r, t), d| (r + d.rx_bytes, t + d.tx_bytes));
            let state = self.netns.entry(ns).or_insert(NetNs {
                rx: CounterRate::new(),
                tx: CounterRate::new(),
            });
            let (before_rx, before_tx) = (state.rx.total(), state.tx.total());
            let period = window.unwrap_or_default();
            let rx_rate = state.rx.update(rx, period);
            let tx_rate = state.tx.update(tx, period);
            let (drx, dtx) = (state.rx.total() - before_rx, state.tx.total() - before_tx);
            for name in containers {
                let Some(c) = self.containers.get_mut(&name) else {
                    continue;
                };
                c.network.add(drx, dtx);
                if let Some(live) = &self.cfg.live {
                    let id = self.identities.get(&name).unwrap_or(&self.cfg.identity);
                    let l = c.live_labels(&name, id, Source::Proc);
                    live.add_network(&l, drx, dtx);
                }
                if let (Some(r), Some(t)) = (rx_rate, tx_rate) {
                    c.network.record_rates(r, t);
                    // The rates are over the window since the previous scan.
                    let now = std::time::Instant::now();
                    let from = now.checked_sub(period).unwrap_or(now);
                    c.timeline.span(Series::Network, from, now, r + t);
                }
            }
        }
        // Namespaces no process uses any more.
        let used: HashSet<u64> = self.processes.values().filter_map(|p| p.netns).collect();
        self.netns.retain(|ns, _| used.contains(ns));
    }
}
