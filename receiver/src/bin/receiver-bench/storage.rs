//! `receiver-bench --storage` (`cargo xtask bench storage`): bytes on disk per run after
//! filling a store with the realistic mix ([`super::mix`]) through the store itself (no
//! HTTP), on redb and PostgreSQL side by side, each stored plain and compressed; then, on
//! the filled database, durable pushes at 64 clients, query and sizing latency over HTTP;
//! and the job list at fleet scale (10,000 jobs, 1,000,000 runs).
//!
//! `--train-dict PATH` writes a zstd dictionary trained on the mix (another seed than the
//! one measured) and the recorded summaries under `backtest/histories`, and prints what
//! each compression makes of the mix.

use std::os::unix::fs::MetadataExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context as _;
use receiver::config::Database;
use receiver::store::{Compression, NewRun, Store, StoreOptions, codec, split};
use summary::RunSummary;

use super::server::{Backend, Server, admin_sql, scratch};
use super::{Args, mix, percentile_ms};

/// The seed of the measured mix; the dictionary is trained on [`TRAIN_SEED`].
const MEASURE_SEED: u64 = 1;
const TRAIN_SEED: u64 = 777_000;

/// Stores runs `from..to` of the mix (jobs `i % jobs`) from `tasks` concurrent writers,
/// so the writer's group commit takes hundreds per transaction.
pub async fn fill(
    store: &Arc<Store>,
    pools: &Arc<[Vec<RunSummary>; 3]>,
    from: u64,
    to: u64,
    jobs: u64,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(from));
    let mut tasks = Vec::new();
    for _ in 0..512 {
        let (store, pools, next) = (store.clone(), pools.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= to {
                    return Ok::<_, anyhow::Error>(());
                }
                let push = mix::run(&pools, i, jobs);
                store
                    .insert(NewRun::of_push(&push.execution, &push.summary)?)
                    .await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Bytes on disk: (size, allocated) of a redb file; PostgreSQL's tables with their
/// indexes and TOAST, both figures the same.
async fn size_of(db: &Database) -> anyhow::Result<(u64, u64)> {
    match db {
        Database::File(path) => {
            let m = std::fs::metadata(path)?;
            Ok((m.len(), m.blocks() * 512))
        }
        Database::Postgres(url) => {
            let (client, conn) = tokio_postgres::connect(url.expose(), tokio_postgres::NoTls)
                .await
                .context("connecting to measure")?;
            let conn = tokio::spawn(conn);
            client.batch_execute("CHECKPOINT").await?;
            let row = client
                .query_one(
                    "SELECT (pg_total_relation_size('runs') + pg_total_relation_size('jobs'))::int8",
                    &[],
                )
                .await?;
            drop(client);
            let _ = conn.await;
            let bytes: i64 = row.get(0);
            Ok((bytes as u64, bytes as u64))
        }
    }
}

/// One variant's figures.
struct Measured {
    label: String,
    fill_s: f64,
    size: (u64, u64),
    /// redb's own account after the fill: allocated, stored in leaves, fragmented.
    space: Option<receiver::store::Space>,
    push: super::PushResult,
    query_p99: f64,
    sizing_p99: f64,
}

/// Fills a fresh database of `backend` with `runs` runs stored `compression`-wise (with
/// PostgreSQL's own lz4 TOAST compression when `toast_lz4`), measures its size, then
/// pushes, queries and sizing over HTTP on it.
async fn variant(
    args: &Args,
    rt: &tokio::runtime::Handle,
    backend: &Backend,
    compression: Compression,
    toast_lz4: bool,
    in_writer: bool,
    pools: &Arc<[Vec<RunSummary>; 3]>,
) -> anyhow::Result<Measured> {
    let label = format!(
        "{} {}{}",
        backend.name(),
        match (compression, toast_lz4) {
            (Compression::Off, true) => "TOAST lz4",
            (Compression::Off, false) => "plain",
            (Compression::Zstd, _) => "zstd",
            (Compression::ZstdDict, _) => "zstd+dict",
        },
        if in_writer { " (writer)" } else { "" }
    );
    let (db, scratch) = scratch(backend).await?;
    let options = StoreOptions {
        compression,
        compress_in_writer: in_writer,
        db_pool_size: 32,
        ..StoreOptions::default()
    };
    let store = Arc::new(Store::open(&db, options, Arc::default()).await?);
    if let (true, Database::Postgres(url)) = (toast_lz4, &db) {
        admin_sql(
            url.expose(),
            "ALTER TABLE runs ALTER COLUMN payload SET STORAGE EXTENDED,
                 ALTER COLUMN payload SET COMPRESSION lz4",
        )
        .await
        .context("lz4 TOAST compression (a server built without lz4?)")?;
    }
    let started = Instant::now();
    fill(&store, pools, 0, args.storage_runs, args.storage_jobs).await?;
    let fill_s = started.elapsed().as_secs_f64();
    // Measured on the mix alone; then the job the query and sizing read gets runs of its
    // own (the query reads a page 5,000 runs deep).
    let size = size_of(&db).await?;
    let space = store.space().await?;
    let template = super::realistic_push("");
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..256 {
        let (store, next, mut push) = (store.clone(), next.clone(), template.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= 6_000 {
                    break;
                }
                push.execution.run_id = format!("q{i}");
                store
                    .insert(NewRun::of_push(&push.execution, &push.summary)?)
                    .await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    store.close().await;
    drop(store);
    let server = Server::start_on(rt, db, scratch, true, compression, in_writer).await?;
    let token = super::push_token(server.addr).await?;
    let push = super::push_load(server.addr, &token, 64, args.seconds).await?;
    let (_, p99, _, deep99) =
        super::query_latency(server.addr, args.queries, args.query_limit).await?;
    let (_, sizing_p99) = super::sizing::latency(server.addr, args.sizing_queries).await?;
    server.stop().await?;
    Ok(Measured {
        label,
        fill_s,
        size,
        space,
        push,
        query_p99: p99.max(deep99),
        sizing_p99,
    })
}

/// The storage benchmark.
pub async fn bench(args: Args, rt: tokio::runtime::Handle) -> anyhow::Result<()> {
    let pools = Arc::new(mix::pools(MEASURE_SEED));
    let runs = args.storage_runs;
    let mean_json = (0..1000)
        .map(|i| serde_json::to_vec(&mix::run(&pools, i, 10).summary).map_or(0, |v| v.len()))
        .sum::<usize>()
        / 1000;
    println!(
        "storage: {runs} runs of the mix (60 % short jobs, 10 % two-hour jobs with full \
         timelines, 30 % seed-format) in {} jobs, stored through the store; mean summary \
         JSON {mean_json} bytes",
        args.storage_jobs
    );
    // (backend, compression, PostgreSQL's lz4 TOAST, compressed by the writer)
    let mut variants = vec![
        (Backend::Redb, Compression::Off, false, false),
        (Backend::Redb, Compression::Zstd, false, false),
        (Backend::Redb, Compression::ZstdDict, false, false),
        (Backend::Redb, Compression::ZstdDict, false, true),
    ];
    if let Some(pg) = &args.postgres {
        let pg = Backend::Postgres(pg.clone());
        variants.extend([
            (pg.clone(), Compression::Off, false, false),
            (pg.clone(), Compression::Off, true, false),
            (pg.clone(), Compression::ZstdDict, false, false),
            (pg, Compression::ZstdDict, false, true),
        ]);
    }
    if args.storage_compressed_only {
        variants.retain(|v| v.1 == Compression::ZstdDict);
    }
    let mut results = Vec::new();
    for (backend, compression, lz4, in_writer) in &variants {
        let m = variant(&args, &rt, backend, *compression, *lz4, *in_writer, &pools).await?;
        println!("  {} done (filled in {:.1} s)", m.label, m.fill_s);
        results.push(m);
    }
    println!();
    println!(
        "{:<18} | {:>9} {:>9} | {:>8} {:>8} | {:>9} {:>7} | {:>8} {:>8}",
        "stored as",
        "file MB",
        "alloc MB",
        "B/run",
        "alloc/run",
        "pushes/s",
        "p99 ms",
        "query99",
        "sizing99"
    );
    println!("{}", "-".repeat(104));
    for m in &results {
        println!(
            "{:<18} | {:>9.1} {:>9.1} | {:>8.0} {:>8.0} | {:>9.0} {:>7.2} | {:>8.3} {:>8.3}",
            m.label,
            m.size.0 as f64 / 1e6,
            m.size.1 as f64 / 1e6,
            m.size.0 as f64 / runs as f64,
            m.size.1 as f64 / runs as f64,
            m.push.per_sec,
            m.push.p99_ms,
            m.query_p99,
            m.sizing_p99
        );
    }
    for m in &results {
        if let Some(s) = m.space {
            let per = |b: u64| b as f64 / runs as f64;
            println!(
                "{:<18} | redb's account per run: pages allocated {:.0} B, keys and values \
                 {:.0} B, fragmented (page rounding, free pages) {:.0} B",
                m.label,
                per(s.allocated_bytes),
                per(s.stored_bytes),
                per(s.fragmented_bytes)
            );
        }
    }
    println!(
        "  (pushes: 64 clients over HTTP, {:.0} s, durable; query: p99 of the newest page and \
         one 5,000 runs deep, limit {}; sizing: 100 runs; both in ms)",
        args.seconds, args.query_limit
    );
    println!();
    let check = |ok: bool| if ok { "PASS" } else { "FAIL" };
    for m in &results {
        if m.label.ends_with("zstd+dict") {
            let per_run = m.size.0.max(m.size.1) as f64 / runs as f64;
            println!(
                "target: {} <= 2 KB on disk per run ......... {per_run:.0} B  {}",
                m.label,
                check(per_run <= 2048.0)
            );
            println!(
                "target: {} >= 2,000 pushes/s, p99 <= 20 ms .. {:.0}/s {:.1} ms  {}",
                m.label,
                m.push.per_sec,
                m.push.p99_ms,
                check(m.push.per_sec >= 2000.0 && m.push.p99_ms <= 20.0)
            );
            println!(
                "target: {} query p99 <= 5 ms, sizing <= 20 ms  {:.2} / {:.2} ms  {}",
                m.label,
                m.query_p99,
                m.sizing_p99,
                check(m.query_p99 <= 5.0 && m.sizing_p99 <= 20.0)
            );
        }
    }
    if args.storage_fleet_runs > 0 {
        super::storage_fleet::bench(&args, &rt, &pools).await?;
    }
    Ok(())
}

/// `--train-dict`: trains the dictionary on the split encoding (what new rows compress)
/// and prints what each format and compression makes of the measured mix.
pub fn train(path: &std::path::Path, size: usize) -> anyhow::Result<()> {
    let pools = mix::pools(TRAIN_SEED);
    let mut samples: Vec<Vec<u8>> = (0..3000u64)
        .map(|i| {
            let push = mix::run(&pools, i * 7 + i / 10, 300);
            NewRun::of_push(&push.execution, &push.summary).map(|r| split::split(&r.packable()))
        })
        .collect::<Result<_, _>>()?;
    // Recorded summaries, as `collector run` wrote them.
    let mut recorded = 0;
    for dir in std::fs::read_dir("backtest/histories")
        .into_iter()
        .flatten()
    {
        for file in std::fs::read_dir(dir?.path()).into_iter().flatten() {
            let path = file?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let summary: RunSummary = serde_json::from_slice(&std::fs::read(&path)?)?;
                let push = summary::MetricsPush {
                    execution: mix::run(&pools, recorded, 50).execution,
                    summary,
                };
                let run = NewRun::of_push(&push.execution, &push.summary)?;
                samples.push(split::split(&run.packable()));
                recorded += 1;
            }
        }
    }
    let dict = zstd::dict::from_samples(&samples, size)?;
    std::fs::write(path, &dict)?;
    println!(
        "dictionary: {} bytes from {} split samples ({recorded} recorded) -> {}",
        dict.len(),
        samples.len(),
        path.display()
    );
    // What each format makes of the measured mix (the built-in dictionary as built into
    // this binary: rebuild after training to see the new one as `pack` uses it).
    let pools = mix::pools(MEASURE_SEED);
    let n = 2000u64;
    let mut new_dict = zstd::bulk::Compressor::with_dictionary(codec::LEVEL, &dict)?;
    let mut times = Vec::new();
    let started = Instant::now();
    println!(
        "{:<12} {:>5} | {:>7} {:>9} {:>9} {:>9} {:>9}",
        "kind", "runs", "plain", "text+d", "split", "split+d", "split+new"
    );
    let mut all = [0usize; 5];
    for (kind, name) in [
        (mix::Kind::Short, "short"),
        (mix::Kind::Long, "two-hour"),
        (mix::Kind::Seed, "seed-format"),
    ] {
        let (mut sums, mut k) = ([0usize; 5], 0);
        for i in (0..n).filter(|i| mix::kind_of(*i) == kind) {
            let push = mix::run(&pools, i, 300);
            let run = NewRun::of_push(&push.execution, &push.summary)?;
            let plain = run.packable();
            let size = |v: Option<Vec<u8>>| v.map_or(0, |v| v.len());
            sums[0] += plain.len();
            sums[1] += size(codec::pack_as(
                &plain,
                &[],
                Compression::ZstdDict,
                codec::FORMAT_ZSTD,
            ));
            sums[2] += size(codec::pack(&plain, &[], Compression::Zstd));
            let t = Instant::now();
            sums[3] += size(codec::pack(&plain, &[], Compression::ZstdDict));
            times.push(t.elapsed());
            sums[4] += new_dict.compress(&split::split(&plain))?.len() + codec::HEADER_LEN;
            k += 1;
        }
        println!(
            "{name:<12} {k:>5} | {:>7} {:>9} {:>9} {:>9} {:>9}",
            sums[0] / k,
            sums[1] / k,
            sums[2] / k,
            sums[3] / k,
            sums[4] / k
        );
        for (a, s) in all.iter_mut().zip(sums) {
            *a += s;
        }
    }
    let n = n as usize;
    println!(
        "{:<12} {n:>5} | {:>7} {:>9} {:>9} {:>9} {:>9}",
        "mix",
        all[0] / n,
        all[1] / n,
        all[2] / n,
        all[3] / n,
        all[4] / n
    );
    times.sort_unstable();
    println!(
        "  (mean stored bytes with the 18-byte row header; text+d: format 1 with the built-in \
         dictionary; split: format 2, plain zstd; split+d: format 2 as `pack` stores it; \
         split+new: with the dictionary just trained. `pack` p50 {:.3} ms, p99 {:.3} ms; \
         {:.1} s in all)",
        percentile_ms(&times, 0.5),
        percentile_ms(&times, 0.99),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
