//! Per-container state over a run, and how one CPU reading becomes statistics.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    path::PathBuf,
    time::Instant,
};

use summary::{
    Accumulator, Limits, SCALE_BYTES, SCALE_CORES, SCALE_PERCENT, Source,
    timeline::{Series, TimelineBuilder},
};

use crate::{
    output::live::{self, ContainerLabels, LiveMetrics},
    sampler::{grouping::ContainerName, rates},
    sources::{
        cgroupfs::{CgroupPath, MemoryReading},
        starvation::StarvationCounters,
    },
};

/// Per-container state over the run.
pub(super) struct Container {
    /// cgroups its processes have lived in (kept after they go: their CPU still counts).
    pub(super) cgroups: BTreeSet<CgroupPath>,
    /// On hybrid hosts, the v1 memory-controller cgroups of its processes (kept after they
    /// go, like `cgroups`): where its memory is counted when its v2 cgroups count none.
    pub(super) memory_v1: BTreeSet<CgroupPath>,
    /// Memory cgroups given up front (run mode: the command's own, known before any scan
    /// finds a process in it, which a short command may never allow). Read first.
    pub(super) memory_pinned: BTreeSet<CgroupPath>,
    /// The current-usage files of the cgroups its memory came from at the last full reading
    /// (empty for the /proc source): what the CPU tick reads between two full readings.
    pub(super) memory_counters: Vec<PathBuf>,
    /// A CPU-tick memory sample was recorded since the last full reading, which then only
    /// updates the peak, OOM kills and anonymous memory (no sample is recorded twice).
    pub(super) memory_fast_since_slow: bool,
    /// cgroup v2 ids of those paths, for eBPF totals.
    pub(super) cgroup_ids: BTreeSet<u64>,
    pub(super) cpu_cores: Accumulator,
    pub(super) cpu_to_limit: Accumulator,
    pub(super) memory: Accumulator,
    pub(super) memory_to_limit: Accumulator,
    pub(super) rx_rate: Accumulator,
    pub(super) tx_rate: Accumulator,
    /// Latest cores and memory, for per-interval output and live metrics.
    pub(super) last_cores: Option<f64>,
    pub(super) last_memory: Option<u64>,
    /// Cumulative CPU ns at the previous CPU read, and when that was.
    last_cpu: Option<(Instant, u64)>,
    /// The smooth counter at the previous read (see [`CpuReading::smooth_ns`]), and which
    /// cgroups it summed (a fingerprint: their set grows as they are found).
    last_smooth: Option<(Instant, u64)>,
    smooth_cgroups: u64,
    /// eBPF can miss a context switch and lose the slice it ended (docs/cpu-accounting.md).
    /// From the first reading with both counters on, the smooth counter's growth and the
    /// exact one's are summed here: the first beyond the second is CPU eBPF lost, added to
    /// the total ([`Container::cpu_lost_ns`]). Windows whose cgroup set changed, or with no
    /// smooth reading, add to the exact sum only, so the correction never counts CPU the
    /// exact counter already has.
    smooth_growth_ns: u64,
    exact_growth_ns: Option<u64>,
    /// CPU ns over the run.
    pub(super) cpu_ns: u64,
    /// CPU ns its cgroups had used before this collector measured them (cgroups found at
    /// the first scan: a job already running when the collector started), from the cgroups'
    /// own counters. Not in `cpu_ns`; node mode adds it to a job's total.
    pub(super) cpu_before_start_ns: u64,
    /// /proc source: clock ticks of its processes over the run.
    pub(super) proc_ticks: u64,
    /// A CPU reading was tried and neither eBPF nor a cgroup counter could give one.
    pub(super) cheap_unavailable: bool,
    /// CPU ns of the total (`cpu_ns` with [`Container::cpu_lost_ns`]) the cores samples have
    /// shown, the first reading's counting as shown. A sample of the exact counter shows what
    /// is beyond it, at most every CPU busy for its window: a read that could not be made
    /// consistent defers a CPU's pending time to the next one, and a slice a smooth sample
    /// showed as it was used is not shown again when the exact counter gets it.
    shown_ns: u64,
    /// Where this container's CPU comes from, fixed at its first reading so cumulative
    /// values never mix sources; `None` before that.
    pub(super) cpu_source: Option<Source>,
    pub(super) memory_source: Source,
    /// Network namespaces its processes use, as `net:[inode]`.
    pub(super) netns: BTreeSet<u64>,
    /// Live-metric label sets created for it (deleted when it ends).
    pub(super) live_sets: HashSet<ContainerLabels>,
    /// Whether it had live processes at the last scan.
    pub(super) alive: bool,
    pub(super) memory_peak: Option<u64>,
    pub(super) oom_kills: u64,
    pub(super) rx_total: u64,
    pub(super) tx_total: u64,
    pub(super) limits: Option<Limits>,
    /// On hybrid hosts, the v1 `cpu`/`blkio` twins of its processes' cgroups (kept after
    /// they go): where throttling and block I/O are counted.
    pub(super) starvation_v1: BTreeSet<CgroupPath>,
    /// Starvation counters per cgroup: the first reading in the run (zero for a cgroup made
    /// during it) and the latest.
    pub(super) starvation_base: HashMap<CgroupPath, StarvationCounters>,
    pub(super) starvation_last: HashMap<CgroupPath, StarvationCounters>,
    /// The totals last added to the live metrics.
    pub(super) starvation_published: StarvationCounters,
    /// When its starvation counters were last read, and their CPU pressure then (µs).
    pub(super) starvation_seen: Option<(Instant, u64)>,
    /// The CPU quota of its cgroup at the last reading: `Some(None)` for none, `None`
    /// where no cpu controller says.
    pub(super) quota: Option<Option<f64>>,
    /// Block I/O rates, and the totals at the previous reading.
    pub(super) read_rate: Accumulator,
    pub(super) write_rate: Accumulator,
    pub(super) last_io: Option<(Instant, u64, u64)>,
    /// Memory by kind at the largest full reading, and that reading's total.
    pub(super) detail_at_peak: Option<(u64, MemoryReading)>,
    /// Memory event counters (major faults, `high`, `max`) per memory cgroup: first, last.
    pub(super) mem_events: HashMap<CgroupPath, (MemoryEvents, MemoryEvents)>,
    /// Its processes that ended, grouped by command name.
    pub(super) commands: HashMap<String, CommandAgg>,
    /// Run-queue wait over the run.
    pub(super) wait: super::wait::Wait,
    /// Who held the CPU while it waited (eBPF).
    pub(super) behind: super::behind::Attribution,
    /// Its figures over time, from when it was first seen.
    pub(super) timeline: TimelineBuilder,
    /// The span of the last CPU reading (from the one before, or from when it was first
    /// seen): where [`Container::timeline_final`] puts CPU no sample has shown.
    last_cpu_span: Option<(Instant, Instant)>,
    pub(super) first_seen: Instant,
    pub(super) first_seen_wall: std::time::SystemTime,
}

/// Width of a timeline bucket to begin with: the default CPU interval.
const TIMELINE_START_WIDTH: f64 = 0.1;

/// Major faults, `high` and `max` events of a memory cgroup, cumulative.
pub(super) type MemoryEvents = [Option<u64>; 3];

/// Processes of one command name.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct CommandAgg {
    pub(super) processes: u64,
    pub(super) cpu_seconds: f64,
    pub(super) peak_rss: u64,
    pub(super) longest_seconds: f64,
}

impl CommandAgg {
    pub(super) fn add(&mut self, processes: u64, cpu_seconds: f64, rss: u64, lifetime: f64) {
        self.processes += processes;
        self.cpu_seconds += cpu_seconds;
        self.peak_rss = self.peak_rss.max(rss);
        self.longest_seconds = self.longest_seconds.max(lifetime);
    }
}

/// Most command names kept per container: a job that runs thousands of differently named
/// scripts keeps the ones with the most CPU.
const MAX_COMMANDS: usize = 1024;

impl Container {
    /// Counts one more process of `name` (or, with `processes` 0, corrects the CPU of one
    /// already counted).
    pub(super) fn count_command(
        &mut self,
        name: &str,
        processes: u64,
        cpu_seconds: f64,
        rss: u64,
        lifetime: f64,
    ) {
        if !self.commands.contains_key(name) && self.commands.len() >= MAX_COMMANDS {
            let mut by_cpu: Vec<(String, f64)> = self
                .commands
                .iter()
                .map(|(n, c)| (n.clone(), c.cpu_seconds))
                .collect();
            by_cpu.sort_by(|a, b| b.1.total_cmp(&a.1));
            for (n, _) in by_cpu.into_iter().skip(MAX_COMMANDS / 2) {
                self.commands.remove(&n);
            }
        }
        self.commands.entry(name.to_owned()).or_default().add(
            processes,
            cpu_seconds,
            rss,
            lifetime,
        );
    }
}

impl Container {
    pub(super) fn new(limits: Option<Limits>) -> Self {
        Self {
            cgroups: BTreeSet::new(),
            memory_v1: BTreeSet::new(),
            memory_pinned: BTreeSet::new(),
            memory_counters: Vec::new(),
            memory_fast_since_slow: false,
            cgroup_ids: BTreeSet::new(),
            cpu_cores: Accumulator::new(SCALE_CORES),
            cpu_to_limit: Accumulator::new(SCALE_PERCENT),
            memory: Accumulator::new(SCALE_BYTES),
            memory_to_limit: Accumulator::new(SCALE_PERCENT),
            rx_rate: Accumulator::new(SCALE_BYTES),
            tx_rate: Accumulator::new(SCALE_BYTES),
            last_cores: None,
            last_memory: None,
            last_cpu: None,
            last_smooth: None,
            smooth_cgroups: 0,
            smooth_growth_ns: 0,
            exact_growth_ns: None,
            cpu_ns: 0,
            cpu_before_start_ns: 0,
            proc_ticks: 0,
            cheap_unavailable: false,
            shown_ns: 0,
            last_cpu_span: None,
            cpu_source: None,
            memory_source: Source::Proc,
            netns: BTreeSet::new(),
            live_sets: HashSet::new(),
            alive: false,
            memory_peak: None,
            oom_kills: 0,
            rx_total: 0,
            tx_total: 0,
            limits,
            starvation_v1: BTreeSet::new(),
            starvation_base: HashMap::new(),
            starvation_last: HashMap::new(),
            starvation_published: StarvationCounters::default(),
            starvation_seen: None,
            quota: None,
            read_rate: Accumulator::new(SCALE_BYTES),
            write_rate: Accumulator::new(SCALE_BYTES),
            last_io: None,
            detail_at_peak: None,
            mem_events: HashMap::new(),
            commands: HashMap::new(),
            wait: super::wait::Wait::default(),
            behind: Default::default(),
            timeline: TimelineBuilder::new(TIMELINE_START_WIDTH),
            first_seen: Instant::now(),
            first_seen_wall: std::time::SystemTime::now(),
        }
    }

    /// The cores sample from the smooth counter, where there is one (the total still comes
    /// from the exact, lumpy one). Without it, [`Container::sample_exact`] gives the sample.
    /// Returns the smooth counter's growth over the window when it gave the window's sample
    /// (the same cgroups were read at both ends).
    fn sample_smooth(
        &mut self,
        now: Instant,
        smooth: Option<(u64, u64)>,
        cpus: u32,
    ) -> Option<u64> {
        let Some((cgroups, value)) = smooth else {
            self.last_smooth = None;
            return None;
        };
        let same = std::mem::replace(&mut self.smooth_cgroups, cgroups) == cgroups;
        let (then, prev) = self.last_smooth.replace((now, value))?;
        let window = now.saturating_duration_since(then);
        if window.is_zero() || !same {
            return None;
        }
        let delta = rates::counter_delta(prev, value);
        let (shown, _) = rates::cap_window(delta, window, cpus);
        self.shown_ns += shown;
        self.record_cores(then, now, rates::cores_from_ns(shown, window));
        Some(delta)
    }

    /// The cores sample of the window from `then` to `now` where the smooth counter gave none
    /// (there is none, it was just found or is gone, or its cgroups changed): what the total
    /// has that no sample showed yet. Every window then has its sample, and the timeline all
    /// of the total.
    fn sample_exact(&mut self, then: Instant, now: Instant, cpus: u32) {
        let window = now.saturating_duration_since(then);
        let pending = (self.cpu_ns + self.cpu_lost_ns()).saturating_sub(self.shown_ns);
        let (shown, _) = rates::cap_window(pending, window, cpus);
        self.shown_ns += shown;
        self.record_cores(then, now, rates::cores_from_ns(shown, window));
    }

    /// The timeline for the summary: CPU in the total that no sample showed (the smooth
    /// counter lagging the exact one at the last reading, a first reading capped at every
    /// CPU busy) goes into the last reading's span, so the buckets add up to `cpu_seconds`
    /// (less CPU used before the collector started, which has no time on it).
    pub(super) fn timeline_final(&self) -> TimelineBuilder {
        let mut t = self.timeline.clone();
        let rest = (self.cpu_ns + self.cpu_lost_ns()).saturating_sub(self.shown_ns);
        if let (true, Some((from, to))) = (rest > 0, self.last_cpu_span) {
            let at = |i: Instant| i.saturating_duration_since(self.first_seen).as_secs_f64();
            // A span too short to see: a millisecond, so the rate stays finite.
            let to = to.max(from + std::time::Duration::from_millis(1));
            let rate = rest as f64 / 1e9 / to.saturating_duration_since(from).as_secs_f64();
            t.record_span(Series::Cpu, at(from), at(to), rate);
        }
        t
    }

    /// CPU the exact counter (eBPF) lost, by the cgroups' own counter: see
    /// `smooth_growth_ns`. 0 without a smooth counter.
    pub(super) fn cpu_lost_ns(&self) -> u64 {
        self.exact_growth_ns
            .map_or(0, |exact| self.smooth_growth_ns.saturating_sub(exact))
    }

    /// A figure of the timeline, read at `at`.
    pub(super) fn timeline_at(&mut self, series: Series, at: Instant, value: f64) {
        let t = at.saturating_duration_since(self.first_seen).as_secs_f64();
        self.timeline.record(series, t, value);
    }

    /// A rate of the timeline that held from `from` to `to` (read over that window).
    pub(super) fn timeline_span(&mut self, series: Series, from: Instant, to: Instant, value: f64) {
        let at = |i: Instant| i.saturating_duration_since(self.first_seen).as_secs_f64();
        self.timeline.record_span(series, at(from), at(to), value);
    }

    /// A cores sample, read over the window from `from` to `now`.
    fn record_cores(&mut self, from: Instant, now: Instant, cores: f64) {
        self.timeline_span(Series::Cpu, from, now, cores);
        self.cpu_cores.record(cores);
        self.last_cores = Some(cores);
        if let Some(limit) = self.limits.and_then(|l| l.cpu_cores).filter(|l| *l > 0.0) {
            self.cpu_to_limit.record(cores / limit);
        }
    }

    /// Records one CPU reading: cumulative ns used during the run (every source measures
    /// from the run's start or the cgroup's creation). Returns the nanoseconds it added to
    /// the run's total, and when the window it ends started: `None` for the first reading,
    /// which has no window (it adds to the total without a cores sample).
    ///
    /// The first reading's CPU goes on the timeline over the time since the container was
    /// first seen (at most every CPU busy for that time), so the timeline holds the whole
    /// total: in run mode, the command's start when the first reading comes after it.
    fn record_cpu_total(
        &mut self,
        now: Instant,
        cumulative_ns: u64,
        cpus: u32,
    ) -> (u64, Option<Instant>) {
        let Some((then, prev)) = self.last_cpu else {
            self.cpu_ns = cumulative_ns;
            self.last_cpu = Some((now, cumulative_ns));
            self.last_cpu_span = Some((self.first_seen, now));
            let window = now.saturating_duration_since(self.first_seen);
            let (shown, _) = rates::cap_window(cumulative_ns, window, cpus);
            self.shown_ns = shown;
            let cores = rates::cores_from_ns(shown, window);
            self.timeline_span(Series::Cpu, self.first_seen, now, cores);
            return (cumulative_ns, None);
        };
        let window = now.saturating_duration_since(then);
        if window.is_zero() {
            return (0, None);
        }
        let delta = rates::counter_delta(prev, cumulative_ns);
        self.cpu_ns += delta;
        self.last_cpu = Some((now, cumulative_ns));
        self.last_cpu_span = Some((then, now));
        (delta, Some(then))
    }

    /// The smooth counter (the cgroups' own usage) at the last CPU reading.
    pub(super) fn last_smooth_ns(&self) -> Option<u64> {
        self.last_smooth.map(|(_, ns)| ns)
    }

    /// Records one memory sample (bytes in use now) with its share of the limit.
    pub(super) fn record_memory(&mut self, bytes: u64) {
        self.timeline_at(Series::Memory, Instant::now(), bytes as f64);
        self.memory.record(bytes as f64);
        self.last_memory = Some(bytes);
        if let Some(limit) = self.limits.and_then(|l| l.memory_bytes).filter(|l| *l > 0) {
            self.memory_to_limit.record(bytes as f64 / limit as f64);
        }
    }

    /// The true peak: the cgroup's own high-water mark (or the kernel's figure for run mode's
    /// children), never below a sampled value; `None` where neither is known.
    pub(super) fn true_memory_peak(&self) -> Option<u64> {
        let sampled = self.memory.stats().peak as u64;
        self.memory_peak.map(|p| p.max(sampled))
    }

    /// Takes a CPU reading from `source`: fixes the source, records it, and feeds the live
    /// metrics while the container is alive.
    pub(super) fn cpu_reading(&mut self, reading: CpuReading<'_>) {
        self.cpu_source = Some(reading.source);
        let first = self.last_cpu.is_none();
        let (added, window) =
            self.record_cpu_total(reading.now, reading.cumulative_ns, reading.cpus);
        let smooth = self.sample_smooth(reading.now, reading.smooth_ns, reading.cpus);
        if let Some(exact) = &mut self.exact_growth_ns {
            *exact += added;
        } else if smooth.is_some() && !first {
            self.exact_growth_ns = Some(added);
        }
        if let (Some(d), Some(_)) = (smooth, self.exact_growth_ns) {
            self.smooth_growth_ns += d;
        }
        if let (None, Some(then)) = (smooth, window) {
            self.sample_exact(then, reading.now, reading.cpus);
        }
        if let Some(live) = reading.live.filter(|_| self.alive) {
            let l = self.live_labels(reading.name, reading.id, reading.source);
            live.add_cpu_seconds(&l, added as f64 / 1e9);
        }
    }

    /// The label set for a figure of this container from `source`, remembered for deletion.
    pub(super) fn live_labels(
        &mut self,
        name: &ContainerName,
        id: &summary::Execution,
        source: Source,
    ) -> ContainerLabels {
        let l = live::labels(name.as_str(), id, source);
        self.live_sets.insert(l.clone());
        l
    }
}

/// One CPU reading of a container, with what labels its live metric.
pub(super) struct CpuReading<'a> {
    pub(super) name: &'a ContainerName,
    pub(super) id: &'a summary::Execution,
    pub(super) source: Source,
    pub(super) now: Instant,
    pub(super) cumulative_ns: u64,
    /// A counter that advances smoothly (the cgroup's own usage, updated every scheduler
    /// tick), for the cores sample when `cumulative_ns` comes in lumps: eBPF totals move
    /// when a task switches out, so a task that runs alone on a CPU shows its time late.
    /// With a fingerprint of the cgroups it sums, and their counters' sum.
    pub(super) smooth_ns: Option<(u64, u64)>,
    pub(super) cpus: u32,
    pub(super) live: Option<&'a LiveMetrics>,
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use summary::Source;

    use super::{Container, CpuReading};
    use crate::sampler::grouping::ContainerName;

    /// Readings every 100 ms: `exact` and `smooth` are the cumulative counters (ms) at each,
    /// `cgroups` the smooth counter's fingerprint.
    fn lost_ms(readings: &[(u64, Option<(u64, u64)>)]) -> u64 {
        let mut c = Container::new(None);
        let name = ContainerName::mapped("c", None);
        let id = summary::Execution::default();
        let start = Instant::now();
        for (i, (exact, smooth)) in readings.iter().enumerate() {
            c.cpu_reading(CpuReading {
                name: &name,
                id: &id,
                source: Source::Ebpf,
                now: start + Duration::from_millis(100 * i as u64),
                cumulative_ns: exact * 1_000_000,
                smooth_ns: smooth.map(|(k, v)| (k, v * 1_000_000)),
                cpus: 2,
                live: None,
            });
        }
        c.cpu_lost_ns() / 1_000_000
    }

    /// When after the container was first seen, the exact cumulative counter and the smooth
    /// one with its fingerprint (µs of CPU).
    type Reading = (Duration, u64, Option<(u64, u64)>);

    /// A container read at `readings`.
    fn read(readings: &[Reading]) -> Container {
        let mut c = Container::new(None);
        let name = ContainerName::mapped("c", None);
        let id = summary::Execution::default();
        for (at, exact, smooth) in readings {
            let now = c.first_seen + *at;
            c.cpu_reading(CpuReading {
                name: &name,
                id: &id,
                source: Source::Ebpf,
                now,
                cumulative_ns: exact * 1000,
                smooth_ns: smooth.map(|(k, v)| (k, v * 1000)),
                cpus: 2,
                live: None,
            });
        }
        c
    }

    /// Its timeline's CPU buckets add up to its CPU seconds, to within 2 % or half a
    /// millicore over one bucket (the wire's resolution).
    fn assert_buckets_add_up(c: &Container) {
        let t = c.timeline_final();
        let buckets = t.finish("c").cpu_seconds(t.width());
        let width = t.width();
        let total = (c.cpu_ns + c.cpu_lost_ns()) as f64 / 1e9;
        let within = (0.02 * total).max(0.0005 * width);
        assert!(
            (buckets - total).abs() <= within,
            "{buckets} s in buckets, {total} s read"
        );
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
        let t = c.timeline.finish("c");
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
        let t = c.timeline.finish("c");
        assert_eq!(t.cpu_millicores[..3], [800, 1000, 1000]);
        assert_eq!(t.cpu_millicores[10], 500);
        assert_buckets_add_up(&c);
        // CPU from before it was seen, beyond every CPU busy since, is shown in the next
        // window rather than dropped: the buckets still add up.
        let c = read(&[(ms(10), 50_000, None), (ms(110), 50_000, None)]);
        assert_eq!(c.timeline.finish("c").cpu_millicores, [470, 30]);
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
        assert!(c.timeline.finish("c").cpu_seconds(c.timeline.width()) < 0.019);
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
        assert_eq!(c.cpu_cores.sample_count(), 5);
        assert_eq!(c.timeline.finish("c").cpu_millicores, [1000; 5]);
        assert_buckets_add_up(&c);
        // A slice the cgroup's counter showed as it was used is not shown again when the
        // exact counter gets it.
        let c = read(&[
            (ms(0), 0, Some((1, 0))),
            (ms(100), 0, Some((1, 100_000))),
            (ms(200), 100_000, None),
        ]);
        assert_eq!(c.timeline.finish("c").cpu_millicores, [1000, 0]);
        assert_buckets_add_up(&c);
        // The exact counter alone: a read of more than every CPU busy is a plateau.
        let c = read(&[
            (ms(0), 0, None),
            (ms(100), 300_000, None),
            (ms(200), 300_000, None),
        ]);
        assert_eq!(c.timeline.finish("c").cpu_millicores, [2000, 1000]);
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
