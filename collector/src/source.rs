//! Choosing where CPU figures come from: eBPF when it loads, else cgroup counters, else /proc.

use std::path::PathBuf;

use crate::{cgroupfs, ebpf};

/// The CPU source in use, with what was tried before it.
pub enum CpuSource {
    Ebpf(Box<ebpf::EbpfCpu>),
    /// cgroup v2 `cpu.stat` under this mount.
    Cgroup {
        mount: PathBuf,
        ebpf_error: ebpf::EbpfUnavailable,
    },
    /// /proc/PID/stat deltas.
    Proc {
        ebpf_error: ebpf::EbpfUnavailable,
        cgroup_error: String,
    },
}

impl CpuSource {
    /// Tries eBPF, then cgroup v2, then /proc, logging one clear line per fallback.
    pub fn pick() -> Self {
        let ebpf_error = match ebpf::EbpfCpu::load() {
            Ok(cpu) => {
                tracing::info!("CPU source: eBPF (sched_switch), exact per cgroup");
                return Self::Ebpf(Box::new(cpu));
            }
            Err(e) => e,
        };
        tracing::warn!("eBPF CPU accounting unavailable: {ebpf_error}");
        match cgroupfs::find_cgroup2_mount() {
            Ok(mount) if mount.join("cpu.stat").is_file() || has_child_cpu_stat(&mount) => {
                tracing::info!("CPU source: cgroup cpu.stat under {}", mount.display());
                Self::Cgroup { mount, ebpf_error }
            }
            Ok(mount) => {
                let cgroup_error = format!("no cpu.stat under {}", mount.display());
                tracing::warn!("CPU source: /proc polling ({cgroup_error})");
                Self::Proc {
                    ebpf_error,
                    cgroup_error,
                }
            }
            Err(e) => {
                let cgroup_error = format!("{e:#}");
                tracing::warn!("CPU source: /proc polling ({cgroup_error})");
                Self::Proc {
                    ebpf_error,
                    cgroup_error,
                }
            }
        }
    }

    /// Short name, as used in summaries: `ebpf`, `cgroup` or `proc`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ebpf(_) => "ebpf",
            Self::Cgroup { .. } => "cgroup",
            Self::Proc { .. } => "proc",
        }
    }
}

/// The root cgroup of a v2 mount has no `cpu.stat` on some kernels; a child does.
fn has_child_cpu_stat(mount: &std::path::Path) -> bool {
    std::fs::read_dir(mount).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.path().join("cpu.stat").is_file())
    })
}
