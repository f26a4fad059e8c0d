//! Unit tests of `archive`: hostile archives of every kind, built byte by
//! byte (tar headers, pax records, zip records) so nothing the writers
//! refuse to produce is out of reach.

use super::*;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use tempfile::TempDir;

// ---------------------------------------------------------------- tar bytes

/// A tar stream assembled header by header.
#[derive(Default)]
struct RawTar(Vec<u8>);

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    // "LEN KEY=VALUE\n", LEN counting itself.
    let base = key.len() + value.len() + 3;
    let mut len = base + 1;
    while len != base + len.to_string().len() {
        len = base + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

impl RawTar {
    /// One header (name and link at most 100 bytes) and its data.
    fn raw(&mut self, name: &[u8], t: u8, data: &[u8], mode: u32, link: &[u8]) -> &mut Self {
        self.raw_sized(name, t, data, data.len() as u64, mode, link)
    }

    fn raw_sized(
        &mut self,
        name: &[u8],
        t: u8,
        data: &[u8],
        size: u64,
        mode: u32,
        link: &[u8],
    ) -> &mut Self {
        let mut h = tar::Header::new_gnu();
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name);
            old.linkname[..link.len()].copy_from_slice(link);
        }
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::new(t));
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        let pad = (BLOCK - data.len() % BLOCK) % BLOCK;
        self.0.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    /// A member; names over 100 bytes or with NUL go in a pax header.
    fn member(&mut self, name: &[u8], t: u8, data: &[u8], mode: u32, link: &[u8]) -> &mut Self {
        if name.len() > 100 || name.contains(&0) {
            self.pax(&[("path", name)]);
            self.raw(b"placeholder", t, data, mode, link)
        } else {
            self.raw(name, t, data, mode, link)
        }
    }

    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let data: Vec<u8> = records.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
        self.raw(b"PaxHeader", b'x', &data, 0o644, b"")
    }

    fn long_name(&mut self, name: &[u8]) -> &mut Self {
        let mut data = name.to_vec();
        data.push(0);
        self.raw(b"././@LongLink", b'L', &data, 0o644, b"")
    }

    fn finish(&self) -> Vec<u8> {
        let mut v = self.0.clone();
        v.extend_from_slice(&[0u8; 1024]);
        v
    }
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zst(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

// ---------------------------------------------------------------- zip bytes

struct ZipEntry {
    name: Vec<u8>,
    /// Bytes as stored (compressed with `method`).
    stored: Vec<u8>,
    method: u16,
    /// Declared uncompressed size.
    size: u32,
    crc: u32,
    /// Unix mode (type and permissions), or None for a DOS entry.
    mode: Option<u32>,
}

fn crc(data: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(data);
    c.sum()
}

impl ZipEntry {
    fn stored(name: &[u8], data: &[u8], mode: Option<u32>) -> ZipEntry {
        ZipEntry {
            name: name.to_vec(),
            stored: data.to_vec(),
            method: 0,
            size: data.len() as u32,
            crc: crc(data),
            mode,
        }
    }
}

/// A zip written record by record: local headers, central directory, end.
fn raw_zip(entries: &[ZipEntry]) -> Vec<u8> {
    let (mut out, mut central) = (Vec::new(), Vec::new());
    let u16le = |v: &mut Vec<u8>, x: u16| v.extend_from_slice(&x.to_le_bytes());
    let u32le = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&x.to_le_bytes());
    for e in entries {
        let offset = out.len() as u32;
        let flags = if std::str::from_utf8(&e.name).is_ok() {
            0x800
        } else {
            0
        };
        out.extend_from_slice(b"PK\x03\x04");
        u16le(&mut out, 20);
        u16le(&mut out, flags);
        u16le(&mut out, e.method);
        u16le(&mut out, 0);
        u16le(&mut out, 33);
        u32le(&mut out, e.crc);
        u32le(&mut out, e.stored.len() as u32);
        u32le(&mut out, e.size);
        u16le(&mut out, e.name.len() as u16);
        u16le(&mut out, 0);
        out.extend_from_slice(&e.name);
        out.extend_from_slice(&e.stored);

        central.extend_from_slice(b"PK\x01\x02");
        u16le(
            &mut central,
            if e.mode.is_some() { 3 << 8 | 20 } else { 20 },
        );
        u16le(&mut central, 20);
        u16le(&mut central, flags);
        u16le(&mut central, e.method);
        u16le(&mut central, 0);
        u16le(&mut central, 33);
        u32le(&mut central, e.crc);
        u32le(&mut central, e.stored.len() as u32);
        u32le(&mut central, e.size);
        u16le(&mut central, e.name.len() as u16);
        u16le(&mut central, 0);
        u16le(&mut central, 0);
        u16le(&mut central, 0);
        u16le(&mut central, 0);
        let external = match e.mode {
            Some(m) => m << 16,
            None if e.name.ends_with(b"/") => 0x10,
            None => 0,
        };
        u32le(&mut central, external);
        u32le(&mut central, offset);
        central.extend_from_slice(&e.name);
    }
    let cd_offset = out.len() as u32;
    let cd_len = central.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06");
    u16le(&mut out, 0);
    u16le(&mut out, 0);
    u16le(&mut out, entries.len() as u16);
    u16le(&mut out, entries.len() as u16);
    u32le(&mut out, cd_len);
    u32le(&mut out, cd_offset);
    u16le(&mut out, 0);
    out
}

// ---------------------------------------------------- one archive, any kind

/// An archive member, whatever the format.
#[derive(Clone, Copy)]
enum M<'a> {
    File(&'a [u8], &'a [u8], u32),
    Dir(&'a [u8], u32),
    Symlink(&'a [u8], &'a [u8]),
    HardLink(&'a [u8], &'a [u8]),
    CharDev(&'a [u8]),
    BlockDev(&'a [u8]),
    Fifo(&'a [u8]),
}

const KINDS: [ArchiveKind; 4] = [
    ArchiveKind::Tar,
    ArchiveKind::TarGz,
    ArchiveKind::TarZst,
    ArchiveKind::Zip,
];

fn tar_of(members: &[M]) -> Vec<u8> {
    let mut t = RawTar::default();
    for m in members {
        match *m {
            M::File(n, d, mode) => t.member(n, b'0', d, mode, b""),
            M::Dir(n, mode) => t.member(n, b'5', b"", mode, b""),
            M::Symlink(n, to) => t.member(n, b'2', b"", 0o777, to),
            M::HardLink(n, to) => t.member(n, b'1', b"", 0o644, to),
            M::CharDev(n) => t.member(n, b'3', b"", 0o644, b""),
            M::BlockDev(n) => t.member(n, b'4', b"", 0o644, b""),
            M::Fifo(n) => t.member(n, b'6', b"", 0o644, b""),
        };
    }
    t.finish()
}

/// None when the member has no zip form (hard links).
fn zip_of(members: &[M]) -> Option<Vec<u8>> {
    let mut entries = Vec::new();
    for m in members {
        entries.push(match *m {
            M::File(n, d, mode) => ZipEntry::stored(n, d, Some(S_IFREG | mode)),
            M::Dir(n, mode) => {
                let mut n = n.to_vec();
                if !n.ends_with(b"/") {
                    n.push(b'/');
                }
                ZipEntry::stored(&n, b"", Some(S_IFDIR | mode))
            }
            M::Symlink(n, to) => ZipEntry::stored(n, to, Some(S_IFLNK | 0o777)),
            M::HardLink(..) => return None,
            M::CharDev(n) => ZipEntry::stored(n, b"", Some(0o020000 | 0o644)),
            M::BlockDev(n) => ZipEntry::stored(n, b"", Some(0o060000 | 0o644)),
            M::Fifo(n) => ZipEntry::stored(n, b"", Some(0o010000 | 0o644)),
        });
    }
    Some(raw_zip(&entries))
}

fn bytes_of(kind: ArchiveKind, members: &[M]) -> Option<Vec<u8>> {
    match kind {
        ArchiveKind::Tar => Some(tar_of(members)),
        ArchiveKind::TarGz => Some(gz(&tar_of(members))),
        ArchiveKind::TarZst => Some(zst(&tar_of(members))),
        ArchiveKind::Zip => zip_of(members),
    }
}

/// A scratch area: the archive, an empty `dest`, and `outside`, a
/// directory that must stay empty whatever the archive says.
struct Scratch {
    dir: TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("dest")).unwrap();
        std::fs::create_dir(dir.path().join("outside")).unwrap();
        Scratch { dir }
    }
    fn dest(&self) -> PathBuf {
        self.dir.path().join("dest")
    }
    fn outside(&self) -> PathBuf {
        self.dir.path().join("outside")
    }
    fn outside_untouched(&self) {
        let left: Vec<_> = std::fs::read_dir(self.outside())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "written outside dest: {left:?}");
        let top: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        for name in top {
            assert!(
                ["dest", "outside", "archive"].contains(&name.as_str()),
                "written beside dest: {name}"
            );
        }
    }
    fn unpack_bytes(&self, kind: ArchiveKind, bytes: &[u8], limits: &UnpackLimits) -> Result<()> {
        let path = self.dir.path().join("archive");
        std::fs::write(&path, bytes).unwrap();
        unpack(&path, kind, &self.dest(), limits)
    }
}

/// Unpacks `members` as every kind; returns the error text per kind
/// (None: unpacked). Checks nothing was written outside `dest`.
fn each_kind(members: &[M], limits: &UnpackLimits) -> Vec<(ArchiveKind, Option<String>)> {
    let mut out = Vec::new();
    for kind in KINDS {
        let s = Scratch::new();
        let Some(bytes) = bytes_of(kind, members) else {
            continue;
        };
        let r = s.unpack_bytes(kind, &bytes, limits);
        s.outside_untouched();
        out.push((kind, r.err().map(|e| e.to_string())));
    }
    out
}

/// Every kind refuses `members` with a message containing all of `needles`.
fn refused_by_all(members: &[M], needles: &[&str]) {
    for (kind, err) in each_kind(members, &UnpackLimits::default()) {
        let err = err.unwrap_or_else(|| panic!("{kind:?}: accepted"));
        for n in needles {
            assert!(err.contains(n), "{kind:?}: {err:?} lacks {n:?}");
        }
    }
}

fn mode_of(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

// -------------------------------------------------------------------- tests

#[test]
fn detects_by_content_not_name() {
    let dir = tempfile::tempdir().unwrap();
    let tar = tar_of(&[M::File(b"a", b"hello", 0o644)]);
    let zip = zip_of(&[M::File(b"a", b"hello", 0o644)]).unwrap();
    let cases: Vec<(&str, Vec<u8>, Option<ArchiveKind>)> = vec![
        ("t.bin", tar.clone(), Some(ArchiveKind::Tar)),
        ("t.zip", gz(&tar), Some(ArchiveKind::TarGz)),
        ("t.tar", zst(&tar), Some(ArchiveKind::TarZst)),
        ("t.tgz", zip, Some(ArchiveKind::Zip)),
        ("plain.tar", b"just text\n".to_vec(), None),
        ("empty.tar.gz", Vec::new(), None),
        ("text.gz", gz(&[b'x'; 4000]), None),
        ("short.gz", gz(b"tiny"), None),
        ("text.zst", zst(&[b'x'; 4000]), None),
        ("bad.gz", vec![0x1f, 0x8b, 0, 1, 2, 3], None),
        ("bad.zst", vec![0x28, 0xb5, 0x2f, 0xfd, 9, 9, 9], None),
        ("tarless.tar", vec![0u8; 1024], None),
    ];
    for (name, bytes, want) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(detect(&p).unwrap(), want, "{name}");
    }
    let err = detect(&dir.path().join("missing")).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn unpacks_every_kind_with_modes_links_and_implicit_parents() {
    let elf = std::fs::read("/proc/self/exe").unwrap();
    let elf = &elf[..elf.len().min(300_000)];
    let long = "d/".repeat(60) + "deep.txt";
    let members = [
        M::Dir(b"./", 0o755),
        M::Dir(b"bin", 0o755),
        M::File(b"bin/app", elf, 0o4755),
        M::File(b"./etc/conf", b"key = value\n", 0o640),
        M::Symlink(b"lib/app", b"../bin/app"),
        M::Symlink(b"passwd", b"/etc/passwd"),
        M::Dir(b"ro/", 0o555),
        M::File(b"ro/inside", b"written before ro gets its mode", 0o444),
        M::File(b"empty", b"", 0o600),
        M::File(long.as_bytes(), b"deep", 0o644),
        // Listed after what it holds: made implicitly, then given its mode.
        M::Dir(b"etc", 0o700),
    ];
    for kind in KINDS {
        let s = Scratch::new();
        let bytes = bytes_of(kind, &members).unwrap();
        s.unpack_bytes(kind, &bytes, &UnpackLimits::default())
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        let d = s.dest();
        assert_eq!(std::fs::read(d.join("bin/app")).unwrap(), elf);
        assert_eq!(mode_of(&d.join("bin/app")), 0o755, "{kind:?}: setuid kept");
        assert_eq!(std::fs::read(d.join("etc/conf")).unwrap(), b"key = value\n");
        assert_eq!(mode_of(&d.join("etc/conf")), 0o640);
        assert_eq!(mode_of(&d.join("etc")), 0o700);
        assert_eq!(mode_of(&d.join("lib")), 0o755, "implicit parent");
        assert_eq!(
            std::fs::read_link(d.join("lib/app")).unwrap(),
            Path::new("../bin/app")
        );
        assert_eq!(
            std::fs::read_link(d.join("passwd")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(mode_of(&d.join("ro")), 0o555);
        assert_eq!(mode_of(&d.join("ro/inside")), 0o444);
        assert_eq!(std::fs::read(d.join("empty")).unwrap(), b"");
        assert_eq!(std::fs::read(d.join(&long)).unwrap(), b"deep");
        s.outside_untouched();
        // Let the temporary directory be removed.
        std::fs::set_permissions(d.join("ro"), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn gnu_long_names_and_pax_paths() {
    // Over 100 bytes, in components under NAME_MAX.
    let long = ["x".repeat(200), "y".repeat(200)].join("/");
    let mut t = RawTar::default();
    t.long_name(long.as_bytes())
        .raw(b"truncated", b'0', b"gnu", 0o644, b"");
    t.pax(&[("path", b"pax/name"), ("mtime", b"1.5"), ("comment", b"hi")])
        .raw(b"ignored", b'0', b"pax", 0o644, b"");
    t.pax(&[("linkpath", long.as_bytes())])
        .raw(b"link", b'2', b"", 0o777, b"short");
    let s = Scratch::new();
    s.unpack_bytes(ArchiveKind::Tar, &t.finish(), &UnpackLimits::default())
        .unwrap();
    assert_eq!(std::fs::read(s.dest().join(&long)).unwrap(), b"gnu");
    assert_eq!(std::fs::read(s.dest().join("pax/name")).unwrap(), b"pax");
    assert_eq!(
        std::fs::read_link(s.dest().join("link")).unwrap(),
        Path::new(&long)
    );
}

#[test]
fn hostile_names_are_refused_by_every_kind() {
    for (name, why) in [
        (&b"/etc/evil"[..], "absolute"),
        (b"../evil", "'..'"),
        (b"a/../../evil", "'..'"),
        (b"a//b", "empty"),
        (b"a/./b", "'.'"),
        (b"a\0b", "NUL"),
        (b"bad\xff\xfename", "not UTF-8"),
        (b"", "empty"),
    ] {
        refused_by_all(
            &[
                M::File(b"ok", b"fine", 0o644),
                M::File(name, b"evil", 0o644),
            ],
            &["member", why],
        );
        refused_by_all(&[M::Symlink(name, b"/etc")], &[why]);
    }
    // The member is named in the message.
    refused_by_all(&[M::File(b"../x", b"", 0o644)], &["\"../x\""]);
}

#[test]
fn nothing_is_written_through_a_symlink() {
    let s = Scratch::new();
    let outside = s.outside();
    let out = outside.to_str().unwrap().as_bytes();
    refused_by_all(
        &[M::Symlink(b"a", out), M::File(b"a/passwd", b"pwned", 0o644)],
        &["\"a/passwd\"", "symlink"],
    );
    refused_by_all(
        &[M::Symlink(b"up", b".."), M::File(b"up/x", b"pwned", 0o644)],
        &["symlink"],
    );
    refused_by_all(
        &[M::Symlink(b"a", out), M::Dir(b"a/sub", 0o755)],
        &["symlink"],
    );
    refused_by_all(
        &[M::Symlink(b"a", out), M::Symlink(b"a/b", b"x")],
        &["symlink"],
    );
    // Deeper: a symlink two levels down, then a member through it.
    refused_by_all(
        &[
            M::Dir(b"d", 0o755),
            M::Symlink(b"d/l", out),
            M::File(b"d/l/x/y", b"pwned", 0o644),
        ],
        &["\"d/l\"", "symlink"],
    );
    // Replacing the symlink by a directory of the same name is a duplicate.
    refused_by_all(
        &[M::Symlink(b"a", out), M::Dir(b"a", 0o755)],
        &["duplicate member"],
    );
    // Under a file.
    refused_by_all(
        &[M::File(b"f", b"x", 0o644), M::File(b"f/g", b"y", 0o644)],
        &["made a file"],
    );
}

#[test]
fn symlinks_planted_by_someone_else_are_not_followed() {
    // The member map catches what the archive does; the handles catch a
    // symlink that appears in dest by other means.
    let s = Scratch::new();
    let archive = s.dir.path().join("archive");
    let limits = UnpackLimits::default();
    let dest = s.dest();
    let mut out = Out::open(&archive, &dest, &limits).unwrap();
    std::os::unix::fs::symlink(s.outside(), s.dest().join("p")).unwrap();
    std::os::unix::fs::symlink(s.outside().join("f"), s.dest().join("f")).unwrap();
    std::os::unix::fs::symlink(s.outside(), s.dest().join("q")).unwrap();
    assert!(out.file("p/x", "p/x", 0o644, 1, &mut &b"x"[..]).is_err());
    assert!(out.file("f", "f", 0o644, 1, &mut &b"x"[..]).is_err());
    assert!(out.symlink("p/l", "p/l", b"t").is_err());
    // Even if the map believed q a directory, opening it does not follow.
    out.nodes.insert(
        "q".into(),
        Node::Dir {
            mode: 0o755,
            explicit: true,
        },
    );
    assert!(out.file("q/x", "q/x", 0o644, 1, &mut &b"x"[..]).is_err());
    assert!(out.dir("q/d", "q/d", 0o755).is_err());
    assert!(out.finish().is_err(), "fchmod through q");
    s.outside_untouched();
}

#[test]
fn links_devices_and_fifos_are_refused() {
    refused_by_all(
        &[
            M::File(b"target", b"x", 0o644),
            M::HardLink(b"h", b"target"),
        ],
        &["\"h\"", "hard link"],
    );
    refused_by_all(
        &[M::HardLink(b"h", b"/etc/shadow")],
        &["hard link", "/etc/shadow"],
    );
    refused_by_all(&[M::CharDev(b"dev/null")], &["\"dev/null\""]);
    refused_by_all(&[M::BlockDev(b"sda")], &["\"sda\""]);
    refused_by_all(&[M::Fifo(b"pipe")], &["\"pipe\""]);
    // Every tar type byte we do not unpack.
    for t in [b'S', b'V', b'M', b'N', b'Z', b'g' + 1] {
        let mut tar = RawTar::default();
        tar.raw(b"odd", t, b"", 0o644, b"");
        let s = Scratch::new();
        let err = s
            .unpack_bytes(ArchiveKind::Tar, &tar.finish(), &UnpackLimits::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"odd\""), "{}: {err}", t as char);
    }
}

#[test]
fn duplicates_are_refused() {
    refused_by_all(
        &[M::File(b"a", b"1", 0o644), M::File(b"a", b"2", 0o644)],
        &["\"a\"", "duplicate member"],
    );
    refused_by_all(
        &[M::File(b"a", b"1", 0o644), M::File(b"./a", b"2", 0o644)],
        &["duplicate member"],
    );
    refused_by_all(
        &[M::Dir(b"a", 0o755), M::File(b"a", b"2", 0o644)],
        &["duplicate member"],
    );
    refused_by_all(
        &[M::File(b"a", b"1", 0o644), M::Dir(b"a", 0o755)],
        &["duplicate member"],
    );
    refused_by_all(
        &[M::Dir(b"a", 0o755), M::Dir(b"a/", 0o700)],
        &["duplicate member"],
    );
    refused_by_all(
        &[M::Symlink(b"a", b"x"), M::Symlink(b"a", b"y")],
        &["duplicate member"],
    );
    // A directory made for a member's parent may be listed afterwards.
    for (kind, err) in each_kind(
        &[M::File(b"a/b", b"1", 0o644), M::Dir(b"a", 0o750)],
        &UnpackLimits::default(),
    ) {
        assert_eq!(err, None, "{kind:?}");
    }
}

#[test]
fn zip_duplicates_the_reader_would_fold_are_refused() {
    let zip = raw_zip(&[
        ZipEntry::stored(b"a", b"first", Some(S_IFREG | 0o644)),
        ZipEntry::stored(b"a", b"second", Some(S_IFREG | 0o644)),
    ]);
    let s = Scratch::new();
    let err = s
        .unpack_bytes(ArchiveKind::Zip, &zip, &UnpackLimits::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("duplicate member"), "{err}");
    assert!(std::fs::read_dir(s.dest()).unwrap().next().is_none());
}

#[test]
fn entry_limit_counts_members_and_implicit_parents() {
    let limits = UnpackLimits {
        max_entries: 3,
        max_total_bytes: 1 << 20,
    };
    let three = [
        M::File(b"a", b"", 0o644),
        M::File(b"b", b"", 0o644),
        M::File(b"c", b"", 0o644),
    ];
    for (kind, err) in each_kind(&three, &limits) {
        assert_eq!(err, None, "{kind:?}");
    }
    let four = [
        M::File(b"a", b"", 0o644),
        M::File(b"b", b"", 0o644),
        M::File(b"c", b"", 0o644),
        M::File(b"d", b"", 0o644),
    ];
    for (kind, err) in each_kind(&four, &limits) {
        let err = err.unwrap_or_else(|| panic!("{kind:?} accepted"));
        assert!(err.contains("limit of 3"), "{kind:?}: {err}");
    }
    // One member, three implicit parents.
    for (kind, err) in each_kind(&[M::File(b"x/y/z/f", b"", 0o644)], &limits) {
        let err = err.unwrap_or_else(|| panic!("{kind:?} accepted"));
        assert!(err.contains("limit of 3"), "{kind:?}: {err}");
    }
}

#[test]
fn byte_limit_counts_declared_sizes() {
    let limits = UnpackLimits {
        max_entries: 100,
        max_total_bytes: 1000,
    };
    let data = [7u8; 600];
    for (kind, err) in each_kind(&[M::File(b"a", &data, 0o644)], &limits) {
        assert_eq!(err, None, "{kind:?}");
    }
    for (kind, err) in each_kind(
        &[M::File(b"a", &data, 0o644), M::File(b"b", &data, 0o644)],
        &limits,
    ) {
        let err = err.unwrap_or_else(|| panic!("{kind:?} accepted"));
        assert!(err.contains("limit of 1000 bytes"), "{kind:?}: {err}");
    }
    // A tar header may declare any size: refused before reading it.
    let mut t = RawTar::default();
    t.raw_sized(b"huge", b'0', b"", 1 << 40, 0o644, b"");
    let s = Scratch::new();
    let err = s
        .unpack_bytes(ArchiveKind::Tar, &t.finish(), &limits)
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"huge\"") && err.contains("limit"), "{err}");
    assert!(!s.dest().join("huge").exists());
    // A zip over the limit is refused before anything is written.
    let zip = zip_of(&[M::File(b"a", &data, 0o644), M::File(b"b", &data, 0o644)]).unwrap();
    let s = Scratch::new();
    assert!(s.unpack_bytes(ArchiveKind::Zip, &zip, &limits).is_err());
    assert!(std::fs::read_dir(s.dest()).unwrap().next().is_none());
}

#[test]
fn a_zip_entry_lying_about_its_size_writes_no_more_than_declared() {
    let big = vec![0u8; 4 << 20];
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&big).unwrap();
    let deflated = enc.finish().unwrap();
    let liar = ZipEntry {
        name: b"bomb".to_vec(),
        stored: deflated,
        method: 8,
        size: 10,
        crc: crc(&big[..10]),
        mode: Some(S_IFREG | 0o644),
    };
    let zip = raw_zip(&[liar]);
    for limits in [
        UnpackLimits::default(),
        UnpackLimits {
            max_entries: 10,
            max_total_bytes: 100,
        },
    ] {
        let s = Scratch::new();
        let err = s
            .unpack_bytes(ArchiveKind::Zip, &zip, &limits)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"bomb\"") && err.contains("more bytes than the 10"),
            "{err}"
        );
        let written = std::fs::metadata(s.dest().join("bomb")).unwrap().len();
        assert_eq!(written, 10);
    }
    // And one claiming more than it has.
    let short = ZipEntry {
        size: 100,
        ..ZipEntry::stored(b"short", b"only this", Some(S_IFREG | 0o644))
    };
    let s = Scratch::new();
    let err = s
        .unpack_bytes(
            ArchiveKind::Zip,
            &raw_zip(&[short]),
            &UnpackLimits::default(),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"short\""), "{err}");
}

#[test]
fn zip_entries_checked_against_their_mode() {
    let cases = [
        // A directory by mode without the trailing slash.
        ZipEntry::stored(b"d", b"", Some(S_IFDIR | 0o755)),
        // A file or symlink named like a directory.
        ZipEntry::stored(b"f/", b"", Some(S_IFREG | 0o644)),
        ZipEntry::stored(b"l/", b"x", Some(S_IFLNK | 0o777)),
        // A socket.
        ZipEntry::stored(b"s", b"", Some(0o140000 | 0o644)),
    ];
    for e in cases {
        let name = shown(&e.name);
        let s = Scratch::new();
        let err = s
            .unpack_bytes(ArchiveKind::Zip, &raw_zip(&[e]), &UnpackLimits::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("{name:?}")), "{err}");
    }
    // DOS entries (no Unix mode) are files and directories by name.
    let s = Scratch::new();
    s.unpack_bytes(
        ArchiveKind::Zip,
        &raw_zip(&[
            ZipEntry::stored(b"dosdir/", b"", None),
            ZipEntry::stored(b"dosdir/f.txt", b"dos", None),
        ]),
        &UnpackLimits::default(),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(s.dest().join("dosdir/f.txt")).unwrap(),
        b"dos"
    );
}

#[test]
fn tar_extension_headers_are_bounded_and_checked() {
    let limits = UnpackLimits::default();
    let check = |t: &RawTar, needle: &str| {
        for kind in [ArchiveKind::Tar, ArchiveKind::TarGz, ArchiveKind::TarZst] {
            let raw = t.finish();
            let bytes = match kind {
                ArchiveKind::Tar => raw,
                ArchiveKind::TarGz => gz(&raw),
                _ => zst(&raw),
            };
            let s = Scratch::new();
            let err = s
                .unpack_bytes(kind, &bytes, &limits)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{kind:?}: {err}");
            s.outside_untouched();
        }
    };
    // A GNU long name larger than any path.
    let mut t = RawTar::default();
    t.long_name(&[b'a'; 10_000])
        .raw(b"x", b'0', b"", 0o644, b"");
    check(&t, "GNU long name");
    // A pax header declaring gigabytes (not read into memory).
    let mut t = RawTar::default();
    t.raw_sized(b"PaxHeader", b'x', b"", 8 << 30, 0o644, b"");
    check(&t, "pax header");
    // A pax size that disagrees with the header: parsers would disagree.
    let mut t = RawTar::default();
    t.pax(&[("size", b"5")])
        .raw(b"x", b'0', b"0123456789", 0o644, b"");
    check(&t, "pax size");
    // Sparse records.
    let mut t = RawTar::default();
    t.pax(&[("GNU.sparse.map", b"0,10")])
        .raw(b"x", b'0', b"", 0o644, b"");
    check(&t, "sparse");
    // Two long names for one member.
    let mut t = RawTar::default();
    t.long_name(b"one")
        .long_name(b"two")
        .raw(b"x", b'0', b"", 0o644, b"");
    check(&t, "two GNU long names");
    // An extension header describing nothing.
    let mut t = RawTar::default();
    t.raw(b"x", b'0', b"", 0o644, b"").long_name(b"dangling");
    check(&t, "describes no member");
    // A global header that renames every member.
    let mut t = RawTar::default();
    let data = pax_record("path", b"../evil");
    t.raw(b"pax_global_header", b'g', &data, 0o644, b"")
        .raw(b"x", b'0', b"", 0o644, b"");
    check(&t, "global header");
    // A malformed pax record.
    let mut t = RawTar::default();
    t.raw(b"PaxHeader", b'x', b"99 path=x\n", 0o644, b"")
        .raw(b"x", b'0', b"", 0o644, b"");
    check(&t, "pax");
    // git archive's global header (a comment) is fine.
    let mut t = RawTar::default();
    let data = pax_record("comment", b"0123456789abcdef");
    t.raw(b"pax_global_header", b'g', &data, 0o644, b"")
        .raw(b"x", b'0', b"ok", 0o644, b"");
    let s = Scratch::new();
    s.unpack_bytes(ArchiveKind::Tar, &t.finish(), &limits)
        .unwrap();
    assert_eq!(std::fs::read(s.dest().join("x")).unwrap(), b"ok");
}

#[test]
fn damaged_archives_are_errors_not_panics() {
    let members = [
        M::File(b"a", &[1u8; 5000], 0o644),
        M::File(b"b", &[2u8; 5000], 0o644),
    ];
    for kind in KINDS {
        let bytes = bytes_of(kind, &members).unwrap();
        for cut in [10, bytes.len() / 3, bytes.len() / 2, bytes.len() * 9 / 10] {
            let s = Scratch::new();
            let r = s.unpack_bytes(kind, &bytes[..cut], &UnpackLimits::default());
            assert!(r.is_err(), "{kind:?} cut at {cut}");
            s.outside_untouched();
        }
        // A flipped byte in the middle: refused, or (for a plain tar, whose
        // data carries no checksum) unpacked without escaping.
        let mut flipped = bytes.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x55;
        let s = Scratch::new();
        let _ = s.unpack_bytes(kind, &flipped, &UnpackLimits::default());
        s.outside_untouched();
    }
    // A bad header checksum.
    let mut raw = tar_of(&[M::File(b"a", b"x", 0o644)]);
    raw[0] = b'b';
    let s = Scratch::new();
    let err = s
        .unpack_bytes(ArchiveKind::Tar, &raw, &UnpackLimits::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("checksum"), "{err}");
}

#[test]
fn destination_must_be_an_empty_directory() {
    let s = Scratch::new();
    std::fs::write(s.dest().join("already"), b"x").unwrap();
    let tar = tar_of(&[M::File(b"a", b"x", 0o644)]);
    let err = s
        .unpack_bytes(ArchiveKind::Tar, &tar, &UnpackLimits::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("not an empty directory"), "{err}");
    assert!(!s.dest().join("a").exists());
}

#[test]
fn symlink_text_must_be_utf8_and_sane() {
    refused_by_all(&[M::Symlink(b"l", b"\xff\xfe")], &["\"l\"", "UTF-8"]);
    refused_by_all(&[M::Symlink(b"l", b"")], &["\"l\"", "empty"]);
}
