//! The supervisor: ties the jail, the stack, DNS, the policy and the audit log together.
//!
//! Threads: the main thread forks the jail, then waits for it and forwards signals; the
//! stack thread owns the TUN device and every flow; a small tokio runtime answers DNS.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use netstack::{FlowInfo, FlowStats, Handler, Stack, StackConfig, StackHandle, TcpVerdict};
use tokio::sync::mpsc;

use crate::audit::{self, AuditLog, Event};
use crate::cli::Settings;
use crate::dns::{self, DnsService, NameTable};
use crate::http::{FlowContext, FlowInspector};
use crate::jail::{self, Jail, JailConfig, JailNetwork};
use crate::policy::{Decision, FlowFacts, Policy, Proto};

/// DNS queries over UDP waiting for the resolver before new ones are dropped.
const DNS_QUEUE: usize = 1024;
/// Distinct denied UDP destinations remembered so each is audited once.
const DENIED_UDP_MEMORY: usize = 4096;

/// Runs one jailed command and returns the status netjail exits with.
pub fn run(settings: Settings) -> anyhow::Result<i32> {
    let audit = Arc::new(open_audit(settings.audit_log.as_deref())?);
    if let Some(arg) = settings.resolver.as_deref() {
        dns::parse_resolver_addr(arg)?;
    }
    if let Some(rule) = settings.policy.first_http_rule() {
        tracing::warn!(
            %rule,
            "method and path rules are checked on plain HTTP only; HTTPS and other \
             connections that only such rules allow are refused, since netjail does not \
             intercept TLS"
        );
    }
    let network = JailNetwork::default();
    let jail_config = JailConfig {
        command: settings.command.clone(),
        user_namespace: settings.user_namespace,
        resolv_conf: resolv_conf(&network),
        network: network.clone(),
    };

    // The jail is forked while this process is still single-threaded.
    let mut jail = Jail::spawn(&jail_config).context("setting up the jail")?;
    jail::block_forwarded_signals().context("blocking signals")?;
    let tun = jail.take_tun();

    audit.record(Event::SessionStart {
        command: settings
            .command
            .iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect(),
        allow: settings.allow_texts.clone(),
        deny: settings.deny_texts.clone(),
        mode: mode_name(settings.user_namespace).into(),
        resolver: settings
            .resolver
            .clone()
            .unwrap_or_else(|| "/etc/resolv.conf".into()),
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("netjail-dns")
        .enable_all()
        .build()
        .context("starting the DNS runtime")?;
    let resolver = runtime
        .block_on(async { dns::build_resolver(settings.resolver.as_deref()) })
        .context("setting up the upstream resolver")?;
    let policy = Arc::new(settings.policy);
    let names = Arc::new(NameTable::new());
    let dns = Arc::new(DnsService::new(
        policy.clone(),
        names.clone(),
        resolver,
        audit.clone(),
    ));

    let (dns_queries, dns_rx) = mpsc::channel(DNS_QUEUE);
    let handler = Supervisor {
        policy,
        names,
        audit: audit.clone(),
        dns: dns.clone(),
        runtime: runtime.handle().clone(),
        dns_queries,
        flows: HashMap::new(),
        denied_udp: HashSet::new(),
    };
    let stack_config = StackConfig {
        gateway_v4: network.ipv4_gateway,
        gateway_v6: network.ipv6_gateway,
        mtu: network.mtu as usize,
        ..StackConfig::default()
    };
    let stack = Stack::new(tun, stack_config, Box::new(handler)).context("starting the stack")?;
    let stack_handle = stack.handle();
    runtime.spawn(answer_udp_queries(dns, dns_rx, stack_handle.clone()));

    let jail_pid = jail.pid();
    let stack_thread = std::thread::Builder::new()
        .name("netjail-stack".into())
        .spawn(move || {
            let result = stack.run();
            if result.is_err() {
                // Without the stack the jail has no network; stop it rather than leave it hanging.
                let _ = nix::sys::signal::kill(jail_pid, nix::sys::signal::Signal::SIGKILL);
            }
            result
        })
        .context("starting the stack thread")?;

    jail.start().context("starting the command")?;
    let status = jail.wait().context("waiting for the command")?;

    stack_handle.shutdown();
    let stats = match stack_thread.join() {
        Ok(Ok(stats)) => stats,
        Ok(Err(err)) => return Err(anyhow::Error::new(err).context("the packet stack failed")),
        Err(_) => anyhow::bail!("the packet stack thread panicked"),
    };
    runtime.shutdown_background();
    audit.record(Event::SessionEnd {
        exit_status: status,
        flows: stats.tcp_flows,
        dns_queries: audit.dns_queries(),
        dropped_packets: stats.malformed + stats.unsupported + stats.tx_dropped,
    });
    tracing::debug!(?stats, "stack stopped");
    Ok(status)
}

fn open_audit(target: Option<&str>) -> anyhow::Result<AuditLog> {
    match target {
        Some(path) => AuditLog::open(path).with_context(|| format!("opening audit log {path}")),
        None => Ok(AuditLog::discard()),
    }
}

fn resolv_conf(network: &JailNetwork) -> String {
    format!(
        "# Written by netjail: every DNS query from this jail is answered by its supervisor.\n\
         nameserver {}\n",
        network.ipv4_gateway
    )
}

fn mode_name(user_namespace: bool) -> &'static str {
    let root = nix::unistd::geteuid().is_root();
    match (root, user_namespace) {
        (false, _) => "rootless",
        (true, true) => "root",
        (true, false) => "root-no-user-namespace",
    }
}

async fn answer_udp_queries(
    dns: Arc<DnsService>,
    mut queries: mpsc::Receiver<UdpQuery>,
    stack: StackHandle,
) {
    while let Some(query) = queries.recv().await {
        let dns = dns.clone();
        let stack = stack.clone();
        tokio::spawn(async move {
            if let Some(reply) = dns.answer_udp(&query.payload, query.client).await {
                stack.send_udp(query.server, query.client, reply);
            }
        });
    }
}

struct UdpQuery {
    client: SocketAddr,
    server: SocketAddr,
    payload: Vec<u8>,
}

/// The supervisor's record of an open flow, for the audit log.
struct FlowRecord {
    /// Formatted once, when the flow is decided, for each of its events.
    id: audit::FlowId,
    rule: String,
    upstream: Option<SocketAddr>,
    opened: Instant,
}

/// The stack's [`Handler`]: decides flows and writes the audit log.
struct Supervisor {
    policy: Arc<Policy>,
    names: Arc<NameTable>,
    audit: Arc<AuditLog>,
    dns: Arc<DnsService>,
    runtime: tokio::runtime::Handle,
    dns_queries: mpsc::Sender<UdpQuery>,
    flows: HashMap<u64, FlowRecord>,
    denied_udp: HashSet<(SocketAddr, SocketAddr)>,
}

impl Supervisor {
    fn deny(
        &self,
        flow: &FlowInfo,
        name: Option<String>,
        rule: Option<String>,
        reason: String,
    ) -> TcpVerdict {
        tracing::info!(flow = flow.id, dst = %flow.dst, name = ?name, %reason, "denied");
        self.audit.record(Event::Denied(audit::Denied {
            id: audit::FlowId::new(flow, "tcp", name),
            decision: "deny",
            rule,
            reason,
        }));
        TcpVerdict::Reset
    }

    /// Serves DNS over TCP from the jail on one end of a socket pair.
    fn serve_dns_tcp(&self, flow: &FlowInfo) -> io::Result<TcpVerdict> {
        let (ours, theirs) = UnixStream::pair()?;
        ours.set_nonblocking(true)?;
        let dns = self.dns.clone();
        let client = flow.src;
        let _guard = self.runtime.enter();
        let stream = tokio::net::UnixStream::from_std(ours)?;
        self.runtime.spawn(async move {
            if let Err(err) = dns.serve_tcp(stream, client).await {
                tracing::debug!(%client, error = %err, "DNS over TCP ended with an error");
            }
        });
        Ok(TcpVerdict::Local(theirs))
    }

    /// Decides a flow to a synthetic address: every real address of the name is checked, and
    /// the flow goes to those the policy allows.
    fn decide_named(&mut self, flow: &FlowInfo) -> TcpVerdict {
        let Some(entry) = self.names.lookup(flow.dst.ip()) else {
            let reason = format!(
                "{} was not handed out by netjail's DNS in this session",
                flow.dst.ip()
            );
            return self.deny(flow, None, None, reason);
        };
        let mut allowed = Vec::new();
        let mut rule_text = None;
        let mut first_denial = None;
        for &addr in &entry.addrs {
            let facts = FlowFacts {
                name: Some(&entry.name),
                addr,
                port: flow.dst.port(),
                proto: Proto::Tcp,
            };
            match self.policy.decide_flow(&facts) {
                Decision::Allow { rule } => {
                    let check_requests = self.policy.checks_requests(&facts, rule);
                    rule_text.get_or_insert_with(|| (rule.text.clone(), check_requests));
                    allowed.push(SocketAddr::new(addr, flow.dst.port()));
                }
                Decision::Deny { rule, reason } => {
                    first_denial.get_or_insert((rule.map(|r| r.text.clone()), reason));
                }
            }
        }
        let Some((rule, check_requests)) = rule_text else {
            let (rule, reason) =
                first_denial.unwrap_or((None, format!("{} has no address upstream", entry.name)));
            return self.deny(flow, Some(entry.name), rule, reason);
        };
        let id = audit::FlowId::new(flow, "tcp", Some(entry.name));
        let inspector = self.inspector(flow, &id, allowed[0].ip(), &rule, check_requests);
        self.remember(id, rule);
        TcpVerdict::Connect {
            upstream: allowed,
            inspector: Some(inspector),
        }
    }

    /// Decides a flow to an address the jail did not get from netjail's DNS.
    fn decide_literal(&mut self, flow: &FlowInfo, addr: IpAddr) -> TcpVerdict {
        let facts = FlowFacts {
            name: None,
            addr,
            port: flow.dst.port(),
            proto: Proto::Tcp,
        };
        match self.policy.decide_flow(&facts) {
            Decision::Allow { rule } => {
                let rule = rule.text.clone();
                self.remember(audit::FlowId::new(flow, "tcp", None), rule);
                TcpVerdict::Connect {
                    upstream: vec![flow.dst],
                    inspector: None,
                }
            }
            Decision::Deny { rule, reason } => {
                let rule = rule.map(|r| r.text.clone());
                self.deny(flow, None, rule, reason)
            }
        }
    }

    /// Builds the inspector of a flow to `addr`, the address the policy allowed.
    fn inspector(
        &self,
        flow: &FlowInfo,
        id: &audit::FlowId,
        addr: IpAddr,
        rule: &str,
        check_requests: bool,
    ) -> Box<dyn netstack::Inspector> {
        Box::new(FlowInspector::new(FlowContext {
            policy: self.policy.clone(),
            audit: self.audit.clone(),
            flow: *flow,
            id: id.clone(),
            addr,
            check_requests,
            rule: rule.to_string(),
        }))
    }

    fn remember(&mut self, id: audit::FlowId, rule: String) {
        let record = FlowRecord {
            id,
            rule,
            upstream: None,
            opened: Instant::now(),
        };
        self.flows.insert(record.id.flow, record);
    }
}

impl Handler for Supervisor {
    fn tcp_flow(&mut self, flow: &FlowInfo) -> TcpVerdict {
        if flow.dst.port() == 53 {
            return self.serve_dns_tcp(flow).unwrap_or_else(|err| {
                tracing::warn!(error = %err, "cannot serve DNS over TCP");
                TcpVerdict::Reset
            });
        }
        let addr = flow.dst.ip();
        if dns::NameTable::is_synthetic(addr) {
            self.decide_named(flow)
        } else {
            self.decide_literal(flow, addr)
        }
    }

    fn tcp_connected(&mut self, flow: &FlowInfo, upstream: SocketAddr) {
        let Some(record) = self.flows.get_mut(&flow.id) else {
            return;
        };
        record.upstream = Some(upstream);
        self.audit.record(Event::FlowOpen(audit::FlowOpen {
            id: record.id.clone(),
            decision: "allow",
            rule: record.rule.clone(),
            upstream: upstream.to_string(),
        }));
    }

    fn tcp_connect_failed(&mut self, flow: &FlowInfo, error: &io::Error) {
        let Some(record) = self.flows.remove(&flow.id) else {
            return;
        };
        tracing::info!(flow = flow.id, dst = %flow.dst, %error, "upstream connect failed");
        self.audit.record(Event::FlowFailed(audit::FlowFailed {
            id: record.id,
            decision: "allow",
            rule: record.rule,
            error: error.to_string(),
        }));
    }

    fn tcp_closed(&mut self, flow: &FlowInfo, stats: &FlowStats) {
        let Some(record) = self.flows.remove(&flow.id) else {
            return;
        };
        self.audit.record(Event::FlowClose(audit::FlowClose {
            id: record.id,
            upstream: record.upstream.map(|a| a.to_string()).unwrap_or_default(),
            bytes_from_jail: stats.bytes_from_jail,
            bytes_to_jail: stats.bytes_to_jail,
            duration_ms: record.opened.elapsed().as_secs_f64() * 1000.0,
            close: stats.close.to_string(),
        }));
    }

    fn udp_datagram(&mut self, src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
        if dst.port() == 53 {
            let query = UdpQuery {
                client: src,
                server: dst,
                payload: payload.to_vec(),
            };
            if self.dns_queries.try_send(query).is_err() {
                tracing::warn!(client = %src, "DNS queue full, dropping a query");
            }
            return;
        }
        if self.denied_udp.len() >= DENIED_UDP_MEMORY {
            self.denied_udp.clear();
        }
        if self.denied_udp.insert((src, dst)) {
            let info = FlowInfo { id: 0, src, dst };
            let name = self.names.lookup(dst.ip()).map(|entry| entry.name);
            self.audit.record(Event::Denied(audit::Denied {
                id: audit::FlowId::new(&info, "udp", name),
                decision: "deny",
                rule: None,
                reason: "netjail forwards no UDP except DNS".into(),
            }));
        }
    }
}
