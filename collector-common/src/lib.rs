//! Types shared by the kernel side (`collector-ebpf`) and the user side (`collector`).
//!
//! Everything here is `#[repr(C)]` with explicit padding so both sides agree byte for byte.
//! `aya::Pod` impls exist only with the `user` feature, so the eBPF build stays dependency-free.
#![no_std]

/// Per-CPU state of the `sched_switch` program (one slot of a per-CPU array).
///
/// The program keeps the cgroup that ran last on this CPU and the nanoseconds it has used
/// since it was last flushed to `CGROUP_CPU_NS`. Consecutive slices of the same cgroup (the
/// common case) then cost a per-CPU array write instead of a hash update.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuState {
    /// `bpf_ktime_get_ns()` at the previous switch on this CPU; 0 until the first one.
    pub last_switch_ns: u64,
    /// cgroup v2 id whose time is cached in `pending_ns`; 0 when nothing is cached.
    pub cached_cgroup: u64,
    /// On-CPU nanoseconds of `cached_cgroup` not yet added to `CGROUP_CPU_NS`.
    pub pending_ns: u64,
    /// Incremented before and after every flush (odd while flushing), so a reader can tell
    /// whether `pending_ns` and the hash were read consistently (a seqcount).
    pub flush_seq: u64,
}

/// Counters of the eBPF side's own health, per CPU (index = `Stat as u32`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// Flushes that could not insert a new cgroup because `CGROUP_CPU_NS` was full.
    CgroupMapFull = 0,
    /// Nanoseconds that were therefore not attributed to their cgroup.
    CgroupNsDropped = 1,
    /// Process-exit records dropped because the ring buffer was full.
    ExitRingFull = 2,
    /// Process-exit records emitted.
    ExitRecords = 3,
    /// Reads of the task's runtime that failed (unexpected; logged).
    ReadFailures = 4,
}

/// Number of slots in the `STATS` per-CPU array.
pub const STAT_COUNT: u32 = 5;

/// Capacity of `CGROUP_CPU_NS`. The collector deletes entries of removed cgroups after
/// reading them one last time, so this bounds live cgroups, not cgroups over time.
pub const CGROUP_MAP_ENTRIES: u32 = 16_384;

/// Size of the process-exit ring buffer in bytes (a power of two, a multiple of the page size).
/// At 56 bytes a record this holds about 4,600 exits between two drains.
pub const EXIT_RING_BYTES: u32 = 256 * 1024;

/// Length of a task's command name, as in the kernel (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;

/// One exited thread, written to the `EXITS` ring buffer by the `sched_process_exit` program.
///
/// Per-process CPU of processes that lived shorter than a sampling interval comes from here:
/// the thread's own `se.sum_exec_runtime` at exit, the same clock the kernel's cgroup
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
    /// Command name, NUL-padded.
    pub comm: [u8; COMM_LEN],
}

/// Names of the global variables the loader sets before loading (read-only data).
pub mod globals {
    /// Byte offset of `se.sum_exec_runtime` inside `struct task_struct`, found by the loader
    /// in the kernel's BTF (a small, explicit stand-in for CO-RE relocation).
    pub const TASK_SUM_EXEC_RUNTIME_OFFSET: &str = "TASK_SUM_EXEC_RUNTIME_OFFSET";
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: both are `#[repr(C)]`, contain only integers and byte arrays, and have no padding.
    unsafe impl aya::Pod for super::CpuState {}
    unsafe impl aya::Pod for super::ExitRecord {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_no_padding() {
        assert_eq!(core::mem::size_of::<CpuState>(), 32);
        assert_eq!(
            core::mem::size_of::<ExitRecord>(),
            4 + 4 + 8 + 8 + 8 + COMM_LEN
        );
    }
}
