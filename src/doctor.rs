//! `netjail doctor`: checks what `netjail run` needs on this machine and
//! explains what to change, without running any command in a jail.
//!
//! Each check reads a kernel setting, a file or this process's state, or
//! asks the kernel directly (a clone(2) probe for seccomp filters, an open of
//! /dev/net/tun). The last check creates a test jail with the same code as
//! `netjail run`, namespaces, /proc and TUN device included, and removes it
//! before any command starts. The report says which mode `netjail run` would
//! use, and whether it can start.

use std::fs;
use std::path::Path;

use nix::errno::Errno;
use serde::Serialize;

use crate::cli::DoctorArgs;
use crate::jail::facts::{
    self, APPARMOR_RESTRICT_USERNS, FilterProbe, HostFacts, MAX_USER_NAMESPACES, SECCOMP_FIX,
    TUN_PATH, TunDevice, UNPRIVILEGED_USERNS_CLONE,
};
use crate::jail::{Jail, JailConfig, JailError, JailNetwork, Step};

/// Exit status when `netjail run` cannot start in the checked mode.
pub const EXIT_RUN_CANNOT_START: i32 = 1;

/// Whether a requirement is met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Missing,
}

/// One requirement of `netjail run` and what was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable identifier, such as `seccomp` or `tun_device`.
    pub name: &'static str,
    pub status: Status,
    /// Evidence: the values, files and errnos netjail found.
    pub detail: String,
    /// The change that meets a missing requirement.
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn missing(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Missing,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// The whole report, printed as text or as one JSON object.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Whether `netjail run` can start in `mode`.
    pub ok: bool,
    /// The mode `netjail run` uses with the checked options, named as in the
    /// audit log's `session_start` event.
    pub mode: &'static str,
    /// Whether that mode creates a user namespace.
    pub user_namespace: bool,
    /// Effective uid of the caller.
    pub euid: u32,
    pub checks: Vec<Check>,
    /// Another mode that works here when the checked one does not.
    pub alternative: Option<String>,
}

/// Runs the checks, prints the report and returns the exit status: 0 when
/// `netjail run` can start, [`EXIT_RUN_CANNOT_START`] when it cannot.
pub fn run(args: &DoctorArgs) -> anyhow::Result<i32> {
    let report = diagnose(!args.no_user_namespace);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", format_text(&report));
    }
    Ok(if report.ok { 0 } else { EXIT_RUN_CANNOT_START })
}

/// Checks the machine for the mode with or without a user namespace.
///
/// Must run while the process is single-threaded: the probes fork, and the
/// test jail is cloned like the real one.
pub fn diagnose(user_namespace: bool) -> Report {
    let facts = HostFacts::read();
    let trial = trial_jail(user_namespace);
    let mut checks = vec![check_namespaces()];
    if user_namespace {
        checks.push(check_max_user_namespaces(&facts));
        checks.push(check_unprivileged_userns_clone(&facts));
        checks.push(check_apparmor(&facts, &trial));
    } else {
        checks.push(check_cap_sys_admin(&facts));
        checks.push(check_cap_net_admin(&facts));
    }
    checks.push(check_seccomp(&facts, user_namespace));
    checks.push(check_tun_device());
    checks.push(check_tun_access(&facts));
    checks.push(check_resolv_conf());
    if user_namespace {
        checks.push(check_proc_visible(&trial));
    }
    checks.push(check_trial(&trial, user_namespace));

    let ok = checks.iter().all(|check| check.status == Status::Ok);
    let alternative = if ok {
        None
    } else {
        find_alternative(user_namespace, &facts)
    };
    Report {
        ok,
        mode: mode_name(facts.euid, user_namespace),
        user_namespace,
        euid: facts.euid,
        checks,
        alternative,
    }
}

/// Names the mode as the audit log's `session_start` event does.
fn mode_name(euid: u32, user_namespace: bool) -> &'static str {
    match (euid == 0, user_namespace) {
        (false, _) => "rootless",
        (true, true) => "root",
        (true, false) => "root-no-user-namespace",
    }
}

fn describe_mode(report: &Report) -> String {
    match report.mode {
        "rootless" => format!(
            "uid {}, in a user namespace that maps it to itself",
            report.euid
        ),
        "root" => "uid 0, in a user namespace that maps it to itself".to_string(),
        _ => "uid 0, without a user namespace (--no-user-namespace)".to_string(),
    }
}

/// Creates a jail for a command that never starts, then removes it.
fn trial_jail(user_namespace: bool) -> Result<(), JailError> {
    let config = JailConfig {
        command: vec!["true".into()],
        user_namespace,
        resolv_conf: "# netjail doctor: test jail\n".to_string(),
        network: JailNetwork::default(),
    };
    // Dropping the jail before `start` kills its init, which has not run
    // the command.
    Jail::spawn(&config).map(drop)
}

/// When the checked mode fails, tries the other one where it can work.
fn find_alternative(user_namespace: bool, facts: &HostFacts) -> Option<String> {
    if user_namespace && !facts.has_cap_sys_admin() {
        return None;
    }
    trial_jail(!user_namespace).ok()?;
    let text = if user_namespace {
        "`netjail run --no-user-namespace` works here: a test jail without a user namespace \
         was created"
    } else {
        "`netjail run` without --no-user-namespace works here: a test jail with a user \
         namespace was created"
    };
    Some(text.to_string())
}

fn check_namespaces() -> Check {
    let missing: Vec<&str> = ["user", "net", "mnt", "pid"]
        .into_iter()
        .filter(|name| !Path::new("/proc/self/ns").join(name).exists())
        .collect();
    if missing.is_empty() {
        return Check::ok(
            "namespaces",
            "the kernel has user, network, mount and PID namespaces (/proc/self/ns)",
        );
    }
    Check::missing(
        "namespaces",
        format!("/proc/self/ns lacks {}", missing.join(", ")),
        "use a kernel built with CONFIG_USER_NS, CONFIG_NET_NS and CONFIG_PID_NS",
    )
}

fn check_max_user_namespaces(facts: &HostFacts) -> Check {
    let detail = facts::describe_sysctl(
        "user.max_user_namespaces",
        facts.max_user_namespaces,
        MAX_USER_NAMESPACES,
    );
    if facts.max_user_namespaces != Some(0) {
        return Check::ok("max_user_namespaces", detail);
    }
    let mut fix = "run `sysctl -w user.max_user_namespaces=15000` as root".to_string();
    if facts.nested_user_namespace {
        fix.push_str(" in the user namespace netjail runs in (this one is nested)");
    }
    fix.push_str(", or run netjail as root with CAP_SYS_ADMIN and --no-user-namespace");
    Check::missing("max_user_namespaces", detail, fix)
}

fn check_unprivileged_userns_clone(facts: &HostFacts) -> Check {
    let detail = facts::describe_sysctl(
        "kernel.unprivileged_userns_clone",
        facts.unprivileged_userns_clone,
        UNPRIVILEGED_USERNS_CLONE,
    );
    // Debian's patch lets a holder of CAP_SYS_ADMIN create user namespaces anyway.
    if facts.unprivileged_userns_clone != Some(0) || facts.has_cap_sys_admin() {
        return Check::ok("unprivileged_userns_clone", detail);
    }
    Check::missing(
        "unprivileged_userns_clone",
        detail,
        "run `sysctl -w kernel.unprivileged_userns_clone=1` as root",
    )
}

fn check_apparmor(facts: &HostFacts, trial: &Result<(), JailError>) -> Check {
    let detail = facts::describe_sysctl(
        "kernel.apparmor_restrict_unprivileged_userns",
        facts.apparmor_restricts_userns,
        APPARMOR_RESTRICT_USERNS,
    );
    if !facts.apparmor_restricts_this_process() {
        return Check::ok("apparmor_userns", detail);
    }
    if trial.is_ok() {
        return Check::ok(
            "apparmor_userns",
            format!("{detail}, but the AppArmor profile of this process lets the jail set up"),
        );
    }
    Check::missing(
        "apparmor_userns",
        format!("{detail}, so unprivileged user namespaces get no capabilities"),
        "add an AppArmor profile for netjail that allows `userns,`, or run `sysctl -w \
         kernel.apparmor_restrict_unprivileged_userns=0` as root",
    )
}

fn check_cap_sys_admin(facts: &HostFacts) -> Check {
    if facts.has_cap_sys_admin() {
        return Check::ok(
            "cap_sys_admin",
            format!("CAP_SYS_ADMIN is effective ({})", facts.describe_caps()),
        );
    }
    Check::missing(
        "cap_sys_admin",
        format!(
            "--no-user-namespace needs CAP_SYS_ADMIN, which this process lacks ({})",
            facts.describe_caps()
        ),
        "leave out --no-user-namespace, so netjail creates a user namespace, which needs no \
         capability, or grant CAP_SYS_ADMIN",
    )
}

fn check_cap_net_admin(facts: &HostFacts) -> Check {
    if facts.has_cap_net_admin() {
        return Check::ok(
            "cap_net_admin",
            format!("CAP_NET_ADMIN is effective ({})", facts.describe_caps()),
        );
    }
    Check::missing(
        "cap_net_admin",
        format!(
            "without a user namespace the jail creates its TUN device with this process's \
             capabilities, which lack CAP_NET_ADMIN ({})",
            facts.describe_caps()
        ),
        "leave out --no-user-namespace, or grant CAP_NET_ADMIN",
    )
}

fn check_seccomp(facts: &HostFacts, user_namespace: bool) -> Check {
    let flags = if user_namespace {
        "CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWNS and CLONE_NEWPID"
    } else {
        "CLONE_NEWNET, CLONE_NEWNS and CLONE_NEWPID"
    };
    let seccomp = facts.describe_seccomp();
    let clone = facts::probe_clone_filter(user_namespace);
    let mount = facts::probe_mount_filter();
    let mut rejected = Vec::new();
    if let Some(outcome) = describe_rejection(clone) {
        rejected.push(format!(
            "clone(2) with {flags}: the call with CLONE_FS added, which the kernel itself fails \
             with EINVAL, {outcome}"
        ));
    }
    if let Some(outcome) = describe_rejection(mount) {
        rejected.push(format!(
            "mount(2): a mount with a null target, which the kernel itself fails with EFAULT, \
             {outcome}"
        ));
    }
    if !rejected.is_empty() {
        return Check::missing(
            "seccomp",
            format!(
                "a seccomp filter rejects {} ({seccomp}). Docker's default profile does this \
                 unless the container has CAP_SYS_ADMIN",
                rejected.join("; and ")
            ),
            SECCOMP_FIX,
        );
    }
    let probes = if clone == FilterProbe::Passes && mount == FilterProbe::Passes {
        "reach the kernel"
    } else {
        "could not all be probed; the test jail decides"
    };
    Check::ok(
        "seccomp",
        format!("clone(2) with {flags} and mount(2) {probes} ({seccomp})"),
    )
}

/// Describes a probe that a filter rejected, or returns `None`.
fn describe_rejection(probe: FilterProbe) -> Option<String> {
    match probe {
        FilterProbe::Rejects(errno) => Some(format!("failed with {errno:?}")),
        FilterProbe::Kills => Some("killed the probing process".to_string()),
        FilterProbe::Passes | FilterProbe::Unknown => None,
    }
}

fn check_tun_device() -> Check {
    let device = TunDevice::inspect();
    let detail = device.describe();
    match device {
        TunDevice::Present { .. } => Check::ok("tun_device", detail),
        TunDevice::Missing { .. } => Check::missing(
            "tun_device",
            detail,
            "on a host, load the tun module (`modprobe tun`); in Docker, add --device \
             /dev/net/tun; in Kubernetes, expose the device to the pod",
        ),
        TunDevice::WrongDevice { .. } => Check::missing(
            "tun_device",
            detail,
            format!("replace it with the TUN device: `mknod {TUN_PATH} c 10 200`"),
        ),
    }
}

fn check_tun_access(facts: &HostFacts) -> Check {
    match facts::try_open_tun() {
        Ok(()) => Check::ok(
            "tun_access",
            format!(
                "uid {} opened {TUN_PATH} for reading and writing",
                facts.euid
            ),
        ),
        Err(Errno::ENOENT) => Check::missing(
            "tun_access",
            format!("{TUN_PATH} does not exist"),
            "see tun_device",
        ),
        Err(Errno::EPERM) => Check::missing(
            "tun_access",
            format!("opening {TUN_PATH} failed with EPERM: the device cgroup denies it"),
            "in Docker, add --device /dev/net/tun; in Kubernetes, expose the device to the pod",
        ),
        Err(errno) => Check::missing(
            "tun_access",
            format!(
                "uid {} may not open {TUN_PATH} for reading and writing: {errno}",
                facts.euid
            ),
            format!(
                "make it readable and writable by everyone (`chmod 0666 {TUN_PATH}`, the mode \
                 most distributions ship)"
            ),
        ),
    }
}

fn check_resolv_conf() -> Check {
    match fs::canonicalize("/etc/resolv.conf") {
        Ok(target) => Check::ok(
            "resolv_conf",
            format!(
                "/etc/resolv.conf resolves to {}, which the jail covers with its own file",
                target.display()
            ),
        ),
        Err(err) => Check::missing(
            "resolv_conf",
            format!("/etc/resolv.conf does not resolve to a file: {err}"),
            "create /etc/resolv.conf (an empty file is enough): netjail mounts the jail's \
             resolver settings over it",
        ),
    }
}

fn check_proc_visible(trial: &Result<(), JailError>) -> Check {
    let covered = facts::proc_overmounts();
    if covered.is_empty() {
        return Check::ok(
            "proc_visible",
            "no mount covers a path below /proc (/proc/self/mountinfo)",
        );
    }
    let detail = format!("mounts cover {} (/proc/self/mountinfo)", covered.join(", "));
    if trial_got_past_mount_proc(trial) {
        return Check::ok(
            "proc_visible",
            format!("{detail}, but the test jail mounted its /proc"),
        );
    }
    Check::missing(
        "proc_visible",
        format!(
            "{detail}, and a user namespace may mount a new /proc only where the existing one \
             is fully visible"
        ),
        "in Docker, add --security-opt systempaths=unconfined; in Kubernetes, set \
         securityContext.procMount: Unmasked; or use sysbox-runc",
    )
}

/// Returns whether the test jail succeeded or failed at a step after
/// mounting /proc.
fn trial_got_past_mount_proc(trial: &Result<(), JailError>) -> bool {
    let Err(error) = trial else {
        return true;
    };
    matches!(
        error.step(),
        Some(
            Step::OpenNetlink
                | Step::LoopbackUp
                | Step::OpenTunDevice
                | Step::CreateTunInterface
                | Step::SetIpv6Sysctls
                | Step::ConfigureTunInterface
                | Step::AddAddress
                | Step::AddRoute
                | Step::SendTun
        )
    )
}

fn check_trial(trial: &Result<(), JailError>, user_namespace: bool) -> Check {
    let namespaces = if user_namespace {
        "user, network, mount and PID namespaces"
    } else {
        "network, mount and PID namespaces"
    };
    match trial {
        Ok(()) => Check::ok(
            "test_jail",
            format!(
                "created {namespaces}, mounted /proc and created the TUN device in a test \
                 jail, then removed it without running a command"
            ),
        ),
        Err(error) => Check::missing(
            "test_jail",
            format!("creating a test jail with {namespaces} failed: {error}"),
            "follow the advice at the end of the error",
        ),
    }
}

/// Formats the report for people: one line per check, then the mode and the
/// verdict.
pub fn format_text(report: &Report) -> String {
    let mut text = String::new();
    for check in &report.checks {
        let status = match check.status {
            Status::Ok => "ok",
            Status::Missing => "missing",
        };
        text.push_str(&format!("{status:<8} {}: {}", check.name, check.detail));
        if let Some(fix) = &check.fix {
            text.push_str(&format!(". Fix: {fix}"));
        }
        text.push('\n');
    }
    text.push_str(&format!(
        "mode: {} ({})\n",
        report.mode,
        describe_mode(report)
    ));
    if report.ok {
        text.push_str("result: netjail run can start here\n");
    } else {
        text.push_str("result: netjail run cannot start here; fix the checks marked missing\n");
    }
    if let Some(alternative) = &report.alternative {
        text.push_str(&format!("alternative: {alternative}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(checks: Vec<Check>) -> Report {
        let ok = checks.iter().all(|check| check.status == Status::Ok);
        Report {
            ok,
            mode: "rootless",
            user_namespace: true,
            euid: 1000,
            checks,
            alternative: None,
        }
    }

    #[test]
    fn text_has_one_line_per_check_with_fix() {
        let text = format_text(&report(vec![
            Check::ok("namespaces", "all there"),
            Check::missing("tun_device", "/dev/net/tun does not exist", "add it"),
        ]));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "ok       namespaces: all there");
        assert_eq!(
            lines[1],
            "missing  tun_device: /dev/net/tun does not exist. Fix: add it"
        );
        assert!(lines[2].starts_with("mode: rootless"), "{text}");
        assert_eq!(
            lines[3],
            "result: netjail run cannot start here; fix the checks marked missing"
        );
    }

    #[test]
    fn json_names_status_in_snake_case() {
        let json = serde_json::to_value(report(vec![Check::missing("seccomp", "x", "y")])).unwrap();
        assert_eq!(json["ok"], false);
        assert_eq!(json["mode"], "rootless");
        assert_eq!(json["checks"][0]["status"], "missing");
        assert_eq!(json["checks"][0]["fix"], "y");
    }

    #[test]
    fn mode_names_match_audit_log() {
        assert_eq!(mode_name(1000, true), "rootless");
        assert_eq!(mode_name(0, true), "root");
        assert_eq!(mode_name(0, false), "root-no-user-namespace");
    }
}
