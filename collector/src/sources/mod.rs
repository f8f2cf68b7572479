//! Inputs: everything the collector reads from the kernel.
//!
//! - [`procfs`]: `/proc` parsers (pure, on fixtures) and readers that tolerate vanishing
//!   processes and malformed lines.
//! - [`cgroupfs`]: cgroup mounts (from mountinfo), typed cgroup paths, cgroup ids, and the
//!   memory and CPU counters of a cgroup (v2, or v1 on hybrid hosts).
//! - [`counter_files`]: the cgroup counter files read at every CPU tick, kept open.
//! - [`ebpf`]: the eBPF loader, the only module that touches aya (load, attach, read maps).
//! - [`btf`]: a minimal BTF reader that finds kernel struct member offsets for the program.
//! - [`cpu_totals`]: pure bookkeeping over the eBPF maps (consistent reads, monotonic
//!   totals, retiring removed cgroups, grouping exited threads into processes).
//! - [`starvation`]: a cgroup's starvation counters: throttling, pressure stall information,
//!   block I/O.
//! - [`cpu_source`]: picks the CPU source (eBPF, cgroup counters, /proc) and says why.

pub mod btf;
pub mod cgroupfs;
pub mod counter_files;
pub mod cpu_source;
pub mod cpu_totals;
pub mod ebpf;
pub mod procfs;
pub mod starvation;
