//! netjail exits with the command's status, 128+N for a signal, 126 and 127
//! when the command cannot run.

use std::time::Duration;

use integration::clients;
use integration::fixtures::Fixtures;
use integration::jail::{EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND, Mode, Signal};
use integration::jail_tests;
use integration::workdir::Workdir;

jail_tests!(
    command_status_passes_through,
    killed_command_exits_137,
    missing_command_exits_127,
    non_executable_command_exits_126,
    signals_are_forwarded,
);

fn command_status_passes_through(mode: Mode) {
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);

    let output = fixtures.jail(mode, &workdir).run(&clients::sh("exit 7"));

    assert_eq!(output.code(), Some(7), "{}", output.describe());
    let audit = output.audit();
    let ends = audit.session_ends();
    assert_eq!(ends.len(), 1, "{:?}", audit.event_names());
    assert_eq!(ends[0].exit_status, 7);
}

fn killed_command_exits_137(mode: Mode) {
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);

    let output = fixtures
        .jail(mode, &workdir)
        .run(&clients::sh("kill -9 $$"));

    assert_eq!(output.code(), Some(128 + 9), "{}", output.describe());
    let audit = output.audit();
    let ends = audit.session_ends();
    assert_eq!(ends.len(), 1, "{:?}", audit.event_names());
    assert_eq!(ends[0].exit_status, 128 + 9);
}

fn missing_command_exits_127(mode: Mode) {
    let fixtures = Fixtures::start();
    for command in [
        "/nonexistent/netjail-test-command",
        "netjail-test-command-not-in-path",
    ] {
        let workdir = Workdir::new(mode);

        let output = fixtures.jail(mode, &workdir).run(&[command]);

        assert_eq!(
            output.code(),
            Some(EXIT_NOT_FOUND),
            "{command}\n{}",
            output.describe()
        );
        assert!(
            output.stderr.contains(command),
            "{command}\n{}",
            output.describe()
        );
        let audit = output.audit();
        let ends = audit.session_ends();
        assert_eq!(ends.len(), 1, "{command}: {:?}", audit.event_names());
        assert_eq!(ends[0].exit_status, EXIT_NOT_FOUND, "{command}");
    }
}

fn non_executable_command_exits_126(mode: Mode) {
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);
    workdir.write("not-executable.sh", "#!/bin/sh\necho ran\n");

    let output = fixtures.jail(mode, &workdir).run(&["./not-executable.sh"]);

    assert_eq!(
        output.code(),
        Some(EXIT_CANNOT_EXECUTE),
        "{}",
        output.describe()
    );
    assert_eq!(output.stdout, "", "{}", output.describe());
    let audit = output.audit();
    let ends = audit.session_ends();
    assert_eq!(ends.len(), 1, "{:?}", audit.event_names());
    assert_eq!(ends[0].exit_status, EXIT_CANNOT_EXECUTE);
}

/// SIGTERM and SIGINT sent to netjail reach the command, which dies of them,
/// so netjail exits 128 + the signal number.
fn signals_are_forwarded(mode: Mode) {
    let fixtures = Fixtures::start();
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let workdir = Workdir::new(mode);

        let output = fixtures
            .jail(mode, &workdir)
            .signal_after(Duration::from_secs(1), signal)
            .timeout(Duration::from_secs(20))
            .run(&["sleep", "30"]);

        let expected = 128 + signal as i32;
        assert_eq!(
            output.code(),
            Some(expected),
            "{signal}\n{}",
            output.describe()
        );
    }
}
