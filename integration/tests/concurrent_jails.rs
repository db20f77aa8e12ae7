//! Several netjail instances at once on one machine: each enforces its own
//! policy and writes its own audit log, and none receives another's traffic.

use std::collections::HashSet;

use integration::audit::session_mode;
use integration::clients;
use integration::fixtures::dns::{DnsServer, DnsZone};
use integration::fixtures::http::{HttpServer, page_body};
use integration::jail::{JailCommand, JailOutput, Mode};
use integration::workdir::Workdir;

/// How many jails run at once.
const JAILS: usize = 10;

/// Exit status of curl when it cannot resolve the host name.
const CURL_COULD_NOT_RESOLVE: i32 = 6;

/// Returns the name that jail `index` may reach.
fn site_name(index: usize) -> String {
    format!("site-{index}.test")
}

/// The fixture DNS server with every jail's name, and the HTTP server.
struct SiteFixtures {
    dns: DnsServer,
    http: HttpServer,
    runtime: Option<tokio::runtime::Runtime>,
}

impl SiteFixtures {
    fn start() -> SiteFixtures {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("building the fixture runtime failed");
        let zone = (0..JAILS).fold(DnsZone::default(), |zone, index| {
            zone.with_loopback_name(&site_name(index))
        });
        let (dns, http) = runtime
            .block_on(async { (DnsServer::start(zone).await, HttpServer::start(None).await) });
        SiteFixtures {
            dns: dns.expect("starting the DNS fixture failed"),
            http: http.expect("starting the HTTP fixture failed"),
            runtime: Some(runtime),
        }
    }

    fn page_url(&self, name: &str) -> String {
        format!("http://{name}:{}/pages/{name}", self.http.port())
    }
}

impl Drop for SiteFixtures {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Runs jail `index`: it fetches its own site, then tries the next jail's
/// site, which its policy denies.
fn run_jail(fixtures: &SiteFixtures, index: usize, workdir: &Workdir, mode: Mode) -> JailOutput {
    let own = site_name(index);
    let neighbour = site_name((index + 1) % JAILS);
    let script = format!(
        "curl -sS --fail --max-time 30 {own_url} && \
         curl -s --max-time 10 {neighbour_url}; echo \"neighbour: $?\"",
        own_url = fixtures.page_url(&own),
        neighbour_url = fixtures.page_url(&neighbour),
    );
    JailCommand::new(mode, workdir)
        .resolver(&fixtures.dns.addr().to_string())
        .allow(&format!("domain={own} cidr=127.0.0.0/8"))
        .allow(&format!("domain={own} cidr=::1/128"))
        .run(&clients::sh(&script))
}

#[test]
fn ten_concurrent_jails_stay_separate() {
    if !Mode::Root.is_available() {
        eprintln!("skipped: running jails as root and as the test user needs root");
        return;
    }
    let fixtures = SiteFixtures::start();
    // Half the jails run as root, half rootless as the test user.
    let modes: Vec<Mode> = (0..JAILS)
        .map(|index| {
            if index % 2 == 0 {
                Mode::Root
            } else {
                Mode::Rootless
            }
        })
        .collect();
    let workdirs: Vec<Workdir> = modes.iter().map(|mode| Workdir::new(*mode)).collect();

    let outputs: Vec<JailOutput> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..JAILS)
            .map(|index| {
                let (fixtures, workdir, mode) = (&fixtures, &workdirs[index], modes[index]);
                scope.spawn(move || run_jail(fixtures, index, workdir, mode))
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("a jail thread panicked"))
            .collect()
    });

    let mut sessions = HashSet::new();
    for (index, output) in outputs.iter().enumerate() {
        let own = site_name(index);
        let neighbour = site_name((index + 1) % JAILS);
        let context = format!("jail {index} ({:?})\n{}", modes[index], output.describe());

        assert_eq!(output.code(), Some(0), "{context}");
        let expected = format!("{}neighbour: {CURL_COULD_NOT_RESOLVE}\n", page_body(&own));
        assert_eq!(output.stdout, expected, "{context}");

        let audit = output.audit();
        audit
            .check_envelope()
            .unwrap_or_else(|err| panic!("{err}\n{context}"));
        assert!(
            sessions.insert(audit.records[0].session.clone()),
            "session id repeated\n{context}"
        );
        let starts = audit.session_starts();
        assert_eq!(starts.len(), 1, "{context}");
        assert_eq!(starts[0].mode, session_mode(modes[index]), "{context}");
        assert!(
            starts[0].allow.iter().all(|rule| rule.contains(&own)),
            "{:?}\n{context}",
            starts[0].allow
        );

        assert!(!audit.flow_opens(&own).is_empty(), "{context}");
        let neighbour_queries = audit.dns_events(&neighbour);
        assert!(!neighbour_queries.is_empty(), "{context}");
        assert!(
            neighbour_queries.iter().all(|dns| dns.decision == "deny"),
            "{context}"
        );
        assert!(audit.flow_opens(&neighbour).is_empty(), "{context}");
        // No other jail's name appears in this log.
        for other in (0..JAILS).filter(|other| *other != index && *other != (index + 1) % JAILS) {
            let name = site_name(other);
            assert!(audit.dns_events(&name).is_empty(), "{name}\n{context}");
            assert!(audit.flow_opens(&name).is_empty(), "{name}\n{context}");
        }
    }

    let hosts: HashSet<String> = fixtures
        .http
        .requests()
        .into_iter()
        .filter_map(|request| request.host)
        .collect();
    assert_eq!(hosts.len(), JAILS, "{hosts:?}");
}
