//! The eBPF loader: the only module that touches aya.
//!
//! Loads the embedded `collector-ebpf` object, attaches the `sched_switch` BTF tracepoint, and
//! reads the maps back as plain Rust types: on-CPU time and run-queue wait per cgroup, and
//! exited threads. Dropping [`EbpfCpu`] detaches everything. Failures
//! are classified ([`EbpfUnavailable`]) so the caller can say why and fall back to cgroup
//! `cpu.stat` and then to /proc.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    io,
    time::Duration,
};

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::BtfTracePoint,
};
use collector_common::{
    CGROUP_MAP_ENTRIES, CgroupTime, CpuState, ExitRecord, STAT_COUNT, Stat, WaitPair, globals,
    names::{self, TRACEPOINT},
};

use crate::sources::{
    btf,
    cpu_totals::{self, CgroupTotals, ExitedThread, Totals},
};

/// The object built by `cargo xtask build-ebpf`; empty when the collector was built without it.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/collector-ebpf.o"));

const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Whether this binary carries the eBPF object at all.
pub fn object_embedded() -> bool {
    !OBJECT.is_empty()
}

/// Why eBPF CPU accounting is not available. Each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum EbpfUnavailable {
    #[error(
        "this collector was built without its eBPF object (run `cargo xtask build-ebpf`, then rebuild)"
    )]
    NotEmbedded,
    #[error(
        "kernel BTF is not available at {VMLINUX_BTF} (needs a kernel built with CONFIG_DEBUG_INFO_BTF=y, 5.5 or newer): {0}"
    )]
    NoBtf(String),
    #[error(
        "not permitted to load eBPF: needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN); run as root or grant those capabilities, and in a container allow the bpf() syscall: {0}"
    )]
    Permission(String),
    #[error("the kernel refused the eBPF program (needs Linux 5.18+ with BTF tracepoints): {0}")]
    Kernel(String),
}

/// Which program to attach.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Probe {
    /// The collector's accounting program.
    #[default]
    Accounting,
    /// A program that does nothing, on the same tracepoint: the benchmark's floor.
    EmptyFloor,
    /// The accounting program without run-queue wait (CPU time only, as before wait was
    /// added): the benchmark's baseline. Its wait totals stay zero.
    CpuOnlyBaseline,
    /// The accounting program without wait attribution (as before `WAIT_BEHIND`): the
    /// benchmark's baseline for what attribution costs.
    UnattributedBaseline,
}

impl Probe {
    fn program_name(self) -> &'static str {
        match self {
            Probe::Accounting => names::PROGRAM,
            Probe::EmptyFloor => names::PROGRAM_EMPTY,
            Probe::CpuOnlyBaseline => names::PROGRAM_CPU_ONLY,
            Probe::UnattributedBaseline => names::PROGRAM_UNATTRIBUTED,
        }
    }
}

/// Nanoseconds by cgroup v2 id.
pub type PerCgroupNs = HashMap<u64, u64>;

/// Load-time options; the defaults are what the collector uses.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadOptions {
    pub probe: Probe,
    /// Capacity of the per-cgroup map (default `CGROUP_MAP_ENTRIES`); tests make it small to
    /// exercise the full-map path.
    pub cgroup_map_entries: Option<u32>,
}

/// Health counters of the kernel side, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EbpfStats {
    /// Flushes that found the cgroup map full.
    pub cgroup_map_full: u64,
    /// On-CPU nanoseconds that could therefore not be attributed.
    pub cgroup_ns_dropped: u64,
    /// Run-queue wait nanoseconds that could therefore not be attributed.
    pub cgroup_wait_ns_dropped: u64,
    /// Exit records lost because the ring buffer was full.
    pub exit_ring_full: u64,
    /// Exit records written.
    pub exit_records: u64,
    /// Switches whose task was not seen switching in (slice recovered or lost, see below).
    pub unseen_switch_in: u64,
    /// Slices that could not be recovered (non-fair scheduling classes).
    pub slices_lost: u64,
    /// Times the kernel skipped the program because it was already running on that CPU
    /// (`recursion_misses` of the program's fdinfo): each is a switch not seen.
    pub recursion_misses: u64,
    /// Switches the program did not see whose outgoing slice was recovered, and those whose
    /// slice was lost.
    pub missed_switch_recovered: u64,
    pub missed_switch_lost: u64,
    /// Wait nanoseconds not attributed to a holder because the attribution map was full.
    pub behind_ns_dropped: u64,
    /// Entries currently in the cgroup map, and its capacity.
    pub cgroup_map_len: u64,
    pub cgroup_map_capacity: u64,
}

/// Run-time statistics of the attached program (needs `kernel.bpf_stats_enabled`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgramRunStats {
    pub run_time: Duration,
    pub run_count: u64,
}

/// Exact CPU accounting via eBPF. Detached when dropped.
pub struct EbpfCpu {
    /// Owns the programs and their links; dropping it detaches.
    ebpf: Ebpf,
    probe: Probe,
    cpu_state: PerCpuArray<MapData, CpuState>,
    cgroup_ns: PerCpuHashMap<MapData, u64, CgroupTime>,
    wait_behind: PerCpuHashMap<MapData, WaitPair, u64>,
    exits: RingBuf<MapData>,
    stats: PerCpuArray<MapData, u64>,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    totals: CgroupTotals,
    /// Run-queue wait, kept exactly like `totals`.
    wait_totals: CgroupTotals,
    /// Run-queue wait by (waiter, holder) cgroup pair, kept the same way.
    behind_totals: Totals<WaitPair>,
    /// The attribution map's entries as [`EbpfCpu::wait_behind`] last read them: what
    /// [`EbpfCpu::retire_dead`] retires from, so a scan walks that map once.
    behind_in_map: HashMap<WaitPair, u64>,
    /// Whether the kernel has `sched_info.run_delay` (`CONFIG_SCHED_INFO`).
    run_delay_available: bool,
    map_capacity: u32,
}

impl EbpfCpu {
    /// Loads and attaches the accounting program.
    pub fn load() -> Result<Self, EbpfUnavailable> {
        Self::load_with(LoadOptions::default())
    }

    pub fn load_with(options: LoadOptions) -> Result<Self, EbpfUnavailable> {
        if OBJECT.is_empty() {
            return Err(EbpfUnavailable::NotEmbedded);
        }
        raise_memlock_limit();
        // Our offsets, and for aya only the part of the kernel's BTF it needs: the types up to
        // the tracepoint's typedef (ids unchanged). The whole blob is freed before aya parses.
        let ((offsets, run_delay_available), prefix) = {
            let raw =
                std::fs::read(VMLINUX_BTF).map_err(|e| EbpfUnavailable::NoBtf(e.to_string()))?;
            let offsets = kernel_offsets(&raw).map_err(EbpfUnavailable::NoBtf)?;
            let prefix = btf::Btf::parse(&raw)
                .and_then(|b| b.prefix_through_typedef(&format!("btf_trace_{TRACEPOINT}")))
                .map_err(|e| {
                    EbpfUnavailable::NoBtf(format!("finding btf_trace_{TRACEPOINT}: {e}"))
                })?;
            (offsets, prefix)
        };
        let btf = Btf::parse(&prefix, aya::Endianness::Little)
            .map_err(|e| EbpfUnavailable::NoBtf(chain(&e)))?;
        drop(prefix);

        let map_capacity = options.cgroup_map_entries.unwrap_or(CGROUP_MAP_ENTRIES);
        let mut loader = EbpfLoader::new();
        loader
            .btf(Some(&btf))
            .map_max_entries(names::CGROUP_TIME, map_capacity)
            .map_max_entries(names::WAIT_BEHIND, map_capacity);
        for ((name, _, _), offset) in globals::ALL.iter().zip(&offsets) {
            loader.override_global(name, offset, true);
        }
        let mut ebpf = loader.load(OBJECT).map_err(|e| classify(&e))?;

        // Diagnostics from the kernel side (map full, helper failures) go to our log.
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(logger) => Some(logger),
            Err(e) => {
                tracing::warn!("eBPF diagnostics unavailable: {e}");
                None
            }
        };

        let program_name = options.probe.program_name();
        let program: &mut BtfTracePoint = ebpf
            .program_mut(program_name)
            .ok_or_else(|| EbpfUnavailable::Kernel(format!("object has no `{program_name}`")))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| classify(&e))?;
        program.load(TRACEPOINT, &btf).map_err(|e| classify(&e))?;
        program.attach().map_err(|e| classify(&e))?;

        let cpu_state = take_map(&mut ebpf, names::CPU_STATE)?;
        let cgroup_ns = take_map(&mut ebpf, names::CGROUP_TIME)?;
        let wait_behind = take_map(&mut ebpf, names::WAIT_BEHIND)?;
        let exits = take_map(&mut ebpf, names::EXITS)?;
        let stats = take_map(&mut ebpf, names::STATS)?;
        if !run_delay_available {
            tracing::info!(
                "the kernel has no task_struct.sched_info.run_delay (CONFIG_SCHED_INFO off): \
                 no run-queue wait from eBPF"
            );
        }
        tracing::debug!(program_name, ?offsets, map_capacity, "eBPF attached");
        drop(btf);
        release_freed_memory();
        Ok(Self {
            ebpf,
            probe: options.probe,
            cpu_state,
            cgroup_ns,
            wait_behind,
            exits,
            stats,
            logger,
            totals: CgroupTotals::default(),
            wait_totals: CgroupTotals::default(),
            behind_totals: Totals::default(),
            behind_in_map: HashMap::new(),
            run_delay_available,
            map_capacity,
        })
    }

    /// Exact on-CPU nanoseconds per cgroup v2 id since attaching, including cgroups that
    /// have been removed. Monotonic. Also refreshes [`EbpfCpu::cgroup_run_delay`].
    pub fn cgroup_totals(&mut self) -> io::Result<&HashMap<u64, u64>> {
        self.read_and_update()?;
        Ok(self.totals.totals())
    }

    /// Run-queue wait per cgroup v2 id: nanoseconds its tasks were runnable but waiting for
    /// a CPU since attaching, short-lived and removed cgroups' tasks included. Monotonic.
    /// These are the figures of the last read (by [`EbpfCpu::cgroup_totals`],
    /// [`EbpfCpu::cgroup_times`] or [`EbpfCpu::retire_dead`]): no map read of its own. A
    /// wait is charged when the slice it preceded ends, so a task running (or still waiting)
    /// at the read shows it at the next one.
    pub fn cgroup_run_delay(&self) -> &HashMap<u64, u64> {
        self.wait_totals.totals()
    }

    /// One fresh read of both: (on-CPU ns, run-queue wait ns) per cgroup v2 id.
    pub fn cgroup_times(&mut self) -> io::Result<(&PerCgroupNs, &PerCgroupNs)> {
        self.read_and_update()?;
        Ok((self.totals.totals(), self.wait_totals.totals()))
    }

    /// Run-queue wait by (waiter, holder) pair of cgroup v2 ids since attaching: how long the
    /// waiter's tasks waited while the holder's held their CPU (holder 0: nobody on that
    /// CPU; see `collector_common::WaitPair`). One fresh read of the whole map, so call it at
    /// the sampling interval, not the CPU tick. Monotonic; pairs of one waiter sum to its
    /// wait (less what a full map dropped).
    pub fn wait_behind(&mut self) -> io::Result<&HashMap<WaitPair, u64>> {
        let (observed, raw) = self.read_behind_consistent()?;
        self.behind_in_map = raw;
        Ok(self.behind_totals.update(&observed))
    }

    /// Whether run-queue wait is measured: false on a kernel without `sched_info.run_delay`
    /// (then every wait reads zero, which is not a measurement) and for
    /// [`Probe::CpuOnlyBaseline`].
    pub fn run_delay_available(&self) -> bool {
        self.run_delay_available
            && matches!(self.probe, Probe::Accounting | Probe::UnattributedBaseline)
    }

    /// [`EbpfCpu::cgroup_times`] for some cgroups only: one map lookup each instead of a walk
    /// of the whole map (two system calls per entry, every cgroup that ever ran), which is
    /// what the collector's frequent CPU tick needs. The others keep their last totals.
    pub fn cgroup_times_of(
        &mut self,
        ids: &BTreeSet<u64>,
    ) -> io::Result<(&PerCgroupNs, &PerCgroupNs)> {
        let (mut observed, _, _) = self.read_consistent(Some(ids))?;
        observed.cpu_ns.retain(|id, _| ids.contains(id));
        observed.wait_ns.retain(|id, _| ids.contains(id));
        self.totals.update(&observed.cpu_ns);
        self.wait_totals.update(&observed.wait_ns);
        Ok((self.totals.totals(), self.wait_totals.totals()))
    }

    fn read_and_update(&mut self) -> io::Result<()> {
        let (observed, _, _) = self.read_consistent(None)?;
        self.totals.update(&observed.cpu_ns);
        self.wait_totals.update(&observed.wait_ns);
        Ok(())
    }

    /// Deletes map entries of cgroups that are gone (per `is_live`), keeping their totals.
    /// Call it every few reads; it is what keeps the map from filling on a node that creates
    /// thousands of short-lived cgroups. Returns how many entries were deleted.
    pub fn retire_dead(&mut self, is_live: impl Fn(u64) -> bool) -> io::Result<usize> {
        let (observed, raw, cached) = self.read_consistent(None)?;
        self.totals.update(&observed.cpu_ns);
        self.wait_totals.update(&observed.wait_ns);
        let candidates = self.totals.retirable(&raw, &cached, &is_live);
        for cgroup in &candidates {
            // Read the entry's final value right before deleting it.
            let last = match self.cgroup_ns.get(cgroup, 0) {
                Ok(values) => cpu_totals::sum_times(&values),
                Err(_) => continue,
            };
            if self.cgroup_ns.remove(cgroup).is_ok() {
                self.totals.retired(*cgroup, last.cpu_ns);
                self.wait_totals.retired(*cgroup, last.wait_ns);
            }
        }
        // Pairs go once either side is gone (holder 0 is never gone).
        // From the last read of the attribution map (this scan's: `wait_behind` comes first).
        let raw = std::mem::take(&mut self.behind_in_map);
        let cached: HashSet<WaitPair> = self.read_cpu_states()?.iter().map(|s| s.behind).collect();
        let pairs = self.behind_totals.retirable(&raw, &cached, |p| {
            is_live(p.waiter) && (p.holder == 0 || is_live(p.holder))
        });
        for pair in &pairs {
            let last: u64 = match self.wait_behind.get(pair, 0) {
                Ok(values) => values.iter().sum(),
                Err(_) => continue,
            };
            if self.wait_behind.remove(pair).is_ok() {
                self.behind_totals.retired(*pair, last);
            }
        }
        Ok(candidates.len() + pairs.len())
    }

    /// One consistent read of the attribution map: (pairs with pending, map contents).
    fn read_behind_consistent(
        &mut self,
    ) -> io::Result<(HashMap<WaitPair, u64>, HashMap<WaitPair, u64>)> {
        const ATTEMPTS: usize = 4;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let before = self.read_cpu_states()?;
            let hash = entries(&self.wait_behind)?;
            let after = self.read_cpu_states()?;
            let (combined, torn) = cpu_totals::combine_behind(&before, &hash, &after);
            if torn == 0 || attempt == ATTEMPTS {
                let raw = hash.iter().map(|(p, v)| (*p, v.iter().sum())).collect();
                return Ok((combined, raw));
            }
        }
    }

    /// Forgets totals of cgroups the caller no longer needs (bounded memory in node mode).
    pub fn forget(&mut self, cgroups: &[u64]) {
        self.totals.forget(cgroups);
        self.wait_totals.forget(cgroups);
        self.behind_totals
            .forget_where(|p| cgroups.contains(&p.waiter));
    }

    /// Threads that exited since the last call, with their total CPU time.
    pub fn drain_exits(&mut self) -> Vec<ExitedThread> {
        let mut out = Vec::new();
        while let Some(item) = self.exits.next() {
            if item.len() >= std::mem::size_of::<ExitRecord>() {
                // SAFETY: the program writes whole `ExitRecord`s; read unaligned to be safe.
                let record =
                    unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<ExitRecord>()) };
                out.push(ExitedThread::from_record(&record));
            }
        }
        out
    }

    /// Moves pending diagnostics from the kernel side into the tracing log.
    pub fn flush_logs(&mut self) {
        if let Some(logger) = &mut self.logger {
            logger.flush();
        }
    }

    /// The kernel side's health counters.
    pub fn stats(&self) -> EbpfStats {
        let sum = |stat: Stat| -> u64 {
            self.stats
                .get(&(stat as u32), 0)
                .map(|v| v.iter().sum())
                .unwrap_or(0)
        };
        debug_assert!((Stat::BehindNsDropped as u32) < STAT_COUNT);
        EbpfStats {
            cgroup_map_full: sum(Stat::CgroupMapFull),
            cgroup_ns_dropped: sum(Stat::CgroupNsDropped),
            cgroup_wait_ns_dropped: sum(Stat::CgroupWaitNsDropped),
            exit_ring_full: sum(Stat::ExitRingFull),
            exit_records: sum(Stat::ExitRecords),
            unseen_switch_in: sum(Stat::UnseenSwitchIn),
            slices_lost: sum(Stat::SliceLost),
            recursion_misses: self.recursion_misses().unwrap_or(0),
            missed_switch_recovered: sum(Stat::MissedSwitchRecovered),
            missed_switch_lost: sum(Stat::MissedSwitchLost),
            behind_ns_dropped: sum(Stat::BehindNsDropped),
            cgroup_map_len: self.cgroup_ns.keys().filter(Result::is_ok).count() as u64,
            cgroup_map_capacity: u64::from(self.map_capacity),
        }
    }

    /// The attached program's `recursion_misses`, from `/proc/self/fdinfo` of its fd.
    fn recursion_misses(&self) -> Option<u64> {
        use std::os::fd::{AsFd, AsRawFd};
        let program: &BtfTracePoint = self
            .ebpf
            .program(self.probe.program_name())?
            .try_into()
            .ok()?;
        let fd = program.fd().ok()?.as_fd().as_raw_fd();
        let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("recursion_misses:"))
            .and_then(|v| v.trim().parse().ok())
    }

    /// `run_time_ns / run_cnt` inputs of the attached program (zero unless
    /// `kernel.bpf_stats_enabled` is on).
    pub fn program_run_stats(&self) -> io::Result<ProgramRunStats> {
        let name = self.probe.program_name();
        let program: &BtfTracePoint = self
            .ebpf
            .program(name)
            .ok_or_else(|| io::Error::other("program missing"))?
            .try_into()
            .map_err(io::Error::other)?;
        let info = program.info().map_err(io::Error::other)?;
        Ok(ProgramRunStats {
            run_time: info.run_time(),
            run_count: info.run_count(),
        })
    }

    /// One consistent read: (totals incl. pending, map contents by cgroup (on-CPU ns), cgroups
    /// cached on some CPU). Retries a few times when a CPU flushed during the read.
    #[allow(clippy::type_complexity)]
    /// With `only`, the hash is read for those cgroups alone.
    fn read_consistent(
        &mut self,
        only: Option<&BTreeSet<u64>>,
    ) -> io::Result<(cpu_totals::Combined, HashMap<u64, u64>, HashSet<u64>)> {
        const ATTEMPTS: usize = 4;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let before = self.read_cpu_states()?;
            let mut hash = Vec::new();
            match only {
                Some(ids) => {
                    for id in ids {
                        match self.cgroup_ns.get(id, 0) {
                            Ok(values) => hash.push((*id, values.to_vec())),
                            // Not flushed yet, or retired: its total is pending or kept.
                            Err(aya::maps::MapError::KeyNotFound) => continue,
                            Err(e) => return Err(io::Error::other(e)),
                        }
                    }
                }
                None => hash = entries(&self.cgroup_ns)?,
            }
            let after = self.read_cpu_states()?;
            let combined = cpu_totals::combine(&before, &hash, &after);
            // A read still torn after the retries defers those CPUs' pending time to the next.
            if combined.torn == 0 || attempt == ATTEMPTS {
                let raw = hash
                    .iter()
                    .map(|(c, v)| (*c, cpu_totals::sum_times(v).cpu_ns))
                    .collect();
                let cached = after
                    .iter()
                    .map(|s| s.cached_cgroup)
                    .filter(|c| *c != 0)
                    .collect();
                return Ok((combined, raw, cached));
            }
        }
    }

    fn read_cpu_states(&self) -> io::Result<Vec<CpuState>> {
        Ok(self
            .cpu_state
            .get(&0, 0)
            .map_err(io::Error::other)?
            .to_vec())
    }
}

/// Every entry of a per-CPU hash map with its per-CPU values. An entry deleted while
/// iterating (by our own retire) is not an error.
fn entries<K: aya::Pod, V: aya::Pod>(
    map: &PerCpuHashMap<MapData, K, V>,
) -> io::Result<Vec<(K, Vec<V>)>> {
    let mut out = Vec::new();
    for entry in map.iter() {
        match entry {
            Ok((key, values)) => out.push((key, values.to_vec())),
            Err(aya::maps::MapError::KeyNotFound) => continue,
            Err(e) => return Err(io::Error::other(e)),
        }
    }
    Ok(out)
}

/// The member offsets the program needs, from the running kernel's BTF, and whether the
/// kernel has `sched_info.run_delay`.
fn kernel_offsets(raw: &[u8]) -> Result<(Vec<u64>, bool), String> {
    let parsed = btf::Btf::parse(raw).map_err(|e| format!("parsing {VMLINUX_BTF}: {e}"))?;
    let lookup = |ty: &str, path: &[&str]| {
        parsed
            .member_offset(ty, path)
            .map(u64::from)
            .map_err(|e| format!("looking up {ty}.{}: {e}", path.join(".")))
    };
    let mut run_delay_available = true;
    let offsets = globals::ALL
        .iter()
        .map(|(global, ty, path)| match lookup(ty, path) {
            // Without CONFIG_SCHED_INFO, read a field that never changes instead: every wait
            // is then zero and CPU accounting is unaffected (see `globals::TASK_RUN_DELAY`).
            Err(_) if *global == globals::TASK_RUN_DELAY || *global == globals::TASK_PCOUNT => {
                run_delay_available = false;
                lookup("task_struct", &["start_time"])
            }
            other => other,
        })
        .collect::<Result<_, _>>()?;
    Ok((offsets, run_delay_available))
}

fn take_map<T>(ebpf: &mut Ebpf, name: &str) -> Result<T, EbpfUnavailable>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| EbpfUnavailable::Kernel(format!("object has no map `{name}`")))?;
    T::try_from(map).map_err(|e| EbpfUnavailable::Kernel(format!("map `{name}`: {e}")))
}

/// Parsing the kernel's BTF (aya's `EbpfLoader::new()` always parses all 6 MB of it) leaves
/// tens of MB of freed heap that glibc keeps; hand it back so the collector's resident memory
/// reflects what it uses.
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; raising it is harmless after.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        tracing::debug!(
            "could not raise RLIMIT_MEMLOCK: {}",
            io::Error::last_os_error()
        );
    }
}

/// The error and its sources on one line, with the verifier log when there is one.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        // aya's messages often repeat their source's text; keep each part once.
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

fn classify(err: &(dyn std::error::Error + 'static)) -> EbpfUnavailable {
    let mut detail = chain(err);
    if let Some(aya::programs::ProgramError::LoadError { verifier_log, .. }) =
        err.downcast_ref::<aya::programs::ProgramError>()
    {
        // The last lines of the verifier log say why.
        let log = verifier_log.to_string();
        let tail: Vec<&str> = log.lines().rev().take(8).collect();
        detail.push_str("; verifier: ");
        detail.push_str(&tail.into_iter().rev().collect::<Vec<_>>().join(" | "));
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<io::Error>()
            && matches!(io.raw_os_error(), Some(libc::EPERM | libc::EACCES))
        {
            return EbpfUnavailable::Permission(detail);
        }
        source = e.source();
    }
    EbpfUnavailable::Kernel(detail)
}
