//! The recovery simulator against scripts built from the input: each
//! statement picks a built-in (`mount`, `format`, `symlink`,
//! `package_extract_file`, `write_raw_image`, `apply_patch`, …) and its
//! paths from a small vocabulary of the paths the simulator writes
//! (partitions, `/cache/saved.file`, the sidecar, mount points,
//! `.patch` names) and of link targets that lead out (the sentinel's host
//! path, `/`, `../../..`). Before each run a real ROOT (`/dev/shm` when
//! there) is laid out with links planted, chosen by the input, that point
//! into a sentinel directory beside it. Oracle: the sentinel is byte for
//! byte unchanged (listing, contents, modes, link targets) and nothing
//! new appears beside ROOT, whatever the run returned.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ota_android::recovery::{self, ApplyOptions};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

struct World {
    base: PathBuf,
    old: Vec<u8>,
    new: Vec<u8>,
    patch: Vec<u8>,
    /// What the sentinel and the base directory look like untouched.
    clean: BTreeMap<String, (u32, String)>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let tmp = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        // Directories of earlier runs whose process is gone (libFuzzer
        // exits without destructors).
        if let Ok(rd) = std::fs::read_dir(&tmp) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if let Some(pid) = name.strip_prefix("ota-fuzz-simulator-") {
                    if !Path::new(&format!("/proc/{pid}")).exists() {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        let base = tmp.join(format!("ota-fuzz-simulator-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let s = base.join("sentinel");
        std::fs::create_dir_all(s.join("dir/sub")).unwrap();
        std::fs::write(s.join("victim"), b"precious").unwrap();
        std::fs::write(s.join("dir/keep"), b"keep").unwrap();
        std::fs::write(s.join("dir/sub/deep"), b"deep").unwrap();
        std::fs::write(s.join("meta"), b"system/x 0 0 644\n").unwrap();
        std::fs::write(s.join("saved.file"), b"not saved").unwrap();
        let old = b"the old file, version one of it ".repeat(16);
        let new = b"the new file, version two of it ".repeat(16);
        let mut patch = Vec::new();
        let opts = ota_delta::DiffOptions {
            format: ota_delta::Format::Bsdiff40,
            ..Default::default()
        };
        ota_delta::diff_bytes(&old, &new, &opts, &mut patch).unwrap();
        let clean = snapshot(&base);
        // The package format itself must be right, or no script would run.
        let probe = base.join("probe");
        recovery::apply_reader(
            std::io::Cursor::new(zip(&[
                (
                    "META-INF/com/google/android/updater-script",
                    b"package_extract_file(\"f\", \"/tmp/x\");",
                ),
                ("f", b"payload"),
            ])),
            "probe.zip",
            &probe,
            ApplyOptions::default(),
            &mut std::io::sink(),
        )
        .expect("the probe package installs");
        std::fs::remove_dir_all(&probe).unwrap();
        World {
            base,
            old,
            new,
            patch,
            clean,
        }
    })
}

/// The sentinel's entries (kind and mode, SHA-256 or link target) and the
/// names beside ROOT.
fn snapshot(base: &Path) -> BTreeMap<String, (u32, String)> {
    let mut out = BTreeMap::new();
    let mut beside: Vec<String> = std::fs::read_dir(base)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n != "root" && n != "pkg.zip")
        .collect();
    beside.sort();
    out.insert("(base)".into(), (0, beside.join("/")));
    let sentinel = base.join("sentinel");
    let mut stack = vec![sentinel.clone()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(&sentinel).unwrap().display().to_string();
        let what = if md.file_type().is_symlink() {
            format!("-> {}", std::fs::read_link(&p).unwrap().display())
        } else if md.is_dir() {
            let mut names: Vec<PathBuf> = std::fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            names.sort();
            let list: Vec<String> = names
                .iter()
                .map(|n| n.file_name().unwrap().to_string_lossy().to_string())
                .collect();
            stack.extend(names);
            format!("dir [{}]", list.join("/"))
        } else {
            hex(&Sha256::digest(std::fs::read(&p).unwrap()))
        };
        out.insert(rel, (md.mode(), what));
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sha1_hex(b: &[u8]) -> String {
    ota_android::package::sha1_hex(b)
}

/// Reads the input a byte at a time (zeros once it runs out).
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn pick<'v>(&mut self, v: &[&'v str]) -> &'v str {
        v[self.byte() as usize % v.len()]
    }
}

/// Device paths the simulator writes, reads or mounts.
const PATHS: &[&str] = &[
    "/system",
    "/system/x",
    "/system/bin/sh",
    "/system/f",
    "/system/f.patch",
    "/system/lib",
    "/system/lib/a.so",
    "/data",
    "/data/x",
    "/cache",
    "/cache/saved.file",
    "/cache/recovery/log",
    "/tmp/x",
    "/dev",
    "/dev/block/boot",
    "/dev/block/by-name/boot",
    "/dev/block/src",
    "/dev/mtd/boot",
    "/.ota-metadata",
    "/.ota-metadata.tmp",
    "/mnt/x",
    "/vendor/y",
    "/",
    "/system/../x",
    "/system/x\nsystem/bin/su 0 0 6755",
];

const MOUNT_POINTS: &[&str] = &[
    "/system", "/data", "/cache", "/vendor", "/dev", "/mnt/x", "/", "/tmp",
];

const MTD_NAMES: &[&str] = &["boot", "recovery", "../boot", "", "by-name"];

/// Symlink targets: inside ROOT, climbing out, and the sentinel's host paths.
fn targets(w: &World) -> Vec<String> {
    let s = w.base.join("sentinel");
    vec![
        s.display().to_string(),
        s.join("victim").display().to_string(),
        s.join("dir").display().to_string(),
        s.join("meta").display().to_string(),
        s.join("new").display().to_string(),
        "/".into(),
        "..".into(),
        "../../..".into(),
        "../../../sentinel".into(),
        "../../../../sentinel/victim".into(),
        "/system".into(),
        "/dev/block/boot".into(),
        "/cache".into(),
        "/proc/self/root".into(),
        "x".into(),
    ]
}

fn q(s: &str) -> String {
    format!(
        "\"{}\"",
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    )
}

/// One statement of the script.
fn statement(b: &mut Bytes, w: &World, t: &[String]) -> String {
    let tgt = |b: &mut Bytes| t[b.byte() as usize % t.len()].clone();
    let (old_sha, new_sha) = (sha1_hex(&w.old), sha1_hex(&w.new));
    match b.byte() % 20 {
        0 | 1 => format!(
            "mount(\"ext4\", \"EMMC\", \"/dev/block/x\", {});",
            q(b.pick(MOUNT_POINTS))
        ),
        2 => format!("unmount({});", q(b.pick(MOUNT_POINTS))),
        3 => format!(
            "format(\"ext4\", \"EMMC\", \"/dev/block/x\", \"0\", {});",
            q(b.pick(MOUNT_POINTS))
        ),
        4 | 5 => format!("symlink({}, {});", q(&tgt(b)), q(b.pick(PATHS))),
        6 | 7 => format!("package_extract_file(\"f\", {});", q(b.pick(PATHS))),
        8 => format!("package_extract_dir(\"system\", {});", q(b.pick(PATHS))),
        9 => format!(
            "write_raw_image(package_extract_file(\"f\"), {});",
            q(b.pick(MTD_NAMES))
        ),
        10 => format!(
            "apply_patch({}, \"-\", \"{new_sha}\", {}, \"{old_sha}\", package_extract_file(\"p\"));",
            q(b.pick(PATHS)),
            w.new.len()
        ),
        11 => format!(
            "apply_patch(\"EMMC:/dev/block/src:{}:{old_sha}\", {}, \"{new_sha}\", {}, \"{old_sha}\", package_extract_file(\"p\"));",
            w.old.len(),
            q(&format!("EMMC:{}", b.pick(PATHS))),
            w.new.len()
        ),
        12 => format!(
            "apply_patch(\"MTD:{}:{}:{old_sha}\", \"-\", \"{new_sha}\", {}, \"{old_sha}\", package_extract_file(\"p\"));",
            b.pick(MTD_NAMES),
            w.old.len(),
            w.new.len()
        ),
        13 => format!(
            "delete{}({});",
            if b.byte() % 2 == 0 { "" } else { "_recursive" },
            q(b.pick(PATHS))
        ),
        14 => format!("rename({}, {});", q(b.pick(PATHS)), q(b.pick(PATHS))),
        15 => format!(
            "set_perm_recursive(0, 0, 0{:o}, 0{:o}, {});",
            b.byte() as u32 * 4,
            b.byte() as u32 * 8,
            q(b.pick(PATHS))
        ),
        16 => format!(
            "set_metadata({}, \"uid\", 0, \"gid\", 0, \"mode\", 0{:o}, \"selabel\", {});",
            q(b.pick(PATHS)),
            b.byte() as u32 * 16,
            q(b.pick(&["u:object_r:x:s0", "a b\nsystem/bin/su 0 0 6755"]))
        ),
        17 => "wipe_cache();".into(),
        18 => format!("apply_patch_check({}, \"{old_sha}\");", q(b.pick(PATHS))),
        _ => format!("read_file({});", q(b.pick(PATHS))),
    }
}

/// Links planted before the run, at paths the simulator writes.
/// (Deeper paths first: a link planted at a parent would otherwise carry
/// the deeper plant into the sentinel.)
const PLANTS: &[&str] = &[
    "system/f.patch",
    "cache/saved.file",
    "cache",
    ".ota-metadata",
    ".ota-metadata.tmp",
    "dev/block/boot",
    "dev/mtd/boot",
    "dev/mtd",
    "data",
    "mnt",
    "system/lib",
    "vendor",
    "tmp",
];

fn lay_out(w: &World, b: &mut Bytes, t: &[String]) -> PathBuf {
    let root = w.base.join("root");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("system/bin")).unwrap();
    std::fs::create_dir_all(root.join("dev/block")).unwrap();
    std::fs::write(root.join("system/f"), &w.old).unwrap();
    std::fs::write(root.join("dev/block/src"), &w.old).unwrap();
    std::fs::create_dir_all(root.join("dev/mtd")).unwrap();
    std::fs::write(root.join("dev/mtd/boot"), &w.old).unwrap();
    let mask = u16::from_le_bytes([b.byte(), b.byte()]);
    for (i, p) in PLANTS.iter().enumerate() {
        if mask & (1 << i) != 0 {
            let link = root.join(p);
            let _ = std::fs::create_dir_all(link.parent().unwrap());
            let _ = std::fs::remove_file(&link);
            let to = &t[b.byte() as usize % 5]; // a sentinel path
            let _ = std::os::unix::fs::symlink(to, &link);
        }
    }
    root
}

/// A zip of stored entries (what `ZipArchive` needs, nothing more).
fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    fn crc32(d: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in d {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0xedb8_8320
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let off = out.len() as u32;
        let (crc, len, nl) = (crc32(data), data.len() as u32, name.len() as u16);
        let common = |v: &mut Vec<u8>| {
            v.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]); // version, flags, stored, time, date
            v.extend_from_slice(&crc.to_le_bytes());
            v.extend_from_slice(&len.to_le_bytes());
            v.extend_from_slice(&len.to_le_bytes());
            v.extend_from_slice(&nl.to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes());
        };
        out.extend_from_slice(b"PK\x03\x04");
        common(&mut out);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        central.extend_from_slice(b"PK\x01\x02");
        central.extend_from_slice(&[20, 3]);
        common(&mut central);
        central.extend_from_slice(&[0; 6]); // comment len, disk, internal attrs
        central.extend_from_slice(&(0o100644u32 << 16).to_le_bytes());
        central.extend_from_slice(&off.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_off = out.len() as u32;
    let n = entries.len() as u16;
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_off.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let t = targets(w);
    let mut b = Bytes(data);
    let root = lay_out(w, &mut b, &t);
    let mut script = String::new();
    if b.byte() % 2 == 1 {
        // Most installs start so; without it few statements pass the mount check.
        for mp in ["/system", "/cache", "/data"] {
            script.push_str(&format!(
                "mount(\"ext4\", \"EMMC\", \"/dev/block/x\", \"{mp}\");\n"
            ));
        }
    }
    for _ in 0..(1 + b.byte() % 24) {
        script.push_str(&statement(&mut b, w, &t));
        script.push('\n');
    }
    let pkg = zip(&[
        (
            "META-INF/com/google/android/updater-script",
            script.as_bytes(),
        ),
        ("f", b"payload"),
        ("p", &w.patch),
        ("system/bin/sh", b"#!"),
        ("system/lib/a.so", b"\x7fELF"),
    ]);
    let _ = recovery::apply_reader(
        std::io::Cursor::new(pkg),
        "fuzz.zip",
        &root,
        ApplyOptions::default(),
        &mut std::io::sink(),
    );
    let now = snapshot(&w.base);
    if now != w.clean {
        panic!("the sentinel or the directory beside ROOT changed\nscript:\n{script}\nbefore {:?}\nafter {now:?}", w.clean);
    }
});
