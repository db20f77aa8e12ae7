//! HTTP-aware policy with real clients in the jail: rules that name `method`
//! and `path`, the Host check on every plain-HTTP flow, bodies and upgraded
//! connections passing through, TLS server names, and request targets
//! forwarded byte for byte.
//!
//! The fixture names resolve to 127.0.0.1, so every rule carries
//! `cidr=127.0.0.0/8`.

use std::io::Write as _;
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use integration::audit::HttpEvent;
use integration::clients;
use integration::content;
use integration::fixtures::events::StreamStep;
use integration::fixtures::first_bytes::TLS_HANDSHAKE;
use integration::fixtures::http::page_body;
use integration::fixtures::{Fixtures, GIT_NAME, WEB_NAME};
use integration::jail::{JailOutput, Mode};
use integration::jail_tests;
use integration::workdir::Workdir;

jail_tests!(
    curl_method_rule_get_and_post,
    node_keepalive_allowed_and_denied,
    chunked_upload_1_gib,
    event_stream_arrives_event_by_event,
    websocket_echo_after_upgrade,
    host_header_mismatch_refused,
    pipelined_requests_decided_in_order,
    tls_server_name_checked,
    tls_reset_under_request_rules,
    encoded_path_forwarded_unchanged,
);

/// A name that no fixture zone entry and no rule has; requests name it in
/// Host headers and TLS server names.
const OTHER_NAME: &str = "other.test";

/// 1 GiB.
const UPLOAD_LEN: u64 = 1 << 30;

/// The last number `seq` prints for the upload; its output is longer than
/// [`UPLOAD_LEN`], so `head -c` cuts it.
const UPLOAD_SEQ_LAST: u64 = 120_000_000;

const UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// How long a test waits for a fixture to record a connection that netjail
/// closed when the jailed command exited.
const RECORD_WAIT: Duration = Duration::from_secs(10);

/// Returns an allow rule for [`WEB_NAME`] at 127.0.0.0/8 with `keys` added.
fn web_rule(keys: &str) -> String {
    format!("domain={WEB_NAME} cidr=127.0.0.0/8 {keys}")
}

/// Reads a file the jailed command wrote into the workdir.
fn read_output_file(workdir: &Workdir, name: &str) -> String {
    let path = workdir.join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("reading {path:?} failed: {err}"))
}

/// Returns the flow ids of the flows to `name` that netjail opened.
fn opened_flow_ids(output: &JailOutput, name: &str) -> Vec<u64> {
    let audit = output.audit();
    audit
        .flow_opens(name)
        .iter()
        .map(|open| open.flow)
        .collect()
}

/// Checks an `http` event of a request netjail forwarded.
fn assert_forwarded(event: &HttpEvent, method: &str, path: &str, rule: Option<&str>) {
    assert_eq!(event.method.as_deref(), Some(method), "{event:?}");
    assert_eq!(event.path.as_deref(), Some(path), "{event:?}");
    assert_eq!(event.host.as_deref(), Some(WEB_NAME), "{event:?}");
    assert_eq!(event.decision, "allow", "{event:?}");
    assert_eq!(event.rule.as_deref(), rule, "{event:?}");
    assert_eq!(event.reason, None, "{event:?}");
    assert_eq!(event.status, None, "{event:?}");
    assert_eq!(event.proto, "tcp", "{event:?}");
    assert_eq!(event.name.as_deref(), Some(WEB_NAME), "{event:?}");
}

/// Checks an `http` event of a request netjail refused with 403.
fn assert_refused(event: &HttpEvent, method: &str, host: &str, path: &str) {
    assert_eq!(event.method.as_deref(), Some(method), "{event:?}");
    assert_eq!(event.path.as_deref(), Some(path), "{event:?}");
    assert_eq!(event.host.as_deref(), Some(host), "{event:?}");
    assert_eq!(event.decision, "deny", "{event:?}");
    assert_eq!(event.rule, None, "{event:?}");
    assert!(event.reason.is_some(), "{event:?}");
    assert_eq!(event.status, Some(403), "{event:?}");
    assert_eq!(event.name.as_deref(), Some(WEB_NAME), "{event:?}");
}

/// Waits until `ready` returns true or [`RECORD_WAIT`] passes.
fn wait_for(mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + RECORD_WAIT;
    while !ready() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
}

/// Sends a GET that a `method=GET` rule allows and a POST to the same name
/// that it does not. The POST gets netjail's 403, whose body names the rule
/// to add.
fn curl_method_rule_get_and_post(mode: Mode) {
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);
    let rule = web_rule("method=GET");
    let page_url = fixtures.http_url(WEB_NAME, "/pages/method");
    let upload_url = fixtures.http_url(WEB_NAME, "/upload");
    let script = format!(
        "curl -sS --max-time 20 -o get.body -w 'get %{{http_code}}\\n' {page_url} \
           || echo \"get: curl exit $?\"
         curl -sS --max-time 20 -X POST --data-binary 'posted body' -D post.head -o post.body \
           -w 'post %{{http_code}}\\n' {upload_url} || echo \"post: curl exit $?\""
    );

    let output = fixtures
        .jail(mode, &workdir)
        .allow(&rule)
        .run(&clients::sh(&script));

    assert_eq!(output.code(), Some(0), "{}", output.describe());
    assert_eq!(
        output.stdout_lines(),
        ["get 200", "post 403"],
        "{}",
        output.describe()
    );
    assert_eq!(read_output_file(&workdir, "get.body"), page_body("method"));

    let head = read_output_file(&workdir, "post.head").to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 403 forbidden\r\n"), "{head}");
    assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
    let body = read_output_file(&workdir, "post.body");
    let refused = format!("netjail refused this request: POST {WEB_NAME}/upload\n");
    assert!(body.starts_with(&refused), "{body}");
    let hint = format!("--allow 'domain={WEB_NAME} method=POST path=/upload'");
    assert!(body.contains(&hint), "{body}");

    let requests = fixtures.http.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].target, "/pages/method");
    assert!(
        fixtures.http.uploads().is_empty(),
        "{:?}",
        fixtures.http.uploads()
    );

    let audit = output.audit();
    let events = audit.http_events(WEB_NAME);
    assert_eq!(events.len(), 2, "{:?}", audit.lines);
    assert_forwarded(events[0], "GET", "/pages/method", Some(&rule));
    assert_refused(events[1], "POST", WEB_NAME, "/upload");
    let flows = opened_flow_ids(&output, WEB_NAME);
    assert!(flows.contains(&events[0].flow), "{flows:?} {:?}", events[0]);
    assert!(flows.contains(&events[1].flow), "{flows:?} {:?}", events[1]);
    assert_eq!(events[1].port, fixtures.http.port(), "{:?}", events[1]);
}

/// Sends 100 requests through node's keep-alive agent, alternating a path
/// the rule allows and one it does not. Each refusal closes its connection,
/// and the agent must still get every response and no reset.
fn node_keepalive_allowed_and_denied(mode: Mode) {
    const COUNT: usize = 100;
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);
    workdir.write("keepalive.js", clients::KEEPALIVE_JS);
    let rule = web_rule("path=/pages/*");
    let base = format!("http://{WEB_NAME}:{}", fixtures.http.port());
    let paths: Vec<String> = (0..COUNT)
        .map(|i| match i % 2 {
            0 => format!("/pages/k{i}"),
            _ => format!("/private/k{i}"),
        })
        .collect();
    let mut command = vec!["node".to_owned(), "keepalive.js".to_owned(), base];
    command.extend(paths.iter().cloned());

    let output = fixtures.jail(mode, &workdir).allow(&rule).run(&command);

    assert_eq!(output.code(), Some(0), "{}", output.describe());
    let summary: serde_json::Value = serde_json::from_str(&output.stdout)
        .unwrap_or_else(|err| panic!("client output is not JSON: {err}\n{}", output.describe()));
    let results = summary["results"].as_array().expect("results is an array");
    assert_eq!(results.len(), COUNT, "{summary}");

    let errors: Vec<_> = results.iter().filter(|r| !r["error"].is_null()).collect();
    assert!(errors.is_empty(), "requests failed: {errors:?}");
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["path"], paths[i].as_str(), "{result}");
        if i % 2 == 0 {
            assert_eq!(result["status"], 200, "{result}");
            assert_eq!(result["body"], page_body(&format!("k{i}")), "{result}");
        } else {
            assert_eq!(result["status"], 403, "{result}");
            let refused = format!("netjail refused this request: GET {WEB_NAME}/private/k{i}\n");
            let body = result["body"].as_str().unwrap_or_default();
            assert!(body.starts_with(&refused), "{result}");
        }
    }
    // Each refusal closes its connection, so about half the requests go on
    // a new socket; the other half must reuse a kept-alive one.
    let mut sockets: Vec<u64> = results
        .iter()
        .filter_map(|result| result["socket"].as_u64())
        .collect();
    sockets.sort();
    sockets.dedup();
    assert!(
        sockets.len() < COUNT,
        "no socket carried two requests: {summary}"
    );
    assert!(
        fixtures.http.connections() < COUNT,
        "the server accepted {} connections for {COUNT} requests",
        fixtures.http.connections()
    );

    let mut served: Vec<String> = fixtures
        .http
        .requests()
        .into_iter()
        .map(|request| request.target)
        .collect();
    served.sort();
    let mut allowed: Vec<String> = paths.iter().step_by(2).cloned().collect();
    allowed.sort();
    assert_eq!(served, allowed);

    let audit = output.audit();
    let events = audit.http_events(WEB_NAME);
    assert_eq!(events.len(), COUNT, "{:?}", audit.event_names());
    for event in &events {
        let path = event.path.as_deref().unwrap_or_default();
        if path.starts_with("/pages/") {
            assert_forwarded(event, "GET", path, Some(&rule));
        } else {
            assert_refused(event, "GET", WEB_NAME, path);
        }
    }
}

/// Returns the hex SHA-256 of the first `len` bytes of `seq 1 N` output,
/// for an N large enough to give `len` bytes.
fn seq_output_sha256(len: u64) -> String {
    const BATCH: usize = 1 << 20;
    let mut hasher = Sha256::new();
    let mut batch = Vec::with_capacity(BATCH + 32);
    let mut number = 1u64;
    let mut hashed = 0u64;
    while hashed < len {
        batch.clear();
        while batch.len() < BATCH {
            writeln!(batch, "{number}").expect("writing to a Vec cannot fail");
            number += 1;
        }
        let take = (len - hashed).min(batch.len() as u64) as usize;
        hasher.update(&batch[..take]);
        hashed += take as u64;
    }
    content::hex(&hasher.finalize())
}

/// Uploads 1 GiB of unknown length, which curl sends chunked, through a rule
/// that names methods. netjail must frame every chunk and buffer none whole.
fn chunked_upload_1_gib(mode: Mode) {
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);
    let rule = web_rule("method=GET,POST");
    let url = fixtures.http_url(WEB_NAME, "/upload");
    let script = format!(
        "seq 1 {UPLOAD_SEQ_LAST} | head -c {UPLOAD_LEN} \
           | curl -sS --fail -X POST -T - -D upload.head {url}"
    );
    let expected = thread::spawn(|| seq_output_sha256(UPLOAD_LEN));

    let output = fixtures
        .jail(mode, &workdir)
        .allow(&rule)
        .timeout(UPLOAD_TIMEOUT)
        .run(&clients::sh(&script));

    let expected = expected.join().expect("hashing the expected upload failed");
    assert_eq!(output.code(), Some(0), "{}", output.describe());
    assert_eq!(output.stdout.trim(), expected, "{}", output.describe());
    let head = read_output_file(&workdir, "upload.head").to_ascii_lowercase();
    assert!(head.contains("\r\nx-body-length: 1073741824\r\n"), "{head}");

    let uploads = fixtures.http.uploads();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    assert_eq!(uploads[0].len, UPLOAD_LEN);
    assert_eq!(uploads[0].sha256, expected);
    assert!(uploads[0].chunked, "{uploads:?}");

    let audit = output.audit();
    let events = audit.http_events(WEB_NAME);
    assert_eq!(events.len(), 1, "{:?}", audit.lines);
    assert_forwarded(events[0], "POST", "/upload", Some(&rule));
}

/// Reads a `text/event-stream` response whose server delays each event until
/// the client acknowledged the one before on a second connection. If netjail
/// held back the response, the stream would stall and time out. The server's
/// log shows that the client read event 1 before event 3 was sent.
fn event_stream_arrives_event_by_event(mode: Mode) {
    const EVENTS: u32 = 3;
    const STREAM: &str = "s1";
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);
    let rule = web_rule("method=GET,POST");
    let stream_url = fixtures.http_url(WEB_NAME, &format!("/events/{STREAM}/{EVENTS}"));
    let ack_url = fixtures.http_url(WEB_NAME, &format!("/events/{STREAM}/ack"));
    let script = format!(
        "curl -sS -N --fail --max-time 60 {stream_url} | while IFS= read -r line; do
           case \"$line\" in
             'data: event '*)
               n=\"${{line#data: event }}\"
               echo \"received $n\"
               curl -sS --fail --max-time 20 -X POST {ack_url}/$n ;;
             'event: timeout') echo 'server timed out' ;;
           esac
         done"
    );

    let output = fixtures
        .jail(mode, &workdir)
        .allow(&rule)
        .run(&clients::bash_strict(&script));

    assert_eq!(output.code(), Some(0), "{}", output.describe());
    let expected_lines: Vec<String> = (1..=EVENTS)
        .flat_map(|n| [format!("received {n}"), format!("ack {n}")])
        .collect();
    assert_eq!(
        output.stdout_lines(),
        expected_lines,
        "{}",
        output.describe()
    );

    let expected_log: Vec<StreamStep> = (1..=EVENTS)
        .flat_map(|n| [StreamStep::Sent(n), StreamStep::Acked(n)])
        .collect();
    assert_eq!(fixtures.http.event_streams().log(STREAM), expected_log);

    let audit = output.audit();
    let events = audit.http_events(WEB_NAME);
    assert_eq!(events.len(), 1 + EVENTS as usize, "{:?}", audit.lines);
    assert_forwarded(
        events[0],
        "GET",
        &format!("/events/{STREAM}/{EVENTS}"),
        Some(&rule),
    );
    for (n, event) in (1..=EVENTS).zip(&events[1..]) {
        let path = format!("/events/{STREAM}/ack/{n}");
        assert_forwarded(event, "POST", &path, Some(&rule));
    }
}

/// Runs a WebSocket handshake through a rule that names methods, echoes a
/// text and a 100,000-byte binary message, and closes. After the `Upgrade`
/// request netjail must pass the frames through.
fn websocket_echo_after_upgrade(mode: Mode) {
    const TEXT: &str = "hello through netjail";
    const BINARY_LEN: usize = 100_000;
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);
    workdir.write("websocket_echo.py", clients::WEBSOCKET_ECHO_PY);
    let rule = web_rule("method=GET,POST");
    let port = fixtures.http.port().to_string();
    let binary_len = BINARY_LEN.to_string();

    let output = fixtures.jail(mode, &workdir).allow(&rule).run(&[
        "python3",
        "websocket_echo.py",
        WEB_NAME,
        &port,
        "/echo",
        TEXT,
        &binary_len,
    ]);

    assert_eq!(output.code(), Some(0), "{}", output.describe());
    let result: serde_json::Value = serde_json::from_str(&output.stdout)
        .unwrap_or_else(|err| panic!("client output is not JSON: {err}\n{}", output.describe()));
    assert_eq!(result["status"], 101, "{result}");
    assert_eq!(result["accept_ok"], true, "{result}");
    let echoes = result["echoes"].as_array().expect("echoes is an array");
    assert_eq!(echoes.len(), 2, "{result}");
    assert_eq!(echoes[0]["opcode"], 1, "{result}");
    assert_eq!(echoes[0]["len"], TEXT.len(), "{result}");
    assert_eq!(echoes[0]["equal"], true, "{result}");
    assert_eq!(echoes[1]["opcode"], 2, "{result}");
    assert_eq!(echoes[1]["len"], BINARY_LEN, "{result}");
    assert_eq!(echoes[1]["equal"], true, "{result}");
    assert_eq!(result["close_opcode"], 8, "{result}");
    assert_eq!(result["close_code"], 1000, "{result}");

    wait_for(|| !fixtures.http.websockets().is_empty());
    let sockets = fixtures.http.websockets();
    assert_eq!(sockets.len(), 1, "{sockets:?}");
    assert_eq!(sockets[0].message_lens, [TEXT.len(), BINARY_LEN]);
    assert!(sockets[0].close_received, "{sockets:?}");

    let audit = output.audit();
    let events = audit.http_events(WEB_NAME);
    assert_eq!(events.len(), 1, "{:?}", audit.lines);
    assert_forwarded(events[0], "GET", "/echo", Some(&rule));
}

/// Checks that a request naming another host than the connection's allowed
/// name, in the Host header or in an absolute-form target, gets 403 and
/// never reaches the server, under a rule that names no method or path.
fn host_header_mismatch_refused(mode: Mode) {
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);
    let rule = format!("domain={WEB_NAME} cidr=127.0.0.0/8");
    let port = fixtures.http.port();
    let base = format!("http://{WEB_NAME}:{port}");
    let script = format!(
        "curl -sS --max-time 20 -H 'Host: {OTHER_NAME}' -o header.body \
           -w 'header %{{http_code}}\\n' {base}/pages/header || echo \"header: curl exit $?\"
         curl -sS --max-time 20 --request-target 'http://{OTHER_NAME}/pages/absolute' \
           -o absolute.body -w 'absolute %{{http_code}}\\n' {base}/ \
           || echo \"absolute: curl exit $?\"
         curl -sS --max-time 20 -o same.body -w 'same %{{http_code}}\\n' {base}/pages/same \
           || echo \"same: curl exit $?\""
    );

    let output = fixtures
        .jail(mode, &workdir)
        .allow(&rule)
        .run(&clients::sh(&script));

    assert_eq!(output.code(), Some(0), "{}", output.describe());
    assert_eq!(
        output.stdout_lines(),
        ["header 403", "absolute 403", "same 200"],
        "{}",
        output.describe()
    );
    let header_body = read_output_file(&workdir, "header.body");
    let refused = format!("netjail refused this request: GET {OTHER_NAME}/pages/header\n");
    assert!(header_body.starts_with(&refused), "{header_body}");
    let absolute_body = read_output_file(&workdir, "absolute.body");
    let refused = "netjail refused this request: GET ";
    assert!(absolute_body.starts_with(refused), "{absolute_body}");
    let target = format!("http://{OTHER_NAME}/pages/absolute");
    assert!(absolute_body.contains(&target), "{absolute_body}");
    assert_eq!(read_output_file(&workdir, "same.body"), page_body("same"));

    let requests = fixtures.http.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].target, "/pages/same");

    let audit = output.audit();
    let events = audit.http_events(WEB_NAME);
    assert_eq!(events.len(), 3, "{:?}", audit.lines);
    assert_refused(events[0], "GET", OTHER_NAME, "/pages/header");
    let absolute_target = format!("http://{OTHER_NAME}/pages/absolute");
    assert_refused(events[1], "GET", OTHER_NAME, &absolute_target);
    for event in &events[..2] {
        let reason = event.reason.as_deref().unwrap_or_default();
        assert!(reason.contains(OTHER_NAME), "{event:?}");
    }
    // A flow whose rule names no method or path reports that rule.
    assert_forwarded(events[2], "GET", "/pages/same", Some(&rule));
}

/// Sends a GET for each path argument in one write on one connection
/// (HTTP/1.1 pipelining), reads until the connection closes, and prints the
/// status and body of each response as JSON. Every response must carry a
/// Content-Length, as the fixture's and netjail's do.
const PIPELINE_PY: &str = r#"
import json, socket, sys

host, port, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
heads = [f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n" for path in paths]
with socket.create_connection((host, port), timeout=20) as sock:
    sock.sendall("".join(heads).encode())
    received = b""
    while chunk := sock.recv(65536):
        received += chunk

responses = []
while received:
    head, _, rest = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    body = rest[:length].decode("utf-8", "replace")
    responses.append({"status": int(lines[0].split(" ")[1]), "body": body})
    received = rest[length:]
print(json.dumps({"responses": responses}))
"#;

/// Pipelines four requests on one connection: two the rule allows, one it
/// does not, and one more after it. The server replies to the first two,
/// netjail replies to the third with 403 and then closes the connection
/// without forwarding the fourth. The 403 must never take the place of an
/// allowed request's response, or the client would attribute it to that
/// request. The fixture (hyper 1 with `half_close` off) drops a pending
/// request when it sees EOF, so this also fails if netjail half-closes the
/// upstream before the owed responses are through.
fn pipelined_requests_decided_in_order(mode: Mode) {
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);
    let rule = web_rule("path=/pages/*");
    let port = fixtures.http.port().to_string();
    let paths = ["/pages/p1", "/pages/p2", "/private/p3", "/pages/p4"];
    let mut command = vec!["python3", "-c", PIPELINE_PY, WEB_NAME, &port];
    command.extend(paths);

    let output = fixtures.jail(mode, &workdir).allow(&rule).run(&command);

    assert_eq!(output.code(), Some(0), "{}", output.describe());
    let result: serde_json::Value = serde_json::from_str(&output.stdout)
        .unwrap_or_else(|err| panic!("client output is not JSON: {err}\n{}", output.describe()));
    let responses = result["responses"]
        .as_array()
        .expect("responses is an array");
    let statuses: Vec<u64> = responses
        .iter()
        .filter_map(|response| response["status"].as_u64())
        .collect();
    let served: Vec<String> = fixtures
        .http
        .requests()
        .into_iter()
        .map(|request| request.target)
        .collect();
    assert_eq!(statuses, [200, 200, 403], "{result}\nserved: {served:?}");
    assert_eq!(served, paths[..2]);
    assert_eq!(responses[0]["body"], page_body("p1"), "{result}");
    assert_eq!(responses[1]["body"], page_body("p2"), "{result}");
    let refused = format!("netjail refused this request: GET {WEB_NAME}/private/p3\n");
    let body = responses[2]["body"].as_str().unwrap_or_default();
    assert!(body.starts_with(&refused), "{result}");

    let audit = output.audit();
    let events = audit.http_events(WEB_NAME);
    assert_eq!(events.len(), 3, "{:?}", audit.lines);
    assert_forwarded(events[0], "GET", paths[0], Some(&rule));
    assert_forwarded(events[1], "GET", paths[1], Some(&rule));
    assert_refused(events[2], "GET", WEB_NAME, paths[2]);
    let flows: Vec<u64> = events.iter().map(|event| event.flow).collect();
    assert!(flows.iter().all(|&flow| flow == flows[0]), "{flows:?}");
}

/// Starts TLS handshakes to an allowed name's address. A ClientHello naming
/// another server is reset before it reaches the upstream and recorded as
/// `denied`. One naming the flow's name, or another name a rule allows,
/// passes.
fn tls_server_name_checked(mode: Mode) {
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);
    workdir.write("tls_hello.py", clients::TLS_HELLO_PY);
    let port = fixtures.first_bytes.port();
    let script = format!(
        "python3 tls_hello.py {WEB_NAME} {port} {OTHER_NAME} {WEB_NAME} {GIT_NAME}
         echo \"python3 exit $?\"
         openssl s_client -connect {WEB_NAME}:{port} -servername {OTHER_NAME} \
           </dev/null >s_client.out 2>&1
         echo \"s_client exit $?\""
    );

    let output = fixtures
        .jail(mode, &workdir)
        .allow(&format!("domain={WEB_NAME} cidr=127.0.0.0/8"))
        .allow(&format!("domain={GIT_NAME} cidr=127.0.0.0/8"))
        .run(&clients::sh(&script));

    assert_eq!(output.code(), Some(0), "{}", output.describe());
    let lines = output.stdout_lines();
    assert_eq!(lines.len(), 5, "{}", output.describe());
    assert_eq!(lines[3], "python3 exit 0", "{}", output.describe());
    let attempts: Vec<serde_json::Value> = lines[..3]
        .iter()
        .map(|line| serde_json::from_str(line).expect("each attempt is a JSON line"))
        .collect();
    assert_eq!(attempts[0]["server_name"], OTHER_NAME, "{attempts:?}");
    assert_eq!(attempts[0]["outcome"], "reset", "{attempts:?}");
    // The fixture closes after reading the ClientHello, so a handshake that
    // reached it ends with end-of-file.
    assert_eq!(attempts[1]["server_name"], WEB_NAME, "{attempts:?}");
    assert_eq!(attempts[1]["outcome"], "eof", "{attempts:?}");
    assert_eq!(attempts[2]["server_name"], GIT_NAME, "{attempts:?}");
    assert_eq!(attempts[2]["outcome"], "eof", "{attempts:?}");
    let s_client_output = read_output_file(&workdir, "s_client.out");
    assert_ne!(lines[4], "s_client exit 0", "{s_client_output}");

    // Four connections, each with a record once netjail closed it.
    wait_for(|| fixtures.first_bytes.records().len() >= 4);
    let records = fixtures.first_bytes.records();
    let hellos: Vec<&Vec<u8>> = records.iter().filter(|bytes| !bytes.is_empty()).collect();
    assert_eq!(hellos.len(), 2, "{records:?}");
    for hello in &hellos {
        assert_eq!(hello[0], TLS_HANDSHAKE, "{hello:?}");
    }
    let carries = |bytes: &[u8], name: &str| {
        bytes
            .windows(name.len())
            .any(|window| window == name.as_bytes())
    };
    assert!(hellos.iter().any(|hello| carries(hello, WEB_NAME)));
    assert!(hellos.iter().any(|hello| carries(hello, GIT_NAME)));
    assert!(!records.iter().any(|bytes| carries(bytes, OTHER_NAME)));

    let audit = output.audit();
    let denials: Vec<_> = audit
        .denials(WEB_NAME)
        .into_iter()
        .filter(|denied| denied.reason.contains(OTHER_NAME))
        .collect();
    assert_eq!(denials.len(), 2, "{:?}", audit.lines);
    for denied in &denials {
        assert_eq!(denied.decision, "deny", "{denied:?}");
        assert_eq!(denied.port, port, "{denied:?}");
        assert_eq!(denied.rule, None, "{denied:?}");
    }
    let denied_count = audit.denials(WEB_NAME).len();
    assert_eq!(denied_count, 2, "{:?}", audit.lines);
}

/// Starts a TLS handshake whose server name matches, on a flow whose rule
/// names a method. netjail cannot read the requests inside TLS, so it resets
/// the flow before the ClientHello reaches the upstream.
fn tls_reset_under_request_rules(mode: Mode) {
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);
    workdir.write("tls_hello.py", clients::TLS_HELLO_PY);
    let port = fixtures.first_bytes.port();

    let output = fixtures
        .jail(mode, &workdir)
        .allow(&web_rule("method=GET"))
        .run(&[
            "python3",
            "tls_hello.py",
            WEB_NAME,
            &port.to_string(),
            WEB_NAME,
        ]);

    assert_eq!(output.code(), Some(0), "{}", output.describe());
    let attempt: serde_json::Value = serde_json::from_str(&output.stdout)
        .unwrap_or_else(|err| panic!("client output is not JSON: {err}\n{}", output.describe()));
    assert_eq!(attempt["outcome"], "reset", "{attempt}");

    wait_for(|| !fixtures.first_bytes.records().is_empty());
    let records = fixtures.first_bytes.records();
    assert!(records.iter().all(Vec::is_empty), "{records:?}");

    let audit = output.audit();
    let denials = audit.denials(WEB_NAME);
    assert_eq!(denials.len(), 1, "{:?}", audit.lines);
    assert_eq!(denials[0].port, port, "{:?}", denials[0]);
    assert!(denials[0].reason.contains("TLS"), "{:?}", denials[0]);
    assert!(audit.http_events(WEB_NAME).is_empty(), "{:?}", audit.lines);
}

/// Checks that request targets reach the server byte for byte: `%2F` stays
/// encoded and in its case, and dot segments stay. The rule is matched
/// against the normalized path, so `/files/../secret`, spelled plainly or
/// with `%2e`, is refused.
fn encoded_path_forwarded_unchanged(mode: Mode) {
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);
    let rule = web_rule("method=GET path=/files/*");
    let base = format!("http://{WEB_NAME}:{}", fixtures.http.port());
    let targets = [
        ("/files/a%2Fb", "404"),
        ("/files/x/../a%2fb/./c", "404"),
        ("/files/../secret", "403"),
        ("/files/%2e%2e/secret", "403"),
    ];
    let script: String = targets
        .iter()
        .map(|(target, _)| {
            format!(
                "curl -sS --max-time 20 --path-as-is -o /dev/null -w '%{{http_code}}\\n' \
                   '{base}{target}' || echo \"curl exit $?\"\n"
            )
        })
        .collect();

    let output = fixtures
        .jail(mode, &workdir)
        .allow(&rule)
        .run(&clients::sh(&script));

    assert_eq!(output.code(), Some(0), "{}", output.describe());
    let statuses: Vec<&str> = targets.iter().map(|(_, status)| *status).collect();
    assert_eq!(output.stdout_lines(), statuses, "{}", output.describe());

    let served: Vec<String> = fixtures
        .http
        .requests()
        .into_iter()
        .map(|request| request.target)
        .collect();
    assert_eq!(served, [targets[0].0, targets[1].0]);

    let audit = output.audit();
    let events = audit.http_events(WEB_NAME);
    assert_eq!(events.len(), targets.len(), "{:?}", audit.lines);
    assert_forwarded(events[0], "GET", targets[0].0, Some(&rule));
    assert_forwarded(events[1], "GET", targets[1].0, Some(&rule));
    assert_refused(events[2], "GET", WEB_NAME, targets[2].0);
    assert_refused(events[3], "GET", WEB_NAME, targets[3].0);
}
