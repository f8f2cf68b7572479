//! A container's network traffic over the run, from the namespaces its processes use.

use std::collections::BTreeSet;

use summary::{Accumulator, NetworkSummary, SCALE_BYTES};

/// A container's network over the run.
pub(crate) struct Network {
    /// Network namespaces its processes use, by inode (`net:[inode]`).
    pub(crate) namespaces: BTreeSet<u64>,
    /// Bytes received and sent over the run.
    rx_total: u64,
    tx_total: u64,
    /// Receive and send rates, bytes per second.
    rx_rate: Accumulator,
    tx_rate: Accumulator,
}

impl Network {
    pub(crate) fn new() -> Self {
        Self {
            namespaces: BTreeSet::new(),
            rx_total: 0,
            tx_total: 0,
            rx_rate: Accumulator::new(SCALE_BYTES),
            tx_rate: Accumulator::new(SCALE_BYTES),
        }
    }

    /// Adds bytes received and sent since the previous reading.
    pub(crate) fn add(&mut self, rx: u64, tx: u64) {
        self.rx_total += rx;
        self.tx_total += tx;
    }

    /// Records one window's rates (bytes per second).
    pub(crate) fn record_rates(&mut self, rx: f64, tx: f64) {
        self.rx_rate.record(rx);
        self.tx_rate.record(tx);
    }

    /// The summary's figures; `None` where nothing was measured.
    pub(crate) fn summary(&self) -> Option<NetworkSummary> {
        let measured = self.rx_rate.sample_count() > 0 || self.rx_total > 0 || self.tx_total > 0;
        measured.then(|| NetworkSummary {
            namespace: self
                .namespaces
                .iter()
                .map(|ns| format!("net:[{ns}]"))
                .collect::<Vec<_>>()
                .join(","),
            rx_bytes: self.rx_total,
            tx_bytes: self.tx_total,
            rx_bytes_per_sec: self.rx_rate.stats(),
            tx_bytes_per_sec: self.tx_rate.stats(),
        })
    }
}
