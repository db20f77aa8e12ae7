//! The clients that `bench client ...` runs inside a namespace (or directly on
//! the host, for the direct path). Each prints its result on standard output,
//! as one JSON object or as the `ready` line of the hold client.

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};

use crate::error::{Context, Result, bail};
use crate::stats::percentile_micros;

/// Untimed round trips or DNS queries before timing starts, so caches, the
/// TCP window and the CPU frequency settle.
pub const WARMUP_COUNT: usize = 200;

/// The limit on one DNS reply. A query without a reply in time is counted
/// as lost and not as a latency sample.
const DNS_TIMEOUT: Duration = Duration::from_secs(1);

/// The limit on one TCP connect or read in the clients.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Resolves `host:port` with the system resolver (in netjail, the jail's
/// DNS) and returns the first IPv4 address, or the first of any kind.
pub fn resolve(host: &str, port: u16) -> Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {host} failed"))?
        .collect();
    addrs
        .iter()
        .find(|addr| addr.is_ipv4())
        .or(addrs.first())
        .copied()
        .with_context(|| format!("{host} resolved to no address"))
}

/// Times `count` round trips of `size` bytes over one kept-alive TCP
/// connection to an echo server, and prints p50 and p99 in microseconds.
pub fn run_round_trips(host: &str, port: u16, count: usize, size: usize) -> Result<()> {
    let addr = resolve(host, port)?;
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .with_context(|| format!("connecting to {addr} failed"))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;

    let request = vec![b'x'; size];
    let mut reply = vec![0; size];
    let mut samples = Vec::with_capacity(count);
    for i in 0..WARMUP_COUNT + count {
        let started = Instant::now();
        stream.write_all(&request)?;
        stream
            .read_exact(&mut reply)
            .context("reading the echo failed")?;
        if i >= WARMUP_COUNT {
            samples.push(started.elapsed());
        }
    }

    print_json(&serde_json::json!({
        "count": samples.len(),
        "p50_us": percentile_micros(&samples, 50.0),
        "p99_us": percentile_micros(&samples, 99.0),
    }))
}

/// Sends `count` sequential A queries for `name` to `server` over UDP, after
/// a warm-up that also makes sure the name is resolved, and prints p50 and
/// p99 in microseconds and the number of lost queries.
pub fn run_dns_queries(server: SocketAddr, name: &str, count: usize) -> Result<()> {
    let socket = UdpSocket::bind(match server {
        SocketAddr::V4(_) => "0.0.0.0:0",
        SocketAddr::V6(_) => "[::]:0",
    })?;
    socket.connect(server)?;
    socket.set_read_timeout(Some(DNS_TIMEOUT))?;
    let name = Name::from_ascii(name).with_context(|| format!("invalid name {name}"))?;

    let mut samples = Vec::with_capacity(count);
    let mut lost = 0usize;
    for i in 0..WARMUP_COUNT + count {
        let id = (i % usize::from(u16::MAX)) as u16;
        let started = Instant::now();
        let answered = query_once(&socket, &name, id)?;
        let elapsed = started.elapsed();
        if i < WARMUP_COUNT {
            continue;
        }
        match answered {
            true => samples.push(elapsed),
            false => lost += 1,
        }
    }
    if samples.is_empty() {
        bail!("no DNS query to {server} was answered within {DNS_TIMEOUT:?}");
    }

    print_json(&serde_json::json!({
        "count": samples.len(),
        "lost": lost,
        "p50_us": percentile_micros(&samples, 50.0),
        "p99_us": percentile_micros(&samples, 99.0),
    }))
}

/// Sends one query and waits for the reply with the same id. Returns false
/// when none arrived within [`DNS_TIMEOUT`] or the reply has no answer
/// records.
fn query_once(socket: &UdpSocket, name: &Name, id: u16) -> Result<bool> {
    let mut query = Message::query();
    query.metadata.id = id;
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(name.clone(), RecordType::A));
    socket.send(&query.to_vec()?)?;

    let mut buffer = [0u8; 4096];
    loop {
        let len = match socket.recv(&mut buffer) {
            Ok(len) => len,
            Err(err) if is_timeout(&err) => return Ok(false),
            Err(err) => return Err(err.into()),
        };
        let Ok(reply) = Message::from_vec(&buffer[..len]) else {
            continue;
        };
        if reply.metadata.id == id {
            return Ok(!reply.answers.is_empty());
        }
    }
}

fn is_timeout(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Opens `count` TCP connections to `host:port` and keeps them open, idle.
///
/// Once all are open it prints `ready COUNT`. With a `command`, it then runs
/// the command, passes its output through and exits with its status. Without
/// one, it waits until a line or end-of-file arrives on standard input, or
/// `max_hold` passes, so it always ends by itself.
pub fn run_hold(
    host: &str,
    port: u16,
    count: usize,
    max_hold: Duration,
    command: &[String],
) -> Result<i32> {
    let addr = resolve(host, port)?;
    let mut connections = Vec::with_capacity(count);
    for i in 0..count {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .with_context(|| format!("opening connection {} of {count} to {addr} failed", i + 1))?;
        connections.push(stream);
    }
    println!("ready {}", connections.len());
    std::io::stdout().flush()?;

    let status = match command.split_first() {
        Some((program, args)) => {
            let status = Command::new(program)
                .args(args)
                .status()
                .with_context(|| format!("starting {program} failed"))?;
            status.code().unwrap_or(1)
        }
        None => {
            wait_for_stdin(max_hold);
            0
        }
    };
    drop(connections);
    Ok(status)
}

/// Returns when standard input has a line or is closed, or after `limit`.
pub fn wait_for_stdin(limit: Duration) {
    let (done, wait) = mpsc::channel();
    // The thread stays blocked on stdin when the limit passes first, and the
    // process exits soon after, which ends it.
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        let _ = done.send(());
    });
    let _ = wait.recv_timeout(limit);
}

fn print_json(value: &serde_json::Value) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{value}")?;
    stdout.flush()?;
    Ok(())
}
