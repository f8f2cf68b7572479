//! The fleet's selections, without HTTP: which jobs the job list and the totals are asked
//! for ([`ListParams`], parsed from a query string), the page of the job list and the totals
//! over the window, from every job's aggregate. The API (`api/fleet.rs`) and the web page
//! both answer from here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use summary::fleet::{FleetTotals, JobAggregate, JobEntry, SortBy, sort, totals};

/// The window the job list, the totals and the sizing look back over by default.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(30 * 86_400);
/// Default page size of the list answers (runs, jobs, history).
pub const DEFAULT_LIMIT: usize = 50;
/// Largest page size of the list answers.
pub const MAX_LIMIT: usize = 1000;

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

/// Parses the job list's query string (the totals take its filters and window only).
/// Unknown parameters are an error; empty values mean "not given" (an empty form field).
pub(crate) fn list_params(query: Option<&str>) -> Result<ListParams, String> {
    let mut p = ListParams::default();
    for (k, v) in crate::app::query_pairs(query)? {
        if v.is_empty() {
            continue;
        }
        match k.as_str() {
            "organization" => p.organization = Some(v),
            "repository" => p.repository = Some(v),
            "window" => {
                p.window =
                    summary::duration::parse_duration(&v).map_err(|e| format!("window: {e}"))?;
            }
            "sort" => {
                p.sort = SortBy::parse(&v)
                    .ok_or_else(|| format!("sort must be one of {}", SortBy::NAMES))?;
            }
            "order" => {
                p.order = Some(match v.as_str() {
                    "asc" => "asc",
                    "desc" => "desc",
                    _ => return Err("order must be asc or desc".to_owned()),
                });
            }
            "limit" => {
                p.limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or("limit must be an integer from 1 to 1000")?;
            }
            "offset" => {
                p.offset = v
                    .parse()
                    .map_err(|_| "offset must be a non-negative integer")?;
            }
            other => {
                return Err(format!(
                    "unknown query parameter {other:?} (organization, repository, window, sort, \
                     order, limit, offset)"
                ));
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
            assert!(list_params(Some(q)).is_err(), "{q}");
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
