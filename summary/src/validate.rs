//! Checks on summaries from untrusted senders.
//!
//! A summary that passes is safe to store and to answer with:
//! - it has a known schema version;
//! - every number is finite, non-negative and plausible (the `MAX_*` bounds below: a run
//!   of at most 31 days, at most 4096 cores, at most 64 TiB of memory);
//! - its timestamps are after 2000-01-01, not more than a day ahead of the receiver's
//!   clock, and its end is not before its start;
//! - its identity is complete and names a repository;
//! - every serialized histogram decodes (an uncompressed HdrHistogram V2 with the
//!   accumulator's parameters, checked before anything is allocated from its header), is
//!   bounded in size, and agrees with the stats beside it;
//! - every list and name has a bounded size.
//!
//! The bounds are documented in `receiver/README.md` ("Limits").

use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;

use crate::accumulator::SIGNIFICANT_DIGITS;
use crate::{
    ContainerSummary, EncodedHistogram, Execution, Histograms, MetricsPush, ProcessSummary,
    RunSummary, canonical_repository, hist,
};
use crate::{SCHEMA_VERSION, Stats, time};

/// Most containers one summary may carry.
pub const MAX_CONTAINERS: usize = 1_000;
/// Most processes in each of `top_cpu_processes` and `top_mem_processes`.
pub const MAX_TOP_PROCESSES: usize = 1_000;
/// Longest organization, repository, workflow or job, in bytes (of a push or a token).
pub const MAX_IDENTITY_BYTES: usize = 256;
/// Longest run id or run attempt, in bytes.
pub const MAX_RUN_ID_BYTES: usize = 128;
/// Longest container name (also a process's `container` and a network namespace list).
pub const MAX_NAME_BYTES: usize = 512;
/// Longest process name.
pub const MAX_PROCESS_NAME_BYTES: usize = 256;
/// Longest histogram key, collector version or collector mode.
pub const MAX_SHORT_BYTES: usize = 64;
/// Most histograms in one histogram map.
pub const MAX_HISTOGRAMS: usize = 16;
/// Longest serialized histogram, in bytes of base64.
pub const MAX_HISTOGRAM_BYTES: usize = 64 * 1024;
/// Most bytes of base64 of all the histograms of one summary together.
pub const MAX_RUN_HISTOGRAM_BYTES: usize = 768 * 1024;
/// Largest histogram scale (samples are multiplied by it before being recorded).
pub const MAX_HISTOGRAM_SCALE: u64 = 1_000_000;
/// Longest run: 31 days, in seconds.
pub const MAX_DURATION_SECONDS: f64 = 31.0 * 86_400.0;
/// Most cores a container, a limit or a process (as `100 %` per core) may report.
pub const MAX_CORES: f64 = 4096.0;
/// Highest system-wide CPU percentage: 100, plus the histograms' 0.1 % precision (a
/// merged summary's peak is a histogram bucket's upper end).
pub const MAX_TOTAL_CPU_PERCENT: f64 = 100.1;
/// Most CPU seconds of a container or a process: [`MAX_CORES`] for [`MAX_DURATION_SECONDS`].
pub const MAX_CPU_SECONDS: f64 = MAX_CORES * MAX_DURATION_SECONDS;
/// Most memory any figure may report: 64 TiB.
pub const MAX_MEMORY_BYTES: u64 = 64 << 40;
/// Highest network rate: 10 TB/s (80 Tbit/s).
pub const MAX_BYTES_PER_SEC: f64 = 1e13;
/// Highest process id (Linux's `PID_MAX_LIMIT`).
pub const MAX_PID: i32 = 4_194_304;
/// Earliest accepted timestamp: 2000-01-01T00:00:00Z, in Unix seconds.
pub const EARLIEST_UNIX_SECONDS: i64 = 946_684_800;
/// How far ahead of the receiver's clock a timestamp may be: one day, in seconds.
pub const MAX_FUTURE_SECONDS: i64 = 86_400;

/// Cookie of an uncompressed HdrHistogram V2 serialization: `0x1c849303 | 0x10`, the flag
/// of its zig-zag LEB128 counts.
const HDR_V2_COOKIE: u32 = 0x1c84_9313;
/// Bytes of an HdrHistogram V2 header: cookie, payload length, normalizing offset,
/// significant digits, lowest and highest value, integer-to-double ratio.
const HDR_V2_HEADER: usize = 40;

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

mod starvation_fields;
mod timeline_fields;

type Result<T = ()> = std::result::Result<T, ValidationError>;

fn invalid(field: impl Into<String>, reason: &'static str) -> ValidationError {
    ValidationError::Invalid {
        field: field.into(),
        reason,
    }
}

/// A finite, non-negative number at most `max`; `too_big` says what `max` is.
fn bounded(field: impl FnOnce() -> String, v: f64, max: f64, too_big: &'static str) -> Result {
    if !v.is_finite() {
        return Err(invalid(field(), "must be a finite number"));
    }
    if v < 0.0 {
        return Err(invalid(field(), "must not be negative"));
    }
    if v > max {
        return Err(invalid(field(), too_big));
    }
    Ok(())
}

/// Every field of `s` finite, non-negative and at most `max`.
fn stats(prefix: &str, s: &Stats, max: f64, too_big: &'static str) -> Result {
    for (name, v) in [
        ("peak", s.peak),
        ("p99", s.p99),
        ("p95", s.p95),
        ("p75", s.p75),
        ("p50", s.p50),
        ("avg", s.avg),
    ] {
        bounded(|| format!("{prefix}.{name}"), v, max, too_big)?;
    }
    Ok(())
}

const CORES: &str = "is more than 4096 cores";
const MEMORY: &str = "is more than 64 TiB";
const RATE: &str = "is more than 10 TB/s";
const CPU_SECONDS: &str = "is more than 4096 cores for 31 days";
const UNBOUNDED: &str = "is too large";

fn memory(field: impl FnOnce() -> String, v: u64) -> Result {
    if v > MAX_MEMORY_BYTES {
        return Err(invalid(field(), MEMORY));
    }
    Ok(())
}

/// Why `v` is not an acceptable string of at most `max` bytes, if it is not.
fn text_problem(v: &str, required: bool, max: usize) -> Option<&'static str> {
    if required && v.trim().is_empty() {
        return Some("must not be empty");
    }
    if v.len() > max {
        return Some(match max {
            // MAX_IDENTITY_BYTES and MAX_PROCESS_NAME_BYTES.
            256 => "is longer than 256 bytes",
            MAX_RUN_ID_BYTES => "is longer than 128 bytes",
            MAX_NAME_BYTES => "is longer than 512 bytes",
            MAX_SHORT_BYTES => "is longer than 64 bytes",
            _ => "is too long",
        });
    }
    if v.chars().any(char::is_control) {
        return Some("must not contain control characters");
    }
    None
}

fn text(field: impl FnOnce() -> String, v: &str, required: bool, max: usize) -> Result {
    match text_problem(v, required, max) {
        Some(reason) => Err(invalid(field(), reason)),
        None => Ok(()),
    }
}

/// Why `value` cannot be an organization, workflow or job (of a push or of a push
/// token's scope), if it cannot: empty or blank, longer than [`MAX_IDENTITY_BYTES`], or
/// with control characters.
pub fn identity_problem(value: &str) -> Option<&'static str> {
    text_problem(value, true, MAX_IDENTITY_BYTES)
}

/// Why `repository` cannot be the repository of `organization`, if it cannot: the checks
/// of [`identity_problem`], and its canonical form (without a leading `organization/`,
/// see [`canonical_repository`]) must be a non-empty path without empty segments, so
/// `"o/"`, `"/r"` and `"a//b"` are refused.
pub fn repository_problem(organization: &str, repository: &str) -> Option<&'static str> {
    if let Some(problem) = identity_problem(repository) {
        return Some(problem);
    }
    let canonical = canonical_repository(organization, repository);
    if canonical.trim().is_empty() {
        return Some("must name a repository, not only the organization");
    }
    if canonical
        .split('/')
        .any(|segment| segment.trim().is_empty())
    {
        return Some("must not have an empty path segment");
    }
    None
}

/// Sums the base64 bytes of every histogram of a summary against
/// [`MAX_RUN_HISTOGRAM_BYTES`].
struct HistogramBudget {
    /// Bytes still allowed.
    left: usize,
}

/// Decodes one serialized histogram, refusing anything the accumulator would not have
/// written before allocating from its header: an uncompressed V2 serialization with
/// three significant digits, a lowest discernible value of 1 and a payload length that
/// matches the bytes.
fn decode_histogram(field: &str, enc: &EncodedHistogram) -> Result<Histogram<u64>> {
    if enc.scale == 0 {
        return Err(invalid(format!("{field}.scale"), "must be positive"));
    }
    if enc.scale > MAX_HISTOGRAM_SCALE {
        return Err(invalid(format!("{field}.scale"), "is more than 1000000"));
    }
    let data = || format!("{field}.hdr_v2");
    if enc.hdr_v2.len() > MAX_HISTOGRAM_BYTES {
        return Err(invalid(data(), "is longer than 65536 bytes"));
    }
    let bytes = BASE64
        .decode(enc.hdr_v2.as_bytes())
        .map_err(|_| invalid(data(), "is not valid base64"))?;
    let not_v2 = || {
        invalid(
            data(),
            "is not an uncompressed HdrHistogram V2 serialization",
        )
    };
    let header = bytes.get(..HDR_V2_HEADER).ok_or_else(not_v2)?;
    let u32_at =
        |i: usize| u32::from_be_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&header[i..i + 8]);
        u64::from_be_bytes(b)
    };
    if u32_at(0) != HDR_V2_COOKIE {
        return Err(not_v2());
    }
    if u32_at(4) as usize != bytes.len() - HDR_V2_HEADER {
        return Err(invalid(
            data(),
            "has a payload length that does not match its size",
        ));
    }
    if u32_at(12) != u32::from(SIGNIFICANT_DIGITS) || u64_at(16) != 1 {
        return Err(invalid(
            data(),
            "must have 3 significant digits and a lowest value of 1",
        ));
    }
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|_| invalid(data(), "is not a valid HdrHistogram serialization"))
}

/// Whether `s.peak` lies in the bucket of `h`'s largest value (or everything is zero for
/// an empty histogram): the accumulator records `round(peak × scale)`.
fn agrees(h: &Histogram<u64>, scale: u64, s: &Stats) -> bool {
    if h.is_empty() {
        return s.peak == 0.0;
    }
    let top = h.max();
    let lo = h.lowest_equivalent(top) as f64;
    let hi = h.highest_equivalent(top) as f64;
    let slack = 1.0 + hi * 1e-9;
    let peak = s.peak * scale as f64;
    peak >= lo - slack && peak <= hi + slack
}

/// Checks a histogram map; `known` pairs a key with the stats it backs.
fn histograms(
    field: &str,
    h: &Option<Histograms>,
    known: &[(&str, &Stats, &str)],
    budget: &mut HistogramBudget,
) -> Result {
    let Some(h) = h else { return Ok(()) };
    if h.len() > MAX_HISTOGRAMS {
        return Err(invalid(field, "has more than 16 entries"));
    }
    for (key, enc) in h {
        text(|| field.to_string(), key, true, MAX_SHORT_BYTES)?;
        let here = format!("{field}.{key}");
        budget.left = budget.left.checked_sub(enc.hdr_v2.len()).ok_or_else(|| {
            invalid(
                format!("{here}.hdr_v2"),
                "takes the summary's histograms over 786432 bytes",
            )
        })?;
        let decoded = decode_histogram(&here, enc)?;
        if let Some((_, s, stats_field)) = known.iter().find(|(k, _, _)| k == key) {
            if !agrees(&decoded, enc.scale, s) {
                return Err(ValidationError::Invalid {
                    field: here,
                    reason: match *stats_field {
                        "cpu_total_percent" => "does not agree with cpu_total_percent.peak",
                        "mem_used_bytes" => "does not agree with mem_used_bytes.peak",
                        "cpu_cores" => "does not agree with cpu_cores.peak",
                        "memory_bytes" => "does not agree with memory_bytes.peak",
                        _ => "does not agree with the stats beside it",
                    },
                });
            }
        }
    }
    Ok(())
}

fn container(prefix: &str, c: &ContainerSummary, budget: &mut HistogramBudget) -> Result {
    text(|| format!("{prefix}.name"), &c.name, true, MAX_NAME_BYTES)?;
    stats(
        &format!("{prefix}.cpu_cores"),
        &c.cpu_cores,
        MAX_CORES,
        CORES,
    )?;
    stats(
        &format!("{prefix}.memory_bytes"),
        &c.memory_bytes,
        MAX_MEMORY_BYTES as f64,
        MEMORY,
    )?;
    bounded(
        || format!("{prefix}.cpu_seconds"),
        c.cpu_seconds,
        MAX_CPU_SECONDS,
        CPU_SECONDS,
    )?;
    if let Some(peak) = c.memory_peak_bytes {
        memory(|| format!("{prefix}.memory_peak_bytes"), peak)?;
    }
    if let Some(n) = &c.network {
        text(
            || format!("{prefix}.network.namespace"),
            &n.namespace,
            false,
            MAX_NAME_BYTES,
        )?;
        stats(
            &format!("{prefix}.network.rx_bytes_per_sec"),
            &n.rx_bytes_per_sec,
            MAX_BYTES_PER_SEC,
            RATE,
        )?;
        stats(
            &format!("{prefix}.network.tx_bytes_per_sec"),
            &n.tx_bytes_per_sec,
            MAX_BYTES_PER_SEC,
            RATE,
        )?;
    }
    if let Some(limits) = c.limits {
        if let Some(cpu) = limits.cpu_cores {
            bounded(
                || format!("{prefix}.limits.cpu_cores"),
                cpu,
                MAX_CORES,
                CORES,
            )?;
        }
        if let Some(mem) = limits.memory_bytes {
            memory(|| format!("{prefix}.limits.memory_bytes"), mem)?;
        }
    }
    if let Some(s) = &c.cpu_to_limit {
        stats(&format!("{prefix}.cpu_to_limit"), s, f64::MAX, UNBOUNDED)?;
    }
    if let Some(s) = &c.memory_to_limit {
        stats(&format!("{prefix}.memory_to_limit"), s, f64::MAX, UNBOUNDED)?;
    }
    starvation_fields::container(prefix, c)?;
    histograms(
        &format!("{prefix}.histograms"),
        &c.histograms,
        &[
            (hist::CPU_CORES, &c.cpu_cores, "cpu_cores"),
            (hist::MEMORY_BYTES, &c.memory_bytes, "memory_bytes"),
        ],
        budget,
    )
}

fn process(prefix: &str, p: &ProcessSummary) -> Result {
    if p.pid < 0 {
        return Err(invalid(format!("{prefix}.pid"), "must not be negative"));
    }
    if p.pid > MAX_PID {
        return Err(invalid(format!("{prefix}.pid"), "is more than 4194304"));
    }
    text(
        || format!("{prefix}.name"),
        &p.name,
        false,
        MAX_PROCESS_NAME_BYTES,
    )?;
    bounded(
        || format!("{prefix}.peak_cpu_percent"),
        p.peak_cpu_percent,
        100.0 * MAX_CORES,
        "is more than 409600 (4096 cores)",
    )?;
    memory(
        || format!("{prefix}.peak_mem_rss_bytes"),
        p.peak_mem_rss_bytes,
    )?;
    bounded(
        || format!("{prefix}.cpu_seconds"),
        p.cpu_seconds,
        MAX_CPU_SECONDS,
        CPU_SECONDS,
    )?;
    if let Some(c) = &p.container {
        text(|| format!("{prefix}.container"), c, false, MAX_NAME_BYTES)?;
    }
    Ok(())
}

fn processes(prefix: &str, list: &[ProcessSummary]) -> Result {
    if list.len() > MAX_TOP_PROCESSES {
        return Err(invalid(prefix, "has more than 1000 entries"));
    }
    for (i, p) in list.iter().enumerate() {
        process(&format!("{prefix}[{i}]"), p)?;
    }
    Ok(())
}

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
        let mut budget = HistogramBudget {
            left: MAX_RUN_HISTOGRAM_BYTES,
        };
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

impl Execution {
    /// Checks the identity: organization, repository, workflow and job must be non-empty
    /// (the run id and attempt may be empty), at most [`MAX_IDENTITY_BYTES`] (run id and
    /// attempt [`MAX_RUN_ID_BYTES`]) without control characters, and the repository must
    /// name one ([`repository_problem`]).
    pub fn validate(&self) -> Result {
        let check = |field: &'static str, problem: Option<&'static str>| match problem {
            Some(reason) => Err(invalid(field, reason)),
            None => Ok(()),
        };
        check(
            "execution.organization",
            identity_problem(&self.organization),
        )?;
        check(
            "execution.repository",
            repository_problem(&self.organization, &self.repository),
        )?;
        check("execution.workflow", identity_problem(&self.workflow))?;
        check("execution.job", identity_problem(&self.job))?;
        text(
            || "execution.run_id".into(),
            &self.run_id,
            false,
            MAX_RUN_ID_BYTES,
        )?;
        text(
            || "execution.run_attempt".into(),
            &self.run_attempt,
            false,
            MAX_RUN_ID_BYTES,
        )
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
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::{Accumulator, Limits, NetworkSummary, SCALE_CORES};

    /// 2026-02-06T14:31:00Z, just after the test summary's end.
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_770_388_260)
    }

    fn push() -> MetricsPush {
        MetricsPush {
            execution: Execution {
                organization: "o".into(),
                repository: "o/r".into(),
                workflow: "w".into(),
                job: "j".into(),
                run_id: "1".into(),
                run_attempt: "1".into(),
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
        p.validate_at(now()).unwrap_err().field().to_string()
    }

    fn error_of(mutate: impl FnOnce(&mut MetricsPush)) -> String {
        let mut p = push();
        mutate(&mut p);
        p.validate_at(now()).unwrap_err().to_string()
    }

    /// A container with real histograms whose stats come from the same accumulators.
    fn measured_container() -> ContainerSummary {
        let mut cpu = Accumulator::new(SCALE_CORES);
        let mut mem = Accumulator::new(crate::SCALE_BYTES);
        for i in 0..50u32 {
            cpu.record(f64::from(i) * 0.037);
            mem.record(f64::from(100_000_000 + i * 12_345));
        }
        ContainerSummary {
            name: "runner".into(),
            cpu_cores: cpu.stats(),
            memory_bytes: mem.stats(),
            histograms: Some(
                [
                    (hist::CPU_CORES.to_string(), cpu.encode()),
                    (hist::MEMORY_BYTES.to_string(), mem.encode()),
                ]
                .into(),
            ),
            ..Default::default()
        }
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

    fn with_histogram(enc: EncodedHistogram) -> MetricsPush {
        let mut p = push();
        p.summary.containers = vec![measured_container()];
        p.summary.containers[0]
            .histograms
            .as_mut()
            .unwrap()
            .insert(hist::CPU_CORES.into(), enc);
        p
    }

    fn hist_error(enc: EncodedHistogram) -> String {
        with_histogram(enc)
            .validate_at(now())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn histograms_must_decode_and_agree_with_their_stats() {
        let good = measured_container().histograms.unwrap()[hist::CPU_CORES].clone();
        let field = "summary.containers[0].histograms.cpu_cores";
        let raw = BASE64.decode(&good.hdr_v2).unwrap();
        let reencode = |bytes: &[u8]| EncodedHistogram {
            scale: good.scale,
            hdr_v2: BASE64.encode(bytes),
        };
        // Not base64, not HdrHistogram, truncated, or lying about its payload length.
        assert_eq!(
            hist_error(EncodedHistogram {
                scale: 1000,
                hdr_v2: "@@@".into()
            }),
            format!("{field}.hdr_v2: is not valid base64")
        );
        assert_eq!(
            hist_error(reencode(b"not a histogram at all, not even close to one")),
            format!("{field}.hdr_v2: is not an uncompressed HdrHistogram V2 serialization")
        );
        assert_eq!(
            hist_error(reencode(&raw[..raw.len() - 1])),
            format!("{field}.hdr_v2: has a payload length that does not match its size")
        );
        // A header asking for a 4 GiB payload buffer is refused before anything is allocated.
        let mut huge = raw.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(hist_error(reencode(&huge)).contains("payload length"));
        // Five significant digits would allocate tens of MiB of counts.
        let mut digits = raw.clone();
        digits[12..16].copy_from_slice(&5u32.to_be_bytes());
        assert_eq!(
            hist_error(reencode(&digits)),
            format!("{field}.hdr_v2: must have 3 significant digits and a lowest value of 1")
        );
        // The compressed V2 format (a zlib bomb's way in) is not accepted.
        let mut compressed = raw.clone();
        compressed[0..4].copy_from_slice(&0x1c84_9314u32.to_be_bytes());
        assert!(hist_error(reencode(&compressed)).contains("uncompressed"));
        // Too long.
        assert_eq!(
            hist_error(EncodedHistogram {
                scale: 1000,
                hdr_v2: "A".repeat(MAX_HISTOGRAM_BYTES + 4)
            }),
            format!("{field}.hdr_v2: is longer than 65536 bytes")
        );
        // A scale that makes no sense.
        assert_eq!(
            hist_error(EncodedHistogram {
                scale: MAX_HISTOGRAM_SCALE + 1,
                hdr_v2: good.hdr_v2.clone()
            }),
            format!("{field}.scale: is more than 1000000")
        );
        // A histogram of other values than the stats beside it.
        let mut other = Accumulator::new(SCALE_CORES);
        other.record(3.5);
        assert_eq!(
            hist_error(other.encode()),
            format!("{field}: does not agree with cpu_cores.peak")
        );
        let mut p = with_histogram(good.clone());
        p.summary.containers[0].cpu_cores.peak *= 1.01;
        assert!(p.validate_at(now()).is_err());
        // An empty histogram agrees only with zero stats.
        let empty = Accumulator::new(SCALE_CORES).encode();
        assert!(hist_error(empty.clone()).contains("does not agree"));
        let mut p = push();
        p.summary.containers[0].histograms = Some([(hist::CPU_CORES.into(), empty)].into());
        p.validate_at(now()).unwrap();
        // Unknown keys are decoded, not compared.
        let mut p = push();
        p.summary.histograms = Some([("future_metric".into(), other.encode())].into());
        p.validate_at(now()).unwrap();
        // A merged summary (peaks from histogram buckets) still agrees.
        let c = measured_container();
        let mut merged =
            Accumulator::decode(&c.histograms.as_ref().unwrap()[hist::CPU_CORES]).unwrap();
        merged.merge(&Accumulator::decode(&good).unwrap()).unwrap();
        let mut p = with_histogram(merged.encode());
        p.summary.containers[0].cpu_cores = merged.stats();
        p.validate_at(now()).unwrap();
    }

    #[test]
    fn histogram_bytes_of_a_run_are_bounded() {
        // 4,096 distinct values: a histogram of a few KiB.
        let mut cpu = Accumulator::new(SCALE_CORES);
        for i in 0..4096u32 {
            cpu.record(f64::from(i) / 1000.0);
        }
        let mut c = measured_container();
        c.cpu_cores = cpu.stats();
        c.histograms
            .as_mut()
            .unwrap()
            .insert(hist::CPU_CORES.into(), cpu.encode());
        let per = c.histograms.as_ref().unwrap()[hist::CPU_CORES].hdr_v2.len()
            + c.histograms.as_ref().unwrap()[hist::MEMORY_BYTES]
                .hdr_v2
                .len();
        let mut p = push();
        let n = MAX_RUN_HISTOGRAM_BYTES / per + 1;
        assert!(n <= MAX_CONTAINERS, "{n} containers");
        p.summary.containers = (0..n)
            .map(|i| ContainerSummary {
                name: format!("c{i}"),
                ..c.clone()
            })
            .collect();
        let err = p.validate_at(now()).unwrap_err().to_string();
        assert!(err.contains("over 786432 bytes"), "{err}");
    }

    #[test]
    fn identity_rules_are_shared_with_token_scopes() {
        assert_eq!(identity_problem("build"), None);
        assert_eq!(identity_problem(" "), Some("must not be empty"));
        assert_eq!(
            identity_problem("a\tb"),
            Some("must not contain control characters")
        );
        assert_eq!(
            identity_problem(&"x".repeat(257)),
            Some("is longer than 256 bytes")
        );
        assert_eq!(repository_problem("o", "o/r"), None);
        assert_eq!(repository_problem("o", "r"), None);
        assert_eq!(repository_problem("o", "other/r"), None);
        for bad in ["o/", "/r", "o//r", "r/", "o/ "] {
            assert!(repository_problem("o", bad).is_some(), "{bad}");
        }
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
