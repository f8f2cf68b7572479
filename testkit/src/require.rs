//! Tests that need root, eBPF or a tool this machine may lack.
//!
//! ```no_run
//! fn measures_a_real_cgroup() {
//!     if !testkit::require_root("creates cgroups") {
//!         return;
//!     }
//!     // ...
//! }
//! ```
//!
//! Under `CI=true` or `REQUIRE_EBPF=1` ([`requirements_enforced`]) a missing requirement
//! panics, so CI can never pass by skipping. Elsewhere the check prints
//! `SKIP <test>: <why> (<what is missing>)` to stderr and returns `false`, and the test
//! returns early.

use std::ffi::OsStr;
use std::fmt::Display;
use std::path::PathBuf;

/// Whether a missing requirement fails the test: `CI=true` or `REQUIRE_EBPF=1`.
pub fn requirements_enforced() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var("REQUIRE_EBPF").is_ok_and(|v| v == "1")
}

/// Whether the process runs as root (effective uid 0).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The first file named `program` in the directories of `$PATH`, then in `/usr/sbin`,
/// `/sbin`, `/usr/bin` and `/bin`: root's tools (`runc`, `apt-get`, ...) live in the sbin
/// directories, which a non-login shell's or a user's `PATH` may lack. `None` if there is none.
pub fn which(program: &str) -> Option<PathBuf> {
    which_in(&std::env::var_os("PATH").unwrap_or_default(), program)
}

/// [`which`] with `path` for `$PATH`.
fn which_in(path: &OsStr, program: &str) -> Option<PathBuf> {
    std::env::split_paths(path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// `true` if `check` is `Ok`. Otherwise the test cannot run here: panics when
/// [`requirements_enforced`], else prints `SKIP <test>: <why> (<problem>)` and returns
/// `false`. `why` says what the test needs it for.
#[track_caller]
pub fn require<E: Display>(why: &str, check: Result<(), E>) -> bool {
    let Err(problem) = check else {
        return true;
    };
    let test = crate::test_name();
    if requirements_enforced() {
        panic!(
            "{test} is required here (CI=true or REQUIRE_EBPF=1) but cannot run: {why} ({problem})"
        );
    }
    eprintln!("SKIP {test}: {why} ({problem})");
    false
}

/// `true` when running as root; otherwise as [`require`] (panic in CI, else `SKIP`).
#[track_caller]
pub fn require_root(why: &str) -> bool {
    require(why, if is_root() { Ok(()) } else { Err("needs root") })
}

/// `true` when running as root and `probe` (the test's own check that eBPF loads here, e.g.
/// loading the program once) succeeds; otherwise as [`require`].
#[track_caller]
pub fn require_ebpf<E: Display>(why: &str, probe: impl FnOnce() -> Result<(), E>) -> bool {
    if !is_root() {
        return require(why, Err("eBPF needs root"));
    }
    require(why, probe().map_err(|e| format!("eBPF does not load: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_searches_the_path_then_the_sbin_directories() {
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("a-tool");
        std::fs::write(&tool, "").unwrap();
        assert_eq!(which_in(dir.path().as_os_str(), "a-tool"), Some(tool));
        // Not on an empty PATH, but `sh` is in /bin (or /usr/bin) on every Linux.
        assert_eq!(which_in(OsStr::new(""), "a-tool"), None);
        assert!(which_in(OsStr::new(""), "sh").is_some_and(|p| p.ends_with("bin/sh")));
        // A directory of that name is not a program.
        assert_eq!(which_in(OsStr::new("/"), "tmp"), None);
    }

    #[test]
    fn met_requirements_pass() {
        assert!(require("nothing", Ok::<(), String>(())));
    }

    #[test]
    fn unmet_requirements_skip_or_fail() {
        let outcome = std::panic::catch_unwind(|| require("a unicorn", Err("none here")));
        match outcome {
            Ok(ran) => {
                assert!(!requirements_enforced());
                assert!(!ran);
            }
            Err(panic) => {
                assert!(requirements_enforced());
                let message = panic.downcast_ref::<String>().unwrap();
                assert!(
                    message.contains("unmet_requirements_skip_or_fail")
                        && message.contains("a unicorn (none here)"),
                    "{message}"
                );
            }
        }
    }
}
