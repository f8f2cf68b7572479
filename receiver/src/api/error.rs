//! Error answers: `{"error": "..."}` with the status, `Allow` on 405 and
//! `WWW-Authenticate: Bearer` on 401.

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
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            allow: None,
        }
    }

    pub(crate) fn method_not_allowed(allow: &'static str) -> Self {
        Self {
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: format!("method not allowed; use {allow}"),
            allow: Some(allow),
        }
    }

    pub(crate) fn into_response(self) -> Resp {
        let body = serde_json::json!({ "error": self.message }).to_string();
        let mut resp = json_response(self.status, body);
        if let Some(allow) = self.allow {
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
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
