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
//! - [`store`]: the redb store, by concern:
//!   - `store/mod.rs`: [`store::Store`] (open, insert, query, prune, close) and its errors;
//!   - [`store::schema`]: every table, documented (key and value layout), the
//!     `SCHEMA_VERSION` checked at open, and the `job_key` every key starts with;
//!   - `store/records.rs`: the stored value of a run, encoded by the request task, and the
//!     idempotency index (a repeated push stores nothing);
//!   - `store/writer.rs`: the writer thread and its group commit.
//!   - `store/recovery.rs`: opening with quick repair (fast after a crash), and reopening
//!     after an I/O error such as a full disk, without a restart; the store's health.
//! - [`api`]: the HTTP API, a function of the request callable without a socket:
//!   - `api/mod.rs`: the `match (method, path)` router and the shared state;
//!   - `api/handlers.rs`: one function per endpoint;
//!   - `api/extract.rs`: what handlers take from a request (bearer token, JSON body within
//!     its size and time limits, the percent-decoded query path, `limit`/`cursor`);
//!   - `api/error.rs`: `{"error": ...}` answers.
//! - [`server`]: opening the store, then the accept loop: the connection cap, the accept
//!   back-off, header/body timeouts, `--addr-file` and graceful shutdown.
//! - [`metrics`]: the receiver's own counters and latency histograms (`GET /metrics`).
//!
//! `main.rs` only parses the command line, sets up tracing, fits the file-descriptor limit to
//! `--max-connections`, and calls [`server::open`], then binds and calls
//! [`server::Server::serve`] (tests and the benchmark call [`server::run`], both in one).
//! `bin/receiver-bench.rs` is the benchmark driver (`cargo xtask bench receiver`); its
//! clients use the workspace's `http-client` keep-alive connections.

pub mod api;
pub mod auth;
pub mod config;
pub mod metrics;
pub mod server;
pub mod sizer;
pub mod store;
pub mod web;
