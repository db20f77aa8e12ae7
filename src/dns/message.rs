//! DNS messages on the wire: request checks, response headers, EDNS and truncation.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{Record, RecordType};

/// The UDP payload size a client may receive without EDNS (RFC 1035 section 4.2.1).
pub(super) const MIN_UDP_PAYLOAD: u16 = 512;

/// The largest UDP response sent, whatever larger size a client advertises, and the size this
/// server advertises in its own OPT record.
pub(super) const MAX_UDP_PAYLOAD: u16 = 4096;

/// The largest DNS-over-TCP message: the 2-byte length prefix limits it.
pub(super) const MAX_TCP_MESSAGE: usize = u16::MAX as usize;

/// Decodes a request, returning `None` for bytes that are not a DNS message and for
/// responses, which are dropped without an answer.
///
/// NOTE: a query whose header is valid but whose body is not, such as one with two OPT
/// records, is dropped too, although RFC 6891 section 6.1.1 asks for FORMERR.
pub(super) fn parse_request(bytes: &[u8]) -> Option<Message> {
    let message = Message::from_vec(bytes).ok()?;
    (message.metadata.message_type == MessageType::Query).then_some(message)
}

/// Checks the parts of a request that do not depend on its question, and returns the error
/// response code and the reason for a request this server does not answer.
pub(super) fn check_request(request: &Message) -> Option<(ResponseCode, String)> {
    if request.metadata.op_code != OpCode::Query {
        let reason = format!("opcode {} is not supported", request.metadata.op_code);
        return Some((ResponseCode::NotImp, reason));
    }
    // RFC 6891 section 6.1.3: a server that implements only version 0 answers BADVERS.
    if let Some(edns) = &request.edns
        && edns.version() > 0
    {
        let reason = format!("EDNS version {} is not supported", edns.version());
        return Some((ResponseCode::BADVERS, reason));
    }
    if request.queries.len() != 1 {
        let reason = format!("expected 1 question, found {}", request.queries.len());
        return Some((ResponseCode::FormErr, reason));
    }
    None
}

/// Builds the response to `request` with the given code and answers. The ID, the question and
/// RD are echoed, RA is set and AA is not, because every answer comes from another server or
/// is synthetic. A request with an OPT record gets one back (RFC 6891 section 6.1.1).
pub(super) fn build_response(
    request: &Message,
    response_code: ResponseCode,
    answers: Vec<Record>,
) -> Message {
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.response_code = response_code;
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.metadata.checking_disabled = request.metadata.checking_disabled;
    response.add_queries(request.queries.iter().cloned());
    response.add_answers(answers);
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD);
        edns.set_version(0);
        response.set_edns(edns);
    }
    response
}

/// Returns the largest UDP response the client accepts: its EDNS payload size, at least 512
/// and at most [`MAX_UDP_PAYLOAD`] bytes, or 512 bytes without EDNS.
pub(super) fn udp_response_limit(request: &Message) -> usize {
    let advertised = request
        .edns
        .as_ref()
        .map_or(MIN_UDP_PAYLOAD, Edns::max_payload);
    usize::from(advertised.clamp(MIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD))
}

/// Encodes a response into at most `limit` bytes and returns it with the number of answer
/// records it kept.
///
/// A response that does not fit loses its authority and additional records and as many answer
/// records from the end as needed, and gets the TC bit so that the client retries over TCP.
/// The OPT record stays.
pub(super) fn encode(
    response: &Message,
    limit: usize,
) -> Result<(Vec<u8>, usize), hickory_proto::ProtoError> {
    let wire = response.to_vec()?;
    if wire.len() <= limit {
        return Ok((wire, response.answers.len()));
    }

    let mut truncated = response.clone();
    truncated.metadata.truncation = true;
    truncated.authorities.clear();
    truncated.additionals.clear();
    let answers = std::mem::take(&mut truncated.answers);

    // Binary search for the largest number of answers that fits. `too_many` never fits,
    // because the full response was already too large. `fitting` starts at zero answers, which
    // fit because a question and an OPT record take less than 300 bytes.
    let (mut fitting, mut too_many) = (0, answers.len());
    while too_many - fitting > 1 {
        let middle = (fitting + too_many) / 2;
        truncated.answers = answers[..middle].to_vec();
        if truncated.to_vec()?.len() <= limit {
            fitting = middle;
        } else {
            too_many = middle;
        }
    }
    truncated.answers = answers[..fitting].to_vec();
    Ok((truncated.to_vec()?, fitting))
}

/// Returns the mnemonic of a response code as dig and the RFCs print it, for the audit log.
pub(super) fn response_code_text(code: ResponseCode) -> String {
    let text = match code {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::BADVERS => "BADVERS",
        other => return format!("RCODE{}", u16::from(other)),
    };
    text.to_string()
}

/// Returns the mnemonic of a record type, or `TYPEnnn` (RFC 3597) for a type hickory does not
/// name.
pub(super) fn record_type_text(record_type: RecordType) -> String {
    match record_type {
        RecordType::Unknown(code) => format!("TYPE{code}"),
        known => known.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::rdata::TXT;
    use hickory_proto::rr::{Name, RData};

    fn txt_query(edns_payload: Option<u16>) -> Message {
        let mut request = Message::query();
        request.add_query(Query::query(
            Name::from_ascii("many.test.").unwrap(),
            RecordType::TXT,
        ));
        if let Some(payload) = edns_payload {
            let mut edns = Edns::new();
            edns.set_max_payload(payload);
            request.set_edns(edns);
        }
        request
    }

    fn txt_records(count: usize) -> Vec<Record> {
        let name = Name::from_ascii("many.test.").unwrap();
        (0..count)
            .map(|i| {
                let text = format!("record {i:03} with some padding to make it longer");
                Record::from_rdata(name.clone(), 60, RData::TXT(TXT::new(vec![text])))
            })
            .collect()
    }

    #[test]
    fn response_limit_follows_edns() {
        assert_eq!(udp_response_limit(&txt_query(None)), 512);
        assert_eq!(udp_response_limit(&txt_query(Some(100))), 512);
        assert_eq!(udp_response_limit(&txt_query(Some(1232))), 1232);
        assert_eq!(udp_response_limit(&txt_query(Some(65000))), 4096);
    }

    #[test]
    fn small_response_is_not_truncated() {
        let request = txt_query(None);
        let response = build_response(&request, ResponseCode::NoError, txt_records(3));
        let (wire, kept) = encode(&response, 512).unwrap();
        assert_eq!(kept, 3);
        assert!(!Message::from_vec(&wire).unwrap().metadata.truncation);
    }

    #[test]
    fn large_response_is_truncated_to_fit() {
        let request = txt_query(Some(600));
        let response = build_response(&request, ResponseCode::NoError, txt_records(100));
        let limit = udp_response_limit(&request);
        let (wire, kept) = encode(&response, limit).unwrap();
        assert!(wire.len() <= limit, "{} bytes", wire.len());
        assert!(kept > 0, "kept {kept}");
        assert!(kept < 100, "kept {kept}");

        let decoded = Message::from_vec(&wire).unwrap();
        assert!(decoded.metadata.truncation);
        assert_eq!(decoded.answers.len(), kept);
        assert!(decoded.edns.is_some());

        // One more answer would not have fitted.
        let mut bigger = decoded.clone();
        bigger.answers = txt_records(kept + 1);
        assert!(bigger.to_vec().unwrap().len() > limit);
    }

    #[test]
    fn response_echoes_request_header() {
        let mut request = txt_query(None);
        request.metadata.recursion_desired = false;
        let response = build_response(&request, ResponseCode::NXDomain, vec![]);
        assert_eq!(response.metadata.id, request.metadata.id);
        assert_eq!(response.metadata.message_type, MessageType::Response);
        assert!(!response.metadata.recursion_desired);
        assert!(response.metadata.recursion_available);
        assert!(!response.metadata.authoritative);
        assert_eq!(response.queries, request.queries);
        assert!(response.edns.is_none());
    }

    #[test]
    fn request_checks() {
        let mut two_questions = txt_query(None);
        two_questions.add_query(Query::query(Name::root(), RecordType::A));
        let code = check_request(&two_questions).map(|(code, _)| code);
        assert_eq!(code, Some(ResponseCode::FormErr));

        let mut status = txt_query(None);
        status.metadata.op_code = OpCode::Status;
        assert_eq!(
            check_request(&status).map(|(code, _)| code),
            Some(ResponseCode::NotImp)
        );

        let mut edns_v1 = txt_query(Some(1232));
        edns_v1.edns.as_mut().unwrap().set_version(1);
        assert_eq!(
            check_request(&edns_v1).map(|(code, _)| code),
            Some(ResponseCode::BADVERS)
        );

        assert_eq!(check_request(&txt_query(Some(1232))), None);
    }
}
