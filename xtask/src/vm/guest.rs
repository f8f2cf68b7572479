//! The guest's root file system: busybox, the binaries under test at the paths they have on
//! the host (so `current_exe()`-relative lookups and `env!("CARGO_BIN_EXE_...")` paths hold),
//! the shared libraries they link, the `init` script, packed as a newc cpio archive.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::util::{output, run_logged};

/// PID 1 of the guest.
const INIT: &str = include_str!("init.sh");

/// A root file system being staged in a directory.
pub struct Rootfs {
    dir: PathBuf,
    /// Guest paths already holding a file (so each library is copied once).
    present: BTreeSet<PathBuf>,
}

impl Rootfs {
    /// An empty staging directory with the usual top-level folders.
    pub fn create(dir: &Path) -> Result<Self> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        for sub in [
            "bin",
            "dev",
            "proc",
            "sys",
            "tmp",
            "var/tmp",
            "root",
            "run",
            "etc",
            "lib/modules",
        ] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
        std::fs::write(dir.join("etc/group"), "root:x:0:\n")?;
        let mut fs = Self {
            dir: dir.to_path_buf(),
            present: BTreeSet::new(),
        };
        fs.write("init", INIT.as_bytes(), 0o755)?;
        Ok(fs)
    }

    /// Writes a file at `guest` (a path relative to the root) with `mode`.
    pub fn write(&mut self, guest: impl AsRef<Path>, bytes: &[u8], mode: u32) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.join(guest.as_ref());
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        self.present.insert(guest.as_ref().to_path_buf());
        Ok(())
    }

    /// Static busybox as `/bin/busybox` and every applet it has as a link to it.
    pub fn add_busybox(&mut self, busybox: &Path) -> Result<()> {
        self.copy(busybox, Path::new("bin/busybox"), false)?;
        let list = output(Command::new(busybox).arg("--list"))
            .with_context(|| format!("{} --list", busybox.display()))?;
        for applet in list.lines().map(str::trim) {
            if applet.is_empty() || applet.contains('/') || applet == "busybox" {
                continue;
            }
            let link = self.dir.join("bin").join(applet);
            if !link.exists() {
                std::os::unix::fs::symlink("busybox", &link)?;
            }
        }
        Ok(())
    }

    /// Copies the ELF binary `host` to `guest` (relative to the root), without its debug
    /// information when `strip` (debug builds are mostly DWARF), and every shared library it
    /// links at its own path.
    pub fn add_elf(&mut self, host: &Path, guest: &Path, strip: bool) -> Result<()> {
        self.copy(host, guest, strip)?;
        let ldd = Command::new("ldd")
            .arg(host)
            .output()
            .with_context(|| format!("ldd {}", host.display()))?;
        // ldd fails on static binaries ("not a dynamic executable"): nothing to copy then.
        for lib in shared_libraries(&String::from_utf8_lossy(&ldd.stdout))? {
            let rel = lib.strip_prefix("/").unwrap_or(&lib).to_path_buf();
            if !self.present.contains(&rel) {
                self.copy(&lib, &rel, false)?;
            }
        }
        Ok(())
    }

    /// Copies a file (following links) to `guest`, executable.
    pub fn copy(&mut self, host: &Path, guest: &Path, strip: bool) -> Result<()> {
        let dst = self.dir.join(guest);
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // A busybox applet of that name is a link: replace it, never write through it.
        if dst.symlink_metadata().is_ok() {
            std::fs::remove_file(&dst)?;
        }
        if strip {
            run_logged(
                Command::new("objcopy")
                    .arg("--strip-debug")
                    .arg(host)
                    .arg(&dst),
                "vm-objcopy",
            )?;
        } else {
            std::fs::copy(host, &dst)
                .with_context(|| format!("copying {} into the guest", host.display()))?;
        }
        self.present.insert(guest.to_path_buf());
        Ok(())
    }

    /// Packs the tree as a newc cpio archive (what the kernel unpacks as its first root)
    /// and returns its size in bytes.
    pub fn pack(&self, archive: &Path) -> Result<u64> {
        let out = std::fs::File::create(archive)
            .with_context(|| format!("creating {}", archive.display()))?;
        let status = Command::new("sh")
            .arg("-c")
            .arg("find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet")
            .current_dir(&self.dir)
            .stdout(out)
            .status()
            .context("running find | cpio")?;
        if !status.success() {
            bail!("packing {} with cpio failed ({status})", self.dir.display());
        }
        Ok(std::fs::metadata(archive)?.len())
    }
}

/// The libraries (and the loader) in `ldd` output, as absolute host paths.
///
/// ```text
///     linux-vdso.so.1 (0x00007ffd...)
///     libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f...)
///     /lib64/ld-linux-x86-64.so.2 (0x00007f...)
/// ```
pub fn shared_libraries(ldd: &str) -> Result<Vec<PathBuf>> {
    let mut libs = Vec::new();
    for line in ldd.lines().map(str::trim) {
        if line.contains("not found") {
            bail!("a shared library is missing on this machine: {line}");
        }
        let path = match line.split_once("=>") {
            Some((_, target)) => target.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libraries_and_the_loader_from_ldd() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd1b5e2000)
\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f16f63e0000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f16f611e000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f16f7391000)
";
        assert_eq!(
            shared_libraries(ldd).unwrap(),
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
            .map(PathBuf::from)
        );
        assert!(
            shared_libraries("\tnot a dynamic executable")
                .unwrap()
                .is_empty()
        );
        let missing = shared_libraries("\tlibfoo.so.1 => not found").unwrap_err();
        assert!(missing.to_string().contains("libfoo.so.1"), "{missing}");
    }
}
