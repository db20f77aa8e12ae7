//! Signal forwarding from the supervisor to the jail's init, and from init to the command.

use std::fs;

use nix::errno::Errno;
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, kill, signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd, siginfo};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::JailError;
use super::error::{Step, StepFailure};

/// Signals the supervisor forwards to the jail's init and init forwards to
/// the command, unless the kernel generated them (`si_code == SI_KERNEL`).
///
/// Job control signals (`SIGTSTP`, `SIGTTIN`, `SIGTTOU`, `SIGCONT`) are not
/// in this list: the terminal delivers them to the whole process group.
pub const FORWARDED_SIGNALS: [Signal; 7] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Signals that cancel the jail when they arrive before the command starts.
const CANCELLING_SIGNALS: [Signal; 4] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
];

/// Returns the signals read from the signalfd: the forwarded ones and `SIGCHLD`.
fn watched_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in FORWARDED_SIGNALS {
        set.add(signal);
    }
    set.add(Signal::SIGCHLD);
    set
}

/// Blocks [`FORWARDED_SIGNALS`] and `SIGCHLD` in the calling thread, and
/// resets `SIGCHLD` to its default action in case netjail's parent left it
/// ignored, which would make the kernel reap the jail before `wait` could
/// collect its exit status.
///
/// Call it in the main thread before any other thread starts, so every
/// thread inherits the mask and the kernel keeps these signals pending for
/// [`Jail::wait`](super::Jail::wait) instead of running default actions.
/// [`Jail::spawn`](super::Jail::spawn) calls it too, and calling it again
/// does no harm.
pub fn block_forwarded_signals() -> Result<(), JailError> {
    let fail = |errno| StepFailure::errno(Step::BlockSignals, errno);
    // SAFETY: SIG_DFL installs no handler, so no code can run in signal context.
    unsafe { signal(Signal::SIGCHLD, SigHandler::SigDfl) }.map_err(fail)?;
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&watched_signals()), None).map_err(fail)?;
    Ok(())
}

/// Returns an error unless the calling process has exactly one thread.
pub(super) fn ensure_single_threaded() -> Result<(), JailError> {
    let tasks = fs::read_dir("/proc/self/task")
        .map_err(|error| StepFailure::io(Step::CountThreads, &error, "/proc/self/task"))?;
    let threads = tasks.count();
    if threads == 1 {
        Ok(())
    } else {
        Err(JailError::NotSingleThreaded { threads })
    }
}

fn open_signal_fd(flags: SfdFlags) -> Result<SignalFd, StepFailure> {
    SignalFd::with_flags(&watched_signals(), flags | SfdFlags::SFD_CLOEXEC)
        .map_err(|errno| StepFailure::errno(Step::OpenSignalFd, errno))
}

/// Returns the signal to pass on, or `None` for `SIGCHLD` and for signals
/// the kernel sent to the whole foreground process group, which the command
/// received already.
fn signal_to_forward(info: &siginfo) -> Option<Signal> {
    let signal = Signal::try_from(info.ssi_signo as i32).ok()?;
    if signal == Signal::SIGCHLD || info.ssi_code == libc::SI_KERNEL {
        return None;
    }
    Some(signal)
}

/// Forwards watched signals to `target` until `reap` returns an exit status.
///
/// `reap` runs before the first wait and after every signal, so a child that
/// exited before the signalfd existed is still seen: its `SIGCHLD` stays
/// pending because it is blocked.
pub(super) fn forward_signals_until(
    target: Pid,
    mut reap: impl FnMut() -> Result<Option<i32>, StepFailure>,
) -> Result<i32, StepFailure> {
    let signals = open_signal_fd(SfdFlags::empty())?;
    loop {
        if let Some(status) = reap()? {
            return Ok(status);
        }
        let info = match signals.read_signal() {
            Ok(Some(info)) => info,
            Ok(None) | Err(Errno::EINTR) => continue,
            Err(errno) => return Err(StepFailure::errno(Step::WaitForJail, errno)),
        };
        let Some(signal) = signal_to_forward(&info) else {
            continue;
        };
        // ESRCH means the target exited, and the next reap will see that.
        if let Err(errno) = kill(target, signal) {
            tracing::debug!(%target, ?signal, %errno, "forwarding a signal failed");
        }
    }
}

/// The supervisor's side of [`Jail::wait`](super::Jail::wait): forwards
/// signals to the jail's init until it exits, and returns its exit status.
pub(super) fn forward_until_exit(init: Pid) -> Result<i32, JailError> {
    block_forwarded_signals()?;
    let reap_init = || loop {
        match waitpid(init, Some(WaitPidFlag::WNOHANG)) {
            Ok(status) => return Ok(exit_status(status)),
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(StepFailure::errno(Step::WaitForJail, errno)),
        }
    };
    Ok(forward_signals_until(init, reap_init)?)
}

/// Returns the first cancelling signal that arrived while the jail was being
/// set up, discarding every other pending watched signal.
pub(super) fn take_pending_cancel() -> Result<Option<Signal>, StepFailure> {
    let signals = open_signal_fd(SfdFlags::SFD_NONBLOCK)?;
    let mut cancel = None;
    while let Some(info) = signals
        .read_signal()
        .map_err(|errno| StepFailure::errno(Step::OpenSignalFd, errno))?
    {
        let signal = Signal::try_from(info.ssi_signo as i32).ok();
        if cancel.is_none() && signal.is_some_and(|signal| CANCELLING_SIGNALS.contains(&signal)) {
            cancel = signal;
        }
    }
    Ok(cancel)
}

/// Returns the status a shell would report for a process that ended with
/// `status`: its exit code, or 128+N when signal N killed it. `None` while
/// it still runs.
pub(super) fn exit_status(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, signal, _) => Some(128 + signal as i32),
        _ => None,
    }
}

/// Describes how a process ended, for error messages.
pub(super) fn describe_status(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exit code {code}"),
        WaitStatus::Signaled(_, signal, _) => format!("killed by {signal}"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(signal: Signal, code: i32) -> siginfo {
        // SAFETY: signalfd_siginfo is a C struct of integers and padding,
        // for which all zero bytes are a valid value.
        let mut info: siginfo = unsafe { std::mem::zeroed() };
        info.ssi_signo = signal as u32;
        info.ssi_code = code;
        info
    }

    #[test]
    fn user_signal_is_forwarded() {
        let forwarded = signal_to_forward(&info(Signal::SIGTERM, libc::SI_USER));
        assert_eq!(forwarded, Some(Signal::SIGTERM));
    }

    #[test]
    fn terminal_signal_is_not_forwarded() {
        assert_eq!(
            signal_to_forward(&info(Signal::SIGINT, libc::SI_KERNEL)),
            None
        );
    }

    #[test]
    fn sigchld_is_not_forwarded() {
        assert_eq!(
            signal_to_forward(&info(Signal::SIGCHLD, libc::SI_USER)),
            None
        );
    }

    #[test]
    fn exit_status_of_exit_code() {
        let pid = Pid::from_raw(2);
        assert_eq!(exit_status(WaitStatus::Exited(pid, 7)), Some(7));
    }

    #[test]
    fn exit_status_of_signal_is_128_plus_n() {
        let pid = Pid::from_raw(2);
        let killed = WaitStatus::Signaled(pid, Signal::SIGKILL, false);
        assert_eq!(exit_status(killed), Some(137));
    }

    #[test]
    fn exit_status_of_running_is_none() {
        assert_eq!(exit_status(WaitStatus::StillAlive), None);
    }

    #[test]
    fn watched_signals_exclude_job_control() {
        let set = watched_signals();
        assert!(set.contains(Signal::SIGCHLD));
        assert!(set.contains(Signal::SIGWINCH));
        assert!(!set.contains(Signal::SIGTSTP));
        assert!(!set.contains(Signal::SIGCONT));
    }
}
