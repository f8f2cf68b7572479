//! Checks of the starvation fields ([`crate::starvation`]): finite, non-negative, shares
//! at most about 1, texts bounded.

use super::error::{Result, invalid};
use super::limits::{
    MAX_BYTES_PER_SEC, MAX_CORES, MAX_CPU_SECONDS, MAX_DURATION_SECONDS, MAX_NAME_BYTES,
    MAX_PROCESS_NAME_BYTES, MAX_SHORT_BYTES, MAX_TOP_PROCESSES,
};
use super::values::{CORES, CPU_SECONDS, RATE, bounded, memory, stats, text};
use crate::ContainerSummary;
use crate::starvation::{CommandSummary, Stall, Verdict};

/// A share of time or of periods: at most 1, with room for clocks read a moment apart.
const MAX_SHARE: f64 = 1.1;
const SHARE: &str = "is more than 1.1 (a share)";
/// Most tasks of one container waiting for a CPU on average over a run.
const MAX_TASKS_WAITING: f64 = 1e6;
/// Longest verdict text.
const MAX_VERDICT_BYTES: usize = 2048;

fn share(field: impl FnOnce() -> String, v: f64) -> Result {
    bounded(field, v, MAX_SHARE, SHARE)
}

fn seconds(field: impl FnOnce() -> String, v: f64) -> Result {
    bounded(field, v, MAX_CPU_SECONDS, CPU_SECONDS)
}

fn stall(prefix: &str, s: &Stall) -> Result {
    seconds(|| format!("{prefix}.some_seconds"), s.some_seconds)?;
    share(|| format!("{prefix}.some_share"), s.some_share)?;
    if let Some(v) = s.full_seconds {
        seconds(|| format!("{prefix}.full_seconds"), v)?;
    }
    if let Some(v) = s.full_share {
        share(|| format!("{prefix}.full_share"), v)?;
    }
    Ok(())
}

pub(super) fn verdict(prefix: &str, v: &Verdict) -> Result {
    text(
        || format!("{prefix}.text"),
        &v.text,
        false,
        MAX_VERDICT_BYTES,
    )?;
    if v.by.len() > 3 {
        return Err(invalid(format!("{prefix}.by"), "has more than 3 entries"));
    }
    for (i, b) in v.by.iter().enumerate() {
        text(|| format!("{prefix}.by[{i}]"), b, true, MAX_SHORT_BYTES)?;
    }
    Ok(())
}

pub(super) fn container(prefix: &str, c: &ContainerSummary) -> Result {
    if let Some(t) = &c.cpu_throttling {
        let p = format!("{prefix}.cpu_throttling");
        if let Some(q) = t.quota_cores {
            bounded(|| format!("{p}.quota_cores"), q, MAX_CORES, CORES)?;
        }
        seconds(|| format!("{p}.throttled_seconds"), t.throttled_seconds)?;
        share(
            || format!("{p}.throttled_period_share"),
            t.throttled_period_share,
        )?;
        if t.throttled_periods > t.periods {
            return Err(invalid(
                format!("{p}.throttled_periods"),
                "is more than periods",
            ));
        }
        if let Some(b) = t.burst_seconds {
            seconds(|| format!("{p}.burst_seconds"), b)?;
        }
    }
    if let Some(pr) = &c.pressure {
        for (name, s) in [("cpu", &pr.cpu), ("memory", &pr.memory), ("io", &pr.io)] {
            if let Some(s) = s {
                stall(&format!("{prefix}.pressure.{name}"), s)?;
            }
        }
    }
    if let Some(w) = &c.run_queue_wait {
        seconds(|| format!("{prefix}.run_queue_wait.seconds"), w.seconds)?;
        share(|| format!("{prefix}.run_queue_wait.share"), w.share)?;
        if let Some(n) = w.tasks_waiting {
            bounded(
                || format!("{prefix}.run_queue_wait.tasks_waiting"),
                n,
                MAX_TASKS_WAITING,
                "is more than 1,000,000 (tasks waiting on average)",
            )?;
        }
        if w.behind.len() > crate::behind::MAX_BEHIND {
            return Err(invalid(
                format!("{prefix}.run_queue_wait.behind"),
                "has more than 5 entries",
            ));
        }
        for (i, b) in w.behind.iter().enumerate() {
            let p = format!("{prefix}.run_queue_wait.behind[{i}]");
            text(
                || format!("{p}.container"),
                &b.container,
                true,
                MAX_NAME_BYTES,
            )?;
            if let Some(job) = &b.job {
                text(|| format!("{p}.job"), job, true, MAX_NAME_BYTES)?;
            }
            seconds(|| format!("{p}.seconds"), b.seconds)?;
        }
    }
    if let Some(d) = &c.disk_io {
        stats(
            &format!("{prefix}.disk_io.read_bytes_per_sec"),
            &d.read_bytes_per_sec,
            MAX_BYTES_PER_SEC,
            RATE,
        )?;
        stats(
            &format!("{prefix}.disk_io.write_bytes_per_sec"),
            &d.write_bytes_per_sec,
            MAX_BYTES_PER_SEC,
            RATE,
        )?;
    }
    if let Some(m) = &c.memory_detail {
        for (name, v) in [
            ("anon_bytes", m.anon_bytes),
            ("file_bytes", m.file_bytes),
            ("kernel_bytes", m.kernel_bytes),
            ("sock_bytes", m.sock_bytes),
        ] {
            if let Some(v) = v {
                memory(|| format!("{prefix}.memory_detail.{name}"), v)?;
            }
        }
    }
    if let Some(v) = &c.verdict {
        verdict(&format!("{prefix}.verdict"), v)?;
    }
    Ok(())
}

pub(super) fn commands(prefix: &str, list: &[CommandSummary]) -> Result {
    if list.len() > MAX_TOP_PROCESSES {
        return Err(invalid(prefix.to_owned(), "has more than 1000 entries"));
    }
    for (i, c) in list.iter().enumerate() {
        let p = format!("{prefix}[{i}]");
        text(
            || format!("{p}.name"),
            &c.name,
            false,
            MAX_PROCESS_NAME_BYTES,
        )?;
        seconds(|| format!("{p}.cpu_seconds"), c.cpu_seconds)?;
        memory(|| format!("{p}.peak_rss_bytes"), c.peak_rss_bytes)?;
        bounded(
            || format!("{p}.longest_seconds"),
            c.longest_seconds,
            MAX_DURATION_SECONDS,
            "is more than 31 days",
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::starvation::{RunQueueWait, Throttling};

    #[test]
    fn refuses_implausible_starvation_figures() {
        let mut c = ContainerSummary::default();
        assert!(container("c", &c).is_ok());
        c.run_queue_wait = Some(RunQueueWait {
            seconds: 1.0,
            share: 2.0,
            ..Default::default()
        });
        assert_eq!(
            container("c", &c).unwrap_err().to_string(),
            "c.run_queue_wait.share: is more than 1.1 (a share)"
        );
        c.run_queue_wait = Some(RunQueueWait {
            tasks_waiting: Some(f64::NAN),
            ..Default::default()
        });
        assert!(
            container("c", &c)
                .unwrap_err()
                .to_string()
                .starts_with("c.run_queue_wait.tasks_waiting:")
        );
        c.run_queue_wait = None;
        c.cpu_throttling = Some(Throttling {
            periods: 1,
            throttled_periods: 2,
            ..Default::default()
        });
        assert!(container("c", &c).is_err());
        c.cpu_throttling = Some(Throttling {
            throttled_seconds: f64::NAN,
            ..Default::default()
        });
        assert!(container("c", &c).is_err());
        let long = CommandSummary {
            name: "x".repeat(300),
            ..Default::default()
        };
        assert!(commands("top_commands", &[long]).is_err());
        let bad = Verdict {
            text: "a\u{7}".into(),
            ..Default::default()
        };
        assert!(verdict("v", &bad).is_err());
    }
}
