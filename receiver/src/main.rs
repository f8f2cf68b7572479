//! The `receiver` binary: parse the command line, set up tracing, open the store, then bind
//! the listening socket and serve. Binding only once the store is open means no connection
//! is accepted that could not be answered (a connection attempt before that is refused by
//! the kernel, which clients retry).

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser as _;
use receiver::config::{Cli, Config, LogFormat, resolve_addr};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match EnvFilter::try_new(&cli.log_level) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("receiver: invalid --log-level: {e}");
            return ExitCode::from(2);
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
    let config = match Config::from_cli(&cli) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("refusing to start: {e}");
            eprintln!("receiver: refusing to start: {e}");
            return ExitCode::from(2);
        }
    };
    let addr = match resolve_addr(&cli.addr) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("receiver: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("receiver: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    fit_fd_limit(config.max_connections);
    let result = runtime.block_on(async move {
        let server = receiver::server::open(config).await?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        tracing::info!(addr = %listener.local_addr()?, "listening");
        server.serve(listener, shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("receiver: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// File descriptors the receiver needs besides its connections: the database, the
/// listener, the log, the runtime's own, a margin.
const FD_RESERVE: libc::rlim_t = 64;

/// Raises the soft file-descriptor limit (up to the hard one) so that `--max-connections`
/// connections fit, or warns that accepts will fail with EMFILE before the cap is reached.
fn fit_fd_limit(max_connections: usize) {
    let needed = (max_connections as libc::rlim_t).saturating_add(FD_RESERVE);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    let soft = limit.rlim_cur;
    if soft >= needed {
        return;
    }
    let raised = libc::rlimit {
        rlim_cur: needed.min(limit.rlim_max),
        rlim_max: limit.rlim_max,
    };
    // SAFETY: `raised` is a valid rlimit whose soft limit does not exceed the hard one.
    let ok = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0;
    let now = if ok { raised.rlim_cur } else { soft };
    if now < needed {
        tracing::warn!(
            max_connections,
            fd_limit = now,
            "the file-descriptor limit is below --max-connections plus {FD_RESERVE}: accepts \
             will fail (EMFILE) before the cap is reached; raise `ulimit -n` or lower \
             --max-connections"
        );
    } else {
        tracing::debug!(from = soft, to = now, "raised the file-descriptor limit");
    }
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot install a SIGTERM handler; only SIGINT stops the receiver");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
