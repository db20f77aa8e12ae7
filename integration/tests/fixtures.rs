//! Self-tests of the fixture servers: the same clients the jail tests use,
//! run directly on the host against 127.0.0.1, without netjail. When these
//! fail, a failing jail test is no evidence against netjail.

use std::process::{Command, Output};

use integration::clients;
use integration::content;
use integration::fixtures::dns::{DnsTransport, txt_value};
use integration::fixtures::events::StreamStep;
use integration::fixtures::first_bytes::TLS_HANDSHAKE;
use integration::fixtures::git::{GIT, GIT_FILE_CONTENTS, GIT_FILE_NAME};
use integration::fixtures::http::page_body;
use integration::fixtures::{BIG_TXT_NAME, DENIED_NAME, Fixtures, WEB_NAME, big_txt_strings};

fn run(args: &[String]) -> Output {
    Command::new(&args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|err| panic!("starting {args:?} failed: {err}"))
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn describe(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{stderr}",
        output.status,
        stdout(output)
    )
}

/// `dig` against the fixture resolver, `+short`, over `transport`.
fn dig(fixtures: &Fixtures, transport: DnsTransport, args: &[&str]) -> Output {
    let addr = fixtures.dns.addr();
    let mut command = vec![
        "dig".to_owned(),
        format!("@{}", addr.ip()),
        "-p".to_owned(),
        addr.port().to_string(),
        "+time=2".to_owned(),
        "+tries=1".to_owned(),
    ];
    if transport == DnsTransport::Tcp {
        command.push("+tcp".to_owned());
    }
    command.extend(args.iter().map(|arg| arg.to_string()));
    run(&command)
}

/// curl with the fixture names pinned to 127.0.0.1, so no resolver is used.
fn curl(fixtures: &Fixtures, args: &[&str]) -> Output {
    let port = fixtures.http.port();
    let mut command = vec![
        "curl".to_owned(),
        "-sS".to_owned(),
        "--fail".to_owned(),
        "--max-time".to_owned(),
        "60".to_owned(),
        "--resolve".to_owned(),
        format!("{WEB_NAME}:{port}:127.0.0.1"),
    ];
    command.extend(args.iter().map(|arg| arg.to_string()));
    run(&command)
}

#[test]
fn dns_answers_a_aaaa_txt() {
    let fixtures = Fixtures::start();
    for transport in [DnsTransport::Udp, DnsTransport::Tcp] {
        let a = dig(&fixtures, transport, &["+short", WEB_NAME, "A"]);
        assert_eq!(
            stdout(&a),
            "127.0.0.1\n",
            "{transport:?} A\n{}",
            describe(&a)
        );
        let aaaa = dig(&fixtures, transport, &["+short", WEB_NAME, "AAAA"]);
        assert_eq!(
            stdout(&aaaa),
            "::1\n",
            "{transport:?} AAAA\n{}",
            describe(&aaaa)
        );
        let txt = dig(&fixtures, transport, &["+short", WEB_NAME, "TXT"]);
        let expected = format!("\"{}\"\n", txt_value(WEB_NAME));
        assert_eq!(
            stdout(&txt),
            expected,
            "{transport:?} TXT\n{}",
            describe(&txt)
        );
    }
}

#[test]
fn dns_truncates_large_udp_reply() {
    let fixtures = Fixtures::start();
    let udp = dig(
        &fixtures,
        DnsTransport::Udp,
        &["+ignore", "+noedns", BIG_TXT_NAME, "TXT"],
    );
    let flags = stdout(&udp);
    let flags = flags
        .lines()
        .find(|line| line.starts_with(";; flags"))
        .unwrap_or_default();
    assert!(flags.contains(" tc"), "{}", describe(&udp));

    let retried = dig(
        &fixtures,
        DnsTransport::Udp,
        &["+short", BIG_TXT_NAME, "TXT"],
    );
    let lines = stdout(&retried).lines().count();
    assert_eq!(lines, big_txt_strings().len(), "{}", describe(&retried));
}

#[test]
fn dns_unknown_name_is_nxdomain() {
    let fixtures = Fixtures::start();
    let output = dig(&fixtures, DnsTransport::Udp, &["unknown.test", "A"]);
    assert!(
        stdout(&output).contains("status: NXDOMAIN"),
        "{}",
        describe(&output)
    );
}

#[test]
fn dns_records_queries() {
    let fixtures = Fixtures::start();
    dig(
        &fixtures,
        DnsTransport::Tcp,
        &["+short", DENIED_NAME, "TXT"],
    );
    let queries = fixtures.dns.queries();
    assert_eq!(queries.len(), 1, "{queries:?}");
    assert_eq!(queries[0].transport, DnsTransport::Tcp);
    assert_eq!(queries[0].name, DENIED_NAME);
    assert_eq!(queries[0].qtype, "TXT");
    assert!(fixtures.dns.was_queried(DENIED_NAME));
    assert!(!fixtures.dns.was_queried(WEB_NAME));
}

#[test]
fn http_serves_page() {
    let fixtures = Fixtures::start();
    let output = curl(&fixtures, &[&fixtures.http_url(WEB_NAME, "/pages/hello")]);
    assert_eq!(stdout(&output), page_body("hello"), "{}", describe(&output));
    let requests = fixtures.http.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let host = format!("{WEB_NAME}:{}", fixtures.http.port());
    assert_eq!(requests[0].host.as_deref(), Some(host.as_str()));
}

#[test]
fn http_payload_matches_generator() {
    let fixtures = Fixtures::start();
    let len = 3 * content::BLOCK_LEN as u64 + 17;
    let url = fixtures.http_url(WEB_NAME, &format!("/payload/{len}"));
    let script = format!(
        "curl -sS --fail --resolve {WEB_NAME}:{}:127.0.0.1 {url} | sha256sum",
        fixtures.http.port()
    );
    let output = run(&clients::bash_strict(&script));
    let expected = format!("{}  -\n", content::payload_sha256(len));
    assert_eq!(stdout(&output), expected, "{}", describe(&output));
}

#[test]
fn http_upload_returns_sha256() {
    let fixtures = Fixtures::start();
    let dir = tempfile::tempdir().unwrap();
    let body = content::payload(1 << 20);
    let file = dir.path().join("upload.bin");
    std::fs::write(&file, &body).unwrap();
    let file = file.to_str().unwrap();
    let url = fixtures.http_url(WEB_NAME, "/upload");
    let expected = format!("{}\n", content::sha256_hex(&body));

    let fixed = curl(&fixtures, &["-T", file, &url]);
    assert_eq!(stdout(&fixed), expected, "{}", describe(&fixed));
    let chunked = curl(
        &fixtures,
        &["-H", "Transfer-Encoding: chunked", "-T", file, &url],
    );
    assert_eq!(stdout(&chunked), expected, "{}", describe(&chunked));

    let uploads = fixtures.http.uploads();
    assert_eq!(uploads.len(), 2, "{uploads:?}");
    assert!(!uploads[0].chunked, "{uploads:?}");
    assert!(uploads[1].chunked, "{uploads:?}");
    assert_eq!(uploads[1].len, body.len() as u64);
}

#[test]
fn http_parallel_connections_overlap() {
    let fixtures = Fixtures::start();
    let mut args = vec![
        "--parallel".to_owned(),
        "--parallel-immediate".to_owned(),
        "--parallel-max".to_owned(),
        "200".to_owned(),
        "-w".to_owned(),
        "%{http_code}\\n".to_owned(),
    ];
    for i in 0..200 {
        args.push("-o".to_owned());
        args.push("/dev/null".to_owned());
        args.push(fixtures.http_url(WEB_NAME, &format!("/slow/300/p{i}")));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = curl(&fixtures, &args);
    let ok = stdout(&output)
        .lines()
        .filter(|line| *line == "200")
        .count();
    assert_eq!(ok, 200, "{}", describe(&output));
    assert_eq!(fixtures.http.connections(), 200);
    assert!(fixtures.http.peak_open_connections() >= 150);
}

#[test]
fn git_clones_over_dumb_http() {
    let fixtures = Fixtures::start();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}/repo.git", fixtures.http.port());
    let clone = dir.path().join("clone");
    let output = Command::new(GIT)
        .args(["clone", "--quiet", &url])
        .arg(&clone)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let contents = std::fs::read_to_string(clone.join(GIT_FILE_NAME)).unwrap();
    assert_eq!(contents, GIT_FILE_CONTENTS);
}

#[test]
fn exchange_replies_after_eof() {
    let fixtures = Fixtures::start();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("exchange.py");
    std::fs::write(&script, clients::EXCHANGE_PY).unwrap();
    let port = fixtures.exchange.port().to_string();
    let (send, reply) = (100_000u64, 300_000u64);
    let output = Command::new("python3")
        .arg(&script)
        .args(["127.0.0.1", &port, &send.to_string(), &reply.to_string()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));

    let result: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(result["sent"], send);
    assert_eq!(result["received"], reply);
    assert_eq!(result["sha256"], content::payload_sha256(reply));
    let records = fixtures.exchange.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].received, send);
    assert_eq!(records[0].sent, reply);
    assert!(records[0].completed);
}

#[test]
fn http_event_stream_waits_for_ack() {
    let fixtures = Fixtures::start();
    let port = fixtures.http.port();
    let stream_url = format!("http://127.0.0.1:{port}/events/self/2");
    let ack_url = format!("http://127.0.0.1:{port}/events/self/ack");
    let script = format!(
        "curl -sS -N --fail --max-time 30 {stream_url} | while IFS= read -r line; do
           case \"$line\" in
             'data: event '*)
               n=\"${{line#data: event }}\"
               echo \"received $n\"
               curl -sS --fail --max-time 10 -X POST {ack_url}/$n ;;
           esac
         done"
    );
    let output = run(&clients::bash_strict(&script));
    assert_eq!(
        stdout(&output),
        "received 1\nack 1\nreceived 2\nack 2\n",
        "{}",
        describe(&output)
    );
    let log = fixtures.http.event_streams().log("self");
    let expected = [
        StreamStep::Sent(1),
        StreamStep::Acked(1),
        StreamStep::Sent(2),
        StreamStep::Acked(2),
    ];
    assert_eq!(log, expected);
}

#[test]
fn http_websocket_echoes_messages() {
    let fixtures = Fixtures::start();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("websocket_echo.py");
    std::fs::write(&script, clients::WEBSOCKET_ECHO_PY).unwrap();
    let port = fixtures.http.port().to_string();
    let output = Command::new("python3")
        .arg(&script)
        .args(["127.0.0.1", &port, "/echo", "hello", "70000"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));

    let result: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(result["status"], 101, "{result}");
    assert_eq!(result["accept_ok"], true, "{result}");
    assert_eq!(result["echoes"][0]["equal"], true, "{result}");
    assert_eq!(result["echoes"][1]["len"], 70000, "{result}");
    assert_eq!(result["echoes"][1]["equal"], true, "{result}");
    assert_eq!(result["close_code"], 1000, "{result}");
}

#[test]
fn first_bytes_records_client_hello() {
    let fixtures = Fixtures::start();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("tls_hello.py");
    std::fs::write(&script, clients::TLS_HELLO_PY).unwrap();
    let port = fixtures.first_bytes.port().to_string();
    let output = Command::new("python3")
        .arg(&script)
        .args(["127.0.0.1", &port, WEB_NAME])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));

    let result: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(result["outcome"], "eof", "{result}");
    let records = fixtures.first_bytes.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0][0], TLS_HANDSHAKE, "{records:?}");
    let carries_name = records[0]
        .windows(WEB_NAME.len())
        .any(|window| window == WEB_NAME.as_bytes());
    assert!(carries_name, "{records:?}");
}
