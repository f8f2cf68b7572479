//! Embeds the eBPF object built by `cargo xtask build-ebpf`, or an empty placeholder.
//!
//! Without the object the collector still builds and runs, and says at start-up that eBPF is
//! not embedded (as aya's own integration tests do when their BPF build is switched off).
//!
//! It also sets `COLLECTOR_VERSION_DETAIL`, what `collector --version` says after the version:
//! the commit (from `COLLECTOR_BUILD_COMMIT`, which `cargo xtask dist` sets; `unknown` without
//! it, e.g. built from a source tarball) and whether the eBPF object is embedded.
use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=COLLECTOR_EBPF_OBJECT");
    println!("cargo:rerun-if-env-changed=COLLECTOR_BUILD_COMMIT");
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let object = env::var_os("COLLECTOR_EBPF_OBJECT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            manifest.join("../target/ebpf/bpfel-unknown-none/release/collector-ebpf")
        });
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap()).join("collector-ebpf.o");
    let embedded = object.is_file();
    println!(
        "cargo:rustc-env=COLLECTOR_VERSION_DETAIL=commit {}, eBPF {}",
        commit(),
        if embedded { "embedded" } else { "not embedded" }
    );
    if embedded {
        println!("cargo:rerun-if-changed={}", object.display());
        fs::copy(&object, &out).expect("copying the eBPF object");
    } else {
        // Watch the directory the object will appear in, so building it later re-embeds it.
        let dir = object.parent().unwrap();
        let _ = fs::create_dir_all(dir);
        println!("cargo:rerun-if-changed={}", dir.display());
        println!(
            "cargo:warning=no eBPF object at {}: building a collector without eBPF (run `cargo xtask build-ebpf`)",
            object.display()
        );
        fs::write(&out, []).expect("writing the empty eBPF placeholder");
    }
}

/// The commit `cargo xtask dist` passes in, or `unknown` (anything but a plain revision name
/// is not trusted into the version line).
fn commit() -> String {
    env::var("COLLECTOR_BUILD_COMMIT")
        .ok()
        .filter(|c| {
            !c.is_empty()
                && c.len() <= 64
                && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
        })
        .unwrap_or_else(|| "unknown".to_owned())
}
