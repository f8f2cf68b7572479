//! Logging: tracing to stderr, text or JSON.

use std::io::IsTerminal;

use crate::settings::cli::{Common, LogFormat};

/// Sets up tracing to stderr in the chosen format. `RUST_LOG` overrides `--log-level`.
pub fn init_logging(common: &Common) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(f) if !f.is_empty() => tracing_subscriber::EnvFilter::new(f),
        _ => {
            let level = common.log_level.to_ascii_lowercase();
            anyhow::ensure!(
                matches!(
                    level.as_str(),
                    "error" | "warn" | "info" | "debug" | "trace"
                ),
                "invalid --log-level {:?}: use error, warn, info, debug or trace",
                common.log_level
            );
            // aya's own debug chatter stays out unless asked for with RUST_LOG.
            tracing_subscriber::EnvFilter::new(format!("{level},aya=warn,aya_obj=warn"))
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match common.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
    Ok(())
}
