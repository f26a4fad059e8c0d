//! Executable-aware diffing: before the byte-level diff, OLD's code and
//! pointers are rewritten as they would read had every address moved the
//! way NEW's layout says, so that a small source change no longer changes
//! every branch displacement after it.
//!
//! The rewrite is a pure function of OLD and a compact [`AddrMap`] that the
//! patch carries, so the device computes the same rewritten OLD and applies
//! an ordinary patch to it; nothing has to be undone and NEW is verified by
//! its hash as always.

pub mod addrmap;
pub mod elf;
pub mod unwind;
pub mod x86;

pub use addrmap::AddrMap;
pub use elf::Layout;

use crate::error::{DeltaError, Result};
use crate::format::{self, Codec, Header, Transform};
use crate::matcher::{self, Op, SuffixArray};
use std::io::Write;

/// Counts of what a rewrite changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rewritten {
    /// rel32 fields in code.
    pub code: u64,
    /// 64-bit pointers in data.
    pub pointers: u64,
    /// Addresses in unwind tables.
    pub unwind: u64,
}

/// Rewrites 64-bit values in OLD's loaded, non-code bytes that point into
/// the image (8-byte aligned by address).
pub fn adjust_pointers(image: &mut [u8], layout: &Layout, map: &AddrMap) -> u64 {
    let (lo, hi) = layout.vaddr_span();
    let lo = lo.max(0x1000);
    let mut n = 0;
    for s in &layout.segments {
        let end = s.offset + s.size;
        let mut off = s.offset + (s.vaddr.wrapping_neg() & 7);
        // Code ranges are sorted and disjoint: walk them alongside.
        let start = off;
        let mut code = layout
            .code
            .iter()
            .skip_while(|c| c.offset + c.size <= start)
            .peekable();
        while off + 8 <= end {
            if let Some(c) = code.peek() {
                if off >= c.offset + c.size {
                    code.next();
                    continue;
                }
                if off >= c.offset {
                    // Skip the code range, keeping 8-byte alignment.
                    off += (c.offset + c.size - off).div_ceil(8) * 8;
                    continue;
                }
            }
            let at = off as usize;
            let mut word = [0u8; 8];
            word.copy_from_slice(&image[at..at + 8]);
            let v = u64::from_le_bytes(word);
            if v >= lo && v < hi {
                let shift = map.shift(v);
                if shift != 0 {
                    image[at..at + 8].copy_from_slice(&v.wrapping_add(shift as u64).to_le_bytes());
                    n += 1;
                }
            }
            off += 8;
        }
    }
    n
}

/// OLD rewritten by `map`: code references, unwind tables and pointers.
/// A pure function of its inputs: the device computes the same bytes.
pub fn rewrite(old: &[u8], layout: &Layout, map: &AddrMap) -> (Vec<u8>, Rewritten) {
    let mut image = old.to_vec();
    let mut r = Rewritten::default();
    if layout.machine == elf::EM_X86_64 {
        for c in &layout.code {
            r.code += x86::adjust_code(&mut image, c, map);
        }
    }
    r.unwind = unwind::adjust_unwind(&mut image, layout, map);
    r.pointers = adjust_pointers(&mut image, layout, map);
    (image, r)
}

/// The layout of OLD when the pair is worth a transform: both x86-64 ELF.
pub fn layouts(old: &[u8], new: &[u8]) -> Option<(Layout, Layout)> {
    let (o, n) = (Layout::parse(old)?, Layout::parse(new)?);
    (o.machine == elf::EM_X86_64 && n.machine == elf::EM_X86_64).then_some((o, n))
}

/// A transformed pair ready to encode.
pub struct Prepared {
    /// The address map the patch carries.
    pub map: AddrMap,
    /// OLD rewritten by `map`.
    pub old: Vec<u8>,
    /// The ops turning the rewritten OLD into NEW.
    pub ops: Vec<Op>,
    /// [`weight`] of `ops`.
    pub weight: u64,
}

/// Bytes the compressor has to carry for `ops` turning `old` into `new`:
/// non-zero differences and literals, a cheap stand-in for the size of
/// the compressed patch.
pub fn weight(old: &[u8], new: &[u8], ops: &[Op]) -> u64 {
    let (mut at, mut w) = (0usize, 0u64);
    for o in ops {
        let (p, d) = (o.old_pos as usize, o.diff_len as usize);
        let (n, s) = (&new[at..at + d], &old[p..p + d]);
        w += n.iter().zip(s).filter(|(a, b)| a != b).count() as u64 + o.extra_len;
        at += d + o.extra_len as usize;
    }
    w
}

/// Runs `rounds` (≥ 1) rounds of map → rewrite → diff, each map built
/// from the previous round's matches (the first from `first_ops`, a diff
/// of the plain pair), and keeps the round with the lightest [`weight`]:
/// rewritten code matches longer, so a later map is often finer, but not
/// always. `None` when the files are not both x86-64 ELF.
pub fn prepare(
    old: &[u8],
    new: &[u8],
    first_ops: &[Op],
    rounds: u32,
    threads: usize,
    chunk: usize,
) -> Result<Option<Prepared>> {
    let Some((lo, ln)) = layouts(old, new) else {
        return Ok(None);
    };
    let mut map = AddrMap::from_ops(&lo, &ln, first_ops, addrmap::MIN_MATCH);
    let mut best: Option<Prepared> = None;
    for round in 1..=rounds.max(1) {
        let (image, _) = rewrite(old, &lo, &map);
        let sa = SuffixArray::build(&image, threads).map_err(|e| {
            DeltaError::corrupt(format!("suffix array of the rewritten old file: {e}"))
        })?;
        let ops = matcher::diff_ops_with(&sa, &image, new, chunk, matcher::Stepping::Skip);
        drop(sa);
        let next = (round < rounds).then(|| AddrMap::from_ops(&lo, &ln, &ops, addrmap::MIN_MATCH));
        let weight = weight(&image, new, &ops);
        if best.as_ref().is_none_or(|b| weight < b.weight) {
            best = Some(Prepared {
                map,
                old: image,
                ops,
                weight,
            });
        }
        match next {
            Some(m) => map = m,
            None => break,
        }
    }
    Ok(best)
}

/// Writes whichever of the plain and the transformed patch is smaller.
/// When the stand-in weights differ by more than 10 % the lighter one is
/// written without encoding the other.
pub fn encode_smaller(
    header: &Header,
    old: &[u8],
    new: &[u8],
    ops: &[Op],
    p: &Prepared,
    codec: Codec,
    mut out: impl Write,
) -> Result<()> {
    let transformed = |out: &mut Vec<u8>| -> Result<()> {
        let h = Header {
            transform: Transform::ElfAddresses,
            ..header.clone()
        };
        out.extend_from_slice(&h.to_bytes());
        write_map(&p.map, codec.level, out)?;
        format::encode_body(&p.old, new, &p.ops, codec, out)
    };
    let (plain_w, exe_w) = (weight(old, new, ops), p.weight);
    let mut chosen = Vec::new();
    if exe_w * 10 < plain_w * 9 {
        transformed(&mut chosen)?;
    } else if plain_w * 10 < exe_w * 9 {
        format::encode(header, old, new, ops, codec, &mut chosen)?;
    } else {
        let mut plain = Vec::new();
        format::encode(header, old, new, ops, codec, &mut plain)?;
        transformed(&mut chosen)?;
        if plain.len() <= chosen.len() {
            chosen = plain;
        }
    }
    out.write_all(&chosen)
        .and_then(|()| out.flush())
        .map_err(|e| DeltaError::io("writing the patch", e))
}

/// Largest zstd window an address map may use (the encoder's levels stay
/// below it).
const MAP_WINDOW_LOG: u32 = 24;

/// Writes the map as the patch carries it: u32 length, zstd bytes.
pub fn write_map(map: &AddrMap, level: i32, out: &mut impl std::io::Write) -> Result<()> {
    let mut raw = Vec::new();
    map.encode(&mut raw);
    let z = zstd::bulk::compress(&raw, level.clamp(1, 19))
        .map_err(|e| DeltaError::io("compressing the address map", e))?;
    let len = u32::try_from(z.len())
        .ok()
        .filter(|&l| l <= format::MAP_MAX)
        .ok_or_else(|| DeltaError::TooLarge(format!("address map of {} bytes", z.len())))?;
    out.write_all(&len.to_le_bytes())
        .and_then(|()| out.write_all(&z))
        .map_err(|e| DeltaError::io("writing the address map", e))
}

/// Reads what [`write_map`] wrote.
pub fn read_map(r: &mut impl std::io::Read) -> Result<AddrMap> {
    use std::io::Read;
    let mut len = [0u8; 4];
    r.read_exact(&mut len)
        .map_err(|e| DeltaError::corrupt(format!("truncated address map ({e})")))?;
    let len = u32::from_le_bytes(len);
    if len > format::MAP_MAX {
        return Err(DeltaError::corrupt(format!("address map of {len} bytes")));
    }
    let mut z = vec![0u8; len as usize];
    r.read_exact(&mut z)
        .map_err(|e| DeltaError::corrupt(format!("truncated address map ({e})")))?;
    // Each breakpoint takes at most 20 bytes raw; read no more than that,
    // and allocate only what the map really holds.
    let limit = (addrmap::MAX_BREAKPOINTS + 1) * 20;
    let mut raw = Vec::new();
    let mut decoder = zstd::stream::read::Decoder::new(&z[..])
        .map_err(|e| DeltaError::io("starting the address map decoder", e))?;
    // A tiny frame may not ask for a huge window.
    decoder
        .window_log_max(MAP_WINDOW_LOG)
        .map_err(|e| DeltaError::io("limiting the address map decoder", e))?;
    decoder
        .take(limit + 1)
        .read_to_end(&mut raw)
        .map_err(|e| DeltaError::corrupt(format!("damaged address map ({e})")))?;
    if raw.len() as u64 > limit {
        return Err(DeltaError::corrupt("address map larger than any real one"));
    }
    let mut cur = &raw[..];
    let map = AddrMap::decode(&mut cur)?;
    if !cur.is_empty() {
        return Err(DeltaError::corrupt("data after the address map"));
    }
    Ok(map)
}

/// OLD as a patch with `transform` expects it: rewritten by `map` for
/// [`Transform::ElfAddresses`], borrowed as it is otherwise.
pub fn source<'a>(
    old: &'a [u8],
    transform: Transform,
    map: Option<&AddrMap>,
) -> Result<std::borrow::Cow<'a, [u8]>> {
    match (transform, map) {
        (Transform::None, _) => Ok(std::borrow::Cow::Borrowed(old)),
        (Transform::ElfAddresses, Some(map)) => {
            let layout = Layout::parse(old).ok_or_else(|| {
                DeltaError::corrupt("the patch rewrites an ELF file, and the old file is not one")
            })?;
            Ok(std::borrow::Cow::Owned(rewrite(old, &layout, map).0))
        }
        (Transform::ElfAddresses, None) => Err(DeltaError::corrupt("internal: no address map")),
    }
}

/// The synthetic programs the integration tests use, for the unit tests.
#[cfg(test)]
#[path = "../../tests/common/elf.rs"]
mod synth;

#[cfg(test)]
mod tests {
    use super::synth;
    use super::*;
    use crate::varint;
    use proptest::prelude::*;

    proptest! {
        /// The rewrite is total and a pure function of OLD and the map:
        /// whatever the bytes, it returns, keeps the length and does the
        /// same twice (the device must compute what the differ did).
        #[test]
        fn rewrite_is_total_and_deterministic(
            body in prop::collection::vec(any::<u8>(), 0..3000),
            segments in prop::collection::vec((any::<u16>(), any::<u16>(), 0u32..0x4000, any::<u8>()), 1..4),
            points in prop::collection::vec((0u64..0x5000, -300i64..300), 0..20),
        ) {
            let old = synth::over(&body, &segments);
            let layout = Layout::parse(&old).expect("an ELF with segments");
            let mut raw = Vec::new();
            varint::put(&mut raw, points.len() as u64);
            for (gap, d) in &points {
                varint::put(&mut raw, gap + 1);
                varint::put_signed(&mut raw, *d);
            }
            let map = AddrMap::decode(&mut &raw[..]).expect("map");
            let (a, _) = rewrite(&old, &layout, &map);
            let (b, _) = rewrite(&old, &layout, &map);
            prop_assert_eq!(a.len(), old.len());
            prop_assert_eq!(a, b);
        }

        #[test]
        fn parsing_any_bytes_never_panics(body in prop::collection::vec(any::<u8>(), 0..600)) {
            let mut b = b"\x7fELF\x02\x01".to_vec();
            b.extend_from_slice(&body);
            if let Some(layout) = Layout::parse(&b) {
                let _ = rewrite(&b, &layout, &AddrMap::default());
            }
        }

        #[test]
        fn reading_any_map_bytes_never_panics(raw in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = read_map(&mut &raw[..]);
        }
    }

    #[test]
    fn the_map_a_patch_carries_reads_back() {
        let mut raw = Vec::new();
        varint::put(&mut raw, 2);
        for v in [0x40_1000u64, 16, 0x800, 0] {
            varint::put(&mut raw, v);
        }
        let map = AddrMap::decode(&mut &raw[..]).expect("map");
        let mut out = Vec::new();
        write_map(&map, 3, &mut out).expect("write");
        assert_eq!(read_map(&mut &out[..]).expect("read"), map);
        // A length past the limit is refused before reading.
        let mut big = (format::MAP_MAX + 1).to_le_bytes().to_vec();
        big.extend_from_slice(&out[4..]);
        assert!(read_map(&mut &big[..]).is_err());
    }

    #[test]
    fn a_transformed_patch_needs_an_elf_old() {
        let err = source(
            b"not an elf",
            Transform::ElfAddresses,
            Some(&AddrMap::default()),
        )
        .expect_err("not an ELF");
        assert!(err.to_string().contains("not one"), "{err}");
    }
}
