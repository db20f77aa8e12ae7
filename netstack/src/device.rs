//! The TUN device as a smoltcp [`Device`]: packets are read by the stack, classified, and
//! handed to smoltcp one at a time; smoltcp's output is written straight to the device.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

pub(crate) struct TunDevice {
    file: File,
    mtu: usize,
    rx_buf: Vec<u8>,
    /// Length of the packet in `rx_buf` that smoltcp has yet to receive.
    rx_pending: Option<usize>,
    tx_buf: Vec<u8>,
    /// Packets the kernel refused to take back; TCP recovers them by retransmission.
    pub tx_dropped: u64,
}

impl TunDevice {
    /// Wraps a non-blocking TUN file descriptor opened with IFF_TUN | IFF_NO_PI.
    pub fn new(fd: OwnedFd, mtu: usize) -> TunDevice {
        TunDevice {
            file: File::from(fd),
            mtu,
            rx_buf: vec![0; mtu],
            rx_pending: None,
            tx_buf: vec![0; mtu],
            tx_dropped: 0,
        }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Reads the next packet into the receive buffer. Returns `Ok(None)` when the device has
    /// no packet ready.
    pub fn read_packet(&mut self) -> io::Result<Option<usize>> {
        loop {
            match self.file.read(&mut self.rx_buf) {
                Ok(len) => return Ok(Some(len)),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
        }
    }

    pub fn packet(&self, len: usize) -> &[u8] {
        &self.rx_buf[..len]
    }

    /// Makes the packet last read the next one smoltcp receives.
    pub fn queue_for_smoltcp(&mut self, len: usize) {
        self.rx_pending = Some(len);
    }

    /// Writes a packet the stack built itself.
    pub fn send(&mut self, packet: &[u8]) {
        write_packet(&self.file, packet, &mut self.tx_dropped);
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
        let rx = RxToken {
            packet: &self.rx_buf[..len],
        };
        let tx = TxToken {
            file: &self.file,
            buf: &mut self.tx_buf,
            dropped: &mut self.tx_dropped,
        };
        Some((rx, tx))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        Some(TxToken {
            file: &self.file,
            buf: &mut self.tx_buf,
            dropped: &mut self.tx_dropped,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
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
    buf: &'a mut Vec<u8>,
    dropped: &'a mut u64,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        if self.buf.len() < len {
            self.buf.resize(len, 0);
        }
        let result = f(&mut self.buf[..len]);
        write_packet(self.file, &self.buf[..len], self.dropped);
        result
    }
}
