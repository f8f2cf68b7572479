//! `/proc` parsers and readers.
//!
//! The parsers are pure functions over the text of one file, so every quirk (a `)` inside a
//! command name, a kernel with fewer columns, a malformed line) is unit-tested on fixtures.
//! The readers are thin: they read files under a configurable root (`--proc-path`, so a
//! sidecar can read the host's `/proc` mounted elsewhere) and treat a process that exits
//! mid-read as gone, not as an error.
//!
//! Malformed lines are skipped, logged at `debug` with the file and the reason, and counted
//! in a process-wide counter ([`skipped_lines`]) that the sampler reports at every scan that
//! grew it: a warning in the log and `ci_collector_proc_lines_skipped_total` in `/metrics`.

use std::{
    fmt,
    sync::atomic::{AtomicU64, Ordering},
};

mod read;
#[cfg(test)]
mod tests;

pub use read::{
    FileReader, SystemSnapshot, clock_ticks_per_sec, list_pids, page_size, read_net_dev,
    read_process_schedstat, read_schedstat, read_system,
};

/// Why a file that must parse (`/proc/PID/stat`, `/proc/PID/schedstat`) did not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// No `(` ... `)` around the command name: not a stat line at all.
    #[error("no parenthesised command name")]
    MissingComm,
    /// The line ends before a field we need (field numbers as in proc(5)).
    #[error("field {number} ({name}) is missing")]
    MissingField {
        /// Field name as in proc(5).
        name: &'static str,
        /// 1-based field number as in proc(5).
        number: usize,
    },
    /// A field is not the number it should be.
    #[error("field {name} is not a number: {value:?}")]
    BadNumber {
        /// Field name as in proc(5).
        name: &'static str,
        /// The offending text.
        value: String,
    },
}

static SKIPPED_LINES: AtomicU64 = AtomicU64::new(0);

/// Lines skipped as malformed by every parser of this module since the process started.
///
/// One process-wide counter keeps the parser signatures plain; the collector logs it (or a
/// change in it) instead of one warning per line.
pub fn skipped_lines() -> u64 {
    SKIPPED_LINES.load(Ordering::Relaxed)
}

/// Records one skipped line: counted, and logged at debug with the file and the reason.
fn skip(file: &str, reason: impl fmt::Display, line: &str) {
    SKIPPED_LINES.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(file, %reason, line, "skipping malformed line");
}

// ---------------------------------------------------------------------------------------------
// /proc/PID/stat

/// The fields of `/proc/PID/stat` the collector uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidStat {
    /// Process id (field 1).
    pub pid: i32,
    /// Command name, at most 15 bytes, may contain anything but NUL (field 2).
    pub comm: String,
    /// State letter: R, S, D, Z, ... (field 3).
    pub state: char,
    /// Parent pid (field 4).
    pub ppid: i32,
    /// User-mode CPU time in clock ticks (field 14).
    pub utime: u64,
    /// Kernel-mode CPU time in clock ticks (field 15).
    pub stime: u64,
    /// Threads in the process (field 20).
    pub num_threads: u64,
    /// Start time in clock ticks after boot (field 22); with the pid it identifies a process
    /// across pid reuse.
    pub starttime: u64,
    /// Resident set size in pages (field 24); negative values (seen on old kernels) read as 0.
    pub rss_pages: u64,
}

/// Parses `/proc/PID/stat`.
///
/// The command name is the text between the first `(` and the last `)`: it can contain
/// spaces, parentheses and even newlines, but nothing after it can contain `)`. Fields past
/// `rss` (field 24) are ignored, so kernels with fewer trailing fields parse.
pub fn parse_pid_stat(text: &str) -> Result<PidStat, ParseError> {
    let open = text.find('(').ok_or(ParseError::MissingComm)?;
    let close = text.rfind(')').ok_or(ParseError::MissingComm)?;
    if close < open {
        return Err(ParseError::MissingComm);
    }
    let pid = number("pid", text[..open].trim())?;
    let comm = text[open + 1..close].to_owned();
    // Fields from 3 (state) on; index i holds field i + 3.
    let rest: Vec<&str> = text[close + 1..].split_ascii_whitespace().collect();
    let field = |name: &'static str, number: usize| {
        rest.get(number - 3)
            .copied()
            .ok_or(ParseError::MissingField { name, number })
    };
    let state_text = field("state", 3)?;
    let mut chars = state_text.chars();
    let state = match (chars.next(), chars.next()) {
        (Some(c), None) => c,
        _ => {
            return Err(ParseError::BadNumber {
                name: "state",
                value: state_text.to_owned(),
            });
        }
    };
    // In field order, so a truncated line reports the first missing field.
    let ppid = number("ppid", field("ppid", 4)?)?;
    let utime = number("utime", field("utime", 14)?)?;
    let stime = number("stime", field("stime", 15)?)?;
    let num_threads = number("num_threads", field("num_threads", 20)?)?;
    let starttime = number("starttime", field("starttime", 22)?)?;
    let rss: i64 = number("rss", field("rss", 24)?)?;
    Ok(PidStat {
        pid,
        comm,
        state,
        ppid,
        utime,
        stime,
        num_threads,
        starttime,
        rss_pages: rss.max(0).unsigned_abs(),
    })
}

fn number<T: std::str::FromStr>(name: &'static str, value: &str) -> Result<T, ParseError> {
    value.parse().map_err(|_| ParseError::BadNumber {
        name,
        value: value.to_owned(),
    })
}

// ---------------------------------------------------------------------------------------------
// /proc/PID/schedstat

/// `/proc/PID/schedstat` (or `/proc/PID/task/TID/schedstat`): one task's scheduler figures.
///
/// These are the task's own, not its process's: `/proc/PID/schedstat` is the thread-group
/// leader alone. Sum the `task/*/schedstat` files for a process (see
/// [`read_process_schedstat`]); threads that have exited are in neither.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Schedstat {
    /// Time on a CPU (`se.sum_exec_runtime`), nanoseconds.
    pub on_cpu_ns: u64,
    /// Time runnable but waiting for a CPU (`sched_info.run_delay`), nanoseconds.
    pub run_delay_ns: u64,
    /// Timeslices run on a CPU (`sched_info.pcount`).
    pub timeslices: u64,
}

impl std::ops::Add for Schedstat {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self {
            on_cpu_ns: self.on_cpu_ns.saturating_add(other.on_cpu_ns),
            run_delay_ns: self.run_delay_ns.saturating_add(other.run_delay_ns),
            timeslices: self.timeslices.saturating_add(other.timeslices),
        }
    }
}

/// Parses `<on-cpu ns> <run_delay ns> <timeslices>`. Further columns, which no kernel prints
/// today, are ignored; fewer, or a column that is not a number, is an error. A kernel
/// without `CONFIG_SCHED_INFO` prints `0 0 0`, which parses (and means "not measured").
pub fn parse_schedstat(text: &str) -> Result<Schedstat, ParseError> {
    let mut fields = text.split_ascii_whitespace();
    let mut next = |name: &'static str, number: usize| {
        let value = fields
            .next()
            .ok_or(ParseError::MissingField { name, number })?;
        self::number(name, value)
    };
    Ok(Schedstat {
        on_cpu_ns: next("on_cpu_ns", 1)?,
        run_delay_ns: next("run_delay_ns", 2)?,
        timeslices: next("timeslices", 3)?,
    })
}

// ---------------------------------------------------------------------------------------------
// /proc/PID/cgroup

/// One line of `/proc/PID/cgroup`: `hierarchy-id:controllers:path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupLine {
    /// Hierarchy id; 0 is the cgroup v2 unified hierarchy.
    pub hierarchy_id: u32,
    /// Controllers bound to a v1 hierarchy (`cpu`, `cpuacct`, `name=systemd`, ...); empty
    /// for v2.
    pub controllers: Vec<String>,
    /// Path relative to the hierarchy's root (as seen from the reader's cgroup namespace).
    pub path: String,
}

/// Parses `/proc/PID/cgroup`. The path may contain `:`, so only the first two split. A v2
/// path of a removed cgroup carries a ` (deleted)` suffix, which is dropped.
pub fn parse_pid_cgroup(text: &str) -> Vec<CgroupLine> {
    let mut lines = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            skip("cgroup", "expected 'id:controllers:path'", line);
            continue;
        };
        let Ok(hierarchy_id) = id.parse() else {
            skip("cgroup", "hierarchy id is not a number", line);
            continue;
        };
        if !path.starts_with('/') {
            skip("cgroup", "path is not absolute", line);
            continue;
        }
        let path = path.strip_suffix(" (deleted)").unwrap_or(path);
        lines.push(CgroupLine {
            hierarchy_id,
            controllers: controllers
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect(),
            path: path.to_owned(),
        });
    }
    lines
}

/// The cgroup v2 path: hierarchy 0 with no controllers.
pub fn cgroup_v2_path(lines: &[CgroupLine]) -> Option<&str> {
    lines
        .iter()
        .find(|l| l.hierarchy_id == 0 && l.controllers.is_empty())
        .map(|l| l.path.as_str())
}

/// The path in the v1 hierarchy of `controller` (`memory`, ...), unless it is the root.
pub fn cgroup_v1_controller_path<'a>(lines: &'a [CgroupLine], controller: &str) -> Option<&'a str> {
    lines
        .iter()
        .find(|l| l.hierarchy_id != 0 && l.controllers.iter().any(|c| c == controller))
        .map(|l| l.path.as_str())
        .filter(|p| *p != "/")
}

/// The most telling cgroup v1 path: the first non-root path of the `cpu`/`cpuacct`,
/// `memory`, `pids` and `name=systemd` hierarchies (in that order), else the first of them
/// (usually `/`). Container runtimes on v1 create a cgroup in the CPU and memory
/// hierarchies; some hosts move only some of them, so a root path is the weakest answer.
pub fn cgroup_v1_path(lines: &[CgroupLine]) -> Option<&str> {
    const PREFERRED: [&str; 5] = ["cpu", "cpuacct", "memory", "pids", "name=systemd"];
    let ranked = PREFERRED.iter().filter_map(|want| {
        lines
            .iter()
            .find(|l| l.hierarchy_id != 0 && l.controllers.iter().any(|c| c == want))
    });
    let mut first = None;
    for line in ranked {
        if line.path != "/" {
            return Some(&line.path);
        }
        first.get_or_insert(line.path.as_str());
    }
    first
}

// ---------------------------------------------------------------------------------------------
// /proc/PID/net/dev

/// Counters of one network interface from `/proc/net/dev`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetDevice {
    /// Interface name (`eth0`, `lo`, ...).
    pub iface: String,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
}

/// Parses `/proc/net/dev` (or `/proc/PID/net/dev`, the same file for that process's network
/// namespace).
///
/// The two header lines contain `|` and are skipped. The name ends at the LAST `:` of the
/// line: the counters never contain one, and old kernels print the first counter right
/// after the colon (`eth0:123`) so splitting on whitespace alone would not do.
pub fn parse_net_dev(text: &str) -> Vec<NetDevice> {
    let mut devices = Vec::new();
    for line in text.lines() {
        if line.contains('|') || line.trim().is_empty() {
            continue;
        }
        let Some((name, counters)) = line.rsplit_once(':') else {
            skip("net/dev", "no ':' after the interface name", line);
            continue;
        };
        let iface = name.trim();
        let fields: Result<Vec<u64>, _> =
            counters.split_ascii_whitespace().map(str::parse).collect();
        match fields {
            // Receive: bytes packets errs drop fifo frame compressed multicast, then transmit.
            Ok(f) if !iface.is_empty() && f.len() >= 10 => devices.push(NetDevice {
                iface: iface.to_owned(),
                rx_bytes: f[0],
                rx_packets: f[1],
                tx_bytes: f[8],
                tx_packets: f[9],
            }),
            Ok(_) => skip("net/dev", "empty name or fewer than 10 counters", line),
            Err(_) => skip("net/dev", "a counter is not a number", line),
        }
    }
    devices
}

// ---------------------------------------------------------------------------------------------
// /proc/stat

/// The aggregate `cpu` line of `/proc/stat`, in clock ticks summed over all CPUs.
///
/// Columns a kernel does not print (2.6 has 7, 2.6.33+ has 10) read as 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemCpu {
    /// Normal user mode (includes `guest`).
    pub user: u64,
    /// Niced user mode (includes `guest_nice`).
    pub nice: u64,
    /// Kernel mode.
    pub system: u64,
    /// Idle.
    pub idle: u64,
    /// Idle waiting for I/O (may go backwards on some kernels; rates clamp).
    pub iowait: u64,
    /// Servicing hardware interrupts.
    pub irq: u64,
    /// Servicing softirqs.
    pub softirq: u64,
    /// Stolen by the hypervisor.
    pub steal: u64,
    /// Running a guest (already counted in `user`).
    pub guest: u64,
    /// Running a niced guest (already counted in `nice`).
    pub guest_nice: u64,
    /// Number of `cpuN` lines: the online CPUs.
    pub cpu_count: u32,
}

impl SystemCpu {
    /// All ticks. `guest`/`guest_nice` are left out because `user`/`nice` include them.
    pub fn total(&self) -> u64 {
        [
            self.user,
            self.nice,
            self.system,
            self.idle,
            self.iowait,
            self.irq,
            self.softirq,
            self.steal,
        ]
        .iter()
        .fold(0u64, |a, b| a.saturating_add(*b))
    }

    /// Ticks not doing work: `idle + iowait`.
    pub fn idle_total(&self) -> u64 {
        self.idle.saturating_add(self.iowait)
    }
}

/// Parses `/proc/stat`: the aggregate `cpu ` line (at least user, nice, system, idle) and
/// the count of `cpuN` lines. Other lines are ignored. Without a valid `cpu ` line the
/// counters are 0, which [`crate::sampler::rates::cpu_percent`] turns into "no figure".
pub fn parse_system_stat(text: &str) -> SystemCpu {
    let mut cpu = SystemCpu::default();
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        match words.next() {
            Some("cpu") => {
                let values: Result<Vec<u64>, _> = words.map(str::parse).collect();
                match values {
                    Ok(v) if v.len() >= 4 => {
                        let at = |i: usize| v.get(i).copied().unwrap_or(0);
                        cpu = SystemCpu {
                            user: at(0),
                            nice: at(1),
                            system: at(2),
                            idle: at(3),
                            iowait: at(4),
                            irq: at(5),
                            softirq: at(6),
                            steal: at(7),
                            guest: at(8),
                            guest_nice: at(9),
                            cpu_count: cpu.cpu_count,
                        };
                    }
                    Ok(_) => skip("stat", "cpu line has fewer than 4 columns", line),
                    Err(_) => skip("stat", "cpu line has a non-number", line),
                }
            }
            Some(w) if w.len() > 3 && w.starts_with("cpu") => {
                if w[3..].bytes().all(|b| b.is_ascii_digit()) {
                    cpu.cpu_count += 1;
                } else {
                    skip("stat", "cpuN with a non-numeric N", line);
                }
            }
            _ => {}
        }
    }
    cpu
}

// ---------------------------------------------------------------------------------------------
// /proc/meminfo

/// System memory from `/proc/meminfo`, in bytes; a missing field reads as 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemInfo {
    /// `MemTotal`: usable RAM.
    pub total: u64,
    /// `MemFree`: RAM nobody uses, not even the page cache.
    pub free: u64,
    /// `MemAvailable` (Linux 3.14+): the kernel's estimate of what can be allocated without
    /// swapping.
    pub available: Option<u64>,
    /// `Buffers`.
    pub buffers: u64,
    /// `Cached`: page cache.
    pub cached: u64,
}

impl MemInfo {
    /// Used memory: `MemTotal - MemAvailable`, the kernel's own estimate (it knows which
    /// cache is reclaimable), or on kernels without `MemAvailable`
    /// `MemTotal - MemFree - Buffers - Cached`, the classic `free` figure. Never negative.
    pub fn used_bytes(&self) -> u64 {
        match self.available {
            Some(available) => self.total.saturating_sub(available),
            None => self
                .total
                .saturating_sub(self.free)
                .saturating_sub(self.buffers)
                .saturating_sub(self.cached),
        }
    }
}

/// Parses `/proc/meminfo`; values are in kB (KiB) in the file.
pub fn parse_meminfo(text: &str) -> MemInfo {
    let mut mem = MemInfo::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            if !line.trim().is_empty() {
                skip("meminfo", "no ':'", line);
            }
            continue;
        };
        let slot = match key {
            "MemTotal" => &mut mem.total,
            "MemFree" => &mut mem.free,
            "Buffers" => &mut mem.buffers,
            "Cached" => &mut mem.cached,
            "MemAvailable" => mem.available.get_or_insert(0),
            _ => continue,
        };
        match parse_kb(value) {
            Some(bytes) => *slot = bytes,
            None => {
                skip("meminfo", "expected '<number> kB'", line);
                if key == "MemAvailable" {
                    mem.available = None;
                }
            }
        }
    }
    mem
}

/// `"   1720 kB"` -> 1761280 bytes. The kernel's "kB" is KiB.
fn parse_kb(value: &str) -> Option<u64> {
    let mut parts = value.split_ascii_whitespace();
    let n: u64 = parts.next()?.parse().ok()?;
    match (parts.next(), parts.next()) {
        (Some("kB"), None) => n.checked_mul(1024),
        _ => None,
    }
}
