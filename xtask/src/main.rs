//! `cargo xtask`: the project's automation.
//!
//! - `build-ebpf`: provisions the BPF toolchain if needed and builds `collector-ebpf`.
//! - `test`: everything CI runs: provisioning, the eBPF build, fmt, clippy, every test, and
//!   every fuzz target for a few seconds.
//! - `bench ebpf|collector|receiver|sizing`: benchmarks that print figures and ratios.
//! - `fuzz [--seconds N] [TARGET]`: the cargo-fuzz targets of `fuzz/`, each for N seconds.
//! - `dist [--check]`: release archives of collector and receiver (static, x86_64 and
//!   aarch64) in target/dist/, see docs/releases.md.
//! - `vm [FILTER...]`: the kernel- and layout-dependent accuracy tests in a QEMU guest of
//!   Debian's cloud kernel (6.1) with pure cgroup v2.

mod bench_collector;
mod demo;
mod demo_jobs;
mod dist;
mod fuzz;
mod toolchain;
mod util;
mod vm;

use std::{path::PathBuf, time::Instant};

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::{
    toolchain::Route,
    util::{run, step},
};

#[derive(Parser)]
#[command(about = "Project automation for the CI resource collector", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the eBPF object (target/ebpf/bpfel-unknown-none/release/collector-ebpf),
    /// provisioning the toolchain first if it is missing.
    BuildEbpf {
        /// How to get a compiler for bpfel-unknown-none: auto picks rustup nightly with
        /// rust-src if present, else Debian's rustc-web with its prebuilt BPF core.
        #[arg(long, value_enum, default_value = "auto")]
        route: Route,
    },
    /// Provision everything, build the eBPF object, then run fmt --check, clippy -D warnings,
    /// every test, and every fuzz target for a few seconds. This is what CI runs (.ci/run).
    Test {
        #[arg(long, value_enum, default_value = "auto")]
        route: Route,
    },
    /// The main job, end to end: a receiver on a local redb file, a push token, the collector
    /// over a sample workload in several cgroups, the stored summary queried and printed,
    /// then a few runs of three more jobs, and the receiver's web page to open (served
    /// until Ctrl-C).
    Demo {
        /// How long the workload runs.
        #[arg(long, default_value_t = 15)]
        seconds: u64,
        /// Do not keep the receiver serving the web page at the end (for scripts and CI).
        #[arg(long)]
        no_wait: bool,
    },
    /// Run the accuracy tests that depend on the kernel or the cgroup layout (eBPF against
    /// cpu.stat and schedstat, memory.peak, cpu.max throttling, PSI, io.stat, `collector run`,
    /// sidecar and node mode) inside a QEMU guest of Debian's current cloud kernel (6.1 LTS)
    /// with pure cgroup v2, as most CI nodes are. The kernel and the guest are built from
    /// Debian packages into target/vm/; the report goes to target/vm/report.json.
    Vm {
        /// Run only the guest tests whose label (`target::test`) contains one of these.
        filters: Vec<String>,
        /// Also the slower guest tests CI leaves out (they test nothing kernel-specific
        /// that the others do not).
        #[arg(long)]
        all: bool,
        /// Limit for the whole guest, boot to power-off.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        /// Guest memory, MiB.
        #[arg(long, default_value_t = 3072)]
        memory: u32,
        /// Guest CPUs (the tests assume 2, like this project's CI machine).
        #[arg(long, default_value_t = 2)]
        cpus: u32,
    },
    /// Release archives of collector and receiver, statically linked (musl) with the eBPF
    /// object embedded, for x86_64 and aarch64: target/dist/<binary>-<version>-<arch>-linux-musl.tar.gz
    /// and a .sha256 each. Fails when an archive is over its size budget.
    Dist {
        /// Also check the binaries (static, --version in an empty chroot and under qemu, a
        /// workload measured with eBPF), as `cargo xtask test` does.
        #[arg(long)]
        check: bool,
    },
    /// Run a benchmark; it prints its figures and targets.
    Bench {
        #[command(subcommand)]
        which: Bench,
    },
    /// Run the cargo-fuzz targets of fuzz/ (installing cargo-fuzz if missing) for a bounded
    /// time each, one after the other; a crash, hang or out-of-memory fails the command.
    Fuzz {
        /// How long each target runs (libFuzzer's -max_total_time).
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// One target (`cargo fuzz list` names them); every target when left out.
        target: Option<String>,
        /// More libFuzzer flags, after `--` (e.g. `-- -max_len=512`).
        #[arg(last = true)]
        libfuzzer_args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// Cost per sched_switch (bpf_stats) of the collector's program and of an empty one, and
    /// a pinned pipe ping-pong attached vs detached.
    Ebpf {
        /// Ping-pong round trips per run.
        #[arg(long, default_value_t = 200_000)]
        round_trips: u64,
        /// Alternating attached/detached run pairs.
        #[arg(long, default_value_t = 7)]
        pairs: u32,
    },
    /// The collector's own CPU and RSS with 1,000 idle processes, at default intervals and
    /// with ten times as many samples.
    Collector {
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        #[arg(long, default_value_t = 1000)]
        idle: usize,
    },
    /// Durable pushes/s at 1, 16 and 64 clients against a one-commit-per-request baseline
    /// and on PostgreSQL (a throw-away cluster), query and sizing latency on a job with
    /// 10,000 runs on both, and the fleet view at 1,000 jobs. Extra arguments go to
    /// receiver-bench.
    Receiver {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Bytes on disk per run after 100,000 runs of a realistic mix, redb and PostgreSQL (a
    /// throw-away cluster) side by side, plain and compressed, with pushes, query and
    /// sizing latency beside them; the job list at 10,000 jobs and 1,000,000 runs. Extra
    /// arguments go to `receiver-bench --storage`.
    Storage {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The right-sizing backtest: ours against CI Sizer, krr and a VPA-like recommender on
    /// replayed job histories (synthetic families and recorded ones). Extra arguments go to
    /// the backtest (`--small`, `--seed N`).
    Sizing {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let started = Instant::now();
    let result = match cli.command {
        Cmd::BuildEbpf { route } => build_ebpf(route).map(|_| ()),
        Cmd::Test { route } => test(route),
        Cmd::Bench { which } => bench(which),
        Cmd::Dist { check } => build_ebpf(Route::Auto).and_then(|o| dist::run(&o, check)),
        Cmd::Demo { seconds, no_wait } => {
            build_ebpf(Route::Auto).and_then(|o| demo::run(&o, seconds, !no_wait))
        }
        Cmd::Vm {
            filters,
            all,
            timeout,
            memory,
            cpus,
        } => build_ebpf(Route::Auto).and_then(|object| {
            vm::run(
                &object,
                &vm::Options {
                    filters,
                    all,
                    timeout,
                    memory_mib: memory,
                    cpus,
                },
            )
            .map(drop)
        }),
        Cmd::Fuzz {
            seconds,
            target,
            libfuzzer_args,
        } => fuzz::run(seconds, target.as_deref(), &libfuzzer_args),
    };
    match result {
        Ok(()) => step(format!("done in {:.1?}", started.elapsed())),
        Err(e) => {
            if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                eprintln!("\x1b[1;31m[xtask] error:\x1b[0m {e:#}");
            } else {
                eprintln!("[xtask] error: {e:#}");
            }
            std::process::exit(1);
        }
    }
}

/// Path of the built object; the collector's build.rs embeds it from there.
fn ebpf_object() -> PathBuf {
    util::root().join("target/ebpf/bpfel-unknown-none/release/collector-ebpf")
}

fn build_ebpf(route: Route) -> Result<PathBuf> {
    let tc = toolchain::ensure(route)?;
    step(format!(
        "eBPF route: {:?} (rustc {}, LLVM {}), bpf-linker {} at {}",
        tc.route,
        tc.rustc_release,
        tc.llvm_major,
        toolchain::BPF_LINKER_VERSION,
        tc.bpf_linker.display()
    ));
    run(tc.cargo_build().args([
        "-p",
        "collector-ebpf",
        "--target",
        "bpfel-unknown-none",
        "--release",
        "--target-dir",
        "target/ebpf",
    ]))?;
    let object = ebpf_object();
    let size = std::fs::metadata(&object)?.len();
    step(format!(
        "eBPF object: {} ({} KiB)",
        object.display(),
        size / 1024
    ));
    Ok(object)
}

/// Debian packages the tests use: curl (the end-to-end test follows the seed README's curl
/// commands), iproute2, prometheus (a real Prometheus and promtool for the live metrics),
/// python3-venv (the manifest validators run in a project-local virtualenv), podman with runc
/// and busybox-static (real containers as jobs in the node test; crun refuses hybrid cgroups),
/// chromium (the Markdown report's Mermaid charts are rendered in it, headless) and
/// chromium-driver (the web page's tests drive it over WebDriver), postgresql (the receiver's
/// PostgreSQL backend is tested against a real server).
const TEST_DEBS: &[&str] = &[
    "curl",
    "iproute2",
    "prometheus",
    "python3-venv",
    "podman",
    "runc",
    "busybox-static",
    "chromium",
    "chromium-driver",
    "postgresql",
];

/// The receiver's black-box test files that run against both backends (the others test
/// one backend's own behaviour: redb's full disk and crash recovery, PostgreSQL's replicas
/// and outages in `postgres.rs`).
const POSTGRES_SUITES: &[&str] = &["http", "limits", "hardening", "web"];

fn test(route: Route) -> Result<()> {
    util::ensure_debs(TEST_DEBS)?;
    util::ensure_mermaid()?;
    let object = build_ebpf(route)?;
    step("cargo fmt --check");
    run(util::cargo().args(["fmt", "--all", "--check"]))?;
    step("cargo clippy --workspace --all-targets -- -D warnings");
    run(util::cargo()
        .args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])
        .env("COLLECTOR_EBPF_OBJECT", &object))?;
    step("validating the Kubernetes manifests and the observability rig");
    run(std::process::Command::new("bash")
        .arg(util::root().join("deploy/validate.sh"))
        .current_dir(util::root()))?;
    run(std::process::Command::new("bash")
        .arg(util::root().join("deploy/observability/validate.sh"))
        .current_dir(util::root()))?;
    // The cross-binary tests run the workspace's own binaries.
    step("cargo build --bins (the binaries the integration tests run)");
    run(util::cargo()
        .args(["build", "-p", "collector", "-p", "receiver", "--bins"])
        .env("COLLECTOR_EBPF_OBJECT", &object))?;
    step("cargo test (every test, eBPF ones included)");
    let mut totals = util::run_counting_tests(
        util::cargo()
            .args(["test", "--workspace", "--exclude", "collector-ebpf"])
            .env("COLLECTOR_EBPF_OBJECT", &object),
    )?;
    step("the release archives (cargo xtask dist) and their checks");
    totals.add(&dist::check(&dist::build(&object)?)?);
    step("the receiver's black-box suites again, on PostgreSQL (a throw-away cluster)");
    totals.add(&util::run_counting_tests(
        util::cargo()
            .args(["test", "-p", "receiver"])
            .args(POSTGRES_SUITES.iter().flat_map(|t| ["--test", t]))
            .env("RECEIVER_TEST_BACKEND", "postgres"),
    )?);
    step(
        "the kernel- and layout-dependent tests again, in a QEMU guest of Debian's 6.1 cloud kernel with pure cgroup v2",
    );
    totals.add(&vm::run(
        &object,
        &vm::Options {
            filters: Vec::new(),
            all: false,
            timeout: std::time::Duration::from_secs(600),
            memory_mib: 3072,
            cpus: 2,
        },
    )?);
    step("the right-sizing backtest, small set (the full table: cargo xtask bench sizing)");
    run(util::cargo().args(["run", "-p", "backtest", "--", "--small"]))?;
    step(format!(
        "fuzzing: every target of fuzz/ for {} s",
        fuzz::TEST_SECONDS
    ));
    fuzz::run(fuzz::TEST_SECONDS, None, &[])?;
    // One closing line for the whole run (cargo's own last line is often a doc-test "0 passed").
    println!(
        "\n{} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    anyhow::ensure!(totals.failed == 0, "{} tests failed", totals.failed);
    anyhow::ensure!(totals.passed > 0, "no test ran");
    Ok(())
}

fn bench(which: Bench) -> Result<()> {
    match which {
        Bench::Ebpf { round_trips, pairs } => {
            let object = build_ebpf(Route::Auto)?;
            run(util::cargo()
                .args([
                    "run",
                    "--release",
                    "-p",
                    "collector",
                    "--example",
                    "ebpf_bench",
                    "--",
                ])
                .args([
                    "--round-trips",
                    &round_trips.to_string(),
                    "--pairs",
                    &pairs.to_string(),
                ])
                .env("COLLECTOR_EBPF_OBJECT", &object))
        }
        Bench::Collector { seconds, idle } => {
            let object = build_ebpf(Route::Auto)?;
            bench_collector::run(seconds, idle, &object)
        }
        Bench::Receiver { args } => receiver_bench(&["--"], args),
        Bench::Storage { args } => receiver_bench(&["--", "--storage"], args),
        Bench::Sizing { args } => run(util::cargo()
            .args(["run", "--release", "-p", "backtest", "--"])
            .args(args)),
    }
}

/// `receiver-bench` (release) with `first` then `args`, and a throw-away PostgreSQL cluster
/// unless one is given.
fn receiver_bench(first: &[&str], args: Vec<String>) -> Result<()> {
    // redb and PostgreSQL side by side: a throw-away cluster unless one is given.
    util::ensure_debs(&["postgresql"])?;
    let given = args.iter().any(|a| a.starts_with("--postgres"))
        || std::env::var_os("RECEIVER_BENCH_POSTGRES").is_some();
    let cluster = if given {
        None
    } else {
        step("starting a throw-away PostgreSQL cluster for the benchmark");
        Some(testkit::postgres::Cluster::start().map_err(anyhow::Error::msg)?)
    };
    let mut cmd = util::cargo();
    cmd.args([
        "run",
        "--release",
        "-p",
        "receiver",
        "--bin",
        "receiver-bench",
    ])
    .args(first)
    .args(args);
    if let Some(c) = &cluster {
        cmd.arg(format!("--postgres={}", c.url("postgres")));
    }
    run(&mut cmd)
}
