//! Helpers shared by the black-box tests: a receiver in this process on a listener the test
//! bound (so its clock and limits can be set), requests through the workspace's HTTP client,
//! and the raw-socket response parser the protocol tests need.

#![allow(dead_code)]

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Duration;

use http_client::{Method, Request};
use receiver::config::{Config, Database, PgUrl};
pub use testkit::{HMAC_KEY, READ_TOKEN};

/// A receiver running in a thread of its own, on a listener bound before it started.
pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Starts the receiver; returns once it answers. The listener is bound first, so
    /// requests wait in its backlog until the store is open: no polling.
    pub fn start(config: Config) -> Self {
        let std_listener = testkit::free_listener();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener)?;
                receiver::server::run(config, listener, async {
                    let _ = rx.await;
                })
                .await
            })
        });
        let server = Self {
            addr,
            shutdown: Some(tx),
            thread: Some(thread),
        };
        let r = server.request("GET", "/healthz", &[], None);
        assert_eq!(r.status, 200, "the receiver did not come up: {}", r.text());
        server
    }

    /// Asks for a graceful shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Shuts down gracefully and waits until the database is closed.
    pub fn stop(mut self) {
        self.begin_shutdown();
        self.thread.take().unwrap().join().unwrap().unwrap();
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Resp {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Resp, http_client::Error> {
        request(self.addr, method, path, headers, body)
    }

    pub fn token(&self, scope: &serde_json::Value) -> String {
        let r = self.request(
            "POST",
            "/api/v1/token",
            &[
                ("Authorization", &format!("Bearer {READ_TOKEN}")),
                ("Content-Type", "application/json"),
            ],
            Some(scope.to_string().as_bytes()),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["token"].as_str().unwrap().to_string()
    }

    pub fn push(&self, token: &str, body: &serde_json::Value) -> Resp {
        self.request(
            "POST",
            "/api/v1/metrics",
            &[
                ("Authorization", &format!("Bearer {token}")),
                ("Content-Type", "application/json"),
            ],
            Some(body.to_string().as_bytes()),
        )
    }

    pub fn get(&self, path: &str) -> Resp {
        self.request(
            "GET",
            path,
            &[("Authorization", &format!("Bearer {READ_TOKEN}"))],
            None,
        )
    }

    /// The value of an unlabelled series in `/metrics`, 0 if absent.
    pub fn metric(&self, name: &str) -> f64 {
        let text = self.request("GET", "/metrics", &[], None).text();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.begin_shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A test receiver's configuration: the redb file `db`, or, with
/// `RECEIVER_TEST_BACKEND=postgres`, a fresh database in this process's PostgreSQL cluster
/// (the same suite then runs against the other backend).
pub fn config(db: PathBuf) -> Config {
    Config::new(backend_db(db), READ_TOKEN, HMAC_KEY)
}

/// Which backend the suite runs against (`RECEIVER_TEST_BACKEND`: `redb`, the default, or
/// `postgres`).
pub fn postgres_backend() -> bool {
    std::env::var("RECEIVER_TEST_BACKEND").as_deref() == Ok("postgres")
}

/// The redb file `file`, or the PostgreSQL database standing for it: created on first use,
/// the same one again for the same path (a test that restarts its receiver).
pub fn backend_db(file: PathBuf) -> Database {
    static DATABASES: std::sync::Mutex<Vec<(PathBuf, String)>> = std::sync::Mutex::new(Vec::new());
    if !postgres_backend() {
        return Database::File(file);
    }
    let mut known = DATABASES.lock().unwrap();
    if let Some((_, url)) = known.iter().find(|(p, _)| *p == file) {
        return Database::Postgres(PgUrl::parse(url).unwrap());
    }
    let cluster = testkit::postgres::shared()
        .unwrap_or_else(|e| panic!("RECEIVER_TEST_BACKEND=postgres: no cluster: {e}"));
    let url = cluster
        .create_database(&testkit::postgres::unique_name("receiver"))
        .unwrap_or_else(|e| panic!("creating a test database: {e}"));
    known.push((file, url.clone()));
    Database::Postgres(PgUrl::parse(&url).unwrap())
}

/// An answer: from the HTTP client, or parsed from a raw socket.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl From<http_client::Response> for Resp {
    fn from(r: http_client::Response) -> Self {
        Self {
            status: r.status.as_u16(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: r.body.to_vec(),
        }
    }
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `error` message of a JSON error answer.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field: {}", self.text()))
            .to_string()
    }
}

/// One request through the workspace's HTTP client (a fresh connection).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Resp, http_client::Error> {
    let mut req = Request::to(Method::from_bytes(method.as_bytes()).unwrap(), addr, path)
        .timeout(Duration::from_secs(30));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.body(b.to_vec());
    }
    http_client::blocking::request(req).map(Resp::from)
}

/// Reads one response to EOF (raw-protocol tests).
pub fn read_response(stream: &mut TcpStream) -> std::io::Result<Resp> {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> std::io::Result<Resp> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no header end"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("header not utf-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("no status line"))?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if let Some(len) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.truncate(len);
    }
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// A realistic summary push for `run_id`.
pub fn push_body(
    org: &str,
    repo: &str,
    workflow: &str,
    job: &str,
    run_id: &str,
) -> serde_json::Value {
    let stats = |base: f64| serde_json::json!({"peak": base * 2.0, "p99": base * 1.9, "p95": base * 1.7, "p75": base * 1.3, "p50": base, "avg": base * 1.1});
    serde_json::json!({
        "execution": {
            "organization": org, "repository": repo, "workflow": workflow, "job": job, "run_id": run_id
        },
        "summary": {
            "start_time": "2026-02-06T14:30:02.185Z",
            "end_time": "2026-02-06T14:30:22.190Z",
            "duration_seconds": 20.005,
            "sample_count": 11,
            "cpu_total_percent": stats(40.0),
            "mem_used_bytes": stats(1.0e9),
            "containers": [
                {"name": "runner", "cpu_cores": stats(1.5), "memory_bytes": stats(1.8e7)},
                {"name": "sidecar", "cpu_cores": stats(0.1), "memory_bytes": stats(4.0e6)}
            ],
            "top_cpu_processes": [
                {"pid": 42, "name": "cargo", "peak_cpu_percent": 187.5, "peak_mem_rss_bytes": 123456789u64}
            ],
            "top_mem_processes": [
                {"pid": 43, "name": "node", "peak_cpu_percent": 12.5, "peak_mem_rss_bytes": 987654321u64}
            ]
        }
    })
}
