//! The receiver under attack (issue 11): work done before authentication, repeated pushes,
//! implausible summaries, malleable tokens. In-process server on a real socket.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use hmac::{Hmac, Mac};
use receiver::auth::Scope;
use serde_json::json;

fn seed_scope() -> serde_json::Value {
    json!({"organization":"my-org","repository":"my-repo","workflow":"ci.yml","job":"build"})
}

fn body() -> serde_json::Value {
    push_body("my-org", "my-org/my-repo", "ci.yml", "build", "run-1")
}

/// A token in the seed's format (the scope is not in it), computed as the seed's receiver
/// computes it: `hex(HMAC-SHA256(key, encode(scope, expiry)))`.
fn legacy_token(org: &str, repo: &str, workflow: &str, job: &str, expiry: Option<u64>) -> String {
    let scope = Scope::new(org, repo, workflow, job).unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(HMAC_KEY.as_bytes()).unwrap();
    mac.update(&receiver::auth::encode(&scope, expiry));
    let hex = hex::encode(mac.finalize().into_bytes());
    match expiry {
        None => hex,
        Some(t) => format!("v1.{t}.{hex}"),
    }
}

/// Sends `head` (request line and headers, without the blank line) on a new connection.
fn send_head(server: &TestServer, head: &str) -> TcpStream {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("{head}\r\n\r\n").as_bytes()).unwrap();
    s
}

/// Reads one response (head and a `Content-Length` body), leaving the connection open.
fn read_one(s: &mut TcpStream) -> Resp {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => raw.push(byte[0]),
            other => panic!("no complete response head ({other:?}): {raw:?}"),
        }
    }
    let head = parse_response(&raw).unwrap();
    let len: usize = head
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    raw.extend_from_slice(&body);
    parse_response(&raw).unwrap()
}

fn push_head(token: &str, extra: &str) -> String {
    format!(
        "POST /api/v1/metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000000{extra}"
    )
}

#[test]
fn wrong_token_is_refused_before_the_body_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path().join("metrics.db"));
    // Long enough that a receiver waiting for the body could only answer after the test
    // gave up.
    cfg.body_timeout = Duration::from_secs(60);
    let server = TestServer::start(cfg);
    let good = server.token(&seed_scope());
    // A token from another receiver (same claims, another key).
    let forged = receiver::auth::Keys::new(b"some-other-hmac-key-0123", READ_TOKEN.as_bytes())
        .issue(
            &Scope::new("my-org", "my-repo", "ci.yml", "build").unwrap(),
            None,
        );
    let expired = {
        let r = server.request(
            "POST",
            "/api/v1/token",
            &[("Authorization", &format!("Bearer {READ_TOKEN}"))],
            Some(
                json!({"organization":"my-org","repository":"my-repo","workflow":"ci.yml","job":"build","ttl_seconds":1})
                    .to_string()
                    .as_bytes(),
            ),
        );
        r.json()["token"].as_str().unwrap().to_string()
    };
    let mut refused = vec![
        ("Bearer x", "x".to_string(), "malformed push token"),
        ("forged", forged, "invalid push token"),
    ];
    // The 1-second token, once its second has passed on the receiver's (real) clock.
    testkit::wait_until(Duration::from_secs(5), "the token to expire", || {
        let r = server.push(&expired, &body());
        r.status == 401 && r.error() == "push token expired"
    });
    refused.push(("expired", expired, "push token expired"));
    for (what, token, message) in refused {
        // Headers announce 1 MB, and not a byte of it is sent.
        let started = Instant::now();
        let mut s = send_head(&server, &push_head(&token, ""));
        let r = read_one(&mut s);
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        assert_eq!(r.error(), message, "{what}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        assert!(started.elapsed() < Duration::from_secs(5), "{what}");
    }
    // A good token gets as far as the body (which never comes: the receiver is waiting).
    let mut s = send_head(&server, &push_head(&good, "\r\nExpect: 100-continue"));
    let r = read_one(&mut s);
    assert_eq!(r.status, 100, "{}", r.text());
}

#[test]
fn scoped_tokens_are_checked_against_the_body_naming_the_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path().join("metrics.db")));
    let build = server.token(&seed_scope());
    for (body, field, pushed, granted) in [
        (
            push_body("my-org", "my-org/my-repo", "ci.yml", "test", "1"),
            "job",
            "test",
            "build",
        ),
        (
            push_body("my-org", "my-org/other", "ci.yml", "build", "1"),
            "repository",
            "other",
            "my-repo",
        ),
        (
            push_body("evil", "evil/my-repo", "ci.yml", "build", "1"),
            "organization",
            "evil",
            "my-org",
        ),
    ] {
        let r = server.push(&build, &body);
        assert_eq!(r.status, 403, "{}", r.text());
        assert_eq!(
            r.error(),
            format!(
                "push token does not grant {field} \"{pushed}\" (execution.{field}); it is \
                 scoped to {field} \"{granted}\""
            )
        );
    }
    let org =
        server.token(&json!({"organization":"my-org","repository":"*","workflow":"*","job":"*"}));
    let r = server.push(&org, &push_body("my-org", "my-org/any", "w", "j", "1"));
    assert_eq!(r.status, 201, "{}", r.text());
    let r = server.push(&org, &push_body("evil", "evil/any", "w", "j", "1"));
    assert_eq!(r.status, 403);
    assert!(r.error().contains("organization \"evil\""), "{}", r.error());
}

#[test]
fn legacy_tokens_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path().join("metrics.db")));
    let plain = legacy_token("my-org", "my-repo", "ci.yml", "build", None);
    let r = server.push(&plain, &body());
    assert_eq!(r.status, 201, "{}", r.text());
    let far = u64::MAX / 2000;
    let ttl = legacy_token("my-org", "my-repo", "ci.yml", "build", Some(far));
    let r = server.push(
        &ttl,
        &push_body("my-org", "my-repo", "ci.yml", "build", "run-2"),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let org = legacy_token("my-org", "*", "*", "*", None);
    let r = server.push(&org, &push_body("my-org", "x", "w", "j", "1"));
    assert_eq!(r.status, 201, "{}", r.text());
    let r = server.push(
        &plain,
        &push_body("my-org", "my-repo", "ci.yml", "test", "1"),
    );
    assert_eq!(r.status, 403);
    assert!(r.error().contains("does not grant"), "{}", r.error());
}

#[test]
fn legacy_pushes_in_flight_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path().join("metrics.db"));
    cfg.body_timeout = Duration::from_secs(60);
    let server = TestServer::start(cfg);
    // Any 64 hex digits are a well-formed legacy token: its scope is the body's, so the
    // receiver must read the body to judge it. 16 such pushes hold their bodies open.
    let junk = "ab".repeat(32);
    let mut held = Vec::new();
    for _ in 0..receiver::app::LEGACY_PUSHES_IN_FLIGHT {
        let mut s = send_head(&server, &push_head(&junk, "\r\nExpect: 100-continue"));
        // "100 Continue": the receiver has taken a slot and waits for the body.
        let r = read_one(&mut s);
        assert_eq!(r.status, 100, "{}", r.text());
        held.push(s);
    }
    // The next one is refused at once, with a hint to retry.
    let mut s = send_head(&server, &push_head(&junk, ""));
    let r = read_one(&mut s);
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.error().contains("legacy token"), "{}", r.error());
    // Pushes with a self-describing token are not held up.
    let token = server.token(&seed_scope());
    assert_eq!(server.push(&token, &body()).status, 201);
    // Once a held push is gone, its slot is free again.
    drop(held.pop());
    let legacy = legacy_token("my-org", "my-repo", "ci.yml", "build", None);
    let other_run = push_body("my-org", "my-repo", "ci.yml", "build", "run-2");
    testkit::wait_until(Duration::from_secs(10), "a free legacy slot", || {
        server.push(&legacy, &other_run).status == 201
    });
}

#[test]
fn two_authorization_headers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path().join("metrics.db")));
    let token = server.token(&seed_scope());
    let payload = body().to_string();
    for (head, what) in [
        (
            format!(
                "POST /api/v1/metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
                 Authorization: Bearer x\r\nContent-Length: {}",
                payload.len()
            ),
            "push",
        ),
        (
            format!(
                "GET /api/v1/metrics/repo/my-org/my-repo/ci.yml/build HTTP/1.1\r\nHost: x\r\n\
                 Authorization: Bearer {READ_TOKEN}\r\nAuthorization: Bearer {READ_TOKEN}"
            ),
            "query",
        ),
    ] {
        let mut s = send_head(&server, &head);
        if what == "push" {
            s.write_all(payload.as_bytes()).unwrap();
        }
        let r = read_one(&mut s);
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        assert_eq!(r.error(), "more than one Authorization header");
    }
    let r = server.get("/api/v1/metrics/repo/my-org/my-repo/ci.yml/build");
    assert_eq!(r.text(), "[]");
}

#[test]
fn only_canonical_tokens_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path().join("metrics.db")));
    let plain = legacy_token("my-org", "my-repo", "ci.yml", "build", None);
    let ttl = legacy_token("my-org", "my-repo", "ci.yml", "build", Some(4_000_000_000));
    for (what, token) in [
        ("uppercase hex", plain.to_uppercase()),
        ("leading zero in the expiry", ttl.replace("v1.4", "v1.04")),
        ("uppercase v1 hex", {
            let (t, hex) = ttl.rsplit_once('.').unwrap();
            format!("{t}.{}", hex.to_uppercase())
        }),
    ] {
        let r = server.push(&token, &body());
        assert_eq!(r.status, 401, "{what}: {}", r.text());
    }
    let v2 = server.token(&seed_scope());
    let (claims, mac) = v2["v2.".len()..].split_once('.').unwrap();
    for (what, token) in [
        ("padded claims", format!("v2.{claims}=.{mac}")),
        ("padded mac", format!("v2.{claims}.{mac}=")),
        ("prefix case", v2.replacen("v2.", "V2.", 1)),
    ] {
        let r = server.push(&token, &body());
        assert_eq!(r.status, 401, "{what}: {}", r.text());
    }
    // The canonical spellings work.
    for token in [&plain, &ttl, &v2] {
        let r = server.push(token, &body());
        assert_eq!(r.status, 201, "{}", r.text());
    }
}

#[test]
fn token_issuance_refuses_scopes_no_push_can_use() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path().join("metrics.db")));
    let long = "x".repeat(300);
    for (scope, message) in [
        (
            json!({"organization":"my-org","repository":"r","workflow":"w","job":" "}),
            "job must not be empty",
        ),
        (
            json!({"organization":"my-org","repository":"my-org/","workflow":"w","job":"j"}),
            "repository must name a repository, not only the organization",
        ),
        (
            json!({"organization":"my-org","repository":"a//b","workflow":"w","job":"j"}),
            "repository must not have an empty path segment",
        ),
        (
            json!({"organization":"my-org","repository":"r","workflow":"w\u{7}","job":"j"}),
            "workflow must not contain control characters",
        ),
        (
            json!({"organization":long,"repository":"*","workflow":"*","job":"*"}),
            "organization is longer than 256 bytes",
        ),
    ] {
        let r = server.request(
            "POST",
            "/api/v1/token",
            &[("Authorization", &format!("Bearer {READ_TOKEN}"))],
            Some(scope.to_string().as_bytes()),
        );
        assert_eq!((r.status, r.error().as_str()), (400, message), "{scope}");
    }
    // What a push would be refused for, it is: the same rules.
    let org =
        server.token(&json!({"organization":"my-org","repository":"*","workflow":"*","job":"*"}));
    let r = server.push(&org, &push_body("my-org", "my-org/r", "w", " ", "1"));
    assert_eq!(r.status, 422);
    assert_eq!(r.error(), "execution.job: must not be empty");
}

fn run_ids(server: &TestServer, job: &str) -> Vec<(u64, String)> {
    let r = server.get(&format!(
        "/api/v1/metrics/repo/my-org/my-repo/ci.yml/{job}?limit=1000"
    ));
    assert_eq!(r.status, 200);
    r.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|run| {
            (
                run["id"].as_u64().unwrap(),
                run["run_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn repeated_push_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path().join("metrics.db")));
    let token = server.token(&seed_scope());
    // The same summary twice (a retry after a lost answer): one run, the same answer.
    let first = server.push(&token, &body());
    assert_eq!(first.status, 201, "{}", first.text());
    assert_eq!(first.header("idempotent-replayed"), None);
    let again = server.push(&token, &body());
    assert_eq!(again.status, 201, "{}", again.text());
    assert_eq!(again.json(), first.json());
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(run_ids(&server, "build").len(), 1);

    // Eight at once: one run, one id for all.
    let concurrent = push_body("my-org", "my-repo", "ci.yml", "build", "run-8");
    let answers: Vec<Resp> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| server.push(&token, &concurrent)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ids: Vec<u64> = answers
        .iter()
        .map(|r| {
            assert_eq!(r.status, 201, "{}", r.text());
            r.json()["id"].as_u64().unwrap()
        })
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(
        answers
            .iter()
            .filter(|r| r.header("idempotent-replayed").is_none())
            .count(),
        1
    );
    assert_eq!(run_ids(&server, "build").len(), 2);

    // Without a run id, the summary itself is the key.
    let anonymous = push_body("my-org", "my-repo", "ci.yml", "build", "");
    let a = server.push(&token, &anonymous);
    let b = server.push(&token, &anonymous);
    assert_eq!((a.status, b.json()), (201, a.json()));
    assert_eq!(run_ids(&server, "build").len(), 3);

    // Another summary of the same run id (a matrix leg, a second `collector run` in the
    // job) and another attempt of the run are runs of their own.
    let mut leg = body();
    leg["summary"]["sample_count"] = json!(12);
    let r = server.push(&token, &leg);
    assert_eq!(r.status, 201);
    assert_eq!(r.header("idempotent-replayed"), None);
    let mut attempt = body();
    attempt["execution"]["run_attempt"] = json!("2");
    let r = server.push(&token, &attempt);
    assert_eq!(r.status, 201);
    assert_eq!(r.header("idempotent-replayed"), None);
    let runs = server.get("/api/v1/metrics/repo/my-org/my-repo/ci.yml/build?limit=1");
    assert_eq!(runs.json()[0]["run_attempt"], "2");
    assert_eq!(run_ids(&server, "build").len(), 5);
    assert_eq!(
        server.push(&token, &attempt).header("idempotent-replayed"),
        Some("true")
    );
    assert_eq!(run_ids(&server, "build").len(), 5);
}

#[test]
fn implausible_summaries_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path().join("metrics.db")));
    let org =
        server.token(&json!({"organization":"my-org","repository":"*","workflow":"*","job":"*"}));
    let future = summary::time::format_rfc3339(
        std::time::SystemTime::now() + Duration::from_secs(2 * 86_400),
    );
    let tiny_containers: Vec<serde_json::Value> = (0..1001)
        .map(|i| json!({"name": format!("c{i}"), "cpu_cores": {}, "memory_bytes": {}}))
        .collect();
    type Mutation = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(Mutation, &str)> = vec![
        (
            Box::new(|b| b["summary"]["duration_seconds"] = json!(40.0 * 86_400.0)),
            "summary.duration_seconds: is more than 31 days",
        ),
        (
            Box::new(|b| b["summary"]["cpu_total_percent"]["peak"] = json!(250.0)),
            "summary.cpu_total_percent.peak: is more than 100 %",
        ),
        (
            Box::new(|b| b["summary"]["containers"][0]["cpu_cores"]["peak"] = json!(5000.0)),
            "summary.containers[0].cpu_cores.peak: is more than 4096 cores",
        ),
        (
            Box::new(|b| b["summary"]["mem_used_bytes"]["avg"] = json!(1e15)),
            "summary.mem_used_bytes.avg: is more than 64 TiB",
        ),
        (
            Box::new(|b| {
                b["summary"]["start_time"] = json!("1999-01-01T00:00:00Z");
                b["summary"]["end_time"] = json!("1999-01-01T00:00:20Z");
            }),
            "summary.start_time: must not be before 2000-01-01",
        ),
        (
            Box::new(move |b| b["summary"]["end_time"] = json!(future.clone())),
            "summary.end_time: must not be more than a day ahead of the receiver's clock",
        ),
        (
            Box::new(|b| b["execution"]["repository"] = json!("my-org/")),
            "execution.repository: must name a repository, not only the organization",
        ),
        (
            Box::new(move |b| b["summary"]["containers"] = json!(tiny_containers.clone())),
            "summary.containers: has more than 1000 entries",
        ),
        (
            Box::new(|b| {
                b["summary"]["histograms"] =
                    json!({"cpu_total_percent": {"scale": 1000, "hdr_v2": "AAAA"}});
            }),
            "summary.histograms.cpu_total_percent.hdr_v2: is not an uncompressed HdrHistogram V2 serialization",
        ),
    ];
    for (mutate, message) in cases {
        let mut b = push_body("my-org", "my-org/my-repo", "ci.yml", "build", "1");
        mutate(&mut b);
        let r = server.push(&org, &b);
        assert_eq!((r.status, r.error().as_str()), (422, message));
    }
    assert_eq!(run_ids(&server, "build").len(), 0);
}
