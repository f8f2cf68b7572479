//! The shape of a run over time: per container, CPU, memory, network and disk in buckets of
//! one width, at most [`MAX_POINTS`] of them, each keeping its mean and (for CPU and memory)
//! its maximum, so a spike is never averaged away.
//!
//! [`TimelineBuilder`] starts with buckets one CPU interval wide and doubles the width
//! (merging neighbours) whenever a series would pass [`MAX_POINTS`], so a run of any length
//! ends with between half and all of that many points, in bounded memory.
//!
//! Wire format (the summary's additive `timeline` field): integers, so a two-hour job with
//! five containers stays within 64 KiB of JSON. CPU in millicores, memory in MiB, network
//! and disk in KiB/s. A bucket without a reading of a figure repeats the one before it (a
//! slow-tick figure such as network is read every `--interval`).

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
    /// Mean and largest CPU sample of each bucket, millicores.
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

    /// The CPU seconds its buckets hold, each `bucket_seconds` wide.
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

const SERIES: usize = 6;

/// One bucket of one series.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Bucket {
    sum: f64,
    count: u32,
    max: f64,
}

impl Bucket {
    fn add(&mut self, v: f64) {
        self.sum += v;
        self.count += 1;
        self.max = if self.count == 1 { v } else { self.max.max(v) };
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

    fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / f64::from(self.count))
    }
}

/// Builds one container's series as readings arrive.
#[derive(Debug, Clone)]
pub struct TimelineBuilder {
    width: f64,
    series: [Vec<Bucket>; SERIES],
}

impl TimelineBuilder {
    /// Buckets `width` seconds wide to begin with (the CPU interval).
    pub fn new(width: f64) -> Self {
        Self {
            width: if width.is_finite() && width > 0.0 {
                width
            } else {
                1.0
            },
            series: Default::default(),
        }
    }

    /// Width of a bucket now.
    pub fn width(&self) -> f64 {
        self.width
    }

    /// Records `value` of `series` at `t` seconds after the run's start.
    pub fn record(&mut self, series: Series, t: f64, value: f64) {
        if !t.is_finite() || t < 0.0 || !value.is_finite() {
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
        s[index].add(value);
    }

    /// Records `value` of `series` as holding over the whole span from `from` to `to` seconds
    /// (a rate read every `--interval` describes the interval before it): once in every
    /// bucket the span touches.
    pub fn record_span(&mut self, series: Series, from: f64, to: f64, value: f64) {
        if !(from.is_finite() && to.is_finite() && from >= 0.0 && to >= from) {
            return;
        }
        while (to / self.width) as usize >= MAX_POINTS {
            self.double();
        }
        let (first, last) = ((from / self.width) as usize, (to / self.width) as usize);
        for k in first..=last {
            self.record(series, (k as f64 + 0.5) * self.width, value);
        }
    }

    /// Records a whole bucket's mean and maximum (a point of an earlier timeline).
    fn record_point(&mut self, series: Series, t: f64, mean: f64, max: f64) {
        self.record(series, t, mean);
        let index = (t / self.width) as usize;
        if let Some(b) = self.series[series as usize].get_mut(index) {
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
        let held = |series: Series, f: fn(&Bucket) -> Option<f64>, scale: f64| -> Vec<u32> {
            let s = &self.series[series as usize];
            let mut last = 0.0;
            (0..len)
                .map(|i| {
                    if let Some(v) = s.get(i).and_then(f) {
                        last = v;
                    }
                    to_u32((last / scale).ceil())
                })
                .collect()
        };
        let mean = |b: &Bucket| b.mean();
        let max = |b: &Bucket| (b.count > 0).then_some(b.max);
        let any = |series: Series| self.series[series as usize].iter().any(|b| b.count > 0);
        let known = |series: Series, scale: f64| {
            if any(series) {
                held(series, mean, scale)
            } else {
                Vec::new()
            }
        };
        let kib = |series: Series| known(series, 1024.0);
        ContainerTimeline {
            name: name.to_owned(),
            start_seconds: 0.0,
            cpu_millicores: held(Series::Cpu, mean, 0.001),
            cpu_millicores_max: held(Series::Cpu, max, 0.001),
            memory_mib: held(Series::Memory, mean, 1048576.0),
            memory_mib_max: held(Series::Memory, max, 1048576.0),
            network_kib_per_sec: kib(Series::Network),
            disk_kib_per_sec: kib(Series::Disk),
            run_queue_wait_millicores: known(Series::Wait, 0.001),
            cpu_pressure_percent: known(Series::CpuPressure, 0.01),
        }
    }
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
/// `earlier`. Points are re-bucketed at the wider width (doubled further if needed).
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
            for i in 0..c.len() {
                let t = shift + c.start_seconds + (i as f64 + 0.5) * piece.bucket_seconds;
                let get = |v: &[u32]| v.get(i).copied().map(f64::from);
                if let (Some(mean), Some(max)) =
                    (get(&c.cpu_millicores), get(&c.cpu_millicores_max))
                {
                    b.record_point(Series::Cpu, t, mean / 1000.0, max / 1000.0);
                }
                if let (Some(mean), Some(max)) = (get(&c.memory_mib), get(&c.memory_mib_max)) {
                    b.record_point(Series::Memory, t, mean * 1048576.0, max * 1048576.0);
                }
                if let Some(v) = get(&c.network_kib_per_sec) {
                    b.record(Series::Network, t, v * 1024.0);
                }
                if let Some(v) = get(&c.disk_kib_per_sec) {
                    b.record(Series::Disk, t, v * 1024.0);
                }
                if let Some(v) = get(&c.run_queue_wait_millicores) {
                    b.record(Series::Wait, t, v / 1000.0);
                }
                if let Some(v) = get(&c.cpu_pressure_percent) {
                    b.record(Series::CpuPressure, t, v / 100.0);
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
