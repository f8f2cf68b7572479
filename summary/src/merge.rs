//! Merging two summaries of one run measured in two pieces (node mode across a collector
//! restart): the statistics are merged through their HDR histograms, totals are added.

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
    out
}

fn merge_container(a: &ContainerSummary, b: &ContainerSummary) -> ContainerSummary {
    let mut out = b.clone();
    // Saturates at what validation accepts, like the counters (found by fuzzing): two
    // plausible pieces must not make an implausible run that the receiver refuses.
    out.cpu_seconds = (a.cpu_seconds + b.cpu_seconds).min(crate::validate::MAX_CPU_SECONDS);
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
