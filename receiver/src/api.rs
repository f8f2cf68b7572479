//! The HTTP API: a `match (method, path)` router over a request, callable without a socket.
//!
//! | method | path | auth | answer |
//! |---|---|---|---|
//! | POST | `/api/v1/token` | read token | 200 `{"token": ...}` (plus `expires_at` with a TTL) |
//! | POST | `/api/v1/metrics` | push token for the body's scope | 201 `{"id", "received_at"}` after a durable commit |
//! | GET | `/api/v1/metrics/repo/{org}/{repo}/{workflow}/{job}` | read token | 200, JSON array, newest first |
//! | GET | `/healthz` | none | 200 `{"status":"ok"}` |
//! | GET | `/metrics` | none | the receiver's own metrics (OpenMetrics when asked for, else the Prometheus text format) |
//!
//! Errors are `{"error": "..."}` with 400 (malformed), 401 (missing, malformed or expired
//! credentials), 403 (a valid push token for another scope), 404, 405 (with `Allow`),
//! 408 (body too slow), 413 (body over `--max-body-bytes`), 415 (not JSON), 422 (a
//! well-formed summary that fails validation), 500 and 503.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body, Bytes};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use summary::MetricsPush;
use tracing::instrument;

use crate::auth::{Keys, Scope, TokenError};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{NewRun, Store, StoreError, job_key};

/// A response with a fully buffered body.
pub type Resp = Response<Full<Bytes>>;

/// Default page size of the query endpoint.
pub const DEFAULT_LIMIT: usize = 50;
/// Largest page size of the query endpoint.
pub const MAX_LIMIT: usize = 1000;

const QUERY_PREFIX: &str = "/api/v1/metrics/repo/";

/// What every request handler needs.
#[derive(Debug)]
pub struct AppState {
    /// Token issuing and checking.
    pub keys: Keys,
    /// The database.
    pub store: Arc<Store>,
    /// The receiver's own metrics.
    pub metrics: Arc<Metrics>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Deadline for reading a request body.
    pub body_timeout: Duration,
}

impl AppState {
    /// State for `config` over an opened store.
    pub fn new(config: &Config, store: Arc<Store>, metrics: Arc<Metrics>) -> Self {
        Self {
            keys: Keys::new(config.hmac_key.expose(), config.read_token.expose()),
            store,
            metrics,
            max_body_bytes: config.max_body_bytes,
            body_timeout: config.body_timeout,
        }
    }
}

/// An error answer.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
    allow: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            allow: None,
        }
    }

    fn method_not_allowed(allow: &'static str) -> Self {
        Self {
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: format!("method not allowed; use {allow}"),
            allow: Some(allow),
        }
    }

    fn into_response(self) -> Resp {
        let body = serde_json::json!({ "error": self.message }).to_string();
        let mut resp = json_response(self.status, body);
        if let Some(allow) = self.allow {
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Closed => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "receiver is shutting down")
            }
            other => {
                tracing::error!(error = %other, "store failure");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "storage failure")
            }
        }
    }
}

fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
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
    let (route, result) = route(state, req).await;
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
        (&Method::GET | &Method::HEAD, "/healthz") => (
            "healthz",
            Ok(json_response(StatusCode::OK, r#"{"status":"ok"}"#)),
        ),
        (_, "/healthz") => ("healthz", Err(ApiError::method_not_allowed("GET"))),
        (&Method::GET, "/metrics") => {
            // OpenMetrics for Prometheus (it asks for it), the classic text for everyone else.
            let accept = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            let (ctype, body) = summary::exposition::negotiate(accept, state.metrics.encode());
            let mut resp = Response::new(Full::new(Bytes::from(body)));
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
            ("metrics", Ok(resp))
        }
        (_, "/metrics") => ("metrics", Err(ApiError::method_not_allowed("GET"))),
        (&Method::POST, "/api/v1/token") => ("token", issue_token(state, req).await),
        (_, "/api/v1/token") => ("token", Err(ApiError::method_not_allowed("POST"))),
        (&Method::POST, "/api/v1/metrics") => ("push", push(state, req).await),
        (_, "/api/v1/metrics") => ("push", Err(ApiError::method_not_allowed("POST"))),
        (&Method::GET, p) if p.starts_with(QUERY_PREFIX) => ("query", query(state, &req).await),
        (_, p) if p.starts_with(QUERY_PREFIX) => {
            ("query", Err(ApiError::method_not_allowed("GET")))
        }
        _ => (
            "other",
            Err(ApiError::new(StatusCode::NOT_FOUND, "not found")),
        ),
    }
}

/// The bearer token of a request; 401 if there is none.
fn bearer<B>(req: &Request<B>) -> Result<&str, ApiError> {
    let missing = || ApiError::new(StatusCode::UNAUTHORIZED, "missing bearer token");
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(missing)?;
    let value = value.to_str().map_err(|_| missing())?;
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(missing());
    }
    Ok(token.trim())
}

fn require_read_token<B>(state: &AppState, req: &Request<B>) -> Result<(), ApiError> {
    if state.keys.is_read_token(bearer(req)?) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid read token",
        ))
    }
}

fn require_json<B>(req: &Request<B>) -> Result<(), ApiError> {
    let Some(ct) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let mime = ct
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    if mime.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        ))
    }
}

/// Reads the body, at most `max_body_bytes`, within `body_timeout`.
async fn read_body<B>(state: &AppState, req: Request<B>) -> Result<Bytes, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body exceeds {} bytes", state.max_body_bytes),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.max_body_bytes as u64) {
        return Err(too_large());
    }
    let limited = Limited::new(req.into_body(), state.max_body_bytes);
    match tokio::time::timeout(state.body_timeout, limited.collect()).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timed out reading the request body",
        )),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(_)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "could not read the request body",
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")))
}

/// Body of `POST /api/v1/token`.
#[derive(Debug, Deserialize)]
struct TokenRequest {
    organization: String,
    repository: String,
    workflow: String,
    job: String,
    /// Optional lifetime in seconds; the token expires after it.
    #[serde(default)]
    ttl_seconds: Option<u64>,
}

async fn issue_token<B>(state: &AppState, req: Request<B>) -> Result<Resp, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    require_read_token(state, &req)?;
    require_json(&req)?;
    let body = read_body(state, req).await?;
    let request: TokenRequest = parse_json(&body)?;
    let scope = Scope::new(
        &request.organization,
        &request.repository,
        &request.workflow,
        &request.job,
    )
    .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let expiry = match request.ttl_seconds {
        None => None,
        Some(0) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "ttl_seconds must be positive",
            ));
        }
        Some(ttl) => Some(
            crate::auth::unix_now()
                .checked_add(ttl)
                .filter(|t| *t < i64::MAX as u64 / 1000)
                .ok_or_else(|| {
                    ApiError::new(StatusCode::BAD_REQUEST, "ttl_seconds is too large")
                })?,
        ),
    };
    let token = state.keys.issue(&scope, expiry);
    let body = match expiry {
        None => serde_json::json!({ "token": token }),
        Some(t) => serde_json::json!({
            "token": token,
            "expires_at": summary::time::format_unix_millis(t as i64 * 1000),
        }),
    };
    Ok(json_response(StatusCode::OK, body.to_string()))
}

async fn push<B>(state: &AppState, req: Request<B>) -> Result<Resp, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let token = bearer(&req)?.to_owned();
    require_json(&req)?;
    let body = read_body(state, req).await?;
    let push: MetricsPush = parse_json(&body)?;
    let e = &push.execution;
    let scope = Scope::exact(&e.organization, &e.repository, &e.workflow, &e.job);
    state.keys.verify(&token, &scope).map_err(|err| match err {
        TokenError::Malformed | TokenError::Expired => {
            ApiError::new(StatusCode::UNAUTHORIZED, err.to_string())
        }
        TokenError::WrongScope => ApiError::new(StatusCode::FORBIDDEN, err.to_string()),
    })?;
    push.validate()
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    // Encoded once, here: the writer thread only copies these bytes into the transaction.
    let run = NewRun::new(&push.execution, &push.summary).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not encode the summary",
        )
    })?;
    drop(push);
    let inserted = state.store.insert(run).await?;
    // `received_at` is RFC 3339 (digits, `-`, `:`, `.`, `T`, `Z`): nothing to escape.
    let body = format!(
        r#"{{"id":{},"received_at":"{}"}}"#,
        inserted.id, inserted.received_at
    );
    Ok(json_response(StatusCode::CREATED, body))
}

/// Decodes `%XX` escapes of one path segment; `None` if malformed or not UTF-8.
pub fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hi = (hex[0] as char).to_digit(16)?;
            let lo = (hex[1] as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes a cursor (the id of the last run on a page).
fn encode_cursor(id: u64) -> String {
    hex::encode(id.to_be_bytes())
}

fn decode_cursor(s: &str) -> Option<u64> {
    let mut bytes = [0u8; 8];
    hex::decode_to_slice(s, &mut bytes).ok()?;
    Some(u64::from_be_bytes(bytes))
}

async fn query<B>(state: &AppState, req: &Request<B>) -> Result<Resp, ApiError> {
    require_read_token(state, req)?;
    let path = req.uri().path();
    let rest = &path[QUERY_PREFIX.len()..];
    let segments: Vec<&str> = rest.split('/').collect();
    if segments.len() != 4 || segments.iter().any(|s| s.is_empty()) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "expected /api/v1/metrics/repo/{org}/{repo}/{workflow}/{job}",
        ));
    }
    let mut decoded = Vec::with_capacity(4);
    for s in segments {
        decoded.push(percent_decode(s).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed percent-encoding in path",
            )
        })?);
    }
    let mut limit = DEFAULT_LIMIT;
    let mut cursor = None;
    for pair in req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "limit" => {
                limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::new(
                            StatusCode::BAD_REQUEST,
                            "limit must be an integer from 1 to 1000",
                        )
                    })?;
            }
            "cursor" => {
                cursor = Some(
                    decode_cursor(v)
                        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "invalid cursor"))?,
                );
            }
            _ => {}
        }
    }
    let key = job_key(&decoded[0], &decoded[1], &decoded[2], &decoded[3]);
    let store = state.store.clone();
    let page = tokio::task::spawn_blocking(move || store.query(&key, limit, cursor))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "query task failed"))??;
    let total: usize = page.runs.iter().map(|r| r.len() + 1).sum();
    let mut body = Vec::with_capacity(total + 2);
    body.push(b'[');
    for (i, run) in page.runs.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(run);
    }
    body.push(b']');
    let mut resp = json_response(StatusCode::OK, body);
    if let Some(next) = page.next {
        let c = encode_cursor(next);
        let link = format!("<{path}?limit={limit}&cursor={c}>; rel=\"next\"");
        if let (Ok(c), Ok(link)) = (HeaderValue::from_str(&c), HeaderValue::from_str(&link)) {
            resp.headers_mut().insert("x-next-cursor", c);
            resp.headers_mut().insert(header::LINK, link);
        }
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(
            percent_decode("test-org%2Fstress-test").as_deref(),
            Some("test-org/stress-test")
        );
        assert_eq!(percent_decode("ci.yml").as_deref(), Some("ci.yml"));
        assert_eq!(percent_decode("a%20b%2f").as_deref(), Some("a b/"));
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%2"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("é"));
    }

    #[test]
    fn cursors_round_trip() {
        for id in [0, 1, 42, u64::MAX] {
            assert_eq!(decode_cursor(&encode_cursor(id)), Some(id));
        }
        assert_eq!(decode_cursor("xyz"), None);
        assert_eq!(decode_cursor(""), None);
    }
}
