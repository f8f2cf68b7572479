//! The `receiver` binary: parse the command line, set up tracing, serve.

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
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        tracing::info!(addr = %listener.local_addr()?, "listening");
        receiver::server::run(config, listener, shutdown_signal()).await
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
