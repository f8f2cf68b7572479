//! `cargo xtask dist`: release archives of `collector` and `receiver`, statically linked
//! against musl, for x86_64 and (cross-built) aarch64, the collector with its eBPF object.
//!
//! - Each binary is built with the `dist` profile (release without debug info, stripped, fat
//!   LTO, one codegen unit) for `<arch>-unknown-linux-musl`, and packed alone into
//!   `target/dist/<binary>-<version>-<arch>-linux-musl.tar.gz`, with a `.sha256` file next to
//!   it in `sha256sum` format. The archives are reproducible: fixed owner, mode and mtime (the
//!   commit's time), `gzip -n`.
//! - The rustup targets are added when missing. x86_64 links with the host's `cc`, aarch64
//!   with rustup's `rust-lld`, both against the musl libc that rustup ships with the
//!   target. Where a dependency compiles C (`cc` in `cargo tree` of the binaries for the
//!   target), its C compiler is Debian's `musl-gcc` for x86_64 and the aarch64 cross `gcc`
//!   ([`Arch`]).
//! - The version line names the commit: `COLLECTOR_BUILD_COMMIT` is set from git (with
//!   `-dirty` when tracked files differ from it).
//! - Each archive has a size budget ([`BUDGETS`], stated in docs/releases.md); a larger one
//!   fails the command.
//!
//! [`check`] tests the archives' binaries (run by `cargo xtask test` and `dist --check`):
//! `file` says each is statically linked for its architecture; the x86_64 ones print their
//! version in an empty chroot (no libc, nothing but the binary); the aarch64 ones print it
//! under `qemu-aarch64-static`; the x86_64 collector measures a busy loop with eBPF. Under
//! `CI=true` a check that cannot run here fails.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context, Result, bail};

use crate::util::{self, TestTotals, step};

/// The binaries that are released.
pub const BINARIES: [&str; 2] = ["collector", "receiver"];

/// A release architecture.
#[derive(Debug)]
pub struct Arch {
    /// As in the archive's name: `x86_64`, `aarch64`.
    pub name: &'static str,
    /// The Rust target.
    pub triple: &'static str,
    /// How `file` names the machine.
    pub file_machine: &'static str,
    /// The C compiler (and the Debian packages it needs) for dependencies that compile C,
    /// as zstd's bindings do. aarch64 has no musl cross compiler in Debian: the glibc one
    /// (with its headers, only recommended by the package) builds such freestanding
    /// libraries (memory and string functions, no I/O) for a musl link.
    pub c_compiler: (&'static str, &'static [&'static str]),
    /// Its archiver.
    pub c_archiver: &'static str,
}

pub const ARCHES: [Arch; 2] = [
    Arch {
        name: "x86_64",
        triple: "x86_64-unknown-linux-musl",
        file_machine: "x86-64",
        c_compiler: ("musl-gcc", &["musl-tools"]),
        c_archiver: "ar",
    },
    Arch {
        name: "aarch64",
        triple: "aarch64-unknown-linux-musl",
        file_machine: "ARM aarch64",
        c_compiler: (
            "aarch64-linux-gnu-gcc",
            &["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"],
        ),
        c_archiver: "aarch64-linux-gnu-ar",
    },
];

/// Largest archive allowed, bytes, per (binary, arch): docs/releases.md states the same.
pub const BUDGETS: [(&str, &str, u64); 4] = [
    ("collector", "x86_64", 3 * MIB),
    ("collector", "aarch64", 3 * MIB),
    ("receiver", "x86_64", 3 * MIB),
    ("receiver", "aarch64", 3 * MIB),
];

const MIB: u64 = 1024 * 1024;

/// The version the archives are named after (every crate has the workspace's).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// One built binary and its archive.
#[derive(Debug)]
pub struct Artifact {
    pub binary: &'static str,
    pub arch: &'static Arch,
    /// The stripped executable in cargo's target directory.
    pub executable: PathBuf,
    pub archive: PathBuf,
}

/// `collector-0.1.0-x86_64-linux-musl.tar.gz`.
pub fn archive_name(binary: &str, version: &str, arch: &str) -> String {
    format!("{binary}-{version}-{arch}-linux-musl.tar.gz")
}

/// The budget of one archive.
pub fn budget(binary: &str, arch: &str) -> u64 {
    BUDGETS
        .iter()
        .find(|(b, a, _)| *b == binary && *a == arch)
        .map(|(_, _, bytes)| *bytes)
        .unwrap_or(0)
}

/// Where the archives go.
pub fn dist_dir() -> PathBuf {
    util::root().join("target/dist")
}

/// Cargo's target directory: `CARGO_TARGET_DIR` (relative to the workspace) or `target/`.
fn cargo_target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => util::root().join(dir),
        _ => util::root().join("target"),
    }
}

/// The commit the tree is at, `-dirty` when tracked files differ from it; `None` outside git.
fn git_commit() -> Option<String> {
    let git =
        |args: &[&str]| util::output(Command::new("git").args(args).current_dir(util::root()));
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    })
}

/// Seconds since the epoch of the HEAD commit (the archives' mtime), 0 outside git.
fn commit_time() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .or_else(|| {
            util::output(
                Command::new("git")
                    .args(["log", "-1", "--format=%ct"])
                    .current_dir(util::root()),
            )
        })
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// Whether a dependency compiles C: the `cc` crate in `cargo tree --prefix none` output of
/// what the archives build (a test-only or other-platform dependency does not count).
pub fn compiles_c(tree: &str) -> bool {
    tree.lines().any(|l| l.starts_with("cc v"))
}

/// The packages the archives' binaries build for `triple`, with their build dependencies.
fn dependency_tree(triple: &str) -> Result<String> {
    let mut cmd = util::cargo();
    cmd.args([
        "tree",
        "--prefix",
        "none",
        "-e",
        "normal,build",
        "--target",
        triple,
    ])
    .args(BINARIES.iter().flat_map(|b| ["-p", b]));
    let what = util::describe(&cmd);
    util::output(&mut cmd).with_context(|| format!("running {what}"))
}

/// Adds the rustup targets that are missing (a quick look at the sysroot when present).
fn ensure_targets() -> Result<()> {
    let sysroot = util::output(Command::new("rustc").args(["--print", "sysroot"]))
        .context("running `rustc --print sysroot`")?;
    let missing: Vec<&str> = ARCHES
        .iter()
        .map(|a| a.triple)
        .filter(|t| {
            !Path::new(&sysroot)
                .join("lib/rustlib")
                .join(t)
                .join("lib/self-contained/libc.a")
                .is_file()
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if testkit::which("rustup").is_none() {
        bail!(
            "the Rust targets {} are missing and there is no rustup to add them: install them \
             with your toolchain's means",
            missing.join(", ")
        );
    }
    step(format!(
        "rustup target add {} (output in target/xtask-logs/rustup-target.log)",
        missing.join(" ")
    ));
    util::run_logged(
        Command::new("rustup")
            .args(["target", "add"])
            .args(&missing)
            .current_dir(util::root()),
        "rustup-target",
    )
}

/// Builds both binaries for both architectures and packs them, within their budgets.
pub fn build(object: &Path) -> Result<Vec<Artifact>> {
    let started = Instant::now();
    let mut needs_c = Vec::new();
    for arch in &ARCHES {
        if compiles_c(&dependency_tree(arch.triple)?) {
            util::ensure_debs(arch.c_compiler.1)?;
            needs_c.push(arch.triple);
        }
    }
    ensure_targets()?;
    let commit = git_commit();
    step(format!(
        "building {} for {} (profile dist, commit {})",
        BINARIES.join(" and "),
        ARCHES.map(|a| a.triple).join(" and "),
        commit.as_deref().unwrap_or("unknown")
    ));
    for arch in &ARCHES {
        let mut cmd = util::cargo();
        cmd.args(["build", "--profile", "dist", "--target", arch.triple])
            .args(BINARIES.iter().flat_map(|b| ["-p", b, "--bin", b]))
            .env("COLLECTOR_EBPF_OBJECT", object);
        if let Some(c) = &commit {
            cmd.env("COLLECTOR_BUILD_COMMIT", c);
        }
        if needs_c.contains(&arch.triple) {
            let triple = arch.triple.replace('-', "_");
            cmd.env(format!("CC_{triple}"), arch.c_compiler.0)
                .env(format!("AR_{triple}"), arch.c_archiver);
        }
        if arch.name != "x86_64" {
            // rustc finds rustup's rust-lld in its own sysroot; the musl target brings its
            // C runtime and libc, so nothing else is needed to link.
            let var = format!(
                "CARGO_TARGET_{}_LINKER",
                arch.triple.to_uppercase().replace('-', "_")
            );
            cmd.env(var, "rust-lld");
        }
        util::run(&mut cmd)?;
    }
    let dir = dist_dir();
    std::fs::create_dir_all(&dir)?;
    let mtime = commit_time();
    let mut artifacts = Vec::new();
    for arch in &ARCHES {
        for binary in BINARIES {
            let executable = cargo_target_dir()
                .join(arch.triple)
                .join("dist")
                .join(binary);
            let archive = dir.join(archive_name(binary, VERSION, arch.name));
            pack(&executable, &archive, mtime)?;
            artifacts.push(Artifact {
                binary,
                arch,
                executable,
                archive,
            });
        }
    }
    let mut table = String::new();
    let mut over = Vec::new();
    for a in &artifacts {
        let bin = std::fs::metadata(&a.executable)?.len();
        let arc = std::fs::metadata(&a.archive)?.len();
        let limit = budget(a.binary, a.arch.name);
        let _ = writeln!(
            table,
            "  {:<44} {:>6} KiB (binary {:>6} KiB, budget {} KiB)",
            a.archive.file_name().unwrap().to_string_lossy(),
            arc / 1024,
            bin / 1024,
            limit / 1024
        );
        if arc > limit {
            over.push(format!(
                "{} is {} KiB, over its budget of {} KiB",
                a.archive.display(),
                arc / 1024,
                limit / 1024
            ));
        }
    }
    step(format!(
        "archives in {} ({:.0?}):\n{}",
        dir.display(),
        started.elapsed(),
        table.trim_end()
    ));
    if !over.is_empty() {
        bail!(
            "{} (budgets in xtask/src/dist.rs and docs/releases.md)",
            over.join("; ")
        );
    }
    Ok(artifacts)
}

/// Packs `executable` alone into `archive` (tar.gz) and writes `<archive>.sha256`, unless both
/// are newer than the executable.
fn pack(executable: &Path, archive: &Path, mtime: u64) -> Result<()> {
    let sums = PathBuf::from(format!("{}.sha256", archive.display()));
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let built =
        modified(executable).with_context(|| format!("{} was not built", executable.display()))?;
    if modified(archive).is_some_and(|t| t >= built) && modified(&sums).is_some_and(|t| t >= built)
    {
        return Ok(());
    }
    let dir = executable.parent().unwrap();
    let name = executable.file_name().unwrap();
    let partial = archive.with_extension("gz.partial");
    util::run(
        Command::new("tar")
            .args([
                "--sort=name",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "--mode=0755",
            ])
            .arg(format!("--mtime=@{mtime}"))
            .args(["--use-compress-program", "gzip -9n", "-cf"])
            .arg(&partial)
            .arg("-C")
            .arg(dir)
            .arg(name),
    )?;
    std::fs::rename(&partial, archive)?;
    let file_name = archive.file_name().unwrap();
    let line = util::output(
        Command::new("sha256sum")
            .arg(file_name)
            .current_dir(archive.parent().unwrap()),
    )
    .context("running sha256sum")?;
    std::fs::write(&sums, format!("{line}\n"))?;
    Ok(())
}

/// What `file -b` says of a binary: statically linked for `machine`?
pub fn file_says_static(file: &str, machine: &str) -> Result<(), String> {
    if !file.starts_with("ELF 64-bit LSB") {
        return Err(format!("not a 64-bit ELF: {file}"));
    }
    if !file.contains(machine) {
        return Err(format!("not for {machine}: {file}"));
    }
    if file.contains("dynamically linked") || file.contains("interpreter") {
        return Err(format!("dynamically linked: {file}"));
    }
    if !(file.contains("statically linked") || file.contains("static-pie linked")) {
        return Err(format!("not said to be statically linked: {file}"));
    }
    Ok(())
}

/// The version line a release binary prints: `collector 0.1.0 (commit abc, eBPF embedded)`,
/// `receiver 0.1.0 (commit abc)`; `commit` is what the build was given (`None`: `unknown`).
pub fn expected_version(binary: &str, version: &str, commit: Option<&str>) -> String {
    let commit = commit.unwrap_or("unknown");
    if binary == "collector" {
        format!("{binary} {version} (commit {commit}, eBPF embedded)")
    } else {
        format!("{binary} {version} (commit {commit})")
    }
}

/// Judges `collector run --json` over the busy loop: CPU from eBPF, and the command's CPU
/// seconds within 10 % (or 50 ms) of what the shell itself counted.
pub fn judge_workload(summary: &serde_json::Value, truth: f64) -> Result<String, String> {
    let source = summary["cpu_source"].as_str().unwrap_or("?");
    let container = &summary["containers"][0];
    let container_source = container["cpu_source"].as_str().unwrap_or("?");
    if source != "ebpf" || container_source != "ebpf" {
        return Err(format!(
            "cpu_source is {source} (the command's: {container_source}), not ebpf"
        ));
    }
    let measured = container["cpu_seconds"]
        .as_f64()
        .ok_or("no containers[0].cpu_seconds in the summary")?;
    if truth < 0.2 {
        return Err(format!(
            "the busy loop used only {truth:.3} s of CPU (times): too little to judge"
        ));
    }
    if (measured - truth).abs() > (truth * 0.10).max(0.05) {
        return Err(format!(
            "collector says {measured:.3} s of CPU, the shell's times {truth:.3} s"
        ));
    }
    Ok(format!(
        "{measured:.3} s of CPU from eBPF, times says {truth:.3} s"
    ))
}

/// How one check went.
enum Outcome {
    Pass(String),
    Fail(String),
    /// It cannot run on this machine (a failure under `CI=true`).
    CannotRun(String),
}

/// How a check counts in the totals.
#[derive(Debug, PartialEq)]
enum Tally {
    Passed,
    Failed(String),
    Skipped,
}

/// The line printed for a check, and how it counts: one that cannot run here is skipped, but
/// fails when requirements are `enforced` (`CI=true`).
fn verdict(name: &str, outcome: Outcome, enforced: bool) -> (String, Tally) {
    match outcome {
        Outcome::Pass(detail) => (
            format!("dist check {name} ... ok ({detail})"),
            Tally::Passed,
        ),
        Outcome::CannotRun(why) if !enforced => (
            format!("dist check {name} ... SKIP ({why})"),
            Tally::Skipped,
        ),
        Outcome::CannotRun(why) => {
            let why = format!("cannot run here, and CI=true: {why}");
            (
                format!("dist check {name} ... FAILED: {why}"),
                Tally::Failed(why),
            )
        }
        Outcome::Fail(why) => (
            format!("dist check {name} ... FAILED: {why}"),
            Tally::Failed(why),
        ),
    }
}

/// The busy loop the x86_64 collector measures: about a second of one core in `sh`, then the
/// shell's `times` on stderr as the ground truth.
const WORKLOAD: &str = "i=0; while [ $i -lt 1000000 ]; do i=$((i+1)); done; times >&2";

/// Runs the checks over built artifacts; one test each in the totals.
pub fn check(artifacts: &[Artifact]) -> Result<TestTotals> {
    let enforced = testkit::requirements_enforced();
    let commit = git_commit();
    let mut totals = TestTotals::default();
    let mut failures = Vec::new();
    let mut record = |name: String, outcome: Outcome| {
        let (line, tally) = verdict(&name, outcome, enforced);
        println!("{line}");
        match tally {
            Tally::Passed => totals.passed += 1,
            Tally::Skipped => totals.ignored += 1,
            Tally::Failed(why) => {
                totals.failed += 1;
                failures.push(format!("{name}: {why}"));
            }
        }
    };
    let root = testkit::is_root();
    if testkit::which("file").is_none() && root {
        util::ensure_debs(&["file"])?;
    }
    if testkit::which("qemu-aarch64-static").is_none() && root && util::is_debian_family() {
        util::ensure_debs(&["qemu-user-static"])?;
    }
    for a in artifacts {
        let label = format!("{}-{}", a.binary, a.arch.name);
        let expected = expected_version(a.binary, VERSION, commit.as_deref());
        record(format!("{label} is statically linked"), static_check(a));
        if a.arch.name == "x86_64" {
            record(
                format!("{label} --version in an empty chroot"),
                chroot_check(a, &expected, root),
            );
        } else {
            record(
                format!("{label} --version under qemu-aarch64-static"),
                qemu_check(a, &expected),
            );
        }
        if a.arch.name == "x86_64" && a.binary == "collector" {
            record(
                format!("{label} measures a busy loop with eBPF"),
                workload_check(a, root),
            );
        }
    }
    println!(
        "dist checks: {} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    for f in &failures {
        eprintln!("  {f}");
    }
    Ok(totals)
}

fn static_check(a: &Artifact) -> Outcome {
    if testkit::which("file").is_none() {
        return Outcome::CannotRun("no `file` command (apt-get install file)".into());
    }
    match util::output(Command::new("file").arg("-b").arg(&a.executable)) {
        None => Outcome::Fail(format!("`file {}` failed", a.executable.display())),
        Some(out) => match file_says_static(&out, a.arch.file_machine) {
            Ok(()) => Outcome::Pass(out),
            Err(e) => Outcome::Fail(e),
        },
    }
}

/// Compares a `--version` run's output with the expected line.
fn version_outcome(out: std::io::Result<std::process::Output>, expected: &str) -> Outcome {
    match out {
        Err(e) => Outcome::Fail(format!("could not start it: {e}")),
        Ok(o) if !o.status.success() => Outcome::Fail(format!(
            "{}: {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Ok(o) => {
            let line = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            if line == expected {
                Outcome::Pass(line)
            } else {
                Outcome::Fail(format!("printed {line:?}, expected {expected:?}"))
            }
        }
    }
}

fn chroot_check(a: &Artifact, expected: &str, root: bool) -> Outcome {
    if !root {
        return Outcome::CannotRun("chroot needs root".into());
    }
    // Nothing but the binary: no libc, no loader, no /proc, no /etc.
    let dir = util::root().join(format!(
        "target/dist-check/chroot-{}-{}",
        a.binary, a.arch.name
    ));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::copy(&a.executable, dir.join(a.binary)).map(drop))
    {
        return Outcome::Fail(format!("preparing {}: {e}", dir.display()));
    }
    let Some(chroot) = testkit::which("chroot") else {
        return Outcome::CannotRun("no chroot command (coreutils)".into());
    };
    let out = Command::new(chroot)
        .arg(&dir)
        .arg(format!("/{}", a.binary))
        .arg("--version")
        .env_clear()
        .output();
    let outcome = version_outcome(out, expected);
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

fn qemu_check(a: &Artifact, expected: &str) -> Outcome {
    let Some(qemu) = testkit::which("qemu-aarch64-static") else {
        return Outcome::CannotRun(
            "no qemu-aarch64-static (apt-get install qemu-user-static, as root)".into(),
        );
    };
    version_outcome(
        Command::new(qemu)
            .arg(&a.executable)
            .arg("--version")
            .output(),
        expected,
    )
}

fn workload_check(a: &Artifact, root: bool) -> Outcome {
    if !root {
        return Outcome::CannotRun(
            "loading eBPF and creating the command's cgroup need root".into(),
        );
    }
    let out = match Command::new(&a.executable)
        .args(["run", "--json", "--", "sh", "-c", WORKLOAD])
        .output()
    {
        Ok(o) => o,
        Err(e) => return Outcome::Fail(format!("could not start it: {e}")),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Outcome::Fail(format!("{}: {}", out.status, stderr.trim()));
    }
    let summary: serde_json::Value = match serde_json::from_slice(&out.stdout) {
        Ok(v) => v,
        Err(e) => return Outcome::Fail(format!("its output is not a JSON summary: {e}")),
    };
    let Some(truth) = testkit::shell_times_seconds(&stderr) else {
        return Outcome::Fail(format!("no `times` output in: {stderr}"));
    };
    match judge_workload(&summary, truth) {
        Ok(detail) => Outcome::Pass(detail),
        Err(e) => Outcome::Fail(e),
    }
}

/// `cargo xtask dist [--check]`.
pub fn run(object: &Path, with_checks: bool) -> Result<()> {
    let artifacts = build(object)?;
    if with_checks {
        let totals = check(&artifacts)?;
        anyhow::ensure!(totals.failed == 0, "{} dist checks failed", totals.failed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_archives_after_binary_version_and_arch() {
        assert_eq!(
            archive_name("collector", "0.1.0", "aarch64"),
            "collector-0.1.0-aarch64-linux-musl.tar.gz"
        );
    }

    #[test]
    fn every_archive_has_a_budget() {
        for arch in &ARCHES {
            for binary in BINARIES {
                assert!(budget(binary, arch.name) > 0, "{binary} {}", arch.name);
            }
        }
        assert_eq!(budget("collector", "riscv64"), 0);
    }

    /// docs/releases.md states the budgets the code enforces.
    #[test]
    fn the_docs_state_the_budgets() {
        let doc = std::fs::read_to_string(util::root().join("docs/releases.md")).unwrap();
        for (binary, arch, bytes) in BUDGETS {
            let row = format!("| `{}` |", archive_name(binary, "<version>", arch));
            let line = doc
                .lines()
                .find(|l| l.starts_with(&row))
                .unwrap_or_else(|| panic!("no row {row} in docs/releases.md"));
            let mib = format!("{} MiB |", bytes / MIB);
            assert!(
                bytes % MIB == 0 && line.trim_end().ends_with(&mib),
                "{line:?} should end with the budget {mib:?}"
            );
        }
    }

    #[test]
    fn reads_file_output() {
        let x86 = "ELF 64-bit LSB executable, x86-64, version 1 (SYSV), statically linked, BuildID[sha1]=0f, stripped";
        let pie =
            "ELF 64-bit LSB pie executable, x86-64, version 1 (SYSV), static-pie linked, stripped";
        let arm =
            "ELF 64-bit LSB executable, ARM aarch64, version 1 (SYSV), statically linked, stripped";
        let dynamic = "ELF 64-bit LSB pie executable, x86-64, version 1 (SYSV), dynamically linked, interpreter /lib64/ld-linux-x86-64.so.2, for GNU/Linux 3.2.0, stripped";
        assert_eq!(file_says_static(x86, "x86-64"), Ok(()));
        assert_eq!(file_says_static(pie, "x86-64"), Ok(()));
        assert_eq!(file_says_static(arm, "ARM aarch64"), Ok(()));
        assert!(
            file_says_static(arm, "x86-64")
                .unwrap_err()
                .contains("not for")
        );
        assert!(
            file_says_static(dynamic, "x86-64")
                .unwrap_err()
                .contains("dynamically")
        );
        assert!(file_says_static("POSIX shell script, ASCII text", "x86-64").is_err());
    }

    #[test]
    fn expects_the_version_line() {
        assert_eq!(
            expected_version("collector", "0.1.0", Some("abc123def456")),
            "collector 0.1.0 (commit abc123def456, eBPF embedded)"
        );
        assert_eq!(
            expected_version("receiver", "0.1.0", None),
            "receiver 0.1.0 (commit unknown)"
        );
    }

    #[test]
    fn judges_the_workload_summary() {
        let summary = |source: &str, secs: f64| {
            serde_json::json!({
                "cpu_source": source,
                "containers": [{"name": "sh", "cpu_source": source, "cpu_seconds": secs}],
            })
        };
        assert!(judge_workload(&summary("ebpf", 1.02), 1.0).is_ok());
        assert!(
            judge_workload(&summary("ebpf", 0.85), 1.0)
                .unwrap_err()
                .contains("0.850")
        );
        assert!(
            judge_workload(&summary("cgroup", 1.0), 1.0)
                .unwrap_err()
                .contains("not ebpf")
        );
        assert!(
            judge_workload(&summary("ebpf", 0.01), 0.01)
                .unwrap_err()
                .contains("too little")
        );
        assert!(judge_workload(&serde_json::json!({}), 1.0).is_err());
    }

    #[test]
    fn a_check_that_cannot_run_fails_under_ci() {
        let cannot = || Outcome::CannotRun("needs root".into());
        let (line, tally) = verdict("x", cannot(), false);
        assert_eq!(tally, Tally::Skipped);
        assert_eq!(line, "dist check x ... SKIP (needs root)");
        let (line, tally) = verdict("x", cannot(), true);
        assert!(
            matches!(&tally, Tally::Failed(w) if w.contains("CI=true")),
            "{tally:?}"
        );
        assert!(line.contains("FAILED"), "{line}");
        assert_eq!(
            verdict("x", Outcome::Pass("d".into()), true).1,
            Tally::Passed
        );
        assert!(matches!(
            verdict("x", Outcome::Fail("bad".into()), false).1,
            Tally::Failed(_)
        ));
    }

    #[test]
    fn notices_c_dependencies() {
        assert!(compiles_c("zstd-sys v2.0.16\ncc v1.2.0\nlibc v0.2.177\n"));
        assert!(!compiles_c("ccc v1.0.0\nlibc v0.2.177\n"));
    }
}
