//! The HTTP API: a `match (method, path)` router over a request, callable without a socket.
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
//! | GET | `/`, `/login`, `/job/...`, `/static/...` | session cookie | the web page ([`crate::web`]) |
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

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::{Body, Bytes};
use hyper::{Method, Request, Response};
use tracing::instrument;

use crate::auth::Keys;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::Store;

mod error;
mod extract;
pub(crate) mod fleet;
mod handlers;
pub(crate) mod sizing;

pub(crate) use error::ApiError;
pub use extract::{BODY_BYTES_IN_FLIGHT, BodyLimits, LEGACY_PUSHES_IN_FLIGHT, percent_decode};

/// A response with a fully buffered body.
pub type Resp = Response<http_body_util::Full<Bytes>>;

/// Default page size of the query endpoint.
pub const DEFAULT_LIMIT: usize = 50;
/// Largest page size of the query endpoint.
pub const MAX_LIMIT: usize = 1000;

const QUERY_PREFIX: &str = "/api/v1/metrics/repo/";

/// What every request handler needs.
#[derive(Debug)]
pub struct AppState {
    /// Token issuing and checking, on the configured clock.
    pub keys: Keys,
    /// The database.
    pub store: Arc<Store>,
    /// The receiver's own metrics.
    pub metrics: Arc<Metrics>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Deadline for reading a request body.
    pub body_timeout: Duration,
    /// Largest query answer body (`--max-response-bytes`).
    pub max_response_bytes: usize,
    /// Request-body memory held at once: bytes of all bodies, and legacy-token pushes.
    pub body_limits: BodyLimits,
    /// Runner classes for sizing answers (`--runner-classes`).
    pub runner_classes: Vec<summary::sizing::RunnerClass>,
    /// Jobs whose sizing answer in the job list is to be made again.
    pub sizer: Arc<crate::sizer::Sizer>,
    /// Signs and checks the web page's session cookies.
    pub session: crate::web::session::SessionKey,
}

impl AppState {
    /// State for `config` over an opened store.
    pub fn new(config: &Config, store: Arc<Store>, metrics: Arc<Metrics>) -> Self {
        Self {
            keys: Keys::new(config.hmac_key.expose(), config.read_token.expose())
                .with_clock(config.clock),
            store,
            metrics,
            max_body_bytes: config.max_body_bytes,
            body_timeout: config.body_timeout,
            max_response_bytes: config.max_response_bytes,
            body_limits: BodyLimits::new(
                BODY_BYTES_IN_FLIGHT,
                LEGACY_PUSHES_IN_FLIGHT,
                config.max_body_bytes,
            ),
            runner_classes: config.runner_classes.clone(),
            sizer: Arc::default(),
            session: crate::web::session::SessionKey::new(
                config.hmac_key.expose(),
                config.read_token.expose(),
            ),
        }
    }
}

/// Answers one request. Never panics on request data; every failure is a JSON error.
///
/// The request span is at debug level: at the default `info` its creation and field
/// formatting cost ~1% of a push's CPU, and the only event inside it at `info` or above
/// (a storage failure) names what failed on its own.
#[instrument(level = "debug", name = "request", skip_all, fields(method = %req.method(), path = %req.uri().path()))]
pub async fn handle<B>(state: &AppState, req: Request<B>) -> Resp
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    let (route, result) = if crate::web::is_page(req.uri().path()) {
        let (route, resp) = crate::web::handle(state, req).await;
        (route, Ok(resp))
    } else {
        route(state, req).await
    };
    let resp = result.unwrap_or_else(ApiError::into_response);
    let status = resp.status().as_u16();
    state
        .metrics
        .observe_request(route, status, started.elapsed());
    tracing::debug!(
        route,
        status,
        elapsed_us = started.elapsed().as_micros() as u64,
        "answered"
    );
    resp
}

async fn route<B>(state: &AppState, req: Request<B>) -> (&'static str, Result<Resp, ApiError>)
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

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt as _, Full};

    use super::*;

    /// The router is a function of the request: no socket needed.
    #[tokio::test]
    async fn routes_without_a_socket() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::new(
            dir.path().join("t.redb"),
            "read-0123456789abcdef",
            "hmac-0123456789abcdef",
        );
        let metrics = Arc::new(Metrics::default());
        let store = Store::open(
            &config.db,
            crate::store::StoreOptions::default(),
            metrics.clone(),
        )
        .await
        .unwrap();
        let state = AppState::new(&config, Arc::new(store), metrics);
        let call = |method: Method, path: &str| {
            Request::builder()
                .method(method)
                .uri(path)
                .body(Full::new(Bytes::new()))
                .unwrap()
        };
        let resp = handle(&state, call(Method::GET, "/healthz")).await;
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, r#"{"status":"ok"}"#);
        let resp = handle(&state, call(Method::GET, "/livez")).await;
        assert_eq!(resp.status(), 200);
        let resp = handle(&state, call(Method::DELETE, "/api/v1/token")).await;
        assert_eq!(resp.status(), 405);
        assert_eq!(resp.headers()["allow"], "POST");
        let resp = handle(&state, call(Method::GET, "/api/v1/metrics/repo/o/r/w/j")).await;
        assert_eq!(resp.status(), 401);
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        assert_eq!(
            handle(&state, call(Method::GET, "/nope")).await.status(),
            404
        );
        state.store.close().await;
    }

    /// A request body that never arrives; it says when it is first asked for.
    struct Stalled(Arc<tokio::sync::Notify>);

    impl Body for Stalled {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            self.0.notify_one();
            std::task::Poll::Pending
        }
    }

    /// Starts `req` with a body that never arrives; returns once the handler waits for it.
    async fn hold(
        state: &Arc<AppState>,
        req: hyper::http::request::Builder,
    ) -> tokio::task::JoinHandle<Resp> {
        let asked = Arc::new(tokio::sync::Notify::new());
        let req = req.body(Stalled(asked.clone())).unwrap();
        let state = state.clone();
        let task = tokio::spawn(async move { handle(&state, req).await });
        tokio::time::timeout(Duration::from_secs(10), asked.notified())
            .await
            .expect("the handler to read the body");
        task
    }

    /// The memory of bodies in flight is bounded: bytes of all bodies together, and the
    /// number of legacy-token pushes (whose token can only be judged from the body).
    #[tokio::test]
    async fn bodies_in_flight_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let read = "read-0123456789abcdef";
        let mut config = Config::new(dir.path().join("t.redb"), read, "hmac-0123456789abcdef");
        config.max_body_bytes = 1000;
        let metrics = Arc::new(Metrics::default());
        let store = Store::open(
            &config.db,
            crate::store::StoreOptions::default(),
            metrics.clone(),
        )
        .await
        .unwrap();
        let mut state = AppState::new(&config, Arc::new(store), metrics);
        state.body_limits = BodyLimits::new(1500, 1, config.max_body_bytes);
        let state = Arc::new(state);
        let post = |path: &str, token: &str, len: usize| {
            Request::builder()
                .method(Method::POST)
                .uri(path)
                .header("authorization", format!("Bearer {token}"))
                .header("content-length", len.to_string())
        };
        let scope = crate::auth::Scope::new("o", "r", "w", "j").unwrap();
        let legacy = state.keys.issue_legacy(&scope, None);
        // A legacy push holds the only legacy slot and 900 of the 1500 bytes.
        let held = hold(&state, post("/api/v1/metrics", &legacy, 900)).await;
        let full = |req: hyper::http::request::Builder, body: &'static str| {
            req.body(Full::new(Bytes::from_static(body.as_bytes())))
                .unwrap()
        };
        let resp = handle(&state, full(post("/api/v1/metrics", &legacy, 2), "{}")).await;
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["retry-after"], "1");
        // 700 more bytes do not fit; 100 do.
        let v2 = state.keys.issue(&scope, None);
        let resp = handle(&state, full(post("/api/v1/metrics", &v2, 700), "{}")).await;
        assert_eq!(resp.status(), 503);
        let msg = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            msg,
            r#"{"error":"too many request bodies in flight; retry later"}"#
        );
        let token_request = r#"{"organization":"o","repository":"r","workflow":"w","job":"j"}"#;
        let resp = handle(
            &state,
            full(
                post("/api/v1/token", read, token_request.len()),
                token_request,
            ),
        )
        .await;
        assert_eq!(resp.status(), 200);
        // Once the held push is gone, everything is free again.
        held.abort();
        let _ = held.await;
        assert_eq!(state.body_limits.bytes.available_permits(), 1500);
        assert_eq!(state.body_limits.legacy_pushes.available_permits(), 1);
        state.store.close().await;
    }
}
