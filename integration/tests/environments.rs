//! netjail in each environment users run it in: rootless, root with and
//! without a user namespace, and a container without CAP_SYS_ADMIN. In the
//! restricted environments of `integration::environment`, netjail must exit
//! with 125 and one message that names the cause, the evidence and the fix,
//! and must never run the command.

use std::path::Path;

use integration::audit::{SESSION_MODE_NO_USER_NAMESPACE, session_mode};
use integration::clients;
use integration::environment::{self, Environment};
use integration::fixtures::http::page_body;
use integration::fixtures::{Fixtures, WEB_NAME};
use integration::jail::{EXIT_NETJAIL_FAILED, JailCommand, JailOutput, Mode};
use integration::workdir::Workdir;

/// Bit of CAP_SYS_ADMIN in a capability mask.
const CAP_SYS_ADMIN_BIT: u64 = 1 << 21;

/// Skips a test that needs root: every simulated environment is set up by
/// root before it switches to the test user.
macro_rules! require_root {
    () => {
        if !Mode::Root.is_available() {
            eprintln!("skipped: simulating this environment needs the tests to run as root");
            return;
        }
    };
}

/// Fetches a page of the fixture server with curl through the jail, and
/// checks the output and the audit log's `session_start` mode.
fn assert_curl_fetches(command: JailCommand, fixtures: &Fixtures, expected_mode: &str) {
    let url = fixtures.http_url(WEB_NAME, "/pages/environment");
    let output = command.allow_loopback_name(WEB_NAME).run(&[
        "curl",
        "-sS",
        "--fail",
        "--max-time",
        "30",
        &url,
    ]);

    assert_eq!(output.code(), Some(0), "{}", output.describe());
    assert_eq!(
        output.stdout,
        page_body("environment"),
        "{}",
        output.describe()
    );
    let audit = output.audit();
    let starts = audit.session_starts();
    assert_eq!(starts.len(), 1, "{:?}", audit.event_names());
    assert_eq!(starts[0].mode, expected_mode, "{}", output.describe());
    assert!(
        !audit.flow_opens(WEB_NAME).is_empty(),
        "no flow_open for {WEB_NAME}: {:?}",
        audit.event_names()
    );
}

#[test]
fn rootless_fetches_with_curl() {
    require_root!();
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(Mode::Rootless);
    let command = fixtures.jail(Mode::Rootless, &workdir);
    assert_curl_fetches(command, &fixtures, session_mode(Mode::Rootless));
}

#[test]
fn root_with_user_namespace_fetches_with_curl() {
    require_root!();
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(Mode::Root);
    let command = fixtures.jail(Mode::Root, &workdir);
    assert_curl_fetches(command, &fixtures, session_mode(Mode::Root));
}

#[test]
fn root_without_user_namespace_fetches_with_curl() {
    require_root!();
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(Mode::Root);
    let command = fixtures
        .jail(Mode::Root, &workdir)
        .option("--no-user-namespace");
    assert_curl_fetches(command, &fixtures, SESSION_MODE_NO_USER_NAMESPACE);
}

/// A container with CAP_NET_ADMIN but not CAP_SYS_ADMIN cannot create a
/// network namespace directly, so netjail creates a user namespace first.
#[test]
fn container_without_cap_sys_admin_fetches_with_curl() {
    require_root!();
    let caps = environment::effective_caps_under(&environment::drop_cap_sys_admin());
    assert_eq!(
        caps & CAP_SYS_ADMIN_BIT,
        0,
        "the wrapper left CAP_SYS_ADMIN: {caps:x}"
    );
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(Mode::Root);
    let command = Environment::NoCapSysAdmin.apply(fixtures.jail(Mode::Root, &workdir));
    assert_curl_fetches(command, &fixtures, session_mode(Mode::Root));
}

/// The fix that the seccomp message offers a holder of CAP_SYS_ADMIN works:
/// the filter rejects only CLONE_NEWUSER.
#[test]
fn seccomp_filter_allows_no_user_namespace_for_root() {
    require_root!();
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(Mode::Root);
    let command = Environment::SeccompOnly
        .apply(fixtures.jail(Mode::Root, &workdir))
        .option("--no-user-namespace");
    assert_curl_fetches(command, &fixtures, SESSION_MODE_NO_USER_NAMESPACE);
}

/// Runs a command that creates a marker file in `environment`, and checks
/// that netjail failed with 125 and one message containing every text in
/// `expected`, and that the command never ran.
fn assert_fails_before_command(
    mode: Mode,
    environment: Environment,
    options: &[&str],
    expected: &[&str],
) {
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);
    let marker = workdir.join("command-ran");
    let mut command = environment.apply(fixtures.jail(mode, &workdir));
    for option in options {
        command = command.option(*option);
    }

    let output = command.run(&clients::sh(&format!("touch {}", marker.display())));

    assert_eq!(
        output.code(),
        Some(EXIT_NETJAIL_FAILED),
        "{mode:?} in {environment:?}\n{}",
        output.describe()
    );
    assert!(
        !Path::new(&marker).exists(),
        "the command ran in {environment:?}\n{}",
        output.describe()
    );
    let message = single_message(&output);
    for text in expected {
        assert!(
            message.contains(text),
            "{mode:?} in {environment:?}: the message lacks {text:?}\n{message}"
        );
    }
}

/// Returns netjail's error message and checks that it is one line. Unless
/// NETJAIL_LOG turns on diagnostic messages, it must be the only line on
/// standard error.
fn single_message(output: &JailOutput) -> &str {
    let lines: Vec<&str> = output.stderr.lines().collect();
    let messages: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|line| line.starts_with("netjail: "))
        .collect();
    assert_eq!(messages.len(), 1, "{}", output.describe());
    if std::env::var_os("NETJAIL_LOG").is_none() {
        assert_eq!(lines.len(), 1, "{}", output.describe());
    }
    messages[0]
}

/// Texts that every seccomp message contains: the cause, the evidence and
/// the three fixes.
const SECCOMP_MESSAGE: &[&str] = &[
    "EPERM",
    "seccomp filter rejects clone(2) with CLONE_NEWUSER",
    "Seccomp: 2",
    "/proc/self/status",
    "still failed with EPERM",
    "custom seccomp profile",
    "sysbox-runc",
    "grant CAP_SYS_ADMIN",
];

#[test]
fn docker_seccomp_fails_with_message_as_root() {
    require_root!();
    assert_fails_before_command(Mode::Root, Environment::DockerSeccomp, &[], SECCOMP_MESSAGE);
}

#[test]
fn docker_seccomp_fails_with_message_rootless() {
    require_root!();
    assert_fails_before_command(
        Mode::Rootless,
        Environment::DockerSeccomp,
        &[],
        SECCOMP_MESSAGE,
    );
}

#[test]
fn no_user_namespace_without_cap_sys_admin_fails() {
    require_root!();
    assert_fails_before_command(
        Mode::Root,
        Environment::NoCapSysAdmin,
        &["--no-user-namespace"],
        &[
            "--no-user-namespace needs CAP_SYS_ADMIN",
            "CapEff",
            "Leave out --no-user-namespace",
        ],
    );
}

const MISSING_TUN_MESSAGE: &[&str] = &[
    "opening /dev/net/tun failed",
    "ENOENT",
    "/dev/net/tun does not exist",
    "--device /dev/net/tun",
    "modprobe tun",
];

#[test]
fn missing_tun_device_fails_with_message_as_root() {
    require_root!();
    assert_fails_before_command(
        Mode::Root,
        Environment::NoTunDevice,
        &[],
        MISSING_TUN_MESSAGE,
    );
}

#[test]
fn missing_tun_device_fails_with_message_rootless() {
    require_root!();
    assert_fails_before_command(
        Mode::Rootless,
        Environment::NoTunDevice,
        &[],
        MISSING_TUN_MESSAGE,
    );
}

#[test]
fn unopenable_tun_device_fails_with_message() {
    require_root!();
    assert_fails_before_command(
        Mode::Rootless,
        Environment::TunDeviceMode0600,
        &[],
        &["EACCES", "mode 0600, owner 0:0", "chmod 0666 /dev/net/tun"],
    );
}

const NO_USER_NAMESPACES_MESSAGE: &[&str] = &[
    "ENOSPC",
    "user.max_user_namespaces is 0",
    "/proc/sys/user/max_user_namespaces",
    "sysctl -w user.max_user_namespaces=",
];

/// netjail runs as root of a user namespace whose limit is 0, which is
/// effectively rootless.
#[test]
fn max_user_namespaces_zero_fails_with_message() {
    require_root!();
    assert_fails_before_command(
        Mode::Root,
        Environment::NoUserNamespaces,
        &[],
        NO_USER_NAMESPACES_MESSAGE,
    );
}

#[test]
fn max_user_namespaces_zero_fails_with_message_rootless() {
    require_root!();
    assert_fails_before_command(
        Mode::Rootless,
        Environment::NoUserNamespaces,
        &[],
        NO_USER_NAMESPACES_MESSAGE,
    );
}

#[test]
fn masked_proc_fails_with_message() {
    require_root!();
    assert_fails_before_command(
        Mode::Rootless,
        Environment::MaskedProc,
        &[],
        &[
            "mounting /proc in the jail failed",
            "EPERM",
            "/proc/sys",
            "systempaths=unconfined",
        ],
    );
}

/// Without a user namespace the kernel does not require a fully visible
/// /proc, so root with CAP_SYS_ADMIN works despite the masked paths.
#[test]
fn masked_proc_allows_no_user_namespace_for_root() {
    require_root!();
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(Mode::Root);
    let command = Environment::MaskedProc
        .apply(fixtures.jail(Mode::Root, &workdir))
        .option("--no-user-namespace");
    assert_curl_fetches(command, &fixtures, SESSION_MODE_NO_USER_NAMESPACE);
}
