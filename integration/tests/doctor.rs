//! `netjail doctor` in each environment of `integration::environment`: the
//! exit status, the mode, and the status of each check, in the text report and
//! in the JSON report.

use integration::environment::Environment;
use integration::jail::{JailCommand, JailOutput, Mode};
use integration::workdir::Workdir;
use serde_json::Value;

/// Exit status of `netjail doctor` when `netjail run` cannot start.
const EXIT_RUN_CANNOT_START: i32 = 1;

/// Every check a report in user-namespace mode contains.
const USER_NAMESPACE_CHECKS: &[&str] = &[
    "namespaces",
    "max_user_namespaces",
    "unprivileged_userns_clone",
    "apparmor_userns",
    "seccomp",
    "tun_device",
    "tun_access",
    "resolv_conf",
    "proc_visible",
    "test_jail",
];

/// Every check a report for `--no-user-namespace` contains.
const NO_USER_NAMESPACE_CHECKS: &[&str] = &[
    "namespaces",
    "cap_sys_admin",
    "cap_net_admin",
    "seccomp",
    "tun_device",
    "tun_access",
    "resolv_conf",
    "test_jail",
];

/// One environment and what doctor must report there.
struct Case {
    mode: Mode,
    environment: Option<Environment>,
    no_user_namespace: bool,
    expected_mode: &'static str,
    /// The checks that must be `missing`; all others must be `ok`.
    missing: &'static [&'static str],
}

/// The text and JSON reports of one environment.
struct Reports {
    text: JailOutput,
    json: JailOutput,
    value: Value,
}

fn run_doctor(case: &Case) -> Reports {
    let workdir = Workdir::new(case.mode);
    let command = || {
        let mut command = JailCommand::new(case.mode, &workdir);
        if let Some(environment) = case.environment {
            command = environment.apply(command);
        }
        if case.no_user_namespace {
            command = command.option("--no-user-namespace");
        }
        command
    };
    let text = command().doctor(&[]);
    let json = command().doctor(&["--json"]);
    let value: Value = serde_json::from_str(json.stdout.trim())
        .unwrap_or_else(|err| panic!("invalid JSON ({err})\n{}", json.describe()));
    Reports { text, json, value }
}

/// Runs doctor in `case` and checks both reports against it.
fn check_case(case: Case) {
    if !Mode::Root.is_available() {
        eprintln!("skipped: simulating this environment needs the tests to run as root");
        return;
    }
    let reports = run_doctor(&case);
    let context = format!(
        "{:?} in {:?}\ntext report:\n{}\nJSON report:\n{}",
        case.mode,
        case.environment,
        reports.text.describe(),
        reports.json.describe()
    );
    let run_can_start = case.missing.is_empty();
    let expected_status = if run_can_start {
        0
    } else {
        EXIT_RUN_CANNOT_START
    };
    assert_eq!(reports.text.code(), Some(expected_status), "{context}");
    assert_eq!(reports.json.code(), Some(expected_status), "{context}");

    let names = if case.no_user_namespace {
        NO_USER_NAMESPACE_CHECKS
    } else {
        USER_NAMESPACE_CHECKS
    };
    check_text(&reports.text.stdout, &case, names, &context);
    check_json(&reports.value, &case, names, &context);
}

fn check_text(text: &str, case: &Case, names: &[&str], context: &str) {
    let lines: Vec<&str> = text.lines().collect();
    for name in names {
        let status = if case.missing.contains(name) {
            "missing"
        } else {
            "ok"
        };
        let prefix = format!("{status:<8} {name}: ");
        let matching: Vec<&&str> = lines
            .iter()
            .filter(|l| l.contains(&format!(" {name}: ")))
            .collect();
        assert_eq!(matching.len(), 1, "one line for {name}\n{context}");
        assert!(
            matching[0].starts_with(&prefix),
            "expected {prefix:?}\n{context}"
        );
        if status == "missing" {
            assert!(
                matching[0].contains(". Fix: "),
                "{name} has no fix\n{context}"
            );
        }
    }
    let mode_line = format!("mode: {} (", case.expected_mode);
    assert!(
        lines.iter().any(|line| line.starts_with(&mode_line)),
        "expected {mode_line:?}\n{context}"
    );
    let verdict = if case.missing.is_empty() {
        "result: netjail run can start here"
    } else {
        "result: netjail run cannot start here; fix the checks marked missing"
    };
    assert!(lines.contains(&verdict), "expected {verdict:?}\n{context}");
}

fn check_json(report: &Value, case: &Case, names: &[&str], context: &str) {
    assert_eq!(report["ok"], case.missing.is_empty(), "{context}");
    assert_eq!(report["mode"], case.expected_mode, "{context}");
    assert_eq!(
        report["user_namespace"], !case.no_user_namespace,
        "{context}"
    );
    let checks = report["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks array\n{context}"));
    let reported: Vec<&str> = checks
        .iter()
        .map(|check| check["name"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(reported, names, "{context}");
    for check in checks {
        let name = check["name"].as_str().unwrap_or("?");
        let expected = if case.missing.contains(&name) {
            "missing"
        } else {
            "ok"
        };
        assert_eq!(check["status"], expected, "{name}\n{context}");
        assert!(
            check["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{name}\n{context}"
        );
        assert_eq!(
            check["fix"].is_string(),
            expected == "missing",
            "{name}\n{context}"
        );
    }
}

#[test]
fn rootless_can_start() {
    check_case(Case {
        mode: Mode::Rootless,
        environment: None,
        no_user_namespace: false,
        expected_mode: "rootless",
        missing: &[],
    });
}

#[test]
fn root_can_start() {
    check_case(Case {
        mode: Mode::Root,
        environment: None,
        no_user_namespace: false,
        expected_mode: "root",
        missing: &[],
    });
}

#[test]
fn root_without_user_namespace_can_start() {
    check_case(Case {
        mode: Mode::Root,
        environment: None,
        no_user_namespace: true,
        expected_mode: "root-no-user-namespace",
        missing: &[],
    });
}

#[test]
fn container_without_cap_sys_admin_can_start() {
    check_case(Case {
        mode: Mode::Root,
        environment: Some(Environment::NoCapSysAdmin),
        no_user_namespace: false,
        expected_mode: "root",
        missing: &[],
    });
}

#[test]
fn no_cap_sys_admin_blocks_no_user_namespace() {
    check_case(Case {
        mode: Mode::Root,
        environment: Some(Environment::NoCapSysAdmin),
        no_user_namespace: true,
        expected_mode: "root-no-user-namespace",
        missing: &["cap_sys_admin", "test_jail"],
    });
}

#[test]
fn docker_seccomp_is_reported_rootless() {
    check_case(Case {
        mode: Mode::Rootless,
        environment: Some(Environment::DockerSeccomp),
        no_user_namespace: false,
        expected_mode: "rootless",
        missing: &["seccomp", "test_jail"],
    });
}

#[test]
fn docker_seccomp_is_reported_as_root() {
    check_case(Case {
        mode: Mode::Root,
        environment: Some(Environment::DockerSeccomp),
        no_user_namespace: false,
        expected_mode: "root",
        missing: &["seccomp", "test_jail"],
    });
}

/// With CAP_SYS_ADMIN kept, the report points at --no-user-namespace.
#[test]
fn seccomp_report_offers_no_user_namespace_to_root() {
    if !Mode::Root.is_available() {
        eprintln!("skipped: simulating this environment needs the tests to run as root");
        return;
    }
    let reports = run_doctor(&Case {
        mode: Mode::Root,
        environment: Some(Environment::SeccompOnly),
        no_user_namespace: false,
        expected_mode: "root",
        missing: &["seccomp", "test_jail"],
    });
    let alternative = reports.value["alternative"].as_str().unwrap_or_default();
    assert!(
        alternative.contains("--no-user-namespace"),
        "{}",
        reports.json.describe()
    );
    assert!(
        reports
            .text
            .stdout
            .contains("alternative: `netjail run --no-user-namespace` works here"),
        "{}",
        reports.text.describe()
    );
}

#[test]
fn missing_tun_device_is_reported() {
    check_case(Case {
        mode: Mode::Rootless,
        environment: Some(Environment::NoTunDevice),
        no_user_namespace: false,
        expected_mode: "rootless",
        missing: &["tun_device", "tun_access", "test_jail"],
    });
}

#[test]
fn unopenable_tun_device_is_reported() {
    check_case(Case {
        mode: Mode::Rootless,
        environment: Some(Environment::TunDeviceMode0600),
        no_user_namespace: false,
        expected_mode: "rootless",
        missing: &["tun_access", "test_jail"],
    });
}

#[test]
fn max_user_namespaces_zero_is_reported() {
    check_case(Case {
        mode: Mode::Rootless,
        environment: Some(Environment::NoUserNamespaces),
        // Root of the nested user namespace, so the mode is named root.
        no_user_namespace: false,
        expected_mode: "root",
        missing: &["max_user_namespaces", "test_jail"],
    });
}

#[test]
fn masked_proc_is_reported() {
    check_case(Case {
        mode: Mode::Rootless,
        environment: Some(Environment::MaskedProc),
        no_user_namespace: false,
        expected_mode: "rootless",
        missing: &["proc_visible", "test_jail"],
    });
}
