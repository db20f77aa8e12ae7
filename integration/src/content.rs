//! Deterministic payloads: the fixtures generate them on the fly and the tests
//! compute their SHA-256 independently, so no large file has to be shipped.

use std::io::{self, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Bytes per generated block; offsets into a payload are always block-aligned.
pub const BLOCK_LEN: usize = 64 * 1024;

/// Fills `block` with the payload bytes that start at `offset`.
///
/// Every 8-byte word is splitmix64 of its word index, little-endian, so any
/// block of any payload can be produced without generating what comes before.
pub fn fill_block(offset: u64, block: &mut [u8]) {
    assert_eq!(offset % 8, 0, "payload offsets must be multiples of 8");
    let first_word = offset / 8;
    for (i, chunk) in block.chunks_mut(8).enumerate() {
        let word = splitmix64(first_word + i as u64).to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}

/// Returns the first `len` bytes of the payload.
pub fn payload(len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    fill_block(0, &mut bytes);
    bytes
}

/// Writes the first `len` bytes of the payload to a new file at `path`.
pub fn write_payload(path: &Path, len: u64) -> io::Result<()> {
    let mut file = io::BufWriter::new(std::fs::File::create(path)?);
    let mut block = vec![0; BLOCK_LEN];
    let mut offset = 0;
    while offset < len {
        let n = (len - offset).min(BLOCK_LEN as u64) as usize;
        fill_block(offset, &mut block[..n]);
        file.write_all(&block[..n])?;
        offset += n as u64;
    }
    file.flush()
}

/// Returns the lowercase hex SHA-256 of the first `len` bytes of the payload.
pub fn payload_sha256(len: u64) -> String {
    let mut hasher = Sha256::new();
    let mut block = vec![0; BLOCK_LEN];
    let mut offset = 0;
    while offset < len {
        let n = (len - offset).min(BLOCK_LEN as u64) as usize;
        fill_block(offset, &mut block[..n]);
        hasher.update(&block[..n]);
        offset += n as u64;
    }
    hex(&hasher.finalize())
}

/// Returns the lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Formats `bytes` as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn splitmix64(index: u64) -> u64 {
    let mut z = index.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_match_whole_payload() {
        let whole = payload(3 * BLOCK_LEN + 5);
        let mut block = vec![0; BLOCK_LEN];
        fill_block(BLOCK_LEN as u64, &mut block);
        assert_eq!(&whole[BLOCK_LEN..2 * BLOCK_LEN], &block[..]);
    }

    #[test]
    fn streamed_sha256_matches_direct() {
        let len = 2 * BLOCK_LEN + 13;
        assert_eq!(payload_sha256(len as u64), sha256_hex(&payload(len)));
    }

    #[test]
    fn sha256_of_empty_input() {
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(sha256_hex(b""), empty);
    }
}
