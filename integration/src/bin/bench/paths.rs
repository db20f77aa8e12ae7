//! The network paths the suite compares, and how a client command is run on
//! each of them.
//!
//! How each path reaches a server on the host's 127.0.0.1:
//! - direct: the client runs on the host and connects to 127.0.0.1.
//! - netjail: the client connects to [`BENCH_NAME`]. The jail's DNS returns
//!   a synthetic address, and netjail connects to the address the fixture
//!   DNS returned, 127.0.0.1, which the rule `cidr=127.0.0.0/8` allows.
//! - slirp4netns: without `--disable-host-loopback`, connections to the
//!   gateway 10.0.2.2 are made to the host's 127.0.0.1.
//! - pasta: connections to the gateway address go to the host's loopback
//!   unless `--no-map-gw` is given. The suite sets that gateway to 10.0.2.2
//!   as well, so no path uses an address of the host's own network.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::{Pid, User};

use crate::error::{Context, Result, bail};
use crate::servers::{BENCH_NAME, DUAL_STACK_NAME};

/// The gateway address of the slirp4netns and pasta namespaces, which both
/// map to the host's loopback.
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

/// The namespace's own address for pasta, the one slirp4netns picks by
/// default.
const PASTA_ADDRESS: &str = "10.0.2.100";

/// The MTU of slirp4netns's tap device, equal to netjail's TUN and pasta's
/// default, so no path gains from larger segments.
const NAMESPACE_MTU: &str = "65520";

/// The nameserver netjail writes into the jail's /etc/resolv.conf.
const NETJAIL_NAMESERVER: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);

/// How long to wait for a namespace to exist or slirp4netns to be ready.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// PATH for every client, so each path runs Debian's programs.
const CLIENT_PATH: &str = "/usr/bin:/bin:/usr/sbin:/sbin";

/// Waits for the file named by $1 (at most 10 s), then runs the rest of the
/// arguments. slirp4netns configures the namespace while the shell waits.
const WAIT_FOR_FILE: &str = "i=0; while [ ! -e \"$1\" ]; do i=$((i + 1)); \
                             [ \"$i\" -le 1000 ] || exit 125; sleep 0.01; done; shift; exec \"$@\"";

/// A way for a client to reach servers on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NetworkPath {
    Direct,
    Netjail,
    Slirp4netns,
    Pasta,
}

impl NetworkPath {
    pub const ALL: [NetworkPath; 4] = [
        NetworkPath::Direct,
        NetworkPath::Netjail,
        NetworkPath::Slirp4netns,
        NetworkPath::Pasta,
    ];

    pub fn name(self) -> &'static str {
        match self {
            NetworkPath::Direct => "direct",
            NetworkPath::Netjail => "netjail",
            NetworkPath::Slirp4netns => "slirp4netns",
            NetworkPath::Pasta => "pasta",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|path| path.name() == name)
    }

    /// Returns the host name or address that reaches the host's 127.0.0.1
    /// from this path.
    pub fn server_host(self) -> String {
        match self {
            NetworkPath::Direct => Ipv4Addr::LOCALHOST.to_string(),
            NetworkPath::Netjail => BENCH_NAME.to_owned(),
            NetworkPath::Slirp4netns | NetworkPath::Pasta => GATEWAY.to_string(),
        }
    }

    /// Returns the DNS server a client on this path queries: netjail's own
    /// DNS in the jail, otherwise the fixture DNS through the path's mapping
    /// of the host's loopback.
    pub fn dns_server(self, fixture: SocketAddr) -> SocketAddr {
        match self {
            NetworkPath::Direct => fixture,
            NetworkPath::Netjail => SocketAddr::from((NETJAIL_NAMESERVER, 53)),
            NetworkPath::Slirp4netns | NetworkPath::Pasta => {
                SocketAddr::from((GATEWAY, fixture.port()))
            }
        }
    }
}

impl fmt::Display for NetworkPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Starts client commands on any path.
pub struct Launcher {
    pub netjail: PathBuf,
    /// The unprivileged user that netjail, slirp4netns and pasta run as when
    /// the suite runs as root. `None` runs them as the current user.
    pub user: Option<User>,
    pub resolver: SocketAddr,
    /// A directory the user can write: audit logs, ready files, logs.
    pub dir: PathBuf,
    next_id: std::cell::Cell<u32>,
}

impl Launcher {
    pub fn new(netjail: PathBuf, user: Option<User>, resolver: SocketAddr, dir: PathBuf) -> Self {
        Self {
            netjail,
            user,
            resolver,
            dir,
            next_id: std::cell::Cell::new(0),
        }
    }

    /// Starts `argv` on `path` with standard output and standard error
    /// captured. Standard input is piped when `stdin_piped`, else empty.
    pub fn spawn(&self, path: NetworkPath, argv: &[String], stdin_piped: bool) -> Result<Running> {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        match path {
            NetworkPath::Direct => self.start(path, self.direct(argv), stdin_piped),
            NetworkPath::Netjail => self.start(path, self.netjail(argv, id), stdin_piped),
            NetworkPath::Pasta => self.start(path, self.pasta(argv), stdin_piped),
            NetworkPath::Slirp4netns => self.spawn_slirp4netns(argv, id, stdin_piped),
        }
    }

    /// Runs `argv` on `path` to the end and returns its standard output;
    /// fails when it exits non-zero or runs longer than `timeout`.
    pub fn run(&self, path: NetworkPath, argv: &[String], timeout: Duration) -> Result<String> {
        self.spawn(path, argv, false)?.finish(timeout)
    }

    fn direct(&self, argv: &[String]) -> Command {
        let mut command = Command::new(&argv[0]);
        command.args(&argv[1..]);
        command
    }

    fn netjail(&self, argv: &[String], id: u32) -> Command {
        let audit_log = self.dir.join(format!("audit-{id}.jsonl"));
        let mut command = self.as_user(&self.netjail);
        command
            .arg("run")
            .arg("--resolver")
            .arg(self.resolver.to_string())
            .arg("--audit-log")
            .arg(audit_log)
            .arg("--allow")
            .arg(format!("domain={BENCH_NAME} cidr=127.0.0.0/8"))
            .arg("--allow")
            .arg(format!("domain={DUAL_STACK_NAME} cidr=127.0.0.0/8"))
            .arg("--allow")
            .arg(format!("domain={DUAL_STACK_NAME} cidr=::1/128"))
            .arg("--")
            .args(argv);
        command
    }

    /// Builds pasta's command line: IPv4 only, no port forwarding in either
    /// direction, and the gateway 10.0.2.2, which pasta maps to the host's
    /// loopback.
    fn pasta(&self, argv: &[String]) -> Command {
        let mut command = self.as_user(Path::new("pasta"));
        command
            .args(["--config-net", "--quiet", "--ipv4-only"])
            .args(["--address", PASTA_ADDRESS, "--netmask", "24"])
            .args(["--gateway", &GATEWAY.to_string()])
            .args(["-t", "none", "-u", "none", "-T", "none", "-U", "none"])
            .arg("--")
            .args(argv);
        command
    }

    /// Starts `argv` in a new user and network namespace made by `unshare`,
    /// connects slirp4netns to it, and lets the command run once the tap
    /// device is configured.
    fn spawn_slirp4netns(&self, argv: &[String], id: u32, stdin_piped: bool) -> Result<Running> {
        let ready_file = self.dir.join(format!("slirp-ready-{id}"));
        let mut command = self.as_user(Path::new("unshare"));
        command
            .args(["--user", "--map-root-user", "--net", "--", "sh", "-c"])
            .args([WAIT_FOR_FILE, "sh"])
            .arg(&ready_file)
            .args(argv);
        let mut running = self.start(NetworkPath::Slirp4netns, command, stdin_piped)?;
        let pid = running.pid();
        wait_for_namespace(pid)?;

        let (ready_read, ready_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        // slirp4netns inherits the write end and writes "1" to it once the
        // tap device is up.
        fcntl(&ready_write, FcntlArg::F_SETFD(FdFlag::empty()))?;
        let log = File::create(self.dir.join(format!("slirp4netns-{id}.log")))?;
        let mut slirp = self.as_user(Path::new("slirp4netns"));
        slirp
            .args(["--configure", "--disable-dns"])
            .arg(format!("--mtu={NAMESPACE_MTU}"))
            .arg(format!("--ready-fd={}", ready_write.as_raw_fd()))
            .arg(pid.to_string())
            .arg("tap0")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        running.helper = Some(slirp.spawn().context("starting slirp4netns failed")?);
        drop(ready_write);

        wait_for_ready_byte(ready_read).context("slirp4netns did not configure the namespace")?;
        File::create(&ready_file).context("creating the ready file failed")?;
        Ok(running)
    }

    /// Returns a command that runs `program` as the launcher's user.
    fn as_user(&self, program: &Path) -> Command {
        match &self.user {
            Some(user) => {
                let mut command = Command::new("setpriv");
                command
                    .args(["--reuid", &user.name, "--regid", &user.name])
                    .args(["--init-groups", "--"])
                    .arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    fn start(&self, path: NetworkPath, mut command: Command, stdin_piped: bool) -> Result<Running> {
        command
            .env_clear()
            .env("PATH", CLIENT_PATH)
            .env("HOME", &self.dir)
            .env("LANG", "C.UTF-8")
            .current_dir(&self.dir)
            .stdin(if stdin_piped {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let description = format!("{command:?}");
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {description} failed"))?;

        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (line_sender, lines) = mpsc::channel();
        let stdout_thread = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if line_sender.send(line).is_err() {
                    return;
                }
            }
        });
        let stderr_text = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr_text.clone();
        let stderr_thread = std::thread::spawn(move || {
            let mut stderr = stderr;
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut chunk) {
                if n == 0 {
                    return;
                }
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });

        Ok(Running {
            path,
            stdin: child.stdin.take(),
            child,
            helper: None,
            lines,
            stdout_lines: Vec::new(),
            stderr: stderr_text,
            threads: vec![stdout_thread, stderr_thread],
            description,
        })
    }
}

/// Waits until process `pid` has run `unshare` and exec'd the shell, so its
/// network namespace is no longer the host's and its user map is written.
fn wait_for_namespace(pid: u32) -> Result<()> {
    let own = std::fs::read_link("/proc/self/ns/net")?;
    let deadline = Instant::now() + SETUP_TIMEOUT;
    while Instant::now() < deadline {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let net = std::fs::read_link(format!("/proc/{pid}/ns/net"));
        if comm.trim() == "sh" && net.is_ok_and(|net| net != own) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    bail!("process {pid} did not enter a new network namespace within {SETUP_TIMEOUT:?}")
}

/// Reads one byte from `fd` within [`SETUP_TIMEOUT`], and fails on
/// end-of-file.
fn wait_for_ready_byte(fd: OwnedFd) -> Result<()> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut byte = [0u8; 1];
        let _ = sender.send(File::from(fd).read(&mut byte));
    });
    match receiver.recv_timeout(SETUP_TIMEOUT) {
        Ok(Ok(1)) => Ok(()),
        Ok(Ok(_)) => bail!("the ready pipe closed without a byte"),
        Ok(Err(err)) => bail!("reading the ready pipe failed: {err}"),
        Err(_) => bail!("no ready byte within {SETUP_TIMEOUT:?}"),
    }
}

/// A client command running on one path.
pub struct Running {
    pub path: NetworkPath,
    child: Child,
    /// slirp4netns, for that path.
    helper: Option<Child>,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stdout_lines: Vec<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
    threads: Vec<JoinHandle<()>>,
    description: String,
}

impl Running {
    /// Returns the process id of the started program: for netjail, the
    /// supervisor.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for a line of standard output that starts with
    /// `prefix` and returns it.
    pub fn expect_line(&mut self, prefix: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return Ok(line),
                Ok(line) => self.stdout_lines.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!(
                        "no line starting with {prefix:?} within {timeout:?}\n{}",
                        self.describe()
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!(
                        "the command ended before printing {prefix:?}: {}\n{}",
                        self.last_stderr_line(),
                        self.describe()
                    )
                }
            }
        }
    }

    /// Closes the command's standard input, which ends the hold client.
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// Waits up to `timeout` for the command to exit and returns the standard
    /// output not yet consumed by [`Running::expect_line`]. Fails when it
    /// exits non-zero, and kills it when the timeout passes.
    pub fn finish(mut self, timeout: Duration) -> Result<String> {
        self.close_stdin();
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                self.kill();
                bail!("timed out after {timeout:?}\n{}", self.describe());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.wait_for_output_threads();
        while let Ok(line) = self.lines.try_recv() {
            self.stdout_lines.push(line);
        }
        if !status.success() {
            bail!(
                "exited with {status}: {}\n{}",
                self.last_stderr_line(),
                self.describe()
            );
        }
        Ok(self.stdout_lines.join("\n"))
    }

    /// Waits up to five seconds for end-of-file on both pipes, so a
    /// grandchild that keeps them open cannot hang the suite.
    fn wait_for_output_threads(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.threads.iter().any(|thread| !thread.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Returns the last non-empty line of standard error, which usually gives
    /// the reason a client failed, for the first line of an error message.
    fn last_stderr_line(&self) -> String {
        let stderr = self.stderr.lock().unwrap();
        String::from_utf8_lossy(&stderr)
            .lines()
            .rev()
            .map(str::trim)
            .find(|line| !line.is_empty())
            .unwrap_or("no output on standard error")
            .to_owned()
    }

    /// Formats the command line and the end of its standard error, for error
    /// messages.
    fn describe(&self) -> String {
        let stderr = self.stderr.lock().unwrap();
        let stderr = String::from_utf8_lossy(&stderr);
        let start = stderr.len().saturating_sub(2000);
        let start = (start..stderr.len())
            .find(|&i| stderr.is_char_boundary(i))
            .unwrap_or(stderr.len());
        format!(
            "command ({}): {}\nstderr: {}",
            self.path,
            self.description,
            &stderr[start..]
        )
    }

    /// Kills the process group of the started program (it was made its
    /// group's leader) and slirp4netns, and reaps them.
    fn kill(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
            let _ = self.child.wait();
        }
        if let Some(mut helper) = self.helper.take() {
            let _ = helper.kill();
            let _ = helper.wait();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}
