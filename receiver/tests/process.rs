//! Tests against the real `receiver` binary: refusing to start, and crash consistency
//! under SIGKILL.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_receiver");

fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("RECEIVER_READ_TOKEN")
        .env_remove("RECEIVER_HMAC_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn refuses_to_start_without_strong_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let db = db.to_str().unwrap();
    let base = ["--addr", "127.0.0.1:0", "--db", db];

    let (code, err) = run_to_exit(&[&base[..], &["--hmac-key", HMAC_KEY]].concat(), &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--read-token (or RECEIVER_READ_TOKEN) is required"),
        "{err}"
    );

    let (code, err) = run_to_exit(&base, &[("RECEIVER_READ_TOKEN", READ_TOKEN)]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--hmac-key (or RECEIVER_HMAC_KEY) is required"),
        "{err}"
    );
    assert!(!err.contains(READ_TOKEN), "{err}");

    let weak = "tooshort";
    let (code, err) = run_to_exit(
        &[&base[..], &["--read-token", READ_TOKEN, "--hmac-key", weak]].concat(),
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("too weak") && err.contains("--hmac-key"),
        "{err}"
    );
    assert!(!err.contains(weak) && !err.contains(READ_TOKEN), "{err}");
    assert!(
        !Path::new(db).exists(),
        "no database is created when refusing to start"
    );
}

/// A running `receiver` process and the address it listens on.
struct Proc {
    child: Child,
    addr: SocketAddr,
}

fn spawn(db: &Path) -> Proc {
    let mut child = Command::new(BIN)
        .args([
            "--addr",
            "127.0.0.1:0",
            "--db",
            db.to_str().unwrap(),
            "--log-level",
            "info",
        ])
        .env("RECEIVER_READ_TOKEN", READ_TOKEN)
        .env("RECEIVER_HMAC_KEY", HMAC_KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            assert!(
                !line.contains(READ_TOKEN) && !line.contains(HMAC_KEY),
                "secret logged: {line}"
            );
            if !sent && line.contains("listening") {
                if let Some(addr) = line.split("addr=").nth(1) {
                    let addr = addr.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send(addr);
                    sent = true;
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .ok()
        .and_then(|a| a.parse::<SocketAddr>().ok());
    if let Some(addr) = addr {
        // Wait until the store is open.
        for _ in 0..300 {
            if request(addr, "GET", "/healthz", &[], None).is_ok_and(|r| r.status == 200) {
                return Proc { child, addr };
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("receiver did not start");
}

fn token(addr: SocketAddr) -> String {
    let body = serde_json::json!({"organization":"o","repository":"o/r","workflow":"w","job":"j"})
        .to_string();
    let r = request(
        addr,
        "POST",
        "/api/v1/token",
        &[("Authorization", &format!("Bearer {READ_TOKEN}"))],
        Some(body.as_bytes()),
    )
    .unwrap();
    r.json()["token"].as_str().unwrap().to_string()
}

fn all_run_ids(addr: SocketAddr) -> Vec<String> {
    let mut ids = Vec::new();
    let mut path = "/api/v1/metrics/repo/o/r/w/j?limit=1000".to_string();
    for _ in 0..1000 {
        let r = request(
            addr,
            "GET",
            &path,
            &[("Authorization", &format!("Bearer {READ_TOKEN}"))],
            None,
        )
        .unwrap();
        assert_eq!(r.status, 200);
        for v in r.json().as_array().unwrap() {
            ids.push(v["run_id"].as_str().unwrap().to_string());
        }
        match r.header("x-next-cursor") {
            Some(c) => path = format!("/api/v1/metrics/repo/o/r/w/j?limit=1000&cursor={c}"),
            None => return ids,
        }
    }
    panic!("too many pages");
}

#[test]
fn sigkill_during_pushes_loses_no_acknowledged_summary() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("metrics.db");
    let mut proc = spawn(&db);
    let addr = proc.addr;
    let token = token(addr);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..8 {
        let (acked, stop, token) = (acked.clone(), stop.clone(), token.clone());
        clients.push(std::thread::spawn(move || {
            let auth = format!("Bearer {token}");
            // Bounded: at most 5,000 pushes per client, and stop at the first failure.
            for i in 0..5_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let run_id = format!("c{c}-{i}");
                let body = push_body("o", "o/r", "w", "j", &run_id).to_string();
                match request(
                    addr,
                    "POST",
                    "/api/v1/metrics",
                    &[("Authorization", &auth)],
                    Some(body.as_bytes()),
                ) {
                    Ok(r) if r.status == 201 => acked.lock().unwrap().push(run_id),
                    Ok(r) => panic!("unexpected answer {} {}", r.status, r.text()),
                    Err(_) => break,
                }
            }
        }));
    }
    // Let pushes stream, then kill the receiver mid-stream.
    let started = Instant::now();
    while acked.lock().unwrap().len() < 300 && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(5));
    }
    proc.child.kill().unwrap(); // SIGKILL
    proc.child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 300,
        "only {} pushes acknowledged",
        acked.len()
    );

    let mut proc = spawn(&db);
    let stored: HashSet<String> = all_run_ids(proc.addr).into_iter().collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged summaries lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    // The restarted receiver keeps accepting pushes.
    let r = request(
        proc.addr,
        "POST",
        "/api/v1/metrics",
        &[("Authorization", &format!("Bearer {token}"))],
        Some(
            push_body("o", "o/r", "w", "j", "after")
                .to_string()
                .as_bytes(),
        ),
    )
    .unwrap();
    assert_eq!(r.status, 201);
    proc.child.kill().unwrap();
    proc.child.wait().unwrap();
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("metrics.db");
    let mut proc = spawn(&db);
    let token = token(proc.addr);
    let r = request(
        proc.addr,
        "POST",
        "/api/v1/metrics",
        &[("Authorization", &format!("Bearer {token}"))],
        Some(push_body("o", "o/r", "w", "j", "1").to_string().as_bytes()),
    )
    .unwrap();
    assert_eq!(r.status, 201);
    let pid = proc.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let started = Instant::now();
    loop {
        if let Some(status) = proc.child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut proc = spawn(&db);
    assert_eq!(all_run_ids(proc.addr), vec!["1".to_string()]);
    proc.child.kill().unwrap();
    proc.child.wait().unwrap();
}
