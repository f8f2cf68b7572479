//! `cargo xtask bench collector`: the collector's own cost.
//!
//! With 1,000 idle processes present, the release collector runs in sidecar mode at its
//! default intervals for `--seconds`; its CPU time and RSS are read from /proc every second.
//! A second run samples ten times as often (so ten times as many samples in the same time) to
//! show that memory stays flat as samples accumulate.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use crate::util::{self, step};

struct Idle(Vec<Child>);

impl Drop for Idle {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

struct Measured {
    cpu_percent: f64,
    rss_first: u64,
    rss_last: u64,
    hwm: u64,
}

pub fn run(seconds: u64, idle: usize, object: &Path) -> Result<()> {
    step("building the release collector");
    util::run(
        util::cargo()
            .args(["build", "--release", "-p", "collector"])
            .env("COLLECTOR_EBPF_OBJECT", object),
    )?;
    let collector = util::root().join("target/release/collector");
    step(format!("starting {idle} idle processes"));
    let mut children = Vec::with_capacity(idle);
    for _ in 0..idle {
        children.push(
            Command::new("sleep")
                .arg("3600")
                .stdin(Stdio::null())
                .spawn()
                .context("spawning sleep")?,
        );
    }
    let _idle = Idle(children);

    let default = measure(
        &collector,
        &["--interval", "5s", "--cpu-interval", "100ms"],
        seconds,
    )?;
    let dense = measure(
        &collector,
        &["--interval", "500ms", "--cpu-interval", "10ms"],
        seconds,
    )?;

    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "\ncollector overhead, {idle} idle processes, {seconds} s per run (sidecar mode, eBPF if loadable)"
    );
    println!("  default intervals (5 s /proc, 100 ms CPU):");
    println!(
        "    CPU {:.3} % of one core, starvation readings included (target <= 0.25 %) {}",
        default.cpu_percent,
        if default.cpu_percent <= 0.25 {
            "ok"
        } else {
            "MISSED"
        }
    );
    println!(
        "    RSS {:.1} MiB after 5 s, {:.1} MiB at the end (target <= 20 MB) {}",
        mib(default.rss_first),
        mib(default.rss_last),
        if default.rss_last <= 20_000_000 {
            "ok"
        } else {
            "MISSED"
        }
    );
    println!(
        "    peak RSS {:.1} MiB, reached at start-up while aya parses the kernel's BTF (target <= 20 MB) {}",
        mib(default.hwm),
        if default.hwm <= 20_000_000 {
            "ok"
        } else {
            "MISSED"
        }
    );
    println!("  ten times as many samples (500 ms /proc, 10 ms CPU):");
    println!("    CPU {:.3} % of one core", dense.cpu_percent);
    println!(
        "    RSS {:.1} MiB after 5 s, {:.1} MiB at the end, peak {:.1} MiB (flat: end/start {:.3})",
        mib(dense.rss_first),
        mib(dense.rss_last),
        mib(dense.hwm),
        dense.rss_last as f64 / dense.rss_first.max(1) as f64
    );
    Ok(())
}

fn measure(collector: &Path, args: &[&str], seconds: u64) -> Result<Measured> {
    step(format!(
        "running the collector {} for {seconds} s",
        args.join(" ")
    ));
    let mut child = Command::new(collector)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the collector")?;
    let pid = child.id();
    let ticks_per_sec = 100.0; // USER_HZ on Linux
    let read = || -> Result<(u64, u64, u64)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let after = stat.rsplit_once(')').context("bad stat")?.1;
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kb = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        Ok((ticks, kb("VmRSS:") * 1024, kb("VmHWM:") * 1024))
    };
    // Start-up (eBPF load, first scan) is not the steady state: measure from 5 s in.
    std::thread::sleep(Duration::from_secs(5));
    let (t0, rss_first, _) = read()?;
    let started = Instant::now();
    let mut last = (t0, rss_first, 0);
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(1));
        last = read()?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    Ok(Measured {
        cpu_percent: (last.0 - t0) as f64 / ticks_per_sec / elapsed * 100.0,
        rss_first,
        rss_last: last.1,
        hwm: last.2,
    })
}
