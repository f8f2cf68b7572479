use clap::{Parser, Subcommand};
use collector::{ebpf, source::CpuSource};

/// Resource collector for CI jobs.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Report which CPU source this machine allows (eBPF, cgroup counters or /proc) and why.
    Check,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check) | None => {
            if !ebpf::object_embedded() {
                tracing::warn!("built without the eBPF object: running without eBPF");
            }
            let source = CpuSource::pick();
            println!("cpu source: {}", source.name());
            Ok(())
        }
    }
}
