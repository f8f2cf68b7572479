//! The fleet and job pages and the sign-in form, as pure functions of their data.

use std::fmt::Write as _;

use summary::fleet::{FleetTotals, JobAggregate, JobEntry, RunRow, SortBy};
use summary::sizing::{Confidence, Sizing};
use summary::units::bytes;

use super::html::{
    axis_time, core_time, cores, duration, esc, job_href, memory_time, page, pct, secs, short_time,
    url_part,
};
use super::svg::{Chart, Series, line_chart};
use crate::fleet::{JobList, ListParams};

/// The sign-in form; `error` says why the last attempt failed.
pub fn login(error: Option<&str>) -> String {
    let mut body = String::from(r#"<div class="login"><h1>Sign in</h1>"#);
    body.push_str(
        "<p>Paste the receiver's read token (<code>--read-token</code>). It is exchanged \
         for a session cookie that lasts 12 hours; the token is not kept in the browser.</p>",
    );
    if let Some(e) = error {
        let _ = write!(body, r#"<p class="error" role="alert">{}</p>"#, esc(e));
    }
    body.push_str(
        r#"<form method="post" action="/login"><label for="token">Read token</label><input id="token" name="token" type="password" autocomplete="current-password" required autofocus><button class="primary" type="submit">Sign in</button></form></div>"#,
    );
    page("Sign in", false, &body)
}

/// The query string of the fleet page for `p`, with `sort`/`order`/`offset` replaced.
fn fleet_query(p: &ListParams, sort: SortBy, order: Option<&str>, offset: usize) -> String {
    let mut q = format!("sort={}", sort.as_str());
    if let Some(o) = order {
        let _ = write!(q, "&order={o}");
    }
    if let Some(o) = &p.organization {
        let _ = write!(q, "&organization={}", url_part(o));
    }
    if let Some(r) = &p.repository {
        let _ = write!(q, "&repository={}", url_part(r));
    }
    let _ = write!(q, "&window={}s", p.window.as_secs());
    if offset > 0 {
        let _ = write!(q, "&offset={offset}");
    }
    q
}

fn card(s: &mut String, value: &str, label: &str) {
    let _ = write!(
        s,
        r#"<div class="card"><b>{value}</b><span>{label}</span></div>"#
    );
}

const WINDOWS: [(&str, u64); 4] = [
    ("1 day", 86_400),
    ("7 days", 7 * 86_400),
    ("30 days", 30 * 86_400),
    ("90 days", 90 * 86_400),
];

fn window_name(seconds: u64) -> String {
    WINDOWS
        .iter()
        .find(|(_, s)| *s == seconds)
        .map_or_else(|| duration(seconds as f64), |(n, _)| (*n).to_owned())
}

fn sizing_cell(e: &JobEntry) -> String {
    match &e.sizing {
        Some(s) if s.confidence != Confidence::None => format!(
            "{} · {}{}",
            cores(s.recommended.cpu_request_cores),
            bytes(s.recommended.memory_limit_bytes as f64),
            if s.confidence == Confidence::Provisional {
                r#" <span class="muted">(provisional)</span>"#
            } else {
                ""
            }
        ),
        _ => r#"<span class="muted">not yet</span>"#.to_owned(),
    }
}

fn of_limit(used: String, limit: Option<String>, share: Option<f64>) -> String {
    match (limit, share) {
        (Some(l), Some(s)) => {
            let class = if s > 0.9 {
                "bad"
            } else if s < 0.3 {
                "warn"
            } else {
                "good"
            };
            format!(
                r#"{used} / {l} <span class="badge {class}">{}</span>"#,
                pct(s)
            )
        }
        _ => format!(r#"{used} <span class="muted">/ no limit</span>"#),
    }
}

/// The fleet page: totals, filters and the sortable job table.
pub fn fleet(list: &JobList, totals: &FleetTotals, p: &ListParams) -> String {
    let mut b = String::with_capacity(16 * 1024);
    let _ = write!(
        b,
        "<h1>Fleet</h1><p class=\"crumbs\">Every job with a run in the last {}.</p>",
        window_name(p.window.as_secs())
    );
    // Filters.
    b.push_str(r#"<form class="filters" method="get" action="/" aria-label="Filter jobs">"#);
    let _ = write!(
        b,
        r#"<label>Organization<input name="organization" value="{}"></label><label>Repository starts with<input name="repository" value="{}"></label><label>Window<select name="window">"#,
        esc(p.organization.as_deref().unwrap_or("")),
        esc(p.repository.as_deref().unwrap_or(""))
    );
    for (name, secs) in WINDOWS {
        let selected = if p.window.as_secs() == secs {
            " selected"
        } else {
            ""
        };
        let _ = write!(b, r#"<option value="{secs}s"{selected}>{name}</option>"#);
    }
    let _ = write!(
        b,
        r#"</select></label><input type="hidden" name="sort" value="{}"><button type="submit">Apply</button></form>"#,
        p.sort.as_str()
    );
    // Totals.
    let t = totals;
    b.push_str(r#"<section aria-label="Fleet totals"><div class="cards">"#);
    card(
        &mut b,
        &t.jobs.to_string(),
        &format!(
            "jobs, {} runs, {} of runs",
            t.runs,
            duration(t.run_hours * 3600.0)
        ),
    );
    let (cpu, cpu_unit) = core_time(&[t.cpu_used_core_hours, t.cpu_reserved_core_hours]);
    card(
        &mut b,
        &format!("{} / {} {cpu_unit}", cpu[0], cpu[1]),
        "CPU time used / reserved (runs with a CPU limit)",
    );
    let (mem, mem_unit) = memory_time(&[t.memory_used_gib_hours, t.memory_reserved_gib_hours]);
    card(
        &mut b,
        &format!("{} / {} {mem_unit}", mem[0], mem[1]),
        "memory time at peak / reserved (runs with a memory limit)",
    );
    let share = |part: f64, whole: f64| {
        if whole > 0.0 {
            pct(part / whole)
        } else {
            "–".to_owned()
        }
    };
    card(
        &mut b,
        &{
            let (c, cu) = core_time(&[t.cpu_freed_core_hours]);
            let (m, mu) = memory_time(&[t.memory_freed_gib_hours]);
            format!("{} {cu} · {} {mu}", c[0], m[0])
        },
        &format!(
            "right-sizing would free: {} of reserved CPU, {} of memory ({} and {} held \
             all the time)",
            share(t.cpu_freed_core_hours, t.cpu_reserved_core_hours),
            share(t.memory_freed_gib_hours, t.memory_reserved_gib_hours),
            cores(t.cpu_freed_cores),
            bytes(t.memory_freed_gib * 1073741824.0)
        ),
    );
    card(
        &mut b,
        &format!("{} starved · {} OOM", t.starved_jobs, t.oom_jobs),
        &format!(
            "jobs ({} OOM kills); {} jobs without limits",
            t.oom_kills, t.jobs_without_limits
        ),
    );
    b.push_str("</div></section>");
    // The table.
    let _ = write!(
        b,
        "<h2 id=\"jobs\">Jobs <span class=\"muted\">({})</span></h2>",
        list.total
    );
    if list.jobs.is_empty() {
        b.push_str("<p>No job has a run in this window. Runs appear here once a collector pushes them.</p>");
        return page("Fleet", true, &b);
    }
    b.push_str(r#"<div class="scroll"><table id="job-table"><caption class="skip">Jobs, sortable by the column headers</caption><thead><tr>"#);
    let header = |b: &mut String, label: &str, sort: Option<SortBy>, num: bool| {
        let class = if num { r#" class="num""# } else { "" };
        match sort {
            Some(s) => {
                let active = s == p.sort;
                let natural = if s == SortBy::Name { "asc" } else { "desc" };
                let next_order = match (active, list.order) {
                    (true, "asc") => "desc",
                    (true, _) => "asc",
                    (false, _) => natural,
                };
                let aria = if active {
                    format!(
                        r#" aria-sort="{}""#,
                        if list.order == "asc" {
                            "ascending"
                        } else {
                            "descending"
                        }
                    )
                } else {
                    String::new()
                };
                let arrow = if active {
                    if list.order == "asc" { " ▲" } else { " ▼" }
                } else {
                    ""
                };
                let _ = write!(
                    b,
                    r##"<th{class}{aria}><a href="/?{}#jobs" data-sort="{}">{label}{arrow}</a></th>"##,
                    esc(&fleet_query(p, s, Some(next_order), 0)),
                    s.as_str()
                );
            }
            None => {
                let _ = write!(b, "<th{class}>{label}</th>");
            }
        }
    };
    header(&mut b, "Job", Some(SortBy::Name), false);
    header(&mut b, "Runs", None, true);
    header(&mut b, "Duration", Some(SortBy::Duration), true);
    header(&mut b, "CPU p95 / limit", None, false);
    header(&mut b, "Memory peak / limit", None, false);
    header(&mut b, "Waste", Some(SortBy::Waste), true);
    header(&mut b, "Starved", Some(SortBy::Starvation), true);
    header(&mut b, "OOM kills", Some(SortBy::Ooms), true);
    header(&mut b, "Should get", None, false);
    b.push_str("</tr></thead><tbody>");
    for e in &list.jobs {
        let href = job_href(&e.organization, &e.repository, &e.workflow, &e.job);
        let starved = if e.starved_runs > 0 {
            let by = e.last_held_back_by.as_deref().map_or(String::new(), |h| {
                format!(
                    r#"<br><span class="muted held-back">last: {}</span>"#,
                    esc(h)
                )
            });
            format!(
                r#"<span class="badge bad">{} of {}</span>{by}"#,
                e.starved_runs, e.runs_in_window
            )
        } else {
            r#"<span class="badge good">no</span>"#.to_owned()
        };
        let ooms = if e.oom_kills > 0 {
            format!(r#"<span class="badge bad">{}</span>"#, e.oom_kills)
        } else {
            "0".to_owned()
        };
        let waste = match e.waste.unused_share {
            Some(u) => format!(
                "{:.1} <span class=\"muted\">({} idle)</span>",
                e.waste.score,
                pct(u)
            ),
            None => r#"<span class="muted">no limits</span>"#.to_owned(),
        };
        let _ = write!(
            b,
            r#"<tr><td class="name"><a class="job" href="{}">{}</a><br><span class="muted">{}/{} · {}</span></td><td class="num">{} <span class="muted">(last {})</span></td><td class="num">{}</td><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td></tr>"#,
            esc(&href),
            esc(&e.job),
            esc(&e.organization),
            esc(&e.repository),
            esc(&e.workflow),
            e.runs_in_window,
            esc(&short_time(&e.last_run_at)),
            duration(e.duration_seconds),
            of_limit(
                cores(e.cpu_p95_cores),
                e.cpu_limit_cores.map(cores),
                e.cpu_to_limit
            ),
            of_limit(
                bytes(e.memory_peak_bytes as f64),
                e.memory_limit_bytes.map(|b| bytes(b as f64)),
                e.memory_to_limit
            ),
            waste,
            starved,
            ooms,
            sizing_cell(e),
        );
    }
    b.push_str("</tbody></table></div>");
    b.push_str(r#"<nav class="pager" aria-label="Pages">"#);
    let order = Some(list.order);
    if list.offset > 0 {
        let _ = write!(
            b,
            r##"<a rel="prev" href="/?{}#jobs">← Previous</a>"##,
            esc(&fleet_query(
                p,
                p.sort,
                order,
                list.offset.saturating_sub(list.limit)
            ))
        );
    }
    let shown_to = list.offset + list.jobs.len();
    let _ = write!(
        b,
        "<span>{}–{} of {}</span>",
        list.offset + 1,
        shown_to,
        list.total
    );
    if shown_to < list.total {
        let _ = write!(
            b,
            r##"<a rel="next" href="/?{}#jobs">Next →</a>"##,
            esc(&fleet_query(p, p.sort, order, shown_to))
        );
    }
    b.push_str("</nav>");
    b.push_str(r#"<p class="muted">Waste: idle reserved core-hours plus GiB-hours above the peak divided by 4 (1 core weighs like 4 GiB), over the window. Starved: runs held back by CPU throttling, run-queue wait or pressure. Should get: the sizing recommendation (CPU request, memory limit) from the job's recent runs.</p>"#);
    page("Fleet", true, &b)
}

/// The job page: charts of its runs, the recommendation, and the runs.
pub fn job(a: &JobAggregate, rows_newest_first: &[RunRow], sizing: Option<&Sizing>) -> String {
    let rows: Vec<&RunRow> = rows_newest_first.iter().rev().collect();
    let href = job_href(&a.organization, &a.repository, &a.workflow, &a.job);
    let mut b = String::with_capacity(32 * 1024);
    let _ = write!(
        b,
        r#"<p class="crumbs"><a href="/">Fleet</a> / {} / {} / {}</p><h1>{}</h1><p>{} runs stored; the charts show the newest {}.</p>"#,
        esc(&a.organization),
        esc(&a.repository),
        esc(&a.workflow),
        esc(&a.job),
        a.runs,
        rows.len()
    );
    let labels: Vec<String> = rows.iter().map(|r| axis_time(&r.time)).collect();
    let oom: Vec<usize> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.oom_kills > 0)
        .map(|(i, _)| i)
        .collect();
    let starved: Vec<usize> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.starved)
        .map(|(i, _)| i)
        .collect();
    let chart = |title, unit, series: Vec<Series<'static>>, limit: Vec<Option<f64>>| {
        line_chart(&Chart {
            title,
            unit,
            x_labels: labels.clone(),
            x_title: "run start (UTC)",
            series,
            limit,
            oom: oom.clone(),
            starved: starved.clone(),
            points: true,
        })
    };
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    b.push_str(r#"<section class="charts" aria-label="Runs over time">"#);
    let charts = [
        (
            "cpu",
            "CPU per run",
            chart(
                "CPU per run: p95 and peak against the limit",
                "cores",
                vec![
                    Series {
                        name: "p95",
                        values: rows.iter().map(|r| Some(r.cpu_p95_cores)).collect(),
                    },
                    Series {
                        name: "peak",
                        values: rows.iter().map(|r| Some(r.cpu_peak_cores)).collect(),
                    },
                ],
                rows.iter().map(|r| r.cpu_limit_cores).collect(),
            ),
        ),
        (
            "memory",
            "Memory per run",
            chart(
                "Memory peak per run against the limit",
                "GiB",
                vec![Series {
                    name: "peak",
                    values: rows
                        .iter()
                        .map(|r| Some(gib(r.memory_peak_bytes)))
                        .collect(),
                }],
                rows.iter().map(|r| r.memory_limit_bytes.map(gib)).collect(),
            ),
        ),
        (
            "duration",
            "Duration",
            chart(
                "Duration per run",
                "s",
                vec![Series {
                    name: "duration",
                    values: rows.iter().map(|r| Some(r.duration_seconds)).collect(),
                }],
                Vec::new(),
            ),
        ),
        (
            "held",
            "Held back",
            chart(
                "Time throttled and waiting for a CPU per run",
                "s",
                vec![
                    Series {
                        name: "throttled",
                        values: rows.iter().map(|r| Some(r.throttled_seconds)).collect(),
                    },
                    Series {
                        name: "run-queue wait",
                        values: rows.iter().map(|r| Some(r.wait_seconds)).collect(),
                    },
                ],
                Vec::new(),
            ),
        ),
    ];
    for (id, caption, svg) in charts {
        let _ = write!(
            b,
            r#"<figure id="chart-{id}"><figcaption>{caption}</figcaption>{svg}</figure>"#
        );
    }
    b.push_str("</section>");
    recommendation(&mut b, sizing);
    // The runs.
    b.push_str(r#"<h2>Runs</h2><div class="scroll"><table id="run-table"><thead><tr><th>Started (UTC)</th><th>Run</th><th class="num">Duration</th><th class="num">CPU p95 / peak</th><th class="num">Memory peak</th><th class="num">OOM kills</th><th class="num">Throttled</th><th class="num">Waiting</th><th>Starved</th><th>Held back by</th></tr></thead><tbody>"#);
    for r in rows_newest_first {
        let run = if r.run_attempt.is_empty() {
            r.run_id.clone()
        } else {
            format!("{} (attempt {})", r.run_id, r.run_attempt)
        };
        let run = if run.is_empty() {
            format!("#{}", r.id)
        } else {
            run
        };
        let _ = write!(
            b,
            r#"<tr><td>{}</td><td><a href="{}/run/{}">{}</a></td><td class="num">{}</td><td class="num">{} / {}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td><td class="wide">{}</td></tr>"#,
            esc(&short_time(&r.time)),
            esc(&href),
            r.id,
            esc(&run),
            duration(r.duration_seconds),
            cores(r.cpu_p95_cores),
            cores(r.cpu_peak_cores),
            bytes(r.memory_peak_bytes as f64),
            r.oom_kills,
            secs(r.throttled_seconds),
            secs(r.wait_seconds),
            if r.starved {
                format!(
                    r#"<span class="badge bad">{}</span>"#,
                    esc(&r.starved_by.join(", "))
                )
            } else {
                "no".to_owned()
            },
            esc(r.held_back_by.as_deref().unwrap_or("–"))
        );
    }
    b.push_str("</tbody></table></div>");
    page(&a.job, true, &b)
}

fn recommendation(b: &mut String, sizing: Option<&Sizing>) {
    b.push_str(
        r#"<section id="recommendation" aria-label="Recommendation"><h2>What it should get</h2>"#,
    );
    let Some(s) = sizing.filter(|s| s.confidence != Confidence::None) else {
        b.push_str("<p>No recommendation yet: no run in the sizing window.</p></section>");
        return;
    };
    let _ = write!(
        b,
        r#"<p><b>{} CPU request, {} memory</b> for the job, from its {} newest runs ({}; CPU at {}, {} % margin).</p>"#,
        cores(s.pod.cpu_request_cores),
        bytes(s.pod.memory_limit_bytes as f64),
        s.runs_considered,
        match s.confidence {
            Confidence::Confident => "confident",
            _ => "provisional: few runs, wider margin",
        },
        s.cpu_percentile.as_str(),
        s.buffer_percent
    );
    if let Some(class) = &s.runner_class {
        let _ = write!(
            b,
            "<p>Smallest runner class that fits: <b>{}</b>.</p>",
            esc(&class.name)
        );
    }
    b.push_str(r#"<ul class="explain">"#);
    for note in &s.notes {
        let _ = write!(b, "<li>{}</li>", esc(note));
    }
    for c in &s.containers {
        for line in &c.explanation {
            let _ = write!(b, "<li><b>{}</b>: {}</li>", esc(&c.name), esc(line));
        }
    }
    b.push_str("</ul><h3>The <code>resources:</code> to copy</h3>");
    let _ = write!(
        b,
        r#"<pre id="resources-yaml">{}</pre></section>"#,
        esc(&s.kubernetes)
    );
}
