//! cgroup discovery and counters: where the hierarchies are mounted, cgroup ids, and the
//! memory and CPU counters of a cgroup (v2 files, v1 equivalents where v2 lacks them).
//!
//! A cgroup v2 id (what `bpf_get_current_cgroup_id()` returns) is the inode number of the
//! cgroup's directory. The mount point is read from `/proc/self/mountinfo`, never assumed:
//! it is `/sys/fs/cgroup` on pure v2 hosts and e.g. `/sys/fs/cgroup/unified` on hybrid ones.

use std::{
    collections::{HashMap, HashSet},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use anyhow::Context;

/// Mount point of the first cgroup2 filesystem in a mountinfo text.
pub fn cgroup2_mount_point(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - cgroup2 cgroup2 rw"
        let (pre, post) = line.split_once(" - ")?;
        if post.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let mount_point = pre.split_whitespace().nth(4)?;
        Some(PathBuf::from(unescape_octal(mount_point)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\NNN` octal.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The v1 controllers (mount options such as `xattr` or `name=systemd` are not).
const V1_CONTROLLERS: [&str; 13] = [
    "cpu",
    "cpuacct",
    "memory",
    "cpuset",
    "blkio",
    "pids",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "perf_event",
    "hugetlb",
    "misc",
];

/// Mount points of the cgroup hierarchies: the v2 one and each v1 controller's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mounts {
    pub v2: Option<PathBuf>,
    /// v1 controller name (`memory`, `cpuacct`, ...) -> mount point.
    pub v1: HashMap<String, PathBuf>,
}

impl Mounts {
    pub fn parse(mountinfo: &str) -> Self {
        let mut mounts = Self {
            v2: cgroup2_mount_point(mountinfo),
            v1: HashMap::new(),
        };
        for line in mountinfo.lines() {
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let mut post = post.split_whitespace();
            if post.next() != Some("cgroup") {
                continue;
            }
            let (Some(mount_point), Some(options)) = (pre.split_whitespace().nth(4), post.nth(1))
            else {
                continue;
            };
            for option in options.split(',') {
                if V1_CONTROLLERS.contains(&option) {
                    mounts
                        .v1
                        .entry(option.to_owned())
                        .or_insert_with(|| unescape_octal(mount_point).into());
                }
            }
        }
        mounts
    }

    /// The mounts of this process's mount namespace.
    pub fn discover() -> anyhow::Result<Self> {
        let text = std::fs::read_to_string("/proc/self/mountinfo")
            .context("reading /proc/self/mountinfo")?;
        Ok(Self::parse(&text))
    }

    /// Directory of a v2 cgroup path (as found in /proc/PID/cgroup), if v2 is mounted.
    pub fn v2_dir(&self, cgroup_path: &str) -> Option<PathBuf> {
        Some(join_cgroup(self.v2.as_ref()?, cgroup_path))
    }

    /// Directory of a v1 cgroup path in the hierarchy of `controller`.
    pub fn v1_dir(&self, controller: &str, cgroup_path: &str) -> Option<PathBuf> {
        Some(join_cgroup(self.v1.get(controller)?, cgroup_path))
    }
}

/// Joins a mount point and a cgroup path, refusing paths that climb out of the mount
/// (cgroup namespaces show foreign cgroups as `/../..`).
fn join_cgroup(mount: &Path, cgroup_path: &str) -> PathBuf {
    let rel = cgroup_path.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        return mount.join("\0-outside-this-cgroup-namespace");
    }
    mount.join(rel)
}

/// Memory of one cgroup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryReading {
    /// `memory.current` (v2) or `memory.usage_in_bytes` (v1).
    pub current: u64,
    /// `memory.peak` (v2, 5.19+) or `memory.max_usage_in_bytes` (v1): the true peak, including
    /// spikes between two samples.
    pub peak: Option<u64>,
    /// `oom_kill` from `memory.events` (v2) or `memory.oom_control` (v1, 4.13+).
    pub oom_kills: Option<u64>,
    /// Anonymous memory (`anon` in memory.stat v2, `rss` in v1), when known.
    pub anon: Option<u64>,
}

/// Reads the memory counters of a cgroup: v2 first, then the v1 memory hierarchy.
pub fn read_memory(
    mounts: &Mounts,
    v2_path: Option<&str>,
    v1_path: Option<&str>,
) -> Option<MemoryReading> {
    if let Some(dir) = v2_path.and_then(|p| mounts.v2_dir(p))
        && let Some(current) = read_u64(&dir.join("memory.current"))
    {
        return Some(MemoryReading {
            current,
            peak: read_u64(&dir.join("memory.peak")),
            oom_kills: read_keyed(&dir.join("memory.events"), "oom_kill"),
            anon: read_keyed(&dir.join("memory.stat"), "anon"),
        });
    }
    let dir = mounts.v1_dir("memory", v1_path?)?;
    Some(MemoryReading {
        current: read_u64(&dir.join("memory.usage_in_bytes"))?,
        peak: read_u64(&dir.join("memory.max_usage_in_bytes")),
        oom_kills: read_keyed(&dir.join("memory.oom_control"), "oom_kill"),
        anon: read_keyed(&dir.join("memory.stat"), "rss"),
    })
}

/// Cumulative CPU nanoseconds of a cgroup: v2 `cpu.stat` `usage_usec`, else v1
/// `cpuacct.usage`.
pub fn read_cpu_usage_ns(
    mounts: &Mounts,
    v2_path: Option<&str>,
    v1_path: Option<&str>,
) -> Option<u64> {
    if let Some(dir) = v2_path.and_then(|p| mounts.v2_dir(p))
        && let Some(usec) = read_keyed(&dir.join("cpu.stat"), "usage_usec")
    {
        return Some(usec.saturating_mul(1000));
    }
    let dir = mounts.v1_dir("cpuacct", v1_path?)?;
    read_u64(&dir.join("cpuacct.usage"))
}

/// A file holding one integer (`max` counts as absent).
fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a flat-keyed file (`key value` per line).
fn read_keyed(path: &Path, key: &str) -> Option<u64> {
    parse_keyed(&std::fs::read_to_string(path).ok()?, key)
}

/// The value of `key` in `key value` lines.
pub fn parse_keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// The cgroup v2 mount of this process's mount namespace.
pub fn find_cgroup2_mount() -> anyhow::Result<PathBuf> {
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    cgroup2_mount_point(&text)
        .context("no cgroup2 filesystem is mounted (see /proc/self/mountinfo)")
}

/// cgroup v2 id of a cgroup directory.
pub fn cgroup_id(dir: &Path) -> anyhow::Result<u64> {
    Ok(std::fs::metadata(dir)
        .with_context(|| format!("stat {}", dir.display()))?
        .ino())
}

/// Ids of every cgroup under `root` (inclusive). Directories that vanish during the walk are
/// skipped: cgroups come and go all the time.
pub fn live_cgroup_ids(root: &Path) -> HashSet<u64> {
    let mut ids = HashSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(meta) = std::fs::metadata(&dir) else {
            continue;
        };
        ids.insert(meta.ino());
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_hybrid_and_pure_v2_mounts() {
        let hybrid = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                      32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount_point(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let pure =
            "29 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            cgroup2_mount_point(pure),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(cgroup2_mount_point("garbage line\n\n"), None);
    }

    #[test]
    fn finds_v1_controllers_and_joins_paths_safely() {
        let text = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n\
                    35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                    40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        let m = Mounts::parse(text);
        assert_eq!(m.v2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(m.v1["memory"], PathBuf::from("/sys/fs/cgroup/memory"));
        assert_eq!(m.v1["cpuacct"], PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert!(!m.v1.contains_key("xattr"));
        assert_eq!(
            m.v2_dir("/a/b"),
            Some(PathBuf::from("/sys/fs/cgroup/unified/a/b"))
        );
        assert!(
            !m.v2_dir("/../other")
                .unwrap()
                .starts_with("/sys/fs/cgroup/other")
        );
        assert_eq!(
            m.v1_dir("memory", "/"),
            Some(PathBuf::from("/sys/fs/cgroup/memory/"))
        );
    }

    #[test]
    fn parses_keyed_files() {
        let events = "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n";
        assert_eq!(parse_keyed(events, "oom_kill"), Some(2));
        assert_eq!(parse_keyed(events, "oom"), Some(1));
        assert_eq!(
            parse_keyed("usage_usec 12\nuser_usec 5\n", "usage_usec"),
            Some(12)
        );
        assert_eq!(parse_keyed("garbage", "x"), None);
    }

    #[test]
    fn reads_this_process_cgroup_counters() {
        let Ok(m) = Mounts::discover() else { return };
        let Ok(text) = std::fs::read_to_string("/proc/self/cgroup") else {
            return;
        };
        let v2 = text.lines().find_map(|l| l.strip_prefix("0::"));
        // Either source may be missing in a container; when present the values are sane.
        if let Some(ns) = read_cpu_usage_ns(&m, v2, None) {
            assert!(ns > 0);
        }
    }

    #[test]
    fn unescapes_mount_points() {
        let line = "41 31 0:38 / /mnt/my\\040cgroups rw - cgroup2 none rw\n";
        assert_eq!(
            cgroup2_mount_point(line),
            Some(PathBuf::from("/mnt/my cgroups"))
        );
        assert_eq!(unescape_octal("a\\13"), "a\\13");
    }
}
