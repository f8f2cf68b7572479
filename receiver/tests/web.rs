//! The fleet view end to end: a real receiver with a real redb file, runs pushed over HTTP,
//! the job list API, and the web page in a real headless Chromium driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`; `cargo xtask test` installs both).
//!
//! Screenshots of the pages are written to `target/test-output/web/` (those in
//! `docs/screenshots/` come from there).

mod common;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{READ_TOKEN, TestServer, config};
use serde_json::{Value, json};
use testkit::webdriver::{Browser, chromium_paths};
use testkit::{require, wait_for};

const XSS: &str = "<img src=x onerror=alert(1)>";
const GIB: f64 = 1073741824.0;

#[derive(Clone, Copy)]
struct Run {
    job: &'static str,
    cpu: f64,
    cpu_limit: f64,
    mem: f64,
    mem_limit: f64,
    oom: u64,
    throttled: f64,
    starved: bool,
    timeline: bool,
}

fn stats(v: f64) -> Value {
    json!({"peak": v * 1.4, "p99": v * 1.2, "p95": v, "p75": v * 0.8, "p50": v * 0.6, "avg": v * 0.5})
}

/// A push of `r` as run `n`, started `days_ago` days before now.
fn push(r: &Run, n: u32, days_ago: f64) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let start = now - (days_ago * 86_400_000.0) as i64;
    let duration = 300.0 + 20.0 * f64::from(n);
    let end = start + (duration * 1000.0) as i64;
    let mut verdict = json!({
        "starved": r.starved,
        "by": if r.starved { vec!["cpu"] } else { vec![] },
        "text": if r.starved { "CPU-starved for 40 % of the run: throttled 40 % of periods (quota 1 core)" } else { "not starved" },
    });
    let wait = r.throttled / 4.0;
    let mut run_queue_wait = json!({"seconds": wait, "share": 0.05, "source": "ebpf"});
    if r.starved {
        verdict["cause"] = json!("contention");
        run_queue_wait["behind"] = json!([
            {"container": "lint-7", "job": "acme/web ci.yml lint #3", "seconds": wait * 0.7, "kind": "other_job"},
            {"container": "its CPU quota (throttled)", "job": null, "seconds": wait * 0.3, "kind": "quota"},
        ]);
    }
    let container = json!({
        "name": "build", "cpu_cores": stats(r.cpu), "memory_bytes": stats(r.mem / 1.4),
        "cpu_seconds": r.cpu * 0.5 * duration, "memory_peak_bytes": r.mem as u64,
        "oom_kills": r.oom,
        "limits": {"cpu_cores": r.cpu_limit, "memory_bytes": r.mem_limit as u64},
        "cpu_throttling": {"quota_cores": r.cpu_limit, "periods": 3000, "throttled_periods": (r.throttled * 10.0) as u64,
                           "throttled_seconds": r.throttled, "throttled_period_share": r.throttled / 300.0},
        "run_queue_wait": run_queue_wait,
        "verdict": verdict,
    });
    let mut summary = json!({
        "start_time": summary::time::format_unix_millis(start),
        "end_time": summary::time::format_unix_millis(end),
        "duration_seconds": duration, "sample_count": 60,
        "cpu_total_percent": stats(r.cpu * 10.0), "mem_used_bytes": stats(r.mem),
        "cpu_source": "ebpf",
        "containers": [container],
        "top_commands": [{"name": "cargo", "processes": 3, "cpu_seconds": 40.0, "peak_rss_bytes": 300000000u64, "longest_seconds": 250.0},
                         {"name": XSS, "processes": 1, "cpu_seconds": 1.0, "peak_rss_bytes": 1000000u64, "longest_seconds": 1.0}],
    });
    if r.timeline {
        let n = 30usize;
        let wave: Vec<u32> = (0..n).map(|i| 200 + (i as u32 * 37) % 700).collect();
        summary["timeline"] = json!({"bucket_seconds": 10.0, "containers": [{
            "name": "build", "cpu_millicores": wave, "cpu_millicores_max": wave.iter().map(|v| v + 150).collect::<Vec<_>>(),
            "memory_mib": vec![250u32; n], "memory_mib_max": vec![280u32; n],
            "run_queue_wait_millicores": wave.iter().map(|v| v / 4).collect::<Vec<_>>(),
            "cpu_pressure_percent": wave.iter().map(|v| v / 20).collect::<Vec<_>>(),
        }]});
    }
    json!({
        "execution": {"organization": "acme", "repository": "acme/web", "workflow": "ci.yml",
                      "job": r.job, "run_id": format!("{}-{n}", r.job.len())},
        "summary": summary,
    })
}

fn out_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-output/web");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn jobs(server: &TestServer, query: &str) -> Vec<String> {
    let r = server.get(&format!("/api/v1/jobs?{query}"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job"].as_str().unwrap().to_owned())
        .collect()
}

/// Pushes the three jobs: one wasteful, one starved, one with an odd name and an OOM kill.
fn seed(server: &TestServer) {
    let token = server
        .token(&json!({"organization": "acme", "repository": "*", "workflow": "*", "job": "*"}));
    let wasteful = Run {
        job: "lint",
        cpu: 0.2,
        cpu_limit: 4.0,
        mem: 0.3 * GIB,
        mem_limit: 8.0 * GIB,
        oom: 0,
        throttled: 0.0,
        starved: false,
        timeline: false,
    };
    let starved = Run {
        job: "build",
        cpu: 1.0,
        cpu_limit: 1.0,
        mem: 1.5 * GIB,
        mem_limit: 2.0 * GIB,
        oom: 0,
        throttled: 120.0,
        starved: true,
        timeline: true,
    };
    let odd = Run {
        job: XSS,
        cpu: 0.5,
        cpu_limit: 1.0,
        mem: 0.9 * GIB,
        mem_limit: 1.0 * GIB,
        oom: 0,
        throttled: 0.0,
        starved: false,
        timeline: false,
    };
    for n in 0..6 {
        let r = server.push(&token, &push(&wasteful, n, 6.0 - f64::from(n)));
        assert_eq!(r.status, 201, "{}", r.text());
    }
    for n in 0..5 {
        let r = server.push(&token, &push(&starved, n, 5.0 - f64::from(n)));
        assert_eq!(r.status, 201, "{}", r.text());
    }
    for n in 0..3 {
        let run = Run {
            oom: u64::from(n == 1),
            ..odd
        };
        let r = server.push(&token, &push(&run, n, 3.0 - f64::from(n)));
        assert_eq!(r.status, 201, "{}", r.text());
    }
}

#[test]
fn job_list_history_and_totals_answer_from_aggregates() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path().join("web.redb")));
    seed(&server);
    assert_eq!(jobs(&server, "sort=waste")[0], "lint");
    assert_eq!(jobs(&server, "sort=starvation")[0], "build");
    assert_eq!(jobs(&server, "sort=ooms")[0], XSS);
    assert_eq!(
        jobs(&server, "sort=name"),
        [XSS, "build", "lint"],
        "byte order"
    );
    assert_eq!(
        jobs(&server, "sort=name&order=desc&limit=2&offset=1"),
        ["build", XSS]
    );
    assert!(jobs(&server, "organization=other").is_empty());
    assert!(jobs(&server, "window=12h").len() <= 3);
    // Every job gets its recommendation in the background.
    let listed = wait_for(Duration::from_secs(30), "every job sized", || {
        let r = server.get("/api/v1/jobs");
        let v = r.json();
        v["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["sizing"].is_object())
            .then_some(v)
    });
    assert_eq!(listed["total"], 3);
    let build = listed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"] == "build")
        .unwrap()
        .clone();
    assert_eq!(build["starved_runs"], 5);
    assert_eq!(build["runs_in_window"], 5);
    assert_eq!(build["cpu_limit_cores"], 1.0);
    let r = server.get("/api/v1/history/repo/acme/web/ci.yml/build?limit=3");
    assert_eq!(r.status, 200);
    let h = r.json();
    assert_eq!(h["runs"].as_array().unwrap().len(), 3);
    assert!(r.header("x-next-cursor").is_some());
    assert_eq!(h["runs"][0]["throttled_seconds"], 120.0);
    let t = server.get("/api/v1/fleet?window=30d").json();
    assert_eq!(
        (
            t["jobs"].as_u64(),
            t["runs"].as_u64(),
            t["oom_kills"].as_u64()
        ),
        (Some(3), Some(14), Some(1))
    );
    assert!(t["cpu_freed_core_hours"].as_f64().unwrap() > 0.0, "{t}");
    // The read token is needed; bad parameters are a clear 400.
    for path in [
        "/api/v1/jobs",
        "/api/v1/fleet",
        "/api/v1/history/repo/acme/web/ci.yml/build",
    ] {
        let r = server.request("GET", path, &[], None);
        assert_eq!(r.status, 401, "{path}");
    }
    let r = server.get("/api/v1/jobs?sort=size");
    assert_eq!(r.status, 400);
    assert!(r.error().contains("waste, starvation"), "{}", r.error());
}

/// The fleet of `cargo xtask demo`: three jobs of a few seconds, three runs each, under the
/// limits the demo declares, with what its runs measured. Such short jobs' totals must not
/// round to zero on the fleet cards ("0.0 / 0.0 core-hours").
#[test]
fn the_demos_short_jobs_read_non_zero_on_the_fleet_cards() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path().join("demo.redb")));
    let token = server.token(
        &json!({"organization": "demo-org", "repository": "*", "workflow": "*", "job": "*"}),
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // (job, seconds, cores used on average, CPU limit, peak MiB, memory limit MiB)
    let demo = [
        ("compile", 4.3, 1.9, 2.0, 3.0, 512.0),
        ("lint", 2.4, 0.15, 4.0, 2.5, 4096.0),
        ("unit-tests", 3.2, 0.2, 1.0, 225.0, 512.0),
    ];
    for (job, seconds, cores, cpu_limit, mib, mib_limit) in demo {
        for n in 1..=3 {
            let start = now - 600_000 * n;
            let end = start + (seconds * 1000.0) as i64;
            let mem = mib * 1048576.0;
            let body = json!({
                "execution": {"organization": "demo-org", "repository": "demo-org/demo-repo",
                              "workflow": "demo.yml", "job": job, "run_id": format!("demo-{n}")},
                "summary": {
                    "start_time": summary::time::format_unix_millis(start),
                    "end_time": summary::time::format_unix_millis(end),
                    "duration_seconds": seconds, "sample_count": 4,
                    "cpu_total_percent": stats(cores * 20.0), "mem_used_bytes": stats(mem),
                    "cpu_source": "ebpf",
                    "containers": [{
                        "name": job, "cpu_cores": stats(cores), "memory_bytes": stats(mem / 1.4),
                        "cpu_seconds": cores * seconds, "memory_peak_bytes": mem as u64,
                        "limits": {"cpu_cores": cpu_limit, "memory_bytes": (mib_limit * 1048576.0) as u64},
                    }],
                },
            });
            let r = server.push(&token, &body);
            assert_eq!(r.status, 201, "{}", r.text());
        }
    }
    // What right-sizing would free needs each job's recommendation, made in the background.
    wait_for(Duration::from_secs(30), "every job sized", || {
        {
            let jobs = server.get("/api/v1/jobs").json();
            let sized = jobs["jobs"].as_array().unwrap().iter();
            sized.clone().count() == 3 && sized.clone().all(|j| j["sizing"].is_object())
        }
        .then_some(())
    });
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let login = format!("token={READ_TOKEN}");
    let r = server.request("POST", "/login", &form, Some(login.as_bytes()));
    let cookie = r.header("set-cookie").unwrap().to_owned();
    let session = cookie.split(';').next().unwrap().to_owned();
    let page = server.request("GET", "/", &[("cookie", &session)], None);
    assert_eq!(page.status, 200, "{}", page.text());
    let html = page.text();
    let cards: Vec<&str> = html
        .split(r#"<div class="card"><b>"#)
        .skip(1)
        .map(|c| c.split("</b>").next().unwrap())
        .collect();
    println!("fleet cards: {cards:?}");
    // Jobs and runs, CPU used / reserved, memory used / reserved, what right-sizing frees
    // (the last card counts starved and OOM-killed jobs, none here).
    assert_eq!(cards.len(), 5, "{html}");
    for card in &cards[..4] {
        let figures: Vec<f64> = card
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter_map(|w| w.parse().ok())
            .collect();
        assert!(
            !figures.is_empty() && figures.iter().all(|f| *f > 0.0),
            "a figure reads zero: {card:?} of {cards:?}"
        );
    }
    let freed = html.split("right-sizing would free").nth(1).unwrap();
    assert!(!freed.contains("0.00 cores"), "{freed}");
}

#[test]
fn pages_without_a_session_send_to_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path().join("web.redb")));
    for path in [
        "/",
        "/job/acme/web/ci.yml/build",
        "/job/acme/web/ci.yml/build/run/1",
        "/nothing-here-x",
    ] {
        let r = server.request("GET", path, &[], None);
        if path == "/nothing-here-x" {
            assert_eq!(r.status, 404, "{path}: not a page, an API 404");
            continue;
        }
        assert_eq!(r.status, 303, "{path}");
        assert_eq!(r.header("location"), Some("/login"), "{path}");
    }
    // A forged or foreign cookie is no session.
    let forged = [(
        "cookie",
        "collector_session=v1.99999999999.00000000000000000000000000000000.00",
    )];
    assert_eq!(server.request("GET", "/", &forged, None).status, 303);
    let login = server.request("GET", "/login", &[], None);
    assert_eq!(login.status, 200);
    let csp = login.header("content-security-policy").unwrap();
    assert!(
        csp.starts_with("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    // A wrong token is refused and never echoed.
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let r = server.request("POST", "/login", &form, Some(b"token=not-the-token"));
    assert_eq!(r.status, 401);
    assert!(!r.text().contains("not-the-token"));
    let r = server.request(
        "POST",
        "/login",
        &form,
        Some(format!("token={READ_TOKEN}").as_bytes()),
    );
    assert_eq!(r.status, 303);
    let cookie = r.header("set-cookie").unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains(READ_TOKEN));
    let session = cookie.split(';').next().unwrap().to_owned();
    let r = server.request("GET", "/", &[("cookie", &session)], None);
    assert_eq!(r.status, 200, "{}", r.text());
    // The session is not a read token for the API.
    assert_eq!(
        server
            .request("GET", "/api/v1/jobs", &[("cookie", &session)], None)
            .status,
        401
    );
}

#[test]
fn the_page_in_a_real_browser() {
    if !require(
        "the web page test drives Chromium",
        chromium_paths().map(|_| ()),
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path().join("web.redb")));
    seed(&server);
    wait_for(Duration::from_secs(30), "every job sized", || {
        let v = server.get("/api/v1/jobs").json();
        v["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["sizing"].is_object())
            .then_some(())
    });
    let base = format!("http://{}", server.addr);
    let out = out_dir();
    let b = Browser::start(1280, 1000).expect("start headless chromium");

    // Sign in.
    b.goto(&format!("{base}/")).unwrap();
    assert!(b.url().unwrap().ends_with("/login"), "{}", b.url().unwrap());
    b.type_into(&b.find("#token").unwrap(), READ_TOKEN).unwrap();
    let at = b.click_to_navigate(&b.find("button[type=submit]").unwrap());
    assert_eq!(at.unwrap(), format!("{base}/"));
    assert_eq!(
        b.script("return document.cookie").unwrap(),
        "",
        "the session cookie is HttpOnly"
    );

    // The fleet: three jobs, sortable; the odd name is text, no image, no alert.
    let names = |b: &Browser| -> Vec<String> {
        b.find_all("#job-table a.job")
            .unwrap()
            .iter()
            .map(|e| b.text(e).unwrap())
            .collect()
    };
    assert_eq!(names(&b).len(), 3);
    assert_eq!(names(&b)[0], "lint", "sorted by waste by default");
    assert!(names(&b).contains(&XSS.to_owned()));
    assert_eq!(b.script("return document.images.length").unwrap(), 0);
    // A click on a header sorts by it; on the sorted one, reverses it.
    let sort_by = |column: &str, expect: &[&str]| {
        let link = b.find(&format!("th a[data-sort={column}]")).unwrap();
        let at = b.click_to_navigate(&link).unwrap();
        let now = names(&b);
        assert_eq!(now[..expect.len()], *expect, "sorted by {column}: {at}");
    };
    sort_by("name", &[XSS, "build", "lint"]);
    sort_by("name", &["lint", "build", XSS]);
    sort_by("starvation", &["build"]);
    let held = b.text(&b.find(".held-back").unwrap()).unwrap();
    assert!(
        held.contains("contention: lint-7"),
        "the fleet page names who: {held}"
    );
    let cards = b
        .text(&b.find("section[aria-label='Fleet totals']").unwrap())
        .unwrap();
    assert!(cards.contains("right-sizing would free"), "{cards}");
    std::fs::write(out.join("fleet.png"), b.screenshot().unwrap()).unwrap();

    // A job: one point per run in each chart, the recommendation and its YAML.
    let at = b
        .click_to_navigate(&b.find("#job-table a.job").unwrap())
        .unwrap();
    assert!(at.contains("/job/acme/web/ci.yml/build"), "{at}");
    let runs = b.text(&b.find("#run-table").unwrap()).unwrap();
    assert!(
        runs.contains("Held back by")
            && runs.contains("contention: lint-7 (acme/web ci.yml lint #3)"),
        "{runs}"
    );
    for (chart, per_run) in [("cpu", 2), ("memory", 1), ("duration", 1)] {
        let points = b
            .find_all(&format!("#chart-{chart} circle.pt"))
            .unwrap()
            .len();
        assert_eq!(points, 5 * per_run, "{chart}: one point per run and series");
    }
    assert_eq!(
        b.find_all("#chart-cpu path.limit").unwrap().len(),
        1,
        "the limit line"
    );
    assert!(
        b.find_all("#chart-cpu rect.starved").unwrap().len() >= 5,
        "starved runs marked"
    );
    let rec = b.text(&b.find("#recommendation").unwrap()).unwrap();
    assert!(rec.contains("CPU request"), "{rec}");
    assert!(
        b.text(&b.find("#resources-yaml").unwrap())
            .unwrap()
            .contains("resources:")
    );
    b.set_size(1280, 1700).unwrap();
    std::fs::write(out.join("job.png"), b.screenshot().unwrap()).unwrap();

    // A run: containers, verdict, commands (the odd command name as text), timeline.
    let at = b
        .click_to_navigate(&b.find("#run-table a").unwrap())
        .unwrap();
    assert!(at.contains("/run/"), "{at}");
    assert_eq!(b.find_all("#container-table tbody tr").unwrap().len(), 1);
    // Who held the CPU while it waited: another job most of the time, then its quota.
    assert_eq!(b.find_all("#behind-table tbody tr").unwrap().len(), 2);
    let behind = b.text(&b.find("#behind-table").unwrap()).unwrap();
    assert!(
        behind.contains("lint-7") && behind.contains("another job") && behind.contains("70 %"),
        "{behind}"
    );
    assert!(
        b.text(&b.find("#verdict").unwrap())
            .unwrap()
            .contains("starved")
    );
    assert!(
        b.text(&b.find("#command-table").unwrap())
            .unwrap()
            .contains(XSS)
    );
    // CPU, memory, and waiting for a CPU (run-queue wait and CPU pressure).
    assert_eq!(b.find_all("figure.timeline").unwrap().len(), 3);
    assert_eq!(b.find_all("figure.wait path.line").unwrap().len(), 2);
    std::fs::write(out.join("run.png"), b.screenshot().unwrap()).unwrap();

    // 1366 px wide (a common laptop): no table of the fleet, job and run pages scrolls
    // sideways, and no cell's content is wider than its cell.
    let run_url = b.url().unwrap();
    b.set_size(1366, 900).unwrap();
    for page in [
        format!("{base}/"),
        format!("{base}/job/acme/web/ci.yml/build"),
        run_url,
    ] {
        b.goto(&page).unwrap();
        let problems = b
            .script(
                "const bad = [];\n\
                 for (const s of document.querySelectorAll('.scroll')) {\n\
                   if (s.scrollWidth > s.clientWidth + 1) {\n\
                     const t = s.querySelector('table');\n\
                     bad.push('table ' + (t ? t.id : '?') + ' scrolls: ' + s.scrollWidth + ' > ' + s.clientWidth);\n\
                   }\n\
                 }\n\
                 for (const c of document.querySelectorAll('td, th')) {\n\
                   if (c.scrollWidth > c.clientWidth + 1) bad.push('clipped: ' + c.textContent.slice(0, 60));\n\
                 }\n\
                 return bad.join('\\n');",
            )
            .unwrap();
        assert_eq!(problems.as_str().unwrap(), "", "at 1366 px, {page}");
    }
    std::fs::write(out.join("run-1366.png"), b.screenshot().unwrap()).unwrap();

    // 400 px wide: nothing wider than the window but the scrolling tables.
    b.set_size(400, 900).unwrap();
    b.goto(&format!("{base}/")).unwrap();
    let overflow = b
        .script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
        )
        .unwrap();
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "the page scrolls sideways at 400 px: {overflow}"
    );
    std::fs::write(out.join("fleet-400.png"), b.screenshot().unwrap()).unwrap();

    // Keyboard alone: Tab to the first job link, Enter opens it.
    b.set_size(1280, 1000).unwrap();
    b.goto(&format!("{base}/?sort=name")).unwrap();
    let mut reached = false;
    for _ in 0..40 {
        b.keys("\u{E004}").unwrap();
        let class = b.script("return document.activeElement.className").unwrap();
        if class == "job" {
            reached = true;
            break;
        }
    }
    assert!(reached, "a job link is reachable with Tab");
    b.keys("\u{E007}").unwrap();
    wait_for(Duration::from_secs(10), "Enter to open the job", || {
        b.url()
            .ok()
            .filter(|u| u.contains("/job/acme/web/ci.yml/%3Cimg"))
    });

    // Sign out: the pages ask for sign-in again.
    // (The job page has loaded: its recommendation is there.)
    wait_for(Duration::from_secs(10), "the job page", || {
        b.find("#recommendation").ok()
    });
    let at = b.click_to_navigate(&b.find("header button[type=submit]").unwrap());
    assert!(at.unwrap().ends_with("/login"));
    b.goto(&format!("{base}/job/acme/web/ci.yml/build"))
        .unwrap();
    assert!(b.url().unwrap().ends_with("/login"));
    eprintln!("screenshots in {}", out.display());
}
