//! Checks of the top processes of a summary: their number, pids, names and figures.

use super::error::{Result, invalid};
use super::limits::{
    MAX_CORES, MAX_CPU_SECONDS, MAX_NAME_BYTES, MAX_PID, MAX_PROCESS_NAME_BYTES, MAX_TOP_PROCESSES,
};
use super::values::{CPU_SECONDS, bounded, memory, text};
use crate::ProcessSummary;

/// Checks process `p`, whose field paths start with `prefix`.
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

/// Checks a list of top processes, named `prefix`.
pub(super) fn processes(prefix: &str, list: &[ProcessSummary]) -> Result {
    if list.len() > MAX_TOP_PROCESSES {
        return Err(invalid(prefix, "has more than 1000 entries"));
    }
    for (i, p) in list.iter().enumerate() {
        process(&format!("{prefix}[{i}]"), p)?;
    }
    Ok(())
}
