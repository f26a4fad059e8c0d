//! Where OLD's addresses went in NEW: a step function from OLD virtual
//! addresses to the shift (NEW − OLD) of the code or data there, built from
//! the long matches of a first diff pass.

use super::elf::Layout;
use crate::error::{DeltaError, Result};
use crate::matcher::Op;
use crate::varint;

/// Matches shorter than this say little about where code moved.
pub const MIN_MATCH: u64 = 64;
/// Most breakpoints a patch may carry (bounds the decoder's memory).
pub const MAX_BREAKPOINTS: u64 = 1 << 21;

/// A step function over OLD virtual addresses: from `starts[i]` on (up to
/// the next start) an address moved by `shifts[i]`; before the first start
/// nothing moved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddrMap {
    starts: Vec<u64>,
    shifts: Vec<i64>,
    /// Lookup index: for each bucket of `1 << bucket_bits` addresses from
    /// `starts[0]` on, how many starts lie at or before the bucket's first
    /// address. A lookup then searches only its bucket's few breakpoints
    /// (the rewrite asks millions of times).
    buckets: Vec<u32>,
    bucket_bits: u32,
}

impl AddrMap {
    /// Builds the map from the ops of a diff of OLD → NEW: each match of at
    /// least `min_match` bytes says its OLD addresses moved by the distance
    /// to its NEW addresses; sorted by OLD address, every change of that
    /// distance is a breakpoint.
    pub fn from_ops(old: &Layout, new: &Layout, ops: &[Op], min_match: u64) -> AddrMap {
        let mut spans: Vec<(u64, u64, i64)> = Vec::new();
        let mut new_pos = 0u64;
        for op in ops {
            if op.diff_len >= min_match {
                if let (Some(ov), Some(nv)) = (old.vaddr_of(op.old_pos), new.vaddr_of(new_pos)) {
                    spans.push((ov, op.diff_len, nv.wrapping_sub(ov) as i64));
                }
            }
            new_pos += op.diff_len + op.extra_len;
        }
        // Longest match wins: a short match that happens to agree with
        // other code elsewhere only fills what no longer match covers.
        spans.sort_unstable_by_key(|s| std::cmp::Reverse(s.1));
        let mut owned: std::collections::BTreeMap<u64, (u64, i64)> = Default::default();
        for (start, len, shift) in spans {
            let end = start.saturating_add(len);
            let mut at = start;
            // Claimed intervals overlapping [start, end), in order.
            let before = owned.range(..start).next_back().map(|(&s, &(e, _))| (s, e));
            let mut cuts: Vec<(u64, u64)> =
                before.filter(|&(_, e)| e > start).into_iter().collect();
            cuts.extend(owned.range(start..end).map(|(&s, &(e, _))| (s, e)));
            for (s, e) in cuts {
                if s > at {
                    owned.insert(at, (s, shift));
                }
                at = at.max(e);
            }
            if at < end {
                owned.insert(at, (end, shift));
            }
        }
        let mut map = AddrMap::default();
        let mut current = 0i64;
        for (start, (_end, shift)) in owned {
            if shift != current {
                map.starts.push(start);
                map.shifts.push(shift);
                current = shift;
            }
        }
        map.index();
        map
    }

    /// Builds the lookup index: about one bucket per breakpoint.
    fn index(&mut self) {
        let (Some(&first), Some(&last)) = (self.starts.first(), self.starts.last()) else {
            return;
        };
        let span = last - first;
        let target = self.starts.len() as u64 + 16;
        let mut bits = 6;
        while bits < 63 && (span >> bits) >= target {
            bits += 1;
        }
        let count = (span >> bits) + 1;
        let mut buckets = Vec::with_capacity(count as usize);
        let mut i = 0usize;
        for b in 0..count {
            let at = first + (b << bits);
            while i < self.starts.len() && self.starts[i] <= at {
                i += 1;
            }
            buckets.push(i as u32);
        }
        self.buckets = buckets;
        self.bucket_bits = bits;
    }

    /// The shift of OLD address `vaddr`.
    #[inline]
    pub fn shift(&self, vaddr: u64) -> i64 {
        let Some(&first) = self.starts.first() else {
            return 0;
        };
        if vaddr < first {
            return 0;
        }
        let b = usize::try_from((vaddr - first) >> self.bucket_bits).unwrap_or(usize::MAX);
        let i = match self.buckets.get(b) {
            Some(&lo) => {
                let lo = lo as usize;
                let hi = self
                    .buckets
                    .get(b + 1)
                    .map_or(self.starts.len(), |&h| h as usize);
                lo + self.starts[lo..hi].partition_point(|&s| s <= vaddr)
            }
            None => self.starts.len(),
        };
        // i ≥ 1: starts[0] = first ≤ vaddr.
        self.shifts[i - 1]
    }

    /// Number of breakpoints.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// True when nothing moved.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Serialises: count, then per breakpoint the start's distance from the
    /// previous start and the change of shift (both small).
    pub fn encode(&self, out: &mut Vec<u8>) {
        varint::put(out, self.starts.len() as u64);
        let (mut prev_start, mut prev_shift) = (0u64, 0i64);
        for (&s, &d) in self.starts.iter().zip(&self.shifts) {
            varint::put(out, s - prev_start);
            varint::put_signed(out, d.wrapping_sub(prev_shift));
            (prev_start, prev_shift) = (s, d);
        }
    }

    /// Reads what [`encode`](Self::encode) wrote.
    pub fn decode(r: &mut impl std::io::Read) -> Result<AddrMap> {
        let n = varint::get(r)?;
        if n > MAX_BREAKPOINTS {
            return Err(DeltaError::corrupt(format!(
                "address map of {n} breakpoints"
            )));
        }
        let mut map = AddrMap::default();
        let (mut start, mut shift) = (0u64, 0i64);
        for _ in 0..n {
            let gap = varint::get(r)?;
            start = start
                .checked_add(gap)
                .ok_or_else(|| DeltaError::corrupt("address map past 2^64"))?;
            if gap == 0 && !map.starts.is_empty() {
                return Err(DeltaError::corrupt("address map breakpoints out of order"));
            }
            shift = shift.wrapping_add(varint::get_signed(r)?);
            map.starts.push(start);
            map.shifts.push(shift);
        }
        map.index();
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn map_of(points: &[(u64, i64)]) -> AddrMap {
        let mut m = AddrMap {
            starts: points.iter().map(|p| p.0).collect(),
            shifts: points.iter().map(|p| p.1).collect(),
            ..AddrMap::default()
        };
        m.index();
        m
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(mut starts in prop::collection::btree_set(any::<u64>(), 0..200), shifts in prop::collection::vec(any::<i64>(), 200)) {
            let starts: Vec<u64> = std::mem::take(&mut starts).into_iter().collect();
            let points: Vec<(u64, i64)> = starts.iter().copied().zip(shifts.iter().copied()).collect();
            let map = map_of(&points);
            let mut raw = Vec::new();
            map.encode(&mut raw);
            let back = AddrMap::decode(&mut &raw[..]).expect("decode");
            prop_assert_eq!(&back, &map);
            // The index answers as a plain search over the breakpoints does.
            for &(s, _) in &points {
                for v in [s.wrapping_sub(1), s, s.wrapping_add(1), s / 2] {
                    let i = points.partition_point(|p| p.0 <= v);
                    let want = if i == 0 { 0 } else { points[i - 1].1 };
                    prop_assert_eq!(back.shift(v), want);
                }
            }
        }

        #[test]
        fn decoding_any_bytes_never_panics(raw in prop::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(map) = AddrMap::decode(&mut &raw[..]) {
                prop_assert!(map.starts.windows(2).all(|w| w[0] < w[1]));
            }
        }
    }

    #[test]
    fn shift_is_a_step_function() {
        let m = map_of(&[(0x1000, 16), (0x2000, -8)]);
        assert_eq!(m.shift(0xfff), 0);
        assert_eq!(m.shift(0x1000), 16);
        assert_eq!(m.shift(0x1fff), 16);
        assert_eq!(m.shift(0x2000), -8);
        assert_eq!(m.shift(u64::MAX), -8);
    }

    #[test]
    fn hostile_maps_are_refused() {
        let mut too_many = Vec::new();
        varint::put(&mut too_many, MAX_BREAKPOINTS + 1);
        assert!(AddrMap::decode(&mut &too_many[..]).is_err());
        // Two breakpoints at the same address.
        let mut repeated = Vec::new();
        for v in [2u64, 5, 2, 0, 2] {
            varint::put(&mut repeated, v);
        }
        assert!(AddrMap::decode(&mut &repeated[..]).is_err());
        // Past 2^64.
        let mut past = Vec::new();
        for v in [2u64, u64::MAX, 0, 2, 0] {
            varint::put(&mut past, v);
        }
        assert!(AddrMap::decode(&mut &past[..]).is_err());
        // Cut short.
        let mut cut = Vec::new();
        for v in [3u64, 1, 1] {
            varint::put(&mut cut, v);
        }
        assert!(AddrMap::decode(&mut &cut[..]).is_err());
    }
}
