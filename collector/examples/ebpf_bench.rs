//! `cargo xtask bench ebpf`: what the eBPF accounting costs, all measured in one run.
//!
//! 1. Cost per `sched_switch`: bpf_stats `run_time_ns / run_cnt` of the collector's program
//!    (CPU time, run-queue wait and who held the CPU meanwhile), of the same program without
//!    attribution and without wait (the programs before each was added: the baselines) and
//!    of an empty program on the same tracepoint (the floor), alternating, median of runs;
//!    for a ping-pong pinned to one CPU (each incoming task waited) and one across two CPUs
//!    (each comes from idle). `kernel.bpf_stats_enabled` is switched on only while
//!    measuring and then restored.
//! 2. A pipe ping-pong between two threads pinned to one CPU, with the collector's program
//!    attached vs detached (stats off), alternating runs; the ratio of the medians.

use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

use collector::sources::ebpf::{EbpfCpu, LoadOptions, Probe};
use summary::stats::median;

const STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// The programs measured side by side, alternating: the collector's, then its baselines.
const PROBES: [Probe; 4] = [
    Probe::Accounting,
    Probe::UnattributedBaseline,
    Probe::CpuOnlyBaseline,
    Probe::EmptyFloor,
];

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

    // 1. Cost per switch, with bpf_stats on only inside this block, in two workloads: the
    //    pinned ping-pong (every switch-in waited behind the other thread) and the same
    //    across two CPUs (each switch goes to or from idle: nothing held the CPU).
    let other_cpu = if cpu > 0 { cpu - 1 } else { cpu };
    for (label, peer_cpu) in [
        ("pinned to one CPU: every incoming task waited", cpu),
        (
            "across two CPUs: every incoming task comes from idle",
            other_cpu,
        ),
    ] {
        let mut costs: [Vec<f64>; 4] = Default::default();
        {
            let _stats = StatsEnabled::on()?;
            for _ in 0..pairs {
                for (probe, out) in PROBES.iter().zip(costs.iter_mut()) {
                    let loaded = EbpfCpu::load_with(LoadOptions {
                        probe: *probe,
                        ..Default::default()
                    })?;
                    ping_pong_on(cpu, peer_cpu, round_trips / 2);
                    let s = loaded.program_run_stats()?;
                    anyhow::ensure!(s.run_count > 0, "bpf_stats recorded no runs");
                    out.push(s.run_time.as_nanos() as f64 / s.run_count as f64);
                }
            }
        }
        let [ours, unattributed, cpu_only, floor] =
            costs.each_mut().map(|v| median(v.as_mut_slice()));
        println!(
            "cost per sched_switch, {label} (bpf_stats run_time_ns / run_cnt, median of {pairs}):"
        );
        // The targets are the pinned workload's (the one they were set against); across
        // CPUs every switch also pays for a cold CPU, and only attribution's own cost is
        // compared.
        let pinned = peer_cpu == cpu;
        let target = |text: &str, ok: bool| {
            if pinned {
                format!("   ({text}) {}", verdict(ok))
            } else {
                String::new()
            }
        };
        println!(
            "  collector program (CPU, wait, who held the CPU) {ours:7.1} ns{}",
            target("target <= 50 ns", ours <= 50.0)
        );
        println!("  without attribution (CPU + wait)             {unattributed:7.1} ns");
        println!("  without wait (CPU only)                      {cpu_only:7.1} ns");
        println!("  empty program (floor)                        {floor:7.1} ns");
        println!(
            "  collector above the floor                    {:7.1} ns{}",
            ours - floor,
            target("target <= 20 ns", ours - floor <= 20.0)
        );
        let fastest = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "  attribution's cost above the program without it {:5.1} ns (fastest runs {:+.1} ns)",
            ours - unattributed,
            fastest(&costs[0]) - fastest(&costs[1])
        );
        println!(
            "  wait's cost above the CPU-only program       {:7.1} ns",
            unattributed - cpu_only
        );
        println!(
            "  runs: collector {:.1?}, unattributed {:.1?}, CPU-only {:.1?}, floor {:.1?}\n",
            costs[0], costs[1], costs[2], costs[3]
        );
    }

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
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
    // SAFETY: pipe(2) succeeded: both descriptors are open and owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn pin(cpu: usize) {
    // SAFETY: syscalls on owned, initialised arguments (cpu_set_t, our pipe, a byte).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Two threads on one CPU bounce a byte over two pipes; every round trip is two switches.
fn ping_pong(cpu: usize, round_trips: u64) -> Duration {
    ping_pong_on(cpu, cpu, round_trips)
}

/// The ping-pong with this thread on `cpu` and its peer on `peer_cpu`.
fn ping_pong_on(cpu: usize, peer_cpu: usize, round_trips: u64) -> Duration {
    let (a_read, a_write) = pipe();
    let (b_read, b_write) = pipe();
    let peer = std::thread::spawn(move || {
        pin(peer_cpu);
        let mut byte = [0u8; 1];
        for _ in 0..round_trips {
            // SAFETY: syscalls on owned, initialised arguments (cpu_set_t, our pipe, a byte).
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
        // SAFETY: syscalls on owned, initialised arguments (cpu_set_t, our pipe, a byte).
        unsafe {
            libc::write(a_write.as_raw_fd(), byte.as_ptr().cast(), 1);
            libc::read(b_read.as_raw_fd(), byte.as_mut_ptr().cast(), 1);
        }
    }
    let elapsed = started.elapsed();
    peer.join().unwrap();
    // Let this thread run anywhere again.
    // SAFETY: syscalls on owned, initialised arguments (cpu_set_t, our pipe, a byte).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for c in 0..=cpu {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
    elapsed
}
