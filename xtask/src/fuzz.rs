//! `cargo xtask fuzz`: the cargo-fuzz targets of `fuzz/`, each for a bounded time.
//!
//! - `cargo-fuzz` is installed once (`cargo install --locked`) into `$CARGO_HOME/bin` when
//!   it is missing; when present, nothing runs.
//! - The machine's toolchain is stable; cargo-fuzz needs nightly flags (`-Zsanitizer`), so
//!   every call sets `RUSTC_BOOTSTRAP=1`.
//! - The fuzz crate is not a workspace member and builds into `fuzz/target`.
//! - Each target starts from its committed seeds (`fuzz/corpus/<target>`, read only) and
//!   keeps what it finds in `fuzz/target/corpus/<target>`, so runs build on each other
//!   without touching the tree. A crash, a timeout or an out-of-memory fails the command;
//!   the input is in `fuzz/artifacts/<target>/`.
//! - A target's dictionary (`fuzz/dicts/<target>.dict`) and own libFuzzer flags
//!   (`fuzz/options/<target>.txt`) are passed when they exist.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context, Result, bail};

use crate::util::{self, step};

/// The cargo-fuzz that `cargo xtask` installs when none is present.
pub const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Seconds each target runs in `cargo xtask test`.
pub const TEST_SECONDS: u64 = 15;

/// A unit that runs longer than this is reported as a hang (libFuzzer's `-timeout`).
const UNIT_TIMEOUT_SECONDS: u64 = 30;

fn fuzz_dir() -> PathBuf {
    util::root().join("fuzz")
}

/// The path of a cargo-fuzz, installing it first if there is none.
pub fn ensure_cargo_fuzz() -> Result<PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let installed = cargo_home.join("bin/cargo-fuzz");
    if let Some(found) = testkit::which("cargo-fuzz") {
        return Ok(found);
    }
    if installed.is_file() {
        return Ok(installed);
    }
    step(format!(
        "installing cargo-fuzz {CARGO_FUZZ_VERSION} (about 1.5 min on 2 cores; output in target/xtask-logs/cargo-fuzz.log)"
    ));
    util::run_logged(
        util::cargo()
            .args(["install", "--locked"])
            .arg(format!("cargo-fuzz@{CARGO_FUZZ_VERSION}")),
        "cargo-fuzz",
    )
    .context("installing cargo-fuzz")?;
    Ok(installed)
}

/// `cargo fuzz <subcommand>` for the project's fuzz crate, on the stable toolchain.
fn cargo_fuzz(bin: &Path, subcommand: &str) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(["fuzz", subcommand])
        .current_dir(util::root())
        .env("RUSTC_BOOTSTRAP", "1")
        .env_remove("RUSTC_WRAPPER");
    cmd
}

/// The targets, as `cargo fuzz list` names them.
fn targets(bin: &Path) -> Result<Vec<String>> {
    let list = util::output(&mut cargo_fuzz(bin, "list")).context("running `cargo fuzz list`")?;
    Ok(list.lines().map(str::to_owned).collect())
}

/// The target's own libFuzzer flags: `fuzz/options/<target>.txt`, one a line (`#` starts a
/// comment line).
fn target_options(target: &str) -> Result<Vec<String>> {
    let path = fuzz_dir().join("options").join(format!("{target}.txt"));
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(Vec::new());
    };
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

/// Builds every target (one cargo run), then runs `only` (or every target) for `seconds`
/// each. Crashes fail the whole run, after every target has had its turn.
pub fn run(seconds: u64, only: Option<&str>, libfuzzer_args: &[String]) -> Result<()> {
    let bin = ensure_cargo_fuzz()?;
    let all = targets(&bin)?;
    let chosen: Vec<String> = match only {
        Some(t) if all.iter().any(|a| a == t) => vec![t.to_owned()],
        Some(t) => bail!("no fuzz target `{t}`; the targets are: {}", all.join(", ")),
        None => all,
    };
    let target_dir = fuzz_dir().join("target");
    step("cargo fuzz build (sanitizer build of fuzz/, into fuzz/target)");
    let started = Instant::now();
    util::run(
        cargo_fuzz(&bin, "build")
            .arg("--target-dir")
            .arg(&target_dir),
    )?;
    step(format!("fuzz targets built in {:.0?}", started.elapsed()));
    let mut failed = Vec::new();
    for target in &chosen {
        step(format!("fuzzing {target} for {seconds} s"));
        let scratch = target_dir.join("corpus").join(target);
        std::fs::create_dir_all(&scratch)?;
        let seeds = fuzz_dir().join("corpus").join(target);
        let mut cmd = cargo_fuzz(&bin, "run");
        cmd.arg("--target-dir")
            .arg(&target_dir)
            .arg(target)
            .arg(&scratch);
        if seeds.is_dir() {
            cmd.arg(&seeds);
        }
        cmd.arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-timeout={UNIT_TIMEOUT_SECONDS}"))
            .arg("-print_final_stats=1");
        let dict = fuzz_dir().join("dicts").join(format!("{target}.dict"));
        if dict.is_file() {
            cmd.arg(format!("-dict={}", dict.display()));
        }
        cmd.args(target_options(target)?);
        cmd.args(libfuzzer_args);
        if let Err(e) = util::run(&mut cmd) {
            step(format!("{target}: {e:#}"));
            failed.push(target.clone());
        }
    }
    if !failed.is_empty() {
        bail!(
            "fuzzing found a crash, a hang or an out-of-memory in: {} (inputs in fuzz/artifacts/<target>/; \
             reproduce with `RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <input>`)",
            failed.join(", ")
        );
    }
    Ok(())
}
