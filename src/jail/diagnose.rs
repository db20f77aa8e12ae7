//! Hints that turn a failed step and its errno into what the user should change.
//!
//! The hints read a few kernel settings at the moment of the failure, so the
//! message names the setting that is actually in the way when it can.

use std::fs;

use nix::errno::Errno;

use super::error::Step;

/// Kernel settings and process state that decide whether a jail can be created.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct HostFacts {
    /// `kernel.unprivileged_userns_clone` (Debian and Ubuntu kernels only).
    pub(super) unprivileged_userns_clone: Option<u64>,
    /// `kernel.apparmor_restrict_unprivileged_userns` (Ubuntu 23.10 and later).
    pub(super) apparmor_restricts_userns: Option<u64>,
    /// `user.max_user_namespaces`.
    pub(super) max_user_namespaces: Option<u64>,
    /// The `Seccomp:` mode in `/proc/self/status`: 0 none, 1 strict, 2 filter.
    pub(super) seccomp_mode: Option<u64>,
}

impl HostFacts {
    pub(super) fn read() -> HostFacts {
        HostFacts {
            unprivileged_userns_clone: read_number("/proc/sys/kernel/unprivileged_userns_clone"),
            apparmor_restricts_userns: read_number(
                "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            ),
            max_user_namespaces: read_number("/proc/sys/user/max_user_namespaces"),
            seccomp_mode: read_status_field("Seccomp:"),
        }
    }
}

fn read_number(path: &str) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn read_status_field(field: &str) -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line[field.len()..].trim().parse().ok()
}

/// Returns advice for a failed step, reading the host's settings when the
/// advice depends on them.
pub(super) fn hint(step: Step, errno: Option<Errno>, user_namespace: bool) -> Option<String> {
    hint_for(step, errno?, user_namespace, &HostFacts::read())
}

/// Returns advice for a failed step given the host's settings.
pub(super) fn hint_for(
    step: Step,
    errno: Errno,
    user_namespace: bool,
    facts: &HostFacts,
) -> Option<String> {
    match (step, errno) {
        (Step::CloneNamespaces, Errno::EPERM) if user_namespace => Some(clone_userns_eperm(facts)),
        (Step::CloneNamespaces, Errno::EPERM) => Some(
            "creating namespaces without a user namespace needs CAP_SYS_ADMIN: \
             run netjail as root, or leave out --no-user-namespace"
                .to_string(),
        ),
        (Step::CloneNamespaces, Errno::ENOSPC) => Some(clone_enospc(facts, user_namespace)),
        (Step::CloneNamespaces, Errno::EINVAL) => Some(
            "this kernel lacks namespace support: netjail needs a kernel built with \
             CONFIG_USER_NS, CONFIG_NET_NS and CONFIG_PID_NS"
                .to_string(),
        ),
        (Step::CloneNamespaces, Errno::EUSERS) => Some(
            "user namespaces are nested 32 levels deep, the kernel's limit: \
             run netjail from a less deeply nested container"
                .to_string(),
        ),
        (Step::WriteSetgroups | Step::WriteUidMap | Step::WriteGidMap, Errno::EPERM) => Some(
            "the kernel rejected the ID mapping: without CAP_SETUID and CAP_SETGID a process \
             may map only its own uid and gid, and a security module or an outer container \
             can forbid even that"
                .to_string(),
        ),
        (Step::ResolveResolvConf, Errno::ENOENT) => Some(
            "/etc/resolv.conf, or the file its symbolic link points to, does not exist: \
             netjail mounts the jail's resolver settings over that file, so create it \
             (an empty file is enough)"
                .to_string(),
        ),
        (Step::MountProc, Errno::EPERM) if user_namespace => Some(mount_proc_eperm(facts)),
        (Step::OpenTunDevice, errno) => open_tun_hint(errno),
        (Step::SetIpv6Sysctls, Errno::ENOENT) | (Step::AddAddress, Errno::EAFNOSUPPORT) => Some(
            "IPv6 is turned off in this kernel (ipv6.disable=1 on the kernel command line): \
             netjail gives the jail an IPv6 address, so boot without that option"
                .to_string(),
        ),
        (step, Errno::EPERM | Errno::EACCES) if step.is_in_jail() && user_namespace => {
            apparmor_hint(facts)
        }
        _ => None,
    }
}

fn clone_userns_eperm(facts: &HostFacts) -> String {
    if facts.unprivileged_userns_clone == Some(0) {
        return "unprivileged user namespaces are turned off (kernel.unprivileged_userns_clone \
                is 0): run `sysctl -w kernel.unprivileged_userns_clone=1` as root, or run \
                netjail as root with --no-user-namespace"
            .to_string();
    }
    if facts.seccomp_mode.is_some_and(|mode| mode > 0) {
        return "a seccomp filter rejects clone(2) with CLONE_NEWUSER. Docker's default \
                profile does this unless the container has CAP_SYS_ADMIN: run the container \
                with a seccomp profile that allows the namespace flags of clone and unshare, \
                or grant CAP_SYS_ADMIN and pass --no-user-namespace"
            .to_string();
    }
    "the kernel refused to create a user namespace: check kernel.unprivileged_userns_clone, \
     user.max_user_namespaces and any seccomp filter or security module, or run netjail as \
     root with --no-user-namespace"
        .to_string()
}

fn clone_enospc(facts: &HostFacts, user_namespace: bool) -> String {
    if user_namespace && facts.max_user_namespaces == Some(0) {
        return "user namespaces are turned off (user.max_user_namespaces is 0): run \
                `sysctl -w user.max_user_namespaces=15000` as root"
            .to_string();
    }
    "a namespace limit is reached: check user.max_user_namespaces, user.max_net_namespaces, \
     user.max_mnt_namespaces and user.max_pid_namespaces"
        .to_string()
}

fn mount_proc_eperm(facts: &HostFacts) -> String {
    if let Some(hint) = apparmor_hint(facts) {
        return hint;
    }
    "the kernel lets a user namespace mount /proc only where the existing /proc is fully \
     visible, and a container runtime hides parts of it: in Docker, add \
     --security-opt systempaths=unconfined"
        .to_string()
}

fn open_tun_hint(errno: Errno) -> Option<String> {
    let text = match errno {
        Errno::ENOENT => {
            "/dev/net/tun does not exist: load the tun module (`modprobe tun`), \
             or in Docker add --device /dev/net/tun"
        }
        Errno::EACCES => {
            "this user may not open /dev/net/tun: make it readable and writable by everyone \
             (`chmod 0666 /dev/net/tun`, the mode most distributions ship), or run as root"
        }
        Errno::EPERM => "a device cgroup denies /dev/net/tun: in Docker, add --device /dev/net/tun",
        Errno::ENODEV | Errno::ENXIO => {
            "the tun driver is missing: load it with `modprobe tun` or use a kernel built with \
             CONFIG_TUN"
        }
        _ => return None,
    };
    Some(text.to_string())
}

fn apparmor_hint(facts: &HostFacts) -> Option<String> {
    if facts.apparmor_restricts_userns != Some(1) {
        return None;
    }
    Some(
        "AppArmor withholds capabilities from unprivileged user namespaces \
         (kernel.apparmor_restrict_unprivileged_userns is 1): add an AppArmor profile for \
         netjail that allows `userns,`, or run `sysctl -w \
         kernel.apparmor_restrict_unprivileged_userns=0` as root"
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> HostFacts {
        HostFacts {
            unprivileged_userns_clone: None,
            apparmor_restricts_userns: None,
            max_user_namespaces: Some(15000),
            seccomp_mode: Some(0),
        }
    }

    #[test]
    fn clone_eperm_under_seccomp_names_docker() {
        let facts = HostFacts {
            seccomp_mode: Some(2),
            ..facts()
        };
        let hint = hint_for(Step::CloneNamespaces, Errno::EPERM, true, &facts).unwrap();
        assert!(hint.contains("seccomp"), "{hint}");
        assert!(hint.contains("--no-user-namespace"), "{hint}");
    }

    #[test]
    fn clone_eperm_names_disabled_sysctl() {
        let facts = HostFacts {
            unprivileged_userns_clone: Some(0),
            ..facts()
        };
        let hint = hint_for(Step::CloneNamespaces, Errno::EPERM, true, &facts).unwrap();
        assert!(hint.contains("kernel.unprivileged_userns_clone"), "{hint}");
    }

    #[test]
    fn clone_eperm_without_userns_needs_cap_sys_admin() {
        let hint = hint_for(Step::CloneNamespaces, Errno::EPERM, false, &facts()).unwrap();
        assert!(hint.contains("CAP_SYS_ADMIN"), "{hint}");
    }

    #[test]
    fn clone_enospc_names_max_user_namespaces() {
        let facts = HostFacts {
            max_user_namespaces: Some(0),
            ..facts()
        };
        let hint = hint_for(Step::CloneNamespaces, Errno::ENOSPC, true, &facts).unwrap();
        assert!(hint.contains("user.max_user_namespaces is 0"), "{hint}");
    }

    #[test]
    fn missing_tun_names_docker_device() {
        let hint = hint_for(Step::OpenTunDevice, Errno::ENOENT, true, &facts()).unwrap();
        assert!(hint.contains("--device /dev/net/tun"), "{hint}");
    }

    #[test]
    fn tun_eacces_names_chmod() {
        let hint = hint_for(Step::OpenTunDevice, Errno::EACCES, true, &facts()).unwrap();
        assert!(hint.contains("chmod 0666"), "{hint}");
    }

    #[test]
    fn tunsetiff_eperm_under_apparmor() {
        let facts = HostFacts {
            apparmor_restricts_userns: Some(1),
            ..facts()
        };
        let hint = hint_for(Step::CreateTunInterface, Errno::EPERM, true, &facts).unwrap();
        assert!(
            hint.contains("apparmor_restrict_unprivileged_userns"),
            "{hint}"
        );
    }

    #[test]
    fn tunsetiff_eperm_without_apparmor_has_no_guess() {
        assert_eq!(
            hint_for(Step::CreateTunInterface, Errno::EPERM, true, &facts()),
            None
        );
    }

    #[test]
    fn missing_resolv_conf_says_create_it() {
        let hint = hint_for(Step::ResolveResolvConf, Errno::ENOENT, true, &facts()).unwrap();
        assert!(hint.contains("create it"), "{hint}");
    }

    #[test]
    fn id_map_eperm_explains_rule() {
        let hint = hint_for(Step::WriteUidMap, Errno::EPERM, true, &facts()).unwrap();
        assert!(hint.contains("its own uid"), "{hint}");
    }

    #[test]
    fn host_facts_read_seccomp_mode() {
        // Every Linux kernel since 3.8 has the Seccomp line in /proc/self/status.
        assert!(HostFacts::read().seccomp_mode.is_some());
    }
}
