//! What handlers take from a request: credentials, the body, the query path and its
//! parameters. Each step fails with the answer the client gets.

use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper::body::{Body, Bytes};
use hyper::header;
use hyper::{Request, StatusCode};
use serde::Deserialize;
use tokio::sync::OwnedSemaphorePermit;

use super::QUERY_PREFIX;
use crate::app::ApiError;
use crate::app::{AppState, percent_decode};
use crate::fleet::{DEFAULT_LIMIT, MAX_LIMIT};

/// The bearer token of a request; 401 if there is none, 400 if there are several
/// `Authorization` headers (which one counts would be up to each proxy on the way).
pub(crate) fn bearer<B>(req: &Request<B>) -> Result<&str, ApiError> {
    let missing = || ApiError::new(StatusCode::UNAUTHORIZED, "missing bearer token");
    let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or_else(missing)?;
    if values.next().is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "more than one Authorization header",
        ));
    }
    let value = value.to_str().map_err(|_| missing())?;
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(missing());
    }
    Ok(token.trim())
}

/// 401 unless the request carries the read token.
pub(crate) fn require_read_token<B>(state: &AppState, req: &Request<B>) -> Result<(), ApiError> {
    if state.keys.is_read_token(bearer(req)?) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid read token",
        ))
    }
}

/// 415 if a `Content-Type` is given and is not JSON (parameters such as `charset` are fine).
pub(crate) fn require_json<B>(req: &Request<B>) -> Result<(), ApiError> {
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

/// A request body read within its limits. It holds its share of the receiver's budget of
/// body bytes in flight ([`BodyLimits`]) until it is dropped.
#[derive(Debug)]
pub(crate) struct ReadBody {
    /// The body.
    bytes: Bytes,
    /// The bytes reserved for it in [`BodyLimits::bytes`].
    _reserved: OwnedSemaphorePermit,
}

impl std::ops::Deref for ReadBody {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// A slot among the legacy-token pushes in flight; 503 if all are taken.
/// 503 with `Retry-After: 1`: the receiver is full for now, a retry will do.
fn busy(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("too many {what} in flight; retry later"),
    )
    .retry_after(1)
}

pub(crate) fn legacy_push_slot(state: &AppState) -> Result<OwnedSemaphorePermit, ApiError> {
    state
        .body_limits
        .legacy_pushes
        .clone()
        .try_acquire_owned()
        .map_err(|_| busy("pushes with a legacy token (use a token from POST /api/v1/token)"))
}

/// Reads the body, at most `max_body_bytes` (413), within `body_timeout` (408), once its
/// size fits in the budget of body bytes in flight (503 if it does not, now).
pub(crate) async fn read_body<B>(state: &AppState, req: Request<B>) -> Result<ReadBody, ApiError>
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
    let reserve = declared.map_or(state.max_body_bytes, |n| n as usize);
    let reserved = u32::try_from(reserve)
        .ok()
        .and_then(|n| {
            state
                .body_limits
                .bytes
                .clone()
                .try_acquire_many_owned(n)
                .ok()
        })
        .ok_or_else(|| busy("request bodies"))?;
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
        Ok(Ok(collected)) => Ok(ReadBody {
            bytes: collected.to_bytes(),
            _reserved: reserved,
        }),
    }
}

/// The body as JSON; 400 with serde's message if it is not.
pub(crate) fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")))
}

/// `/api/v1/metrics/repo/{org}/{repo}/{workflow}/{job}`, decoded: 404 if the shape is
/// wrong, 400 if an escape is.
pub(crate) fn query_path(path: &str) -> Result<[String; 4], ApiError> {
    job_path(path, QUERY_PREFIX)
}

/// The four decoded job segments after `prefix` (`/api/v1/sizing/repo/`, ...).
pub(crate) fn job_path(path: &str, prefix: &str) -> Result<[String; 4], ApiError> {
    let shape = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("expected {prefix}{{org}}/{{repo}}/{{workflow}}/{{job}}"),
        )
    };
    let rest = path.strip_prefix(prefix).ok_or_else(shape)?;
    let segments: Vec<&str> = rest.split('/').collect();
    let [org, repo, workflow, job] = segments[..] else {
        return Err(shape());
    };
    let segments = [org, repo, workflow, job];
    if segments.iter().any(|s| s.is_empty()) {
        return Err(shape());
    }
    let mut decoded = segments.map(|_| String::new());
    for (out, s) in decoded.iter_mut().zip(segments) {
        *out = percent_decode(s).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed percent-encoding in path",
            )
        })?;
    }
    Ok(decoded)
}

/// The `limit` and `cursor` parameters of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageParams {
    /// Page size, 1..=[`MAX_LIMIT`].
    pub(crate) limit: usize,
    /// Runs older than this id, if given.
    pub(crate) cursor: Option<u64>,
}

/// Parses `limit=N&cursor=HEX` (other parameters are ignored); 400 on a bad value.
pub(crate) fn page_params(query: Option<&str>) -> Result<PageParams, ApiError> {
    let mut params = PageParams {
        limit: DEFAULT_LIMIT,
        cursor: None,
    };
    let pairs =
        crate::app::query_pairs(query).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    for (k, v) in &pairs {
        match k.as_str() {
            "limit" => {
                params.limit = v
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
                params.cursor = Some(
                    decode_cursor(v)
                        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "invalid cursor"))?,
                );
            }
            _ => {}
        }
    }
    Ok(params)
}

/// Encodes a cursor (the id of the last run on a page).
pub(crate) fn encode_cursor(id: u64) -> String {
    hex::encode(id.to_be_bytes())
}

fn decode_cursor(s: &str) -> Option<u64> {
    let mut bytes = [0u8; 8];
    hex::decode_to_slice(s, &mut bytes).ok()?;
    Some(u64::from_be_bytes(bytes))
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
        assert_eq!(percent_decode("%%41"), None);
        assert_eq!(percent_decode("my%2-repo"), None);
        assert_eq!(percent_decode("%ff"), None);
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("é"));
        assert_eq!(percent_decode("").as_deref(), Some(""));
    }

    #[test]
    fn query_paths() {
        assert_eq!(
            query_path("/api/v1/metrics/repo/o/o%2Fr/ci.yml/build").unwrap(),
            ["o", "o/r", "ci.yml", "build"].map(String::from)
        );
        for (path, status) in [
            ("/api/v1/metrics/repo/o/r/w", 404),
            ("/api/v1/metrics/repo/o/r/w/j/x", 404),
            ("/api/v1/metrics/repo/o//w/j", 404),
            ("/api/v1/metrics/repo/o/r%zz/w/j", 400),
        ] {
            let err = query_path(path).unwrap_err();
            assert_eq!(err.into_response().status().as_u16(), status, "{path}");
        }
    }

    #[test]
    fn page_parameters() {
        assert_eq!(
            page_params(None).unwrap(),
            PageParams {
                limit: DEFAULT_LIMIT,
                cursor: None
            }
        );
        assert_eq!(
            page_params(Some("limit=3&cursor=00000000000003e8&x=y")).unwrap(),
            PageParams {
                limit: 3,
                cursor: Some(1000)
            }
        );
        for bad in ["limit=0", "limit=1001", "limit=x", "cursor=zz", "cursor="] {
            assert!(page_params(Some(bad)).is_err(), "{bad}");
        }
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
