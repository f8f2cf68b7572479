//! Checks on summaries from untrusted senders.
//!
//! A summary that passes is safe to store and to answer with: it has a known schema
//! version, every number is finite and non-negative, its end is not before its start,
//! its identity is complete and every list and name has a bounded size.

use crate::{ContainerSummary, Execution, Histograms, MetricsPush, ProcessSummary, RunSummary};
use crate::{SCHEMA_VERSION, Stats, time};

/// Most containers, and most processes in each top list, a summary may carry.
pub const MAX_ITEMS: usize = 10_000;
/// Longest name or identity field, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;
/// Most histograms in one histogram map.
pub const MAX_HISTOGRAMS: usize = 64;
/// Longest serialized histogram, in bytes of base64.
pub const MAX_HISTOGRAM_BYTES: usize = 256 * 1024;

/// Why a summary was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// The summary was written with a schema this build does not know.
    #[error("schema_version {found} is not supported (supported: {supported})")]
    UnsupportedSchema {
        /// The version in the summary.
        found: u32,
        /// The version this build understands.
        supported: u32,
    },
    /// A field has an invalid value.
    #[error("{field}: {reason}")]
    Invalid {
        /// JSON path of the field, e.g. `summary.containers[2].cpu_cores.p99`.
        field: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl ValidationError {
    /// The JSON path of the offending field.
    pub fn field(&self) -> &str {
        match self {
            Self::UnsupportedSchema { .. } => "schema_version",
            Self::Invalid { field, .. } => field,
        }
    }
}

type Result<T = ()> = std::result::Result<T, ValidationError>;

fn invalid(field: impl Into<String>, reason: &'static str) -> ValidationError {
    ValidationError::Invalid {
        field: field.into(),
        reason,
    }
}

fn number(field: impl FnOnce() -> String, v: f64) -> Result {
    if !v.is_finite() {
        return Err(invalid(field(), "must be a finite number"));
    }
    if v < 0.0 {
        return Err(invalid(field(), "must not be negative"));
    }
    Ok(())
}

fn stats(prefix: &str, s: &Stats) -> Result {
    for (name, v) in [
        ("peak", s.peak),
        ("p99", s.p99),
        ("p95", s.p95),
        ("p75", s.p75),
        ("p50", s.p50),
        ("avg", s.avg),
    ] {
        number(|| format!("{prefix}.{name}"), v)?;
    }
    Ok(())
}

fn name(field: impl FnOnce() -> String, v: &str, required: bool) -> Result {
    if required && v.trim().is_empty() {
        return Err(invalid(field(), "must not be empty"));
    }
    if v.len() > MAX_NAME_BYTES {
        return Err(invalid(field(), "is longer than 1024 bytes"));
    }
    if v.chars().any(char::is_control) {
        return Err(invalid(field(), "must not contain control characters"));
    }
    Ok(())
}

fn histograms(field: &str, h: &Option<Histograms>) -> Result {
    let Some(h) = h else { return Ok(()) };
    if h.len() > MAX_HISTOGRAMS {
        return Err(invalid(field, "has more than 64 entries"));
    }
    for (key, enc) in h {
        name(|| field.to_string(), key, true)?;
        if enc.scale == 0 {
            return Err(invalid(format!("{field}.{key}.scale"), "must be positive"));
        }
        if enc.hdr_v2.len() > MAX_HISTOGRAM_BYTES {
            return Err(invalid(format!("{field}.{key}.hdr_v2"), "is too long"));
        }
    }
    Ok(())
}

fn container(prefix: &str, c: &ContainerSummary) -> Result {
    name(|| format!("{prefix}.name"), &c.name, true)?;
    stats(&format!("{prefix}.cpu_cores"), &c.cpu_cores)?;
    stats(&format!("{prefix}.memory_bytes"), &c.memory_bytes)?;
    number(|| format!("{prefix}.cpu_seconds"), c.cpu_seconds)?;
    if let Some(n) = &c.network {
        stats(
            &format!("{prefix}.network.rx_bytes_per_sec"),
            &n.rx_bytes_per_sec,
        )?;
        stats(
            &format!("{prefix}.network.tx_bytes_per_sec"),
            &n.tx_bytes_per_sec,
        )?;
    }
    if let Some(cpu) = c.limits.and_then(|l| l.cpu_cores) {
        number(|| format!("{prefix}.limits.cpu_cores"), cpu)?;
    }
    if let Some(s) = &c.cpu_to_limit {
        stats(&format!("{prefix}.cpu_to_limit"), s)?;
    }
    if let Some(s) = &c.memory_to_limit {
        stats(&format!("{prefix}.memory_to_limit"), s)?;
    }
    histograms(&format!("{prefix}.histograms"), &c.histograms)
}

fn process(prefix: &str, p: &ProcessSummary) -> Result {
    if p.pid < 0 {
        return Err(invalid(format!("{prefix}.pid"), "must not be negative"));
    }
    name(|| format!("{prefix}.name"), &p.name, false)?;
    number(|| format!("{prefix}.peak_cpu_percent"), p.peak_cpu_percent)?;
    number(|| format!("{prefix}.cpu_seconds"), p.cpu_seconds)?;
    if let Some(c) = &p.container {
        name(|| format!("{prefix}.container"), c, false)?;
    }
    Ok(())
}

fn processes(prefix: &str, list: &[ProcessSummary]) -> Result {
    if list.len() > MAX_ITEMS {
        return Err(invalid(prefix, "has more than 10000 entries"));
    }
    for (i, p) in list.iter().enumerate() {
        process(&format!("{prefix}[{i}]"), p)?;
    }
    Ok(())
}

impl RunSummary {
    /// Checks this summary; `Err` names the first offending field (paths start at the
    /// summary itself, e.g. `containers[0].name`).
    pub fn validate(&self) -> Result {
        self.validate_at("")
    }

    fn validate_at(&self, root: &str) -> Result {
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
        if end < start {
            return Err(invalid(p("end_time"), "must not be before start_time"));
        }
        number(|| p("duration_seconds"), self.duration_seconds)?;
        stats(&p("cpu_total_percent"), &self.cpu_total_percent)?;
        stats(&p("mem_used_bytes"), &self.mem_used_bytes)?;
        if self.containers.len() > MAX_ITEMS {
            return Err(invalid(p("containers"), "has more than 10000 entries"));
        }
        for (i, c) in self.containers.iter().enumerate() {
            container(&p(&format!("containers[{i}]")), c)?;
        }
        processes(&p("top_cpu_processes"), &self.top_cpu_processes)?;
        processes(&p("top_mem_processes"), &self.top_mem_processes)?;
        histograms(&p("histograms"), &self.histograms)?;
        if let Some(c) = &self.collector {
            name(|| p("collector.version"), &c.version, false)?;
            name(|| p("collector.mode"), &c.mode, false)?;
        }
        Ok(())
    }
}

impl Execution {
    /// Checks the identity: organization, repository, workflow and job must be non-empty
    /// (the run id may be empty); every field is at most 1 KiB without control characters.
    pub fn validate(&self) -> Result {
        name(|| "execution.organization".into(), &self.organization, true)?;
        name(|| "execution.repository".into(), &self.repository, true)?;
        name(|| "execution.workflow".into(), &self.workflow, true)?;
        name(|| "execution.job".into(), &self.job, true)?;
        name(|| "execution.run_id".into(), &self.run_id, false)
    }
}

impl MetricsPush {
    /// Checks identity and summary; field paths start with `execution.` or `summary.`.
    pub fn validate(&self) -> Result {
        self.execution.validate()?;
        self.summary.validate_at("summary.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EncodedHistogram, NetworkSummary};

    fn push() -> MetricsPush {
        MetricsPush {
            execution: Execution {
                organization: "o".into(),
                repository: "o/r".into(),
                workflow: "w".into(),
                job: "j".into(),
                run_id: "1".into(),
            },
            summary: RunSummary {
                start_time: "2026-02-06T14:30:02.185Z".into(),
                end_time: "2026-02-06T14:30:22.190Z".into(),
                duration_seconds: 20.005,
                containers: vec![ContainerSummary {
                    name: "runner".into(),
                    ..Default::default()
                }],
                top_cpu_processes: vec![ProcessSummary {
                    pid: 1,
                    name: "sh".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        }
    }

    fn field_of(mutate: impl FnOnce(&mut MetricsPush)) -> String {
        let mut p = push();
        mutate(&mut p);
        p.validate().unwrap_err().field().to_string()
    }

    #[test]
    fn valid_push_passes() {
        push().validate().unwrap();
        push().summary.validate().unwrap();
    }

    #[test]
    fn names_the_offending_field() {
        assert_eq!(field_of(|p| p.summary.schema_version = 2), "schema_version");
        assert_eq!(field_of(|p| p.execution.job = " ".into()), "execution.job");
        assert_eq!(
            field_of(|p| p.execution.repository = "x".repeat(1025)),
            "execution.repository"
        );
        assert_eq!(
            field_of(|p| p.execution.workflow = "a\nb".into()),
            "execution.workflow"
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
            field_of(
                |p| p.summary.top_mem_processes = vec![ProcessSummary::default(); MAX_ITEMS + 1]
            ),
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
        let err = push().summary.clone();
        let mut err = err;
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
        assert_eq!(err.validate().unwrap_err().field(), "histograms.cpu.scale");
    }

    #[test]
    fn error_message_names_versions() {
        let mut p = push();
        p.summary.schema_version = 9;
        assert_eq!(
            p.validate().unwrap_err().to_string(),
            "schema_version 9 is not supported (supported: 1)"
        );
    }
}
