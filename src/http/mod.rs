//! Inspection of the requests a flow carries: plain HTTP/1.x requests are decided one by
//! one, and TLS ClientHellos have their server name checked.
//!
//! Every flow to a name gets a [`FlowInspector`]. Its first bytes tell the protocol:
//! - TLS: the server name (SNI), when sent, must be the flow's name or a name an allow rule
//!   matches, else the flow is reset. A flow that needs request checks (its rules name
//!   `method` or `path`) is reset, because its requests cannot be read without intercepting
//!   TLS.
//! - HTTP/1.x: each request head is parsed (keep-alive and pipelining included). The Host
//!   must be the flow's name, and when request checks are on, the method and path must pass
//!   the policy. A refused request gets a `403 Forbidden` that names the rule to add, with
//!   `Connection: close`. Bodies are framed by `Content-Length` or chunked encoding and
//!   forwarded as they arrive, never buffered whole; after an `Upgrade` or `CONNECT` request
//!   the bytes pass through.
//! - Anything else passes through, unless request checks are on, in which case it is reset.

pub mod path;
mod response;
pub mod tls;

use std::net::IpAddr;
use std::sync::Arc;

use netstack::{FlowInfo, Inspection, Inspector};

use crate::audit::{self, AuditLog, Event};
use crate::policy::{Decision, FlowFacts, Policy, Proto};

/// Largest request head accepted; larger ones get 431.
const MAX_HEAD: usize = 32 * 1024;
/// Largest chunk-size line (with extensions) or trailer section accepted.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_HEADERS: usize = 100;

/// Request methods recognised at the start of a flow, besides those the rules name.
const METHODS: &[&str] = &[
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "CONNECT",
    "OPTIONS",
    "TRACE",
    "PATCH",
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
    "REPORT",
    "SEARCH",
    "PRI",
];

/// The facts about a flow that its inspector checks requests against.
pub struct FlowContext {
    pub policy: Arc<Policy>,
    pub audit: Arc<AuditLog>,
    pub flow: FlowInfo,
    /// The flow as its audit events name it, with the name the jail connected to (`None`
    /// for an IP literal).
    pub id: audit::FlowId,
    /// The host-side address the policy was checked against.
    pub addr: IpAddr,
    /// Whether each request must pass `method` and `path` rules.
    pub check_requests: bool,
    /// The rule that allowed the connection, recorded for requests that need no check.
    pub rule: String,
}

enum State {
    /// Nothing seen yet.
    Start,
    /// Expecting a request head.
    Head,
    /// Inside a chunked body, expecting a chunk-size line.
    ChunkSize,
}

/// The [`Inspector`] of one flow.
pub struct FlowInspector {
    context: FlowContext,
    state: State,
    requests: u64,
    /// Follows the upstream's responses once the flow is known to be HTTP.
    responses: Option<response::ResponseTracker>,
}

impl FlowInspector {
    pub fn new(context: FlowContext) -> FlowInspector {
        FlowInspector {
            context,
            state: State::Start,
            requests: 0,
            responses: None,
        }
    }

    fn start(&mut self, data: &[u8]) -> Inspection {
        match tls::parse(data) {
            tls::Hello::NotTls => {}
            tls::Hello::Incomplete => return Inspection::NeedMore,
            tls::Hello::ClientHello { server_name } => return self.client_hello(server_name),
            tls::Hello::Malformed => {
                return self
                    .reset("the flow starts with a TLS record that is not a valid ClientHello");
            }
        }
        match self.http_method(data) {
            Some(Some("PRI")) => self.unreadable("HTTP/2 without TLS (prior knowledge)"),
            Some(Some(_)) => {
                self.state = State::Head;
                self.responses = Some(response::ResponseTracker::new());
                self.head(data)
            }
            Some(None) => Inspection::NeedMore,
            None if self.context.check_requests => {
                self.unreadable("a protocol other than HTTP/1.x")
            }
            None => Inspection::PassThrough,
        }
    }

    /// Returns `Some(Some(method))` when the data starts with a known request method and a
    /// space, `Some(None)` while that is still possible, and `None` otherwise.
    fn http_method<'d>(&self, data: &'d [u8]) -> Option<Option<&'d str>> {
        let token_len = data.iter().take(24).position(|&b| b == b' ');
        let Some(len) = token_len else {
            let prefix_ok = data.len() < 24 && data.iter().all(u8::is_ascii_uppercase);
            return if prefix_ok { Some(None) } else { None };
        };
        let method = std::str::from_utf8(&data[..len]).ok()?;
        let named_by_rule = self
            .context
            .policy
            .allow
            .iter()
            .chain(&self.context.policy.deny)
            .any(|rule| {
                rule.methods
                    .as_ref()
                    .is_some_and(|methods| methods.iter().any(|m| m == method))
            });
        (METHODS.contains(&method) || named_by_rule).then_some(Some(method))
    }

    fn client_hello(&mut self, server_name: Option<String>) -> Inspection {
        if self.context.check_requests {
            return self.unreadable("TLS");
        }
        let Some(server_name) = server_name else {
            return Inspection::PassThrough;
        };
        if self.context.id.name.as_deref() == Some(server_name.as_str()) {
            return Inspection::PassThrough;
        }
        let facts = FlowFacts {
            name: Some(&server_name),
            addr: self.context.addr,
            port: self.context.flow.dst.port(),
            proto: Proto::Tcp,
        };
        if self.context.policy.decide_flow(&facts).is_allow() {
            return Inspection::PassThrough;
        }
        let opened_to = self.context.id.name.as_deref().unwrap_or("an IP address");
        self.reset(&format!(
            "TLS server name {server_name} differs from {opened_to}, the name the connection was \
             opened to, and no allow rule matches {server_name}"
        ))
    }

    /// Resets a flow whose requests must be checked but cannot be read.
    fn unreadable(&self, protocol: &str) -> Inspection {
        let name = self.context.id.name.as_deref().unwrap_or("this address");
        self.reset(&format!(
            "the rules for {name} name method or path, which netjail can check only on plain \
             HTTP/1.x, and this connection speaks {protocol}"
        ))
    }

    fn reset(&self, reason: &str) -> Inspection {
        tracing::info!(flow = self.context.flow.id, %reason, "resetting flow");
        self.context.audit.record(Event::Denied(audit::Denied {
            id: self.flow_id(),
            decision: "deny",
            rule: None,
            reason: reason.to_string(),
        }));
        Inspection::Reset
    }

    fn flow_id(&self) -> audit::FlowId {
        self.context.id.clone()
    }

    fn head(&mut self, data: &[u8]) -> Inspection {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        let head_len = match request.parse(data) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if data.len() > MAX_HEAD => {
                return self.refuse_malformed(431, "the request head is larger than 32 KiB");
            }
            Ok(httparse::Status::Partial) => return Inspection::NeedMore,
            Err(httparse::Error::TooManyHeaders) => {
                return self.refuse_malformed(431, "the request has more than 100 header fields");
            }
            Err(err) => {
                return self.refuse_malformed(400, &format!("the request head is invalid: {err}"));
            }
        };
        let head = match RequestHead::read(&request) {
            Ok(head) => head,
            Err(problem) => return self.refuse_malformed(400, &problem),
        };
        self.requests += 1;
        self.decide(head, head_len)
    }

    fn decide(&mut self, head: RequestHead, head_len: usize) -> Inspection {
        let host = head
            .host
            .clone()
            .or_else(|| self.context.id.name.clone())
            .unwrap_or_default();
        if let Some(name) = &self.context.id.name
            && host != *name
        {
            let reason =
                format!("the request names host {host}, but the connection was opened to {name}");
            return self.refuse(&head, &host, None, reason, None);
        }

        let path = path::normalize_target(&head.target);
        let rule = if self.context.check_requests {
            let facts = FlowFacts {
                name: self.context.id.name.as_deref(),
                addr: self.context.addr,
                port: self.context.flow.dst.port(),
                proto: Proto::Tcp,
            };
            match self
                .context
                .policy
                .decide_request(&facts, &head.method, &path)
            {
                Decision::Allow { rule } => Some(rule.text.clone()),
                Decision::Deny { rule, reason } => {
                    let deny_rule = rule.map(|r| r.text.clone());
                    let hint = deny_rule
                        .is_none()
                        .then(|| self.allow_hint(&host, &head.method, &path));
                    return self.refuse(&head, &host, deny_rule, reason, hint);
                }
            }
        } else {
            Some(self.context.rule.clone())
        };

        self.record(&head, &host, "allow", rule, None, None);
        if let Some(responses) = self.responses.as_mut() {
            responses.request_forwarded(&head.method);
        }
        match head.body {
            Body::None => Inspection::Forward(head_len as u64),
            Body::Length(length) => Inspection::Forward(head_len as u64 + length),
            Body::Chunked => {
                self.state = State::ChunkSize;
                Inspection::Forward(head_len as u64)
            }
            Body::Tunnel => Inspection::PassThrough,
        }
    }

    fn allow_hint(&self, host: &str, method: &str, path: &str) -> String {
        let domain = self.context.id.name.as_deref().unwrap_or(host);
        format!("--allow 'domain={domain} method={method} path={path}'")
    }

    fn refuse(
        &self,
        head: &RequestHead,
        host: &str,
        rule: Option<String>,
        reason: String,
        hint: Option<String>,
    ) -> Inspection {
        tracing::info!(flow = self.context.flow.id, method = %head.method, %host, target = %head.target, %reason, "refusing request");
        let shown = if head.target.starts_with('/') {
            format!("{host}{}", head.target)
        } else {
            head.target.clone()
        };
        let mut body = format!("netjail refused this request: {} {shown}\n", head.method);
        match (&rule, &hint) {
            (Some(rule), _) => body.push_str(&format!("The deny rule '{rule}' matches it.\n")),
            (None, Some(hint)) => body.push_str(&format!(
                "{reason}.\nTo allow it, run netjail with:\n  {hint}\n"
            )),
            (None, None) => body.push_str(&format!("Reason: {reason}.\n")),
        }
        self.record(head, host, "deny", rule, Some(reason), Some(403));
        Inspection::Refuse {
            reply: response(403, "Forbidden", &body),
        }
    }

    fn refuse_malformed(&self, status: u16, reason: &str) -> Inspection {
        tracing::info!(flow = self.context.flow.id, %reason, "refusing malformed request");
        self.context.audit.record(Event::Http(audit::HttpEvent {
            id: self.flow_id(),
            method: None,
            host: None,
            path: None,
            decision: "deny",
            rule: None,
            reason: Some(reason.to_string()),
            status: Some(status),
        }));
        let text = if status == 431 {
            "Request Header Fields Too Large"
        } else {
            "Bad Request"
        };
        let body = format!("netjail refused this request: {reason}.\n");
        Inspection::Refuse {
            reply: response(status, text, &body),
        }
    }

    fn record(
        &self,
        head: &RequestHead,
        host: &str,
        decision: &'static str,
        rule: Option<String>,
        reason: Option<String>,
        status: Option<u16>,
    ) {
        self.context.audit.record(Event::Http(audit::HttpEvent {
            id: self.flow_id(),
            method: Some(head.method.clone()),
            host: Some(host.to_string()),
            path: Some(head.target.clone()),
            decision,
            rule,
            reason,
            status,
        }));
    }

    /// Reads a chunk-size line (RFC 9112 section 7.1) and approves the chunk after it, or the
    /// trailer section after the last chunk.
    fn chunk(&mut self, data: &[u8]) -> Inspection {
        let Some(line_end) = find(data, b"\r\n") else {
            return if data.len() > MAX_CHUNK_LINE {
                self.refuse_malformed(400, "a chunk-size line is longer than 4 KiB")
            } else {
                Inspection::NeedMore
            };
        };
        let line = &data[..line_end];
        let size_text = line.split(|&b| b == b';').next().unwrap_or_default();
        let size = std::str::from_utf8(size_text)
            .ok()
            .map(str::trim)
            .filter(|text| !text.is_empty() && text.len() <= 15)
            .and_then(|text| u64::from_str_radix(text, 16).ok());
        let Some(size) = size else {
            return self.refuse_malformed(400, "a chunk-size line is invalid");
        };
        let line_len = line_end as u64 + 2;
        if size > 0 {
            return Inspection::Forward(line_len + size + 2);
        }

        let rest = &data[line_end + 2..];
        let trailer_len = if rest.starts_with(b"\r\n") {
            Some(2)
        } else {
            find(rest, b"\r\n\r\n").map(|end| end + 4)
        };
        match trailer_len {
            Some(len) => {
                self.state = State::Head;
                Inspection::Forward(line_len + len as u64)
            }
            None if rest.len() > MAX_CHUNK_LINE => {
                self.refuse_malformed(400, "the trailer section is longer than 4 KiB")
            }
            None => Inspection::NeedMore,
        }
    }
}

impl Inspector for FlowInspector {
    fn inspect(&mut self, data: &[u8]) -> Inspection {
        match self.state {
            State::Start => self.start(data),
            State::Head => self.head(data),
            State::ChunkSize => self.chunk(data),
        }
    }

    fn observe_upstream(&mut self, data: &[u8]) {
        if let Some(responses) = self.responses.as_mut() {
            responses.observe(data);
        }
    }

    fn pending_responses(&self) -> Option<usize> {
        self.responses
            .as_ref()
            .and_then(response::ResponseTracker::pending)
    }
}

/// The framing of a request body (RFC 9112 section 6.3).
#[derive(Debug, PartialEq, Eq)]
enum Body {
    None,
    Length(u64),
    Chunked,
    /// After the head, the connection carries another protocol (`Upgrade`, `CONNECT`).
    Tunnel,
}

/// The parts of a request head the policy and the framing need.
#[derive(Debug)]
struct RequestHead {
    method: String,
    target: String,
    /// The host from an absolute-form target, else from the Host header; lowercase,
    /// without port and trailing dot.
    host: Option<String>,
    body: Body,
}

impl RequestHead {
    fn read(request: &httparse::Request<'_, '_>) -> Result<RequestHead, String> {
        let method = request.method.unwrap_or_default().to_string();
        let target = request.path.unwrap_or_default().to_string();
        let mut host_headers = request
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("host"));
        let host_header = host_headers.next();
        if host_headers.next().is_some() {
            return Err("the request has more than one Host header".into());
        }
        let host = match absolute_target_host(&target) {
            Some(host) => Some(host),
            None => match host_header {
                Some(header) => Some(host_without_port(
                    std::str::from_utf8(header.value).map_err(|_| "the Host header is not text")?,
                )),
                None if request.version == Some(1) => {
                    return Err("the HTTP/1.1 request has no Host header".into());
                }
                None => None,
            },
        };
        let body = body_framing(&method, request.headers)?;
        Ok(RequestHead {
            method,
            target,
            host,
            body,
        })
    }
}

fn body_framing(method: &str, headers: &[httparse::Header<'_>]) -> Result<Body, String> {
    let values = |name: &str| -> Vec<String> {
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
            .collect()
    };
    let transfer_encoding = values("transfer-encoding");
    let content_length = values("content-length");
    let upgrade = !values("upgrade").is_empty();

    if method == "CONNECT" || upgrade {
        return Ok(Body::Tunnel);
    }
    if !transfer_encoding.is_empty() {
        // Both headers at once is how requests are smuggled past a proxy (RFC 9112 6.3).
        if !content_length.is_empty() {
            return Err("the request has both Transfer-Encoding and Content-Length".into());
        }
        let codings = transfer_encoding.join(",");
        let last = codings.rsplit(',').next().unwrap_or_default().trim();
        return if last == "chunked" {
            Ok(Body::Chunked)
        } else {
            Err(format!(
                "the request's Transfer-Encoding {codings:?} does not end in chunked"
            ))
        };
    }
    let mut lengths = content_length
        .iter()
        .flat_map(|value| value.split(','))
        .map(str::trim);
    let Some(first) = lengths.next() else {
        return Ok(Body::None);
    };
    let length: u64 = first
        .parse()
        .map_err(|_| format!("Content-Length {first:?} is not a number"))?;
    if lengths.any(|other| other != first) {
        return Err("the request has conflicting Content-Length values".into());
    }
    Ok(if length == 0 {
        Body::None
    } else {
        Body::Length(length)
    })
}

fn absolute_target_host(target: &str) -> Option<String> {
    let rest = target.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    Some(host_without_port(authority))
}

/// Lowercases a host and strips the port and trailing dot: `Web.Test:8080` is `web.test`,
/// `[::1]:80` is `::1`.
fn host_without_port(value: &str) -> String {
    let value = value.trim();
    let host = if let Some(rest) = value.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        value.rsplit_once(':').map_or(value, |(host, _)| host)
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn response(status: u16, text: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {text}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests;
