//! Bulk data, half-close and many parallel connections through the jail.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use std::os::fd::AsRawFd;

use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, bind, listen, setsockopt, socket,
    sockopt,
};
use sha2::{Digest, Sha256};

use integration::clients;
use integration::content;
use integration::fixtures::http::page_body;
use integration::fixtures::{EXCHANGE_NAME, Fixtures, V4_ONLY_NAME, WEB_NAME};
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
    python_upload_outlives_server_half_close,
    python_upload_outlives_both_fins,
    python_abort_after_server_half_close,
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

/// How long the late reader waits before it reads: longer than the 10 s a
/// TCP socket of smoltcp stays in TIME-WAIT.
const LATE_READ_DELAY: Duration = Duration::from_secs(12);

/// The jailed client of the late reader. With `read-first` it reads the
/// server's greeting to end of file and then sends the file and its FIN;
/// with `send-first` it sends the file and its FIN and then reads to end of
/// file.
const LATE_UPLOAD_PY: &str = r#"
import socket, sys
host, port, path, order = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
data = open(path, "rb").read()
with socket.create_connection((host, port)) as s:
    if order == "read-first":
        while s.recv(4096):
            pass
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    while s.recv(4096):
        pass
"#;

/// Which side of the late reader's connection sends its FIN first.
#[derive(Clone, Copy)]
enum FirstFin {
    /// The server greets and shuts down its write side before the upload.
    Server,
    /// The jail uploads and sends its FIN; two seconds later the server shuts
    /// down its write side, still without reading.
    Jail,
}

/// Checks an upload sent after the server's FIN: the jail then sends its own
/// FIN while the server reads nothing for longer than TIME-WAIT lasts.
fn python_upload_outlives_server_half_close(mode: Mode) {
    upload_to_late_reader(mode, FirstFin::Server);
}

/// Checks an upload followed by the jail's FIN and then the server's, while
/// the upload still waits, so netjail's socket reaches CLOSED first.
fn python_upload_outlives_both_fins(mode: Mode) {
    upload_to_late_reader(mode, FirstFin::Jail);
}

/// Uploads 3 MB and 40 MB on two connections to a server with a 4 KiB
/// receive buffer. The server reads only after both FINs could be through,
/// so the uploads still sit in netjail when the jail's side of the
/// connection ends. Every byte must still reach the server.
fn upload_to_late_reader(mode: Mode, first_fin: FirstFin) {
    const SIZES: [u64; 2] = [3_000_000, 40_000_000];
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);
    workdir.write("late_upload.py", LATE_UPLOAD_PY);
    for len in SIZES {
        workdir.write(&format!("upload-{len}"), content::payload(len as usize));
    }
    let listener = listen_with_small_receive_buffer();
    let port = listener.local_addr().unwrap().port();
    let done = workdir.join("server-done");
    let (results, received) = mpsc::channel();
    let server = thread::spawn(move || {
        let readers: Vec<_> = SIZES
            .iter()
            .map(|_| {
                let (stream, _) = listener.accept().unwrap();
                let results = results.clone();
                thread::spawn(move || results.send(read_late(stream, first_fin)).unwrap())
            })
            .collect();
        for reader in readers {
            reader.join().unwrap();
        }
    });

    let order = match first_fin {
        FirstFin::Server => "read-first",
        FirstFin::Jail => "send-first",
    };
    let script = format!(
        "for len in {} {}; do python3 late_upload.py {V4_ONLY_NAME} {port} upload-$len {order} & \
         done; wait; for _ in $(seq 600); do [ -e server-done ] && exit 0; sleep 0.1; done; exit 3",
        SIZES[0], SIZES[1]
    );
    let jail = fixtures
        .jail(mode, &workdir)
        .allow(&format!("domain={V4_ONLY_NAME} cidr=127.0.0.0/8"))
        .timeout(LARGE_TIMEOUT);
    let waiter = thread::spawn(move || jail.run(&clients::bash_strict(&script)));
    server.join().unwrap();
    std::fs::write(&done, "").unwrap();
    let output = waiter.join().unwrap();

    assert_eq!(output.code(), Some(0), "{}", output.describe());
    let mut got: Vec<(u64, String)> = received.try_iter().collect();
    got.sort();
    let expected: Vec<(u64, String)> = SIZES
        .iter()
        .map(|&len| (len, content::payload_sha256(len)))
        .collect();
    assert_eq!(got, expected, "{}", output.describe());
    let audit = output.audit();
    let mut from_jail: Vec<u64> = audit
        .flow_closes(V4_ONLY_NAME)
        .iter()
        .map(|close| close.bytes_from_jail)
        .collect();
    from_jail.sort();
    assert_eq!(from_jail, SIZES, "{:?}", audit.event_names());
}

/// The jailed client of the abort test: reads the greeting to end of file,
/// sends 300,000 bytes and closes with SO_LINGER 0, so its kernel sends a
/// reset instead of a FIN.
const ABORT_PY: &str = r#"
import socket, struct, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
while s.recv(4096):
    pass
s.sendall(b"x" * 300000)
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
"#;

/// Checks that a reset from the jail reaches a server that half-closed first.
/// An end of file instead would pass the cut upload off as complete.
fn python_abort_after_server_half_close(mode: Mode) {
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);
    workdir.write("abort.py", ABORT_PY);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(LARGE_TIMEOUT)).unwrap();
        stream.write_all(b"hello").unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut buffer = vec![0; 64 * 1024];
        loop {
            match stream.read(&mut buffer) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(err) => return Err(err.kind()),
            }
        }
    });

    let output = fixtures
        .jail(mode, &workdir)
        .allow(&format!("domain={V4_ONLY_NAME} cidr=127.0.0.0/8"))
        .run(&["python3", "abort.py", V4_ONLY_NAME, &port.to_string()]);

    assert_eq!(output.code(), Some(0), "{}", output.describe());
    let ended = server.join().unwrap();
    assert_eq!(
        ended,
        Err(std::io::ErrorKind::ConnectionReset),
        "{}",
        output.describe()
    );
    let audit = output.audit();
    let closes = audit.flow_closes(V4_ONLY_NAME);
    assert_eq!(closes.len(), 1, "{:?}", audit.event_names());
    assert_eq!(closes[0].close, "reset by jail", "{:?}", closes[0]);
}

/// Listens on 127.0.0.1 with a 4 KiB receive buffer, set before `listen` so
/// that accepted connections advertise a window that fits it.
fn listen_with_small_receive_buffer() -> TcpListener {
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    setsockopt(&fd, sockopt::RcvBuf, &4096).unwrap();
    bind(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0)).unwrap();
    listen(&fd, Backlog::new(16).unwrap()).unwrap();
    TcpListener::from(fd)
}

/// Shuts down the write side in the order `first_fin` gives, waits
/// [`LATE_READ_DELAY`] and reads to end of file. Returns the byte count and
/// SHA-256 of what it read.
fn read_late(mut stream: TcpStream, first_fin: FirstFin) -> (u64, String) {
    // A stalled upload ends the read instead of hanging the test.
    stream.set_read_timeout(Some(LARGE_TIMEOUT)).unwrap();
    match first_fin {
        FirstFin::Server => stream.write_all(b"hello").unwrap(),
        FirstFin::Jail => thread::sleep(Duration::from_secs(2)),
    }
    stream.shutdown(Shutdown::Write).unwrap();
    thread::sleep(LATE_READ_DELAY);
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let mut buffer = vec![0; 64 * 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                hasher.update(&buffer[..n]);
                total += n as u64;
            }
        }
    }
    (total, content::hex(&hasher.finalize()))
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
