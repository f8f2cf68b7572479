//! The PostgreSQL backend against a real server (Debian's `postgresql`, a throw-away
//! cluster on loopback): two receivers on one database with one killed mid-stream, the
//! database stopped and started under load, both backends answering the same bytes, and a
//! database newer than the receiver refused. (The black-box suites also run on PostgreSQL:
//! `RECEIVER_TEST_BACKEND=postgres`, as `cargo xtask test` does.)

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{TestServer, push_body};
use http_client::{Method, Request};
use receiver::config::{Config, Database, PgUrl};
use testkit::postgres::{Cluster, binaries, shared, unique_name};
use testkit::{HMAC_KEY, JsonResponse as _, READ_TOKEN, Receiver, require, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_receiver");

fn have_postgres() -> bool {
    require(
        "the PostgreSQL backend is tested against a real server",
        binaries().map(|_| ()),
    )
}

/// One push to `addr`: its status and body, or `None` without an answer.
fn push(addr: SocketAddr, token: &str, run_id: &str, job: &str) -> Option<(u16, String)> {
    let body = push_body("pg-org", "pg-repo", "ci.yml", job, run_id).to_string();
    let req = Request::to(Method::POST, addr, "/api/v1/metrics")
        .timeout(Duration::from_secs(10))
        .bearer(token)
        .json(body);
    let r = http_client::blocking::request(req).ok()?;
    Some((r.status.as_u16(), r.text().into_owned()))
}

/// Every stored (run_id, id) of a job, through `receiver`.
fn stored(receiver: &Receiver, job: &str) -> Vec<(String, u64)> {
    receiver.stored_runs(&format!("/api/v1/metrics/repo/pg-org/pg-repo/ci.yml/{job}"))
}

#[test]
fn two_receivers_one_database_lose_nothing_when_one_is_killed() {
    if !have_postgres() {
        return;
    }
    let cluster = shared().expect("a PostgreSQL cluster");
    let url = cluster.create_database(&unique_name("replicas")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let start = |name: &str| {
        Receiver::builder(&dir.path().join(name))
            .bin(BIN)
            .db(&url)
            .start()
    };
    let mut a = start("a");
    let b = start("b");
    let token: Arc<str> = Arc::from(
        a.push_token(r#"{"organization":"pg-org","repository":"*","workflow":"*","job":"*"}"#),
    );
    let addrs = [a.addr(), b.addr()];
    let stop = AtomicBool::new(false);
    let acks = AtomicU64::new(0);
    let acked: Mutex<HashMap<String, u64>> = Mutex::new(HashMap::new());
    std::thread::scope(|s| {
        for p in 0..6 {
            let (token, stop, acks, acked) = (token.clone(), &stop, &acks, &acked);
            s.spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let run_id = format!("p{p}-{i}");
                    let job = format!("job-{}", p % 3);
                    // Through one receiver, then the other until it is stored: a push whose
                    // answer was lost is retried and must not be stored twice.
                    let mut answer = None;
                    for attempt in 0..200 {
                        let addr = addrs[(p + i + attempt) % 2];
                        match push(addr, &token, &run_id, &job) {
                            Some((201, body)) => {
                                answer = Some(body);
                                break;
                            }
                            Some((503, _)) | None => {
                                std::thread::sleep(Duration::from_millis(10));
                            }
                            Some((status, body)) => panic!("push answered {status}: {body}"),
                        }
                    }
                    let body = answer.unwrap_or_else(|| panic!("{run_id} never stored"));
                    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
                        .as_u64()
                        .unwrap();
                    acked.lock().unwrap().insert(run_id, id);
                    acks.fetch_add(1, Ordering::SeqCst);
                    i += 1;
                }
            });
        }
        for _ in 0..2 {
            let target = acks.load(Ordering::SeqCst) + 60;
            wait_until(
                Duration::from_secs(30),
                "pushes through both receivers",
                || acks.load(Ordering::SeqCst) >= target,
            );
            a.sigkill();
            let target = acks.load(Ordering::SeqCst) + 30;
            wait_until(Duration::from_secs(30), "pushes while one is down", || {
                acks.load(Ordering::SeqCst) >= target
            });
            a.restart();
        }
        let target = acks.load(Ordering::SeqCst) + 30;
        wait_until(Duration::from_secs(30), "pushes after the restart", || {
            acks.load(Ordering::SeqCst) >= target
        });
        stop.store(true, Ordering::SeqCst);
    });
    let acked = acked.into_inner().unwrap();
    let mut seen = HashSet::new();
    for job in ["job-0", "job-1", "job-2"] {
        for (run_id, id) in stored(&b, job) {
            assert!(seen.insert(run_id.clone()), "{run_id} is stored twice");
            assert_eq!(acked.get(&run_id), Some(&id), "{run_id}: stored as {id}");
        }
    }
    assert_eq!(seen.len(), acked.len(), "every acknowledged push is stored");
    // Both receivers' job lists count the same runs.
    for r in [&a, &b] {
        let jobs = r
            .http("GET", "/api/v1/jobs?window=3650d", Some(READ_TOKEN), None)
            .json();
        let counted: u64 = jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["runs"].as_u64().unwrap())
            .sum();
        assert_eq!(counted, acked.len() as u64);
    }
    eprintln!(
        "{} pushes through two receivers, one SIGKILLed twice: each stored once",
        acked.len()
    );
}

#[test]
fn a_database_outage_is_503_and_the_receiver_recovers_by_itself() {
    if !have_postgres() {
        return;
    }
    let mut cluster = Cluster::start().expect("a PostgreSQL cluster");
    cluster.psql("postgres", "CREATE DATABASE outage").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::builder(dir.path())
        .bin(BIN)
        .db(cluster.url("outage"))
        .arg("--db-timeout=1s")
        .start();
    let token = receiver
        .push_token(r#"{"organization":"pg-org","repository":"*","workflow":"*","job":"*"}"#);
    let addr = receiver.addr();
    let mut acked = Vec::new();
    for i in 0..20 {
        let run_id = format!("before-{i}");
        assert_eq!(push(addr, &token, &run_id, "j").map(|r| r.0), Some(201));
        acked.push(run_id);
    }
    cluster.stop();
    // Pushes during the outage: 503 with the reason, within the connection timeout.
    let mut refused = 0;
    for i in 0..5 {
        let started = std::time::Instant::now();
        let (status, body) = push(addr, &token, &format!("during-{i}"), "j").expect("an answer");
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("unavailable"), "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
        refused += 1;
    }
    let health = receiver.http("GET", "/healthz", None, None);
    assert_eq!(health.status, 503, "{}", health.text());
    cluster.resume().expect("postgres starts again");
    // No restart of the receiver: pushes succeed again by themselves.
    let mut i = 0;
    wait_until(
        Duration::from_secs(30),
        "a push to succeed after the outage",
        || {
            i += 1;
            push(addr, &token, &format!("after-{i}"), "j").is_some_and(|r| r.0 == 201)
        },
    );
    acked.push(format!("after-{i}"));
    wait_until(Duration::from_secs(10), "/healthz to be 200 again", || {
        receiver.http("GET", "/healthz", None, None).status == 200
    });
    let runs: HashSet<String> = stored(&receiver, "j").into_iter().map(|(r, _)| r).collect();
    for run_id in &acked {
        assert!(runs.contains(run_id), "{run_id} lost");
    }
    assert!(
        !runs.iter().any(|r| r.starts_with("during-")),
        "a refused push was stored"
    );
    eprintln!("{refused} pushes refused with 503 while the database was down; recovered");
}

/// Both backends on the same clock answer the same bytes for the same pushes.
#[test]
fn both_backends_answer_the_same_bytes() {
    if !have_postgres() {
        return;
    }
    fn fixed() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_770_388_223)
    }
    let cluster = shared().expect("a PostgreSQL cluster");
    let url = cluster.create_database(&unique_name("same")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let servers: Vec<TestServer> = [
        Database::File(dir.path().join("same.redb")),
        Database::Postgres(PgUrl::parse(&url).unwrap()),
    ]
    .into_iter()
    .map(|db| {
        let mut config = Config::new(db, READ_TOKEN, HMAC_KEY);
        config.clock = fixed;
        TestServer::start(config)
    })
    .collect();
    for server in &servers {
        let token = server.token(
            &serde_json::json!({"organization":"pg-org","repository":"*","workflow":"*","job":"*"}),
        );
        for i in 0..7 {
            let body = push_body("pg-org", "pg-repo", "ci.yml", "build", &format!("r{i}"));
            assert_eq!(server.push(&token, &body).status, 201);
        }
        // A repeated push: the same answer.
        let again = push_body("pg-org", "pg-repo", "ci.yml", "build", "r3");
        let r = server.push(&token, &again);
        assert_eq!(r.header("idempotent-replayed"), Some("true"));
    }
    for path in [
        "/api/v1/metrics/repo/pg-org/pg-repo/ci.yml/build?limit=3",
        "/api/v1/metrics/repo/pg-org/pg-org%2Fpg-repo/ci.yml/build?limit=50",
        "/api/v1/history/repo/pg-org/pg-repo/ci.yml/build?limit=5",
        "/api/v1/sizing/repo/pg-org/pg-repo/ci.yml/build?window=3650d",
        "/api/v1/fleet?window=3650d",
    ] {
        let answers: Vec<_> = servers.iter().map(|s| s.get(path)).collect();
        assert_eq!(answers[0].status, 200, "{path}: {}", answers[0].text());
        assert_eq!(answers[0].text(), answers[1].text(), "{path}");
        assert_eq!(
            answers[0].header("x-next-cursor"),
            answers[1].header("x-next-cursor"),
            "{path}"
        );
    }
}

#[test]
fn a_database_newer_than_the_receiver_is_refused() {
    if !have_postgres() {
        return;
    }
    let cluster = shared().expect("a PostgreSQL cluster");
    let name = unique_name("newer");
    cluster.create_database(&name).unwrap();
    cluster
        .psql(
            &name,
            "CREATE TABLE receiver_schema (id int PRIMARY KEY, version bigint NOT NULL);
             INSERT INTO receiver_schema VALUES (1, 99)",
        )
        .unwrap();
    let out = std::process::Command::new(BIN)
        .arg(format!("--db={}", cluster.url(&name)))
        .args([
            "--addr=127.0.0.1:0",
            "--read-token=read-token-0123456789",
            "--hmac-key=hmac-key-0123456789ab",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("schema version 99") && err.contains("newer"),
        "{err}"
    );
}

/// A database of schema version 1 (every row plain, as receivers before compression wrote
/// them) opens as version 2 without a rewrite, answers every run byte for byte as before,
/// and stores new runs packed (`payload` compressed, `head` empty).
#[test]
fn a_database_of_plain_rows_reads_the_same_and_takes_packed_runs() {
    if !have_postgres() {
        return;
    }
    fn fixed() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_770_388_223)
    }
    let cluster = shared().expect("a PostgreSQL cluster");
    let name = unique_name("plain");
    let url = cluster.create_database(&name).unwrap();
    let server = |compression| {
        let mut config = Config::new(
            Database::Postgres(PgUrl::parse(&url).unwrap()),
            READ_TOKEN,
            HMAC_KEY,
        );
        config.clock = fixed;
        config.compression = compression;
        TestServer::start(config)
    };
    let scope =
        serde_json::json!({"organization":"pg-org","repository":"*","workflow":"*","job":"*"});
    let path = "/api/v1/metrics/repo/pg-org/pg-repo/ci.yml/build?limit=50";
    let before = {
        let old = server(receiver::store::Compression::Off);
        let token = old.token(&scope);
        for i in 0..4 {
            let body = push_body("pg-org", "pg-repo", "ci.yml", "build", &format!("p{i}"));
            assert_eq!(old.push(&token, &body).status, 201);
        }
        old.get(path).text()
    };
    // What a receiver of before compression leaves: version 1, its storage settings.
    cluster
        .psql(
            &name,
            "UPDATE receiver_schema SET version = 1; ALTER TABLE runs RESET (
                autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,
                toast.autovacuum_vacuum_scale_factor, toast.autovacuum_vacuum_threshold)",
        )
        .unwrap();
    let new = server(receiver::store::Compression::ZstdDict);
    assert_eq!(new.get(path).text(), before, "old rows answer as before");
    let token = new.token(&scope);
    let body = push_body("pg-org", "pg-repo", "ci.yml", "build", "packed");
    assert_eq!(new.push(&token, &body).status, 201);
    let answer = new.get(path).json();
    assert_eq!(answer.as_array().unwrap().len(), 5);
    assert_eq!(answer[0]["run_id"], "packed");
    let rows = cluster
        .psql(
            &name,
            "SELECT string_agg(get_byte(payload, 0) || ':' || length(head), ',' ORDER BY id)
             FROM runs; SELECT version FROM receiver_schema",
        )
        .unwrap();
    let rows: Vec<&str> = rows.split_whitespace().collect();
    let formats: Vec<&str> = rows[0].split(',').collect();
    assert_eq!(formats.len(), 5, "{rows:?}");
    assert!(
        formats[..4].iter().all(|f| f.starts_with("123:")),
        "{rows:?}"
    );
    assert_eq!(formats[4], "1:0", "{rows:?}");
    assert_eq!(rows[1], "2", "{rows:?}");
}
