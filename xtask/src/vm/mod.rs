//! `cargo xtask vm`: the accuracy tests that matter most, run where CI nodes really are: a
//! QEMU guest of Debian's cloud kernel (6.1, an LTS) with pure cgroup v2, built from Debian
//! packages alone.
//!
//! - The kernel is the one Debian's `linux-image-cloud-amd64` currently depends on,
//!   `apt-get download`ed and unpacked into `target/vm/kernel/<package>/` once.
//! - The root file system ([`guest`]) is static busybox, bash, the collector, the receiver
//!   and the *host's own test binaries* (already built by `cargo test`), at their host paths.
//!   So the guest runs the very tests the host runs, with the same tolerances; only the
//!   kernel and the cgroup layout differ.
//! - `init.sh` runs each test in its own process and writes a framed report to the second
//!   serial port; [`report`] parses it. A failing, renamed or unfinished test fails
//!   `cargo xtask vm` (and so `cargo xtask test`) with the guest's output shown.
//!
//! QEMU runs under TCG (software emulation; KVM is not available on every machine this runs
//! on): the guest is several times slower than the host for CPU-bound work, which the tests
//! tolerate because they compare the collector with the guest kernel's own counters.

mod guest;
mod kernel;
mod report;

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::util::{self, TestTotals, step};

pub use report::Report;

use kernel::Kernel;

/// Debian packages the guest is built and run with.
pub const DEBS: &[&str] = &["qemu-system-x86", "busybox-static", "cpio", "binutils"];

/// A test binary of the workspace and the tests of it that run in the guest.
struct Suite {
    /// The `[[test]]` target (one name across the workspace).
    target: &'static str,
    /// libtest's harness (`--exact NAME`); otherwise the target's own harness, which takes
    /// a name filter as its one argument (`collector/tests/ebpf.rs`).
    libtest: bool,
    tests: &'static [&'static str],
    more: &'static [&'static str],
}

/// What runs in the guest: every accuracy test whose figures depend on the kernel or on the
/// cgroup layout. Labels are `target::test`. `tests` run in CI (under TCG, in about two
/// minutes); `more` (slower, and testing nothing kernel-specific that `tests` do not)
/// only with `cargo xtask vm --all`.
const SUITES: &[Suite] = &[
    // eBPF against the kernel's own counters: its BTF offsets are read from this kernel.
    Suite {
        target: "ebpf",
        libtest: false,
        tests: &[
            "burner_2s_matches_cpu_stat_and_rusage",
            "short_processes_match_and_are_named",
            "short_processes_report_their_peak_rss",
            "removed_cgroup_is_still_counted",
            "pinned_burners_wait_matches_schedstat",
        ],
        more: &["short_processes_wait_is_counted"],
    },
    // `collector run` in its own cgroup (cgroup.procs moves, cpu.stat, memory.peak), and
    // memory.peak read by a sidecar for a burst no sample sees.
    Suite {
        target: "collector",
        libtest: true,
        tests: &[
            "run_agrees_with_getrusage_for_many_short_children",
            "sidecar_reports_a_peak_between_samples_from_the_kernel_counter",
        ],
        more: &[
            // memory.peak in run mode, where the command's own rusage bounds it too.
            "run_reports_true_memory_peaks_within_5_percent",
            // The shape of a steady burner's samples: nothing kernel-specific beyond the
            // counters the others read.
            "a_steady_burner_samples_one_core_with_every_cpu_source",
            "run_counts_a_command_shorter_than_the_first_scan",
            "sidecar_reports_true_memory_peaks_within_5_percent",
            "the_timeline_shows_the_phases_of_a_run",
        ],
    },
    // Sidecar mode over plain cgroups: cpu.max and its throttling, PSI per cgroup, io.stat,
    // memory.high and memory.events, run-queue wait, and the verdicts built on them, both
    // ways: starved when it was, not for a light command beside busy neighbours.
    Suite {
        target: "starvation",
        libtest: true,
        tests: &[
            "throttling_pressure_io_and_verdicts_match_the_kernel",
            "memory_beyond_its_bound_shows_events_and_pressure",
            "a_light_command_beside_a_busy_neighbour_is_not_starved",
            "a_sleeper_waking_beside_two_burners_on_its_cpu_is_not_starved",
            "a_container_that_ends_before_the_collector_is_read_to_its_end",
        ],
        // Run-queue wait against schedstat and its verdict: the eBPF suite's pinned burners
        // and node mode's two jobs on one CPU read the same counters on this kernel.
        more: &["run_queue_wait_of_two_burners_on_one_cpu"],
    },
    // Node mode over plain cgroups as jobs, with a real receiver (CPU within 1 % of each
    // pod's cgroup, which needs the missed-switch recovery), and across a restart; two
    // jobs on one CPU naming each other (the eBPF attribution against schedstat).
    Suite {
        target: "node",
        libtest: true,
        tests: &[
            "simulated_node",
            "two_jobs_on_one_cpu_name_each_other_and_a_light_job_is_not_starved",
        ],
        more: &[],
    },
];

/// How the guest runs.
pub struct Options {
    /// Only the tests whose label contains one of these (all when empty).
    pub filters: Vec<String>,
    /// The slower tests too (`Suite::more`).
    pub all: bool,
    /// The whole guest's limit, boot to power-off.
    pub timeout: Duration,
    pub memory_mib: u32,
    pub cpus: u32,
}

/// Builds the guest, runs the tests in it and returns their counts; an error when one
/// fails or the guest dies, after printing what it said.
pub fn run(ebpf_object: &Path, options: &Options) -> Result<TestTotals> {
    util::ensure_debs(DEBS)?;
    let kernel = kernel::ensure()?;
    let tests = selected(&options.filters, options.all)?;
    let binaries = build_binaries(ebpf_object, &tests)?;

    let dir = util::root().join("target/vm");
    let initrd = dir.join("initrd.cpio");
    let staged = Instant::now();
    let size = stage(&dir.join("rootfs"), &kernel, &binaries, &tests)?.pack(&initrd)?;
    step(format!(
        "guest root file system: {} ({:.0} MiB, {} tests) in {:.1?}",
        initrd.display(),
        size as f64 / f64::from(1 << 20),
        tests.len(),
        staged.elapsed()
    ));

    let report_path = dir.join("report.txt");
    let console_path = dir.join("console.log");
    let started = Instant::now();
    let mut report = Report::default();
    let mut remaining: Vec<&GuestTest> = tests.iter().collect();
    // Tests whose guest died of the emulator's known lock-up, and were run again.
    let mut retried: Vec<String> = Vec::new();
    let ended = loop {
        let ended = boot(&kernel, &initrd, &report_path, &console_path, options)?;
        let this = Report::parse(&std::fs::read_to_string(&report_path).unwrap_or_default());
        let console = std::fs::read_to_string(&console_path).unwrap_or_default();
        let died_in = this.unfinished.as_ref().map(|(label, _)| label.clone());
        report.absorb(this);
        let Some(label) = died_in.filter(|_| emulator_lockup(&console)) else {
            break ended;
        };
        if retried.len() >= MAX_LOCKUP_RETRIES {
            break ended;
        }
        let kept = dir.join(format!("console-lockup-{}.log", retried.len() + 1));
        std::fs::write(&kept, &console)?;
        step(format!(
            "the guest locked up in {label} the emulator's way (text_poke_bp under TCG; console in {}): booting again from that test",
            kept.display()
        ));
        report.unfinished = None;
        retried.push(label.clone());
        let at = remaining.iter().position(|t| t.label == label).unwrap_or(0);
        remaining.drain(..at);
        let again: Vec<GuestTest> = remaining.iter().map(|t| (*t).clone()).collect();
        stage(&dir.join("rootfs"), &kernel, &binaries, &again)?.pack(&initrd)?;
    };
    let elapsed = started.elapsed();
    let host = serde_json::json!({
        "kernel_package": kernel.package,
        "seconds": elapsed.as_secs_f64(),
        "qemu": ended,
        "rerun_after_emulator_lockup": retried,
    });
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_vec_pretty(&report.to_json(host))?,
    )?;
    print_report(&report, &tests);
    let totals = report.totals();
    step(format!(
        "guest suite on {}: {} passed, {} failed in {:.1?}{} (report: {}, console: {})",
        report.kernel.as_deref().unwrap_or("an unknown kernel"),
        totals.passed,
        totals.failed,
        elapsed,
        if retried.is_empty() {
            String::new()
        } else {
            format!(
                "; run again after the emulator's lock-up: {}",
                retried.join(", ")
            )
        },
        dir.join("report.json").display(),
        console_path.display()
    ));
    let missing = tests.len() as u64 - totals.passed - totals.failed;
    if totals.failed > 0 || missing > 0 || !report.complete {
        let console = std::fs::read_to_string(&console_path).unwrap_or_default();
        let lines: Vec<&str> = console.lines().collect();
        eprintln!(
            "--- the guest's console, last lines ({ended}) ---\n{}",
            lines[lines.len().saturating_sub(40)..].join("\n")
        );
        bail!(
            "the guest suite failed: {} failed, {missing} never ran{}",
            totals.failed,
            if report.complete {
                ""
            } else {
                " (the guest did not reach the end of its list)"
            }
        );
    }
    Ok(totals)
}

/// How many times a guest that died of [`emulator_lockup`] is booted again.
const MAX_LOCKUP_RETRIES: usize = 2;

/// Whether the guest died of the emulator fault seen with multi-threaded TCG: a soft lock-up
/// (which panics it, `softlockup_panic=1`) while the kernel live-patched code
/// (`text_poke_bp`, as it does when an eBPF program detaches from a tracepoint), one vCPU
/// spinning at the patched instruction with interrupts off and the other waiting for it to
/// take an IPI. Never seen on hardware or KVM; any other death fails the suite at once.
fn emulator_lockup(console: &str) -> bool {
    console.contains("softlockup: hung tasks") && console.contains("text_poke_bp")
}

/// A test to run: its label, the host binary and the arguments that select it.
#[derive(Clone)]
struct GuestTest {
    label: String,
    target: &'static str,
    args: String,
}

fn selected(filters: &[String], all: bool) -> Result<Vec<GuestTest>> {
    let tests: Vec<GuestTest> = SUITES
        .iter()
        .flat_map(|s| {
            let more = if all { s.more } else { &[] };
            s.tests.iter().chain(more).map(move |t| GuestTest {
                label: format!("{}::{t}", s.target),
                target: s.target,
                args: if s.libtest {
                    format!("--exact {t} --test-threads=1 --nocapture")
                } else {
                    (*t).to_owned()
                },
            })
        })
        .filter(|t| filters.is_empty() || filters.iter().any(|f| t.label.contains(f.as_str())))
        .collect();
    if tests.is_empty() {
        let all: Vec<String> = SUITES
            .iter()
            .flat_map(|s| {
                s.tests
                    .iter()
                    .chain(s.more)
                    .map(move |t| format!("{}::{t}", s.target))
            })
            .collect();
        bail!(
            "no guest test matches {filters:?}; the guest's tests are:\n  {}",
            all.join("\n  ")
        );
    }
    Ok(tests)
}

/// The binaries the guest needs, built as `cargo xtask test` builds them (so nothing is
/// rebuilt after it): the collector, the receiver, `touch-memory`, and each test target.
struct Binaries {
    collector: PathBuf,
    receiver: PathBuf,
    touch_memory: PathBuf,
    /// `target` → test executable.
    tests: BTreeMap<&'static str, PathBuf>,
}

fn build_binaries(ebpf_object: &Path, tests: &[GuestTest]) -> Result<Binaries> {
    step("building the binaries the guest runs (cargo build, cargo test --no-run)");
    util::run(
        util::cargo()
            .args(["build", "-p", "collector", "-p", "receiver", "--bins"])
            .env("COLLECTOR_EBPF_OBJECT", ebpf_object),
    )?;
    let mut targets: Vec<&'static str> = tests.iter().map(|t| t.target).collect();
    targets.dedup();
    // The whole workspace, as `cargo xtask test` builds it: the same features, so the
    // same binaries, and nothing is rebuilt.
    let out = util::cargo()
        .args([
            "test",
            "--workspace",
            "--exclude",
            "collector-ebpf",
            "--no-run",
        ])
        .arg("--message-format=json-render-diagnostics")
        .args(targets.iter().flat_map(|t| ["--test", t]))
        .env("COLLECTOR_EBPF_OBJECT", ebpf_object)
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo test --no-run")?;
    if !out.status.success() {
        bail!("building the guest's test binaries failed");
    }
    let mut executables = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let is_test = msg
            .pointer("/target/kind")
            .and_then(|k| k.as_array())
            .is_some_and(|k| k.iter().any(|k| k == "test"));
        let (Some(name), Some(exe)) = (
            msg.pointer("/target/name").and_then(|v| v.as_str()),
            msg.get("executable").and_then(|v| v.as_str()),
        ) else {
            continue;
        };
        if let Some(t) = targets.iter().find(|t| is_test && **t == name) {
            executables.insert(*t, PathBuf::from(exe));
        }
    }
    let debug = util::root().join("target/debug");
    let binaries = Binaries {
        collector: debug.join("collector"),
        receiver: debug.join("receiver"),
        touch_memory: debug.join("touch-memory"),
        tests: executables,
    };
    for t in tests {
        if !binaries.tests.contains_key(t.target) {
            bail!("cargo built no test executable for {}", t.target);
        }
    }
    Ok(binaries)
}

/// Stages the root file system: busybox, bash, the binaries, brd.ko, and the test list.
fn stage(
    dir: &Path,
    kernel: &Kernel,
    binaries: &Binaries,
    tests: &[GuestTest],
) -> Result<guest::Rootfs> {
    let mut fs = guest::Rootfs::create(dir)?;
    fs.add_busybox(Path::new("/bin/busybox"))?;
    // The tests' workloads are bash scripts (`((i++))`, `times`, `$SECONDS`), and they
    // expect GNU timeout's exit status 124 (busybox's ends with the signal instead).
    fs.add_elf(Path::new("/bin/bash"), Path::new("bin/bash"), false)?;
    fs.add_elf(
        Path::new("/usr/bin/timeout"),
        Path::new("bin/timeout"),
        false,
    )?;
    let at_host_path = |p: &Path| p.strip_prefix("/").unwrap_or(p).to_path_buf();
    for bin in [
        &binaries.collector,
        &binaries.receiver,
        &binaries.touch_memory,
    ] {
        fs.add_elf(bin, &at_host_path(bin), true)?;
    }
    for exe in binaries.tests.values() {
        fs.add_elf(exe, &at_host_path(exe), true)?;
    }
    fs.copy(&kernel.brd, Path::new("lib/modules/brd.ko"), false)?;
    fs.write(
        "collector.path",
        binaries.collector.to_string_lossy().as_bytes(),
        0o644,
    )?;
    let list: String = tests
        .iter()
        .map(|t| {
            format!(
                "{} {} {}\n",
                t.label,
                binaries.tests[t.target].display(),
                t.args
            )
        })
        .collect();
    fs.write("tests.list", list.as_bytes(), 0o644)?;
    Ok(fs)
}

/// Boots the guest and waits for it to power off (or kills it at the timeout). The console
/// is streamed with a `guest|` prefix and kept in `console`; the report goes to `report`.
/// Returns how it ended, in words.
fn boot(
    kernel: &Kernel,
    initrd: &Path,
    report: &Path,
    console: &Path,
    options: &Options,
) -> Result<String> {
    let _ = std::fs::remove_file(report);
    step(format!(
        "booting {} under QEMU (TCG, {} CPUs, {} MiB, pure cgroup v2); limit {:?}",
        kernel.package, options.cpus, options.memory_mib, options.timeout
    ));
    let mut qemu = Command::new("qemu-system-x86_64");
    // A host thread per vCPU. With one thread for both (`thread=single`) the kernel
    // accounts a vCPU's time in lumps (a busy loop read 2.0 cores over 100 ms through
    // cpu.stat) and the cgroup-counter figures drift 3 % from getrusage; with a thread each,
    // the guest now and then locks up in `text_poke_bp` ([`emulator_lockup`], run again).
    qemu.args(["-accel", "tcg,thread=multi", "-cpu", "max"])
        .args(["-nodefaults", "-no-user-config"])
        .args(["-smp", &options.cpus.to_string()])
        .args(["-m", &options.memory_mib.to_string()])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .args(["-serial", "stdio"])
        .arg("-serial")
        .arg(format!("file:{}", report.display()))
        .arg("-kernel")
        .arg(&kernel.vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        // A kernel that locks up, oopses or panics powers off at once (panic=-1 with
        // -no-reboot), with its warnings and stack traces on the console (loglevel 5); a
        // lock-up is one after 10 s (watchdog_thresh=5), not the default 20 s.
        .args([
            "-append",
            "console=ttyS0 loglevel=5 panic=-1 oops=panic softlockup_panic=1 watchdog_thresh=5",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = qemu
        .spawn()
        .context("starting qemu-system-x86_64 (Debian's qemu-system-x86)")?;
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut log = std::fs::File::create(console)?;
    let streamer = std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches('\r');
            let _ = writeln!(log, "{line}");
            if !line.trim().is_empty() {
                eprintln!("  guest| {line}");
            }
        }
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut text);
        text
    });
    let deadline = Instant::now() + options.timeout;
    let ended = loop {
        if let Some(status) = child.try_wait()? {
            break if status.success() {
                "powered off".to_owned()
            } else {
                format!("qemu exited with {status}")
            };
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break format!("killed at the {:?} limit", options.timeout);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = streamer.join();
    let qemu_errors = errors.join().unwrap_or_default();
    if !qemu_errors.trim().is_empty() {
        eprintln!("qemu: {}", qemu_errors.trim());
    }
    Ok(ended)
}

/// One line per test, then the output of each failed one.
fn print_report(report: &Report, tests: &[GuestTest]) {
    println!(
        "\nguest: {} | {}",
        report.kernel.as_deref().unwrap_or("kernel unknown"),
        report.facts.join(" | ")
    );
    if let Some((check, rc)) = &report.check {
        println!("collector check (exit {rc}):");
        for l in check.lines() {
            println!("  {l}");
        }
    }
    for t in tests {
        match report.tests.iter().find(|r| r.label == t.label) {
            Some(r) => {
                println!(
                    "test guest::{} ... {} ({})",
                    r.label,
                    if r.passed { "ok" } else { "FAILED" },
                    r.seconds.map_or("?".to_owned(), |s| format!("{s:.1} s"))
                );
                // A passing test's figures (what it printed), without libtest's frame.
                if r.passed {
                    for l in r.output.lines().filter(|l| !is_frame(l)) {
                        println!("    {l}");
                    }
                }
            }
            None if report.unfinished.as_ref().is_some_and(|u| u.0 == t.label) => {
                println!("test guest::{} ... DIED (the guest ended in it)", t.label)
            }
            None => println!("test guest::{} ... NOT RUN", t.label),
        }
    }
    for r in report.tests.iter().filter(|r| !r.passed) {
        println!(
            "\n--- guest::{} failed: {} ---\n{}",
            r.label,
            r.problem.as_deref().unwrap_or("?"),
            r.output
        );
    }
    if let Some((label, output)) = &report.unfinished {
        println!("\n--- guest::{label} never ended; its output ---\n{output}");
    }
}

/// libtest's own lines around a test's output.
fn is_frame(line: &str) -> bool {
    let l = line.trim();
    l.is_empty()
        || l.starts_with("running ")
        || l.starts_with("test result:")
        || l == "ok"
        || (l.starts_with("test ") && (l.ends_with(" ... ok") || l.contains(" ... ok (")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_text_poke_lockup_is_the_emulators() {
        let lockup = "watchdog: BUG: soft lockup - CPU#0 stuck for 22s!\n text_poke_bp_batch+0xb7/0x300\n text_poke_bp+0x4b/0x70\nKernel panic - not syncing: softlockup: hung tasks";
        assert!(emulator_lockup(lockup));
        // A lock-up anywhere else, a panic, an oops: the suite fails.
        assert!(!emulator_lockup(
            "Kernel panic - not syncing: softlockup: hung tasks\n bpf_prog_run+0x10"
        ));
        assert!(!emulator_lockup(
            "Kernel panic - not syncing: Out of memory\n text_poke_bp+0x4b/0x70"
        ));
    }
}
