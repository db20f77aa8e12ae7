//! Creating the jail's namespaces and writing its user namespace ID maps.

use std::fs::OpenOptions;
use std::io::Write;

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::unistd::{Pid, getegid, geteuid};

use super::error::{Step, StepFailure};

/// Side of the clone that the caller is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CloneResult {
    /// The new process, PID 1 of the new PID namespace.
    Child,
    /// The supervisor. The pid is the child's pid in the supervisor's namespace.
    Parent(Pid),
}

/// Returns the namespaces every jail gets, plus a user namespace on request.
pub(super) fn clone_flags(user_namespace: bool) -> CloneFlags {
    let mut flags = CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID;
    if user_namespace {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    flags
}

/// Clones the calling process into new namespaces, like fork(2).
///
/// The caller must be single-threaded: the child gets a copy of the caller's
/// memory and only the calling thread, so a lock that another thread held at
/// the moment of the clone would stay locked forever in the child.
pub(super) fn clone_jail(user_namespace: bool) -> Result<CloneResult, Errno> {
    let flags =
        clone_flags(user_namespace).bits() as libc::c_ulong | libc::SIGCHLD as libc::c_ulong;
    let no_pointer: libc::c_ulong = 0;
    // SAFETY: without CLONE_VM the child gets its own copy of the address
    // space, and a null stack pointer makes it continue on its copy of this
    // stack, exactly like fork(2). No parent or child TID pointers and no TLS
    // are passed. fork(2) would also run atfork handlers, which only matter
    // when other threads hold locks, and the caller guarantees there are none.
    let result = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            no_pointer,
            no_pointer,
            no_pointer,
            no_pointer,
        )
    };
    match Errno::result(result)? {
        0 => Ok(CloneResult::Child),
        pid => Ok(CloneResult::Parent(Pid::from_raw(pid as libc::pid_t))),
    }
}

/// Maps the caller's effective uid and gid to themselves in the jail's user
/// namespace, after denying setgroups(2) there, which the kernel requires
/// before an unprivileged process may write `gid_map`.
pub(super) fn write_id_maps(pid: Pid) -> Result<(), StepFailure> {
    let uid = geteuid();
    let gid = getegid();
    write_proc_file(pid, "setgroups", "deny", Step::WriteSetgroups)?;
    write_proc_file(
        pid,
        "uid_map",
        &id_map_line(uid.as_raw()),
        Step::WriteUidMap,
    )?;
    write_proc_file(
        pid,
        "gid_map",
        &id_map_line(gid.as_raw()),
        Step::WriteGidMap,
    )
}

/// Formats a one-line ID map that maps `id` to itself: `inside outside count`.
fn id_map_line(id: u32) -> String {
    format!("{id} {id} 1\n")
}

fn write_proc_file(pid: Pid, name: &str, content: &str, step: Step) -> Result<(), StepFailure> {
    let path = format!("/proc/{pid}/{name}");
    let fail = |error: std::io::Error| StepFailure::io(step, &error, path.clone());
    let mut file = OpenOptions::new().write(true).open(&path).map_err(fail)?;
    // The kernel accepts an ID map only in a single write(2) call.
    let written = file.write(content.as_bytes()).map_err(fail)?;
    if written != content.len() {
        let error = std::io::Error::other(format!("wrote {written} of {} bytes", content.len()));
        return Err(fail(error));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_map_line_maps_id_to_itself() {
        assert_eq!(id_map_line(1000), "1000 1000 1\n");
        assert_eq!(id_map_line(0), "0 0 1\n");
    }

    #[test]
    fn clone_flags_include_user_namespace_on_request() {
        assert!(clone_flags(true).contains(CloneFlags::CLONE_NEWUSER));
        assert!(!clone_flags(false).contains(CloneFlags::CLONE_NEWUSER));
    }

    #[test]
    fn clone_flags_always_include_net_mount_pid() {
        let expected =
            CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID;
        assert!(clone_flags(false).contains(expected));
    }
}
