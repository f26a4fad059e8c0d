//! OTADIFF1 decoding, structure-aware. The fuzz input chooses one of:
//!
//! - `Built`: groups of ops (lengths, seeks, non-zero differences, literal
//!   bytes) encoded field by field as the format says and zstd-compressed,
//!   with a valid header; a reference model computes what the decoder must
//!   produce, so a well-formed patch must apply to exactly that, and a
//!   malformed one (an op outside OLD, a lying count) must be refused;
//! - `Mutated`: a real patch from the encoder for (OLD, NEW), its
//!   decompressed body edited and recompressed: refused, or exactly NEW;
//! - `Raw`: arbitrary bytes after a valid header, and as a whole patch;
//! - a first byte of 0: the rest is a whole patch for [`seed_old`], as the
//!   seed corpus holds them (real patches from the encoder, see
//!   `fuzz/README.md`), mutated by libFuzzer as they are.
//!
//! Never a panic, never an unbounded allocation, never an unverified result.
#![no_main]
use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use ota_delta::format::Header;
use ota_delta::{DiffOptions, Format};
use sha2::{Digest, Sha256};

#[derive(Arbitrary, Debug)]
struct Op {
    diff_len: u8,
    extra_len: u8,
    seek: i16,
}

#[derive(Arbitrary, Debug)]
struct Group {
    ops: Vec<Op>,
    /// (gap, value) of non-zero differences, in the group's diff space.
    nonzero: Vec<(u8, u8)>,
    /// Literal bytes (cycled to the length the ops need).
    extra: Vec<u8>,
    /// Replace one of the four counts (n_ops, diff_total, extra_total,
    /// n_nonzero) with a lie.
    lie: Option<(u8, u32)>,
}

#[derive(Arbitrary, Debug)]
enum Input {
    Built {
        old: Vec<u8>,
        groups: Vec<Group>,
        end_marker: bool,
        size_lie: Option<u32>,
    },
    Mutated {
        old: Vec<u8>,
        new: Vec<u8>,
        edits: Vec<(u16, u8)>,
        cut: Option<u16>,
    },
    Raw {
        old: Vec<u8>,
        new_size: u16,
        body: Vec<u8>,
    },
}

fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_signed(out: &mut Vec<u8>, v: i64) {
    put(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn sha(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// Encodes `groups` and runs the reference model; returns the raw body and
/// the expected output (None when the body is not a valid patch).
fn build(old: &[u8], groups: &[Group], end_marker: bool) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut raw = Vec::new();
    let mut model = Some(Vec::new());
    let mut cursor: i64 = 0;
    for g in groups {
        if g.ops.is_empty() {
            continue; // n_ops = 0 is the end marker
        }
        let diff_total: u64 = g.ops.iter().map(|o| u64::from(o.diff_len)).sum();
        let extra_total: u64 = g.ops.iter().map(|o| u64::from(o.extra_len)).sum();
        // Non-zero positions must lie inside the diff space.
        let mut nz = Vec::new();
        let mut at = 0u64;
        for &(gap, val) in &g.nonzero {
            let p = at + u64::from(gap);
            if p >= diff_total || val == 0 {
                break;
            }
            nz.push((gap, val, p));
            at = p + 1;
        }
        let mut counts = [g.ops.len() as u64, diff_total, extra_total, nz.len() as u64];
        if let Some((field, v)) = g.lie {
            let i = usize::from(field % 4);
            if counts[i] != u64::from(v) {
                counts[i] = u64::from(v);
                model = None;
            }
        }
        for c in counts {
            put(&mut raw, c);
        }
        for o in &g.ops {
            put(&mut raw, u64::from(o.diff_len));
        }
        for o in &g.ops {
            put(&mut raw, u64::from(o.extra_len));
        }
        for o in &g.ops {
            put_signed(&mut raw, i64::from(o.seek));
        }
        for &(gap, _, _) in &nz {
            put(&mut raw, u64::from(gap));
        }
        raw.extend(nz.iter().map(|n| n.1));
        let lit: Vec<u8> = if g.extra.is_empty() {
            vec![0; extra_total as usize]
        } else {
            g.extra
                .iter()
                .copied()
                .cycle()
                .take(extra_total as usize)
                .collect()
        };
        // The model: copy OLD under each diff region, add differences,
        // then the op's literal bytes.
        if let Some(out) = model.as_mut() {
            let mut group = Vec::new();
            let mut diff_space = Vec::new();
            let (mut lit_at, mut ok) = (0usize, true);
            for o in &g.ops {
                let d = usize::from(o.diff_len);
                if d > 0 {
                    let p = cursor + i64::from(o.seek);
                    if p < 0 || p as usize + d > old.len() {
                        ok = false;
                        break;
                    }
                    let start = group.len();
                    group.extend_from_slice(&old[p as usize..p as usize + d]);
                    diff_space.extend(start..start + d);
                    cursor = p + d as i64;
                }
                let e = usize::from(o.extra_len);
                group.extend_from_slice(&lit[lit_at..lit_at + e]);
                lit_at += e;
            }
            if ok {
                for &(_, val, p) in &nz {
                    let i = diff_space[p as usize];
                    group[i] = group[i].wrapping_add(val);
                }
                out.extend_from_slice(&group);
            } else {
                model = None;
            }
        }
        raw.extend_from_slice(&lit);
    }
    if end_marker {
        raw.extend_from_slice(&[0, 0, 0, 0]);
    } else {
        model = None;
    }
    (raw, model)
}

fn apply(old: &[u8], header: &Header, raw_body: &[u8]) -> Result<Vec<u8>, ota_delta::DeltaError> {
    let mut patch = header.to_bytes().to_vec();
    patch.extend(zstd::encode_all(raw_body, 1).expect("zstd"));
    let mut out = Vec::new();
    ota_delta::patch_bytes(old, &patch[..], &mut out).map(|_| out)
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
        let old = seed_old();
        let mut out = Vec::new();
        if ota_delta::patch_bytes(&old, rest, &mut out).is_ok() {
            let header = Header::parse(rest[..96].try_into().expect("header")).expect("header");
            assert_eq!(sha(&out), header.new_sha256, "unverified output");
        }
        return;
    }
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(rest)) else {
        return;
    };
    match input {
        Input::Built {
            old,
            groups,
            end_marker,
            size_lie,
        } => {
            let (raw, model) = build(&old, &groups, end_marker);
            let new_size = model.as_ref().map_or(0, |m| m.len() as u64);
            let header = Header {
                old_size: old.len() as u64,
                new_size: size_lie.map_or(new_size, u64::from),
                old_sha256: sha(&old),
                new_sha256: model.as_deref().map_or([0; 32], sha),
                transform: Default::default(),
            };
            let got = apply(&old, &header, &raw);
            match (&model, &got) {
                (Some(m), _) if size_lie.is_none_or(|s| u64::from(s) == new_size) => {
                    assert_eq!(
                        got.as_ref().ok(),
                        Some(m),
                        "a valid patch did not apply: {got:?}"
                    );
                }
                (_, Ok(out)) => assert_eq!(sha(out), header.new_sha256, "unverified output"),
                _ => {}
            }
        }
        Input::Mutated {
            old,
            new,
            edits,
            cut,
        } => {
            let opts = DiffOptions {
                format: Format::Otadiff,
                threads: 1,
                level: 1,
                window_log: 0,
                exe_rounds: 1,
            };
            let mut patch = Vec::new();
            ota_delta::diff_bytes(&old, &new, &opts, &mut patch).expect("diff");
            let mut out = Vec::new();
            ota_delta::patch_bytes(&old, &patch[..], &mut out).expect("own patch applies");
            assert_eq!(out, new, "round trip");
            let header = Header::parse(patch[..96].try_into().expect("header")).expect("header");
            let mut raw = zstd::decode_all(&patch[96..]).expect("own body decompresses");
            for (at, b) in &edits {
                if !raw.is_empty() {
                    let i = usize::from(*at) % raw.len();
                    raw[i] ^= b;
                }
            }
            if let Some(c) = cut {
                raw.truncate(usize::from(c));
            }
            if let Ok(out) = apply(&old, &header, &raw) {
                assert_eq!(out, new, "a damaged patch produced something else");
            }
        }
        Input::Raw {
            old,
            new_size,
            body,
        } => {
            let header = Header {
                old_size: old.len() as u64,
                new_size: u64::from(new_size),
                old_sha256: sha(&old),
                new_sha256: [0; 32],
                transform: Default::default(),
            };
            let mut patch = header.to_bytes().to_vec();
            patch.extend_from_slice(&body);
            let _ = ota_delta::patch_bytes(&old, &patch[..], &mut Vec::new());
            let _ = ota_delta::patch_bytes(&old, &body[..], &mut Vec::new());
        }
    }
});
