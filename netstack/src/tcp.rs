//! One TCP flow: the smoltcp socket that faces the jail, the host socket that faces the
//! upstream, and the pump that moves bytes between their buffers.
//!
//! Bytes are read from the host socket only into free space of the smoltcp send buffer, and
//! taken from the smoltcp receive buffer only as far as the host socket accepts them, so each
//! flow holds at most its two smoltcp buffers and a slow side slows the other through the TCP
//! window (jail side) or the kernel socket buffer (host side).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Instant;

use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::{self, State};

use crate::packet::TcpHeader;
use crate::{CloseReason, FlowInfo, INSPECTION_LIMIT, Inspection, Inspector};

/// The host side of a flow.
pub(crate) enum Upstream {
    Tcp(TcpStream),
    Local(UnixStream),
}

impl Upstream {
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let interest = Interest::READABLE | Interest::WRITABLE;
        match self {
            Upstream::Tcp(stream) => registry.register(stream, token, interest),
            Upstream::Local(stream) => registry.register(stream, token, interest),
        }
    }

    pub fn deregister(&mut self, registry: &Registry) {
        let result = match self {
            Upstream::Tcp(stream) => registry.deregister(stream),
            Upstream::Local(stream) => registry.deregister(stream),
        };
        if let Err(err) = result {
            tracing::debug!(error = %err, "deregistering a host socket failed");
        }
    }

    fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Upstream::Tcp(stream) => stream.shutdown(Shutdown::Write),
            Upstream::Local(stream) => stream.shutdown(Shutdown::Write),
        }
    }

    /// Makes the close that follows send a reset instead of a FIN.
    pub fn set_reset_on_close(&self) {
        if let Upstream::Tcp(stream) = self {
            let zero = Some(std::time::Duration::ZERO);
            if let Err(err) = socket2::SockRef::from(stream).set_linger(zero) {
                tracing::debug!(error = %err, "setting SO_LINGER failed");
            }
        }
    }
}

impl Read for Upstream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Upstream::Tcp(stream) => stream.read(buf),
            Upstream::Local(stream) => stream.read(buf),
        }
    }
}

impl Write for Upstream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Upstream::Tcp(stream) => stream.write(buf),
            Upstream::Local(stream) => stream.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The stage a flow is in.
pub(crate) enum Phase {
    /// The host-side connect is in flight; the jail's SYN waits unanswered.
    Connecting {
        current: SocketAddr,
        remaining: VecDeque<SocketAddr>,
        deadline: Instant,
    },
    /// Bytes flow both ways.
    Open,
}

pub(crate) struct TcpFlow {
    pub info: FlowInfo,
    pub handle: SocketHandle,
    /// The jail's SYN, kept to build the reset if every connect fails.
    pub syn: TcpHeader,
    pub phase: Phase,
    pub upstream: Upstream,
    pub readable: bool,
    pub writable: bool,
    /// Decides which bytes from the jail may go upstream; `None` lets everything through.
    inspector: Option<Box<dyn Inspector>>,
    /// Bytes from the jail approved but not yet written upstream.
    credit: u64,
    /// Bytes from the jail taken out of smoltcp for the inspector: approved ones first, then
    /// undecided ones.
    staging: Vec<u8>,
    /// Length of `staging` the inspector last answered `NeedMore` to.
    inspected: usize,
    /// The reply to send the jail once the upstream is done, after an inspector refused.
    refusal: Option<Vec<u8>>,
    refusing: bool,
    /// The host side sent EOF, so the jail gets a FIN once the send buffer drains.
    host_eof: bool,
    /// The jail sent FIN and the host socket's write half is shut.
    upstream_write_shut: bool,
    /// The smoltcp socket was seen in a state reached only through the jail's FIN.
    pub jail_finished: bool,
    /// smoltcp accepted a reset from the jail.
    pub jail_reset: bool,
    pub bytes_from_jail: u64,
    pub bytes_to_jail: u64,
    pub opened: Instant,
    /// Set when the flow failed and must go once its reset is out.
    pub failure: Option<CloseReason>,
    /// Queued in the stack's list of flows to pump.
    pub queued: bool,
    /// When the stack's timer heap will next poll this flow's socket.
    pub next_poll: Option<Instant>,
}

impl TcpFlow {
    pub fn new(
        info: FlowInfo,
        handle: SocketHandle,
        syn: TcpHeader,
        phase: Phase,
        upstream: Upstream,
        inspector: Option<Box<dyn Inspector>>,
    ) -> TcpFlow {
        let credit = if inspector.is_some() { 0 } else { u64::MAX };
        TcpFlow {
            info,
            handle,
            syn,
            phase,
            upstream,
            readable: false,
            writable: false,
            inspector,
            credit,
            staging: Vec::new(),
            inspected: 0,
            refusal: None,
            refusing: false,
            host_eof: false,
            upstream_write_shut: false,
            jail_finished: false,
            jail_reset: false,
            bytes_from_jail: 0,
            bytes_to_jail: 0,
            opened: Instant::now(),
            failure: None,
            queued: false,
            next_poll: None,
        }
    }

    /// Reports whether an inspector refused the flow and the refusal is not out yet.
    pub fn is_refusing(&self) -> bool {
        self.refusing
    }

    /// Moves bytes both ways as far as buffers and sockets allow.
    pub fn pump(&mut self, socket: &mut tcp::Socket<'_>) {
        if self.failure.is_some() || !matches!(self.phase, Phase::Open) {
            return;
        }
        if let Err(err) = self
            .pump_to_host(socket)
            .and_then(|()| self.pump_to_jail(socket))
        {
            tracing::debug!(flow = self.info.id, error = %err, "host socket failed, resetting the jail side");
            socket.abort();
            self.failure = Some(CloseReason::Upstream(err.to_string()));
        }
    }

    /// Gives up waiting for the upstream after a refusal: the refusal goes to the jail now.
    pub fn end_refusal_grace(&mut self, socket: &mut tcp::Socket<'_>) {
        if self.refusing && !self.host_eof {
            self.host_eof = true;
            self.upstream.set_reset_on_close();
            self.pump(socket);
        }
    }

    fn pump_to_host(&mut self, socket: &mut tcp::Socket<'_>) -> io::Result<()> {
        if socket.state() == State::TimeWait && socket.can_recv() && !self.refusing {
            // smoltcp empties the receive buffer when TIME-WAIT ends, 10 s after the jail's
            // FIN, but the upstream may take longer to read what the jail sent before it.
            stage_from_jail(&mut self.staging, socket, usize::MAX);
        }
        loop {
            if self.refusing {
                // Nothing more goes upstream; what the jail still sends is dropped.
                while socket.can_recv() {
                    let _ = socket.recv(|data| (data.len(), ()));
                }
                break;
            }
            let progressed = if self.credit > 0 && !self.staging.is_empty() {
                self.write_staged()?
            } else if self.credit > 0 {
                self.write_direct(socket)?
            } else {
                self.inspect(socket)?
            };
            if !progressed {
                break;
            }
        }

        let undecided = self.credit == 0 && !self.staging.is_empty();
        let drained = !socket.can_recv() && (self.staging.is_empty() || undecided);
        if drained && self.jail_finished && !self.upstream_write_shut {
            self.upstream_write_shut = true;
            self.upstream
                .shutdown_write()
                .or_else(ignore_not_connected)?;
        }
        Ok(())
    }

    /// Returns the bytes taken from the jail that have not gone upstream: approved ones not
    /// yet written and undecided ones.
    pub fn held_from_jail(&self) -> u64 {
        self.staging.len() as u64
    }

    /// Writes approved bytes held in `staging`. Returns whether any moved.
    fn write_staged(&mut self) -> io::Result<bool> {
        if !self.writable {
            return Ok(false);
        }
        let n = self.staging.len().min(clamp(self.credit));
        match self.upstream.write(&self.staging[..n]) {
            Ok(0) => Ok(false),
            Ok(written) => {
                self.staging.drain(..written);
                self.inspected = self.inspected.saturating_sub(written);
                self.approve_written(written);
                Ok(true)
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                self.writable = false;
                Ok(false)
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(err) => Err(err),
        }
    }

    /// Writes approved bytes straight from the smoltcp receive buffer. Returns whether any
    /// moved.
    fn write_direct(&mut self, socket: &mut tcp::Socket<'_>) -> io::Result<bool> {
        if !self.writable || !socket.can_recv() {
            return Ok(false);
        }
        let upstream = &mut self.upstream;
        let limit = clamp(self.credit);
        let written = socket
            .recv(|data| {
                let n = data.len().min(limit);
                match upstream.write(&data[..n]) {
                    Ok(n) => (n, Ok(n)),
                    Err(err) => (0, Err(err)),
                }
            })
            .map_err(|err| io::Error::other(format!("smoltcp receive failed: {err}")))?;
        match written {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.approve_written(n);
                Ok(true)
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                self.writable = false;
                Ok(false)
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(err) => Err(err),
        }
    }

    fn approve_written(&mut self, n: usize) {
        self.bytes_from_jail += n as u64;
        if self.credit != u64::MAX {
            self.credit -= n as u64;
        }
    }

    /// Shows the inspector the undecided bytes. Returns whether anything changed.
    fn inspect(&mut self, socket: &mut tcp::Socket<'_>) -> io::Result<bool> {
        let Some(inspector) = self.inspector.as_mut() else {
            self.credit = u64::MAX;
            return Ok(true);
        };
        stage_from_jail(&mut self.staging, socket, INSPECTION_LIMIT);
        if self.staging.is_empty() || self.staging.len() == self.inspected {
            return Ok(false);
        }

        match inspector.inspect(&self.staging) {
            Inspection::Forward(n) => {
                self.credit = n;
                self.inspected = 0;
            }
            Inspection::NeedMore if self.staging.len() >= INSPECTION_LIMIT => {
                tracing::debug!(
                    flow = self.info.id,
                    "inspector undecided at the limit, resetting"
                );
                self.reset_by_inspector(socket);
                return Ok(false);
            }
            Inspection::NeedMore => {
                self.inspected = self.staging.len();
                return Ok(socket.can_recv());
            }
            Inspection::PassThrough => {
                self.credit = u64::MAX;
                self.inspector = None;
            }
            Inspection::Refuse { reply } => {
                self.refusal = Some(reply);
                self.refusing = true;
                self.staging.clear();
                self.readable = true;
                // Without a count of owed responses, the upstream's EOF after a half-close is
                // the only sign that it is done.
                if inspector.pending_responses().is_none() {
                    self.upstream_write_shut = true;
                    self.upstream
                        .shutdown_write()
                        .or_else(ignore_not_connected)?;
                }
            }
            Inspection::Reset => {
                self.reset_by_inspector(socket);
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn reset_by_inspector(&mut self, socket: &mut tcp::Socket<'_>) {
        socket.abort();
        self.upstream.set_reset_on_close();
        self.failure = Some(CloseReason::InspectorReset);
    }

    fn pump_to_jail(&mut self, socket: &mut tcp::Socket<'_>) -> io::Result<()> {
        while self.readable && !self.host_eof && socket.can_send() {
            if self.refusal_due() {
                break;
            }
            let upstream = &mut self.upstream;
            let inspector = &mut self.inspector;
            let read = socket
                .send(|space| match upstream.read(space) {
                    Ok(n) => {
                        if let Some(inspector) = inspector {
                            inspector.observe_upstream(&space[..n]);
                        }
                        (n, Ok(n))
                    }
                    Err(err) => (0, Err(err)),
                })
                .map_err(|err| io::Error::other(format!("smoltcp send failed: {err}")))?;
            match read {
                Ok(0) => self.host_eof = true,
                Ok(n) => self.bytes_to_jail += n as u64,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                // After a refusal the upstream may reset its side; the refusal still goes out.
                Err(_) if self.refusing => self.host_eof = true,
                Err(err) => return Err(err),
            }
        }

        if self.refusal_due() {
            // The upstream owes nothing more; what it sends from here on is dropped.
            self.host_eof = true;
            self.upstream_write_shut = true;
            self.upstream.set_reset_on_close();
        }
        if self.host_eof && socket.may_send() {
            if let Some(reply) = self.refusal.as_mut() {
                let sent = socket.send_slice(reply).unwrap_or(0);
                reply.drain(..sent);
                if !reply.is_empty() {
                    return Ok(());
                }
                self.refusal = None;
            }
            // smoltcp sends the FIN after the data already queued.
            socket.close();
        }
        Ok(())
    }

    /// Reports whether a refusal waits only for nothing: every response the upstream owed
    /// has reached the jail's send buffer.
    fn refusal_due(&self) -> bool {
        let owed = self
            .inspector
            .as_ref()
            .and_then(|inspector| inspector.pending_responses());
        self.refusing && !self.host_eof && owed == Some(0)
    }

    /// Returns why the flow is over, or `None` while it is still alive.
    pub fn finished(&self, socket: &tcp::Socket<'_>) -> Option<CloseReason> {
        if let Some(failure) = &self.failure {
            return Some(failure.clone());
        }
        match socket.state() {
            State::TimeWait | State::Closed if self.jail_finished => {}
            // Without the jail's FIN, only a reset gets smoltcp to CLOSED, and a reset
            // sends a half-open socket back to LISTEN.
            State::Closed => return Some(CloseReason::JailReset),
            State::Listen if matches!(self.phase, Phase::Open) => {
                return Some(CloseReason::JailReset);
            }
            _ => return None,
        }
        if !self.upstream_write_shut {
            // What the jail sent before its FIN still waits for the upstream; the write half
            // is shut once it is all written.
            return None;
        }
        Some(if self.jail_reset {
            CloseReason::JailReset
        } else if self.refusing {
            CloseReason::Refused
        } else {
            CloseReason::Fin
        })
    }

    /// Records what the last segment from the jail did to the socket: `was` is the state
    /// before smoltcp took it.
    pub fn note_jail_segment(&mut self, was: State, now: State, reset: bool) {
        if matches!(
            now,
            State::CloseWait | State::LastAck | State::Closing | State::TimeWait
        ) {
            self.jail_finished = true;
        }
        if reset && now == State::Closed && was != State::Closed {
            self.jail_reset = true;
        }
    }
}

/// Moves bytes from the smoltcp receive buffer to the end of `staging` until `staging`
/// contains `limit` bytes or the receive buffer is empty. Staged bytes wait for the
/// inspector and the upstream as they would have in smoltcp.
fn stage_from_jail(staging: &mut Vec<u8>, socket: &mut tcp::Socket<'_>, limit: usize) {
    while staging.len() < limit && socket.can_recv() {
        let room = limit - staging.len();
        let result = socket.recv(|data| {
            let n = data.len().min(room);
            staging.extend_from_slice(&data[..n]);
            (n, ())
        });
        if result.is_err() {
            break;
        }
    }
}

fn clamp(credit: u64) -> usize {
    usize::try_from(credit).unwrap_or(usize::MAX)
}

fn ignore_not_connected(err: io::Error) -> io::Result<()> {
    if err.kind() == io::ErrorKind::NotConnected {
        Ok(())
    } else {
        Err(err)
    }
}
