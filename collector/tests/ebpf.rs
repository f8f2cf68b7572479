//! eBPF accounting against the kernel's own figures, in real cgroups with real processes.
//!
//! Needs root and a BPF-capable kernel. Under `CI=true` or `REQUIRE_EBPF=1` a test that cannot
//! load eBPF fails; elsewhere it is skipped with the reason. Run with `cargo xtask test` or
//! `cargo test -p collector --test ebpf`.

use std::{
    collections::HashSet,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use collector::sources::{
    cgroupfs,
    cpu_totals::{ExitedThread, aggregate_exits},
    ebpf::{EbpfCpu, LoadOptions},
};

#[path = "ebpf/run_delay.rs"]
mod run_delay;

const BURN_ENV: &str = "COLLECTOR_TEST_BURN_MS";
/// Child mode: touch this many MiB of fresh memory, then exit.
const TOUCH_ENV: &str = "COLLECTOR_TEST_TOUCH_MB";
const BURNER_NAME: &str = "burn20ms";

fn main() {
    if run_delay::child_mode() {
        return;
    }
    if let Some(mb) = std::env::var(TOUCH_ENV)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        let mut memory = vec![0u8; mb << 20];
        for page in memory.chunks_mut(4096) {
            page[0] = 1;
        }
        std::hint::black_box(&memory);
        return;
    }
    if let Some(ms) = std::env::var(BURN_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        burn_cpu(Duration::from_millis(ms));
        return;
    }
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let tests: &[(&str, Test)] = &[
        (
            "burner_2s_matches_cpu_stat_and_rusage",
            burner_2s_matches_cpu_stat_and_rusage,
        ),
        (
            "short_processes_match_and_are_named",
            short_processes_match_and_are_named,
        ),
        (
            "short_processes_report_their_peak_rss",
            short_processes_report_their_peak_rss,
        ),
        (
            "removed_cgroup_is_still_counted",
            removed_cgroup_is_still_counted,
        ),
        (
            "map_stays_bounded_under_cgroup_churn",
            map_stays_bounded_under_cgroup_churn,
        ),
        (
            "loading_without_privileges_falls_back",
            loading_without_privileges_falls_back,
        ),
        (
            "pinned_burners_wait_matches_schedstat",
            run_delay::pinned_burners_wait_matches_schedstat,
        ),
        (
            "short_processes_wait_is_counted",
            run_delay::short_processes_wait_is_counted,
        ),
    ];
    let Some(env) = Env::get() else {
        println!(
            "test result: ok. 0 passed; 0 failed; {} ignored",
            tests.len()
        );
        return;
    };
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let started = Instant::now();
        match std::panic::catch_unwind(|| test(&env)) {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok ({:.1?})", started.elapsed());
            }
            Err(_) => {
                failed += 1;
                println!("test {name} ... FAILED");
            }
        }
    }
    let verdict = if failed == 0 { "ok" } else { "FAILED" };
    println!("\ntest result: {verdict}. {passed} passed; {failed} failed; 0 ignored");
    if failed > 0 {
        std::process::exit(101);
    }
}

type Test = fn(&Env);

/// What every test needs: the cgroup v2 mount and a scratch directory.
struct Env {
    mount: PathBuf,
    scratch: PathBuf,
}

impl Env {
    fn get() -> Option<Self> {
        // Probe once, where a test may skip: can this machine load and attach the program
        // at all? Where it must not skip (CI), each test's own load fails instead: under
        // emulation a load costs seconds.
        if !testkit::require_ebpf("loads the real program", || {
            if testkit::requirements_enforced() {
                return Ok(());
            }
            EbpfCpu::load().map(drop)
        }) {
            return None;
        }
        let mount = cgroupfs::find_cgroup2_mount().expect("cgroup v2 mount");
        let scratch =
            std::env::temp_dir().join(format!("collector-ebpf-test-{}", std::process::id()));
        std::fs::create_dir_all(&scratch).unwrap();
        Some(Self { mount, scratch })
    }
}

/// A fresh cgroup v2 directory, removed on drop (after its processes are gone).
struct TestCgroup {
    path: PathBuf,
    id: u64,
}

impl TestCgroup {
    fn new(env: &Env, name: &str) -> Self {
        let path = env
            .mount
            .join(format!("collector-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir(&path);
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        let id = cgroupfs::cgroup_id(&path).unwrap();
        Self { path, id }
    }

    fn usage_ns(&self) -> u64 {
        let text = std::fs::read_to_string(self.path.join("cpu.stat")).unwrap();
        let usec: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .expect("usage_usec in cpu.stat")
            .trim()
            .parse()
            .unwrap();
        usec * 1000
    }

    /// Spawns `program` with `args` inside this cgroup.
    fn spawn(&self, program: &Path, env: &[(&str, String)]) -> std::process::Child {
        self.spawn_pinned(program, env, None)
    }

    /// [`TestCgroup::spawn`], pinned to `cpu` (before exec) if given.
    fn spawn_pinned(
        &self,
        program: &Path,
        env: &[(&str, String)],
        cpu: Option<usize>,
    ) -> std::process::Child {
        let procs = std::ffi::CString::new(
            self.path
                .join("cgroup.procs")
                .into_os_string()
                .into_encoded_bytes(),
        )
        .unwrap();
        let mut cmd = Command::new(program);
        cmd.envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null());
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let ok = libc::write(fd, b"0\n".as_ptr().cast(), 2) == 2;
                libc::close(fd);
                if !ok {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(cpu) = cpu {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(cpu, &mut set);
                    if libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        cmd.spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", program.display()))
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// Waits for one child and returns its CPU time (user + system) from wait4's rusage.
fn wait_rusage(child: std::process::Child) -> u64 {
    let mut status = 0;
    // SAFETY: rusage is plain integers: all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    // SAFETY: `pid` is our child and both out-pointers are to owned, initialised locals.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid, "wait4: {}", std::io::Error::last_os_error());
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed: {status}"
    );
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Waits for one child and returns its peak resident bytes from wait4's rusage.
fn wait_maxrss(child: std::process::Child) -> u64 {
    let mut status = 0;
    // SAFETY: rusage is plain integers: all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    // SAFETY: plain syscall with valid out-pointers.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid, "wait4: {}", std::io::Error::last_os_error());
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    usage.ru_maxrss as u64 * 1024
}

fn burn_cpu(target: Duration) {
    let cpu_time = || {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is an owned, initialised timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    };
    let mut x = 0u64;
    while cpu_time() < target {
        for i in 0..10_000u64 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
    }
    std::hint::black_box(x);
}

fn within(actual: u64, expected: u64, tolerance: f64) -> bool {
    let ratio = actual as f64 / expected as f64;
    (1.0 - tolerance..=1.0 + tolerance).contains(&ratio)
}

/// Reads the cgroup's eBPF total once its processes' final switches have landed: a task's
/// last switch can come just after its parent was told it exited, so the total may still
/// grow for a moment. Polls until two reads 20 ms apart agree (bounded: at most 5 s).
fn settled_total(cpu: &mut EbpfCpu, cgroup: u64) -> u64 {
    let mut read = || {
        cpu.cgroup_totals()
            .unwrap()
            .get(&cgroup)
            .copied()
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = read();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let now = read();
        if (now == last && now > 0) || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// The cgroup's own `cpu.stat` usage once it has stopped changing (see [`settled_total`]).
fn settled_usage(cg: &TestCgroup) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = cg.usage_ns();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let now = cg.usage_ns();
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

fn burner_2s_matches_cpu_stat_and_rusage(env: &Env) {
    let mut cpu = EbpfCpu::load().unwrap();
    let cg = TestCgroup::new(env, "burner");
    let exe = std::env::current_exe().unwrap();
    let child = cg.spawn(&exe, &[(BURN_ENV, "2000".into())]);
    let rusage = wait_rusage(child);
    let ebpf = settled_total(&mut cpu, cg.id);
    let kernel = cg.usage_ns();
    println!(
        "  2 s burner: ebpf {:.4} s, cpu.stat {:.4} s (ratio {:.4}), rusage {:.4} s (ratio {:.4})",
        ebpf as f64 / 1e9,
        kernel as f64 / 1e9,
        ebpf as f64 / kernel as f64,
        rusage as f64 / 1e9,
        ebpf as f64 / rusage as f64
    );
    assert!(
        within(ebpf, kernel, 0.02),
        "ebpf {ebpf} vs cpu.stat {kernel}"
    );
    assert!(within(ebpf, rusage, 0.02), "ebpf {ebpf} vs rusage {rusage}");
}

fn short_processes_match_and_are_named(env: &Env) {
    let mut cpu = EbpfCpu::load().unwrap();
    let cg = TestCgroup::new(env, "short");
    // exec through a symlink so the processes' command name is distinctive.
    let burner = env.scratch.join(BURNER_NAME);
    let _ = std::fs::remove_file(&burner);
    std::os::unix::fs::symlink(std::env::current_exe().unwrap(), &burner).unwrap();
    cpu.drain_exits();

    let (mut rusage, mut exits): (u64, Vec<ExitedThread>) = (0, Vec::new());
    for _ in 0..250 {
        // Two at a time, so the processes also share and switch CPUs.
        let a = cg.spawn(&burner, &[(BURN_ENV, "20".into())]);
        let b = cg.spawn(&burner, &[(BURN_ENV, "20".into())]);
        rusage += wait_rusage(a) + wait_rusage(b);
        exits.extend(cpu.drain_exits());
    }
    let ebpf = settled_total(&mut cpu, cg.id);
    exits.extend(cpu.drain_exits());
    let kernel = cg.usage_ns();
    println!(
        "  500 x 20 ms: ebpf {:.4} s, cpu.stat {:.4} s (ratio {:.4}), rusage {:.4} s (ratio {:.4})",
        ebpf as f64 / 1e9,
        kernel as f64 / 1e9,
        ebpf as f64 / kernel as f64,
        rusage as f64 / 1e9,
        ebpf as f64 / rusage as f64
    );
    assert!(
        within(ebpf, kernel, 0.02),
        "ebpf {ebpf} vs cpu.stat {kernel}"
    );
    assert!(within(ebpf, rusage, 0.02), "ebpf {ebpf} vs rusage {rusage}");

    let all = aggregate_exits(&exits);
    println!("  eBPF health: {:?}", cpu.stats());
    let ours: Vec<_> = all.into_iter().filter(|p| p.cgroup_id == cg.id).collect();
    let named = ours.iter().filter(|p| p.comm == BURNER_NAME).count();
    let per_process: u64 = ours.iter().map(|p| p.runtime_ns).sum();
    println!(
        "  exited processes in the cgroup: {} ({} named {BURNER_NAME}), their CPU {:.4} s",
        ours.len(),
        named,
        per_process as f64 / 1e9
    );
    assert_eq!(named, 500, "every 20 ms process appears by name");
    let min = ours
        .iter()
        .filter(|p| p.comm == BURNER_NAME)
        .map(|p| p.runtime_ns)
        .min()
        .unwrap();
    assert!(
        min >= 19_000_000,
        "each burned at least ~20 ms, smallest {min} ns"
    );
    assert!(
        within(per_process, rusage, 0.02),
        "per-process {per_process} vs rusage {rusage}"
    );
}

/// The exit record's peak (`signal->maxrss`) against wait4's `ru_maxrss` of the same child
/// (the kernel's own figure from the same field), for processes far shorter than a scan.
fn short_processes_report_their_peak_rss(env: &Env) {
    let mut cpu = EbpfCpu::load().unwrap();
    let cg = TestCgroup::new(env, "peakrss");
    let exe = std::env::current_exe().unwrap();
    cpu.drain_exits();
    let mut expected = Vec::new();
    for mb in [20usize, 60, 140] {
        let child = cg.spawn(&exe, &[(TOUCH_ENV, mb.to_string())]);
        let pid = child.id();
        expected.push((pid, mb, wait_maxrss(child)));
    }
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut exits = Vec::new();
    let mut found = std::collections::HashMap::new();
    while found.len() < expected.len() && Instant::now() < deadline {
        exits.extend(cpu.drain_exits());
        for p in aggregate_exits(&exits) {
            if p.leader_exited && expected.iter().any(|(pid, _, _)| *pid == p.tgid) {
                found.insert(p.tgid, p.max_rss_pages * page);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for (pid, mb, rusage) in expected {
        let ebpf = *found
            .get(&pid)
            .unwrap_or_else(|| panic!("no exit record for pid {pid}"));
        println!(
            "  {mb} MiB toucher: exit record peak {:.1} MiB, wait4 ru_maxrss {:.1} MiB",
            ebpf as f64 / 1048576.0,
            rusage as f64 / 1048576.0
        );
        assert_eq!(ebpf, rusage, "pid {pid}: the same kernel figure");
        assert!(
            ebpf >= (mb as u64) << 20,
            "{ebpf} below the {mb} MiB touched"
        );
    }
}

fn removed_cgroup_is_still_counted(env: &Env) {
    let mut cpu = EbpfCpu::load().unwrap();
    let cg = TestCgroup::new(env, "removed");
    let exe = std::env::current_exe().unwrap();
    wait_rusage(cg.spawn(&exe, &[(BURN_ENV, "300".into())]));
    let kernel = settled_usage(&cg);
    let id = cg.id;
    drop(cg); // rmdir between two reads
    let live = |root: &Path| cgroupfs::live_cgroup_ids(root);
    assert!(!live(&env.mount).contains(&id));
    let after_rmdir = cpu.cgroup_totals().unwrap()[&id];
    assert!(
        within(after_rmdir, kernel, 0.02),
        "after rmdir {after_rmdir} vs {kernel}"
    );
    // Retiring the dead entry keeps its total.
    let mut deleted = 0;
    for _ in 0..collector::sources::cpu_totals::RETIRE_AFTER_READS + 1 {
        let ids = live(&env.mount);
        deleted += cpu.retire_dead(|c| ids.contains(&c)).unwrap();
    }
    assert!(deleted >= 1, "the removed cgroup's map entry was deleted");
    assert_eq!(cpu.cgroup_totals().unwrap()[&id], after_rmdir);
    println!("  removed cgroup: {after_rmdir} ns kept after rmdir and map deletion");
}

fn map_stays_bounded_under_cgroup_churn(env: &Env) {
    let capacity = 512;
    let churn = |cpu: &mut EbpfCpu, n: usize, retire: bool| {
        for i in 0..n {
            let cg = TestCgroup::new(env, &format!("churn{i}"));
            wait_rusage(cg.spawn(Path::new("/bin/true"), &[]));
            drop(cg);
            if retire && i % 25 == 24 {
                let ids: HashSet<u64> = cgroupfs::live_cgroup_ids(&env.mount);
                for _ in 0..collector::sources::cpu_totals::RETIRE_AFTER_READS {
                    cpu.retire_dead(|c| ids.contains(&c)).unwrap();
                }
            }
        }
        cpu.flush_logs();
        cpu.stats()
    };
    let mut cpu = EbpfCpu::load_with(LoadOptions {
        cgroup_map_entries: Some(capacity),
        ..Default::default()
    })
    .unwrap();
    let with_gc = churn(&mut cpu, 1500, true);
    println!("  1500 cgroups with retirement: {with_gc:?}");
    assert_eq!(with_gc.cgroup_map_full, 0);
    assert!(with_gc.cgroup_map_len < u64::from(capacity) / 2);
    drop(cpu);

    let mut cpu = EbpfCpu::load_with(LoadOptions {
        cgroup_map_entries: Some(capacity),
        ..Default::default()
    })
    .unwrap();
    let without_gc = churn(&mut cpu, 1500, false);
    println!("  1500 cgroups without retirement: {without_gc:?}");
    assert_eq!(without_gc.cgroup_map_len, u64::from(capacity));
    assert!(
        without_gc.cgroup_map_full > 0 && without_gc.cgroup_ns_dropped > 0,
        "a full map is counted"
    );
}

fn loading_without_privileges_falls_back(_env: &Env) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_collector"));
    cmd.arg("check").env("RUST_LOG", "info");
    // SAFETY: prctl is async-signal-safe. Dropping the capabilities from the bounding set
    // means the exec'd root process does not get them back.
    unsafe {
        cmd.pre_exec(|| {
            const CAP_SYS_ADMIN: libc::c_ulong = 21;
            const CAP_PERFMON: libc::c_ulong = 38;
            const CAP_BPF: libc::c_ulong = 39;
            for cap in [CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF] {
                if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!(
        "  {}",
        stderr
            .lines()
            .find(|l| l.contains("eBPF"))
            .unwrap_or("")
            .trim()
    );
    assert!(out.status.success(), "collector check failed: {stderr}");
    assert!(
        stderr.contains("not permitted to load eBPF"),
        "clear error expected, got: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stdout.contains("cpu source: cgroup") || stdout.contains("cpu source: proc"),
        "{stdout}"
    );
}
