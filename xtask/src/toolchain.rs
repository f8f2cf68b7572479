//! Provisioning of what builds the eBPF object, without touching the system's rustup
//! toolchains.
//!
//! Two routes, picked automatically (or with `--route`):
//! - **rustup**: a rustup nightly that has `rust-src`: the standard aya route,
//!   `-Z build-std=core`.
//! - **debian**: Debian's `rustc-web` with the prebuilt BPF `core` (`libstd-rust-web-dev-bpf`),
//!   unpacked with `apt-get download` + `dpkg-deb -x` into `target/ebpf-toolchain/`; it is a
//!   stable compiler, so builds set `RUSTC_BOOTSTRAP=1`.
//!
//! Both need `bpf-linker` built against the LLVM major of that rustc (bitcode from a newer LLVM
//! cannot be read by an older one). An installed one is reused when it links that LLVM;
//! otherwise it is built once into `$CARGO_HOME/collector-ebpf-tools/`.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::util::{self, output, step};

pub const BPF_LINKER_VERSION: &str = "0.13.0";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Route {
    Auto,
    Rustup,
    Debian,
}

/// A ready toolchain: how to invoke cargo for the BPF target.
pub struct Toolchain {
    pub route: Route,
    /// `rustc -vV` release, e.g. "1.96.0".
    pub rustc_release: String,
    pub llvm_major: u32,
    pub bpf_linker: PathBuf,
    /// Debian route: the unpacked sysroot (for `RUSTC` and `LD_LIBRARY_PATH`).
    pub debian_root: Option<PathBuf>,
}

impl Toolchain {
    /// A `cargo build` command for the BPF target with everything set.
    pub fn cargo_build(&self) -> Command {
        let mut cmd = match self.route {
            Route::Rustup => {
                let mut c = Command::new("rustup");
                c.args(["run", "nightly", "cargo", "build", "-Z", "build-std=core"]);
                c
            }
            _ => {
                let root = self.debian_root.as_ref().unwrap();
                let mut c = util::cargo();
                c.arg("build")
                    .env("RUSTC", root.join("usr/bin/rustc"))
                    .env("LD_LIBRARY_PATH", root.join("usr/lib/x86_64-linux-gnu"))
                    .env("RUSTC_BOOTSTRAP", "1");
                c
            }
        };
        cmd.current_dir(util::root())
            .env_remove("RUSTC_WRAPPER")
            .env("CARGO_TARGET_BPFEL_UNKNOWN_NONE_LINKER", &self.bpf_linker)
            .env(
                "CARGO_TARGET_BPFEL_UNKNOWN_NONE_RUSTFLAGS",
                "-C debuginfo=2 -C link-arg=--btf",
            );
        cmd
    }
}

/// Makes sure a toolchain is present (provisioning what is missing) and returns it.
pub fn ensure(route: Route) -> Result<Toolchain> {
    let route = match route {
        Route::Auto if rustup_nightly_has_rust_src() => Route::Rustup,
        Route::Auto if util::is_debian_family() => Route::Debian,
        Route::Auto => bail!(
            "no way to build the eBPF object here. Either install a nightly with the standard \
             library sources (`rustup toolchain install nightly --component rust-src`), or use a \
             Debian-family machine (Debian 12+/Ubuntu) where xtask can fetch Debian's rustc-web \
             and its prebuilt BPF core. bpf-linker is then built automatically."
        ),
        r => r,
    };
    let (rustc_release, llvm_major, debian_root) = match route {
        Route::Rustup => {
            if !rustup_nightly_has_rust_src() {
                bail!("route rustup needs `rustup toolchain install nightly --component rust-src`");
            }
            let vv = output(Command::new("rustup").args(["run", "nightly", "rustc", "-vV"]))
                .context("running `rustup run nightly rustc -vV`")?;
            let (release, llvm) = parse_rustc_vv(&vv)?;
            (release, llvm, None)
        }
        _ => {
            let root = ensure_debian_rustc()?;
            let rustc = root.join("usr/bin/rustc");
            let version = || {
                output(
                    Command::new(&rustc)
                        .arg("-vV")
                        .env("LD_LIBRARY_PATH", root.join("usr/lib/x86_64-linux-gnu")),
                )
            };
            let vv = match version() {
                Some(vv) => vv,
                None => {
                    // The unpacked compiler links system libraries (libLLVM) that its runtime
                    // package depends on: install those and try again.
                    ensure_debian_runtime_deps(&root)?;
                    version().with_context(|| format!("running {} -vV", rustc.display()))?
                }
            };
            let (release, llvm) = parse_rustc_vv(&vv)?;
            (release, llvm, Some(root))
        }
    };
    let bpf_linker = ensure_bpf_linker(llvm_major)?;
    Ok(Toolchain {
        route,
        rustc_release,
        llvm_major,
        bpf_linker,
        debian_root,
    })
}

fn rustup_nightly_has_rust_src() -> bool {
    let Some(sysroot) =
        output(Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]))
    else {
        return false;
    };
    Path::new(&sysroot)
        .join("lib/rustlib/src/rust/library/core")
        .is_dir()
}

/// (release, LLVM major) from `rustc -vV`.
pub fn parse_rustc_vv(vv: &str) -> Result<(String, u32)> {
    let field = |name: &str| {
        vv.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
    };
    let release = field("release:").context("no `release:` in rustc -vV")?;
    let llvm = field("LLVM version:").context("no `LLVM version:` in rustc -vV")?;
    let major = llvm
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .with_context(|| format!("unparsable LLVM version {llvm:?}"))?;
    Ok((release, major))
}

const DEBIAN_PACKAGES: [&str; 3] = [
    "rustc-web",
    "libstd-rust-web-dev",
    "libstd-rust-web-dev-bpf",
];

/// Unpacks Debian's rustc-web and BPF core into `target/ebpf-toolchain/root` if not there.
fn ensure_debian_rustc() -> Result<PathBuf> {
    let dir = util::root().join("target/ebpf-toolchain");
    let root = dir.join("root");
    let ready = root.join("usr/bin/rustc").is_file()
        && root.join("usr/lib/rustlib/bpfel-unknown-none/lib").is_dir();
    if ready {
        return Ok(root);
    }
    step(
        "fetching Debian's rustc-web with the prebuilt BPF core into the project (only the libLLVM it links is installed system-wide)",
    );
    let candidate = |pkg: &str| {
        output(Command::new("apt-cache").args(["policy", pkg])).and_then(|p| {
            p.lines()
                .find_map(|l| {
                    l.trim()
                        .strip_prefix("Candidate:")
                        .map(|c| c.trim().to_owned())
                })
                .filter(|c| c != "(none)")
        })
    };
    if candidate("libstd-rust-web-dev-bpf").is_none() {
        if !testkit::is_root() {
            bail!(
                "Debian's libstd-rust-web-dev-bpf is not in the package lists. Run `sudo apt-get \
                 update` (it is in bookworm-security and newer), or install a nightly with \
                 rust-src"
            );
        }
        util::apt_update()?;
    }
    let version = candidate("libstd-rust-web-dev-bpf").context(
        "libstd-rust-web-dev-bpf has no installation candidate: enable the distribution's \
         security suite (e.g. bookworm-security) or install a nightly with rust-src",
    )?;
    // libstd-rust-web-dev depends on the versioned runtime, e.g. libstd-rust-web-1.96.
    let depends = output(Command::new("apt-cache").args(["depends", "libstd-rust-web-dev"]))
        .context("apt-cache depends libstd-rust-web-dev")?;
    let runtime = depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|d| d.starts_with("libstd-rust-web-1"))
        .context("cannot find the libstd-rust-web-1.NN runtime package")?
        .to_owned();
    let debs = dir.join("debs");
    let _ = std::fs::remove_dir_all(&debs);
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&debs)?;
    let mut download = Command::new("apt-get");
    download
        .arg("download")
        .args(DEBIAN_PACKAGES)
        .arg(&runtime)
        .current_dir(&debs);
    util::run_logged(&mut download, "apt-download")
        .context("downloading Debian's rustc-web packages")?;
    for entry in std::fs::read_dir(&debs)? {
        let deb = entry?.path();
        util::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    }
    let _ = std::fs::remove_dir_all(&debs);
    std::fs::write(root.join("runtime-package"), &runtime)?;
    step(format!(
        "unpacked rustc-web {version} into {}",
        root.display()
    ));
    ensure_debian_runtime_deps(&root)?;
    Ok(root)
}

/// System libraries the unpacked compiler links: the `libllvmNN` its `libstd-rust-web-1.NN`
/// runtime package depends on. Only those are installed system-wide (the Rust packages
/// themselves conflict with rustup and stay unpacked in the project).
fn ensure_debian_runtime_deps(root: &Path) -> Result<()> {
    let depends_of = |pkg: &str| -> Result<Vec<String>> {
        let text = output(Command::new("apt-cache").args(["depends", pkg]))
            .with_context(|| format!("apt-cache depends {pkg}"))?;
        Ok(text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Depends:"))
            .map(|d| d.trim().to_owned())
            .collect())
    };
    let runtime = match std::fs::read_to_string(root.join("runtime-package")) {
        Ok(r) => r.trim().to_owned(),
        Err(_) => depends_of("libstd-rust-web-dev")?
            .into_iter()
            .find(|d| d.starts_with("libstd-rust-web-1"))
            .context("cannot find the libstd-rust-web-1.NN runtime package")?,
    };
    let llvm: Vec<String> = depends_of(&runtime)?
        .into_iter()
        .filter(|d| d.starts_with("libllvm"))
        .collect();
    let refs: Vec<&str> = llvm.iter().map(String::as_str).collect();
    util::ensure_debs(&refs)
}

/// A bpf-linker that links LLVM `major`: reused if present, else built once.
fn ensure_bpf_linker(major: u32) -> Result<PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let tools = cargo_home.join(format!(
        "collector-ebpf-tools/bpf-linker-{BPF_LINKER_VERSION}-llvm{major}"
    ));
    let ours = tools.join("bin/bpf-linker");
    if ours.is_file() {
        return Ok(ours);
    }
    if let Some(existing) = testkit::which("bpf-linker")
        && links_llvm(&existing, major)
    {
        return Ok(existing);
    }
    let llvm_bin = PathBuf::from(format!("/usr/lib/llvm-{major}/bin"));
    if !llvm_bin.join("llvm-config").is_file() {
        if util::is_debian_family() && testkit::is_root() {
            util::ensure_debs(&[
                &format!("llvm-{major}-dev"),
                &format!("libpolly-{major}-dev"),
                "zlib1g-dev",
                "libzstd-dev",
            ])?;
        } else {
            bail!(
                "bpf-linker must be built against LLVM {major} (the LLVM of the rustc that emits \
                 the bitcode), and no llvm-config for it was found. Install LLVM {major}'s \
                 development files (Debian: `apt-get install llvm-{major}-dev libpolly-{major}-dev`) \
                 and run this again"
            );
        }
    }
    step(format!(
        "building bpf-linker {BPF_LINKER_VERSION} against LLVM {major} (a few minutes on 2 cores; output in target/xtask-logs/bpf-linker.log)"
    ));
    let path = format!(
        "{}:{}",
        llvm_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    util::run_logged(
        util::cargo()
            .args(["install", "--locked", "--root"])
            .arg(&tools)
            .arg(format!("bpf-linker@{BPF_LINKER_VERSION}"))
            .args(["--no-default-features", "--features"])
            .arg(format!("llvm-{major}"))
            .env("PATH", path),
        "bpf-linker",
    )
    .context("building bpf-linker")?;
    Ok(ours)
}

/// Whether a dynamically linked bpf-linker uses libLLVM of this major version.
fn links_llvm(binary: &Path, major: u32) -> bool {
    output(Command::new("ldd").arg(binary)).is_some_and(|ldd| {
        ldd.contains(&format!("libLLVM.so.{major}")) || ldd.contains(&format!("libLLVM-{major}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rustc_version_output() {
        let vv = "rustc 1.96.0 (ac68faa20 2026-05-25)\nbinary: rustc\nhost: x86_64-unknown-linux-gnu\nrelease: 1.96.0\nLLVM version: 22.1.8\n";
        assert_eq!(parse_rustc_vv(vv).unwrap(), ("1.96.0".to_owned(), 22));
        assert!(parse_rustc_vv("release: 1.0\n").is_err());
    }
}
