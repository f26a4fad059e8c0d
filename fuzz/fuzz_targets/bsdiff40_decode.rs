//! BSDIFF40 decoding, structure-aware. The fuzz input chooses one of:
//!
//! - `Built`: control entries, diff and extra bytes from the input, each
//!   block bzip2-compressed and the header filled in; a reference model
//!   (bspatch's loop) says what a well-formed patch produces, and the
//!   decoder must produce exactly that, or refuse a malformed one;
//! - `Mutated`: a real patch from the encoder for (OLD, NEW), which must
//!   round-trip, then one of its blocks decompressed, edited and
//!   recompressed: refused, or some output of the declared size (the format
//!   has no checksum);
//! - `Raw`: arbitrary bytes after the magic;
//! - a first byte of 0: the rest is a whole patch for [`seed_old`], as the
//!   seed corpus holds them (real patches from the encoder), mutated by
//!   libFuzzer as they are.
//!
//! Never a panic, never an unbounded allocation.
#![no_main]
use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use ota_delta::{DiffOptions, Format};
use std::io::{Read, Write};

#[derive(Arbitrary, Debug)]
struct Ctrl {
    add: u8,
    copy: u8,
    seek: i16,
}

#[derive(Arbitrary, Debug)]
enum Input {
    Built {
        old: Vec<u8>,
        ctrl: Vec<Ctrl>,
        diff: Vec<u8>,
        extra: Vec<u8>,
        /// Replace the declared NEW size.
        size_lie: Option<u16>,
        /// Make one of the three lengths in the control block negative.
        negative: Option<u8>,
    },
    Mutated {
        old: Vec<u8>,
        new: Vec<u8>,
        block: u8,
        edits: Vec<(u16, u8)>,
        cut: Option<u16>,
    },
    Raw(Vec<u8>),
}

fn offt(x: i64) -> [u8; 8] {
    let mut b = x.unsigned_abs().to_le_bytes();
    if x < 0 {
        b[7] |= 0x80;
    }
    b
}

fn offtin(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    let neg = a[7] & 0x80 != 0;
    a[7] &= 0x7f;
    let v = i64::from_le_bytes(a);
    if neg {
        -v
    } else {
        v
    }
}

fn bz(data: &[u8]) -> Vec<u8> {
    let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    e.write_all(data).expect("bzip2");
    e.finish().expect("bzip2")
}

fn unbz(data: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    bzip2::read::BzDecoder::new(data)
        .read_to_end(&mut v)
        .expect("own block decompresses");
    v
}

fn assemble(c: &[u8], d: &[u8], e: &[u8], new_size: i64) -> Vec<u8> {
    let (c, d, e) = (bz(c), bz(d), bz(e));
    let mut p = b"BSDIFF40".to_vec();
    p.extend_from_slice(&offt(c.len() as i64));
    p.extend_from_slice(&offt(d.len() as i64));
    p.extend_from_slice(&offt(new_size));
    for b in [c, d, e] {
        p.extend_from_slice(&b);
    }
    p
}

/// bspatch's loop over the structured input: the expected NEW, or None
/// when the blocks do not add up. The decoder stops reading control entries
/// once NEW is complete and refuses leftovers, so a trailing entry that
/// adds nothing makes the patch invalid.
fn model(old: &[u8], ctrl: &[Ctrl], diff: &[u8], extra: &[u8]) -> Option<Vec<u8>> {
    if ctrl.last().is_some_and(|c| c.add == 0 && c.copy == 0) {
        return None;
    }
    let (mut out, mut oldpos, mut d, mut e) = (Vec::new(), 0i64, 0usize, 0usize);
    for c in ctrl {
        let (x, y) = (usize::from(c.add), usize::from(c.copy));
        let add = diff.get(d..d + x)?;
        for (i, b) in add.iter().enumerate() {
            let p = oldpos + i as i64;
            let o = if p >= 0 && (p as usize) < old.len() {
                old[p as usize]
            } else {
                0
            };
            out.push(b.wrapping_add(o));
        }
        d += x;
        oldpos += x as i64;
        out.extend_from_slice(extra.get(e..e + y)?);
        e += y;
        oldpos += i64::from(c.seek);
    }
    (d == diff.len() && e == extra.len()).then_some(out)
}

/// The OLD the seed patches were made for (`examples/fuzz_seeds.rs` in
/// ota-delta builds the same bytes).
fn seed_old() -> Vec<u8> {
    (0..2048u32)
        .map(|i| ((i.wrapping_mul(2654435761) >> 24) as u8) ^ (i as u8 & 0x0f))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode == 0 {
        let mut out = Vec::new();
        if let Ok(n) = ota_delta::bsdiff40::decode(&seed_old(), rest, &mut out) {
            assert_eq!(n, out.len() as u64);
        }
        return;
    }
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(rest)) else {
        return;
    };
    match input {
        Input::Built {
            old,
            ctrl,
            diff,
            extra,
            size_lie,
            negative,
        } => {
            let mut c = Vec::new();
            for (k, e) in ctrl.iter().enumerate() {
                let neg = negative.is_some_and(|n| usize::from(n) / 3 == k);
                let sign = |i: u8, v: i64| {
                    if neg && negative.is_some_and(|n| n % 3 == i) {
                        -v - 1
                    } else {
                        v
                    }
                };
                c.extend_from_slice(&offt(sign(0, i64::from(e.add))));
                c.extend_from_slice(&offt(sign(1, i64::from(e.copy))));
                c.extend_from_slice(&offt(sign(2, i64::from(e.seek))));
            }
            let want = model(&old, &ctrl, &diff, &extra);
            let true_size = ctrl
                .iter()
                .map(|e| i64::from(e.add) + i64::from(e.copy))
                .sum::<i64>();
            let size = size_lie.map_or(true_size, i64::from);
            let patch = assemble(&c, &diff, &extra, size);
            let mut out = Vec::new();
            let got = ota_delta::bsdiff40::decode(&old, &patch, &mut out);
            let negated = negative.is_some_and(|n| usize::from(n) / 3 < ctrl.len());
            if let (Some(w), None, false) = (&want, size_lie, negated) {
                assert!(got.is_ok(), "a valid patch was refused: {got:?}");
                assert_eq!(&out, w, "wrong output");
            }
            if let Ok(n) = got {
                assert_eq!(n, out.len() as u64);
                assert_eq!(n as i64, size, "output size differs from the header");
            }
        }
        Input::Mutated {
            old,
            new,
            block,
            edits,
            cut,
        } => {
            let opts = DiffOptions {
                format: Format::Bsdiff40,
                threads: 1,
                level: 1,
                window_log: 0,
                exe_rounds: 1,
            };
            let mut patch = Vec::new();
            ota_delta::diff_bytes(&old, &new, &opts, &mut patch).expect("diff");
            let mut out = Vec::new();
            ota_delta::bsdiff40::decode(&old, &patch, &mut out).expect("own patch applies");
            assert_eq!(out, new, "round trip");
            let (cl, dl) = (
                offtin(&patch[8..16]) as usize,
                offtin(&patch[16..24]) as usize,
            );
            let body = &patch[32..];
            let mut blocks = [
                unbz(&body[..cl]),
                unbz(&body[cl..cl + dl]),
                unbz(&body[cl + dl..]),
            ];
            let b = &mut blocks[usize::from(block % 3)];
            for (at, x) in &edits {
                if !b.is_empty() {
                    let i = usize::from(*at) % b.len();
                    b[i] ^= x;
                }
            }
            if let Some(c) = cut {
                b.truncate(usize::from(c));
            }
            let bad = assemble(&blocks[0], &blocks[1], &blocks[2], new.len() as i64);
            let mut out = Vec::new();
            if let Ok(n) = ota_delta::bsdiff40::decode(&old, &bad, &mut out) {
                assert_eq!(n, new.len() as u64);
                assert_eq!(out.len(), new.len());
            }
        }
        Input::Raw(data) => {
            let mut patch = b"BSDIFF40".to_vec();
            patch.extend_from_slice(&data);
            let _ = ota_delta::bsdiff40::decode(b"The quick brown fox", &patch, &mut Vec::new());
        }
    }
});
