//! Finding what NEW shares with OLD: a suffix array over OLD and a
//! bsdiff-style scan of NEW for approximate matches.
//!
//! The scan follows Colin Percival's bsdiff 4 algorithm: look up the longest
//! exact match at each position of NEW, keep it only when it beats simply
//! continuing the previous alignment by more than 8 bytes, then extend each
//! match forwards and backwards while at least half of the bytes agree (the
//! byte-wise difference of such a region is mostly zeros and compresses
//! well). NEW is cut into chunks scanned in parallel against one shared
//! suffix array; a chunk boundary costs at most one extra operation.

use rayon::prelude::*;

/// Largest OLD that a 32-bit suffix array can index (libsais with `i32`).
pub const MAX_I32_INPUT: usize = i32::MAX as usize;

/// One step of a delta: add `diff_len` bytes of (NEW − OLD from `old_pos`),
/// then insert `extra_len` literal bytes of NEW.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    /// Where in OLD the diff region starts.
    pub old_pos: u64,
    /// Bytes taken as OLD + difference.
    pub diff_len: u64,
    /// Literal bytes of NEW after that.
    pub extra_len: u64,
}

/// A suffix array index type.
pub trait SaIndex: Copy + Send + Sync {
    /// The index as `usize`.
    fn get(self) -> usize;
}
impl SaIndex for i32 {
    #[inline]
    fn get(self) -> usize {
        self as usize
    }
}
impl SaIndex for i64 {
    #[inline]
    fn get(self) -> usize {
        self as usize
    }
}

/// Errors building the suffix array.
#[derive(Debug, thiserror::Error)]
#[error("suffix array construction failed: {0}")]
pub struct SaError(pub String);

/// The suffix array of OLD, 32-bit below 2 GiB and 64-bit above.
pub enum SuffixArray {
    /// 4 bytes per byte of OLD.
    Small(Vec<i32>),
    /// 8 bytes per byte of OLD.
    Large(Vec<i64>),
}

impl SuffixArray {
    /// Builds the suffix array of `old` with `threads` OpenMP threads.
    pub fn build(old: &[u8], threads: usize) -> Result<Self, SaError> {
        use libsais::{SuffixArrayConstruction, ThreadCount};
        let threads = ThreadCount::fixed(threads.clamp(1, 64) as u16);
        if old.len() < MAX_I32_INPUT {
            let sa = SuffixArrayConstruction::for_text(old)
                .in_owned_buffer32()
                .multi_threaded(threads)
                .run()
                .map_err(|e| SaError(format!("{e:?}")))?
                .into_vec();
            Ok(SuffixArray::Small(sa))
        } else {
            let sa = SuffixArrayConstruction::for_text(old)
                .in_owned_buffer64()
                .multi_threaded(threads)
                .run()
                .map_err(|e| SaError(format!("{e:?}")))?
                .into_vec();
            Ok(SuffixArray::Large(sa))
        }
    }
}

#[inline]
fn match_len(a: &[u8], b: &[u8]) -> usize {
    // Compare 8 bytes at a time; this loop dominates the search.
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let x = u64::from_le_bytes(a[i..i + 8].try_into().unwrap_or([0; 8]));
        let y = u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        if x != y {
            return i + ((x ^ y).trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

/// Longest prefix of `needle` occurring in `old`: (position, length).
fn search<I: SaIndex>(sa: &[I], old: &[u8], needle: &[u8]) -> (usize, usize) {
    if sa.is_empty() {
        return (0, 0);
    }
    let (mut lo, mut hi) = (0usize, sa.len() - 1);
    // Binary search keeping lo <= answer <= hi, as bsdiff does, but with the
    // common prefix of the bounds skipped in comparisons.
    while hi - lo >= 2 {
        let mid = lo + (hi - lo) / 2;
        let p = sa[mid].get();
        let suffix = &old[p..];
        let n = suffix.len().min(needle.len());
        if suffix[..n] < needle[..n] {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let (pl, ph) = (sa[lo].get(), sa[hi].get());
    let x = match_len(&old[pl..], needle);
    let y = match_len(&old[ph..], needle);
    if x > y {
        (pl, x)
    } else {
        (ph, y)
    }
}

/// Scans `new[start..end]` and returns ops covering exactly that range.
fn scan_chunk<I: SaIndex>(sa: &[I], old: &[u8], new: &[u8], start: usize, end: usize) -> Vec<Op> {
    let mut ops = Vec::new();
    let (mut scan, mut len, mut pos) = (start, 0usize, 0usize);
    let old_len = old.len();
    // Assume the chunk starts aligned with the same offset in OLD (files
    // that changed a little mostly are); bsdiff needs lastoffset to equal
    // lastpos - lastscan.
    let (mut lastscan, mut lastpos) = (start, start.min(old_len));
    let mut lastoffset = lastpos as isize - lastscan as isize;
    while scan < end {
        // Matches of the current alignment in [scan, scsc); signed because it
        // dips to -1 when `scan` moves past a byte not yet counted.
        let mut oldscore = 0isize;
        scan += len;
        let mut scsc = scan;
        while scan < end {
            let (p, l) = search(sa, old, &new[scan..end]);
            pos = p;
            len = l;
            while scsc < scan + len {
                let o = scsc as isize + lastoffset;
                if o >= 0 && (o as usize) < old_len && old[o as usize] == new[scsc] {
                    oldscore += 1;
                }
                scsc += 1;
            }
            if (len as isize == oldscore && len != 0) || len as isize > oldscore + 8 {
                break;
            }
            let o = scan as isize + lastoffset;
            if o >= 0 && (o as usize) < old_len && old[o as usize] == new[scan] {
                oldscore -= 1;
            }
            scan += 1;
        }
        if len as isize != oldscore || scan == end {
            // Extend the previous match forwards while it pays.
            let (mut s, mut sf, mut lenf) = (0isize, 0isize, 0usize);
            let mut i = 0usize;
            while lastscan + i < scan && lastpos + i < old_len {
                if old[lastpos + i] == new[lastscan + i] {
                    s += 1;
                }
                i += 1;
                if s * 2 - i as isize > sf * 2 - lenf as isize {
                    sf = s;
                    lenf = i;
                }
            }
            // Extend the new match backwards while it pays.
            let mut lenb = 0usize;
            if scan < end {
                let (mut s, mut sb) = (0isize, 0isize);
                let mut i = 1usize;
                while scan >= lastscan + i && pos >= i {
                    if old[pos - i] == new[scan - i] {
                        s += 1;
                    }
                    if s * 2 - i as isize > sb * 2 - lenb as isize {
                        sb = s;
                        lenb = i;
                    }
                    i += 1;
                }
            }
            // Split an overlap where it costs least.
            if lastscan + lenf > scan - lenb {
                let overlap = (lastscan + lenf) - (scan - lenb);
                let (mut s, mut ss, mut lens) = (0isize, 0isize, 0usize);
                for i in 0..overlap {
                    if new[lastscan + lenf - overlap + i] == old[lastpos + lenf - overlap + i] {
                        s += 1;
                    }
                    if new[scan - lenb + i] == old[pos - lenb + i] {
                        s -= 1;
                    }
                    if s > ss {
                        ss = s;
                        lens = i + 1;
                    }
                }
                lenf = lenf + lens - overlap;
                lenb -= lens;
            }
            let extra = (scan - lenb) - (lastscan + lenf);
            ops.push(Op {
                old_pos: lastpos as u64,
                diff_len: lenf as u64,
                extra_len: extra as u64,
            });
            lastscan = scan - lenb;
            lastpos = pos - lenb;
            lastoffset = pos as isize - scan as isize;
        }
    }
    ops
}

/// Computes the ops turning `old` into `new`, scanning chunks of `new` in
/// parallel on the current rayon pool.
pub fn diff_ops(sa: &SuffixArray, old: &[u8], new: &[u8], chunk: usize) -> Vec<Op> {
    if new.is_empty() {
        return Vec::new();
    }
    let chunk = chunk.max(64 * 1024);
    let bounds: Vec<(usize, usize)> = (0..new.len())
        .step_by(chunk)
        .map(|s| (s, (s + chunk).min(new.len())))
        .collect();
    let parts: Vec<Vec<Op>> = bounds
        .par_iter()
        .map(|&(s, e)| match sa {
            SuffixArray::Small(sa) => scan_chunk(sa, old, new, s, e),
            SuffixArray::Large(sa) => scan_chunk(sa, old, new, s, e),
        })
        .collect();
    let mut ops: Vec<Op> = parts
        .into_iter()
        .flatten()
        .filter(|o| o.diff_len + o.extra_len > 0)
        .collect();
    merge_adjacent(&mut ops);
    ops
}

/// Joins an op with no extra bytes to a following op that continues in OLD
/// where it stopped (common at chunk boundaries).
fn merge_adjacent(ops: &mut Vec<Op>) {
    let mut out: Vec<Op> = Vec::with_capacity(ops.len());
    for op in ops.drain(..) {
        if let Some(last) = out.last_mut() {
            if last.extra_len == 0 && last.old_pos + last.diff_len == op.old_pos {
                last.diff_len += op.diff_len;
                last.extra_len = op.extra_len;
                continue;
            }
        }
        out.push(op);
    }
    *ops = out;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive_sa(t: &[u8]) -> Vec<i32> {
        let mut v: Vec<i32> = (0..t.len() as i32).collect();
        v.sort_by(|&a, &b| t[a as usize..].cmp(&t[b as usize..]));
        v
    }

    proptest! {
        #[test]
        fn suffix_array_matches_naive(t in prop::collection::vec(0u8..4, 0..300)) {
            let SuffixArray::Small(sa) = SuffixArray::build(&t, 2).unwrap() else { panic!() };
            prop_assert_eq!(sa, naive_sa(&t));
        }

        #[test]
        fn ops_cover_new_and_stay_in_old(old in prop::collection::vec(any::<u8>(), 0..3000), edits in prop::collection::vec((any::<u16>(), any::<u8>()), 0..20), chunk in 1usize..5) {
            let mut new = old.clone();
            for (at, b) in edits {
                if new.is_empty() { new.push(b); continue; }
                let i = at as usize % new.len();
                match b % 3 { 0 => new[i] = b, 1 => new.insert(i, b), _ => { new.remove(i); } }
            }
            let sa = SuffixArray::build(&old, 1).unwrap();
            let ops = diff_ops(&sa, &old, &new, chunk * 64 * 1024);
            let covered: u64 = ops.iter().map(|o| o.diff_len + o.extra_len).sum();
            prop_assert_eq!(covered, new.len() as u64);
            for o in &ops {
                prop_assert!(o.diff_len == 0 || o.old_pos + o.diff_len <= old.len() as u64);
            }
        }
    }

    #[test]
    fn finds_long_matches() {
        let old: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect();
        let mut new = old[50_000..150_000].to_vec();
        new.extend_from_slice(b"inserted text");
        new.extend_from_slice(&old[..50_000]);
        let sa = SuffixArray::build(&old, 2).unwrap();
        let ops = diff_ops(&sa, &old, &new, 1 << 20);
        let extra: u64 = ops.iter().map(|o| o.extra_len).sum();
        assert!(extra < 100, "only the insertion is literal: {ops:?}");
    }
}
