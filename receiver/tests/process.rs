//! Tests against the real `receiver` binary: refusing to start, and crash consistency
//! under SIGKILL.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::push_body;
use testkit::{HMAC_KEY, JsonResponse as _, READ_TOKEN, Receiver};

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

/// The receiver binary of this test build on `127.0.0.1:0`, with its database in `dir`.
fn spawn(dir: &Path) -> Receiver {
    Receiver::builder(dir)
        .bin(BIN)
        .arg("--log-level=info")
        .start()
}

/// Secrets never reach the log.
fn assert_no_secret_logged(receiver: &Receiver) {
    let log = receiver.log();
    assert!(!log.is_empty(), "the receiver logged nothing");
    assert!(
        !log.contains(READ_TOKEN) && !log.contains(HMAC_KEY),
        "secret logged:\n{log}"
    );
}

fn token(receiver: &Receiver) -> String {
    receiver.push_token(r#"{"organization":"o","repository":"o/r","workflow":"w","job":"j"}"#)
}

fn push(receiver: &Receiver, token: &str, run_id: &str) -> Result<u16, http_client::Error> {
    let body = push_body("o", "o/r", "w", "j", run_id).to_string();
    receiver
        .try_http(
            "POST",
            "/api/v1/metrics",
            Some(token),
            Some(body.as_bytes()),
        )
        .map(|r| r.status.as_u16())
}

fn all_run_ids(receiver: &Receiver) -> Vec<String> {
    let mut ids = Vec::new();
    let mut path = "/api/v1/metrics/repo/o/r/w/j?limit=1000".to_string();
    for _ in 0..1000 {
        let r = receiver.http("GET", &path, Some(READ_TOKEN), None);
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
    let mut receiver = spawn(dir.path());
    let token = token(&receiver);
    let receiver_ref = &receiver;
    let acked = Mutex::new(Vec::<String>::new());
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for c in 0..8 {
            let (acked, stop, token) = (&acked, &stop, &token);
            scope.spawn(move || {
                // Bounded: at most 5,000 pushes per client, and stop at the first failure.
                for i in 0..5_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let run_id = format!("c{c}-{i}");
                    match push(receiver_ref, token, &run_id) {
                        Ok(201) => acked.lock().unwrap().push(run_id),
                        Ok(status) => panic!("unexpected answer {status}"),
                        Err(_) => break,
                    }
                }
            });
        }
        // Let pushes stream, then kill the receiver mid-stream.
        testkit::wait_until(Duration::from_secs(30), "300 acknowledged pushes", || {
            acked.lock().unwrap().len() >= 300
        });
        // SIGKILL (a crash, not a shutdown); the clients see their connections fail. The
        // clients share `receiver`, so the signal goes by pid; `sigkill` reaps it below.
        let pid = receiver_ref.pid().unwrap();
        let killed = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        assert!(killed.unwrap().success());
        // The clients stop at their first failed push; the scope joins them.
        stop.store(true, Ordering::Relaxed);
    });
    let acked = acked.into_inner().unwrap();
    assert!(
        acked.len() >= 300,
        "only {} pushes acknowledged",
        acked.len()
    );
    assert_no_secret_logged(&receiver);

    // Reaps the killed process, then starts again on the same database and port.
    receiver.sigkill();
    receiver.restart();
    let stored: HashSet<String> = all_run_ids(&receiver).into_iter().collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged summaries lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    // The restarted receiver keeps accepting pushes.
    assert_eq!(push(&receiver, &token, "after").unwrap(), 201);
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = spawn(dir.path());
    let token = token(&receiver);
    assert_eq!(push(&receiver, &token, "1").unwrap(), 201);
    let status = receiver.sigterm();
    assert!(status.success(), "{status}");
    assert!(
        receiver.log().contains("shutdown complete"),
        "{}",
        receiver.log()
    );
    receiver.restart();
    assert_eq!(all_run_ids(&receiver), vec!["1".to_string()]);
    assert_no_secret_logged(&receiver);
}

#[test]
fn addr_file_names_the_port_the_receiver_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = spawn(dir.path());
    let port = receiver.port();
    assert_ne!(port, 0);
    let text = std::fs::read_to_string(dir.path().join("receiver.addr")).unwrap();
    assert_eq!(text, format!("127.0.0.1:{port}\n"));
    // A restart keeps the database and the port.
    let token = token(&receiver);
    assert_eq!(push(&receiver, &token, "before").unwrap(), 201);
    receiver.restart();
    assert_eq!(receiver.port(), port);
    assert_eq!(all_run_ids(&receiver), vec!["before".to_string()]);
}
