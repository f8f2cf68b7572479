//! The workspace's one HTTP/1.1 client, over hyper 1 and tokio: the collector's push, the
//! xtask and the black-box tests all send their requests through it.
//!
//! ```no_run
//! # async fn f() -> Result<(), http_client::Error> {
//! use std::time::Duration;
//! use http_client::{Method, Request};
//!
//! let answer = Request::new(Method::POST, "http://127.0.0.1:8080/api/v1/metrics")
//!     .bearer("push-token")
//!     .json(r#"{"execution":{},"summary":{}}"#)
//!     .timeout(Duration::from_secs(5))
//!     .send()
//!     .await?;
//! println!("{} {}", answer.status, answer.text());
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - this file: [`Request`] (a builder: method, `http://host:port/path` URL or
//!   `SocketAddr` + path, headers, body, one overall timeout), [`Response`], and the async
//!   [`request`]: one fresh connection per request.
//! - [`Connection`]: one keep-alive connection for many requests (load generators).
//! - [`blocking`]: the same call for synchronous code (the xtask, tests).
//! - [`Error`] (in `error.rs`): names the address and the [`Step`] that failed.
//!
//! Plain `http://` only: HTTPS needs a TLS-terminating proxy in front of the server.

mod connection;
mod error;

pub mod blocking;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Duration;

pub use connection::Connection;
pub use error::{Error, Step};
pub use hyper::body::Bytes;
pub use hyper::header::{HeaderMap, HeaderName, HeaderValue};
pub use hyper::{Method, StatusCode};

/// The overall timeout of a request unless [`Request::timeout`] sets another.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// An `http://host[:port]/path?query` URL, parsed when the request is sent.
    Url(String),
    /// A socket address and a path (with its query, if any).
    Addr(SocketAddr, String),
}

/// One HTTP request, built step by step; every mistake in it (a bad URL or header) is
/// reported by [`request`] as [`Error::Invalid`], so building never fails.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method.
    method: Method,
    /// Host and path.
    target: Target,
    /// Headers in the order given; checked when sent.
    headers: Vec<(String, String)>,
    /// The body (empty: none).
    body: Bytes,
    /// Deadline for connecting, sending and reading the whole answer together.
    timeout: Duration,
}

impl Request {
    /// A request to an `http://host[:port]/path` URL (port 80 when none is given).
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self::with_target(method, Target::Url(url.into()))
    }

    /// A request to `path` (`/api/v1/metrics?limit=5`) on the server at `addr`.
    pub fn to(method: Method, addr: SocketAddr, path: impl Into<String>) -> Self {
        Self::with_target(method, Target::Addr(addr, path.into()))
    }

    /// `GET url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::GET, url)
    }

    /// `POST url`.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new(Method::POST, url)
    }

    fn with_target(method: Method, target: Target) -> Self {
        Self {
            method,
            target,
            headers: Vec::new(),
            body: Bytes::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Adds a header (a `Host` header replaces the one taken from the URL).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    /// Sets the body (sent with its `Content-Length`).
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets a JSON body and `Content-Type: application/json`.
    pub fn json(self, body: impl Into<Bytes>) -> Self {
        self.header("content-type", "application/json").body(body)
    }

    /// Sets the overall timeout: connecting, sending and reading the answer together.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends the request on a connection of its own; see [`request`].
    pub async fn send(self) -> Result<Response, Error> {
        request(self).await
    }

    /// Where the request goes, for error messages: `host:port`, or the URL if it has none.
    fn authority(&self) -> String {
        match &self.target {
            Target::Addr(addr, _) => addr.to_string(),
            Target::Url(url) => match parse_url(url) {
                Ok(parsed) => parsed.authority,
                Err(_) => url.clone(),
            },
        }
    }
}

/// An answer, read to its end.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code (compares with a plain number: `resp.status == 201`).
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Response {
    /// The first value of header `name` (case-insensitive), if it is present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }
}

/// A URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Url {
    /// Host name or address, IPv6 without brackets.
    host: String,
    /// Port (80 when the URL has none).
    port: u16,
    /// `host:port` as the `Host` header and error messages show it.
    authority: String,
    /// Path and query (`/` when the URL has none).
    path: String,
}

fn parse_url(url: &str) -> Result<Url, Error> {
    let invalid = |reason: &str| Error::Invalid {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: hyper::Uri = url.parse().map_err(|e: hyper::http::uri::InvalidUri| {
        invalid(&format!("{e}; expected http://host[:port]/path"))
    })?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(invalid(
                "https is not supported: put a TLS-terminating proxy in front of the server",
            ));
        }
        _ => return Err(invalid("expected http://host[:port]/path")),
    }
    let authority = uri
        .authority()
        .ok_or_else(|| invalid("no host; expected http://host[:port]/path"))?;
    let host = authority.host();
    if host.is_empty() {
        return Err(invalid("no host; expected http://host[:port]/path"));
    }
    let port = authority.port_u16().unwrap_or(80);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    Ok(Url {
        host: bare.to_owned(),
        port,
        authority: match authority.port() {
            Some(_) => authority.as_str().to_owned(),
            None => format!("{host}:{port}"),
        },
        path: uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".to_owned()),
    })
}

/// Sends `req` on a fresh connection and reads the whole answer, all within the
/// request's timeout. Any status is an `Ok`; only failing to get an answer is an error.
///
/// Needs a tokio runtime with I/O and time enabled (a connection task is spawned on it);
/// synchronous code uses [`blocking::request`].
pub async fn request(req: Request) -> Result<Response, Error> {
    let deadline = tokio::time::Instant::now() + req.timeout;
    let timeout = req.timeout;
    let dial = match &req.target {
        Target::Addr(addr, _) => connection::Dial::Addr(*addr),
        Target::Url(url) => {
            let url = parse_url(url)?;
            connection::Dial::Host(url.host, url.port, url.authority)
        }
    };
    // Checked before connecting: an invalid request never reaches the server.
    let request = connection::build(req, &dial.authority())?;
    let mut conn = Connection::open_until(dial, deadline, timeout).await?;
    conn.send_built(request, timeout, deadline).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_url("http://receiver:8080/api/v1/metrics").unwrap();
        assert_eq!(
            (
                u.host.as_str(),
                u.port,
                u.authority.as_str(),
                u.path.as_str()
            ),
            ("receiver", 8080, "receiver:8080", "/api/v1/metrics")
        );
        let u = parse_url("http://localhost").unwrap();
        assert_eq!(
            (u.port, u.authority.as_str(), u.path.as_str()),
            (80, "localhost:80", "/")
        );
        let u = parse_url("http://[::1]:9/x?limit=5&cursor=00").unwrap();
        assert_eq!(
            (u.host.as_str(), u.authority.as_str(), u.path.as_str()),
            ("::1", "[::1]:9", "/x?limit=5&cursor=00")
        );
        for bad in [
            "https://h/x",
            "ftp://h/x",
            "/just/a/path",
            "http://",
            "not a url",
        ] {
            let err = parse_url(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{bad}: {err}");
        }
        assert!(
            parse_url("https://h/x")
                .unwrap_err()
                .to_string()
                .contains("TLS-terminating proxy")
        );
    }

    #[test]
    fn builder() {
        let r = Request::post("http://h:1/p")
            .bearer("t")
            .json("{}")
            .timeout(Duration::from_secs(1));
        assert_eq!(r.method, Method::POST);
        assert_eq!(
            r.headers,
            [
                ("authorization".to_owned(), "Bearer t".to_owned()),
                ("content-type".to_owned(), "application/json".to_owned())
            ]
        );
        assert_eq!(r.body, "{}");
        assert_eq!(r.timeout, Duration::from_secs(1));
        assert_eq!(r.authority(), "h:1");
        let addr: SocketAddr = "127.0.0.1:7".parse().unwrap();
        assert_eq!(
            Request::to(Method::GET, addr, "/x").authority(),
            "127.0.0.1:7"
        );
    }
}
