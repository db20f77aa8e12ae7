//! The table of synthetic addresses the jail receives in place of real ones.
//!
//! Each allowed name gets one index, and the index gives both of its synthetic addresses: the
//! IPv4 address is 198.18.0.0 plus the index and the IPv6 address is fd6e:6a00:0:1:: plus the
//! index. A flow to a synthetic address is therefore tied to exactly one name.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// First address of the IPv4 synthetic range 198.18.0.0/16. The other half of the
/// benchmarking block, 198.19.0.0/16, contains the jail's own addresses and is never handed out.
pub const SYNTHETIC_V4_NET: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);
pub const SYNTHETIC_V4_PREFIX_LEN: u8 = 16;

/// First address of the IPv6 synthetic range fd6e:6a00:0:1::/96, a unique-local prefix.
pub const SYNTHETIC_V6_NET: Ipv6Addr = Ipv6Addr::new(0xfd6e, 0x6a00, 0, 1, 0, 0, 0, 0);
pub const SYNTHETIC_V6_PREFIX_LEN: u8 = 96;

/// Maximum number of names one session can resolve. The IPv4 range limits it: 198.18.0.0 is
/// never used, so the indices run from 1 to 65535.
pub const MAX_NAMES: u32 = 65535;

/// The name behind a synthetic address and the real addresses last resolved for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntheticEntry {
    /// The name as the policy matches it: lowercase, without the trailing dot.
    pub name: String,
    /// The real addresses from the latest upstream answer, IPv4 and IPv6 mixed.
    ///
    /// NOTE: the list changes only when the jail queries the name again, so a client that
    /// caches the synthetic address beyond its TTL keeps reaching the addresses of that time.
    pub addrs: Vec<IpAddr>,
}

/// The synthetic IPv4 and IPv6 address of one name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntheticAddrs {
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
}

/// Every synthetic address is already assigned to a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("all {MAX_NAMES} synthetic addresses are assigned")]
pub struct TableFull;

/// The session's map between allowed names and their synthetic addresses.
///
/// Entries are never removed, so a name keeps its addresses for the whole session and a flow
/// opened long after the DNS answer still finds its name.
#[derive(Debug, Default)]
pub struct NameTable {
    table: RwLock<Table>,
}

#[derive(Debug, Default)]
struct Table {
    index_by_name: HashMap<String, u32>,
    /// `entries[i - 1]` belongs to index `i`.
    entries: Vec<SyntheticEntry>,
}

impl NameTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `addrs` as the real addresses of `name`, replacing the previous list, and returns
    /// the name's synthetic addresses. A name seen for the first time gets the next free index.
    pub fn assign(&self, name: &str, addrs: Vec<IpAddr>) -> Result<SyntheticAddrs, TableFull> {
        let mut table = self.write();
        if let Some(&index) = table.index_by_name.get(name) {
            table.entries[index as usize - 1].addrs = addrs;
            return Ok(synthetic_addrs(index));
        }

        let index = u32::try_from(table.entries.len() + 1).map_err(|_| TableFull)?;
        if index > MAX_NAMES {
            return Err(TableFull);
        }
        table.entries.push(SyntheticEntry {
            name: name.to_string(),
            addrs,
        });
        table.index_by_name.insert(name.to_string(), index);
        Ok(synthetic_addrs(index))
    }

    /// Returns the name behind a synthetic address and the real addresses last resolved for
    /// it, or `None` for any address that was not handed out.
    pub fn lookup(&self, addr: IpAddr) -> Option<SyntheticEntry> {
        let index = index_of(addr)?;
        self.read().entries.get(index as usize - 1).cloned()
    }

    /// Returns the synthetic addresses of a name that was already assigned.
    pub fn synthetic_addrs(&self, name: &str) -> Option<SyntheticAddrs> {
        self.read()
            .index_by_name
            .get(name)
            .map(|&index| synthetic_addrs(index))
    }

    /// Returns the number of names assigned so far.
    pub fn len(&self) -> usize {
        self.read().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reports whether `addr` lies inside either synthetic range, assigned or not.
    pub fn is_synthetic(addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(v4) => v4.octets()[..2] == SYNTHETIC_V4_NET.octets()[..2],
            IpAddr::V6(v6) => v6.segments()[..6] == SYNTHETIC_V6_NET.segments()[..6],
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.table
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.table
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn synthetic_addrs(index: u32) -> SyntheticAddrs {
    SyntheticAddrs {
        v4: Ipv4Addr::from(u32::from(SYNTHETIC_V4_NET) | index),
        v6: Ipv6Addr::from(u128::from(SYNTHETIC_V6_NET) | u128::from(index)),
    }
}

/// Returns the index a synthetic address encodes, or `None` outside the assignable indices.
fn index_of(addr: IpAddr) -> Option<u32> {
    if !NameTable::is_synthetic(addr) {
        return None;
    }
    let index = match addr {
        IpAddr::V4(v4) => u32::from(v4) & 0xffff,
        IpAddr::V6(v6) => (u128::from(v6) & 0xffff_ffff) as u32,
    };
    (1..=MAX_NAMES).contains(&index).then_some(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn first_name_gets_index_one() {
        let table = NameTable::new();
        let addrs = table.assign("web.test", vec![ip("127.0.0.1")]).unwrap();
        assert_eq!(addrs.v4, "198.18.0.1".parse::<Ipv4Addr>().unwrap());
        assert_eq!(addrs.v6, "fd6e:6a00:0:1::1".parse::<Ipv6Addr>().unwrap());
    }

    #[test]
    fn same_name_keeps_its_addresses() {
        let table = NameTable::new();
        let first = table.assign("web.test", vec![ip("127.0.0.1")]).unwrap();
        table.assign("other.test", vec![ip("127.0.0.2")]).unwrap();
        let again = table.assign("web.test", vec![ip("127.0.0.3")]).unwrap();
        assert_eq!(first, again);
        assert_eq!(table.len(), 2);
        assert_eq!(table.synthetic_addrs("web.test"), Some(first));
        assert_eq!(table.synthetic_addrs("missing.test"), None);
    }

    #[test]
    fn names_get_distinct_addresses() {
        let table = NameTable::new();
        let web = table.assign("web.test", vec![]).unwrap();
        let other = table.assign("other.test", vec![]).unwrap();
        assert_ne!(web.v4, other.v4);
        assert_ne!(web.v6, other.v6);
    }

    #[test]
    fn lookup_returns_latest_addresses() {
        let table = NameTable::new();
        let addrs = table
            .assign("web.test", vec![ip("127.0.0.1"), ip("::1")])
            .unwrap();
        table.assign("web.test", vec![ip("127.0.0.9")]).unwrap();

        let expected = SyntheticEntry {
            name: "web.test".into(),
            addrs: vec![ip("127.0.0.9")],
        };
        assert_eq!(table.lookup(IpAddr::V4(addrs.v4)), Some(expected.clone()));
        assert_eq!(table.lookup(IpAddr::V6(addrs.v6)), Some(expected));
    }

    #[test]
    fn lookup_rejects_unassigned_addresses() {
        let table = NameTable::new();
        table.assign("web.test", vec![]).unwrap();
        for addr in [
            "198.18.0.0",
            "198.18.0.2",
            "198.19.0.1",
            "127.0.0.1",
            "fd6e:6a00:0:1::",
        ] {
            assert_eq!(table.lookup(ip(addr)), None, "{addr}");
        }
        assert_eq!(table.lookup(ip("fd6e:6a00:0:1::1:0")), None);
    }

    #[test]
    fn synthetic_range_table() {
        let cases = [
            ("198.18.0.0", true),
            ("198.18.255.255", true),
            ("198.19.0.1", false),
            ("198.17.255.255", false),
            ("fd6e:6a00:0:1::1", true),
            ("fd6e:6a00:0:1::ffff:ffff", true),
            ("fd6e:6a00:0:2::1", false),
            ("::1", false),
        ];
        for (addr, synthetic) in cases {
            assert_eq!(NameTable::is_synthetic(ip(addr)), synthetic, "{addr}");
        }
    }

    #[test]
    fn full_table_rejects_new_names() {
        let table = NameTable::new();
        for i in 0..MAX_NAMES {
            table.assign(&format!("n{i}.test"), vec![]).unwrap();
        }
        let last = table
            .synthetic_addrs(&format!("n{}.test", MAX_NAMES - 1))
            .unwrap();
        assert_eq!(last.v4, "198.18.255.255".parse::<Ipv4Addr>().unwrap());
        assert_eq!(table.assign("one-more.test", vec![]), Err(TableFull));
        assert!(table.assign("n0.test", vec![ip("127.0.0.1")]).is_ok());
    }
}
