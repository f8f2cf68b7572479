//! The measuring engine: turns periodic readings into per-container and per-process
//! statistics and, at the end, a [`RunSummary`](summary::RunSummary).
//!
//! Two ticks drive it:
//! - [`Sampler::fast_tick`] (default every 100 ms) runs [`Sampler::cpu_tick`] ([`cpu`]),
//!   which reads container CPU from cheap counters (eBPF totals, else cgroup
//!   `cpu.stat`/`cpuacct.usage`), and samples the memory of containers whose memory comes
//!   from a cgroup file ([`memory`]), and the eBPF run-queue wait ([`wait`]). Nothing is
//!   done there on /proc.
//! - [`Sampler::slow_tick`] (every `--interval`) scans /proc ([`processes`]): processes,
//!   their containers ([`grouping`]), memory ([`memory`]), throttling, pressure and block
//!   I/O ([`starvation`]), run-queue wait from `/proc` schedstat where there is no eBPF
//!   ([`wait`]), who held the CPU while they waited ([`behind`]), network ([`network`]) and
//!   system figures ([`system`]). With no cheap CPU counter it also derives container CPU
//!   from process tick deltas.
//!
//! [`container`] holds each container's state, one type per aspect (CPU, memory, network,
//! starvation, wait, who held the CPU, ended commands, timeline), and [`process`] each live
//! process as last seen. The files above implement this file's `Sampler` and read into
//! those; `container/` and `process.rs` use neither them nor this file, so no two files here
//! use each other. [`report_of`] assembles the run summary
//! (named so as not to shadow the `summary` crate); [`rates`] holds the pure delta maths;
//! `tests.rs` and `memory_tests.rs` are its tests (on a fake `--proc-path`, and on temporary
//! cgroup trees). Memory stays flat over a run: statistics go into fixed-size HDR
//! histograms, processes that exited are kept only while they can still be among the top
//! ones.

mod behind;
mod container;
mod cpu;
pub mod grouping;
mod memory;
mod network;
mod process;
mod processes;
pub mod rates;
mod report_of;
mod starvation;
mod system;
#[cfg(test)]
mod tests;
mod wait;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    path::PathBuf,
    sync::Arc,
    time::{Instant, SystemTime},
};

use summary::{Accumulator, Execution, Limits, ProcessSummary, SCALE_BYTES, SCALE_PERCENT};

use self::{
    container::Container,
    grouping::{ContainerName, Grouper},
    process::Process,
    rates::CounterRate,
};
use crate::{
    output::live::LiveMetrics,
    sources::{
        cgroupfs::{CgroupPath, Mounts},
        counter_files::CounterFiles,
        cpu_source::CpuSource,
        procfs::{self, SystemCpu},
    },
};

/// Which processes a sampler measures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Everything visible under the proc root (sidecar and node modes).
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
    pub single_container: Option<ContainerName>,
    /// Job identity for the live metrics' labels.
    pub identity: Execution,
    /// Live metrics to feed, when `--metrics-addr` is set.
    pub live: Option<Arc<LiveMetrics>>,
    /// Leave out the collector's own network namespace: in run mode the command usually
    /// shares the host's, whose traffic is not the command's.
    pub exclude_own_netns: bool,
    /// Containers belong to different jobs (node mode: see [`Sampler::set_identity`]);
    /// otherwise every container but `host` belongs to the one job, `identity`.
    pub jobs_per_container: bool,
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
    /// The first system CPU reading (for the run's steal share).
    first_system: Option<SystemCpu>,
    last_slow: Option<Instant>,
    containers: BTreeMap<ContainerName, Container>,
    processes: HashMap<i32, Process>,
    /// Processes that ended, kept only while they can be among the top ones.
    exited: Vec<ProcessSummary>,
    netns: HashMap<u64, NetNs>,
    /// cgroup v2 id -> container, for eBPF exit records.
    container_of_cgroup: HashMap<u64, ContainerName>,
    /// cgroups seen at the first scan: their counters started before the run.
    preexisting: HashSet<CgroupPath>,
    /// Per-cgroup baselines of CPU counters (cgroup source).
    cgroup_cpu_baseline: HashMap<CgroupPath, u64>,
    /// Last cgroup CPU reading per cgroup, kept when the cgroup disappears.
    cgroup_cpu_last: HashMap<CgroupPath, u64>,
    /// CPU of exited threads whose process (thread-group leader) has not exited yet, with the
    /// slow tick they were last added at (dropped a few ticks after the process is gone).
    pending_threads: HashMap<u32, (u64, u64)>,
    /// Per-cgroup memory OOM-kill baselines.
    oom_baseline: HashMap<CgroupPath, u64>,
    /// Errors reading /proc or cgroupfs (skipped and logged at debug level).
    pub read_errors: u64,
    /// Reused buffer for the per-process files.
    reader: procfs::FileReader,
    /// The cgroup counter files of the CPU tick, kept open.
    counters: CounterFiles,
    /// Processes settled at the last scan (node mode reads their environment).
    new_at_last_scan: Vec<i32>,
    /// Processes first seen at the last scan.
    first_seen_at_last_scan: Vec<i32>,
    /// Per-container job identity for live-metric labels (node mode); else `cfg.identity`.
    identities: HashMap<ContainerName, Execution>,
    /// Latest system figures, for per-interval output.
    last_cpu_percent: Option<f64>,
    last_mem_used: Option<u64>,
    /// Malformed /proc lines skipped so far, as last reported.
    skipped_lines_reported: u64,
    /// Processes a scan retired lately, with the slow tick and the CPU seconds counted for
    /// them: their eBPF exit record, if it comes later, corrects their command's CPU.
    retired_recently: HashMap<(i32, String), (u64, f64)>,
    /// Processes whose exit record came since the last scan (run mode waits for its
    /// command's).
    exits_since_scan: HashSet<i32>,
}

/// A job's own system statistics and start, for [`Sampler::summary_of`].
pub struct JobSystem<'a> {
    pub start: SystemTime,
    pub cpu: &'a Accumulator,
    pub mem: &'a Accumulator,
    pub samples: u64,
    /// Add what each container's cgroups used before the collector measured them (node
    /// mode, a job measured from its start; not for a job resumed from a checkpoint, whose
    /// checkpoint holds that part already).
    pub count_before_start: bool,
}

/// Counters of one network namespace (read by [`network`]).
struct NetNs {
    rx: CounterRate,
    tx: CounterRate,
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
    /// A sampler over the cgroup hierarchies in `mounts` (discovered once by the caller).
    pub fn new(cfg: SamplerConfig, mounts: Mounts, cpu: CpuSource) -> Self {
        Self {
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
            first_system: None,
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
            counters: CounterFiles::default(),
            new_at_last_scan: Vec::new(),
            first_seen_at_last_scan: Vec::new(),
            identities: HashMap::new(),
            last_cpu_percent: None,
            last_mem_used: None,
            skipped_lines_reported: 0,
            retired_recently: HashMap::new(),
            exits_since_scan: HashSet::new(),
        }
    }

    /// Narrows what is measured (run mode learns its command's pid after the sampler is
    /// built); takes effect for processes found from the next scan on.
    pub fn set_scope(&mut self, scope: Scope) {
        self.cfg.scope = scope;
    }

    /// Whether container CPU comes from a cheap counter (so `cpu_tick` should run often).
    pub fn cpu_is_cheap(&self) -> bool {
        !matches!(self.cpu, CpuSource::Proc { .. })
    }

    /// The CPU interval's tick: cheap CPU counters (when there are any) and the cgroup
    /// memory counters found at the last slow tick.
    pub fn fast_tick(&mut self) {
        if self.cpu_is_cheap() {
            self.cpu_tick();
        }
        self.sample_memory_fast();
    }

    pub fn cpu_source(&self) -> &CpuSource {
        &self.cpu
    }

    /// Names of the containers with live processes.
    fn live_containers(&self) -> HashSet<&ContainerName> {
        self.processes.values().map(|p| &p.container).collect()
    }

    /// The latest figures (per-interval output).
    pub fn interval_report(&self) -> IntervalReport {
        let live = self.live_containers();
        IntervalReport {
            cpu_total_percent: self.last_cpu_percent,
            mem_used_bytes: self.last_mem_used,
            containers: self
                .containers
                .iter()
                .filter(|(name, _)| live.contains(name))
                .map(|(name, c)| ContainerNow {
                    name: name.to_string(),
                    cpu_cores: c.cpu.last_cores,
                    memory_bytes: c.memory.last,
                    cpu_seconds: c.cpu.ns as f64 / 1e9,
                })
                .collect(),
        }
    }

    /// Number of live processes being measured.
    pub fn process_count(&self) -> usize {
        self.processes.len()
    }

    /// Scans /proc: processes, containers, memory, network and system figures.
    pub fn slow_tick(&mut self) {
        let now = Instant::now();
        let window = self.last_slow.map(|t| now.saturating_duration_since(t));
        self.last_slow = Some(now);
        self.slow_ticks += 1;
        self.exits_since_scan.clear();
        self.counters.new_interval();
        self.sample_system(now);
        self.scan_processes(window);
        let ended = self.mark_alive();
        self.sample_memory(&ended);
        self.sample_starvation(now, &ended);
        self.sample_network(window);
        self.proc_cpu(now);
        self.proc_wait();
        self.read_behind();
        self.update_health(&ended);
        let tick = self.slow_ticks;
        self.retired_recently.retain(|_, (at, _)| *at + 3 >= tick);
        if let CpuSource::Ebpf(ebpf) = &mut self.cpu
            && let Some(v2) = self.mounts.v2.clone()
        {
            let live = crate::sources::cgroupfs::live_cgroup_ids(&v2);
            if let Err(e) = ebpf.retire_dead(|id| live.contains(&id)) {
                tracing::debug!("retiring removed cgroups from the eBPF map: {e}");
            }
        }
        if self.slow_ticks == 1 {
            // Counters of cgroups that existed before the run started are measured from here.
            for c in self.containers.values() {
                self.preexisting.extend(c.cgroups.iter().cloned());
            }
            for cgroup in &self.preexisting {
                if let Some(v) = crate::sources::cgroupfs::read_cpu_usage_ns(
                    &mut self.counters,
                    &self.mounts,
                    cgroup,
                ) {
                    self.cgroup_cpu_baseline.insert(cgroup.clone(), v);
                }
            }
            self.count_cpu_before_start();
        }
    }

    /// For each container found at the first scan, the CPU its cgroups used before this
    /// collector measured them. The cgroup source measures from the baselines just read, so
    /// that is their sum. eBPF counts from its attach, which may be after the container
    /// started (a collector started just after, or while, jobs start): the difference
    /// between the cgroups' own counters (read first) and the eBPF totals of their ids.
    /// Counters are hierarchical, eBPF totals are per cgroup: only the outermost cgroups'
    /// counters are summed, against all of their ids.
    fn count_cpu_before_start(&mut self) {
        let ebpf = matches!(self.cpu, CpuSource::Ebpf(_));
        // (container, counter ns, compared with eBPF totals)
        let counters: Vec<(ContainerName, u64, bool)> = self
            .containers
            .iter()
            .map(|(name, c)| {
                let via_ebpf = ebpf && !c.cgroup_ids.is_empty();
                let outermost_v2 = |cg: &&CgroupPath| {
                    matches!(cg, CgroupPath::V2(_))
                        && !c.cgroups.iter().any(|other| cg.is_below(other))
                };
                let ns = c
                    .cgroups
                    .iter()
                    .filter(|cg| !via_ebpf || outermost_v2(cg))
                    .filter_map(|cg| self.cgroup_cpu_baseline.get(cg))
                    .sum();
                (name.clone(), ns, via_ebpf)
            })
            .collect();
        let totals = match &mut self.cpu {
            CpuSource::Ebpf(ebpf) => match ebpf.cgroup_totals() {
                Ok(t) => Some(t.clone()),
                Err(e) => {
                    tracing::debug!("reading eBPF CPU totals at the first scan: {e}");
                    None
                }
            },
            _ => None,
        };
        for (name, counter_ns, via_ebpf) in counters {
            let Some(c) = self.containers.get_mut(&name) else {
                continue;
            };
            c.cpu.before_start_ns = match (via_ebpf, &totals) {
                (false, _) => counter_ns,
                (true, Some(totals)) => {
                    let seen: u64 = c.cgroup_ids.iter().filter_map(|id| totals.get(id)).sum();
                    counter_ns.saturating_sub(seen)
                }
                (true, None) => 0,
            };
            if c.cpu.before_start_ns > 0 {
                tracing::debug!(container = %name, ns = c.cpu.before_start_ns, "CPU used before the collector started");
            }
        }
    }

    /// Marks which containers have live processes; returns those that just ended.
    fn mark_alive(&mut self) -> Vec<ContainerName> {
        let live: HashSet<ContainerName> = self.live_containers().into_iter().cloned().collect();
        let mut ended = Vec::new();
        for (name, c) in self.containers.iter_mut() {
            let now_alive = live.contains(name);
            if c.alive && !now_alive {
                ended.push(name.clone());
            }
            c.alive = now_alive;
        }
        ended
    }

    // ---- node mode: jobs are sets of containers -------------------------------------------

    /// Processes whose cgroup became known for sure at the last scan (their second scan, or
    /// a move to another cgroup), with their container.
    pub fn new_processes(&self) -> Vec<(i32, ContainerName)> {
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

    /// All containers known.
    /// How a container's CPU was counted, for a debug line when its job ends.
    pub fn describe_cpu(&self, name: &ContainerName) -> String {
        let Some(c) = self.containers.get(name) else {
            return format!("{name}: unknown");
        };
        let ebpf = match &self.cpu {
            CpuSource::Ebpf(e) => format!("{:?}", e.stats()),
            _ => "no eBPF".to_owned(),
        };
        format!(
            "{name}: source {:?}, {} ns (+{} before the start, +{} lost by eBPF), cgroups' own counter at the last reading {:?} ns, cgroups {:?}, ids {:?}; eBPF health {ebpf}",
            c.cpu.source,
            c.cpu.ns,
            c.cpu.before_start_ns,
            c.cpu.lost_ns(),
            c.cpu.last_smooth_ns(),
            c.cgroups,
            c.cgroup_ids
        )
    }

    pub fn containers(&self) -> impl Iterator<Item = &ContainerName> {
        self.containers.keys()
    }

    /// The latest system figures (CPU %, memory used), for per-job system statistics.
    pub fn system_now(&self) -> (Option<f64>, Option<u64>) {
        (self.last_cpu_percent, self.last_mem_used)
    }

    /// Labels live metrics of a container with its job's identity.
    pub fn set_identity(&mut self, container: &ContainerName, identity: Execution) {
        self.identities.insert(container.clone(), identity);
    }

    /// Drops everything kept about these containers (a job that has been reported, or
    /// containers of no job that ended): memory stays bounded on a node that runs thousands
    /// of containers an hour.
    pub fn forget(&mut self, names: &BTreeSet<ContainerName>) {
        let mut ids = Vec::new();
        for name in names {
            if let Some(c) = self.containers.remove(name) {
                if let Some(live) = &self.cfg.live {
                    let sets: Vec<_> = c.live_sets.into_iter().collect();
                    live.remove_container(&sets);
                }
                for cgroup in &c.cgroups {
                    self.cgroup_cpu_last.remove(cgroup);
                    self.cgroup_cpu_baseline.remove(cgroup);
                    self.oom_baseline.remove(cgroup);
                    self.preexisting.remove(cgroup);
                }
                ids.extend(c.cgroup_ids.iter().copied());
            }
            self.identities.remove(name);
        }
        for id in &ids {
            self.container_of_cgroup.remove(id);
        }
        self.exited
            .retain(|p| !p.container.as_deref().is_some_and(|c| names.contains(c)));
        if let CpuSource::Ebpf(ebpf) = &mut self.cpu {
            ebpf.forget(&ids);
        }
    }
}
