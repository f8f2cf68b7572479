//! The client against real servers on 127.0.0.1:0: a hyper echo server, and raw sockets
//! that stall at a chosen point.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Full};
use http_client::{Connection, Error, Method, Request, Step, blocking};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// Answers `METHOD PATH\nhost\nauthorization\ncontent-type\nBODY` with status 200, or the
/// status named by `/status/NNN`, with an `x-requests` header counting the requests seen
/// on the connection.
async fn echo(req: hyper::Request<Incoming>, seen: usize) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let header = |n: &str| {
        parts
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let text = format!(
        "{} {}\n{}\n{}\n{}\n{}",
        parts.method,
        parts.uri,
        header("host"),
        header("authorization"),
        header("content-type"),
        String::from_utf8_lossy(&body)
    );
    let status = parts
        .uri
        .path()
        .strip_prefix("/status/")
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(200);
    let mut resp = hyper::Response::new(Full::new(Bytes::from(text)));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    resp.headers_mut()
        .insert("x-requests", seen.to_string().parse().unwrap());
    resp
}

/// Starts the echo server on a thread of its own; returns its address.
fn echo_server() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = TcpListener::from_std(listener).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
                    let service = service_fn(move |req| {
                        let seen = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                        async move { Ok::<_, Infallible>(echo(req, seen).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    addr
}

/// A server that accepts, reads the request's head, writes `reply` and then stalls: the
/// socket stays open until the test ends. An empty `reply` reads nothing.
fn stalling_server(reply: &'static [u8]) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = TcpListener::from_std(listener).unwrap();
            let mut held = Vec::new();
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                if !reply.is_empty() {
                    // The answer comes after the request, as it would from a real server.
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n")
                        && stream.read(&mut byte).await.is_ok_and(|n| n == 1)
                    {
                        head.push(byte[0]);
                    }
                    let _ = stream.write_all(reply).await;
                }
                held.push(stream);
            }
        });
    });
    addr
}

#[test]
fn blocking_request_carries_method_path_headers_and_body() {
    let addr = echo_server();
    let r = blocking::request(
        Request::new(Method::POST, format!("http://{addr}/api/v1/metrics?x=1"))
            .bearer("tok-123")
            .json(r#"{"a":1}"#),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        format!("POST /api/v1/metrics?x=1\n{addr}\nBearer tok-123\napplication/json\n{{\"a\":1}}")
    );
    assert_eq!(r.header("x-requests"), Some("1"));
    assert_eq!(r.header("X-REQUESTS"), Some("1"));
    // A SocketAddr and a path; any status is an answer, not an error.
    let r = Request::to(Method::DELETE, addr, "/status/418")
        .header("host", "example")
        .send_blocking()
        .unwrap();
    assert_eq!(r.status, 418);
    assert_eq!(r.text(), "DELETE /status/418\nexample\n-\n-\n");
}

#[tokio::test]
async fn async_request_and_keep_alive_connection() {
    let addr = echo_server();
    let r = Request::get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status.as_u16(), r.header("x-requests")),
        (200, Some("1"))
    );
    // Three requests on one connection: the server counts them on the same socket.
    let mut conn = Connection::open(addr, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(conn.addr(), addr.to_string());
    for n in 1..=3 {
        let r = conn
            .send(Request::to(Method::POST, addr, "/p").body(format!("n={n}")))
            .await
            .unwrap();
        assert_eq!(r.header("x-requests"), Some(n.to_string().as_str()));
        assert!(r.text().ends_with(&format!("n={n}")), "{}", r.text());
    }
    // Another server's request is refused before anything is sent.
    let err = conn
        .send(Request::get("http://192.0.2.1:80/"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err}");
    // blocking::request works inside a runtime too (on a thread of its own).
    let r = blocking::request(Request::to(Method::GET, addr, "/in-runtime")).unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn connect_failure_names_address_and_step() {
    // Nothing ever listens on port 0: the connection is refused at once.
    let err = blocking::request(Request::get("http://127.0.0.1:0/x")).unwrap_err();
    assert_eq!(err.step(), Some(Step::Connect));
    assert_eq!(err.addr(), Some("127.0.0.1:0"));
    assert!(
        err.to_string().starts_with("connecting to 127.0.0.1:0: "),
        "{err}"
    );
}

#[test]
fn timeouts_name_the_step() {
    // Accepted, never answered: the request times out waiting for the answer's head.
    let silent = stalling_server(b"");
    let started = Instant::now();
    let err = blocking::request(
        Request::to(Method::GET, silent, "/").timeout(Duration::from_millis(300)),
    )
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(
            err,
            Error::Timeout {
                step: Step::Send,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&silent.to_string()), "{err}");
    assert!(err.to_string().contains("300ms"), "{err}");

    // The head arrives, the body never ends: the request times out reading it.
    let stalled = stalling_server(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc");
    let err = blocking::request(
        Request::to(Method::GET, stalled, "/").timeout(Duration::from_millis(300)),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                step: Step::Read,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_server_that_closes_early_is_a_send_or_read_error() {
    // Answers with a head that promises more body than it sends, then closes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read as _, Write as _};
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc");
    });
    let err = blocking::request(Request::to(Method::GET, addr, "/")).unwrap_err();
    assert_eq!(err.step(), Some(Step::Read), "{err}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[test]
fn invalid_requests_are_refused_before_connecting() {
    for (req, needle) in [
        (Request::get("https://127.0.0.1:1/"), "TLS"),
        (Request::get("127.0.0.1:1/x"), "http://host"),
        (
            Request::to(Method::GET, "127.0.0.1:1".parse().unwrap(), "no-slash"),
            "start with /",
        ),
        (
            Request::to(Method::GET, "127.0.0.1:1".parse().unwrap(), "/").header("bad header", "v"),
            "header name",
        ),
        (
            Request::to(Method::GET, "127.0.0.1:1".parse().unwrap(), "/").header("x", "a\nb"),
            "header x",
        ),
    ] {
        let err = blocking::request(req).unwrap_err();
        assert!(matches!(err, Error::Invalid { .. }), "{err}");
        assert!(err.to_string().contains(needle), "{needle}: {err}");
    }
}
