//! Types shared by the kernel side (`collector-ebpf`) and the user side (`collector`).
//!
//! Everything here is `#[repr(C)]` with explicit padding so both sides agree byte for byte.
//! `aya::Pod` impls exist only with the `user` feature, so the eBPF build stays dependency-free.
#![no_std]

/// Names the user side looks up in the object. The kernel side's `#[map]` statics and
/// program functions carry exactly these identifiers (attributes cannot take a constant).
pub mod names {
    /// The BTF tracepoint both programs attach to.
    pub const TRACEPOINT: &str = "sched_switch";
    /// The accounting program.
    pub const PROGRAM: &str = "sched_switch";
    /// An empty program on the same tracepoint: the benchmark's floor.
    pub const PROGRAM_EMPTY: &str = "sched_switch_empty";
    /// The accounting program without run-queue wait (CPU time only, the per-switch work
    /// before wait was added): the benchmark's baseline. Shares the maps.
    pub const PROGRAM_CPU_ONLY: &str = "sched_switch_cpu_only";
    /// The accounting program without wait attribution (CPU time and run-queue wait, the
    /// per-switch work before `WAIT_BEHIND`): the benchmark's baseline for attribution.
    pub const PROGRAM_UNATTRIBUTED: &str = "sched_switch_unattributed";
    /// Per-CPU [`CpuState`](super::CpuState) array.
    pub const CPU_STATE: &str = "CPU_STATE";
    /// Per-CPU hash: cgroup v2 id -> [`CgroupTime`](super::CgroupTime).
    pub const CGROUP_TIME: &str = "CGROUP_TIME";
    /// Ring buffer of [`ExitRecord`](super::ExitRecord)s.
    pub const EXITS: &str = "EXITS";
    /// Per-CPU [`Stat`](super::Stat) counters.
    pub const STATS: &str = "STATS";
    /// Per-CPU hash: [`WaitPair`](super::WaitPair) -> run-queue wait nanoseconds.
    pub const WAIT_BEHIND: &str = "WAIT_BEHIND";
}

/// Slices remembered per CPU to attribute a wait to whoever held the CPU (a power of two).
pub const RECENT_SLICES: usize = 8;

/// A slice that ran on a CPU: who held it, for how long (growth of its runtime). The idle
/// task's stretch is `cgroup` 0 and `ns` `u64::MAX`: a wait that reaches back to it began
/// while the CPU was idle (wake-up latency), or on another CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecentSlice {
    /// Address of the task (a wait stops at the waiter's own earlier slice: it was not
    /// waiting before that).
    pub task: u64,
    /// Its cgroup v2 id.
    pub cgroup: u64,
    /// On-CPU nanoseconds; 0 marks an unused slot.
    pub ns: u64,
}

/// Key of `WAIT_BEHIND`: the cgroup whose task waited, and the cgroup that held the CPU
/// meanwhile (0: nobody on this CPU: the CPU was idle, the time went to interrupts or the
/// hypervisor, or the slices were older than [`RECENT_SLICES`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WaitPair {
    pub waiter: u64,
    pub holder: u64,
}

/// Per-CPU state of the `sched_switch` program (one slot of a per-CPU array).
///
/// The program charges each slice as the growth of the task's own `se.sum_exec_runtime`
/// between its switch-in and switch-out (the very deltas the kernel adds to the cgroup's
/// `cpu.stat`), so it needs no clock read; the wait for a CPU that preceded the slice is the
/// growth of the task's `sched_info.run_delay` over the same span. It also keeps the cgroup
/// that ran last on this CPU and the nanoseconds it has used and waited since they were last
/// flushed to `CGROUP_TIME`: consecutive slices of one cgroup (the common case) cost a per-CPU
/// array write, not a hash update.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuState {
    /// Address of the task that switched in last on this CPU (0 before the first switch).
    pub in_task: u64,
    /// That task's `se.sum_exec_runtime` when it switched in.
    pub in_runtime_ns: u64,
    /// That task's `sched_info.run_delay` when it switched in, before the kernel added the
    /// wait that just ended (`sched_info_arrive` runs after the tracepoint).
    pub in_run_delay_ns: u64,
    /// That task's `sched_info.pcount` (times it ran on a CPU) when it switched in, before
    /// the kernel counted that switch-in: tells how often it was picked since, should its
    /// switch-out not reach the program.
    pub in_pcount: u64,
    /// cgroup v2 id whose time is cached in `pending_ns`; 0 when nothing is cached.
    pub cached_cgroup: u64,
    /// On-CPU nanoseconds of `cached_cgroup` not yet added to `CGROUP_TIME`.
    pub pending_ns: u64,
    /// Run-queue wait nanoseconds of `cached_cgroup` not yet added to `CGROUP_TIME`.
    pub pending_wait_ns: u64,
    /// Incremented before and after every flush (odd while flushing), so a reader can tell
    /// whether the pending figures and the hash were read consistently (a seqcount).
    pub flush_seq: u64,
    /// The last slices that ran on this CPU, newest at `recent_head`. When a task's slice
    /// ends, the wait that preceded it is spread over these, newest first (each up to its
    /// length): what held the CPU while it waited.
    pub recent: [RecentSlice; RECENT_SLICES],
    /// Index of the newest of `recent` (wraps; taken modulo [`RECENT_SLICES`]).
    pub recent_head: u64,
    /// The (waiter, holder) pair whose wait is cached in `pending_behind_ns` (like
    /// `cached_cgroup`: runs of one pair cost no hash update).
    pub behind: WaitPair,
    /// Wait nanoseconds of `behind` not yet added to `WAIT_BEHIND`.
    pub pending_behind_ns: u64,
}

/// Value of `CGROUP_TIME`: what one cgroup's tasks used and waited, per CPU.
///
/// One value rather than two maps, so a flush costs one hash lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupTime {
    /// On-CPU nanoseconds.
    pub cpu_ns: u64,
    /// Nanoseconds its tasks were runnable but waiting for a CPU (run-queue wait), charged
    /// when the slice that ended the wait ends.
    pub wait_ns: u64,
}

/// Counters of the eBPF side's own health, per CPU (index = `Stat as u32`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// Flushes that could not insert a new cgroup because `CGROUP_TIME` was full.
    CgroupMapFull = 0,
    /// On-CPU nanoseconds that were therefore not attributed to their cgroup.
    CgroupNsDropped = 1,
    /// Process-exit records dropped because the ring buffer was full.
    ExitRingFull = 2,
    /// Process-exit records emitted.
    ExitRecords = 3,
    /// Switches whose outgoing task was not the one last seen switching in on this CPU; the
    /// slice then comes from the scheduler's own pick-time runtime (fair class) or is lost.
    UnseenSwitchIn = 4,
    /// Of those, slices that could not be recovered (non-fair scheduling classes).
    SliceLost = 5,
    /// Run-queue wait nanoseconds not attributed because `CGROUP_TIME` was full.
    CgroupWaitNsDropped = 6,
    /// Switches that did not reach the program (the kernel counts more context switches
    /// than program runs, about 1 in 1,000 under fork/exec churn on 6.18) whose outgoing
    /// task's slice was recovered exactly.
    MissedSwitchRecovered = 7,
    /// Of those, slices that could not be recovered: the task had been picked again more
    /// than once since, or was gone.
    MissedSwitchLost = 8,
    /// Wait nanoseconds not attributed to a holder because `WAIT_BEHIND` was full (still
    /// counted in the waiter's total).
    BehindNsDropped = 9,
}

/// Number of slots in the `STATS` per-CPU array.
pub const STAT_COUNT: u32 = 10;

/// Capacity of `CGROUP_TIME`. The collector deletes entries of removed cgroups after
/// reading them one last time, so this bounds live cgroups, not cgroups over time.
pub const CGROUP_MAP_ENTRIES: u32 = 16_384;

/// Size of the process-exit ring buffer in bytes (a power of two, a multiple of the page size).
/// At 56 bytes a record this holds about 4,600 exits between two drains.
pub const EXIT_RING_BYTES: u32 = 256 * 1024;

/// Length of a task's command name, as in the kernel (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;

/// One exited thread, written to the `EXITS` ring buffer on the thread's last switch.
///
/// Per-process CPU of processes that lived shorter than a sampling interval comes from here:
/// the thread's own final `se.sum_exec_runtime`, the same clock the kernel's cgroup
/// accounting uses.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitRecord {
    /// Process id (thread-group id) the thread belonged to.
    pub tgid: u32,
    /// Thread id.
    pub pid: u32,
    /// cgroup v2 id of the thread when it exited.
    pub cgroup_id: u64,
    /// Total on-CPU nanoseconds of this thread over its life.
    pub runtime_ns: u64,
    /// `bpf_ktime_get_ns()` at exit.
    pub exit_ns: u64,
    /// `task_struct.start_time` (same monotonic clock): the thread's life is `exit_ns - start_ns`.
    pub start_ns: u64,
    /// The process's peak resident set in pages, `signal->maxrss`: the high-water mark of its
    /// memory, raised by each exiting thread (and, as getrusage's `ru_maxrss`, by the image
    /// an exec replaced). Complete at the last thread's exit.
    pub max_rss_pages: u64,
    /// Command name, NUL-padded.
    pub comm: [u8; COMM_LEN],
}

/// Kernel struct member offsets the program reads with direct BTF loads (no helper calls,
/// which cost 20-60 ns each on a mitigated VM). The loader finds them in the running kernel's
/// BTF and sets them as read-only globals, which the verifier treats as constants: a small,
/// explicit stand-in for CO-RE relocations, which Rust cannot emit.
pub mod globals {
    /// `task_struct.se.sum_exec_runtime`
    pub const TASK_RUNTIME: &str = "OFF_TASK_RUNTIME";
    /// `task_struct.se.prev_sum_exec_runtime` (runtime when the fair scheduler last picked it)
    pub const TASK_PICK_RUNTIME: &str = "OFF_TASK_PICK_RUNTIME";
    /// `task_struct.policy`
    pub const TASK_POLICY: &str = "OFF_TASK_POLICY";
    /// `task_struct.pid`
    pub const TASK_PID: &str = "OFF_TASK_PID";
    /// `task_struct.tgid`
    pub const TASK_TGID: &str = "OFF_TASK_TGID";
    /// `task_struct.start_time`
    pub const TASK_START_TIME: &str = "OFF_TASK_START_TIME";
    /// `task_struct.cgroups`
    pub const TASK_CGROUPS: &str = "OFF_TASK_CGROUPS";
    /// `css_set.dfl_cgrp`
    pub const CSS_SET_DFL_CGRP: &str = "OFF_CSS_SET_DFL_CGRP";
    /// `cgroup.kn`
    pub const CGROUP_KN: &str = "OFF_CGROUP_KN";
    /// `kernfs_node.id` (the cgroup v2 id, as `bpf_get_current_cgroup_id()` returns it)
    pub const KERNFS_NODE_ID: &str = "OFF_KERNFS_NODE_ID";
    /// `task_struct.sched_info.run_delay` (cumulative ns spent waiting on a run queue). Absent
    /// without `CONFIG_SCHED_INFO`; the loader then points it at `start_time`, which never
    /// changes, so every wait is zero and CPU accounting still works.
    pub const TASK_RUN_DELAY: &str = "OFF_TASK_RUN_DELAY";
    /// `task_struct.sched_info.pcount` (times the task ran on a CPU); like `run_delay`,
    /// pointed at `start_time` without `CONFIG_SCHED_INFO`.
    pub const TASK_PCOUNT: &str = "OFF_TASK_PCOUNT";
    /// `task_struct.signal` (the process's shared `signal_struct`)
    pub const TASK_SIGNAL: &str = "OFF_TASK_SIGNAL";
    /// `signal_struct.maxrss` (peak resident pages, what getrusage reports)
    pub const SIGNAL_MAXRSS: &str = "OFF_SIGNAL_MAXRSS";

    /// (global, struct, member path) for each offset.
    pub const ALL: [(&str, &str, &[&str]); 14] = [
        (TASK_RUNTIME, "task_struct", &["se", "sum_exec_runtime"]),
        (
            TASK_PICK_RUNTIME,
            "task_struct",
            &["se", "prev_sum_exec_runtime"],
        ),
        (TASK_POLICY, "task_struct", &["policy"]),
        (TASK_PID, "task_struct", &["pid"]),
        (TASK_TGID, "task_struct", &["tgid"]),
        (TASK_START_TIME, "task_struct", &["start_time"]),
        (TASK_CGROUPS, "task_struct", &["cgroups"]),
        (CSS_SET_DFL_CGRP, "css_set", &["dfl_cgrp"]),
        (CGROUP_KN, "cgroup", &["kn"]),
        (KERNFS_NODE_ID, "kernfs_node", &["id"]),
        (TASK_RUN_DELAY, "task_struct", &["sched_info", "run_delay"]),
        (TASK_PCOUNT, "task_struct", &["sched_info", "pcount"]),
        (TASK_SIGNAL, "task_struct", &["signal"]),
        (SIGNAL_MAXRSS, "signal_struct", &["maxrss"]),
    ];
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: all are `#[repr(C)]`, contain only integers and byte arrays, and have no padding.
    unsafe impl aya::Pod for super::CpuState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CgroupTime {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ExitRecord {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::WaitPair {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_no_padding() {
        assert_eq!(
            core::mem::size_of::<CpuState>(),
            64 + RECENT_SLICES * 24 + 8 + 16 + 8
        );
        assert_eq!(core::mem::size_of::<WaitPair>(), 16);
        assert!(RECENT_SLICES.is_power_of_two());
        assert_eq!(core::mem::size_of::<CgroupTime>(), 16);
        assert_eq!(
            core::mem::size_of::<ExitRecord>(),
            4 + 4 + 8 + 8 + 8 + 8 + 8 + COMM_LEN
        );
    }
}
