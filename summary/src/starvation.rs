//! Was a container held back, by what, and for how long: CPU throttling, pressure stall
//! information (PSI), run-queue wait, disk I/O and memory detail, and the one-line
//! [`Verdict`] made from them. All additive fields of [`ContainerSummary`] and
//! [`RunSummary`]; the verdict is pure maths over them.

use serde::{Deserialize, Serialize};

use crate::{ContainerSummary, Source, Stats};

/// Share of CPU periods throttled, of runnable time spent waiting for a CPU, or of wall time
/// stalled on CPU (PSI `some`) at which a container counts as CPU-starved.
pub const CPU_STARVED_SHARE: f64 = 0.10;
/// Share of wall time with some task stalled on memory (PSI `some`) at which it counts as
/// memory-starved; any OOM kill does too.
pub const MEMORY_STARVED_SHARE: f64 = 0.05;
/// Share of wall time with every task stalled on I/O (PSI `full`) at which it counts as
/// I/O-starved.
pub const IO_STARVED_SHARE: f64 = 0.10;

/// CPU bandwidth throttling (`cpu.stat`: v2 `nr_periods`, `nr_throttled`, `throttled_usec`,
/// `nr_bursts`, `burst_usec`; v1 `cpu` controller `nr_periods`, `nr_throttled`,
/// `throttled_time`), grown over the run.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Throttling {
    /// The quota in cores (`cpu.max`, or `cpu.cfs_quota_us` / `cpu.cfs_period_us`); `None`:
    /// no quota, so nothing can be throttled and the counts below are not a measurement.
    #[serde(default)]
    pub quota_cores: Option<f64>,
    /// Enforcement periods that had runnable tasks.
    #[serde(default)]
    pub periods: u64,
    /// Periods in which the quota ran out.
    #[serde(default)]
    pub throttled_periods: u64,
    /// Time the cgroup's run queues spent throttled, summed over CPUs, seconds.
    #[serde(default)]
    pub throttled_seconds: f64,
    /// `throttled_periods / periods` (0 without periods).
    #[serde(default)]
    pub throttled_period_share: f64,
    /// Periods that used burst capacity, and the burst time, where the kernel has them (v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bursts: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_seconds: Option<f64>,
}

/// Growth of one PSI file's `total` counters over the run (not the decaying averages).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Stall {
    /// Time at least one task was stalled, seconds.
    pub some_seconds: f64,
    /// `some_seconds` over the run's wall time.
    pub some_share: f64,
    /// Time every non-idle task was stalled at once (absent for `cpu.pressure` on kernels that
    /// do not report it), seconds, and its share of wall time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_share: Option<f64>,
}

/// The cgroup's pressure stall information (`cpu.pressure`, `memory.pressure`,
/// `io.pressure`), each where the kernel has it.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Pressure {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Stall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Stall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io: Option<Stall>,
}

/// How long the container's runnable tasks waited for a CPU (the kernel's per-task
/// `sched_info.run_delay`, summed).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct RunQueueWait {
    /// Wait summed over tasks, seconds.
    pub seconds: f64,
    /// `seconds / (seconds + cpu_seconds)`: the share of runnable time spent waiting.
    pub share: f64,
    /// `ebpf` (every task, short-lived ones included) or `proc` (`/proc/PID/schedstat` of
    /// the processes seen at the scans: tasks that lived between two scans are missed).
    pub source: Source,
}

/// Block I/O (`io.stat` on v2, `blkio.throttle.io_service_bytes`/`_serviced` on v1).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DiskIo {
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub read_ops: u64,
    pub write_ops: u64,
    /// Rates over each interval, bytes per second.
    pub read_bytes_per_sec: Stats,
    pub write_bytes_per_sec: Stats,
}

/// What the memory was, at the sample where it peaked (`memory.stat`), and the memory
/// events of the run (`memory.events`).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct MemoryDetail {
    /// Anonymous memory (`anon`; v1 `rss`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anon_bytes: Option<u64>,
    /// Page cache (`file`; v1 `cache`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_bytes: Option<u64>,
    /// Kernel memory (`kernel`, 5.18+; else `slab` + `kernel_stack` + `pagetables`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_bytes: Option<u64>,
    /// Network buffers (`sock`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sock_bytes: Option<u64>,
    /// Major page faults over the run (`pgmajfault`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub major_faults: Option<u64>,
    /// Times over `memory.high` (reclaim and throttling) and at `memory.max`, over the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_events: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_events: Option<u64>,
}

/// Processes grouped by command name.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CommandSummary {
    /// Command name (`comm`).
    pub name: String,
    /// Processes of that name seen in the run.
    pub processes: u64,
    /// Their CPU time, seconds.
    pub cpu_seconds: f64,
    /// The largest peak RSS of one of them, bytes.
    pub peak_rss_bytes: u64,
    /// The longest-lived one's lifetime, seconds.
    pub longest_seconds: f64,
}

/// A one-line answer to "was it held back".
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Verdict {
    /// Held back by CPU, memory or I/O beyond the thresholds.
    pub starved: bool,
    /// What held it back: `cpu`, `memory`, `io`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by: Vec<String>,
    /// For a person: `CPU-starved for 35 % of the run: throttled 20 % of periods (quota 1
    /// core), waiting for a CPU 15 %`.
    pub text: String,
}

/// The verdict on one container.
pub fn verdict(c: &ContainerSummary) -> Verdict {
    let mut by = Vec::new();
    let mut parts = Vec::new();
    let pct = |share: f64| format!("{:.0} %", share * 100.0);
    // CPU: throttling, waiting for a CPU, PSI.
    let throttled = c
        .cpu_throttling
        .filter(|t| t.quota_cores.is_some())
        .map_or(0.0, |t| t.throttled_period_share);
    let waiting = c.run_queue_wait.map_or(0.0, |w| w.share);
    let cpu_stall = c.pressure.and_then(|p| p.cpu).map_or(0.0, |s| s.some_share);
    let cpu_share = throttled.max(waiting).max(cpu_stall);
    if cpu_share >= CPU_STARVED_SHARE {
        by.push("cpu".to_owned());
        let mut why = Vec::new();
        if let Some(t) = c.cpu_throttling.filter(|t| t.throttled_periods > 0) {
            let quota = t.quota_cores.map_or(String::new(), |q| {
                let unit = if (q - 1.0).abs() < 1e-9 {
                    "core"
                } else {
                    "cores"
                };
                format!(" (quota {} {unit})", trim(q))
            });
            why.push(format!(
                "throttled {} of periods{quota}",
                pct(t.throttled_period_share)
            ));
        }
        if waiting > 0.0 {
            why.push(format!("waiting for a CPU {}", pct(waiting)));
        }
        if cpu_stall > 0.0 {
            why.push(format!("CPU pressure {}", pct(cpu_stall)));
        }
        parts.push(format!(
            "CPU-starved for {} of the run: {}",
            pct(cpu_share),
            why.join(", ")
        ));
    }
    // Memory: OOM kills, PSI.
    let mem = c.pressure.and_then(|p| p.memory);
    let mem_share = mem.map_or(0.0, |s| s.some_share);
    if c.oom_kills > 0 || mem_share >= MEMORY_STARVED_SHARE {
        by.push("memory".to_owned());
        let mut why = Vec::new();
        if c.oom_kills > 0 {
            why.push(format!("{} OOM kill(s)", c.oom_kills));
        }
        if let Some(s) = mem.filter(|s| s.some_seconds > 0.0) {
            why.push(format!(
                "memory pressure stalled it {:.1} s ({})",
                s.some_seconds,
                pct(s.some_share)
            ));
        }
        if let Some(h) = c
            .memory_detail
            .and_then(|m| m.high_events)
            .filter(|h| *h > 0)
        {
            why.push(format!("{h} times over memory.high"));
        }
        parts.push(format!("memory-starved: {}", why.join(", ")));
    }
    // I/O: PSI full.
    if let Some(s) = c.pressure.and_then(|p| p.io)
        && s.full_share.unwrap_or(0.0) >= IO_STARVED_SHARE
    {
        by.push("io".to_owned());
        parts.push(format!(
            "I/O-starved: every task waited on I/O for {:.1} s ({})",
            s.full_seconds.unwrap_or(0.0),
            pct(s.full_share.unwrap_or(0.0))
        ));
    }
    let starved = !by.is_empty();
    let text = if starved {
        parts.join("; ")
    } else if c.cpu_throttling.is_none() && c.pressure.is_none() && c.run_queue_wait.is_none() {
        "no starvation figures on this machine".to_owned()
    } else {
        // Only what was measured: an unknown figure is left out, not shown as 0.
        let mut known = Vec::new();
        match c.cpu_throttling {
            Some(Throttling {
                quota_cores: None, ..
            }) => known.push("no CPU quota".to_owned()),
            Some(t) => known.push(format!(
                "throttled {} of periods",
                pct(t.throttled_period_share)
            )),
            None => {}
        }
        if c.run_queue_wait.is_some() {
            known.push(format!("waiting for a CPU {}", pct(waiting)));
        }
        if let Some(p) = c.pressure {
            for (what, s) in [("CPU", p.cpu), ("memory", p.memory), ("I/O", p.io)] {
                if let Some(s) = s {
                    known.push(format!("{what} pressure {}", pct(s.some_share)));
                }
            }
        }
        format!("not starved: {}", known.join(", "))
    };
    Verdict { starved, by, text }
}

/// The job's verdict from its containers': starved when one is, naming each that was.
/// `None` when no container has starvation figures.
pub fn job_verdict(containers: &[ContainerSummary]) -> Option<Verdict> {
    let verdicts: Vec<(&str, &Verdict)> = containers
        .iter()
        .filter_map(|c| Some((c.name.as_str(), c.verdict.as_ref()?)))
        .collect();
    if verdicts.is_empty() {
        return None;
    }
    let starved: Vec<&(&str, &Verdict)> = verdicts.iter().filter(|(_, v)| v.starved).collect();
    let mut by: Vec<String> = Vec::new();
    for (_, v) in &starved {
        for b in &v.by {
            if !by.contains(b) {
                by.push(b.clone());
            }
        }
    }
    let text = if starved.is_empty() {
        match verdicts.as_slice() {
            [(_, v)] => v.text.clone(),
            _ => "not starved".to_owned(),
        }
    } else {
        // Bounded (validation takes 2 KiB): the first three, then how many more.
        let mut parts: Vec<String> = starved
            .iter()
            .take(3)
            .map(|(name, v)| format!("{name}: {}", v.text))
            .collect();
        if starved.len() > 3 {
            parts.push(format!("and {} more containers", starved.len() - 3));
        }
        let mut text = parts.join("; ");
        if text.len() > 2000 {
            let mut cut = 2000;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        text
    };
    Some(Verdict {
        starved: !starved.is_empty(),
        by,
        text,
    })
}

/// `1`, `0.5`, `1.25`: a core count without trailing zeros.
fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container() -> ContainerSummary {
        ContainerSummary {
            name: "build".into(),
            cpu_seconds: 100.0,
            ..Default::default()
        }
    }

    #[test]
    fn a_throttled_and_waiting_job_is_cpu_starved() {
        let mut c = container();
        c.cpu_throttling = Some(Throttling {
            quota_cores: Some(1.0),
            periods: 1000,
            throttled_periods: 200,
            throttled_seconds: 12.0,
            throttled_period_share: 0.2,
            ..Default::default()
        });
        c.run_queue_wait = Some(RunQueueWait {
            seconds: 17.6,
            share: 0.15,
            source: Source::Ebpf,
        });
        let v = verdict(&c);
        assert!(v.starved);
        assert_eq!(v.by, ["cpu"]);
        assert_eq!(
            v.text,
            "CPU-starved for 20 % of the run: throttled 20 % of periods (quota 1 core), waiting for a CPU 15 %"
        );
    }

    #[test]
    fn memory_pressure_and_kills() {
        let mut c = container();
        c.oom_kills = 1;
        c.pressure = Some(Pressure {
            memory: Some(Stall {
                some_seconds: 12.0,
                some_share: 0.12,
                ..Default::default()
            }),
            ..Default::default()
        });
        let v = verdict(&c);
        assert_eq!(v.by, ["memory"]);
        assert_eq!(
            v.text,
            "memory-starved: 1 OOM kill(s), memory pressure stalled it 12.0 s (12 %)"
        );
    }

    #[test]
    fn the_job_names_its_starved_containers_within_bounds() {
        let mut starved = container();
        starved.oom_kills = 1;
        starved.verdict = Some(verdict(&starved));
        let mut fine = container();
        fine.name = "sidecar".into();
        fine.cpu_throttling = Some(Throttling::default());
        fine.verdict = Some(verdict(&fine));
        let v = job_verdict(&[starved.clone(), fine.clone()]).unwrap();
        assert!(v.starved);
        assert_eq!(v.text, "build: memory-starved: 1 OOM kill(s)");
        assert!(!job_verdict(&[fine]).unwrap().starved);
        assert!(job_verdict(&[container()]).is_none());
        let mut many: Vec<ContainerSummary> = (0..50).map(|_| starved.clone()).collect();
        many[0].name = "x".repeat(3000);
        let v = job_verdict(&many).unwrap();
        assert!(v.text.len() <= 2004, "{}", v.text.len());
    }

    #[test]
    fn an_unstarved_job_says_so_and_no_quota_is_not_a_zero() {
        let mut c = container();
        c.cpu_throttling = Some(Throttling::default());
        c.run_queue_wait = Some(RunQueueWait {
            seconds: 1.0,
            share: 0.01,
            source: Source::Ebpf,
        });
        let v = verdict(&c);
        assert!(!v.starved);
        assert_eq!(v.text, "not starved: no CPU quota, waiting for a CPU 1 %");
        assert_eq!(
            verdict(&container()).text,
            "no starvation figures on this machine"
        );
    }
}
