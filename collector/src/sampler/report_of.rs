//! Assembling the run summary: per-container figures and verdicts, the top processes and
//! commands, the histograms.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    time::SystemTime,
};

use summary::{
    Accumulator, CollectorInfo, ContainerSummary, Histograms, ProcessSummary, RunSummary, hist,
    starvation::CommandSummary,
};

use super::{
    JobSystem, Sampler,
    container::{CommandAgg, Container},
    grouping::ContainerName,
};

impl Sampler {
    /// Builds the run summary (call after a final `cpu_tick` and `slow_tick`).
    pub fn summary(&self, info: CollectorInfo) -> RunSummary {
        let system = JobSystem {
            start: self.start_wall,
            cpu: &self.system_cpu,
            mem: &self.system_mem,
            samples: self.slow_ticks,
            count_before_start: false,
        };
        self.summary_of(None, &system, info)
    }

    /// What this collector is, for the summary's `collector` field.
    pub fn collector_info(&self, mode: &str) -> CollectorInfo {
        CollectorInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            mode: mode.to_owned(),
            ebpf: matches!(self.cpu, crate::sources::cpu_source::CpuSource::Ebpf(_)),
        }
    }

    /// The summary of some containers only (a job in node mode), with the job's own system
    /// figures; `None` means every container.
    pub fn summary_of(
        &self,
        only: Option<&BTreeSet<ContainerName>>,
        system: &JobSystem<'_>,
        info: CollectorInfo,
    ) -> RunSummary {
        let end = SystemTime::now();
        let wanted = |name: &str| only.is_none_or(|set| set.contains(name));
        let wall = end
            .duration_since(system.start)
            .unwrap_or_default()
            .as_secs_f64();
        let steal_share = self.steal_share();
        let timelines: Vec<(&ContainerName, summary::timeline::TimelineBuilder, f64)> = self
            .containers
            .iter()
            .filter(|(name, _)| wanted(name.as_str()))
            .map(|(name, c)| {
                let start = c.timeline.offset_from(system.start);
                (name, c.cpu.timeline_final(&c.timeline), start)
            })
            .collect();
        // Sorted by name: the map is ordered by name already.
        let containers: Vec<ContainerSummary> = self
            .containers
            .iter()
            .filter(|(name, _)| wanted(name.as_str()))
            .map(|(name, c)| {
                container_summary(name, c, system.count_before_start, wall, steal_share)
            })
            .collect();
        let verdict = summary::starvation::job_verdict(&containers);

        let mut processes: Vec<ProcessSummary> = self
            .exited
            .iter()
            .filter(|p| only.is_none() || p.container.as_deref().is_some_and(wanted))
            .cloned()
            .collect();
        for (pid, p) in self
            .processes
            .iter()
            .filter(|(_, p)| wanted(p.container.as_str()))
        {
            let ticks_seconds =
                (p.last_ticks - p.first_ticks) as f64 / self.ticks_per_sec.max(1) as f64;
            let (cpu_seconds, avg) = p.exact_exit.unwrap_or((ticks_seconds, 0.0));
            processes.push(ProcessSummary {
                pid: *pid,
                name: p.comm.clone(),
                peak_cpu_percent: p.peak_cpu_percent.max(avg),
                peak_mem_rss_bytes: p.peak_rss,
                cpu_seconds,
                container: p.container.assigned().map(str::to_owned),
                exited: p.exact_exit.is_some(),
            });
        }
        let top = self.cfg.top;
        let mut by_cpu = processes.clone();
        // CPU consumed is what right-sizing needs; a 20 ms burner is "100 %" too.
        by_cpu.sort_by(|a, b| {
            b.cpu_seconds
                .total_cmp(&a.cpu_seconds)
                .then(b.peak_cpu_percent.total_cmp(&a.peak_cpu_percent))
        });
        by_cpu.truncate(top);
        let mut by_mem = processes;
        by_mem.sort_by_key(|p| std::cmp::Reverse(p.peak_mem_rss_bytes));
        by_mem.truncate(top);

        let mut histograms = Histograms::new();
        histograms.insert(hist::CPU_TOTAL_PERCENT.into(), system.cpu.encode());
        histograms.insert(hist::MEM_USED_BYTES.into(), system.mem.encode());
        let duration = end.duration_since(system.start).unwrap_or_default();
        RunSummary {
            schema_version: summary::SCHEMA_VERSION,
            start_time: summary::time::format_rfc3339(system.start),
            end_time: summary::time::format_rfc3339(end),
            duration_seconds: duration.as_secs_f64(),
            sample_count: system.samples,
            cpu_total_percent: system.cpu.stats(),
            mem_used_bytes: system.mem.stats(),
            cpu_source: self.cpu.source(),
            containers,
            top_cpu_processes: by_cpu,
            top_mem_processes: by_mem,
            histograms: Some(histograms),
            collector: Some(info),
            top_commands: self.top_commands(&wanted),
            verdict,
            timeline: summary::timeline::assemble(
                timelines
                    .iter()
                    .map(|(name, t, start)| (name.as_str(), t, *start)),
            ),
        }
    }
}

impl Sampler {
    /// Processes of the wanted containers grouped by command name (ended ones, and those
    /// still running), most CPU first, `--top` of them.
    fn top_commands(&self, wanted: &dyn Fn(&str) -> bool) -> Vec<CommandSummary> {
        let mut by_name: HashMap<&str, CommandAgg> = HashMap::new();
        for (name, c) in &self.containers {
            if !wanted(name.as_str()) {
                continue;
            }
            for (comm, agg) in c.commands.iter() {
                let a = by_name.entry(comm).or_default();
                a.add(
                    agg.processes,
                    agg.cpu_seconds,
                    agg.peak_rss,
                    agg.longest_seconds,
                );
            }
        }
        for p in self.processes.values() {
            if !wanted(p.container.as_str()) {
                continue;
            }
            let ticks = (p.last_ticks - p.first_ticks) as f64 / self.ticks_per_sec.max(1) as f64;
            let cpu = p.exact_exit.map_or(ticks, |(s, _)| s);
            by_name.entry(&p.comm).or_default().add(
                1,
                cpu,
                p.peak_rss,
                p.lifetime_seconds(self.ticks_per_sec),
            );
        }
        let mut list: Vec<CommandSummary> = by_name
            .into_iter()
            .map(|(name, a)| CommandSummary {
                name: name.to_owned(),
                processes: a.processes,
                cpu_seconds: a.cpu_seconds.max(0.0),
                peak_rss_bytes: a.peak_rss,
                longest_seconds: a.longest_seconds,
            })
            .collect();
        list.sort_by(|a, b| {
            b.cpu_seconds
                .total_cmp(&a.cpu_seconds)
                .then(b.processes.cmp(&a.processes))
                .then(a.name.cmp(&b.name))
        });
        list.truncate(self.cfg.top.max(1));
        list
    }
}

fn container_summary(
    name: &ContainerName,
    c: &Container,
    before_start: bool,
    wall_seconds: f64,
    steal_share: f64,
) -> ContainerSummary {
    let opt = |a: &Accumulator| (a.sample_count() > 0).then(|| a.stats());
    let before = if before_start {
        c.cpu.before_start_ns
    } else {
        0
    };
    let (memory_peak, memory_bytes, memory_hist) = c.memory.statistics();
    let mut histograms = Histograms::new();
    histograms.insert(hist::CPU_CORES.into(), c.cpu.cores.encode());
    histograms.insert(hist::MEMORY_BYTES.into(), memory_hist);
    let (cpu_throttling, pressure, disk_io) = c.starvation.figures(wall_seconds);
    let cpu_seconds = (c.cpu.total_ns() + before) as f64 / 1e9;
    let mut out = ContainerSummary {
        name: name.to_string(),
        cpu_cores: c.cpu.cores.stats(),
        memory_bytes,
        cpu_seconds,
        cpu_source: c.cpu.source.unwrap_or(summary::Source::Proc),
        memory_source: c.memory.source,
        memory_peak_bytes: memory_peak,
        oom_kills: c.memory.oom_kills,
        network: c.network.summary(),
        limits: c.limits,
        cpu_to_limit: opt(&c.cpu.to_limit),
        memory_to_limit: opt(&c.memory.to_limit),
        histograms: Some(histograms),
        cpu_throttling,
        pressure,
        run_queue_wait: c.wait.summary(cpu_seconds, wall_seconds).map(|mut w| {
            let throttled = cpu_throttling
                .filter(|t| t.quota_cores.is_some())
                .map(|t| t.throttled_seconds);
            w.behind = c.behind.summary(w.seconds, throttled, steal_share);
            w
        }),
        disk_io,
        memory_detail: c.memory.detail(),
        verdict: None,
    };
    out.verdict = Some(summary::starvation::verdict(&out));
    out
}

/// Keeps the `keep` highest by CPU and the `keep` highest by memory.
pub(super) fn prune_top(list: &mut Vec<ProcessSummary>, keep: usize) {
    let mut by_cpu: Vec<usize> = (0..list.len()).collect();
    by_cpu.sort_by(|a, b| {
        list[*b].cpu_seconds.total_cmp(&list[*a].cpu_seconds).then(
            list[*b]
                .peak_cpu_percent
                .total_cmp(&list[*a].peak_cpu_percent),
        )
    });
    let mut by_mem: Vec<usize> = (0..list.len()).collect();
    by_mem.sort_by(|a, b| {
        list[*b]
            .peak_mem_rss_bytes
            .cmp(&list[*a].peak_mem_rss_bytes)
    });
    let wanted: HashSet<usize> = by_cpu
        .into_iter()
        .take(keep)
        .chain(by_mem.into_iter().take(keep))
        .collect();
    let mut i = 0;
    list.retain(|_| {
        let k = wanted.contains(&i);
        i += 1;
        k
    });
}
