//! Real clients inside the jail: git, Python's urllib, Node's fetch, curl.

use std::net::TcpListener;

use integration::audit::SESSION_MODE_NO_USER_NAMESPACE;
use integration::clients;
use integration::fixtures::git::{GIT_FILE_CONTENTS, GIT_FILE_NAME};
use integration::fixtures::http::page_body;
use integration::fixtures::{Fixtures, GIT_NAME, WEB_NAME};
use integration::jail::Mode;
use integration::jail_tests;
use integration::workdir::Workdir;

jail_tests!(
    git_clone_over_http,
    python_urllib_fetches_page,
    node_fetch_fetches_page,
    curl_closed_port_fails_fast,
);

fn git_clone_over_http(mode: Mode) {
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);
    let url = fixtures.http_url(GIT_NAME, "/repo.git");

    let output = fixtures
        .jail(mode, &workdir)
        .allow_loopback_name(GIT_NAME)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .run(&clients::sh(&format!(
            "git clone --quiet {url} clone && cat clone/{GIT_FILE_NAME}"
        )));

    assert_eq!(output.code(), Some(0), "{}", output.describe());
    assert_eq!(output.stdout, GIT_FILE_CONTENTS, "{}", output.describe());
    let host = format!("{GIT_NAME}:{}", fixtures.http.port());
    let requests = fixtures.http.requests();
    let refs_request = requests
        .iter()
        .find(|r| r.target.starts_with("/repo.git/info/refs"));
    let refs_request = refs_request.unwrap_or_else(|| panic!("no info/refs request: {requests:?}"));
    assert_eq!(refs_request.host.as_deref(), Some(host.as_str()));
}

fn python_urllib_fetches_page(mode: Mode) {
    fetch_page(mode, &clients::python_fetch);
}

fn node_fetch_fetches_page(mode: Mode) {
    fetch_page(mode, &clients::node_fetch);
}

fn fetch_page(mode: Mode, client: &dyn Fn(&str) -> Vec<String>) {
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);
    let url = fixtures.http_url(WEB_NAME, "/pages/by-name");

    let output = fixtures
        .jail(mode, &workdir)
        .allow_loopback_name(WEB_NAME)
        .run(&client(&url));

    assert_eq!(output.code(), Some(0), "{}", output.describe());
    assert_eq!(output.stdout, page_body("by-name"), "{}", output.describe());
    let requests = fixtures.http.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let host = format!("{WEB_NAME}:{}", fixtures.http.port());
    assert_eq!(requests[0].host.as_deref(), Some(host.as_str()));
}

/// A refused upstream connect must reach the client as a refused connect
/// (curl exit 7), not as an accepted connection that closes, and at once.
fn curl_closed_port_fails_fast(mode: Mode) {
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);
    let port = closed_port();
    let url = format!("http://{WEB_NAME}:{port}/");
    let script = format!(
        "start=$(date +%s%N)
         curl -sS --max-time 10 {url}
         status=$?
         end=$(date +%s%N)
         echo \"$status $(( (end - start) / 1000000 ))\""
    );

    let output = fixtures
        .jail(mode, &workdir)
        .allow_loopback_name(WEB_NAME)
        .run(&clients::sh(&script));

    assert_eq!(output.code(), Some(0), "{}", output.describe());
    let fields: Vec<u64> = output
        .stdout
        .split_whitespace()
        .map(|field| field.parse().expect("a number"))
        .collect();
    assert_eq!(fields.len(), 2, "{}", output.describe());
    assert_eq!(fields[0], 7, "curl exit status\n{}", output.describe());
    assert!(
        fields[1] < 500,
        "curl took {} ms\n{}",
        fields[1],
        output.describe()
    );

    let audit = output.audit();
    let failures = audit.flow_failures(WEB_NAME);
    assert!(!failures.is_empty(), "{:?}", audit.event_names());
    assert_eq!(failures[0].port, port, "{:?}", failures[0]);
    let error = failures[0].error.to_lowercase();
    assert!(error.contains("refused"), "{:?}", failures[0]);
    assert!(
        audit.flow_opens(WEB_NAME).is_empty(),
        "{:?}",
        audit.event_names()
    );
}

/// Returns a port of 127.0.0.1 that nothing listens on, by binding port 0
/// and closing the listener.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port failed");
    listener.local_addr().expect("listener address").port()
}

#[test]
fn no_user_namespace_fetches_page() {
    let mode = Mode::Root;
    if !mode.is_available() {
        eprintln!("skipped: --no-user-namespace needs the tests to run as root");
        return;
    }
    let fixtures = Fixtures::start();
    let workdir = Workdir::new(mode);
    let url = fixtures.http_url(WEB_NAME, "/pages/no-userns");

    let output = fixtures
        .jail(mode, &workdir)
        .option("--no-user-namespace")
        .allow_loopback_name(WEB_NAME)
        .run(&["curl", "-sS", "--fail", &url]);

    assert_eq!(output.code(), Some(0), "{}", output.describe());
    assert_eq!(
        output.stdout,
        page_body("no-userns"),
        "{}",
        output.describe()
    );
    let audit = output.audit();
    let starts = audit.session_starts();
    assert_eq!(starts.len(), 1, "{:?}", audit.event_names());
    assert_eq!(starts[0].mode, SESSION_MODE_NO_USER_NAMESPACE);
}
