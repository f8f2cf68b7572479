//! Checks of one container of a summary: its name, CPU, memory, network and limits, its
//! starvation figures ([`super::starvation_fields`]) and its histograms.

use super::error::Result;
use super::histograms::{HistogramBudget, histograms};
use super::limits::{
    MAX_BYTES_PER_SEC, MAX_CORES, MAX_CPU_SECONDS, MAX_MEMORY_BYTES, MAX_NAME_BYTES,
};
use super::starvation_fields;
use super::values::{CORES, CPU_SECONDS, MEMORY, RATE, UNBOUNDED, bounded, memory, stats, text};
use crate::{ContainerSummary, hist};

/// Checks container `c`, whose field paths start with `prefix`; its histograms spend
/// `budget`.
pub(super) fn container(
    prefix: &str,
    c: &ContainerSummary,
    budget: &mut HistogramBudget,
) -> Result {
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
