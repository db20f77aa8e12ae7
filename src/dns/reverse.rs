//! Reverse lookups (names under in-addr.arpa and ip6.arpa) that are answered without upstream.

use std::net::IpAddr;

use hickory_proto::rr::Name;
use ipnet::IpNet;

use super::names::NameTable;
use crate::policy::is_public;

/// A reverse name that the DNS service answers locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LocalReverse {
    /// The complete reverse name of an address in a synthetic range.
    Synthetic(IpAddr),
    /// A reverse name whose addresses are all non-public, such as 1.0.0.10.in-addr.arpa or
    /// 168.192.in-addr.arpa. Asking the upstream resolver about it would reveal the jail's
    /// interest in private networks, and no public server has authoritative data for them.
    NonPublic,
}

/// Classifies a query name, returning `None` for a name that is not a local reverse name.
pub(super) fn classify(name: &Name) -> Option<LocalReverse> {
    let (net, whole_name) = parse_reverse_suffix(name)?;
    let full_len = match net {
        IpNet::V4(_) => 32,
        IpNet::V6(_) => 128,
    };
    if whole_name && net.prefix_len() == full_len && NameTable::is_synthetic(net.addr()) {
        return Some(LocalReverse::Synthetic(net.addr()));
    }

    // in-addr.arpa and ip6.arpa themselves cover public space too.
    if net.prefix_len() == 0 {
        return None;
    }
    // The non-public ranges are aligned CIDR blocks. A network whose first and last addresses
    // are both non-public therefore lies inside them, unless it spans two blocks with public
    // space between them, and no /8 or longer network does that.
    let non_public = !is_public(net.network()) && !is_public(net.broadcast());
    non_public.then_some(LocalReverse::NonPublic)
}

/// Parses the longest suffix of `name` that is a reverse name, and reports whether that suffix
/// is the whole name. A name with extra labels on the left, such as x.1.0.0.10.in-addr.arpa,
/// lies inside the zone of its suffix, so the suffix decides where it is answered.
fn parse_reverse_suffix(name: &Name) -> Option<(IpNet, bool)> {
    let labels = name.iter().count();
    (0..labels).find_map(|skipped| {
        let mut suffix = name.trim_to(labels - skipped);
        suffix.set_fqdn(true);
        let net = suffix.parse_arpa_name().ok()?;
        Some((net, skipped == 0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify_text(name: &str) -> Option<LocalReverse> {
        classify(&Name::from_ascii(name).unwrap())
    }

    #[test]
    fn synthetic_addresses_are_local() {
        let v4 = classify_text("5.0.18.198.in-addr.arpa.");
        assert_eq!(
            v4,
            Some(LocalReverse::Synthetic("198.18.0.5".parse().unwrap()))
        );

        let v6_name = Name::from("fd6e:6a00:0:1::5".parse::<IpAddr>().unwrap());
        let v6 = classify(&v6_name);
        assert_eq!(
            v6,
            Some(LocalReverse::Synthetic("fd6e:6a00:0:1::5".parse().unwrap()))
        );
    }

    #[test]
    fn non_public_reverse_names_are_local() {
        for name in [
            "1.0.0.10.in-addr.arpa.",
            "10.in-addr.arpa.",
            "168.192.in-addr.arpa.",
            "1.0.0.127.in-addr.arpa.",
            "254.169.254.169.in-addr.arpa.",
            "18.198.in-addr.arpa.",
            "1.0.19.198.in-addr.arpa.",
            "d.f.ip6.arpa.",
            "x.1.0.0.10.in-addr.arpa.",
            "x.5.0.18.198.in-addr.arpa.",
        ] {
            assert_eq!(classify_text(name), Some(LocalReverse::NonPublic), "{name}");
        }
        let loopback = Name::from("::1".parse::<IpAddr>().unwrap());
        assert_eq!(classify(&loopback), Some(LocalReverse::NonPublic));
    }

    #[test]
    fn public_and_other_names_go_upstream() {
        for name in [
            "5.112.82.140.in-addr.arpa.",
            "192.in-addr.arpa.",
            "in-addr.arpa.",
            "ip6.arpa.",
            "web.test.",
            "x.5.112.82.140.in-addr.arpa.",
        ] {
            assert_eq!(classify_text(name), None, "{name}");
        }
    }
}
