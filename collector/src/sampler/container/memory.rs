//! A container's memory over the run: where it is read, the samples, the true peak, OOM
//! kills, and the memory by kind at its largest reading with the memory events.

use std::{
    collections::{BTreeSet, HashMap},
    path::PathBuf,
    time::Instant,
};

use summary::{
    Accumulator, EncodedHistogram, SCALE_BYTES, SCALE_PERCENT, Source, Stats,
    starvation::MemoryDetail, timeline::Series,
};

use super::timeline::Timeline;
use crate::sources::cgroupfs::{CgroupPath, MemoryReading};

/// Major faults, `high` and `max` events of a memory cgroup, cumulative.
type MemoryEvents = [Option<u64>; 3];

/// A container's memory over the run.
pub(crate) struct Memory {
    /// Where it came from at the last full reading.
    pub(crate) source: Source,
    /// Memory cgroups given up front (run mode: the command's own, known before any scan
    /// finds a process in it, which a short command may never allow). Read first.
    pub(crate) pinned: BTreeSet<CgroupPath>,
    /// On hybrid hosts, the v1 memory-controller cgroups of its processes (kept after they
    /// go, like its cgroups): where its memory is counted when its v2 cgroups count none.
    pub(crate) v1: BTreeSet<CgroupPath>,
    /// The current-usage files of the cgroups its memory came from at the last full reading
    /// (empty for the /proc source): what the CPU tick reads between two full readings.
    pub(crate) counters: Vec<PathBuf>,
    /// A CPU-tick sample was recorded since the last full reading, which then only updates
    /// the peak, OOM kills and anonymous memory (no sample is recorded twice).
    pub(crate) fast_since_slow: bool,
    /// Samples (bytes in use), and their share of the memory limit.
    pub(crate) samples: Accumulator,
    pub(crate) to_limit: Accumulator,
    /// The latest sample, for per-interval output.
    pub(crate) last: Option<u64>,
    /// The cgroups' own high-water mark, or the kernel's figure for run mode's children.
    peak: Option<u64>,
    pub(crate) oom_kills: u64,
    detail: Detail,
}

/// What the summary's memory detail is made of.
#[derive(Default)]
struct Detail {
    /// Memory by kind at the largest full reading, and that reading's total.
    at_peak: Option<(u64, MemoryReading)>,
    /// Event counters per memory cgroup: first, last.
    events: HashMap<CgroupPath, (MemoryEvents, MemoryEvents)>,
}

impl Memory {
    pub(crate) fn new() -> Self {
        Self {
            source: Source::Proc,
            pinned: BTreeSet::new(),
            v1: BTreeSet::new(),
            counters: Vec::new(),
            fast_since_slow: false,
            samples: Accumulator::new(SCALE_BYTES),
            to_limit: Accumulator::new(SCALE_PERCENT),
            last: None,
            peak: None,
            oom_kills: 0,
            detail: Detail::default(),
        }
    }

    /// Records one sample (bytes in use now) on `timeline`, with its share of `limit`.
    pub(crate) fn record(&mut self, bytes: u64, timeline: &mut Timeline, limit: Option<u64>) {
        timeline.at(Series::Memory, Instant::now(), bytes as f64);
        self.samples.record(bytes as f64);
        self.last = Some(bytes);
        if let Some(limit) = limit.filter(|l| *l > 0) {
            self.to_limit.record(bytes as f64 / limit as f64);
        }
    }

    /// Raises the high-water mark to `bytes` (a cgroup's own, or the kernel's for run mode's
    /// children).
    pub(crate) fn raise_peak(&mut self, bytes: u64) {
        self.peak = Some(self.peak.unwrap_or(0).max(bytes));
    }

    /// The true peak: the high-water mark, never below a sampled value; `None` where there
    /// is no high-water mark.
    pub(crate) fn true_peak(&self) -> Option<u64> {
        let sampled = self.samples.stats().peak as u64;
        self.peak.map(|p| p.max(sampled))
    }

    /// The summary's statistics and histogram, with the true peak. The true peak tops the
    /// samples' statistics, so the two never disagree; percentiles and the average stay the
    /// samples'. The histogram holds the peak too, as its largest value must be the
    /// statistics' peak.
    pub(crate) fn statistics(&self) -> (Option<u64>, Stats, EncodedHistogram) {
        let peak = self.true_peak();
        let mut stats = self.samples.stats();
        let mut histogram = self.samples.encode();
        if let Some(p) = peak.map(|p| p as f64).filter(|p| *p > stats.peak) {
            stats.peak = p;
            let mut with_peak = self.samples.clone();
            with_peak.record(p);
            histogram = with_peak.encode();
        }
        (peak, stats, histogram)
    }

    /// Takes one memory cgroup's event counters; those of a cgroup first read at the first
    /// scan (`before_run`) count from there, those of a cgroup made later from zero.
    pub(crate) fn add_events(
        &mut self,
        cgroup: CgroupPath,
        events: MemoryEvents,
        before_run: bool,
    ) {
        let first = if before_run { events } else { [Some(0); 3] };
        self.detail
            .events
            .entry(cgroup)
            .or_insert((first, events))
            .1 = events;
    }

    /// Keeps a full reading's memory by kind when its total is the largest yet.
    pub(crate) fn add_detail(&mut self, total: u64, detail: MemoryReading) {
        if self.detail.at_peak.is_none_or(|(t, _)| total >= t) {
            self.detail.at_peak = Some((total, detail));
        }
    }

    /// The summary's memory detail: by kind at the largest full reading, and the events'
    /// growth over the run; `None` where no full reading came from a cgroup.
    pub(crate) fn detail(&self) -> Option<MemoryDetail> {
        let (_, d) = self.detail.at_peak?;
        let mut events = [None::<u64>; 3];
        for (first, last) in self.detail.events.values() {
            for i in 0..3 {
                if let Some(l) = last[i] {
                    let grown = l.saturating_sub(first[i].unwrap_or(0));
                    events[i] = Some(events[i].unwrap_or(0).saturating_add(grown));
                }
            }
        }
        Some(MemoryDetail {
            anon_bytes: d.anon,
            file_bytes: d.file,
            kernel_bytes: d.kernel,
            sock_bytes: d.sock,
            major_faults: events[0],
            high_events: events[1],
            max_events: events[2],
        })
    }
}
