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

use super::counter_files::CounterFiles;

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
        let escape = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)))
            .map(|d| d.iter().fold(0u32, |v, b| v * 8 + u32::from(b - b'0')))
            .and_then(|v| u8::try_from(v).ok());
        if let Some(v) = escape {
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

/// A cgroup as `/proc/PID/cgroup` names it, with the hierarchy the name is in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CgroupPath {
    /// A path in the unified (v2) hierarchy.
    V2(String),
    /// A path in the v1 controllers' hierarchies (hybrid hosts whose runtime uses only v1).
    V1(String),
}

impl CgroupPath {
    /// The path within its hierarchy.
    pub fn path(&self) -> &str {
        match self {
            Self::V2(p) | Self::V1(p) => p,
        }
    }

    /// Whether this cgroup is strictly below `ancestor`, in the same hierarchy.
    pub fn is_below(&self, ancestor: &Self) -> bool {
        let same_hierarchy = matches!(
            (self, ancestor),
            (Self::V2(_), Self::V2(_)) | (Self::V1(_), Self::V1(_))
        );
        same_hierarchy && self.path() != ancestor.path() && is_within(self.path(), ancestor.path())
    }

    /// The path to group a process by: its v2 path, unless that is the root `/` while a v1
    /// hierarchy places it deeper (hybrid hosts whose container runtime only uses v1
    /// controllers, e.g. Docker with the cgroupfs driver), then its v1 path.
    pub fn best(v2: Option<&str>, v1: Option<&str>) -> Option<Self> {
        match (v2, v1) {
            (Some("/"), Some(v1)) if v1 != "/" => Some(Self::V1(v1.to_owned())),
            (Some(v2), _) => Some(Self::V2(v2.to_owned())),
            (None, v1) => v1.map(|p| Self::V1(p.to_owned())),
        }
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
    /// Anonymous memory (`anon` in memory.stat v2, `total_rss` or `rss` in v1), when known.
    pub anon: Option<u64>,
    /// Page cache (`file`; v1 `total_cache` or `cache`).
    pub file: Option<u64>,
    /// Kernel memory (v2 `kernel`, 5.18+, else `kernel_stack` + `slab` + `pagetables`).
    pub kernel: Option<u64>,
    /// Network buffers (v2 `sock`).
    pub sock: Option<u64>,
    /// Major faults, cumulative (`pgmajfault`; v1 `total_pgmajfault`).
    pub major_faults: Option<u64>,
    /// Cumulative `high` and `max` of `memory.events` (v2); v1 has `memory.failcnt` for `max`.
    pub high_events: Option<u64>,
    pub max_events: Option<u64>,
}

/// Reads the memory counters of a cgroup, from the hierarchy it is named in (a v2 cgroup on
/// a hybrid host has no memory files; the caller then falls back to process RSS).
pub fn read_memory(mounts: &Mounts, cgroup: &CgroupPath) -> Option<MemoryReading> {
    let text = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    match cgroup {
        CgroupPath::V2(path) => {
            let dir = mounts.v2_dir(path)?;
            let current = read_u64(&dir.join("memory.current"))?;
            let stat = text(&dir.join("memory.stat"));
            let events = text(&dir.join("memory.events"));
            let key = |k: &str| parse_keyed(&stat, k);
            let kernel = key("kernel").or_else(|| {
                let parts = [key("kernel_stack"), key("slab"), key("pagetables")];
                parts
                    .iter()
                    .any(Option::is_some)
                    .then(|| parts.iter().flatten().sum())
            });
            Some(MemoryReading {
                current,
                peak: read_u64(&dir.join("memory.peak")),
                oom_kills: parse_keyed(&events, "oom_kill"),
                anon: key("anon"),
                file: key("file"),
                kernel,
                sock: key("sock"),
                major_faults: key("pgmajfault"),
                high_events: parse_keyed(&events, "high"),
                max_events: parse_keyed(&events, "max"),
            })
        }
        CgroupPath::V1(path) => {
            let dir = mounts.v1_dir("memory", path)?;
            let current = read_u64(&dir.join("memory.usage_in_bytes"))?;
            let stat = text(&dir.join("memory.stat"));
            // The `total_` keys include descendants, as usage_in_bytes does.
            let key = |k: &str| {
                parse_keyed(&stat, &format!("total_{k}")).or_else(|| parse_keyed(&stat, k))
            };
            Some(MemoryReading {
                current,
                peak: read_u64(&dir.join("memory.max_usage_in_bytes")),
                oom_kills: read_keyed(&dir.join("memory.oom_control"), "oom_kill"),
                anon: key("rss"),
                file: key("cache"),
                kernel: read_u64(&dir.join("memory.kmem.usage_in_bytes")),
                sock: None,
                major_faults: key("pgmajfault"),
                high_events: None,
                max_events: read_u64(&dir.join("memory.failcnt")),
            })
        }
    }
}

/// The file holding a cgroup's current memory use (`memory.current` on v2,
/// `memory.usage_in_bytes` on v1): one small read, cheap enough for every CPU tick.
pub fn memory_current_file(mounts: &Mounts, cgroup: &CgroupPath) -> Option<PathBuf> {
    match cgroup {
        CgroupPath::V2(path) => Some(mounts.v2_dir(path)?.join("memory.current")),
        CgroupPath::V1(path) => Some(mounts.v1_dir("memory", path)?.join("memory.usage_in_bytes")),
    }
}

/// A file's text holding one integer (`max` and garbage count as absent).
pub fn parse_u64(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// Cumulative CPU nanoseconds of a cgroup: v2 `cpu.stat` `usage_usec`, or v1
/// `cpuacct.usage`.
/// Read through `files`, which keeps it open for the next reading.
pub fn read_cpu_usage_ns(
    files: &mut CounterFiles,
    mounts: &Mounts,
    cgroup: &CgroupPath,
) -> Option<u64> {
    match cgroup {
        CgroupPath::V2(path) => {
            let file = mounts.v2_dir(path)?.join("cpu.stat");
            parse_keyed(files.read(&file)?, "usage_usec").map(|us| us.saturating_mul(1000))
        }
        CgroupPath::V1(path) => {
            let file = mounts.v1_dir("cpuacct", path)?.join("cpuacct.usage");
            parse_u64(files.read(&file)?)
        }
    }
}

/// A file holding one integer (`max` counts as absent).
fn read_u64(path: &Path) -> Option<u64> {
    parse_u64(&std::fs::read_to_string(path).ok()?)
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
        let m = Mounts::discover().expect("mountinfo");
        let text = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
        let v2 = text
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .expect("a cgroup v2 line");
        let v1 = text
            .lines()
            .find_map(|l| l.split_once(":cpuacct").map(|(_, rest)| rest))
            .and_then(|rest| rest.split_once(':').map(|(_, p)| p));
        // The v2 hierarchy has cpu.stat on pure v2 hosts; hybrid hosts count in cpuacct.
        let files = &mut CounterFiles::default();
        let cpu = read_cpu_usage_ns(files, &m, &CgroupPath::V2(v2.to_owned()))
            .or_else(|| read_cpu_usage_ns(files, &m, &CgroupPath::V1(v1?.to_owned())));
        let layout = if m.v1.is_empty() { "pure v2" } else { "hybrid" };
        assert!(
            cpu.is_some_and(|ns| ns > 0),
            "no CPU counter for this process's cgroup ({layout}: v2 {v2}, v1 {v1:?})"
        );
    }

    /// Both layouts on temporary trees (a pure v2 one cannot be made on a hybrid host): the
    /// true peak from `memory.peak` (v2) or `memory.max_usage_in_bytes` (v1), and the one
    /// cheap file the CPU tick reads.
    #[test]
    fn reads_memory_of_v2_and_v1_trees() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path().display();
        let m = Mounts::parse(&format!(
            "35 31 0:32 / {r}/memory rw - cgroup cgroup rw,memory
             41 31 0:38 / {r}/unified rw - cgroup2 cgroup2 rw
"
        ));
        let files = |dir: &str, pairs: &[(&str, &str)]| {
            let dir = root.path().join(dir);
            std::fs::create_dir_all(&dir).unwrap();
            for (name, text) in pairs {
                std::fs::write(dir.join(name), text).unwrap();
            }
        };
        files(
            "unified/job",
            &[
                ("memory.current", "100\n"),
                ("memory.peak", "900\n"),
                ("memory.events", "low 0\nhigh 3\nmax 2\noom 1\noom_kill 1\n"),
                (
                    "memory.stat",
                    "anon 60\nfile 40\nkernel 7\nsock 1\npgmajfault 5\n",
                ),
            ],
        );
        files(
            "memory/job",
            &[
                ("memory.usage_in_bytes", "200\n"),
                ("memory.max_usage_in_bytes", "800\n"),
                (
                    "memory.stat",
                    "cache 10\nrss 150\ntotal_cache 12\ntotal_rss 160\n",
                ),
                ("memory.failcnt", "4\n"),
            ],
        );
        let v2 = CgroupPath::V2("/job".into());
        let v1 = CgroupPath::V1("/job".into());
        assert_eq!(
            read_memory(&m, &v2),
            Some(MemoryReading {
                current: 100,
                peak: Some(900),
                oom_kills: Some(1),
                anon: Some(60),
                file: Some(40),
                kernel: Some(7),
                sock: Some(1),
                major_faults: Some(5),
                high_events: Some(3),
                max_events: Some(2),
            })
        );
        // v1: the hierarchical `total_` keys, `memory.failcnt` for hits of the limit.
        assert_eq!(
            read_memory(&m, &v1),
            Some(MemoryReading {
                current: 200,
                peak: Some(800),
                anon: Some(160),
                file: Some(12),
                max_events: Some(4),
                ..Default::default()
            })
        );
        let current = memory_current_file(&m, &v2).unwrap();
        assert_eq!(current, root.path().join("unified/job/memory.current"));
        assert!(
            memory_current_file(&m, &v1)
                .unwrap()
                .ends_with("memory/job/memory.usage_in_bytes")
        );
        assert_eq!(read_memory(&m, &CgroupPath::V2("/gone".into())), None);
        assert_eq!((parse_u64(" 42\n"), parse_u64("max\n")), (Some(42), None));
    }

    #[test]
    fn hierarchies_and_nesting() {
        let v2 = |p: &str| CgroupPath::V2(p.to_owned());
        assert!(v2("/a/b").is_below(&v2("/a")));
        assert!(!v2("/a").is_below(&v2("/a")));
        assert!(!v2("/ab").is_below(&v2("/a")));
        assert!(!CgroupPath::V1("/a/b".into()).is_below(&v2("/a")));
        assert_eq!(
            CgroupPath::best(Some("/"), Some("/docker/x")),
            Some(CgroupPath::V1("/docker/x".into()))
        );
        assert_eq!(
            CgroupPath::best(Some("/k"), Some("/docker/x")),
            Some(v2("/k"))
        );
        assert_eq!(CgroupPath::best(None, None), None);
        assert!(is_within("/a/b", "/a") && is_within("/a", "/a/") && is_within("/x", "/"));
        assert!(!is_within("/ab", "/a"));
    }

    #[test]
    fn unescapes_mount_points() {
        let line = "41 31 0:38 / /mnt/my\\040cgroups rw - cgroup2 none rw\n";
        assert_eq!(
            cgroup2_mount_point(line),
            Some(PathBuf::from("/mnt/my cgroups"))
        );
        assert_eq!(unescape_octal("a\\13"), "a\\13");
        // Found by fuzzing: `\777` is above a byte (it overflowed), and an escape may end
        // the string.
        assert_eq!(unescape_octal("a\\777"), "a\\777");
        assert_eq!(unescape_octal("end\\040"), "end ");
    }
}
