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
use crate::{CloseReason, FlowInfo};

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

/// Where a flow is in its life.
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
    /// The host side sent EOF, so the jail gets a FIN once the send buffer drains.
    host_eof: bool,
    /// The jail sent FIN and the host socket's write half is shut.
    upstream_write_shut: bool,
    pub bytes_from_jail: u64,
    pub bytes_to_jail: u64,
    pub opened: Instant,
    /// Set when the flow failed and must go once its reset is out.
    pub failure: Option<CloseReason>,
    /// Queued in the stack's list of flows to pump.
    pub queued: bool,
}

impl TcpFlow {
    pub fn new(
        info: FlowInfo,
        handle: SocketHandle,
        syn: TcpHeader,
        phase: Phase,
        upstream: Upstream,
    ) -> TcpFlow {
        TcpFlow {
            info,
            handle,
            syn,
            phase,
            upstream,
            readable: false,
            writable: false,
            host_eof: false,
            upstream_write_shut: false,
            bytes_from_jail: 0,
            bytes_to_jail: 0,
            opened: Instant::now(),
            failure: None,
            queued: false,
        }
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

    fn pump_to_host(&mut self, socket: &mut tcp::Socket<'_>) -> io::Result<()> {
        while self.writable && socket.can_recv() {
            let upstream = &mut self.upstream;
            let written = socket
                .recv(|data| match upstream.write(data) {
                    Ok(n) => (n, Ok(n)),
                    Err(err) => (0, Err(err)),
                })
                .map_err(|err| io::Error::other(format!("smoltcp receive failed: {err}")))?;
            match written {
                Ok(0) => break,
                Ok(n) => self.bytes_from_jail += n as u64,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }

        let jail_finished = !socket.can_recv() && jail_sent_fin(socket.state());
        if jail_finished && !self.upstream_write_shut {
            self.upstream_write_shut = true;
            self.upstream
                .shutdown_write()
                .or_else(ignore_not_connected)?;
        }
        Ok(())
    }

    fn pump_to_jail(&mut self, socket: &mut tcp::Socket<'_>) -> io::Result<()> {
        while self.readable && !self.host_eof && socket.can_send() {
            let upstream = &mut self.upstream;
            let read = socket
                .send(|space| match upstream.read(space) {
                    Ok(n) => (n, Ok(n)),
                    Err(err) => (0, Err(err)),
                })
                .map_err(|err| io::Error::other(format!("smoltcp send failed: {err}")))?;
            match read {
                Ok(0) => self.host_eof = true,
                Ok(n) => self.bytes_to_jail += n as u64,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }

        // smoltcp sends the FIN after the data already queued.
        if self.host_eof && socket.may_send() {
            socket.close();
        }
        Ok(())
    }

    /// Returns why the flow is over, or `None` while it is still alive.
    pub fn finished(&self, socket: &tcp::Socket<'_>) -> Option<CloseReason> {
        if let Some(failure) = &self.failure {
            return Some(failure.clone());
        }
        match socket.state() {
            State::TimeWait => Some(CloseReason::Fin),
            State::Closed if self.host_eof && self.upstream_write_shut => Some(CloseReason::Fin),
            State::Closed => Some(CloseReason::JailReset),
            // A reset from the jail sends a half-open socket back to LISTEN.
            State::Listen if matches!(self.phase, Phase::Open) => Some(CloseReason::JailReset),
            _ => None,
        }
    }
}

/// Reports whether the jail has closed its write half.
fn jail_sent_fin(state: State) -> bool {
    matches!(
        state,
        State::CloseWait | State::LastAck | State::Closing | State::TimeWait | State::Closed
    )
}

fn ignore_not_connected(err: io::Error) -> io::Result<()> {
    if err.kind() == io::ErrorKind::NotConnected {
        Ok(())
    } else {
        Err(err)
    }
}
