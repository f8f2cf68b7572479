//! `summary::merge::merge_runs` on two valid summaries built from a structured description
//! (`arbitrary`): real HDR histograms from fuzzed samples (with matching and mismatching
//! scales, or garbage), containers that appear in one piece or both, top-process lists,
//! and counters and seconds anywhere in their types' ranges. This reaches the merge paths
//! that fuzzed JSON rarely builds.
//!
//! - `merge_runs` never panics.
//! - When the earlier piece starts no later than the later one ends and the whole spans
//!   at most 31 days (two pieces of one valid run), the merge validates; it starts with the earlier piece and ends with the later
//!   one; sample counts, container CPU seconds and OOM kills add up; every container of
//!   either piece is in it, once per name, sorted; the top lists are no longer than the
//!   longer input list.
#![no_main]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use summary::{
    Accumulator, ContainerSummary, EncodedHistogram, Histograms, NetworkSummary, ProcessSummary,
    RunSummary, Stats, hist,
    merge::merge_runs,
    time::format_unix_millis,
    validate::{MAX_CPU_SECONDS, MAX_DURATION_SECONDS},
};

/// 2026-01-01T00:00:00Z in Unix milliseconds.
const BASE_MS: i64 = 1_767_225_600_000;

/// The clock validation runs on: 2027-01-01, after every time a piece can have.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_798_761_600)
}

const CONTAINERS: [&str; 4] = ["runner", "sidecar", "db", "k8s:pod-0123abcd/0123456789ab"];

#[derive(Arbitrary, Debug)]
enum Num {
    /// Thousandths: the usual range.
    Small(u32),
    /// Any finite non-negative double up to half the largest valid CPU seconds (so that
    /// the sum of two valid values is valid).
    Bits(u64),
}

impl Num {
    fn get(&self) -> f64 {
        match self {
            Num::Small(n) => f64::from(*n) / 1000.0,
            Num::Bits(b) => {
                let v = f64::from_bits(*b).abs();
                if v.is_finite() {
                    v.min(MAX_CPU_SECONDS / 2.0)
                } else {
                    0.0
                }
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Hist {
    Samples { scale: u8, values: Vec<u32> },
    Garbage { scale: u8, hdr_v2: String },
}

impl Hist {
    fn scale(s: u8) -> u64 {
        [1, 1000, 1000, 1, 7][usize::from(s) % 5]
    }

    fn build(&self) -> (EncodedHistogram, Stats) {
        match self {
            Hist::Samples { scale, values } => {
                let mut acc = Accumulator::new(Self::scale(*scale));
                for v in values.iter().take(256) {
                    acc.record(f64::from(*v) / 1000.0);
                }
                (acc.encode(), acc.stats())
            }
            Hist::Garbage { scale, hdr_v2 } => (
                EncodedHistogram {
                    scale: Self::scale(*scale),
                    hdr_v2: hdr_v2.clone(),
                },
                Stats::default(),
            ),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Container {
    name: u8,
    cpu: Option<Hist>,
    memory: Option<Hist>,
    cpu_seconds: Num,
    memory_peak_bytes: Option<u64>,
    oom_kills: u64,
    network: Option<(u64, u64)>,
}

#[derive(Arbitrary, Debug)]
struct Process {
    pid: u16,
    name: u8,
    peak_cpu_percent: Num,
    cpu_seconds: Num,
    peak_mem_rss_bytes: u64,
}

#[derive(Arbitrary, Debug)]
struct Piece {
    start_ms: u32,
    len_ms: u32,
    sample_count: u64,
    cpu_total: Option<Hist>,
    mem_used: Option<Hist>,
    containers: Vec<Container>,
    top_cpu: Vec<Process>,
    top_mem: Vec<Process>,
}

fn hist_map(pairs: [(&str, &Option<Hist>); 2]) -> (Option<Histograms>, [Stats; 2]) {
    let mut map = Histograms::new();
    let mut stats = [Stats::default(); 2];
    for (i, (key, h)) in pairs.into_iter().enumerate() {
        if let Some(h) = h {
            let (enc, st) = h.build();
            map.insert(key.to_string(), enc);
            stats[i] = st;
        }
    }
    (Some(map).filter(|m| !m.is_empty()), stats)
}

fn process(p: &Process) -> ProcessSummary {
    ProcessSummary {
        pid: i32::from(p.pid),
        name: ["make", "cc1", "node", ""][usize::from(p.name) % 4].to_string(),
        peak_cpu_percent: p.peak_cpu_percent.get(),
        peak_mem_rss_bytes: p.peak_mem_rss_bytes,
        cpu_seconds: p.cpu_seconds.get(),
        container: Some(CONTAINERS[usize::from(p.name) % CONTAINERS.len()].to_string()),
        exited: p.pid % 2 == 0,
    }
}

fn build(p: &Piece) -> RunSummary {
    let start = BASE_MS + i64::from(p.start_ms);
    let end = start + i64::from(p.len_ms);
    let (histograms, [cpu_total_percent, mem_used_bytes]) = hist_map([
        (hist::CPU_TOTAL_PERCENT, &p.cpu_total),
        (hist::MEM_USED_BYTES, &p.mem_used),
    ]);
    let containers = p
        .containers
        .iter()
        .take(8)
        .map(|c| {
            let (histograms, [cpu_cores, memory_bytes]) =
                hist_map([(hist::CPU_CORES, &c.cpu), (hist::MEMORY_BYTES, &c.memory)]);
            ContainerSummary {
                name: CONTAINERS[usize::from(c.name) % CONTAINERS.len()].to_string(),
                cpu_cores,
                memory_bytes,
                cpu_seconds: c.cpu_seconds.get(),
                memory_peak_bytes: c.memory_peak_bytes,
                oom_kills: c.oom_kills,
                network: c.network.map(|(rx, tx)| NetworkSummary {
                    rx_bytes: rx,
                    tx_bytes: tx,
                    ..Default::default()
                }),
                histograms,
                ..Default::default()
            }
        })
        .collect();
    RunSummary {
        start_time: format_unix_millis(start),
        end_time: format_unix_millis(end),
        duration_seconds: f64::from(p.len_ms) / 1000.0,
        sample_count: p.sample_count,
        cpu_total_percent,
        mem_used_bytes,
        containers,
        top_cpu_processes: p.top_cpu.iter().take(16).map(process).collect(),
        top_mem_processes: p.top_mem.iter().take(16).map(process).collect(),
        histograms,
        ..Default::default()
    }
}

fuzz_target!(|pieces: (Piece, Piece)| {
    let (earlier, later) = (build(&pieces.0), build(&pieces.1));
    if earlier.validate_at(now()).is_err() || later.validate_at(now()).is_err() {
        // Over a validation limit (a garbage histogram too long, say): not a valid input.
        return;
    }
    let merged = merge_runs(&earlier, &later);
    // Two pieces of one run: the earlier starts no later than the later ends, and the
    // whole is no longer than a run may be.
    let (start, end) = (
        u64::from(pieces.0.start_ms),
        u64::from(pieces.1.start_ms) + u64::from(pieces.1.len_ms),
    );
    if start > end || end - start > (MAX_DURATION_SECONDS * 1000.0) as u64 {
        return;
    }
    if let Err(e) = merged.validate_at(now()) {
        panic!("merge of two valid summaries is invalid: {e}");
    }
    assert_eq!(merged.start_time, earlier.start_time);
    assert_eq!(merged.end_time, later.end_time);
    // Counters saturate rather than overflow.
    assert_eq!(
        merged.sample_count,
        earlier.sample_count.saturating_add(later.sample_count)
    );
    let mut names: Vec<&str> = earlier
        .containers
        .iter()
        .chain(&later.containers)
        .map(|c| c.name.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    let got: Vec<&str> = merged.containers.iter().map(|c| c.name.as_str()).collect();
    // Names repeat in a piece only if the piece itself repeats them.
    let repeats = |s: &RunSummary| {
        let mut n: Vec<&str> = s.containers.iter().map(|c| c.name.as_str()).collect();
        n.sort_unstable();
        n.windows(2).any(|w| w[0] == w[1])
    };
    if !repeats(&earlier) && !repeats(&later) {
        assert_eq!(got, names);
        for m in &merged.containers {
            let a = earlier.containers.iter().find(|c| c.name == m.name);
            let b = later.containers.iter().find(|c| c.name == m.name);
            if let (Some(a), Some(b)) = (a, b) {
                assert_eq!(m.cpu_seconds, a.cpu_seconds + b.cpu_seconds);
                assert_eq!(m.oom_kills, a.oom_kills.saturating_add(b.oom_kills));
                assert_eq!(
                    m.memory_peak_bytes,
                    a.memory_peak_bytes.max(b.memory_peak_bytes)
                );
            }
        }
    }
    for (m, a, b) in [
        (
            &merged.top_cpu_processes,
            &earlier.top_cpu_processes,
            &later.top_cpu_processes,
        ),
        (
            &merged.top_mem_processes,
            &earlier.top_mem_processes,
            &later.top_mem_processes,
        ),
    ] {
        assert!(m.len() <= a.len().max(b.len()));
    }
});
