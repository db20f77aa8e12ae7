//! Allow and deny decisions: non-public addresses, deny rules and invalid
//! rules.

use integration::clients;
use integration::fixtures::http::page_body;
use integration::fixtures::{DENIED_NAME, Fixtures, V4_ONLY_NAME, WEB_NAME};
use integration::jail::{EXIT_NETJAIL_FAILED, Mode};
use integration::jail_tests;
use integration::workdir::Workdir;

jail_tests!(
    loopback_denied_without_cidr,
    loopback_denied_outside_cidr,
    loopback_allowed_with_cidr,
    deny_rule_wins_over_allow,
    invalid_rule_exits_125,
    port_rule_limits_ports,
    udp_denied_without_proto_rule,
    jail_loopback_is_not_host,
);

/// A name that only the UDP probe queries.
const PROBE_NAME: &str = "udp-probe.test";

/// Fetches `/pages/NAME` from `name` with curl and prints curl's exit status
/// on the last line, so the jail itself exits 0.
fn curl_page(fixtures: &Fixtures, name: &str) -> Vec<String> {
    let url = fixtures.http_url(name, &format!("/pages/{name}"));
    clients::sh(&format!(
        "curl -sS --max-time 20 {url}; echo \"curl exit $?\""
    ))
}

/// Returns curl's exit status from the output of [`curl_page`].
fn curl_exit(stdout: &str) -> Option<i32> {
    let last = stdout.lines().last()?;
    last.strip_prefix("curl exit ")?.parse().ok()
}

fn loopback_denied_without_cidr(mode: Mode) {
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);

    let output = fixtures
        .jail(mode, &workdir)
        .allow(&format!("domain={V4_ONLY_NAME}"))
        .run(&curl_page(&fixtures, V4_ONLY_NAME));

    assert_eq!(output.code(), Some(0), "{}", output.describe());
    let curl_status = curl_exit(&output.stdout);
    assert!(curl_status.is_some_and(|s| s != 0), "{}", output.describe());
    assert!(
        fixtures.http.requests().is_empty(),
        "{:?}",
        fixtures.http.requests()
    );

    let audit = output.audit();
    let denials = audit.denials(V4_ONLY_NAME);
    assert!(
        !denials.is_empty(),
        "no denied event: {:?}",
        audit.event_names()
    );
    assert_eq!(denials[0].decision, "deny", "{:?}", denials[0]);
    assert!(denials[0].reason.contains("127.0.0.1"), "{:?}", denials[0]);
}

fn loopback_denied_outside_cidr(mode: Mode) {
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);

    let output = fixtures
        .jail(mode, &workdir)
        .allow(&format!("domain={V4_ONLY_NAME} cidr=127.0.0.2/32"))
        .run(&curl_page(&fixtures, V4_ONLY_NAME));

    assert_eq!(output.code(), Some(0), "{}", output.describe());
    let curl_status = curl_exit(&output.stdout);
    assert!(curl_status.is_some_and(|s| s != 0), "{}", output.describe());
    assert!(
        fixtures.http.requests().is_empty(),
        "{:?}",
        fixtures.http.requests()
    );

    let audit = output.audit();
    let denials = audit.denials(V4_ONLY_NAME);
    assert!(!denials.is_empty(), "no denied event: {:?}", audit.lines);
    assert_eq!(denials[0].decision, "deny", "{:?}", denials[0]);
}

fn loopback_allowed_with_cidr(mode: Mode) {
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);

    let output = fixtures
        .jail(mode, &workdir)
        .allow(&format!("domain={V4_ONLY_NAME} cidr=127.0.0.0/8"))
        .run(&curl_page(&fixtures, V4_ONLY_NAME));

    assert_eq!(output.code(), Some(0), "{}", output.describe());
    let expected = format!("{}curl exit 0\n", page_body(V4_ONLY_NAME));
    assert_eq!(output.stdout, expected, "{}", output.describe());
    let audit = output.audit();
    let opens = audit.flow_opens(V4_ONLY_NAME);
    assert_eq!(opens.len(), 1, "{:?}", audit.event_names());
    let rule = format!("domain={V4_ONLY_NAME} cidr=127.0.0.0/8");
    assert_eq!(
        opens[0].rule.as_deref(),
        Some(rule.as_str()),
        "{:?}",
        opens[0]
    );
}

fn deny_rule_wins_over_allow(mode: Mode) {
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);
    let deny_rule = format!("domain={DENIED_NAME}");
    let mut script = curl_page(&fixtures, WEB_NAME);
    let denied = curl_page(&fixtures, DENIED_NAME);
    script[2] = format!("{}\n{}", script[2], denied[2]);

    let output = fixtures
        .jail(mode, &workdir)
        .allow("domain=*.test cidr=127.0.0.0/8")
        .allow("domain=*.test cidr=::1/128")
        .deny(&deny_rule)
        .run(&script);

    assert_eq!(output.code(), Some(0), "{}", output.describe());
    let lines = output.stdout_lines();
    assert_eq!(lines.len(), 3, "{}", output.describe());
    assert_eq!(format!("{}\n", lines[0]), page_body(WEB_NAME));
    assert_eq!(lines[1], "curl exit 0");
    assert_ne!(lines[2], "curl exit 0", "{}", output.describe());
    assert!(
        !fixtures.dns.was_queried(DENIED_NAME),
        "{:?}",
        fixtures.dns.queries()
    );
    let hosts: Vec<_> = fixtures
        .http
        .requests()
        .into_iter()
        .filter_map(|r| r.host)
        .collect();
    assert!(
        hosts.iter().all(|host| !host.starts_with(DENIED_NAME)),
        "{hosts:?}"
    );

    let audit = output.audit();
    let events = audit.dns_events(DENIED_NAME);
    assert!(!events.is_empty(), "{:?}", audit.event_names());
    assert_eq!(events[0].decision, "deny", "{:?}", events[0]);
    assert_eq!(
        events[0].rule.as_deref(),
        Some(deny_rule.as_str()),
        "{:?}",
        events[0]
    );
}

/// Checks that an invalid rule is a usage error: exit 125, a message that
/// quotes the invalid word, and the command never runs.
fn invalid_rule_exits_125(mode: Mode) {
    let fixtures = Fixtures::start();
    for (option, rule, bad_word) in [
        ("--allow", "bogus=1", "bogus=1"),
        ("--deny", "bogus=1", "bogus=1"),
        ("--allow", "domain=web.test port=99999", "port=99999"),
        ("--allow", "domain=web.test proto=icmp", "proto=icmp"),
        (
            "--allow",
            "domain=web.test cidr=127.0.0.0/33",
            "cidr=127.0.0.0/33",
        ),
    ] {
        let workdir = Workdir::new(mode);
        let output = fixtures
            .jail(mode, &workdir)
            .option(option)
            .option(rule)
            .run(&["touch", "command-ran"]);

        assert_eq!(
            output.code(),
            Some(EXIT_NETJAIL_FAILED),
            "{rule}\n{}",
            output.describe()
        );
        assert!(
            output.stderr.contains(bad_word),
            "{rule}\n{}",
            output.describe()
        );
        assert!(
            !workdir.join("command-ran").exists(),
            "{rule}: the command ran"
        );
    }
}

/// Checks that a rule with `port` allows only that port: the same name on
/// another port is denied, and the denial names no deny rule.
fn port_rule_limits_ports(mode: Mode) {
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);
    let http_port = fixtures.http.port();
    let other_port = fixtures.exchange.port();
    let page = fixtures.http_url(WEB_NAME, "/pages/port");
    let script = format!(
        "curl -sS --max-time 20 {page}; echo \"curl exit $?\"
         curl -sS --max-time 20 http://{WEB_NAME}:{other_port}/; echo \"curl exit $?\""
    );

    let output = fixtures
        .jail(mode, &workdir)
        .allow(&format!(
            "domain={WEB_NAME} port={http_port} cidr=127.0.0.0/8"
        ))
        .allow(&format!("domain={WEB_NAME} port={http_port} cidr=::1/128"))
        .run(&clients::sh(&script));

    assert_eq!(output.code(), Some(0), "{}", output.describe());
    let lines = output.stdout_lines();
    assert_eq!(lines.len(), 3, "{}", output.describe());
    assert_eq!(format!("{}\n", lines[0]), page_body("port"));
    assert_eq!(lines[1], "curl exit 0");
    assert_eq!(lines[2], "curl exit 7", "{}", output.describe());
    assert!(
        fixtures.exchange.records().is_empty(),
        "{:?}",
        fixtures.exchange.records()
    );

    let audit = output.audit();
    let denials = audit.denials(WEB_NAME);
    assert!(!denials.is_empty(), "{:?}", audit.event_names());
    assert_eq!(denials[0].port, other_port, "{:?}", denials[0]);
    assert_eq!(denials[0].rule, None, "{:?}", denials[0]);
}

/// Checks that UDP to an allowed name on a port other than 53 is denied when
/// no rule has `proto=udp`. The probe is a DNS query sent to the fixture
/// resolver's own port, so the fixture's query log shows whether it passed.
fn udp_denied_without_proto_rule(mode: Mode) {
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);
    let dns_port = fixtures.dns.addr().port();
    let script = format!(
        "dig @{WEB_NAME} -p {dns_port} +notcp +time=2 +tries=1 {PROBE_NAME} A
         echo \"dig exit $?\""
    );

    let output = fixtures
        .jail(mode, &workdir)
        .allow_loopback_name(WEB_NAME)
        .run(&clients::sh(&script));

    assert_eq!(output.code(), Some(0), "{}", output.describe());
    assert!(
        !fixtures.dns.was_queried(PROBE_NAME),
        "{:?}",
        fixtures.dns.queries()
    );
    let last = output.stdout_lines().last().copied();
    assert_ne!(last, Some("dig exit 0"), "{}", output.describe());

    let audit = output.audit();
    let udp_denials: Vec<_> = audit
        .all_denials()
        .into_iter()
        .filter(|denied| denied.proto == "udp" && denied.port == dns_port)
        .collect();
    assert!(!udp_denials.is_empty(), "{:?}", audit.lines);
    // The destination is the synthetic address of the name.
    assert_eq!(
        udp_denials[0].name.as_deref(),
        Some(WEB_NAME),
        "{:?}",
        udp_denials[0]
    );
    assert_eq!(udp_denials[0].decision, "deny", "{:?}", udp_denials[0]);
}

/// 127.0.0.1 inside the jail is the jail's own loopback interface: even with
/// every name allowed, an IP literal for it never reaches the host's servers.
fn jail_loopback_is_not_host(mode: Mode) {
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);
    let url = format!("http://127.0.0.1:{}/pages/loopback", fixtures.http.port());

    let output = fixtures
        .jail(mode, &workdir)
        .allow("domain=* cidr=127.0.0.0/8")
        .allow("cidr=127.0.0.0/8")
        .run(&clients::sh(&format!(
            "curl -sS --max-time 5 {url}; echo \"curl exit $?\""
        )));

    assert_eq!(output.code(), Some(0), "{}", output.describe());
    assert_eq!(output.stdout_lines().last().copied(), Some("curl exit 7"));
    assert!(
        fixtures.http.requests().is_empty(),
        "{:?}",
        fixtures.http.requests()
    );
}
