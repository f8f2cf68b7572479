//! One function per endpoint: issue a token, store a push, answer a query, serve metrics.

use http_body_util::Full;
use hyper::body::{Body, Bytes};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use summary::MetricsPush;

use super::extract::{
    bearer, encode_cursor, legacy_push_slot, page_params, parse_json, query_path, read_body,
    require_json, require_read_token,
};
use crate::app::{ApiError, json_response};
use crate::app::{AppState, Resp};
use crate::auth::{PushToken, Scope, TokenError};
use crate::store::{NewRun, job_key};

/// `GET /healthz` (readiness): 200 `{"status":"ok"}` while the store accepts writes; 503
/// `{"status":"unavailable","error":"store unavailable: <reason>"}` while it recovers from
/// an I/O error such as a full disk.
pub(crate) fn healthz(state: &AppState) -> Resp {
    match state.store.unavailable() {
        None => json_response(StatusCode::OK, r#"{"status":"ok"}"#),
        Some(reason) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({
                "status": "unavailable",
                "error": format!("store unavailable: {reason}"),
            })
            .to_string(),
        ),
    }
}

/// `GET /livez` (liveness): 200 `{"status":"ok"}` whenever the process answers. A store
/// that hit a full disk recovers by itself, and a restart would not free the disk, so this
/// one stays 200.
pub(crate) fn livez() -> Resp {
    json_response(StatusCode::OK, r#"{"status":"ok"}"#)
}

/// `GET /metrics`: OpenMetrics for Prometheus (it asks for it), the classic text for
/// everyone else.
pub(crate) fn metrics<B>(state: &AppState, req: &Request<B>) -> Resp {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let (ctype, body) = summary::exposition::negotiate(accept, state.metrics.encode());
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    resp
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

/// `POST /api/v1/token` (read token): a push token for the requested scope.
pub(crate) async fn issue_token<B>(state: &AppState, req: Request<B>) -> Result<Resp, ApiError>
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
            state
                .keys
                .now()
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

/// The answer to a push token the receiver refuses.
fn token_refused(err: TokenError) -> ApiError {
    match err {
        TokenError::Malformed | TokenError::Invalid | TokenError::Expired => {
            ApiError::new(StatusCode::UNAUTHORIZED, err.to_string())
        }
        TokenError::WrongScope => ApiError::new(StatusCode::FORBIDDEN, err.to_string()),
    }
}

/// `POST /api/v1/metrics` (push token): stores a summary; 201 after a durable commit.
///
/// A self-describing token is checked from the headers alone: a wrong, forged or expired
/// one is refused (401) before a byte of the body is read, and the body's identity must
/// then lie within its scope (403 naming the first component that does not). A legacy
/// token (the seed's format) names no scope, so its body must be read first: at most
/// [`crate::app::LEGACY_PUSHES_IN_FLIGHT`] such pushes at once (503 beyond). Every body also
/// reserves its size in the budget of body bytes in flight (503 when full).
///
/// Pushing the same run again (a retry after a lost answer) stores nothing new and is
/// answered 201 with the first push's id and receive time, plus `Idempotent-Replayed:
/// true`.
pub(crate) async fn push<B>(state: &AppState, req: Request<B>) -> Result<Resp, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let now = state.keys.now();
    let token = state
        .keys
        .read_push_token(bearer(&req)?, now)
        .map_err(token_refused)?;
    require_json(&req)?;
    let _legacy_slot = match token {
        PushToken::Legacy(_) => Some(legacy_push_slot(state)?),
        PushToken::Scoped { .. } => None,
    };
    let body = read_body(state, req).await?;
    let push: MetricsPush = parse_json(&body)?;
    let e = &push.execution;
    let identity = Scope::exact(&e.organization, &e.repository, &e.workflow, &e.job);
    match &token {
        PushToken::Scoped { scope, .. } => {
            if let Some((field, granted, pushed)) = scope.mismatch(&identity) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "push token does not grant {field} {pushed:?} (execution.{field}); \
                         it is scoped to {field} {granted:?}"
                    ),
                ));
            }
        }
        PushToken::Legacy(legacy) => state
            .keys
            .verify_legacy(legacy, &identity, now)
            .map_err(token_refused)?,
    }
    push.validate_at(state.keys.clock_now())
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    // Encoded once, here: the writer thread only copies these bytes into the transaction.
    let run = NewRun::of_push(&push.execution, &push.summary).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not encode the summary",
        )
    })?;
    drop((push, body));
    let job_key = run.job_key().to_vec();
    let inserted = state.store.insert(run).await?;
    if !inserted.replayed {
        state.sizer.mark(job_key);
    }
    // `received_at` is RFC 3339 (digits, `-`, `:`, `.`, `T`, `Z`): nothing to escape.
    let body = format!(
        r#"{{"id":{},"received_at":"{}"}}"#,
        inserted.id, inserted.received_at
    );
    let mut resp = json_response(StatusCode::CREATED, body);
    if inserted.replayed {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

/// `GET /api/v1/metrics/repo/{org}/{repo}/{workflow}/{job}` (read token): one page of the
/// job's runs, newest first, with `X-Next-Cursor` and `Link` when more follow. The page
/// stops at `limit` runs or before the run that would take the body over
/// `--max-response-bytes`, whichever comes first (at least one run).
pub(crate) async fn query<B>(state: &AppState, req: &Request<B>) -> Result<Resp, ApiError> {
    require_read_token(state, req)?;
    let path = req.uri().path();
    let [org, repo, workflow, job] = query_path(path)?;
    let page = page_params(req.uri().query())?;
    let (limit, cursor) = (page.limit, page.cursor);
    let key = job_key(&org, &repo, &workflow, &job);
    let page = state
        .store
        .query(key, limit, cursor, state.max_response_bytes)
        .await?;
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
