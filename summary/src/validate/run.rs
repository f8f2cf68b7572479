//! Checks of a whole summary ([`RunSummary::validate`]): its schema version, timestamps,
//! duration and system figures, then each part's own checks; and of a push
//! ([`MetricsPush::validate`]): its identity, then its summary.

use std::time::SystemTime;

use super::container::container;
use super::error::{Result, ValidationError, invalid};
use super::histograms::{HistogramBudget, histograms};
use super::limits::{
    EARLIEST_UNIX_SECONDS, MAX_CONTAINERS, MAX_DURATION_SECONDS, MAX_FUTURE_SECONDS,
    MAX_MEMORY_BYTES, MAX_SHORT_BYTES, MAX_TOTAL_CPU_PERCENT,
};
use super::process::processes;
use super::values::{MEMORY, bounded, stats, text};
use super::{starvation_fields, timeline_fields};
use crate::{MetricsPush, RunSummary, SCHEMA_VERSION, hist, time};

/// `t` in nanoseconds since the Unix epoch (negative before it).
fn unix_nanos(t: SystemTime) -> i128 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

const NANOS: i128 = 1_000_000_000;

impl RunSummary {
    /// Checks this summary against the system clock; `Err` names the first offending
    /// field (paths start at the summary itself, e.g. `containers[0].name`).
    pub fn validate(&self) -> Result {
        self.validate_at(SystemTime::now())
    }

    /// [`RunSummary::validate`] with `now` as the clock timestamps may not run ahead of.
    pub fn validate_at(&self, now: SystemTime) -> Result {
        self.validate_under("", now)
    }

    fn validate_under(&self, root: &str, now: SystemTime) -> Result {
        let p = |f: &str| format!("{root}{f}");
        if self.schema_version != SCHEMA_VERSION {
            return Err(ValidationError::UnsupportedSchema {
                found: self.schema_version,
                supported: SCHEMA_VERSION,
            });
        }
        let start = time::parse_rfc3339_nanos(&self.start_time)
            .ok_or_else(|| invalid(p("start_time"), "must be an RFC 3339 timestamp"))?;
        let end = time::parse_rfc3339_nanos(&self.end_time)
            .ok_or_else(|| invalid(p("end_time"), "must be an RFC 3339 timestamp"))?;
        let earliest = i128::from(EARLIEST_UNIX_SECONDS) * NANOS;
        let latest = unix_nanos(now) + i128::from(MAX_FUTURE_SECONDS) * NANOS;
        for (field, t) in [("start_time", start), ("end_time", end)] {
            if t < earliest {
                return Err(invalid(p(field), "must not be before 2000-01-01"));
            }
            if t > latest {
                return Err(invalid(
                    p(field),
                    "must not be more than a day ahead of the receiver's clock",
                ));
            }
        }
        if end < start {
            return Err(invalid(p("end_time"), "must not be before start_time"));
        }
        if end - start > (MAX_DURATION_SECONDS as i128) * NANOS {
            return Err(invalid(
                p("end_time"),
                "must not be more than 31 days after start_time",
            ));
        }
        bounded(
            || p("duration_seconds"),
            self.duration_seconds,
            MAX_DURATION_SECONDS,
            "is more than 31 days",
        )?;
        stats(
            &p("cpu_total_percent"),
            &self.cpu_total_percent,
            MAX_TOTAL_CPU_PERCENT,
            "is more than 100 %",
        )?;
        stats(
            &p("mem_used_bytes"),
            &self.mem_used_bytes,
            MAX_MEMORY_BYTES as f64,
            MEMORY,
        )?;
        if self.containers.len() > MAX_CONTAINERS {
            return Err(invalid(p("containers"), "has more than 1000 entries"));
        }
        let mut budget = HistogramBudget::new();
        for (i, c) in self.containers.iter().enumerate() {
            container(&p(&format!("containers[{i}]")), c, &mut budget)?;
        }
        processes(&p("top_cpu_processes"), &self.top_cpu_processes)?;
        processes(&p("top_mem_processes"), &self.top_mem_processes)?;
        starvation_fields::commands(&p("top_commands"), &self.top_commands)?;
        if let Some(v) = &self.verdict {
            starvation_fields::verdict(&p("verdict"), v)?;
        }
        if let Some(t) = &self.timeline {
            timeline_fields::timeline(&p("timeline"), t)?;
        }
        histograms(
            &p("histograms"),
            &self.histograms,
            &[
                (
                    hist::CPU_TOTAL_PERCENT,
                    &self.cpu_total_percent,
                    "cpu_total_percent",
                ),
                (hist::MEM_USED_BYTES, &self.mem_used_bytes, "mem_used_bytes"),
            ],
            &mut budget,
        )?;
        if let Some(c) = &self.collector {
            text(
                || p("collector.version"),
                &c.version,
                false,
                MAX_SHORT_BYTES,
            )?;
            text(|| p("collector.mode"), &c.mode, false, MAX_SHORT_BYTES)?;
        }
        Ok(())
    }
}

impl MetricsPush {
    /// Checks identity and summary against the system clock; field paths start with
    /// `execution.` or `summary.`.
    pub fn validate(&self) -> Result {
        self.validate_at(SystemTime::now())
    }

    /// [`MetricsPush::validate`] with `now` as the receiver's clock.
    pub fn validate_at(&self, now: SystemTime) -> Result {
        self.execution.validate()?;
        self.summary.validate_under("summary.", now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::fixtures::{measured_container, now, push};
    use crate::validate::limits::MAX_TOP_PROCESSES;
    use crate::{
        ContainerSummary, EncodedHistogram, Limits, NetworkSummary, ProcessSummary, Stats,
    };

    fn field_of(mutate: impl FnOnce(&mut MetricsPush)) -> String {
        let mut p = push();
        mutate(&mut p);
        p.validate_at(now()).unwrap_err().field().to_string()
    }

    fn error_of(mutate: impl FnOnce(&mut MetricsPush)) -> String {
        let mut p = push();
        mutate(&mut p);
        p.validate_at(now()).unwrap_err().to_string()
    }

    #[test]
    fn valid_push_passes() {
        push().validate_at(now()).unwrap();
        push().summary.validate_at(now()).unwrap();
        let mut p = push();
        p.summary.containers = vec![measured_container()];
        p.validate_at(now()).unwrap();
        // The seed's repository spelling, without the organization.
        p.execution.repository = "r".into();
        p.validate_at(now()).unwrap();
    }

    #[test]
    fn names_the_offending_field() {
        assert_eq!(field_of(|p| p.summary.schema_version = 2), "schema_version");
        assert_eq!(field_of(|p| p.execution.job = " ".into()), "execution.job");
        assert_eq!(
            field_of(|p| p.execution.repository = "x".repeat(257)),
            "execution.repository"
        );
        assert_eq!(
            field_of(|p| p.execution.workflow = "a\nb".into()),
            "execution.workflow"
        );
        assert_eq!(
            field_of(|p| p.execution.run_attempt = "1".repeat(129)),
            "execution.run_attempt"
        );
        assert_eq!(
            field_of(|p| p.summary.end_time = "2026-02-06T14:30:01Z".into()),
            "summary.end_time"
        );
        assert_eq!(
            field_of(|p| p.summary.start_time = "yesterday".into()),
            "summary.start_time"
        );
        assert_eq!(
            field_of(|p| p.summary.duration_seconds = f64::NAN),
            "summary.duration_seconds"
        );
        assert_eq!(
            field_of(|p| p.summary.cpu_total_percent.p99 = -1.0),
            "summary.cpu_total_percent.p99"
        );
        assert_eq!(
            field_of(|p| p.summary.containers[0].memory_bytes.avg = f64::INFINITY),
            "summary.containers[0].memory_bytes.avg"
        );
        assert_eq!(
            field_of(|p| p.summary.containers[0].name.clear()),
            "summary.containers[0].name"
        );
        assert_eq!(
            field_of(|p| p.summary.containers[0].network = Some(NetworkSummary {
                rx_bytes_per_sec: Stats {
                    peak: -3.0,
                    ..Default::default()
                },
                ..Default::default()
            })),
            "summary.containers[0].network.rx_bytes_per_sec.peak"
        );
        assert_eq!(
            field_of(|p| p.summary.top_cpu_processes[0].pid = -4),
            "summary.top_cpu_processes[0].pid"
        );
        assert_eq!(
            field_of(|p| p.summary.top_mem_processes =
                vec![ProcessSummary::default(); MAX_TOP_PROCESSES + 1]),
            "summary.top_mem_processes"
        );
        assert_eq!(
            field_of(|p| p.summary.histograms = Some(
                [(
                    "cpu".to_string(),
                    EncodedHistogram {
                        scale: 0,
                        hdr_v2: String::new()
                    }
                )]
                .into()
            )),
            "summary.histograms.cpu.scale"
        );
        let mut err = push().summary.clone();
        err.histograms = Some(
            [(
                "cpu".to_string(),
                EncodedHistogram {
                    scale: 0,
                    hdr_v2: String::new(),
                },
            )]
            .into(),
        );
        assert_eq!(
            err.validate_at(now()).unwrap_err().field(),
            "histograms.cpu.scale"
        );
    }

    #[test]
    fn implausible_values_are_refused() {
        let day = 86_400.0;
        for (mutate, expected) in [
            (
                Box::new(|p: &mut MetricsPush| p.summary.duration_seconds = 32.0 * day)
                    as Box<dyn FnOnce(&mut MetricsPush)>,
                "summary.duration_seconds: is more than 31 days",
            ),
            (
                Box::new(|p: &mut MetricsPush| {
                    p.summary.start_time = "2026-01-01T00:00:00Z".into();
                }),
                "summary.end_time: must not be more than 31 days after start_time",
            ),
            (
                Box::new(|p: &mut MetricsPush| p.summary.cpu_total_percent.peak = 180.0),
                "summary.cpu_total_percent.peak: is more than 100 %",
            ),
            (
                Box::new(|p: &mut MetricsPush| p.summary.containers[0].cpu_cores.p50 = 5000.0),
                "summary.containers[0].cpu_cores.p50: is more than 4096 cores",
            ),
            (
                Box::new(|p: &mut MetricsPush| {
                    p.summary.containers[0].limits = Some(Limits {
                        cpu_cores: Some(4097.0),
                        memory_bytes: None,
                    });
                }),
                "summary.containers[0].limits.cpu_cores: is more than 4096 cores",
            ),
            (
                Box::new(|p: &mut MetricsPush| {
                    p.summary.top_cpu_processes[0].peak_cpu_percent = 409_601.0;
                }),
                "summary.top_cpu_processes[0].peak_cpu_percent: is more than 409600 (4096 cores)",
            ),
            (
                Box::new(|p: &mut MetricsPush| p.summary.mem_used_bytes.peak = 7.1e13),
                "summary.mem_used_bytes.peak: is more than 64 TiB",
            ),
            (
                Box::new(|p: &mut MetricsPush| {
                    p.summary.containers[0].memory_peak_bytes = Some(MAX_MEMORY_BYTES + 1);
                }),
                "summary.containers[0].memory_peak_bytes: is more than 64 TiB",
            ),
            (
                Box::new(|p: &mut MetricsPush| {
                    p.summary.top_mem_processes = vec![ProcessSummary {
                        peak_mem_rss_bytes: u64::MAX,
                        ..Default::default()
                    }];
                }),
                "summary.top_mem_processes[0].peak_mem_rss_bytes: is more than 64 TiB",
            ),
            (
                Box::new(|p: &mut MetricsPush| {
                    p.summary.start_time = "1999-12-31T23:59:59Z".into();
                    p.summary.end_time = "1999-12-31T23:59:59Z".into();
                }),
                "summary.start_time: must not be before 2000-01-01",
            ),
            (
                Box::new(|p: &mut MetricsPush| {
                    p.summary.end_time = "2026-02-07T14:31:01Z".into();
                }),
                "summary.end_time: must not be more than a day ahead of the receiver's clock",
            ),
            (
                Box::new(|p: &mut MetricsPush| p.execution.repository = "o/".into()),
                "execution.repository: must name a repository, not only the organization",
            ),
            (
                Box::new(|p: &mut MetricsPush| p.execution.repository = "x//y".into()),
                "execution.repository: must not have an empty path segment",
            ),
            (
                Box::new(|p: &mut MetricsPush| {
                    p.summary.containers = vec![
                        ContainerSummary {
                            name: "c".into(),
                            ..Default::default()
                        };
                        MAX_CONTAINERS + 1
                    ];
                }),
                "summary.containers: has more than 1000 entries",
            ),
            (
                Box::new(|p: &mut MetricsPush| p.summary.containers[0].name = "c".repeat(513)),
                "summary.containers[0].name: is longer than 512 bytes",
            ),
        ] {
            assert_eq!(error_of(mutate), expected);
        }
        // Exactly a day ahead is still fine (clocks disagree), and so are 31 days.
        let mut p = push();
        p.summary.end_time = "2026-02-07T14:31:00Z".into();
        p.summary.duration_seconds = 31.0 * day;
        p.validate_at(now()).unwrap();
        // The bounds themselves pass.
        let mut p = push();
        p.summary.cpu_total_percent.peak = 100.0;
        p.summary.containers = vec![
            ContainerSummary {
                name: "c".into(),
                ..Default::default()
            };
            MAX_CONTAINERS
        ];
        p.summary.containers[0].cpu_cores.peak = 4096.0;
        p.validate_at(now()).unwrap();
    }

    #[test]
    fn error_message_names_versions() {
        let mut p = push();
        p.summary.schema_version = 9;
        assert_eq!(
            p.validate_at(now()).unwrap_err().to_string(),
            "schema_version 9 is not supported (supported: 1)"
        );
    }
}
