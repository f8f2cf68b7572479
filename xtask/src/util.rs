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

/// Runs a noisy set-up command (apt, a tool build) with its output in
/// `target/xtask-logs/<name>.log`, so the screen keeps one line per step; on failure the
/// error carries the log's last lines.
pub fn run_logged(cmd: &mut Command, name: &str) -> Result<()> {
    let line = describe(cmd);
    let dir = root().join("target/xtask-logs");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.log"));
    let log = std::fs::File::create(&path)?;
    let started = Instant::now();
    let status = cmd
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .with_context(|| format!("could not start `{line}`"))?;
    if !status.success() {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        bail!(
            "`{line}` failed ({status}) after {:.0?}; last lines of {}:\n{tail}",
            started.elapsed(),
            path.display()
        );
    }
    Ok(())
}

/// Test counts added up over every `test result:` line of a cargo test run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TestTotals {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl TestTotals {
    /// Adds another run's counts.
    pub fn add(&mut self, other: &TestTotals) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.ignored += other.ignored;
    }

    /// Adds one libtest summary line, e.g. `test result: ok. 12 passed; 0 failed; 1 ignored`.
    pub fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result:") else {
            return;
        };
        for part in rest.split(';') {
            let words: Vec<&str> = part.split_whitespace().collect();
            let Some(pos) = words
                .iter()
                .position(|w| ["passed", "failed", "ignored"].contains(w))
            else {
                continue;
            };
            let Some(n) = pos
                .checked_sub(1)
                .and_then(|i| words[i].parse::<u64>().ok())
            else {
                continue;
            };
            match words[pos] {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                _ => self.ignored += n,
            }
        }
    }
}

/// Runs `cargo test ...`, streaming its output, and adds up the test counts. Fails when
/// the command fails.
pub fn run_counting_tests(cmd: &mut Command) -> Result<TestTotals> {
    use std::io::{BufRead, BufReader};
    let line = describe(cmd);
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{line}`"))?;
    let mut totals = TestTotals::default();
    for l in BufReader::new(child.stdout.take().unwrap()).lines() {
        let l = l?;
        println!("{l}");
        totals.add_line(&l);
    }
    let status = child.wait()?;
    if !status.success() {
        bail!(
            "`{line}` failed ({status}): {} passed, {} failed",
            totals.passed,
            totals.failed
        );
    }
    Ok(totals)
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

pub fn is_debian_family() -> bool {
    Path::new("/etc/debian_version").exists() && testkit::which("apt-get").is_some()
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
        run_logged(
            Command::new("apt-get").args(["update", "-qq"]),
            "apt-update",
        )?;
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
    if !is_debian_family() || !testkit::is_root() {
        bail!(
            "missing packages: {}. Install them with `sudo apt-get install {}` (or your distribution's equivalents)",
            missing.join(", "),
            missing.join(" ")
        );
    }
    apt_update()?;
    step(format!(
        "apt-get install {} (output in target/xtask-logs/apt-install.log)",
        missing.join(" ")
    ));
    run_logged(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-install",
    )
}

/// Polls `probe` until it returns `Some`, pausing 20 ms between tries; an error naming
/// `what` once `limit` has passed.
pub fn wait_for<T>(
    limit: std::time::Duration,
    what: &str,
    mut probe: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let started = std::time::Instant::now();
    loop {
        if let Some(value) = probe() {
            return Ok(value);
        }
        if started.elapsed() > limit {
            anyhow::bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The Mermaid library the Markdown report's test renders charts with, in headless Chromium:
/// the npm package `mermaid`, installed into `target/mermaid/` (once; a second run only
/// checks the file). npm comes with the machine's Node.js, else from Debian.
pub fn ensure_mermaid() -> Result<()> {
    let dir = root().join("target/mermaid");
    if dir
        .join("node_modules/mermaid/dist/mermaid.min.js")
        .is_file()
    {
        return Ok(());
    }
    if testkit::which("npm").is_none() {
        ensure_debs(&["npm"])?;
    }
    std::fs::create_dir_all(&dir)?;
    step(
        "npm install mermaid@11 into target/mermaid (output in target/xtask-logs/npm-mermaid.log)",
    );
    run_logged(
        Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                &dir.to_string_lossy(),
                "mermaid@11",
            ])
            .current_dir(&dir),
        "npm-mermaid",
    )
}

/// The child a signal sent to this process is passed on to (0: none).
static FORWARD_TO: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// SIGINT and SIGTERM sent to this process alone (`kill -INT`, not Ctrl-C in a terminal,
/// which reaches the whole process group) are passed on to `child` as SIGTERM, and this
/// process lives on to reap it; Ctrl-C reaches the child directly and is not sent twice.
pub fn forward_signals_to(child: u32) {
    extern "C" fn forward(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler; reading it
        // and kill(2) are async-signal-safe.
        unsafe {
            let pid = FORWARD_TO.load(std::sync::atomic::Ordering::Relaxed);
            if pid > 0 && !info.is_null() && (*info).si_code == libc::SI_USER {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
    FORWARD_TO.store(child as i32, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: a zeroed sigaction with an SA_SIGINFO handler that only does the above.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = forward as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        for sig in [libc::SIGINT, libc::SIGTERM] {
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

/// Children of the demo die with this process, however it ends (even SIGKILL): their
/// `PR_SET_PDEATHSIG` is SIGTERM.
pub fn die_with_parent(cmd: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches only the child being started.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `kill -INT` to this process alone ends the child it forwards to, and this process
    /// lives on to reap it.
    #[test]
    fn a_signal_to_this_process_is_passed_on_to_the_child() {
        use std::os::unix::process::ExitStatusExt;
        let mut child = die_with_parent(&mut std::process::Command::new("sleep"))
            .arg("30")
            .spawn()
            .unwrap();
        forward_signals_to(child.id());
        // SAFETY: kill(2) to this very process; the handler above is installed.
        unsafe { libc::kill(libc::getpid(), libc::SIGINT) };
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
        FORWARD_TO.store(0, std::sync::atomic::Ordering::Relaxed);
    }

    #[test]
    fn adds_up_libtest_summaries() {
        let mut t = TestTotals::default();
        t.add_line("test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out");
        t.add_line("test result: FAILED. 3 passed; 2 failed; 0 ignored");
        t.add_line("random line with 5 passed");
        assert_eq!(
            t,
            TestTotals {
                passed: 15,
                failed: 2,
                ignored: 1
            }
        );
    }
}
