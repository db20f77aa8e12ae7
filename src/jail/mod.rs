//! Namespaces, the TUN device and the jailed command's process.
//!
//! [`Jail::spawn`] creates a child process in new user, network, mount and PID
//! namespaces. That child becomes PID 1 of the new PID namespace (the jail's
//! init): it configures the network namespace, creates the TUN device, passes
//! its file descriptor to the supervisor over a Unix socket, and then waits.
//! [`Jail::start`] sends init the start message, and init runs the command.
//! [`Jail::wait`] forwards signals to init until init exits, and returns the
//! status netjail exits with.
//!
//! ```no_run
//! use netjail::jail::{Jail, JailConfig, JailNetwork};
//!
//! # fn main() -> Result<(), netjail::jail::JailError> {
//! // Before any thread starts: no tokio runtime, no logging thread.
//! netjail::jail::block_forwarded_signals()?;
//! let config = JailConfig {
//!     command: vec!["curl".into(), "https://example.com".into()],
//!     user_namespace: true,
//!     resolv_conf: "nameserver 198.19.0.1\n".to_string(),
//!     network: JailNetwork::default(),
//! };
//! let mut jail = Jail::spawn(&config)?;
//! let tun = jail.take_tun();
//! // ... start the stack on `tun` in other threads ...
//! # drop(tun);
//! jail.start()?;
//! let status = jail.wait()?;
//! std::process::exit(status);
//! # }
//! ```
//!
//! # Process model
//!
//! 1. The supervisor creates a socket pair and clones itself with
//!    `CLONE_NEWUSER` (unless [`JailConfig::user_namespace`] is false),
//!    `CLONE_NEWNET`, `CLONE_NEWNS` and `CLONE_NEWPID`. The clone is fork-like
//!    (no shared memory, no new stack), which is sound only while the process
//!    has one thread, so `spawn` checks `/proc/self/task` and refuses otherwise.
//! 2. The supervisor marks itself non-dumpable after the clone, so a command
//!    running as the same uid cannot ptrace it or read its memory. Before the
//!    clone it is dumpable, because the /proc/PID files of a non-dumpable
//!    child belong to root, which an unprivileged supervisor cannot write. In
//!    user-namespace mode it then writes `deny` to `/proc/PID/setgroups` and
//!    maps the caller's effective uid and gid to themselves (`uid uid 1`), so
//!    files keep their owner and root stays root. The child waits on the
//!    socket until then.
//! 3. The child, which asked for `SIGKILL` on the supervisor's death as its
//!    first step, makes every mount private (recursively), bind-mounts
//!    [`JailConfig::resolv_conf`] over the canonical target of
//!    `/etc/resolv.conf`, and mounts a fresh `/proc`. The resolv.conf copy
//!    lives on a tmpfs that exists only in the jail's mount namespace, so
//!    nothing is written to the host's file systems.
//! 4. The child brings `lo` up and creates the TUN device `tun0` (`IFF_TUN |
//!    IFF_NO_PI | IFF_VNET_HDR`, with checksum offload). It turns IPv6
//!    duplicate address detection and router advertisements off on it, sets
//!    the MTU and a long transmit queue, and brings it up. Then it adds the
//!    addresses of [`JailNetwork`] and on-link default routes via the
//!    gateways, all over rtnetlink. It sends the TUN descriptor with
//!    `SCM_RIGHTS` and closes its own copy, so the device exists exactly as
//!    long as the supervisor keeps the descriptor open.
//! 5. On the start message, init forks the command process. That process
//!    clears its signal mask, restores `SIGPIPE` to its default, marks every
//!    descriptor above 2 close-on-exec (an inherited socket would bypass the
//!    supervisor), sets `PR_SET_NO_NEW_PRIVS`, clears every capability set
//!    (bounding, ambient, inheritable, permitted, effective) and calls
//!    `execvp`. If `execvp` fails it prints `netjail: COMMAND: REASON` and
//!    exits with 127 (not found) or 126 (any other error), the convention of
//!    `env` and `docker run`.
//! 6. Init reaps every process reparented to it. When the command exits, init
//!    exits with the command's exit code, or 128+N if a signal N killed it,
//!    and the kernel kills whatever else is left in the PID namespace.
//!
//! Any setup failure in the child is sent to the supervisor as a step and an
//! errno, and [`Jail::spawn`] returns it as a [`JailError`] that names the
//! step and what to change. The child exits without running the command when
//! setup fails, when the supervisor dies, or when the supervisor closes the
//! socket before [`Jail::start`], so the command never runs unjailed.
//!
//! # Signals
//!
//! [`FORWARDED_SIGNALS`] (`SIGHUP`, `SIGINT`, `SIGQUIT`, `SIGTERM`, `SIGUSR1`,
//! `SIGUSR2`, `SIGWINCH`) and `SIGCHLD` are blocked in the supervisor and in
//! init, which read them from a signalfd. A forwarded signal that the
//! supervisor receives is sent to init, and init sends it on to the command.
//! A signal whose `si_code` is `SI_KERNEL` is not forwarded: the terminal sends
//! those (Ctrl-C, Ctrl-\, window resize, hangup) to the whole foreground
//! process group, which already contains the command, and a second copy would
//! make some interactive programs quit or redraw twice.
//!
//! NOTE: a signal sent with kill(2) to the whole process group (`kill -TERM
//! -PGID`, or a shell hanging up its background jobs) has `si_code` `SI_USER`,
//! so the command receives it directly and once more through the supervisor.
//! Telling it apart from a signal sent to the supervisor alone is not possible.
//!
//! Signals that reach the supervisor before [`Jail::wait`] runs stay pending
//! and are forwarded once it does. A `SIGHUP`, `SIGINT`, `SIGQUIT` or
//! `SIGTERM` that reaches init before the start message cancels the run: init
//! exits with 128+N without running the command.
//!
//! Job control is left to the terminal: `SIGTSTP`, `SIGTTIN`, `SIGTTOU` and
//! `SIGCONT` are neither blocked nor forwarded. Ctrl-Z stops both the command
//! and the supervisor (they share the process group), and the shell's `fg`
//! sends `SIGCONT` to that group, which resumes both. A stop signal sent to
//! the supervisor's pid alone stops only the supervisor.
//!
//! The command inherits the caller's standard input, output, error, process
//! group and session, so the terminal is passed through untouched. It
//! inherits no other descriptor, which also means a GNU make jobserver passed
//! as inherited pipes does not reach a `make` inside the jail.

mod channel;
mod diagnose;
mod error;
pub(crate) mod facts;
mod init;
mod mounts;
mod namespaces;
mod network;
mod signals;

use std::ffi::{CString, OsString};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::panic::{self, AssertUnwindSafe};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::prctl;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use channel::{Channel, JailReport, SupervisorMessage};
use error::StepFailure;
pub use error::{JailError, Step};
pub use signals::{FORWARDED_SIGNALS, block_forwarded_signals};

/// Name of the TUN device inside the jail.
pub const TUN_NAME: &str = network::TUN_NAME;

/// Exit status of the jail's init when netjail itself failed inside the jail.
const EXIT_SETUP_FAILED: i32 = 125;

/// Settings of a jail: the command, the namespaces, resolv.conf and the network.
#[derive(Debug, Clone)]
pub struct JailConfig {
    /// The command and its arguments. `command[0]` is looked up in `PATH`.
    pub command: Vec<OsString>,
    /// Whether to create a user namespace. Without one, creating the other
    /// namespaces needs `CAP_SYS_ADMIN` (the `--no-user-namespace` option).
    pub user_namespace: bool,
    /// Content bind-mounted over `/etc/resolv.conf` inside the jail.
    pub resolv_conf: String,
    /// Addresses and routes of the jail's TUN device.
    pub network: JailNetwork,
}

/// Addresses, gateways and MTU of the jail's TUN device.
///
/// The default uses 198.19.0.0/24 from the benchmarking range (RFC 2544) and
/// fd6e:6a00::/64 from the unique local range, with the supervisor's stack as
/// the `.1`/`::1` gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailNetwork {
    /// IPv4 address of the TUN device.
    pub ipv4: Ipv4Addr,
    /// Prefix length of `ipv4`.
    pub ipv4_prefix: u8,
    /// IPv4 default gateway, reached on-link through the TUN device.
    pub ipv4_gateway: Ipv4Addr,
    /// IPv6 address of the TUN device, usable at once (no duplicate address detection).
    pub ipv6: Ipv6Addr,
    /// Prefix length of `ipv6`.
    pub ipv6_prefix: u8,
    /// IPv6 default gateway, reached on-link through the TUN device.
    pub ipv6_gateway: Ipv6Addr,
    /// MTU of the TUN device in bytes.
    pub mtu: u32,
}

impl Default for JailNetwork {
    fn default() -> Self {
        JailNetwork {
            ipv4: Ipv4Addr::new(198, 19, 0, 2),
            ipv4_prefix: 24,
            ipv4_gateway: Ipv4Addr::new(198, 19, 0, 1),
            ipv6: Ipv6Addr::new(0xfd6e, 0x6a00, 0, 0, 0, 0, 0, 2),
            ipv6_prefix: 64,
            ipv6_gateway: Ipv6Addr::new(0xfd6e, 0x6a00, 0, 0, 0, 0, 0, 1),
            mtu: 65520,
        }
    }
}

/// A running jail, seen from the supervisor.
///
/// Dropping a `Jail` that was not waited for kills its init with `SIGKILL`
/// (which ends every process in the jail) and reaps it.
#[derive(Debug)]
pub struct Jail {
    pid: Pid,
    channel: Option<Channel>,
    tun: Option<OwnedFd>,
    started: bool,
    reaped: bool,
}

impl Jail {
    /// Forks the jail and waits until it has set up its namespaces and sent
    /// back the TUN device.
    ///
    /// Must be called while the process is single-threaded: before a tokio
    /// runtime, a logging thread or any other thread starts. The jail's init is
    /// a fork-like copy of this process, and a copy taken while another thread
    /// holds a lock (in the allocator, for example) could deadlock. `spawn`
    /// returns [`JailError::NotSingleThreaded`] if it finds more than one
    /// thread. It blocks [`FORWARDED_SIGNALS`] and `SIGCHLD` in the calling
    /// thread, like [`block_forwarded_signals`].
    ///
    /// The kernel kills the jail with `SIGKILL` when the thread that called
    /// `spawn` exits (`PR_SET_PDEATHSIG` follows the thread, not the
    /// process), so call it from the main thread.
    ///
    /// Returns an error naming the failed step, the errno and what to change.
    pub fn spawn(config: &JailConfig) -> Result<Jail, JailError> {
        let argv = command_argv(&config.command)?;
        check_capabilities(config.user_namespace)?;
        signals::ensure_single_threaded()?;
        block_forwarded_signals()?;
        let (supervisor_end, jail_end) =
            channel::pair().map_err(|errno| StepFailure::errno(Step::CreateSocketPair, errno))?;
        // The child inherits the dumpable flag, and the kernel makes the
        // /proc/PID files of a non-dumpable process owned by root, so an
        // unprivileged supervisor that spawned a jail before could not write
        // the new child's uid_map. `finish_setup` clears the flag again.
        prctl::set_dumpable(true).map_err(|errno| StepFailure::errno(Step::SetDumpable, errno))?;

        let pid = match namespaces::clone_jail(config.user_namespace) {
            Ok(namespaces::CloneResult::Child) => {
                drop(supervisor_end);
                run_jail_child(config, &argv, jail_end)
            }
            Ok(namespaces::CloneResult::Parent(pid)) => pid,
            Err(errno) => {
                let failure = StepFailure::errno(Step::CloneNamespaces, errno);
                return Err(JailError::from_failure(failure, config.user_namespace));
            }
        };
        drop(jail_end);
        tracing::debug!(%pid, user_namespace = config.user_namespace, "jail cloned");

        let mut jail = Jail {
            pid,
            channel: Some(supervisor_end),
            tun: None,
            started: false,
            reaped: false,
        };
        // On error, dropping `jail` kills and reaps the child.
        jail.finish_setup(config)?;
        Ok(jail)
    }

    /// Takes the TUN device's file descriptor (`IFF_TUN | IFF_NO_PI |
    /// IFF_VNET_HDR` with `TUN_F_CSUM`, non-blocking, close-on-exec). Each
    /// packet read or written starts with a 10-byte virtio-net header. The
    /// device exists as long as this descriptor is open.
    ///
    /// # Panics
    ///
    /// Panics if called a second time.
    pub fn take_tun(&mut self) -> OwnedFd {
        self.tun.take().expect("Jail::take_tun called twice")
    }

    /// Sends the jail's init the start message, and init runs the command.
    /// Call it once the stack reads the TUN device, so the command's first
    /// packet finds the stack ready. A second call does nothing.
    pub fn start(&mut self) -> Result<(), JailError> {
        if self.started {
            return Ok(());
        }
        let channel = self.channel.take().expect("channel is open until start");
        channel
            .send_to_jail(SupervisorMessage::Start)
            .map_err(|errno| StepFailure::errno(Step::SendStart, errno))?;
        self.started = true;
        Ok(())
    }

    /// Host pid of the jail's init (PID 1 inside the jail).
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Forwards signals to the jail until its init exits, and returns the
    /// status netjail should exit with: the command's exit code, or 128+N if
    /// signal N killed it.
    ///
    /// Call it from the thread that called [`Jail::spawn`] (the main thread):
    /// it reads the signals blocked by [`block_forwarded_signals`] from a
    /// signalfd, so no other code in the process may consume them. If
    /// [`Jail::start`] was never called, the jail exits without running the
    /// command and `wait` returns 125.
    pub fn wait(mut self) -> Result<i32, JailError> {
        // Closing the socket before start makes init exit without running anything.
        self.channel = None;
        let status = signals::forward_until_exit(self.pid)?;
        self.reaped = true;
        Ok(status)
    }

    /// Completes the supervisor's part of setup after the clone.
    fn finish_setup(&mut self, config: &JailConfig) -> Result<(), JailError> {
        let user_namespace = config.user_namespace;
        let fail = |failure: StepFailure| JailError::from_failure(failure, user_namespace);

        prctl::set_dumpable(false)
            .map_err(|errno| fail(StepFailure::errno(Step::SetDumpable, errno)))?;
        if user_namespace {
            namespaces::write_id_maps(self.pid).map_err(fail)?;
        }

        let channel = self.channel.as_ref().expect("channel is open during setup");
        channel
            .send_to_jail(SupervisorMessage::Proceed)
            .map_err(|errno| fail(StepFailure::errno(Step::SendProceed, errno)))?;
        let report = channel
            .receive_report()
            .map_err(|errno| fail(StepFailure::errno(Step::ReceiveTun, errno)))?;

        match report {
            Ok(Some(JailReport::TunReady(tun))) => {
                set_non_blocking(&tun)
                    .map_err(|errno| fail(StepFailure::errno(Step::ReceiveTun, errno)))?;
                self.tun = Some(tun);
                Ok(())
            }
            Ok(Some(JailReport::SetupFailed(failure))) => {
                self.kill_and_reap();
                Err(fail(failure))
            }
            Ok(None) => {
                let status = self.kill_and_reap();
                Err(JailError::ExitedDuringSetup { status })
            }
            Err(reason) => Err(JailError::Protocol { reason }),
        }
    }

    /// Kills init (and so the whole jail) and reaps it. Returns a description
    /// of how it ended, for error messages.
    fn kill_and_reap(&mut self) -> String {
        let _ = kill(self.pid, Signal::SIGKILL);
        self.reaped = true;
        match waitpid(self.pid, None) {
            Ok(status) => signals::describe_status(status),
            Err(errno) => format!("waitpid failed: {errno}"),
        }
    }
}

impl Drop for Jail {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill_and_reap();
        }
    }
}

/// Converts the command line to C strings for `execvp`. Done before the clone
/// so a bad command is reported without creating a jail.
fn command_argv(command: &[OsString]) -> Result<Vec<CString>, JailError> {
    if command.is_empty() {
        return Err(JailError::InvalidCommand {
            reason: "the command is empty".to_string(),
        });
    }
    command
        .iter()
        .map(|arg| {
            CString::new(arg.as_bytes()).map_err(|_| JailError::InvalidCommand {
                reason: format!("argument {arg:?} contains a NUL byte"),
            })
        })
        .collect()
}

/// Rejects a jail without a user namespace when this process lacks
/// CAP_SYS_ADMIN, before anything is created, so the message names the
/// missing capability rather than a refused clone(2).
fn check_capabilities(user_namespace: bool) -> Result<(), JailError> {
    if user_namespace {
        return Ok(());
    }
    let facts = facts::HostFacts::read();
    if facts.has_cap_sys_admin() {
        return Ok(());
    }
    Err(JailError::NoUserNamespaceWithoutCapSysAdmin {
        capabilities: facts.describe_caps(),
    })
}

fn set_non_blocking(fd: &OwnedFd) -> nix::Result<()> {
    let flags = OFlag::from_bits_retain(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// Runs in the cloned child: sets the jail up, hands the TUN device over, then
/// becomes the jail's init. Never returns into the supervisor's code, even on
/// a panic.
fn run_jail_child(config: &JailConfig, argv: &[CString], channel: Channel) -> ! {
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| jail_child_main(config, argv, channel)));
    let status = outcome.unwrap_or(EXIT_SETUP_FAILED);
    exit_immediately(status)
}

fn jail_child_main(config: &JailConfig, argv: &[CString], channel: Channel) -> i32 {
    // If the supervisor died before this call, the socket reports end of file
    // below, so there is no window in which the jail outlives it unnoticed.
    if let Err(errno) = prctl::set_pdeathsig(Signal::SIGKILL) {
        let _ = channel.send_failure(&StepFailure::errno(Step::SetParentDeathSignal, errno));
        return EXIT_SETUP_FAILED;
    }
    match channel.receive_supervisor_message() {
        Ok(Some(SupervisorMessage::Proceed)) => {}
        // The supervisor died or gave up: leave without touching anything.
        _ => return EXIT_SETUP_FAILED,
    }

    let tun = match set_up_jail(config) {
        Ok(tun) => tun,
        Err(failure) => {
            let _ = channel.send_failure(&failure);
            return EXIT_SETUP_FAILED;
        }
    };
    if let Err(errno) = channel.send_tun(tun.as_fd()) {
        let _ = channel.send_failure(&StepFailure::errno(Step::SendTun, errno));
        return EXIT_SETUP_FAILED;
    }
    drop(tun);

    match channel.receive_supervisor_message() {
        Ok(Some(SupervisorMessage::Start)) => {}
        _ => return EXIT_SETUP_FAILED,
    }
    drop(channel);
    init::run(argv)
}

/// Runs the jail-side setup steps in order and returns the TUN device.
fn set_up_jail(config: &JailConfig) -> Result<OwnedFd, StepFailure> {
    mounts::make_mounts_private()?;
    mounts::bind_resolv_conf(&config.resolv_conf)?;
    mounts::mount_proc()?;
    network::configure(&config.network)
}

/// Ends the calling process at once, without running exit handlers or
/// flushing buffers that the clone copied from the supervisor.
pub(crate) fn exit_immediately(status: i32) -> ! {
    // SAFETY: _exit(2) takes no pointers and is async-signal-safe. Skipping
    // destructors and atexit handlers is the intent: they belong to the
    // supervisor's copy of this memory.
    unsafe { libc::_exit(status) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_argv_rejects_empty() {
        let error = command_argv(&[]).unwrap_err();
        assert!(matches!(error, JailError::InvalidCommand { .. }));
    }

    #[test]
    fn command_argv_rejects_nul_byte() {
        let error = command_argv(&["a\0b".into()]).unwrap_err();
        assert!(error.to_string().contains("NUL"), "{error}");
    }

    #[test]
    fn command_argv_keeps_arguments() {
        let argv = command_argv(&["sh".into(), "-c".into(), "exit 7".into()]).unwrap();
        let expected: Vec<CString> = ["sh", "-c", "exit 7"]
            .iter()
            .map(|s| CString::new(*s).unwrap())
            .collect();
        assert_eq!(argv, expected);
    }

    #[test]
    fn spawn_rejects_second_thread() {
        // The test harness may run this test on the main thread, so keep a
        // second thread alive for the duration of the call.
        let (release, parked) = std::sync::mpsc::channel::<()>();
        let helper = std::thread::spawn(move || parked.recv());
        let config = JailConfig {
            command: vec!["true".into()],
            user_namespace: true,
            resolv_conf: String::new(),
            network: JailNetwork::default(),
        };

        let error = Jail::spawn(&config).unwrap_err();

        release.send(()).unwrap();
        helper.join().unwrap().unwrap();
        assert!(
            matches!(error, JailError::NotSingleThreaded { .. }),
            "{error}"
        );
    }

    #[test]
    fn default_network_matches_documented_addresses() {
        let network = JailNetwork::default();
        assert_eq!(network.ipv4.to_string(), "198.19.0.2");
        assert_eq!(network.ipv4_gateway.to_string(), "198.19.0.1");
        assert_eq!(network.ipv6.to_string(), "fd6e:6a00::2");
        assert_eq!(network.ipv6_gateway.to_string(), "fd6e:6a00::1");
        assert_eq!(network.mtu, 65520);
    }
}
