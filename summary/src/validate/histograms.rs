//! Checks of serialized histograms: each decodes (an uncompressed HdrHistogram V2 with the
//! accumulator's parameters, checked before anything is allocated from its header), is
//! bounded in size alone and with the rest of its summary's, and agrees with the stats
//! beside it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;

use super::error::{Result, ValidationError, invalid};
use super::limits::{
    MAX_HISTOGRAM_BYTES, MAX_HISTOGRAM_SCALE, MAX_HISTOGRAMS, MAX_RUN_HISTOGRAM_BYTES,
    MAX_SHORT_BYTES,
};
use super::values::text;
use crate::accumulator::SIGNIFICANT_DIGITS;
use crate::{EncodedHistogram, Histograms, Stats};

/// Cookie of an uncompressed HdrHistogram V2 serialization: `0x1c849303 | 0x10`, the flag
/// of its zig-zag LEB128 counts.
const HDR_V2_COOKIE: u32 = 0x1c84_9313;
/// Bytes of an HdrHistogram V2 header: cookie, payload length, normalizing offset,
/// significant digits, lowest and highest value, integer-to-double ratio.
const HDR_V2_HEADER: usize = 40;

/// Sums the base64 bytes of every histogram of a summary against
/// [`MAX_RUN_HISTOGRAM_BYTES`].
pub(super) struct HistogramBudget {
    /// Bytes still allowed.
    left: usize,
}

impl HistogramBudget {
    /// The whole budget of one summary.
    pub(super) fn new() -> Self {
        Self {
            left: MAX_RUN_HISTOGRAM_BYTES,
        }
    }
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
pub(super) fn histograms(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::fixtures::{measured_container, now, push};
    use crate::validate::limits::MAX_CONTAINERS;
    use crate::{Accumulator, ContainerSummary, MetricsPush, SCALE_CORES, hist};

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
}
