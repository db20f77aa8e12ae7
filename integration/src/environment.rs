//! Restricted environments that netjail meets in containers and on locked-down
//! hosts, simulated on this machine by wrapping the netjail command line.
//!
//! Each simulation changes only the wrapped process tree: capabilities are
//! dropped for it, a seccomp filter is installed in it, or a private mount or
//! user namespace changes its view of the system. Nothing on the host changes, so no
//! test needs to restore anything.

use std::path::PathBuf;

use crate::jail::JailCommand;

/// Name of the helper binary in this crate that installs a seccomp filter
/// rejecting user namespaces; see `src/bin/seccomp-deny-userns.rs`.
const SECCOMP_HELPER: &str = "seccomp-deny-userns";

/// A restricted environment, applied as wrappers around netjail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Environment {
    /// A container with CAP_NET_ADMIN but not CAP_SYS_ADMIN. `setpriv` drops
    /// CAP_SYS_ADMIN from the bounding and inheritable sets, so netjail, when
    /// root executes it, does not get it in its permitted and effective sets.
    NoCapSysAdmin,
    /// Docker's default seccomp profile for a container without
    /// CAP_SYS_ADMIN: clone(2) and unshare(2) with CLONE_NEWUSER fail with
    /// EPERM and clone3(2) with ENOSYS. CAP_SYS_ADMIN is dropped as well.
    DockerSeccomp,
    /// The same seccomp filter, with every capability left in place.
    SeccompOnly,
    /// A container started without `--device /dev/net/tun`: a tmpfs covers
    /// /dev/net in a private mount namespace.
    NoTunDevice,
    /// A /dev/net/tun of mode 0600 owned by root: a tmpfs covers /dev/net in
    /// a private mount namespace and contains a new device node.
    TunDeviceMode0600,
    /// A host with `user.max_user_namespaces = 0`. The limit is set in a user
    /// namespace of its own (`unshare -U -r`), which is where netjail then
    /// runs, as that namespace's root; the host's sysctl never changes.
    NoUserNamespaces,
    /// A container runtime's masked /proc: /proc/sys is bind-mounted
    /// read-only over itself in a private mount namespace, as Docker does
    /// with its read-only /proc paths.
    MaskedProc,
}

impl Environment {
    /// Wraps `command` so that netjail runs in this environment.
    pub fn apply(self, command: JailCommand) -> JailCommand {
        match self {
            Environment::NoCapSysAdmin => command.wrap(&drop_cap_sys_admin()),
            Environment::DockerSeccomp => command
                .wrap(&[seccomp_helper()])
                .wrap(&drop_cap_sys_admin()),
            Environment::SeccompOnly => command.wrap(&[seccomp_helper()]),
            Environment::NoTunDevice => {
                command.wrap(&private_mounts("mount -t tmpfs tmpfs /dev/net"))
            }
            Environment::TunDeviceMode0600 => command.wrap(&private_mounts(
                "mount -t tmpfs tmpfs /dev/net && mknod -m 0600 /dev/net/tun c 10 200",
            )),
            // As the user netjail runs as, so a rootless run stays rootless
            // outside the new user namespace.
            Environment::NoUserNamespaces => command.wrap_as_user(&run_after(
                &["unshare", "--user", "--map-root-user", "--"],
                "echo 0 > /proc/sys/user/max_user_namespaces",
            )),
            Environment::MaskedProc => {
                command.wrap(&private_mounts("mount -o bind,ro /proc/sys /proc/sys"))
            }
        }
    }
}

/// Returns the arguments of `setpriv` that drop CAP_SYS_ADMIN from the
/// bounding and inheritable sets and run the rest of the command line.
pub fn drop_cap_sys_admin() -> Vec<PathBuf> {
    [
        "setpriv",
        "--bounding-set",
        "-sys_admin",
        "--inh-caps",
        "-sys_admin",
        "--",
    ]
    .iter()
    .map(PathBuf::from)
    .collect()
}

/// Returns the seccomp helper built next to the running test binary.
pub fn seccomp_helper() -> PathBuf {
    let test_binary = std::env::current_exe().expect("finding the test binary failed");
    // Integration test binaries live in target/PROFILE/deps, and the
    // package's binaries in target/PROFILE.
    let profile_dir = test_binary
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lies in target/PROFILE/deps");
    let helper = profile_dir.join(SECCOMP_HELPER);
    assert!(
        helper.is_file(),
        "{} not found; `cargo test -p integration` builds it",
        helper.display()
    );
    helper
}

/// Returns a wrapper that runs `script` as root in a private mount namespace
/// (`unshare --mount`, whose propagation is private), then the rest of the
/// command line.
fn private_mounts(script: &str) -> Vec<PathBuf> {
    run_after(&["unshare", "--mount", "--"], script)
}

/// Returns `PREFIX... sh -c 'SCRIPT && exec "$@"' sh`, which runs `script`
/// and then executes the arguments that follow.
fn run_after(prefix: &[&str], script: &str) -> Vec<PathBuf> {
    let body = format!("{script} && exec \"$@\"");
    prefix
        .iter()
        .copied()
        .chain(["sh", "-c", &body, "sh"])
        .map(PathBuf::from)
        .collect()
}

/// Returns the CapEff mask that `wrapper` leaves a process started by root,
/// read by running `grep CapEff /proc/self/status` under it.
pub fn effective_caps_under(wrapper: &[PathBuf]) -> u64 {
    let mut argv: Vec<PathBuf> = wrapper.to_vec();
    argv.extend(["grep", "CapEff:", "/proc/self/status"].map(PathBuf::from));
    let output = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|err| panic!("running {argv:?} failed: {err}"));
    let text = String::from_utf8_lossy(&output.stdout);
    let mask = text.trim().trim_start_matches("CapEff:").trim();
    u64::from_str_radix(mask, 16)
        .unwrap_or_else(|_| panic!("unexpected output of {argv:?}: {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_after_passes_arguments_to_exec() {
        let wrapper = run_after(&["unshare", "--mount", "--"], "true");
        let words: Vec<&str> = wrapper.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(
            words,
            [
                "unshare",
                "--mount",
                "--",
                "sh",
                "-c",
                "true && exec \"$@\"",
                "sh"
            ]
        );
    }
}
