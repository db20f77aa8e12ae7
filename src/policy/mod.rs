//! The allow policy: which names resolve and which flows may leave the jail.
//!
//! Deny rules win over allow rules, and anything no allow rule matches is denied. An address
//! that is not public (see [`is_public`]) is refused even for an allowed name unless the
//! matching rule's `cidr` contains it, which stops DNS rebinding and metadata theft.

mod rule;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use rule::{DomainPattern, KEYS, PortRange, Proto, Rule, RuleError};

/// The parsed allow and deny lists.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub allow: Vec<Rule>,
    pub deny: Vec<Rule>,
}

/// The policy's decision about a flow or a name, and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'a> {
    Allow {
        rule: &'a Rule,
    },
    Deny {
        rule: Option<&'a Rule>,
        reason: String,
    },
}

impl Decision<'_> {
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

/// The facts about one flow that rules can match.
#[derive(Debug, Clone, Copy)]
pub struct FlowFacts<'a> {
    /// The DNS name the jail used, or `None` for an IP literal.
    pub name: Option<&'a str>,
    /// The host-side destination address.
    pub addr: IpAddr,
    pub port: u16,
    pub proto: Proto,
}

impl Policy {
    /// Parses the rule texts; the first invalid rule is returned as the error.
    pub fn parse(allow: &[String], deny: &[String]) -> Result<Policy, RuleError> {
        let parse_all = |texts: &[String]| -> Result<Vec<Rule>, RuleError> {
            texts.iter().map(|t| Rule::parse(t)).collect()
        };
        Ok(Policy {
            allow: parse_all(allow)?,
            deny: parse_all(deny)?,
        })
    }

    /// Returns the first rule that names `method` or `path`, which plain flow decisions cannot
    /// enforce.
    pub fn first_http_rule(&self) -> Option<&Rule> {
        self.allow
            .iter()
            .chain(&self.deny)
            .find(|rule| rule.is_http())
    }

    /// Decides whether the jail may resolve `name`. A name resolves when some allow rule could
    /// match a flow to it and no deny rule that names only the domain matches it. Denied names
    /// are answered locally and never sent upstream.
    pub fn decide_name(&self, name: &str) -> Decision<'_> {
        let blocking = self.deny.iter().find(|rule| {
            rule.matches_name(Some(name))
                && rule.domain.is_some()
                && rule.ports.is_none()
                && rule.cidrs.is_none()
                && !rule.is_http()
        });
        if let Some(rule) = blocking {
            return Decision::Deny {
                rule: Some(rule),
                reason: format!("deny rule matches {name}"),
            };
        }
        match self.allow.iter().find(|rule| rule.matches_name(Some(name))) {
            Some(rule) => Decision::Allow { rule },
            None => Decision::Deny {
                rule: None,
                reason: format!("no allow rule matches {name}"),
            },
        }
    }

    /// Decides one flow to one host-side address.
    ///
    /// Rules that name `method` or `path` cannot be decided for a whole connection: a deny rule
    /// with them is left to [`Policy::decide_request`], and an allow rule with them allows the
    /// connection only when no plain rule does, so that each request is then checked. Callers
    /// ask [`Policy::checks_requests`] whether a connection needs those checks.
    pub fn decide_flow(&self, flow: &FlowFacts<'_>) -> Decision<'_> {
        let deny = self.deny.iter().filter(|rule| !rule.is_http());
        if let Some(rule) = deny.into_iter().find(|rule| matches_flow(rule, flow)) {
            return Decision::Deny {
                rule: Some(rule),
                reason: "deny rule matches".into(),
            };
        }
        let plain = self.allow.iter().filter(|rule| !rule.is_http());
        let http = self.allow.iter().filter(|rule| rule.is_http());
        self.decide_allow(flow, plain.chain(http), |rule| matches_flow(rule, flow))
    }

    /// Reports whether the requests of a connection allowed by `rule` must each be decided:
    /// when the rule itself names `method` or `path`, or a deny rule that does could match.
    pub fn checks_requests(&self, flow: &FlowFacts<'_>, rule: &Rule) -> bool {
        rule.is_http()
            || self
                .deny
                .iter()
                .any(|deny| deny.is_http() && matches_flow(deny, flow))
    }

    /// Reports whether any rule names `method` or `path`.
    pub fn has_http_rules(&self) -> bool {
        self.first_http_rule().is_some()
    }

    /// Decides one HTTP request on a connection to one host-side address. `path` is the
    /// normalized path of the request target (see [`crate::http::path`]).
    pub fn decide_request(&self, flow: &FlowFacts<'_>, method: &str, path: &str) -> Decision<'_> {
        let matches = |rule: &&Rule| matches_flow(rule, flow) && rule.matches_request(method, path);
        if let Some(rule) = self.deny.iter().find(matches) {
            return Decision::Deny {
                rule: Some(rule),
                reason: "deny rule matches".into(),
            };
        }
        self.decide_allow(flow, self.allow.iter(), |rule| matches(&rule))
    }

    /// Finds the first matching allow rule whose address check passes.
    fn decide_allow<'p>(
        &'p self,
        flow: &FlowFacts<'_>,
        rules: impl Iterator<Item = &'p Rule>,
        matches: impl Fn(&Rule) -> bool,
    ) -> Decision<'p> {
        let mut matched_non_public = None;
        for rule in rules.filter(|rule| matches(rule)) {
            if is_public(flow.addr) || rule.names_addr(flow.addr) {
                return Decision::Allow { rule };
            }
            matched_non_public.get_or_insert(rule);
        }

        let target = describe_target(flow);
        let reason = match matched_non_public {
            Some(rule) => format!(
                "{target}: address {} is not public; allow it with cidr={} in the rule \"{rule}\"",
                flow.addr,
                host_net(flow.addr)
            ),
            None => format!("{target}: no allow rule matches"),
        };
        Decision::Deny { rule: None, reason }
    }
}

fn matches_flow(rule: &Rule, flow: &FlowFacts<'_>) -> bool {
    rule.matches_name(flow.name)
        && rule.matches_port(flow.port)
        && rule.matches_proto(flow.proto)
        && rule.matches_addr(flow.addr)
}

fn describe_target(flow: &FlowFacts<'_>) -> String {
    match flow.name {
        Some(name) => format!("{} {name} ({}) port {}", flow.proto, flow.addr, flow.port),
        None => format!("{} {} port {}", flow.proto, flow.addr, flow.port),
    }
}

fn host_net(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(_) => format!("{addr}/32"),
        IpAddr::V6(_) => format!("{addr}/128"),
    }
}

/// Reports whether an address is reachable on the public internet. Loopback, RFC 1918,
/// unique-local, link-local (which holds the cloud metadata address 169.254.169.254),
/// CGNAT, unspecified, multicast, broadcast, documentation, benchmarking and reserved ranges
/// are not.
pub fn is_public(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(addr: Ipv4Addr) -> bool {
    let [a, b, c, _] = addr.octets();
    let private = addr.is_unspecified()
        || addr.is_loopback()
        || addr.is_private()
        || addr.is_link_local()
        || addr.is_multicast()
        || addr.is_broadcast()
        || addr.is_documentation()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19));
    !private
}

fn is_public_v6(addr: Ipv6Addr) -> bool {
    if let Some(v4) = addr.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let segments = addr.segments();
    let private = addr.is_unspecified()
        || addr.is_loopback()
        || addr.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00
        || (segments[0] & 0xffc0) == 0xfe80
        || (segments[0] & 0xffc0) == 0xfec0
        || (segments[0] == 0x2001 && segments[1] == 0x0db8)
        || (segments[0] == 0x0064 && segments[1] == 0xff9b)
        || segments[..6] == [0; 6];
    !private
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], deny: &[&str]) -> Policy {
        let own = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Policy::parse(&own(allow), &own(deny)).unwrap()
    }

    fn flow(name: Option<&str>, addr: &str, port: u16) -> FlowFacts<'static> {
        let name = name.map(|n| &*Box::leak(n.to_string().into_boxed_str()));
        FlowFacts {
            name,
            addr: addr.parse().unwrap(),
            port,
            proto: Proto::Tcp,
        }
    }

    #[test]
    fn allowed_name_on_public_address() {
        let p = policy(&["domain=*.github.com port=443"], &[]);
        assert!(
            p.decide_flow(&flow(Some("api.github.com"), "140.82.112.5", 443))
                .is_allow()
        );
        assert!(
            !p.decide_flow(&flow(Some("api.github.com"), "140.82.112.5", 80))
                .is_allow()
        );
        assert!(
            !p.decide_flow(&flow(Some("github.com"), "140.82.112.5", 443))
                .is_allow()
        );
    }

    #[test]
    fn non_public_address_needs_cidr() {
        let p = policy(&["domain=web.test"], &[]);
        let decision = p.decide_flow(&flow(Some("web.test"), "127.0.0.1", 80));
        let Decision::Deny { reason, .. } = decision else {
            panic!("allowed {decision:?}")
        };
        assert!(reason.contains("127.0.0.1 is not public"), "{reason}");
        assert!(reason.contains("cidr=127.0.0.1/32"), "{reason}");

        let p = policy(&["domain=web.test cidr=127.0.0.0/8"], &[]);
        assert!(
            p.decide_flow(&flow(Some("web.test"), "127.0.0.1", 80))
                .is_allow()
        );
    }

    #[test]
    fn metadata_address_is_refused() {
        let p = policy(&["domain=*"], &[]);
        assert!(
            !p.decide_flow(&flow(Some("metadata.test"), "169.254.169.254", 80))
                .is_allow()
        );
    }

    #[test]
    fn ip_literal_matches_only_rules_without_domain() {
        let p = policy(&["domain=*"], &[]);
        assert!(!p.decide_flow(&flow(None, "140.82.112.5", 443)).is_allow());
        let p = policy(&["cidr=140.82.112.0/20"], &[]);
        assert!(p.decide_flow(&flow(None, "140.82.112.5", 443)).is_allow());
    }

    #[test]
    fn deny_wins_over_allow() {
        let p = policy(&["domain=*.example.com"], &["domain=evil.example.com"]);
        assert!(
            !p.decide_flow(&flow(Some("evil.example.com"), "93.184.216.34", 443))
                .is_allow()
        );
        assert!(!p.decide_name("evil.example.com").is_allow());
        assert!(p.decide_name("good.example.com").is_allow());
    }

    #[test]
    fn deny_with_port_does_not_block_name() {
        let p = policy(&["domain=x.example.com"], &["domain=x.example.com port=22"]);
        assert!(p.decide_name("x.example.com").is_allow());
        assert!(
            !p.decide_flow(&flow(Some("x.example.com"), "93.184.216.34", 22))
                .is_allow()
        );
    }

    #[test]
    fn name_without_any_rule_is_denied() {
        let p = policy(&["domain=a.test"], &[]);
        assert!(!p.decide_name("b.test").is_allow());
        let p = policy(&["port=443"], &[]);
        assert!(p.decide_name("b.test").is_allow());
    }

    #[test]
    fn method_rule_allows_connection_but_checks_requests() {
        let p = policy(&["domain=api.test method=GET,HEAD path=/repos/*"], &[]);
        let f = flow(Some("api.test"), "140.82.112.5", 80);
        let Decision::Allow { rule } = p.decide_flow(&f) else {
            panic!("connection denied")
        };
        assert!(p.checks_requests(&f, rule));
        assert!(p.decide_request(&f, "GET", "/repos/a").is_allow());
        assert!(p.decide_request(&f, "HEAD", "/repos/a/b").is_allow());
        assert!(!p.decide_request(&f, "POST", "/repos/a").is_allow());
        assert!(!p.decide_request(&f, "GET", "/users").is_allow());
    }

    #[test]
    fn plain_rule_wins_over_method_rule_for_connection() {
        let p = policy(&["domain=api.test method=GET", "domain=api.test"], &[]);
        let f = flow(Some("api.test"), "140.82.112.5", 80);
        let Decision::Allow { rule } = p.decide_flow(&f) else {
            panic!("connection denied")
        };
        assert!(!rule.is_http());
        assert!(!p.checks_requests(&f, rule));
        assert!(p.decide_request(&f, "DELETE", "/x").is_allow());
    }

    #[test]
    fn http_deny_rule_checks_requests() {
        let p = policy(&["domain=api.test"], &["domain=api.test method=DELETE"]);
        let f = flow(Some("api.test"), "140.82.112.5", 80);
        let Decision::Allow { rule } = p.decide_flow(&f) else {
            panic!("connection denied")
        };
        assert!(p.checks_requests(&f, rule));
        assert!(p.decide_request(&f, "GET", "/x").is_allow());
        assert!(!p.decide_request(&f, "DELETE", "/x").is_allow());
    }

    #[test]
    fn public_address_table() {
        let cases = [
            ("8.8.8.8", true),
            ("140.82.112.5", true),
            ("127.0.0.1", false),
            ("10.1.2.3", false),
            ("172.16.0.1", false),
            ("192.168.1.1", false),
            ("169.254.169.254", false),
            ("100.64.0.1", false),
            ("0.0.0.0", false),
            ("198.18.0.1", false),
            ("224.0.0.1", false),
            ("255.255.255.255", false),
            ("2606:4700::1111", true),
            ("::1", false),
            ("::", false),
            ("fd00::1", false),
            ("fe80::1", false),
            ("::ffff:127.0.0.1", false),
            ("::ffff:8.8.8.8", true),
            ("ff02::1", false),
        ];
        for (addr, public) in cases {
            assert_eq!(is_public(addr.parse().unwrap()), public, "{addr}");
        }
    }
}
