//! Pure delta maths: rates from monotonically increasing counters.
//!
//! Every figure here is "what changed between two readings, divided by the time between
//! them", and every division is guarded: a zero period, a counter that went backwards or a
//! zero total gives "no figure" (or 0 where the signature says so), never NaN or infinity.

use std::time::Duration;

use crate::sources::procfs::SystemCpu;

/// System-wide CPU use in percent (0-100) between two `/proc/stat` readings: the share of
/// ticks that were not idle or iowait.
///
/// `None` when no ticks passed (same reading twice, or counters that went backwards, e.g.
/// after a checkpoint/restore). `iowait` can decrease on some kernels, so the result is
/// clamped to 0-100.
pub fn cpu_percent(prev: &SystemCpu, now: &SystemCpu) -> Option<f64> {
    let total = i128::from(now.total()) - i128::from(prev.total());
    if total <= 0 {
        return None;
    }
    let idle = i128::from(now.idle_total()) - i128::from(prev.idle_total());
    let busy = (total - idle).clamp(0, total);
    Some(busy as f64 * 100.0 / total as f64)
}

/// Cores used on average over `period` by `delta_ns` of CPU time (eBPF and cgroup
/// `usage_usec` counters): 2.0 means two full cores. 0 for a zero period.
pub fn cores_from_ns(delta_ns: u64, period: Duration) -> f64 {
    let period_ns = period.as_nanos();
    if period_ns == 0 {
        return 0.0;
    }
    delta_ns as f64 / period_ns as f64
}

/// Cores used on average over `period` by `delta_ticks` clock ticks (`/proc/PID/stat`
/// utime+stime). 0 for a zero period or a zero tick rate.
pub fn cores_from_ticks(delta_ticks: u64, ticks_per_sec: u64, period: Duration) -> f64 {
    let secs = period.as_secs_f64();
    if ticks_per_sec == 0 || secs <= 0.0 {
        return 0.0;
    }
    delta_ticks as f64 / ticks_per_sec as f64 / secs
}

/// Per-process CPU as the seed reports it: percent of one core (100 = one full core, so a
/// process on two cores shows 200).
pub fn percent_of_core(cores: f64) -> f64 {
    cores * 100.0
}

/// Growth of a monotonic counter between two readings. A smaller reading means the counter
/// restarted from zero (a new network namespace, a pid reused, a counter reset), so the new
/// value is all growth since the restart: never a negative or huge wrapped delta.
pub fn counter_delta(prev: u64, now: u64) -> u64 {
    now.checked_sub(prev).unwrap_or(now)
}

/// Splits CPU time read for a window into what the window can show (at most every CPU busy
/// for its whole length) and what is carried to the next one. A delayed reading then shows up
/// as a plateau instead of an impossible spike, and no time is lost.
pub fn cap_window(ns: u64, window: Duration, cpus: u32) -> (u64, u64) {
    let max = (window.as_nanos() as u64).saturating_mul(u64::from(cpus.max(1)));
    (ns.min(max), ns.saturating_sub(max))
}

/// Turns successive readings of a monotonic counter (network bytes) into per-second rates
/// and a run total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterRate {
    /// Previous reading; `None` before the first, which is only a baseline.
    last: Option<u64>,
    /// Growth since the first reading, restarts included ([`counter_delta`]).
    total: u64,
}

impl CounterRate {
    /// A rate with no reading yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a reading taken `period` after the previous one and returns the rate per
    /// second over it. `None` for the first reading (a baseline: what happened before the
    /// run is not counted) and for a zero period, whose growth still counts in the total.
    pub fn update(&mut self, value: u64, period: Duration) -> Option<f64> {
        let prev = self.last.replace(value)?;
        let delta = counter_delta(prev, value);
        self.total = self.total.saturating_add(delta);
        let secs = period.as_secs_f64();
        (secs > 0.0).then(|| delta as f64 / secs)
    }

    /// Growth observed since the first reading.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The last reading, if any.
    pub fn last(&self) -> Option<u64> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_never_exceed_all_cpus_and_lose_nothing() {
        let w = Duration::from_millis(100);
        assert_eq!(cap_window(150_000_000, w, 2), (150_000_000, 0));
        assert_eq!(cap_window(450_000_000, w, 2), (200_000_000, 250_000_000));
        assert_eq!(cap_window(5, Duration::ZERO, 2), (0, 5));
    }

    fn cpu(user: u64, system: u64, idle: u64, iowait: u64) -> SystemCpu {
        SystemCpu {
            user,
            system,
            idle,
            iowait,
            ..SystemCpu::default()
        }
    }

    #[test]
    fn cpu_percent_busy_over_total() {
        let prev = cpu(100, 50, 800, 50);
        // +60 user, +15 system, +20 idle, +5 iowait: 75 busy of 100.
        let now = cpu(160, 65, 820, 55);
        assert_eq!(cpu_percent(&prev, &now), Some(75.0));
        let all_idle = cpu(100, 50, 900, 50);
        assert_eq!(cpu_percent(&prev, &all_idle), Some(0.0));
        let all_busy = cpu(200, 50, 800, 50);
        assert_eq!(cpu_percent(&prev, &all_busy), Some(100.0));
    }

    #[test]
    fn cpu_percent_guards() {
        let a = cpu(100, 50, 800, 50);
        assert_eq!(cpu_percent(&a, &a), None, "zero delta");
        assert_eq!(
            cpu_percent(&cpu(200, 50, 800, 50), &a),
            None,
            "went backwards"
        );
        assert_eq!(
            cpu_percent(&SystemCpu::default(), &SystemCpu::default()),
            None
        );
        // iowait went backwards by more than the other columns grew: clamped, not negative.
        let now = cpu(110, 50, 800, 45);
        assert_eq!(cpu_percent(&a, &now), Some(100.0));
        let now = cpu(100, 50, 830, 20);
        assert_eq!(cpu_percent(&a, &now), None);
    }

    #[test]
    fn cores() {
        assert_eq!(cores_from_ns(2_000_000_000, Duration::from_secs(1)), 2.0);
        assert_eq!(cores_from_ns(500_000_000, Duration::from_secs(2)), 0.25);
        assert_eq!(cores_from_ns(1, Duration::ZERO), 0.0);
        assert_eq!(cores_from_ticks(300, 100, Duration::from_secs(2)), 1.5);
        assert_eq!(cores_from_ticks(300, 0, Duration::from_secs(2)), 0.0);
        assert_eq!(cores_from_ticks(300, 100, Duration::ZERO), 0.0);
        assert_eq!(cores_from_ticks(0, 100, Duration::from_millis(1)), 0.0);
        assert_eq!(percent_of_core(1.5), 150.0);
    }

    #[test]
    fn counter_delta_restarts() {
        assert_eq!(counter_delta(10, 15), 5);
        assert_eq!(counter_delta(10, 10), 0);
        assert_eq!(counter_delta(1000, 7), 7);
        assert_eq!(counter_delta(u64::MAX, 3), 3);
    }

    #[test]
    fn counter_rate_baseline_rates_and_totals() {
        let mut r = CounterRate::new();
        assert_eq!(
            r.update(1_000_000, Duration::from_secs(2)),
            None,
            "baseline"
        );
        assert_eq!(r.total(), 0);
        assert_eq!(r.update(1_002_000, Duration::from_secs(2)), Some(1000.0));
        assert_eq!(r.update(1_002_000, Duration::from_secs(1)), Some(0.0));
        assert_eq!(r.total(), 2000);
        // Reset (new netns): the new value is growth since the restart.
        assert_eq!(r.update(500, Duration::from_millis(500)), Some(1000.0));
        assert_eq!(r.total(), 2500);
        // Zero period: no rate, but the bytes are not lost.
        assert_eq!(r.update(700, Duration::ZERO), None);
        assert_eq!(r.total(), 2700);
        assert_eq!(r.last(), Some(700));
    }
}
