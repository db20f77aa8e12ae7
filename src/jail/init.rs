//! The jail's init (PID 1 of its PID namespace) and the command process it forks.

use std::ffi::CString;
use std::fs;
use std::os::fd::{BorrowedFd, RawFd};

use caps::CapSet;
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::prctl;
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, signal, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, execvp, fork};

use super::error::StepFailure;
use super::{EXIT_SETUP_FAILED, exit_immediately, signals};

/// Exit status when the command is not found, as with `env` and `docker run`.
const EXIT_NOT_FOUND: i32 = 127;
/// Exit status when the command exists but cannot be executed.
const EXIT_NOT_EXECUTABLE: i32 = 126;

/// Runs init after the supervisor's start message: forks the command,
/// forwards signals to it, reaps every child, and returns the command's exit
/// status (128+N if signal N killed it) once the command exits.
///
/// Runs with the forwarded signals and `SIGCHLD` blocked, a mask inherited
/// from the supervisor at the clone. No other thread exists here.
pub(super) fn run(argv: &[CString]) -> i32 {
    match signals::take_pending_cancel() {
        Ok(None) => {}
        // A Ctrl-C or SIGTERM during setup cancels the run before the command starts.
        Ok(Some(signal)) => return 128 + signal as i32,
        Err(failure) => return report_init_failure(&failure),
    }

    // SAFETY: init is single-threaded. The netlink runtime used during setup
    // ran on this thread only and was dropped, so no lock can be held by a
    // thread that would be missing in the child.
    let command = match unsafe { fork() } {
        Ok(ForkResult::Child) => run_command(argv),
        Ok(ForkResult::Parent { child }) => child,
        Err(errno) => {
            eprintln!("netjail: starting the command in the jail failed: fork: {errno}");
            return EXIT_SETUP_FAILED;
        }
    };

    match signals::forward_signals_until(command, || Ok(reap_children(command))) {
        Ok(status) => status,
        Err(failure) => report_init_failure(&failure),
    }
}

fn report_init_failure(failure: &StepFailure) -> i32 {
    let errno = failure
        .errno
        .map(|errno| errno.to_string())
        .unwrap_or_default();
    eprintln!(
        "netjail: {} failed in the jail's init: {errno}",
        failure.step
    );
    EXIT_SETUP_FAILED
}

/// Reaps every child that has exited, the command and any orphan that was
/// reparented to init. Returns the command's exit status once it has exited.
fn reap_children(command: Pid) -> Option<i32> {
    let mut command_status = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return command_status,
            Ok(status) if status.pid() == Some(command) => {
                command_status = signals::exit_status(status).or(command_status);
            }
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(errno) => {
                eprintln!("netjail: reaping processes in the jail failed: {errno}");
                return command_status;
            }
        }
    }
}

/// Runs in the command process: drops every privilege and executes the
/// command. Never returns.
fn run_command(argv: &[CString]) -> ! {
    if let Err(message) = prepare_command_process() {
        eprintln!("netjail: {message}");
        exit_immediately(EXIT_SETUP_FAILED);
    }

    let Err(errno) = execvp(&argv[0], argv);
    let name = argv[0].to_string_lossy();
    eprintln!("netjail: {name}: {}", errno.desc());
    let status = if errno == Errno::ENOENT {
        EXIT_NOT_FOUND
    } else {
        EXIT_NOT_EXECUTABLE
    };
    exit_immediately(status)
}

/// Restores the signal state the command expects, marks inherited
/// descriptors close-on-exec, sets no_new_privs and clears every capability
/// set.
fn prepare_command_process() -> Result<(), String> {
    close_inherited_descriptors()
        .map_err(|errno| format!("closing inherited file descriptors failed: {errno}"))?;
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(|errno| format!("clearing the signal mask failed: {errno}"))?;
    // The Rust runtime ignores SIGPIPE. Ignored signals survive execve, and a
    // command like `yes | head` relies on the default action.
    // SAFETY: SIG_DFL installs no handler, so no code can run in signal context.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }
        .map_err(|errno| format!("restoring the default SIGPIPE action failed: {errno}"))?;

    prctl::set_no_new_privs().map_err(|errno| format!("setting no_new_privs failed: {errno}"))?;

    // The bounding set goes first: dropping from it needs CAP_SETPCAP in the
    // effective set, which clearing the permitted set removes.
    let sets = [
        (CapSet::Bounding, "bounding"),
        (CapSet::Ambient, "ambient"),
        (CapSet::Inheritable, "inheritable"),
        (CapSet::Permitted, "permitted and effective"),
    ];
    for (set, name) in sets {
        caps::clear(None, set)
            .map_err(|error| format!("clearing the {name} capability set failed: {error}"))?;
    }
    Ok(())
}

/// Marks every descriptor above standard error close-on-exec, so the command
/// starts with only stdin, stdout and stderr. A socket inherited from
/// netjail's caller would otherwise be a way out of the jail that bypasses
/// the supervisor.
fn close_inherited_descriptors() -> Result<(), Errno> {
    let first = 3 as libc::c_uint;
    let last = libc::c_uint::MAX;
    // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC only sets a flag on
    // descriptors of this process and reads no memory.
    let result = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            last,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    match Errno::result(result) {
        Ok(_) => Ok(()),
        // Kernels before 5.11 lack close_range or its CLOEXEC flag.
        Err(Errno::ENOSYS | Errno::EINVAL) => mark_listed_descriptors_cloexec(),
        Err(errno) => Err(errno),
    }
}

/// Marks descriptors close-on-exec one by one, listing /proc/self/fd, which
/// shows this process because the jail's /proc is mounted. This is the
/// fallback of [`close_inherited_descriptors`].
fn mark_listed_descriptors_cloexec() -> Result<(), Errno> {
    let listing = fs::read_dir("/proc/self/fd")
        .map_err(|error| Errno::from_raw(error.raw_os_error().unwrap_or(libc::EIO)))?;
    let descriptors: Vec<RawFd> = listing
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();

    for fd in descriptors {
        // SAFETY: `fd` was listed in this single-threaded process's descriptor
        // table a moment ago, and nothing closes it before fcntl returns. The
        // directory's own descriptor is closed by now and yields EBADF.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        match fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)) {
            Ok(_) | Err(Errno::EBADF) => {}
            Err(errno) => return Err(errno),
        }
    }
    Ok(())
}
