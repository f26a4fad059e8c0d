//! Whole-file diff and patch: format choice, hashing, memory maps, and the
//! write-to-temporary-then-rename discipline.

use crate::dirfd::{Dir, TempFile};
use crate::error::{DeltaError, Result};
use crate::exe;
use crate::format::{self, Codec, Header, Transform, HEADER_LEN};
use crate::matcher::{self, SuffixArray};
use crate::{bsdiff40, tree};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Which patch format to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `OTADIFF1`: zstd, hashes of both sides, streamable.
    Otadiff,
    /// `BSDIFF40`: classic bsdiff 4.x (bzip2), for stock tools.
    Bsdiff40,
}

/// Diff settings.
#[derive(Clone, Copy, Debug)]
pub struct DiffOptions {
    /// Patch format.
    pub format: Format,
    /// Threads for suffix sorting, scanning and compression.
    pub threads: usize,
    /// zstd level for `OTADIFF1`.
    pub level: i32,
    /// zstd window log (0 = level default).
    pub window_log: u32,
    /// Rounds of the executable-aware transform for x86-64 ELF pairs
    /// (0 = off). Each round costs about one more suffix sort and scan;
    /// the second refines the address map from the first's longer matches.
    /// The transform is kept only when it makes the patch smaller.
    pub exe_rounds: u32,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            format: Format::Otadiff,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            level: 19,
            window_log: 0,
            exe_rounds: 1,
        }
    }
}

/// Largest OLD or NEW accepted, in bytes (the 64-bit suffix array needs
/// about 8 bytes of memory per byte of OLD past 2 GiB).
pub const MAX_INPUT: u64 = 4 << 30;

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Diffs two byte slices into `out`.
pub fn diff_bytes(old: &[u8], new: &[u8], opts: &DiffOptions, out: impl Write) -> Result<()> {
    for (what, len) in [("old", old.len()), ("new", new.len())] {
        if len as u64 > MAX_INPUT {
            return Err(DeltaError::TooLarge(format!(
                "the {what} input is {len} bytes; the limit is {MAX_INPUT} bytes (4 GiB)"
            )));
        }
    }
    let threads = opts.threads.max(1);
    let ((sa, old_sha), new_sha) = rayon::join(
        || rayon::join(|| SuffixArray::build(old, threads), || sha256(old)),
        || sha256(new),
    );
    let sa = sa?;
    // Enough chunks to keep every thread busy, few enough to cost little.
    let chunk = (new.len() / (threads * 4)).max(1 << 20);
    // A pair the executable transform will rewrite is scanned with long
    // steps: this pass only has to find where code moved (and be the
    // fallback), and the rewritten pass keeps the long steps too.
    let transformable =
        opts.exe_rounds > 0 && opts.format == Format::Otadiff && exe::layouts(old, new).is_some();
    let stepping = if transformable {
        matcher::Stepping::Skip
    } else {
        matcher::Stepping::Exact
    };
    let ops = matcher::diff_ops_with(&sa, old, new, chunk, stepping);
    drop(sa);
    match opts.format {
        Format::Otadiff => {
            let header = Header {
                old_size: old.len() as u64,
                new_size: new.len() as u64,
                old_sha256: old_sha,
                new_sha256: new_sha,
                transform: Transform::None,
            };
            let codec = Codec {
                level: opts.level,
                window_log: opts.window_log,
            };
            if opts.exe_rounds > 0 {
                if let Some(p) = exe::prepare(old, new, &ops, opts.exe_rounds, threads, chunk)? {
                    return exe::encode_smaller(&header, old, new, &ops, &p, codec, out);
                }
            }
            format::encode(&header, old, new, &ops, codec, out)
        }
        Format::Bsdiff40 => bsdiff40::encode(old, new, &ops, out),
    }
}

/// Applies a patch of any file format to `old`, writing NEW to `out`.
/// For `OTADIFF1` the source and the result are checked against the
/// patch's hashes; a wrong source is refused before anything is written.
pub fn patch_bytes(old: &[u8], patch: impl Read, out: &mut impl Write) -> Result<Format> {
    let mut patch = patch;
    let mut magic = [0u8; 8];
    patch
        .read_exact(&mut magic)
        .map_err(|e| DeltaError::corrupt(format!("patch too short ({e})")))?;
    match &magic {
        m if format::is_magic(m) => {
            let mut h = [0u8; HEADER_LEN];
            h[..8].copy_from_slice(&magic);
            patch
                .read_exact(&mut h[8..])
                .map_err(|e| DeltaError::corrupt(format!("truncated header ({e})")))?;
            let header = Header::parse(&h)?;
            check_source(&header, old)?;
            let map = read_transform(&header, &mut patch)?;
            let source = exe::source(old, header.transform, map.as_ref())?;
            let got = format::decode(&header, &source, patch, out)?;
            if got != header.new_sha256 {
                return Err(DeltaError::WrongResult {
                    what: "the new file".into(),
                    expected: hex(&header.new_sha256),
                    actual: hex(&got),
                });
            }
            Ok(Format::Otadiff)
        }
        m if m == bsdiff40::MAGIC => {
            let mut all = magic.to_vec();
            patch
                .read_to_end(&mut all)
                .map_err(|e| DeltaError::io("reading the patch", e))?;
            bsdiff40::decode(old, &all, out)?;
            Ok(Format::Bsdiff40)
        }
        m if m == tree::MAGIC => Err(DeltaError::corrupt(
            "this is a directory-tree patch: apply it to a directory",
        )),
        m => Err(DeltaError::UnknownFormat(
            String::from_utf8_lossy(m).into_owned(),
        )),
    }
}

/// The address map after the header of a transformed patch.
fn read_transform(header: &Header, patch: &mut impl Read) -> Result<Option<exe::AddrMap>> {
    match header.transform {
        Transform::None => Ok(None),
        Transform::ElfAddresses => exe::read_map(patch).map(Some),
    }
}

fn check_source(header: &Header, old: &[u8]) -> Result<()> {
    if old.len() as u64 != header.old_size {
        return Err(DeltaError::WrongSource {
            what: "the old file".into(),
            expected: format!("{} ({} bytes)", hex(&header.old_sha256), header.old_size),
            actual: format!("a {}-byte file", old.len()),
        });
    }
    let actual = sha256(old);
    if actual != header.old_sha256 {
        return Err(DeltaError::WrongSource {
            what: "the old file".into(),
            expected: hex(&header.old_sha256),
            actual: hex(&actual),
        });
    }
    Ok(())
}

/// A read-only view of a whole file (memory-mapped when non-empty).
pub struct Mapped {
    map: Option<memmap2::Mmap>,
}

impl Mapped {
    /// Maps `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let f = File::open(path)
            .map_err(|e| DeltaError::io(format!("opening {}", path.display()), e))?;
        Self::from_file(&f, path)
    }

    /// Maps an open file (`path` names it in messages).
    pub fn from_file(f: &File, path: &Path) -> Result<Self> {
        let len = f
            .metadata()
            .map_err(|e| DeltaError::io(format!("reading {}", path.display()), e))?
            .len();
        if len == 0 {
            return Ok(Mapped { map: None });
        }
        // SAFETY: the map is read-only; a file changed underneath by another
        // process can give wrong bytes, which the hashes then catch.
        let map = unsafe { memmap2::MmapOptions::new().populate().map(f) }
            .map_err(|e| DeltaError::io(format!("mapping {}", path.display()), e))?;
        Ok(Mapped { map: Some(map) })
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

/// The mode a file this process creates for a user gets: `0666 & !umask`,
/// as `open(2)` would give it. The umask is read once per process: from
/// /proc where it is shown (Linux ≥ 4.7), which leaves it alone; elsewhere
/// by setting 077 and restoring it, so a file another thread creates in
/// that instant can only come out more private, never less.
pub fn output_mode() -> u32 {
    static MODE: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *MODE.get_or_init(|| 0o666 & !current_umask())
}

fn current_umask() -> u32 {
    if let Ok(s) = std::fs::read_to_string("/proc/self/status") {
        if let Some(v) = s.lines().find_map(|l| l.strip_prefix("Umask:")) {
            if let Ok(m) = u32::from_str_radix(v.trim(), 8) {
                return m & 0o777;
            }
        }
    }
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    rustix::process::umask(old);
    old.bits() & 0o777
}

/// Gives an output file (a patch, a package) the mode a new file would
/// have, [`output_mode`]: temporary files are created 0600 and a rename
/// keeps that, which left outputs unreadable to anyone else. Set on the
/// open handle (`fchmod`), never by path.
pub fn set_output_permissions(f: &File) -> std::io::Result<()> {
    f.set_permissions(std::fs::Permissions::from_mode(output_mode()))
}

/// An output being written: a temporary file with a random name in the
/// destination's directory (created by handle, `O_EXCL|O_NOFOLLOW`),
/// renamed over the destination only when complete (replacing a symlink
/// there, never writing through it), and removed if dropped before.
pub(crate) struct Output {
    tmp: TempFile,
    name: std::ffi::OsString,
    dest: PathBuf,
}

impl Output {
    /// Starts writing `dest`.
    pub(crate) fn create(dest: &Path) -> Result<Output> {
        let ctx = || format!("creating {}", dest.display());
        let (dir, name) = Dir::parent_of(dest).map_err(|e| DeltaError::io(ctx(), e))?;
        let tmp = dir
            .temp_file(".ota-tmp-")
            .map_err(|e| DeltaError::io(ctx(), e))?;
        Ok(Output {
            tmp,
            name,
            dest: dest.to_path_buf(),
        })
    }

    /// The open temporary file.
    pub(crate) fn file(&self) -> &File {
        self.tmp.file()
    }

    /// Finishes a new file (a patch): mode [`output_mode`], then renamed in.
    pub(crate) fn finish_new(self, sync: bool) -> Result<()> {
        self.finish_with_mode(output_mode(), sync)
    }

    /// Sets `mode` on the handle, fsyncs (with `sync`) and renames into place.
    pub(crate) fn finish_with_mode(self, mode: u32, sync: bool) -> Result<()> {
        let dest = self.dest.clone();
        self.file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| DeltaError::io(format!("setting the mode of {}", dest.display()), e))?;
        self.tmp
            .persist(&self.name, sync)
            .map_err(|e| DeltaError::io(format!("renaming into {}", dest.display()), e))
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tmp.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.tmp.flush()
    }
}

/// Diffs two files into a patch file (written whole or not at all).
pub fn diff_files(old: &Path, new: &Path, patch: &Path, opts: &DiffOptions) -> Result<()> {
    let (o, n) = (Mapped::open(old)?, Mapped::open(new)?);
    let out = Output::create(patch)?;
    let mut w = BufWriter::with_capacity(1 << 20, out);
    diff_bytes(o.bytes(), n.bytes(), opts, &mut w)?;
    let out = w
        .into_inner()
        .map_err(|e| DeltaError::io(format!("writing {}", patch.display()), e.into_error()))?;
    out.finish_new(true)
}

/// Checks and settings of [`patch_file_with`].
#[derive(Clone, Copy, Debug)]
pub struct PatchOptions {
    /// fsync the result before the rename (leave it off only when the
    /// caller syncs).
    pub sync: bool,
    /// SHA-256 the old file must have, checked before anything is written
    /// (`ota patch --old-sha256`).
    pub old_sha256: Option<[u8; 32]>,
    /// SHA-256 the result must have, checked before it is renamed into
    /// place (`ota patch --expect-sha256`). `BSDIFF40` carries no hash, so
    /// for it this is the only check of the result.
    pub new_sha256: Option<[u8; 32]>,
}

impl Default for PatchOptions {
    fn default() -> Self {
        PatchOptions {
            sync: true,
            old_sha256: None,
            new_sha256: None,
        }
    }
}

/// Applies a patch file to `old`, writing `new` only if the result verifies.
/// The new file gets the old file's permissions. With `sync`, the result is
/// fsynced before the rename (leave it off only when the caller syncs).
/// See [`patch_file_with`] for expected hashes.
pub fn patch_file(old: &Path, patch: &Path, new: &Path, sync: bool) -> Result<Format> {
    patch_file_with(
        old,
        patch,
        new,
        &PatchOptions {
            sync,
            ..PatchOptions::default()
        },
    )
}

/// Applies a patch file to `old`, writing `new` only if the result verifies
/// and matches the hashes `opts` expects (nothing is written otherwise).
/// The new file gets the old file's permissions.
///
/// For `OTADIFF1` the old file is hashed on a second thread while the patch
/// is decoded into a temporary file; a wrong source still leaves nothing at
/// `new`.
pub fn patch_file_with(
    old: &Path,
    patch: &Path,
    new: &Path,
    opts: &PatchOptions,
) -> Result<Format> {
    let sync = opts.sync;
    let o = Mapped::open(old)?;
    let p =
        File::open(patch).map_err(|e| DeltaError::io(format!("opening {}", patch.display()), e))?;
    let mut reader = BufReader::with_capacity(1 << 20, p);
    let mut h = [0u8; HEADER_LEN];
    let n = read_up_to(&mut reader, &mut h)?;
    if n == HEADER_LEN && format::is_magic(&h[..8]) {
        let header = Header::parse(&h)?;
        let map = read_transform(&header, &mut reader)?;
        // Hashes the caller expects must be the ones the patch carries.
        if let Some(want) = opts.old_sha256.filter(|w| *w != header.old_sha256) {
            return Err(DeltaError::WrongSource {
                what: "the old file (as --old-sha256 says)".into(),
                expected: hex(&want),
                actual: format!("a patch made for {}", hex(&header.old_sha256)),
            });
        }
        if let Some(want) = opts.new_sha256.filter(|w| *w != header.new_sha256) {
            return Err(DeltaError::WrongResult {
                what: "the new file (as --expect-sha256 says)".into(),
                expected: hex(&want),
                actual: format!("{}, what the patch produces", hex(&header.new_sha256)),
            });
        }
        let old_bytes = o.bytes();
        if old_bytes.len() as u64 != header.old_size {
            check_source(&header, old_bytes)?;
        }
        let file = Output::create(new)?;
        let werr = |e| DeltaError::io(format!("writing {}", new.display()), e);
        // Three stages on two cores: this thread decodes; one thread hashes
        // OLD; one hashes NEW and writes it (groups handed over by channel).
        let (old_hash, decoded, written) = std::thread::scope(|s| {
            let hasher = s.spawn(|| sha256(old_bytes));
            // A transformed patch applies to OLD rewritten by its map
            // (computed here while OLD is hashed on the other thread).
            let source = match exe::source(old_bytes, header.transform, map.as_ref()) {
                Ok(s) => s,
                Err(e) => return (hasher.join(), Err(e), Err(Box::new("not started") as _)),
            };
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(0);
            let (spare_tx, spare_rx) = std::sync::mpsc::channel::<Vec<u8>>();
            let writer = s.spawn(move || -> std::io::Result<(Output, [u8; 32])> {
                let mut file = file;
                let mut h = Sha256::new();
                for buf in rx {
                    h.update(&buf);
                    file.write_all(&buf)?;
                    let _ = spare_tx.send(buf);
                }
                Ok((file, h.finalize().into()))
            });
            let mut pipe = Pipe {
                tx: Some(tx),
                spare: spare_rx,
            };
            let decoded = format::decode_with(&header, &source, &mut reader, &mut pipe, false);
            pipe.tx = None; // end of stream for the writer
            (hasher.join(), decoded, writer.join())
        });
        let old_hash = old_hash.map_err(|_| DeltaError::corrupt("hashing thread failed"))?;
        if old_hash != header.old_sha256 {
            return Err(DeltaError::WrongSource {
                what: "the old file".into(),
                expected: hex(&header.old_sha256),
                actual: hex(&old_hash),
            });
        }
        decoded?;
        let (file, got) = written
            .map_err(|_| DeltaError::corrupt("writer thread failed"))?
            .map_err(werr)?;
        if got != header.new_sha256 {
            return Err(DeltaError::WrongResult {
                what: "the new file".into(),
                expected: hex(&header.new_sha256),
                actual: hex(&got),
            });
        }
        finish(file, old, sync)?;
        return Ok(Format::Otadiff);
    }
    // Other formats carry no hash of OLD: check the caller's before writing.
    if let Some(want) = opts.old_sha256 {
        let got = sha256(o.bytes());
        if got != want {
            return Err(DeltaError::WrongSource {
                what: "the old file (as --old-sha256 says)".into(),
                expected: hex(&want),
                actual: hex(&got),
            });
        }
    }
    let out = Output::create(new)?;
    let mut w = Hashing {
        inner: BufWriter::with_capacity(1 << 20, out),
        hash: Sha256::new(),
    };
    let format = patch_bytes(o.bytes(), (&h[..n]).chain(reader), &mut w)?;
    let got: [u8; 32] = w.hash.finalize().into();
    if let Some(want) = opts.new_sha256.filter(|w| *w != got) {
        return Err(DeltaError::WrongResult {
            what: "the new file (as --expect-sha256 says)".into(),
            expected: hex(&want),
            actual: hex(&got),
        });
    }
    let out = w
        .inner
        .into_inner()
        .map_err(|e| DeltaError::io(format!("writing {}", new.display()), e.into_error()))?;
    finish(out, old, sync)?;
    Ok(format)
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Gives the result the old file's permissions and renames it into place.
fn finish(out: Output, old: &Path, sync: bool) -> Result<()> {
    let mode = std::fs::metadata(old)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or_else(|_| output_mode());
    out.finish_with_mode(mode, sync)
}

/// Hands decoded groups to the writer thread and takes its used buffers
/// back, so no group is copied; it fails once that thread has stopped.
struct Pipe {
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    spare: std::sync::mpsc::Receiver<Vec<u8>>,
}

impl format::GroupSink for Pipe {
    fn buffer(&mut self) -> Vec<u8> {
        self.spare.try_recv().unwrap_or_default()
    }
    fn put(&mut self, group: Vec<u8>) -> std::io::Result<()> {
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| std::io::Error::other("pipe closed"))?;
        tx.send(group)
            .map_err(|_| std::io::Error::other("the writer thread stopped"))
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(DeltaError::io("reading the patch", e)),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(old: &[u8], new: &[u8], format: Format) -> Vec<u8> {
        let opts = DiffOptions {
            format,
            threads: 2,
            level: 3,
            window_log: 0,
            exe_rounds: 1,
        };
        let mut patch = Vec::new();
        diff_bytes(old, new, &opts, &mut patch).unwrap();
        let mut out = Vec::new();
        assert_eq!(patch_bytes(old, &patch[..], &mut out).unwrap(), format);
        out
    }

    fn mutate(old: &[u8], edits: &[(u32, u8)]) -> Vec<u8> {
        let mut new = old.to_vec();
        for &(at, b) in edits {
            if new.is_empty() {
                new.push(b);
                continue;
            }
            let i = at as usize % new.len();
            match b % 4 {
                0 => new[i] = b,
                1 => new.insert(i, b),
                2 => {
                    new.remove(i);
                }
                _ => {
                    let end = (i + 100).min(new.len());
                    let block = new[i..end].to_vec();
                    new.extend_from_slice(&block);
                }
            }
        }
        new
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn random_pairs_roundtrip(old in prop::collection::vec(any::<u8>(), 0..4000), new in prop::collection::vec(any::<u8>(), 0..4000)) {
            prop_assert_eq!(roundtrip(&old, &new, Format::Otadiff), new.clone(), "OTADIFF1");
            prop_assert_eq!(roundtrip(&old, &new, Format::Bsdiff40), new, "BSDIFF40");
        }

        #[test]
        fn mutated_pairs_roundtrip(old in prop::collection::vec(0u8..8, 0..20000), edits in prop::collection::vec((any::<u32>(), any::<u8>()), 0..40)) {
            let new = mutate(&old, &edits);
            prop_assert_eq!(roundtrip(&old, &new, Format::Otadiff), new.clone(), "OTADIFF1");
            prop_assert_eq!(roundtrip(&old, &new, Format::Bsdiff40), new, "BSDIFF40");
        }
    }

    #[test]
    fn bsdiff40_first_match_not_at_old_start() {
        // NEW is a tail of OLD: the first op starts well into OLD, which
        // BSDIFF40 (no initial seek) must express with a leading seek entry.
        let old: Vec<u8> = (0..100_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect();
        let new = old[40_000..].to_vec();
        assert_eq!(roundtrip(&old, &new, Format::Bsdiff40), new);
    }

    #[test]
    fn large_groups_and_identical_files() {
        let old: Vec<u8> = (0..9_000_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 20) as u8)
            .collect();
        assert_eq!(roundtrip(&old, &old, Format::Otadiff), old);
        let mut new = old.clone();
        new[4_500_000] ^= 1;
        new.extend(std::iter::repeat_n(7u8, 5_000_000));
        assert_eq!(roundtrip(&old, &new, Format::Otadiff), new);
    }

    /// A reader that hands out at most 7 bytes per call and counts calls:
    /// the patch arriving in pieces, as from a download.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(7).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            self.1 += 1;
            Ok(n)
        }
    }

    #[test]
    fn applies_from_a_stream_read_front_to_back() {
        let old: Vec<u8> = (0..2_000_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 22) as u8)
            .collect();
        let mut new = old.clone();
        new[10] ^= 1;
        new.splice(900_000..900_000, b"inserted".repeat(1000));
        let mut patch = Vec::new();
        diff_bytes(&old, &new, &DiffOptions::default(), &mut patch).unwrap();
        let mut src = Trickle(&patch, 0);
        let mut out = Vec::new();
        patch_bytes(&old, &mut src, &mut out).unwrap();
        assert_eq!(out, new);
        assert!(
            src.1 * 7 >= patch.len(),
            "every byte came through the small reads"
        );
    }

    #[test]
    fn patch_file_refuses_a_result_that_does_not_verify() {
        let dir = tempfile::tempdir().unwrap();
        let old: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 21) as u8)
            .collect();
        let mut new = old.clone();
        new[77] ^= 9;
        let (o, p, n) = (
            dir.path().join("old"),
            dir.path().join("p"),
            dir.path().join("new"),
        );
        std::fs::write(&o, &old).unwrap();
        let mut patch = Vec::new();
        diff_bytes(&old, &new, &DiffOptions::default(), &mut patch).unwrap();
        patch[60] ^= 1; // the declared SHA-256 of NEW
        std::fs::write(&p, &patch).unwrap();
        let err = patch_file(&o, &p, &n, true).unwrap_err();
        assert!(matches!(err, DeltaError::WrongResult { .. }), "{err}");
        assert!(!n.exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no temporary file left"
        );
        patch[60] ^= 1;
        std::fs::write(&p, &patch).unwrap();
        patch_file(&o, &p, &n, true).unwrap();
        assert_eq!(std::fs::read(&n).unwrap(), new);
    }

    #[test]
    fn wrong_source_is_refused_before_writing() {
        let old = b"the quick brown fox jumps over the lazy dog".repeat(100);
        let new = b"the quick brown cat jumps over the lazy dog".repeat(100);
        let mut patch = Vec::new();
        diff_bytes(&old, &new, &DiffOptions::default(), &mut patch).unwrap();
        let mut wrong = old.clone();
        wrong[10] ^= 1;
        let mut out = Vec::new();
        let err = patch_bytes(&wrong, &patch[..], &mut out).unwrap_err();
        assert!(matches!(err, DeltaError::WrongSource { .. }), "{err}");
        assert!(out.is_empty());
        let err = patch_bytes(&old[1..], &patch[..], &mut out).unwrap_err();
        assert!(matches!(err, DeltaError::WrongSource { .. }), "{err}");
    }

    #[test]
    fn damaged_patches_are_errors_not_panics() {
        let old = b"abcdefghij".repeat(1000);
        let mut new = old.clone();
        new[500] = b'X';
        for format in [Format::Otadiff, Format::Bsdiff40] {
            let opts = DiffOptions {
                format,
                ..DiffOptions::default()
            };
            let mut patch = Vec::new();
            diff_bytes(&old, &new, &opts, &mut patch).unwrap();
            for cut in [0, 5, 8, 40, 95, 96, patch.len() / 2, patch.len() - 1] {
                let mut out = Vec::new();
                assert!(
                    patch_bytes(&old, &patch[..cut], &mut out).is_err(),
                    "{format:?} cut at {cut}"
                );
            }
            for i in (0..patch.len()).step_by(7) {
                let mut bad = patch.clone();
                bad[i] ^= 0x5a;
                let mut out = Vec::new();
                // Either an error, or (BSDIFF40 has no checksum) some output.
                let _ = patch_bytes(&old, &bad[..], &mut out);
                if format == Format::Otadiff && patch_bytes(&old, &bad[..], &mut Vec::new()).is_ok()
                {
                    panic!("a damaged OTADIFF1 patch at byte {i} verified");
                }
            }
        }
        let mut out = Vec::new();
        assert!(matches!(
            patch_bytes(&old, &b"GARBAGE!xx"[..], &mut out),
            Err(DeltaError::UnknownFormat(_))
        ));
    }

    #[test]
    fn huge_declared_sizes_do_not_allocate() {
        // A BSDIFF40 header claiming exabytes, and an OTADIFF1 group claiming 2^60 bytes.
        let mut p = b"BSDIFF40".to_vec();
        p.extend_from_slice(&offt(1 << 62));
        p.extend_from_slice(&offt(1 << 62));
        p.extend_from_slice(&offt(1 << 62));
        assert!(patch_bytes(b"", &p[..], &mut Vec::new()).is_err());

        let h = Header {
            old_size: 0,
            new_size: u64::MAX,
            old_sha256: sha256(b""),
            new_sha256: [0; 32],
            transform: Transform::None,
        };
        let mut body = Vec::new();
        crate::varint::put(&mut body, 1);
        crate::varint::put(&mut body, 1 << 60);
        crate::varint::put(&mut body, 0);
        crate::varint::put(&mut body, 0);
        let mut patch = h.to_bytes().to_vec();
        patch.extend(zstd::encode_all(&body[..], 1).unwrap());
        let err = patch_bytes(b"", &patch[..], &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("too large"), "{err}");
    }

    fn offt(x: i64) -> [u8; 8] {
        x.to_le_bytes()
    }
}
