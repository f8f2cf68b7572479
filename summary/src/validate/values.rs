//! Checks every field shares: a bounded number, the stats of one metric, a memory figure
//! and a bounded text; and the reasons they give when a figure is too large.

use super::error::{Result, invalid};
use super::limits::{MAX_MEMORY_BYTES, MAX_NAME_BYTES, MAX_RUN_ID_BYTES, MAX_SHORT_BYTES};
use crate::Stats;

/// A finite, non-negative number at most `max`; `too_big` says what `max` is.
pub(super) fn bounded(
    field: impl FnOnce() -> String,
    v: f64,
    max: f64,
    too_big: &'static str,
) -> Result {
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
pub(super) fn stats(prefix: &str, s: &Stats, max: f64, too_big: &'static str) -> Result {
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

pub(super) const CORES: &str = "is more than 4096 cores";
pub(super) const MEMORY: &str = "is more than 64 TiB";
pub(super) const RATE: &str = "is more than 10 TB/s";
pub(super) const CPU_SECONDS: &str = "is more than 4096 cores for 31 days";
pub(super) const UNBOUNDED: &str = "is too large";

/// A memory figure at most [`MAX_MEMORY_BYTES`].
pub(super) fn memory(field: impl FnOnce() -> String, v: u64) -> Result {
    if v > MAX_MEMORY_BYTES {
        return Err(invalid(field(), MEMORY));
    }
    Ok(())
}

/// Why `v` is not an acceptable string of at most `max` bytes, if it is not.
pub(super) fn text_problem(v: &str, required: bool, max: usize) -> Option<&'static str> {
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

/// A text of at most `max` bytes without control characters, not blank if `required`.
pub(super) fn text(field: impl FnOnce() -> String, v: &str, required: bool, max: usize) -> Result {
    match text_problem(v, required, max) {
        Some(reason) => Err(invalid(field(), reason)),
        None => Ok(()),
    }
}
