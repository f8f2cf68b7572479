//! The HDR-histogram accumulator that turns samples into [`Stats`].
//!
//! Samples are `f64` in the metric's natural unit (cores, percent, bytes). They are scaled
//! to integers by a per-metric factor (see the `SCALE_*` constants) and recorded into an
//! HDR histogram with three significant digits, so percentiles are within 0.1 % of the
//! exact ones while memory depends only on the range of values, never on the run length.
//! `peak` and `avg` are exact: the accumulator also tracks the maximum and the sum.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2Serializer};
use serde::{Deserialize, Serialize};

use crate::Stats;

/// Scale for CPU measured in cores: one unit is a millicore.
pub const SCALE_CORES: u64 = 1000;
/// Scale for percentages: one unit is a thousandth of a percent.
pub const SCALE_PERCENT: u64 = 1000;
/// Scale for byte counts and byte rates: one unit is one byte.
pub const SCALE_BYTES: u64 = 1;

/// Significant decimal digits kept by every histogram.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// One serialized histogram: what a summary carries so runs can be merged later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodedHistogram {
    /// Factor the samples were multiplied by before being recorded as integers.
    pub scale: u64,
    /// Base64 (standard alphabet, padded) of the HdrHistogram V2 serialization
    /// (uncompressed, cookie `0x1c849303`).
    pub hdr_v2: String,
}

/// Errors of decoding or merging histograms.
#[derive(Debug, thiserror::Error)]
pub enum HistogramError {
    /// The scale is zero.
    #[error("histogram scale must be positive")]
    ZeroScale,
    /// Two accumulators with different scales cannot be merged.
    #[error("cannot merge histograms with scales {0} and {1}")]
    ScaleMismatch(u64, u64),
    /// The base64 text is malformed.
    #[error("histogram is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// The bytes are not an HdrHistogram serialization.
    #[error("histogram is not a valid HdrHistogram serialization: {0:?}")]
    Decode(hdrhistogram::serialization::DeserializeError),
    /// Merging failed inside the histogram library.
    #[error("cannot merge histograms: {0:?}")]
    Add(hdrhistogram::AdditionError),
}

/// Accumulates samples of one metric and summarizes them.
///
/// An empty accumulator (no samples) reports [`Stats::default()`], all zeros: there is
/// no artificial first sample.
#[derive(Debug, Clone)]
pub struct Accumulator {
    /// Scaled integer samples; resizes itself to the range of values seen.
    hist: Histogram<u64>,
    /// Factor applied to samples before recording.
    scale: u64,
    /// Number of samples recorded (equal to the histogram's count).
    count: u64,
    /// Exact sum of the unscaled samples, for an exact average.
    sum: f64,
    /// Exact largest unscaled sample, for an exact peak.
    max: f64,
    /// Exact smallest unscaled sample, to clamp percentiles into the observed range.
    min: f64,
}

fn new_histogram() -> Histogram<u64> {
    // 3 significant digits is within the library's limits, so this cannot fail.
    let mut h = Histogram::new(SIGNIFICANT_DIGITS).unwrap_or_else(|_| unreachable!());
    h.auto(true);
    h
}

impl Accumulator {
    /// A new, empty accumulator for samples scaled by `scale` (use a `SCALE_*` constant).
    /// A zero scale is treated as 1.
    pub fn new(scale: u64) -> Self {
        Self {
            hist: new_histogram(),
            scale: scale.max(1),
            count: 0,
            sum: 0.0,
            max: 0.0,
            min: 0.0,
        }
    }

    /// Records one sample. NaN and infinite samples are ignored; negative samples count as 0.
    pub fn record(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        let value = value.max(0.0);
        let scaled = (value * self.scale as f64).round();
        // `as` saturates for out-of-range floats; `record` resizes the histogram to fit
        // (`saturating_record` would clamp to the current range instead).
        if self.hist.record(scaled as u64).is_err() {
            self.hist.saturating_record(scaled as u64);
        }
        if self.count == 0 {
            self.max = value;
            self.min = value;
        } else {
            self.max = self.max.max(value);
            self.min = self.min.min(value);
        }
        self.count += 1;
        self.sum += value;
    }

    /// Number of samples recorded.
    pub fn sample_count(&self) -> u64 {
        self.count
    }

    /// The scale this accumulator records with.
    pub fn scale(&self) -> u64 {
        self.scale
    }

    /// The statistics of the samples so far; all zeros when there are none.
    ///
    /// `peak` and `avg` are exact; percentiles are the HDR histogram's (3 significant
    /// digits), clamped to the observed minimum and maximum.
    pub fn stats(&self) -> Stats {
        if self.count == 0 {
            return Stats::default();
        }
        let q = |quantile: f64| {
            let v = self.hist.value_at_quantile(quantile) as f64 / self.scale as f64;
            v.clamp(self.min, self.max)
        };
        Stats {
            peak: self.max,
            p99: q(0.99),
            p95: q(0.95),
            p75: q(0.75),
            p50: q(0.50),
            avg: self.sum / self.count as f64,
        }
    }

    /// Adds every sample of `other` to `self`. Both must have the same scale.
    pub fn merge(&mut self, other: &Accumulator) -> Result<(), HistogramError> {
        if self.scale != other.scale {
            return Err(HistogramError::ScaleMismatch(self.scale, other.scale));
        }
        if other.count == 0 {
            return Ok(());
        }
        self.hist.add(&other.hist).map_err(HistogramError::Add)?;
        if self.count == 0 {
            self.max = other.max;
            self.min = other.min;
        } else {
            self.max = self.max.max(other.max);
            self.min = self.min.min(other.min);
        }
        self.count += other.count;
        self.sum += other.sum;
        Ok(())
    }

    /// Adds every sample of `other` `weight` times (sizing weighs recent runs more). Both
    /// must have the same scale; a zero weight adds nothing.
    pub fn merge_weighted(
        &mut self,
        other: &Accumulator,
        weight: u64,
    ) -> Result<(), HistogramError> {
        if self.scale != other.scale {
            return Err(HistogramError::ScaleMismatch(self.scale, other.scale));
        }
        if other.count == 0 || weight == 0 {
            return Ok(());
        }
        for v in other.hist.iter_recorded() {
            let n = v.count_at_value().saturating_mul(weight);
            if self.hist.record_n(v.value_iterated_to(), n).is_err() {
                self.hist.saturating_record_n(v.value_iterated_to(), n);
            }
        }
        if self.count == 0 {
            self.max = other.max;
            self.min = other.min;
        } else {
            self.max = self.max.max(other.max);
            self.min = self.min.min(other.min);
        }
        self.count = self
            .count
            .saturating_add(other.count.saturating_mul(weight));
        self.sum += other.sum * weight as f64;
        Ok(())
    }

    /// Serializes the histogram (HdrHistogram V2, base64).
    pub fn encode(&self) -> EncodedHistogram {
        let mut bytes = Vec::new();
        // Serializing into a Vec only fails for histograms the library cannot represent,
        // which an accumulator never builds; fall back to an empty string defensively.
        let hdr_v2 = match V2Serializer::new().serialize(&self.hist, &mut bytes) {
            Ok(_) => BASE64.encode(&bytes),
            Err(_) => String::new(),
        };
        EncodedHistogram {
            scale: self.scale,
            hdr_v2,
        }
    }

    /// Rebuilds an accumulator from [`Accumulator::encode`]'s output.
    ///
    /// A serialized histogram keeps counts, not raw samples, so after decoding `peak`, the
    /// minimum and `avg` come from the histogram (within its 0.1 % precision).
    pub fn decode(encoded: &EncodedHistogram) -> Result<Self, HistogramError> {
        if encoded.scale == 0 {
            return Err(HistogramError::ZeroScale);
        }
        let bytes = BASE64.decode(encoded.hdr_v2.as_bytes())?;
        let decoded: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(HistogramError::Decode)?;
        let mut hist = new_histogram();
        hist.add(&decoded).map_err(HistogramError::Add)?;
        let scale = encoded.scale as f64;
        let count = hist.len();
        let (sum, max, min) = if count == 0 {
            (0.0, 0.0, 0.0)
        } else {
            (
                hist.mean() * count as f64 / scale,
                hist.highest_equivalent(hist.max()) as f64 / scale,
                hist.lowest_equivalent(hist.min()) as f64 / scale,
            )
        };
        Ok(Self {
            hist,
            scale: encoded.scale,
            count,
            sum,
            max,
            min,
        })
    }
}

impl Default for Accumulator {
    /// An accumulator with scale 1 (bytes).
    fn default() -> Self {
        Self::new(SCALE_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= b.abs() * 0.001 + 1e-9
    }

    #[test]
    fn weighted_merge_counts_each_sample_weight_times() {
        let mut a = Accumulator::new(SCALE_CORES);
        for v in [1.0, 2.0] {
            a.record(v);
        }
        let mut b = Accumulator::new(SCALE_CORES);
        b.record(4.0);
        let mut m = Accumulator::new(SCALE_CORES);
        m.merge_weighted(&a, 1).unwrap();
        m.merge_weighted(&b, 3).unwrap();
        assert_eq!(m.sample_count(), 5);
        let s = m.stats();
        assert!(close(s.avg, (1.0 + 2.0 + 12.0) / 5.0), "{s:?}");
        assert!(close(s.p50, 4.0) && close(s.peak, 4.0), "{s:?}");
        assert!(m.merge_weighted(&Accumulator::new(SCALE_BYTES), 1).is_err());
    }

    #[test]
    fn empty_is_all_zeros() {
        let acc = Accumulator::new(SCALE_CORES);
        assert_eq!(acc.stats(), Stats::default());
        assert_eq!(acc.sample_count(), 0);
    }

    #[test]
    fn single_sample_is_every_stat() {
        let mut acc = Accumulator::new(SCALE_CORES);
        acc.record(1.5);
        let s = acc.stats();
        for v in [s.peak, s.p99, s.p95, s.p75, s.p50, s.avg] {
            assert_eq!(v, 1.5);
        }
    }

    #[test]
    fn percentiles_of_one_to_hundred() {
        let mut acc = Accumulator::new(SCALE_PERCENT);
        for i in 1..=100 {
            acc.record(f64::from(i));
        }
        let s = acc.stats();
        assert_eq!(s.peak, 100.0);
        assert_eq!(s.avg, 50.5);
        assert!(close(s.p50, 50.0), "{s:?}");
        assert!(close(s.p75, 75.0), "{s:?}");
        assert!(close(s.p95, 95.0), "{s:?}");
        assert!(close(s.p99, 99.0), "{s:?}");
        assert_eq!(acc.sample_count(), 100);
    }

    #[test]
    fn ignores_non_finite_and_clamps_negative() {
        let mut acc = Accumulator::new(SCALE_BYTES);
        acc.record(f64::NAN);
        acc.record(f64::INFINITY);
        acc.record(-5.0);
        assert_eq!(acc.sample_count(), 1);
        assert_eq!(acc.stats(), Stats::default());
    }

    #[test]
    fn memory_does_not_grow_with_samples() {
        let mut acc = Accumulator::new(SCALE_BYTES);
        acc.record(1e12);
        let before = acc.hist.distinct_values();
        for i in 0..200_000u32 {
            acc.record(f64::from(i) * 5_000_000.0);
        }
        assert_eq!(acc.hist.distinct_values(), before);
    }

    #[test]
    fn merge_equals_recording_everything() {
        let mut a = Accumulator::new(SCALE_CORES);
        let mut b = Accumulator::new(SCALE_CORES);
        let mut all = Accumulator::new(SCALE_CORES);
        for i in 0..1000 {
            let v = f64::from(i % 37) * 0.125;
            if i % 3 == 0 {
                a.record(v)
            } else {
                b.record(v)
            }
            all.record(v);
        }
        a.merge(&b).unwrap();
        assert_eq!(a.stats(), all.stats());
        assert_eq!(a.sample_count(), 1000);
        let other = Accumulator::new(SCALE_BYTES);
        assert!(matches!(
            a.merge(&other),
            Err(HistogramError::ScaleMismatch(1000, 1))
        ));
    }

    #[test]
    fn encode_decode_round_trip() {
        let mut acc = Accumulator::new(SCALE_BYTES);
        for i in 1..=500u32 {
            acc.record(f64::from(i) * 1_048_576.0);
        }
        let enc = acc.encode();
        assert_eq!(enc.scale, 1);
        let dec = Accumulator::decode(&enc).unwrap();
        assert_eq!(dec.sample_count(), 500);
        let (a, b) = (acc.stats(), dec.stats());
        assert!(close(b.peak, a.peak) && close(b.avg, a.avg), "{a:?} {b:?}");
        assert_eq!(a.p50, b.p50);
        assert_eq!(a.p99, b.p99);
        // Decoded accumulators keep recording and merging.
        let mut dec = dec;
        dec.merge(&acc).unwrap();
        dec.record(1.0);
        assert_eq!(dec.sample_count(), 1001);
        assert_eq!(
            Accumulator::decode(&Accumulator::new(7).encode())
                .unwrap()
                .stats(),
            Stats::default()
        );
    }

    #[test]
    fn decode_rejects_garbage() {
        let bad = |s: &str, scale| {
            Accumulator::decode(&EncodedHistogram {
                scale,
                hdr_v2: s.into(),
            })
        };
        assert!(matches!(bad("!!!", 1), Err(HistogramError::Base64(_))));
        assert!(matches!(bad("AAAA", 1), Err(HistogramError::Decode(_))));
        assert!(matches!(bad("", 0), Err(HistogramError::ZeroScale)));
    }
}
