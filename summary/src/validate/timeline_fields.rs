//! Checks of the `timeline` field ([`crate::timeline`]): a positive bucket width, at most
//! [`MAX_POINTS`](crate::timeline::MAX_POINTS) points per series (with room for pieces merged
//! across a restart), series of one length per container, bounded names and values.

use super::error::{Result, invalid};
use super::limits::{MAX_CONTAINERS, MAX_DURATION_SECONDS, MAX_NAME_BYTES};
use super::values::{bounded, text};
use crate::timeline::{MAX_POINTS, Timeline};

/// Most points of a series on the wire: the builder keeps at most [`MAX_POINTS`]; a merge of
/// two pieces re-buckets them, so this leaves room for a timeline written by another tool.
pub const MAX_WIRE_POINTS: usize = 2 * MAX_POINTS;

pub(super) fn timeline(prefix: &str, t: &Timeline) -> Result {
    if !(t.bucket_seconds.is_finite() && t.bucket_seconds > 0.0) {
        return Err(invalid(
            format!("{prefix}.bucket_seconds"),
            "must be a positive number",
        ));
    }
    bounded(
        || format!("{prefix}.bucket_seconds"),
        t.bucket_seconds,
        MAX_DURATION_SECONDS,
        "is more than 31 days",
    )?;
    if t.containers.len() > MAX_CONTAINERS {
        return Err(invalid(
            format!("{prefix}.containers"),
            "has more than 1000 entries",
        ));
    }
    for (i, c) in t.containers.iter().enumerate() {
        let at = |f: &str| format!("{prefix}.containers[{i}].{f}");
        text(|| at("name"), &c.name, true, MAX_NAME_BYTES)?;
        bounded(
            || at("start_seconds"),
            c.start_seconds,
            MAX_DURATION_SECONDS,
            "is more than 31 days",
        )?;
        let len = c.cpu_millicores.len();
        if len > MAX_WIRE_POINTS {
            return Err(invalid(at("cpu_millicores"), "has more than 720 points"));
        }
        for (name, series, optional) in [
            ("cpu_millicores_max", &c.cpu_millicores_max, false),
            ("memory_mib", &c.memory_mib, false),
            ("memory_mib_max", &c.memory_mib_max, false),
            ("network_kib_per_sec", &c.network_kib_per_sec, true),
            ("disk_kib_per_sec", &c.disk_kib_per_sec, true),
            (
                "run_queue_wait_millicores",
                &c.run_queue_wait_millicores,
                true,
            ),
            ("cpu_pressure_percent", &c.cpu_pressure_percent, true),
        ] {
            if series.len() != len && !(optional && series.is_empty()) {
                return Err(invalid(
                    at(name),
                    "must have as many points as cpu_millicores",
                ));
            }
        }
    }
    Ok(())
}
