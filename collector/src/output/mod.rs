//! Outputs: where measurements go.
//!
//! - [`push`]: the summary to the receiver, with retries and backoff; the summary file when
//!   that fails.
//! - [`file`]: the one atomic, fsynced file write (summary file, spool, checkpoints).
//! - [`live`]: live per-container metrics for Prometheus (`--metrics-addr`).
//! - [`report`]: the table `collector run` and `collector show` print.
//! - [`chart`]: the run's timeline as terminal sparklines, printed under that table.
//! - [`markdown`]: the Markdown report with Mermaid charts, for a CI job summary
//!   (`--markdown`, `--markdown-file`).
//!
//! Bytes read as [`summary::units::bytes`] writes them, as on the receiver's pages.

pub mod chart;
pub mod file;
pub mod live;
pub mod markdown;
pub mod push;
pub mod report;
