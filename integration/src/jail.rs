//! Runs the real `netjail` binary, as root or as the unprivileged test user,
//! and captures what the jailed command printed, its exit status and the
//! audit log.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipnet::{Ipv4Net, Ipv6Net};
pub use nix::sys::signal::Signal;
use nix::sys::signal::{kill, killpg};
use nix::unistd::{Pid, User, geteuid};

use crate::audit::AuditLog;
use crate::workdir::Workdir;

/// The unprivileged user that rootless tests run netjail as. `scripts/test`
/// creates it.
pub const TEST_USER: &str = "netjail-test";

/// The nameserver address written into the jail's /etc/resolv.conf.
pub const JAIL_NAMESERVER: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);

/// Returns the range netjail takes synthetic A records from.
pub fn synthetic_v4_net() -> Ipv4Net {
    "198.18.0.0/16".parse().expect("valid network")
}

/// Returns the range netjail takes synthetic AAAA records from.
pub fn synthetic_v6_net() -> Ipv6Net {
    "fd6e:6a00:0:1::/96".parse().expect("valid network")
}

/// Returns whether `ip` is in a range netjail's DNS takes synthetic records from.
pub fn is_synthetic(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => synthetic_v4_net().contains(&v4),
        IpAddr::V6(v6) => synthetic_v6_net().contains(&v6),
    }
}

/// Exit statuses netjail reserves for itself, as `env` and `docker run` do.
pub const EXIT_NETJAIL_FAILED: i32 = 125;
pub const EXIT_CANNOT_EXECUTE: i32 = 126;
pub const EXIT_NOT_FOUND: i32 = 127;

/// PATH inside the jail: Debian's programs only, so every run uses the
/// clients `scripts/test` installs.
const JAIL_PATH: &str = "/usr/bin:/bin:/usr/sbin:/sbin";

/// The default limit on one netjail run.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The user that starts netjail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The test process's own user, root, with netjail's default options.
    Root,
    /// [`TEST_USER`], through `setpriv` when the tests run as root; the
    /// current user when they do not.
    Rootless,
}

impl Mode {
    /// Returns whether this mode can run here. Root mode needs the tests to
    /// run as root, and the caller skips the test when they do not.
    pub fn is_available(self) -> bool {
        match self {
            Mode::Root => geteuid().is_root(),
            Mode::Rootless => true,
        }
    }

    /// Returns the user to switch to before starting netjail, if any.
    ///
    /// Panics when the tests run as root and [`TEST_USER`] does not exist.
    pub fn switch_to_user(self) -> Option<User> {
        if self == Mode::Root || !geteuid().is_root() {
            return None;
        }
        let user = User::from_name(TEST_USER).expect("reading the user database failed");
        let message = format!(
            "user {TEST_USER} does not exist; run scripts/test as root, which creates it \
             (or: useradd --system --no-create-home {TEST_USER})"
        );
        Some(user.expect(&message))
    }
}

/// Returns the netjail binary: $NETJAIL_BIN, or `target/release/netjail` in
/// the workspace. Panics when it is missing.
pub fn netjail_bin() -> PathBuf {
    let path = match std::env::var_os("NETJAIL_BIN") {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/netjail"),
    };
    assert!(
        path.is_file(),
        "netjail binary not found at {}; run `cargo build --release` or set NETJAIL_BIN",
        path.display()
    );
    path
}

/// Returns a netjail binary that `user` can execute: the built one when every
/// directory on its path lets the user through, otherwise a copy under the
/// system temporary directory.
fn netjail_bin_for(user: Option<&User>) -> PathBuf {
    static ROOTLESS_BIN: OnceLock<PathBuf> = OnceLock::new();
    let bin = netjail_bin();
    let Some(user) = user else {
        return bin;
    };
    ROOTLESS_BIN
        .get_or_init(|| {
            if user_can_execute(user, &bin) {
                bin
            } else {
                copy_to_shared_dir(&bin)
            }
        })
        .clone()
}

fn user_can_execute(user: &User, path: &Path) -> bool {
    Command::new("setpriv")
        .args(setpriv_args(user))
        .args(["test", "-x"])
        .arg(path)
        .status()
        .is_ok_and(|status| status.success())
}

/// Copies `bin` to `<tmp>/netjail-integration-bin/netjail-<size>-<mtime>`.
///
/// NOTE: nothing removes the copies of earlier builds, so the directory keeps
/// one file per build that a rootless test run needed to copy.
fn copy_to_shared_dir(bin: &Path) -> PathBuf {
    let metadata = std::fs::metadata(bin).expect("reading the netjail binary's metadata failed");
    let modified = metadata
        .modified()
        .expect("reading the binary's modification time failed");
    let since_epoch = modified
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();

    let dir = std::env::temp_dir().join("netjail-integration-bin");
    std::fs::create_dir_all(&dir).expect("creating the shared binary directory failed");
    let owner = std::fs::metadata(&dir).map(|m| m.uid());
    assert_eq!(
        owner.ok(),
        Some(geteuid().as_raw()),
        "{} belongs to another user; remove it",
        dir.display()
    );
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
        .expect("setting permissions on the shared binary directory failed");
    let name = format!("netjail-{}-{}", metadata.len(), since_epoch.as_nanos());
    let target = dir.join(name);
    if target.is_file() {
        return target;
    }

    // Copy under a private name first, so a concurrent test never runs a
    // half-written file.
    let partial = dir.join(format!("partial-{}", std::process::id()));
    std::fs::copy(bin, &partial).expect("copying the netjail binary failed");
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))
        .expect("setting permissions on the netjail copy failed");
    std::fs::rename(&partial, &target).expect("renaming the netjail copy failed");
    target
}

fn setpriv_args(user: &User) -> Vec<String> {
    let name = user.name.clone();
    let args = ["--reuid", &name, "--regid", &name, "--init-groups", "--"];
    args.iter().map(|arg| arg.to_string()).collect()
}

/// The command line of one `netjail run`, built step by step.
pub struct JailCommand {
    mode: Mode,
    options: Vec<OsString>,
    env: Vec<(String, String)>,
    workdir: PathBuf,
    audit_log: Option<PathBuf>,
    timeout: Duration,
    signal: Option<(Duration, Signal)>,
    /// Programs that run netjail, started as the test process's user.
    outer_wrapper: Vec<OsString>,
    /// Programs that run netjail, started after the switch to the test user.
    inner_wrapper: Vec<OsString>,
}

impl JailCommand {
    /// Starts a command line whose audit log is `audit.jsonl` in `workdir`,
    /// which is also the jailed command's working directory and HOME.
    pub fn new(mode: Mode, workdir: &Workdir) -> Self {
        Self {
            mode,
            options: Vec::new(),
            env: Vec::new(),
            workdir: workdir.path().to_owned(),
            audit_log: Some(workdir.join("audit.jsonl")),
            timeout: DEFAULT_TIMEOUT,
            signal: None,
            outer_wrapper: Vec::new(),
            inner_wrapper: Vec::new(),
        }
    }

    /// Runs netjail through `wrapper`, a program and its arguments that
    /// end by executing the rest of the command line (`setpriv ...`,
    /// `unshare -m sh -c '...; exec "$@"' sh`). It starts as the test
    /// process's user, before the switch to [`TEST_USER`], so it may do what
    /// needs root. A later call wraps inside an earlier one.
    pub fn wrap<S: AsRef<std::ffi::OsStr>>(mut self, wrapper: &[S]) -> Self {
        let args = wrapper.iter().map(|arg| arg.as_ref().to_owned());
        self.outer_wrapper.extend(args);
        self
    }

    /// Like [`JailCommand::wrap`], but the wrapper starts after the switch
    /// to [`TEST_USER`], as the user netjail runs as.
    pub fn wrap_as_user<S: AsRef<std::ffi::OsStr>>(mut self, wrapper: &[S]) -> Self {
        let args = wrapper.iter().map(|arg| arg.as_ref().to_owned());
        self.inner_wrapper.extend(args);
        self
    }

    /// Sends the audit log to standard error (`--audit-log -`) in place of
    /// the file; [`JailOutput::audit`] then panics.
    pub fn audit_log_to_stderr(mut self) -> Self {
        self.audit_log = None;
        self
    }

    /// Adds `--allow RULE`.
    pub fn allow(self, rule: &str) -> Self {
        self.option("--allow").option(rule)
    }

    /// Adds `--deny RULE`.
    pub fn deny(self, rule: &str) -> Self {
        self.option("--deny").option(rule)
    }

    /// Allows TCP to `name` on any port, where it resolves to 127.0.0.1 or ::1.
    pub fn allow_loopback_name(self, name: &str) -> Self {
        self.allow(&format!("domain={name} cidr=127.0.0.0/8"))
            .allow(&format!("domain={name} cidr=::1/128"))
    }

    /// Adds `--resolver ADDR`.
    pub fn resolver(self, addr: &str) -> Self {
        self.option("--resolver").option(addr)
    }

    /// Adds one raw argument before the `--` that ends netjail's options.
    pub fn option(mut self, arg: impl Into<OsString>) -> Self {
        self.options.push(arg.into());
        self
    }

    /// Sets an environment variable for netjail and the jailed command.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Sets the limit on the whole run; netjail is killed when it passes.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends `signal` to the netjail process (not its group) `delay` after
    /// starting it.
    pub fn signal_after(mut self, delay: Duration, signal: Signal) -> Self {
        self.signal = Some((delay, signal));
        self
    }

    /// Runs `netjail run OPTIONS -- COMMAND...` and waits for it to exit.
    ///
    /// Panics when the run takes longer than the timeout, after killing
    /// netjail's process group.
    pub fn run<S: AsRef<str>>(self, command: &[S]) -> JailOutput {
        let mut args: Vec<OsString> = vec!["run".into()];
        match &self.audit_log {
            Some(path) => args.extend(["--audit-log".into(), path.into()]),
            None => args.extend(["--audit-log".into(), "-".into()]),
        }
        args.extend(self.options.iter().cloned());
        args.push("--".into());
        args.extend(command.iter().map(|arg| OsString::from(arg.as_ref())));
        self.execute(&args)
    }

    /// Runs `netjail doctor OPTIONS ARGS...` and waits for it to exit. The
    /// options added with [`JailCommand::option`] come first; the audit log
    /// is not used.
    pub fn doctor(mut self, args: &[&str]) -> JailOutput {
        let mut doctor_args: Vec<OsString> = vec!["doctor".into()];
        doctor_args.extend(self.options.iter().cloned());
        doctor_args.extend(args.iter().map(OsString::from));
        self.audit_log = None;
        self.execute(&doctor_args)
    }

    /// Runs netjail with `args` and waits for it to exit; panics after
    /// killing netjail's process group when the timeout passes.
    fn execute(self, args: &[OsString]) -> JailOutput {
        let mut process = self.build(args);
        let command_line = format!("{process:?}");

        let started = Instant::now();
        let mut child = process
            .spawn()
            .unwrap_or_else(|err| panic!("starting {command_line} failed: {err}"));
        let stdout = capture(child.stdout.take().expect("stdout is piped"));
        let stderr = capture(child.stderr.take().expect("stderr is piped"));
        let waited = wait_with_timeout(&mut child, self.timeout, self.signal);
        let elapsed = started.elapsed();

        let output = JailOutput {
            // A raw wait status equal to a signal number means "killed by it".
            status: waited.unwrap_or_else(|| ExitStatus::from_raw(Signal::SIGKILL as i32)),
            stdout: stdout.finish(),
            stderr: stderr.finish(),
            elapsed,
            command_line,
            audit_log: self.audit_log,
        };
        assert!(
            waited.is_some(),
            "netjail did not exit within {:?} and was killed\n{}",
            self.timeout,
            output.describe()
        );
        output
    }

    fn build(&self, args: &[OsString]) -> Command {
        let user = self.mode.switch_to_user();
        let bin = netjail_bin_for(user.as_ref());
        let mut argv = self.outer_wrapper.clone();
        if let Some(user) = &user {
            argv.push("setpriv".into());
            argv.extend(setpriv_args(user).into_iter().map(OsString::from));
        }
        argv.extend(self.inner_wrapper.iter().cloned());
        argv.push(bin.into());
        argv.extend(args.iter().cloned());
        let mut process = Command::new(&argv[0]);
        process.args(&argv[1..]);

        process.env_clear();
        process.env("PATH", JAIL_PATH);
        process.env("HOME", &self.workdir);
        process.env("LANG", "C.UTF-8");
        for key in ["NETJAIL_LOG", "RUST_LOG", "RUST_BACKTRACE"] {
            if let Some(value) = std::env::var_os(key) {
                process.env(key, value);
            }
        }
        process.envs(self.env.iter().map(|(key, value)| (key, value)));

        process.current_dir(&self.workdir);
        process
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // A group of its own, so a timeout kills netjail and its children.
        process.process_group(0);
        process
    }
}

/// The exit status, output and audit log of one netjail run.
pub struct JailOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// Wall-clock time from spawning netjail until it exited.
    pub elapsed: Duration,
    /// The process as `Command`'s Debug output shows it, for messages.
    pub command_line: String,
    audit_log: Option<PathBuf>,
}

impl JailOutput {
    /// Returns the exit code, or `None` when netjail itself was killed by a
    /// signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Reads and parses the audit log; panics with the failing line when it
    /// is missing or is not valid JSON Lines in the expected schema.
    pub fn audit(&self) -> AuditLog {
        let path = self
            .audit_log
            .as_ref()
            .expect("the audit log went to standard error");
        AuditLog::read(path)
            .unwrap_or_else(|err| panic!("invalid audit log: {err}\n{}", self.describe()))
    }

    /// Stdout split into lines, without empty ones.
    pub fn stdout_lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|line| !line.is_empty())
            .collect()
    }

    /// Formats the command line, status and output for assertion messages.
    pub fn describe(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "command: {}", self.command_line);
        let _ = writeln!(text, "status: {} after {:?}", self.status, self.elapsed);
        let _ = writeln!(text, "stdout:\n{}", tail(&self.stdout, 4000));
        let _ = write!(text, "stderr:\n{}", tail(&self.stderr, 8000));
        text
    }
}

fn tail(text: &str, max_len: usize) -> &str {
    if text.len() <= max_len {
        return text;
    }
    let mut start = text.len() - max_len;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// The output of a pipe, read on its own thread so that a child blocked on
/// a full pipe cannot stall the wait loop.
struct Capture {
    buffer: Arc<Mutex<Vec<u8>>>,
    thread: JoinHandle<()>,
}

fn capture(mut pipe: impl Read + Send + 'static) -> Capture {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = buffer.clone();
    let thread = std::thread::spawn(move || {
        let mut chunk = [0; 8192];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    Capture { buffer, thread }
}

impl Capture {
    /// Waits up to five seconds for end-of-file, then returns what arrived,
    /// so a grandchild that keeps the pipe open cannot hang the test.
    fn finish(self) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let bytes = self.buffer.lock().unwrap().clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Waits for `child`, sending it `signal` once its delay has passed. After
/// `timeout`, kills the child's process group and returns `None`.
fn wait_with_timeout(
    child: &mut Child,
    timeout: Duration,
    mut signal: Option<(Duration, Signal)>,
) -> Option<ExitStatus> {
    let started = Instant::now();
    let deadline = started + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for netjail failed") {
            return Some(status);
        }
        if let Some((delay, sig)) = signal
            && started.elapsed() >= delay
        {
            let _ = kill(Pid::from_raw(child.id() as i32), sig);
            signal = None;
        }
        if Instant::now() >= deadline {
            let group = Pid::from_raw(child.id() as i32);
            let _ = killpg(group, Signal::SIGKILL);
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Returns whether `ip` is a loopback address.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6 == Ipv6Addr::LOCALHOST,
    }
}

/// Declares a test module per function name with two tests, `root` and
/// `rootless`, that call the function with each [`Mode`]. A root test on a
/// machine where the tests do not run as root prints why and passes.
#[macro_export]
macro_rules! jail_tests {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[test]
                fn root() {
                    $crate::jail::run_in_mode(super::$name, $crate::jail::Mode::Root);
                }

                #[test]
                fn rootless() {
                    $crate::jail::run_in_mode(super::$name, $crate::jail::Mode::Rootless);
                }
            }
        )+
    };
}

/// Runs `test` in `mode`, or prints why it cannot run here.
pub fn run_in_mode(test: fn(Mode), mode: Mode) {
    if !mode.is_available() {
        eprintln!("skipped: {mode:?} mode needs the tests to run as root");
        return;
    }
    test(mode);
}
