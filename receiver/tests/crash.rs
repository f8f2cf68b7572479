//! Crash test: concurrent pushers that retry like the collector, and SIGKILLs of the real
//! receiver binary at random moments, restarted on the same file. At the end every
//! acknowledged run is stored exactly once, with the id it was acknowledged with, and no
//! run is stored twice, even where a retry followed a lost answer.
//!
//! Lost answers come two ways: the receiver is killed between a commit and its answer, and
//! pushers drop the answer to some of their pushes unread (a connection that breaks on the
//! way back) before retrying them.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::push_body;
use http_client::{Method, Request, Step};
use testkit::{JsonResponse as _, Receiver};

const BIN: &str = env!("CARGO_BIN_EXE_receiver");
const PUSHERS: usize = 12;
const KILLS: usize = 5;
/// The whole test must end well within this.
const BUDGET: Duration = Duration::from_secs(50);

/// xorshift64*: enough randomness for kill moments and hang-ups, reproducible by seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the pushers saw.
#[derive(Default)]
struct Tally {
    /// run id → the id its 2xx named.
    acked: HashMap<String, u64>,
    /// Attempts that failed after the request may have reached the receiver.
    ambiguous: u64,
    /// Pushes whose answer was dropped unread.
    abandoned: u64,
    /// 2xx answers marked `Idempotent-Replayed: true`.
    replayed: u64,
}

/// Sends `body` and hangs up as the answer comes, without looking at it: the answer is
/// lost, as when a connection breaks on its way back.
fn send_and_hang_up(addr: SocketAddr, token: &str, body: &[u8]) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let head = format!(
        "POST /api/v1/metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body);
    // The first bytes of the answer (or the end, if the receiver dies meanwhile).
    let _ = s.read(&mut [0u8; 64]);
}

/// One pusher: its own job, run after run, each retried until acknowledged, like the
/// collector (same body every time; 5xx and lost connections retried, 4xx fatal).
fn pusher(
    n: usize,
    addr: SocketAddr,
    token: &str,
    seed: u64,
    stop: &AtomicBool,
    acks: &AtomicU64,
    tally: &Mutex<Tally>,
) {
    let mut rng = Rng(seed | 1);
    let job = format!("job-{n}");
    for seq in 0.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let run_id = format!("run-{n}-{seq}");
        let mut body = push_body("crash-org", "crash-org/repo", "ci.yml", &job, &run_id);
        body["execution"]["run_attempt"] = serde_json::json!("1");
        let body = serde_json::to_vec(&body).unwrap();
        if rng.below(6) == 0 {
            send_and_hang_up(addr, token, &body);
            tally.lock().unwrap().abandoned += 1;
        }
        let what = format!("{run_id} to be acknowledged");
        let (id, replayed) = testkit::wait_for(Duration::from_secs(30), &what, || {
            let req = Request::to(Method::POST, addr, "/api/v1/metrics")
                .bearer(token)
                .json(body.clone())
                .timeout(Duration::from_secs(10));
            match http_client::blocking::request(req) {
                Ok(r) if r.status == 201 => Some((
                    r.json()["id"].as_u64().unwrap(),
                    r.header("idempotent-replayed") == Some("true"),
                )),
                Ok(r) if r.status.is_server_error() => None,
                Ok(r) => panic!("{run_id}: refused with {}: {}", r.status, r.text()),
                Err(e) => {
                    if matches!(e.step(), Some(Step::Send | Step::Read)) {
                        tally.lock().unwrap().ambiguous += 1;
                    }
                    None
                }
            }
        });
        let mut t = tally.lock().unwrap();
        assert!(t.acked.insert(run_id, id).is_none());
        t.replayed += u64::from(replayed);
        drop(t);
        acks.fetch_add(1, Ordering::SeqCst);
    }
}

/// Every stored run of `job`, as (run_id, id).
fn stored(receiver: &Receiver, job: &str) -> Vec<(String, u64)> {
    receiver.stored_runs(&format!("/api/v1/metrics/repo/crash-org/repo/ci.yml/{job}"))
}

#[test]
fn every_acknowledged_run_survives_sigkills_exactly_once() {
    let started = Instant::now();
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("crash test seed {seed} (CRASH_SEED={seed} repeats it)");
    let mut rng = Rng(seed | 1);
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::builder(dir.path()).bin(BIN).start();
    let token = receiver
        .push_token(r#"{"organization":"crash-org","repository":"*","workflow":"*","job":"*"}"#);
    let addr = receiver.addr();
    let stop = AtomicBool::new(false);
    let acks = AtomicU64::new(0);
    let tally = Mutex::new(Tally::default());
    let token = Arc::<str>::from(token);
    std::thread::scope(|s| {
        for n in 0..PUSHERS {
            let (token, stop, acks, tally) = (token.clone(), &stop, &acks, &tally);
            let pusher_seed = rng.next();
            s.spawn(move || pusher(n, addr, &token, pusher_seed, stop, acks, tally));
        }
        for kill in 0..KILLS {
            // A random moment: after 5 to 60 more acknowledgements.
            let target = acks.load(Ordering::SeqCst) + 5 + rng.below(56);
            testkit::wait_until(
                Duration::from_secs(20),
                &format!("{target} acknowledged pushes before kill {kill}"),
                || acks.load(Ordering::SeqCst) >= target,
            );
            receiver.sigkill();
            receiver.restart();
            assert_eq!(receiver.addr(), addr, "restarted on another port");
        }
        let target = acks.load(Ordering::SeqCst) + 20;
        testkit::wait_until(
            Duration::from_secs(20),
            "pushes after the last restart",
            || acks.load(Ordering::SeqCst) >= target,
        );
        stop.store(true, Ordering::SeqCst);
    });
    let tally = tally.into_inner().unwrap();

    let mut seen = HashSet::new();
    let mut stored_runs = 0;
    for n in 0..PUSHERS {
        for (run_id, id) in stored(&receiver, &format!("job-{n}")) {
            stored_runs += 1;
            assert!(seen.insert(run_id.clone()), "{run_id} is stored twice");
            match tally.acked.get(&run_id) {
                Some(acked) => assert_eq!(*acked, id, "{run_id}: acknowledged with another id"),
                None => panic!("{run_id} is stored but was never acknowledged"),
            }
        }
    }
    for run_id in tally.acked.keys() {
        assert!(seen.contains(run_id), "acknowledged {run_id} is lost");
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{} runs acknowledged and stored once each; {KILLS} SIGKILLs; {} attempts failed \
         after sending, {} answers dropped unread, {} answered as replays; {elapsed:.1?}",
        stored_runs, tally.ambiguous, tally.abandoned, tally.replayed
    );
    assert_eq!(stored_runs, tally.acked.len());
    // The job list's aggregates crashed with the runs and count exactly them.
    let listed = receiver.http(
        "GET",
        "/api/v1/jobs?limit=1000&window=3650d",
        Some(testkit::READ_TOKEN),
        None,
    );
    assert_eq!(listed.status, 200, "{}", listed.text());
    let counted: u64 = listed.json()["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["runs"].as_u64().unwrap())
        .sum();
    assert_eq!(
        counted, stored_runs as u64,
        "the job list counts every stored run once"
    );
    for n in 0..PUSHERS {
        let path = format!("/api/v1/history/repo/crash-org/repo/ci.yml/job-{n}?limit=1000");
        let rows = receiver
            .http("GET", &path, Some(testkit::READ_TOKEN), None)
            .json();
        let ids: HashSet<u64> = rows["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_u64().unwrap())
            .collect();
        let stored_ids: HashSet<u64> = stored(&receiver, &format!("job-{n}"))
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        assert_eq!(ids, stored_ids, "job-{n}: one history row per stored run");
    }
    assert!(tally.replayed > 0, "no retry followed a lost answer");
    assert!(elapsed < BUDGET, "took {elapsed:?}");
}
