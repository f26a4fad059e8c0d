//! x86-64 references: rel32 branch displacements and RIP-relative memory
//! displacements in code, found by decoding the executable ranges front to
//! back (a linear sweep with iced-x86).

use super::addrmap::AddrMap;
use super::elf::Range;
use iced_x86::{Decoder, DecoderOptions, Instruction, OpKind};
use rayon::prelude::*;

/// Code is decoded in pieces of this many bytes, in parallel. The pieces
/// are fixed by the range, not by the thread count, so the diff and the
/// device cut the same pieces and rewrite the same bytes.
pub const PIECE: usize = 1 << 20;

/// Rewrites every rel32 reference in `code` (a range of `image`) so that
/// it holds the displacement it would have once both its own instruction
/// and its target moved as `map` says. Returns how many fields changed.
pub fn adjust_code(image: &mut [u8], code: &Range, map: &AddrMap) -> u64 {
    let (Ok(start), Ok(len)) = (usize::try_from(code.offset), usize::try_from(code.size)) else {
        return 0;
    };
    let Some(bytes) = start.checked_add(len).and_then(|end| image.get(start..end)) else {
        return 0;
    };
    let fields: Vec<Vec<(usize, i32)>> = bytes
        .par_chunks(PIECE)
        .enumerate()
        .map(|(i, piece)| {
            let at = i * PIECE;
            piece_fields(piece, code.vaddr.wrapping_add(at as u64), map)
                .into_iter()
                .map(|(f, v)| (start + at + f, v))
                .collect()
        })
        .collect();
    let mut n = 0;
    for (f, v) in fields.into_iter().flatten() {
        image[f..f + 4].copy_from_slice(&v.to_le_bytes());
        n += 1;
    }
    n
}

/// The rel32 fields of one piece of code mapped at `vaddr` that `map`
/// changes: (offset in the piece, new value). An instruction cut by the
/// piece's end decodes as invalid and is left alone.
fn piece_fields(bytes: &[u8], vaddr: u64, map: &AddrMap) -> Vec<(usize, i32)> {
    let mut fields = Vec::new();
    let mut decoder = Decoder::with_ip(64, bytes, vaddr, DecoderOptions::NONE);
    let mut instr = Instruction::default();
    while decoder.can_decode() {
        let at = decoder.position();
        decoder.decode_out(&mut instr);
        if instr.is_invalid() {
            continue;
        }
        // Most instructions hold no reference: ask for field offsets only
        // when this one does.
        let branch = matches!(instr.op0_kind(), OpKind::NearBranch64);
        if !branch && !instr.is_ip_rel_memory_operand() {
            continue;
        }
        let next_ip = instr.next_ip();
        let offsets = decoder.get_constant_offsets(&instr);
        let field = if branch && offsets.immediate_size() == 4 {
            at + offsets.immediate_offset()
        } else if !branch && offsets.displacement_size() == 4 {
            at + offsets.displacement_offset()
        } else {
            continue;
        };
        let Some(raw) = bytes.get(field..field + 4) else {
            continue;
        };
        let rel = i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
        let target = next_ip.wrapping_add(rel as i64 as u64);
        let change = map.shift(target).wrapping_sub(map.shift(next_ip));
        if change != 0 {
            fields.push((field, rel.wrapping_add(change as i32)));
        }
    }
    fields
}
