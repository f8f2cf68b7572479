//! A live process as the /proc scans last saw it (the scans themselves: `processes.rs`).

use super::grouping::ContainerName;
use crate::sources::cgroupfs::CgroupPath;

/// A live process as last seen.
pub(super) struct Process {
    pub(super) start_ticks: u64,
    pub(super) comm: String,
    pub(super) container: ContainerName,
    /// cgroup v2 path, for scoping and for the container's cgroup set.
    pub(super) cgroup_v2: Option<String>,
    pub(super) cgroup_v1: Option<String>,
    /// Its cgroup in the v1 memory controller, when not the root: where a hybrid host keeps
    /// the memory counters of a process grouped by its v2 cgroup.
    pub(super) memory_v1: Option<String>,
    /// Its v1 `cpu` and `blkio` cgroups when twins of its v2 cgroup: where a hybrid host
    /// keeps throttling and block I/O counters.
    pub(super) cpu_v1: Option<String>,
    pub(super) blkio_v1: Option<String>,
    /// Network namespace inode.
    pub(super) netns: Option<u64>,
    pub(super) ppid: i32,
    pub(super) first_ticks: u64,
    pub(super) last_ticks: u64,
    /// Ticks used since the previous scan (for the /proc CPU fallback).
    pub(super) window_ticks: u64,
    pub(super) peak_cpu_percent: f64,
    /// Threads at the last scan.
    pub(super) threads: u64,
    /// Resident memory at the last scan, and the most seen.
    pub(super) rss: u64,
    pub(super) peak_rss: u64,
    pub(super) seen_at_slow_tick: u64,
    /// Scans it has been seen in.
    pub(super) scans: u32,
    /// Exact CPU seconds and lifetime average from its eBPF exit record, once it arrived.
    pub(super) exact_exit: Option<(f64, f64)>,
    /// Its threads' summed `run_delay` at the last scan that read it (the /proc fallback for
    /// run-queue wait).
    pub(super) run_delay_ns: Option<u64>,
}

/// Seconds since boot (`CLOCK_BOOTTIME`, the clock of `/proc/PID/stat` start times).
fn boot_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a timespec; CLOCK_BOOTTIME exists on every supported kernel.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

impl Process {
    /// How long it has lived (or lived, just after it ended).
    pub(super) fn lifetime_seconds(&self, ticks_per_sec: u64) -> f64 {
        (boot_seconds() - self.start_ticks as f64 / ticks_per_sec.max(1) as f64).max(0.0)
    }

    /// The cgroup it is grouped by (see [`CgroupPath::best`]).
    pub(super) fn group_cgroup(&self) -> Option<CgroupPath> {
        CgroupPath::best(self.cgroup_v2.as_deref(), self.cgroup_v1.as_deref())
    }
}
