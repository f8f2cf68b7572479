//! A container's figures over time, measured from when it was first seen.

use std::time::{Instant, SystemTime};

use summary::timeline::{Series, TimelineBuilder};

/// Width of a timeline bucket to begin with: the default CPU interval.
const START_WIDTH: f64 = 0.1;

/// A container's timeline, from when it was first seen.
#[derive(Clone, Debug)]
pub(crate) struct Timeline {
    recorded: TimelineBuilder,
    /// When it was first seen: the timeline's zero.
    pub(crate) first_seen: Instant,
    /// The same moment on the wall clock, which places it in its job's timeline.
    first_seen_wall: SystemTime,
}

impl Timeline {
    pub(crate) fn new() -> Self {
        Self {
            recorded: TimelineBuilder::new(START_WIDTH),
            first_seen: Instant::now(),
            first_seen_wall: SystemTime::now(),
        }
    }

    /// A figure read at `at`.
    pub(crate) fn at(&mut self, series: Series, at: Instant, value: f64) {
        let t = self.seconds(at);
        self.recorded.record(series, t, value);
    }

    /// A rate that applied from `from` to `to` (read over that window).
    pub(crate) fn span(&mut self, series: Series, from: Instant, to: Instant, value: f64) {
        let (from, to) = (self.seconds(from), self.seconds(to));
        self.recorded.record_span(series, from, to, value);
    }

    /// Seconds from `start` (its job's) to when it was first seen.
    pub(crate) fn offset_from(&self, start: SystemTime) -> f64 {
        self.first_seen_wall
            .duration_since(start)
            .unwrap_or_default()
            .as_secs_f64()
    }

    /// What has been recorded (the summary takes the CPU's final touch on top of it).
    #[cfg(test)]
    pub(crate) fn recorded(&self) -> &TimelineBuilder {
        &self.recorded
    }

    pub(crate) fn into_recorded(self) -> TimelineBuilder {
        self.recorded
    }

    /// Seconds since it was first seen.
    fn seconds(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.first_seen).as_secs_f64()
    }
}
