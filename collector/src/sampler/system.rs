//! System-wide figures (`/proc/stat`, `/proc/meminfo`) and the collector's own health.

use std::time::Instant;

use super::{Sampler, grouping::ContainerName, rates};
use crate::sources::{cpu_source::CpuSource, procfs};

impl Sampler {
    pub(super) fn sample_system(&mut self, now: Instant) {
        match procfs::read_system(&self.cfg.proc_root) {
            Ok(sys) => {
                self.system_mem.record(sys.memory.used_bytes() as f64);
                self.last_mem_used = Some(sys.memory.used_bytes());
                if let Some((_, prev)) = self.last_system
                    && let Some(pct) = rates::cpu_percent(&prev, &sys.cpu)
                {
                    self.system_cpu.record(pct);
                    self.last_cpu_percent = Some(pct);
                }
                self.first_system.get_or_insert(sys.cpu);
                self.last_system = Some((now, sys.cpu));
            }
            Err(e) => {
                self.read_errors += 1;
                tracing::warn!("{e:#}");
            }
        }
    }

    /// Health figures, the malformed lines skipped since the last scan, and deletion of the
    /// live series of containers that ended.
    pub(super) fn update_health(&mut self, ended: &[ContainerName]) {
        let skipped = procfs::skipped_lines();
        let new_skips = skipped - self.skipped_lines_reported;
        if new_skips > 0 {
            tracing::warn!(
                skipped = new_skips,
                total = skipped,
                "skipped malformed /proc lines (RUST_LOG=collector=debug shows them)"
            );
        }
        self.skipped_lines_reported = skipped;
        let Some(live) = self.cfg.live.clone() else {
            return;
        };
        live.samples.inc();
        live.skipped_lines.inc_by(new_skips);
        let errors = self.read_errors.saturating_sub(live.errors.get());
        live.errors.inc_by(errors);
        for name in ended {
            if let Some(c) = self.containers.get_mut(name) {
                let sets: Vec<_> = c.live_sets.drain().collect();
                live.remove_container(&sets);
            }
        }
        live.containers
            .set(self.containers.values().filter(|c| c.alive).count() as i64);
        if let CpuSource::Ebpf(ebpf) = &self.cpu {
            let st = ebpf.stats();
            live.ebpf_attached.set(1);
            live.ebpf_map_entries.set(st.cgroup_map_len as i64);
            live.ebpf_map_capacity.set(st.cgroup_map_capacity as i64);
            live.ebpf_map_full
                .inc_by(st.cgroup_map_full.saturating_sub(live.ebpf_map_full.get()));
            live.ebpf_exit_records_lost.inc_by(
                st.exit_ring_full
                    .saturating_sub(live.ebpf_exit_records_lost.get()),
            );
        }
    }
}
