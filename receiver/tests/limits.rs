//! Bounds that protect the receiver from its clients: the byte budget of a query answer
//! (`--max-response-bytes`), the connection cap (`--max-connections`), and failed accepts
//! (EMFILE) counted with a back-off instead of a busy loop.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use common::{TestServer, config, parse_response, push_body};
use testkit::Receiver;

const BIN: &str = env!("CARGO_BIN_EXE_receiver");

fn scope_token(server: &TestServer) -> String {
    server.token(&serde_json::json!({
        "organization": "o", "repository": "r", "workflow": "w", "job": "j"
    }))
}

#[test]
fn query_answers_stay_within_the_byte_budget() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    // Ten runs, stored by a receiver with the default budget; measure the largest.
    let server = TestServer::start(config(db.clone()));
    let token = scope_token(&server);
    for i in 0..10 {
        let r = server.push(&token, &push_body("o", "r", "w", "j", &i.to_string()));
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let all = server.get("/api/v1/metrics/repo/o/r/w/j?limit=200");
    let largest = all
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.to_string().len())
        .max()
        .unwrap();
    server.stop();

    // A budget that holds exactly three runs: `[`, three runs, two commas, `]`.
    let budget = 3 * largest + 4;
    let mut cfg = config(db);
    cfg.max_response_bytes = budget;
    let server = TestServer::start(cfg);
    // limit=200 asks for everything; the budget cuts it into pages, newest first.
    let mut path = "/api/v1/metrics/repo/o/r/w/j?limit=200".to_string();
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    loop {
        let r = server.get(&path);
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.body.len() <= budget, "{} bytes > {budget}", r.body.len());
        let runs = r.json();
        let runs = runs.as_array().unwrap();
        seen.extend(
            runs.iter()
                .map(|v| v["run_id"].as_str().unwrap().to_owned()),
        );
        pages.push(runs.len());
        match r.header("x-next-cursor") {
            Some(c) => {
                let link = r.header("link").unwrap();
                assert!(link.contains(&format!("cursor={c}")), "{link}");
                assert!(link.contains("limit=200"), "{link}");
                path = format!("/api/v1/metrics/repo/o/r/w/j?limit=200&cursor={c}");
            }
            None => break,
        }
        assert!(pages.len() < 20, "too many pages");
    }
    let expected: Vec<String> = (0..10).rev().map(|i| i.to_string()).collect();
    assert_eq!(seen, expected);
    assert_eq!(pages, [3, 3, 3, 1]);
    // The budget and `limit` together: the smaller bound wins.
    let r = server.get("/api/v1/metrics/repo/o/r/w/j?limit=2");
    assert_eq!(r.json().as_array().unwrap().len(), 2);
    server.stop();
}

#[test]
fn a_run_larger_than_the_budget_is_still_answered() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path().join("m.db"));
    cfg.max_response_bytes = 100;
    let server = TestServer::start(cfg);
    let token = scope_token(&server);
    for i in 0..3 {
        let r = server.push(&token, &push_body("o", "r", "w", "j", &i.to_string()));
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let mut path = "/api/v1/metrics/repo/o/r/w/j?limit=50".to_string();
    let mut seen = Vec::new();
    for _ in 0..10 {
        let r = server.get(&path);
        assert_eq!(r.status, 200, "{}", r.text());
        let runs = r.json();
        assert_eq!(runs.as_array().unwrap().len(), 1, "one run per page");
        seen.push(runs[0]["run_id"].as_str().unwrap().to_owned());
        match r.header("x-next-cursor") {
            Some(c) => path = format!("/api/v1/metrics/repo/o/r/w/j?limit=50&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ["2", "1", "0"]);
    server.stop();
}

/// The value of an unlabelled series in `/metrics`.
fn metric(receiver: &Receiver, name: &str) -> f64 {
    let text = receiver
        .http("GET", "/metrics", None, None)
        .text()
        .into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

#[test]
fn connections_over_the_cap_are_refused_and_counted() {
    const MAX: usize = 16;
    const EXTRA: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::builder(dir.path())
        .bin(BIN)
        .arg(format!("--max-connections={MAX}"))
        // Idle connections stay open for the whole test.
        .arg("--header-timeout=120s")
        .start();
    let addr = receiver.addr();
    // The kernel queues connections in order, and the receiver accepts them in that order:
    // the first MAX are served (idle), the next EXTRA are over the cap.
    let mut idle: Vec<TcpStream> = (0..MAX)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    for _ in 0..EXTRA {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let r = parse_response(&raw).unwrap();
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.text(), r#"{"error":"too many connections"}"#);
        assert_eq!(r.header("connection"), Some("close"));
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    // A normal client is refused too while the cap is reached: the same answer, or a reset
    // when its request arrived after the receiver closed the connection.
    if let Ok(r) = receiver.try_http("GET", "/livez", None, None) {
        assert_eq!(r.status, 503, "{}", r.text());
    }

    // Once some connections close, normal requests succeed again.
    idle.truncate(MAX - 4);
    testkit::wait_until(Duration::from_secs(30), "a request to succeed", || {
        receiver
            .try_http("GET", "/livez", None, None)
            .is_ok_and(|r| r.status == 200)
    });
    let refused = metric(&receiver, "receiver_connections_refused_total");
    assert!(refused >= (EXTRA + 1) as f64, "{refused} refused");
    let open = metric(&receiver, "receiver_connections_open");
    // The idle ones and this request's own connection (one of them may still be closing).
    assert!(
        ((MAX - 4) as f64..=MAX as f64).contains(&open),
        "{open} connections open"
    );
    assert_eq!(metric(&receiver, "receiver_accept_errors_total"), 0.0);
    // The refusals were logged, rate-limited, not once per connection.
    let log = receiver.log();
    let logged = log.matches("refusing connections").count();
    assert!(
        logged >= 1 && (logged as f64) < refused,
        "{logged} lines:\n{log}"
    );
    drop(idle);
}

/// The lowest file descriptor process `pid` does not have open: the next one it would get.
fn lowest_free_fd(pid: u32) -> u64 {
    let open: std::collections::HashSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .collect();
    (0..).find(|fd| !open.contains(fd)).unwrap()
}

/// Sets the soft RLIMIT_NOFILE of process `pid`; returns the previous limit.
fn set_fd_limit(pid: u32, soft: Option<u64>, previous: Option<libc::rlimit>) -> libc::rlimit {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let new = match (soft, previous) {
        (Some(soft), _) => {
            // SAFETY: a null new limit only reads the current one into `old`.
            let got = unsafe {
                libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old)
            };
            assert_eq!(got, 0, "prlimit: {}", std::io::Error::last_os_error());
            libc::rlimit {
                rlim_cur: soft as libc::rlim_t,
                rlim_max: old.rlim_max,
            }
        }
        (None, Some(previous)) => previous,
        (None, None) => unreachable!(),
    };
    // SAFETY: `new` and `old` are valid rlimits; `pid` is our own child.
    let set = unsafe { libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, &new, &mut old) };
    assert_eq!(set, 0, "prlimit: {}", std::io::Error::last_os_error());
    old
}

#[test]
fn failed_accepts_are_counted_and_paced() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::builder(dir.path()).bin(BIN).start();
    let pid = receiver.pid().unwrap();
    // Not one descriptor more: the next accept fails with EMFILE.
    let previous = set_fd_limit(pid, Some(lowest_free_fd(pid)), None);
    let mut waiting = TcpStream::connect(receiver.addr()).unwrap();
    waiting
        .write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    testkit::wait_until(
        Duration::from_secs(30),
        "3 failed accepts in the log",
        || receiver.log().matches("accept failed").count() >= 3,
    );
    set_fd_limit(pid, None, Some(previous));
    // The connection waited in the backlog and is served now.
    waiting
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut raw = Vec::new();
    waiting.read_to_end(&mut raw).unwrap();
    let r = parse_response(&raw).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let errors = metric(&receiver, "receiver_accept_errors_total");
    let logged = receiver.log().matches("accept failed").count() as f64;
    assert!(
        errors >= 3.0 && errors == logged,
        "{errors} counted, {logged} logged"
    );
    // Paced (10 ms, doubling up to 1 s), not a busy loop: a handful, not thousands.
    assert!(errors < 100.0, "{errors} failed accepts");
    assert!(
        receiver.log().contains("Too many open files"),
        "{}",
        receiver.log()
    );
}

/// Resident memory of process `pid`, bytes (`VmRSS`).
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS in /proc/PID/status")
        * 1024
}

#[test]
fn memory_held_by_connections_is_returned_when_they_close() {
    const CONNECTIONS: usize = 600;
    const HEADER_BYTES: usize = 64 << 10;
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::builder(dir.path())
        .bin(BIN)
        .arg("--header-timeout=120s")
        .start();
    let pid = receiver.pid().expect("the receiver's pid");
    let addr = receiver.addr();
    let before = rss_bytes(pid);
    // Each connection sends 64 KiB of one header and never ends it: the receiver buffers it
    // all, as it must until the header is complete or times out.
    let header = format!(
        "GET /livez HTTP/1.1\r\nHost: x\r\nX-Padding: {}",
        "a".repeat(HEADER_BYTES)
    );
    let mut open: Vec<TcpStream> = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(header.as_bytes()).unwrap();
        open.push(s);
    }
    let grown = testkit::wait_for(
        Duration::from_secs(60),
        "the receiver to buffer the headers",
        || {
            let rss = rss_bytes(pid);
            (rss > before + (CONNECTIONS * HEADER_BYTES / 2) as u64).then_some(rss)
        },
    );
    drop(open);
    // Closed connections give their memory back to the system, not only to the allocator.
    let returned = testkit::wait_for(
        Duration::from_secs(30),
        "the receiver's memory to come back down",
        || {
            let rss = rss_bytes(pid);
            (rss < before + (grown - before) / 4).then_some(rss)
        },
    );
    println!(
        "receiver RSS: {:.1} MiB before, {:.1} MiB with {CONNECTIONS} connections buffering \
         {} KiB each, {:.1} MiB after they closed",
        before as f64 / 1048576.0,
        grown as f64 / 1048576.0,
        HEADER_BYTES >> 10,
        returned as f64 / 1048576.0
    );
    assert_eq!(
        receiver
            .try_http("GET", "/livez", None, None)
            .map(|r| r.status == 200)
            .ok(),
        Some(true)
    );
}
