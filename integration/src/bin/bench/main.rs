//! The benchmark suite: netjail compared with direct loopback, slirp4netns
//! and pasta in one run, plus netjail's own memory and idle costs.
//!
//! `scripts/bench` builds this binary and runs `bench run`, which starts the
//! servers on the host's 127.0.0.1, runs each client on each path and writes
//! docs/benchmarks.md. The same binary is the client inside the namespaces
//! (`bench client ...`). Traffic goes only to 127.0.0.0/8 and to addresses
//! inside the namespaces the suite or netjail creates, and netjail always gets
//! the fixture resolver.

mod cases;
mod clients;
mod error;
mod machine;
mod options;
mod paths;
mod procfs;
mod report;
mod results;
mod servers;
mod stats;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::unistd::{User, chown, geteuid};

use crate::cases::Suite;
use crate::error::{Context, Result, bail};
use crate::options::{ClientArgs, Options, USAGE};
use crate::paths::{Launcher, NetworkPath};
use crate::servers::{BENCH_NAME, DUAL_STACK_NAME, Servers};

/// The unprivileged user that `scripts/bench` (like `scripts/test`) creates.
const DEFAULT_USER: &str = "netjail-test";

/// The descriptor limit the suite requests: 10,000 connections in the jail
/// need as many descriptors in the client, in netjail and in the server.
const REQUESTED_NOFILE: u64 = 65_536;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.split_first() {
        Some((command, rest)) if command == "run" => run_suite(rest),
        Some((command, rest)) if command == "client" => run_client(rest),
        Some((command, rest)) if command == "serve" => serve(rest),
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    match result {
        Ok(status) => std::process::exit(status),
        Err(err) => {
            eprintln!("bench: {err}");
            std::process::exit(1);
        }
    }
}

/// The default limit of `bench serve`, in seconds.
const DEFAULT_SERVE_SECONDS: u64 = 3600;

/// Starts the servers, prints how to reach them, and keeps them up until
/// standard input closes or the time limit passes.
fn serve(args: &[String]) -> Result<i32> {
    let seconds = match args.first() {
        Some(value) => value
            .parse()
            .ok()
            .with_context(|| format!("invalid number of seconds {value:?}\n\n{USAGE}"))?,
        None => DEFAULT_SERVE_SECONDS,
    };
    raise_nofile_limit()?;
    let logdir = tempfile::tempdir().context("creating a temporary directory failed")?;
    let servers = Servers::start(&logdir.path().join("iperf3-server.log"))?;
    println!("resolver    {}", servers.dns.addr());
    println!("name        {BENCH_NAME} (A 127.0.0.1)");
    println!("iperf3      port {}", servers.iperf.port);
    println!("http        port {}", servers.http.port());
    println!("echo        port {}", servers.echo_port);
    println!("hold        port {}", servers.hold.port);
    println!(
        "example     netjail run --resolver {} --allow 'domain={BENCH_NAME} cidr=127.0.0.0/8' \
         -- iperf3 --client {BENCH_NAME} --port {} --time 10",
        servers.dns.addr(),
        servers.iperf.port
    );
    eprintln!("bench: serving for up to {seconds} s; close standard input (Ctrl-D) to stop");
    clients::wait_for_stdin(Duration::from_secs(seconds));
    Ok(0)
}

fn run_client(args: &[String]) -> Result<i32> {
    let Some((client, rest)) = args.split_first() else {
        bail!("missing client name\n\n{USAGE}");
    };
    let args = ClientArgs::parse(rest)?;
    match client.as_str() {
        "round-trips" => clients::run_round_trips(
            &args.string("--host")?,
            args.number("--port")?,
            args.number("--count")?,
            args.number("--size")?,
        )?,
        "dns" => clients::run_dns_queries(
            args.number("--server")?,
            &args.string("--name")?,
            args.number("--count")?,
        )?,
        "hold" => {
            return clients::run_hold(
                &args.string("--host")?,
                args.number("--port")?,
                args.number("--count")?,
                Duration::from_secs(args.number("--max-hold")?),
                &args.command,
            );
        }
        _ => bail!("unknown client {client}\n\n{USAGE}"),
    }
    Ok(0)
}

fn run_suite(args: &[String]) -> Result<i32> {
    let options = Options::parse(args)?;
    raise_nofile_limit()?;
    let user = namespace_user(&options)?;

    let workdir = tempfile::Builder::new()
        .prefix("netjail-bench-")
        .tempdir()
        .context("creating a temporary directory failed")?;
    fs::set_permissions(workdir.path(), fs::Permissions::from_mode(0o755))?;
    let bench_bin = copy_executable(&std::env::current_exe()?, workdir.path(), "bench")?;
    let netjail_bin = copy_executable(&netjail_path(&options)?, workdir.path(), "netjail")?;
    let run_dir = workdir.path().join("run");
    fs::create_dir(&run_dir)?;
    if let Some(user) = &user {
        chown(&run_dir, Some(user.uid), Some(user.gid))?;
    }
    let dnsperf_input = run_dir.join("dnsperf-queries.txt");
    fs::write(&dnsperf_input, format!("{DUAL_STACK_NAME} A\n"))?;

    let servers = Servers::start(&workdir.path().join("iperf3-server.log"))?;
    let launcher = Launcher::new(netjail_bin, user.clone(), servers.dns.addr(), run_dir);
    let unavailable = probe_paths(&launcher, &options);
    let started = SystemTime::now();
    let load_before = machine::load_average();

    let mut suite = Suite {
        options: &options,
        launcher: &launcher,
        servers: &servers,
        bench_bin,
        dnsperf_input,
        unavailable,
        results: Default::default(),
        upstream_noted: Default::default(),
    };
    suite.run_all();

    let report = report::Report {
        options: &options,
        machine: machine::Machine::describe(),
        user: user.as_ref().map(|user| user.name.clone()),
        started,
        finished: SystemTime::now(),
        load_before,
        load_after: machine::load_average(),
        results: &suite.results,
    }
    .render();
    match &options.output {
        Some(path) => {
            fs::write(path, report)
                .with_context(|| format!("writing {} failed", path.display()))?;
            eprintln!("bench: wrote {}", path.display());
        }
        None => print!("{report}"),
    }
    Ok(0)
}

/// Raises the descriptor limit to [`REQUESTED_NOFILE`], or when that is not
/// permitted (no CAP_SYS_RESOURCE), the soft limit to the hard one. Children
/// inherit the limit.
fn raise_nofile_limit() -> Result<()> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if hard < REQUESTED_NOFILE
        && setrlimit(Resource::RLIMIT_NOFILE, REQUESTED_NOFILE, REQUESTED_NOFILE).is_ok()
    {
        return Ok(());
    }
    setrlimit(Resource::RLIMIT_NOFILE, soft.max(hard), hard)
        .context("raising RLIMIT_NOFILE failed")?;
    Ok(())
}

/// Returns the user that the namespace paths run as: `--user`, else
/// [`DEFAULT_USER`] when running as root, else none (the current user).
fn namespace_user(options: &Options) -> Result<Option<User>> {
    let name = match (&options.user, geteuid().is_root()) {
        (Some(name), _) => name.as_str(),
        (None, true) => DEFAULT_USER,
        (None, false) => return Ok(None),
    };
    let user = User::from_name(name)?.with_context(|| {
        format!("user {name} does not exist; run scripts/bench as root, which creates it")
    })?;
    Ok(Some(user))
}

fn netjail_path(options: &Options) -> Result<PathBuf> {
    let path = match (&options.netjail, std::env::var_os("NETJAIL_BIN")) {
        (Some(path), _) => path.clone(),
        (None, Some(path)) => PathBuf::from(path),
        (None, None) => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/netjail"),
    };
    if !path.is_file() {
        bail!(
            "netjail binary not found at {}; run `cargo build --release` or pass --netjail",
            path.display()
        );
    }
    Ok(path)
}

/// Copies `source` into `dir` as `name` with mode 0755, so the namespace
/// user can run it whatever the permissions of the build directory.
fn copy_executable(source: &Path, dir: &Path, name: &str) -> Result<PathBuf> {
    let target = dir.join(name);
    fs::copy(source, &target).with_context(|| format!("copying {} failed", source.display()))?;
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755))?;
    Ok(target)
}

/// Runs `true` on each selected path and returns the paths that cannot run
/// here, with the reason.
fn probe_paths(launcher: &Launcher, options: &Options) -> BTreeMap<NetworkPath, String> {
    let mut unavailable = BTreeMap::new();
    for &path in &options.paths {
        let program = match path {
            NetworkPath::Direct | NetworkPath::Netjail => None,
            NetworkPath::Slirp4netns => Some("slirp4netns"),
            NetworkPath::Pasta => Some("pasta"),
        };
        if let Some(program) = program
            && !is_installed(program)
        {
            unavailable.insert(path, format!("{program} is not installed"));
            continue;
        }
        let probe = launcher.run(path, &["true".to_owned()], Duration::from_secs(30));
        if let Err(err) = probe {
            let reason = err
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned();
            unavailable.insert(path, format!("running `true` failed: {reason}"));
        }
    }
    for (path, reason) in &unavailable {
        eprintln!("bench: {path} is not available: {reason}");
    }
    unavailable
}

fn is_installed(program: &str) -> bool {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .any(|dir| Path::new(dir).join(program).is_file())
}
