//! netjail's DNS, queried with dig from inside the jail over UDP and TCP.

use std::collections::HashMap;
use std::net::IpAddr;

use integration::clients;
use integration::fixtures::dns::txt_value;
use integration::fixtures::{BIG_TXT_NAME, DENIED_NAME, Fixtures, WEB_NAME, big_txt_strings};
use integration::jail::{Mode, is_synthetic};
use integration::jail_tests;
use integration::workdir::Workdir;

jail_tests!(
    dig_allowed_and_denied_names,
    dig_any_address_port_53,
    dig_truncated_txt_retries_tcp,
);

/// Runs dig for A, AAAA and TXT of the allowed name and A of the denied name,
/// over UDP and over TCP, and prints each result under a `== TRANSPORT QUERY`
/// heading.
fn dig_script() -> String {
    format!(
        "for transport in notcp tcp; do
           for qtype in A AAAA TXT; do
             echo \"== $transport $qtype\"
             dig +$transport +short +time=5 +tries=1 {WEB_NAME} $qtype
           done
           echo \"== $transport denied\"
           dig +$transport +time=5 +tries=1 {DENIED_NAME} A | grep -o 'status: [A-Z]*'
         done"
    )
}

/// Splits output at `== HEADING` lines into the lines under each heading.
fn sections(stdout: &str) -> HashMap<String, Vec<String>> {
    let mut sections = HashMap::new();
    let mut current = None;
    for line in stdout
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
    {
        if let Some(heading) = line.strip_prefix("== ") {
            current = Some(heading.to_owned());
            sections.insert(heading.to_owned(), Vec::new());
        } else if let Some(heading) = &current {
            sections.get_mut(heading).unwrap().push(line.to_owned());
        }
    }
    sections
}

fn dig_allowed_and_denied_names(mode: Mode) {
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);

    let output = fixtures
        .jail(mode, &workdir)
        .allow_loopback_name(WEB_NAME)
        .run(&clients::sh(&dig_script()));

    assert_eq!(output.code(), Some(0), "{}", output.describe());
    let sections = sections(&output.stdout);
    let section = |heading: &str| -> &Vec<String> {
        let lines = sections.get(heading);
        lines.unwrap_or_else(|| panic!("no {heading:?} output\n{}", output.describe()))
    };
    let expected_txt = format!("\"{}\"", txt_value(WEB_NAME));
    for transport in ["notcp", "tcp"] {
        let a = section(&format!("{transport} A"));
        assert_eq!(a.len(), 1, "{transport} A: {a:?}");
        let a: IpAddr = a[0].parse().expect("A answer is an address");
        assert!(a.is_ipv4(), "{transport} A: {a}");
        assert!(is_synthetic(a), "{transport} A {a} is not synthetic");

        let aaaa = section(&format!("{transport} AAAA"));
        assert_eq!(aaaa.len(), 1, "{transport} AAAA: {aaaa:?}");
        let aaaa: IpAddr = aaaa[0].parse().expect("AAAA answer is an address");
        assert!(aaaa.is_ipv6(), "{transport} AAAA: {aaaa}");
        assert!(
            is_synthetic(aaaa),
            "{transport} AAAA {aaaa} is not synthetic"
        );

        let txt = section(&format!("{transport} TXT"));
        assert_eq!(txt, &vec![expected_txt.clone()], "{transport} TXT");

        let denied = section(&format!("{transport} denied"));
        assert_eq!(
            denied,
            &vec!["status: NXDOMAIN".to_owned()],
            "{transport} denied"
        );
    }
    // One synthetic address per name, whichever transport asked.
    assert_eq!(section("notcp A"), section("tcp A"));

    assert!(
        !fixtures.dns.was_queried(DENIED_NAME),
        "{:?}",
        fixtures.dns.queries()
    );
    let forwarded_txt = fixtures
        .dns
        .queries()
        .iter()
        .any(|query| query.name == WEB_NAME && query.qtype == "TXT");
    assert!(forwarded_txt, "{:?}", fixtures.dns.queries());

    let audit = output.audit();
    let denied = audit.dns_events(DENIED_NAME);
    assert_eq!(denied.len(), 2, "{denied:?}");
    for event in denied {
        assert_eq!(event.decision, "deny", "{event:?}");
        assert_eq!(event.rcode, "NXDOMAIN", "{event:?}");
        assert!(event.upstream_answers.is_empty(), "{event:?}");
    }
    let allowed = audit.dns_events(WEB_NAME);
    let tcp_queries = allowed
        .iter()
        .filter(|event| event.transport == "tcp")
        .count();
    assert_eq!(tcp_queries, 3, "{allowed:?}");
    let udp_queries = allowed
        .iter()
        .filter(|event| event.transport == "udp")
        .count();
    assert_eq!(udp_queries, 3, "{allowed:?}");
    let a_event = allowed
        .iter()
        .find(|event| event.qtype == "A")
        .expect("an A query");
    assert_eq!(a_event.decision, "allow", "{a_event:?}");
    // The upstream answers are the name's real addresses, which may include
    // its AAAA records too.
    let real_a = a_event
        .upstream_answers
        .iter()
        .any(|answer| answer == "127.0.0.1");
    assert!(real_a, "{a_event:?}");
}

/// Queries sent to port 53 of an address other than the configured
/// nameserver (here the synthetic address of an allowed name) are answered by
/// netjail too, with the same policy.
fn dig_any_address_port_53(mode: Mode) {
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);
    let script = format!(
        "addr=$(dig +short +time=5 +tries=1 {WEB_NAME} A)
         echo \"== addr\"; echo \"$addr\"
         echo \"== udp\"; dig @$addr +notcp +short +time=5 +tries=1 {WEB_NAME} A
         echo \"== tcp\"; dig @$addr +tcp +short +time=5 +tries=1 {WEB_NAME} A
         echo \"== denied\"
         dig @$addr +time=5 +tries=1 {DENIED_NAME} A | grep -o 'status: [A-Z]*'"
    );

    let output = fixtures
        .jail(mode, &workdir)
        .allow_loopback_name(WEB_NAME)
        .run(&clients::sh(&script));

    assert_eq!(output.code(), Some(0), "{}", output.describe());
    let sections = sections(&output.stdout);
    let section = |heading: &str| -> Vec<String> {
        let lines = sections.get(heading).cloned();
        lines.unwrap_or_else(|| panic!("no {heading:?} output\n{}", output.describe()))
    };
    let addr = section("addr");
    assert_eq!(addr.len(), 1, "{}", output.describe());
    let synthetic: IpAddr = addr[0].parse().expect("A answer is an address");
    assert!(is_synthetic(synthetic), "{synthetic}");
    assert_eq!(section("udp"), addr, "{}", output.describe());
    assert_eq!(section("tcp"), addr, "{}", output.describe());
    assert_eq!(section("denied"), vec!["status: NXDOMAIN".to_owned()]);
    assert!(
        !fixtures.dns.was_queried(DENIED_NAME),
        "{:?}",
        fixtures.dns.queries()
    );
}

/// A TXT answer larger than the client's UDP limit arrives truncated (TC
/// set) over UDP, and dig's automatic retry over TCP gets all of it.
fn dig_truncated_txt_retries_tcp(mode: Mode) {
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);
    let script = format!(
        "echo \"== full\"; dig +short +time=5 +tries=1 {BIG_TXT_NAME} TXT
         echo \"== flags\"
         dig +notcp +ignore +noedns +time=5 +tries=1 {BIG_TXT_NAME} TXT | grep '^;; flags'"
    );

    let output = fixtures
        .jail(mode, &workdir)
        .allow(&format!("domain={BIG_TXT_NAME}"))
        .run(&clients::sh(&script));

    assert_eq!(output.code(), Some(0), "{}", output.describe());
    let sections = sections(&output.stdout);
    let mut full = sections.get("full").cloned().unwrap_or_default();
    full.sort();
    let expected: Vec<String> = big_txt_strings()
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect();
    assert_eq!(full, expected, "{}", output.describe());
    let flags = sections.get("flags").cloned().unwrap_or_default();
    assert_eq!(flags.len(), 1, "{}", output.describe());
    let flag_words: Vec<&str> = flags[0].split([' ', ';', ':']).collect();
    assert!(flag_words.contains(&"tc"), "no TC flag: {}", flags[0]);
}
