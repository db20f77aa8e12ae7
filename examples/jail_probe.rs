//! Manual probe of `netjail::jail`: runs a command in a jail without the
//! netjail stack and prints what the jail looks like and how long it took.
//!
//! ```text
//! cargo build --example jail_probe
//! target/debug/examples/jail_probe                       # print the jail's network, ids, caps
//! target/debug/examples/jail_probe -- sh -c 'exit 7'     # exit status passes through
//! target/debug/examples/jail_probe --no-user-namespace   # as root, without a user namespace
//! target/debug/examples/jail_probe --time 20             # time spawn+start+exit of `true`
//! target/debug/examples/jail_probe --start-delay 3000    # wait 3 s between spawn and start
//! ```
//!
//! The TUN device is only drained: packets the jail sends are counted and
//! dropped, so nothing inside the jail reaches any network.

use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use netjail::jail::{Jail, JailConfig, JailNetwork, block_forwarded_signals};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

const DEFAULT_PROBE: &str = "ip addr; ip route; ip -6 route; cat /etc/resolv.conf; id; \
                             grep -E '^(Cap|NoNewPrivs)' /proc/self/status";

const PROBE_RESOLV_CONF: &str = "# written by jail_probe\nnameserver 198.19.0.1\n";

struct Options {
    user_namespace: bool,
    timing_runs: Option<u32>,
    start_delay: Duration,
    command: Vec<OsString>,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        user_namespace: true,
        timing_runs: None,
        start_delay: Duration::ZERO,
        command: Vec::new(),
    };
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--no-user-namespace") => options.user_namespace = false,
            Some("--time") => {
                let runs = args.next().and_then(|n| n.to_str()?.parse().ok());
                options.timing_runs = Some(runs.ok_or("--time needs a number of runs")?);
            }
            Some("--start-delay") => {
                let millis = args.next().and_then(|n| n.to_str()?.parse().ok());
                let millis = millis.ok_or("--start-delay needs milliseconds")?;
                options.start_delay = Duration::from_millis(millis);
            }
            Some("--") => {
                options.command = args.collect();
                break;
            }
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    if options.command.is_empty() {
        options.command = vec!["sh".into(), "-c".into(), DEFAULT_PROBE.into()];
    }
    Ok(options)
}

fn config_for(options: &Options, command: Vec<OsString>) -> JailConfig {
    JailConfig {
        command,
        user_namespace: options.user_namespace,
        resolv_conf: PROBE_RESOLV_CONF.to_string(),
        network: JailNetwork::default(),
    }
}

/// Reads and drops packets from the TUN device until `stop` is set. Returns
/// the number of packets read.
fn drain_tun(tun: OwnedFd, stop: Arc<AtomicBool>) -> u64 {
    let mut packets = 0;
    let mut buffer = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [PollFd::new(tun.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(100u16)).unwrap_or(0) == 0 {
            continue;
        }
        while nix::unistd::read(&tun, &mut buffer).is_ok() {
            packets += 1;
        }
    }
    packets
}

fn run_once(options: &Options) -> Result<i32, String> {
    let config = config_for(options, options.command.clone());
    let started = Instant::now();
    let mut jail = Jail::spawn(&config).map_err(|error| error.to_string())?;
    eprintln!(
        "jail_probe: supervisor pid {}, jail init pid {}",
        std::process::id(),
        jail.pid()
    );
    eprintln!("jail_probe: jail ready after {:?}", started.elapsed());

    let stop = Arc::new(AtomicBool::new(false));
    let tun = jail.take_tun();
    let drain = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || drain_tun(tun, stop))
    };

    thread::sleep(options.start_delay);
    jail.start().map_err(|error| error.to_string())?;
    let status = jail.wait().map_err(|error| error.to_string())?;
    stop.store(true, Ordering::Relaxed);
    let packets = drain.join().expect("drain thread panicked");
    eprintln!("jail_probe: {packets} packets read from the TUN device");
    Ok(status)
}

/// Spawns, starts and waits for `true` `runs` times, single-threaded, and
/// prints the median time of each phase. Closing the TUN device is timed
/// apart: the kernel unregisters the interface then, which waits for an RCU
/// grace period, and netjail pays that only once, at its own exit.
fn time_runs(options: &Options, runs: u32) -> Result<i32, String> {
    let mut ready = Vec::new();
    let mut total = Vec::new();
    let mut close = Vec::new();
    for _ in 0..runs {
        let config = config_for(options, vec!["true".into()]);
        let started = Instant::now();
        let mut jail = Jail::spawn(&config).map_err(|error| error.to_string())?;
        ready.push(started.elapsed());
        let tun = jail.take_tun();
        jail.start().map_err(|error| error.to_string())?;
        let status = jail.wait().map_err(|error| error.to_string())?;
        total.push(started.elapsed());
        if status != 0 {
            return Err(format!("`true` exited with {status}"));
        }
        let closing = Instant::now();
        drop(tun);
        close.push(closing.elapsed());
    }
    println!(
        "{runs} runs of `true`: spawn until ready {:?}, spawn until exit {:?} \
         (min {:?}, max {:?}), closing the TUN device {:?} (medians)",
        median(&mut ready),
        median(&mut total),
        total.iter().min().expect("at least one run"),
        total.iter().max().expect("at least one run"),
        median(&mut close),
    );
    Ok(0)
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() -> ExitCode {
    if let Err(error) = block_forwarded_signals() {
        eprintln!("jail_probe: {error}");
        return ExitCode::from(125);
    }
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("jail_probe: {message}");
            return ExitCode::from(2);
        }
    };
    let result = match options.timing_runs {
        Some(0) => Err("--time needs at least one run".to_string()),
        Some(runs) => time_runs(&options, runs),
        None => run_once(&options),
    };
    match result {
        Ok(status) => {
            eprintln!("jail_probe: exit status {status}");
            ExitCode::from(status as u8)
        }
        Err(message) => {
            eprintln!("jail_probe: {message}");
            ExitCode::from(125)
        }
    }
}
