//! [`recommend`]: the whole answer for a job from its runs.

use std::collections::BTreeMap;

use super::{
    Confidence, ContainerSizing, Resources, Sizing, SizingParams, SizingRun,
    cpu::{self, CpuObservation},
    memory::{self, MemoryObservation},
    quantity::{self, KubeResources},
};
use crate::{Accumulator, ContainerSummary, hist, starvation::MIN_LOST_SECONDS, units};

/// What `runs` (oldest first) say each container of the job, and the job as a whole,
/// should get. The most recent `params.runs` are used.
pub fn recommend(runs: &[SizingRun<'_>], params: &SizingParams) -> Sizing {
    let keep = params.runs.clamp(1, super::MAX_RUNS);
    let considered = &runs[runs.len().saturating_sub(keep)..];
    let mut notes = Vec::new();
    let confidence = match considered.len() {
        0 => Confidence::None,
        n if n < super::CONFIDENT_RUNS => Confidence::Provisional,
        _ => Confidence::Confident,
    };
    match confidence {
        Confidence::None => notes.push(
            "no runs of this job in the window: the figures are minimums, not a recommendation"
                .to_owned(),
        ),
        Confidence::Provisional => notes.push(format!(
            "provisional: based on {} run(s); {} or more make it confident, and the memory margin narrows as runs are added",
            considered.len(),
            super::CONFIDENT_RUNS
        )),
        Confidence::Confident => {}
    }
    // Per container, its runs in order.
    let mut by_name: BTreeMap<&str, Vec<(&SizingRun<'_>, &ContainerSummary)>> = BTreeMap::new();
    for run in considered {
        for c in &run.summary.containers {
            by_name.entry(&c.name).or_default().push((run, c));
        }
    }
    let containers: Vec<ContainerSizing> = by_name
        .into_iter()
        .map(|(name, seen)| size_container(name, &seen, params))
        .collect();
    let mut pod = Resources::default();
    for c in &containers {
        pod.cpu_request_cores += c.resources.cpu_request_cores;
        pod.memory_request_bytes += c.resources.memory_request_bytes;
        pod.memory_limit_bytes += c.resources.memory_limit_bytes;
        if let Some(l) = c.resources.cpu_limit_cores {
            pod.cpu_limit_cores = Some(pod.cpu_limit_cores.unwrap_or(0.0) + l);
        }
    }
    let current = current_totals(&containers);
    if let Some(cur) = &current {
        notes.push(format!(
            "the job: limits now {:.2} cores and {}; recommended {:.2} cores and {}: {}",
            cur.cpu_request_cores,
            units::bytes(cur.memory_limit_bytes as f64),
            pod.cpu_request_cores,
            units::bytes(pod.memory_limit_bytes as f64),
            savings(cur, &pod)
        ));
    }
    let mut classes = params.classes.clone();
    quantity::sort_classes(&mut classes);
    let runner_class = quantity::smallest_fit(&classes, &pod).cloned();
    match (&runner_class, classes.is_empty()) {
        (Some(k), _) => notes.push(format!(
            "runner class: {} ({:.2} cores, {}) is the smallest that fits",
            k.name,
            k.cpu_cores,
            units::bytes(k.memory_bytes as f64)
        )),
        (None, false) => notes.push("runner class: none of the configured classes fits".to_owned()),
        (None, true) => {}
    }
    let kube: Vec<(&str, &KubeResources)> = containers
        .iter()
        .map(|c| (c.name.as_str(), &c.quantities))
        .collect();
    Sizing {
        runs_considered: considered.len(),
        runs_available: runs.len(),
        confidence,
        cpu_percentile: params.cpu_percentile,
        buffer_percent: params.buffer_percent,
        kubernetes: quantity::kubernetes_yaml(&kube),
        containers,
        pod,
        current,
        runner_class,
        notes,
    }
}

fn size_container(
    name: &str,
    seen: &[(&SizingRun<'_>, &ContainerSummary)],
    params: &SizingParams,
) -> ContainerSizing {
    let mem_obs: Vec<MemoryObservation> = seen
        .iter()
        .map(|(run, c)| {
            let true_peak = c.memory_peak_bytes.filter(|p| *p > 0);
            // Never below a sampled value.
            let peak = true_peak
                .unwrap_or(0)
                .max(c.memory_bytes.peak.max(0.0) as u64);
            MemoryObservation {
                run_id: run.run_id.to_owned(),
                peak_bytes: peak,
                true_peak: true_peak.is_some_and(|t| t >= peak),
                limit_bytes: c.limits.and_then(|l| l.memory_bytes).filter(|l| *l > 0),
                oom_kills: c.oom_kills,
            }
        })
        .collect();
    let cpu_obs: Vec<CpuObservation> = seen
        .iter()
        .map(|(run, c)| CpuObservation {
            run_id: run.run_id.to_owned(),
            histogram: c
                .histograms
                .as_ref()
                .and_then(|h| h.get(hist::CPU_CORES))
                .and_then(|e| Accumulator::decode(e).ok()),
            stats: c.cpu_cores,
            // The quota the kernel enforced is a limit too, where none was given.
            limit_cores: c
                .limits
                .and_then(|l| l.cpu_cores)
                .or(c.cpu_throttling.and_then(|t| t.quota_cores))
                .filter(|l| *l > 0.0),
            // Only time lost that the verdict would count (a second or more): a few
            // milliseconds of wait are not a reason to promise a shorter job.
            // Only the wait more cores would have made up: not what others took.
            held_share: cpu::held_share(
                c.run_queue_wait
                    .as_ref()
                    .map(|w| crate::starvation::self_inflicted_wait(w, c.cpu_throttling.as_ref()))
                    .filter(|w| *w >= MIN_LOST_SECONDS)
                    .map(|w| w / (w + c.cpu_seconds.max(0.0))),
                c.cpu_throttling
                    .filter(|t| t.quota_cores.is_some() && t.throttled_seconds >= MIN_LOST_SECONDS)
                    .map(|t| t.throttled_seconds),
                run.summary.duration_seconds,
            ),
            contention_seconds: c
                .run_queue_wait
                .as_ref()
                .map_or(0.0, |w| crate::behind::split(&w.behind).1),
        })
        .collect();
    let (mem, mut flags, mut why) = memory::size(&mem_obs, params.buffer_percent);
    let (cpu, cpu_flags, cpu_why) = cpu::size(
        &cpu_obs,
        params.cpu_percentile,
        params.buffer_percent,
        params.cpu_limit,
    );
    for f in cpu_flags {
        if !flags.contains(&f) {
            flags.push(f);
        }
    }
    why.extend(cpu_why);
    let resources = Resources {
        cpu_request_cores: cpu.request_cores,
        cpu_limit_cores: cpu.limit_cores,
        memory_request_bytes: mem.request_bytes,
        memory_limit_bytes: mem.limit_bytes,
    };
    let current = seen.last().and_then(|(_, c)| c.limits);
    if let Some(l) = current {
        if let Some(cores) = l.cpu_cores.filter(|c| *c > 0.0) {
            let diff = cores - resources.cpu_request_cores;
            why.push(format!(
                "cpu: limited to {cores:.2} cores now, {} uses {:.2}: recommend {:.2}, {} {:.2} cores",
                params.cpu_percentile.as_str(),
                cpu.used_cores,
                resources.cpu_request_cores,
                if diff >= 0.0 { "frees" } else { "needs" },
                diff.abs()
            ));
        }
        if let Some(bytes) = l.memory_bytes.filter(|b| *b > 0) {
            let (verb, by) = if bytes >= resources.memory_limit_bytes {
                ("frees", bytes - resources.memory_limit_bytes)
            } else {
                ("needs", resources.memory_limit_bytes - bytes)
            };
            why.push(format!(
                "memory: limited to {} now: recommend {}, {verb} {}",
                units::bytes(bytes as f64),
                units::bytes(resources.memory_limit_bytes as f64),
                units::bytes(by as f64)
            ));
        }
    }
    ContainerSizing {
        name: name.to_owned(),
        runs: seen.len(),
        quantities: KubeResources::of(&resources),
        resources,
        cpu,
        memory: mem,
        current,
        flags,
        explanation: why,
    }
}

/// The pod's current totals, where every container's CPU and memory limits are known.
fn current_totals(containers: &[ContainerSizing]) -> Option<Resources> {
    let mut total = Resources::default();
    for c in containers {
        let l = c.current?;
        total.cpu_request_cores += l.cpu_cores.filter(|c| *c > 0.0)?;
        let m = l.memory_bytes.filter(|m| *m > 0)?;
        total.memory_request_bytes += m;
        total.memory_limit_bytes += m;
    }
    (!containers.is_empty()).then_some(total)
}

fn savings(cur: &Resources, rec: &Resources) -> String {
    let cores = cur.cpu_request_cores - rec.cpu_request_cores;
    let mem = cur.memory_limit_bytes as i128 - rec.memory_limit_bytes as i128;
    let verb = |frees: bool| if frees { "frees" } else { "needs" };
    format!(
        "{} {:.2} cores, {} {}",
        verb(cores >= 0.0),
        cores.abs(),
        verb(mem >= 0),
        units::bytes(mem.unsigned_abs() as f64)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Limits, RunSummary, SCALE_BYTES};

    fn summary(cores: f64, mem_mib: u64, oom: u64) -> RunSummary {
        let mut cpu = Accumulator::new(crate::SCALE_CORES);
        let mut mem = Accumulator::new(SCALE_BYTES);
        for i in 0..60 {
            cpu.record(cores * (0.5 + (i % 10) as f64 / 10.0));
            mem.record((mem_mib << 20) as f64 * 0.8);
        }
        let mut h = crate::Histograms::new();
        h.insert(hist::CPU_CORES.to_owned(), cpu.encode());
        h.insert(hist::MEMORY_BYTES.to_owned(), mem.encode());
        RunSummary {
            containers: vec![ContainerSummary {
                name: "build".into(),
                cpu_cores: cpu.stats(),
                memory_bytes: mem.stats(),
                memory_peak_bytes: Some(mem_mib << 20),
                oom_kills: oom,
                limits: Some(Limits {
                    cpu_cores: Some(4.0),
                    memory_bytes: Some(4 << 30),
                }),
                histograms: Some(h),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_job_answer_with_its_reasons() {
        let summaries: Vec<RunSummary> = (0..8).map(|i| summary(1.0, 1000 + i * 10, 0)).collect();
        let ids: Vec<String> = (0..8).map(|i| format!("r{i}")).collect();
        let runs: Vec<SizingRun<'_>> = summaries
            .iter()
            .zip(&ids)
            .enumerate()
            .map(|(i, (s, id))| SizingRun {
                time_ms: i as i64 * 1000,
                run_id: id,
                summary: s,
            })
            .collect();
        let params = SizingParams {
            classes: quantity::parse_classes("small=2c/2Gi,large=8c/16Gi").unwrap(),
            ..Default::default()
        };
        let s = recommend(&runs, &params);
        assert_eq!(s.confidence, Confidence::Confident);
        assert_eq!((s.runs_considered, s.runs_available), (8, 8));
        let c = &s.containers[0];
        assert_eq!(c.memory.peak_run_id.as_deref(), Some("r7"));
        assert!(c.memory.true_peak);
        // 1070 MiB × 1.15 = 1230.5, rounded up to 1248 MiB.
        assert_eq!(c.resources.memory_limit_bytes, 1248 << 20);
        assert_eq!(c.quantities.limits.memory.as_deref(), Some("1248Mi"));
        assert!(c.resources.cpu_limit_cores.is_none() && c.quantities.limits.cpu.is_none());
        assert!(
            c.cpu.request_cores > 1.0 && c.cpu.request_cores < 2.0,
            "{:?}",
            c.cpu
        );
        assert_eq!(s.runner_class.as_ref().unwrap().name, "small");
        assert!(s.kubernetes.contains("- name: build"));
        assert!(
            c.explanation.iter().any(|w| w.contains("frees")),
            "{:?}",
            c.explanation
        );
        assert_eq!(s.current.unwrap().cpu_request_cores, 4.0);
        assert!(
            s.notes.iter().any(|n| n.contains("frees 2.8 GiB")),
            "{:?}",
            s.notes
        );
        // The last N only; few runs are provisional.
        let few = recommend(
            &runs,
            &SizingParams {
                runs: 2,
                ..Default::default()
            },
        );
        assert_eq!(
            (few.runs_considered, few.confidence),
            (2, Confidence::Provisional)
        );
        let none = recommend(&[], &SizingParams::default());
        assert_eq!(none.confidence, Confidence::None);
        assert!(none.containers.is_empty());
    }

    #[test]
    fn json_round_trips() {
        let s = summary(1.0, 500, 1);
        let runs = [SizingRun {
            time_ms: 0,
            run_id: "1",
            summary: &s,
        }];
        let answer = recommend(&runs, &SizingParams::default());
        let json = serde_json::to_string(&answer).unwrap();
        let back: Sizing = serde_json::from_str(&json).unwrap();
        assert_eq!(back, answer);
        assert_eq!(answer.containers[0].memory.oom_killed_runs, 1);
    }
}
