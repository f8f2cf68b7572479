//! Sets `RECEIVER_VERSION_DETAIL`, what `receiver --version` says after the version: the
//! commit, from `COLLECTOR_BUILD_COMMIT` (which `cargo xtask dist` sets), or `unknown` without
//! it (e.g. built from a source tarball).
use std::env;

fn main() {
    println!("cargo:rerun-if-env-changed=COLLECTOR_BUILD_COMMIT");
    let commit = env::var("COLLECTOR_BUILD_COMMIT")
        .ok()
        .filter(|c| {
            !c.is_empty()
                && c.len() <= 64
                && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=RECEIVER_VERSION_DETAIL=commit {commit}");
}
