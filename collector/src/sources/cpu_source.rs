//! Choosing where CPU figures come from: eBPF when it loads, else cgroup counters, else /proc.

use crate::{
    settings::cli::CpuSourceChoice,
    sources::{cgroupfs::Mounts, ebpf},
};

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
    /// Tries eBPF, then cgroup counters, then /proc (`auto`), logging one clear line per
    /// fallback; a named source is used alone and is an error when unavailable.
    pub fn pick(choice: CpuSourceChoice, mounts: &Mounts) -> anyhow::Result<Self> {
        let why_not_ebpf = match choice {
            CpuSourceChoice::Auto | CpuSourceChoice::Ebpf => match ebpf::EbpfCpu::load() {
                Ok(cpu) => {
                    tracing::info!("CPU source: eBPF (sched_switch), exact per cgroup");
                    return Ok(Self::Ebpf(Box::new(cpu)));
                }
                Err(e) if choice == CpuSourceChoice::Ebpf => {
                    anyhow::bail!("--cpu-source ebpf: {e}")
                }
                Err(e) => {
                    tracing::warn!("eBPF CPU accounting unavailable: {e}");
                    e.to_string()
                }
            },
            other => format!("not tried (--cpu-source {other:?})").to_lowercase(),
        };
        let v2_ok = mounts.v2.as_ref().is_some_and(|m| has_cpu_stat(m));
        let v1_ok = mounts
            .v1
            .get("cpuacct")
            .is_some_and(|m| m.join("cpuacct.usage").is_file());
        let cgroup_ok = v2_ok || v1_ok;
        match choice {
            CpuSourceChoice::Auto | CpuSourceChoice::Cgroup if cgroup_ok => {
                let file = if v2_ok { "cpu.stat" } else { "cpuacct.usage" };
                tracing::info!("CPU source: cgroup counters ({file})");
                return Ok(Self::Cgroup { why_not_ebpf });
            }
            CpuSourceChoice::Cgroup if !cgroup_ok => {
                anyhow::bail!(
                    "--cpu-source cgroup: no cgroup cpu.stat or cpuacct.usage is readable"
                )
            }
            _ => {}
        }
        let why_not_cgroup = if choice == CpuSourceChoice::Proc {
            "not tried (--cpu-source proc)".to_owned()
        } else {
            "no cgroup cpu.stat or cpuacct.usage is readable".to_owned()
        };
        tracing::warn!(
            "CPU source: /proc polling ({why_not_cgroup}); processes shorter than --interval are missed"
        );
        Ok(Self::Proc {
            why_not_ebpf,
            why_not_cgroup,
        })
    }

    /// The source as summaries name it.
    pub fn source(&self) -> summary::Source {
        match self {
            Self::Ebpf(_) => summary::Source::Ebpf,
            Self::Cgroup { .. } => summary::Source::Cgroup,
            Self::Proc { .. } => summary::Source::Proc,
        }
    }

    /// Short name, as used in summaries: `ebpf`, `cgroup` or `proc`.
    pub fn name(&self) -> &'static str {
        self.source().as_str()
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
