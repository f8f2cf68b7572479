//! The real receiver binary under faults: a full disk, a crash on a large file, a busy port.
//!
//! - `disk_full_recovers_without_restart` (root: it mounts an 8 MiB tmpfs for the database)
//!   fills the disk to ENOSPC, checks that pushes get a clear 503 and `/healthz` says why,
//!   frees the space, and checks that pushes succeed again in the same process with every
//!   acknowledged run still there.
//! - `crash_recovery_is_fast_on_a_large_file` kills the receiver with SIGKILL during pushes on
//!   a ~200 MB database and times the restart (quick repair, not a walk of the whole file);
//!   meanwhile no connection is accepted and left unanswered.
//! - `store_is_open_before_the_port_is_bound` shows the order: with the port taken, the
//!   database has been opened before the bind fails.

mod common;

use std::collections::HashSet;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::push_body;
use receiver::store::redb::RedbStore as Store;
use receiver::store::{NewRun, StoreOptions};
use testkit::{HMAC_KEY, JsonResponse as _, READ_TOKEN, Receiver};

const BIN: &str = env!("CARGO_BIN_EXE_receiver");

/// A tmpfs of a given size mounted on a directory of its own; unmounted when dropped, also
/// when the test fails (declare it before the receiver that uses it, so the receiver is
/// killed first).
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: PathBuf, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(&path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs on {}: {} {}",
                path.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Self { path })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Still busy: detach it now, the kernel frees it once the last user is gone.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// Writes `path` until the file system is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0xa5u8; 64 * 1024];
    let mut written = 0u64;
    // Bounded: 64 MiB, far more than the 8 MiB file system holds.
    for _ in 0..1024 {
        match file.write(&chunk) {
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return written,
            Err(e) => panic!("writing {}: {e}", path.display()),
        }
    }
    panic!("{} never filled the file system", path.display());
}

const SCOPE: &str = r#"{"organization":"o","repository":"o/r","workflow":"w","job":"j"}"#;

fn push(
    receiver: &Receiver,
    token: &str,
    run_id: &str,
) -> Result<(u16, String), http_client::Error> {
    let body = push_body("o", "o/r", "w", "j", run_id).to_string();
    receiver
        .try_http(
            "POST",
            "/api/v1/metrics",
            Some(token),
            Some(body.as_bytes()),
        )
        .map(|r| (r.status.as_u16(), r.text().into_owned()))
}

/// Every run id of job o/r/w/j, following the cursor.
fn all_run_ids(receiver: &Receiver) -> HashSet<String> {
    let mut ids = HashSet::new();
    let mut path = "/api/v1/metrics/repo/o/r/w/j?limit=1000".to_string();
    for _ in 0..1000 {
        let r = receiver.http("GET", &path, Some(READ_TOKEN), None);
        assert_eq!(r.status, 200, "{}", r.text());
        for v in r.json().as_array().unwrap() {
            ids.insert(v["run_id"].as_str().unwrap().to_string());
        }
        match r.header("x-next-cursor") {
            Some(c) => path = format!("/api/v1/metrics/repo/o/r/w/j?limit=1000&cursor={c}"),
            None => return ids,
        }
    }
    panic!("too many pages");
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

#[track_caller]
fn assert_all_stored(receiver: &Receiver, acked: &[String]) {
    let stored = all_run_ids(receiver);
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged runs lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
}

#[test]
fn disk_full_recovers_without_restart() {
    if !testkit::require_root("mounts a small tmpfs and fills it") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fs = match Tmpfs::mount(dir.path().join("fs"), "8m") {
        Ok(fs) => fs,
        Err(e) => {
            testkit::require("mounts a small tmpfs", Err(e));
            return;
        }
    };
    // The database on the tmpfs; the log and the address file stay outside it.
    let receiver = Receiver::builder(dir.path())
        .bin(BIN)
        .db(fs.path.join("metrics.db"))
        .arg("--log-level=info")
        .start();
    let pid = receiver.pid();
    let token = receiver.push_token(SCOPE);
    let mut acked = Vec::new();
    for i in 0..20 {
        let run_id = format!("before-{i}");
        assert_eq!(push(&receiver, &token, &run_id).unwrap().0, 201);
        acked.push(run_id);
    }

    // Fill the disk: a filler file up to ENOSPC, then pushes until one fails.
    let filler = fs.path.join("filler");
    let filled = fill(&filler);
    let mut failure = None;
    for i in 0..20_000 {
        let run_id = format!("filling-{i}");
        match push(&receiver, &token, &run_id).unwrap() {
            (201, _) => acked.push(run_id),
            other => {
                failure = Some(other);
                break;
            }
        }
    }
    let (status, body) = failure.expect("pushes kept succeeding on a full disk");
    eprintln!(
        "filler {filled} bytes; {} pushes acknowledged, then {status} {body}",
        acked.len()
    );
    assert_eq!(status, 503, "{body}");
    let error = serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        error.contains("store unavailable") && error.contains("No space left on device"),
        "{error}"
    );

    // The health endpoint tells the truth, and pushes keep getting a clear 503.
    let health = receiver.http("GET", "/healthz", None, None);
    assert_eq!(health.status, 503, "{}", health.text());
    assert_eq!(health.json()["status"], "unavailable");
    assert!(
        health.error().contains("No space left on device"),
        "{}",
        health.text()
    );
    let (status, body) = push(&receiver, &token, "while-full").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("store unavailable"), "{body}");
    assert_eq!(receiver.http("GET", "/livez", None, None).status, 200);
    // Reads are served from the reopened file while the disk is still full.
    testkit::wait_until(
        Duration::from_secs(30),
        "queries while the disk is full",
        || {
            receiver
                .http(
                    "GET",
                    "/api/v1/metrics/repo/o/r/w/j?limit=1",
                    Some(READ_TOKEN),
                    None,
                )
                .status
                == 200
        },
    );
    assert_eq!(receiver.http("GET", "/healthz", None, None).status, 503);

    // Free the space: pushes succeed again, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let started = Instant::now();
    testkit::wait_until(
        Duration::from_secs(30),
        "a push to succeed once space is free",
        || match push(&receiver, &token, "after").unwrap() {
            (201, _) => true,
            (503, _) => false,
            (status, body) => panic!("unexpected {status} {body}"),
        },
    );
    eprintln!(
        "writable again {:?} after freeing the space",
        started.elapsed()
    );
    acked.push("after".into());
    let health = receiver.http("GET", "/healthz", None, None);
    assert_eq!(health.status, 200, "{}", health.text());
    assert_eq!(health.text(), r#"{"status":"ok"}"#);
    for i in 0..20 {
        let run_id = format!("later-{i}");
        assert_eq!(push(&receiver, &token, &run_id).unwrap().0, 201);
        acked.push(run_id);
    }
    assert_eq!(receiver.pid(), pid, "the receiver was restarted");
    assert_all_stored(&receiver, &acked);
    assert!(metric(&receiver, "receiver_store_reopens_total") >= 1.0);
    assert_eq!(metric(&receiver, "receiver_store_available"), 1.0);
    assert!(metric(&receiver, "receiver_store_commit_failures_total") >= 1.0);
}

/// Stores about `mb` MB of runs (1 MB each) in job o/r/w/big through the library (no HTTP,
/// no validation: only the file's size matters here), then closes the database.
fn generate(db: &Path, mb: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Stored plain: a compressed blob of `x`s would make a file of a few MB.
        let options = StoreOptions {
            compression: receiver::store::Compression::Off,
            ..StoreOptions::default()
        };
        let store = Arc::new(Store::open(db, options, Arc::default()).unwrap());
        // Pre-encoded, so encoding a run is a copy.
        let blob = format!(r#"{{"blob":"{}"}}"#, "x".repeat(1 << 20));
        let payload: Arc<Box<serde_json::value::RawValue>> =
            Arc::new(serde_json::value::RawValue::from_string(blob).unwrap());
        // In waves of 64, so that at most 64 MB of runs wait in memory.
        for wave in 0..mb.div_ceil(64) {
            let mut tasks = Vec::new();
            for n in wave * 64..((wave + 1) * 64).min(mb) {
                let (store, payload) = (store.clone(), payload.clone());
                tasks.push(tokio::spawn(async move {
                    let execution = summary::Execution {
                        organization: "o".into(),
                        repository: "o/r".into(),
                        workflow: "w".into(),
                        job: "big".into(),
                        run_id: n.to_string(),
                        ..Default::default()
                    };
                    let run = NewRun::new(&execution, &*payload).unwrap();
                    store.insert(run).await.unwrap();
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        }
        store.close().await;
    });
}

/// Connects to `addr` over and over until `stop`; every connection accepted must answer
/// `GET /livez` within a second. Returns the problems and the number of answered probes.
fn probe_until(addr: SocketAddr, stop: &AtomicBool) -> (Vec<String>, usize) {
    let mut problems = Vec::new();
    let mut answered = 0;
    // Bounded by `stop`, which the test sets within its own deadlines.
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
            // Refused: nothing listens yet. Pace the attempts a little.
            std::thread::sleep(Duration::from_millis(2));
            continue;
        };
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let _ = s.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut raw = Vec::new();
        match s.read_to_end(&mut raw) {
            Ok(_) if raw.starts_with(b"HTTP/1.1 200") => answered += 1,
            Ok(_) => problems.push(format!("answer {:?}", String::from_utf8_lossy(&raw))),
            Err(e) => problems.push(format!(
                "a connection was accepted and not answered within 1 s ({e})"
            )),
        }
    }
    (problems, answered)
}

#[test]
fn crash_recovery_is_fast_on_a_large_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("metrics.db");
    let started = Instant::now();
    generate(&db, 200);
    let size = std::fs::metadata(&db).unwrap().len();
    eprintln!("generated {} MB in {:?}", size >> 20, started.elapsed());
    assert!(size >= 200 << 20, "only {size} bytes");

    let mut receiver = Receiver::builder(dir.path())
        .bin(BIN)
        .arg("--log-level=info")
        .start();
    let token = receiver.push_token(SCOPE);
    let acked = Mutex::new(Vec::<String>::new());
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let receiver = &receiver;
        for c in 0..4 {
            let (acked, stop, token) = (&acked, &stop, &token);
            scope.spawn(move || {
                // Bounded: at most 5,000 pushes per client, and stop at the first failure.
                for i in 0..5_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let run_id = format!("c{c}-{i}");
                    match push(receiver, token, &run_id) {
                        Ok((201, _)) => acked.lock().unwrap().push(run_id),
                        Ok((status, body)) => panic!("unexpected answer {status} {body}"),
                        Err(_) => break,
                    }
                }
            });
        }
        testkit::wait_until(Duration::from_secs(60), "100 acknowledged pushes", || {
            acked.lock().unwrap().len() >= 100
        });
        let pid = receiver.pid().unwrap();
        let killed = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        assert!(killed.unwrap().success());
        stop.store(true, Ordering::Relaxed);
    });
    receiver.sigkill();
    let acked = acked.into_inner().unwrap();

    // Restart on the same file and port while a prober connects over and over.
    let addr = receiver.addr();
    let probing = AtomicBool::new(false);
    let (reopen, (problems, answered)) = std::thread::scope(|scope| {
        let prober = scope.spawn(|| probe_until(addr, &probing));
        let started = Instant::now();
        receiver.restart();
        let reopen = started.elapsed();
        testkit::wait_until(Duration::from_secs(30), "the receiver to answer", || {
            receiver.try_http("GET", "/livez", None, None).is_ok()
        });
        probing.store(true, Ordering::Relaxed);
        (reopen, prober.join().unwrap())
    });
    let log = receiver.log();
    let open_line = log
        .lines()
        .rfind(|l| l.contains("store open"))
        .unwrap_or_default();
    eprintln!(
        "reopen after SIGKILL on a {} MB file: {reopen:?} from spawn to ready ({answered} \
         probes answered); {open_line}",
        size >> 20
    );
    assert!(problems.is_empty(), "{problems:?}");
    assert!(
        !log.contains("full repair"),
        "the restart ran a full repair:\n{log}"
    );
    assert!(
        reopen < Duration::from_secs(1),
        "reopening a {} MB file took {reopen:?}",
        size >> 20
    );
    assert_all_stored(&receiver, &acked);
    assert_eq!(push(&receiver, &token, "after").unwrap().0, 201);
}

/// Waits up to 30 s for `child` to exit; kills it if it does not.
fn wait_for_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    testkit::wait_for(Duration::from_secs(60), "the receiver to exit", || {
        if Instant::now() > deadline {
            let _ = child.kill();
        }
        child.try_wait().unwrap()
    })
}

#[test]
fn store_is_open_before_the_port_is_bound() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("metrics.db");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let log = dir.path().join("receiver.log");
    let mut child = Command::new(BIN)
        .arg(format!("--addr={addr}"))
        .arg(format!("--db={}", db.display()))
        .env("RECEIVER_READ_TOKEN", READ_TOKEN)
        .env("RECEIVER_HMAC_KEY", HMAC_KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let status = wait_for_exit(&mut child);
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "{stderr}");
    let bind_error = stderr
        .find("cannot listen")
        .unwrap_or_else(|| panic!("{stderr}"));
    let opened = stderr.find("store open").unwrap_or_else(|| {
        panic!("the port was bound (and failed) before the store was opened:\n{stderr}")
    });
    assert!(opened < bind_error, "{stderr}");
    assert!(db.exists(), "{stderr}");
}
