//! The guest's kernel: the package Debian's `linux-image-cloud-amd64` depends on today,
//! downloaded and unpacked once into `target/vm/kernel/<package>/`.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::util::{self, output, run_logged, step};

/// The Debian metapackage whose dependency names the current cloud kernel.
const KERNEL_METAPACKAGE: &str = "linux-image-cloud-amd64";

/// An unpacked Debian kernel package.
pub struct Kernel {
    /// e.g. `linux-image-6.1.0-48-cloud-amd64`.
    pub package: String,
    pub vmlinuz: PathBuf,
    /// The RAM block device module (`/var/tmp` in the guest is a block device).
    pub brd: PathBuf,
}

/// The current cloud kernel, downloaded and unpacked once into `target/vm/kernel/`.
pub fn ensure() -> Result<Kernel> {
    let package = current_kernel_package()?;
    let dir = util::root().join("target/vm/kernel").join(&package);
    let marker = dir.join(".unpacked");
    if !marker.exists() {
        step(format!(
            "apt-get download {package} (into {})",
            dir.display()
        ));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        let download = dir.join("deb");
        std::fs::create_dir_all(&download)?;
        run_logged(
            Command::new("apt-get")
                .args(["download", &package])
                .current_dir(&download),
            "vm-kernel-download",
        )?;
        let deb = std::fs::read_dir(&download)?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .with_context(|| format!("apt-get download {package} left no .deb"))?;
        run_logged(
            Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&dir),
            "vm-kernel-unpack",
        )?;
        std::fs::remove_dir_all(&download)?;
        std::fs::write(&marker, "")?;
    }
    let find = |sub: &str, pred: &dyn Fn(&Path) -> bool| -> Result<PathBuf> {
        let mut stack = vec![dir.join(sub)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d)
                .with_context(|| format!("reading {}", d.display()))?
                .flatten()
            {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if pred(&p) {
                    return Ok(p);
                }
            }
        }
        bail!("{package} has no such file under {sub}")
    };
    let name_is = |prefix: &'static str| {
        move |p: &Path| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        }
    };
    Ok(Kernel {
        vmlinuz: find("boot", &name_is("vmlinuz-"))?,
        brd: find("lib/modules", &name_is("brd.ko"))?,
        package,
    })
}

/// The package `linux-image-cloud-amd64` depends on now (`linux-image-6.1.0-NN-cloud-amd64`).
fn current_kernel_package() -> Result<String> {
    if let Ok(p) = std::env::var("COLLECTOR_VM_KERNEL_PACKAGE") {
        return Ok(p);
    }
    let depends = || output(Command::new("apt-cache").args(["depends", KERNEL_METAPACKAGE]));
    let text = match depends().filter(|t| t.contains("Depends:")) {
        Some(t) => t,
        None => {
            util::apt_update()?;
            depends().with_context(|| {
                format!("`apt-cache depends {KERNEL_METAPACKAGE}` failed: is this a Debian machine with Debian's archive reachable?")
            })?
        }
    };
    text.lines()
        .find_map(|l| {
            let dep = l.trim().strip_prefix("Depends:")?.trim();
            dep.starts_with("linux-image-").then(|| dep.to_owned())
        })
        .with_context(|| format!("no linux-image dependency of {KERNEL_METAPACKAGE} in:\n{text}"))
}
