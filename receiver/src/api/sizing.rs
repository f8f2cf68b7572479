//! `GET /api/v1/sizing/repo/{org}/{repo}/{workflow}/{job}` (read token): what the job
//! should get, from its most recent runs in a window ([`summary::sizing::recommend`]).
//!
//! Query parameters (CI Sizer's names where it has them): `runs` (1 to 100, default 20),
//! `buffer` (margin percent, 0 to 200, default 15), `cpu_percentile` (`peak`, `p99`,
//! `p95`, `p75`, `p50`, `avg`; default `p95`), `window` (how far back, a duration such as
//! `14d` or `12h`; default 30 days) and `cpu_limit` (`true` to also recommend a CPU limit).

use std::time::Duration;

use hyper::{Request, StatusCode};
use serde::Serialize;
use summary::sizing::{Percentile, Sizing, SizingParams};

use super::extract::{job_path, require_read_token};
use crate::app::{ApiError, AppState, Resp, json_response};
use crate::fleet::DEFAULT_WINDOW;
use crate::sizer::compute;
use crate::store::job_key;

pub(crate) const SIZING_PREFIX: &str = "/api/v1/sizing/repo/";

/// Largest `buffer`, percent.
const MAX_BUFFER: f64 = 200.0;

/// The answer: the job, the window, and the sizing.
#[derive(Debug, Serialize)]
struct Answer<'a> {
    organization: &'a str,
    repository: &'a str,
    workflow: &'a str,
    job: &'a str,
    window_seconds: u64,
    #[serde(flatten)]
    sizing: Sizing,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Params {
    pub sizing: SizingParams,
    pub window: Duration,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, msg)
}

/// Parses the query string; unknown parameters are an error (a typo must not silently give
/// a default answer).
pub(crate) fn params(query: Option<&str>) -> Result<Params, ApiError> {
    let mut p = Params {
        sizing: SizingParams::default(),
        window: DEFAULT_WINDOW,
    };
    for (k, v) in crate::app::query_pairs(query).map_err(bad)? {
        match k.as_str() {
            "runs" => {
                p.sizing.runs = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=summary::sizing::MAX_RUNS).contains(n))
                    .ok_or_else(|| bad("runs must be an integer from 1 to 100"))?;
            }
            "buffer" => {
                p.sizing.buffer_percent = v
                    .parse::<f64>()
                    .ok()
                    .filter(|b| b.is_finite() && (0.0..=MAX_BUFFER).contains(b))
                    .ok_or_else(|| bad("buffer must be a percentage from 0 to 200"))?;
            }
            "cpu_percentile" => {
                p.sizing.cpu_percentile = Percentile::parse(&v).ok_or_else(|| {
                    bad("cpu_percentile must be one of peak, p99, p95, p75, p50, avg")
                })?;
            }
            "window" => {
                p.window = summary::duration::parse_duration(&v)
                    .map_err(|e| bad(format!("window: {e}")))?;
            }
            "cpu_limit" => {
                p.sizing.cpu_limit = match v.as_str() {
                    "true" | "1" | "" => true,
                    "false" | "0" => false,
                    _ => return Err(bad("cpu_limit must be true or false")),
                };
            }
            other => {
                return Err(bad(format!(
                    "unknown query parameter {other:?} (runs, buffer, cpu_percentile, window, cpu_limit)"
                )));
            }
        }
    }
    Ok(p)
}

pub(crate) async fn sizing<B>(state: &AppState, req: &Request<B>) -> Result<Resp, ApiError> {
    require_read_token(state, req)?;
    let [org, repo, workflow, job] = job_path(req.uri().path(), SIZING_PREFIX)?;
    let mut p = params(req.uri().query())?;
    p.sizing.classes.clone_from(&state.runner_classes);
    let key = job_key(&org, &repo, &workflow, &job);
    let now = state.keys.clock_now();
    let (sizing, _) = compute(&state.store, &key, &p.sizing, p.window, now).await?;
    let answer = Answer {
        organization: &org,
        repository: &repo,
        workflow: &workflow,
        job: &job,
        window_seconds: p.window.as_secs(),
        sizing,
    };
    let body = serde_json::to_vec(&answer).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not encode the answer",
        )
    })?;
    Ok(json_response(StatusCode::OK, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(q: &str) -> u16 {
        params(Some(q))
            .unwrap_err()
            .into_response()
            .status()
            .as_u16()
    }

    #[test]
    fn parameters() {
        let p = params(None).unwrap();
        assert_eq!(p.sizing, SizingParams::default());
        assert_eq!(p.window, DEFAULT_WINDOW);
        let p = params(Some(
            "runs=5&buffer=20&cpu_percentile=p99&window=14d&cpu_limit=true",
        ))
        .unwrap();
        assert_eq!(p.sizing.runs, 5);
        assert_eq!(p.sizing.buffer_percent, 20.0);
        assert_eq!(p.sizing.cpu_percentile, Percentile::P99);
        assert_eq!(p.window, Duration::from_secs(14 * 86_400));
        assert!(p.sizing.cpu_limit);
        assert_eq!(
            params(Some("window=1h%2030m")).unwrap().window,
            Duration::from_secs(5400)
        );
        for bad in [
            "runs=0",
            "runs=101",
            "runs=x",
            "buffer=-1",
            "buffer=NaN",
            "buffer=201",
            "cpu_percentile=p90",
            "window=0s",
            "window=soon",
            "cpu_limit=maybe",
            "limit=5",
            "runs=%zz",
        ] {
            assert_eq!(status(bad), 400, "{bad}");
        }
    }
}
