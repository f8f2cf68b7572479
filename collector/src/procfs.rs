//! `/proc` parsers and readers.
//!
//! The parsers are pure functions over the text of one file, so every quirk (a `)` inside a
//! command name, a kernel with fewer columns, a malformed line) is unit-tested on fixtures.
//! The readers are thin: they read files under a configurable root (`--proc-path`, so a
//! sidecar can read the host's `/proc` mounted elsewhere) and treat a process that exits
//! mid-read as gone, not as an error.
//!
//! Malformed lines are skipped, logged at `debug` with the file and the reason, and counted
//! in a process-wide counter ([`skipped_lines`]) that the collector can report once.

use std::{
    fmt, io,
    path::Path,
    sync::atomic::{AtomicU64, Ordering},
};

use anyhow::Context;

/// Why a file that must parse (`/proc/PID/stat`) did not.
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
// /proc/PID/status

/// The fields of `/proc/PID/status` the collector uses; `None` when the kernel does not
/// print the field (kernel threads and zombies have no `Vm*`/`Rss*` lines, old kernels no
/// `Rss*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PidStatus {
    /// `Name`: the same 15-byte command name as stat's comm, with `\n` and `\\` escaped.
    pub name: Option<String>,
    /// `VmRSS` in bytes: resident memory, what "RSS" means in the summary.
    pub vm_rss_bytes: Option<u64>,
    /// `RssAnon` in bytes: anonymous memory, the part that does not come back on reclaim.
    pub rss_anon_bytes: Option<u64>,
    /// `RssFile` in bytes: file-backed pages.
    pub rss_file_bytes: Option<u64>,
    /// `RssShmem` in bytes: shared memory (tmpfs, shm).
    pub rss_shmem_bytes: Option<u64>,
    /// `Threads`.
    pub threads: Option<u64>,
    /// Malformed lines skipped in this file (also added to [`skipped_lines`]).
    pub skipped: u32,
}

/// Parses `/proc/PID/status`. Unknown keys are ignored; lines without `key:` and known keys
/// with unparseable values are skipped and counted.
pub fn parse_pid_status(text: &str) -> PidStatus {
    let mut status = PidStatus::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            if !line.trim().is_empty() {
                skip("status", "no ':'", line);
                status.skipped += 1;
            }
            continue;
        };
        let slot = match key {
            "Name" => {
                // Only the separator tab is stripped: a command name may end in spaces.
                let name = value.strip_prefix('\t').unwrap_or(value.trim_start());
                status.name = Some(name.to_owned());
                continue;
            }
            "Threads" => {
                match value.trim().parse() {
                    Ok(n) => status.threads = Some(n),
                    Err(_) => {
                        skip("status", "Threads is not a number", line);
                        status.skipped += 1;
                    }
                }
                continue;
            }
            "VmRSS" => &mut status.vm_rss_bytes,
            "RssAnon" => &mut status.rss_anon_bytes,
            "RssFile" => &mut status.rss_file_bytes,
            "RssShmem" => &mut status.rss_shmem_bytes,
            _ => continue,
        };
        match parse_kb(value) {
            Some(bytes) => *slot = Some(bytes),
            None => {
                skip("status", "expected '<number> kB'", line);
                status.skipped += 1;
            }
        }
    }
    status
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

/// The path to group a process by: the v2 path, unless it is the root `/` while a v1
/// hierarchy places the process deeper (hybrid hosts whose container runtime only uses v1
/// controllers, e.g. Docker with the cgroupfs driver), then the v1 path.
pub fn best_cgroup_path<'a>(v2: Option<&'a str>, v1: Option<&'a str>) -> Option<&'a str> {
    match (v2, v1) {
        (Some("/"), Some(v1)) if v1 != "/" => Some(v1),
        (Some(v2), _) => Some(v2),
        (None, v1) => v1,
    }
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
/// counters are 0, which [`crate::rates::cpu_percent`] turns into "no figure".
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

// ---------------------------------------------------------------------------------------------
// Readers

/// Clock ticks per second (`USER_HZ`, the unit of stat's CPU times); 100 if sysconf fails.
pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions; it only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// Page size in bytes (the unit of stat's rss); 4096 if sysconf fails.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions; it only reads a configuration value.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// Pids of the processes visible under `proc_root` (numeric directory names), ascending.
pub fn list_pids(proc_root: &Path) -> anyhow::Result<Vec<i32>> {
    let entries =
        std::fs::read_dir(proc_root).with_context(|| format!("listing {}", proc_root.display()))?;
    let mut pids: Vec<i32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&pid: &i32| pid > 0)
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

/// Reads small kernel-generated files (procfs, cgroupfs) with a reused buffer.
///
/// `std::fs::read` asks for the size first (`statx`) and then grows its buffer over several
/// `read`s, because procfs reports a size of 0. Here one `read` into a buffer that is already
/// big enough usually returns the whole file, and a short read ends it (procfs and cgroupfs
/// produce a file in one go). With 1,000 processes scanned every interval this is most of the
/// collector's own CPU.
#[derive(Debug, Default)]
pub struct FileReader {
    buf: Vec<u8>,
}

impl FileReader {
    /// The file's content, lossily decoded (command names may hold any bytes).
    pub fn read(&mut self, path: &Path) -> io::Result<std::borrow::Cow<'_, str>> {
        use std::io::Read;
        let mut file = std::fs::File::open(path)?;
        if self.buf.len() < 4096 {
            self.buf.resize(4096, 0);
        }
        let mut len = 0;
        loop {
            if len == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            let room = self.buf.len() - len;
            let n = file.read(&mut self.buf[len..])?;
            len += n;
            if n == 0 || n < room {
                break;
            }
        }
        Ok(String::from_utf8_lossy(&self.buf[..len]))
    }

    /// Like [`FileReader::read`] for a file of process `pid`; `Ok(None)` if it vanished.
    pub fn read_pid(
        &mut self,
        proc_root: &Path,
        pid: i32,
        name: &str,
    ) -> anyhow::Result<Option<std::borrow::Cow<'_, str>>> {
        let path = proc_root.join(pid.to_string()).join(name);
        match self.read(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if vanished(&e) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
}

/// Whether an error means the process (or its file) is gone: it exited between listing and
/// reading, which is normal and not an error.
fn vanished(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::ENOENT | libc::ESRCH))
}

/// Reads a file of a process; `Ok(None)` if the process vanished.
fn read_pid_file(proc_root: &Path, pid: i32, name: &str) -> anyhow::Result<Option<String>> {
    let path = proc_root.join(pid.to_string()).join(name);
    match std::fs::read(&path) {
        // comm may hold any bytes but NUL; lossy keeps the rest of the line parseable.
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if vanished(&e) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Interface counters of the network namespace `pid` lives in (`/proc/PID/net/dev`);
/// `Ok(None)` if the process vanished.
pub fn read_net_dev(proc_root: &Path, pid: i32) -> anyhow::Result<Option<Vec<NetDevice>>> {
    Ok(read_pid_file(proc_root, pid, "net/dev")?.map(|text| parse_net_dev(&text)))
}

/// System-wide CPU and memory at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemSnapshot {
    /// Aggregate CPU counters from `/proc/stat`.
    pub cpu: SystemCpu,
    /// `/proc/meminfo`.
    pub memory: MemInfo,
}

/// Reads `/proc/stat` and `/proc/meminfo` under `proc_root`.
pub fn read_system(proc_root: &Path) -> anyhow::Result<SystemSnapshot> {
    let read = |name: &str| {
        let path = proc_root.join(name);
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    };
    let cpu = parse_system_stat(&read("stat")?);
    anyhow::ensure!(
        cpu.total() > 0,
        "no aggregate cpu line in {}",
        proc_root.join("stat").display()
    );
    let memory = parse_meminfo(&read("meminfo")?);
    anyhow::ensure!(
        memory.total > 0,
        "no MemTotal in {}",
        proc_root.join("meminfo").display()
    );
    Ok(SystemSnapshot { cpu, memory })
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../tests/fixtures/", $name))
        };
    }

    #[test]
    fn file_reader_reads_whole_files_of_any_size() {
        let mut r = FileReader::default();
        let own = r
            .read_pid(Path::new("/proc"), std::process::id() as i32, "stat")
            .unwrap()
            .unwrap()
            .into_owned();
        assert_eq!(parse_pid_stat(&own).unwrap().pid, std::process::id() as i32);
        // Larger than the initial buffer, and a regular file.
        let dir = std::env::temp_dir().join(format!("collector-filereader-{}", std::process::id()));
        let big = "x".repeat(10_000);
        std::fs::write(&dir, &big).unwrap();
        assert_eq!(r.read(&dir).unwrap(), big);
        std::fs::remove_file(&dir).unwrap();
        assert!(
            r.read_pid(Path::new("/proc"), i32::MAX, "stat")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn stat_comm_with_parentheses_and_spaces() {
        let s = parse_pid_stat(fixture!("pid-stat-sd-pam")).unwrap();
        assert_eq!(s.pid, 1234);
        assert_eq!(s.comm, "(sd-pam) )x(");
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 1);
        assert_eq!((s.utime, s.stime), (7, 3));
        assert_eq!(s.num_threads, 1);
        assert_eq!(s.starttime, 4518);
        assert_eq!(s.rss_pages, 1291);

        let s = parse_pid_stat(fixture!("pid-stat-weird-name")).unwrap();
        assert_eq!(s.comm, "weird ) name");
        assert_eq!((s.pid, s.ppid, s.state), (4321, 4000, 'R'));
        assert_eq!((s.utime, s.stime, s.num_threads), (1500, 250, 8));
        assert_eq!((s.starttime, s.rss_pages), (123456, 25600));
    }

    #[test]
    fn stat_comm_with_newline() {
        let s = parse_pid_stat(fixture!("pid-stat-newline")).unwrap();
        assert_eq!(s.comm, "two\nlines");
        assert_eq!((s.pid, s.ppid, s.utime, s.stime), (99, 1, 1, 2));
    }

    #[test]
    fn stat_with_fewer_trailing_fields() {
        let s = parse_pid_stat(fixture!("pid-stat-3.x")).unwrap();
        assert_eq!(s.comm, "nginx");
        assert_eq!((s.utime, s.stime, s.num_threads), (300, 200, 4));
        assert_eq!((s.starttime, s.rss_pages), (9876, 2048));
        // Exactly up to rss (field 24) is enough.
        let minimal = "7 (x) S 1 0 0 0 0 0 0 0 0 0 11 22 0 0 0 0 3 0 44 0 55";
        let s = parse_pid_stat(minimal).unwrap();
        assert_eq!(
            (s.utime, s.stime, s.num_threads, s.starttime),
            (11, 22, 3, 44)
        );
        assert_eq!(s.rss_pages, 55);
    }

    #[test]
    fn stat_truncated_and_garbage() {
        let truncated = "7 (x) S 1 0 0 0 0 0 0 0 0 0 11 22 0 0 0 0 3 0 44 0";
        assert_eq!(
            parse_pid_stat(truncated),
            Err(ParseError::MissingField {
                name: "rss",
                number: 24
            })
        );
        assert_eq!(
            parse_pid_stat("7 (x) S"),
            Err(ParseError::MissingField {
                name: "ppid",
                number: 4
            })
        );
        assert_eq!(parse_pid_stat(""), Err(ParseError::MissingComm));
        assert_eq!(parse_pid_stat("garbage"), Err(ParseError::MissingComm));
        assert_eq!(parse_pid_stat(") 1 2 ("), Err(ParseError::MissingComm));
        assert!(matches!(
            parse_pid_stat("abc (x) S 1"),
            Err(ParseError::BadNumber { name: "pid", .. })
        ));
        let bad_utime = "7 (x) S 1 0 0 0 0 0 0 0 0 0 1x 22 0 0 0 0 3 0 44 0 55";
        assert!(matches!(
            parse_pid_stat(bad_utime),
            Err(ParseError::BadNumber { name: "utime", .. })
        ));
        let negative_rss = "7 (x) Z 1 0 0 0 0 0 0 0 0 0 1 2 0 0 0 0 1 0 44 0 -1";
        assert_eq!(parse_pid_stat(negative_rss).unwrap().rss_pages, 0);
    }

    #[test]
    fn status_fields_in_bytes() {
        let s = parse_pid_status(fixture!("pid-status-6.x"));
        assert_eq!(s.name.as_deref(), Some("sh"));
        assert_eq!(s.vm_rss_bytes, Some(1720 * 1024));
        assert_eq!(s.rss_anon_bytes, Some(108 * 1024));
        assert_eq!(s.rss_file_bytes, Some(1612 * 1024));
        assert_eq!(s.rss_shmem_bytes, Some(0));
        assert_eq!(s.threads, Some(1));
        assert_eq!(s.skipped, 0);
    }

    #[test]
    fn status_missing_and_malformed_lines() {
        // A kernel thread: no Vm*/Rss* lines at all.
        let s = parse_pid_status("Name:\tkworker/0:1\nState:\tI (idle)\nThreads:\t1\n");
        assert_eq!(s.name.as_deref(), Some("kworker/0:1"));
        assert_eq!((s.vm_rss_bytes, s.rss_anon_bytes), (None, None));
        assert_eq!(s.threads, Some(1));

        let before = skipped_lines();
        let text = "Name:\tweird ) name \nVmRSS:\tlots kB\nRssAnon:\t12 MB\ngarbage\n\
                    RssFile:\t 4 kB\nThreads:\tmany\nVmRSS\n";
        let s = parse_pid_status(text);
        assert_eq!(s.name.as_deref(), Some("weird ) name "));
        assert_eq!(s.vm_rss_bytes, None);
        assert_eq!(s.rss_anon_bytes, None);
        assert_eq!(s.rss_file_bytes, Some(4096));
        assert_eq!(s.threads, None);
        assert_eq!(s.skipped, 5);
        // Other tests run in parallel, so the global counter grew by at least ours.
        assert!(skipped_lines() >= before + 5);
    }

    #[test]
    fn cgroup_v2_kubernetes() {
        let lines = parse_pid_cgroup(fixture!("pid-cgroup-k8s-v2"));
        assert_eq!(lines.len(), 1);
        let v2 = cgroup_v2_path(&lines).unwrap();
        assert!(v2.starts_with("/kubepods.slice/kubepods-burstable.slice/"));
        assert!(v2.ends_with(".scope"));
        assert_eq!(cgroup_v1_path(&lines), None);
        assert_eq!(best_cgroup_path(Some(v2), None), Some(v2));
    }

    #[test]
    fn cgroup_hybrid_prefers_deeper_v1() {
        let lines = parse_pid_cgroup(fixture!("pid-cgroup-hybrid-docker"));
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[1].hierarchy_id, 11);
        assert_eq!(lines[1].controllers, ["cpu", "cpuacct"]);
        let docker = "/docker/fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
        assert_eq!(cgroup_v2_path(&lines), Some("/"));
        assert_eq!(cgroup_v1_path(&lines), Some(docker));
        assert_eq!(best_cgroup_path(Some("/"), Some(docker)), Some(docker));
        assert_eq!(best_cgroup_path(Some("/a"), Some(docker)), Some("/a"));
        assert_eq!(best_cgroup_path(Some("/"), Some("/")), Some("/"));
        assert_eq!(best_cgroup_path(None, None), None);
    }

    #[test]
    fn cgroup_v1_falls_back_past_root_paths() {
        // Seen in sandboxes: only the memory hierarchy is moved.
        let text = "4:memory:/process_api/6a9f\n2:cpuacct:/\n1:cpu:/\n0::/\n";
        let lines = parse_pid_cgroup(text);
        assert_eq!(cgroup_v1_path(&lines), Some("/process_api/6a9f"));
        let systemd_only = parse_pid_cgroup("1:name=systemd:/user.slice\n");
        assert_eq!(cgroup_v1_path(&systemd_only), Some("/user.slice"));
        let all_root = parse_pid_cgroup("3:cpu,cpuacct:/\n2:memory:/\n");
        assert_eq!(cgroup_v1_path(&all_root), Some("/"));
    }

    #[test]
    fn cgroup_odd_lines() {
        let text = "0::/a:b/c (deleted)\nnot a line\nx::/y\n5:cpu:relative\n\n1:name=systemd:/s\n";
        let lines = parse_pid_cgroup(text);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].path, "/a:b/c");
        assert!(lines[0].controllers.is_empty());
        assert_eq!(lines[1].controllers, ["name=systemd"]);
    }

    #[test]
    fn net_dev_current_kernel() {
        let devs = parse_net_dev(fixture!("net-dev-6.x"));
        let names: Vec<&str> = devs.iter().map(|d| d.iface.as_str()).collect();
        assert_eq!(names, ["lo", "ifb0", "ifb1", "eth0"]);
        assert_eq!(
            devs[3],
            NetDevice {
                iface: "eth0".into(),
                rx_bytes: 308689569,
                rx_packets: 11159,
                tx_bytes: 662557,
                tx_packets: 7308,
            }
        );
        assert_eq!(devs[0].rx_bytes, 4685053123);
    }

    #[test]
    fn net_dev_old_kernel_and_garbage() {
        let devs = parse_net_dev(fixture!("net-dev-old"));
        let names: Vec<&str> = devs.iter().map(|d| d.iface.as_str()).collect();
        assert_eq!(names, ["lo", "vethab12cd34", "eth0"]);
        assert_eq!(devs[1].rx_bytes, 12345678901);
        assert_eq!(devs[1].tx_packets, 88888);
        assert_eq!(
            (
                devs[2].rx_bytes,
                devs[2].rx_packets,
                devs[2].tx_bytes,
                devs[2].tx_packets
            ),
            (123, 4, 567, 8)
        );
        // A name with a ':' (not allowed by current kernels) still splits at the last one.
        let devs = parse_net_dev("eth0:1: 1 2 0 0 0 0 0 0 3 4 0 0 0 0 0 0\n");
        assert_eq!(devs[0].iface, "eth0:1");
        assert_eq!(devs[0].tx_packets, 4);
        assert!(parse_net_dev("").is_empty());
    }

    #[test]
    fn system_stat_current_and_old_kernels() {
        let cpu = parse_system_stat(fixture!("stat-6.x"));
        assert_eq!(cpu.cpu_count, 2);
        assert_eq!((cpu.user, cpu.system, cpu.idle), (72621, 23431, 99269));
        assert_eq!((cpu.iowait, cpu.softirq, cpu.steal), (1969, 624, 31));
        assert_eq!(cpu.total(), 72621 + 23431 + 99269 + 1969 + 624 + 31);
        assert_eq!(cpu.idle_total(), 99269 + 1969);

        let old = parse_system_stat(fixture!("stat-2.6"));
        assert_eq!(old.cpu_count, 2);
        assert_eq!(
            (old.user, old.nice, old.system, old.idle),
            (100, 5, 50, 800)
        );
        assert_eq!((old.iowait, old.irq, old.softirq), (20, 3, 2));
        assert_eq!((old.steal, old.guest, old.guest_nice), (0, 0, 0));
        assert_eq!(old.total(), 980);

        // Guest time is inside user time: not counted twice.
        let guest = parse_system_stat("cpu 10 0 0 10 0 0 0 0 5 0\n");
        assert_eq!(guest.total(), 20);
    }

    #[test]
    fn system_stat_garbage() {
        assert_eq!(parse_system_stat(""), SystemCpu::default());
        let cpu = parse_system_stat("cpu 1 2 3\ncpu0 1 2 3 4\ncpux 1\ncpu 1 2 x 4\nintr 5\n");
        assert_eq!(cpu.total(), 0);
        assert_eq!(cpu.cpu_count, 1);
    }

    #[test]
    fn meminfo_with_and_without_available() {
        let m = parse_meminfo(fixture!("meminfo-6.x"));
        assert!(m.total > 0);
        let available = m.available.unwrap();
        assert_eq!(m.used_bytes(), m.total - available);

        let old = parse_meminfo(fixture!("meminfo-3.x"));
        assert_eq!(old.available, None);
        assert_eq!(old.total, 2048000 * 1024);
        assert_eq!(
            old.used_bytes(),
            (2048000 - 512000 - 128000 - 256000) * 1024
        );

        let odd = parse_meminfo("MemTotal: 10 kB\nMemFree: 20 kB\nMemAvailable: x kB\nnope\n");
        assert_eq!(odd.available, None);
        assert_eq!(odd.used_bytes(), 0, "never negative");
    }

    #[test]
    fn vanished_process_is_none_and_bad_root_names_the_path() {
        let root = Path::new("/proc");
        // Above pid_max (at most 2^22), so never a live process.
        assert_eq!(read_net_dev(root, 999_999_999).unwrap(), None);
        let missing = Path::new("/nonexistent-proc-root");
        let err = read_system(missing).unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent-proc-root/stat"),
            "{err:#}"
        );
        let err = list_pids(missing).unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent-proc-root"),
            "{err:#}"
        );
    }
}
