//! The one place that knows both the API and the web page: sends a request to the page
//! (`/`, `/login`, `/job/...`, `/run/...`) or to the API, and counts the answer in the
//! receiver's own metrics. `api` and `web` share only `app`, never each other.

use std::time::Instant;

use hyper::Request;
use hyper::body::{Body, Bytes};
use tracing::instrument;

use crate::app::{ApiError, AppState, Resp};

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
        crate::api::route(state, req).await
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use http_body_util::{BodyExt as _, Full};
    use hyper::Method;

    use super::*;
    use crate::app::BodyLimits;
    use crate::config::Config;
    use crate::metrics::Metrics;
    use crate::store::Store;

    /// The router is a function of the request: no socket needed.
    /// The state of a receiver with `config`, over a store opened at its `db`.
    async fn state_over(config: &Config) -> AppState {
        let metrics = Arc::new(Metrics::default());
        let store = Store::open(
            &config.db,
            crate::store::StoreOptions::default(),
            metrics.clone(),
        )
        .await
        .unwrap();
        AppState::new(config, Arc::new(store), metrics)
    }

    #[tokio::test]
    async fn routes_without_a_socket() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::new(
            dir.path().join("t.redb"),
            "read-0123456789abcdef",
            "hmac-0123456789abcdef",
        );
        let state = state_over(&config).await;
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
        let mut state = state_over(&config).await;
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
