//! The policy decision and the answer records for the one question of a query.

use hickory_proto::op::{Query, ResponseCode};
use hickory_proto::rr::rdata::svcb::{Mandatory, SvcParamKey, SvcParamValue};
use hickory_proto::rr::rdata::{A, AAAA, PTR, SVCB};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::DnsService;
use super::reverse::{self, LocalReverse};
use super::upstream::{self, LookupError};
use crate::policy::Decision;

/// Bounds of the TTL on synthetic answers, in seconds. The upper bound stops the jail from
/// caching an answer for more than a minute, so the real addresses behind a name stay fresh.
const MIN_SYNTHETIC_TTL: u32 = 1;
const MAX_SYNTHETIC_TTL: u32 = 60;

/// The decision about one query and the records the jail receives.
#[derive(Debug, Clone)]
pub(super) struct Outcome {
    pub response_code: ResponseCode,
    /// The records the jail receives, before truncation.
    pub answers: Vec<Record>,
    /// `"allow"` or `"deny"`, as in the audit log.
    pub decision: &'static str,
    pub rule: Option<String>,
    pub reason: Option<String>,
    /// The records the upstream resolver returned, as presentation-format rdata.
    pub upstream_answers: Vec<String>,
}

impl Outcome {
    pub(super) fn deny(response_code: ResponseCode, rule: Option<String>, reason: String) -> Self {
        Outcome {
            response_code,
            answers: Vec::new(),
            decision: "deny",
            rule,
            reason: Some(reason),
            upstream_answers: Vec::new(),
        }
    }

    fn allow(response_code: ResponseCode, answers: Vec<Record>) -> Self {
        Outcome {
            response_code,
            answers,
            decision: "allow",
            rule: None,
            reason: None,
            upstream_answers: Vec::new(),
        }
    }

    fn allow_with_reason(response_code: ResponseCode, reason: String) -> Self {
        Outcome {
            reason: Some(reason),
            ..Outcome::allow(response_code, Vec::new())
        }
    }

    fn from_lookup_error(err: LookupError) -> Self {
        match err {
            LookupError::NxDomain => Outcome::allow(ResponseCode::NXDomain, Vec::new()),
            LookupError::NoRecords => Outcome::allow(ResponseCode::NoError, Vec::new()),
            LookupError::Failed(message) => Outcome::allow_with_reason(
                ResponseCode::ServFail,
                format!("upstream lookup failed: {message}"),
            ),
        }
    }
}

/// Returns a name as the policy matches it: lowercase ASCII, IDNA labels in their `xn--` form,
/// without the trailing dot. The root name becomes the empty string.
pub(super) fn policy_name(name: &Name) -> String {
    let mut text = name.to_lowercase().to_ascii();
    if text.ends_with('.') {
        text.pop();
    }
    text
}

impl DnsService {
    /// Decides and answers one question. `name` is the question's name as [`policy_name`]
    /// returns it.
    pub(super) async fn answer_question(&self, query: &Query, name: &str) -> Outcome {
        if let Some(local) = reverse::classify(query.name()) {
            return self.answer_local_reverse(query, local);
        }

        let rule = match self.inner.policy.decide_name(name) {
            Decision::Allow { rule } => rule.text.clone(),
            Decision::Deny { rule, reason } => {
                let rule = rule.map(|rule| rule.text.clone());
                return Outcome::deny(ResponseCode::NXDomain, rule, reason);
            }
        };
        let mut outcome = self.answer_allowed(query, name).await;
        outcome.rule = Some(rule);
        outcome
    }

    async fn answer_allowed(&self, query: &Query, name: &str) -> Outcome {
        if query.query_class() != DNSClass::IN {
            let reason = format!("query class {} is not supported", query.query_class());
            return Outcome::allow_with_reason(ResponseCode::NotImp, reason);
        }
        match query.query_type() {
            RecordType::A | RecordType::AAAA => self.answer_address(query, name).await,
            // RFC 8482 lets a server decline ANY, and relaying it would carry real addresses.
            RecordType::ANY => Outcome::allow_with_reason(
                ResponseCode::NotImp,
                "ANY queries are not answered, so query each record type instead".to_string(),
            ),
            meta @ (RecordType::AXFR | RecordType::IXFR | RecordType::OPT | RecordType::TSIG) => {
                let reason = format!("{meta} queries are not supported");
                Outcome::allow_with_reason(ResponseCode::NotImp, reason)
            }
            _ => self.forward(query).await,
        }
    }

    /// Resolves the real addresses of an allowed name, stores them in the name table and
    /// answers with the synthetic address of the requested family. The jail receives an IPv6
    /// synthetic address even for a name that has only IPv4 addresses upstream.
    async fn answer_address(&self, query: &Query, name: &str) -> Outcome {
        let lookup = upstream::lookup_addresses(&self.inner.resolver, &upstream_name(query)).await;
        let found = match lookup {
            Ok(found) => found,
            Err(err) => return Outcome::from_lookup_error(err),
        };
        let upstream_answers = rdata_texts(&found.records);
        if found.addrs.is_empty() {
            return Outcome {
                upstream_answers,
                ..Outcome::allow(ResponseCode::NoError, Vec::new())
            };
        }

        let synthetic = match self.inner.names.assign(name, found.addrs) {
            Ok(synthetic) => synthetic,
            Err(full) => {
                self.log_table_full(name);
                let outcome = Outcome::allow_with_reason(ResponseCode::ServFail, full.to_string());
                return Outcome {
                    upstream_answers,
                    ..outcome
                };
            }
        };
        let rdata = match query.query_type() {
            RecordType::A => RData::A(A(synthetic.v4)),
            _ => RData::AAAA(AAAA(synthetic.v6)),
        };
        let ttl = found.ttl.clamp(MIN_SYNTHETIC_TTL, MAX_SYNTHETIC_TTL);
        let record = Record::from_rdata(query.name().clone(), ttl, rdata);
        Outcome {
            upstream_answers,
            ..Outcome::allow(ResponseCode::NoError, vec![record])
        }
    }

    /// Relays the records of another type. CNAME records that led to them are left out and
    /// the records take the queried name as owner, so the jail never learns alias names.
    async fn forward(&self, query: &Query) -> Outcome {
        let record_type = query.query_type();
        let lookup =
            upstream::lookup(&self.inner.resolver, &upstream_name(query), record_type).await;
        let records = match lookup {
            Ok(records) => records,
            Err(err) => return Outcome::from_lookup_error(err),
        };

        let upstream_answers = rdata_texts(&records);
        let answers = records
            .into_iter()
            .filter(|record| record.record_type() == record_type)
            .map(|mut record| {
                record.name = query.name().clone();
                remove_address_hints(&mut record.data);
                record
            })
            .collect();
        Outcome {
            upstream_answers,
            ..Outcome::allow(ResponseCode::NoError, answers)
        }
    }

    /// Answers a reverse name that never goes upstream: the PTR of an assigned synthetic
    /// address is its name, and everything else is NXDOMAIN.
    fn answer_local_reverse(&self, query: &Query, local: LocalReverse) -> Outcome {
        let addr = match local {
            LocalReverse::Synthetic(addr) => addr,
            LocalReverse::NonPublic => {
                let reason = "reverse lookup of a non-public address is answered locally";
                return Outcome::deny(ResponseCode::NXDomain, None, reason.to_string());
            }
        };
        let Some(entry) = self.inner.names.lookup(addr) else {
            let reason = format!("synthetic address {addr} is not assigned to a name");
            return Outcome::deny(ResponseCode::NXDomain, None, reason);
        };

        let reason = format!("synthetic address of {}", entry.name);
        let mut outcome = Outcome::allow_with_reason(ResponseCode::NoError, reason);
        if query.query_type() != RecordType::PTR {
            return outcome;
        }
        match Name::from_ascii(format!("{}.", entry.name)) {
            Ok(target) => {
                let rdata = RData::PTR(PTR(target));
                let record = Record::from_rdata(query.name().clone(), MAX_SYNTHETIC_TTL, rdata);
                outcome.answers.push(record);
            }
            Err(err) => {
                outcome.response_code = ResponseCode::ServFail;
                outcome.reason = Some(format!("name {:?} is not valid: {err}", entry.name));
            }
        }
        outcome
    }

    /// Logs a full name table once per session, because every later name fails the same way.
    fn log_table_full(&self, name: &str) {
        use std::sync::atomic::Ordering;
        if !self.inner.table_full_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(name, "no synthetic address left, so new names get SERVFAIL");
        }
    }
}

/// Returns the name sent upstream: lowercase, so that the cache is shared whatever case the
/// jail used, and fully qualified, so that no search domain is appended.
fn upstream_name(query: &Query) -> Name {
    let mut name = query.name().to_lowercase();
    name.set_fqdn(true);
    name
}

pub(super) fn rdata_texts(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|record| record.data.to_string())
        .collect()
}

/// Removes the ipv4hint and ipv6hint parameters from SVCB and HTTPS records, and their keys
/// from the `mandatory` list, because the jail must never learn real addresses.
fn remove_address_hints(data: &mut RData) {
    let svcb: &mut SVCB = match data {
        RData::SVCB(svcb) => svcb,
        RData::HTTPS(https) => &mut https.0,
        _ => return,
    };
    let is_hint = |key: &SvcParamKey| matches!(key, SvcParamKey::Ipv4Hint | SvcParamKey::Ipv6Hint);

    svcb.svc_params.retain(|(key, _)| !is_hint(key));
    for (_, value) in &mut svcb.svc_params {
        if let SvcParamValue::Mandatory(Mandatory(keys)) = value {
            keys.retain(|key| !is_hint(key));
        }
    }
    // RFC 9460 section 8: an empty mandatory list is invalid, so the parameter goes.
    svcb.svc_params.retain(
        |(_, value)| !matches!(value, SvcParamValue::Mandatory(Mandatory(keys)) if keys.is_empty()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::HTTPS;
    use hickory_proto::rr::rdata::svcb::{Alpn, IpHint};
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn policy_name_table() {
        let cases = [
            ("Web.Test.", "web.test"),
            ("web.test", "web.test"),
            (".", ""),
            ("xn--bcher-kva.test.", "xn--bcher-kva.test"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                policy_name(&Name::from_ascii(input).unwrap()),
                expected,
                "{input}"
            );
        }
    }

    #[test]
    fn address_hints_are_removed() {
        let params = vec![
            (
                SvcParamKey::Mandatory,
                SvcParamValue::Mandatory(Mandatory(vec![SvcParamKey::Ipv4Hint])),
            ),
            (
                SvcParamKey::Alpn,
                SvcParamValue::Alpn(Alpn(vec!["h2".into()])),
            ),
            (
                SvcParamKey::Ipv4Hint,
                SvcParamValue::Ipv4Hint(IpHint(vec![A(Ipv4Addr::LOCALHOST)])),
            ),
            (
                SvcParamKey::Ipv6Hint,
                SvcParamValue::Ipv6Hint(IpHint(vec![AAAA(Ipv6Addr::LOCALHOST)])),
            ),
        ];
        let mut data = RData::HTTPS(HTTPS(SVCB::new(1, Name::root(), params)));
        remove_address_hints(&mut data);

        let RData::HTTPS(HTTPS(svcb)) = data else {
            panic!("record type changed")
        };
        let keys: Vec<SvcParamKey> = svcb.svc_params.iter().map(|(key, _)| *key).collect();
        assert_eq!(keys, vec![SvcParamKey::Alpn]);
    }

    #[test]
    fn mandatory_list_keeps_other_keys() {
        let mandatory = vec![SvcParamKey::Alpn, SvcParamKey::Ipv6Hint];
        let params = vec![
            (
                SvcParamKey::Mandatory,
                SvcParamValue::Mandatory(Mandatory(mandatory)),
            ),
            (
                SvcParamKey::Alpn,
                SvcParamValue::Alpn(Alpn(vec!["h3".into()])),
            ),
        ];
        let mut data = RData::SVCB(SVCB::new(1, Name::root(), params));
        remove_address_hints(&mut data);

        let RData::SVCB(svcb) = data else {
            panic!("record type changed")
        };
        let expected = SvcParamValue::Mandatory(Mandatory(vec![SvcParamKey::Alpn]));
        assert_eq!(svcb.svc_params[0], (SvcParamKey::Mandatory, expected));
        assert_eq!(svcb.svc_params.len(), 2);
    }
}
