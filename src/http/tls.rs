//! Reading the server name (SNI) from a TLS ClientHello without terminating TLS.
//!
//! Formats: the record layer and handshake header of RFC 8446 sections 5.1 and 4, and the
//! `server_name` extension of RFC 6066 section 3. A ClientHello may span several records.

/// What the first bytes of a flow say about TLS.
#[derive(Debug, PartialEq, Eq)]
pub enum Hello {
    /// The bytes do not start a TLS handshake record.
    NotTls,
    /// A TLS handshake record that is not complete yet.
    Incomplete,
    /// A complete ClientHello, with its host name if it sent one.
    ClientHello { server_name: Option<String> },
    /// A TLS handshake record that is not a valid ClientHello.
    Malformed,
}

const RECORD_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXTENSION_SERVER_NAME: u16 = 0;
const NAME_TYPE_HOST: u8 = 0;
/// Largest ClientHello accepted; real ones are a few kilobytes, with post-quantum key shares.
const MAX_HELLO: usize = 32 * 1024;

/// Parses the start of a flow.
pub fn parse(data: &[u8]) -> Hello {
    match data.first() {
        None => return Hello::Incomplete,
        Some(&RECORD_HANDSHAKE) => {}
        Some(_) => return Hello::NotTls,
    }
    // The record version's major byte is 3 for every SSL 3.0 and TLS version.
    if data.len() >= 2 && data[1] != 3 {
        return Hello::NotTls;
    }
    let message = match reassemble(data) {
        Ok(Some(message)) => message,
        Ok(None) => return Hello::Incomplete,
        Err(()) => return Hello::Malformed,
    };
    match client_hello_server_name(&message) {
        Some(server_name) => Hello::ClientHello { server_name },
        None => Hello::Malformed,
    }
}

/// Joins the handshake records' fragments until the first handshake message is complete.
/// Returns `Ok(None)` when more bytes are needed.
fn reassemble(mut data: &[u8]) -> Result<Option<Vec<u8>>, ()> {
    let mut message = Vec::new();
    loop {
        if data.len() < 5 {
            return Ok(None);
        }
        if data[0] != RECORD_HANDSHAKE {
            return Err(());
        }
        let length = usize::from(u16::from_be_bytes([data[3], data[4]]));
        if length == 0 {
            return Err(());
        }
        let Some(fragment) = data.get(5..5 + length) else {
            return Ok(None);
        };
        message.extend_from_slice(fragment);
        data = &data[5 + length..];

        if message.len() >= 4 {
            if message[0] != HANDSHAKE_CLIENT_HELLO {
                return Err(());
            }
            let body = usize::from(message[1]) << 16
                | usize::from(message[2]) << 8
                | usize::from(message[3]);
            if body + 4 > MAX_HELLO {
                return Err(());
            }
            if message.len() >= body + 4 {
                message.truncate(body + 4);
                return Ok(Some(message));
            }
        }
    }
}

/// A cursor over big-endian fields that fails instead of panicking on short input.
struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.data.get(..n)?, self.data.get(n..)?);
        self.data = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        let bytes = self.take(2)?;
        Some(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    /// Takes a field preceded by its length in `width` bytes.
    fn vector(&mut self, width: usize) -> Option<&'a [u8]> {
        let length = match width {
            1 => usize::from(self.u8()?),
            _ => usize::from(self.u16()?),
        };
        self.take(length)
    }
}

/// Returns `Some(server_name)` for a well-formed ClientHello message, `None` otherwise.
fn client_hello_server_name(message: &[u8]) -> Option<Option<String>> {
    let mut reader = Reader {
        data: message.get(4..)?,
    };
    reader.take(2)?; // legacy_version
    reader.take(32)?; // random
    reader.vector(1)?; // legacy_session_id
    reader.vector(2)?; // cipher_suites
    reader.vector(1)?; // legacy_compression_methods
    if reader.data.is_empty() {
        // A ClientHello without extensions has no server name.
        return Some(None);
    }
    let mut extensions = Reader {
        data: reader.vector(2)?,
    };
    while !extensions.data.is_empty() {
        let kind = extensions.u16()?;
        let body = extensions.vector(2)?;
        if kind == EXTENSION_SERVER_NAME {
            return server_name(body).map(Some);
        }
    }
    Some(None)
}

fn server_name(body: &[u8]) -> Option<String> {
    let mut list = Reader {
        data: Reader { data: body }.vector(2)?,
    };
    while !list.data.is_empty() {
        let name_type = list.u8()?;
        let name = list.vector(2)?;
        if name_type == NAME_TYPE_HOST {
            let name = std::str::from_utf8(name).ok()?;
            return Some(name.trim_end_matches('.').to_ascii_lowercase());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a minimal ClientHello record with the given extensions block.
    fn hello_with_extensions(extensions: &[u8]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[0x11; 32]);
        body.push(0); // empty session id
        body.extend_from_slice(&[0, 2, 0x13, 0x01]); // one cipher suite
        body.extend_from_slice(&[1, 0]); // null compression
        body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
        body.extend_from_slice(extensions);

        let mut message = vec![HANDSHAKE_CLIENT_HELLO, 0, 0, 0];
        message[1..4].copy_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        message.extend_from_slice(&body);

        let mut record = vec![RECORD_HANDSHAKE, 3, 1];
        record.extend_from_slice(&(message.len() as u16).to_be_bytes());
        record.extend_from_slice(&message);
        record
    }

    fn sni_extension(name: &str) -> Vec<u8> {
        let mut entry = vec![NAME_TYPE_HOST];
        entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
        entry.extend_from_slice(name.as_bytes());
        let mut list = (entry.len() as u16).to_be_bytes().to_vec();
        list.extend_from_slice(&entry);
        let mut extension = EXTENSION_SERVER_NAME.to_be_bytes().to_vec();
        extension.extend_from_slice(&(list.len() as u16).to_be_bytes());
        extension.extend_from_slice(&list);
        extension
    }

    #[test]
    fn server_name_is_read() {
        let mut extensions = vec![0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]; // ec_point_formats first
        extensions.extend_from_slice(&sni_extension("Web.Test."));
        let record = hello_with_extensions(&extensions);
        let expected = Hello::ClientHello {
            server_name: Some("web.test".into()),
        };
        assert_eq!(parse(&record), expected);
    }

    #[test]
    fn hello_without_sni() {
        let record = hello_with_extensions(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
        assert_eq!(parse(&record), Hello::ClientHello { server_name: None });
    }

    #[test]
    fn hello_split_across_records() {
        let record = hello_with_extensions(&sni_extension("web.test"));
        let message = &record[5..];
        let (first, second) = message.split_at(20);
        let mut split = Vec::new();
        for part in [first, second] {
            split.extend_from_slice(&[RECORD_HANDSHAKE, 3, 1]);
            split.extend_from_slice(&(part.len() as u16).to_be_bytes());
            split.extend_from_slice(part);
        }
        let expected = Hello::ClientHello {
            server_name: Some("web.test".into()),
        };
        assert_eq!(parse(&split), expected);
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let record = hello_with_extensions(&sni_extension("web.test"));
        for len in 0..record.len() {
            assert_eq!(
                parse(&record[..len]),
                Hello::Incomplete,
                "prefix of {len} bytes"
            );
        }
    }

    #[test]
    fn plain_http_is_not_tls() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Hello::NotTls);
        assert_eq!(parse(&[RECORD_HANDSHAKE, 0x47]), Hello::NotTls);
    }

    #[test]
    fn corrupted_hellos_never_panic() {
        let record = hello_with_extensions(&sni_extension("web.test"));
        for index in 5..record.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = record.clone();
                bad[index] ^= flip;
                let _ = parse(&bad);
            }
        }
        let mut not_hello = record.clone();
        not_hello[5] = 2;
        assert_eq!(parse(&not_hello), Hello::Malformed);
    }
}
