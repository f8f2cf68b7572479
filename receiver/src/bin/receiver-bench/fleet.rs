//! The fleet view under a full store: `jobs` jobs with `runs` runs in all (1,000 and
//! 100,000 by default), then the job list, the fleet totals and the web page's fleet and
//! job pages, each timed from one keep-alive client.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use hyper::StatusCode;
use hyper::body::Bytes;

use super::{Client, READ_TOKEN, percentile_ms};

/// What was measured.
pub struct FleetResult {
    pub fill_seconds: f64,
    pub list: (f64, f64),
    pub totals: (f64, f64),
    pub fleet_page: (f64, f64),
    pub job_page: (f64, f64),
    pub list_bytes: usize,
    pub page_bytes: usize,
}

async fn token_for_every_job(client: &mut Client) -> anyhow::Result<String> {
    let scope = serde_json::json!({"organization": "bench-org", "repository": "bench-repo", "workflow": "ci.yml", "job": "*"});
    let (status, body) = client
        .send(
            "POST",
            "/api/v1/token",
            Some(&format!("Bearer {READ_TOKEN}")),
            Some(Bytes::from(scope.to_string())),
        )
        .await
        .map_err(anyhow::Error::msg)?;
    if status != StatusCode::OK {
        bail!("token request failed: {status}");
    }
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    Ok(v["token"].as_str().context("no token")?.to_owned())
}

/// p50 and p99 (ms) of `n` GETs of `path` with `headers`; the last body's size.
pub async fn time_get(
    client: &mut Client,
    path: &str,
    headers: &[(&str, &str)],
    n: usize,
) -> anyhow::Result<((f64, f64), usize)> {
    let mut times = Vec::with_capacity(n);
    let mut size = 0;
    for _ in 0..n {
        let mut req = http_client::Request::to(http_client::Method::GET, client.addr, path)
            .header("host", "bench");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let started = Instant::now();
        let resp = client.conn.send(req).await?;
        times.push(started.elapsed());
        if resp.status != StatusCode::OK {
            bail!("GET {path} answered {}", resp.status);
        }
        size = resp.body.len();
    }
    times.sort_unstable();
    Ok((
        (percentile_ms(&times, 0.5), percentile_ms(&times, 0.99)),
        size,
    ))
}

/// Fills a fresh receiver at `addr` and times the fleet reads `queries` times each.
pub async fn bench(
    addr: std::net::SocketAddr,
    runs: usize,
    jobs: usize,
    queries: usize,
) -> anyhow::Result<FleetResult> {
    let token = token_for_every_job(&mut Client::connect(addr).await?).await?;
    let started = Instant::now();
    super::fill(addr, &token, runs, jobs).await?;
    let fill_seconds = started.elapsed().as_secs_f64();
    let mut client = Client::connect(addr).await?;
    let auth = format!("Bearer {READ_TOKEN}");
    // The background sizer catches up first, so the reads below are not competing with it.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (status, body) = client
            .send(
                "GET",
                "/api/v1/jobs?limit=1000&window=3650d",
                Some(&auth),
                None,
            )
            .await
            .map_err(anyhow::Error::msg)?;
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        let listed = v["jobs"].as_array().map_or(0, Vec::len);
        let sized = v["jobs"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|j| j["sizing"].is_object()).count());
        if status == StatusCode::OK && listed == jobs && sized == jobs {
            break;
        }
        if Instant::now() > deadline {
            bail!("the job list has {listed} jobs, {sized} sized, after 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let bearer = [("authorization", auth.as_str())];
    let (list, list_bytes) = time_get(
        &mut client,
        "/api/v1/jobs?window=3650d&sort=waste",
        &bearer,
        queries,
    )
    .await?;
    let (totals, _) = time_get(&mut client, "/api/v1/fleet?window=3650d", &bearer, queries).await?;
    // The page: sign in once, then load pages with the session cookie.
    let form = http_client::Request::to(http_client::Method::POST, addr, "/login")
        .header("host", "bench")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={READ_TOKEN}"));
    let resp = client.conn.send(form).await?;
    let cookie = resp
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .context("no session cookie from /login")?
        .to_owned();
    let session = [("cookie", cookie.as_str())];
    let (fleet_page, page_bytes) =
        time_get(&mut client, "/?window=3650d", &session, queries).await?;
    let (job_page, _) = time_get(
        &mut client,
        "/job/bench-org/bench-repo/ci.yml/job-0007",
        &session,
        queries.min(100),
    )
    .await?;
    Ok(FleetResult {
        fill_seconds,
        list,
        totals,
        fleet_page,
        job_page,
        list_bytes,
        page_bytes,
    })
}

/// Prints the figures and the target; whether it was met.
pub fn report(r: &FleetResult, runs: usize, jobs: usize, queries: usize) -> bool {
    println!(
        "fleet view: {jobs} jobs, {runs} runs stored in {:.1} s ({:.0} pushes/s with the job aggregates)",
        r.fill_seconds,
        runs as f64 / r.fill_seconds.max(1e-9)
    );
    println!("  ({queries} requests each, 1 client, keep-alive)");
    let line = |what: &str, (p50, p99): (f64, f64)| {
        println!("  {what:<34} p50 {p50:>7.3} ms   p99 {p99:>7.3} ms");
    };
    line("job list (50 of 1,000, by waste):", r.list);
    line("fleet totals:", r.totals);
    line("fleet page (HTML, session):", r.fleet_page);
    line("job page (charts + sizing):", r.job_page);
    println!(
        "  job list answer {} bytes, fleet page {} bytes",
        r.list_bytes, r.page_bytes
    );
    let ok = r.list.1 <= 50.0;
    println!(
        "target: job list p99 <= 50 ms (1,000 jobs, 100,000 runs) . {:.3} ms  {}",
        r.list.1,
        if ok { "PASS" } else { "FAIL" }
    );
    ok
}
