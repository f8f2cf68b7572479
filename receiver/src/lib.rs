//! The receiver: stores CI run summaries pushed by collectors and answers queries.
//!
//! A hyper 1.x service over one of two stores (an embedded redb file, or PostgreSQL for
//! stateless replicas): [`config`] the command line, [`auth`] push and read tokens,
//! [`store`] where runs go, [`router`] which sends each request to [`api`] (the HTTP API) or
//! [`web`] (the web page, with [`session`] its cookies), [`app`] what those two share,
//! [`fleet`] the job list's selections, [`sizer`] sizing and the background sizer, [`server`]
//! the accept loop, [`metrics`] its own metrics.
//!
//! What every file holds: `docs/layout.md` (section "receiver") at the workspace root. The
//! API, flags and storage: `receiver/README.md`.

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
