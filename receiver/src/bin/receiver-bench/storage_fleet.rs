//! The storage benchmark at fleet scale: `--storage-fleet-runs` (1,000,000) runs of the mix
//! in `--storage-fleet-jobs` (10,000) jobs, written through the store in large group
//! commits (no HTTP), then the job list over HTTP on that file.

use std::sync::Arc;
use std::time::{Duration, Instant};

use receiver::store::{Compression, Store, StoreOptions};
use summary::RunSummary;

use super::server::{Backend, Server, scratch};
use super::{Args, Client, READ_TOKEN};

pub async fn bench(
    args: &Args,
    rt: &tokio::runtime::Handle,
    pools: &Arc<[Vec<RunSummary>; 3]>,
) -> anyhow::Result<()> {
    let (runs, jobs) = (args.storage_fleet_runs, args.storage_fleet_jobs);
    let (db, scratch) = scratch(&Backend::Redb).await?;
    let store = Arc::new(Store::open(&db, StoreOptions::default(), Arc::default()).await?);
    let started = Instant::now();
    let step = runs.div_ceil(10).max(1);
    let mut from = 0;
    while from < runs {
        let to = (from + step).min(runs);
        super::storage::fill(&store, pools, from, to, jobs).await?;
        from = to;
        println!(
            "  fleet fill: {to} runs in {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    let fill_s = started.elapsed().as_secs_f64();
    store.close().await;
    drop(store);
    let receiver::config::Database::File(path) = &db else {
        unreachable!("a redb scratch file")
    };
    let meta = std::fs::metadata(path)?;
    let (file, alloc) = (
        meta.len(),
        std::os::unix::fs::MetadataExt::blocks(&meta) * 512,
    );
    let server = Server::start_on(rt, db, scratch, true, Compression::default(), false).await?;
    // The background sizer sizes every job once after the start: let it finish (or two
    // minutes pass) so the timed reads do not share the CPU with it.
    let auth = format!("Bearer {READ_TOKEN}");
    let mut client = Client::connect(server.addr).await?;
    let waited = Instant::now();
    let mut sized = 0;
    while waited.elapsed() < Duration::from_secs(120) {
        sized = 0;
        for page in 0..jobs.div_ceil(1000) {
            let path = format!(
                "/api/v1/jobs?window=3650d&limit=1000&offset={}",
                page * 1000
            );
            let (_, body) = client
                .send("GET", &path, Some(&auth), None)
                .await
                .map_err(anyhow::Error::msg)?;
            let v: serde_json::Value = serde_json::from_slice(&body)?;
            sized += v["jobs"].as_array().map_or(0, |a| {
                a.iter().filter(|j| j["sizing"].is_object()).count() as u64
            });
        }
        if sized >= jobs {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let bearer = [("authorization", auth.as_str())];
    let (list, bytes) = super::fleet::time_get(
        &mut client,
        "/api/v1/jobs?window=3650d&sort=waste",
        &bearer,
        args.fleet_queries,
    )
    .await?;
    let (totals, _) = super::fleet::time_get(
        &mut client,
        "/api/v1/fleet?window=3650d",
        &bearer,
        args.fleet_queries,
    )
    .await?;
    server.stop().await?;
    println!();
    println!(
        "fleet scale (redb, zstd+dict): {jobs} jobs, {runs} runs stored through the store in \
         {fill_s:.0} s ({:.0} runs/s); file {:.1} MB ({:.0} B/run), allocated {:.1} MB \
         ({:.0} B/run)",
        runs as f64 / fill_s.max(1e-9),
        file as f64 / 1e6,
        file as f64 / runs as f64,
        alloc as f64 / 1e6,
        alloc as f64 / runs as f64,
    );
    println!(
        "  job list (50 of {jobs}, by waste): p50 {:.3} ms  p99 {:.3} ms ({bytes} bytes; \
         {sized} jobs sized before timing)",
        list.0, list.1
    );
    println!(
        "  fleet totals:                      p50 {:.3} ms  p99 {:.3} ms",
        totals.0, totals.1
    );
    println!(
        "target: job list p99 <= 50 ms at {jobs} jobs, {runs} runs .... {:.3} ms  {}",
        list.1,
        if list.1 <= 50.0 { "PASS" } else { "FAIL" }
    );
    Ok(())
}
