//! Benchmark driver for the receiver (`cargo xtask bench receiver`, or
//! `cargo run --release -p receiver --bin receiver-bench`).
//!
//! Starts real receivers on 127.0.0.1:0 with temporary redb files (loopback only, bounded
//! run time) and measures, in one run:
//! - durable pushes per second of realistic summaries with 1, 16 and 64 concurrent
//!   keep-alive clients, with group commit and with the one-commit-per-request baseline;
//! - query latency (p50, p99) on a job with 10,000 stored runs;
//! - sizing latency (p50, p99) over 100 of those runs ([`sizing`]);
//! - the fleet view with 1,000 jobs and 100,000 runs: job list, totals, pages ([`fleet`]).

mod backends;
mod fleet;
mod mix;
mod server;
mod sizing;
mod storage;
mod storage_fleet;

use server::{Backend, Client, Server};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use hyper::StatusCode;
use hyper::body::Bytes;
use summary::{
    Accumulator, CollectorInfo, ContainerSummary, Execution, Limits, MetricsPush, ProcessSummary,
    RunSummary, SCALE_BYTES, SCALE_CORES, SCALE_PERCENT, Source,
};

const READ_TOKEN: &str = "bench-read-token-0123456789";
const HMAC_KEY: &str = "bench-hmac-key-0123456789";

#[derive(Parser, Debug)]
#[command(
    about = "Receiver benchmark: durable pushes/s (group commit vs one commit per request), query and sizing latency"
)]
struct Args {
    /// Seconds measured per push scenario (after a 0.5 s warm-up).
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Concurrent clients of the push scenarios.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    clients: Vec<usize>,
    /// Runs stored in the job the queries read.
    #[arg(long, default_value_t = 10_000)]
    query_runs: usize,
    /// Number of timed queries.
    #[arg(long, default_value_t = 2_000)]
    queries: usize,
    /// Page size of the timed queries.
    #[arg(long, default_value_t = 50)]
    query_limit: usize,
    /// Number of timed sizing answers (each over the job's 100 most recent runs).
    #[arg(long, default_value_t = 300)]
    sizing_queries: usize,
    /// Runs and jobs stored for the fleet view scenario (0 runs: skip it).
    #[arg(long, default_value_t = 100_000)]
    fleet_runs: usize,
    #[arg(long, default_value_t = 1_000)]
    fleet_jobs: usize,
    /// Timed requests of each fleet view read.
    #[arg(long, default_value_t = 300)]
    fleet_queries: usize,
    /// A PostgreSQL admin URL (`postgres://postgres@127.0.0.1:5432/postgres`): the push,
    /// query and sizing scenarios also run on PostgreSQL, each on a database created for it
    /// and dropped after (`cargo xtask bench receiver` starts a throw-away cluster).
    #[arg(long, env = "RECEIVER_BENCH_POSTGRES", hide_env_values = true)]
    postgres: Option<String>,
    /// Skip the one-commit-per-request baseline.
    #[arg(long)]
    no_baseline: bool,
    /// Worker threads of the receivers' runtime (0: one per CPU, like the receiver binary).
    #[arg(long, default_value_t = 0)]
    server_threads: usize,
    /// Worker threads of the benchmark clients' runtime, separate from the receivers' so
    /// that the load generator does not steal the receivers' workers (0: run the clients on
    /// the receivers' runtime).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Tracing filter of the receivers (as `--log-level`); log lines are discarded.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Run the storage benchmark instead (`cargo xtask bench storage`): bytes on disk per
    /// run, plain and compressed, on both backends, with pushes and queries beside them.
    #[arg(long)]
    storage: bool,
    /// Runs of the mix stored per storage variant.
    #[arg(long, default_value_t = 100_000)]
    storage_runs: u64,
    /// Jobs they are spread over.
    #[arg(long, default_value_t = 1_000)]
    storage_jobs: u64,
    /// Measure only the compressed variants of the storage benchmark (zstd with the
    /// dictionary, compressed by the request or by the writer), not the baselines.
    #[arg(long)]
    storage_compressed_only: bool,
    /// Runs and jobs of the storage benchmark's fleet-scale job list (0 runs: skip it).
    #[arg(long, default_value_t = 1_000_000)]
    storage_fleet_runs: u64,
    #[arg(long, default_value_t = 10_000)]
    storage_fleet_jobs: u64,
    /// Write a zstd dictionary trained on summaries to this file (`receiver/dict/`), print
    /// what it makes of the mix, and exit.
    #[arg(long)]
    train_dict: Option<std::path::PathBuf>,
    /// Size of the trained dictionary, bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    dict_size: usize,
}

/// A realistic summary: 3 containers with serialized histograms, 10 top processes each.
fn realistic_push(run_id: &str) -> MetricsPush {
    let mut cpu = Accumulator::new(SCALE_CORES);
    let mut mem = Accumulator::new(SCALE_BYTES);
    let mut total = Accumulator::new(SCALE_PERCENT);
    for i in 0..600u32 {
        cpu.record(f64::from(i % 97) * 0.021);
        mem.record(f64::from(200_000_000 + (i % 89) * 1_000_003));
        total.record(f64::from(i % 101) * 0.99);
    }
    let container = |name: &str| ContainerSummary {
        name: name.into(),
        cpu_cores: cpu.stats(),
        memory_bytes: mem.stats(),
        cpu_seconds: 123.4,
        cpu_source: Source::Ebpf,
        memory_source: Source::Cgroup,
        memory_peak_bytes: Some(300_000_000),
        oom_kills: 0,
        network: None,
        limits: Some(Limits {
            cpu_cores: Some(2.0),
            memory_bytes: Some(1 << 30),
        }),
        cpu_to_limit: Some(cpu.stats()),
        memory_to_limit: Some(mem.stats()),
        histograms: Some(
            [
                (summary::hist::CPU_CORES.into(), cpu.encode()),
                (summary::hist::MEMORY_BYTES.into(), mem.encode()),
            ]
            .into(),
        ),
        ..Default::default()
    };
    let procs = |base: u64| -> Vec<ProcessSummary> {
        (0..10)
            .map(|i| ProcessSummary {
                pid: 1000 + i,
                name: format!("proc-{i}"),
                peak_cpu_percent: 150.0 - f64::from(i),
                peak_mem_rss_bytes: base + i as u64 * 1_000_000,
                cpu_seconds: 10.0 + f64::from(i),
                container: Some("runner".into()),
                exited: i % 3 == 0,
            })
            .collect()
    };
    MetricsPush {
        execution: Execution {
            organization: "bench-org".into(),
            repository: "bench-org/bench-repo".into(),
            workflow: "ci.yml".into(),
            job: "build".into(),
            run_id: run_id.into(),
            run_attempt: "1".into(),
        },
        summary: RunSummary {
            start_time: "2026-02-06T14:30:02.185Z".into(),
            end_time: "2026-02-06T14:40:02.185Z".into(),
            duration_seconds: 600.0,
            sample_count: 600,
            cpu_total_percent: total.stats(),
            mem_used_bytes: mem.stats(),
            cpu_source: Source::Ebpf,
            containers: vec![container("runner"), container("sidecar"), container("db")],
            top_cpu_processes: procs(50_000_000),
            top_mem_processes: procs(400_000_000),
            histograms: Some([(summary::hist::CPU_TOTAL_PERCENT.into(), total.encode())].into()),
            collector: Some(CollectorInfo {
                version: "0.1.0".into(),
                mode: "sidecar".into(),
                ebpf: true,
            }),
            ..Default::default()
        },
    }
}

async fn push_token(addr: std::net::SocketAddr) -> anyhow::Result<String> {
    let mut c = Client::connect(addr).await?;
    let body = serde_json::json!({"organization":"bench-org","repository":"bench-repo","workflow":"ci.yml","job":"build"});
    let (status, body) = c
        .send(
            "POST",
            "/api/v1/token",
            Some(&format!("Bearer {READ_TOKEN}")),
            Some(Bytes::from(body.to_string())),
        )
        .await
        .map_err(anyhow::Error::msg)?;
    if status != StatusCode::OK {
        bail!("token request failed: {status}");
    }
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    Ok(v["token"].as_str().context("no token")?.to_string())
}

struct PushResult {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Average operations per write transaction (from the receiver's /metrics).
    avg_batch: f64,
    /// Average time to build and commit one write transaction, fsync included.
    avg_commit_ms: f64,
}

/// Reads `name`'s value from a Prometheus/OpenMetrics text exposition.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Average batch size and commit time over the receiver's lifetime.
async fn commit_stats(addr: std::net::SocketAddr) -> anyhow::Result<(f64, f64)> {
    let mut c = Client::connect(addr).await?;
    let (_, body) = c
        .send("GET", "/metrics", None, None)
        .await
        .map_err(anyhow::Error::msg)?;
    let text = String::from_utf8_lossy(&body);
    let count = metric(&text, "receiver_store_commit_batch_size_count").max(1.0);
    let batch = metric(&text, "receiver_store_commit_batch_size_sum") / count;
    let commit = metric(&text, "receiver_store_commit_duration_seconds_sum") / count * 1000.0;
    Ok((batch, commit))
}

/// `clients` keep-alive clients push for `seconds` (after a warm-up); counts 201s.
async fn push_load(
    addr: std::net::SocketAddr,
    token: &str,
    clients: usize,
    seconds: f64,
) -> anyhow::Result<PushResult> {
    // Every push is a run of its own (the receiver stores a repeated push once): the run
    // id's digits are written into a copy of one encoded body.
    const RUN_ID: &str = "bench-000000000000";
    let template = serde_json::to_vec(&realistic_push(RUN_ID))?;
    let digits_at = template
        .windows(RUN_ID.len())
        .position(|w| w == RUN_ID.as_bytes())
        .context("run id in the body")?
        + "bench-".len();
    let template: Arc<[u8]> = Arc::from(template);
    let next_run = Arc::new(AtomicU64::new(0));
    let auth: Arc<str> = Arc::from(format!("Bearer {token}"));
    let measuring = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (template, next_run, auth, measuring, done, count) = (
            template.clone(),
            next_run.clone(),
            auth.clone(),
            measuring.clone(),
            done.clone(),
            count.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut client = Client::connect(addr).await.map_err(|e| e.to_string())?;
            while !done.load(Ordering::Relaxed) {
                let mut body = template.to_vec();
                let run = format!("{:012}", next_run.fetch_add(1, Ordering::Relaxed));
                body[digits_at..digits_at + 12].copy_from_slice(run.as_bytes());
                let started = Instant::now();
                let (status, text) = client
                    .send(
                        "POST",
                        "/api/v1/metrics",
                        Some(&auth),
                        Some(Bytes::from(body)),
                    )
                    .await?;
                if status != StatusCode::CREATED {
                    return Err(format!(
                        "push answered {status}: {}",
                        String::from_utf8_lossy(&text)
                    ));
                }
                if measuring.load(Ordering::Relaxed) {
                    count.fetch_add(1, Ordering::Relaxed);
                    latencies.push(started.elapsed());
                }
            }
            Ok::<_, String>(latencies)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let n = count.load(Ordering::Relaxed);
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await?.map_err(anyhow::Error::msg)?);
    }
    latencies.sort_unstable();
    let (avg_batch, avg_commit_ms) = commit_stats(addr).await?;
    Ok(PushResult {
        per_sec: n as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile_ms(&latencies, 0.50),
        p99_ms: percentile_ms(&latencies, 0.99),
        avg_batch,
        avg_commit_ms,
    })
}

fn percentile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1000.0
}

/// Pushes `runs` runs from 32 clients: all of job `build`, or, with `jobs` > 1, spread over
/// jobs `job-0000`... (run `i` in job `i % jobs`), each job with its own CPU limit.
async fn fill(
    addr: std::net::SocketAddr,
    token: &str,
    runs: usize,
    jobs: usize,
) -> anyhow::Result<()> {
    let auth: Arc<str> = Arc::from(format!("Bearer {token}"));
    let next = Arc::new(AtomicU64::new(0));
    // Building a summary (histograms included) costs far more than sending it: build it
    // once, and give every run its own run id.
    let template = Arc::new(realistic_push(""));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (auth, next, template) = (auth.clone(), next.clone(), template.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(addr).await.map_err(|e| e.to_string())?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= runs as u64 {
                    return Ok::<_, String>(());
                }
                let mut push = (*template).clone();
                push.execution.run_id = format!("run-{i}");
                if jobs > 1 {
                    let job = i as usize % jobs;
                    push.execution.job = format!("job-{job:04}");
                    for c in &mut push.summary.containers {
                        if let Some(l) = &mut c.limits {
                            l.cpu_cores = Some(1.0 + (job % 8) as f64);
                        }
                    }
                }
                let body = serde_json::to_vec(&push).map_err(|e| e.to_string())?;
                let (status, _) = client
                    .send(
                        "POST",
                        "/api/v1/metrics",
                        Some(&auth),
                        Some(Bytes::from(body)),
                    )
                    .await?;
                if status != StatusCode::CREATED {
                    return Err(format!("fill push answered {status}"));
                }
            }
        }));
    }
    for t in tasks {
        t.await?.map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

async fn query_latency(
    addr: std::net::SocketAddr,
    queries: usize,
    limit: usize,
) -> anyhow::Result<(f64, f64, f64, f64)> {
    let auth = format!("Bearer {READ_TOKEN}");
    let mut client = Client::connect(addr).await?;
    let base = "/api/v1/metrics/repo/bench-org/bench-org%2Fbench-repo/ci.yml/build";
    let mut first = Vec::with_capacity(queries);
    let mut deep = Vec::with_capacity(queries);
    // Newest page, and a page 5,000 runs deep (cursor), alternately.
    let (_, body) = client
        .send("GET", &format!("{base}?limit=1000"), Some(&auth), None)
        .await
        .map_err(anyhow::Error::msg)?;
    let page: Vec<serde_json::Value> = serde_json::from_slice(&body)?;
    let newest = page.first().and_then(|v| v["id"].as_u64()).unwrap_or(0);
    let cursor = hex_u64(newest.saturating_sub(5000));
    for i in 0..queries {
        let path = if i % 2 == 0 {
            format!("{base}?limit={limit}")
        } else {
            format!("{base}?limit={limit}&cursor={cursor}")
        };
        let started = Instant::now();
        let (status, body) = client
            .send("GET", &path, Some(&auth), None)
            .await
            .map_err(anyhow::Error::msg)?;
        let elapsed = started.elapsed();
        if status != StatusCode::OK || body.len() < 100 {
            bail!("query answered {status} with {} bytes", body.len());
        }
        if i % 2 == 0 {
            first.push(elapsed)
        } else {
            deep.push(elapsed)
        }
    }
    first.sort_unstable();
    deep.sort_unstable();
    Ok((
        percentile_ms(&first, 0.5),
        percentile_ms(&first, 0.99),
        percentile_ms(&deep, 0.5),
        percentile_ms(&deep, 0.99),
    ))
}

fn hex_u64(v: u64) -> String {
    format!("{v:016x}")
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(path) = &args.train_dict {
        return storage::train(path, args.dict_size);
    }
    // The receiver binary always runs with a subscriber at `--log-level info`: pay the
    // same per-request tracing cost here (formatted, then discarded instead of printed).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log_level))
        .with_writer(std::io::sink)
        .init();
    let mut server = tokio::runtime::Builder::new_multi_thread();
    if args.server_threads > 0 {
        server.worker_threads(args.server_threads);
    }
    let server = server.thread_name("receiver-rt").enable_all().build()?;
    if args.client_threads == 0 {
        let rt = server.handle().clone();
        return server.block_on(bench(args, rt));
    }
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads)
        .thread_name("bench-client")
        .enable_all()
        .build()?;
    clients.block_on(bench(args, server.handle().clone()))
}

async fn bench(args: Args, rt: tokio::runtime::Handle) -> anyhow::Result<()> {
    if args.storage {
        return storage::bench(args, rt).await;
    }
    let size = serde_json::to_vec(&realistic_push("bench"))?.len();
    println!(
        "receiver benchmark: loopback, {} CPU(s), summary body {size} bytes, {:.1} s per scenario",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        args.seconds
    );
    println!();
    let mut group = Vec::new();
    let mut baseline = Vec::new();
    let mut pg_group = Vec::new();
    let postgres = args.postgres.clone().map(Backend::Postgres);
    let scenarios = [
        (Backend::Redb, true, &mut group),
        (Backend::Redb, false, &mut baseline),
        (
            postgres.clone().unwrap_or(Backend::Redb),
            true,
            &mut pg_group,
        ),
    ];
    for (i, (backend, mode, results)) in scenarios.into_iter().enumerate() {
        if (i == 1 && args.no_baseline) || (i == 2 && postgres.is_none()) {
            continue;
        }
        for &clients in &args.clients {
            // A fresh database per scenario, so no scenario benefits from another's.
            let server = Server::start(&rt, &backend, mode).await?;
            let token = push_token(server.addr).await?;
            let r = push_load(server.addr, &token, clients, args.seconds).await?;
            server.stop().await?;
            results.push((clients, r));
        }
    }
    println!("durable pushes (2xx only after an fsync'd commit)");
    println!(
        "{:>8} | {:>14} {:>8} {:>8} | {:>14} {:>8} {:>8} | {:>7}",
        "clients",
        "group pushes/s",
        "p50 ms",
        "p99 ms",
        "1-txn pushes/s",
        "p50 ms",
        "p99 ms",
        "ratio"
    );
    println!("{}", "-".repeat(98));
    for (i, (clients, g)) in group.iter().enumerate() {
        match baseline.get(i) {
            Some((_, b)) => println!(
                "{clients:>8} | {:>14.0} {:>8.2} {:>8.2} | {:>14.0} {:>8.2} {:>8.2} | {:>6.1}x",
                g.per_sec,
                g.p50_ms,
                g.p99_ms,
                b.per_sec,
                b.p50_ms,
                b.p99_ms,
                g.per_sec / b.per_sec.max(1e-9)
            ),
            None => println!(
                "{clients:>8} | {:>14.0} {:>8.2} {:>8.2} |",
                g.per_sec, g.p50_ms, g.p99_ms
            ),
        }
    }
    println!();
    println!("write transactions (averages over each scenario's server, warm-up included)");
    println!(
        "{:>8} | {:>12} {:>14} | {:>12} {:>14}",
        "clients", "group batch", "group commit", "1-txn batch", "1-txn commit"
    );
    println!("{}", "-".repeat(70));
    for (i, (clients, g)) in group.iter().enumerate() {
        let (bb, bc) = baseline
            .get(i)
            .map(|(_, b)| (b.avg_batch, b.avg_commit_ms))
            .unwrap_or_default();
        println!(
            "{clients:>8} | {:>12.1} {:>11.3} ms | {:>12.1} {:>11.3} ms",
            g.avg_batch, g.avg_commit_ms, bb, bc
        );
    }
    println!();
    if !pg_group.is_empty() {
        backends::print_side_by_side(&group, &pg_group);
    }

    let mut reads = Vec::new();
    for backend in std::iter::once(Backend::Redb).chain(postgres.clone()) {
        let server = Server::start(&rt, &backend, true).await?;
        let token = push_token(server.addr).await?;
        let started = Instant::now();
        fill(server.addr, &token, args.query_runs, 1).await?;
        let filled = started.elapsed().as_secs_f64();
        let (p50, p99, deep50, deep99) =
            query_latency(server.addr, args.queries, args.query_limit).await?;
        let (size50, size99) = sizing::latency(server.addr, args.sizing_queries).await?;
        server.stop().await?;
        println!(
            "{}: stored {} runs in one job in {filled:.2} s; query latency, limit={} ({} queries, \
             1 client, keep-alive):",
            backend.name(),
            args.query_runs,
            args.query_limit,
            args.queries
        );
        println!("  newest page:            p50 {p50:.3} ms   p99 {p99:.3} ms");
        println!("  page 5,000 runs deep:   p50 {deep50:.3} ms   p99 {deep99:.3} ms");
        println!(
            "  sizing, runs=100 of {} ({} queries): p50 {size50:.3} ms   p99 {size99:.3} ms",
            args.query_runs, args.sizing_queries
        );
        reads.push((backend.name(), p99.max(deep99), size99));
    }
    println!();

    let at64 = group.iter().find(|(c, _)| *c == 64).map(|(_, r)| r.per_sec);
    let base64 = baseline
        .iter()
        .find(|(c, _)| *c == 64)
        .map(|(_, r)| r.per_sec);
    let check = |ok: bool| if ok { "PASS" } else { "FAIL" };
    if let Some(g) = at64 {
        println!(
            "target: >= 5,000 durable pushes/s at 64 clients ........ {:.0}/s  {}",
            g,
            check(g >= 5000.0)
        );
        if let Some(b) = base64 {
            println!(
                "target: >= 10x the one-commit-per-request baseline ..... {:.1}x  {}",
                g / b.max(1e-9),
                check(g >= 10.0 * b)
            );
        }
    }
    if let Some(pg) = pg_group
        .iter()
        .find(|(c, _)| *c == 64)
        .map(|(_, r)| r.per_sec)
    {
        println!(
            "target: PostgreSQL >= 5,000 durable pushes/s at 64 ...... {pg:.0}/s  {}",
            check(pg >= 5000.0)
        );
    }
    if args.fleet_runs > 0 {
        let server = Server::start(&rt, &Backend::Redb, true).await?;
        let jobs = args.fleet_jobs.clamp(1, args.fleet_runs);
        let r = fleet::bench(server.addr, args.fleet_runs, jobs, args.fleet_queries).await?;
        server.stop().await?;
        fleet::report(&r, args.fleet_runs, jobs, args.fleet_queries);
    }
    for (name, worst, size99) in reads {
        println!(
            "target: {name} query p99 <= 5 ms {:.<25} {worst:.3} ms  {}",
            " ",
            check(worst <= 5.0)
        );
        println!(
            "target: {name} sizing p99 <= 20 ms (100 runs) {:.<12} {size99:.3} ms  {}",
            " ",
            check(size99 <= 20.0)
        );
    }
    Ok(())
}
