//! The collector: measures CPU, memory and network of CI jobs and their containers.
//!
//! # Layout
//!
//! A folder is a room: what the collector reads, how it measures, the ways it runs, where
//! the figures go.
//!
//! - [`settings`]: the command line and environment, read once into one value.
//! - [`sources`]: inputs: `/proc` and cgroupfs readers, the eBPF loader (the only module that
//!   touches aya) with its BTF reader and map bookkeeping, and the choice of CPU source.
//! - [`sampler`]: the measuring engine, one file per concern (processes, containers and
//!   their names, CPU, memory, network, system, the summary's assembly, the pure rate maths).
//! - [`modes`]: sidecar, `run -- CMD`, node (jobs, identity, spool), check and show; the
//!   measuring ones go through one runner (ticks, signals, final readings).
//! - [`output`]: the push with backoff, the atomic file write, live Prometheus metrics, the
//!   report table.
//! - [`logging`]: tracing to stderr, text or JSON.

pub mod logging;
pub mod modes;
pub mod output;
pub mod sampler;
pub mod settings;
pub mod sources;
