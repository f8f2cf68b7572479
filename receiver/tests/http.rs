//! Black-box HTTP tests: a real server on 127.0.0.1:0 with a real redb file.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::json;

fn seed_scope() -> serde_json::Value {
    json!({"organization":"my-org","repository":"my-repo","workflow":"ci.yml","job":"build"})
}

#[test]
fn seed_token_flow() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path().join("metrics.db")));
    // 1. The admin generates a scoped push token with the read token: self-describing
    //    (`v2.<claims>.<mac>`, base64url), so it goes in a header as it is.
    let token = server.token(&seed_scope());
    assert!(token.starts_with("v2."), "{token}");
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
        "{token}"
    );
    // 2. The collector pushes with it (GITHUB_REPOSITORY spelling of the repository).
    let r = server.push(
        &token,
        &push_body("my-org", "my-org/my-repo", "ci.yml", "build", "run-123"),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["id"], 1);
    // 3. Query with the read token.
    let r = server.get("/api/v1/metrics/repo/my-org/my-repo/ci.yml/build");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let runs = r.json();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run["id"], 1);
    assert_eq!(run["organization"], "my-org");
    assert_eq!(run["repository"], "my-org/my-repo");
    assert_eq!(run["workflow"], "ci.yml");
    assert_eq!(run["job"], "build");
    assert_eq!(run["run_id"], "run-123");
    assert!(summary::time::parse_rfc3339(run["received_at"].as_str().unwrap()).is_some());
    assert_eq!(run["payload"]["sample_count"], 11);
    assert_eq!(run["payload"]["containers"][0]["name"], "runner");
    assert_eq!(run["payload"]["schema_version"], 1);
    let stored: summary::StoredRun = serde_json::from_value(run.clone()).unwrap();
    stored.payload.validate().unwrap();
    // Either spelling of the repository finds the run.
    let r = server.get("/api/v1/metrics/repo/my-org/my-org%2Fmy-repo/ci.yml/build");
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    // An unknown job is an empty array.
    let r = server.get("/api/v1/metrics/repo/my-org/my-repo/ci.yml/test");
    assert_eq!((r.status, r.text().as_str()), (200, "[]"));
}

#[test]
fn docker_compose_example_queries_percent_encoded_repository() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path().join("metrics.db")));
    let token = server.token(&json!({
        "organization":"test-org","repository":"test-org/stress-test",
        "workflow":"stress-test-workflow","job":"heavy-workload"
    }));
    let body = push_body(
        "test-org",
        "test-org/stress-test",
        "stress-test-workflow",
        "heavy-workload",
        "1",
    );
    assert_eq!(server.push(&token, &body).status, 201);
    let r = server.get(
        "/api/v1/metrics/repo/test-org/test-org%2Fstress-test/stress-test-workflow/heavy-workload",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()[0]["repository"], "test-org/stress-test");
    let r =
        server.get("/api/v1/metrics/repo/test-org/stress-test/stress-test-workflow/heavy-workload");
    assert_eq!(r.json().as_array().unwrap().len(), 1);
}

/// Seconds the clock of `scopes_wildcards_and_expiry` has moved on.
static EXPIRY_SECONDS: AtomicU64 = AtomicU64::new(0);

/// A stopped wall clock (2026-02-06T14:30:00Z) that moves only by `EXPIRY_SECONDS`.
fn expiry_clock() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_770_388_200 + EXPIRY_SECONDS.load(Ordering::SeqCst))
}

#[test]
fn scopes_wildcards_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path().join("metrics.db"));
    cfg.clock = expiry_clock;
    let server = TestServer::start(cfg);
    let build = server.token(&seed_scope());
    // A token for one scope cannot write another.
    let other_job = push_body("my-org", "my-org/my-repo", "ci.yml", "test", "1");
    let r = server.push(&build, &other_job);
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.error().contains("does not grant"));
    let other_org = push_body("evil-org", "evil-org/my-repo", "ci.yml", "build", "1");
    assert_eq!(server.push(&build, &other_org).status, 403);
    // An organization-wide token (a node-level collector) writes any job of that org only.
    let org =
        server.token(&json!({"organization":"my-org","repository":"*","workflow":"*","job":"*"}));
    assert_eq!(server.push(&org, &other_job).status, 201);
    assert_eq!(
        server
            .push(&org, &push_body("my-org", "x/y", "w", "j", "2"))
            .status,
        201
    );
    assert_eq!(server.push(&org, &other_org).status, 403);
    let repo = server.token(
        &json!({"organization":"my-org","repository":"my-org/my-repo","workflow":"*","job":"*"}),
    );
    assert_eq!(server.push(&repo, &other_job).status, 201);
    assert_eq!(
        server
            .push(
                &repo,
                &push_body("my-org", "my-org/other", "ci.yml", "build", "3")
            )
            .status,
        403
    );
    // Wildcards only trail.
    let r = server.request(
        "POST",
        "/api/v1/token",
        &[("Authorization", &format!("Bearer {READ_TOKEN}"))],
        Some(
            json!({"organization":"my-org","repository":"*","workflow":"ci.yml","job":"*"})
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(r.status, 400);
    assert!(r.error().contains("trailing"));
    // Expiring tokens carry their expiry (on the receiver's clock) and stop working after it.
    let r = server.request(
        "POST",
        "/api/v1/token",
        &[("Authorization", &format!("Bearer {READ_TOKEN}"))],
        Some(json!({"organization":"my-org","repository":"my-repo","workflow":"ci.yml","job":"build","ttl_seconds":1}).to_string().as_bytes()),
    );
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["expires_at"], "2026-02-06T14:30:01.000Z");
    let ttl_token = v["token"].as_str().unwrap().to_string();
    assert!(ttl_token.starts_with("v2."));
    let body = push_body("my-org", "my-repo", "ci.yml", "build", "4");
    assert_eq!(server.push(&ttl_token, &body).status, 201);
    EXPIRY_SECONDS.store(1, Ordering::SeqCst);
    let r = server.push(&ttl_token, &body);
    assert_eq!(r.status, 401);
    assert!(r.error().contains("expired"));
}

#[test]
fn error_paths() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path().join("metrics.db"));
    cfg.max_body_bytes = 4096;
    let server = TestServer::start(cfg);
    let auth = format!("Bearer {READ_TOKEN}");
    let token = server.token(&seed_scope());
    let push_auth = format!("Bearer {token}");
    let good = push_body("my-org", "my-repo", "ci.yml", "build", "1").to_string();
    let query = "/api/v1/metrics/repo/my-org/my-repo/ci.yml/build";

    // 401: missing or wrong credentials, with WWW-Authenticate.
    for (method, path, body) in [
        ("POST", "/api/v1/token", Some(b"{}".as_slice())),
        ("GET", query, None),
    ] {
        let r = server.request(method, path, &[], body);
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        assert_eq!(r.error(), "missing bearer token");
        let r = server.request(
            method,
            path,
            &[("Authorization", "Bearer not-the-read-token")],
            body,
        );
        assert_eq!(r.status, 401, "{path}");
        // A push token is not a read token.
        let r = server.request(method, path, &[("Authorization", &push_auth)], body);
        assert_eq!(r.status, 401, "{path}");
        let r = server.request(
            method,
            path,
            &[("Authorization", &format!("Basic {READ_TOKEN}"))],
            body,
        );
        assert_eq!(r.status, 401, "{path}");
    }
    let r = server.request("POST", "/api/v1/metrics", &[], Some(good.as_bytes()));
    assert_eq!(r.status, 401);
    let r = server.request(
        "POST",
        "/api/v1/metrics",
        &[("Authorization", "Bearer zz")],
        Some(good.as_bytes()),
    );
    assert_eq!(
        (r.status, r.error().as_str()),
        (401, "malformed push token")
    );
    // The read token is not a push token.
    let r = server.request(
        "POST",
        "/api/v1/metrics",
        &[("Authorization", &auth)],
        Some(good.as_bytes()),
    );
    assert_eq!(r.status, 401);

    // 404 and 405.
    let r = server.get("/api/v2/nothing");
    assert_eq!((r.status, r.error().as_str()), (404, "not found"));
    let r = server.get("/api/v1/metrics/repo/my-org/my-repo/ci.yml");
    assert_eq!(r.status, 404);
    let r = server.get("/api/v1/metrics/repo/my-org/my-repo/ci.yml/build/extra");
    assert_eq!(r.status, 404);
    for (method, path, allow) in [
        ("GET", "/api/v1/token", "POST"),
        ("GET", "/api/v1/metrics", "POST"),
        ("DELETE", query, "GET"),
        ("POST", "/healthz", "GET"),
    ] {
        let r = server.request(method, path, &[("Authorization", &auth)], None);
        assert_eq!(r.status, 405, "{method} {path}");
        assert_eq!(r.header("allow"), Some(allow));
        assert!(r.error().contains("not allowed"));
    }

    // 415: a body that says it is not JSON.
    let r = server.request(
        "POST",
        "/api/v1/metrics",
        &[
            ("Authorization", &push_auth),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        Some(good.as_bytes()),
    );
    assert_eq!(r.status, 415);
    let r = server.request(
        "POST",
        "/api/v1/token",
        &[("Authorization", &auth), ("Content-Type", "text/plain")],
        Some(seed_scope().to_string().as_bytes()),
    );
    assert_eq!(r.status, 415);
    // JSON with parameters is fine.
    let r = server.request(
        "POST",
        "/api/v1/metrics",
        &[
            ("Authorization", &push_auth),
            ("Content-Type", "application/json; charset=utf-8"),
        ],
        Some(good.as_bytes()),
    );
    assert_eq!(r.status, 201, "{}", r.text());

    // 413: declared or actual body over the cap.
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(5000));
    let r = server.request(
        "POST",
        "/api/v1/metrics",
        &[("Authorization", &push_auth)],
        Some(big.as_bytes()),
    );
    assert_eq!(r.status, 413);
    assert!(r.error().contains("4096"));
    let r = chunked_request(&server, "/api/v1/metrics", &push_auth, big.as_bytes());
    assert_eq!(r.status, 413);

    // 400: malformed JSON, missing fields, bad query parameters, bad percent-encoding.
    let r = server.request(
        "POST",
        "/api/v1/metrics",
        &[("Authorization", &push_auth)],
        Some(b"{not json"),
    );
    assert_eq!(r.status, 400);
    assert!(r.error().starts_with("invalid JSON"));
    let r = server.request(
        "POST",
        "/api/v1/token",
        &[("Authorization", &auth)],
        Some(br#"{"organization":"o"}"#),
    );
    assert_eq!(r.status, 400);
    assert!(r.error().contains("missing field"));
    let r = server.request(
        "POST",
        "/api/v1/token",
        &[("Authorization", &auth)],
        Some(br#"{"organization":"o","repository":"","workflow":"w","job":"j"}"#),
    );
    assert_eq!(
        (r.status, r.error().as_str()),
        (400, "repository must not be empty")
    );
    for q in ["?limit=0", "?limit=1001", "?limit=x", "?cursor=zz"] {
        assert_eq!(server.get(&format!("{query}{q}")).status, 400, "{q}");
    }
    assert_eq!(
        server
            .get("/api/v1/metrics/repo/my-org/my%2-repo/ci.yml/build")
            .status,
        400
    );
    assert_eq!(
        server
            .get("/api/v1/metrics/repo/my-org/my%ffrepo/ci.yml/build")
            .status,
        400
    );

    // 422: well-formed, authorized, but invalid summaries.
    let mut bad = push_body("my-org", "my-repo", "ci.yml", "build", "1");
    bad["summary"]["end_time"] = json!("2026-02-06T14:30:01.000Z");
    let r = server.push(&token, &bad);
    assert_eq!(r.status, 422);
    assert!(r.error().contains("summary.end_time"), "{}", r.error());
    let mut bad = push_body("my-org", "my-repo", "ci.yml", "build", "1");
    bad["summary"]["schema_version"] = json!(99);
    let r = server.push(&token, &bad);
    assert_eq!(r.status, 422);
    assert!(r.error().contains("schema_version 99"));
    let mut bad = push_body("my-org", "my-repo", "ci.yml", "build", "1");
    bad["summary"]["containers"][0]["cpu_cores"]["p99"] = json!(-1.0);
    assert_eq!(server.push(&token, &bad).status, 422);

    // Only the two good pushes were stored.
    assert_eq!(server.get(query).json().as_array().unwrap().len(), 1);
    let metrics = server.request("GET", "/metrics", &[], None);
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    assert!(
        text.contains("receiver_http_requests_total{route=\"push\",status=\"422\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("receiver_http_request_duration_seconds_bucket{"),
        "{text}"
    );
    assert!(text.contains("receiver_store_commits_total"), "{text}");
    // Secrets appear nowhere in the metrics.
    assert!(!text.contains(READ_TOKEN) && !text.contains(HMAC_KEY));
}

/// A chunked request (no Content-Length), so only the streaming limit can catch it.
fn chunked_request(server: &TestServer, path: &str, auth: &str, body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {auth}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.chunks(1000) {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let _ = s.write_all(&req);
    read_response(&mut s).unwrap()
}

#[test]
fn pagination_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path().join("metrics.db")));
    let token = server.token(&seed_scope());
    for i in 0..7 {
        let r = server.push(
            &token,
            &push_body("my-org", "my-repo", "ci.yml", "build", &format!("run-{i}")),
        );
        assert_eq!(r.status, 201);
    }
    let mut path = "/api/v1/metrics/repo/my-org/my-repo/ci.yml/build?limit=3".to_string();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let r = server.get(&path);
        assert_eq!(r.status, 200);
        pages += 1;
        for run in r.json().as_array().unwrap() {
            seen.push(run["run_id"].as_str().unwrap().to_string());
        }
        match r.header("x-next-cursor") {
            Some(c) => {
                let link = r.header("link").unwrap();
                assert!(link.contains(c) && link.contains("rel=\"next\""), "{link}");
                path =
                    format!("/api/v1/metrics/repo/my-org/my-repo/ci.yml/build?limit=3&cursor={c}");
            }
            None => break,
        }
        assert!(pages < 10);
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..7).rev().map(|i| format!("run-{i}")).collect();
    assert_eq!(seen, expected);
}

#[test]
fn restart_keeps_every_acknowledged_summary() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("metrics.db");
    let server = TestServer::start(config(db.clone()));
    let token = server.token(&seed_scope());
    let mut acked = Vec::new();
    for i in 0..25 {
        let r = server.push(
            &token,
            &push_body("my-org", "my-repo", "ci.yml", "build", &format!("r{i}")),
        );
        assert_eq!(r.status, 201);
        acked.push(format!("r{i}"));
    }
    server.stop();
    let server = TestServer::start(config(db));
    // Tokens are stateless: the old one still works after a restart.
    assert_eq!(
        server
            .push(
                &token,
                &push_body("my-org", "my-repo", "ci.yml", "build", "after")
            )
            .status,
        201
    );
    let r = server.get("/api/v1/metrics/repo/my-org/my-repo/ci.yml/build?limit=1000");
    let got: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["run_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got.len(), 26);
    for id in &acked {
        assert!(got.contains(id), "{id} lost");
    }
    assert_eq!(got[0], "after");
}

#[test]
fn slow_clients_hit_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path().join("metrics.db"));
    cfg.header_timeout = Duration::from_millis(300);
    cfg.body_timeout = Duration::from_millis(300);
    let server = TestServer::start(cfg);

    // Headers never finished: the connection is closed (hyper may answer 408 first).
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "connection not closed"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(buf.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");

    // Body never finished: 408 with a JSON error.
    let token = server.token(&seed_scope());
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let head = format!(
        "POST /api/v1/metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 100\r\n\r\n{{\"exec"
    );
    s.write_all(head.as_bytes()).unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 408);
    assert!(r.error().contains("timed out"));
}

#[test]
fn shutdown_finishes_in_flight_requests() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("metrics.db");
    let mut server = TestServer::start(config(db.clone()));
    let token = server.token(&seed_scope());
    let body = push_body("my-org", "my-repo", "ci.yml", "build", "in-flight").to_string();
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // `Expect: 100-continue`: the server says "100 Continue" once the handler reads the
    // body, so the test knows the request is in flight before shutdown begins.
    let head = format!(
        "POST /api/v1/metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let interim = read_head(&mut s);
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");
    s.write_all(&body.as_bytes()[..10]).unwrap();
    server.begin_shutdown();
    // New connections are refused once shutdown has begun.
    testkit::wait_until(Duration::from_secs(10), "the listener to close", || {
        TcpStream::connect(server.addr).is_err()
    });
    s.write_all(&body.as_bytes()[10..]).unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    server.stop();
    let server = TestServer::start(config(db));
    let r = server.get("/api/v1/metrics/repo/my-org/my-repo/ci.yml/build");
    assert_eq!(r.json()[0]["run_id"], "in-flight");
}

/// Reads one response head (through the blank line) byte by byte, leaving what follows.
fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "connection closed in a head");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[test]
fn healthz() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path().join("metrics.db")));
    let r = server.request("GET", "/healthz", &[], None);
    assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("ok")));
}

/// Days the receivers of `retention_days_flag_prunes_old_runs` see the wall clock ahead by.
static DAYS_AHEAD: AtomicU64 = AtomicU64::new(0);

fn shifted_clock() -> SystemTime {
    let days = DAYS_AHEAD.load(Ordering::SeqCst);
    SystemTime::now() + Duration::from_secs(days * 86_400)
}

/// A config from the real command line (`--retention-days` as given), on the shifted clock.
fn cli_config(db: &std::path::Path, retention_days: Option<u32>) -> receiver::config::Config {
    use clap::Parser as _;
    let mut args = vec![
        "receiver".to_string(),
        format!("--db={}", db.display()),
        format!("--read-token={READ_TOKEN}"),
        format!("--hmac-key={HMAC_KEY}"),
    ];
    if let Some(days) = retention_days {
        args.push(format!("--retention-days={days}"));
    }
    let cli = receiver::config::Cli::try_parse_from(args).unwrap();
    let mut config = receiver::config::Config::from_cli(&cli).unwrap();
    config.clock = shifted_clock;
    config
}

fn run_ids(server: &TestServer) -> Vec<String> {
    let r = server.get("/api/v1/metrics/repo/my-org/my-repo/ci.yml/build");
    assert_eq!(r.status, 200);
    let runs = r.json();
    runs.as_array()
        .unwrap()
        .iter()
        .map(|run| run["run_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn retention_days_flag_prunes_old_runs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("metrics.db");
    let body = |run_id: &str| push_body("my-org", "my-repo", "ci.yml", "build", run_id);

    // Day 0, no retention: one run.
    let server = TestServer::start(cli_config(&db, None));
    let token = server.token(&seed_scope());
    assert_eq!(server.push(&token, &body("day-0")).status, 201);
    server.stop();

    // Day 3, --retention-days=5: the 3-day-old run stays; a new one joins it.
    DAYS_AHEAD.store(3, Ordering::SeqCst);
    let server = TestServer::start(cli_config(&db, Some(5)));
    assert_eq!(server.push(&token, &body("day-3")).status, 201);
    // Retention runs at startup: its prune is the one operation committed besides the push.
    testkit::wait_until(
        Duration::from_secs(10),
        "the startup retention pass",
        || server.metric("receiver_store_commit_batch_size_sum") >= 2.0,
    );
    assert_eq!(run_ids(&server), ["day-3", "day-0"]);
    server.stop();

    // Day 6, --retention-days=2: the day-0 run is 6 days old and goes at startup, the
    // day-3 run (3 days old) too; a run pushed now stays.
    DAYS_AHEAD.store(6, Ordering::SeqCst);
    let server = TestServer::start(cli_config(&db, Some(2)));
    testkit::wait_until(
        Duration::from_secs(10),
        "retention to prune both runs",
        || run_ids(&server).is_empty(),
    );
    let metrics = server.request("GET", "/metrics", &[], None).text();
    assert!(
        metrics.contains("receiver_store_runs_pruned_total 2"),
        "{metrics}"
    );
    assert_eq!(server.push(&token, &body("day-6")).status, 201);
    assert_eq!(run_ids(&server), ["day-6"]);
    server.stop();
}
