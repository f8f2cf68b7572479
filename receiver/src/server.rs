//! The accept loop: per-connection HTTP/1.1 with header and body timeouts, a connection
//! cap, retention, and graceful shutdown.
//!
//! [`open`] opens the store; [`Server::serve`] then answers on a listener. The binary binds
//! its socket between the two, so no connection is accepted before requests can be
//! answered. Once serving, the listening address goes to `--addr-file` (if given): the
//! file's appearance means "ready", and with `--addr=127.0.0.1:0` it is how a test learns
//! the port.
//!
//! At most `--max-connections` connections are served at once. Beyond that a new
//! connection is accepted, answered `503 {"error":"too many connections"}` with
//! `Connection: close` in a single non-blocking write, and closed at once: it costs no task,
//! no timer and no file descriptor past that moment. Failed accepts (`EMFILE` and the like)
//! are counted and logged, and the loop pauses (10 ms, doubling up to 1 s) instead of
//! spinning.
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
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument as _;

use crate::app::AppState;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{Store, StoreOptions};

/// How often retention runs.
const RETENTION_PERIOD: Duration = Duration::from_secs(3600);

/// First pause after a failed accept; it doubles, up to [`ACCEPT_MAX_PAUSE`], while accepts
/// keep failing.
const ACCEPT_FIRST_PAUSE: Duration = Duration::from_millis(10);
/// Longest pause after a failed accept.
const ACCEPT_MAX_PAUSE: Duration = Duration::from_secs(1);
/// At most one "refusing connections" warning per this period (each refusal is counted).
const REFUSAL_LOG_PERIOD: Duration = Duration::from_secs(10);

/// The answer to a connection over `--max-connections`.
const TOO_MANY_CONNECTIONS: &str = r#"{"error":"too many connections"}"#;

/// Opens the store, then serves `listener` until `shutdown` completes, then shuts down
/// gracefully. (The binary calls [`open`] and [`Server::serve`] with the bind between them.)
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    open(config).await?.serve(listener, shutdown).await
}

/// A receiver whose store is open, ready to serve.
#[derive(Debug)]
pub struct Server {
    /// The checked configuration.
    config: Config,
    /// The open store.
    store: Arc<Store>,
    /// The receiver's own metrics, shared with the store.
    metrics: Arc<Metrics>,
}

/// Opens the store (after a crash, a quick repair: milliseconds whatever the file's size).
pub async fn open(config: Config) -> anyhow::Result<Server> {
    let metrics = Arc::new(Metrics::default());
    let options = StoreOptions {
        group_commit: config.group_commit,
        clock: config.clock,
        headroom_bytes: config.max_body_bytes as u64,
        db_pool_size: config.db_pool_size,
        db_timeout: config.db_timeout,
        compression: config.compression,
        compress_in_writer: config.compress_in_writer,
    };
    let started = Instant::now();
    let store = Store::open(&config.db, options, metrics.clone())
        .await
        .with_context(|| format!("opening the database {}", config.db))?;
    tracing::info!(
        db = %config.db,
        backend = store.backend(),
        group_commit = config.group_commit,
        open_ms = started.elapsed().as_secs_f64() * 1000.0,
        "store open"
    );
    Ok(Server {
        config,
        store: Arc::new(store),
        metrics,
    })
}

impl Server {
    /// Serves `listener` until `shutdown` completes, then shuts down gracefully.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let Self {
            config,
            store,
            metrics,
        } = self;
        serve(config, store, metrics, listener, shutdown).await
    }
}

async fn serve(
    config: Config,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let state = Arc::new(AppState::new(&config, store.clone(), metrics.clone()));
    if let Some(path) = &config.addr_file {
        let addr = listener.local_addr().context("the listening address")?;
        write_addr_file(path, addr)
            .with_context(|| format!("writing --addr-file {}", path.display()))?;
        tracing::info!(%addr, file = %path.display(), "listening address written");
    }

    let (closing_tx, closing_rx) = watch::channel(false);
    let clock = config.clock;
    let sizer = tokio::spawn(state.sizer.clone().run(
        store.clone(),
        config.runner_classes.clone(),
        clock,
        closing_rx.clone(),
    ));
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
    let max_connections = i64::try_from(config.max_connections).unwrap_or(i64::MAX);
    let refusal = refusal_response();
    let mut accept_pause = ACCEPT_FIRST_PAUSE;
    let mut refusals = Refusals::default();
    let mut trim = Trim::default();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    accept_pause = ACCEPT_FIRST_PAUSE;
                    if metrics.connections_open.get() >= max_connections {
                        metrics.connections_refused.inc();
                        refusals.log(config.max_connections);
                        refuse(stream, &refusal);
                    } else {
                        let _ = stream.set_nodelay(true);
                        let open = OpenConnection::new(metrics.clone());
                        let state = state.clone();
                        let closing = closing_rx.clone();
                        let header_timeout = config.header_timeout;
                        let span = tracing::debug_span!("connection", %peer);
                        connections.spawn(
                            serve_connection(stream, state, closing, header_timeout, open)
                                .instrument(span),
                        );
                    }
                }
                Err(e) => {
                    // Typically EMFILE or ENFILE: the connection stays in the backlog. Pause
                    // instead of spinning; the pause grows while accepts keep failing.
                    metrics.accept_errors.inc();
                    tracing::warn!(error = %e, pause = ?accept_pause, "accept failed; pausing");
                    tokio::time::sleep(accept_pause).await;
                    accept_pause = (accept_pause * 2).min(ACCEPT_MAX_PAUSE);
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {
                trim.closed(connections.len());
            }
        }
        trim.opened(connections.len());
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
    // Sizing answers not made yet are made at the next start (their jobs are stale).
    let _ = sizer.await;
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

/// Gives memory that many connections held back to the system once most of them have closed.
/// The allocator keeps freed memory in its per-thread arenas for reuse, so after a burst of
/// connections (or an attack of slow ones) the process would stay at its peak for good.
#[derive(Default)]
struct Trim {
    /// Most connections open at once since the last trim.
    peak: usize,
    last: Option<std::time::Instant>,
}

impl Trim {
    /// A burst worth trimming after.
    const BURST: usize = 64;
    /// At most one trim per this long: trimming walks every arena.
    const SPACING: Duration = Duration::from_secs(1);

    fn opened(&mut self, open: usize) {
        self.peak = self.peak.max(open);
    }

    /// After a connection ended: trims (on a blocking thread) when at most a quarter of the
    /// burst's peak is left open (at most once a second), or none.
    fn closed(&mut self, open: usize) {
        if self.peak < Self::BURST || open > self.peak / 4 {
            return;
        }
        if open > 0 && self.last.is_some_and(|t| t.elapsed() < Self::SPACING) {
            return;
        }
        tracing::debug!(
            peak = self.peak,
            open,
            "returning freed connection memory to the system"
        );
        self.peak = open;
        self.last = Some(std::time::Instant::now());
        // SAFETY: malloc_trim only releases memory the allocator holds as free. (glibc's
        // malloc keeps freed arenas; musl's, in the static release builds, has no
        // malloc_trim and returns freed memory by itself.)
        #[cfg(target_env = "gnu")]
        tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) });
    }
}

/// One served connection, counted in `receiver_connections_open` until it is dropped (when
/// the connection's task ends, however it ends).
struct OpenConnection(Arc<Metrics>);

impl OpenConnection {
    fn new(metrics: Arc<Metrics>) -> Self {
        metrics.connections_open.inc();
        Self(metrics)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections_open.dec();
    }
}

/// Rate-limits the "refusing connections" warning.
#[derive(Default)]
struct Refusals {
    /// When the last warning was logged.
    logged_at: Option<Instant>,
    /// Refusals since then.
    since: u64,
}

impl Refusals {
    fn log(&mut self, max: usize) {
        self.since += 1;
        if self
            .logged_at
            .is_none_or(|t| t.elapsed() >= REFUSAL_LOG_PERIOD)
        {
            tracing::warn!(
                max_connections = max,
                refused = self.since,
                "refusing connections: --max-connections are open"
            );
            self.logged_at = Some(Instant::now());
            self.since = 0;
        }
    }
}

/// The whole HTTP answer to a refused connection.
fn refusal_response() -> Vec<u8> {
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{TOO_MANY_CONNECTIONS}",
        TOO_MANY_CONNECTIONS.len()
    )
    .into_bytes()
}

/// Answers a connection over the cap without waiting for anything, and closes it: one
/// non-blocking write (a fresh socket's send buffer takes it whole), then whatever request
/// bytes have already arrived are read, so that closing sends a FIN rather than a reset
/// where possible. The socket is taken out of tokio first: tokio's `try_write` would not
/// even try before the reactor has seen the new socket writable.
fn refuse(stream: tokio::net::TcpStream, answer: &[u8]) {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = stream.into_std() else {
        return;
    };
    // Still non-blocking: neither call waits.
    let _ = stream.write(answer);
    let mut buf = [0u8; 4096];
    for _ in 0..4 {
        match stream.read(&mut buf) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    state: Arc<AppState>,
    mut closing: watch::Receiver<bool>,
    header_timeout: Duration,
    _open: OpenConnection,
) {
    let service = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(crate::router::handle(&state, req).await) }
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
    measure_space(store, metrics).await;
}

/// Sets `receiver_store_file_bytes` and `receiver_store_allocated_bytes` (redb only).
async fn measure_space(store: &Store, metrics: &Metrics) {
    match store.space().await {
        Ok(Some(space)) => {
            metrics
                .store_file_bytes
                .set(i64::try_from(space.file_bytes).unwrap_or(i64::MAX));
            metrics
                .store_allocated_bytes
                .set(i64::try_from(space.allocated_bytes).unwrap_or(i64::MAX));
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "measuring the store's space failed"),
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
