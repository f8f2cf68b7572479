//! The receiver: stores CI run summaries pushed by collectors and answers queries.
//!
//! # Layout
//!
//! - [`config`]: the command line (the seed's `--addr`, `--db`, `--read-token`,
//!   `--hmac-key` and the additions) and its checks; secrets never print.
//! - [`auth`]: the scoped push-token scheme (self-describing `v2` tokens whose scope and
//!   expiry are under their HMAC, checked from the header alone; the seed's tokens, HMAC
//!   over an unambiguous, length-prefixed scope encoding; trailing wildcards, optional
//!   expiry, canonical spellings only) and the constant-time read-token check. Pure,
//!   property-tested.
//! - [`store`]: where runs are stored: [`store::Store`], one interface over two backends
//!   that answer the same bytes:
//!   - [`store::redb`]: the embedded file (the default): `schema.rs` every table and the
//!     `SCHEMA_VERSION` checked at open, `records.rs` the idempotency index, `writer.rs` the
//!     writer thread and its group commit, `recovery.rs` quick repair and reopening after an
//!     I/O error, `jobs.rs` the job list's rows and aggregates;
//!   - [`store::postgres`]: PostgreSQL for stateless replicas: `schema.rs` migrations,
//!     `writer.rs` group commit in four round trips, `mod.rs` the pool, reads and health;
//!   - `store/run.rs`: a run as the request task encodes it for either backend.
//! - [`api`]: the HTTP API, a function of the request callable without a socket:
//!   - `api/mod.rs`: the `match (method, path)` router and the shared state;
//!   - `api/handlers.rs`: one function per endpoint; `api/sizing.rs` the sizing endpoint;
//!     `api/fleet.rs` the job list, history and fleet totals;
//!   - `api/extract.rs`: what handlers take from a request (bearer token, JSON body within
//!     its size and time limits, the percent-decoded query path, `limit`/`cursor`);
//!   - `api/error.rs`: `{"error": ...}` answers.
//! - [`server`]: opening the store, then the accept loop: the connection cap, the accept
//!   back-off, header/body timeouts, `--addr-file` and graceful shutdown.
//! - [`sizer`]: the background sizer that keeps each job's recommendation fresh.
//! - [`web`]: the web page (sign-in, fleet, job and run pages, SVG charts), every asset in
//!   the binary.
//! - [`metrics`]: the receiver's own counters and latency histograms (`GET /metrics`).
//!
//! `main.rs` only parses the command line, sets up tracing, fits the file-descriptor limit to
//! `--max-connections`, and calls [`server::open`], then binds and calls
//! [`server::Server::serve`] (tests and the benchmark call [`server::run`], both in one).
//! `bin/receiver-bench/` is the benchmark driver (`cargo xtask bench receiver`); its
//! clients use the workspace's `http-client` keep-alive connections.

pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod fleet;
pub mod metrics;
pub mod router;
pub mod server;
pub mod session;
pub mod sizer;
pub mod store;
pub mod web;
