//! What every package's black-box tests share. A dev-dependency only.
//!
//! # Layout
//!
//! - [`wait`]: [`wait_until`] and [`wait_for`], polling a condition up to a deadline. Tests
//!   never wait with a fixed sleep: a sleep is either too short on a loaded machine or too
//!   long everywhere else.
//! - [`mod@require`]: [`require_root`], [`require_ebpf`] and [`require()`] mark a test that
//!   needs something this machine may lack. Under `CI=true` or `REQUIRE_EBPF=1` a missing
//!   requirement fails the test; elsewhere the test prints `SKIP <test>: <why>` and returns.
//!   Beside them, what a machine has: [`is_root`] and [`which`] (a program on the `PATH` or
//!   in the sbin directories), also used by `cargo xtask`.
//! - [`times`]: [`shell_times_seconds`], a shell's own account of its CPU (`times`).
//! - [`receiver`]: [`Receiver`], the real receiver binary on `127.0.0.1:0` with a real redb
//!   file: requests, push tokens, restart on the same database and port, SIGKILL; and
//!   [`JsonResponse`] for reading JSON answers.
//! - [`postgres`]: a throw-away PostgreSQL cluster (Debian's `postgresql`), shared or per test.
//! - [`webdriver`]: a headless Chromium driven over WebDriver (the web page's tests).
//! - this file: [`free_listener`] and the secrets every test receiver uses
//!   ([`READ_TOKEN`], [`HMAC_KEY`]).

pub mod postgres;
pub mod receiver;
pub mod require;
pub mod times;
pub mod wait;
pub mod webdriver;

pub use receiver::{JsonResponse, Receiver, ReceiverBuilder};
pub use require::{is_root, require, require_ebpf, require_root, requirements_enforced, which};
pub use times::shell_times_seconds;
pub use wait::{wait_for, wait_until};

/// The read (admin) token of every test receiver.
pub const READ_TOKEN: &str = "test-read-token-0123456789";
/// The HMAC key of every test receiver.
pub const HMAC_KEY: &str = "test-hmac-key-0123456789";

/// A listener bound to a port of the kernel's choosing on 127.0.0.1, to hand to a server
/// started in the test's own process: the port is known before the server runs and is
/// never closed and rebound. It blocks; call `set_nonblocking(true)` before handing it to
/// tokio (`tokio::net::TcpListener::from_std`).
pub fn free_listener() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("cannot bind a listener on 127.0.0.1:0: {e}"))
}

/// The name of the running test: libtest names each test's thread after it.
pub(crate) fn test_name() -> String {
    std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .unwrap_or("test")
        .to_owned()
}
