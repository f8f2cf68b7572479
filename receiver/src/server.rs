//! The accept loop: per-connection HTTP/1.1 with header and body timeouts, retention,
//! and graceful shutdown.
//!
//! Once the store is open, the listening address goes to `--addr-file` (if given): the
//! file's appearance means "ready", and with `--addr=127.0.0.1:0` it is how a test learns
//! the port.
//!
//! Shutdown, once the `shutdown` future completes: stop accepting (the listener is
//! dropped); ask every connection to finish its in-flight request and close; wait for them
//! up to `--shutdown-timeout`, then abort the rest; let the writer commit everything
//! queued; close the database.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument as _;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{Store, StoreOptions};

/// How often retention runs.
const RETENTION_PERIOD: Duration = Duration::from_secs(3600);

/// Serves `listener` until `shutdown` completes, then shuts down gracefully.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let options = StoreOptions {
        group_commit: config.group_commit,
        clock: config.clock,
    };
    let db_path = config.db.clone();
    let store_metrics = metrics.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&db_path, options, store_metrics))
        .await
        .context("opening the database")?
        .with_context(|| format!("opening the database {}", config.db.display()))?;
    let store = Arc::new(store);
    let state = Arc::new(AppState::new(&config, store.clone(), metrics.clone()));
    tracing::info!(db = %config.db.display(), group_commit = config.group_commit, "store open");
    if let Some(path) = &config.addr_file {
        let addr = listener.local_addr().context("the listening address")?;
        write_addr_file(path, addr)
            .with_context(|| format!("writing --addr-file {}", path.display()))?;
        tracing::info!(%addr, file = %path.display(), "listening address written");
    }

    let (closing_tx, closing_rx) = watch::channel(false);
    let clock = config.clock;
    let retention = config.retention.map(|keep| {
        let store = store.clone();
        let metrics = metrics.clone();
        let mut closing = closing_rx.clone();
        tokio::spawn(async move {
            loop {
                prune(&store, &metrics, keep, clock).await;
                tokio::select! {
                    _ = tokio::time::sleep(RETENTION_PERIOD) => {}
                    () = closed(&mut closing) => break,
                }
            }
        })
    });

    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let state = state.clone();
                    let closing = closing_rx.clone();
                    let header_timeout = config.header_timeout;
                    let span = tracing::debug_span!("connection", %peer);
                    connections.spawn(serve_connection(stream, state, closing, header_timeout).instrument(span));
                }
                Err(e) => {
                    // Typically EMFILE; back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }

    tracing::info!(
        in_flight = connections.len(),
        "shutting down: no longer accepting connections"
    );
    drop(listener);
    let _ = closing_tx.send(true);
    let drained = tokio::time::timeout(config.shutdown_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = connections.len(),
            timeout = ?config.shutdown_timeout,
            "shutdown deadline passed; aborting remaining connections"
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
    if let Some(task) = retention {
        let _ = task.await;
    }
    store.close().await;
    drop(state);
    // The last reference closes the database file cleanly.
    match Arc::try_unwrap(store) {
        Ok(store) => drop(store),
        Err(_) => tracing::debug!("store still referenced by a finishing task"),
    }
    tracing::info!("shutdown complete");
    Ok(())
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    state: Arc<AppState>,
    mut closing: watch::Receiver<bool>,
    header_timeout: Duration,
) {
    let service = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(api::handle(&state, req).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        () = closed(&mut closing) => {
            conn.as_mut().graceful_shutdown();
            if let Err(e) = conn.as_mut().await {
                tracing::debug!(error = %e, "connection ended with an error during shutdown");
            }
        }
    }
}

async fn prune(store: &Store, metrics: &Metrics, keep: Duration, clock: fn() -> SystemTime) {
    let now = clock().duration_since(UNIX_EPOCH).unwrap_or_default();
    let cutoff = now.saturating_sub(keep).as_millis() as u64;
    let mut total = 0;
    loop {
        match store.prune_before(cutoff).await {
            Ok(0) => break,
            Ok(n) => {
                total += n;
                metrics.runs_pruned.inc_by(n);
            }
            Err(e) => {
                tracing::warn!(error = %e, "retention failed");
                break;
            }
        }
    }
    if total > 0 {
        tracing::info!(pruned = total, "retention pruned old runs");
    }
}

/// Writes `addr` and a newline to `path` atomically (a temporary file beside it, renamed),
/// so a reader sees the whole address or no file.
fn write_addr_file(path: &Path, addr: SocketAddr) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, format!("{addr}\n"))?;
    std::fs::rename(&tmp, path)
}

/// Completes once shutdown has begun (or the sender is gone).
async fn closed(rx: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, so callers stay `Send`.
    let _ = rx.wait_for(|c| *c).await.map(|_| ());
}
