//! Flow buffers: anonymous mappings lent to smoltcp sockets and pooled between flows.
//!
//! A flow's receive and send buffers are large (2 MiB each by default) so that one flow can
//! fill a fast link, but most flows move a few kilobytes. Each buffer is a mapping of its own,
//! so only the pages a flow touched are resident. Transparent huge pages are turned off for
//! the mappings, because with them the first byte a flow wrote could make a whole 2 MiB page
//! resident.
//!
//! Mapping two buffers for every flow and unmapping them afterwards cost four system calls
//! and a page fault per touched page, which stood out in the profile of short connections. A
//! finished flow therefore hands its buffers to a [`BufferPool`], and the next flow takes
//! them as they are.
//!
//! The pool bounds what it keeps resident: a buffer that may have touched more than
//! [`KEEP_RESIDENT`] bytes gives its pages back to the kernel (`MADV_DONTNEED`) before it
//! goes into the pool, and the pool keeps at most [`POOL_CAPACITY`] pairs.

#![allow(unsafe_code)]

use std::io;
use std::ptr::NonNull;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;

/// A pooled buffer keeps its pages only if its flow moved at most this many bytes through it.
pub(crate) const KEEP_RESIDENT: u64 = 32 * 1024;
/// Buffer pairs the pool keeps for the next flows.
pub(crate) const POOL_CAPACITY: usize = 64;

/// One private anonymous mapping, unmapped on drop.
struct Buffer {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a Buffer owns its mapping; nothing else refers to it while the Buffer moves.
unsafe impl Send for Buffer {}

impl Buffer {
    fn map(len: usize) -> io::Result<Buffer> {
        // SAFETY: a fresh private anonymous mapping aliases no existing memory.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(addr.cast::<u8>()).expect("mmap does not return null on success");
        let buffer = Buffer { ptr, len };
        // SAFETY: the range is the mapping just created, and no slice of it exists yet.
        let result = unsafe { libc::madvise(addr, len, libc::MADV_NOHUGEPAGE) };
        if result != 0 {
            // Kernels built without transparent huge pages reject the advice with EINVAL, and
            // then there is nothing to turn off.
            let err = io::Error::last_os_error();
            tracing::debug!(error = %err, "madvise(MADV_NOHUGEPAGE) on a flow buffer failed");
        }
        Ok(buffer)
    }

    /// Returns the whole buffer as a slice with any lifetime.
    ///
    /// # Safety
    ///
    /// The caller must drop the slice before the buffer, and must not lend the buffer again
    /// while the slice lives.
    unsafe fn lend<'a>(&mut self) -> &'a mut [u8] {
        // SAFETY: the caller upholds the lifetime; the mapping is `len` bytes long.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Gives the pages back to the kernel; they read as zeros when next touched.
    fn discard_pages(&mut self) {
        // SAFETY: the range is this buffer's own mapping, and `&mut self` means no socket
        // borrows it.
        let result =
            unsafe { libc::madvise(self.ptr.as_ptr().cast(), self.len, libc::MADV_DONTNEED) };
        if result != 0 {
            let err = io::Error::last_os_error();
            tracing::debug!(error = %err, "madvise(MADV_DONTNEED) on a flow buffer failed");
        }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: the mapping was created by `map` with this length and nothing refers to it
        // any more.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// The receive and send buffers of one flow.
pub(crate) struct BufferPair {
    rx: Buffer,
    tx: Buffer,
}

/// A flow's socket set with its one TCP socket, and the buffers that socket borrows.
///
/// The socket's buffers are `'static` slices of `rx` and `tx`. This is sound because the set
/// cannot outlive them: fields drop in declaration order, so `set` goes first, and
/// [`FlowSockets::into_buffers`] drops the set before it hands the buffers back. Code that
/// uses the set must not move the socket out of it.
pub(crate) struct FlowSockets {
    set: SocketSet<'static>,
    buffers: BufferPair,
}

impl FlowSockets {
    /// Builds the set around the socket that `make` creates from the pair's buffers.
    pub fn new(
        mut buffers: BufferPair,
        make: impl FnOnce(
            tcp::SocketBuffer<'static>,
            tcp::SocketBuffer<'static>,
        ) -> tcp::Socket<'static>,
    ) -> (FlowSockets, SocketHandle) {
        // SAFETY: each buffer is valid for its whole length and readable as bytes (mapped
        // pages start zeroed). The slices stay valid until the set is dropped (see the type's
        // documentation), and nothing else reads or writes the buffers meanwhile.
        let (rx, tx) = unsafe { (buffers.rx.lend(), buffers.tx.lend()) };
        let socket = make(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx));
        let mut set = SocketSet::new(Vec::with_capacity(1));
        let handle = set.add(socket);
        (FlowSockets { set, buffers }, handle)
    }

    /// Drops the set and its socket and returns the buffers.
    pub fn into_buffers(self) -> BufferPair {
        let FlowSockets { set, buffers } = self;
        drop(set);
        buffers
    }
}

impl std::ops::Deref for FlowSockets {
    type Target = SocketSet<'static>;

    fn deref(&self) -> &SocketSet<'static> {
        &self.set
    }
}

impl std::ops::DerefMut for FlowSockets {
    fn deref_mut(&mut self) -> &mut SocketSet<'static> {
        &mut self.set
    }
}

/// Buffer pairs of finished flows, ready for new ones.
pub(crate) struct BufferPool {
    rx_len: usize,
    tx_len: usize,
    free: Vec<BufferPair>,
}

impl BufferPool {
    pub fn new(rx_len: usize, tx_len: usize) -> BufferPool {
        BufferPool {
            rx_len,
            tx_len,
            free: Vec::with_capacity(POOL_CAPACITY),
        }
    }

    /// Takes a pooled pair, or maps a new one.
    pub fn take(&mut self) -> io::Result<BufferPair> {
        if let Some(pair) = self.free.pop() {
            return Ok(pair);
        }
        Ok(BufferPair {
            rx: Buffer::map(self.rx_len)?,
            tx: Buffer::map(self.tx_len)?,
        })
    }

    /// Returns a pair. `touched` is an upper bound of the bytes that went through the
    /// receive and send buffers, or `None` when no bound is known.
    pub fn put(&mut self, mut pair: BufferPair, touched: Option<(u64, u64)>) {
        if self.free.len() >= POOL_CAPACITY {
            return;
        }
        let (rx, tx) = touched.unwrap_or((u64::MAX, u64::MAX));
        if rx > KEEP_RESIDENT {
            pair.rx.discard_pages();
        }
        if tx > KEEP_RESIDENT {
            pair.tx.discard_pages();
        }
        self.free.push(pair);
    }

    /// Returns the number of pairs kept for reuse.
    #[cfg(test)]
    fn pooled(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_size() -> usize {
        // SAFETY: sysconf reads a constant of the system and touches no memory of ours.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(size).expect("the page size is positive")
    }

    fn resident_pages(buffer: &Buffer) -> usize {
        let mut vec = vec![0u8; buffer.len.div_ceil(page_size())];
        // SAFETY: the range is a live mapping and `vec` has one byte per page.
        let result =
            unsafe { libc::mincore(buffer.ptr.as_ptr().cast(), buffer.len, vec.as_mut_ptr()) };
        assert_eq!(result, 0, "mincore: {}", io::Error::last_os_error());
        vec.iter().filter(|&&b| b & 1 == 1).count()
    }

    fn new_socket(
        rx: tcp::SocketBuffer<'static>,
        tx: tcp::SocketBuffer<'static>,
    ) -> tcp::Socket<'static> {
        tcp::Socket::new(rx, tx)
    }

    #[test]
    fn pool_reuses_a_returned_pair() {
        let mut pool = BufferPool::new(64 * 1024, 64 * 1024);
        let pair = pool.take().unwrap();
        let rx_addr = pair.rx.ptr;
        let (sockets, handle) = FlowSockets::new(pair, new_socket);
        assert_eq!(
            sockets.get::<tcp::Socket>(handle).recv_capacity(),
            64 * 1024
        );
        pool.put(sockets.into_buffers(), Some((0, 0)));
        assert_eq!(pool.pooled(), 1);
        let again = pool.take().unwrap();
        assert_eq!(again.rx.ptr, rx_addr);
        assert_eq!(pool.pooled(), 0);
    }

    #[test]
    fn pool_discards_pages_beyond_the_bound() {
        let page = page_size();
        let len = 256 * 1024;
        let mut pool = BufferPool::new(len, len);
        let mut pair = pool.take().unwrap();
        // SAFETY: the slices are dropped at the end of this block, before the pair moves.
        unsafe {
            pair.rx.lend().fill(1);
            pair.tx.lend()[..page].fill(1);
        }
        assert_eq!(resident_pages(&pair.rx), len / page);
        pool.put(pair, Some((len as u64, page as u64)));
        let pair = pool.take().unwrap();
        assert_eq!(
            resident_pages(&pair.rx),
            0,
            "the receive buffer moved more than the bound"
        );
        assert_eq!(
            resident_pages(&pair.tx),
            1,
            "the send buffer keeps its one touched page"
        );
        pool.put(pair, None);
        let pair = pool.take().unwrap();
        assert_eq!(
            resident_pages(&pair.tx),
            0,
            "no bound known, so nothing stays"
        );
    }

    /// Returns the `VmFlags` of the mapping that contains `addr`, from /proc/self/smaps.
    fn vm_flags(addr: usize) -> String {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut in_mapping = false;
        for line in smaps.lines() {
            let first = line.split(' ').next().unwrap_or_default();
            if let Some((start, end)) = first.split_once('-') {
                // A mapping's header: "start-end perms offset device inode path".
                let start = usize::from_str_radix(start, 16).unwrap();
                let end = usize::from_str_radix(end, 16).unwrap();
                in_mapping = (start..end).contains(&addr);
            } else if in_mapping && let Some(flags) = line.strip_prefix("VmFlags:") {
                return flags.trim().to_string();
            }
        }
        panic!("no mapping contains {addr:#x} in /proc/self/smaps");
    }

    #[test]
    fn buffers_never_get_huge_pages() {
        let mut pool = BufferPool::new(2 * 1024 * 1024, 2 * 1024 * 1024);
        let pair = pool.take().unwrap();
        for buffer in [&pair.rx, &pair.tx] {
            let flags = vm_flags(buffer.ptr.as_ptr() as usize);
            assert!(
                flags.split(' ').any(|flag| flag == "nh"),
                "the mapping allows huge pages: VmFlags {flags}"
            );
        }
    }

    #[test]
    fn pool_keeps_at_most_its_capacity() {
        let mut pool = BufferPool::new(4096, 4096);
        let pairs: Vec<_> = (0..POOL_CAPACITY + 5)
            .map(|_| pool.take().unwrap())
            .collect();
        for pair in pairs {
            pool.put(pair, Some((0, 0)));
        }
        assert_eq!(pool.pooled(), POOL_CAPACITY);
    }
}
