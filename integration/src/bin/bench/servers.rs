//! The servers the clients talk to, all on the host's 127.0.0.1: iperf3, the
//! HTTP fixture, a TCP echo server, a server that keeps idle connections open,
//! and the fixture DNS server that netjail uses as its upstream resolver.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use integration::fixtures::dns::{DnsEntry, DnsServer, DnsZone};
use integration::fixtures::http::HttpServer;
use tokio::io::AsyncReadExt;
use tokio::runtime::Runtime;

use crate::error::{Context, Result, bail};

/// The name every server is reached by from netjail's jail. The fixture DNS
/// resolves it to 127.0.0.1 only, so netjail always connects over IPv4.
pub const BENCH_NAME: &str = "bench.test";

/// A name with both an A (127.0.0.1) and an AAAA (::1) record, for the DNS
/// case. The fixture DNS answers a query for a missing type with no record
/// and no SOA, which hickory-resolver in netjail does not cache, so only a
/// name with both types is served entirely from netjail's cache.
pub const DUAL_STACK_NAME: &str = "dual.test";

/// Backlog of the hold server's listener: enough for the clients' sequential
/// connects even while the accept loop is behind.
const HOLD_BACKLOG: u32 = 4096;

/// How long to wait for iperf3 to listen.
const IPERF_START_TIMEOUT: Duration = Duration::from_secs(10);

/// Every host-side server of one suite run. Dropping it stops them.
pub struct Servers {
    pub dns: DnsServer,
    pub http: HttpServer,
    pub echo_port: u16,
    pub hold: HoldServer,
    pub iperf: IperfServer,
    // Declared last, so it is dropped after the handles that use it.
    runtime: Option<Runtime>,
}

impl Servers {
    /// Starts every server. iperf3 writes its log to `iperf_log`.
    pub fn start(iperf_log: &Path) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("building the server runtime failed")?;
        let v4_only = DnsEntry {
            a: vec![Ipv4Addr::LOCALHOST],
            ..DnsEntry::default()
        };
        let dual_stack = DnsEntry {
            a: vec![Ipv4Addr::LOCALHOST],
            aaaa: vec![Ipv6Addr::LOCALHOST],
            ..DnsEntry::default()
        };
        let zone = DnsZone::default()
            .with_entry(BENCH_NAME, v4_only)
            .with_entry(DUAL_STACK_NAME, dual_stack);
        let (dns, http, hold) = runtime.block_on(async {
            let dns = DnsServer::start(zone).await;
            let http = HttpServer::start(None).await;
            let hold = HoldServer::start().await;
            (dns, http, hold)
        });
        Ok(Self {
            dns: dns.context("starting the DNS server failed")?,
            http: http.context("starting the HTTP server failed")?,
            echo_port: start_echo_server().context("starting the echo server failed")?,
            hold: hold.context("starting the hold server failed")?,
            iperf: IperfServer::start(iperf_log)?,
            runtime: Some(runtime),
        })
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Starts a blocking echo server on 127.0.0.1 with one thread per
/// connection, so a round trip costs no scheduler hop, and returns its port.
fn start_echo_server() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || echo(stream));
        }
    });
    Ok(port)
}

fn echo(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buffer = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buffer) {
        if n == 0 || stream.write_all(&buffer[..n]).is_err() {
            return;
        }
    }
}

/// A server that accepts connections and keeps them open until the client
/// closes them, reading and discarding anything sent.
pub struct HoldServer {
    pub port: u16,
    open: Arc<AtomicUsize>,
}

impl HoldServer {
    async fn start() -> io::Result<Self> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        let listener = socket.listen(HOLD_BACKLOG)?;
        let port = listener.local_addr()?.port();
        let open = Arc::new(AtomicUsize::new(0));
        tokio::spawn(hold_connections(listener, open.clone()));
        Ok(Self { port, open })
    }

    /// Returns the number of connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Waits until at least `count` connections are open, or `timeout`
    /// passes, and returns the number open then.
    pub fn wait_for_open(&self, count: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        while self.open_connections() < count && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.open_connections()
    }
}

async fn hold_connections(listener: tokio::net::TcpListener, open: Arc<AtomicUsize>) {
    let mut accept_failures = 0u64;
    loop {
        let mut stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of descriptors or a transient error: retry after a
                // pause instead of stopping the server, and log only the
                // first failure because a full descriptor table repeats.
                if accept_failures == 0 {
                    eprintln!("bench: hold server: accepting a connection failed: {err}");
                }
                accept_failures += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let open = open.clone();
        open.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let mut buffer = [0u8; 512];
            while let Ok(n) = stream.read(&mut buffer).await {
                if n == 0 {
                    break;
                }
            }
            open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// `iperf3 --server` on 127.0.0.1, killed when dropped.
pub struct IperfServer {
    pub port: u16,
    child: Child,
}

impl IperfServer {
    fn start(log: &Path) -> Result<Self> {
        let port = free_port()?;
        let child = Command::new("iperf3")
            .args([
                "--server",
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .arg("--logfile")
            .arg(log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting iperf3 --server failed (is iperf3 installed?)")?;
        let mut server = Self { port, child };
        server.wait_until_listening()?;
        Ok(server)
    }

    /// Polls until iperf3 listens on the port. std sets SO_REUSEADDR before
    /// binding, which on Linux still fails while another socket listens on
    /// the port, so a failed test bind means iperf3 is ready.
    fn wait_until_listening(&mut self) -> Result<()> {
        let deadline = Instant::now() + IPERF_START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("iperf3 --server exited with {status}");
            }
            if TcpListener::bind((Ipv4Addr::LOCALHOST, self.port)).is_err() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "iperf3 --server did not listen on port {} within {IPERF_START_TIMEOUT:?}",
            self.port
        )
    }
}

impl Drop for IperfServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Returns a port of 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}
