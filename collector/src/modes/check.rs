//! `collector check`: which CPU source works on this machine, and why the others do not.

use std::process::ExitCode;

use crate::{settings::Settings, sources::ebpf};

/// `collector check`.
pub fn check(settings: &Settings) -> ExitCode {
    if !ebpf::object_embedded() {
        tracing::warn!("built without the eBPF object: running without eBPF");
    }
    let mounts = &settings.mounts;
    let source = match settings.cpu_source() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e:#}");
            return ExitCode::from(2);
        }
    };
    println!("cpu source: {}", source.name());
    let layout = match (&mounts.v2, mounts.v1.is_empty()) {
        (Some(_), true) => "pure v2",
        (Some(_), false) => "hybrid (v1 controllers, v2 beside them)",
        (None, _) => "v1 only",
    };
    println!("cgroup layout: {layout}");
    match &mounts.v2 {
        Some(m) => println!("cgroup v2: {}", m.display()),
        None => println!("cgroup v2: not mounted"),
    }
    ExitCode::SUCCESS
}
