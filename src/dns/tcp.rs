//! DNS over TCP (RFC 7766): each message has a 2-byte big-endian length prefix, and a client
//! may send several queries without waiting for the responses.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;

use super::{DnsService, Transport};

/// Queries of one connection answered at the same time. Reading pauses at this limit, which
/// bounds the memory one connection can take.
const MAX_IN_FLIGHT: usize = 16;

/// A connection with no query in flight is closed after this long without input. RFC 7766
/// section 6.2.3 lets servers close idle connections and suggests timeouts of seconds.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

impl DnsService {
    /// Serves one DNS-over-TCP connection from `client` until the client closes its side and
    /// every query is answered, or until it stays idle for 30 seconds.
    ///
    /// Queries are answered concurrently, so responses may arrive in a different order than
    /// the queries, as RFC 7766 section 6.2.1.1 allows. A message that is not a DNS query gets
    /// no response. Returns the first I/O error of the stream.
    pub async fn serve_tcp<S>(&self, stream: S, client: SocketAddr) -> io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let mut input = Vec::new();
        let mut in_flight = JoinSet::new();
        let mut eof = false;

        loop {
            while in_flight.len() < MAX_IN_FLIGHT
                && let Some(query) = take_message(&mut input)
            {
                let service = self.clone();
                in_flight
                    .spawn(async move { service.answer(&query, Transport::Tcp, client).await });
            }
            if eof && in_flight.is_empty() {
                break;
            }

            // `read_buf` and `join_next` are cancel-safe, so losing the race loses no data.
            tokio::select! {
                read = reader.read_buf(&mut input), if !eof && in_flight.len() < MAX_IN_FLIGHT => {
                    eof = read? == 0;
                }
                Some(joined) = in_flight.join_next() => {
                    write_response(&mut writer, joined, client).await?;
                }
                () = tokio::time::sleep(IDLE_TIMEOUT), if in_flight.is_empty() => {
                    tracing::debug!(%client, "closing idle DNS-over-TCP connection");
                    break;
                }
                else => break,
            }
        }

        if !input.is_empty() {
            let len = input.len();
            tracing::debug!(%client, len, "DNS-over-TCP connection closed mid-message");
        }
        writer.shutdown().await
    }
}

/// Removes the first complete length-prefixed message from `input` and returns its body.
fn take_message(input: &mut Vec<u8>) -> Option<Vec<u8>> {
    let [high, low, ..] = input[..] else {
        return None;
    };
    let end = 2 + usize::from(u16::from_be_bytes([high, low]));
    if input.len() < end {
        return None;
    }
    let message = input[2..end].to_vec();
    input.drain(..end);
    Some(message)
}

async fn write_response<W>(
    writer: &mut W,
    joined: Result<Option<Vec<u8>>, tokio::task::JoinError>,
    client: SocketAddr,
) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let response = match joined {
        Ok(Some(response)) => response,
        Ok(None) => return Ok(()),
        Err(err) => {
            tracing::error!(%client, error = %err, "answering a DNS-over-TCP query failed");
            return Ok(());
        }
    };
    // `encode` keeps responses within the 65535 bytes the prefix can express.
    let Ok(length) = u16::try_from(response.len()) else {
        tracing::error!(%client, len = response.len(), "dropping a DNS response over the TCP limit");
        return Ok(());
    };
    let mut frame = Vec::with_capacity(2 + response.len());
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(&response);
    writer.write_all(&frame).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_message_waits_for_complete_frames() {
        let mut input = vec![0, 3, b'a', b'b'];
        assert_eq!(take_message(&mut input), None);
        input.extend_from_slice(&[b'c', 0, 1, b'd', 0]);
        assert_eq!(take_message(&mut input), Some(b"abc".to_vec()));
        assert_eq!(take_message(&mut input), Some(b"d".to_vec()));
        assert_eq!(take_message(&mut input), None);
        assert_eq!(input, vec![0]);
    }

    #[test]
    fn take_message_accepts_empty_body() {
        let mut input = vec![0, 0];
        assert_eq!(take_message(&mut input), Some(Vec::new()));
        assert!(input.is_empty());
    }
}
