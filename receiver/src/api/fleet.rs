//! The fleet endpoints (read token), answered from the per-job aggregates
//! ([`summary::fleet`], selected and paged by [`crate::fleet`]), never from every run:
//!
//! - `GET /api/v1/jobs`: every job with runs in the window, filtered, sorted, one page.
//!   Parameters: `organization` (exact), `repository` (prefix), `window` (a duration,
//!   default 30 days), `sort` (`waste`, `starvation`, `duration`, `ooms`, `name`; default
//!   `waste`), `order` (`asc` or `desc`; each sort has its natural one), `limit` (1 to
//!   1000, default 50), `offset`.
//! - `GET /api/v1/history/repo/{org}/{repo}/{workflow}/{job}`: one row per run, newest
//!   first (`limit`, `cursor` as for the query; `X-Next-Cursor` when more follow).
//! - `GET /api/v1/fleet`: totals over the window (`organization`, `repository`, `window`).

use hyper::header::HeaderValue;
use hyper::{Request, StatusCode};
use serde::Serialize;
use summary::fleet::RunRow;

use super::extract::{encode_cursor, job_path, page_params, require_read_token};
use crate::app::{ApiError, AppState, Resp, json_response};
use crate::fleet::{fleet_totals, job_list, list_params};
use crate::store::job_key;

/// A 400 with the parser's message.
fn bad(msg: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, msg)
}

pub(crate) const HISTORY_PREFIX: &str = "/api/v1/history/repo/";

fn encode(answer: &impl Serialize) -> Result<Resp, ApiError> {
    let body = serde_json::to_vec(answer).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not encode the answer",
        )
    })?;
    Ok(json_response(StatusCode::OK, body))
}

pub(crate) async fn jobs<B>(state: &AppState, req: &Request<B>) -> Result<Resp, ApiError> {
    require_read_token(state, req)?;
    let p = list_params(req.uri().query()).map_err(bad)?;
    let all = state.store.jobs().await?;
    encode(&job_list(&all, &p, state.keys.clock_now()))
}

pub(crate) async fn fleet<B>(state: &AppState, req: &Request<B>) -> Result<Resp, ApiError> {
    require_read_token(state, req)?;
    // The list's sort and page parameters are accepted and have no effect on totals.
    let p = list_params(req.uri().query()).map_err(bad)?;
    let all = state.store.jobs().await?;
    encode(&fleet_totals(&all, &p, state.keys.clock_now()))
}

/// The history answer.
#[derive(Debug, Serialize)]
struct History<'a> {
    organization: &'a str,
    repository: &'a str,
    workflow: &'a str,
    job: &'a str,
    runs: Vec<RunRow>,
}

pub(crate) async fn history<B>(state: &AppState, req: &Request<B>) -> Result<Resp, ApiError> {
    require_read_token(state, req)?;
    let [org, repo, workflow, job] = job_path(req.uri().path(), HISTORY_PREFIX)?;
    let page = page_params(req.uri().query())?;
    let key = job_key(&org, &repo, &workflow, &job);
    let (runs, next) = state.store.history(key, page.limit, page.cursor).await?;
    let mut resp = encode(&History {
        organization: &org,
        repository: summary::canonical_repository(&org, &repo),
        workflow: &workflow,
        job: &job,
        runs,
    })?;
    if let Some(next) = next {
        if let Ok(v) = HeaderValue::from_str(&encode_cursor(next)) {
            resp.headers_mut().insert("x-next-cursor", v);
        }
    }
    Ok(resp)
}
