//! A container's starvation over the run: the throttling, pressure and block I/O counters
//! of its cgroups (the first and the latest reading of each), its CPU quota, its disk rates,
//! and the summary's figures from them.

use std::{
    collections::{BTreeSet, HashMap},
    time::Instant,
};

use summary::{
    Accumulator, SCALE_BYTES,
    starvation::{DiskIo, Pressure, Stall, Throttling},
    timeline::Series,
};

use super::timeline::Timeline;
use crate::{
    output::live::StarvationDelta,
    sources::{
        cgroupfs::CgroupPath,
        starvation::{Quota, StarvationCounters},
    },
};

/// A container's starvation over the run.
pub(crate) struct Starvation {
    /// On hybrid hosts, the v1 `cpu`/`blkio` twins of its processes' cgroups (kept after
    /// they go): where throttling and block I/O are counted.
    pub(crate) v1_twins: BTreeSet<CgroupPath>,
    /// The CPU quota of its cgroup at the last reading that found one.
    pub(crate) quota: Quota,
    /// Counters per cgroup: the first reading in the run (zero for a cgroup made during it)
    /// and the latest.
    base: HashMap<CgroupPath, StarvationCounters>,
    last: HashMap<CgroupPath, StarvationCounters>,
    /// The totals last added to the live metrics.
    published: StarvationCounters,
    /// When the counters were last read, and their CPU pressure then (µs).
    cpu_pressure_seen: Option<(Instant, u64)>,
    /// Block I/O rates, and the totals at the previous reading.
    read_rate: Accumulator,
    write_rate: Accumulator,
    last_io: Option<(Instant, u64, u64)>,
}

impl Starvation {
    pub(crate) fn new() -> Self {
        Self {
            v1_twins: BTreeSet::new(),
            quota: Quota::Unknown,
            base: HashMap::new(),
            last: HashMap::new(),
            published: StarvationCounters::default(),
            cpu_pressure_seen: None,
            read_rate: Accumulator::new(SCALE_BYTES),
            write_rate: Accumulator::new(SCALE_BYTES),
            last_io: None,
        }
    }

    /// Takes one cgroup's reading. The counters of a cgroup that existed before the run
    /// (`before_run`, at its first reading) count from that reading, others from zero.
    pub(crate) fn add_reading(
        &mut self,
        cgroup: CgroupPath,
        reading: StarvationCounters,
        before_run: bool,
    ) {
        let base = if before_run {
            reading
        } else {
            StarvationCounters::default()
        };
        self.base.entry(cgroup.clone()).or_insert(base);
        self.last.insert(cgroup, reading);
    }

    /// The growth of its counters over the run, summed over its cgroups.
    pub(crate) fn total(&self) -> StarvationCounters {
        let mut total = StarvationCounters::default();
        for (cg, last) in &self.last {
            let base = self.base.get(cg).copied().unwrap_or_default();
            total.add(&last.growth_since(&base));
        }
        total
    }

    /// Records on `timeline` what the window since the previous reading (ending `now`, with
    /// the run's totals at `total`) had: the share of it some task stalled on CPU, and the
    /// disk rates (which also go to the summary's statistics).
    pub(crate) fn record_window(
        &mut self,
        now: Instant,
        total: &StarvationCounters,
        timeline: &mut Timeline,
    ) {
        if let (Some((then, before)), Some(some)) = (self.cpu_pressure_seen, total.cpu_some_us) {
            let dt = now.saturating_duration_since(then).as_secs_f64();
            if dt > 0.0 {
                let stalled = some.saturating_sub(before) as f64 / 1e6;
                timeline.span(Series::CpuPressure, then, now, (stalled / dt).min(1.0));
            }
        }
        self.cpu_pressure_seen = total.cpu_some_us.map(|some| (now, some));
        if let (Some(r), Some(w)) = (total.read_bytes, total.write_bytes) {
            if let Some((then, pr, pw)) = self.last_io {
                let dt = now.saturating_duration_since(then).as_secs_f64();
                if dt > 0.0 {
                    let (read, written) = (
                        r.saturating_sub(pr) as f64 / dt,
                        w.saturating_sub(pw) as f64 / dt,
                    );
                    self.read_rate.record(read);
                    self.write_rate.record(written);
                    timeline.span(Series::Disk, then, now, read + written);
                }
            }
            self.last_io = Some((now, r, w));
        }
    }

    /// The growth of `total` since it was last published to the live metrics, which it now
    /// is.
    pub(crate) fn publish(&mut self, total: StarvationCounters) -> StarvationDelta {
        let delta = total.growth_since(&self.published);
        self.published = total;
        StarvationDelta {
            throttled_seconds: seconds(delta.throttled_us),
            cpu_some_seconds: seconds(delta.cpu_some_us),
            memory_some_seconds: seconds(delta.memory_some_us),
            io_some_seconds: seconds(delta.io_some_us),
            read_bytes: delta.read_bytes,
            write_bytes: delta.write_bytes,
        }
    }

    /// The summary's throttling, pressure and disk figures over `duration` seconds.
    pub(crate) fn figures(
        &self,
        duration: f64,
    ) -> (Option<Throttling>, Option<Pressure>, Option<DiskIo>) {
        let t = self.total();
        let share = |s: f64| {
            if duration > 0.0 {
                (s / duration).min(1.0)
            } else {
                0.0
            }
        };
        let throttling = (t.periods.is_some() || self.quota != Quota::Unknown).then(|| {
            let periods = t.periods.unwrap_or(0);
            let throttled = t.throttled_periods.unwrap_or(0).min(periods);
            Throttling {
                quota_cores: self.quota.cores(),
                periods,
                throttled_periods: throttled,
                throttled_seconds: seconds(t.throttled_us).unwrap_or(0.0),
                throttled_period_share: if periods > 0 {
                    throttled as f64 / periods as f64
                } else {
                    0.0
                },
                bursts: t.bursts,
                burst_seconds: seconds(t.burst_us),
            }
        });
        let stall = |some: Option<u64>, full: Option<u64>| {
            let some = seconds(some)?;
            let full = seconds(full);
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
            read_bytes_per_sec: self.read_rate.stats(),
            write_bytes_per_sec: self.write_rate.stats(),
        });
        (throttling, pressure, disk)
    }
}

/// Microseconds as seconds.
fn seconds(us: Option<u64>) -> Option<f64> {
    us.map(|v| v as f64 / 1e6)
}
