//! Kernel side of the collector: exact on-CPU time per cgroup v2, and per-thread CPU at exit.
//!
//! One BTF tracepoint on `sched_switch` does all the work. On every switch the outgoing task
//! (`current`, still `prev` at this point) has run since the previous switch on this CPU; that
//! slice is charged to its cgroup, with the wait for a CPU that preceded it (the growth of
//! its `sched_info.run_delay`). Consecutive slices of the same cgroup accumulate in a
//! per-CPU cache (a per-CPU array slot, which the verifier inlines), and only a change of
//! cgroup flushes the cache into the per-CPU hash. When `prev` is dead (its last switch), its
//! final `se.sum_exec_runtime` goes to a ring buffer, so processes shorter than a sampling
//! interval are seen with their name.
//!
//! On the host this crate builds as an empty binary so `cargo clippy --workspace` works; the
//! real object is built for `bpfel-unknown-none` by `cargo xtask build-ebpf`.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

#[cfg(target_arch = "bpf")]
mod program;

#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!("collector-ebpf is a BPF object: build it with `cargo xtask build-ebpf`");
}
