//! The event loop: one thread that owns the TUN device, the smoltcp interface and every flow.
//!
//! Each turn waits until the TUN device or a host socket is ready, a command arrives, or a
//! flow's next timer is due; an idle jail therefore costs no CPU. Only the flows that had
//! activity are touched in a turn, so the cost of a turn does not grow with idle flows. A turn reads the jail's
//! packets and routes each one (new SYNs are decided before smoltcp sees them), pumps the
//! flows that had activity, lets smoltcp transmit, and removes finished flows.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use smoltcp::iface::{Config, Interface, PollResult, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{HardwareAddress, IpCidr, IpListenEndpoint};

use crate::buffers::{BufferPool, FlowSockets};
use crate::device::TunDevice;
use crate::packet::{self, Packet, TcpHeader};
use crate::tcp::{Phase, TcpFlow, Upstream};
use crate::{CloseReason, Error, FlowInfo, FlowStats, Handler, StackConfig, TcpVerdict};

const TUN: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_FLOW: usize = 2;

/// Packets read from the TUN device in one turn before host sockets get their share.
const TUN_BUDGET: usize = 256;
/// Commands queued for the stack before senders see "full".
const COMMAND_QUEUE: usize = 4096;

enum Command {
    SendUdp {
        src: SocketAddr,
        dst: SocketAddr,
        payload: Vec<u8>,
    },
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    /// smoltcp wants the flow's socket polled (retransmission, delayed ACK, ...).
    Smoltcp,
    Connect,
    RefusalGrace,
}

/// A deadline of one flow; `flow` tells a reused slab key from the flow it was set for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    at: Instant,
    key: usize,
    flow: u64,
    kind: TimerKind,
}

/// A flow with the socket set that holds its one smoltcp socket. Each flow has a set of its
/// own because smoltcp walks every socket of a set on each poll: with one set per flow, a
/// packet costs the same whether ten or ten thousand flows are open.
struct Slot {
    flow: TcpFlow,
    sockets: FlowSockets,
}

impl std::ops::Deref for Slot {
    type Target = TcpFlow;

    fn deref(&self) -> &TcpFlow {
        &self.flow
    }
}

impl std::ops::DerefMut for Slot {
    fn deref_mut(&mut self) -> &mut TcpFlow {
        &mut self.flow
    }
}

/// A cloneable way to reach the stack from other threads.
#[derive(Clone)]
pub struct StackHandle {
    commands: SyncSender<Command>,
    waker: Arc<Waker>,
}

impl StackHandle {
    /// Queues a UDP datagram to the jail. Returns `false` when the queue is full or the stack
    /// has stopped; like any UDP datagram it is then lost.
    pub fn send_udp(&self, src: SocketAddr, dst: SocketAddr, payload: Vec<u8>) -> bool {
        self.send(Command::SendUdp { src, dst, payload })
    }

    /// Asks the stack to stop; [`Stack::run`] then returns.
    pub fn shutdown(&self) {
        self.send(Command::Shutdown);
    }

    fn send(&self, command: Command) -> bool {
        match self.commands.try_send(command) {
            Ok(()) => self.waker.wake().is_ok(),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

/// Counters over the stack's life.
#[derive(Debug, Clone, Default)]
pub struct StackStats {
    pub packets_from_jail: u64,
    /// Packets dropped because they did not parse or failed a checksum.
    pub malformed: u64,
    /// Valid packets of a kind the stack does not carry (ICMP, fragments, ...).
    pub unsupported: u64,
    /// Packets the TUN device did not accept.
    pub tx_dropped: u64,
    pub tcp_flows: u64,
    /// SYNs refused because `max_flows` flows were open.
    pub flows_over_limit: u64,
}

/// The userspace stack bound to one TUN device.
pub struct Stack {
    config: StackConfig,
    poll: Poll,
    device: TunDevice,
    iface: Interface,
    /// Takes the packets of no known flow, so smoltcp replies to them with resets.
    no_flow: SocketSet<'static>,
    flows: Slab<Slot>,
    buffers: BufferPool,
    by_tuple: HashMap<(SocketAddr, SocketAddr), usize>,
    /// Flows with possible work, pumped after the packets of this turn.
    pending: Vec<usize>,
    /// smoltcp timers, connect deadlines and refusal grace periods, earliest first. Entries
    /// of flows that moved on are skipped when they come due.
    timers: BinaryHeap<Reverse<Timer>>,
    handler: Box<dyn Handler>,
    commands: Receiver<Command>,
    handle: StackHandle,
    next_flow_id: u64,
    stats: StackStats,
    stopping: bool,
}

impl Stack {
    /// Takes a non-blocking TUN file descriptor (IFF_TUN | IFF_NO_PI) and the flow handler.
    pub fn new(
        tun: OwnedFd,
        config: StackConfig,
        handler: Box<dyn Handler>,
    ) -> Result<Stack, Error> {
        let poll = Poll::new().map_err(Error::Poll)?;
        let mut device = TunDevice::new(tun, config.mtu, config.vnet_hdr);
        poll.registry()
            .register(&mut SourceFd(&device.raw_fd()), TUN, Interest::READABLE)
            .map_err(Error::Poll)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(Error::Poll)?);
        let (sender, commands) = mpsc::sync_channel(COMMAND_QUEUE);

        let mut iface_config = Config::new(HardwareAddress::Ip);
        iface_config.random_seed = random_seed();
        let mut iface = Interface::new(iface_config, &mut device, now());
        iface.set_any_ip(true);
        iface.update_ip_addrs(|addrs| {
            let v4 = IpCidr::new(config.gateway_v4.into(), config.prefix_v4);
            let v6 = IpCidr::new(config.gateway_v6.into(), config.prefix_v6);
            addrs.push(v4).expect("two addresses fit");
            addrs.push(v6).expect("two addresses fit");
        });

        Ok(Stack {
            poll,
            device,
            iface,
            no_flow: SocketSet::new(Vec::new()),
            flows: Slab::new(),
            buffers: BufferPool::new(config.tcp_rx_buffer, config.tcp_tx_buffer),
            by_tuple: HashMap::new(),
            pending: Vec::new(),
            timers: BinaryHeap::new(),
            handler,
            commands,
            handle: StackHandle {
                commands: sender,
                waker,
            },
            next_flow_id: 1,
            stats: StackStats::default(),
            stopping: false,
            config,
        })
    }

    pub fn handle(&self) -> StackHandle {
        self.handle.clone()
    }

    /// Runs until [`StackHandle::shutdown`]; returns the counters.
    pub fn run(mut self) -> Result<StackStats, Error> {
        let mut events = Events::with_capacity(1024);
        let mut tun_ready = true;
        while !self.stopping {
            let timeout = if tun_ready {
                Some(Duration::ZERO)
            } else {
                self.next_wakeup()
            };
            if let Err(err) = self.poll.poll(&mut events, timeout)
                && err.kind() != io::ErrorKind::Interrupted
            {
                return Err(Error::Poll(err));
            }

            for event in events.iter() {
                match event.token() {
                    TUN => tun_ready = true,
                    WAKER => {}
                    Token(token) => self.note_host_event(token - FIRST_FLOW, event),
                }
            }
            self.run_commands();
            if tun_ready {
                tun_ready = self.read_tun()?;
            }
            self.expire_timers();
            self.turn();
        }
        self.close_all();
        self.stats.tx_dropped = self.device.tx_dropped;
        Ok(self.stats)
    }

    /// Pumps pending flows, transmits, and removes what finished.
    fn turn(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for &key in &pending {
            self.pump(key);
            self.transmit(key);
        }
        for key in pending {
            self.reap(key);
        }
    }

    /// Lets smoltcp send what the flow's socket has queued, and schedules its next timer.
    fn transmit(&mut self, key: usize) {
        let Some(slot) = self.flows.get_mut(key) else {
            return;
        };
        let timestamp = now();
        while self
            .iface
            .poll_egress(timestamp, &mut self.device, &mut slot.sockets)
            != PollResult::None
        {}
        let Some(at) = self.iface.poll_at(timestamp, &slot.sockets) else {
            return;
        };
        let at = Instant::now() + Duration::from(at.max(timestamp) - timestamp);
        if slot.flow.next_poll.is_none_or(|scheduled| at < scheduled) {
            slot.flow.next_poll = Some(at);
            let timer = Timer {
                at,
                key,
                flow: slot.flow.info.id,
                kind: TimerKind::Smoltcp,
            };
            self.timers.push(Reverse(timer));
        }
    }

    fn next_wakeup(&self) -> Option<Duration> {
        self.timers
            .peek()
            .map(|Reverse(timer)| timer.at.saturating_duration_since(Instant::now()))
    }

    fn note_host_event(&mut self, key: usize, event: &mio::event::Event) {
        let Some(flow) = self.flows.get_mut(key) else {
            return;
        };
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            flow.readable = true;
        }
        if event.is_writable() || event.is_write_closed() || event.is_error() {
            flow.writable = true;
        }
        if matches!(flow.phase, Phase::Connecting { .. }) {
            self.check_connect(key);
        }
        self.mark(key);
    }

    fn mark(&mut self, key: usize) {
        if let Some(flow) = self.flows.get_mut(key)
            && !flow.queued
        {
            flow.queued = true;
            self.pending.push(key);
        }
    }

    fn run_commands(&mut self) {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::SendUdp { src, dst, payload } => {
                    match packet::udp_datagram(src, dst, &payload) {
                        Some(datagram) => self.device.send(&datagram),
                        None => tracing::debug!(%src, %dst, "cannot build UDP reply"),
                    }
                }
                Command::Shutdown => self.stopping = true,
            }
        }
    }

    /// Reads and routes up to [`TUN_BUDGET`] packets. Returns whether more may be waiting.
    fn read_tun(&mut self) -> Result<bool, Error> {
        for _ in 0..TUN_BUDGET {
            let Some(len) = self.device.read_packet().map_err(Error::TunRead)? else {
                return Ok(false);
            };
            self.stats.packets_from_jail += 1;
            self.route_packet(len);
        }
        Ok(true)
    }

    fn route_packet(&mut self, len: usize) {
        let verify = !self.device.has_partial_checksums();
        let header = match packet::classify(self.device.packet(len), verify) {
            Packet::Tcp(header) => header,
            Packet::Udp { src, dst, payload } => {
                self.handler.udp_datagram(src, dst, payload);
                return;
            }
            Packet::Other => {
                self.stats.unsupported += 1;
                return;
            }
            Packet::Malformed => {
                self.stats.malformed += 1;
                return;
            }
        };

        let tuple = (header.src, header.dst);
        let mut key = self.by_tuple.get(&tuple).copied();
        if key.is_none() && header.is_initial_syn() {
            if !self.open_flow(&header) {
                return;
            }
            key = self.by_tuple.get(&tuple).copied();
        }
        self.device.queue_for_smoltcp(len);
        let Some(key) = key else {
            // smoltcp answers segments of unknown connections with a reset.
            self.iface
                .poll_ingress_single(now(), &mut self.device, &mut self.no_flow);
            return;
        };
        self.mark(key);
        let Slot { flow, sockets } = &mut self.flows[key];
        let was = sockets.get::<tcp::Socket>(flow.handle).state();
        self.iface
            .poll_ingress_single(now(), &mut self.device, sockets);
        let state = sockets.get::<tcp::Socket>(flow.handle).state();
        flow.note_jail_segment(was, state, header.rst);
    }

    /// Decides a new flow. Returns whether the SYN should go on to smoltcp.
    fn open_flow(&mut self, syn: &TcpHeader) -> bool {
        if self.flows.len() >= self.config.max_flows {
            self.stats.flows_over_limit += 1;
            tracing::debug!(src = %syn.src, dst = %syn.dst, "too many flows, resetting");
            self.device.send(&packet::tcp_reset_for_syn(syn));
            return false;
        }
        let info = FlowInfo {
            id: self.next_flow_id,
            src: syn.src,
            dst: syn.dst,
        };
        self.next_flow_id += 1;
        self.stats.tcp_flows += 1;

        let mut inspector = None;
        let (phase, upstream) = match self.handler.tcp_flow(&info) {
            TcpVerdict::Reset => {
                self.device.send(&packet::tcp_reset_for_syn(syn));
                return false;
            }
            TcpVerdict::Local(stream) => match set_nonblocking(stream) {
                Ok(stream) => (Phase::Open, Upstream::Local(stream)),
                Err(err) => {
                    self.handler.tcp_connect_failed(&info, &err);
                    self.device.send(&packet::tcp_reset_for_syn(syn));
                    return false;
                }
            },
            TcpVerdict::Connect {
                upstream,
                inspector: flow_inspector,
            } => {
                inspector = flow_inspector;
                let deadline = Instant::now() + self.config.connect_timeout;
                match start_connect(upstream.into()) {
                    Ok((stream, current, remaining)) => (
                        Phase::Connecting {
                            current,
                            remaining,
                            deadline,
                        },
                        Upstream::Tcp(stream),
                    ),
                    Err(err) => {
                        self.handler.tcp_connect_failed(&info, &err);
                        self.device.send(&packet::tcp_reset_for_syn(syn));
                        return false;
                    }
                }
            }
        };

        let connecting = matches!(phase, Phase::Connecting { .. });
        let buffers = match self.buffers.take() {
            Ok(buffers) => buffers,
            Err(err) => {
                let err = io::Error::new(err.kind(), format!("mapping flow buffers failed: {err}"));
                self.handler.tcp_connect_failed(&info, &err);
                self.device.send(&packet::tcp_reset_for_syn(syn));
                return false;
            }
        };
        let (sockets, handle) =
            FlowSockets::new(buffers, |rx, tx| new_socket(rx, tx, syn.dst, connecting));
        let deadline = match &phase {
            Phase::Connecting { deadline, .. } => Some(*deadline),
            Phase::Open => None,
        };
        let flow = TcpFlow::new(info, handle, *syn, phase, upstream, inspector);
        let key = self.flows.insert(Slot { flow, sockets });
        let registered = self.flows[key]
            .upstream
            .register(self.poll.registry(), Token(key + FIRST_FLOW));
        if let Err(err) = registered {
            self.handler.tcp_connect_failed(&info, &err);
            self.device.send(&packet::tcp_reset_for_syn(syn));
            let slot = self.flows.remove(key);
            self.buffers.put(slot.sockets.into_buffers(), Some((0, 0)));
            return false;
        }
        self.by_tuple.insert((syn.src, syn.dst), key);
        if let Some(first_deadline) = deadline {
            // A connect to a local address is often done by the time connect() returns, so
            // checking now sends the SYN-ACK in this turn instead of after the next poll.
            self.check_connect(key);
            let Some(slot) = self.flows.get(key) else {
                // Refused already: the jail got its reset, smoltcp must not send another.
                return false;
            };
            // Still connecting to the first address: its deadline needs a timer. (A move to
            // the next address set a new deadline with a timer of its own.)
            if let Phase::Connecting { deadline, .. } = slot.phase
                && deadline == first_deadline
            {
                self.timers.push(Reverse(Timer {
                    at: deadline,
                    key,
                    flow: info.id,
                    kind: TimerKind::Connect,
                }));
            }
        } else {
            self.handler.tcp_connected(&info, info.dst);
            self.flows[key].readable = true;
            self.flows[key].writable = true;
        }
        self.mark(key);
        true
    }

    /// Finishes or advances a host-side connect after an event on its socket.
    fn check_connect(&mut self, key: usize) {
        let Slot { flow, sockets } = &mut self.flows[key];
        let Upstream::Tcp(stream) = &flow.upstream else {
            return;
        };
        // A peer address means connected, which is the common case and costs one call.
        // Without one, the pending error separates a failed connect from one in flight.
        let outcome = match stream.peer_addr() {
            Ok(addr) => Ok(addr),
            Err(err) if err.kind() == io::ErrorKind::NotConnected => match stream.take_error() {
                Ok(Some(err)) | Err(err) => Err(err),
                Ok(None) => return,
            },
            Err(err) => Err(err),
        };
        match outcome {
            Ok(addr) => {
                flow.phase = Phase::Open;
                if let Err(err) = stream.set_nodelay(true) {
                    tracing::debug!(error = %err, "setting TCP_NODELAY failed");
                }
                sockets
                    .get_mut::<tcp::Socket>(flow.handle)
                    .pause_synack(false);
                let info = flow.info;
                self.handler.tcp_connected(&info, addr);
            }
            Err(err) => self.next_candidate(key, err),
        }
    }

    /// Tries the next address after a failed connect, or refuses the jail's SYN.
    fn next_candidate(&mut self, key: usize, err: io::Error) {
        let registry = self.poll.registry();
        let flow = &mut self.flows[key].flow;
        let Phase::Connecting {
            current,
            remaining,
            deadline,
        } = &mut flow.phase
        else {
            return;
        };
        tracing::debug!(flow = flow.info.id, upstream = %current, error = %err, "connect failed");
        flow.upstream.deregister(registry);

        let mut last_err = err;
        while let Some(addr) = remaining.pop_front() {
            match mio::net::TcpStream::connect(addr) {
                Ok(stream) => {
                    *current = addr;
                    *deadline = Instant::now() + self.config.connect_timeout;
                    let timer = Timer {
                        at: *deadline,
                        key,
                        flow: flow.info.id,
                        kind: TimerKind::Connect,
                    };
                    self.timers.push(Reverse(timer));
                    flow.upstream = Upstream::Tcp(stream);
                    let token = Token(key + FIRST_FLOW);
                    match flow.upstream.register(registry, token) {
                        Ok(()) => return,
                        Err(err) => last_err = err,
                    }
                }
                Err(err) => last_err = err,
            }
        }
        self.refuse(key, last_err);
    }

    /// Replies to a pending SYN with a reset and forgets the flow.
    fn refuse(&mut self, key: usize, err: io::Error) {
        let Slot { flow, sockets } = self.flows.remove(key);
        // No SYN-ACK went out, so no data went through the buffers.
        self.buffers.put(sockets.into_buffers(), Some((0, 0)));
        self.by_tuple.remove(&(flow.info.src, flow.info.dst));
        self.device.send(&packet::tcp_reset_for_syn(&flow.syn));
        self.handler.tcp_connect_failed(&flow.info, &err);
    }

    /// Acts on the timers that came due.
    fn expire_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse(timer)) = self.timers.peek() {
            if timer.at > now {
                break;
            }
            let Reverse(timer) = self.timers.pop().expect("peeked");
            let Some(Slot { flow, sockets }) = self.flows.get_mut(timer.key) else {
                continue;
            };
            if flow.info.id != timer.flow {
                continue;
            }
            match (timer.kind, &flow.phase) {
                (TimerKind::Smoltcp, _) => {
                    if flow.next_poll.is_some_and(|at| at <= now) {
                        flow.next_poll = None;
                    }
                    self.mark(timer.key);
                }
                (TimerKind::Connect, Phase::Connecting { deadline, .. }) if *deadline <= now => {
                    let err = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
                    self.next_candidate(timer.key, err);
                }
                (TimerKind::RefusalGrace, Phase::Open) => {
                    let socket = sockets.get_mut::<tcp::Socket>(flow.handle);
                    flow.end_refusal_grace(socket);
                    self.mark(timer.key);
                }
                _ => {}
            }
        }
    }

    fn pump(&mut self, key: usize) {
        let Some(Slot { flow, sockets }) = self.flows.get_mut(key) else {
            return;
        };
        flow.queued = false;
        let socket = sockets.get_mut::<tcp::Socket>(flow.handle);
        let was_refusing = flow.is_refusing();
        flow.pump(socket);
        if flow.is_refusing() && !was_refusing {
            let at = Instant::now() + self.config.refusal_grace;
            let timer = Timer {
                at,
                key,
                flow: flow.info.id,
                kind: TimerKind::RefusalGrace,
            };
            self.timers.push(Reverse(timer));
        }
    }

    /// Removes the flow if it is over.
    fn reap(&mut self, key: usize) {
        let Some(Slot { flow, sockets }) = self.flows.get(key) else {
            return;
        };
        let socket = sockets.get::<tcp::Socket>(flow.handle);

        if let Phase::Connecting { .. } = flow.phase {
            // The jail reset or gave up on a flow whose connect is still in flight.
            // The SYN went to smoltcp when the flow opened, so LISTEN or CLOSED now means the
            // jail reset the connection (smoltcp sends a half-open socket back to LISTEN).
            if matches!(socket.state(), tcp::State::Listen | tcp::State::Closed) {
                let Slot { flow, sockets } = self.flows.remove(key);
                self.buffers.put(sockets.into_buffers(), Some((0, 0)));
                self.by_tuple.remove(&(flow.info.src, flow.info.dst));
                let err = io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the jail reset the connection before the upstream connect finished",
                );
                self.handler.tcp_connect_failed(&flow.info, &err);
            }
            return;
        }

        let Some(reason) = flow.finished(socket) else {
            return;
        };
        self.remove(key, reason);
    }

    fn remove(&mut self, key: usize, reason: CloseReason) {
        // Closing the host socket also takes it off the poll, so it is not deregistered.
        let Slot { flow, sockets } = self.flows.remove(key);
        // After a clean close every byte that reached a buffer also left it, upstream or into
        // the flow's staging, so the byte counts bound the pages touched. Otherwise (a reset
        // with segments still out of order, a refusal that discarded input) no bound is known.
        let touched = matches!(reason, CloseReason::Fin).then_some((
            flow.bytes_from_jail + flow.held_from_jail(),
            flow.bytes_to_jail,
        ));
        self.buffers.put(sockets.into_buffers(), touched);
        // A reset from the jail after its FIN ends the flow only once the jail's bytes are
        // all written upstream. The close stays a FIN, because a reset upstream could still
        // discard those bytes from the host socket's send queue.
        let abort = match reason {
            CloseReason::Shutdown => true,
            CloseReason::JailReset => !flow.jail_finished,
            _ => false,
        };
        if abort {
            flow.upstream.set_reset_on_close();
        }
        self.by_tuple.remove(&(flow.info.src, flow.info.dst));
        let stats = FlowStats {
            bytes_from_jail: flow.bytes_from_jail,
            bytes_to_jail: flow.bytes_to_jail,
            duration: flow.opened.elapsed(),
            close: reason,
        };
        self.handler.tcp_closed(&flow.info, &stats);
    }

    fn close_all(&mut self) {
        let keys: Vec<usize> = self.flows.iter().map(|(key, _)| key).collect();
        for key in keys {
            if matches!(self.flows[key].flow.phase, Phase::Open) {
                self.remove(key, CloseReason::Shutdown);
            } else {
                let err = io::Error::new(io::ErrorKind::Interrupted, "supervisor shut down");
                self.refuse(key, err);
            }
        }
    }
}

/// Creates a flow's smoltcp socket, listening for the jail's SYN to `dst`.
fn new_socket(
    rx: tcp::SocketBuffer<'static>,
    tx: tcp::SocketBuffer<'static>,
    dst: SocketAddr,
    hold_synack: bool,
) -> tcp::Socket<'static> {
    let mut socket = tcp::Socket::new(rx, tx);
    socket.set_nagle_enabled(false);
    socket.pause_synack(hold_synack);
    let endpoint = IpListenEndpoint {
        addr: Some(packet::ip_address(dst.ip())),
        port: dst.port(),
    };
    socket
        .listen(endpoint)
        .expect("a fresh socket with a non-zero port can listen");
    socket
}

fn start_connect(
    mut candidates: VecDeque<SocketAddr>,
) -> io::Result<(mio::net::TcpStream, SocketAddr, VecDeque<SocketAddr>)> {
    let mut last_err = io::Error::new(io::ErrorKind::AddrNotAvailable, "no upstream address");
    while let Some(addr) = candidates.pop_front() {
        match mio::net::TcpStream::connect(addr) {
            Ok(stream) => return Ok((stream, addr, candidates)),
            Err(err) => last_err = err,
        }
    }
    Err(last_err)
}

fn set_nonblocking(stream: std::os::unix::net::UnixStream) -> io::Result<mio::net::UnixStream> {
    stream.set_nonblocking(true)?;
    Ok(mio::net::UnixStream::from_std(stream))
}

fn now() -> smoltcp::time::Instant {
    smoltcp::time::Instant::now()
}

fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    nanos ^ (u64::from(std::process::id()) << 32)
}
