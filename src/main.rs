use std::process::ExitCode;

use clap::Parser;
use netjail::cli::{Cli, Command};

/// Exit status when netjail itself fails, as `env`, `chroot` and `docker run` use it.
const EXIT_NETJAIL_FAILED: u8 = 125;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(EXIT_NETJAIL_FAILED)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging();

    let result = match cli.command {
        Command::Run(args) => args.into_settings().and_then(netjail::supervisor::run),
        Command::Doctor(args) => netjail::doctor::run(&args),
    };
    match result {
        Ok(status) => ExitCode::from(status.clamp(0, 255) as u8),
        Err(err) => {
            eprintln!("netjail: {err:#}");
            ExitCode::from(EXIT_NETJAIL_FAILED)
        }
    }
}

/// Logs for people go to standard error, filtered by `NETJAIL_LOG` (default: warnings).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NETJAIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
