//! Hints that turn a failed step and its errno into what the user should change.
//!
//! A hint states the cause, the evidence netjail saw (the errno, a file, a
//! sysctl's value) and the fix. The hints read the host's settings at the
//! moment of the failure and, for a refused clone(2) or mount(2), probe
//! whether a seccomp filter is the cause, so the message names the setting
//! that is actually in the way when it can.

use nix::errno::Errno;

use super::error::Step;
use super::facts::{
    self, APPARMOR_RESTRICT_USERNS, FilterProbe, HostFacts, MAX_USER_NAMESPACES, SECCOMP_FIX,
    TUN_PATH, TunDevice, UNPRIVILEGED_USERNS_CLONE,
};

/// Results of probes that only some failures need, gathered at the failure.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Evidence {
    /// Whether a seccomp filter rejects clone(2) with the user namespace flags.
    pub(super) user_namespace_filter: Option<FilterProbe>,
    /// Whether a seccomp filter rejects clone(2) with the other namespace flags.
    pub(super) plain_namespace_filter: Option<FilterProbe>,
    /// Whether a seccomp filter rejects mount(2).
    pub(super) mount_filter: Option<FilterProbe>,
    /// The type, mode and owner of `/dev/net/tun`.
    pub(super) tun: Option<TunDevice>,
    /// Mount points that cover parts of /proc.
    pub(super) proc_overmounts: Vec<String>,
}

impl Evidence {
    /// Runs the probes that a failure of `step` with `errno` needs.
    ///
    /// Runs in the supervisor while it is still single-threaded, because the
    /// clone probes fork.
    fn gather(step: Step, errno: Errno, user_namespace: bool, facts: &HostFacts) -> Evidence {
        let mut evidence = Evidence::default();
        match (step, errno) {
            (Step::CloneNamespaces, Errno::EPERM) => {
                if user_namespace {
                    evidence.user_namespace_filter = Some(facts::probe_clone_filter(true));
                }
                if !user_namespace || facts.has_cap_sys_admin() {
                    evidence.plain_namespace_filter = Some(facts::probe_clone_filter(false));
                }
            }
            (Step::OpenTunDevice, _) => evidence.tun = Some(TunDevice::inspect()),
            (step, Errno::EPERM | Errno::EACCES) if is_mount_step(step) => {
                evidence.mount_filter = Some(facts::probe_mount_filter());
                if step == Step::MountProc {
                    evidence.proc_overmounts = facts::proc_overmounts();
                }
            }
            _ => {}
        }
        evidence
    }
}

/// Returns advice for a failed step, reading the host's settings and running
/// the probes that the advice depends on.
pub(super) fn hint(step: Step, errno: Option<Errno>, user_namespace: bool) -> Option<String> {
    let errno = errno?;
    let facts = HostFacts::read();
    let evidence = Evidence::gather(step, errno, user_namespace, &facts);
    hint_for(step, errno, user_namespace, &facts, &evidence)
}

/// Returns advice for a failed step given the host's settings and the probes.
pub(super) fn hint_for(
    step: Step,
    errno: Errno,
    user_namespace: bool,
    facts: &HostFacts,
    evidence: &Evidence,
) -> Option<String> {
    let mount_filtered = matches!(
        evidence.mount_filter,
        Some(FilterProbe::Rejects(_) | FilterProbe::Kills)
    );
    match (step, errno) {
        (Step::CloneNamespaces, Errno::EPERM) if user_namespace => {
            Some(clone_user_namespace_eperm(facts, evidence))
        }
        (Step::CloneNamespaces, Errno::EPERM) => Some(clone_plain_eperm(facts, evidence)),
        (Step::CloneNamespaces, Errno::ENOSPC) => Some(clone_enospc(facts, user_namespace)),
        (Step::CloneNamespaces, Errno::EINVAL) => Some(
            "This kernel lacks namespace support: netjail needs a kernel built with \
             CONFIG_USER_NS, CONFIG_NET_NS and CONFIG_PID_NS"
                .to_string(),
        ),
        (Step::CloneNamespaces, Errno::EUSERS) => Some(
            "User namespaces are nested 32 levels deep, the kernel's limit: run netjail from \
             a less deeply nested container"
                .to_string(),
        ),
        (Step::WriteSetgroups | Step::WriteUidMap | Step::WriteGidMap, Errno::EPERM) => {
            Some(id_map_eperm(facts))
        }
        (Step::ResolveResolvConf, Errno::ENOENT) => Some(
            "/etc/resolv.conf, or the file its symbolic link points to, does not exist: \
             netjail mounts the jail's resolver settings over that file, so create it \
             (an empty file is enough)"
                .to_string(),
        ),
        (step, Errno::EPERM | Errno::EACCES) if is_mount_step(step) && mount_filtered => {
            Some(seccomp_rejects_mount(facts, evidence))
        }
        (step, Errno::EPERM | Errno::EACCES)
            if is_mount_step(step) && facts.apparmor_profile.is_some() =>
        {
            apparmor_profile_hint(facts)
        }
        (Step::MountProc, Errno::EPERM) if user_namespace => {
            Some(mount_proc_eperm(facts, evidence))
        }
        (Step::OpenTunDevice, errno) => open_tun_hint(errno, facts, evidence),
        (Step::CreateTunInterface, Errno::EPERM | Errno::EACCES) => {
            Some(tunsetiff_refused(errno, user_namespace, facts))
        }
        (Step::CreateTunInterface, Errno::ENOTTY | Errno::EBADFD) => Some(format!(
            "{TUN_PATH} did not accept TUNSETIFF, so it is not the TUN clone device: it must be \
             the character device 10:200 (`mknod {TUN_PATH} c 10 200`)"
        )),
        (Step::SetIpv6Sysctls, Errno::ENOENT) | (Step::AddAddress, Errno::EAFNOSUPPORT) => Some(
            "IPv6 is turned off in this kernel (ipv6.disable=1 on the kernel command line): \
             netjail gives the jail an IPv6 address, so boot without that option"
                .to_string(),
        ),
        (step, Errno::EPERM | Errno::EACCES) if step.is_in_jail() && user_namespace => {
            apparmor_userns_hint(facts)
        }
        _ => None,
    }
}

/// Returns whether `step` calls mount(2) or umount2(2) in the jail.
fn is_mount_step(step: Step) -> bool {
    matches!(
        step,
        Step::MakeMountsPrivate | Step::StageResolvConf | Step::BindResolvConf | Step::MountProc
    )
}

fn seccomp_rejects_mount(facts: &HostFacts, evidence: &Evidence) -> String {
    let outcome = match evidence.mount_filter {
        Some(FilterProbe::Rejects(errno)) => format!("still failed with {errno:?}"),
        _ => "killed the probing process with SIGSYS".to_string(),
    };
    format!(
        "A seccomp filter rejects mount(2) ({}): a mount with a null target, which the kernel \
         itself fails with EFAULT, {outcome}. Docker's default seccomp profile rejects mount \
         and umount2 unless the container has CAP_SYS_ADMIN, even where it lets clone(2) \
         through. To fix it, {SECCOMP_FIX}",
        facts.describe_seccomp(),
    )
}

fn clone_user_namespace_eperm(facts: &HostFacts, evidence: &Evidence) -> String {
    match evidence.user_namespace_filter {
        Some(FilterProbe::Rejects(_) | FilterProbe::Kills) => {
            return seccomp_rejects_user_namespace(facts, evidence);
        }
        _ if facts.unprivileged_userns_clone == Some(0) => {
            return format!(
                "Unprivileged user namespaces are turned off ({}): run `sysctl -w \
                 kernel.unprivileged_userns_clone=1` as root{}",
                facts::describe_sysctl(
                    "kernel.unprivileged_userns_clone",
                    Some(0),
                    UNPRIVILEGED_USERNS_CLONE
                ),
                no_user_namespace_alternative(facts, evidence),
            );
        }
        _ => {}
    }
    format!(
        "The kernel refused to create a user namespace, and neither a seccomp filter nor a \
         sysctl explains it ({}; {}; {}). A security module (SELinux, a BPF LSM) or a chroot \
         can refuse it too: check the kernel log{}",
        facts.describe_seccomp(),
        facts::describe_sysctl(
            "kernel.unprivileged_userns_clone",
            facts.unprivileged_userns_clone,
            UNPRIVILEGED_USERNS_CLONE
        ),
        facts::describe_sysctl(
            "user.max_user_namespaces",
            facts.max_user_namespaces,
            MAX_USER_NAMESPACES
        ),
        no_user_namespace_alternative(facts, evidence),
    )
}

fn seccomp_rejects_user_namespace(facts: &HostFacts, evidence: &Evidence) -> String {
    format!(
        "A seccomp filter rejects clone(2) with CLONE_NEWUSER ({}): {}. Docker's default \
         seccomp profile does this unless the container has CAP_SYS_ADMIN. To fix it, \
         {SECCOMP_FIX}{}",
        facts.describe_seccomp(),
        describe_probe(evidence.user_namespace_filter),
        no_user_namespace_alternative(facts, evidence),
    )
}

/// Describes the outcome of [`facts::probe_clone_filter`] as evidence.
fn describe_probe(filter: Option<FilterProbe>) -> String {
    let outcome = match filter {
        Some(FilterProbe::Rejects(errno)) => format!("still failed with {errno:?}"),
        Some(FilterProbe::Kills) => "killed the probing process with SIGSYS".to_string(),
        _ => "did not reach the kernel".to_string(),
    };
    format!(
        "the same call with CLONE_FS added, which the kernel itself rejects with EINVAL, \
         {outcome}"
    )
}

/// Suggests `--no-user-namespace` when this process could use it: it has
/// CAP_SYS_ADMIN and CAP_NET_ADMIN, and no filter rejects the other
/// namespace flags.
fn no_user_namespace_alternative(facts: &HostFacts, evidence: &Evidence) -> String {
    let filter_allows = matches!(
        evidence.plain_namespace_filter,
        None | Some(FilterProbe::Passes)
    );
    if !facts.has_cap_sys_admin() || !facts.has_cap_net_admin() || !filter_allows {
        return String::new();
    }
    ". This process has CAP_SYS_ADMIN and CAP_NET_ADMIN, so `netjail run --no-user-namespace` \
     works here too"
        .to_string()
}

fn clone_plain_eperm(facts: &HostFacts, evidence: &Evidence) -> String {
    if let Some(FilterProbe::Rejects(_) | FilterProbe::Kills) = evidence.plain_namespace_filter {
        return format!(
            "A seccomp filter rejects clone(2) with CLONE_NEWNET, CLONE_NEWNS and \
             CLONE_NEWPID ({}): {}. To fix it, {SECCOMP_FIX}",
            facts.describe_seccomp(),
            describe_probe(evidence.plain_namespace_filter),
        );
    }
    if !facts.has_cap_sys_admin() {
        return format!(
            "--no-user-namespace needs CAP_SYS_ADMIN, which this process lacks ({}): grant it \
             or leave out --no-user-namespace",
            facts.describe_caps()
        );
    }
    format!(
        "The kernel refused to create namespaces although this process has CAP_SYS_ADMIN \
         ({}; {}): a security module (SELinux, AppArmor, a BPF LSM) may forbid it, so check the \
         kernel log, or leave out --no-user-namespace",
        facts.describe_caps(),
        facts.describe_seccomp(),
    )
}

fn clone_enospc(facts: &HostFacts, user_namespace: bool) -> String {
    if user_namespace && facts.max_user_namespaces == Some(0) {
        let nested = if facts.nested_user_namespace {
            " in the user namespace netjail runs in (a nested one: its creator or the host's \
             root sets the limit there)"
        } else {
            ""
        };
        let alternative = if facts.has_cap_sys_admin() && facts.has_cap_net_admin() {
            ", or run netjail with --no-user-namespace, which this process's CAP_SYS_ADMIN and \
             CAP_NET_ADMIN allow"
        } else {
            ", or run netjail as root with CAP_SYS_ADMIN and --no-user-namespace"
        };
        return format!(
            "User namespaces are turned off: {}{nested}, so the kernel creates none. To fix it, \
             run `sysctl -w user.max_user_namespaces=15000` as root{alternative}",
            facts::describe_sysctl("user.max_user_namespaces", Some(0), MAX_USER_NAMESPACES),
        );
    }
    "A namespace limit is reached: check the sysctls user.max_user_namespaces, \
     user.max_net_namespaces, user.max_mnt_namespaces and user.max_pid_namespaces \
     (/proc/sys/user/), and how many namespaces exist already"
        .to_string()
}

fn id_map_eperm(facts: &HostFacts) -> String {
    let apparmor = if facts.apparmor_restricts_this_process() {
        format!(
            ". {} and may cause it",
            facts::describe_sysctl(
                "kernel.apparmor_restrict_unprivileged_userns",
                Some(1),
                APPARMOR_RESTRICT_USERNS
            )
        )
    } else {
        String::new()
    };
    format!(
        "The kernel rejected the ID mapping. netjail maps only its own effective uid ({}) and \
         gid, which the kernel allows without CAP_SETUID and CAP_SETGID, so a security module \
         or an outer container's policy forbids it{apparmor}. Check the kernel log, or run \
         netjail as root with --no-user-namespace",
        facts.euid
    )
}

fn apparmor_profile_hint(facts: &HostFacts) -> Option<String> {
    let profile = facts.apparmor_profile.as_deref()?;
    Some(format!(
        "This process runs under the AppArmor profile {profile:?} (/proc/self/attr/current), \
         which may deny mount(2); Docker's docker-default profile does. Run the container with \
         --security-opt apparmor=unconfined, or with a profile that allows mount"
    ))
}

fn mount_proc_eperm(facts: &HostFacts, evidence: &Evidence) -> String {
    if let Some(hint) = apparmor_userns_hint(facts) {
        return hint;
    }
    let covered = if evidence.proc_overmounts.is_empty() {
        "/proc/self/mountinfo shows no mount below /proc, so an outer mount namespace may hide \
         those parts"
            .to_string()
    } else {
        format!(
            "/proc/self/mountinfo shows mounts over {}",
            evidence.proc_overmounts.join(", ")
        )
    };
    format!(
        "The kernel lets a user namespace mount a new /proc only where the existing /proc is \
         fully visible, and parts of it are hidden ({covered}). Container runtimes mask such \
         paths: in Docker add --security-opt systempaths=unconfined, in Kubernetes set \
         securityContext.procMount: Unmasked, or use sysbox-runc"
    )
}

fn open_tun_hint(errno: Errno, facts: &HostFacts, evidence: &Evidence) -> Option<String> {
    let found = evidence
        .tun
        .as_ref()
        .map(TunDevice::describe)
        .unwrap_or_else(|| format!("{TUN_PATH} was not inspected"));
    let text = match errno {
        Errno::ENOENT => format!(
            "{found}. On a host, load the tun module (`modprobe tun`); in Docker, add \
             --device /dev/net/tun; in Kubernetes, expose the device to the pod"
        ),
        Errno::EACCES => format!(
            "Uid {} may not open {TUN_PATH} for reading and writing: {found}. Make it readable \
             and writable by everyone (`chmod 0666 {TUN_PATH}`, the mode most distributions \
             ship), or run netjail as a user the mode admits",
            facts.euid
        ),
        Errno::EPERM => format!(
            "{found}, but the device cgroup denies it: in Docker, add --device /dev/net/tun; \
             in Kubernetes, expose the device to the pod"
        ),
        Errno::ENODEV | Errno::ENXIO => format!(
            "{found}, but the tun driver is missing: load it with `modprobe tun` or use a \
             kernel built with CONFIG_TUN"
        ),
        _ => return None,
    };
    Some(text)
}

fn tunsetiff_refused(errno: Errno, user_namespace: bool, facts: &HostFacts) -> String {
    if !user_namespace && !facts.has_cap_net_admin() {
        return format!(
            "Creating a TUN interface needs CAP_NET_ADMIN, and without a user namespace the \
             jail has only this process's capabilities, which lack it ({}): grant \
             CAP_NET_ADMIN or leave out --no-user-namespace",
            facts.describe_caps()
        );
    }
    if let Some(hint) = apparmor_userns_hint(facts) {
        return hint;
    }
    let module = if errno == Errno::EACCES {
        "SELinux (a tun_socket denial)"
    } else {
        "AppArmor, SELinux or a BPF LSM"
    };
    format!(
        "The jail has CAP_NET_ADMIN in its own network namespace, so a security module, \
         likely {module}, rejected TUNSETIFF ({}; {}). Check the kernel log for the denial \
         and allow it for netjail",
        facts::describe_sysctl(
            "kernel.apparmor_restrict_unprivileged_userns",
            facts.apparmor_restricts_userns,
            APPARMOR_RESTRICT_USERNS
        ),
        match &facts.apparmor_profile {
            Some(profile) => format!("AppArmor profile {profile:?}"),
            None => "no AppArmor profile in /proc/self/attr/current".to_string(),
        },
    )
}

fn apparmor_userns_hint(facts: &HostFacts) -> Option<String> {
    if !facts.apparmor_restricts_this_process() {
        return None;
    }
    Some(format!(
        "AppArmor withholds capabilities from unprivileged user namespaces ({}): add an \
         AppArmor profile for netjail that allows `userns,`, or run `sysctl -w \
         kernel.apparmor_restrict_unprivileged_userns=0` as root",
        facts::describe_sysctl(
            "kernel.apparmor_restrict_unprivileged_userns",
            Some(1),
            APPARMOR_RESTRICT_USERNS
        )
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bits 12 (CAP_NET_ADMIN) and 21 (CAP_SYS_ADMIN) of the capability mask.
    const ADMIN_CAPS_MASK: u64 = (1 << 12) | (1 << 21);

    fn facts() -> HostFacts {
        HostFacts {
            max_user_namespaces: Some(15000),
            seccomp_mode: Some(0),
            euid: 1000,
            ..HostFacts::default()
        }
    }

    fn hint(step: Step, errno: Errno, user_namespace: bool, facts: &HostFacts) -> Option<String> {
        hint_for(step, errno, user_namespace, facts, &Evidence::default())
    }

    #[test]
    fn clone_eperm_under_seccomp_names_fixes() {
        let facts = HostFacts {
            seccomp_mode: Some(2),
            seccomp_filters: Some(1),
            ..facts()
        };
        let evidence = Evidence {
            user_namespace_filter: Some(FilterProbe::Rejects(Errno::EPERM)),
            ..Evidence::default()
        };
        let hint = hint_for(Step::CloneNamespaces, Errno::EPERM, true, &facts, &evidence).unwrap();
        assert!(
            hint.contains("seccomp filter rejects clone(2) with CLONE_NEWUSER"),
            "{hint}"
        );
        assert!(hint.contains("Seccomp: 2, Seccomp_filters: 1"), "{hint}");
        assert!(hint.contains("still failed with EPERM"), "{hint}");
        assert!(hint.contains("sysbox-runc"), "{hint}");
        assert!(hint.contains("grant CAP_SYS_ADMIN"), "{hint}");
        assert!(!hint.contains("--no-user-namespace"), "{hint}");
    }

    #[test]
    fn seccomp_hint_offers_no_user_namespace() {
        let facts = HostFacts {
            seccomp_mode: Some(2),
            effective_caps: Some(ADMIN_CAPS_MASK),
            ..facts()
        };
        let evidence = Evidence {
            user_namespace_filter: Some(FilterProbe::Rejects(Errno::EPERM)),
            plain_namespace_filter: Some(FilterProbe::Passes),
            ..Evidence::default()
        };
        let hint = hint_for(Step::CloneNamespaces, Errno::EPERM, true, &facts, &evidence).unwrap();
        assert!(
            hint.contains("`netjail run --no-user-namespace` works here"),
            "{hint}"
        );
    }

    #[test]
    fn clone_eperm_names_disabled_sysctl() {
        let facts = HostFacts {
            unprivileged_userns_clone: Some(0),
            ..facts()
        };
        let hint = hint(Step::CloneNamespaces, Errno::EPERM, true, &facts).unwrap();
        assert!(
            hint.contains("kernel.unprivileged_userns_clone is 0"),
            "{hint}"
        );
    }

    #[test]
    fn clone_eperm_without_userns_needs_cap_sys_admin() {
        let hint = hint(Step::CloneNamespaces, Errno::EPERM, false, &facts()).unwrap();
        assert!(hint.contains("CAP_SYS_ADMIN"), "{hint}");
        assert!(hint.contains("CapEff"), "{hint}");
    }

    #[test]
    fn clone_enospc_names_max_user_namespaces() {
        let facts = HostFacts {
            max_user_namespaces: Some(0),
            ..facts()
        };
        let hint = hint(Step::CloneNamespaces, Errno::ENOSPC, true, &facts).unwrap();
        assert!(hint.contains("user.max_user_namespaces is 0"), "{hint}");
        assert!(hint.contains(MAX_USER_NAMESPACES), "{hint}");
        assert!(
            hint.contains("sysctl -w user.max_user_namespaces="),
            "{hint}"
        );
    }

    #[test]
    fn clone_enospc_in_nested_namespace_says_so() {
        let facts = HostFacts {
            max_user_namespaces: Some(0),
            nested_user_namespace: true,
            ..facts()
        };
        let hint = hint(Step::CloneNamespaces, Errno::ENOSPC, true, &facts).unwrap();
        assert!(hint.contains("nested"), "{hint}");
    }

    #[test]
    fn missing_tun_names_docker_device() {
        let evidence = Evidence {
            tun: Some(TunDevice::Missing {
                dev_net_exists: false,
            }),
            ..Evidence::default()
        };
        let hint = hint_for(
            Step::OpenTunDevice,
            Errno::ENOENT,
            true,
            &facts(),
            &evidence,
        )
        .unwrap();
        assert!(hint.contains("--device /dev/net/tun"), "{hint}");
        assert!(hint.contains("neither does /dev/net"), "{hint}");
    }

    #[test]
    fn tun_eacces_names_mode_and_chmod() {
        let evidence = Evidence {
            tun: Some(TunDevice::Present {
                mode: 0o600,
                uid: 0,
                gid: 0,
            }),
            ..Evidence::default()
        };
        let hint = hint_for(
            Step::OpenTunDevice,
            Errno::EACCES,
            true,
            &facts(),
            &evidence,
        )
        .unwrap();
        assert!(hint.contains("chmod 0666"), "{hint}");
        assert!(hint.contains("mode 0600"), "{hint}");
        assert!(hint.contains("Uid 1000"), "{hint}");
    }

    #[test]
    fn tunsetiff_eperm_under_apparmor() {
        let facts = HostFacts {
            apparmor_restricts_userns: Some(1),
            ..facts()
        };
        let hint = hint(Step::CreateTunInterface, Errno::EPERM, true, &facts).unwrap();
        assert!(
            hint.contains("apparmor_restrict_unprivileged_userns is 1"),
            "{hint}"
        );
    }

    #[test]
    fn tunsetiff_eperm_without_userns_needs_cap_net_admin() {
        let hint = hint(Step::CreateTunInterface, Errno::EPERM, false, &facts()).unwrap();
        assert!(hint.contains("CAP_NET_ADMIN"), "{hint}");
    }

    #[test]
    fn tunsetiff_eperm_otherwise_names_security_module() {
        let hint = hint(Step::CreateTunInterface, Errno::EPERM, true, &facts()).unwrap();
        assert!(hint.contains("security module"), "{hint}");
    }

    #[test]
    fn mount_proc_eperm_names_covered_paths() {
        let evidence = Evidence {
            proc_overmounts: vec!["/proc/kcore".to_string(), "/proc/keys".to_string()],
            ..Evidence::default()
        };
        let hint = hint_for(Step::MountProc, Errno::EPERM, true, &facts(), &evidence).unwrap();
        assert!(hint.contains("/proc/kcore, /proc/keys"), "{hint}");
        assert!(hint.contains("systempaths=unconfined"), "{hint}");
    }

    #[test]
    fn mount_eperm_under_apparmor_profile_names_it() {
        let facts = HostFacts {
            apparmor_profile: Some("docker-default (enforce)".to_string()),
            ..facts()
        };
        let hint = hint(Step::MakeMountsPrivate, Errno::EACCES, true, &facts).unwrap();
        assert!(hint.contains("docker-default"), "{hint}");
        assert!(hint.contains("apparmor=unconfined"), "{hint}");
    }

    #[test]
    fn mount_eperm_under_seccomp_names_mount() {
        let facts = HostFacts {
            seccomp_mode: Some(2),
            ..facts()
        };
        let evidence = Evidence {
            mount_filter: Some(FilterProbe::Rejects(Errno::EPERM)),
            ..Evidence::default()
        };
        let hint = hint_for(
            Step::MakeMountsPrivate,
            Errno::EPERM,
            true,
            &facts,
            &evidence,
        )
        .unwrap();
        assert!(hint.contains("seccomp filter rejects mount(2)"), "{hint}");
        assert!(hint.contains("still failed with EPERM"), "{hint}");
        assert!(hint.contains("umount2"), "{hint}");
    }

    #[test]
    fn missing_resolv_conf_says_create_it() {
        let hint = hint(Step::ResolveResolvConf, Errno::ENOENT, true, &facts()).unwrap();
        assert!(hint.contains("create it"), "{hint}");
    }

    #[test]
    fn id_map_eperm_explains_rule() {
        let hint = hint(Step::WriteUidMap, Errno::EPERM, true, &facts()).unwrap();
        assert!(hint.contains("its own effective uid (1000)"), "{hint}");
    }
}
