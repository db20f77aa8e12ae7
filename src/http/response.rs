//! Following the responses of an inspected HTTP/1.x connection, to know when the upstream has
//! answered every request netjail forwarded (RFC 9112 section 6.3 for message lengths).
//!
//! A refused request must not get its 403 while the upstream still owes responses to the
//! requests before it, or the client would take the 403 for one of those.

use std::collections::VecDeque;

/// Largest response head or chunk line buffered while incomplete.
const MAX_BUFFERED: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a status line.
    Head,
    /// Inside a chunked body, expecting a chunk-size line.
    ChunkSize,
    /// After the last chunk, expecting the trailer section.
    Trailers,
    /// The body runs until the upstream closes.
    UntilClose,
    /// The connection switched protocols; nothing more is HTTP.
    Tunnel,
    /// Something did not parse; the count of owed responses is unknown.
    Lost,
}

/// The requests forwarded upstream and the progress of their responses.
#[derive(Debug)]
pub struct ResponseTracker {
    /// One entry per forwarded request still waiting for its full response: whether its
    /// method was HEAD (whose response has no body).
    owed: VecDeque<bool>,
    state: State,
    /// Bytes of an incomplete head, chunk line or trailer section.
    buffer: Vec<u8>,
    /// Body bytes still to pass before the next element.
    skip: u64,
    /// Whether the bytes being skipped end the message or one chunk of it.
    skipping_chunk: bool,
}

impl ResponseTracker {
    pub fn new() -> ResponseTracker {
        ResponseTracker {
            owed: VecDeque::new(),
            state: State::Head,
            buffer: Vec::new(),
            skip: 0,
            skipping_chunk: false,
        }
    }

    /// Notes a request sent upstream.
    pub fn request_forwarded(&mut self, method: &str) {
        self.owed.push_back(method == "HEAD");
    }

    /// The number of forwarded requests not yet answered in full, or `None` when it cannot be
    /// known.
    pub fn pending(&self) -> Option<usize> {
        match self.state {
            State::Lost | State::Tunnel => None,
            // A body that ends at close is owed until the upstream closes.
            State::UntilClose => Some(self.owed.len().max(1)),
            _ => Some(self.owed.len()),
        }
    }

    /// Follows the bytes the upstream sent.
    pub fn observe(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if matches!(self.state, State::UntilClose | State::Tunnel | State::Lost) {
                return;
            }
            if self.skip > 0 && self.buffer.is_empty() {
                let n = self.skip.min(data.len() as u64);
                self.skip -= n;
                data = &data[n as usize..];
                if self.skip == 0 {
                    self.skip_done();
                }
                continue;
            }
            self.buffer.extend_from_slice(data);
            data = &[];
            while self.step() {}
            if self.buffer.len() > MAX_BUFFERED {
                self.state = State::Lost;
            }
        }
    }

    /// Consumes one element from the front of the buffer. Returns whether it made progress.
    fn step(&mut self) -> bool {
        if self.buffer.is_empty() {
            return false;
        }
        if self.skip > 0 {
            let n = self.skip.min(self.buffer.len() as u64);
            self.skip -= n;
            self.buffer.drain(..n as usize);
            if self.skip == 0 {
                self.skip_done();
            }
            return true;
        }
        match self.state {
            State::Head => self.head(),
            State::ChunkSize => self.chunk_size(),
            State::Trailers => self.trailers(),
            State::UntilClose | State::Tunnel | State::Lost => false,
        }
    }

    fn head(&mut self) -> bool {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let len = match response.parse(&self.buffer) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return false,
            Err(_) => {
                self.state = State::Lost;
                return false;
            }
        };
        let status = response.code.unwrap_or_default();
        let framing = body_framing(response.headers);
        self.buffer.drain(..len);

        let head_request = self.owed.front().copied().unwrap_or(false);
        match status {
            101 => self.state = State::Tunnel,
            // Interim responses precede the real one.
            100..=199 => {}
            204 | 304 => self.message_done(),
            _ if head_request => self.message_done(),
            _ => match framing {
                Framing::Chunked => self.state = State::ChunkSize,
                Framing::Length(0) => self.message_done(),
                Framing::Length(length) => {
                    self.skip = length;
                    self.skipping_chunk = false;
                }
                Framing::UntilClose => self.state = State::UntilClose,
                Framing::Invalid => self.state = State::Lost,
            },
        }
        true
    }

    fn chunk_size(&mut self) -> bool {
        let Some(end) = find_crlf(&self.buffer) else {
            return false;
        };
        let line = &self.buffer[..end];
        let size_text = line.split(|&b| b == b';').next().unwrap_or_default();
        let size = std::str::from_utf8(size_text)
            .ok()
            .map(str::trim)
            .filter(|text| !text.is_empty() && text.len() <= 15)
            .and_then(|text| u64::from_str_radix(text, 16).ok());
        self.buffer.drain(..end + 2);
        match size {
            None => self.state = State::Lost,
            Some(0) => self.state = State::Trailers,
            // The chunk's data and its CRLF.
            Some(size) => {
                self.skip = size + 2;
                self.skipping_chunk = true;
            }
        }
        true
    }

    fn skip_done(&mut self) {
        if !self.skipping_chunk {
            self.message_done();
        }
    }

    fn trailers(&mut self) -> bool {
        if self.buffer.starts_with(b"\r\n") {
            self.buffer.drain(..2);
            self.message_done();
            return true;
        }
        let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
            return false;
        };
        self.buffer.drain(..end + 4);
        self.message_done();
        true
    }

    fn message_done(&mut self) {
        self.owed.pop_front();
        self.state = State::Head;
    }
}

/// The framing of a response body.
enum Framing {
    Chunked,
    Length(u64),
    UntilClose,
    Invalid,
}

fn body_framing(headers: &[httparse::Header<'_>]) -> Framing {
    let mut chunked = false;
    let mut length = None;
    for header in headers {
        let value = String::from_utf8_lossy(header.value)
            .trim()
            .to_ascii_lowercase();
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim() == "chunked");
            if !chunked {
                return Framing::UntilClose;
            }
        } else if header.name.eq_ignore_ascii_case("content-length") {
            match (value.parse::<u64>(), length) {
                (Ok(n), None) => length = Some(n),
                (Ok(n), Some(previous)) if n == previous => {}
                _ => return Framing::Invalid,
            }
        }
    }
    match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::UntilClose,
    }
}

fn find_crlf(data: &[u8]) -> Option<usize> {
    data.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(methods: &[&str]) -> ResponseTracker {
        let mut tracker = ResponseTracker::new();
        for method in methods {
            tracker.request_forwarded(method);
        }
        tracker
    }

    #[test]
    fn content_length_responses_complete() {
        let mut t = tracker(&["GET", "GET"]);
        t.observe(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel");
        assert_eq!(t.pending(), Some(2));
        t.observe(b"lo");
        assert_eq!(t.pending(), Some(1));
        t.observe(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(t.pending(), Some(0));
    }

    #[test]
    fn chunked_response_split_anywhere() {
        let response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n5;x=y\r\npedia\r\n0\r\nT: 1\r\n\r\n";
        for split in 0..response.len() {
            let mut t = tracker(&["GET"]);
            t.observe(&response[..split]);
            assert_eq!(t.pending(), Some(1), "split at {split}");
            t.observe(&response[split..]);
            assert_eq!(t.pending(), Some(0), "split at {split}");
        }
    }

    #[test]
    fn interim_and_bodiless_responses() {
        let mut t = tracker(&["POST", "HEAD", "GET"]);
        t.observe(b"HTTP/1.1 100 Continue\r\n\r\n");
        assert_eq!(t.pending(), Some(3));
        t.observe(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok");
        t.observe(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
        t.observe(b"HTTP/1.1 304 Not Modified\r\n\r\n");
        assert_eq!(t.pending(), Some(0));
    }

    #[test]
    fn body_until_close_stays_owed() {
        let mut t = tracker(&["GET"]);
        t.observe(b"HTTP/1.0 200 OK\r\n\r\nstreaming");
        assert_eq!(t.pending(), Some(1));
    }

    #[test]
    fn garbage_makes_the_count_unknown() {
        let mut t = tracker(&["GET"]);
        t.observe(b"SSH-2.0-x\r\n\r\n");
        assert_eq!(t.pending(), None);
        let mut t = tracker(&["GET"]);
        t.observe(b"HTTP/1.1 101 Switching Protocols\r\n\r\n");
        assert_eq!(t.pending(), None);
    }
}
