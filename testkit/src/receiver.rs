//! The real receiver binary, started for a test.
//!
//! The receiver binds `127.0.0.1:0` itself and writes the address it got to
//! `--addr-file` once its database is open, so the test learns a port nobody else can have
//! taken, and the file's appearance means "ready". Its stderr goes to `receiver.log` in the
//! test's directory (shown when the test fails).

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use http_client::{Method, Request, Response};

use crate::{HMAC_KEY, READ_TOKEN, wait_for};

/// How long a receiver may take to start or to stop.
const START_STOP: Duration = Duration::from_secs(30);

/// Timeout of each request [`Receiver::http`] sends.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The receiver binary of this build: `target/<profile>/receiver`, beside the directory
/// of the running test binary (`target/<profile>/deps/`).
pub fn receiver_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the test binary");
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("receiver"))
        .collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "the receiver binary is missing (looked for {}): run `cargo build -p receiver` \
                 (with the same profile as the tests) first",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" and ")
            )
        })
}

/// How to start a [`Receiver`]: its directory, binary and extra flags.
#[derive(Debug, Clone)]
pub struct ReceiverBuilder {
    /// Holds `metrics.db`, `receiver.addr` and `receiver.log`.
    dir: PathBuf,
    /// The binary ([`receiver_binary`] unless set).
    bin: Option<PathBuf>,
    /// Flags after the ones the kit sets (`--addr`, `--db`, `--addr-file`).
    args: Vec<String>,
    /// The database file, if not `dir/metrics.db`.
    db: Option<PathBuf>,
}

impl ReceiverBuilder {
    /// The database file, elsewhere than `dir/metrics.db` (on a small tmpfs, say); the
    /// address file and the log stay in the directory.
    pub fn db(mut self, db: impl Into<PathBuf>) -> Self {
        self.db = Some(db.into());
        self
    }

    /// The binary to run (the receiver's own tests pass `env!("CARGO_BIN_EXE_receiver")`).
    pub fn bin(mut self, bin: impl Into<PathBuf>) -> Self {
        self.bin = Some(bin.into());
        self
    }

    /// One more command-line argument (`--retention-days=5`, `--log-level=debug`, ...).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Starts the receiver on `127.0.0.1:0`; returns once it answers.
    #[track_caller]
    pub fn start(self) -> Receiver {
        std::fs::create_dir_all(&self.dir)
            .unwrap_or_else(|e| panic!("creating {}: {e}", self.dir.display()));
        let db = self.db.unwrap_or_else(|| self.dir.join("metrics.db"));
        let mut receiver = Receiver {
            bin: self.bin.unwrap_or_else(receiver_binary),
            db,
            dir: self.dir,
            args: self.args,
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        receiver.spawn();
        receiver
    }
}

/// A running receiver process on loopback with a real redb file; killed and reaped when
/// dropped.
#[derive(Debug)]
pub struct Receiver {
    /// The binary.
    bin: PathBuf,
    /// Address file and log (and the database, unless it is elsewhere).
    dir: PathBuf,
    /// The database file.
    db: PathBuf,
    /// Extra flags.
    args: Vec<String>,
    /// The process, while it runs.
    child: Option<Child>,
    /// Where it listens (port 0 before the first start).
    addr: SocketAddr,
}

impl Receiver {
    /// Starts the receiver with its database at `dir/metrics.db`; returns once it answers.
    #[track_caller]
    pub fn start(dir: &Path) -> Self {
        Self::builder(dir).start()
    }

    /// A receiver to configure before starting it.
    pub fn builder(dir: &Path) -> ReceiverBuilder {
        ReceiverBuilder {
            dir: dir.to_owned(),
            bin: None,
            args: Vec::new(),
            db: None,
        }
    }

    /// Its address (`127.0.0.1:PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The database file.
    pub fn db(&self) -> PathBuf {
        self.db.clone()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the receiver wrote to stderr so far, over all its starts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("receiver.log")
    }

    fn addr_file(&self) -> PathBuf {
        self.dir.join("receiver.addr")
    }

    /// One request; panics if there is no answer. `token` goes in `Authorization: Bearer`;
    /// a body is sent as JSON.
    #[track_caller]
    pub fn http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> Response {
        self.try_http(method, path, token, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log_tail()))
    }

    /// One request; an error if there is no answer.
    pub fn try_http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> Result<Response, http_client::Error> {
        let method = Method::from_bytes(method.as_bytes())
            .unwrap_or_else(|e| panic!("invalid method {method:?}: {e}"));
        let mut req = Request::to(method, self.addr, path).timeout(REQUEST_TIMEOUT);
        if let Some(token) = token {
            req = req.bearer(token);
        }
        if let Some(body) = body {
            req = req.json(body.to_vec());
        }
        http_client::blocking::request(req)
    }

    /// Every stored run of a job, as (run_id, id), newest first: the query at `job_path`
    /// (`/api/v1/metrics/repo/{org}/{repo}/{workflow}/{job}`), page after page.
    #[track_caller]
    pub fn stored_runs(&self, job_path: &str) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let mut path = format!("{job_path}?limit=1000");
        loop {
            let r = self.http("GET", &path, Some(READ_TOKEN), None);
            assert_eq!(r.status, 200, "{path}: {}", r.text());
            for run in r.json().as_array().expect("a JSON array") {
                out.push((
                    run["run_id"].as_str().unwrap_or_default().to_owned(),
                    run["id"].as_u64().unwrap_or_default(),
                ));
            }
            match r.header("x-next-cursor") {
                Some(c) => path = format!("{job_path}?limit=1000&cursor={c}"),
                None => return out,
            }
        }
    }

    /// A push token for a scope given as JSON
    /// (`{"organization":"o","repository":"*","workflow":"*","job":"*"}`).
    #[track_caller]
    pub fn push_token(&self, scope_json: &str) -> String {
        let r = self.http(
            "POST",
            "/api/v1/token",
            Some(READ_TOKEN),
            Some(scope_json.as_bytes()),
        );
        assert_eq!(r.status, 200, "token request: {}", r.text());
        r.json()["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token in {}", r.text()))
            .to_owned()
    }

    /// Kills the receiver with SIGKILL (a crash) and reaps it. It stays down until
    /// [`Receiver::restart`].
    pub fn sigkill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits for the exit (a graceful shutdown); returns the exit status.
    /// It stays down until [`Receiver::restart`].
    #[track_caller]
    pub fn sigterm(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the receiver is not running");
        let pid = libc::pid_t::try_from(child.id()).expect("a pid fits pid_t");
        // SAFETY: `pid` is our own child, not yet reaped, so it names that process.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(
            sent,
            0,
            "kill -TERM {pid}: {}",
            std::io::Error::last_os_error()
        );
        wait_for(START_STOP, "the receiver to exit after SIGTERM", || {
            child.try_wait().expect("waiting for the receiver")
        })
    }

    /// Starts the receiver again on the same database and port; a running one is stopped
    /// first (SIGTERM). Collectors that point at it keep working.
    #[track_caller]
    pub fn restart(&mut self) {
        if self.child.is_some() {
            let status = self.sigterm();
            assert!(status.success(), "the receiver exited with {status}");
        }
        self.spawn();
    }

    #[track_caller]
    fn spawn(&mut self) {
        let addr_file = self.addr_file();
        match std::fs::remove_file(&addr_file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("removing {}: {e}", addr_file.display()),
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap_or_else(|e| panic!("opening {}: {e}", self.log_path().display()));
        let child = Command::new(&self.bin)
            .arg(format!("--addr={}", self.addr))
            .arg(format!("--db={}", self.db().display()))
            .arg(format!("--addr-file={}", addr_file.display()))
            .args(&self.args)
            .env("RECEIVER_READ_TOKEN", READ_TOKEN)
            .env("RECEIVER_HMAC_KEY", HMAC_KEY)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.bin.display()));
        self.child = Some(child);
        let what = format!("the receiver to write {}", addr_file.display());
        let child = self.child.as_mut().expect("just started");
        let started = wait_for(START_STOP, &what, || {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(Err(status));
            }
            std::fs::read_to_string(&addr_file)
                .ok()
                .and_then(|text| text.trim().parse::<SocketAddr>().ok())
                .map(Ok)
        });
        let addr = match started {
            Ok(addr) => addr,
            Err(status) => {
                self.child = None;
                panic!(
                    "the receiver exited with {status} at start\n{}",
                    self.log_tail()
                );
            }
        };
        self.addr = addr;
    }

    /// The end of the log, for failure messages.
    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!("--- {} (last lines) ---\n{tail}", self.log_path().display())
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.sigkill();
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
    }
}

/// JSON helpers on an answer.
pub trait JsonResponse {
    /// The body as JSON; panics (with the body) if it is not.
    fn json(&self) -> serde_json::Value;
    /// The `error` message of a JSON error answer; panics if there is none.
    fn error(&self) -> String;
}

impl JsonResponse for Response {
    #[track_caller]
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    #[track_caller]
    fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field: {}", self.text()))
            .to_owned()
    }
}
