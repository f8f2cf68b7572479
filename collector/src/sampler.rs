//! The measuring engine: turns periodic readings into per-container and per-process
//! statistics and, at the end, a [`RunSummary`].
//!
//! Two ticks drive it:
//! - [`Sampler::cpu_tick`] (default every 100 ms) reads container CPU from cheap counters:
//!   eBPF totals, else cgroup `cpu.stat`/`cpuacct.usage`. Nothing is done there on /proc.
//! - [`Sampler::slow_tick`] (every `--interval`) scans /proc: processes, their containers,
//!   memory, network and system figures. With no cheap CPU counter it also derives container
//!   CPU from process tick deltas.
//!
//! Memory stays flat over a run: statistics go into fixed-size HDR histograms, processes that
//! exited are kept only while they can still be among the top ones.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    os::unix::fs::MetadataExt,
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use summary::{
    Accumulator, CollectorInfo, ContainerSummary, Histograms, Limits, NetworkSummary,
    ProcessSummary, RunSummary, SCALE_BYTES, SCALE_CORES, SCALE_PERCENT, Source,
};

use crate::{
    cgroupfs::{self, Mounts},
    containers::Grouper,
    cpu_totals::{ExitedProcess, aggregate_exits},
    live::{self, ContainerLabels, LiveMetrics},
    procfs::{self, SystemCpu},
    rates::{self, CounterRate},
    source::CpuSource,
};

/// A job's own system statistics and start, for [`Sampler::summary_of`].
pub struct JobSystem<'a> {
    pub start: SystemTime,
    pub cpu: &'a Accumulator,
    pub mem: &'a Accumulator,
    pub samples: u64,
}

/// Which processes a sampler measures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Everything visible under the proc root (sidecar mode).
    All,
    /// Processes whose cgroup v2 path is this path or below it (`collector run`).
    Cgroup(String),
    /// A process and its descendants (`collector run` where no cgroup could be made).
    Tree(i32),
}

/// What the sampler needs to know besides the machine.
pub struct SamplerConfig {
    pub proc_root: PathBuf,
    pub top: usize,
    pub scope: Scope,
    pub grouper: Grouper,
    pub limits: HashMap<String, Limits>,
    /// Name of the single container in run mode (all processes of the scope), else `None`.
    pub single_container: Option<String>,
    pub mode: &'static str,
    /// Job identity for the live metrics' labels.
    pub identity: summary::Execution,
    /// Live metrics to feed, when `--metrics-addr` is set.
    pub live: Option<std::sync::Arc<LiveMetrics>>,
    /// Leave out the collector's own network namespace: in run mode the command usually
    /// shares the host's, whose traffic is not the command's.
    pub exclude_own_netns: bool,
}

/// Per-container state over the run.
struct Container {
    /// cgroup paths its processes have lived in (kept after they go: their CPU still counts).
    cgroups: BTreeSet<String>,
    /// cgroup v2 ids of those paths, for eBPF totals.
    cgroup_ids: BTreeSet<u64>,
    cpu_cores: Accumulator,
    cpu_to_limit: Accumulator,
    memory: Accumulator,
    memory_to_limit: Accumulator,
    rx_rate: Accumulator,
    tx_rate: Accumulator,
    /// Latest cores and memory, for per-interval output and live metrics.
    last_cores: Option<f64>,
    last_memory: Option<u64>,
    /// Cumulative CPU ns at the previous CPU read, and when that was.
    last_cpu: Option<(Instant, u64)>,
    /// CPU ns over the run.
    cpu_ns: u64,
    /// /proc source: clock ticks of its processes over the run.
    proc_ticks: u64,
    /// A CPU reading was tried and neither eBPF nor a cgroup counter could give one.
    cheap_unavailable: bool,
    /// CPU ns read but not yet shown in a window: a read that could not be made consistent
    /// defers a CPU's pending time to the next one, and no window may exceed all CPUs busy.
    carry_ns: u64,
    /// Where this container's CPU comes from, fixed at its first reading so cumulative
    /// values never mix sources; `None` before that.
    cpu_source: Option<Source>,
    memory_source: Source,
    /// Network namespaces its processes use, as `net:[inode]`.
    netns: BTreeSet<u64>,
    /// Live-metric label sets created for it (deleted when it ends).
    live_sets: HashSet<ContainerLabels>,
    /// Whether it had live processes at the last scan.
    alive: bool,
    memory_peak: Option<u64>,
    oom_kills: u64,
    rx_total: u64,
    tx_total: u64,
    limits: Option<Limits>,
}

impl Container {
    fn new(limits: Option<Limits>) -> Self {
        Self {
            cgroups: BTreeSet::new(),
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
            cpu_ns: 0,
            proc_ticks: 0,
            cheap_unavailable: false,
            carry_ns: 0,
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
        }
    }

    /// Records one CPU reading: cumulative ns used during the run (every source measures
    /// from the run's start or the cgroup's creation). The first reading has no window, so it
    /// adds to the total without a cores sample.
    /// Returns the nanoseconds this reading added to the run's total.
    fn record_cpu(&mut self, now: Instant, cumulative_ns: u64, cpus: u32) -> u64 {
        let Some((then, prev)) = self.last_cpu else {
            self.cpu_ns = cumulative_ns;
            self.last_cpu = Some((now, cumulative_ns));
            return cumulative_ns;
        };
        let window = now.saturating_duration_since(then);
        if window.is_zero() {
            return 0;
        }
        let delta = rates::counter_delta(prev, cumulative_ns);
        self.cpu_ns += delta;
        let (shown, carry) = rates::cap_window(delta + self.carry_ns, window, cpus);
        self.carry_ns = carry;
        let cores = rates::cores_from_ns(shown, window);
        self.cpu_cores.record(cores);
        self.last_cores = Some(cores);
        if let Some(limit) = self.limits.and_then(|l| l.cpu_cores).filter(|l| *l > 0.0) {
            self.cpu_to_limit.record(cores / limit);
        }
        self.last_cpu = Some((now, cumulative_ns));
        delta
    }

    /// Takes a CPU reading from `source`: fixes the source, records it, and feeds the live
    /// metrics while the container is alive.
    #[allow(clippy::too_many_arguments)]
    fn cpu_reading(
        &mut self,
        name: &str,
        id: &summary::Execution,
        source: Source,
        now: Instant,
        cumulative_ns: u64,
        cpus: u32,
        live: Option<&LiveMetrics>,
    ) {
        self.cpu_source = Some(source);
        let added = self.record_cpu(now, cumulative_ns, cpus);
        if let Some(live) = live.filter(|_| self.alive) {
            let l = self.live_labels(name, id, source);
            live.add_cpu_seconds(&l, added as f64 / 1e9);
        }
    }

    /// The label set for a figure of this container from `source`, remembered for deletion.
    fn live_labels(
        &mut self,
        name: &str,
        id: &summary::Execution,
        source: Source,
    ) -> ContainerLabels {
        let l = live::labels(name, id, source);
        self.live_sets.insert(l.clone());
        l
    }
}

/// A live process as last seen.
struct Process {
    start_ticks: u64,
    comm: String,
    container: String,
    /// cgroup v2 path, for scoping and for the container's cgroup set.
    cgroup_v2: Option<String>,
    cgroup_v1: Option<String>,
    /// Network namespace inode.
    netns: Option<u64>,
    ppid: i32,
    first_ticks: u64,
    last_ticks: u64,
    /// Ticks used since the previous scan (for the /proc CPU fallback).
    window_ticks: u64,
    peak_cpu_percent: f64,
    /// Resident memory at the last scan, and the most seen.
    rss: u64,
    peak_rss: u64,
    seen_at_slow_tick: u64,
    /// Scans it has been seen in.
    scans: u32,
    /// Exact CPU seconds and lifetime average from its eBPF exit record, once it arrived.
    exact_exit: Option<(f64, f64)>,
}

/// Network namespace counters.
struct NetNs {
    rx: CounterRate,
    tx: CounterRate,
}

pub struct Sampler {
    cfg: SamplerConfig,
    mounts: Mounts,
    cpu: CpuSource,
    ticks_per_sec: u64,
    /// Online CPUs: no window can show more cores than this.
    cpus: u32,
    start_wall: SystemTime,
    slow_ticks: u64,
    system_cpu: Accumulator,
    system_mem: Accumulator,
    last_system: Option<(Instant, SystemCpu)>,
    last_slow: Option<Instant>,
    containers: BTreeMap<String, Container>,
    processes: HashMap<i32, Process>,
    /// Processes that ended, kept only while they can be among the top ones.
    exited: Vec<ProcessSummary>,
    netns: HashMap<u64, NetNs>,
    /// cgroup v2 id -> container name, for eBPF exit records.
    container_of_cgroup: HashMap<u64, String>,
    /// cgroup paths seen at the first scan: their counters started before the run.
    preexisting: HashSet<String>,
    /// Per-path baselines of cgroup CPU counters (cgroup source).
    cgroup_cpu_baseline: HashMap<String, u64>,
    /// Last cgroup CPU reading per path, kept when the cgroup disappears.
    cgroup_cpu_last: HashMap<String, u64>,
    /// CPU of exited threads whose process (thread-group leader) has not exited yet, with the
    /// slow tick they were last added at (dropped a few ticks after the process is gone).
    pending_threads: HashMap<u32, (u64, u64)>,
    /// Per-path memory.events oom_kill baselines.
    oom_baseline: HashMap<String, u64>,
    /// Errors reading /proc or cgroupfs (skipped and logged at debug level).
    pub read_errors: u64,
    /// Reused buffer for the per-process files.
    reader: procfs::FileReader,
    /// Processes settled at the last scan (node mode reads their environment).
    new_at_last_scan: Vec<i32>,
    /// Processes first seen at the last scan.
    first_seen_at_last_scan: Vec<i32>,
    /// Per-container job identity for live-metric labels (node mode); else `cfg.identity`.
    identities: HashMap<String, summary::Execution>,
    /// Latest system figures, for per-interval output.
    last_cpu_percent: Option<f64>,
    last_mem_used: Option<u64>,
}

/// The latest figures, printed once per interval.
#[derive(Debug, serde::Serialize)]
pub struct IntervalReport {
    pub cpu_total_percent: Option<f64>,
    pub mem_used_bytes: Option<u64>,
    pub containers: Vec<ContainerNow>,
}

#[derive(Debug, serde::Serialize)]
pub struct ContainerNow {
    pub name: String,
    pub cpu_cores: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub cpu_seconds: f64,
}

impl Sampler {
    pub fn new(cfg: SamplerConfig, cpu: CpuSource) -> anyhow::Result<Self> {
        let mounts = Mounts::discover().unwrap_or_default();
        Ok(Self {
            cfg,
            mounts,
            cpu,
            ticks_per_sec: procfs::clock_ticks_per_sec(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            start_wall: SystemTime::now(),
            slow_ticks: 0,
            system_cpu: Accumulator::new(SCALE_PERCENT),
            system_mem: Accumulator::new(SCALE_BYTES),
            last_system: None,
            last_slow: None,
            containers: BTreeMap::new(),
            processes: HashMap::new(),
            exited: Vec::new(),
            netns: HashMap::new(),
            container_of_cgroup: HashMap::new(),
            preexisting: HashSet::new(),
            cgroup_cpu_baseline: HashMap::new(),
            cgroup_cpu_last: HashMap::new(),
            oom_baseline: HashMap::new(),
            pending_threads: HashMap::new(),
            read_errors: 0,
            reader: procfs::FileReader::default(),
            new_at_last_scan: Vec::new(),
            first_seen_at_last_scan: Vec::new(),
            identities: HashMap::new(),
            last_cpu_percent: None,
            last_mem_used: None,
        })
    }

    /// Whether container CPU comes from a cheap counter (so `cpu_tick` should run often).
    pub fn cpu_is_cheap(&self) -> bool {
        !matches!(self.cpu, CpuSource::Proc { .. })
    }

    pub fn cpu_source(&self) -> &CpuSource {
        &self.cpu
    }

    /// The latest figures (per-interval output).
    pub fn interval_report(&self) -> IntervalReport {
        let live: HashSet<&str> = self
            .processes
            .values()
            .map(|p| p.container.as_str())
            .collect();
        IntervalReport {
            cpu_total_percent: self.last_cpu_percent,
            mem_used_bytes: self.last_mem_used,
            containers: self
                .containers
                .iter()
                .filter(|(name, _)| live.contains(name.as_str()))
                .map(|(name, c)| ContainerNow {
                    name: name.clone(),
                    cpu_cores: c.last_cores,
                    memory_bytes: c.last_memory,
                    cpu_seconds: c.cpu_ns as f64 / 1e9,
                })
                .collect(),
        }
    }

    /// Number of live processes being measured.
    pub fn process_count(&self) -> usize {
        self.processes.len()
    }

    /// Reads container CPU from the cheap counters: eBPF for containers grouped by a cgroup v2
    /// path, cgroup `cpu.stat`/`cpuacct.usage` for the others where readable. Containers with
    /// neither get /proc tick deltas at the slow tick. Also drains eBPF exit records.
    pub fn cpu_tick(&mut self) {
        let now = Instant::now();
        let mut totals = None;
        if let CpuSource::Ebpf(ebpf) = &mut self.cpu {
            match ebpf.cgroup_totals() {
                Ok(t) => totals = Some(t.clone()),
                Err(e) => {
                    self.read_errors += 1;
                    tracing::warn!("reading eBPF CPU totals: {e}");
                }
            }
            let exits = ebpf.drain_exits();
            ebpf.flush_logs();
            let exits = aggregate_exits(&exits);
            self.record_exits(exits);
        }
        let cgroup_allowed = !matches!(self.cpu, CpuSource::Proc { .. });
        for (name, c) in self.containers.iter_mut() {
            let use_ebpf =
                matches!(c.cpu_source, None | Some(Source::Ebpf)) && !c.cgroup_ids.is_empty();
            if let (true, Some(totals)) = (use_ebpf, &totals) {
                let ns = c.cgroup_ids.iter().filter_map(|id| totals.get(id)).sum();
                let id = self
                    .identities
                    .get(name.as_str())
                    .unwrap_or(&self.cfg.identity);
                c.cpu_reading(
                    name,
                    id,
                    Source::Ebpf,
                    now,
                    ns,
                    self.cpus,
                    self.cfg.live.as_deref(),
                );
                continue;
            }
            if !matches!(c.cpu_source, None | Some(Source::Cgroup)) {
                continue;
            }
            if !cgroup_allowed {
                c.cheap_unavailable = true;
                continue;
            }
            let mut sum = 0;
            let mut any = false;
            for path in &c.cgroups {
                let (v2, v1) = split_path(path);
                let value = cgroupfs::read_cpu_usage_ns(&self.mounts, v2, v1)
                    .or_else(|| self.cgroup_cpu_last.get(path).copied());
                if let Some(v) = value {
                    any = true;
                    self.cgroup_cpu_last.insert(path.clone(), v);
                    let base = self.cgroup_cpu_baseline.get(path).copied().unwrap_or(0);
                    sum += v.saturating_sub(base);
                }
            }
            if !any {
                // Neither eBPF nor a readable cgroup counter: /proc it is.
                c.cheap_unavailable |= c.cpu_source.is_none();
            } else {
                let id = self
                    .identities
                    .get(name.as_str())
                    .unwrap_or(&self.cfg.identity);
                c.cpu_reading(
                    name,
                    id,
                    Source::Cgroup,
                    now,
                    sum,
                    self.cpus,
                    self.cfg.live.as_deref(),
                );
            }
        }
    }

    /// Scans /proc: processes, containers, memory, network and system figures.
    pub fn slow_tick(&mut self) {
        let now = Instant::now();
        let window = self.last_slow.map(|t| now.saturating_duration_since(t));
        self.last_slow = Some(now);
        self.slow_ticks += 1;
        self.sample_system(now);
        self.scan_processes(window);
        let ended = self.mark_alive();
        self.sample_memory();
        self.sample_network(window);
        self.proc_cpu(now);
        self.update_live_health(&ended);
        if let CpuSource::Ebpf(ebpf) = &mut self.cpu
            && let Some(v2) = self.mounts.v2.clone()
        {
            let live = cgroupfs::live_cgroup_ids(&v2);
            if let Err(e) = ebpf.retire_dead(|id| live.contains(&id)) {
                tracing::debug!("retiring removed cgroups from the eBPF map: {e}");
            }
        }
        if self.slow_ticks == 1 {
            // Counters of cgroups that existed before the run started are measured from here.
            for c in self.containers.values() {
                self.preexisting.extend(c.cgroups.iter().cloned());
            }
            {
                for path in &self.preexisting {
                    let (v2, v1) = split_path(path);
                    if let Some(v) = cgroupfs::read_cpu_usage_ns(&self.mounts, v2, v1) {
                        self.cgroup_cpu_baseline.insert(path.clone(), v);
                    }
                }
            }
        }
    }

    /// Health figures, and deletion of the series of containers that ended.
    /// Marks which containers have live processes; returns those that just ended.
    fn mark_alive(&mut self) -> Vec<String> {
        let live_names: HashSet<&str> = self
            .processes
            .values()
            .map(|p| p.container.as_str())
            .collect();
        let mut ended = Vec::new();
        for (name, c) in self.containers.iter_mut() {
            let now_alive = live_names.contains(name.as_str());
            if c.alive && !now_alive {
                ended.push(name.clone());
            }
            c.alive = now_alive;
        }
        ended
    }

    fn update_live_health(&mut self, ended: &[String]) {
        let Some(live) = self.cfg.live.clone() else {
            return;
        };
        live.samples.inc();
        let errors = self.read_errors.saturating_sub(live.errors.get());
        live.errors.inc_by(errors);
        for name in ended {
            if let Some(c) = self.containers.get_mut(name) {
                let sets: Vec<ContainerLabels> = c.live_sets.drain().collect();
                live.remove_container(&sets);
            }
        }
        live.containers
            .set(self.containers.values().filter(|c| c.alive).count() as i64);
        if let CpuSource::Ebpf(ebpf) = &self.cpu {
            let st = ebpf.stats();
            live.ebpf_attached.set(1);
            live.ebpf_map_entries.set(st.cgroup_map_len as i64);
            live.ebpf_map_capacity.set(st.cgroup_map_capacity as i64);
            live.ebpf_map_full
                .inc_by(st.cgroup_map_full.saturating_sub(live.ebpf_map_full.get()));
            live.ebpf_exit_records_lost.inc_by(
                st.exit_ring_full
                    .saturating_sub(live.ebpf_exit_records_lost.get()),
            );
        }
    }

    fn sample_system(&mut self, now: Instant) {
        match procfs::read_system(&self.cfg.proc_root) {
            Ok(sys) => {
                self.system_mem.record(sys.memory.used_bytes() as f64);
                self.last_mem_used = Some(sys.memory.used_bytes());
                if let Some((_, prev)) = self.last_system
                    && let Some(pct) = rates::cpu_percent(&prev, &sys.cpu)
                {
                    self.system_cpu.record(pct);
                    self.last_cpu_percent = Some(pct);
                }
                self.last_system = Some((now, sys.cpu));
            }
            Err(e) => {
                self.read_errors += 1;
                tracing::warn!("{e:#}");
            }
        }
    }

    fn scan_processes(&mut self, window: Option<Duration>) {
        let pids = match procfs::list_pids(&self.cfg.proc_root) {
            Ok(p) => p,
            Err(e) => {
                self.read_errors += 1;
                tracing::warn!("{e:#}");
                return;
            }
        };
        let tick = self.slow_ticks;
        let mut new_pids = Vec::new();
        let mut moved = Vec::new();
        let mut settled = Vec::new();
        for pid in pids {
            let stat = match self.reader.read_pid(&self.cfg.proc_root, pid, "stat") {
                Ok(Some(text)) => match procfs::parse_pid_stat(&text) {
                    Ok(s) => s,
                    Err(e) => {
                        self.read_errors += 1;
                        tracing::debug!("skipping pid {pid}: unparsable stat: {e}");
                        continue;
                    }
                },
                Ok(None) => continue,
                Err(e) => {
                    self.read_errors += 1;
                    tracing::debug!("skipping pid {pid}: {e:#}");
                    continue;
                }
            };
            let ticks = stat.utime.saturating_add(stat.stime);
            let rss = stat.rss_pages.saturating_mul(procfs::page_size());
            match self.processes.get_mut(&pid) {
                Some(p) if p.start_ticks == stat.starttime => {
                    if let Some(w) = window.filter(|w| !w.is_zero()) {
                        let delta = ticks.saturating_sub(p.last_ticks);
                        let cores = rates::cores_from_ticks(delta, self.ticks_per_sec, w);
                        p.peak_cpu_percent = p.peak_cpu_percent.max(rates::percent_of_core(cores));
                    }
                    p.window_ticks = ticks.saturating_sub(p.last_ticks);
                    p.last_ticks = ticks;
                    p.rss = rss;
                    p.peak_rss = p.peak_rss.max(rss);
                    p.scans += 1;
                    // A process can move to another cgroup just after it starts (a runtime
                    // placing it, `sh -c 'echo $$ > cgroup.procs; exec ...'`): look again at
                    // its second scan and after an exec (its command name changed).
                    if p.scans == 2 || p.comm != stat.comm {
                        if let Ok(Some(text)) =
                            self.reader.read_pid(&self.cfg.proc_root, pid, "cgroup")
                        {
                            let lines = procfs::parse_pid_cgroup(&text);
                            let v2 = procfs::cgroup_v2_path(&lines).map(str::to_owned);
                            let v1 = procfs::cgroup_v1_path(&lines).map(str::to_owned);
                            if v2 != p.cgroup_v2 || v1 != p.cgroup_v1 {
                                (p.cgroup_v2, p.cgroup_v1) = (v2, v1);
                                p.netns = std::fs::metadata(
                                    self.cfg.proc_root.join(format!("{pid}/ns/net")),
                                )
                                .ok()
                                .map(|m| m.ino());
                                moved.push(pid);
                            }
                        }
                        if p.scans == 2 {
                            settled.push(pid);
                        }
                    }
                    p.comm = stat.comm;
                    p.seen_at_slow_tick = tick;
                }
                _ => {
                    // New process (or a reused pid): learn its cgroup and network namespace.
                    let lines = match self.reader.read_pid(&self.cfg.proc_root, pid, "cgroup") {
                        Ok(Some(text)) => procfs::parse_pid_cgroup(&text),
                        _ => continue,
                    };
                    let netns = std::fs::metadata(self.cfg.proc_root.join(format!("{pid}/ns/net")))
                        .ok()
                        .map(|m| m.ino());
                    let process = Process {
                        start_ticks: stat.starttime,
                        comm: stat.comm,
                        container: String::new(),
                        cgroup_v2: procfs::cgroup_v2_path(&lines).map(str::to_owned),
                        cgroup_v1: procfs::cgroup_v1_path(&lines).map(str::to_owned),
                        netns,
                        ppid: stat.ppid,
                        first_ticks: ticks,
                        last_ticks: ticks,
                        // Found after the first scan: it started during the run.
                        window_ticks: if tick > 1 { ticks } else { 0 },
                        peak_cpu_percent: 0.0,
                        rss,
                        peak_rss: rss,
                        seen_at_slow_tick: tick,
                        scans: 1,
                        exact_exit: None,
                    };
                    if let Some(old) = self.processes.insert(pid, process) {
                        self.retire_process(pid, old);
                    }
                    new_pids.push(pid);
                }
            }
        }
        // Held thread CPU of processes that are gone for good (their leader's record lost).
        let live: HashSet<i32> = self.processes.keys().copied().collect();
        self.pending_threads
            .retain(|tgid, (_, at)| live.contains(&(*tgid as i32)) || tick <= *at + 2);
        // Processes not seen this tick have exited.
        let gone: Vec<i32> = self
            .processes
            .iter()
            .filter(|(_, p)| p.seen_at_slow_tick != tick)
            .map(|(pid, _)| *pid)
            .collect();
        for pid in gone {
            if let Some(p) = self.processes.remove(&pid) {
                self.retire_process(pid, p);
            }
        }
        // Processes at their second scan, or that moved: their cgroup is now trustworthy.
        settled.extend(moved.iter().copied());
        settled.sort_unstable();
        settled.dedup();
        self.new_at_last_scan = settled;
        self.first_seen_at_last_scan.clone_from(&new_pids);
        if !moved.is_empty() && new_pids.is_empty() {
            self.assign_containers();
        }
        // Scope: drop what is not ours (new processes only; scope never widens).
        if !new_pids.is_empty() {
            let out_of_scope: Vec<i32> = new_pids
                .iter()
                .copied()
                .filter(|pid| !self.in_scope(*pid))
                .collect();
            for pid in &out_of_scope {
                self.processes.remove(pid);
            }
            self.assign_containers();
        }
    }

    fn in_scope(&self, pid: i32) -> bool {
        let Some(p) = self.processes.get(&pid) else {
            return false;
        };
        match &self.cfg.scope {
            Scope::All => true,
            Scope::Cgroup(root) => p
                .cgroup_v2
                .as_deref()
                .is_some_and(|path| is_within(path, root)),
            Scope::Tree(root) => {
                // Walk up the parent chain through the processes we know.
                let mut cur = pid;
                for _ in 0..64 {
                    if cur == *root {
                        return true;
                    }
                    match self.processes.get(&cur) {
                        Some(p) if p.ppid > 0 && p.ppid != cur => cur = p.ppid,
                        _ => return false,
                    }
                }
                false
            }
        }
    }

    /// (Re)computes every live process's container and each container's cgroup set.
    fn assign_containers(&mut self) {
        let names: HashMap<i32, String> = match &self.cfg.single_container {
            Some(name) => self
                .processes
                .keys()
                .map(|pid| (*pid, name.clone()))
                .collect(),
            None => {
                let rows: Vec<(i32, &str, &str)> = self
                    .processes
                    .iter()
                    .map(|(pid, p)| {
                        let path = procfs::best_cgroup_path(
                            p.cgroup_v2.as_deref(),
                            p.cgroup_v1.as_deref(),
                        );
                        (*pid, p.comm.as_str(), path.unwrap_or("/"))
                    })
                    .collect();
                self.cfg
                    .grouper
                    .group(&rows)
                    .into_iter()
                    .map(|(pid, n)| (pid, n.as_str().to_owned()))
                    .collect()
            }
        };
        for (pid, p) in self.processes.iter_mut() {
            let Some(name) = names.get(pid) else { continue };
            p.container = name.clone();
            let limits = self.cfg.limits.get(name).copied();
            let c = self
                .containers
                .entry(name.clone())
                .or_insert_with(|| Container::new(limits));
            if let Some(ns) = p.netns {
                c.netns.insert(ns);
            }
            if let Some(path) = group_path(p)
                && c.cgroups.insert(path.clone())
            {
                // eBPF counts per cgroup v2 id: only meaningful when the container is a v2
                // cgroup (a v1-grouped one shares the v2 root with everything else).
                if let Some(v2) = path.strip_prefix("v2:")
                    && let Some(dir) = self.mounts.v2_dir(v2)
                    && let Ok(id) = cgroupfs::cgroup_id(&dir)
                {
                    c.cgroup_ids.insert(id);
                    self.container_of_cgroup.insert(id, name.clone());
                }
            }
        }
    }

    fn sample_memory(&mut self) {
        let live: HashSet<&str> = self
            .processes
            .values()
            .map(|p| p.container.as_str())
            .collect();
        for (name, c) in self.containers.iter_mut() {
            if !live.contains(name.as_str()) {
                continue;
            }
            let mut total = 0;
            let mut anon: Option<u64> = None;
            let mut from_cgroup = false;
            for path in distinct_roots(&c.cgroups) {
                let (v2, v1) = split_path(path);
                if let Some(m) = cgroupfs::read_memory(&self.mounts, v2, v1) {
                    from_cgroup = true;
                    total += m.current;
                    if let Some(a) = m.anon {
                        anon = Some(anon.unwrap_or(0) + a);
                    }
                    if let Some(peak) = m.peak {
                        c.memory_peak = Some(c.memory_peak.unwrap_or(0).max(peak));
                    }
                    if let Some(kills) = m.oom_kills {
                        let base = *self
                            .oom_baseline
                            .entry(path.to_owned())
                            .or_insert(if self.slow_ticks <= 1 { kills } else { 0 });
                        c.oom_kills = c.oom_kills.max(kills.saturating_sub(base));
                    }
                }
            }
            if !from_cgroup {
                total = self
                    .processes
                    .values()
                    .filter(|p| &p.container == name)
                    .map(|p| p.rss)
                    .sum();
            }
            c.memory_source = if from_cgroup {
                Source::Cgroup
            } else {
                Source::Proc
            };
            c.memory.record(total as f64);
            c.last_memory = Some(total);
            if let Some(live) = &self.cfg.live {
                let l = c.live_labels(
                    name,
                    self.identities
                        .get(name.as_str())
                        .unwrap_or(&self.cfg.identity),
                    c.memory_source,
                );
                live.set_memory(&l, total, anon);
                if let Some(limits) = &c.limits {
                    live.set_limits(&l, limits);
                }
            }
            if let Some(limit) = c.limits.and_then(|l| l.memory_bytes).filter(|l| *l > 0) {
                c.memory_to_limit.record(total as f64 / limit as f64);
            }
        }
    }

    fn sample_network(&mut self, window: Option<Duration>) {
        // One process per namespace is enough to read its counters.
        let own = if self.cfg.exclude_own_netns {
            std::fs::metadata(self.cfg.proc_root.join("self/ns/net"))
                .ok()
                .map(|m| m.ino())
        } else {
            None
        };
        let mut readers: BTreeMap<u64, (i32, BTreeSet<String>)> = BTreeMap::new();
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
                c.rx_total += drx;
                c.tx_total += dtx;
                if let Some(live) = &self.cfg.live {
                    let l = c.live_labels(
                        &name,
                        self.identities
                            .get(name.as_str())
                            .unwrap_or(&self.cfg.identity),
                        Source::Proc,
                    );
                    live.add_network(&l, drx, dtx);
                }
                if let (Some(r), Some(t)) = (rx_rate, tx_rate) {
                    c.rx_rate.record(r);
                    c.tx_rate.record(t);
                }
            }
        }
        // Namespaces no process uses any more.
        let used: HashSet<u64> = self.processes.values().filter_map(|p| p.netns).collect();
        self.netns.retain(|ns, _| used.contains(ns));
    }

    /// /proc fallback: container CPU from process tick deltas (the last ticks of processes
    /// that exit between two scans are lost: the known limit of polling).
    fn proc_cpu(&mut self, now: Instant) {
        let mut per_container: HashMap<&str, u64> = HashMap::new();
        for p in self.processes.values() {
            *per_container.entry(&p.container).or_default() += p.window_ticks;
        }
        let ns_per_tick = 1_000_000_000 / self.ticks_per_sec.max(1);
        for (name, c) in self.containers.iter_mut() {
            // Counted for every container, so one that turns out to need /proc has its
            // first window too; recorded only for those (the others use a cheap counter).
            c.proc_ticks += per_container.get(name.as_str()).copied().unwrap_or(0);
            match c.cpu_source {
                Some(Source::Proc) => {}
                None if c.cheap_unavailable => c.cpu_source = Some(Source::Proc),
                _ => continue,
            }
            let id = self
                .identities
                .get(name.as_str())
                .unwrap_or(&self.cfg.identity);
            let cumulative = c.proc_ticks * ns_per_tick;
            c.cpu_reading(
                name,
                id,
                Source::Proc,
                now,
                cumulative,
                self.cpus,
                self.cfg.live.as_deref(),
            );
        }
    }

    fn retire_process(&mut self, pid: i32, p: Process) {
        let (cpu_seconds, avg) = p.exact_exit.unwrap_or((
            (p.last_ticks - p.first_ticks) as f64 / self.ticks_per_sec.max(1) as f64,
            0.0,
        ));
        self.push_exited(ProcessSummary {
            pid,
            name: p.comm,
            peak_cpu_percent: p.peak_cpu_percent.max(avg),
            peak_mem_rss_bytes: p.peak_rss,
            cpu_seconds,
            container: Some(p.container).filter(|c| !c.is_empty()),
            exited: true,
        });
    }

    /// Exact per-process CPU of processes that exited (eBPF), short-lived ones included.
    fn record_exits(&mut self, exits: Vec<ExitedProcess>) {
        for mut e in exits {
            // A thread exiting is not its process exiting: hold its CPU until the leader goes.
            if !e.leader_exited {
                let slot = self.pending_threads.entry(e.tgid).or_default();
                slot.0 += e.runtime_ns;
                slot.1 = self.slow_ticks;
                continue;
            }
            if let Some((ns, _)) = self.pending_threads.remove(&e.tgid) {
                e.runtime_ns += ns;
            }
            let Some(container) = self.container_of_cgroup.get(&e.cgroup_id).cloned() else {
                continue; // not one of ours (out of scope)
            };
            let cpu_seconds = e.runtime_ns as f64 / 1e9;
            let avg_percent = if e.lifetime_ns > 0 {
                e.runtime_ns as f64 / e.lifetime_ns as f64 * 100.0
            } else {
                0.0
            };
            let pid = e.tgid as i32;
            // Still listed from /proc: keep it there (it may linger as a zombie) with the
            // exact figures; the scan retires it.
            if let Some(p) = self.processes.get_mut(&pid) {
                p.exact_exit = Some((cpu_seconds, avg_percent));
                continue;
            }
            // Already retired by a scan: correct that entry.
            if let Some(p) = self
                .exited
                .iter_mut()
                .rev()
                .find(|p| p.pid == pid && p.name == e.comm)
            {
                p.cpu_seconds = cpu_seconds;
                p.peak_cpu_percent = p.peak_cpu_percent.max(avg_percent);
                continue;
            }
            let (peak_cpu, peak_rss) = (avg_percent, 0);
            self.push_exited(ProcessSummary {
                pid,
                name: e.comm,
                peak_cpu_percent: peak_cpu,
                peak_mem_rss_bytes: peak_rss,
                cpu_seconds,
                container: Some(container),
                exited: true,
            });
        }
    }

    fn push_exited(&mut self, p: ProcessSummary) {
        self.exited.push(p);
        let keep = self.cfg.top.max(1) * 4;
        if self.exited.len() > keep * 4 {
            prune_top(&mut self.exited, keep);
        }
    }

    /// Builds the run summary (call after a final `cpu_tick` and `slow_tick`).
    pub fn summary(&self, info: CollectorInfo) -> RunSummary {
        let system = JobSystem {
            start: self.start_wall,
            cpu: &self.system_cpu,
            mem: &self.system_mem,
            samples: self.slow_ticks,
        };
        self.summary_of(None, &system, info)
    }

    /// The summary of some containers only (a job in node mode), with the job's own system
    /// figures; `None` means every container.
    pub fn summary_of(
        &self,
        only: Option<&BTreeSet<String>>,
        system: &JobSystem<'_>,
        info: CollectorInfo,
    ) -> RunSummary {
        let end = SystemTime::now();
        let wanted = |name: &str| only.is_none_or(|set| set.contains(name));
        let mut containers: Vec<ContainerSummary> = self
            .containers
            .iter()
            .filter(|(name, _)| wanted(name))
            .map(|(name, c)| container_summary(name, c))
            .collect();
        containers.sort_by(|a, b| a.name.cmp(&b.name));

        let mut processes: Vec<ProcessSummary> = self
            .exited
            .iter()
            .filter(|p| only.is_none() || p.container.as_deref().is_some_and(wanted))
            .cloned()
            .collect();
        for (pid, p) in self.processes.iter().filter(|(_, p)| wanted(&p.container)) {
            let ticks_seconds =
                (p.last_ticks - p.first_ticks) as f64 / self.ticks_per_sec.max(1) as f64;
            let (cpu_seconds, avg) = p.exact_exit.unwrap_or((ticks_seconds, 0.0));
            processes.push(ProcessSummary {
                pid: *pid,
                name: p.comm.clone(),
                peak_cpu_percent: p.peak_cpu_percent.max(avg),
                peak_mem_rss_bytes: p.peak_rss,
                cpu_seconds,
                container: Some(p.container.clone()).filter(|c| !c.is_empty()),
                exited: p.exact_exit.is_some(),
            });
        }
        let top = self.cfg.top;
        let mut by_cpu = processes.clone();
        // CPU consumed is what right-sizing needs; a 20 ms burner is "100 %" too.
        by_cpu.sort_by(|a, b| {
            b.cpu_seconds
                .total_cmp(&a.cpu_seconds)
                .then(b.peak_cpu_percent.total_cmp(&a.peak_cpu_percent))
        });
        by_cpu.truncate(top);
        let mut by_mem = processes;
        by_mem.sort_by_key(|p| std::cmp::Reverse(p.peak_mem_rss_bytes));
        by_mem.truncate(top);

        let mut histograms = Histograms::new();
        histograms.insert("cpu_total_percent".into(), system.cpu.encode());
        histograms.insert("mem_used_bytes".into(), system.mem.encode());
        let duration = end.duration_since(system.start).unwrap_or_default();
        RunSummary {
            schema_version: summary::SCHEMA_VERSION,
            start_time: summary::time::format_rfc3339(system.start),
            end_time: summary::time::format_rfc3339(end),
            duration_seconds: duration.as_secs_f64(),
            sample_count: system.samples,
            cpu_total_percent: system.cpu.stats(),
            mem_used_bytes: system.mem.stats(),
            cpu_source: source_of(&self.cpu),
            containers,
            top_cpu_processes: by_cpu,
            top_mem_processes: by_mem,
            histograms: Some(histograms),
            collector: Some(info),
        }
    }

    // ---- node mode: jobs are sets of containers -------------------------------------------

    /// Processes whose cgroup became known for sure at the last scan (their second scan, or
    /// a move to another cgroup), with their container.
    pub fn new_processes(&self) -> Vec<(i32, String)> {
        self.new_at_last_scan
            .iter()
            .filter_map(|pid| Some((*pid, self.processes.get(pid)?.container.clone())))
            .collect()
    }

    /// Processes first seen at the last scan (their cgroup may still change).
    pub fn first_seen(&self) -> &[i32] {
        &self.first_seen_at_last_scan
    }

    /// Whether a process is (still) being measured.
    pub fn has_process(&self, pid: i32) -> bool {
        self.processes.contains_key(&pid)
    }

    /// Whether a container has live processes (as of the last scan).
    pub fn is_alive(&self, name: &str) -> bool {
        self.containers.get(name).is_some_and(|c| c.alive)
    }

    /// Names of all containers known.
    pub fn containers(&self) -> impl Iterator<Item = &str> {
        self.containers.keys().map(String::as_str)
    }

    /// The latest system figures (CPU %, memory used), for per-job system statistics.
    pub fn system_now(&self) -> (Option<f64>, Option<u64>) {
        (self.last_cpu_percent, self.last_mem_used)
    }

    /// Labels live metrics of a container with its job's identity.
    pub fn set_identity(&mut self, container: &str, identity: summary::Execution) {
        self.identities.insert(container.to_owned(), identity);
    }

    /// Drops everything kept about these containers (a job that has been reported, or
    /// containers of no job that ended): memory stays bounded on a node that runs thousands
    /// of containers an hour.
    pub fn forget(&mut self, names: &BTreeSet<String>) {
        let mut ids = Vec::new();
        for name in names {
            if let Some(c) = self.containers.remove(name) {
                if let Some(live) = &self.cfg.live {
                    let sets: Vec<ContainerLabels> = c.live_sets.into_iter().collect();
                    live.remove_container(&sets);
                }
                for path in &c.cgroups {
                    self.cgroup_cpu_last.remove(path);
                    self.cgroup_cpu_baseline.remove(path);
                    self.oom_baseline.remove(path);
                    self.preexisting.remove(path);
                }
                ids.extend(c.cgroup_ids.iter().copied());
            }
            self.identities.remove(name);
        }
        for id in &ids {
            self.container_of_cgroup.remove(id);
        }
        self.exited
            .retain(|p| !p.container.as_ref().is_some_and(|c| names.contains(c)));
        if let CpuSource::Ebpf(ebpf) = &mut self.cpu {
            ebpf.forget(&ids);
        }
    }
}

fn container_summary(name: &str, c: &Container) -> ContainerSummary {
    let opt = |a: &Accumulator| (a.sample_count() > 0).then(|| a.stats());
    let mut histograms = Histograms::new();
    histograms.insert("cpu_cores".into(), c.cpu_cores.encode());
    histograms.insert("memory_bytes".into(), c.memory.encode());
    let network = (c.rx_rate.sample_count() > 0 || c.rx_total > 0 || c.tx_total > 0).then(|| {
        NetworkSummary {
            namespace: c
                .netns
                .iter()
                .map(|ns| format!("net:[{ns}]"))
                .collect::<Vec<_>>()
                .join(","),
            rx_bytes: c.rx_total,
            tx_bytes: c.tx_total,
            rx_bytes_per_sec: c.rx_rate.stats(),
            tx_bytes_per_sec: c.tx_rate.stats(),
        }
    });
    ContainerSummary {
        name: name.to_owned(),
        cpu_cores: c.cpu_cores.stats(),
        memory_bytes: c.memory.stats(),
        cpu_seconds: c.cpu_ns as f64 / 1e9,
        cpu_source: c.cpu_source.unwrap_or(Source::Proc),
        memory_source: c.memory_source,
        memory_peak_bytes: c.memory_peak,
        oom_kills: c.oom_kills,
        network,
        limits: c.limits,
        cpu_to_limit: opt(&c.cpu_to_limit),
        memory_to_limit: opt(&c.memory_to_limit),
        histograms: Some(histograms),
    }
}

fn source_of(cpu: &CpuSource) -> Source {
    match cpu {
        CpuSource::Ebpf(_) => Source::Ebpf,
        CpuSource::Cgroup { .. } => Source::Cgroup,
        CpuSource::Proc { .. } => Source::Proc,
    }
}

/// Keeps the `keep` highest by CPU and the `keep` highest by memory.
fn prune_top(list: &mut Vec<ProcessSummary>, keep: usize) {
    let mut by_cpu: Vec<usize> = (0..list.len()).collect();
    by_cpu.sort_by(|a, b| {
        list[*b].cpu_seconds.total_cmp(&list[*a].cpu_seconds).then(
            list[*b]
                .peak_cpu_percent
                .total_cmp(&list[*a].peak_cpu_percent),
        )
    });
    let mut by_mem: Vec<usize> = (0..list.len()).collect();
    by_mem.sort_by(|a, b| {
        list[*b]
            .peak_mem_rss_bytes
            .cmp(&list[*a].peak_mem_rss_bytes)
    });
    let wanted: HashSet<usize> = by_cpu
        .into_iter()
        .take(keep)
        .chain(by_mem.into_iter().take(keep))
        .collect();
    let mut i = 0;
    list.retain(|_| {
        let k = wanted.contains(&i);
        i += 1;
        k
    });
}

/// The path a process is grouped by, tagged with its hierarchy: `v2:<path>` or `v1:<path>`.
fn group_path(p: &Process) -> Option<String> {
    match procfs::best_cgroup_path(p.cgroup_v2.as_deref(), p.cgroup_v1.as_deref()) {
        Some(path) if Some(path) == p.cgroup_v2.as_deref() => Some(format!("v2:{path}")),
        Some(path) => Some(format!("v1:{path}")),
        None => None,
    }
}

/// Splits a tagged path into the (v2, v1) arguments of the cgroupfs readers.
fn split_path(tagged: &str) -> (Option<&str>, Option<&str>) {
    match tagged.split_once(':') {
        Some(("v2", p)) => (Some(p), None),
        Some(("v1", p)) => (None, Some(p)),
        _ => (None, None),
    }
}

/// Paths of the set that are not below another member (so nested cgroups are not counted
/// twice).
fn distinct_roots(paths: &BTreeSet<String>) -> Vec<&str> {
    paths
        .iter()
        .filter(|p| {
            !paths
                .iter()
                .any(|other| other != *p && is_within_tagged(p, other))
        })
        .map(String::as_str)
        .collect()
}

fn is_within_tagged(path: &str, ancestor: &str) -> bool {
    match (path.split_once(':'), ancestor.split_once(':')) {
        (Some((h1, p1)), Some((h2, p2))) => h1 == h2 && p1 != p2 && is_within(p1, p2),
        _ => false,
    }
}

/// Whether cgroup `path` is `root` or below it.
pub fn is_within(path: &str, root: &str) -> bool {
    let root = root.trim_end_matches('/');
    root.is_empty()
        || path == root
        || path
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with('/'))
}
