//! The modes. Each reads the one [`Settings`] value; the measuring ones (sidecar, run,
//! node) go through the one [`runner`].
//!
//! - [`sidecar`]: the seed's mode, everything visible until a signal, one summary.
//! - [`run`]: `collector run -- CMD`, in a cgroup of its own.
//! - [`node`]: one per CI node, one summary per job.
//! - [`check`]: which CPU source works here. [`show`]: a summary as a table.
//! - [`size`]: what a job should get, from local summaries.

pub mod check;
pub mod node;
pub mod run;
pub mod runner;
pub mod show;
pub mod sidecar;
pub mod size;

use std::process::ExitCode;

use crate::settings::{
    Settings,
    cli::{Cli, Command},
};

/// Runs the mode the command line asks for.
pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Some(Command::Show { file, markdown }) = &cli.command {
        // Reads a file; needs nothing of the machine.
        return show::show(file.as_deref(), *markdown);
    }
    if let Some(Command::Size(args)) = &cli.command {
        return size::size(args);
    }
    let settings = Settings::new(cli.common)?;
    match cli.command {
        None => sidecar::run(settings).await,
        Some(Command::Run(args)) => run::run(settings, args).await,
        Some(Command::Node(args)) => node::run(settings, args).await,
        Some(Command::Check) => Ok(check::check(&settings)),
        Some(Command::Show { .. } | Command::Size(_)) => unreachable!("handled above"),
    }
}
