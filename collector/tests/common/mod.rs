//! Helpers shared by the collector's black-box tests: the real receiver binary on a free
//! loopback port with a real redb file, a minimal HTTP client, and process cleanup.
#![allow(dead_code)]

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub const READ_TOKEN: &str = "collector-tests-read-token";
pub const HMAC_KEY: &str = "collector-tests-hmac-key-0";

/// A child process killed and reaped when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The receiver binary, built next to the collector by `cargo test --workspace`.
pub fn receiver_binary() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_collector")).with_file_name("receiver");
    assert!(
        path.is_file(),
        "{} is missing: run the workspace's tests (`cargo xtask test`), or `cargo build -p receiver` first",
        path.display()
    );
    path
}

/// Starts the receiver on a free port with its database in `dir`; waits until it answers.
pub fn start_receiver(dir: &Path) -> (Killed, u16) {
    let port = free_port();
    (start_receiver_on(dir, port), port)
}

/// Starts the receiver on `port` with its database in `dir`; waits until it answers.
pub fn start_receiver_on(dir: &Path, port: u16) -> Killed {
    std::fs::create_dir_all(dir).unwrap();
    let child = Command::new(receiver_binary())
        .arg(format!("--addr=127.0.0.1:{port}"))
        .arg(format!("--db={}", dir.join("metrics.db").display()))
        .args([
            format!("--read-token={READ_TOKEN}"),
            format!("--hmac-key={HMAC_KEY}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while http(port, "GET", "/healthz", None, None).map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "the receiver did not come up");
        std::thread::sleep(Duration::from_millis(30));
    }
    Killed(child)
}

/// One HTTP/1.1 exchange on loopback: (status, body), or `None` if the connection failed.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let body = body.unwrap_or("");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let status = raw.split_whitespace().nth(1)?.parse().ok()?;
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// A push token from the receiver for a scope given as JSON.
pub fn push_token(port: u16, scope: &str) -> String {
    let (status, body) =
        http(port, "POST", "/api/v1/token", Some(READ_TOKEN), Some(scope)).unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The cgroup v2 mount of this machine (from mountinfo).
pub fn cgroup2_mount() -> PathBuf {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    collector::cgroupfs::cgroup2_mount_point(&text).expect("cgroup v2 mount")
}

/// `usage_usec` of a cgroup's cpu.stat, in ns.
pub fn cgroup_usage_ns(dir: &Path) -> u64 {
    let text = std::fs::read_to_string(dir.join("cpu.stat")).unwrap();
    collector::cgroupfs::parse_keyed(&text, "usage_usec").expect("usage_usec") * 1000
}

/// Waits for `f` to return `Some`, polling, up to `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

pub fn required_in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
        || std::env::var("REQUIRE_EBPF").is_ok_and(|v| v == "1")
}

/// A cgroup subtree made by a test, removed (deepest first) when dropped, also when the test
/// fails, so failed runs leave nothing behind.
pub struct CgroupTree(pub PathBuf);

impl Drop for CgroupTree {
    fn drop(&mut self) {
        fn remove(dir: &Path) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        remove(&e.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
        remove(&self.0);
    }
}
