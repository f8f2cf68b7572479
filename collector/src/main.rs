use std::process::ExitCode;

use clap::Parser;
use collector::{logging, modes, settings::cli::Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = logging::init_logging(&cli.common) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(modes::dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::from(2)
        }
    }
}
