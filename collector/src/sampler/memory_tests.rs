//! Memory from cgroup files, on temporary directory trees laid out as cgroup hierarchies
//! and found through a synthetic mountinfo: the pure v2 path (`memory.current`,
//! `memory.peak`, which this hybrid test machine cannot make for real: its memory
//! controller is bound to v1), the hybrid v1 twin, and run mode's pinned cgroups.

use std::path::Path;

use super::*;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The v2 memory files of a cgroup directory.
fn v2_memory(dir: &Path, current: u64, peak: u64) {
    write(&dir.join("memory.current"), &format!("{current}\n"));
    write(&dir.join("memory.peak"), &format!("{peak}\n"));
    write(
        &dir.join("memory.events"),
        "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
    );
    write(
        &dir.join("memory.stat"),
        &format!("anon {current}\nfile 0\n"),
    );
}

/// A pure v2 layout under `root`: the unified hierarchy at `root/cgroup`, nothing else.
fn pure_v2(root: &Path) -> Mounts {
    Mounts::parse(&format!(
        "29 23 0:26 / {}/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n",
        root.display()
    ))
}

fn samples(s: &Sampler, name: &str) -> u64 {
    s.containers[name].memory.samples.sample_count()
}

/// Pure v2: the CPU tick samples `memory.current`, the slow tick reads the true peak from
/// `memory.peak` without sampling again, and the summary's peak is the true one.
#[test]
fn pure_v2_memory_is_sampled_at_the_cpu_tick_with_the_true_peak() {
    let proc = FakeProc::new();
    let cgroups = tempfile::tempdir().unwrap();
    let job = cgroups.path().join("cgroup/job");
    v2_memory(&job, 1000, 5000);
    proc.process(10, "build", 1, 0, 1, "/job");
    let mut s = proc.sampler_on(Scope::All, pure_v2(cgroups.path()), None);
    tick(&mut s);
    let name = s.containers().next().unwrap().clone();
    assert_eq!(
        samples(&s, name.as_str()),
        1,
        "the first full reading is a sample"
    );
    write(&job.join("memory.current"), "3000\n");
    s.fast_tick();
    s.fast_tick();
    assert_eq!(samples(&s, name.as_str()), 3);
    write(&job.join("memory.current"), "2000\n");
    tick(&mut s);
    assert_eq!(
        samples(&s, name.as_str()),
        3,
        "the slow tick does not sample again"
    );
    s.fast_tick();
    assert_eq!(samples(&s, name.as_str()), 4);

    let summary = s.summary(s.collector_info("sidecar"));
    let c = &summary.containers[0];
    assert_eq!(c.memory_source, Source::Cgroup);
    assert_eq!(c.memory_peak_bytes, Some(5000));
    assert_eq!(
        c.memory_bytes.peak, 5000.0,
        "the statistics' peak is the true one"
    );
    assert!(
        c.memory_bytes.p50 <= 3000.0,
        "percentiles stay the samples'"
    );
    summary.validate().unwrap();

    // A sample above the cgroup's peak file (read at another moment) raises the peak.
    write(&job.join("memory.current"), "7000\n");
    s.fast_tick();
    let summary = s.summary(s.collector_info("sidecar"));
    assert_eq!(summary.containers[0].memory_peak_bytes, Some(7000));
    summary.validate().unwrap();
}

/// A container whose last process ended between two scans: the scan that finds it ended
/// reads its cgroup once more, so the peak and the OOM kill that came after the last
/// reading count, and what is left in the cgroup is not taken as a sample.
#[test]
fn an_ended_container_is_read_once_more_without_a_sample() {
    let proc = FakeProc::new();
    let cgroups = tempfile::tempdir().unwrap();
    let job = cgroups.path().join("cgroup/job");
    v2_memory(&job, 1000, 5000);
    proc.process(10, "build", 1, 0, 1, "/job");
    let mut s = proc.sampler_on(Scope::All, pure_v2(cgroups.path()), None);
    tick(&mut s);
    let name = s.containers().next().unwrap().clone();
    assert_eq!(samples(&s, name.as_str()), 1);
    // Between the scans: the job peaked at 9000, was OOM-killed and ended.
    write(&job.join("memory.peak"), "9000\n");
    write(&job.join("memory.current"), "100\n");
    write(
        &job.join("memory.events"),
        "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
    );
    proc.exit(10);
    tick(&mut s);
    assert!(!s.is_alive(name.as_str()));
    assert_eq!(
        samples(&s, name.as_str()),
        1,
        "no sample of an empty cgroup"
    );
    let c = &s.summary(s.collector_info("sidecar")).containers[0];
    assert_eq!((c.memory_peak_bytes, c.oom_kills), (Some(9000), 1));
    // Later scans leave it alone.
    write(&job.join("memory.peak"), "20000\n");
    tick(&mut s);
    let c = &s.summary(s.collector_info("sidecar")).containers[0];
    assert_eq!(c.memory_peak_bytes, Some(9000));
}

/// Hybrid: the v2 cgroup has no memory files; its v1 memory twin's
/// `memory.usage_in_bytes` is sampled at the CPU tick, `memory.max_usage_in_bytes` is the
/// peak.
#[test]
fn hybrid_v1_twin_is_sampled_at_the_cpu_tick() {
    let proc = FakeProc::new();
    let root = tempfile::tempdir().unwrap();
    let r = root.path().display();
    let mounts = Mounts::parse(&format!(
        "35 31 0:32 / {r}/memory rw,relatime - cgroup cgroup rw,memory\n\
         41 31 0:38 / {r}/unified rw,relatime - cgroup2 cgroup2 rw\n"
    ));
    std::fs::create_dir_all(root.path().join("unified/job")).unwrap();
    let v1 = root.path().join("memory/job");
    write(&v1.join("memory.usage_in_bytes"), "4096\n");
    write(&v1.join("memory.max_usage_in_bytes"), "65536\n");
    proc.process(10, "build", 1, 0, 1, "/job");
    proc.write("10/cgroup", "4:memory:/job\n0::/job\n");
    let mut s = proc.sampler_on(Scope::All, mounts, None);
    tick(&mut s);
    let name = s.containers().next().unwrap().clone();
    write(&v1.join("memory.usage_in_bytes"), "8192\n");
    s.fast_tick();
    assert_eq!(samples(&s, name.as_str()), 2);
    assert_eq!(s.containers[&name].memory.last, Some(8192));
    let summary = s.summary(s.collector_info("sidecar"));
    let c = &summary.containers[0];
    assert_eq!(
        (c.memory_source, c.memory_peak_bytes),
        (Source::Cgroup, Some(65536))
    );
    summary.validate().unwrap();
}

/// Run mode: the command's cgroup is pinned before any scan, so a command that ended
/// before one still has its true peak, raised to the children's `ru_maxrss`.
#[test]
fn pinned_cgroup_is_read_without_a_process_and_the_peak_is_raised() {
    let proc = FakeProc::new();
    let cgroups = tempfile::tempdir().unwrap();
    let run = cgroups.path().join("cgroup/collector-run-1");
    v2_memory(&run, 100, 300 << 20);
    let mounts = pure_v2(cgroups.path());
    let mut s = proc.sampler_on(
        Scope::Cgroup("/collector-run-1".into()),
        mounts,
        Some("cmd"),
    );
    s.pin_memory_cgroups([CgroupPath::V2("/collector-run-1".into())]);
    s.fast_tick();
    assert_eq!(
        samples(&s, "cmd"),
        0,
        "no counter known before the first full reading"
    );
    tick(&mut s);
    s.fast_tick();
    assert_eq!(samples(&s, "cmd"), 2);
    s.raise_memory_peak(200 << 20);
    assert_eq!(s.containers["cmd"].memory.true_peak(), Some(300 << 20));
    s.raise_memory_peak(310 << 20);
    let summary = s.summary(s.collector_info("run"));
    let c = &summary.containers[0];
    assert_eq!(c.name, "cmd");
    assert_eq!(c.memory_source, Source::Cgroup);
    assert_eq!(c.memory_peak_bytes, Some(310 << 20));
    assert_eq!(c.memory_bytes.peak, (310u64 << 20) as f64);
    summary.validate().unwrap();
}
