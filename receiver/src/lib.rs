//! The receiver: stores CI run summaries pushed by collectors and answers queries.
//!
//! # Layout
//!
//! - [`config`]: the command line (the seed's `--addr`, `--db`, `--read-token`,
//!   `--hmac-key` and the additions) and its checks; secrets never print.
//! - [`auth`]: the scoped push-token scheme (HMAC-SHA256 over an unambiguous,
//!   length-prefixed scope encoding, trailing wildcards, optional expiry) and the
//!   constant-time read-token check. Pure, property-tested.
//! - [`store`]: the redb tables (defined once, each documented), the group-commit writer
//!   thread, paginated queries and retention.
//! - [`api`]: the `match (method, path)` router; a function of the request, callable
//!   without a socket.
//! - [`server`]: the accept loop, header/body timeouts and graceful shutdown.
//! - [`metrics`]: the receiver's own counters and latency histograms (`GET /metrics`).
//!
//! `main.rs` only parses the command line, sets up tracing and calls [`server::run`].
//! `bin/receiver-bench.rs` is the benchmark driver (`cargo xtask bench receiver`).

pub mod api;
pub mod auth;
pub mod config;
pub mod metrics;
pub mod server;
pub mod store;
