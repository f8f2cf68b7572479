//! The fleet endpoints (read token), answered from the per-job aggregates
//! ([`summary::fleet`]), never from every run:
//!
//! - `GET /api/v1/jobs`: every job with runs in the window, filtered, sorted, one page.
//!   Parameters: `organization` (exact), `repository` (prefix), `window` (a duration,
//!   default 30 days), `sort` (`waste`, `starvation`, `duration`, `ooms`, `name`; default
//!   `waste`), `order` (`asc` or `desc`; each sort has its natural one), `limit` (1 to
//!   1000, default 50), `offset`.
//! - `GET /api/v1/history/repo/{org}/{repo}/{workflow}/{job}`: one row per run, newest
//!   first (`limit`, `cursor` as for the query; `X-Next-Cursor` when more follow).
//! - `GET /api/v1/fleet`: totals over the window (`organization`, `repository`, `window`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::header::HeaderValue;
use hyper::{Request, StatusCode};
use serde::Serialize;
use summary::fleet::{FleetTotals, JobAggregate, JobEntry, RunRow, SortBy, sort, totals};

use super::error::{ApiError, json_response};
use super::extract::{encode_cursor, job_path, page_params, require_read_token};
use super::sizing::DEFAULT_WINDOW;
use super::{AppState, DEFAULT_LIMIT, MAX_LIMIT, Resp};
use crate::store::job_key;

pub(crate) const HISTORY_PREFIX: &str = "/api/v1/history/repo/";

/// What the job list and the totals are asked for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ListParams {
    pub organization: Option<String>,
    pub repository: Option<String>,
    pub window: Duration,
    pub sort: SortBy,
    /// `asc` or `desc` as asked; `None`: the sort's natural order.
    pub order: Option<&'static str>,
    pub limit: usize,
    pub offset: usize,
}

impl Default for ListParams {
    fn default() -> Self {
        Self {
            organization: None,
            repository: None,
            window: DEFAULT_WINDOW,
            sort: SortBy::default(),
            order: None,
            limit: DEFAULT_LIMIT,
            offset: 0,
        }
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, msg)
}

/// Parses the job list's query string (the totals take its filters and window only).
/// Unknown parameters are an error; empty values mean "not given" (an empty form field).
pub(crate) fn list_params(query: Option<&str>) -> Result<ListParams, ApiError> {
    let mut p = ListParams::default();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = super::percent_decode(&v.replace('+', " "))
            .ok_or_else(|| bad("malformed percent-encoding in query"))?;
        if v.is_empty() {
            continue;
        }
        match k {
            "organization" => p.organization = Some(v),
            "repository" => p.repository = Some(v),
            "window" => {
                p.window = summary::duration::parse_duration(&v)
                    .map_err(|e| bad(format!("window: {e}")))?;
            }
            "sort" => {
                p.sort = SortBy::parse(&v)
                    .ok_or_else(|| bad(format!("sort must be one of {}", SortBy::NAMES)))?;
            }
            "order" => {
                p.order = Some(match v.as_str() {
                    "asc" => "asc",
                    "desc" => "desc",
                    _ => return Err(bad("order must be asc or desc")),
                });
            }
            "limit" => {
                p.limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| bad("limit must be an integer from 1 to 1000"))?;
            }
            "offset" => {
                p.offset = v
                    .parse()
                    .map_err(|_| bad("offset must be a non-negative integer"))?;
            }
            other => {
                return Err(bad(format!(
                    "unknown query parameter {other:?} (organization, repository, window, sort, \
                     order, limit, offset)"
                )));
            }
        }
    }
    Ok(p)
}

/// The job list answer.
#[derive(Debug, Serialize)]
pub(crate) struct JobList {
    pub jobs: Vec<JobEntry>,
    /// Jobs matching the filters, over every page.
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    pub sort: &'static str,
    pub order: &'static str,
    pub window_seconds: u64,
}

/// Unix milliseconds of `now - window`.
fn since_ms(now: SystemTime, window: Duration) -> i64 {
    now.checked_sub(window)
        .unwrap_or(UNIX_EPOCH)
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn matches(a: &JobAggregate, p: &ListParams) -> bool {
    p.organization
        .as_deref()
        .is_none_or(|o| a.organization == o)
        && p.repository
            .as_deref()
            .is_none_or(|r| a.repository.starts_with(r))
}

/// The page of the job list `p` asks for, from every job's aggregate. Pure.
pub(crate) fn job_list(jobs: &[JobAggregate], p: &ListParams, now: SystemTime) -> JobList {
    let since = since_ms(now, p.window);
    let mut entries: Vec<JobEntry> = jobs
        .iter()
        .filter(|a| matches(a, p))
        .map(|a| JobEntry::of(a, since))
        .filter(|e| e.runs_in_window > 0)
        .collect();
    let natural = if p.sort == SortBy::Name {
        "asc"
    } else {
        "desc"
    };
    let order = p.order.unwrap_or(natural);
    sort(&mut entries, p.sort, order != natural);
    let total = entries.len();
    let jobs = entries.into_iter().skip(p.offset).take(p.limit).collect();
    JobList {
        jobs,
        total,
        offset: p.offset,
        limit: p.limit,
        sort: p.sort.as_str(),
        order,
        window_seconds: p.window.as_secs(),
    }
}

/// Fleet totals over `p`'s filters and window. Pure.
pub(crate) fn fleet_totals(jobs: &[JobAggregate], p: &ListParams, now: SystemTime) -> FleetTotals {
    totals(
        jobs.iter().filter(|a| matches(a, p)),
        since_ms(now, p.window),
        p.window.as_secs(),
    )
}

/// Every job's aggregate, read off the request task.
pub(crate) async fn load_jobs(state: &AppState) -> Result<Vec<JobAggregate>, ApiError> {
    state.store.jobs().await.map_err(ApiError::from)
}

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
    let p = list_params(req.uri().query())?;
    let all = load_jobs(state).await?;
    encode(&job_list(&all, &p, state.keys.clock_now()))
}

pub(crate) async fn fleet<B>(state: &AppState, req: &Request<B>) -> Result<Resp, ApiError> {
    require_read_token(state, req)?;
    // The list's sort and page parameters are accepted and have no effect on totals.
    let p = list_params(req.uri().query())?;
    let all = load_jobs(state).await?;
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

/// One page of a job's rows, newest first, and the cursor of the next.
pub(crate) async fn load_history(
    state: &AppState,
    key: Vec<u8>,
    limit: usize,
    cursor: Option<u64>,
) -> Result<(Vec<RunRow>, Option<u64>), ApiError> {
    state
        .store
        .history(key, limit, cursor)
        .await
        .map_err(ApiError::from)
}

pub(crate) async fn history<B>(state: &AppState, req: &Request<B>) -> Result<Resp, ApiError> {
    require_read_token(state, req)?;
    let [org, repo, workflow, job] = job_path(req.uri().path(), HISTORY_PREFIX)?;
    let page = page_params(req.uri().query())?;
    let key = job_key(&org, &repo, &workflow, &job);
    let (runs, next) = load_history(state, key, page.limit, page.cursor).await?;
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

#[cfg(test)]
mod tests {
    use summary::fleet::RunRow;

    use super::*;

    #[test]
    fn parameters() {
        assert_eq!(list_params(None).unwrap(), ListParams::default());
        let p = list_params(Some(
            "organization=acme&repository=web%2Dapp&window=7d&sort=ooms&order=asc&limit=5&offset=10&sort=",
        ))
        .unwrap();
        assert_eq!(p.organization.as_deref(), Some("acme"));
        assert_eq!(p.repository.as_deref(), Some("web-app"));
        assert_eq!(p.window, Duration::from_secs(7 * 86_400));
        assert_eq!(
            (p.sort, p.order, p.limit, p.offset),
            (SortBy::Ooms, Some("asc"), 5, 10)
        );
        for q in [
            "sort=size",
            "order=up",
            "limit=0",
            "limit=1001",
            "offset=-1",
            "window=x",
            "page=2",
            "organization=%zz",
        ] {
            assert_eq!(
                list_params(Some(q)).unwrap_err().into_response().status(),
                400,
                "{q}"
            );
        }
    }

    #[test]
    fn list_filters_sorts_and_pages() {
        let now = UNIX_EPOCH + Duration::from_secs(100 * 86_400);
        let mk = |org: &str, repo: &str, job: &str, day: u64, secs: f64| {
            let mut a = JobAggregate::new(org, repo, "w", job);
            let mut r = RunRow {
                duration_seconds: secs,
                ..RunRow::default()
            };
            r.time_ms = (day * 86_400_000) as i64;
            r.stamp(1, 0);
            a.add(&r);
            a
        };
        let all = vec![
            mk("acme", "web", "a", 99, 10.0),
            mk("acme", "web", "b", 99, 30.0),
            mk("acme", "api", "c", 99, 20.0),
            mk("other", "web", "d", 99, 40.0),
            mk("acme", "web", "old", 10, 50.0),
        ];
        let p = ListParams {
            organization: Some("acme".into()),
            sort: SortBy::Duration,
            ..ListParams::default()
        };
        let l = job_list(&all, &p, now);
        assert_eq!(
            l.total, 3,
            "the old job is outside the window, d in another org"
        );
        assert_eq!(
            l.jobs.iter().map(|e| e.job.as_str()).collect::<Vec<_>>(),
            ["b", "c", "a"]
        );
        let l = job_list(
            &all,
            &ListParams {
                repository: Some("we".into()),
                limit: 1,
                offset: 1,
                ..p.clone()
            },
            now,
        );
        assert_eq!((l.total, l.jobs.len(), l.jobs[0].job.as_str()), (2, 1, "a"));
        let l = job_list(
            &all,
            &ListParams {
                order: Some("asc"),
                ..p.clone()
            },
            now,
        );
        assert_eq!(l.jobs[0].job, "a");
        let t = fleet_totals(&all, &ListParams::default(), now);
        assert_eq!((t.jobs, t.runs), (4, 4));
    }
}
