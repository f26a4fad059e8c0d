//! The upload server's multipart/form-data parser, fed in chunks the input
//! chooses: structured forms (parts with contents full of boundary
//! look-alikes) must parse to exactly their parts, whatever the chunking;
//! raw bytes must give an error or events, never a panic, and the parser
//! never holds more than its limits allow.
//!
//! The parser's source is included by path: it depends only on `bytes`,
//! `memchr` and `thiserror`, and building the whole server (database
//! drivers and all) under the sanitizers would only slow every run.
#![no_main]

#[path = "../../crates/ota-server/src/multipart.rs"]
#[allow(dead_code)]
mod multipart;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use multipart::{Event, Limits, MultipartParser};

#[derive(Arbitrary, Debug)]
struct Part {
    name: u8,
    pieces: Vec<Piece>,
}

/// Content built from pieces that resemble the framing.
#[derive(Arbitrary, Debug)]
enum Piece {
    Bytes(Vec<u8>),
    Crlf,
    Dashes,
    BoundaryPrefix(u8),
    CrlfDashBoundaryPrefix(u8),
}

const BOUNDARY: &str = "----otaFuzzBoundary7MA4YWxkTrZu0gW";

fn content(pieces: &[Piece]) -> Vec<u8> {
    let delimiter = format!("\r\n--{BOUNDARY}");
    let mut out = Vec::new();
    for p in pieces {
        match p {
            Piece::Bytes(b) => out.extend_from_slice(b),
            Piece::Crlf => out.extend_from_slice(b"\r\n"),
            Piece::Dashes => out.extend_from_slice(b"--"),
            // A strict prefix of `--boundary` never completes a delimiter.
            Piece::BoundaryPrefix(n) => {
                let b = format!("--{BOUNDARY}");
                out.extend_from_slice(&b.as_bytes()[..(*n as usize) % b.len()]);
            }
            Piece::CrlfDashBoundaryPrefix(n) => {
                out.extend_from_slice(&delimiter.as_bytes()[..(*n as usize) % delimiter.len()]);
            }
        }
    }
    // Content must not contain the delimiter itself (RFC 2046): a sender
    // picks a boundary that does not occur. Drop inputs where it does.
    out
}

fn run(
    parser: &mut MultipartParser,
    body: &[u8],
    chunks: &[u16],
) -> Option<Vec<(String, Vec<u8>)>> {
    let mut parts: Vec<(String, Vec<u8>)> = Vec::new();
    let mut rest = body;
    let mut k = 0;
    while !rest.is_empty() {
        let n = (chunks.get(k).copied().unwrap_or(4096) as usize % 5000)
            .max(1)
            .min(rest.len());
        k += 1;
        parser.push(&rest[..n]);
        rest = &rest[n..];
        loop {
            match parser.next_event() {
                Ok(Some(Event::Part(h))) => parts.push((h.name, Vec::new())),
                Ok(Some(Event::Data(d))) => {
                    assert!(!d.is_empty(), "empty data event");
                    parts
                        .last_mut()
                        .expect("data outside a part")
                        .1
                        .extend_from_slice(&d);
                }
                Ok(Some(Event::PartEnd)) | Ok(Some(Event::End)) => {}
                Ok(None) => break,
                Err(_) => return None,
            }
        }
    }
    parser.finish().ok().map(|()| parts)
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(structured) = u.arbitrary::<bool>() else {
        return;
    };
    let chunks: Vec<u16> = u.arbitrary().unwrap_or_default();
    let limits = Limits::default();
    let mut parser = MultipartParser::new(BOUNDARY, limits).expect("valid boundary");
    if !structured {
        let raw = u.take_rest();
        let _ = run(&mut parser, raw, &chunks);
        return;
    }
    let Ok(parts) = u.arbitrary::<Vec<Part>>() else {
        return;
    };
    let parts: Vec<(String, Vec<u8>)> = parts
        .iter()
        .take(limits.parts)
        .map(|p| (format!("field{}", p.name % 4), content(&p.pieces)))
        .collect();
    let delimiter = format!("\r\n--{BOUNDARY}");
    if parts.iter().any(|(_, c)| {
        let mut with_crlf = b"\r\n".to_vec();
        with_crlf.extend_from_slice(c);
        with_crlf
            .windows(delimiter.len())
            .any(|w| w == delimiter.as_bytes())
    }) {
        return;
    }
    let mut body = Vec::new();
    for (name, c) in &parts {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(c);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    let got = run(&mut parser, &body, &chunks).expect("a well-formed form parses");
    assert_eq!(got, parts, "parts differ from what was sent");
});
