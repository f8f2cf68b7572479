//! The fleet view: a web page the receiver serves itself, every byte of it in the binary
//! (no script, no font, nothing fetched from anywhere; it works on an air-gapped network).
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/login` | the sign-in form |
//! | POST | `/login` | form field `token` = the read token: 303 to `/` with a session cookie ([`crate::session`]); 401 and the form again if it is not the read token |
//! | POST | `/logout` | 303 to `/login`, the cookie cleared |
//! | GET | `/` | the fleet: totals and the sortable, filterable job table (the job list's parameters) |
//! | GET | `/job/{org}/{repo}/{workflow}/{job}` | a job: charts of its runs, the recommendation, its runs |
//! | GET | `/job/{org}/{repo}/{workflow}/{job}/run/{id}` | one run: containers, verdicts, commands, timeline |
//!
//! Without a valid session every page but `/login` answers 303 to `/login`. Pages are
//! built by pure functions (`pages.rs`, `run.rs`, charts in `svg.rs`, the frame in `html.rs`).

pub(crate) mod html;
pub(crate) mod pages;
pub(crate) mod run;
pub(crate) mod svg;

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Body, Bytes};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use summary::StoredRun;

use crate::app::{ApiError, AppState, Resp};
use crate::fleet::{fleet_totals, job_list, list_params};
use crate::store::job_key;

/// Runs drawn in a job's charts (the newest).
pub const CHART_RUNS: usize = 100;
/// Largest sign-in form body.
const LOGIN_BODY_BYTES: usize = 4096;

/// Whether `path` is one of the page's.
pub fn is_page(path: &str) -> bool {
    matches!(path, "/" | "/login" | "/logout" | "/favicon.ico") || path.starts_with("/job/")
}

fn html(status: StatusCode, body: String) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(html::csp()) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

fn redirect(location: &str, cookie: Option<String>) -> Resp {
    let mut resp = html(StatusCode::SEE_OTHER, String::new());
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(v) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

fn error_page(status: StatusCode, message: &str) -> Resp {
    let body = format!(
        r#"<h1>{}</h1><p>{}</p><p><a href="/">Back to the fleet</a></p>"#,
        status.as_u16(),
        html::esc(message)
    );
    html(
        status,
        html::page(status.canonical_reason().unwrap_or("Error"), true, &body),
    )
}

fn store_error(e: crate::store::StoreError) -> Resp {
    let e = ApiError::from(e);
    error_page(e.status(), &e.message())
}

fn signed_in<B>(state: &AppState, req: &Request<B>) -> bool {
    let now = state.keys.now();
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(crate::session::from_cookie_header)
        .any(|v| state.session.verify(v, now))
}

/// Answers a page request; the route name is for the request metrics.
pub async fn handle<B>(state: &AppState, req: Request<B>) -> (&'static str, Resp)
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    match (&method, path.as_str()) {
        (&Method::GET, "/login") => {
            if signed_in(state, &req) {
                ("page-login", redirect("/", None))
            } else {
                ("page-login", html(StatusCode::OK, pages::login(None)))
            }
        }
        (&Method::POST, "/login") => ("page-login", login(state, req).await),
        (&Method::POST, "/logout") => (
            "page-logout",
            redirect("/login", Some(crate::session::clear_cookie())),
        ),
        (_, "/login" | "/logout") => (
            "page-login",
            error_page(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        ),
        _ if !signed_in(state, &req) => ("page-redirect", redirect("/login", None)),
        (&Method::GET, "/") => ("page-fleet", fleet_page(state, &req).await),
        (&Method::GET, p) if p.starts_with("/job/") => ("page-job", job_or_run(state, p).await),
        (&Method::GET, _) => (
            "page-other",
            error_page(StatusCode::NOT_FOUND, "no such page"),
        ),
        _ => (
            "page-other",
            error_page(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        ),
    }
}

/// The `token` field of a form body.
fn form_token(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    crate::app::query_pairs(Some(text))
        .ok()?
        .into_iter()
        .find_map(|(k, v)| (k == "token").then_some(v))
}

async fn login<B>(state: &AppState, req: Request<B>) -> Resp
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limited = Limited::new(req.into_body(), LOGIN_BODY_BYTES);
    let body = match tokio::time::timeout(state.body_timeout, limited.collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        _ => {
            return html(
                StatusCode::BAD_REQUEST,
                pages::login(Some("The form could not be read; try again.")),
            );
        }
    };
    match form_token(&body) {
        Some(token) if state.keys.is_read_token(token.trim()) => {
            let cookie = state
                .session
                .issue(state.keys.now(), crate::session::nonce());
            tracing::info!("web session started");
            redirect("/", Some(crate::session::set_cookie(&cookie)))
        }
        _ => {
            tracing::info!("web sign-in refused: not the read token");
            html(
                StatusCode::UNAUTHORIZED,
                pages::login(Some("That is not the receiver's read token.")),
            )
        }
    }
}

async fn fleet_page<B>(state: &AppState, req: &Request<B>) -> Resp {
    let p = match list_params(req.uri().query()) {
        Ok(p) => p,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e),
    };
    let jobs = match state.store.jobs().await {
        Ok(j) => j,
        Err(e) => return store_error(e),
    };
    let now = state.keys.clock_now();
    let list = job_list(&jobs, &p, now);
    let totals = fleet_totals(&jobs, &p, now);
    html(StatusCode::OK, pages::fleet(&list, &totals, &p))
}

/// `/job/{org}/{repo}/{workflow}/{job}` or `.../run/{id}`, percent-decoded.
fn job_segments(path: &str) -> Option<([String; 4], Option<u64>)> {
    let rest = path.strip_prefix("/job/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    let (job, run) = match parts[..] {
        [o, r, w, j] => ([o, r, w, j], None),
        [o, r, w, j, "run", id] => ([o, r, w, j], Some(id.parse().ok()?)),
        _ => return None,
    };
    if job.iter().any(|s| s.is_empty()) {
        return None;
    }
    let mut out: [String; 4] = Default::default();
    for (o, s) in out.iter_mut().zip(job) {
        *o = crate::app::percent_decode(s)?;
    }
    Some((out, run))
}

async fn job_or_run(state: &AppState, path: &str) -> Resp {
    let Some(([org, repo, workflow, job], run)) = job_segments(path) else {
        return error_page(StatusCode::NOT_FOUND, "no such page");
    };
    let key = job_key(&org, &repo, &workflow, &job);
    if let Some(id) = run {
        return match state.store.run(key, id).await {
            Ok(Some(raw)) => match serde_json::from_slice::<StoredRun>(&raw) {
                Ok(r) => html(StatusCode::OK, run::run(&r)),
                Err(_) => error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the stored run does not parse",
                ),
            },
            Ok(None) => error_page(StatusCode::NOT_FOUND, "no such run of this job"),
            Err(e) => store_error(e),
        };
    }
    let aggregate = match state.store.job(key.clone()).await {
        Ok(Some(a)) => a,
        Ok(None) => return error_page(StatusCode::NOT_FOUND, "no runs stored for this job"),
        Err(e) => return store_error(e),
    };
    let rows = match state.store.history(key.clone(), CHART_RUNS, None).await {
        Ok((rows, _)) => rows,
        Err(e) => return store_error(e),
    };
    let params = summary::sizing::SizingParams {
        classes: state.runner_classes.clone(),
        ..Default::default()
    };
    let window = crate::fleet::DEFAULT_WINDOW;
    let now = state.keys.clock_now();
    let sizing = crate::sizer::compute(&state.store, &key, &params, window, now)
        .await
        .ok()
        .map(|(s, _)| s);
    html(
        StatusCode::OK,
        pages::job(&aggregate, &rows, sizing.as_ref()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_forms() {
        assert!(is_page("/") && is_page("/job/a") && is_page("/login"));
        assert!(!is_page("/api/v1/jobs") && !is_page("/healthz"));
        let (job, run) = job_segments("/job/o/r/ci.yml/%3Cimg%3E/run/7").unwrap();
        assert_eq!(job[3], "<img>");
        assert_eq!(run, Some(7));
        assert!(job_segments("/job/o/r/w").is_none());
        assert!(job_segments("/job/o//w/j").is_none());
        assert!(job_segments("/job/o/r/w/j/run/x").is_none());
        assert!(job_segments("/job/o/r/w/%zz").is_none());
        assert_eq!(form_token(b"token=a%2Bb+c&x=1").as_deref(), Some("a+b c"));
        assert_eq!(form_token(b"x=1"), None);
        assert_eq!(form_token(&[0xff]), None);
    }
}
