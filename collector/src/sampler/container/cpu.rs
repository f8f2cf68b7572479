//! A container's CPU over the run: the total from the exact counter, the cores samples, and
//! the cgroups' own (smooth) counter, which paces the samples and gives back CPU eBPF lost
//! (docs/cpu-accounting.md).

use std::time::{Duration, Instant};

use summary::{
    Accumulator, SCALE_CORES, SCALE_PERCENT, Source,
    timeline::{Series, TimelineBuilder},
};

use super::timeline::Timeline;
use crate::sampler::rates;

/// One reading of a container's CPU counters.
pub(crate) struct CpuCounters {
    pub(crate) source: Source,
    pub(crate) now: Instant,
    /// CPU ns used during the run (every source measures from the run's start or the
    /// cgroup's creation).
    pub(crate) cumulative_ns: u64,
    /// A counter that advances smoothly (the cgroup's own usage, updated every scheduler
    /// tick), for the cores sample when `cumulative_ns` comes in lumps: eBPF totals move
    /// when a task switches out, so a task that runs alone on a CPU shows its time late.
    /// With a fingerprint of the cgroups it sums, and their counters' sum.
    pub(crate) smooth_ns: Option<(u64, u64)>,
    /// Online CPUs: no window shows more cores than this.
    pub(crate) cpus: u32,
}

/// A container's CPU over the run.
pub(crate) struct Cpu {
    /// Where it comes from, fixed at the first reading so cumulative values never mix
    /// sources; `None` before that.
    pub(crate) source: Option<Source>,
    /// CPU ns over the run.
    pub(crate) ns: u64,
    /// CPU ns its cgroups had used before this collector measured them (cgroups found at
    /// the first scan: a job already running when the collector started), from the cgroups'
    /// own counters. Not in `ns`; node mode adds it to a job's total.
    pub(crate) before_start_ns: u64,
    /// /proc source: clock ticks of its processes over the run.
    pub(crate) proc_ticks: u64,
    /// A reading was tried and neither eBPF nor a cgroup counter could give one.
    pub(crate) cheap_unavailable: bool,
    /// Cores samples, and their share of the CPU limit.
    pub(crate) cores: Accumulator,
    pub(crate) to_limit: Accumulator,
    /// The latest cores sample, for per-interval output.
    pub(crate) last_cores: Option<f64>,
    /// The cumulative counter at the previous reading, and when that was.
    last: Option<(Instant, u64)>,
    /// The span of the last reading (from the one before, or from when the container was
    /// first seen): where [`Cpu::timeline_final`] puts CPU no sample has shown.
    last_span: Option<(Instant, Instant)>,
    /// CPU ns of the total ([`Cpu::total_ns`]) the cores samples have shown, the first
    /// reading's counting as shown. A sample of the exact counter shows what is beyond it,
    /// at most every CPU busy for its window: a read that could not be made consistent
    /// defers a CPU's pending time to the next one, and a slice a smooth sample showed as it
    /// was used is not shown again when the exact counter gets it.
    shown_ns: u64,
    smooth: Smooth,
}

/// The smooth counter (see [`CpuCounters::smooth_ns`]) as last read, and what it says eBPF
/// lost.
#[derive(Default)]
struct Smooth {
    /// Its value at the previous reading, and when that was.
    last: Option<(Instant, u64)>,
    /// Which cgroups it summed (a fingerprint: their set grows as they are found).
    cgroups: u64,
    /// eBPF can miss a context switch and lose the slice it ended (docs/cpu-accounting.md).
    /// From the first reading with both counters on, the smooth counter's growth and the
    /// exact one's are summed here: the first beyond the second is CPU eBPF lost, added to
    /// the total. Windows whose cgroup set changed, or with no smooth reading, add to the
    /// exact sum only, so the correction never counts CPU the exact counter already has.
    growth_ns: u64,
    exact_growth_ns: Option<u64>,
}

impl Smooth {
    /// Takes a reading; returns the start of the window and the counter's growth over it
    /// when that window can give the cores sample (the same cgroups read at both ends).
    fn advance(&mut self, now: Instant, reading: Option<(u64, u64)>) -> Option<(Instant, u64)> {
        let Some((cgroups, value)) = reading else {
            self.last = None;
            return None;
        };
        let same = std::mem::replace(&mut self.cgroups, cgroups) == cgroups;
        let (then, prev) = self.last.replace((now, value))?;
        let window = now.saturating_duration_since(then);
        if window.is_zero() || !same {
            return None;
        }
        Some((then, rates::counter_delta(prev, value)))
    }

    /// Adds a window's growth of the exact counter and, where it gave the sample, of this
    /// one. The sums start at the first window after the first reading with both.
    fn add(&mut self, exact: u64, smooth: Option<u64>, first: bool) {
        if let Some(sum) = &mut self.exact_growth_ns {
            *sum += exact;
        } else if smooth.is_some() && !first {
            self.exact_growth_ns = Some(exact);
        }
        if let (Some(d), Some(_)) = (smooth, self.exact_growth_ns) {
            self.growth_ns += d;
        }
    }

    /// CPU the exact counter lost; 0 without a smooth counter.
    fn lost_ns(&self) -> u64 {
        self.exact_growth_ns
            .map_or(0, |exact| self.growth_ns.saturating_sub(exact))
    }
}

impl Cpu {
    pub(crate) fn new() -> Self {
        Self {
            source: None,
            ns: 0,
            before_start_ns: 0,
            proc_ticks: 0,
            cheap_unavailable: false,
            cores: Accumulator::new(SCALE_CORES),
            to_limit: Accumulator::new(SCALE_PERCENT),
            last_cores: None,
            last: None,
            last_span: None,
            shown_ns: 0,
            smooth: Smooth::default(),
        }
    }

    /// Takes a reading: fixes the source, adds to the total and records the cores sample of
    /// its window on `timeline` (with its share of `limit`, in cores). Returns the
    /// nanoseconds it added to the total.
    pub(crate) fn read(
        &mut self,
        r: &CpuCounters,
        timeline: &mut Timeline,
        limit: Option<f64>,
    ) -> u64 {
        self.source = Some(r.source);
        let first = self.last.is_none();
        let (added, window) = self.record_total(r.now, r.cumulative_ns, r.cpus, timeline);
        let smooth = self.sample_smooth(r.now, r.smooth_ns, r.cpus, timeline, limit);
        self.smooth.add(added, smooth, first);
        if let (None, Some(then)) = (smooth, window) {
            self.sample_exact(then, r.now, r.cpus, timeline, limit);
        }
        added
    }

    /// CPU ns over the run with what eBPF lost ([`Cpu::lost_ns`]).
    pub(crate) fn total_ns(&self) -> u64 {
        self.ns + self.lost_ns()
    }

    /// CPU the exact counter (eBPF) lost, by the cgroups' own counter. 0 without a smooth
    /// counter.
    pub(crate) fn lost_ns(&self) -> u64 {
        self.smooth.lost_ns()
    }

    /// The smooth counter (the cgroups' own usage) at the last reading.
    pub(crate) fn last_smooth_ns(&self) -> Option<u64> {
        self.smooth.last.map(|(_, ns)| ns)
    }

    /// The timeline for the summary: CPU in the total that no sample showed (the smooth
    /// counter lagging the exact one at the last reading, a first reading capped at every
    /// CPU busy) goes into the last reading's span, so the buckets add up to `cpu_seconds`
    /// (less CPU used before the collector started, which has no time on it).
    pub(crate) fn timeline_final(&self, timeline: &Timeline) -> TimelineBuilder {
        let mut t = timeline.clone();
        let rest = self.total_ns().saturating_sub(self.shown_ns);
        if let (true, Some((from, to))) = (rest > 0, self.last_span) {
            // A span too short to see: a millisecond, so the rate stays finite.
            let to = to.max(from + Duration::from_millis(1));
            let rate = rest as f64 / 1e9 / to.saturating_duration_since(from).as_secs_f64();
            t.span(Series::Cpu, from, to, rate);
        }
        t.into_recorded()
    }

    /// The cores sample from the smooth counter, where there is one (the total still comes
    /// from the exact, lumpy one). Without it, [`Cpu::sample_exact`] gives the sample.
    /// Returns the smooth counter's growth over the window when it gave the window's sample.
    fn sample_smooth(
        &mut self,
        now: Instant,
        smooth: Option<(u64, u64)>,
        cpus: u32,
        timeline: &mut Timeline,
        limit: Option<f64>,
    ) -> Option<u64> {
        let (then, delta) = self.smooth.advance(now, smooth)?;
        let window = now.saturating_duration_since(then);
        let (shown, _) = rates::cap_window(delta, window, cpus);
        self.shown_ns += shown;
        let cores = rates::cores_from_ns(shown, window);
        self.record_cores(then, now, cores, timeline, limit);
        Some(delta)
    }

    /// The cores sample of the window from `then` to `now` where the smooth counter gave none
    /// (there is none, it was just found or is gone, or its cgroups changed): what the total
    /// has that no sample showed yet. Every window then has its sample, and the timeline all
    /// of the total.
    fn sample_exact(
        &mut self,
        then: Instant,
        now: Instant,
        cpus: u32,
        timeline: &mut Timeline,
        limit: Option<f64>,
    ) {
        let window = now.saturating_duration_since(then);
        let pending = self.total_ns().saturating_sub(self.shown_ns);
        let (shown, _) = rates::cap_window(pending, window, cpus);
        self.shown_ns += shown;
        let cores = rates::cores_from_ns(shown, window);
        self.record_cores(then, now, cores, timeline, limit);
    }

    /// A cores sample, read over the window from `from` to `now`.
    fn record_cores(
        &mut self,
        from: Instant,
        now: Instant,
        cores: f64,
        timeline: &mut Timeline,
        limit: Option<f64>,
    ) {
        timeline.span(Series::Cpu, from, now, cores);
        self.cores.record(cores);
        self.last_cores = Some(cores);
        if let Some(limit) = limit.filter(|l| *l > 0.0) {
            self.to_limit.record(cores / limit);
        }
    }

    /// Adds one reading of the cumulative counter to the total. Returns the nanoseconds it
    /// added, and when the window it ends started: `None` for the first reading, which has
    /// no window (it adds to the total without a cores sample).
    ///
    /// The first reading's CPU goes on the timeline over the time since the container was
    /// first seen (at most every CPU busy for that time), so the timeline holds the whole
    /// total: in run mode, the command's start when the first reading comes after it.
    fn record_total(
        &mut self,
        now: Instant,
        cumulative_ns: u64,
        cpus: u32,
        timeline: &mut Timeline,
    ) -> (u64, Option<Instant>) {
        let Some((then, prev)) = self.last else {
            self.ns = cumulative_ns;
            self.last = Some((now, cumulative_ns));
            let first_seen = timeline.first_seen;
            self.last_span = Some((first_seen, now));
            let window = now.saturating_duration_since(first_seen);
            let (shown, _) = rates::cap_window(cumulative_ns, window, cpus);
            self.shown_ns = shown;
            let cores = rates::cores_from_ns(shown, window);
            timeline.span(Series::Cpu, first_seen, now, cores);
            return (cumulative_ns, None);
        };
        let window = now.saturating_duration_since(then);
        if window.is_zero() {
            return (0, None);
        }
        let delta = rates::counter_delta(prev, cumulative_ns);
        self.ns += delta;
        self.last = Some((now, cumulative_ns));
        self.last_span = Some((then, now));
        (delta, Some(then))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use summary::Source;

    use super::{Cpu, CpuCounters, Timeline};

    /// Readings every 100 ms: `exact` and `smooth` are the cumulative counters (ms) at each,
    /// `cgroups` the smooth counter's fingerprint.
    fn lost_ms(readings: &[(u64, Option<(u64, u64)>)]) -> u64 {
        let readings: Vec<Reading> = (0..)
            .zip(readings)
            .map(|(i, (exact, smooth))| {
                (
                    ms(100 * i),
                    exact * 1000,
                    smooth.map(|(k, v)| (k, v * 1000)),
                )
            })
            .collect();
        read(&readings).0.lost_ns() / 1_000_000
    }

    /// When after the container was first seen, the exact cumulative counter and the smooth
    /// one with its fingerprint (µs of CPU).
    type Reading = (Duration, u64, Option<(u64, u64)>);

    /// A container's CPU and timeline read at `readings`.
    fn read(readings: &[Reading]) -> (Cpu, Timeline) {
        let (mut cpu, mut timeline) = (Cpu::new(), Timeline::new());
        for (at, exact, smooth) in readings {
            let counters = CpuCounters {
                source: Source::Ebpf,
                now: timeline.first_seen + *at,
                cumulative_ns: exact * 1000,
                smooth_ns: smooth.map(|(k, v)| (k, v * 1000)),
                cpus: 2,
            };
            cpu.read(&counters, &mut timeline, None);
        }
        (cpu, timeline)
    }

    /// Its timeline's CPU buckets add up to its CPU seconds, to within 2 % or half a
    /// millicore over one bucket (the wire's resolution).
    fn assert_buckets_add_up((cpu, timeline): &(Cpu, Timeline)) {
        let t = cpu.timeline_final(timeline);
        let buckets = t.finish("c").cpu_seconds(t.width());
        let width = t.width();
        let total = cpu.total_ns() as f64 / 1e9;
        let within = (0.02 * total).max(0.0005 * width);
        assert!(
            (buckets - total).abs() <= within,
            "{buckets} s in buckets, {total} s read"
        );
    }

    /// The CPU buckets as recorded, before the summary's final touch.
    fn millicores(timeline: &Timeline) -> Vec<u32> {
        timeline.recorded().finish("c").cpu_millicores
    }

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// Issue 21: `sh -c 'sleep 1'` used 2.3 ms of CPU, 1.6 ms of it read 3 ms after the first
    /// reading (541 millicores over those 3 ms), the rest as it ends.
    #[test]
    fn a_sleeping_command_shows_only_the_cpu_it_used() {
        let mut readings = vec![(ms(1), 0, None), (ms(4), 1_623, None)];
        readings.extend((1..=10).map(|i| (ms(4 + 100 * i), 1_623, None)));
        readings.push((ms(1_006), 2_323, None));
        let c = read(&readings);
        let t = c.1.recorded().finish("c");
        assert_eq!(t.len(), 11);
        // Its 1.6 ms over the first 100 ms, and no reading of 541 millicores.
        assert_eq!(t.cpu_millicores[0], 16);
        assert!(t.cpu_millicores_max[0] < 200, "{:?}", t.cpu_millicores_max);
        assert_eq!(t.cpu_millicores[1..10], [0; 9]);
        assert_buckets_add_up(&c);
    }

    #[test]
    fn the_first_reading_s_cpu_is_on_the_timeline() {
        // The command used 30 ms before the first reading, at 50 ms, then a core for a second.
        let mut readings = vec![(ms(50), 30_000, None)];
        readings.extend((1..=10).map(|i| (ms(50 + 100 * i), 30_000 + 100_000 * i, None)));
        let c = read(&readings);
        let t = millicores(&c.1);
        assert_eq!(t[..3], [800, 1000, 1000]);
        assert_eq!(t[10], 500);
        assert_buckets_add_up(&c);
        // CPU from before it was seen, beyond every CPU busy since, is shown in the next
        // window rather than dropped: the buckets still add up.
        let c = read(&[(ms(10), 50_000, None), (ms(110), 50_000, None)]);
        assert_eq!(millicores(&c.1), [470, 30]);
        assert_buckets_add_up(&c);
    }

    /// The cgroup's own counter paces the samples and lags eBPF's total at the last reading
    /// (a short command): the summary's timeline still holds all of the total.
    #[test]
    fn a_smooth_counter_lagging_the_total_at_the_end_is_made_up() {
        let c = read(&[
            (ms(0), 0, Some((1, 0))),
            (ms(100), 20_000, Some((1, 16_000))),
        ]);
        let recorded = c.1.recorded();
        assert!(recorded.finish("c").cpu_seconds(recorded.width()) < 0.019);
        assert_buckets_add_up(&c);
    }

    #[test]
    fn every_window_has_a_sample_whichever_counter_gives_it() {
        // eBPF in lumps, the cgroup's counter pacing the samples; a second cgroup joins at
        // 300 ms (no smooth sample for that window), and the cgroups are gone at the last
        // reading while eBPF gets its last slice.
        let c = read(&[
            (ms(0), 0, Some((1, 0))),
            (ms(100), 100_000, Some((1, 100_000))),
            (ms(200), 150_000, Some((1, 200_000))),
            (ms(300), 300_000, Some((2, 5_300_000))),
            (ms(400), 350_000, Some((2, 5_400_000))),
            (ms(500), 500_000, None),
        ]);
        assert_eq!(c.0.cores.sample_count(), 5);
        assert_eq!(millicores(&c.1), [1000; 5]);
        assert_buckets_add_up(&c);
        // A slice the cgroup's counter showed as it was used is not shown again when the
        // exact counter gets it.
        let c = read(&[
            (ms(0), 0, Some((1, 0))),
            (ms(100), 0, Some((1, 100_000))),
            (ms(200), 100_000, None),
        ]);
        assert_eq!(millicores(&c.1), [1000, 0]);
        assert_buckets_add_up(&c);
        // The exact counter alone: a read of more than every CPU busy is a plateau.
        let c = read(&[
            (ms(0), 0, None),
            (ms(100), 300_000, None),
            (ms(200), 300_000, None),
        ]);
        assert_eq!(millicores(&c.1), [2000, 1000]);
    }

    #[test]
    fn a_slice_the_exact_counter_lost_is_added_from_the_cgroup_counter() {
        // Both agree, in lumps or not: nothing lost.
        assert_eq!(
            lost_ms(&[
                (0, Some((1, 500))),
                (0, Some((1, 600))),
                (200, Some((1, 700)))
            ]),
            0
        );
        // The exact counter misses 100 ms of the 300 the cgroup used.
        let lost = [
            (10, Some((1, 10))),
            (60, Some((1, 110))),
            (110, Some((1, 210))),
            (210, Some((1, 310))),
        ];
        assert_eq!(lost_ms(&lost), 100);
        // A second cgroup joins (its whole counter appears at once): not CPU lost.
        assert_eq!(
            lost_ms(&[
                (0, Some((1, 0))),
                (100, Some((1, 100))),
                (200, Some((2, 5200)))
            ]),
            0
        );
        // The cgroup is gone at the end while the exact counter still gets its last slice.
        assert_eq!(
            lost_ms(&[(0, Some((1, 0))), (0, Some((1, 100))), (100, None)]),
            0
        );
        // Without a smooth counter there is nothing to compare with.
        assert_eq!(lost_ms(&[(0, None), (100, None)]), 0);
    }
}
