//! Errors of jail setup, with the step that failed and what to change.

use std::fmt;

use nix::errno::Errno;

use super::diagnose;

/// Error returned while creating, starting or waiting for a jail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JailError {
    /// The command is empty, or one of its arguments contains a NUL byte.
    #[error("invalid command: {reason}")]
    InvalidCommand {
        /// Description of the problem with the command.
        reason: String,
    },
    /// [`Jail::spawn`](super::Jail::spawn) ran after another thread had started.
    #[error(
        "the jail must be spawned before any other thread starts, \
         but this process already has {threads} threads"
    )]
    NotSingleThreaded {
        /// Number of threads found in `/proc/self/task`.
        threads: usize,
    },
    /// The jail was to be created without a user namespace, but this process
    /// lacks CAP_SYS_ADMIN, which creating the other namespaces then needs.
    #[error(
        "--no-user-namespace needs CAP_SYS_ADMIN, which this process lacks ({capabilities}). \
         Without a user namespace, creating the network, mount and PID namespaces needs it, \
         and container runtimes drop it unless granted (Docker: --cap-add SYS_ADMIN). \
         Leave out --no-user-namespace (and `user_namespace = false` in the configuration \
         file), so that netjail creates a user namespace, which needs no capability, or grant \
         CAP_SYS_ADMIN"
    )]
    NoUserNamespaceWithoutCapSysAdmin {
        /// The effective capability mask and where it was read.
        capabilities: String,
    },
    /// A step of jail setup failed, in the supervisor or inside the jail.
    #[error("{}", describe_failure(*.step, *.errno, .detail, .hint.as_deref()))]
    Failed {
        /// The step that failed.
        step: Step,
        /// The errno the step failed with, when it came from a system call.
        errno: Option<Errno>,
        /// The object the step worked on, or an error text without an errno.
        detail: String,
        /// Advice on what to change, when the cause is known.
        hint: Option<String>,
    },
    /// The jail exited during setup without reporting which step failed.
    #[error("the jail exited during setup without reporting an error ({status})")]
    ExitedDuringSetup {
        /// Description of how the jail's init ended, for example "killed by SIGKILL".
        status: String,
    },
    /// The jail sent a message this supervisor does not understand.
    #[error("invalid message from the jail: {reason}")]
    Protocol {
        /// Description of the problem with the message.
        reason: String,
    },
}

impl JailError {
    /// Builds the error for `failure`, with a hint for the user when the
    /// step and errno point at a known cause.
    pub(super) fn from_failure(failure: StepFailure, user_namespace: bool) -> JailError {
        let hint = diagnose::hint(failure.step, failure.errno, user_namespace);
        JailError::Failed {
            step: failure.step,
            errno: failure.errno,
            detail: failure.detail,
            hint,
        }
    }

    /// Returns the step that failed, for a [`JailError::Failed`].
    pub fn step(&self) -> Option<Step> {
        match self {
            JailError::Failed { step, .. } => Some(*step),
            _ => None,
        }
    }

    /// Returns the errno of a [`JailError::Failed`] that came from a system call.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            JailError::Failed { errno, .. } => *errno,
            _ => None,
        }
    }
}

impl From<StepFailure> for JailError {
    /// Converts a failure of a supervisor-side step that needs no namespace
    /// context for its hint.
    fn from(failure: StepFailure) -> JailError {
        JailError::from_failure(failure, false)
    }
}

fn describe_failure(step: Step, errno: Option<Errno>, detail: &str, hint: Option<&str>) -> String {
    let mut text = format!("{step} failed");
    if !detail.is_empty() {
        text.push_str(&format!(" ({detail})"));
    }
    if let Some(errno) = errno {
        text.push_str(&format!(": {errno}"));
    }
    if let Some(hint) = hint {
        text.push_str(&format!(". {hint}"));
    }
    text
}

/// A step of creating, starting or waiting for a jail.
///
/// The numeric values travel from the jail to the supervisor in setup
/// failure messages, so a value must not change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u8)]
pub enum Step {
    /// Creating the socket pair between the supervisor and the jail.
    CreateSocketPair = 1,
    /// Blocking the forwarded signals and `SIGCHLD`.
    BlockSignals = 2,
    /// Creating the namespaces with clone(2).
    CloneNamespaces = 3,
    /// Changing the supervisor's dumpable flag (`PR_SET_DUMPABLE`).
    SetDumpable = 4,
    /// Writing `deny` to `/proc/PID/setgroups`.
    WriteSetgroups = 5,
    /// Writing `/proc/PID/uid_map`.
    WriteUidMap = 6,
    /// Writing `/proc/PID/gid_map`.
    WriteGidMap = 7,
    /// Telling the jail that its ID maps are written.
    SendProceed = 8,
    /// Receiving the TUN device or a setup failure from the jail.
    ReceiveTun = 9,
    /// Asking the kernel to kill the jail when the supervisor dies.
    SetParentDeathSignal = 10,
    /// Making every mount in the jail's mount namespace private.
    MakeMountsPrivate = 11,
    /// Finding the file that `/etc/resolv.conf` points to.
    ResolveResolvConf = 12,
    /// Writing the jail's resolv.conf to a tmpfs private to the jail.
    StageResolvConf = 13,
    /// Bind-mounting the jail's resolv.conf over `/etc/resolv.conf`.
    BindResolvConf = 14,
    /// Mounting a `/proc` for the jail's PID namespace.
    MountProc = 15,
    /// Opening a netlink connection.
    OpenNetlink = 16,
    /// Bringing the loopback interface up.
    LoopbackUp = 17,
    /// Opening `/dev/net/tun`.
    OpenTunDevice = 18,
    /// Creating the TUN interface with the `TUNSETIFF` ioctl.
    CreateTunInterface = 19,
    /// Turning off IPv6 duplicate address detection and router advertisements
    /// on the TUN interface.
    SetIpv6Sysctls = 20,
    /// Setting the TUN interface's MTU and queue length and bringing it up.
    ConfigureTunInterface = 21,
    /// Adding an address to the TUN interface.
    AddAddress = 22,
    /// Adding a default route through the TUN interface.
    AddRoute = 23,
    /// Sending the TUN device to the supervisor.
    SendTun = 24,
    /// Telling the jail to run the command.
    SendStart = 25,
    /// Opening the signalfd that `wait` reads.
    OpenSignalFd = 26,
    /// Waiting for the jail's init to exit.
    WaitForJail = 27,
    /// Counting the supervisor's threads.
    CountThreads = 28,
}

impl Step {
    const ALL: [Step; 28] = [
        Step::CreateSocketPair,
        Step::BlockSignals,
        Step::CloneNamespaces,
        Step::SetDumpable,
        Step::WriteSetgroups,
        Step::WriteUidMap,
        Step::WriteGidMap,
        Step::SendProceed,
        Step::ReceiveTun,
        Step::SetParentDeathSignal,
        Step::MakeMountsPrivate,
        Step::ResolveResolvConf,
        Step::StageResolvConf,
        Step::BindResolvConf,
        Step::MountProc,
        Step::OpenNetlink,
        Step::LoopbackUp,
        Step::OpenTunDevice,
        Step::CreateTunInterface,
        Step::SetIpv6Sysctls,
        Step::ConfigureTunInterface,
        Step::AddAddress,
        Step::AddRoute,
        Step::SendTun,
        Step::SendStart,
        Step::OpenSignalFd,
        Step::WaitForJail,
        Step::CountThreads,
    ];

    /// Returns the step with wire value `value`, if there is one.
    pub(super) fn from_u8(value: u8) -> Option<Step> {
        Step::ALL.into_iter().find(|step| *step as u8 == value)
    }

    /// Returns whether the step runs inside the jail, with the jail's capabilities.
    pub(super) fn is_in_jail(self) -> bool {
        matches!(
            self,
            Step::SetParentDeathSignal
                | Step::MakeMountsPrivate
                | Step::ResolveResolvConf
                | Step::StageResolvConf
                | Step::BindResolvConf
                | Step::MountProc
                | Step::OpenNetlink
                | Step::LoopbackUp
                | Step::OpenTunDevice
                | Step::CreateTunInterface
                | Step::SetIpv6Sysctls
                | Step::ConfigureTunInterface
                | Step::AddAddress
                | Step::AddRoute
                | Step::SendTun
        )
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Step::CreateSocketPair => "creating the socket pair between supervisor and jail",
            Step::BlockSignals => "blocking the forwarded signals",
            Step::CloneNamespaces => "creating the jail's namespaces with clone(2)",
            Step::SetDumpable => "changing the supervisor's dumpable flag",
            Step::WriteSetgroups => "writing the jail's /proc/PID/setgroups",
            Step::WriteUidMap => "writing the jail's /proc/PID/uid_map",
            Step::WriteGidMap => "writing the jail's /proc/PID/gid_map",
            Step::SendProceed => "telling the jail that its ID maps are written",
            Step::ReceiveTun => "receiving the TUN device from the jail",
            Step::SetParentDeathSignal => "setting the jail's parent death signal",
            Step::MakeMountsPrivate => "making the jail's mounts private",
            Step::ResolveResolvConf => "resolving /etc/resolv.conf",
            Step::StageResolvConf => "writing the jail's resolv.conf to a private tmpfs",
            Step::BindResolvConf => "bind-mounting the jail's resolv.conf over /etc/resolv.conf",
            Step::MountProc => "mounting /proc in the jail",
            Step::OpenNetlink => "opening a netlink connection in the jail",
            Step::LoopbackUp => "bringing up lo in the jail",
            Step::OpenTunDevice => "opening /dev/net/tun",
            Step::CreateTunInterface => "creating the TUN interface (TUNSETIFF)",
            Step::SetIpv6Sysctls => "setting the IPv6 sysctls of the TUN interface",
            Step::ConfigureTunInterface => "setting up the TUN interface",
            Step::AddAddress => "adding an address to the TUN interface",
            Step::AddRoute => "adding a default route through the TUN interface",
            Step::SendTun => "sending the TUN device to the supervisor",
            Step::SendStart => "telling the jail to start the command",
            Step::OpenSignalFd => "opening a signalfd for the forwarded signals",
            Step::WaitForJail => "waiting for the jail to exit",
            Step::CountThreads => "counting the threads in /proc/self/task",
        };
        f.write_str(text)
    }
}

/// A failed step as the jail reports it: the step, its errno and a detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StepFailure {
    pub(super) step: Step,
    pub(super) errno: Option<Errno>,
    pub(super) detail: String,
}

impl StepFailure {
    pub(super) fn errno(step: Step, errno: Errno) -> StepFailure {
        StepFailure {
            step,
            errno: Some(errno),
            detail: String::new(),
        }
    }

    pub(super) fn errno_on(step: Step, errno: Errno, detail: impl Into<String>) -> StepFailure {
        StepFailure {
            step,
            errno: Some(errno),
            detail: detail.into(),
        }
    }

    /// Builds a failure from an `io::Error`, keeping its errno when it has one.
    pub(super) fn io(step: Step, error: &std::io::Error, detail: impl Into<String>) -> StepFailure {
        match error.raw_os_error() {
            Some(code) => StepFailure::errno_on(step, Errno::from_raw(code), detail),
            None => {
                let detail = detail.into();
                let detail = if detail.is_empty() {
                    error.to_string()
                } else {
                    format!("{detail}: {error}")
                };
                StepFailure {
                    step,
                    errno: None,
                    detail,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_wire_values_round_trip() {
        for step in Step::ALL {
            assert_eq!(Step::from_u8(step as u8), Some(step));
        }
    }

    #[test]
    fn step_unknown_value_is_none() {
        assert_eq!(Step::from_u8(0), None);
        assert_eq!(Step::from_u8(200), None);
    }

    #[test]
    fn step_in_jail_range() {
        assert!(Step::MountProc.is_in_jail());
        assert!(Step::SendTun.is_in_jail());
        assert!(!Step::CloneNamespaces.is_in_jail());
        assert!(!Step::SendStart.is_in_jail());
    }

    #[test]
    fn failure_message_names_step_errno_and_hint() {
        let error = JailError::Failed {
            step: Step::OpenTunDevice,
            errno: Some(Errno::ENOENT),
            detail: String::new(),
            hint: Some("load the tun module".to_string()),
        };
        assert_eq!(
            error.to_string(),
            "opening /dev/net/tun failed: ENOENT: No such file or directory. load the tun module"
        );
    }

    #[test]
    fn failure_message_includes_detail() {
        let error = JailError::Failed {
            step: Step::AddAddress,
            errno: Some(Errno::EACCES),
            detail: "fd6e:6a00::2/64".to_string(),
            hint: None,
        };
        assert_eq!(
            error.to_string(),
            "adding an address to the TUN interface failed (fd6e:6a00::2/64): \
             EACCES: Permission denied"
        );
    }

    #[test]
    fn io_failure_without_errno_or_detail() {
        let error = std::io::Error::other("short write");
        let failure = StepFailure::io(Step::StageResolvConf, &error, "");
        assert_eq!(failure.detail, "short write");
    }

    #[test]
    fn io_failure_without_errno_keeps_text() {
        let error = std::io::Error::other("short write");
        let failure = StepFailure::io(Step::StageResolvConf, &error, "/proc/resolv.conf");
        assert_eq!(failure.errno, None);
        assert_eq!(failure.detail, "/proc/resolv.conf: short write");
    }
}
