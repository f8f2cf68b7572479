//! One HTTP/1.1 connection: opened once, used for one request ([`crate::request`]) or for
//! many in turn (keep-alive, [`Connection::send`]).

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HOST, HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::{Error, Request, Response, Step, Target};

/// How to reach the server.
pub(crate) enum Dial {
    /// A socket address.
    Addr(SocketAddr),
    /// Host name (or address) and port, resolved when connecting, and the `host:port`
    /// text that names them.
    Host(String, u16, String),
}

impl Dial {
    /// `host:port`.
    pub(crate) fn authority(&self) -> String {
        match self {
            Dial::Addr(a) => a.to_string(),
            Dial::Host(_, _, authority) => authority.clone(),
        }
    }
}

/// A keep-alive HTTP/1.1 connection: requests go one after the other on the same socket,
/// which saves a TCP handshake and the server's accept per request (what a load generator
/// needs). The connection closes when this is dropped.
pub struct Connection {
    /// `host:port` of the server: the default `Host` header and the address errors name.
    addr: String,
    /// hyper's handle on the connection; the connection itself runs in a spawned task.
    sender: SendRequest<Full<Bytes>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects to `addr` within `timeout`. Needs a tokio runtime (the connection's task is
    /// spawned on it).
    pub async fn open(addr: SocketAddr, timeout: Duration) -> Result<Self, Error> {
        Self::open_until(Dial::Addr(addr), Instant::now() + timeout, timeout).await
    }

    /// The server's `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `req` on this connection and reads the whole answer within the request's
    /// timeout. The request's own host is not used, only its path; it must name this
    /// connection's server (or be built with [`Request::to`] on its address).
    pub async fn send(&mut self, req: Request) -> Result<Response, Error> {
        let other = req.authority();
        if other != self.addr {
            return Err(Error::Invalid {
                url: other,
                reason: format!("this connection goes to {}", self.addr),
            });
        }
        let deadline = Instant::now() + req.timeout;
        self.send_until(req, deadline).await
    }

    pub(crate) async fn open_until(
        dial: Dial,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Self, Error> {
        let (addr, connected) = match dial {
            Dial::Addr(a) => (
                a.to_string(),
                tokio::time::timeout_at(deadline, TcpStream::connect(a)).await,
            ),
            // `connect` resolves the name.
            Dial::Host(host, port, authority) => (
                authority,
                tokio::time::timeout_at(deadline, TcpStream::connect((host.as_str(), port))).await,
            ),
        };
        let timed_out = |step| Error::Timeout {
            addr: addr.clone(),
            step,
            timeout,
        };
        let stream = match connected {
            Err(_) => return Err(timed_out(Step::Connect)),
            Ok(Err(cause)) => return Err(Error::Connect { addr, cause }),
            Ok(Ok(s)) => s,
        };
        // Requests are small and answered at once: no Nagle delay.
        let _ = stream.set_nodelay(true);
        let (sender, conn) = match tokio::time::timeout_at(
            deadline,
            hyper::client::conn::http1::handshake(TokioIo::new(stream)),
        )
        .await
        {
            Err(_) => return Err(timed_out(Step::Send)),
            Ok(Err(cause)) => return Err(Error::Send { addr, cause }),
            Ok(Ok(pair)) => pair,
        };
        // Ends by itself once `sender` is dropped and the last answer is read.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self { addr, sender })
    }

    pub(crate) async fn send_until(
        &mut self,
        req: Request,
        deadline: Instant,
    ) -> Result<Response, Error> {
        let timeout = req.timeout;
        let request = build(req, &self.addr)?;
        self.send_built(request, timeout, deadline).await
    }

    pub(crate) async fn send_built(
        &mut self,
        request: hyper::Request<Full<Bytes>>,
        timeout: Duration,
        deadline: Instant,
    ) -> Result<Response, Error> {
        let timed_out = |step| Error::Timeout {
            addr: self.addr.clone(),
            step,
            timeout,
        };
        let send = async {
            self.sender.ready().await?;
            self.sender.send_request(request).await
        };
        let answer = match tokio::time::timeout_at(deadline, send).await {
            Err(_) => return Err(timed_out(Step::Send)),
            Ok(Err(cause)) => {
                return Err(Error::Send {
                    addr: self.addr.clone(),
                    cause,
                });
            }
            Ok(Ok(answer)) => answer,
        };
        let (parts, body) = answer.into_parts();
        let body = match tokio::time::timeout_at(deadline, body.collect()).await {
            Err(_) => return Err(timed_out(Step::Read)),
            Ok(Err(cause)) => {
                return Err(Error::Read {
                    addr: self.addr.clone(),
                    cause,
                });
            }
            Ok(Ok(collected)) => collected.to_bytes(),
        };
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// The hyper request for `req`, with `Host: host` unless `req` sets its own; checks the
/// path and the headers, so nothing invalid is ever sent.
pub(crate) fn build(req: Request, host: &str) -> Result<hyper::Request<Full<Bytes>>, Error> {
    let url = match &req.target {
        Target::Url(u) => u.clone(),
        Target::Addr(a, p) => format!("http://{a}{p}"),
    };
    let invalid = |reason: String| Error::Invalid {
        url: url.clone(),
        reason,
    };
    let path = match &req.target {
        Target::Addr(_, p) => p.clone(),
        Target::Url(u) => crate::parse_url(u)?.path,
    };
    if !path.starts_with('/') {
        return Err(invalid(format!("the path {path:?} does not start with /")));
    }
    let uri: hyper::Uri = path
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| invalid(format!("path {path:?}: {e}")))?;
    let mut request = hyper::Request::new(Full::new(req.body));
    *request.method_mut() = req.method;
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    for (name, value) in &req.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| invalid(format!("header name {name:?}: {e}")))?;
        let value =
            HeaderValue::from_str(value).map_err(|e| invalid(format!("header {name}: {e}")))?;
        headers.append(name, value);
    }
    if !headers.contains_key(HOST) {
        let value =
            HeaderValue::from_str(host).map_err(|e| invalid(format!("host {host:?}: {e}")))?;
        headers.insert(HOST, value);
    }
    Ok(request)
}
