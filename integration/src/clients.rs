//! Command lines for the clients the tests run, inside the jail or, for the
//! fixture self-tests, directly on the host.

/// The exchange fixture's client; see the script's docstring.
pub const EXCHANGE_PY: &str = include_str!("../clients/exchange.py");

/// A node client that sends many GET requests through one keep-alive agent;
/// see the script's header.
pub const KEEPALIVE_JS: &str = include_str!("../clients/keepalive.js");

/// A standard-library WebSocket client for the echo endpoint; see the
/// script's docstring.
pub const WEBSOCKET_ECHO_PY: &str = include_str!("../clients/websocket_echo.py");

/// A client that starts TLS handshakes with chosen server names and reports
/// how each ended; see the script's docstring.
pub const TLS_HELLO_PY: &str = include_str!("../clients/tls_hello.py");

/// Python's urllib fetching `url` and printing the body.
pub fn python_fetch(url: &str) -> Vec<String> {
    let script = "import sys, urllib.request\n\
                  body = urllib.request.urlopen(sys.argv[1], timeout=30).read()\n\
                  sys.stdout.write(body.decode())\n";
    strings(&["python3", "-c", script, url])
}

/// Node's built-in fetch getting `url` and printing the body; exits 1 on any
/// error or non-2xx status.
pub fn node_fetch(url: &str) -> Vec<String> {
    let script = "fetch(process.argv[1])\n\
                  .then((r) => { if (!r.ok) throw new Error(`status ${r.status}`); return r.text(); })\n\
                  .then((t) => process.stdout.write(t))\n\
                  .catch((e) => { console.error(e); process.exit(1); });\n";
    strings(&["node", "-e", script, url])
}

/// `sh -c SCRIPT`.
pub fn sh(script: &str) -> Vec<String> {
    strings(&["sh", "-c", script])
}

/// `bash -c SCRIPT` with errexit and pipefail, so a failing curl anywhere,
/// also inside a pipe, fails the run.
pub fn bash_strict(script: &str) -> Vec<String> {
    strings(&["bash", "-e", "-o", "pipefail", "-c", script])
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| arg.to_string()).collect()
}
