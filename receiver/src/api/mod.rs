//! The HTTP API: a `match (method, path)` over a request, callable without a socket.
//!
//! | method | path | auth | answer |
//! |---|---|---|---|
//! | POST | `/api/v1/token` | read token | 200 `{"token": ...}` (plus `expires_at` with a TTL) |
//! | POST | `/api/v1/metrics` | push token for the body's scope | 201 `{"id", "received_at"}` after a durable commit; a repeated push: the first one's, with `Idempotent-Replayed: true` |
//! | GET | `/api/v1/metrics/repo/{org}/{repo}/{workflow}/{job}` | read token | 200, JSON array, newest first |
//! | GET | `/api/v1/sizing/repo/{org}/{repo}/{workflow}/{job}` | read token | 200, the sizing answer (`sizing.rs`: `runs`, `buffer`, `cpu_percentile`, `window`, `cpu_limit`) |
//! | GET | `/api/v1/jobs` | read token | 200, the job list (`fleet.rs`: filters, `sort`, `order`, `limit`, `offset`) |
//! | GET | `/api/v1/history/repo/{org}/{repo}/{workflow}/{job}` | read token | 200, one row per run, newest first (`limit`, `cursor`) |
//! | GET | `/api/v1/fleet` | read token | 200, fleet totals over the window |
//! | GET | `/`, `/login`, `/job/...`, `/run/...` | session cookie | the web page (`router.rs` sends those paths to `web`) |
//! | GET | `/healthz` | none | 200 `{"status":"ok"}`; 503 `{"status":"unavailable","error":...}` while the store recovers from an I/O error (readiness) |
//! | GET | `/livez` | none | 200 `{"status":"ok"}` while the process answers (liveness) |
//! | GET | `/metrics` | none | the receiver's own metrics (OpenMetrics when asked for, else the Prometheus text format) |
//!
//! Errors are `{"error": "..."}` with 400 (malformed, or two `Authorization` headers), 401
//! (missing, malformed, forged or expired credentials; a self-describing push token is
//! judged before the body is read), 403 (a valid push token for another scope), 404, 405
//! (with `Allow`),
//! 408 (body too slow), 413 (body over `--max-body-bytes`), 415 (not JSON), 422 (a
//! well-formed summary that fails validation), 500 and 503 (shutting down, or the store is
//! unavailable after an I/O error, or too many bodies in flight: the message says why).

use hyper::body::{Body, Bytes};
use hyper::{Method, Request};

use crate::app::{ApiError, AppState, Resp};

mod extract;
mod fleet;
mod handlers;
mod sizing;

const QUERY_PREFIX: &str = "/api/v1/metrics/repo/";

/// The API's routes: the route's name (for metrics) and the answer.
pub(crate) async fn route<B>(
    state: &AppState,
    req: Request<B>,
) -> (&'static str, Result<Resp, ApiError>)
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    match (&method, path.as_str()) {
        (&Method::GET | &Method::HEAD, "/healthz") => ("healthz", Ok(handlers::healthz(state))),
        (_, "/healthz") => ("healthz", Err(ApiError::method_not_allowed("GET"))),
        (&Method::GET | &Method::HEAD, "/livez") => ("livez", Ok(handlers::livez())),
        (_, "/livez") => ("livez", Err(ApiError::method_not_allowed("GET"))),
        (&Method::GET, "/metrics") => ("metrics", Ok(handlers::metrics(state, &req))),
        (_, "/metrics") => ("metrics", Err(ApiError::method_not_allowed("GET"))),
        (&Method::POST, "/api/v1/token") => ("token", handlers::issue_token(state, req).await),
        (_, "/api/v1/token") => ("token", Err(ApiError::method_not_allowed("POST"))),
        (&Method::POST, "/api/v1/metrics") => ("push", handlers::push(state, req).await),
        (_, "/api/v1/metrics") => ("push", Err(ApiError::method_not_allowed("POST"))),
        (&Method::GET, p) if p.starts_with(QUERY_PREFIX) => {
            ("query", handlers::query(state, &req).await)
        }
        (_, p) if p.starts_with(QUERY_PREFIX) => {
            ("query", Err(ApiError::method_not_allowed("GET")))
        }
        (&Method::GET, p) if p.starts_with(sizing::SIZING_PREFIX) => {
            ("sizing", sizing::sizing(state, &req).await)
        }
        (_, p) if p.starts_with(sizing::SIZING_PREFIX) => {
            ("sizing", Err(ApiError::method_not_allowed("GET")))
        }
        (&Method::GET, "/api/v1/jobs") => ("jobs", fleet::jobs(state, &req).await),
        (_, "/api/v1/jobs") => ("jobs", Err(ApiError::method_not_allowed("GET"))),
        (&Method::GET, "/api/v1/fleet") => ("fleet", fleet::fleet(state, &req).await),
        (_, "/api/v1/fleet") => ("fleet", Err(ApiError::method_not_allowed("GET"))),
        (&Method::GET, p) if p.starts_with(fleet::HISTORY_PREFIX) => {
            ("history", fleet::history(state, &req).await)
        }
        (_, p) if p.starts_with(fleet::HISTORY_PREFIX) => {
            ("history", Err(ApiError::method_not_allowed("GET")))
        }
        _ => (
            "other",
            Err(ApiError::new(hyper::StatusCode::NOT_FOUND, "not found")),
        ),
    }
}
