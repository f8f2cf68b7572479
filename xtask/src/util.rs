//! Running commands with clear progress and errors, and Debian package checks.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::Instant,
};

use anyhow::{Context, Result, bail};

/// Prints a progress line, prefixed so it stands out among cargo's output.
pub fn step(msg: impl AsRef<str>) {
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!("\x1b[1m[xtask]\x1b[0m {}", msg.as_ref());
    } else {
        eprintln!("[xtask] {}", msg.as_ref());
    }
}

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The cargo that runs us, so builds use the same toolchain.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// Runs a command to completion, streaming its output; fails with the command line on error.
pub fn run(cmd: &mut Command) -> Result<()> {
    let line = describe(cmd);
    let started = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status}) after {:.0?}", started.elapsed());
    }
    Ok(())
}

/// Runs a command and returns its trimmed stdout; `None` if it cannot run or fails.
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

pub fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

pub fn is_root() -> bool {
    output(Command::new("id").arg("-u")).as_deref() == Some("0")
}

pub fn is_debian_family() -> bool {
    Path::new("/etc/debian_version").exists() && which("apt-get").is_some()
}

pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

pub fn deb_installed(package: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|s| s.ends_with("installed") && !s.contains("not-installed"))
}

static APT_UPDATED: AtomicBool = AtomicBool::new(false);

/// `apt-get update`, at most once per xtask run.
pub fn apt_update() -> Result<()> {
    if !APT_UPDATED.swap(true, Ordering::SeqCst) {
        step("apt-get update");
        run(Command::new("apt-get").args(["update", "-qq"]))?;
    }
    Ok(())
}

/// Installs the Debian packages that are missing (fast no-op when all are present).
pub fn ensure_debs(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !deb_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_debian_family() || !is_root() {
        bail!(
            "missing packages: {}. Install them with `sudo apt-get install {}` (or your distribution's equivalents)",
            missing.join(", "),
            missing.join(" ")
        );
    }
    apt_update()?;
    step(format!("apt-get install {}", missing.join(" ")));
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}
