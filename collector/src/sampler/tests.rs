//! The sampler on a fake `--proc-path`: processes, containers, CPU from tick deltas, memory
//! from RSS, scope, exits and malformed files, with no cgroup hierarchy (the /proc fallback
//! every source falls back to). Memory from cgroup files is tested on temporary cgroup trees
//! in `memory_tests.rs`.

use std::path::Path;

use ::summary::Source;

use super::*;
use crate::sources::cpu_source::CpuSource;

/// A writable stand-in for `/proc`.
struct FakeProc(tempfile::TempDir);

impl FakeProc {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let p = Self(dir);
        p.write("stat", "cpu  100 0 100 800 0 0 0 0 0 0\n");
        p.write(
            "meminfo",
            "MemTotal:       1000000 kB\nMemFree:         500000 kB\nMemAvailable:    600000 kB\n",
        );
        p
    }

    fn root(&self) -> &Path {
        self.0.path()
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.root().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// A process: its stat (CPU ticks, start time, RSS pages) and cgroup v2 path.
    fn process(&self, pid: i32, comm: &str, ppid: i32, ticks: u64, rss_pages: u64, cgroup: &str) {
        let (utime, stime) = (ticks / 2, ticks - ticks / 2);
        self.write(
            &format!("{pid}/stat"),
            &format!(
                "{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194304 0 0 0 0 {utime} {stime} 0 0 20 0 1 0 {start} 1000000 {rss_pages} 18446744073709551615\n",
                start = 1000 + pid
            ),
        );
        self.write(&format!("{pid}/cgroup"), &format!("0::{cgroup}\n"));
    }

    fn exit(&self, pid: i32) {
        std::fs::remove_dir_all(self.root().join(pid.to_string())).unwrap();
    }

    fn sampler(&self, scope: Scope) -> Sampler {
        self.sampler_on(scope, Mounts::default(), None)
    }

    /// A sampler over cgroup hierarchies at `mounts`, optionally with run mode's single
    /// container.
    fn sampler_on(&self, scope: Scope, mounts: Mounts, single: Option<&str>) -> Sampler {
        let cfg = SamplerConfig {
            proc_root: self.root().to_owned(),
            top: 5,
            scope,
            grouper: Grouper::default(),
            limits: HashMap::new(),
            single_container: single.map(|n| ContainerName::mapped(n.to_owned(), None)),
            identity: Execution::default(),
            live: None,
            exclude_own_netns: false,
            jobs_per_container: false,
        };
        let cpu = CpuSource::Proc {
            why_not_ebpf: "test".into(),
            why_not_cgroup: "test".into(),
        };
        Sampler::new(cfg, mounts, cpu)
    }
}

/// One slow tick as the runner takes it: the /proc scan, then a CPU reading.
fn tick(s: &mut Sampler) {
    s.slow_tick();
    s.cpu_tick();
}

const DOCKER: &str = "/docker/0123456789abcdef0123456789abcdef";
const SERVICE: &str = "/system.slice/build.service";

fn ticks_seconds(ticks: u64) -> f64 {
    ticks as f64 / procfs::clock_ticks_per_sec() as f64
}

#[test]
fn containers_cpu_and_memory_from_proc() {
    let proc = FakeProc::new();
    proc.process(10, "make", 1, 0, 100, DOCKER);
    proc.process(11, "cc1 (odd) name", 10, 0, 300, DOCKER);
    proc.process(20, "nginx", 1, 0, 50, SERVICE);
    let mut s = proc.sampler(Scope::All);
    tick(&mut s);
    // CPU used between the two scans: 40 and 10 ticks in the docker container, 5 in the unit.
    proc.process(10, "make", 1, 40, 100, DOCKER);
    proc.process(11, "cc1 (odd) name", 10, 10, 500, DOCKER);
    proc.process(20, "nginx", 1, 5, 50, SERVICE);
    tick(&mut s);

    let summary = s.summary(s.collector_info("sidecar"));
    let names: Vec<&str> = summary.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["build.service", "docker:0123456789ab"]);
    let docker = &summary.containers[1];
    assert_eq!(docker.cpu_source, Source::Proc);
    assert_eq!(docker.memory_source, Source::Proc);
    assert!(
        (docker.cpu_seconds - ticks_seconds(50)).abs() < 1e-9,
        "{docker:?}"
    );
    // Memory: the RSS sum at the last scan, in bytes.
    let page = procfs::page_size() as f64;
    assert_eq!(docker.memory_bytes.peak, 600.0 * page);
    let unit = &summary.containers[0];
    assert!((unit.cpu_seconds - ticks_seconds(5)).abs() < 1e-9);
    // Processes: the odd name survives, ranked by CPU, with their container.
    let top = &summary.top_cpu_processes[0];
    assert_eq!((top.pid, top.name.as_str()), (10, "make"));
    assert_eq!(top.container.as_deref(), Some("docker:0123456789ab"));
    assert!(
        summary
            .top_cpu_processes
            .iter()
            .any(|p| p.name == "cc1 (odd) name")
    );
    assert_eq!(
        summary.top_mem_processes[0].peak_mem_rss_bytes,
        500 * page as u64
    );
    assert_eq!(summary.sample_count, 2);
    summary.validate().unwrap();
}

#[test]
fn exited_processes_are_kept_with_their_figures() {
    let proc = FakeProc::new();
    proc.process(30, "job", 1, 0, 10, SERVICE);
    proc.process(31, "short", 30, 0, 900, SERVICE);
    let mut s = proc.sampler(Scope::All);
    tick(&mut s);
    proc.process(31, "short", 30, 20, 900, SERVICE);
    tick(&mut s);
    proc.exit(31);
    tick(&mut s);
    assert!(!s.has_process(31));
    let summary = s.summary(s.collector_info("sidecar"));
    let short = summary
        .top_cpu_processes
        .iter()
        .find(|p| p.pid == 31)
        .expect("the exited process is still listed");
    assert!(short.exited);
    assert!((short.cpu_seconds - ticks_seconds(20)).abs() < 1e-9);
    assert_eq!(summary.top_mem_processes[0].pid, 31);
}

#[test]
fn tree_scope_leaves_out_other_processes() {
    let proc = FakeProc::new();
    proc.process(40, "runner", 1, 0, 10, SERVICE);
    proc.process(41, "step", 40, 0, 10, SERVICE);
    proc.process(50, "other", 1, 0, 10, SERVICE);
    let mut s = proc.sampler(Scope::Tree(40));
    tick(&mut s);
    assert!(s.has_process(40) && s.has_process(41));
    assert!(!s.has_process(50));
    assert_eq!(s.process_count(), 2);
}

#[test]
fn malformed_and_vanishing_files_are_skipped() {
    let proc = FakeProc::new();
    proc.process(60, "good", 1, 0, 10, SERVICE);
    proc.write("61/stat", "garbage without a command name\n");
    proc.write("61/cgroup", "0::/x\n");
    // A process whose cgroup file vanished between listing and reading.
    proc.write(
        "62/stat",
        "62 (gone) S 1 62 62 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 5 1 1 1\n",
    );
    let mut s = proc.sampler(Scope::All);
    tick(&mut s);
    assert_eq!(s.process_count(), 1);
    assert!(s.read_errors >= 1, "the unparsable stat is counted");
    let summary = s.summary(s.collector_info("sidecar"));
    assert_eq!(summary.containers.len(), 1);
}

#[test]
fn a_missing_proc_root_is_an_error_not_a_crash() {
    let mut s = FakeProc::new().sampler(Scope::All);
    s.cfg.proc_root = "/nonexistent-proc-root".into();
    tick(&mut s);
    assert!(s.read_errors >= 2);
    assert!(s.summary(s.collector_info("sidecar")).containers.is_empty());
}

#[path = "memory_tests.rs"]
mod memory_tests;

#[test]
fn skipped_lines_reach_the_live_counter() {
    let p = FakeProc::new();
    // One malformed cgroup line beside a good one: the line is skipped, the process kept.
    p.process(10, "make", 1, 10, 100, SERVICE);
    p.write(
        "10/cgroup",
        "0::/system.slice/build.service\nnot a cgroup line\n",
    );
    let live = Arc::new(LiveMetrics::default());
    let mut s = p.sampler(Scope::All);
    s.cfg.live = Some(live.clone());
    let before = procfs::skipped_lines();
    tick(&mut s);
    // The counter is process-wide (other tests may add to it); this sampler reports all of
    // it at its first scan, ours included.
    assert!(
        live.skipped_lines.get() > before,
        "{} reported, {before} before this scan",
        live.skipped_lines.get()
    );
    assert_eq!(s.process_count(), 1);
}
