use std::process::ExitCode;

use clap::Parser;
use netjail::cli::{Cli, Command};

/// Exit status when netjail itself fails, as `env`, `chroot` and `docker run` use it.
const EXIT_NETJAIL_FAILED: u8 = 125;

fn main() -> ExitCode {
    use_mmap_for_flow_buffers();
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

/// Serves every allocation of 128 KiB or more, such as the TCP buffers of each flow, from its
/// own anonymous mapping. The kernel then backs only the pages a flow has touched, so an idle
/// flow costs its used pages rather than its full buffers. Without a fixed threshold glibc
/// raises it after the first such buffer is freed, and later buffers come from the heap,
/// where zeroing them touches every page.
fn use_mmap_for_flow_buffers() {
    const THRESHOLD: libc::c_int = 128 * 1024;
    // SAFETY: mallopt only changes allocator tunables; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD);
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
