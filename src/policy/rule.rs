//! Parsing of one rule: a list of `key=value` words.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// The keys a rule may name, in the order the help text lists them.
pub const KEYS: &[&str] = &["domain", "method", "path", "port", "proto", "cidr"];

/// A rule could not be parsed. The message quotes the offending word.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid rule {rule:?}: {problem}")]
pub struct RuleError {
    pub rule: String,
    pub problem: String,
}

/// Transport protocol of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// The `domain` value of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainPattern {
    /// `*`: every name.
    Any,
    /// `github.com`: exactly that name.
    Exact(String),
    /// `*.github.com`: one or more labels below the suffix, never the suffix itself.
    Below(String),
}

impl DomainPattern {
    /// Checks a DNS name, already lowercased and without a trailing dot.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            DomainPattern::Any => true,
            DomainPattern::Exact(exact) => name == exact,
            DomainPattern::Below(suffix) => name
                .strip_suffix(suffix.as_str())
                .and_then(|head| head.strip_suffix('.'))
                .is_some_and(|head| !head.is_empty()),
        }
    }
}

/// An inclusive port range; a single port has `first == last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

/// One parsed `--allow` or `--deny` rule. A key the rule does not name matches anything,
/// except `proto`, which defaults to TCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The rule as the user wrote it, for messages and the audit log.
    pub text: String,
    pub domain: Option<DomainPattern>,
    pub methods: Option<Vec<String>>,
    pub paths: Option<Vec<String>>,
    pub ports: Option<Vec<PortRange>>,
    pub protos: Vec<Proto>,
    pub cidrs: Option<Vec<IpNet>>,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Rule {
    /// Parses a rule such as `domain=*.github.com port=443`.
    pub fn parse(text: &str) -> Result<Rule, RuleError> {
        let fail = |problem: String| RuleError {
            rule: text.to_string(),
            problem,
        };
        let mut rule = Rule {
            text: text.split_whitespace().collect::<Vec<_>>().join(" "),
            domain: None,
            methods: None,
            paths: None,
            ports: None,
            protos: vec![Proto::Tcp],
            cidrs: None,
        };
        let mut seen: Vec<&str> = Vec::new();
        for word in text.split_whitespace() {
            let Some((key, value)) = word.split_once('=') else {
                return Err(fail(format!(
                    "{word:?} is not a key=value word; valid keys are {}",
                    KEYS.join(", ")
                )));
            };
            if seen.contains(&key) {
                return Err(fail(format!("key {key:?} appears twice")));
            }
            if value.is_empty() {
                return Err(fail(format!("{word:?} has an empty value")));
            }
            match key {
                "domain" => rule.domain = Some(parse_domain(value).map_err(fail)?),
                "method" => rule.methods = Some(parse_methods(value).map_err(fail)?),
                "path" => rule.paths = Some(parse_paths(value).map_err(fail)?),
                "port" => rule.ports = parse_ports(value).map_err(fail)?,
                "proto" => rule.protos = parse_protos(value).map_err(fail)?,
                "cidr" => rule.cidrs = Some(parse_cidrs(value).map_err(fail)?),
                _ => {
                    return Err(fail(format!(
                        "unknown key {key:?} in {word:?}; valid keys are {}",
                        KEYS.join(", ")
                    )));
                }
            }
            seen.push(key);
        }
        if seen.is_empty() {
            return Err(fail(format!(
                "a rule needs at least one key=value word; valid keys are {}",
                KEYS.join(", ")
            )));
        }
        Ok(rule)
    }

    /// Reports whether the rule names HTTP request keys (`method` or `path`).
    pub fn is_http(&self) -> bool {
        self.methods.is_some() || self.paths.is_some()
    }

    /// Checks the `method` and `path` keys against a request; `path` is normalized.
    pub fn matches_request(&self, method: &str, path: &str) -> bool {
        let method_ok = self
            .methods
            .as_ref()
            .is_none_or(|methods| methods.iter().any(|m| m == method));
        let path_ok = self
            .paths
            .as_ref()
            .is_none_or(|patterns| patterns.iter().any(|p| crate::http::path::matches(p, path)));
        method_ok && path_ok
    }

    /// Checks the keys that concern the name alone.
    pub fn matches_name(&self, name: Option<&str>) -> bool {
        match (&self.domain, name) {
            (None, _) => true,
            (Some(pattern), Some(name)) => pattern.matches(name),
            (Some(_), None) => false,
        }
    }

    pub fn matches_port(&self, port: u16) -> bool {
        self.ports
            .as_ref()
            .is_none_or(|ranges| ranges.iter().any(|r| r.first <= port && port <= r.last))
    }

    pub fn matches_proto(&self, proto: Proto) -> bool {
        self.protos.contains(&proto)
    }

    /// Checks the `cidr` key; a rule without one matches every address.
    pub fn matches_addr(&self, addr: IpAddr) -> bool {
        self.cidrs
            .as_ref()
            .is_none_or(|nets| nets.iter().any(|net| net.contains(&addr)))
    }

    /// Reports whether the rule's `cidr` key explicitly contains the address.
    pub fn names_addr(&self, addr: IpAddr) -> bool {
        self.cidrs
            .as_ref()
            .is_some_and(|nets| nets.iter().any(|net| net.contains(&addr)))
    }
}

fn parse_domain(value: &str) -> Result<DomainPattern, String> {
    if value == "*" {
        return Ok(DomainPattern::Any);
    }
    if value.contains(',') {
        return Err(format!(
            "domain={value:?} names more than one domain; write one rule per domain"
        ));
    }
    let name = value
        .strip_suffix('.')
        .unwrap_or(value)
        .to_ascii_lowercase();
    let (below, name) = match name.strip_prefix("*.") {
        Some(rest) => (true, rest.to_string()),
        None => (false, name),
    };
    validate_name(&name).map_err(|why| {
        format!("domain={value:?} is not a valid pattern: {why}; write a name such as github.com, *.github.com or *")
    })?;
    Ok(if below {
        DomainPattern::Below(name)
    } else {
        DomainPattern::Exact(name)
    })
}

fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if name.len() > 253 {
        return Err("the name is longer than 253 characters".into());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("it has an empty label".into());
        }
        if label.len() > 63 {
            return Err(format!("label {label:?} is longer than 63 characters"));
        }
        if label.contains('*') {
            return Err(
                "a wildcard may only stand alone or as the first label, as in *.example.com".into(),
            );
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!("character {c:?} is not allowed in a DNS name"));
        }
    }
    Ok(())
}

fn parse_methods(value: &str) -> Result<Vec<String>, String> {
    value
        .split(',')
        .map(|method| {
            let valid = !method.is_empty()
                && method
                    .bytes()
                    .all(|b| b.is_ascii_alphabetic() || b == b'-' || b == b'_');
            if valid {
                Ok(method.to_ascii_uppercase())
            } else {
                Err(format!(
                    "method={value:?}: {method:?} is not an HTTP method; write e.g. GET,HEAD"
                ))
            }
        })
        .collect()
}

fn parse_paths(value: &str) -> Result<Vec<String>, String> {
    value
        .split(',')
        .map(|path| {
            if !path.starts_with('/') {
                return Err(format!("path={value:?}: {path:?} does not start with '/'"));
            }
            if let Some(c) = path.chars().find(|c| c.is_ascii_control() || *c == ' ') {
                return Err(format!(
                    "path={value:?}: character {c:?} is not allowed in a path"
                ));
            }
            Ok(path.to_string())
        })
        .collect()
}

/// Parses `443`, `22,443`, `8000-8100` or `*`; `*` returns `None` (any port).
fn parse_ports(value: &str) -> Result<Option<Vec<PortRange>>, String> {
    if value == "*" {
        return Ok(None);
    }
    let port = |text: &str| -> Result<u16, String> {
        match text.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!(
                "port={value:?}: {text:?} is not a port; write a number from 1 to 65535, a list such as 22,443, a range such as 8000-8100, or *"
            )),
            Ok(port) => Ok(port),
        }
    };
    let mut ranges = Vec::new();
    for item in value.split(',') {
        let range = match item.split_once('-') {
            Some((first, last)) => PortRange {
                first: port(first)?,
                last: port(last)?,
            },
            None => {
                let single = port(item)?;
                PortRange {
                    first: single,
                    last: single,
                }
            }
        };
        if range.first > range.last {
            return Err(format!(
                "port={value:?}: range {item:?} ends before it starts"
            ));
        }
        ranges.push(range);
    }
    Ok(Some(ranges))
}

fn parse_protos(value: &str) -> Result<Vec<Proto>, String> {
    let mut protos = Vec::new();
    for item in value.split(',') {
        let proto = match item.to_ascii_lowercase().as_str() {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            _ => return Err(format!("proto={value:?}: {item:?} is not tcp or udp")),
        };
        if !protos.contains(&proto) {
            protos.push(proto);
        }
    }
    Ok(protos)
}

fn parse_cidrs(value: &str) -> Result<Vec<IpNet>, String> {
    value
        .split(',')
        .map(|item| {
            let net = match item.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => match item.parse::<IpAddr>() {
                    Ok(addr) => IpNet::from(addr),
                    Err(_) => {
                        return Err(format!(
                            "cidr={value:?}: {item:?} is not an address or network; write e.g. 203.0.113.0/24, 10.1.2.3 or ::1/128"
                        ));
                    }
                },
            };
            if net.trunc() != net {
                return Err(format!(
                    "cidr={value:?}: {item:?} has host bits set; did you mean {}?",
                    net.trunc()
                ));
            }
            Ok(net)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(text: &str) -> String {
        Rule::parse(text).unwrap_err().problem
    }

    #[test]
    fn wildcard_matches_labels_below_only() {
        let pattern = parse_domain("*.github.com").unwrap();
        assert!(pattern.matches("api.github.com"));
        assert!(pattern.matches("a.b.github.com"));
        assert!(!pattern.matches("github.com"));
        assert!(!pattern.matches("evilgithub.com"));
        assert!(!pattern.matches("github.com.evil.com"));
    }

    #[test]
    fn exact_domain_is_case_insensitive() {
        let rule = Rule::parse("domain=GitHub.com.").unwrap();
        assert_eq!(rule.domain, Some(DomainPattern::Exact("github.com".into())));
    }

    #[test]
    fn star_matches_every_name_but_not_literals() {
        let rule = Rule::parse("domain=*").unwrap();
        assert!(rule.matches_name(Some("anything.example")));
        assert!(!rule.matches_name(None));
    }

    #[test]
    fn ports_parse_lists_and_ranges() {
        let rule = Rule::parse("port=22,8000-8100").unwrap();
        assert!(rule.matches_port(22));
        assert!(rule.matches_port(8050));
        assert!(!rule.matches_port(443));
        assert!(Rule::parse("port=*").unwrap().matches_port(1));
    }

    #[test]
    fn proto_defaults_to_tcp() {
        let rule = Rule::parse("domain=x.test").unwrap();
        assert!(rule.matches_proto(Proto::Tcp));
        assert!(!rule.matches_proto(Proto::Udp));
    }

    #[test]
    fn cidr_accepts_bare_addresses() {
        let rule = Rule::parse("cidr=127.0.0.1,::1/128").unwrap();
        assert!(rule.names_addr("127.0.0.1".parse().unwrap()));
        assert!(rule.names_addr("::1".parse().unwrap()));
        assert!(!rule.names_addr("127.0.0.2".parse().unwrap()));
    }

    #[test]
    fn invalid_rules_quote_the_word() {
        let cases = [
            ("bogus=1", "unknown key \"bogus\""),
            ("domain", "\"domain\" is not a key=value word"),
            ("domain=", "empty value"),
            ("port=0", "\"0\" is not a port"),
            ("port=70000", "\"70000\" is not a port"),
            ("port=90-80", "ends before it starts"),
            ("proto=icmp", "\"icmp\" is not tcp or udp"),
            ("cidr=10.0.0.1/8", "did you mean 10.0.0.0/8"),
            ("cidr=banana", "\"banana\" is not an address"),
            ("domain=a*.com", "wildcard"),
            ("domain=a..com", "empty label"),
            ("domain=a.com,b.com", "one rule per domain"),
            ("path=api", "does not start with '/'"),
            ("method=G@T", "is not an HTTP method"),
            ("port=1 port=2", "appears twice"),
            ("   ", "at least one key=value word"),
        ];
        for (text, expected) in cases {
            let got = problem(text);
            assert!(
                got.contains(expected),
                "rule {text:?}: {got:?} lacks {expected:?}"
            );
        }
    }

    #[test]
    fn rule_text_is_normalized_whitespace() {
        let rule = Rule::parse("  domain=a.test    port=1 ").unwrap();
        assert_eq!(rule.text, "domain=a.test port=1");
    }
}
