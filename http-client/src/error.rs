//! Why a request got no answer.

use std::time::Duration;

/// The step of a request that failed or ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Opening the TCP connection (name resolution included).
    Connect,
    /// The HTTP/1.1 handshake, writing the request and waiting for the answer's head.
    Send,
    /// Reading the answer's body.
    Read,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::Connect => "connecting",
            Step::Send => "sending the request",
            Step::Read => "reading the response",
        })
    }
}

/// A request that got no (complete) answer. Every variant but [`Error::Invalid`] and
/// [`Error::Runtime`] names the server's `host:port` and the [`Step`] that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL, a header or the path is not valid; nothing was sent.
    #[error("invalid request to {url:?}: {reason}")]
    Invalid {
        /// The URL (or `host:port` and path) as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The TCP connection could not be opened.
    #[error("connecting to {addr}: {cause}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// The socket error.
        cause: std::io::Error,
    },
    /// The request could not be sent, or the connection closed before an answer came.
    #[error("sending the request to {addr}: {cause}")]
    Send {
        /// `host:port`.
        addr: String,
        /// hyper's error.
        cause: hyper::Error,
    },
    /// The answer's body could not be read to its end.
    #[error("reading the response from {addr}: {cause}")]
    Read {
        /// `host:port`.
        addr: String,
        /// hyper's error.
        cause: hyper::Error,
    },
    /// The request's overall timeout passed.
    #[error("no complete answer from {addr} within {timeout:?} (timed out {step})")]
    Timeout {
        /// `host:port`.
        addr: String,
        /// The step under way when time ran out.
        step: Step,
        /// The request's overall timeout.
        timeout: Duration,
    },
    /// [`crate::blocking`] could not start its runtime.
    #[error("cannot start the runtime of a blocking request: {0}")]
    Runtime(std::io::Error),
}

impl Error {
    /// The step that failed; `None` if nothing was sent (or no runtime could start).
    pub fn step(&self) -> Option<Step> {
        match self {
            Error::Invalid { .. } | Error::Runtime(_) => None,
            Error::Connect { .. } => Some(Step::Connect),
            Error::Send { .. } => Some(Step::Send),
            Error::Read { .. } => Some(Step::Read),
            Error::Timeout { step, .. } => Some(*step),
        }
    }

    /// The server's `host:port`, when the request got as far as trying to reach it.
    pub fn addr(&self) -> Option<&str> {
        match self {
            Error::Connect { addr, .. }
            | Error::Send { addr, .. }
            | Error::Read { addr, .. }
            | Error::Timeout { addr, .. } => Some(addr),
            Error::Invalid { .. } | Error::Runtime(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_address_and_the_step() {
        let e = Error::Timeout {
            addr: "127.0.0.1:9".into(),
            step: Step::Read,
            timeout: Duration::from_millis(250),
        };
        assert_eq!(
            e.to_string(),
            "no complete answer from 127.0.0.1:9 within 250ms (timed out reading the response)"
        );
        assert_eq!(
            (e.step(), e.addr()),
            (Some(Step::Read), Some("127.0.0.1:9"))
        );
        let e = Error::Connect {
            addr: "receiver:8080".into(),
            cause: std::io::ErrorKind::ConnectionRefused.into(),
        };
        assert!(
            e.to_string().starts_with("connecting to receiver:8080: "),
            "{e}"
        );
    }
}
