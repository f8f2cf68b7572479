//! The shape of a job's history, per run (oldest first): a step change (the job got
//! heavier or lighter at some run), a trend (it grows run over run), or two clusters (two
//! kinds of run under one job name, such as matrix legs). Pure maths over one figure per run.

use crate::stats::mean;
use serde::{Deserialize, Serialize};

/// What a history looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    /// The level changed at one run and stayed: only the runs after it are used.
    StepChange,
    /// The figure grows (or shrinks) run over run: projected forward.
    Trend,
    /// Runs form two separate groups that alternate: sized for the larger, flagged.
    TwoClusters,
}

/// Least runs on each side of a step.
const STEP_MIN_SIDE: usize = 3;
/// Least relative change for a step or a trend to matter.
const MIN_CHANGE: f64 = 0.2;

/// A change of level at `at`: runs `at..` differ from runs `..at`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub at: usize,
    pub before: f64,
    pub after: f64,
}

/// A linear trend: `slope` per run, the fitted value at the last run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trend {
    pub slope: f64,
    pub last: f64,
}

/// Two groups of runs: their means and sizes, the threshold between them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clusters {
    pub low: f64,
    pub high: f64,
    pub low_runs: usize,
    pub high_runs: usize,
}

/// What was found in one series.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Shape {
    pub step: Option<Step>,
    pub trend: Option<Trend>,
    pub clusters: Option<Clusters>,
}

fn sse(v: &[f64]) -> f64 {
    let m = mean(v);
    v.iter().map(|x| (x - m).powi(2)).sum()
}

/// Least squares line through (i, v[i]): (slope, intercept, residual sum of squares).
fn line(v: &[f64]) -> (f64, f64, f64) {
    let n = v.len() as f64;
    let mx = (n - 1.0) / 2.0;
    let my = mean(v);
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, y) in v.iter().enumerate() {
        sxy += (i as f64 - mx) * (y - my);
        sxx += (i as f64 - mx).powi(2);
    }
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let intercept = my - slope * mx;
    let res = v
        .iter()
        .enumerate()
        .map(|(i, y)| (y - (intercept + slope * i as f64)).powi(2))
        .sum();
    (slope, intercept, res)
}

/// Finds a step, a trend or two clusters in `v` (one figure per run, oldest first).
/// At most one of step and trend is reported: whichever explains the runs better.
pub fn shape(v: &[f64]) -> Shape {
    let mut out = Shape::default();
    if v.len() < 4 || v.iter().any(|x| !x.is_finite()) {
        return out;
    }
    let total = sse(v);
    let level = mean(v).abs().max(f64::MIN_POSITIVE);
    // Best split into two levels.
    let best_split = (STEP_MIN_SIDE..=v.len().saturating_sub(STEP_MIN_SIDE))
        .map(|at| (at, sse(&v[..at]) + sse(&v[at..])))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    let (slope, intercept, line_res) = line(v);
    let clusters = two_clusters(v);
    if let Some((at, split_res)) = best_split {
        let (before, after) = (mean(&v[..at]), mean(&v[at..]));
        let change = (after - before).abs() / before.abs().max(f64::MIN_POSITIVE);
        // A step explains most of the variation, and better than a line does.
        if change >= MIN_CHANGE
            && split_res <= 0.25 * total
            && split_res < 0.7 * line_res
            && clusters.is_none()
        {
            out.step = Some(Step { at, before, after });
            return out;
        }
    }
    let n = v.len() as f64;
    let growth = (slope * (n - 1.0)).abs() / level;
    if total > 0.0 && line_res <= 0.4 * total && growth >= MIN_CHANGE {
        out.trend = Some(Trend {
            slope,
            last: intercept + slope * (n - 1.0),
        });
        return out;
    }
    out.clusters = clusters;
    out
}

/// Two groups that alternate in time, far apart compared with their own spread.
fn two_clusters(v: &[f64]) -> Option<Clusters> {
    if v.len() < 6 {
        return None;
    }
    let mut sorted: Vec<f64> = v.to_vec();
    sorted.sort_by(f64::total_cmp);
    let min_side = (v.len() / 5).max(2);
    let (cut, _) = (min_side..=v.len() - min_side)
        .map(|i| (i, sorted[i] - sorted[i - 1]))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    let (lo, hi) = sorted.split_at(cut);
    let (ml, mh) = (mean(lo), mean(hi));
    let spread = (sse(lo) / lo.len() as f64)
        .sqrt()
        .max((sse(hi) / hi.len() as f64).sqrt());
    let gap = sorted[cut] - sorted[cut - 1];
    if mh < ml * 1.3 || gap < 3.0 * spread.max(ml.abs() * 0.02) {
        return None;
    }
    // Alternating: both groups appear in each half of the history (else it is a step).
    let threshold = sorted[cut];
    let half = v.len() / 2;
    let both =
        |part: &[f64]| part.iter().any(|x| *x >= threshold) && part.iter().any(|x| *x < threshold);
    if !(both(&v[..half]) && both(&v[half..])) {
        return None;
    }
    Some(Clusters {
        low: ml,
        high: mh,
        low_runs: lo.len(),
        high_runs: hi.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_noise_is_nothing() {
        let v = [
            100.0, 103.0, 98.0, 101.0, 99.0, 102.0, 100.0, 97.0, 103.0, 100.0,
        ];
        assert_eq!(shape(&v), Shape::default());
        assert_eq!(shape(&[1.0, 2.0]), Shape::default());
    }

    #[test]
    fn finds_a_step() {
        let v = [
            100.0, 102.0, 98.0, 101.0, 99.0, 150.0, 152.0, 149.0, 151.0, 150.0,
        ];
        let s = shape(&v).step.unwrap();
        assert_eq!(s.at, 5);
        assert!((s.before - 100.0).abs() < 1.0 && (s.after - 150.4).abs() < 1.0);
        assert!(shape(&v).trend.is_none());
    }

    #[test]
    fn finds_a_trend_not_a_step() {
        let v: Vec<f64> = (0..12)
            .map(|i| 100.0 + 5.0 * i as f64 + [0.0, 1.5, -1.0][i % 3])
            .collect();
        let s = shape(&v);
        assert!(s.step.is_none(), "{s:?}");
        let t = s.trend.unwrap();
        assert!((t.slope - 5.0).abs() < 0.3, "{t:?}");
        assert!((t.last - 155.0).abs() < 2.0, "{t:?}");
    }

    #[test]
    fn finds_two_alternating_clusters() {
        let v = [
            100.0, 300.0, 102.0, 305.0, 98.0, 298.0, 101.0, 302.0, 99.0, 301.0,
        ];
        let s = shape(&v);
        let c = s.clusters.unwrap();
        assert_eq!((c.low_runs, c.high_runs), (5, 5));
        assert!(s.step.is_none() && s.trend.is_none());
        // The same values as a step are a step, not clusters.
        let mut w = v;
        w.sort_by(f64::total_cmp);
        assert!(shape(&w).clusters.is_none());
        assert!(shape(&w).step.is_some());
    }
}
