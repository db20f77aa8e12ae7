//! Classifying the jail's packets before smoltcp sees them, and building the few packets the
//! stack sends on its own (resets for refused SYNs, UDP replies).

use std::net::{IpAddr, SocketAddr};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    IpAddress, IpProtocol, IpRepr, Ipv4Packet, Ipv6Packet, TcpControl, TcpPacket, TcpRepr,
    TcpSeqNumber, UdpPacket, UdpRepr,
};

/// Hop limit of packets the stack builds itself.
const HOP_LIMIT: u8 = 64;

/// The facts about one packet that decide where it goes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Packet<'a> {
    Tcp(TcpHeader),
    Udp {
        src: SocketAddr,
        dst: SocketAddr,
        payload: &'a [u8],
    },
    /// Valid IP, but neither TCP nor UDP (ICMP, fragments, extension headers).
    Other,
    /// Truncated, inconsistent or failing a checksum.
    Malformed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpHeader {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub syn: bool,
    pub ack: bool,
    pub rst: bool,
    pub seq: u32,
}

impl TcpHeader {
    /// A connection request: SYN without ACK or RST.
    pub fn is_initial_syn(&self) -> bool {
        self.syn && !self.ack && !self.rst
    }
}

/// Parses an IP packet from the jail far enough to route it. With `verify_checksums` off,
/// which a device with checksum offload needs because its packets carry partial sums, TCP
/// and UDP checksums are not checked.
pub(crate) fn classify(buf: &[u8], verify_checksums: bool) -> Packet<'_> {
    let Some(&first) = buf.first() else {
        return Packet::Malformed;
    };
    let parsed = match first >> 4 {
        4 => split_ipv4(buf),
        6 => split_ipv6(buf),
        _ => return Packet::Malformed,
    };
    let Some(ip) = parsed else {
        return Packet::Malformed;
    };
    match ip.protocol {
        IpProtocol::Tcp => classify_tcp(&ip, verify_checksums),
        IpProtocol::Udp => classify_udp(&ip, verify_checksums),
        _ => Packet::Other,
    }
}

/// An IP packet split into its addresses and transport payload.
struct IpParts<'a> {
    src: IpAddress,
    dst: IpAddress,
    protocol: IpProtocol,
    payload: &'a [u8],
}

fn split_ipv4(buf: &[u8]) -> Option<IpParts<'_>> {
    let packet = Ipv4Packet::new_checked(buf).ok()?;
    if !packet.verify_checksum() {
        return None;
    }
    let protocol = if packet.more_frags() || packet.frag_offset() != 0 {
        IpProtocol::Unknown(0xff)
    } else {
        packet.next_header()
    };
    let header_len = usize::from(packet.header_len());
    let total_len = usize::from(packet.total_len());
    Some(IpParts {
        src: packet.src_addr().into(),
        dst: packet.dst_addr().into(),
        protocol,
        payload: &buf[header_len..total_len],
    })
}

fn split_ipv6(buf: &[u8]) -> Option<IpParts<'_>> {
    let packet = Ipv6Packet::new_checked(buf).ok()?;
    let header_len = packet.header_len();
    let payload_len = usize::from(packet.payload_len());
    Some(IpParts {
        src: packet.src_addr().into(),
        dst: packet.dst_addr().into(),
        protocol: packet.next_header(),
        payload: &buf[header_len..header_len + payload_len],
    })
}

fn classify_tcp(ip: &IpParts<'_>, verify: bool) -> Packet<'static> {
    let Ok(tcp) = TcpPacket::new_checked(ip.payload) else {
        return Packet::Malformed;
    };
    // Only a SYN is checked here, since it may create a flow; smoltcp reads the rest.
    if verify && tcp.syn() && !tcp.verify_checksum(&ip.src, &ip.dst) {
        return Packet::Malformed;
    }
    Packet::Tcp(TcpHeader {
        src: SocketAddr::new(ip.src.into(), tcp.src_port()),
        dst: SocketAddr::new(ip.dst.into(), tcp.dst_port()),
        syn: tcp.syn(),
        ack: tcp.ack(),
        rst: tcp.rst(),
        seq: tcp.seq_number().0 as u32,
    })
}

fn classify_udp<'a>(ip: &IpParts<'a>, verify: bool) -> Packet<'a> {
    let Ok(udp) = UdpPacket::new_checked(ip.payload) else {
        return Packet::Malformed;
    };
    // An IPv4 UDP checksum of zero means "not computed" (RFC 768).
    let unchecked = ip.src.version() == smoltcp::wire::IpVersion::Ipv4 && udp.checksum() == 0;
    if verify && !unchecked && !udp.verify_checksum(&ip.src, &ip.dst) {
        return Packet::Malformed;
    }
    let len = usize::from(udp.len());
    Packet::Udp {
        src: SocketAddr::new(ip.src.into(), udp.src_port()),
        dst: SocketAddr::new(ip.dst.into(), udp.dst_port()),
        payload: &ip.payload[8..len],
    }
}

/// Builds the reset that refuses a SYN: sent from the SYN's destination back to its source,
/// acknowledging the SYN so the jail's connect fails with ECONNREFUSED (RFC 9293, 3.10.7.1).
pub(crate) fn tcp_reset_for_syn(syn: &TcpHeader) -> Vec<u8> {
    let tcp = TcpRepr {
        src_port: syn.dst.port(),
        dst_port: syn.src.port(),
        control: TcpControl::Rst,
        seq_number: TcpSeqNumber(0),
        ack_number: Some(TcpSeqNumber(syn.seq.wrapping_add(1) as i32)),
        window_len: 0,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    let (src, dst) = (ip_address(syn.dst.ip()), ip_address(syn.src.ip()));
    let ip = IpRepr::new(src, dst, IpProtocol::Tcp, tcp.buffer_len(), HOP_LIMIT);
    let mut buf = vec![0u8; ip.buffer_len()];
    let caps = ChecksumCapabilities::default();
    ip.emit(&mut buf[..], &caps);
    let mut packet = TcpPacket::new_unchecked(&mut buf[ip.header_len()..]);
    tcp.emit(&mut packet, &src, &dst, &caps);
    buf
}

/// Builds a UDP datagram from `src` to `dst`. Returns `None` when the address families differ
/// or the payload cannot fit in one datagram.
pub(crate) fn udp_datagram(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Option<Vec<u8>> {
    if src.is_ipv4() != dst.is_ipv4() || payload.len() > usize::from(u16::MAX) - 48 {
        return None;
    }
    let udp = UdpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
    };
    let udp_len = udp.header_len() + payload.len();
    let (src_ip, dst_ip) = (ip_address(src.ip()), ip_address(dst.ip()));
    let ip = IpRepr::new(src_ip, dst_ip, IpProtocol::Udp, udp_len, HOP_LIMIT);
    let mut buf = vec![0u8; ip.buffer_len()];
    let caps = ChecksumCapabilities::default();
    ip.emit(&mut buf[..], &caps);
    let mut packet = UdpPacket::new_unchecked(&mut buf[ip.header_len()..]);
    let emit_payload = |out: &mut [u8]| out.copy_from_slice(payload);
    udp.emit(
        &mut packet,
        &src_ip,
        &dst_ip,
        payload.len(),
        emit_payload,
        &caps,
    );
    Some(buf)
}

pub(crate) fn ip_address(addr: IpAddr) -> IpAddress {
    match addr {
        IpAddr::V4(v4) => IpAddress::Ipv4(v4),
        IpAddr::V6(v6) => IpAddress::Ipv6(v6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 SYN from 198.19.0.2:40000 to 198.18.0.1:80, seq 1000, with valid checksums.
    fn syn_v4() -> Vec<u8> {
        let header = TcpHeader {
            src: "198.18.0.1:80".parse().unwrap(),
            dst: "198.19.0.2:40000".parse().unwrap(),
            syn: true,
            ack: false,
            rst: false,
            seq: 0,
        };
        // A reset built in the reverse direction is a valid packet to flip into a SYN.
        let mut buf = tcp_reset_for_syn(&header);
        let ip_len = 20;
        let mut tcp = TcpPacket::new_unchecked(&mut buf[ip_len..]);
        tcp.set_rst(false);
        tcp.set_ack(false);
        tcp.set_syn(true);
        tcp.set_seq_number(TcpSeqNumber(1000));
        tcp.set_ack_number(TcpSeqNumber(0));
        tcp.fill_checksum(
            &IpAddress::Ipv4("198.19.0.2".parse().unwrap()),
            &IpAddress::Ipv4("198.18.0.1".parse().unwrap()),
        );
        buf
    }

    #[test]
    fn syn_is_classified() {
        let buf = syn_v4();
        let Packet::Tcp(tcp) = classify(&buf, true) else {
            panic!("not tcp: {:?}", classify(&buf, true))
        };
        assert!(tcp.is_initial_syn());
        assert_eq!(tcp.src, "198.19.0.2:40000".parse().unwrap());
        assert_eq!(tcp.dst, "198.18.0.1:80".parse().unwrap());
        assert_eq!(tcp.seq, 1000);
    }

    #[test]
    fn reset_acknowledges_the_syn() {
        let buf = syn_v4();
        let Packet::Tcp(syn) = classify(&buf, true) else {
            panic!()
        };
        let reset = tcp_reset_for_syn(&syn);
        let Packet::Tcp(header) = classify(&reset, true) else {
            panic!("reset does not parse")
        };
        assert!(header.rst);
        assert!(header.ack);
        assert_eq!(header.src, syn.dst);
        assert_eq!(header.dst, syn.src);
        let tcp = TcpPacket::new_checked(&reset[20..]).unwrap();
        assert_eq!(tcp.ack_number(), TcpSeqNumber(1001));
    }

    #[test]
    fn corrupted_checksum_is_malformed() {
        let mut buf = syn_v4();
        let last = buf.len() - 1;
        buf[last] ^= 0xff;
        assert_eq!(classify(&buf, true), Packet::Malformed);
    }

    #[test]
    fn udp_round_trip_v6() {
        let src: SocketAddr = "[fd6e:6a00::1]:53".parse().unwrap();
        let dst: SocketAddr = "[fd6e:6a00::2]:5353".parse().unwrap();
        let buf = udp_datagram(src, dst, b"hello").unwrap();
        assert_eq!(
            classify(&buf, true),
            Packet::Udp {
                src,
                dst,
                payload: b"hello"
            }
        );
    }

    #[test]
    fn mixed_families_are_refused() {
        let src: SocketAddr = "198.19.0.1:53".parse().unwrap();
        let dst: SocketAddr = "[fd6e:6a00::2]:5353".parse().unwrap();
        assert!(udp_datagram(src, dst, b"x").is_none());
    }

    #[test]
    fn truncated_input_never_panics() {
        let buf = syn_v4();
        for len in 0..buf.len() {
            let _ = classify(&buf[..len], true);
        }
        assert_eq!(classify(&[], true), Packet::Malformed);
        assert_eq!(classify(&[0x45], true), Packet::Malformed);
        assert_eq!(classify(&[0x60, 0, 0], true), Packet::Malformed);
    }
}
