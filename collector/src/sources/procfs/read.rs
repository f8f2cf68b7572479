//! Readers of files under a proc root: thin, and a process that exits mid-read is gone, not
//! an error.

use std::{io, path::Path};

use anyhow::Context;

use super::{
    MemInfo, NetDevice, Schedstat, SystemCpu, parse_meminfo, parse_net_dev, parse_schedstat,
    parse_system_stat,
};

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
        let file = std::fs::File::open(path)?;
        let len = crate::sources::counter_files::read_at_start(&file, &mut self.buf)?;
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

/// `/proc/PID/schedstat` of task `pid` (for a process, its thread-group leader only);
/// `Ok(None)` if it vanished. It stays readable while the task is a zombie, with its final
/// figures.
pub fn read_schedstat(proc_root: &Path, pid: i32) -> anyhow::Result<Option<Schedstat>> {
    let Some(text) = read_pid_file(proc_root, pid, "schedstat")? else {
        return Ok(None);
    };
    let path = || proc_root.join(pid.to_string()).join("schedstat");
    parse_schedstat(&text)
        .map(Some)
        .with_context(|| format!("parsing {}", path().display()))
}

/// The sum of `/proc/PID/task/*/schedstat`: process `pid`'s live threads. `Ok(None)` if the
/// process vanished; a thread that exits while being read is left out.
pub fn read_process_schedstat(proc_root: &Path, pid: i32) -> anyhow::Result<Option<Schedstat>> {
    let task_dir = proc_root.join(pid.to_string()).join("task");
    let tids = match list_pids(&task_dir) {
        Ok(tids) => tids,
        Err(e) if e.downcast_ref::<io::Error>().is_some_and(vanished) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut total = Schedstat::default();
    for tid in tids {
        if let Some(one) = read_schedstat(&task_dir, tid)? {
            total = total + one;
        }
    }
    Ok(Some(total))
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
