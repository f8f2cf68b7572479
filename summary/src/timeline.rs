//! The shape of a run over time: per container, CPU, memory, network and disk in buckets of
//! one width, at most [`MAX_POINTS`] of them, each keeping its mean and (for CPU and memory)
//! its maximum, so a spike is never averaged away.
//!
//! [`TimelineBuilder`] starts with buckets one CPU interval wide and doubles the width
//! (merging neighbours) whenever a series would pass [`MAX_POINTS`], so a run of any length
//! ends with between half and all of that many points, in bounded memory.
//!
//! Rates (CPU, network, disk, run-queue wait, CPU pressure) are read over a window and count
//! in a bucket by the time the window covers in it: a bucket's mean is the rate's integral
//! over the bucket divided by the bucket's width, so the buckets times their width add up to
//! the totals (CPU buckets to `cpu_seconds`), and a rate read over 3 ms adds 3 ms' worth to
//! its bucket, not a whole bucket's (issue 21). Memory, read at an instant, is the mean of
//! the samples in a bucket.
//!
//! Wire format (the summary's additive `timeline` field): integers, so a two-hour job with
//! five containers stays within 64 KiB of JSON. CPU in millicores, memory in MiB, network
//! and disk in KiB/s. A bucket no rate reading covers shows 0 for that rate (nothing measured
//! there, nothing counted); one without a memory sample repeats the one before it.

use serde::{Deserialize, Serialize};

/// Most points per series.
pub const MAX_POINTS: usize = 360;

/// The timeline of a run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Timeline {
    /// Seconds each point covers; point `i` starts `i * bucket_seconds` after the run's start.
    pub bucket_seconds: f64,
    pub containers: Vec<ContainerTimeline>,
}

/// One container's series, all of the same length.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ContainerTimeline {
    pub name: String,
    /// When its first point starts, seconds after the run's start (a container that
    /// started later than the run).
    #[serde(default)]
    pub start_seconds: f64,
    /// CPU of each bucket (its CPU seconds per second of bucket) and the largest reading in
    /// it, millicores.
    pub cpu_millicores: Vec<u32>,
    pub cpu_millicores_max: Vec<u32>,
    /// Mean and largest memory sample of each bucket, MiB (rounded up: never 0 for a
    /// container that used memory).
    pub memory_mib: Vec<u32>,
    pub memory_mib_max: Vec<u32>,
    /// Network (received + sent) and disk (read + written), mean KiB/s; empty where the
    /// container has no such figure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_kib_per_sec: Vec<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disk_kib_per_sec: Vec<u32>,
    /// Starvation where known, mean per bucket: run-queue wait in millicores (the tasks'
    /// summed wait per second: 1000 is one task waiting all the time), and the share of
    /// time some task stalled on CPU (PSI `some`), percent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub run_queue_wait_millicores: Vec<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cpu_pressure_percent: Vec<u32>,
}

impl ContainerTimeline {
    /// Points in its series.
    pub fn len(&self) -> usize {
        self.cpu_millicores.len()
    }

    /// The CPU seconds its buckets hold, each `bucket_seconds` wide: what the collector read
    /// of the container's `cpu_seconds` (not CPU used before the collector started), to
    /// within half a millicore over one bucket (the wire's rounding).
    pub fn cpu_seconds(&self, bucket_seconds: f64) -> f64 {
        let millicores: f64 = self.cpu_millicores.iter().copied().map(f64::from).sum();
        millicores / 1000.0 * bucket_seconds
    }

    pub fn is_empty(&self) -> bool {
        self.cpu_millicores.is_empty()
    }
}

/// The figures a timeline follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Series {
    /// Cores.
    Cpu = 0,
    /// Bytes.
    Memory = 1,
    /// Bytes per second.
    Network = 2,
    /// Bytes per second.
    Disk = 3,
    /// Run-queue wait, seconds per second.
    Wait = 4,
    /// Share of time some task stalled on CPU, 0 to 1.
    CpuPressure = 5,
}

impl Series {
    /// Read over a window (and weighted by the time it covers), not at an instant.
    fn is_rate(self) -> bool {
        !matches!(self, Series::Memory)
    }
}

const SERIES: usize = 6;

/// One bucket of one series: `sum` of the samples (memory) or of rate times the seconds it
/// covers in the bucket (rates); `max` the largest reading.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Bucket {
    sum: f64,
    count: u32,
    max: f64,
}

impl Bucket {
    fn add(&mut self, v: f64, max: f64) {
        self.sum += v;
        self.count += 1;
        self.max = if self.count == 1 {
            max
        } else {
            self.max.max(max)
        };
    }

    fn merge(a: Bucket, b: Bucket) -> Bucket {
        match (a.count, b.count) {
            (0, _) => b,
            (_, 0) => a,
            _ => Bucket {
                sum: a.sum + b.sum,
                count: a.count + b.count,
                max: a.max.max(b.max),
            },
        }
    }

    /// A point series' mean: of its samples.
    fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / f64::from(self.count))
    }
}

/// Builds one container's series as readings arrive.
#[derive(Debug, Clone)]
pub struct TimelineBuilder {
    width: f64,
    /// The width it started with (the CPU interval), which a rate's window is compared with.
    base: f64,
    series: [Vec<Bucket>; SERIES],
}

impl TimelineBuilder {
    /// Buckets `width` seconds wide to begin with (the CPU interval).
    pub fn new(width: f64) -> Self {
        let width = if width.is_finite() && width > 0.0 {
            width
        } else {
            1.0
        };
        Self {
            width,
            base: width,
            series: Default::default(),
        }
    }

    /// Width of a bucket now.
    pub fn width(&self) -> f64 {
        self.width
    }

    /// Records `value` of a point series (memory) read at `t` seconds after the run's start.
    /// A rate is read over a window ([`Self::record_span`]): given here it is ignored.
    pub fn record(&mut self, series: Series, t: f64, value: f64) {
        debug_assert!(!series.is_rate(), "{series:?} is a rate: record_span");
        if !series.is_rate() {
            self.add_point(series, t, value, value);
        }
    }

    /// Adds a sample of `mean` (the largest in its bucket `max`) at `t`.
    fn add_point(&mut self, series: Series, t: f64, mean: f64, max: f64) {
        if !(t.is_finite() && t >= 0.0 && mean.is_finite() && max.is_finite()) {
            return;
        }
        let mut index = (t / self.width) as usize;
        while index >= MAX_POINTS {
            self.double();
            index = (t / self.width) as usize;
        }
        let s = &mut self.series[series as usize];
        if s.len() <= index {
            s.resize(index + 1, Bucket::default());
        }
        s[index].add(mean, max.max(mean));
    }

    /// Records a rate of `series` (per second) read over the window from `from` to `to`
    /// seconds: each bucket gets the rate times the part of the window it holds. The largest
    /// reading of each is the rate, but a window shorter than a tenth of the starting width
    /// (10 ms at the default CPU interval) counts as its amount spread over that tenth: a
    /// rate over a few ms (a reading squeezed in by a scan, or the last one) is a burst no
    /// interval-long reading shows, and would set a max far above the bucket's CPU.
    pub fn record_span(&mut self, series: Series, from: f64, to: f64, value: f64) {
        let (span, shortest) = (to - from, self.base / 10.0);
        let max = if span < shortest {
            value * span / shortest
        } else {
            value
        };
        self.add_span(series, from, to, value, max);
    }

    /// Adds `value` held from `from` to `to` to the buckets it covers, by the time it covers
    /// in each, with `max` as its largest reading there.
    fn add_span(&mut self, series: Series, from: f64, to: f64, value: f64, max: f64) {
        let finite = [from, to, value, max].iter().all(|v| v.is_finite());
        if !(finite && from >= 0.0 && to > from) {
            return;
        }
        // Edges within a billionth of a bucket of a boundary are on it: float noise must not
        // touch the neighbour by a sliver.
        let buckets = |w: f64| {
            let first = (from / w + 1e-9).floor() as usize;
            let last = ((to / w - 1e-9).ceil() as usize).saturating_sub(1);
            (first, last.max(first))
        };
        let (mut first, mut last) = buckets(self.width);
        while last >= MAX_POINTS {
            self.double();
            (first, last) = buckets(self.width);
        }
        let w = self.width;
        let s = &mut self.series[series as usize];
        if s.len() <= last {
            s.resize(last + 1, Bucket::default());
        }
        for (k, b) in s.iter_mut().enumerate().take(last + 1).skip(first) {
            let covered = to.min((k + 1) as f64 * w) - from.max(k as f64 * w);
            if covered > 0.0 {
                b.add(value * covered, max);
            }
        }
    }

    /// Raises the largest reading of the bucket holding `t`, where it has a reading.
    fn raise_max(&mut self, series: Series, t: f64, max: f64) {
        if !(t.is_finite() && t >= 0.0 && max.is_finite()) {
            return;
        }
        let index = (t / self.width) as usize;
        if let Some(b) = self.series[series as usize]
            .get_mut(index)
            .filter(|b| b.count > 0)
        {
            b.max = b.max.max(max);
        }
    }

    /// Twice as wide buckets: neighbours merged.
    fn double(&mut self) {
        self.width *= 2.0;
        for s in &mut self.series {
            let merged: Vec<Bucket> = s
                .chunks(2)
                .map(|c| Bucket::merge(c[0], c.get(1).copied().unwrap_or_default()))
                .collect();
            *s = merged;
        }
    }

    /// Widens to `width` (a multiple of the current width by a power of two, as another
    /// builder of the same start reaches), so two timelines can be told side by side.
    pub fn widen_to(&mut self, width: f64) {
        while self.width * 1.5 < width {
            self.double();
        }
    }

    /// The wire form, named `name`: series cut to the last bucket with a reading.
    ///
    /// A rate's mean is its integral over the bucket divided by the whole width, also in a
    /// bucket the container lived only part of (its first or last): the buckets then add up
    /// to the total, where dividing by the time covered would spread a short reading over the
    /// whole bucket again. The largest reading is never below the mean shown.
    pub fn finish(&self, name: &str) -> ContainerTimeline {
        let len = self
            .series
            .iter()
            .map(|s| {
                s.iter()
                    .rposition(|b| b.count > 0)
                    .map_or(0, |last| last + 1)
            })
            .max()
            .unwrap_or(0);
        let read =
            |series: Series, i: usize| self.series[series as usize].get(i).filter(|b| b.count > 0);
        let memory = |f: fn(&Bucket) -> f64| -> Vec<u32> {
            let mut last = 0.0;
            (0..len)
                .map(|i| {
                    if let Some(b) = read(Series::Memory, i) {
                        last = f(b);
                    }
                    to_u32((last / 1048576.0).ceil())
                })
                .collect()
        };
        let rate = |series: Series, unit: f64| -> Vec<u32> {
            let means: Vec<f64> = (0..len)
                .map(|i| read(series, i).map_or(0.0, |b| b.sum / self.width / unit))
                .collect();
            round_keeping_total(&means)
        };
        let known = |series: Series, unit: f64| {
            if self.series[series as usize].iter().any(|b| b.count > 0) {
                rate(series, unit)
            } else {
                Vec::new()
            }
        };
        let cpu_millicores = rate(Series::Cpu, 0.001);
        let cpu_millicores_max = cpu_millicores
            .iter()
            .enumerate()
            .map(|(i, m)| {
                read(Series::Cpu, i).map_or(0, |b| to_u32((b.max / 0.001).ceil()).max(*m))
            })
            .collect();
        ContainerTimeline {
            name: name.to_owned(),
            start_seconds: 0.0,
            cpu_millicores,
            cpu_millicores_max,
            memory_mib: memory(|b| b.mean().unwrap_or(0.0)),
            memory_mib_max: memory(|b| b.max),
            network_kib_per_sec: known(Series::Network, 1024.0),
            disk_kib_per_sec: known(Series::Disk, 1024.0),
            run_queue_wait_millicores: known(Series::Wait, 0.001),
            cpu_pressure_percent: known(Series::CpuPressure, 0.01),
        }
    }
}

/// Whole numbers for `values` (non-negative) whose running sums are the values' running sums
/// rounded: each is within one of its value, and all add up to within a half of theirs.
/// Rounding each up instead adds up to one unit per bucket: a short job's buckets would hold
/// far more CPU seconds than it used (0.1 ms per 100 ms bucket, on a job of 2 ms).
fn round_keeping_total(values: &[f64]) -> Vec<u32> {
    let (mut total, mut shown) = (0.0_f64, 0.0);
    values
        .iter()
        .map(|v| {
            total += v.max(0.0);
            let upto = total.round();
            let point = upto - shown;
            shown = upto;
            to_u32(point)
        })
        .collect()
}

fn to_u32(v: f64) -> u32 {
    if v.is_finite() && v > 0.0 {
        v.min(f64::from(u32::MAX)) as u32
    } else {
        0
    }
}

/// Builds the run's timeline from each container's builder, all at the widest width among
/// them (they share the run's start); `None` when no container has a point.
/// Each builder comes with when its container started, seconds after the run's start.
pub fn assemble<'a>(
    builders: impl IntoIterator<Item = (&'a str, &'a TimelineBuilder, f64)>,
) -> Option<Timeline> {
    let builders: Vec<(&str, &TimelineBuilder, f64)> = builders.into_iter().collect();
    let width = builders
        .iter()
        .map(|(_, b, _)| b.width())
        .fold(0.0, f64::max);
    let containers: Vec<ContainerTimeline> = builders
        .iter()
        .map(|(name, b, start)| {
            let mut b = (*b).clone();
            b.widen_to(width);
            ContainerTimeline {
                start_seconds: if start.is_finite() {
                    start.max(0.0)
                } else {
                    0.0
                },
                ..b.finish(name)
            }
        })
        .filter(|c| !c.is_empty())
        .collect();
    (!containers.is_empty()).then_some(Timeline {
        bucket_seconds: width,
        containers,
    })
}

/// Two pieces of one run (node mode across a restart): `later` starts `offset` seconds after
/// `earlier`. Points are re-bucketed at the wider width (doubled further if needed), the
/// rates by the time each covers in the new buckets, so their totals are kept.
pub fn merge(earlier: &Timeline, later: &Timeline, offset: f64) -> Timeline {
    let width = earlier.bucket_seconds.max(later.bucket_seconds);
    let mut builders: Vec<(String, TimelineBuilder)> = Vec::new();
    for (piece, shift) in [(earlier, 0.0), (later, offset.max(0.0))] {
        for c in &piece.containers {
            let at = match builders.iter().position(|(n, _)| *n == c.name) {
                Some(at) => at,
                None => {
                    builders.push((c.name.clone(), TimelineBuilder::new(width)));
                    builders.len() - 1
                }
            };
            let b = &mut builders[at].1;
            let w = piece.bucket_seconds;
            for i in 0..c.len() {
                // Each point holds its mean over its bucket, which now counts by the time it
                // covers in the new ones; its largest reading goes to the one holding its middle.
                let from = shift + c.start_seconds + i as f64 * w;
                let (to, middle) = (from + w, from + w / 2.0);
                let get = |v: &[u32]| v.get(i).copied().map(f64::from);
                if let (Some(mean), Some(max)) =
                    (get(&c.cpu_millicores), get(&c.cpu_millicores_max))
                {
                    b.add_span(Series::Cpu, from, to, mean / 1000.0, 0.0);
                    b.raise_max(Series::Cpu, middle, max / 1000.0);
                }
                if let (Some(mean), Some(max)) = (get(&c.memory_mib), get(&c.memory_mib_max)) {
                    b.add_point(Series::Memory, middle, mean * 1048576.0, max * 1048576.0);
                }
                for (series, points, unit) in [
                    (Series::Network, &c.network_kib_per_sec, 1024.0),
                    (Series::Disk, &c.disk_kib_per_sec, 1024.0),
                    (Series::Wait, &c.run_queue_wait_millicores, 0.001),
                    (Series::CpuPressure, &c.cpu_pressure_percent, 0.01),
                ] {
                    if let Some(v) = get(points) {
                        b.add_span(series, from, to, v * unit, v * unit);
                    }
                }
            }
        }
    }
    assemble(builders.iter().map(|(n, b)| (n.as_str(), b, 0.0))).unwrap_or(Timeline {
        bucket_seconds: width,
        containers: Vec::new(),
    })
}

#[cfg(test)]
mod tests;
