//! Choosing where CPU figures come from: eBPF when it loads, else cgroup counters, else /proc.

use crate::{cgroupfs::Mounts, ebpf};

/// The CPU source in use.
pub enum CpuSource {
    Ebpf(Box<ebpf::EbpfCpu>),
    /// cgroup v2 `cpu.stat` or v1 `cpuacct.usage`.
    Cgroup {
        why_not_ebpf: String,
    },
    /// /proc/PID/stat deltas.
    Proc {
        why_not_ebpf: String,
        why_not_cgroup: String,
    },
}

impl CpuSource {
    /// Tries eBPF (unless disabled), then cgroup counters, then /proc, logging one clear line
    /// per fallback.
    pub fn pick(try_ebpf: bool, mounts: &Mounts) -> Self {
        let why_not_ebpf = if !try_ebpf {
            "disabled with --no-ebpf".to_owned()
        } else {
            match ebpf::EbpfCpu::load() {
                Ok(cpu) => {
                    tracing::info!("CPU source: eBPF (sched_switch), exact per cgroup");
                    return Self::Ebpf(Box::new(cpu));
                }
                Err(e) => {
                    tracing::warn!("eBPF CPU accounting unavailable: {e}");
                    e.to_string()
                }
            }
        };
        let v2_ok = mounts.v2.as_ref().is_some_and(|m| has_cpu_stat(m));
        let v1_ok = mounts
            .v1
            .get("cpuacct")
            .is_some_and(|m| m.join("cpuacct.usage").is_file());
        if v2_ok || v1_ok {
            tracing::info!(
                "CPU source: cgroup counters ({})",
                if v2_ok { "cpu.stat" } else { "cpuacct.usage" }
            );
            return Self::Cgroup { why_not_ebpf };
        }
        let why_not_cgroup = "no cgroup cpu.stat or cpuacct.usage is readable".to_owned();
        tracing::warn!(
            "CPU source: /proc polling ({why_not_cgroup}); processes shorter than --interval are missed"
        );
        Self::Proc {
            why_not_ebpf,
            why_not_cgroup,
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

/// The root of a v2 mount has no `cpu.stat` on some kernels; a child has.
fn has_cpu_stat(mount: &std::path::Path) -> bool {
    mount.join("cpu.stat").is_file()
        || std::fs::read_dir(mount).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.path().join("cpu.stat").is_file())
        })
}
