//! The cgroupfs parsers on arbitrary text: `Mounts::parse` and `cgroup2_mount_point` (a
//! mountinfo text), `parse_keyed` (a `key value` file such as `memory.events`).
//!
//! - None of them panics.
//! - `Mounts::parse(t).v2 == cgroup2_mount_point(t)`; every v1 entry is a controller name.
//! - A cgroup directory (`v2_dir`, `v1_dir`) never climbs out of its mount point, whatever
//!   the cgroup path (each line of the input is also tried as one).
//! - `parse_keyed(t, k) == Some(v)` only if some line is `k v` with `v` the number.
#![no_main]

use std::path::{Component, Path};

use collector::sources::cgroupfs::{Mounts, cgroup2_mount_point, parse_keyed};
use libfuzzer_sys::fuzz_target;

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

/// Keys the collector reads from keyed files, plus words of the input itself.
const KEYS: [&str; 8] = [
    "oom_kill",
    "usage_usec",
    "anon",
    "file",
    "max",
    "oom",
    "total_rss",
    "",
];

fn inside(dir: &Path, mount: &Path) {
    let rest = dir
        .strip_prefix(mount)
        .unwrap_or_else(|_| panic!("{dir:?} is not under {mount:?}"));
    assert!(
        !rest
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::RootDir)),
        "{dir:?} climbs out of {mount:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let text = collector_fuzz::text(data);
    let mounts = Mounts::parse(&text);
    assert_eq!(mounts.v2, cgroup2_mount_point(&text));
    for controller in mounts.v1.keys() {
        assert!(
            V1_CONTROLLERS.contains(&controller.as_str()),
            "{controller:?}"
        );
    }
    let mut paths: Vec<&str> = text.lines().take(16).collect();
    paths.extend(["/", "", "/a/../..", "..", "/kubepods/../../etc"]);
    for p in &paths {
        if let (Some(mount), Some(dir)) = (&mounts.v2, mounts.v2_dir(p)) {
            inside(&dir, mount);
        }
        for (controller, mount) in &mounts.v1 {
            inside(&mounts.v1_dir(controller, p).unwrap(), mount);
        }
    }

    let first_words = text.lines().take(4).filter_map(|l| l.split(' ').next());
    for key in KEYS.into_iter().chain(first_words) {
        if let Some(v) = parse_keyed(&text, key) {
            assert!(
                text.lines().any(|l| l
                    .split_once(' ')
                    .is_some_and(|(k, rest)| k == key && rest.trim().parse() == Ok(v))),
                "{key:?} -> {v}"
            );
        }
    }
});
