//! Bulk data, half-close and many parallel connections through the jail.

use std::time::Duration;

use integration::clients;
use integration::content;
use integration::fixtures::http::page_body;
use integration::fixtures::{EXCHANGE_NAME, Fixtures, WEB_NAME};
use integration::jail::Mode;
use integration::jail_tests;
use integration::workdir::Workdir;

/// 256 MiB: large enough that a stack without back-pressure or with a slow
/// path shows it, small enough for a release build on two cores.
const LARGE_LEN: u64 = 256 << 20;

const LARGE_TIMEOUT: Duration = Duration::from_secs(300);

/// An upper bound on the HTTP bytes around a 256 MiB body: headers, and for
/// chunked uploads the chunk framing. It is generous: 256 KiB is 26,000
/// chunks of 10 framing bytes, one per 10 KiB of body.
const MAX_HTTP_OVERHEAD: u64 = 256 << 10;

jail_tests!(
    curl_download_256_mib,
    curl_upload_256_mib_content_length,
    curl_upload_256_mib_chunked,
    python_half_close_gets_reply,
    curl_200_parallel_connections,
);

fn curl_download_256_mib(mode: Mode) {
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);
    let url = fixtures.http_url(WEB_NAME, &format!("/payload/{LARGE_LEN}"));

    let output = fixtures
        .jail(mode, &workdir)
        .allow_loopback_name(WEB_NAME)
        .timeout(LARGE_TIMEOUT)
        .run(&clients::bash_strict(&format!(
            "curl -sS --fail {url} | sha256sum | cut -d ' ' -f 1"
        )));

    assert_eq!(output.code(), Some(0), "{}", output.describe());
    let expected = content::payload_sha256(LARGE_LEN);
    assert_eq!(output.stdout.trim(), expected, "{}", output.describe());

    let audit = output.audit();
    let closes = audit.flow_closes(WEB_NAME);
    assert_eq!(closes.len(), 1, "{:?}", audit.event_names());
    let to_jail = closes[0].bytes_to_jail;
    assert!(to_jail > LARGE_LEN, "{:?}", closes[0]);
    assert!(to_jail < LARGE_LEN + MAX_HTTP_OVERHEAD, "{:?}", closes[0]);
}

fn curl_upload_256_mib_content_length(mode: Mode) {
    curl_upload_256_mib(mode, false);
}

fn curl_upload_256_mib_chunked(mode: Mode) {
    curl_upload_256_mib(mode, true);
}

/// Uploads the payload with `curl -T`, which sends Content-Length unless a
/// `Transfer-Encoding: chunked` header is given.
fn curl_upload_256_mib(mode: Mode, chunked: bool) {
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);
    let file = workdir.join("upload.bin");
    content::write_payload(&file, LARGE_LEN).expect("writing the upload file failed");
    let url = fixtures.http_url(WEB_NAME, "/upload");
    let header = if chunked {
        "-H 'Transfer-Encoding: chunked'"
    } else {
        ""
    };

    let output = fixtures
        .jail(mode, &workdir)
        .allow_loopback_name(WEB_NAME)
        .timeout(LARGE_TIMEOUT)
        .run(&clients::sh(&format!(
            "curl -sS --fail {header} -T upload.bin {url}"
        )));

    assert_eq!(output.code(), Some(0), "{}", output.describe());
    let expected = content::payload_sha256(LARGE_LEN);
    assert_eq!(output.stdout.trim(), expected, "{}", output.describe());
    let uploads = fixtures.http.uploads();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    assert_eq!(uploads[0].len, LARGE_LEN);
    assert_eq!(uploads[0].chunked, chunked);

    let audit = output.audit();
    let closes = audit.flow_closes(WEB_NAME);
    assert_eq!(closes.len(), 1, "{:?}", audit.event_names());
    let from_jail = closes[0].bytes_from_jail;
    assert!(from_jail > LARGE_LEN, "{:?}", closes[0]);
    assert!(from_jail < LARGE_LEN + MAX_HTTP_OVERHEAD, "{:?}", closes[0]);
}

/// The client shuts down its write side after the request and the server
/// replies only after reading end-of-file, so netjail must carry the FIN
/// upstream and keep the other direction open.
fn python_half_close_gets_reply(mode: Mode) {
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);
    workdir.write("exchange.py", clients::EXCHANGE_PY);
    let (send, reply) = (1u64 << 20, 8u64 << 20);
    let port = fixtures.exchange.port().to_string();

    let output = fixtures
        .jail(mode, &workdir)
        .allow_loopback_name(EXCHANGE_NAME)
        .run(&[
            "python3",
            "exchange.py",
            EXCHANGE_NAME,
            &port,
            &send.to_string(),
            &reply.to_string(),
        ]);

    assert_eq!(output.code(), Some(0), "{}", output.describe());
    let result: serde_json::Value = serde_json::from_str(&output.stdout)
        .unwrap_or_else(|err| panic!("client output is not JSON: {err}\n{}", output.describe()));
    assert_eq!(result["sent"], send);
    assert_eq!(result["received"], reply);
    assert_eq!(result["sha256"], content::payload_sha256(reply));
    let records = fixtures.exchange.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].received, send);
    assert!(records[0].completed, "{records:?}");
}

/// Starts 200 requests at once, each held 300 ms by the server, so every
/// connection is open at the same time unless netjail serializes them.
fn curl_200_parallel_connections(mode: Mode) {
    const COUNT: usize = 200;
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);
    let mut command = vec![
        "curl",
        "-sS",
        "--parallel",
        "--parallel-immediate",
        "--parallel-max",
        "200",
        "-w",
        "%{http_code} %{size_download}\\n",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect::<Vec<_>>();
    for i in 0..COUNT {
        command.push("-o".to_owned());
        command.push("/dev/null".to_owned());
        command.push(fixtures.http_url(WEB_NAME, &format!("/slow/300/p{i}")));
    }

    let output = fixtures
        .jail(mode, &workdir)
        .allow_loopback_name(WEB_NAME)
        .run(&command);

    assert_eq!(output.code(), Some(0), "{}", output.describe());
    let ok_lines = output
        .stdout_lines()
        .iter()
        .filter(|line| line.starts_with("200 "))
        .count();
    assert_eq!(ok_lines, COUNT, "{}", output.describe());
    let received: usize = output
        .stdout_lines()
        .iter()
        .filter_map(|line| line.split(' ').nth(1)?.parse::<usize>().ok())
        .sum();
    let expected: usize = (0..COUNT).map(|i| page_body(&format!("p{i}")).len()).sum();
    assert_eq!(received, expected, "{}", output.describe());
    let served = fixtures.http.requests().len();
    assert_eq!(served, COUNT);
    let peak = fixtures.http.peak_open_connections();
    assert!(
        peak >= COUNT / 2,
        "at most {peak} connections were open at once"
    );

    let audit = output.audit();
    let opens = audit.flow_opens(WEB_NAME).len();
    assert_eq!(
        opens,
        fixtures.http.connections(),
        "{:?}",
        audit.event_names()
    );
    let closes = audit.flow_closes(WEB_NAME).len();
    assert_eq!(closes, opens, "{:?}", audit.event_names());
}
