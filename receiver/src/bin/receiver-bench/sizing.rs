//! Sizing latency: `GET /api/v1/sizing/...?runs=100` on a job with many stored runs.

use std::time::{Duration, Instant};

use anyhow::bail;
use hyper::StatusCode;

use super::{Client, READ_TOKEN, percentile_ms};

/// p50 and p99 of `queries` sizing answers over the job's 100 most recent runs.
pub async fn latency(addr: std::net::SocketAddr, queries: usize) -> anyhow::Result<(f64, f64)> {
    let auth = format!("Bearer {READ_TOKEN}");
    let mut client = Client::connect(addr).await?;
    // The bench's runs started on 2026-02-06: a window that keeps them all.
    let path = "/api/v1/sizing/repo/bench-org/bench-repo/ci.yml/build?runs=100&window=3650d";
    let mut times: Vec<Duration> = Vec::with_capacity(queries);
    for _ in 0..queries {
        let started = Instant::now();
        let (status, body) = client
            .send("GET", path, Some(&auth), None)
            .await
            .map_err(anyhow::Error::msg)?;
        times.push(started.elapsed());
        if status != StatusCode::OK {
            bail!(
                "sizing answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        let answer: serde_json::Value = serde_json::from_slice(&body)?;
        if answer["runs_considered"] != 100 {
            bail!(
                "sizing considered {} runs, not 100",
                answer["runs_considered"]
            );
        }
    }
    times.sort_unstable();
    Ok((percentile_ms(&times, 0.5), percentile_ms(&times, 0.99)))
}
