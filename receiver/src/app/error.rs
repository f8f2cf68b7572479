//! Error answers: `{"error": "..."}` with the status, `Allow` on 405,
//! `WWW-Authenticate: Bearer` on 401 and `Retry-After` on a 503 a retry will fix.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use super::Resp;
use crate::store::StoreError;

/// An error answer.
#[derive(Debug)]
pub(crate) struct ApiError {
    /// The status code.
    status: StatusCode,
    /// The `error` field; never contains a secret.
    message: String,
    /// The `Allow` header of a 405.
    allow: Option<&'static str>,
    /// The `Retry-After` header (seconds) of a 503 that a retry will fix.
    retry_after: Option<u32>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            allow: None,
            retry_after: None,
        }
    }

    /// The same error with `Retry-After: secs`.
    pub(crate) fn retry_after(self, secs: u32) -> Self {
        Self {
            retry_after: Some(secs),
            ..self
        }
    }

    /// The status code.
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// The message (no secret in it).
    pub(crate) fn message(&self) -> String {
        self.message.clone()
    }

    pub(crate) fn method_not_allowed(allow: &'static str) -> Self {
        Self {
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: format!("method not allowed; use {allow}"),
            allow: Some(allow),
            retry_after: None,
        }
    }

    pub(crate) fn into_response(self) -> Resp {
        let body = serde_json::json!({ "error": self.message }).to_string();
        let mut resp = json_response(self.status, body);
        if let Some(allow) = self.allow {
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Closed => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "receiver is shutting down")
            }
            // The reason is an I/O error's text (e.g. "No space left on device (os error
            // 28)"): no secret, and what an operator needs.
            e @ StoreError::Unavailable(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).retry_after(1)
            }
            // A row that does not decode names its run and why: an operator's lead.
            e @ StoreError::Corrupt { .. } => {
                tracing::error!(error = %e, "store failure");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
            other => {
                tracing::error!(error = %other, "store failure");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "storage failure")
            }
        }
    }
}

/// A response with a JSON body.
pub(crate) fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
