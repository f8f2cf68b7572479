//! The collector: measures CPU, memory and network of CI jobs and their containers.
//!
//! # Layout
//! - [`cli`]: flags and environment (the seed's names kept); [`app`]: the modes (sidecar,
//!   `run -- CMD`, `check`) wiring the sampler to timers, signals and the push.
//! - [`node`]: node mode: jobs found from their processes' environment, one summary per
//!   job, a bounded on-disk spool, checkpoints across restarts.
//! - [`report`]: the table `collector run` prints.
//! - [`ebpf`]: the eBPF loader, the only module that touches aya (load, attach, read maps).
//! - [`cpu_totals`]: pure bookkeeping over the eBPF maps (consistent reads, monotonic
//!   totals, retiring removed cgroups, grouping exited threads into processes).
//! - [`btf`]: a minimal BTF reader that finds kernel struct member offsets for the program.
//! - [`cgroupfs`]: cgroup v2 mount discovery and cgroup ids.
//! - [`source`]: picks the CPU source (eBPF, cgroup counters, /proc) and says why.
//! - [`procfs`]: /proc parsers (stat, status, cgroup, net/dev, system stat, meminfo) and
//!   readers that tolerate vanishing processes and malformed lines.
//! - [`containers`]: grouping processes into containers (`CGROUP_PROCESS_MAP`, automatic
//!   names from Kubernetes/containerd/CRI-O/Docker/systemd cgroup paths).
//! - [`live`]: live per-container metrics for Prometheus (`--metrics-addr`).
//! - [`limits`]: `CGROUP_LIMITS` in Kubernetes quantity notation.
//! - [`push`]: pushing the summary with retries; the summary file when that fails.
//! - [`rates`]: pure delta maths: CPU percent and cores from counters, byte rates.
//! - [`sampler`]: the measuring engine: fast CPU ticks, slow /proc ticks, the run summary.

pub mod app;
pub mod btf;
pub mod cgroupfs;
pub mod cli;
pub mod containers;
pub mod cpu_totals;
pub mod ebpf;
pub mod limits;
pub mod live;
pub mod node;
pub mod procfs;
pub mod push;
pub mod rates;
pub mod report;
pub mod sampler;
pub mod source;
