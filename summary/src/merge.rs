//! Merging two summaries of one run measured in two pieces (node mode across a collector
//! restart): the statistics are merged through their HDR histograms, totals (CPU, OOM
//! kills, network, throttling, stalls, waits, I/O, commands) are added, shares and verdicts
//! recomputed.

use crate::validate::MAX_CPU_SECONDS;
use crate::{Accumulator, ContainerSummary, Histograms, RunSummary, Stats, hist};

/// The run from `earlier`'s start to `later`'s end.
pub fn merge_runs(earlier: &RunSummary, later: &RunSummary) -> RunSummary {
    let mut out = later.clone();
    out.start_time.clone_from(&earlier.start_time);
    if let (Some(start), Some(end)) = (
        crate::time::parse_rfc3339(&earlier.start_time),
        crate::time::parse_rfc3339(&later.end_time),
    ) {
        out.duration_seconds = end
            .duration_since(start)
            .map(|d| d.as_secs_f64())
            .unwrap_or(out.duration_seconds);
    }
    out.timeline = match (&earlier.timeline, &later.timeline) {
        (Some(a), Some(b)) => {
            let offset = crate::time::parse_rfc3339(&earlier.start_time)
                .zip(crate::time::parse_rfc3339(&later.start_time))
                .and_then(|(a, b)| b.duration_since(a).ok())
                .map_or(earlier.duration_seconds, |d| d.as_secs_f64());
            Some(crate::timeline::merge(a, b, offset))
        }
        (a, b) => b.clone().or_else(|| a.clone()),
    };
    // Counters saturate: a hostile or corrupt piece must not overflow (found by fuzzing).
    out.sample_count = earlier.sample_count.saturating_add(later.sample_count);
    let mut histograms = later.histograms.clone().unwrap_or_default();
    if let Some(s) = merge_metric(
        earlier.histograms.as_ref(),
        later.histograms.as_ref(),
        hist::CPU_TOTAL_PERCENT,
        &mut histograms,
    ) {
        out.cpu_total_percent = s;
    }
    if let Some(s) = merge_metric(
        earlier.histograms.as_ref(),
        later.histograms.as_ref(),
        hist::MEM_USED_BYTES,
        &mut histograms,
    ) {
        out.mem_used_bytes = s;
    }
    out.histograms = Some(histograms).filter(|h| !h.is_empty());
    for a in &earlier.containers {
        match out.containers.iter_mut().find(|c| c.name == a.name) {
            Some(b) => *b = merge_container(a, b),
            None => out.containers.push(a.clone()),
        }
    }
    out.containers.sort_by(|a, b| a.name.cmp(&b.name));
    for (mine, theirs) in [
        (&mut out.top_cpu_processes, &earlier.top_cpu_processes),
        (&mut out.top_mem_processes, &earlier.top_mem_processes),
    ] {
        let keep = mine.len().max(theirs.len());
        mine.extend(theirs.iter().cloned());
        mine.dedup_by(|a, b| a.pid == b.pid && a.name == b.name);
        mine.truncate(keep.max(1) * 2);
    }
    out.top_cpu_processes
        .sort_by(|a, b| b.cpu_seconds.total_cmp(&a.cpu_seconds));
    out.top_mem_processes
        .sort_by_key(|p| std::cmp::Reverse(p.peak_mem_rss_bytes));
    let keep_cpu = earlier
        .top_cpu_processes
        .len()
        .max(later.top_cpu_processes.len());
    let keep_mem = earlier
        .top_mem_processes
        .len()
        .max(later.top_mem_processes.len());
    out.top_cpu_processes.truncate(keep_cpu);
    out.top_mem_processes.truncate(keep_mem);
    let keep_commands = earlier.top_commands.len().max(later.top_commands.len());
    for c in &earlier.top_commands {
        match out.top_commands.iter_mut().find(|o| o.name == c.name) {
            Some(o) => {
                o.processes = o.processes.saturating_add(c.processes);
                o.cpu_seconds = (o.cpu_seconds + c.cpu_seconds).min(MAX_CPU_SECONDS);
                o.peak_rss_bytes = o.peak_rss_bytes.max(c.peak_rss_bytes);
                o.longest_seconds = o.longest_seconds.max(c.longest_seconds);
            }
            None => out.top_commands.push(c.clone()),
        }
    }
    out.top_commands
        .sort_by(|a, b| b.cpu_seconds.total_cmp(&a.cpu_seconds));
    out.top_commands.truncate(keep_commands);
    let duration = out.duration_seconds;
    for c in &mut out.containers {
        starvation_shares(c, duration);
        if c.verdict.is_some()
            || earlier
                .containers
                .iter()
                .any(|e| e.name == c.name && e.verdict.is_some())
        {
            c.verdict = Some(crate::starvation::verdict(c));
        }
    }
    if out.verdict.is_some() || earlier.verdict.is_some() {
        out.verdict = crate::starvation::job_verdict(&out.containers);
    }
    out
}

/// Shares recomputed over the merged run's wall time.
fn starvation_shares(c: &mut ContainerSummary, duration: f64) {
    let share = |s: f64| {
        if duration > 0.0 {
            (s / duration).min(1.0)
        } else {
            0.0
        }
    };
    if let Some(p) = &mut c.pressure {
        for s in [&mut p.cpu, &mut p.memory, &mut p.io].into_iter().flatten() {
            s.some_share = share(s.some_seconds);
            s.full_share = s.full_seconds.map(share);
        }
    }
    if let Some(w) = &mut c.run_queue_wait {
        let runnable = w.seconds + c.cpu_seconds;
        w.share = if runnable > 0.0 {
            w.seconds / runnable
        } else {
            0.0
        };
        w.tasks_waiting = Some(if duration > 0.0 {
            w.seconds / duration
        } else {
            0.0
        });
    }
}

/// The starvation figures of two pieces of one container: counters and times add up;
/// memory detail is the later piece's, with its events added.
fn merge_starvation(a: &ContainerSummary, out: &mut ContainerSummary) {
    let add_opt = |x: Option<u64>, y: Option<u64>| match (x, y) {
        (Some(x), Some(y)) => Some(x.saturating_add(y)),
        (x, y) => x.or(y),
    };
    let add_f = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) => Some((x + y).min(MAX_CPU_SECONDS)),
        (x, y) => x.or(y),
    };
    out.cpu_throttling = match (a.cpu_throttling, out.cpu_throttling) {
        (Some(x), Some(mut y)) => {
            y.periods = y.periods.saturating_add(x.periods);
            y.throttled_periods = y.throttled_periods.saturating_add(x.throttled_periods);
            y.throttled_seconds = (y.throttled_seconds + x.throttled_seconds).min(MAX_CPU_SECONDS);
            y.throttled_period_share = if y.periods > 0 {
                y.throttled_periods as f64 / y.periods as f64
            } else {
                0.0
            };
            y.bursts = add_opt(x.bursts, y.bursts);
            y.burst_seconds = add_f(x.burst_seconds, y.burst_seconds);
            Some(y)
        }
        (x, y) => y.or(x),
    };
    out.pressure = match (a.pressure, out.pressure) {
        (Some(x), Some(mut y)) => {
            for (mine, theirs) in [
                (&mut y.cpu, x.cpu),
                (&mut y.memory, x.memory),
                (&mut y.io, x.io),
            ] {
                *mine = match (*mine, theirs) {
                    (Some(mut m), Some(t)) => {
                        m.some_seconds = (m.some_seconds + t.some_seconds).min(MAX_CPU_SECONDS);
                        m.full_seconds = add_f(m.full_seconds, t.full_seconds);
                        Some(m)
                    }
                    (m, t) => m.or(t),
                };
            }
            Some(y)
        }
        (x, y) => y.or(x),
    };
    out.run_queue_wait = match (&a.run_queue_wait, out.run_queue_wait.take()) {
        (Some(x), Some(mut y)) => {
            y.seconds = (y.seconds + x.seconds).min(MAX_CPU_SECONDS);
            let both = x.behind.iter().chain(&y.behind).cloned().collect();
            y.behind = crate::behind::rank(both, y.seconds);
            Some(y)
        }
        (x, y) => y.or_else(|| x.clone()),
    };
    out.disk_io = match (&a.disk_io, out.disk_io.take()) {
        (Some(x), Some(mut y)) => {
            y.read_bytes = y.read_bytes.saturating_add(x.read_bytes);
            y.write_bytes = y.write_bytes.saturating_add(x.write_bytes);
            y.read_ops = y.read_ops.saturating_add(x.read_ops);
            y.write_ops = y.write_ops.saturating_add(x.write_ops);
            Some(y)
        }
        (x, y) => y.or_else(|| x.clone()),
    };
    out.memory_detail = match (a.memory_detail, out.memory_detail) {
        (Some(x), Some(mut y)) => {
            y.major_faults = add_opt(x.major_faults, y.major_faults);
            y.high_events = add_opt(x.high_events, y.high_events);
            y.max_events = add_opt(x.max_events, y.max_events);
            Some(y)
        }
        (x, y) => y.or(x),
    };
}

fn merge_container(a: &ContainerSummary, b: &ContainerSummary) -> ContainerSummary {
    let mut out = b.clone();
    // Saturates at what validation accepts, like the counters (found by fuzzing): two
    // plausible pieces must not make an implausible run that the receiver refuses.
    out.cpu_seconds = (a.cpu_seconds + b.cpu_seconds).min(MAX_CPU_SECONDS);
    let mut histograms = b.histograms.clone().unwrap_or_default();
    if let Some(s) = merge_metric(
        a.histograms.as_ref(),
        b.histograms.as_ref(),
        hist::CPU_CORES,
        &mut histograms,
    ) {
        out.cpu_cores = s;
    }
    if let Some(s) = merge_metric(
        a.histograms.as_ref(),
        b.histograms.as_ref(),
        hist::MEMORY_BYTES,
        &mut histograms,
    ) {
        out.memory_bytes = s;
    }
    out.histograms = Some(histograms).filter(|h| !h.is_empty());
    out.memory_peak_bytes = a.memory_peak_bytes.max(b.memory_peak_bytes);
    merge_starvation(a, &mut out);
    out.oom_kills = a.oom_kills.saturating_add(b.oom_kills);
    out.network = match (&a.network, &b.network) {
        (Some(x), Some(y)) => {
            let mut n = y.clone();
            n.rx_bytes = n.rx_bytes.saturating_add(x.rx_bytes);
            n.tx_bytes = n.tx_bytes.saturating_add(x.tx_bytes);
            Some(n)
        }
        (x, y) => y.clone().or_else(|| x.clone()),
    };
    out
}

/// Merges one metric's histograms; `None` when either side lacks a decodable one.
fn merge_metric(
    a: Option<&Histograms>,
    b: Option<&Histograms>,
    name: &str,
    into: &mut Histograms,
) -> Option<Stats> {
    let mut acc = Accumulator::decode(a?.get(name)?).ok()?;
    let other = Accumulator::decode(b?.get(name)?).ok()?;
    acc.merge(&other).ok()?;
    into.insert(name.to_owned(), acc.encode());
    Some(acc.stats())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SCALE_BYTES, SCALE_CORES};

    fn run(start: &str, end: &str, cores: &[f64], cpu_seconds: f64) -> RunSummary {
        let mut acc = Accumulator::new(SCALE_CORES);
        let mut mem = Accumulator::new(SCALE_BYTES);
        for c in cores {
            acc.record(*c);
            mem.record(1000.0);
        }
        let mut h = Histograms::new();
        h.insert("cpu_cores".into(), acc.encode());
        h.insert("memory_bytes".into(), mem.encode());
        RunSummary {
            start_time: start.into(),
            end_time: end.into(),
            sample_count: cores.len() as u64,
            containers: vec![ContainerSummary {
                name: "runner".into(),
                cpu_cores: acc.stats(),
                cpu_seconds,
                oom_kills: 1,
                histograms: Some(h),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn timelines_of_two_pieces_line_up_in_time() {
        use crate::timeline::{ContainerTimeline, Timeline};
        let piece = |start: &str, end: &str, cores: u32| RunSummary {
            timeline: Some(Timeline {
                bucket_seconds: 4.0,
                containers: vec![ContainerTimeline {
                    name: "runner".into(),
                    cpu_millicores: vec![cores; 2],
                    cpu_millicores_max: vec![cores; 2],
                    memory_mib: vec![1; 2],
                    memory_mib_max: vec![1; 2],
                    ..Default::default()
                }],
            }),
            ..run(start, end, &[1.0], 1.0)
        };
        // The collector was down from 8 s to 12 s: the later piece's points start at 12 s,
        // and no CPU was read in between.
        let a = piece("2026-01-01T00:00:00.000Z", "2026-01-01T00:00:08.000Z", 1000);
        let b = piece("2026-01-01T00:00:12.000Z", "2026-01-01T00:00:20.000Z", 3000);
        let m = merge_runs(&a, &b);
        let t = m.timeline.as_ref().expect("a merged timeline");
        assert_eq!(t.bucket_seconds, 4.0);
        assert_eq!(t.containers[0].cpu_millicores, [1000, 1000, 0, 3000, 3000]);
        m.validate_at(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000))
            .unwrap();
        // One piece without a timeline (an older collector before the restart) keeps the other's.
        let old = run(
            "2026-01-01T00:00:00.000Z",
            "2026-01-01T00:00:08.000Z",
            &[1.0],
            1.0,
        );
        assert_eq!(merge_runs(&old, &b).timeline, b.timeline);
    }

    #[test]
    fn merges_two_pieces_of_a_run() {
        let a = run(
            "2026-01-01T00:00:00.000Z",
            "2026-01-01T00:00:10.000Z",
            &[1.0, 1.0],
            10.0,
        );
        let b = run(
            "2026-01-01T00:00:12.000Z",
            "2026-01-01T00:00:20.000Z",
            &[2.0, 2.0],
            16.0,
        );
        let m = merge_runs(&a, &b);
        assert_eq!(m.start_time, a.start_time);
        assert_eq!(m.end_time, b.end_time);
        assert!((m.duration_seconds - 20.0).abs() < 1e-9);
        assert_eq!(m.sample_count, 4);
        let c = &m.containers[0];
        assert_eq!(c.cpu_seconds, 26.0);
        assert_eq!(c.oom_kills, 2);
        assert!(
            (c.cpu_cores.peak - 2.0).abs() < 0.01 && (c.cpu_cores.avg - 1.5).abs() < 0.01,
            "{:?}",
            c.cpu_cores
        );
    }

    #[test]
    fn totals_saturate_at_what_validation_accepts() {
        // Found by fuzzing: two pieces each within the limits summed beyond them.
        let max = crate::validate::MAX_CPU_SECONDS;
        let mut a = run(
            "2026-01-01T00:00:00.000Z",
            "2026-01-01T00:00:10.000Z",
            &[1.0],
            max * 0.9,
        );
        a.sample_count = u64::MAX;
        a.containers[0].oom_kills = u64::MAX;
        let b = run(
            "2026-01-01T00:00:12.000Z",
            "2026-01-01T00:00:20.000Z",
            &[1.0],
            max * 0.9,
        );
        let m = merge_runs(&a, &b);
        assert_eq!(m.containers[0].cpu_seconds, max);
        assert_eq!(m.sample_count, u64::MAX);
        assert_eq!(m.containers[0].oom_kills, u64::MAX);
    }

    #[test]
    fn starvation_figures_add_up_and_shares_are_over_the_whole_run() {
        use crate::starvation::{Pressure, Stall, Throttling};
        let piece = |start: &str, end: &str| {
            let mut r = run(start, end, &[1.0], 10.0);
            let c = &mut r.containers[0];
            c.cpu_throttling = Some(Throttling {
                quota_cores: Some(1.0),
                periods: 100,
                throttled_periods: 10,
                throttled_seconds: 1.0,
                throttled_period_share: 0.1,
                ..Default::default()
            });
            c.pressure = Some(Pressure {
                memory: Some(Stall {
                    some_seconds: 1.0,
                    some_share: 0.1,
                    ..Default::default()
                }),
                ..Default::default()
            });
            c.verdict = Some(crate::starvation::verdict(c));
            r.top_commands = vec![crate::starvation::CommandSummary {
                name: "cc1".into(),
                processes: 200,
                cpu_seconds: 100.0,
                ..Default::default()
            }];
            r
        };
        let a = piece("2026-01-01T00:00:00.000Z", "2026-01-01T00:00:10.000Z");
        let b = piece("2026-01-01T00:00:10.000Z", "2026-01-01T00:00:20.000Z");
        let m = merge_runs(&a, &b);
        let c = &m.containers[0];
        let t = c.cpu_throttling.unwrap();
        assert_eq!((t.periods, t.throttled_periods), (200, 20));
        assert!((t.throttled_seconds - 2.0).abs() < 1e-9);
        let s = c.pressure.unwrap().memory.unwrap();
        assert!((s.some_seconds - 2.0).abs() < 1e-9 && (s.some_share - 0.1).abs() < 1e-9);
        assert!(c.verdict.as_ref().unwrap().starved);
        assert_eq!(m.top_commands[0].processes, 400);
    }

    #[test]
    fn containers_of_either_piece_are_kept() {
        let a = run(
            "2026-01-01T00:00:00.000Z",
            "2026-01-01T00:00:10.000Z",
            &[1.0],
            1.0,
        );
        let mut b = run(
            "2026-01-01T00:00:12.000Z",
            "2026-01-01T00:00:20.000Z",
            &[1.0],
            1.0,
        );
        b.containers[0].name = "sidecar".into();
        let m = merge_runs(&a, &b);
        let names: Vec<&str> = m.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["runner", "sidecar"]);
    }
}
