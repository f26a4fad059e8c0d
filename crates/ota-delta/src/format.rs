//! The `OTADIFF1` patch format.
//!
//! ```text
//! offset size
//!  0      8   magic "OTADIFF1" (the digit is the format version)
//!  8      8   size of OLD, u64 little-endian
//! 16      8   size of NEW, u64 little-endian
//! 24     32   SHA-256 of OLD
//! 56     32   SHA-256 of NEW
//! 88      1   codec: 1 = zstd
//! 89      1   transform: 0 = none (magic OTADIFF1); 1 = ELF addresses (OTADIFF2)
//! 90      6   reserved, zero
//! 96      …   OTADIFF2 only: u32 little-endian length, then that many bytes:
//!             the zstd-compressed address map (see `exe::AddrMap`)
//!  …      …   one zstd stream of groups, then an empty group (n_ops = 0)
//!
//! group = varint n_ops, varint diff_total, varint extra_total, varint n_nonzero,
//!         n_ops × varint diff_len, n_ops × varint extra_len,
//!         n_ops × zigzag-varint old_seek,
//!         n_nonzero × varint gap, n_nonzero bytes of value,
//!         extra_total literal bytes
//! ```
//!
//! The difference bytes (NEW − OLD, byte-wise, over the group's diff
//! regions laid end to end) are mostly zero, so only the non-zero ones are
//! stored: each as the count of zeros before it (`gap`) and its value. That
//! is 5–10× less for the compressor to chew on than bsdiff's raw stream and
//! compresses better too.
//!
//! `old_seek` moves the OLD cursor (which starts at 0 and advances by each
//! `diff_len`) before the op's diff region. Separating each group's control,
//! difference and literal bytes lets the compressor model each kind; groups
//! keep the patch readable front to back with one bounded buffer, so it can
//! be applied while it downloads.
//!
//! An `OTADIFF2` patch is an `OTADIFF1` patch against OLD as rewritten by
//! [`crate::exe`]: the device rewrites its OLD with the map the patch
//! carries, then decodes as usual. Readers that predate it refuse it by its
//! magic ("not an OTADIFF1 patch"); plain patches are still written as
//! `OTADIFF1`, byte for byte as before.

use crate::error::{DeltaError, Result};
use crate::matcher::Op;
use crate::varint;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};

/// Magic of the format without a transform.
pub const MAGIC: &[u8; 8] = b"OTADIFF1";
/// Magic of the format with a transform of OLD (an address map follows
/// the header).
pub const MAGIC_TRANSFORMED: &[u8; 8] = b"OTADIFF2";
/// Largest compressed address map the decoder reads.
pub const MAP_MAX: u32 = 16 << 20;

/// True for either magic of this format.
pub fn is_magic(m: &[u8]) -> bool {
    m == MAGIC || m == MAGIC_TRANSFORMED
}

/// What was done to OLD before the byte-level diff.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transform {
    /// Nothing: the patch applies to OLD as it is.
    #[default]
    None,
    /// OLD's code addresses, pointers and unwind tables rewritten by an
    /// address map (x86-64 ELF), see [`crate::exe`].
    ElfAddresses,
}
/// Length of the fixed header.
pub const HEADER_LEN: usize = 96;
/// Bytes of NEW per group written by the encoder.
pub const GROUP_TARGET: u64 = 4 << 20;
/// Largest group the decoder accepts (bounds its memory).
pub const GROUP_MAX: u64 = 16 << 20;
/// Most ops per group the decoder accepts.
pub const OPS_MAX: u64 = 1 << 20;
/// Largest zstd window the decoder accepts (2^27 = 128 MiB).
pub const WINDOW_LOG_MAX: u32 = 27;

/// The fixed header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Size of OLD.
    pub old_size: u64,
    /// Size of NEW.
    pub new_size: u64,
    /// SHA-256 of OLD.
    pub old_sha256: [u8; 32],
    /// SHA-256 of NEW.
    pub new_sha256: [u8; 32],
    /// What was done to OLD before diffing.
    pub transform: Transform,
}

impl Header {
    /// Serialises the header.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..8].copy_from_slice(match self.transform {
            Transform::None => MAGIC,
            Transform::ElfAddresses => MAGIC_TRANSFORMED,
        });
        h[8..16].copy_from_slice(&self.old_size.to_le_bytes());
        h[16..24].copy_from_slice(&self.new_size.to_le_bytes());
        h[24..56].copy_from_slice(&self.old_sha256);
        h[56..88].copy_from_slice(&self.new_sha256);
        h[88] = 1;
        h[89] = match self.transform {
            Transform::None => 0,
            Transform::ElfAddresses => 1,
        };
        h
    }

    /// Parses and checks a header.
    pub fn parse(h: &[u8; HEADER_LEN]) -> Result<Self> {
        let transform = match (&h[..8], h[89]) {
            (m, 0) if m == MAGIC => Transform::None,
            (m, 1) if m == MAGIC_TRANSFORMED => Transform::ElfAddresses,
            (m, t) if m == MAGIC_TRANSFORMED => {
                return Err(DeltaError::corrupt(format!(
                    "unknown transform {t}: this patch needs a newer ota"
                )))
            }
            _ => return Err(DeltaError::corrupt("not an OTADIFF1 or OTADIFF2 patch")),
        };
        if h[88] != 1 {
            return Err(DeltaError::corrupt(format!("unknown codec {}", h[88])));
        }
        if h[90..].iter().any(|&b| b != 0) {
            return Err(DeltaError::corrupt("reserved header bytes are not zero"));
        }
        let u64_at = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().unwrap_or([0; 8]));
        let mut old_sha256 = [0u8; 32];
        let mut new_sha256 = [0u8; 32];
        old_sha256.copy_from_slice(&h[24..56]);
        new_sha256.copy_from_slice(&h[56..88]);
        Ok(Header {
            old_size: u64_at(8),
            new_size: u64_at(16),
            old_sha256,
            new_sha256,
            transform,
        })
    }
}

/// zstd settings for the patch body.
#[derive(Clone, Copy, Debug)]
pub struct Codec {
    /// zstd level (1–22).
    pub level: i32,
    /// Window log (0 = the level's default); capped at [`WINDOW_LOG_MAX`].
    pub window_log: u32,
}

/// Bytes of NEW per zstd frame; frames are compressed in parallel.
pub const FRAME_TARGET: u64 = 8 << 20;

/// A group as planned: its ops, where its NEW bytes start, and the OLD
/// cursor before it.
struct Group<'a> {
    ops: &'a [Op],
    new_at: usize,
    old_cursor: u64,
}

/// Splits ops so that none exceeds [`GROUP_TARGET`] bytes of NEW.
fn split_ops(ops: &[Op]) -> Vec<Op> {
    let mut pieces: Vec<Op> = Vec::with_capacity(ops.len());
    for op in ops {
        let mut o = *op;
        while o.diff_len > GROUP_TARGET {
            pieces.push(Op {
                old_pos: o.old_pos,
                diff_len: GROUP_TARGET,
                extra_len: 0,
            });
            o.old_pos += GROUP_TARGET;
            o.diff_len -= GROUP_TARGET;
        }
        while o.extra_len > GROUP_TARGET {
            pieces.push(Op {
                old_pos: o.old_pos,
                diff_len: o.diff_len,
                extra_len: GROUP_TARGET,
            });
            o.old_pos += o.diff_len;
            o.diff_len = 0;
            o.extra_len -= GROUP_TARGET;
        }
        pieces.push(o);
    }
    pieces
}

/// Appends one group's sections to `out`.
fn encode_group(g: &Group<'_>, old: &[u8], new: &[u8], out: &mut Vec<u8>) {
    let (mut ctrl, mut elens, mut seeks) = (Vec::new(), Vec::new(), Vec::new());
    let (mut gaps, mut vals) = (Vec::new(), Vec::new());
    let mut extras: Vec<(usize, usize)> = Vec::with_capacity(g.ops.len());
    let (mut new_at, mut old_cursor) = (g.new_at, g.old_cursor);
    let mut run = 0u64; // zeros since the last non-zero difference
    for o in g.ops {
        varint::put(&mut ctrl, o.diff_len);
        varint::put(&mut elens, o.extra_len);
        let seek = if o.diff_len > 0 {
            o.old_pos as i64 - old_cursor as i64
        } else {
            0
        };
        varint::put_signed(&mut seeks, seek);
        let d = o.diff_len as usize;
        if d > 0 {
            let op = o.old_pos as usize;
            for (n, o) in new[new_at..new_at + d].iter().zip(&old[op..op + d]) {
                let x = n.wrapping_sub(*o);
                if x == 0 {
                    run += 1;
                } else {
                    varint::put(&mut gaps, run);
                    vals.push(x);
                    run = 0;
                }
            }
            old_cursor = o.old_pos + o.diff_len;
        }
        extras.push((new_at + d, o.extra_len as usize));
        new_at += d + o.extra_len as usize;
    }
    let diff_total: u64 = g.ops.iter().map(|o| o.diff_len).sum();
    let extra_total: u64 = g.ops.iter().map(|o| o.extra_len).sum();
    varint::put(out, g.ops.len() as u64);
    varint::put(out, diff_total);
    varint::put(out, extra_total);
    varint::put(out, vals.len() as u64);
    for section in [&ctrl, &elens, &seeks, &gaps, &vals] {
        out.extend_from_slice(section);
    }
    for (at, len) in extras {
        out.extend_from_slice(&new[at..at + len]);
    }
}

fn compress_frame(data: &[u8], codec: Codec) -> Result<Vec<u8>> {
    let zerr = |e| DeltaError::io("compressing the patch", e);
    let mut z = zstd::stream::write::Encoder::new(Vec::with_capacity(data.len() / 4), codec.level)
        .map_err(zerr)?;
    if codec.window_log > 0 {
        z.window_log(codec.window_log.min(WINDOW_LOG_MAX))
            .map_err(zerr)?;
    }
    z.include_checksum(false).map_err(zerr)?;
    z.set_pledged_src_size(Some(data.len() as u64))
        .map_err(zerr)?;
    z.write_all(data).map_err(zerr)?;
    z.finish().map_err(zerr)
}

/// Writes header and body for `ops` (which must cover NEW exactly). Groups
/// are planned in order, then cut into frames of about [`FRAME_TARGET`]
/// bytes of NEW that are encoded and compressed in parallel; the frames,
/// concatenated, read as one stream.
pub fn encode(
    header: &Header,
    old: &[u8],
    new: &[u8],
    ops: &[Op],
    codec: Codec,
    out: impl Write,
) -> Result<()> {
    let mut out = out;
    out.write_all(&header.to_bytes())
        .map_err(|e| DeltaError::io("writing the patch header", e))?;
    encode_body(old, new, ops, codec, out)
}

/// Writes the body (groups and end marker) for `ops`, without a header.
pub fn encode_body(
    old: &[u8],
    new: &[u8],
    ops: &[Op],
    codec: Codec,
    out: impl Write,
) -> Result<()> {
    use rayon::prelude::*;
    let mut out = out;
    let pieces = split_ops(ops);
    // Plan groups: contiguous runs of ops with at most GROUP_TARGET of NEW.
    let mut groups: Vec<Group<'_>> = Vec::new();
    let (mut i, mut new_at, mut old_cursor) = (0usize, 0usize, 0u64);
    while i < pieces.len() {
        let start = i;
        let mut bytes = 0u64;
        while i < pieces.len()
            && (i == start || bytes + pieces[i].diff_len + pieces[i].extra_len <= GROUP_TARGET)
        {
            bytes += pieces[i].diff_len + pieces[i].extra_len;
            i += 1;
        }
        groups.push(Group {
            ops: &pieces[start..i],
            new_at,
            old_cursor,
        });
        for o in &pieces[start..i] {
            if o.diff_len > 0 {
                old_cursor = o.old_pos + o.diff_len;
            }
        }
        new_at += bytes as usize;
    }
    if new_at != new.len() {
        return Err(DeltaError::corrupt(format!(
            "internal: ops cover {new_at} of {} bytes",
            new.len()
        )));
    }
    // Cut groups into frames.
    let mut frames: Vec<&[Group<'_>]> = Vec::new();
    let (mut f0, mut fbytes) = (0usize, 0u64);
    for (k, g) in groups.iter().enumerate() {
        fbytes += g.ops.iter().map(|o| o.diff_len + o.extra_len).sum::<u64>();
        if fbytes >= FRAME_TARGET {
            frames.push(&groups[f0..=k]);
            f0 = k + 1;
            fbytes = 0;
        }
    }
    frames.push(&groups[f0..]); // the last frame also carries the end marker
    let last = frames.len() - 1;
    let compressed: Vec<Result<Vec<u8>>> = frames
        .par_iter()
        .enumerate()
        .map(|(k, frame)| {
            let mut raw = Vec::new();
            for g in frame.iter() {
                encode_group(g, old, new, &mut raw);
            }
            if k == last {
                for _ in 0..4 {
                    varint::put(&mut raw, 0);
                }
            }
            compress_frame(&raw, codec)
        })
        .collect();
    for c in compressed {
        out.write_all(&c?)
            .map_err(|e| DeltaError::io("writing the patch", e))?;
    }
    out.flush()
        .map_err(|e| DeltaError::io("flushing the patch", e))?;
    Ok(())
}

/// Reads the body after `header` from `body`, writing NEW to `out`; returns
/// the SHA-256 of what was written. Memory: one group (≤ [`GROUP_MAX`]) plus
/// the zstd window (≤ 2^[`WINDOW_LOG_MAX`]).
pub fn decode(
    header: &Header,
    old: &[u8],
    body: impl Read,
    out: &mut impl Write,
) -> Result<[u8; 32]> {
    let mut sink = WriteSink {
        out,
        spare: Vec::new(),
    };
    decode_with(header, old, body, &mut sink, true).map(|h| h.unwrap_or([0; 32]))
}

/// Where decoded groups go. The decoder fills buffers it takes from the
/// sink and hands them back, so a sink can pass them to another thread
/// without copying.
pub trait GroupSink {
    /// A buffer to fill (the decoder resizes it).
    fn buffer(&mut self) -> Vec<u8>;
    /// A decoded group, in order.
    fn put(&mut self, group: Vec<u8>) -> std::io::Result<()>;
}

/// A [`GroupSink`] over any writer, reusing one buffer.
struct WriteSink<'a, W: Write> {
    out: &'a mut W,
    spare: Vec<u8>,
}

impl<W: Write> GroupSink for WriteSink<'_, W> {
    fn buffer(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.spare)
    }
    fn put(&mut self, group: Vec<u8>) -> std::io::Result<()> {
        self.out.write_all(&group)?;
        self.spare = group;
        Ok(())
    }
}

/// [`decode`], hashing the output only when `hash_output` (a caller that
/// hashes on another thread passes false and gets `None`).
pub fn decode_with(
    header: &Header,
    old: &[u8],
    body: impl Read,
    sink: &mut impl GroupSink,
    hash_output: bool,
) -> Result<Option<[u8; 32]>> {
    if old.len() as u64 != header.old_size {
        return Err(DeltaError::corrupt(format!(
            "old size {} differs from the patch's {}",
            old.len(),
            header.old_size
        )));
    }
    let mut zd =
        zstd::stream::read::Decoder::new(body).map_err(|e| DeltaError::io("starting zstd", e))?;
    zd.window_log_max(WINDOW_LOG_MAX)
        .map_err(|e| DeltaError::io("configuring zstd", e))?;
    // Varints are read a byte at a time: buffer them, not the decoder.
    let mut z = std::io::BufReader::with_capacity(64 * 1024, zd);
    let mut hasher = Sha256::new();
    let mut written = 0u64;
    let mut positions: Vec<u32> = Vec::new();
    let mut vals: Vec<u8> = Vec::new();
    let mut ops: Vec<(u64, u64, u64)> = Vec::new();
    let mut old_cursor: u64 = 0;
    let zread = |z: &mut dyn Read, b: &mut [u8]| -> Result<()> {
        z.read_exact(b)
            .map_err(|e| DeltaError::corrupt(format!("truncated or damaged patch body ({e})")))
    };
    loop {
        let n_ops = varint::get(&mut z)?;
        let diff_total = varint::get(&mut z)?;
        let extra_total = varint::get(&mut z)?;
        let n_nonzero = varint::get(&mut z)?;
        if n_ops == 0 {
            if diff_total != 0 || extra_total != 0 || n_nonzero != 0 {
                return Err(DeltaError::corrupt("end marker with data"));
            }
            break;
        }
        if n_ops > OPS_MAX
            || diff_total.saturating_add(extra_total) > GROUP_MAX
            || n_nonzero > diff_total
        {
            return Err(DeltaError::corrupt(format!(
                "group too large ({n_ops} ops, {} bytes)",
                diff_total.saturating_add(extra_total)
            )));
        }
        let group_len = diff_total + extra_total;
        if written + group_len > header.new_size {
            return Err(DeltaError::corrupt(
                "patch produces more than the declared size",
            ));
        }
        ops.clear();
        let (mut sum_d, mut sum_e) = (0u64, 0u64);
        for _ in 0..n_ops {
            let d = varint::get(&mut z)?;
            sum_d = sum_d.saturating_add(d);
            ops.push((0, d, 0));
        }
        for op in ops.iter_mut() {
            op.2 = varint::get(&mut z)?;
            sum_e = sum_e.saturating_add(op.2);
        }
        for op in ops.iter_mut() {
            let seek = varint::get_signed(&mut z)?;
            let d = op.1;
            if d > 0 {
                let p = old_cursor as i128 + seek as i128;
                if p < 0 || p as u128 + d as u128 > old.len() as u128 {
                    return Err(DeltaError::corrupt("op reads outside the old file"));
                }
                old_cursor = p as u64 + d;
                op.0 = p as u64;
            }
        }
        if sum_d != diff_total || sum_e != extra_total {
            return Err(DeltaError::corrupt("group sizes do not add up"));
        }
        // Difference positions, in the group's diff space (its diff regions
        // laid end to end).
        positions.clear();
        let mut at = 0u64;
        for _ in 0..n_nonzero {
            let gap = varint::get(&mut z)?;
            at = at.saturating_add(gap);
            if at >= diff_total {
                return Err(DeltaError::corrupt("difference outside the group"));
            }
            positions.push(at as u32);
            at += 1;
        }
        vals.resize(n_nonzero as usize, 0);
        zread(&mut z, &mut vals)?;
        // Copy OLD under every diff region, then add the few non-zero
        // differences: one pass of memcpy plus O(non-zero) work.
        let mut buf = sink.buffer();
        buf.resize(group_len as usize, 0);
        let (mut at, mut d_at, mut k) = (0usize, 0usize, 0usize);
        for &(pos, d, e) in &ops {
            let (d, e, pos) = (d as usize, e as usize, pos as usize);
            buf[at..at + d].copy_from_slice(&old[pos..pos + d]);
            while k < positions.len() && (positions[k] as usize) < d_at + d {
                let i = at + positions[k] as usize - d_at;
                buf[i] = buf[i].wrapping_add(vals[k]);
                k += 1;
            }
            at += d;
            d_at += d;
            zread(&mut z, &mut buf[at..at + e])?;
            at += e;
        }
        if hash_output {
            hasher.update(&buf);
        }
        sink.put(buf)
            .map_err(|e| DeltaError::io("writing the result", e))?;
        written += group_len;
    }
    if written != header.new_size {
        return Err(DeltaError::corrupt(format!(
            "patch produced {written} bytes, header declares {}",
            header.new_size
        )));
    }
    let mut probe = [0u8; 1];
    match z.read(&mut probe) {
        Ok(0) => {}
        Ok(_) => return Err(DeltaError::corrupt("data after the end marker")),
        Err(e) => return Err(DeltaError::corrupt(format!("damaged patch tail ({e})"))),
    }
    Ok(hash_output.then(|| hasher.finalize().into()))
}
