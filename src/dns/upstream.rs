//! The upstream resolver on the host side: construction from `--resolver`, and lookups whose
//! outcome maps onto the response codes the jail receives.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;

const DEFAULT_PORT: u16 = 53;

/// The accepted `--resolver` forms, for error messages.
const ACCEPTED_FORMS: &str = "IP, IP:PORT or [IPv6]:PORT, for example 192.0.2.53, \
                              192.0.2.53:5353, 2001:db8::53 or [2001:db8::53]:5353";

/// A `--resolver` value that is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid resolver address {value:?}: expected {ACCEPTED_FORMS}")]
pub struct InvalidResolverAddr {
    pub value: String,
}

/// Builds the upstream resolver, with caching that respects the upstream TTLs.
///
/// `arg` is the `--resolver` value: `IP`, `IP:PORT` or `[IPv6]:PORT`, port 53 by default. That
/// server is asked over UDP and TCP, and /etc/hosts is not consulted. `None` reads the host's
/// /etc/resolv.conf, with /etc/hosts consulted first as the host's own programs do.
pub fn build_resolver(arg: Option<&str>) -> anyhow::Result<TokioResolver> {
    match arg {
        Some(value) => resolver_for(parse_resolver_addr(value)?),
        None => system_resolver(),
    }
}

/// Parses a `--resolver` value into the server's socket address.
pub fn parse_resolver_addr(value: &str) -> Result<SocketAddr, InvalidResolverAddr> {
    let invalid = || InvalidResolverAddr {
        value: value.to_string(),
    };
    let trimmed = value.trim();

    let addr = if let Ok(addr) = trimmed.parse::<SocketAddr>() {
        addr
    } else if let Ok(ip) = trimmed.parse::<IpAddr>() {
        SocketAddr::new(ip, DEFAULT_PORT)
    } else {
        // `[2001:db8::53]` without a port.
        let bracketed = trimmed
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'));
        let ip = bracketed.and_then(|inner| inner.parse::<std::net::Ipv6Addr>().ok());
        SocketAddr::new(IpAddr::V6(ip.ok_or_else(invalid)?), DEFAULT_PORT)
    };

    if addr.port() == 0 || addr.ip().is_unspecified() {
        return Err(invalid());
    }
    Ok(addr)
}

/// Builds a resolver that asks only `server`, over UDP and over TCP.
pub fn resolver_for(server: SocketAddr) -> anyhow::Result<TokioResolver> {
    let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
        .into_iter()
        .map(|mut connection| {
            connection.port = server.port();
            connection
        })
        .collect();
    let name_server = NameServerConfig::new(server.ip(), true, connections);
    let config = ResolverConfig::from_name_servers(vec![name_server]);

    let mut options = ResolverOpts::default();
    options.use_hosts_file = ResolveHosts::Never;

    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(options)
        .build()
        .with_context(|| format!("building the DNS resolver for {server} failed"))
}

fn system_resolver() -> anyhow::Result<TokioResolver> {
    let builder = TokioResolver::builder_tokio().context(
        "reading the host's DNS configuration from /etc/resolv.conf failed \
         (pass --resolver IP[:PORT] to name an upstream DNS server)",
    )?;
    builder
        .build()
        .context("building the DNS resolver from /etc/resolv.conf failed")
}

/// The reason an upstream lookup returned no records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LookupError {
    /// The name does not exist (NXDOMAIN).
    NxDomain,
    /// The name exists but has no records of the requested type (NOERROR, empty answer).
    NoRecords,
    /// Anything else: timeouts, SERVFAIL or REFUSED from upstream, I/O errors.
    Failed(String),
}

impl From<NetError> for LookupError {
    fn from(err: NetError) -> Self {
        if err.is_nx_domain() {
            LookupError::NxDomain
        } else if err.is_no_records_found() {
            LookupError::NoRecords
        } else {
            LookupError::Failed(err.to_string())
        }
    }
}

/// Looks up one record type and returns the answer section, CNAME records included.
pub(super) async fn lookup(
    resolver: &TokioResolver,
    name: &Name,
    record_type: RecordType,
) -> Result<Vec<Record>, LookupError> {
    let lookup = resolver.lookup(name.clone(), record_type).await?;
    Ok(lookup.answers().to_vec())
}

/// The real addresses of a name, from one A and one AAAA lookup.
#[derive(Debug, Clone, Default)]
pub(super) struct Addresses {
    pub addrs: Vec<IpAddr>,
    /// The lowest TTL among the address records, in seconds.
    pub ttl: u32,
    /// Every answer record of both lookups, CNAME records included.
    pub records: Vec<Record>,
}

/// Looks up the A and AAAA records of a name in parallel.
///
/// Addresses from either lookup make the result a success even if the other lookup failed.
/// Without addresses, NXDOMAIN from either lookup wins, then any failure, and two empty
/// answers mean the name exists without addresses.
pub(super) async fn lookup_addresses(
    resolver: &TokioResolver,
    name: &Name,
) -> Result<Addresses, LookupError> {
    let (v4, v6) = tokio::join!(
        lookup(resolver, name, RecordType::A),
        lookup(resolver, name, RecordType::AAAA)
    );

    let mut found = Addresses::default();
    for records in [&v4, &v6].into_iter().flatten() {
        found.records.extend(records.iter().cloned());
    }
    let address_records: Vec<&Record> = found
        .records
        .iter()
        .filter(|record| matches!(record.data, RData::A(_) | RData::AAAA(_)))
        .collect();
    found.addrs = address_records
        .iter()
        .filter_map(|record| record.data.ip_addr())
        .collect();
    found.ttl = address_records
        .iter()
        .map(|record| record.ttl)
        .min()
        .unwrap_or(0);
    if !found.addrs.is_empty() {
        return Ok(found);
    }

    let errors = [v4.err(), v6.err()];
    if errors.contains(&Some(LookupError::NxDomain)) {
        return Err(LookupError::NxDomain);
    }
    let failure = errors
        .into_iter()
        .flatten()
        .find(|err| *err != LookupError::NoRecords);
    match failure {
        Some(failure) => Err(failure),
        None => Ok(found),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolver_address_forms() {
        let cases = [
            ("127.0.0.1", "127.0.0.1:53"),
            ("127.0.0.1:5353", "127.0.0.1:5353"),
            ("::1", "[::1]:53"),
            ("[::1]", "[::1]:53"),
            ("[::1]:5353", "[::1]:5353"),
            (" 127.0.0.2 ", "127.0.0.2:53"),
        ];
        for (value, expected) in cases {
            let parsed = parse_resolver_addr(value).unwrap();
            assert_eq!(parsed, expected.parse::<SocketAddr>().unwrap(), "{value}");
        }
    }

    #[test]
    fn invalid_resolver_addresses() {
        for value in [
            "",
            "dns.example",
            "127.0.0.1:",
            "127.0.0.1:65536",
            "127.0.0.1:0",
            "0.0.0.0",
            "[::1",
            "::1]:53",
            "[127.0.0.1]:53",
            "127.0.0.1:53:53",
            "udp://127.0.0.1",
        ] {
            let err = parse_resolver_addr(value).unwrap_err();
            let message = err.to_string();
            assert!(message.contains(&format!("{value:?}")), "{message}");
            assert!(message.contains("IP, IP:PORT or [IPv6]:PORT"), "{message}");
        }
    }

    #[test]
    fn build_resolver_reports_invalid_value() {
        let err = build_resolver(Some("resolver.example")).unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("\"resolver.example\""), "{message}");
        assert!(message.contains("[IPv6]:PORT"), "{message}");
    }

    #[tokio::test]
    async fn build_resolver_accepts_loopback_server() {
        // Building sends no query, so naming a port without a server is harmless.
        assert!(build_resolver(Some("127.0.0.1:5353")).is_ok());
        assert!(build_resolver(Some("[::1]:5353")).is_ok());
    }
}
