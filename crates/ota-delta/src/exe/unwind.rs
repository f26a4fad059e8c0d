//! Unwind tables (`.eh_frame_hdr` and `.eh_frame`): their PC-relative and
//! table-relative 32-bit addresses move with the code they describe.
//!
//! Only the encodings compilers emit for x86-64 and AArch64 are rewritten
//! (`DW_EH_PE_pcrel|sdata4` pointers, a `datarel|sdata4` search table);
//! anything else is left as it is.

use super::addrmap::AddrMap;
use super::elf::Layout;

const PCREL_SDATA4: u8 = 0x1b;
const UDATA4: u8 = 0x03;
const DATAREL_SDATA4: u8 = 0x3b;
/// Records walked at most (a hostile chain cannot loop for long).
const MAX_RECORDS: usize = 1 << 22;
/// CIEs remembered at most.
const MAX_CIES: usize = 1 << 12;

fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Rewrites the 32-bit value at file offset `at`, relative to address
/// `base`, so that it reaches where its target moved. Returns 1 if changed.
fn adjust(image: &mut [u8], at: usize, base: u64, map: &AddrMap) -> Option<u64> {
    let v = i32_at(image, at)?;
    let target = base.wrapping_add(v as i64 as u64);
    let change = map.shift(target).wrapping_sub(map.shift(base));
    if change == 0 {
        return Some(0);
    }
    image[at..at + 4].copy_from_slice(&v.wrapping_add(change as i32).to_le_bytes());
    Some(1)
}

fn uleb(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Rewrites the search table and every FDE's start and LSDA pointer.
/// Returns how many fields changed.
pub fn adjust_unwind(image: &mut [u8], layout: &Layout, map: &AddrMap) -> u64 {
    let Some(hdr) = layout.eh_frame_hdr else {
        return 0;
    };
    let h = hdr.offset as usize;
    let Some(&[version, ptr_enc, count_enc, table_enc]) = image.get(h..h + 4) else {
        return 0;
    };
    if version != 1 || ptr_enc != PCREL_SDATA4 {
        return 0;
    }
    let mut n = 0;
    let frame =
        i32_at(image, h + 4).map(|v| hdr.vaddr.wrapping_add(4).wrapping_add(v as i64 as u64));
    if count_enc == UDATA4 && table_enc == DATAREL_SDATA4 {
        let count = i32_at(image, h + 8).map_or(0, |c| c as u32 as u64);
        let entries = count.min(hdr.size.saturating_sub(12) / 8) as usize;
        for i in 0..entries {
            for half in [0, 4] {
                n += adjust(image, h + 12 + i * 8 + half, hdr.vaddr, map).unwrap_or(0);
            }
        }
    }
    if let Some(start) = frame.and_then(|v| layout.offset_of(v).map(|o| (o, v))) {
        n += adjust_frames(image, start, map).unwrap_or(0);
    }
    n
}

/// FDE pointer encodings per CIE (by file offset): (pc_begin, lsda).
type CieInfo = std::collections::HashMap<usize, (u8, Option<u8>)>;

fn cie_encodings(image: &[u8], p: usize) -> Option<(u8, Option<u8>)> {
    let version = *image.get(p + 8)?;
    let aug_start = p + 9;
    let aug_len = image.get(aug_start..)?.iter().position(|&c| c == 0)?;
    let aug = image.get(aug_start..aug_start + aug_len)?.to_vec();
    let mut at = aug_start + aug_len + 1;
    uleb(image, &mut at)?; // code alignment
    uleb(image, &mut at)?; // data alignment (sleb: same length)
    if version == 1 {
        at += 1;
    } else {
        uleb(image, &mut at)?;
    }
    let (mut fde_enc, mut lsda_enc) = (0u8, None);
    if aug.first() != Some(&b'z') {
        return Some((0, None));
    }
    uleb(image, &mut at)?;
    for c in &aug[1..] {
        match c {
            b'R' => {
                fde_enc = *image.get(at)?;
                at += 1;
            }
            b'L' => {
                lsda_enc = Some(*image.get(at)?);
                at += 1;
            }
            b'P' => {
                let enc = *image.get(at)?;
                // Only fixed 4- or 8-byte personality pointers can be skipped.
                at += 1 + match enc & 0x0f {
                    0x03 | 0x0b => 4,
                    0x04 | 0x0c | 0x00 => 8,
                    _ => return Some((0, None)),
                };
            }
            b'S' | b'B' | b'G' => {}
            _ => return Some((0, None)),
        }
    }
    Some((fde_enc, lsda_enc))
}

fn adjust_frames(image: &mut [u8], (start, vaddr): (u64, u64), map: &AddrMap) -> Option<u64> {
    let (start, base_delta) = (start as usize, vaddr.wrapping_sub(start));
    let va = |off: usize| (off as u64).wrapping_add(base_delta);
    let mut cies = CieInfo::new();
    let (mut p, mut n) = (start, 0u64);
    for _ in 0..MAX_RECORDS {
        let len = i32_at(image, p)? as u32 as usize;
        if len == 0 || len == 0xffff_ffff {
            break;
        }
        let end = p.checked_add(len.checked_add(4)?)?;
        if end > image.len() {
            break;
        }
        let id = i32_at(image, p + 4)? as u32 as usize;
        if id == 0 {
            // Real files have a handful of CIEs; a hostile one cannot make
            // the table grow without bound.
            if cies.len() < MAX_CIES {
                let enc = cie_encodings(image, p).unwrap_or((0, None));
                cies.insert(p, enc);
            }
        } else if let Some(&(fde_enc, lsda_enc)) =
            (p + 4).checked_sub(id).and_then(|c| cies.get(&c))
        {
            if fde_enc == PCREL_SDATA4 {
                n += adjust(image, p + 8, va(p + 8), map)?;
                if lsda_enc == Some(PCREL_SDATA4) {
                    let mut at = p + 16;
                    let aug_len = uleb(image, &mut at)?;
                    if aug_len >= 4 && at + 4 <= end {
                        n += adjust(image, at, va(at), map)?;
                    }
                }
            }
        }
        p = end;
    }
    Some(n)
}
