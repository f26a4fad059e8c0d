//! The classic bsdiff 4.x format, `BSDIFF40`, as Debian's `bsdiff` and
//! `bspatch` (and Android's applypatch) read and write it.
//!
//! ```text
//!  0  8  "BSDIFF40"
//!  8  8  length of the bzip2'd control block   (sign-magnitude i64 LE)
//! 16  8  length of the bzip2'd diff block      (sign-magnitude i64 LE)
//! 24  8  size of NEW                           (sign-magnitude i64 LE)
//! 32  …  bzip2(control), bzip2(diff), bzip2(extra)
//! ```
//! Control is a list of (add x diff bytes, copy y extra bytes, seek OLD by z).
//! The format carries no checksums.

use crate::error::{DeltaError, Result};
use crate::matcher::Op;
use std::io::{Read, Write};

/// Magic of the format.
pub const MAGIC: &[u8; 8] = b"BSDIFF40";

fn offtout(x: i64) -> [u8; 8] {
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

fn bz(data: &[u8]) -> Result<Vec<u8>> {
    let mut e = bzip2::write::BzEncoder::new(
        Vec::with_capacity(data.len() / 8),
        bzip2::Compression::best(),
    );
    e.write_all(data).map_err(|e| DeltaError::io("bzip2", e))?;
    e.finish().map_err(|e| DeltaError::io("bzip2", e))
}

/// Writes a BSDIFF40 patch for `ops`.
pub fn encode(old: &[u8], new: &[u8], ops: &[Op], mut out: impl Write) -> Result<()> {
    let mut ctrl = Vec::with_capacity(ops.len() * 24);
    let mut diff = Vec::new();
    let mut extra = Vec::new();
    // Effective OLD start of each op: ops without diff bytes do not move.
    let mut cursor = 0u64;
    let starts: Vec<u64> = ops
        .iter()
        .map(|o| {
            let s = if o.diff_len > 0 { o.old_pos } else { cursor };
            cursor = s + o.diff_len;
            s
        })
        .collect();
    // BSDIFF40 reads OLD from 0 and only seeks after an entry: when the first
    // op starts elsewhere, lead with an entry that copies nothing and seeks.
    if let Some(&first) = starts.first() {
        if first != 0 && !new.is_empty() {
            ctrl.extend_from_slice(&offtout(0));
            ctrl.extend_from_slice(&offtout(0));
            ctrl.extend_from_slice(&offtout(first as i64));
        }
    }
    let mut new_at = 0usize;
    for (k, o) in ops.iter().enumerate() {
        let d = o.diff_len as usize;
        let s = starts[k] as usize;
        diff.extend(
            new[new_at..new_at + d]
                .iter()
                .zip(&old[s..s + d])
                .map(|(n, o)| n.wrapping_sub(*o)),
        );
        new_at += d;
        extra.extend_from_slice(&new[new_at..new_at + o.extra_len as usize]);
        new_at += o.extra_len as usize;
        let next = starts.get(k + 1).copied().unwrap_or(starts[k] + o.diff_len);
        let seek = next as i64 - (starts[k] + o.diff_len) as i64;
        ctrl.extend_from_slice(&offtout(o.diff_len as i64));
        ctrl.extend_from_slice(&offtout(o.extra_len as i64));
        ctrl.extend_from_slice(&offtout(seek));
    }
    let (c, (d, e)) = rayon::join(|| bz(&ctrl), || rayon::join(|| bz(&diff), || bz(&extra)));
    let (c, d, e) = (c?, d?, e?);
    let mut head = Vec::with_capacity(32);
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&offtout(c.len() as i64));
    head.extend_from_slice(&offtout(d.len() as i64));
    head.extend_from_slice(&offtout(new.len() as i64));
    let w = |out: &mut dyn Write, b: &[u8]| {
        out.write_all(b)
            .map_err(|e| DeltaError::io("writing the patch", e))
    };
    w(&mut out, &head)?;
    w(&mut out, &c)?;
    w(&mut out, &d)?;
    w(&mut out, &e)?;
    Ok(())
}

/// Applies a BSDIFF40 patch held in memory, streaming NEW to `out`.
/// Returns the number of bytes written.
pub fn decode(old: &[u8], patch: &[u8], out: &mut impl Write) -> Result<u64> {
    if patch.len() < 32 || &patch[..8] != MAGIC {
        return Err(DeltaError::corrupt("not a BSDIFF40 patch"));
    }
    let ctrl_len = offtin(&patch[8..16]);
    let diff_len = offtin(&patch[16..24]);
    let new_size = offtin(&patch[24..32]);
    if ctrl_len < 0 || diff_len < 0 || new_size < 0 {
        return Err(DeltaError::corrupt("negative length in BSDIFF40 header"));
    }
    let body = &patch[32..];
    let (ctrl_len, diff_len) = (ctrl_len as u64, diff_len as u64);
    if ctrl_len.saturating_add(diff_len) > body.len() as u64 {
        return Err(DeltaError::corrupt(
            "BSDIFF40 block lengths exceed the patch",
        ));
    }
    let (c, rest) = body.split_at(ctrl_len as usize);
    let (d, e) = rest.split_at(diff_len as usize);
    let mut ctrl = bzip2::read::BzDecoder::new(c);
    let mut diff = bzip2::read::BzDecoder::new(d);
    let mut extra = bzip2::read::BzDecoder::new(e);
    let new_size = new_size as u64;
    let (mut newpos, mut oldpos) = (0u64, 0i64);
    let mut buf = vec![0u8; 1 << 20];
    let truncated = |what: &str, e: std::io::Error| {
        DeltaError::corrupt(format!("BSDIFF40 {what} block truncated or damaged ({e})"))
    };
    while newpos < new_size {
        let mut t = [0u8; 24];
        ctrl.read_exact(&mut t)
            .map_err(|e| truncated("control", e))?;
        let (x, y, z) = (offtin(&t[0..8]), offtin(&t[8..16]), offtin(&t[16..24]));
        if x < 0 || y < 0 || newpos + x as u64 > new_size || newpos + x as u64 + y as u64 > new_size
        {
            return Err(DeltaError::corrupt("BSDIFF40 control entry out of range"));
        }
        let mut left = x as u64;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            diff.read_exact(&mut buf[..n])
                .map_err(|e| truncated("diff", e))?;
            for (i, b) in buf[..n].iter_mut().enumerate() {
                let p = oldpos + i as i64;
                if p >= 0 && (p as u64) < old.len() as u64 {
                    *b = b.wrapping_add(old[p as usize]);
                }
            }
            out.write_all(&buf[..n])
                .map_err(|e| DeltaError::io("writing the result", e))?;
            oldpos += n as i64;
            left -= n as u64;
        }
        newpos += x as u64;
        let mut left = y as u64;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            extra
                .read_exact(&mut buf[..n])
                .map_err(|e| truncated("extra", e))?;
            out.write_all(&buf[..n])
                .map_err(|e| DeltaError::io("writing the result", e))?;
            left -= n as u64;
        }
        newpos += y as u64;
        oldpos = oldpos
            .checked_add(z)
            .ok_or_else(|| DeltaError::corrupt("BSDIFF40 seek overflows"))?;
    }
    // Every block must end cleanly where the control says the output ends.
    for (what, r) in [
        ("control", &mut ctrl as &mut dyn Read),
        ("diff", &mut diff),
        ("extra", &mut extra),
    ] {
        let mut probe = [0u8; 1];
        match r.read(&mut probe) {
            Ok(0) => {}
            Ok(_) => {
                return Err(DeltaError::corrupt(format!(
                    "BSDIFF40 {what} block has trailing data"
                )))
            }
            Err(e) => return Err(truncated(what, e)),
        }
    }
    Ok(newpos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_magnitude() {
        for v in [0i64, 1, -1, 255, -256, i64::MAX, -i64::MAX] {
            assert_eq!(offtin(&offtout(v)), v);
        }
        assert_eq!(offtout(-1)[7], 0x80);
    }
}
