//! The TUN device as a smoltcp [`Device`]: packets are read by the stack, classified, and
//! handed to smoltcp one at a time; smoltcp's output is written straight to the device.
//!
//! A device opened with `IFF_VNET_HDR` and `TUN_F_CSUM` prefixes each packet with a
//! virtio-net header (`struct virtio_net_hdr` in linux/virtio_net.h). Packets from the jail
//! may then carry partial checksums, which nothing here reads. smoltcp leaves the TCP
//! checksum of its packets out, and their header says `VIRTIO_NET_HDR_F_NEEDS_CSUM` with the
//! checksum's position: the jail's kernel treats such a packet as checksummed by a device,
//! which for local delivery means it verifies nothing (see `skb_csum_unnecessary`).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use smoltcp::phy::{self, Checksum, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Size of `struct virtio_net_hdr` without the `num_buffers` field, the default of
/// TUNSETVNETHDRSZ.
const VNET_HDR_LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset` is left to the
/// device.
const VNET_F_NEEDS_CSUM: u8 = 1;
/// Offset of the checksum field in a TCP header.
const TCP_CHECKSUM_OFFSET: u16 = 16;

pub(crate) struct TunDevice {
    file: File,
    mtu: usize,
    /// Length of the virtio-net header before each packet: 0 or [`VNET_HDR_LEN`].
    header_len: usize,
    rx_buf: Vec<u8>,
    /// Length of the packet in `rx_buf` that smoltcp has yet to receive.
    rx_pending: Option<usize>,
    tx_buf: Vec<u8>,
    /// Packets the kernel refused to take back; TCP recovers them by retransmission.
    pub tx_dropped: u64,
}

impl TunDevice {
    /// Wraps a non-blocking TUN file descriptor opened with IFF_TUN | IFF_NO_PI, and with
    /// IFF_VNET_HDR and TUN_F_CSUM when `vnet_hdr` is set.
    pub fn new(fd: OwnedFd, mtu: usize, vnet_hdr: bool) -> TunDevice {
        let header_len = if vnet_hdr { VNET_HDR_LEN } else { 0 };
        TunDevice {
            file: File::from(fd),
            mtu,
            header_len,
            rx_buf: vec![0; header_len + mtu],
            rx_pending: None,
            tx_buf: vec![0; header_len + mtu],
            tx_dropped: 0,
        }
    }

    /// Reports whether the kernel may hand over packets with partial TCP and UDP checksums.
    pub fn has_partial_checksums(&self) -> bool {
        self.header_len > 0
    }

    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Reads the next packet into the receive buffer. Returns its length without the
    /// virtio-net header, or `Ok(None)` when the device has no packet ready.
    pub fn read_packet(&mut self) -> io::Result<Option<usize>> {
        loop {
            match self.file.read(&mut self.rx_buf) {
                Ok(len) => return Ok(Some(len.saturating_sub(self.header_len))),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
        }
    }

    pub fn packet(&self, len: usize) -> &[u8] {
        &self.rx_buf[self.header_len..self.header_len + len]
    }

    /// Makes the packet last read the next one smoltcp receives.
    pub fn queue_for_smoltcp(&mut self, len: usize) {
        self.rx_pending = Some(len);
    }

    /// Writes a packet the stack built itself.
    pub fn send(&mut self, packet: &[u8]) {
        let end = self.header_len + packet.len();
        if self.tx_buf.len() < end {
            self.tx_buf.resize(end, 0);
        }
        self.tx_buf[self.header_len..end].copy_from_slice(packet);
        // The stack's own packets carry full checksums.
        self.tx_buf[..self.header_len].fill(0);
        write_packet(&self.file, &self.tx_buf[..end], &mut self.tx_dropped);
    }

    fn tx_token(&mut self) -> TxToken<'_> {
        TxToken {
            file: &self.file,
            header_len: self.header_len,
            buf: &mut self.tx_buf,
            dropped: &mut self.tx_dropped,
        }
    }
}

fn write_packet(file: &File, packet: &[u8], dropped: &mut u64) {
    let mut writer = file;
    if let Err(err) = writer.write(packet) {
        *dropped += 1;
        tracing::trace!(error = %err, len = packet.len(), "dropping outbound packet");
    }
}

impl Device for TunDevice {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let len = self.rx_pending.take()?;
        let start = self.header_len;
        let rx = RxToken {
            packet: &self.rx_buf[start..start + len],
        };
        let tx = TxToken {
            file: &self.file,
            header_len: self.header_len,
            buf: &mut self.tx_buf,
            dropped: &mut self.tx_dropped,
        };
        Some((rx, tx))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        Some(self.tx_token())
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        // Packets on a TUN device never cross a wire, so a bad checksum can only come from
        // the jail itself and harms nothing but its own flow. smoltcp still fills in the
        // checksums of what it sends, which the jail's kernel verifies.
        caps.checksum.ipv4 = Checksum::Tx;
        caps.checksum.tcp = if self.header_len > 0 {
            Checksum::None
        } else {
            Checksum::Tx
        };
        caps.checksum.udp = Checksum::Tx;
        caps
    }
}

pub(crate) struct RxToken<'a> {
    packet: &'a [u8],
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.packet)
    }
}

pub(crate) struct TxToken<'a> {
    file: &'a File,
    header_len: usize,
    /// The virtio-net header, when there is one, followed by room for the packet.
    buf: &'a mut Vec<u8>,
    dropped: &'a mut u64,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let end = self.header_len + len;
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        let result = f(&mut self.buf[self.header_len..end]);
        if self.header_len > 0 {
            let (header, packet) = self.buf.split_at_mut(self.header_len);
            fill_vnet_header(header, packet);
        }
        write_packet(self.file, &self.buf[..end], self.dropped);
        result
    }
}

/// Writes the virtio-net header of a packet smoltcp built: TCP packets have their checksum
/// left to the device, anything else has it filled in. Fields are in the host's byte order,
/// which TUN uses unless TUNSETVNETLE or TUNSETVNETBE says otherwise.
fn fill_vnet_header(header: &mut [u8], packet: &[u8]) {
    header.fill(0);
    let transport_start = match packet.first().map(|b| b >> 4) {
        Some(4) if packet.len() > 9 && packet[9] == 6 => usize::from(packet[0] & 0x0f) * 4,
        Some(6) if packet.len() > 6 && packet[6] == 6 => 40,
        _ => return,
    };
    let Ok(csum_start) = u16::try_from(transport_start) else {
        return;
    };
    header[0] = VNET_F_NEEDS_CSUM;
    header[6..8].copy_from_slice(&csum_start.to_ne_bytes());
    header[8..10].copy_from_slice(&TCP_CHECKSUM_OFFSET.to_ne_bytes());
}
