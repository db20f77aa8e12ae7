//! Userspace TCP/IP termination for the jail's TUN device.
//!
//! [`Stack`] reads every IP packet the jail sends, terminates TCP in a smoltcp interface that
//! accepts any destination address, asks a [`Handler`] what to do with each new flow, and
//! moves bytes between the smoltcp socket and a host socket with bounded buffers and
//! back-pressure both ways. UDP datagrams go to the handler, which answers through a
//! [`StackHandle`]. The crate keeps smoltcp types out of its public API.

#![deny(unsafe_code)]

mod buffers;
mod device;
mod packet;
mod stack;
mod tcp;

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::time::Duration;

pub use stack::{Stack, StackHandle, StackStats};

/// Settings of the stack. [`StackConfig::default`] matches the jail netjail sets up.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// The stack's own IPv4 address on the TUN link (the jail's gateway).
    pub gateway_v4: Ipv4Addr,
    pub prefix_v4: u8,
    /// The stack's own IPv6 address on the TUN link.
    pub gateway_v6: Ipv6Addr,
    pub prefix_v6: u8,
    /// MTU of the TUN device, in bytes.
    pub mtu: usize,
    /// The TUN device was opened with IFF_VNET_HDR and TUN_F_CSUM: each packet has a
    /// virtio-net header and checksums are offloaded.
    pub vnet_hdr: bool,
    /// Receive buffer of each TCP flow, jail to host, in bytes.
    pub tcp_rx_buffer: usize,
    /// Send buffer of each TCP flow, host to jail, in bytes.
    pub tcp_tx_buffer: usize,
    /// Flows beyond this many are reset at once.
    pub max_flows: usize,
    /// Time a host-side connect may take before the jail's SYN gets a reset.
    pub connect_timeout: Duration,
    /// How long a refused flow waits for the upstream to finish its last responses before
    /// the refusal goes to the jail anyway.
    pub refusal_grace: Duration,
}

impl Default for StackConfig {
    fn default() -> Self {
        StackConfig {
            gateway_v4: Ipv4Addr::new(198, 19, 0, 1),
            prefix_v4: 24,
            gateway_v6: Ipv6Addr::new(0xfd6e, 0x6a00, 0, 0, 0, 0, 0, 1),
            prefix_v6: 64,
            mtu: 65520,
            vnet_hdr: true,
            tcp_rx_buffer: 2 * 1024 * 1024,
            tcp_tx_buffer: 2 * 1024 * 1024,
            max_flows: 16384,
            connect_timeout: Duration::from_secs(20),
            refusal_grace: Duration::from_secs(2),
        }
    }
}

/// A flow's endpoints as the jail sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowInfo {
    /// Unique within one stack, never reused.
    pub id: u64,
    /// The jail's address and port.
    pub src: SocketAddr,
    /// The destination the jail addressed.
    pub dst: SocketAddr,
}

/// The handler's decision about a new TCP flow.
pub enum TcpVerdict {
    /// Connect to the `upstream` addresses in turn; the jail's SYN is answered only once one
    /// connect succeeds, and with a reset when all fail. With an inspector, the bytes from the
    /// jail go upstream only as far as the inspector approves them.
    Connect {
        upstream: Vec<SocketAddr>,
        inspector: Option<Box<dyn Inspector>>,
    },
    /// Accept the flow at once and splice it to this already connected stream.
    Local(UnixStream),
    /// Reply to the SYN with a reset.
    Reset,
}

impl std::fmt::Debug for TcpVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TcpVerdict::Connect {
                upstream,
                inspector,
            } => f
                .debug_struct("Connect")
                .field("upstream", upstream)
                .field("inspected", &inspector.is_some())
                .finish(),
            TcpVerdict::Local(stream) => f.debug_tuple("Local").field(stream).finish(),
            TcpVerdict::Reset => f.write_str("Reset"),
        }
    }
}

/// Decides, piece by piece, which bytes of a flow may go from the jail to the upstream.
///
/// The stack calls [`Inspector::inspect`] with the bytes the jail sent that no earlier call
/// approved, starting right after the last approved byte. Bytes the inspector has not
/// decided on yet are held by the stack, up to [`INSPECTION_LIMIT`] bytes.
pub trait Inspector: Send {
    fn inspect(&mut self, data: &[u8]) -> Inspection;

    /// Shows the inspector the bytes going from the upstream to the jail, in order.
    fn observe_upstream(&mut self, _data: &[u8]) {}

    /// After a refusal, the number of forwarded requests whose responses the upstream has not
    /// finished; the refusal goes to the jail once it is zero. `None` when the inspector cannot
    /// tell: the stack then shuts the upstream's write side and waits for its EOF.
    fn pending_responses(&self) -> Option<usize> {
        None
    }
}

/// Bytes from the jail an inspector may hold undecided; an inspector that still answers
/// [`Inspection::NeedMore`] at this size gets its flow reset.
pub const INSPECTION_LIMIT: usize = 64 * 1024;

/// An inspector's decision about the bytes it was shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inspection {
    /// Send the next `n` bytes upstream, which may be more than were shown (a request body
    /// announced by its length); the inspector is called again after them.
    Forward(u64),
    /// Decide nothing until more bytes arrive.
    NeedMore,
    /// Send everything from here on without further inspection.
    PassThrough,
    /// Send nothing more upstream, let the upstream finish the responses it owes (see
    /// [`Inspector::pending_responses`]), then send `reply` to the jail and close.
    Refuse { reply: Vec<u8> },
    /// Reset both sides at once.
    Reset,
}

/// The reason a flow ended, from the stack's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// Both sides closed their write halves.
    Fin,
    /// The jail reset the connection.
    JailReset,
    /// The host side failed; the jail got a reset.
    Upstream(String),
    /// The stack stopped while the flow was open.
    Shutdown,
    /// The flow's inspector refused a request and the refusal was sent.
    Refused,
    /// The flow's inspector reset the flow.
    InspectorReset,
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::Fin => f.write_str("fin"),
            CloseReason::JailReset => f.write_str("reset by jail"),
            CloseReason::Upstream(err) => write!(f, "upstream error: {err}"),
            CloseReason::Shutdown => f.write_str("supervisor shutdown"),
            CloseReason::Refused => f.write_str("request refused"),
            CloseReason::InspectorReset => f.write_str("reset by inspection"),
        }
    }
}

/// Counters of one finished flow.
#[derive(Debug, Clone)]
pub struct FlowStats {
    pub bytes_from_jail: u64,
    pub bytes_to_jail: u64,
    pub duration: Duration,
    pub close: CloseReason,
}

/// The policy and bookkeeping side of the stack, called on the stack's thread.
pub trait Handler: Send {
    /// Decides a new TCP flow when the jail's SYN arrives. Must not block.
    fn tcp_flow(&mut self, flow: &FlowInfo) -> TcpVerdict;

    /// Records that the host-side connect of an accepted flow succeeded.
    fn tcp_connected(&mut self, flow: &FlowInfo, upstream: SocketAddr);

    /// Records that every host-side connect failed, so the jail got a reset.
    fn tcp_connect_failed(&mut self, flow: &FlowInfo, error: &io::Error);

    /// Records the end of a flow that reached the connected state.
    fn tcp_closed(&mut self, flow: &FlowInfo, stats: &FlowStats);

    /// Takes a UDP datagram from the jail. Replies go through [`StackHandle::send_udp`].
    fn udp_datagram(&mut self, src: SocketAddr, dst: SocketAddr, payload: &[u8]);
}

/// Errors that stop the stack.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Setting up or waiting on the event loop failed.
    #[error("event loop failed")]
    Poll(#[source] io::Error),
    /// Reading from the TUN device failed with something other than "try again".
    #[error("reading the TUN device failed")]
    TunRead(#[source] io::Error),
}
