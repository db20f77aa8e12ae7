//! The audit log of a run: JSON Lines, one session, and byte counts equal to
//! what the client moved.

use std::net::SocketAddr;

use integration::audit::{AuditLog, CLOSE_FIN, session_mode};
use integration::clients;
use integration::fixtures::{EXCHANGE_NAME, Fixtures};
use integration::jail::{Mode, is_loopback, is_synthetic};
use integration::jail_tests;
use integration::workdir::Workdir;

jail_tests!(audit_log_records_exchange, audit_log_to_stderr);

fn audit_log_records_exchange(mode: Mode) {
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);
    workdir.write("exchange.py", clients::EXCHANGE_PY);
    let (send, reply) = (100_000u64, 300_000u64);
    let port = fixtures.exchange.port();
    let command: Vec<String> = ["python3", "exchange.py", EXCHANGE_NAME]
        .into_iter()
        .map(str::to_owned)
        .chain([port.to_string(), send.to_string(), reply.to_string()])
        .collect();
    let rules = [
        format!("domain={EXCHANGE_NAME} cidr=127.0.0.0/8"),
        format!("domain={EXCHANGE_NAME} cidr=::1/128"),
    ];

    let output = fixtures
        .jail(mode, &workdir)
        .allow(&rules[0])
        .allow(&rules[1])
        .run(&command);

    assert_eq!(output.code(), Some(0), "{}", output.describe());
    let audit = output.audit();
    assert_eq!(audit.check_envelope(), Ok(()));
    let names = audit.event_names();
    assert_eq!(
        names.first().map(String::as_str),
        Some("session_start"),
        "{names:?}"
    );
    assert_eq!(
        names.last().map(String::as_str),
        Some("session_end"),
        "{names:?}"
    );

    let starts = audit.session_starts();
    assert_eq!(starts.len(), 1, "{names:?}");
    assert_eq!(starts[0].command, command);
    assert_eq!(starts[0].allow, rules.to_vec());
    assert!(starts[0].deny.is_empty(), "{:?}", starts[0]);
    assert_eq!(starts[0].mode, session_mode(mode));

    let a_queries: Vec<_> = audit
        .dns_events(EXCHANGE_NAME)
        .into_iter()
        .filter(|e| e.qtype == "A")
        .collect();
    assert!(!a_queries.is_empty(), "no A query logged: {names:?}");
    let a_query = a_queries[0];
    assert_eq!(a_query.decision, "allow", "{a_query:?}");
    assert_eq!(a_query.rcode, "NOERROR", "{a_query:?}");
    // The upstream answers are the name's real addresses, which may include
    // its AAAA records too.
    let real_a = a_query
        .upstream_answers
        .iter()
        .any(|answer| answer == "127.0.0.1");
    assert!(real_a, "{a_query:?}");
    assert_eq!(a_query.answers.len(), 1, "{a_query:?}");
    let answer = a_query.answers[0].parse().expect("A answer is an address");
    assert!(is_synthetic(answer), "{a_query:?}");

    let opens = audit.flow_opens(EXCHANGE_NAME);
    assert_eq!(opens.len(), 1, "{names:?}");
    let open = opens[0];
    assert_eq!(open.proto, "tcp", "{open:?}");
    assert_eq!(open.port, port, "{open:?}");
    assert_eq!(open.decision, "allow", "{open:?}");
    let dst: SocketAddr = open.dst.parse().expect("dst is ip:port");
    assert!(is_synthetic(dst.ip()), "{open:?}");
    let upstream: SocketAddr = open.upstream.parse().expect("upstream is ip:port");
    assert!(is_loopback(upstream.ip()), "{open:?}");
    assert_eq!(upstream.port(), port, "{open:?}");

    let closes = audit.flow_closes(EXCHANGE_NAME);
    assert_eq!(closes.len(), 1, "{names:?}");
    let close = closes[0];
    assert_eq!(close.flow, open.flow, "{close:?}");
    assert_eq!(close.bytes_from_jail, send, "{close:?}");
    assert_eq!(close.bytes_to_jail, reply, "{close:?}");
    assert_eq!(close.close, CLOSE_FIN, "{close:?}");
    assert!(close.duration_ms >= 0.0, "{close:?}");

    let ends = audit.session_ends();
    assert_eq!(ends.len(), 1, "{names:?}");
    assert_eq!(ends[0].exit_status, 0);
}

/// `--audit-log -` writes the same JSON Lines to standard error, between
/// netjail's own diagnostic lines.
fn audit_log_to_stderr(mode: Mode) {
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);

    let output = fixtures
        .jail(mode, &workdir)
        .audit_log_to_stderr()
        .run(&clients::sh("exit 3"));

    assert_eq!(output.code(), Some(3), "{}", output.describe());
    let json_lines: Vec<&str> = output
        .stderr
        .lines()
        .filter(|line| line.starts_with('{'))
        .collect();
    let audit = AuditLog::parse(&json_lines.join("\n"))
        .unwrap_or_else(|err| panic!("{err}\n{}", output.describe()));
    assert_eq!(audit.check_envelope(), Ok(()));
    assert_eq!(audit.session_starts().len(), 1, "{:?}", audit.event_names());
    let ends = audit.session_ends();
    assert_eq!(ends.len(), 1, "{:?}", audit.event_names());
    assert_eq!(ends[0].exit_status, 3);
}
