//! Just enough of ELF to find where code and data are: the loaded
//! segments (file range ↔ virtual address) and the executable sections.
//!
//! Only 64-bit little-endian files are read. Anything else, or a header
//! that points outside the file, is "not an ELF we transform" (`None`),
//! never an error: the transform is an optimisation.

/// What the transform needs to know about one ELF file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// `e_machine` (62 = x86-64, 183 = AArch64).
    pub machine: u16,
    /// Loaded segments with file bytes, sorted by file offset.
    pub segments: Vec<Segment>,
    /// File ranges of executable code, sorted, non-overlapping.
    pub code: Vec<Range>,
    /// The unwind table index (`PT_GNU_EH_FRAME`), when present.
    pub eh_frame_hdr: Option<Range>,
}

/// A loaded segment's file bytes and where they are mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Offset in the file.
    pub offset: u64,
    /// Bytes present in the file.
    pub size: u64,
    /// Virtual address of `offset`.
    pub vaddr: u64,
    /// `p_flags` has PF_X.
    pub exec: bool,
}

/// A range of file offsets with the virtual address of its start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    /// Offset in the file.
    pub offset: u64,
    /// Length.
    pub size: u64,
    /// Virtual address of `offset`.
    pub vaddr: u64,
}

/// x86-64.
pub const EM_X86_64: u16 = 62;
/// AArch64.
pub const EM_AARCH64: u16 = 183;

const PT_LOAD: u32 = 1;
const PT_GNU_EH_FRAME: u32 = 0x6474_e550;
const PF_X: u32 = 1;
const SHF_EXECINSTR: u64 = 4;
const SHT_NOBITS: u32 = 8;
/// More headers than any real file has: a hostile count costs nothing.
const MAX_HEADERS: usize = 4096;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The table at `off` of `n` entries of `size` bytes, when it fits.
fn table(b: &[u8], off: u64, n: u16, size: u16, min: u16) -> Option<Vec<usize>> {
    let (n, size) = (usize::from(n), usize::from(size));
    if n > MAX_HEADERS || size < usize::from(min) {
        return None;
    }
    let off = usize::try_from(off).ok()?;
    let end = off.checked_add(n.checked_mul(size)?)?;
    (end <= b.len()).then(|| (0..n).map(|i| off + i * size).collect())
}

/// Drops every item (sorted by offset) that overlaps an earlier one.
fn keep_disjoint<T>(items: &mut Vec<T>, range: impl Fn(&T) -> (u64, u64)) {
    let mut end = 0;
    items.retain(|item| {
        let (offset, size) = range(item);
        let keep = offset >= end;
        if keep {
            end = offset + size;
        }
        keep
    });
}

impl Layout {
    /// Reads the layout of a 64-bit little-endian ELF file.
    pub fn parse(b: &[u8]) -> Option<Layout> {
        if b.get(..4)? != b"\x7fELF" || *b.get(4)? != 2 || *b.get(5)? != 1 {
            return None;
        }
        let machine = u16_at(b, 0x12)?;
        let len = b.len() as u64;
        let in_file = |off: u64, size: u64| off.checked_add(size).is_some_and(|e| e <= len);
        let mut segments = Vec::new();
        let mut eh_frame_hdr = None;
        for at in table(b, u64_at(b, 0x20)?, u16_at(b, 0x38)?, u16_at(b, 0x36)?, 56)? {
            let (kind, flags) = (u32_at(b, at)?, u32_at(b, at + 4)?);
            let (offset, vaddr, size) =
                (u64_at(b, at + 8)?, u64_at(b, at + 16)?, u64_at(b, at + 32)?);
            if kind == PT_LOAD && size > 0 && in_file(offset, size) {
                let exec = flags & PF_X != 0;
                segments.push(Segment {
                    offset,
                    size,
                    vaddr,
                    exec,
                });
            } else if kind == PT_GNU_EH_FRAME && size > 0 && in_file(offset, size) {
                eh_frame_hdr = Some(Range {
                    offset,
                    size,
                    vaddr,
                });
            }
        }
        segments.sort_by_key(|s| s.offset);
        // Overlapping segments would be scanned (and rewritten) twice, and
        // thousands of them would multiply the work: keep the first.
        keep_disjoint(&mut segments, |s| (s.offset, s.size));
        let mut code = Vec::new();
        let sections = u64_at(b, 0x28)
            .zip(u16_at(b, 0x3c))
            .zip(u16_at(b, 0x3a))
            .and_then(|((off, n), size)| {
                if off == 0 {
                    None
                } else {
                    table(b, off, n, size, 64)
                }
            })
            .unwrap_or_default();
        for at in sections {
            let (kind, flags) = (u32_at(b, at + 4)?, u64_at(b, at + 8)?);
            let (vaddr, offset, size) = (
                u64_at(b, at + 16)?,
                u64_at(b, at + 24)?,
                u64_at(b, at + 32)?,
            );
            if flags & SHF_EXECINSTR != 0 && kind != SHT_NOBITS && size > 0 && in_file(offset, size)
            {
                code.push(Range {
                    offset,
                    size,
                    vaddr,
                });
            }
        }
        if code.is_empty() {
            // Stripped of section headers: the executable segments.
            code = segments
                .iter()
                .filter(|s| s.exec)
                .map(|s| Range {
                    offset: s.offset,
                    size: s.size,
                    vaddr: s.vaddr,
                })
                .collect();
        }
        code.sort_by_key(|r| r.offset);
        // Overlapping code ranges would be decoded twice: keep the first.
        keep_disjoint(&mut code, |r| (r.offset, r.size));
        (!segments.is_empty()).then_some(Layout {
            machine,
            segments,
            code,
            eh_frame_hdr,
        })
    }

    /// The virtual address of file offset `off`, if it is loaded.
    pub fn vaddr_of(&self, off: u64) -> Option<u64> {
        let i = self.segments.partition_point(|s| s.offset <= off);
        let s = self.segments.get(i.checked_sub(1)?)?;
        (off < s.offset + s.size).then(|| s.vaddr.wrapping_add(off - s.offset))
    }

    /// The file offset of virtual address `vaddr`, if it is in the file.
    pub fn offset_of(&self, vaddr: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| vaddr >= s.vaddr && vaddr - s.vaddr < s.size)
            .map(|s| s.offset + (vaddr - s.vaddr))
    }

    /// Lowest and highest (exclusive) loaded virtual address.
    pub fn vaddr_span(&self) -> (u64, u64) {
        let lo = self.segments.iter().map(|s| s.vaddr).min().unwrap_or(0);
        let hi = self
            .segments
            .iter()
            .map(|s| s.vaddr.saturating_add(s.size))
            .max()
            .unwrap_or(0);
        (lo, hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_segments_are_kept_once() {
        let mut b = vec![0u8; 64 + 56 * 3 + 256];
        b[..6].copy_from_slice(b"\x7fELF\x02\x01");
        b[0x20] = 64;
        b[0x36] = 56;
        b[0x38] = 3;
        for i in 0..3 {
            let h = 64 + 56 * i;
            b[h] = 1; // PT_LOAD
            b[h + 8] = if i == 2 { 250 } else { 0 }; // offset
            b[h + 17] = 0x10; // vaddr 0x1000
            b[h + 32] = if i == 2 { 200 } else { 240 }; // size
        }
        let l = Layout::parse(&b).expect("layout");
        assert_eq!(l.segments.len(), 2, "{:?}", l.segments);
    }

    #[test]
    fn refuses_non_elf_and_truncated_headers() {
        assert_eq!(Layout::parse(b""), None);
        assert_eq!(Layout::parse(b"\x7fELF\x02\x01"), None);
        let mut h = vec![0u8; 64];
        h[..6].copy_from_slice(b"\x7fELF\x02\x01");
        h[0x20] = 64; // phoff
        h[0x36] = 56; // phentsize
        h[0x38] = 200; // phnum past the end
        assert_eq!(Layout::parse(&h), None);
    }
}
