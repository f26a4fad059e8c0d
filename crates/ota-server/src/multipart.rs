//! A bounded, streaming `multipart/form-data` parser (RFC 7578 over RFC 2046).
//!
//! Push bytes as they arrive with [`MultipartParser::push`], pull events
//! with [`MultipartParser::next_event`]. Memory is bounded whatever the
//! client sends: the preamble, each part's header block and the number of
//! parts have limits ([`Limits`]); part bodies are handed out as they are
//! found, holding back only the few bytes that could start a boundary. Each
//! byte is scanned a bounded number of times, so a hostile body costs time
//! linear in its size.
//!
//! ```
//! use ota_server::multipart::{Event, Limits, MultipartParser};
//! let mut p = MultipartParser::new("XyZ", Limits::default()).unwrap();
//! p.push(b"--XyZ\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\n{}\r\n--XyZ--\r\n");
//! assert!(matches!(p.next_event().unwrap(), Some(Event::Part(h)) if h.name == "content"));
//! assert!(matches!(p.next_event().unwrap(), Some(Event::Data(d)) if &d[..] == b"{}"));
//! assert!(matches!(p.next_event().unwrap(), Some(Event::PartEnd)));
//! assert!(matches!(p.next_event().unwrap(), Some(Event::End)));
//! ```

use bytes::{Buf, Bytes, BytesMut};
use memchr::memmem;

/// Bounds on everything that is not part data.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bytes allowed before the first boundary.
    pub preamble: usize,
    /// Bytes of one part's header block, up to and including the blank line.
    pub headers: usize,
    /// Parts allowed in one body.
    pub parts: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            preamble: 4 * 1024,
            headers: 8 * 1024,
            parts: 8,
        }
    }
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    /// The boundary parameter is unusable.
    #[error("invalid multipart boundary (1 to 70 characters from RFC 2046's set)")]
    Boundary,
    /// No boundary within [`Limits::preamble`] bytes.
    #[error("no multipart boundary within the first {0} bytes")]
    Preamble(usize),
    /// A header block longer than [`Limits::headers`].
    #[error("a part's headers exceed {0} bytes")]
    HeadersTooLarge(usize),
    /// More than [`Limits::parts`] parts.
    #[error("more than {0} parts")]
    TooManyParts(usize),
    /// A header block that is not `Name: value` lines.
    #[error("malformed part header: {0}")]
    Header(String),
    /// A part without `Content-Disposition: form-data; name=…`.
    #[error("a part has no Content-Disposition: form-data; name=\"…\"")]
    NoName,
    /// Something else after a boundary than CRLF or `--`.
    #[error("malformed boundary line")]
    BoundaryLine,
    /// The body ended before the closing boundary.
    #[error("the body ended before the closing boundary (truncated upload?)")]
    Truncated,
}

/// A part's headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartHeaders {
    /// The form field name.
    pub name: String,
    /// The file name, when the part is a file.
    pub filename: Option<String>,
    /// The part's `Content-Type`, if given.
    pub content_type: Option<String>,
}

/// What the parser found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A part begins.
    Part(PartHeaders),
    /// Bytes of the current part's body (never empty).
    Data(Bytes),
    /// The current part ended.
    PartEnd,
    /// The closing boundary: nothing after it is read.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Preamble,
    AfterBoundary,
    Headers,
    Body,
    Done,
}

/// The parser. See the module documentation.
pub struct MultipartParser {
    /// `\r\n--boundary`: what ends a body. The first boundary may come
    /// without its CRLF, which [`State::Preamble`] handles.
    delimiter: Vec<u8>,
    finder: memmem::Finder<'static>,
    buf: BytesMut,
    state: State,
    limits: Limits,
    /// Where to resume searching in `buf`, so no byte is scanned twice.
    scanned: usize,
    /// Bytes of preamble discarded so far.
    preamble_seen: usize,
    parts: usize,
    pending_part_end: bool,
}

fn boundary_ok(b: &str) -> bool {
    const EXTRA: &[u8] = b"'()+_,-./:=? ";
    (1..=70).contains(&b.len())
        && !b.ends_with(' ')
        && b.bytes()
            .all(|c| c.is_ascii_alphanumeric() || EXTRA.contains(&c))
}

impl MultipartParser {
    /// A parser for `boundary` (the `boundary=` parameter of the content type).
    pub fn new(boundary: &str, limits: Limits) -> Result<Self, MultipartError> {
        if !boundary_ok(boundary) {
            return Err(MultipartError::Boundary);
        }
        let delimiter = format!("\r\n--{boundary}").into_bytes();
        Ok(MultipartParser {
            finder: memmem::Finder::new(&delimiter).into_owned(),
            delimiter,
            buf: BytesMut::new(),
            state: State::Preamble,
            limits,
            scanned: 0,
            preamble_seen: 0,
            parts: 0,
            pending_part_end: false,
        })
    }

    /// Appends received bytes. Bytes after the closing boundary are ignored.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.state != State::Done {
            self.buf.extend_from_slice(chunk);
        }
    }

    /// True once the closing boundary was seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Call at the end of the body: an error unless the closing boundary came.
    pub fn finish(&self) -> Result<(), MultipartError> {
        if self.state == State::Done {
            Ok(())
        } else {
            Err(MultipartError::Truncated)
        }
    }

    /// The next event, or `None` when more bytes are needed.
    pub fn next_event(&mut self) -> Result<Option<Event>, MultipartError> {
        if self.pending_part_end {
            self.pending_part_end = false;
            return Ok(Some(Event::PartEnd));
        }
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Preamble => {
                    if !self.skip_preamble()? {
                        return Ok(None);
                    }
                }
                State::AfterBoundary => match self.after_boundary()? {
                    Some(Some(event)) => return Ok(Some(event)),
                    Some(None) => {}
                    None => return Ok(None),
                },
                State::Headers => return self.headers(),
                State::Body => return Ok(self.body()),
            }
        }
    }

    /// Finds the first boundary; true when found.
    fn skip_preamble(&mut self) -> Result<bool, MultipartError> {
        // Only the very first bytes may be a boundary without its CRLF.
        let dash_boundary = &self.delimiter[2..];
        if self.preamble_seen == 0 && self.buf.starts_with(dash_boundary) {
            self.buf.advance(dash_boundary.len());
            self.state = State::AfterBoundary;
            return Ok(true);
        }
        let start = self.scanned.saturating_sub(self.delimiter.len() - 1);
        if let Some(i) = self.finder.find(&self.buf[start..]) {
            self.preamble_seen += start + i;
            if self.preamble_seen > self.limits.preamble {
                return Err(MultipartError::Preamble(self.limits.preamble));
            }
            self.buf.advance(start + i + self.delimiter.len());
            self.scanned = 0;
            self.state = State::AfterBoundary;
            return Ok(true);
        }
        // Keep only what could still begin a delimiter.
        let keep = self.delimiter.len() - 1;
        if self.buf.len() > keep {
            let drop = self.buf.len() - keep;
            self.preamble_seen += drop;
            self.buf.advance(drop);
        }
        self.scanned = self.buf.len();
        if self.preamble_seen > self.limits.preamble {
            return Err(MultipartError::Preamble(self.limits.preamble));
        }
        Ok(false)
    }

    /// After `--boundary`: `--` ends the body, CRLF starts a part (RFC 2046
    /// allows spaces and tabs before it). `None` means more bytes needed;
    /// `Some(None)` means the state changed and parsing goes on.
    #[allow(clippy::option_option)]
    fn after_boundary(&mut self) -> Result<Option<Option<Event>>, MultipartError> {
        let padding = self
            .buf
            .iter()
            .take_while(|b| **b == b' ' || **b == b'\t')
            .count();
        if padding > 64 {
            return Err(MultipartError::BoundaryLine);
        }
        if self.buf.starts_with(b"--") {
            self.buf.clear();
            self.state = State::Done;
            return Ok(Some(Some(Event::End)));
        }
        let rest = &self.buf[padding..];
        if rest.len() < 2 {
            return if rest.is_empty() || rest == b"\r" || (padding == 0 && rest == b"-") {
                Ok(None)
            } else {
                Err(MultipartError::BoundaryLine)
            };
        }
        if &rest[..2] != b"\r\n" {
            return Err(MultipartError::BoundaryLine);
        }
        self.buf.advance(padding + 2);
        self.parts += 1;
        if self.parts > self.limits.parts {
            return Err(MultipartError::TooManyParts(self.limits.parts));
        }
        self.state = State::Headers;
        self.scanned = 0;
        Ok(Some(None))
    }

    fn headers(&mut self) -> Result<Option<Event>, MultipartError> {
        // A part with no headers at all starts with the blank line.
        let end = if self.buf.starts_with(b"\r\n") {
            Some(0)
        } else {
            let start = self.scanned.saturating_sub(3);
            memmem::find(&self.buf[start..], b"\r\n\r\n").map(|i| start + i + 2)
        };
        let Some(end) = end else {
            if self.buf.len() > self.limits.headers {
                return Err(MultipartError::HeadersTooLarge(self.limits.headers));
            }
            self.scanned = self.buf.len();
            return Ok(None);
        };
        if end + 2 > self.limits.headers {
            return Err(MultipartError::HeadersTooLarge(self.limits.headers));
        }
        let block = self.buf.split_to(end + 2);
        let headers = parse_headers(&block[..end])?;
        self.state = State::Body;
        self.scanned = 0;
        Ok(Some(Event::Part(headers)))
    }

    fn body(&mut self) -> Option<Event> {
        let start = self.scanned.saturating_sub(self.delimiter.len() - 1);
        if let Some(i) = self.finder.find(&self.buf[start..]) {
            let at = start + i;
            let data = self.buf.split_to(at).freeze();
            self.buf.advance(self.delimiter.len());
            self.state = State::AfterBoundary;
            self.scanned = 0;
            if data.is_empty() {
                return Some(Event::PartEnd);
            }
            self.pending_part_end = true;
            return Some(Event::Data(data));
        }
        // Everything but a possible delimiter prefix at the end is data.
        let safe = self.buf.len().saturating_sub(self.delimiter.len() - 1);
        let data = self.buf.split_to(safe).freeze();
        self.scanned = self.buf.len();
        (!data.is_empty()).then_some(Event::Data(data))
    }
}

/// Parses a header block (CRLF-separated lines, no final blank line).
fn parse_headers(block: &[u8]) -> Result<PartHeaders, MultipartError> {
    let text = std::str::from_utf8(block)
        .map_err(|_| MultipartError::Header("headers are not UTF-8".into()))?;
    let mut disposition = None;
    let mut content_type = None;
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| MultipartError::Header(format!("{:?}", truncate(line))))?;
        let value = value.trim();
        let dup = |what: &str| MultipartError::Header(format!("{what} appears twice"));
        if name.eq_ignore_ascii_case("content-disposition") {
            if disposition.replace(value).is_some() {
                return Err(dup("Content-Disposition"));
            }
        } else if name.eq_ignore_ascii_case("content-type")
            && content_type.replace(value.to_owned()).is_some()
        {
            return Err(dup("Content-Type"));
        }
    }
    let disposition = disposition.ok_or(MultipartError::NoName)?;
    let (kind, params) = disposition.split_once(';').unwrap_or((disposition, ""));
    if !kind.trim().eq_ignore_ascii_case("form-data") {
        return Err(MultipartError::NoName);
    }
    let params = parse_params(params)?;
    let get = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.clone())
    };
    Ok(PartHeaders {
        name: get("name").ok_or(MultipartError::NoName)?,
        filename: get("filename"),
        content_type,
    })
}

/// `; key=value; key="quoted \" value"` pairs.
fn parse_params(mut s: &str) -> Result<Vec<(String, String)>, MultipartError> {
    let bad =
        |s: &str| MultipartError::Header(format!("bad Content-Disposition near {:?}", truncate(s)));
    let mut out = Vec::new();
    loop {
        s = s.trim_start_matches([' ', '\t', ';']);
        if s.is_empty() {
            return Ok(out);
        }
        let eq = s.find('=').ok_or_else(|| bad(s))?;
        let key = s[..eq].trim().to_owned();
        s = s[eq + 1..].trim_start();
        let value;
        if let Some(rest) = s.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = rest.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, e)) => v.push(e),
                        None => return Err(bad(s)),
                    },
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => v.push(c),
                }
            }
            let end = end.ok_or_else(|| bad(s))?;
            value = v;
            s = &rest[end..];
        } else {
            let end = s.find(';').unwrap_or(s.len());
            value = s[..end].trim().to_owned();
            s = &s[end..];
        }
        if out
            .iter()
            .any(|(k, _): &(String, String)| k.eq_ignore_ascii_case(&key))
        {
            return Err(MultipartError::Header(format!(
                "parameter {key:?} appears twice"
            )));
        }
        out.push((key, value));
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` in chunks of `step` bytes; returns (name, data) per part.
    fn run(body: &[u8], step: usize) -> Result<Vec<(String, Vec<u8>)>, MultipartError> {
        let mut p = MultipartParser::new("b0undary", Limits::default())?;
        let mut parts: Vec<(String, Vec<u8>)> = Vec::new();
        for chunk in body.chunks(step.max(1)) {
            p.push(chunk);
            while let Some(ev) = p.next_event()? {
                match ev {
                    Event::Part(h) => parts.push((h.name, Vec::new())),
                    Event::Data(d) => {
                        assert!(!d.is_empty());
                        parts
                            .last_mut()
                            .expect("data inside a part")
                            .1
                            .extend_from_slice(&d)
                    }
                    Event::PartEnd | Event::End => {}
                }
            }
        }
        p.finish()?;
        Ok(parts)
    }

    fn form(parts: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = Vec::new();
        for (name, data) in parts {
            b.extend_from_slice(b"--b0undary\r\n");
            b.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"f\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
            );
            b.extend_from_slice(data);
            b.extend_from_slice(b"\r\n");
        }
        b.extend_from_slice(b"--b0undary--\r\n");
        b
    }

    #[test]
    fn any_chunking_gives_the_same_parts() {
        let tricky: Vec<u8> = b"\r\n--b0undar\r\n-b0undary\r\r\n-\n--b0undary".repeat(50);
        let body = form(&[("content", b"{\"a\":1}"), ("file", &tricky), ("empty", b"")]);
        for step in [1, 2, 3, 7, 13, 64, 4096] {
            let parts = run(&body, step).unwrap();
            assert_eq!(parts.len(), 3, "step {step}");
            assert_eq!(parts[0], ("content".into(), b"{\"a\":1}".to_vec()));
            assert_eq!(parts[1].1, tricky, "step {step}");
            assert_eq!(parts[2].1, b"");
        }
    }

    #[test]
    fn preamble_and_quoting() {
        let mut body = b"ignored preamble\r\n".to_vec();
        body.extend_from_slice(
            b"--b0undary  \r\ncontent-disposition: form-data; name=\"a\\\"b\"; filename=x.bin\r\n\r\nhi\r\n--b0undary--",
        );
        let parts = run(&body, 5).unwrap();
        assert_eq!(parts, vec![("a\"b".to_owned(), b"hi".to_vec())]);
    }

    #[test]
    fn limits() {
        let endless = [b"--b0undary\r\nX-Long: ".as_slice(), &[b'a'; 9000]].concat();
        assert_eq!(
            run(&endless, 100),
            Err(MultipartError::HeadersTooLarge(8192))
        );
        let preamble = vec![b'x'; 10_000];
        assert_eq!(run(&preamble, 100), Err(MultipartError::Preamble(4096)));
        let many: Vec<(&str, &[u8])> = vec![("a", b"1"); 9];
        assert_eq!(run(&form(&many), 50), Err(MultipartError::TooManyParts(8)));
        let truncated = form(&[("file", b"abc")]);
        assert_eq!(
            run(&truncated[..truncated.len() - 6], 4),
            Err(MultipartError::Truncated)
        );
        assert_eq!(
            run(
                b"--b0undary\r\nContent-Type: x\r\n\r\nabc\r\n--b0undary--",
                4
            ),
            Err(MultipartError::NoName)
        );
        assert_eq!(run(b"--b0undaryZZ", 4), Err(MultipartError::BoundaryLine));
        for twice in [
            "Content-Disposition: form-data; name=\"a\"\r\nContent-Disposition: form-data; name=\"b\"",
            "Content-Disposition: form-data; name=\"a\"; name=\"b\"",
        ] {
            let body = format!("--b0undary\r\n{twice}\r\n\r\nx\r\n--b0undary--");
            assert!(matches!(run(body.as_bytes(), 7), Err(MultipartError::Header(_))), "{twice}");
        }
        assert!(MultipartParser::new("", Limits::default()).is_err());
        assert!(MultipartParser::new(&"a".repeat(71), Limits::default()).is_err());
    }

    #[test]
    fn memory_stays_bounded_on_a_large_part() {
        let mut p = MultipartParser::new("b0undary", Limits::default()).unwrap();
        p.push(b"--b0undary\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n");
        assert!(matches!(p.next_event(), Ok(Some(Event::Part(_)))));
        let chunk = vec![7u8; 64 * 1024];
        let mut total = 0;
        for _ in 0..100 {
            p.push(&chunk);
            while let Some(Event::Data(d)) = p.next_event().unwrap() {
                total += d.len();
            }
            assert!(p.buf.len() < 64, "held back {} bytes", p.buf.len());
        }
        assert!(total > 100 * 64 * 1024 - 64);
    }
}
