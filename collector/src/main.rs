use std::process::ExitCode;

use clap::Parser;
use collector::{
    app,
    cli::{Cli, Command},
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = app::init_logging(&cli.common) {
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
    let result = runtime.block_on(async {
        match cli.command {
            None => app::sidecar(cli.common).await,
            Some(Command::Run(args)) => app::run(cli.common, args).await,
            Some(Command::Node(args)) => collector::node::run(cli.common, args).await,
            Some(Command::Check) => Ok(app::check(&cli.common)),
            Some(Command::Show { file }) => app::show(file.as_deref()),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::from(2)
        }
    }
}
