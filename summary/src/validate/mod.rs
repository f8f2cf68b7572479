//! Checks on summaries from untrusted senders.
//!
//! A summary that passes is safe to store and to answer with:
//! - it has a known schema version;
//! - every number is finite, non-negative and plausible (the `MAX_*` bounds: a run of at
//!   most 31 days, at most 4096 cores, at most 64 TiB of memory);
//! - its timestamps are after 2000-01-01, not more than a day ahead of the receiver's
//!   clock, and its end is not before its start;
//! - its identity is complete and names a repository;
//! - every serialized histogram decodes (an uncompressed HdrHistogram V2 with the
//!   accumulator's parameters, checked before anything is allocated from its header), is
//!   bounded in size, and agrees with the stats beside it;
//! - every list and name has a bounded size.
//!
//! The bounds are documented in `receiver/README.md` ("Limits").
//!
//! # Layout
//!
//! One file a thing checked, each with its tests; this file only names them and re-exports
//! the public ones:
//! - `limits.rs`: the bounds (`MAX_*`);
//! - `error.rs`: [`ValidationError`];
//! - `values.rs`: what every field's check is made of (a bounded number, stats, a text);
//! - `run.rs`: a whole summary and a push ([`crate::RunSummary::validate`],
//!   [`crate::MetricsPush::validate`]), calling the checks of their parts;
//! - `identity.rs`: the push's identity, shared with push tokens' scopes
//!   ([`identity_problem`], [`repository_problem`]);
//! - `container.rs`, `process.rs`, `histograms.rs`, `starvation_fields.rs`,
//!   `timeline_fields.rs`: a container, the top processes, serialized histograms, the
//!   starvation figures and the timeline;
//! - `fixtures.rs`: the push the tests start from.

mod container;
mod error;
mod histograms;
mod identity;
mod limits;
mod process;
mod run;
mod starvation_fields;
mod timeline_fields;
mod values;

#[cfg(test)]
mod fixtures;

pub use error::ValidationError;
pub use identity::{identity_problem, repository_problem};
pub use limits::*;
