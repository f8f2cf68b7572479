//! `cargo xtask bench ebpf`: what the eBPF accounting costs, all measured in one run.
//!
//! 1. Cost per `sched_switch`: bpf_stats `run_time_ns / run_cnt` of the collector's program
//!    (CPU time and run-queue wait), of the same program without wait (CPU time only, the
//!    program before wait was added: the baseline) and of an empty program on the same
//!    tracepoint (the floor), alternating, median of runs. `kernel.bpf_stats_enabled` is
//!    switched on only while measuring and then restored.
//! 2. A pipe ping-pong between two threads pinned to one CPU, with the collector's program
//!    attached vs detached (stats off), alternating runs; the ratio of the medians.

use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

use collector::sources::ebpf::{EbpfCpu, LoadOptions, Probe};

const STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

fn main() -> anyhow::Result<()> {
    let mut round_trips = 200_000u64;
    let mut pairs = 7u32;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--round-trips" => round_trips = args.next().unwrap_or_default().parse()?,
            "--pairs" => pairs = args.next().unwrap_or_default().parse()?,
            other => anyhow::bail!("unknown argument {other:?} (use --round-trips N --pairs N)"),
        }
    }
    let cpu = last_cpu();
    println!("eBPF benchmark: sched_switch accounting (the only program the collector attaches)");
    println!("  ping-pong pinned to CPU {cpu}, {round_trips} round trips per run\n");

    // 1. Cost per switch, with bpf_stats on only inside this block.
    let (mut ours, mut baseline, mut floor) = (Vec::new(), Vec::new(), Vec::new());
    {
        let _stats = StatsEnabled::on()?;
        for _ in 0..pairs {
            for (probe, out) in [
                (Probe::Accounting, &mut ours),
                (Probe::CpuOnlyBaseline, &mut baseline),
                (Probe::EmptyFloor, &mut floor),
            ] {
                let loaded = EbpfCpu::load_with(LoadOptions {
                    probe,
                    ..Default::default()
                })?;
                ping_pong(cpu, round_trips / 2);
                let s = loaded.program_run_stats()?;
                anyhow::ensure!(s.run_count > 0, "bpf_stats recorded no runs");
                out.push(s.run_time.as_nanos() as f64 / s.run_count as f64);
            }
        }
    }
    let (ours_ns, baseline_ns, floor_ns) =
        (median(&mut ours), median(&mut baseline), median(&mut floor));
    println!(
        "cost per sched_switch (bpf_stats run_time_ns / run_cnt, median of {}):",
        ours.len()
    );
    println!(
        "  collector program (CPU + run-queue wait) {ours_ns:7.1} ns   (target <= 50 ns) {}",
        verdict(ours_ns <= 50.0)
    );
    println!("  without wait (CPU only, the old program) {baseline_ns:7.1} ns");
    println!("  empty program (floor)                    {floor_ns:7.1} ns");
    println!(
        "  wait's cost above the CPU-only program   {:7.1} ns   (target <= 15 ns) {}",
        ours_ns - baseline_ns,
        verdict(ours_ns - baseline_ns <= 15.0)
    );
    println!(
        "  above the floor: collector {:.1} ns, CPU-only {:.1} ns",
        ours_ns - floor_ns,
        baseline_ns - floor_ns
    );
    // The fastest run is the least disturbed by other work on a shared machine.
    let (ours_min, baseline_min, floor_min) = (ours[0], baseline[0], floor[0]);
    println!(
        "  fastest runs: collector {ours_min:.1} ns, CPU-only {baseline_min:.1} ns, floor \
         {floor_min:.1} ns (wait's cost {:.1} ns)",
        ours_min - baseline_min
    );
    if floor_ns > 50.0 {
        println!(
            "  note: an empty program already costs {floor_ns:.1} ns here, so the absolute 50 ns \
             target is below this machine's floor; the target was set against a 27 ns floor \
             (23 ns of budget above it)"
        );
    }
    println!("  runs: {ours:.1?}, CPU-only {baseline:.1?}, floor {floor:.1?}\n");

    // 2. Ping-pong, attached vs detached, alternating.
    let (mut detached, mut attached) = (Vec::new(), Vec::new());
    ping_pong(cpu, round_trips / 4); // warm-up
    for _ in 0..pairs {
        detached.push(ping_pong(cpu, round_trips));
        let loaded = EbpfCpu::load()?;
        attached.push(ping_pong(cpu, round_trips));
        drop(loaded);
    }
    let per_rt = |d: Duration| d.as_nanos() as f64 / round_trips as f64;
    let mut det: Vec<f64> = detached.iter().map(|d| per_rt(*d)).collect();
    let mut att: Vec<f64> = attached.iter().map(|d| per_rt(*d)).collect();
    let (det_m, att_m) = (median(&mut det), median(&mut att));
    let ratio = att_m / det_m;
    println!("pinned pipe ping-pong ({pairs} alternating pairs, medians):");
    println!("  detached                 {det_m:7.0} ns per round trip (2 switches)");
    println!("  attached                 {att_m:7.0} ns per round trip");
    println!(
        "  ratio attached/detached  {ratio:7.3}    (target <= 1.05) {}",
        verdict(ratio <= 1.05)
    );
    println!("  runs detached {det:.0?}\n  runs attached {att:.0?}");
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn last_cpu() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() - 1)
        .unwrap_or(0)
}

/// Turns `kernel.bpf_stats_enabled` on and restores the previous value when dropped.
struct StatsEnabled(String);

impl StatsEnabled {
    fn on() -> anyhow::Result<Self> {
        let before = std::fs::read_to_string(STATS_SYSCTL)
            .map_err(|e| anyhow::anyhow!("reading {STATS_SYSCTL}: {e}"))?;
        std::fs::write(STATS_SYSCTL, "1")
            .map_err(|e| anyhow::anyhow!("enabling bpf stats ({STATS_SYSCTL}, needs root): {e}"))?;
        Ok(Self(before.trim().to_owned()))
    }
}

impl Drop for StatsEnabled {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(STATS_SYSCTL, &self.0) {
            eprintln!(
                "warning: could not restore {STATS_SYSCTL} to {}: {e}",
                self.0
            );
        }
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn pin(cpu: usize) {
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Two threads on one CPU bounce a byte over two pipes; every round trip is two switches.
fn ping_pong(cpu: usize, round_trips: u64) -> Duration {
    let (a_read, a_write) = pipe();
    let (b_read, b_write) = pipe();
    let peer = std::thread::spawn(move || {
        pin(cpu);
        let mut byte = [0u8; 1];
        for _ in 0..round_trips {
            unsafe {
                libc::read(a_read.as_raw_fd(), byte.as_mut_ptr().cast(), 1);
                libc::write(b_write.as_raw_fd(), byte.as_ptr().cast(), 1);
            }
        }
    });
    pin(cpu);
    let mut byte = [1u8; 1];
    let started = Instant::now();
    for _ in 0..round_trips {
        unsafe {
            libc::write(a_write.as_raw_fd(), byte.as_ptr().cast(), 1);
            libc::read(b_read.as_raw_fd(), byte.as_mut_ptr().cast(), 1);
        }
    }
    let elapsed = started.elapsed();
    peer.join().unwrap();
    // Let this thread run anywhere again.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for c in 0..=cpu {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
    elapsed
}
