//! Was a container held back, by what, and for how long: CPU throttling, pressure stall
//! information (PSI), run-queue wait, disk I/O and memory detail, and the one-line
//! [`Verdict`] made from them. All additive fields of [`ContainerSummary`] and
//! [`RunSummary`]; the verdict is pure maths over them.

use serde::{Deserialize, Serialize};

use crate::{
    ContainerSummary, RunSummary, Source, Stats,
    behind::{self, Behind, Cause, HolderKind, describe},
    units::seconds,
};

// When a container counts as starved. Each figure is weighed against the run's **wall time**
// (or, for throttling, the CPU periods the kernel enforced), never against the time the
// tasks happened to be ready to run: a light command that waited 3 ms out of its 5 ms of
// wanting a CPU waited 60 % of its runnable time and 1 % of the run. And each figure must
// also amount to [`MIN_LOST_SECONDS`]: on a busy runner every short job waits a few
// milliseconds, and a verdict that calls that starvation teaches people to ignore it.

/// The least time lost (waiting, throttled or stalled, seconds) that can make a container
/// starved, whatever the shares: a second, not milliseconds.
pub const MIN_LOST_SECONDS: f64 = 1.0;
/// CPU-starved by throttling: this share of the enforced CPU periods throttled (`cpu.stat`),
/// with at least [`MIN_LOST_SECONDS`] throttled.
pub const CPU_THROTTLED_SHARE: f64 = 0.10;
/// CPU-starved by waiting: this many of its tasks waiting for a CPU on average over the
/// run (`run_queue_wait.seconds / wall`: 0.10 is one task waiting 10 % of the run), with at
/// least [`MIN_LOST_SECONDS`] of wait.
pub const CPU_WAITING_TASKS: f64 = 0.10;
/// CPU-starved by pressure: some task stalled on CPU (PSI `some`) for this share of the
/// wall time, with at least [`MIN_LOST_SECONDS`] stalled.
pub const CPU_PRESSURE_SHARE: f64 = 0.10;
/// Memory-starved: some task stalled on memory (PSI `some`) for this share of the wall
/// time, with at least [`MIN_LOST_SECONDS`] stalled; any OOM kill is memory starvation too.
pub const MEMORY_PRESSURE_SHARE: f64 = 0.05;
/// I/O-starved: every task stalled on I/O at once (PSI `full`) for this share of the wall
/// time, with at least [`MIN_LOST_SECONDS`] stalled.
pub const IO_PRESSURE_SHARE: f64 = 0.10;

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
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RunQueueWait {
    /// Wait summed over tasks, seconds.
    pub seconds: f64,
    /// `seconds / (seconds + cpu_seconds)`: the share of runnable time spent waiting.
    pub share: f64,
    /// `seconds / wall`: how many of its tasks waited for a CPU on average over the run (one
    /// task waiting the whole run is 1.0). What the verdict weighs; absent in summaries from
    /// before it was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks_waiting: Option<f64>,
    /// `ebpf` (every task, short-lived ones included) or `proc` (`/proc/PID/schedstat` of
    /// the processes seen at the scans: tasks that lived between two scans are missed).
    pub source: Source,
    /// Who held the CPU while it waited (eBPF only), largest first, at most
    /// [`behind::MAX_BEHIND`], adding up to `seconds`; the wait while it was throttled is its
    /// quota's (see `docs/starvation.md` for what is exact and what approximate).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub behind: Vec<Behind>,
}

impl RunQueueWait {
    /// The wait spent throttled (counted as throttling, not as waiting): the `behind`
    /// list's quota entry, or without attribution as much of the wait as `throttled`.
    pub fn throttled_part(&self, throttled: Option<&Throttling>) -> f64 {
        if !self.behind.is_empty() {
            return self
                .behind
                .iter()
                .filter(|b| b.kind == HolderKind::Quota)
                .map(|b| b.seconds)
                .sum();
        }
        throttled
            .filter(|t| t.quota_cores.is_some())
            .map_or(0.0, |t| t.throttled_seconds.clamp(0.0, self.seconds))
    }

    /// The wait beyond throttling, with its shares: `seconds` less [`Self::throttled_part`],
    /// `tasks_waiting` scaled alike, `share` against `cpu_seconds`.
    pub fn beyond_throttling(&self, throttled: Option<&Throttling>, cpu_seconds: f64) -> Self {
        let part = self.throttled_part(throttled);
        if part <= 0.0 || self.seconds <= 0.0 {
            return self.clone();
        }
        let seconds = (self.seconds - part).max(0.0);
        let runnable = seconds + cpu_seconds.max(0.0);
        Self {
            seconds,
            share: if runnable > 0.0 {
                seconds / runnable
            } else {
                0.0
            },
            tasks_waiting: self.tasks_waiting.map(|n| n * seconds / self.seconds),
            ..self.clone()
        }
    }
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
    /// For a person, each figure with its denominator: `CPU-starved: throttled 20 % of
    /// periods (12.0 s; quota 1 core), waiting for a CPU 18 % of the run (17.6 s; 0.18 tasks
    /// on average; 15 % of the time it was ready to run)`. Summaries stored before carry the
    /// older wording.
    pub text: String,
    /// For a CPU shortage, whether more cores help (`self_inflicted`) or isolation does
    /// (`contention`); absent when not CPU-starved or when nothing tells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
}

/// The verdict on one container, by the rules of the constants above.
pub fn verdict(c: &ContainerSummary) -> Verdict {
    let mut by = Vec::new();
    let mut parts = Vec::new();
    let matters =
        |lost: f64, share: f64, threshold: f64| lost >= MIN_LOST_SECONDS && share >= threshold;
    // CPU: throttling (of periods), waiting (tasks on average over the run), PSI (of the run).
    let throttling = c.cpu_throttling.filter(|t| t.quota_cores.is_some());
    // Time spent throttled counts once, as throttling.
    let wait = c
        .run_queue_wait
        .as_ref()
        .map(|w| w.beyond_throttling(throttling.as_ref(), c.cpu_seconds));
    let cpu_stall = c.pressure.and_then(|p| p.cpu);
    let by_quota = throttling.is_some_and(|t| {
        matters(
            t.throttled_seconds,
            t.throttled_period_share,
            CPU_THROTTLED_SHARE,
        )
    });
    let cpu_starved = by_quota
        || wait
            .as_ref()
            .is_some_and(|w| matters(w.seconds, w.tasks_waiting.unwrap_or(0.0), CPU_WAITING_TASKS))
        || cpu_stall.is_some_and(|s| matters(s.some_seconds, s.some_share, CPU_PRESSURE_SHARE));
    let mut cause = None;
    if cpu_starved {
        by.push("cpu".to_owned());
        let mut why = Vec::new();
        if let Some(t) = throttling.filter(|t| t.throttled_periods > 0) {
            why.push(throttled_text(&t));
        }
        if let Some(w) = wait.as_ref().filter(|w| w.seconds > 0.0) {
            why.push(waiting_text(w));
        }
        if let Some(s) = cpu_stall.filter(|s| s.some_seconds > 0.0) {
            why.push(stall_text("CPU pressure", s.some_seconds, s.some_share));
        }
        let held = c.run_queue_wait.as_ref().map_or(&[][..], |w| &w.behind[..]);
        cause = behind::cause(held).or(by_quota.then_some(Cause::SelfInflicted));
        let decision = match cause {
            Some(Cause::SelfInflicted) => "; self-inflicted, more cores help",
            Some(Cause::Contention) => "; contention, isolation or a less loaded node helps",
            None => "",
        };
        let named = if held.is_empty() {
            String::new()
        } else {
            format!(" (held back by {})", behind::describe(held, &c.name, 3))
        };
        parts.push(format!("CPU-starved: {}{decision}{named}", why.join(", ")));
    }
    // Memory: OOM kills, PSI.
    let mem = c.pressure.and_then(|p| p.memory);
    let mem_starved =
        mem.is_some_and(|s| matters(s.some_seconds, s.some_share, MEMORY_PRESSURE_SHARE));
    if c.oom_kills > 0 || mem_starved {
        by.push("memory".to_owned());
        let mut why = Vec::new();
        if c.oom_kills > 0 {
            why.push(format!("{} OOM kill(s)", c.oom_kills));
        }
        if let Some(s) = mem.filter(|s| s.some_seconds > 0.0) {
            why.push(stall_text(
                "memory pressure stalled it",
                s.some_seconds,
                s.some_share,
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
        && let Some(full) = s.full_seconds
        && matters(full, s.full_share.unwrap_or(0.0), IO_PRESSURE_SHARE)
    {
        by.push("io".to_owned());
        parts.push(format!(
            "I/O-starved: {}",
            stall_text(
                "every task waited on I/O",
                full,
                s.full_share.unwrap_or(0.0)
            )
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
            Some(t) => known.push(throttled_text(&t)),
            None => {}
        }
        if let Some(w) = &wait {
            known.push(waiting_text(w));
        }
        if let Some(p) = c.pressure {
            for (what, s) in [("CPU", p.cpu), ("memory", p.memory), ("I/O", p.io)] {
                if let Some(s) = s {
                    known.push(stall_text(
                        &format!("{what} pressure"),
                        s.some_seconds,
                        s.some_share,
                    ));
                }
            }
        }
        format!("not starved: {}", known.join(", "))
    };
    Verdict {
        starved,
        by,
        text,
        cause,
    }
}

/// Whether a wait is long enough for a "held back by" table: the verdict's floor, so light
/// jobs' few milliseconds add no noise.
pub fn worth_showing(w: &RunQueueWait) -> bool {
    !w.behind.is_empty() && w.seconds >= MIN_LOST_SECONDS
}

/// The rows of a run's "held back by" table: each container whose wait is
/// [`worth_showing`], with it (the Markdown report and the web run page draw the same).
pub fn held_back_rows(s: &RunSummary) -> Vec<(&ContainerSummary, &RunQueueWait)> {
    s.containers
        .iter()
        .filter_map(|c| Some((c, c.run_queue_wait.as_ref()?)))
        .filter(|(_, w)| worth_showing(w))
        .collect()
}

/// The wait more cores would have made up, seconds: behind itself and its own job (the
/// quota counts as throttling, apart). Without attribution (`/proc` source) all of the wait
/// beyond throttling, as nothing tells otherwise.
pub fn self_inflicted_wait(w: &RunQueueWait, throttling: Option<&Throttling>) -> f64 {
    if w.behind.is_empty() {
        return w.beyond_throttling(throttling, 0.0).seconds;
    }
    w.behind
        .iter()
        .filter(|b| matches!(b.kind, HolderKind::Itself | HolderKind::OwnJob))
        .map(|b| b.seconds)
        .sum()
}

/// For a job's row: the cause of its CPU-starved containers' shortage and who held the CPU
/// most while they waited (`contention: lint-7 (o/r ci lint #3) 21.0 s`); `None` when no
/// CPU-starved container has a cause.
pub fn held_back_by(containers: &[ContainerSummary]) -> Option<String> {
    let wait = |c: &ContainerSummary| c.run_queue_wait.as_ref().map_or(0.0, |w| w.seconds);
    let (c, cause) = containers
        .iter()
        .filter_map(|c| {
            let v = c.verdict.as_ref().filter(|v| v.starved)?;
            Some((c, v.cause?))
        })
        .max_by(|a, b| wait(a.0).total_cmp(&wait(b.0)))?;
    let cause = match cause {
        Cause::SelfInflicted => "self-inflicted",
        Cause::Contention => "contention",
    };
    let top = c
        .run_queue_wait
        .as_ref()
        .map(|w| describe(&w.behind, &c.name, 1))
        .filter(|t| !t.is_empty());
    Some(match top {
        Some(top) => format!("{cause}: {top}"),
        None => cause.to_owned(),
    })
}

/// `12 %`
fn pct(share: f64) -> String {
    format!("{:.0} %", share * 100.0)
}

/// `throttled 20 % of periods (1.9 s; quota 0.5 cores)`
fn throttled_text(t: &Throttling) -> String {
    let quota = t.quota_cores.map_or(String::new(), |q| {
        let unit = if (q - 1.0).abs() < 1e-9 {
            "core"
        } else {
            "cores"
        };
        format!("; quota {} {unit}", trim(q))
    });
    format!(
        "throttled {} of periods ({}{quota})",
        pct(t.throttled_period_share),
        seconds(t.throttled_seconds)
    )
}

/// `waiting for a CPU 23 % of the run (2.3 s; 0.23 tasks on average; 41 % of the time it was
/// ready to run)`; with more than one task waiting on average, the count leads.
fn waiting_text(w: &RunQueueWait) -> String {
    if w.seconds == 0.0 {
        return "waiting for a CPU 0 % of the run".to_owned();
    }
    let ready = format!("{} of the time it was ready to run", pct(w.share));
    match w.tasks_waiting {
        Some(n) if n > 1.0 => format!(
            "{n:.1} tasks waiting for a CPU on average ({}; {ready})",
            seconds(w.seconds)
        ),
        Some(n) => format!(
            "waiting for a CPU {} of the run ({}; {n:.2} tasks on average; {ready})",
            pct(n),
            seconds(w.seconds)
        ),
        None => format!("waiting for a CPU {} ({ready})", seconds(w.seconds)),
    }
}

/// `CPU pressure 41 % of the run (0.8 s)`
fn stall_text(what: &str, lost: f64, share: f64) -> String {
    format!("{what} {} of the run ({})", pct(share), seconds(lost))
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
    // One cause for the job where its starved containers agree.
    let mut causes = starved.iter().map(|(_, v)| v.cause);
    let first = causes.next().flatten();
    let cause = if causes.all(|c| c == first) {
        first
    } else {
        None
    };
    Some(Verdict {
        starved: !starved.is_empty(),
        by,
        text,
        cause,
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

    fn wait(seconds: f64, cpu_seconds: f64, wall_seconds: f64) -> RunQueueWait {
        RunQueueWait {
            seconds,
            share: seconds / (seconds + cpu_seconds),
            tasks_waiting: Some(seconds / wall_seconds),
            source: Source::Ebpf,
            behind: Vec::new(),
        }
    }

    fn cpu_pressure(some_seconds: f64, wall_seconds: f64) -> Option<Pressure> {
        Some(Pressure {
            cpu: Some(Stall {
                some_seconds,
                some_share: some_seconds / wall_seconds,
                ..Default::default()
            }),
            ..Default::default()
        })
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
        c.run_queue_wait = Some(wait(17.6, 100.0, 100.0));
        let v = verdict(&c);
        assert!(v.starved);
        assert_eq!(v.by, ["cpu"]);
        // The 12 s throttled count once, as throttling: 5.6 s of the 17.6 s are waiting.
        assert_eq!(
            v.text,
            "CPU-starved: throttled 20 % of periods (12.0 s; quota 1 core), waiting for a CPU \
             6 % of the run (5.6 s; 0.06 tasks on average; 5 % of the time it was ready to run); \
             self-inflicted, more cores help"
        );
        assert_eq!(v.cause, Some(Cause::SelfInflicted));
    }

    /// Who held the CPU decides what helps: the job's own processes, or another job.
    #[test]
    fn the_verdict_names_who_held_the_cpu_and_what_helps() {
        let mut c = container();
        let mut w = wait(30.0, 100.0, 100.0);
        w.behind = vec![
            Behind::new(
                HolderKind::OtherJob,
                "build-2",
                Some("o/r ci b #2".into()),
                25.0,
            ),
            Behind::new(HolderKind::Itself, "build", None, 4.0),
            Behind::new(HolderKind::Nobody, behind::NOBODY, None, 1.0),
        ];
        c.run_queue_wait = Some(w.clone());
        let v = verdict(&c);
        assert!(v.starved);
        assert_eq!(v.cause, Some(Cause::Contention));
        assert!(
            v.text.ends_with(
                "; contention, isolation or a less loaded node helps (held back by \
                 build-2 (o/r ci b #2) 25.0 s, itself 4.0 s, nobody (idle CPU, interrupts) 1.0 s)"
            ),
            "{}",
            v.text
        );
        w.behind[0].kind = HolderKind::OwnJob;
        c.run_queue_wait = Some(w.clone());
        assert_eq!(verdict(&c).cause, Some(Cause::SelfInflicted));
        // Not starved: no cause, whoever held the CPU.
        let mut light = wait(0.02, 0.005, 1.0);
        light.behind = vec![Behind::new(HolderKind::OtherJob, "x", None, 0.02)];
        c.cpu_seconds = 0.005;
        c.run_queue_wait = Some(light);
        let v = verdict(&c);
        assert!(!v.starved && v.cause.is_none(), "{v:?}");
    }

    /// Two burners of one job on one CPU: each waits half the run.
    #[test]
    fn tasks_outnumbering_their_cpu_are_cpu_starved() {
        let mut c = container();
        c.cpu_seconds = 3.0;
        c.run_queue_wait = Some(wait(3.0, 3.0, 3.0));
        c.pressure = cpu_pressure(2.9, 3.0);
        let v = verdict(&c);
        assert!(v.starved, "{v:?}");
        assert_eq!(
            v.text,
            "CPU-starved: waiting for a CPU 100 % of the run (3.0 s; 1.00 tasks on average; 50 % \
             of the time it was ready to run), CPU pressure 97 % of the run (2.9 s)"
        );
        // Eight tasks on two CPUs for 10 s: six wait all along.
        c.run_queue_wait = Some(wait(60.0, 20.0, 10.0));
        assert!(
            verdict(&c)
                .text
                .contains("6.0 tasks waiting for a CPU on average (60.0 s; 75 % of the time")
        );
    }

    /// What the verdict called starved before it weighed wall time and required a second:
    /// a `sleep 0.3` beside a build (3.5 ms of wait, 59 % of its runnable time), containers
    /// with no CPU that waited 0.1 to 0.4 s, a sleeper holding memory.
    #[test]
    fn light_and_idle_containers_are_not_starved() {
        for (wait_s, cpu_s, wall_s, some_s) in [
            (0.0035, 0.0024, 0.31, 0.003),
            (0.4, 0.0, 1.0, 0.4),
            (0.1, 0.0, 15.0, 0.1),
            (0.28, 0.72, 15.0, 0.25),
            // A sleeper that wakes five times a second for a moment, for 60 s, beside two
            // burners on its CPU: up to 3 ms at each wake-up.
            (0.9, 0.3, 60.0, 0.9),
        ] {
            let mut c = container();
            c.cpu_seconds = cpu_s;
            c.run_queue_wait = Some(wait(wait_s, cpu_s, wall_s));
            c.pressure = cpu_pressure(some_s, wall_s);
            c.cpu_throttling = Some(Throttling::default());
            let v = verdict(&c);
            assert!(!v.starved, "{wait_s} s of wait in {wall_s} s: {v:?}");
            assert!(
                v.text
                    .starts_with("not starved: no CPU quota, waiting for a CPU"),
                "{v:?}"
            );
        }
        // Milliseconds read as such, not as 0.0 s.
        let mut c = container();
        c.run_queue_wait = Some(wait(0.0035, 0.0024, 0.31));
        assert!(
            verdict(&c)
                .text
                .contains("(4 ms; 0.01 tasks on average; 59 % of"),
            "{:?}",
            verdict(&c)
        );
    }

    /// A short, heavily throttled job: 91 % of its periods throttled, but 0.2 s lost.
    #[test]
    fn throttling_needs_a_second_lost() {
        let mut c = container();
        let t = Throttling {
            quota_cores: Some(0.5),
            periods: 11,
            throttled_periods: 10,
            throttled_seconds: 0.2,
            throttled_period_share: 10.0 / 11.0,
            ..Default::default()
        };
        c.cpu_throttling = Some(t);
        assert!(!verdict(&c).starved);
        c.cpu_throttling = Some(Throttling {
            throttled_seconds: 1.5,
            ..t
        });
        let v = verdict(&c);
        assert!(v.starved);
        assert_eq!(
            v.text,
            "CPU-starved: throttled 91 % of periods (1.5 s; quota 0.5 cores); self-inflicted, more \
             cores help"
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
            "memory-starved: 1 OOM kill(s), memory pressure stalled it 12 % of the run (12.0 s)"
        );
        // Reclaim that stalled a short job 30 ms (10 % of it) is not starvation; an OOM kill
        // always is.
        c.oom_kills = 0;
        c.pressure = Some(Pressure {
            memory: Some(Stall {
                some_seconds: 0.03,
                some_share: 0.1,
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(!verdict(&c).starved, "{:?}", verdict(&c));
    }

    #[test]
    fn io_starvation_needs_every_task_stalled_for_a_second() {
        let mut c = container();
        let io = |full: f64, share: f64| Stall {
            some_seconds: full,
            some_share: share,
            full_seconds: Some(full),
            full_share: Some(share),
        };
        c.pressure = Some(Pressure {
            io: Some(io(0.5, 0.5)),
            ..Default::default()
        });
        assert!(!verdict(&c).starved);
        c.pressure = Some(Pressure {
            io: Some(io(3.0, 0.3)),
            ..Default::default()
        });
        let v = verdict(&c);
        assert_eq!(v.by, ["io"]);
        assert_eq!(
            v.text,
            "I/O-starved: every task waited on I/O 30 % of the run (3.0 s)"
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
        c.run_queue_wait = Some(wait(1.0, 99.0, 100.0));
        let v = verdict(&c);
        assert!(!v.starved);
        assert_eq!(
            v.text,
            "not starved: no CPU quota, waiting for a CPU 1 % of the run (1.0 s; 0.01 tasks on \
             average; 1 % of the time it was ready to run)"
        );
        assert_eq!(
            verdict(&container()).text,
            "no starvation figures on this machine"
        );
        // A summary from before `tasks_waiting`: its wait is shown, and cannot starve it.
        c.run_queue_wait = Some(RunQueueWait {
            tasks_waiting: None,
            ..wait(50.0, 50.0, 60.0)
        });
        let v = verdict(&c);
        assert!(!v.starved);
        assert!(
            v.text
                .contains("waiting for a CPU 50.0 s (50 % of the time"),
            "{v:?}"
        );
    }
}
