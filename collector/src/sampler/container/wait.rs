//! A container's run-queue wait over the run: how long its runnable tasks waited for a CPU
//! (`sampler/wait.rs` reads it, from eBPF or `/proc`).

use std::time::Instant;

use summary::{Source, starvation::RunQueueWait};

use crate::sampler::rates;

/// A container's run-queue wait over the run.
#[derive(Debug, Default)]
pub(crate) struct Wait {
    /// Where it comes from, fixed at the first reading; `None` before that.
    pub(crate) source: Option<Source>,
    /// Nanoseconds over the run.
    pub(crate) ns: u64,
    /// eBPF: the cumulative total of its cgroups at the previous reading.
    last_cumulative: Option<u64>,
    /// When the previous reading was taken (for the timeline's rate).
    last_at: Option<Instant>,
}

impl Wait {
    /// Folds in one reading of a cumulative counter (eBPF totals since attach); returns the
    /// growth. The first reading counts whole, as the CPU total's does (both run from the
    /// attach, which precedes the run's processes or is the run's start).
    pub(crate) fn cumulative(&mut self, source: Source, cumulative_ns: u64) -> u64 {
        self.source = Some(source);
        let added = match self.last_cumulative {
            None => cumulative_ns,
            Some(prev) => rates::counter_delta(prev, cumulative_ns),
        };
        self.last_cumulative = Some(cumulative_ns);
        self.ns += added;
        added
    }

    /// The wait added since the previous reading as a rate (seconds per second: the number
    /// of tasks waiting on average), for the timeline; `None` at the first reading.
    pub(crate) fn rate(&mut self, at: Instant, added: u64) -> Option<(Instant, f64)> {
        let then = self.last_at.replace(at)?;
        let window = at.saturating_duration_since(then).as_secs_f64();
        (window > 0.0).then(|| (then, added as f64 / 1e9 / window))
    }

    /// Adds growth measured elsewhere (the /proc fallback's per-process deltas).
    pub(crate) fn add(&mut self, source: Source, ns: u64) {
        self.source = Some(source);
        self.ns += ns;
    }

    /// The summary's figure: the wait, its share of the time its tasks were runnable (on a
    /// CPU, `cpu_seconds`, or waiting for one) and the tasks waiting on average over
    /// `wall_seconds`.
    pub(crate) fn summary(&self, cpu_seconds: f64, wall_seconds: f64) -> Option<RunQueueWait> {
        let source = self.source?;
        let seconds = self.ns as f64 / 1e9;
        let runnable = seconds + cpu_seconds.max(0.0);
        Some(RunQueueWait {
            seconds,
            share: if runnable > 0.0 {
                (seconds / runnable).min(1.0)
            } else {
                0.0
            },
            tasks_waiting: Some(if wall_seconds > 0.0 {
                seconds / wall_seconds
            } else {
                0.0
            }),
            source,
            behind: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_readings_count_growth_once() {
        let mut w = Wait::default();
        assert_eq!(w.summary(1.0, 1.0), None, "nothing measured is not zero");
        assert_eq!(w.cumulative(Source::Ebpf, 100), 100);
        assert_eq!(w.cumulative(Source::Ebpf, 100), 0);
        assert_eq!(w.cumulative(Source::Ebpf, 250), 150);
        // A smaller total (the ids' entries forgotten and made again) is all new growth.
        assert_eq!(w.cumulative(Source::Ebpf, 40), 40);
        assert_eq!(w.ns, 290);
        let s = w.summary(0.0, 0.0).unwrap();
        assert_eq!(s.source, Source::Ebpf);
        assert!((s.seconds - 290e-9).abs() < 1e-15);
        assert_eq!(s.share, 1.0);
    }

    #[test]
    fn share_is_of_runnable_time_and_tasks_waiting_of_wall_time() {
        let mut w = Wait::default();
        w.add(Source::Proc, 1_000_000_000);
        let s = w.summary(3.0, 4.0).unwrap();
        assert_eq!((s.seconds, s.share, s.source), (1.0, 0.25, Source::Proc));
        assert_eq!(s.tasks_waiting, Some(0.25), "of wall time");
        let mut idle = Wait::default();
        idle.add(Source::Proc, 0);
        assert_eq!(idle.summary(0.0, 0.0).unwrap().share, 0.0);
    }
}
