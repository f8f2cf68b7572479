//! Pushing the run summary to the receiver, and never losing it.
//!
//! `POST` with the Bearer push token, retried with exponential backoff until a deadline.
//! Answers that cannot improve with a retry (400/401/403/404/413/415/422) stop at once. If the
//! summary cannot be delivered it is written to a file and the path is logged.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use http_client::{Bytes, StatusCode};
use hyper::Uri;
use summary::MetricsPush;

use super::file::write_atomically;

/// Where and how to push.
#[derive(Clone, Debug)]
pub struct PushTarget {
    pub endpoint: Uri,
    pub token: Option<String>,
    /// Total time allowed for all attempts.
    pub deadline: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("invalid --push-endpoint {0:?}: {1}")]
    BadEndpoint(String, String),
    #[error("the receiver refused the summary with {status}: {body}")]
    Refused { status: StatusCode, body: String },
    #[error("gave up after {attempts} attempts in {elapsed:.1?}: {last}")]
    GaveUp {
        attempts: u32,
        elapsed: Duration,
        last: String,
    },
}

impl PushTarget {
    /// Validates an `http://host[:port]/path` endpoint. HTTPS needs a TLS-terminating proxy in
    /// front of the receiver (the collector keeps no TLS stack).
    pub fn new(
        endpoint: &str,
        token: Option<String>,
        deadline: Duration,
    ) -> Result<Self, PushError> {
        let bad = |why: &str| PushError::BadEndpoint(endpoint.to_owned(), why.to_owned());
        let uri: Uri = endpoint
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| bad(&e.to_string()))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(bad(
                    "https is not supported; put a TLS-terminating proxy in front of the receiver or use http:// inside the cluster",
                ));
            }
            _ => return Err(bad("expected http://host[:port]/api/v1/metrics")),
        }
        if uri.host().is_none() {
            return Err(bad("no host"));
        }
        Ok(Self {
            endpoint: uri,
            token: token.filter(|t| !t.is_empty()),
            deadline,
        })
    }
}

/// Pushes `push`, retrying within the deadline. Returns the receiver's answer body.
pub async fn push(target: &PushTarget, push: &MetricsPush) -> Result<String, PushError> {
    let body = Bytes::from(serde_json::to_vec(push).expect("summaries serialize"));
    let started = Instant::now();
    let mut delays = backoff(Duration::from_millis(250), Duration::from_secs(5));
    let mut attempts = 0;
    loop {
        attempts += 1;
        let remaining = target.deadline.saturating_sub(started.elapsed());
        let attempt = post_once(
            target,
            body.clone(),
            remaining.max(Duration::from_millis(1)),
        );
        let last = match attempt.await {
            Ok((status, text)) if status.is_success() => {
                tracing::info!(%status, attempts, "summary pushed to {}", target.endpoint);
                return Ok(text);
            }
            Ok((status, text)) if !retryable(status) => {
                return Err(PushError::Refused { status, body: text });
            }
            Ok((status, text)) => format!("{status}: {text}"),
            Err(e) => e,
        };
        let elapsed = started.elapsed();
        let backoff = delays.next().unwrap_or(Duration::from_secs(5));
        if elapsed + backoff >= target.deadline {
            return Err(PushError::GaveUp {
                attempts,
                elapsed,
                last,
            });
        }
        tracing::warn!(attempts, "push failed ({last}); retrying in {backoff:.1?}");
        tokio::time::sleep(backoff).await;
    }
}

/// Exponential delays from `min` to `max`, with jitter so that collectors that lost the
/// receiver together do not come back in step; endless (callers keep their own deadline).
pub fn backoff(min: Duration, max: Duration) -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_jitter()
        .without_max_times()
        .build()
}

/// 408, 429 and 5xx may succeed later; other client errors will not.
fn retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

async fn post_once(
    target: &PushTarget,
    body: Bytes,
    timeout: Duration,
) -> Result<(StatusCode, String), String> {
    let mut request = http_client::Request::post(target.endpoint.to_string())
        .header(
            "user-agent",
            concat!("ci-collector/", env!("CARGO_PKG_VERSION")),
        )
        .json(body)
        .timeout(timeout);
    if let Some(token) = &target.token {
        request = request.bearer(token);
    }
    let response = http_client::request(request)
        .await
        .map_err(|e| e.to_string())?;
    let mut text = response.text().into_owned();
    text.truncate(512);
    Ok((response.status, text))
}

/// Writes the summary where a person can find it; falls back to the temp directory when the
/// preferred place is not writable. Returns the path written.
pub fn write_summary_file(push: &MetricsPush, preferred: &Path) -> std::io::Result<PathBuf> {
    let json = serde_json::to_vec_pretty(push).expect("summaries serialize");
    match write_atomically(preferred, &json) {
        Ok(()) => Ok(preferred.to_path_buf()),
        Err(first) => {
            let name = preferred
                .file_name()
                .map(|n| n.to_owned())
                .unwrap_or_else(|| "collector-summary.json".into());
            let fallback = std::env::temp_dir().join(name);
            write_atomically(&fallback, &json).map_err(|second| {
                std::io::Error::other(format!(
                    "{}: {first}; {}: {second}",
                    preferred.display(),
                    fallback.display()
                ))
            })?;
            Ok(fallback)
        }
    }
}

/// Pushes the summary (or prints it when there is no endpoint and `print` is set); on
/// failure writes it to `file` (default `./collector-summary-<run id>.json`) and says where.
pub async fn deliver(
    target: Option<&PushTarget>,
    file: Option<&Path>,
    push: MetricsPush,
    print: bool,
) -> anyhow::Result<()> {
    let Some(target) = target else {
        if print {
            println!("{}", serde_json::to_string_pretty(&push.summary)?);
        }
        return Ok(());
    };
    let Err(e) = self::push(target, &push).await else {
        return Ok(());
    };
    tracing::error!("could not push the summary: {e}");
    let file = file.map_or_else(|| default_summary_file(&push), Path::to_path_buf);
    match write_summary_file(&push, &file) {
        Ok(path) => tracing::warn!(
            "summary written to {} (push it later or read it there)",
            path.display()
        ),
        Err(w) => {
            tracing::error!("could not write the summary file either ({w}); printing it to stdout");
            println!("{}", serde_json::to_string_pretty(&push)?);
        }
    }
    Ok(())
}

/// `collector-summary-<run id, or start time>.json` in the current directory.
fn default_summary_file(push: &MetricsPush) -> PathBuf {
    let id = if push.execution.run_id.is_empty() {
        push.summary.start_time.replace([':', '.'], "-")
    } else {
        push.execution
            .run_id
            .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_")
    };
    PathBuf::from(format!("collector-summary-{id}.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_validated() {
        let t = PushTarget::new(
            "http://receiver:8080/api/v1/metrics",
            Some("t".into()),
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(t.endpoint.port_u16(), Some(8080));
        assert!(matches!(
            PushTarget::new("https://x/api", None, Duration::ZERO),
            Err(PushError::BadEndpoint(..))
        ));
        assert!(matches!(
            PushTarget::new("receiver:8080", None, Duration::ZERO),
            Err(PushError::BadEndpoint(..))
        ));
        assert!(matches!(
            PushTarget::new("http://", None, Duration::ZERO),
            Err(PushError::BadEndpoint(..))
        ));
        // An empty token is no token.
        assert!(
            PushTarget::new("http://h/p", Some(String::new()), Duration::ZERO)
                .unwrap()
                .token
                .is_none()
        );
    }

    #[test]
    fn retry_policy() {
        assert!(retryable(StatusCode::SERVICE_UNAVAILABLE));
        assert!(retryable(StatusCode::TOO_MANY_REQUESTS));
        assert!(!retryable(StatusCode::UNAUTHORIZED));
        assert!(!retryable(StatusCode::UNPROCESSABLE_ENTITY));
    }

    #[tokio::test]
    async fn an_unreachable_receiver_gives_up_within_the_deadline() {
        // A port bound but not listening, held for the whole test: connections to it are
        // refused, and no other process can take it meanwhile (as a bind-then-close could).
        let (_held, port) = bound_not_listening();
        let t = PushTarget::new(
            &format!("http://127.0.0.1:{port}/api/v1/metrics"),
            None,
            Duration::from_millis(900),
        )
        .unwrap();
        let started = Instant::now();
        let push = MetricsPush {
            execution: Default::default(),
            summary: Default::default(),
        };
        let err = super::push(&t, &push).await.unwrap_err();
        assert!(
            matches!(err, PushError::GaveUp { attempts, .. } if attempts >= 2),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    /// A TCP socket bound to a free loopback port without `listen`, and that port.
    fn bound_not_listening() -> (std::os::fd::OwnedFd, u16) {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket calls on a fresh descriptor, owned right after creation;
        // the address structures are valid for their stated lengths.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let owned = std::os::fd::OwnedFd::from_raw_fd(fd);
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let rc = libc::bind(fd, (&raw const addr).cast(), len);
            assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
            let mut got_len = len;
            let rc = libc::getsockname(fd, (&raw mut addr).cast(), &mut got_len);
            assert_eq!(rc, 0, "getsockname: {}", std::io::Error::last_os_error());
            (owned, u16::from_be(addr.sin_port))
        }
    }

    #[test]
    fn summary_file_falls_back_to_temp_dir() {
        let push = MetricsPush {
            execution: Default::default(),
            summary: Default::default(),
        };
        let name = format!("collector-push-test-{}.json", std::process::id());
        let written =
            write_summary_file(&push, &Path::new("/nonexistent-dir").join(&name)).unwrap();
        assert_eq!(written, std::env::temp_dir().join(&name));
        let back: MetricsPush = serde_json::from_slice(&std::fs::read(&written).unwrap()).unwrap();
        assert_eq!(back, push);
        std::fs::remove_file(written).unwrap();
    }
}
