//! The fleet view's figures, pure, in two parts:
//! - `kept.rs`: what is kept as runs are pushed, one compact [`RunRow`] per stored run and
//!   a job's [`JobAggregate`] kept up to date as runs arrive (so the job list never reads
//!   every run);
//! - `answers.rs`: the answers made from aggregates, [`JobEntry`] for the job list (with
//!   its [`Waste`] and order) and [`FleetTotals`]. It reads `kept.rs`, never the reverse.
//!
//! Units: cores, bytes and seconds in rows; core-hours and GiB-hours in totals. "Reserved"
//! is the limit (the only reservation a cgroup shows); "used" is the CPU time actually used,
//! and for memory the run's peak held for its whole duration (what a limit must cover).

mod answers;
mod kept;

pub use answers::{FleetTotals, GIB_PER_CORE, JobEntry, SortBy, Waste, sort, totals};
pub use kept::{Day, JobAggregate, MAX_DAYS, RECENT_RUNS, RunRow, SizingShort};
