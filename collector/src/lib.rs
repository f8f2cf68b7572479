//! The collector: measures CPU, memory and network of CI jobs and their containers.
//!
//! # Layout
//! - [`ebpf`]: the eBPF loader, the only module that touches aya (load, attach, read maps).
//! - [`cpu_totals`]: pure bookkeeping over the eBPF maps (consistent reads, monotonic
//!   totals, retiring removed cgroups, grouping exited threads into processes).
//! - [`btf`]: a minimal BTF reader that finds kernel struct member offsets for the program.
//! - [`cgroupfs`]: cgroup v2 mount discovery and cgroup ids.
//! - [`source`]: picks the CPU source (eBPF, cgroup counters, /proc) and says why.

pub mod btf;
pub mod cgroupfs;
pub mod cpu_totals;
pub mod ebpf;
pub mod source;
