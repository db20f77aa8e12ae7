//! Facts that decide whether a jail can be created: kernel settings, this
//! process's capabilities and seccomp state, `/dev/net/tun`, and probes that
//! ask the kernel directly.
//!
//! Error hints and `netjail doctor` read the same facts, so both name the
//! same setting and the same file as the cause.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};

use super::exit_immediately;
use super::namespaces::clone_flags;

/// Path of the TUN clone device.
pub(crate) const TUN_PATH: &str = "/dev/net/tun";
/// Device number of the TUN clone device (misc major 10, minor 200).
const TUN_MAJOR: u64 = 10;
const TUN_MINOR: u64 = 200;

pub(crate) const MAX_USER_NAMESPACES: &str = "/proc/sys/user/max_user_namespaces";
pub(crate) const UNPRIVILEGED_USERNS_CLONE: &str = "/proc/sys/kernel/unprivileged_userns_clone";
pub(crate) const APPARMOR_RESTRICT_USERNS: &str =
    "/proc/sys/kernel/apparmor_restrict_unprivileged_userns";

/// The fix for a seccomp filter that rejects the system calls a jail needs.
pub(crate) const SECCOMP_FIX: &str = "allow clone and unshare with namespace flags, and mount \
                                      and umount2, in a custom seccomp profile \
                                      (docs/containers.md shows the lines to add to Docker's \
                                      default profile), run the container with sysbox-runc, \
                                      or, for testing only, grant CAP_SYS_ADMIN";

/// Capability numbers from linux/capability.h.
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;

/// Kernel settings and process state that decide whether a jail can be created.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct HostFacts {
    /// `kernel.unprivileged_userns_clone` (Debian and Ubuntu kernels only).
    pub(crate) unprivileged_userns_clone: Option<u64>,
    /// `kernel.apparmor_restrict_unprivileged_userns` (Ubuntu 23.10 and later).
    pub(crate) apparmor_restricts_userns: Option<u64>,
    /// `user.max_user_namespaces` of the user namespace this process is in.
    pub(crate) max_user_namespaces: Option<u64>,
    /// The `Seccomp:` mode in `/proc/self/status`: 0 none, 1 strict, 2 filter.
    pub(crate) seccomp_mode: Option<u64>,
    /// The `Seccomp_filters:` count in `/proc/self/status` (Linux 5.9 and later).
    pub(crate) seccomp_filters: Option<u64>,
    /// The `CapEff:` mask in `/proc/self/status`.
    pub(crate) effective_caps: Option<u64>,
    /// Effective uid of this process, in its own user namespace.
    pub(crate) euid: u32,
    /// Whether this process runs in a user namespace other than the host's.
    pub(crate) nested_user_namespace: bool,
    /// The AppArmor profile confining this process, when one does.
    pub(crate) apparmor_profile: Option<String>,
}

impl HostFacts {
    /// Reads the facts from /proc. A file that is missing or unreadable
    /// leaves its fact as `None`.
    pub(crate) fn read() -> HostFacts {
        let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
        HostFacts {
            unprivileged_userns_clone: read_number(UNPRIVILEGED_USERNS_CLONE),
            apparmor_restricts_userns: read_number(APPARMOR_RESTRICT_USERNS),
            max_user_namespaces: read_number(MAX_USER_NAMESPACES),
            seccomp_mode: status_field(&status, "Seccomp:").and_then(|v| v.parse().ok()),
            seccomp_filters: status_field(&status, "Seccomp_filters:").and_then(|v| v.parse().ok()),
            effective_caps: status_field(&status, "CapEff:")
                .and_then(|v| u64::from_str_radix(v, 16).ok()),
            euid: nix::unistd::geteuid().as_raw(),
            nested_user_namespace: is_nested_user_namespace(),
            apparmor_profile: read_apparmor_profile(),
        }
    }

    /// Returns whether CAP_SYS_ADMIN is in the effective set, which creating
    /// namespaces without a user namespace needs.
    pub(crate) fn has_cap_sys_admin(&self) -> bool {
        self.has_cap(CAP_SYS_ADMIN)
    }

    /// Returns whether CAP_NET_ADMIN is in the effective set, which creating
    /// the TUN device without a user namespace needs.
    pub(crate) fn has_cap_net_admin(&self) -> bool {
        self.has_cap(CAP_NET_ADMIN)
    }

    fn has_cap(&self, cap: u32) -> bool {
        self.effective_caps
            .is_some_and(|mask| mask & (1 << cap) != 0)
    }

    /// Describes the effective capability mask as /proc/self/status shows it.
    pub(crate) fn describe_caps(&self) -> String {
        match self.effective_caps {
            Some(mask) => format!("CapEff {mask:016x} in /proc/self/status"),
            None => "CapEff is unreadable in /proc/self/status".to_string(),
        }
    }

    /// Describes the seccomp state as /proc/self/status shows it.
    pub(crate) fn describe_seccomp(&self) -> String {
        let mode = match self.seccomp_mode {
            Some(mode) => mode.to_string(),
            None => "unknown".to_string(),
        };
        match self.seccomp_filters {
            Some(filters) => {
                format!("Seccomp: {mode}, Seccomp_filters: {filters} in /proc/self/status")
            }
            None => format!("Seccomp: {mode} in /proc/self/status"),
        }
    }

    /// Returns whether AppArmor withholds capabilities from the user
    /// namespaces this process creates: the sysctl is 1 and the process is
    /// not privileged (Ubuntu exempts CAP_SYS_ADMIN holders).
    pub(crate) fn apparmor_restricts_this_process(&self) -> bool {
        self.apparmor_restricts_userns == Some(1) && !self.has_cap_sys_admin()
    }
}

/// Formats a sysctl value read from `path`, or states that the file is absent.
pub(crate) fn describe_sysctl(name: &str, value: Option<u64>, path: &str) -> String {
    match value {
        Some(value) => format!("{name} is {value} ({path})"),
        None => format!("{name} is not set on this kernel ({path} does not exist)"),
    }
}

fn read_number(path: &str) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn status_field<'a>(status: &'a str, field: &str) -> Option<&'a str> {
    let line = status.lines().find(|line| line.starts_with(field))?;
    Some(line[field.len()..].trim())
}

/// Returns whether /proc/self/uid_map differs from the initial user
/// namespace's map of every uid, `0 0 4294967295`.
fn is_nested_user_namespace() -> bool {
    let Ok(map) = fs::read_to_string("/proc/self/uid_map") else {
        return false;
    };
    let fields: Vec<&str> = map.split_whitespace().collect();
    fields != ["0", "0", "4294967295"]
}

fn read_apparmor_profile() -> Option<String> {
    let text = fs::read_to_string("/proc/self/attr/apparmor/current")
        .or_else(|_| fs::read_to_string("/proc/self/attr/current"))
        .ok()?;
    let profile = text.trim_end_matches(['\n', '\0']).trim();
    if profile.is_empty() || profile == "unconfined" {
        return None;
    }
    Some(profile.to_string())
}

/// The state of `/dev/net/tun` as stat(2) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TunDevice {
    /// Neither `/dev/net/tun` nor `/dev/net` exists.
    Missing { dev_net_exists: bool },
    /// The path exists but is not the character device 10:200.
    WrongDevice { description: String },
    /// The character device 10:200, with its mode bits and owner.
    Present { mode: u32, uid: u32, gid: u32 },
}

impl TunDevice {
    pub(crate) fn inspect() -> TunDevice {
        let metadata = match fs::metadata(TUN_PATH) {
            Ok(metadata) => metadata,
            Err(_) => {
                return TunDevice::Missing {
                    dev_net_exists: fs::metadata("/dev/net").is_ok(),
                };
            }
        };
        let rdev = metadata.rdev();
        let (major, minor) = (libc::major(rdev) as u64, libc::minor(rdev) as u64);
        if !metadata.file_type().is_char_device() || (major, minor) != (TUN_MAJOR, TUN_MINOR) {
            let kind = if metadata.file_type().is_char_device() {
                format!("character device {major}:{minor}")
            } else if metadata.is_dir() {
                "a directory".to_string()
            } else {
                "not a character device".to_string()
            };
            return TunDevice::WrongDevice {
                description: format!("{TUN_PATH} is {kind}, not the TUN device 10:200"),
            };
        }
        TunDevice::Present {
            mode: metadata.mode() & 0o7777,
            uid: metadata.uid(),
            gid: metadata.gid(),
        }
    }

    /// Describes what was found, for messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            TunDevice::Missing {
                dev_net_exists: true,
            } => format!("{TUN_PATH} does not exist, though /dev/net does"),
            TunDevice::Missing {
                dev_net_exists: false,
            } => format!("{TUN_PATH} does not exist (neither does /dev/net)"),
            TunDevice::WrongDevice { description } => description.clone(),
            TunDevice::Present { mode, uid, gid } => {
                format!("{TUN_PATH} is the TUN device 10:200, mode {mode:04o}, owner {uid}:{gid}")
            }
        }
    }
}

/// Opens `/dev/net/tun` for reading and writing and closes it again, which
/// creates no interface. Returns the errno of a failed open.
pub(crate) fn try_open_tun() -> Result<(), Errno> {
    let fd = nix::fcntl::open(
        TUN_PATH,
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    drop(fd);
    Ok(())
}

/// Mount points below /proc, which hide parts of it. A user namespace may
/// mount a new /proc only where the existing one is fully visible, so
/// container runtimes that mask /proc paths (Docker's `/proc/kcore`,
/// `/proc/keys` and others) make that mount fail with EPERM.
///
/// NOTE: the kernel also accepts covered paths that are permanently empty
/// directories, such as /proc/sys/fs/binfmt_misc, which is left out here. A
/// mount that another runtime places over such a directory is still listed.
pub(crate) fn proc_overmounts() -> Vec<String> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo
        .lines()
        .filter_map(|line| line.split_whitespace().nth(4))
        .filter(|point| point.starts_with("/proc/") && *point != "/proc/sys/fs/binfmt_misc")
        .map(str::to_string)
        .collect()
}

/// Outcome of a probe of what a seccomp filter does with a system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FilterProbe {
    /// The call reaches the kernel.
    Passes,
    /// A filter rejects the call with this errno before it reaches the kernel.
    Rejects(Errno),
    /// A filter kills the process that makes the call.
    Kills,
    /// The probe itself could not run.
    Unknown,
}

/// Finds out whether a seccomp filter rejects clone(2) with the jail's
/// namespace flags, without creating any namespace.
///
/// The probe adds `CLONE_FS` to the flags. The kernel rejects `CLONE_NEWNS |
/// CLONE_FS` and `CLONE_NEWUSER | CLONE_FS` with EINVAL as the very first
/// check of copy_process(), before any permission check, so EINVAL means the
/// call reached the kernel and any other errno came from a filter.
///
/// Must be called while the process is single-threaded, like [`super::Jail::spawn`].
pub(crate) fn probe_clone_filter(user_namespace: bool) -> FilterProbe {
    let flags = clone_flags(user_namespace) | CloneFlags::CLONE_FS;
    probe_in_child(Errno::EINVAL, || invalid_clone(flags))
}

/// Finds out whether a seccomp filter rejects mount(2), which the jail needs
/// for its /proc and resolv.conf, without mounting anything.
///
/// The probe passes a null target, which the kernel fails with EFAULT while
/// it copies the path, before any permission check.
///
/// Must be called while the process is single-threaded, like [`super::Jail::spawn`].
pub(crate) fn probe_mount_filter() -> FilterProbe {
    probe_in_child(Errno::EFAULT, || {
        // SAFETY: null pointers are valid arguments; the kernel reports
        // them as EFAULT and writes nothing.
        let result = unsafe {
            libc::mount(
                std::ptr::null(),
                std::ptr::null(),
                std::ptr::null(),
                0,
                std::ptr::null(),
            )
        };
        Errno::result(result).err().unwrap_or(Errno::UnknownErrno)
    })
}

/// Makes a system call in a forked child and reports whether it reached the
/// kernel, which fails it with `kernel_errno`. A filter that kills instead
/// of failing the call kills only the child.
fn probe_in_child(kernel_errno: Errno, call: impl FnOnce() -> Errno) -> FilterProbe {
    // SAFETY: the caller guarantees a single thread, so the child cannot
    // inherit a lock held by another thread. The child only makes one system
    // call and leaves with _exit(2).
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let errno = call();
            let code = if errno == kernel_errno {
                0
            } else {
                errno as i32
            };
            exit_immediately(code)
        }
        Ok(ForkResult::Parent { child }) => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => FilterProbe::Passes,
            Ok(WaitStatus::Exited(_, code)) => FilterProbe::Rejects(Errno::from_raw(code)),
            Ok(WaitStatus::Signaled(_, Signal::SIGSYS, _)) => FilterProbe::Kills,
            _ => FilterProbe::Unknown,
        },
        Err(_) => FilterProbe::Unknown,
    }
}

/// Calls clone(2) with `flags`, which must include `CLONE_FS` and a flag
/// the kernel refuses to combine with it, and returns the errno.
fn invalid_clone(flags: CloneFlags) -> Errno {
    let flags = flags.bits() as libc::c_ulong | libc::SIGCHLD as libc::c_ulong;
    let no_pointer: libc::c_ulong = 0;
    // SAFETY: the flag combination is invalid, so the kernel creates no
    // process. If it ever did, the child would continue on a copy of this
    // stack like fork(2) and leave at once below.
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
    match Errno::result(result) {
        Err(errno) => errno,
        Ok(0) => exit_immediately(0),
        Ok(_) => Errno::EINVAL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_field_reads_value() {
        let status = "Name:\tx\nCapEff:\t000001ffffffffff\nSeccomp:\t2\n";
        assert_eq!(status_field(status, "CapEff:"), Some("000001ffffffffff"));
        assert_eq!(status_field(status, "Seccomp:"), Some("2"));
        assert_eq!(status_field(status, "NoNewPrivs:"), None);
    }

    #[test]
    fn capability_bits() {
        let facts = HostFacts {
            effective_caps: Some(1 << CAP_SYS_ADMIN),
            ..HostFacts::default()
        };
        assert!(facts.has_cap_sys_admin());
        assert!(!facts.has_cap_net_admin());
        assert!(!HostFacts::default().has_cap_sys_admin());
    }

    #[test]
    fn describe_sysctl_absent_and_present() {
        let absent = describe_sysctl("kernel.x", None, "/proc/sys/kernel/x");
        assert!(absent.contains("does not exist"), "{absent}");
        let present = describe_sysctl("user.y", Some(0), "/proc/sys/user/y");
        assert_eq!(present, "user.y is 0 (/proc/sys/user/y)");
    }

    #[test]
    fn tun_description_names_mode_and_owner() {
        let device = TunDevice::Present {
            mode: 0o600,
            uid: 0,
            gid: 0,
        };
        assert_eq!(
            device.describe(),
            "/dev/net/tun is the TUN device 10:200, mode 0600, owner 0:0"
        );
    }

    #[test]
    fn host_facts_read_seccomp_mode() {
        // Every Linux kernel since 3.8 has the Seccomp line in /proc/self/status.
        assert!(HostFacts::read().seccomp_mode.is_some());
    }
}
