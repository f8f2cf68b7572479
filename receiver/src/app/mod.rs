//! What the API and the web page share: the state every request handler needs
//! ([`AppState`]), the response type ([`Resp`]), error answers ([`error`]) and the
//! percent-decoding of path and form segments. It imports neither `api` nor `web`; the
//! router (`router.rs`) is the one place that knows both.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use hyper::Response;
use hyper::body::Bytes;
use percent_encoding::percent_decode_str;
use tokio::sync::Semaphore;

use crate::auth::Keys;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::Store;

pub(crate) mod error;

pub(crate) use error::{ApiError, json_response};

/// A response with a fully buffered body.
pub type Resp = Response<http_body_util::Full<Bytes>>;

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
    pub session: crate::session::SessionKey,
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
            session: crate::session::SessionKey::new(
                config.hmac_key.expose(),
                config.read_token.expose(),
            ),
        }
    }
}

/// How much request-body memory the receiver holds at once.
#[derive(Debug)]
pub struct BodyLimits {
    /// Bytes of bodies being read or parsed, all requests together: each body reserves
    /// its `Content-Length` (or `--max-body-bytes` when it has none) before it is read.
    pub bytes: Arc<Semaphore>,
    /// Pushes with a legacy token (whose scope is known only from the body) being read
    /// or parsed at once.
    pub legacy_pushes: Arc<Semaphore>,
}

/// Default of [`BodyLimits::bytes`]: 64 MiB (raised to `--max-body-bytes` if that is
/// larger, so one body always fits).
pub const BODY_BYTES_IN_FLIGHT: usize = 64 << 20;
/// Default of [`BodyLimits::legacy_pushes`].
pub const LEGACY_PUSHES_IN_FLIGHT: usize = 16;

impl BodyLimits {
    /// `bytes` bytes of bodies and `legacy_pushes` legacy-token pushes at once; `bytes`
    /// is raised to `max_body_bytes` if smaller.
    pub fn new(bytes: usize, legacy_pushes: usize, max_body_bytes: usize) -> Self {
        let bytes = bytes.max(max_body_bytes).min(Semaphore::MAX_PERMITS);
        Self {
            bytes: Arc::new(Semaphore::new(bytes)),
            legacy_pushes: Arc::new(Semaphore::new(legacy_pushes)),
        }
    }
}

/// Decodes the `%XX` escapes of one path segment; `None` if an escape is malformed (`%`
/// not followed by two hex digits) or the result is not UTF-8.
pub fn percent_decode(segment: &str) -> Option<String> {
    // percent-encoding passes malformed escapes through as text; here they are errors.
    let bytes = segment.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return None;
    }
    percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(Cow::into_owned)
}

/// The `key=value` pairs of a query string or form body, in order, decoded (`+` is a space
/// in a value); empty pairs skipped, a pair without `=` has an empty value. `Err` names a
/// malformed percent-escape or text that is not UTF-8, which `form_urlencoded` would pass on
/// as text. The one parser of every query and form.
pub fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, &'static str> {
    let query = query.unwrap_or("");
    percent_decode(query).ok_or("malformed percent-encoding in query")?;
    Ok(form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_in_order_and_refuse_malformed_escapes() {
        let pairs = |q| query_pairs(Some(q));
        assert_eq!(
            pairs("a=1&&b=x+y%2Fz&c&d=%C3%A9").unwrap(),
            [("a", "1"), ("b", "x y/z"), ("c", ""), ("d", "é")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert_eq!(query_pairs(None).unwrap(), []);
        assert!(pairs("a=%zz").is_err());
        assert!(pairs("a=%4").is_err());
        assert!(pairs("a=%FF").is_err(), "not UTF-8");
        assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("100%"), None);
    }
}
