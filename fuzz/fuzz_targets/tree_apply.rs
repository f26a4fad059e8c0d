//! Tree patches applied to real directories, with a sentinel directory
//! beside the tree that must come out byte for byte unchanged (listing,
//! contents, modes) whatever happens.
//!
//! The fuzz input describes OLD and NEW (files, directories, symlinks into
//! the sentinel or inside the tree, names like the engine's own: `.ota-copy`,
//! `.ota-tmp-…`, `.ota-stage`), symlinks to plant beside the tree (the
//! stage, the backup, the journal and its temporary), and edits to make to
//! the manifest of the real patch `ota diff` writes for them (hostile paths,
//! modes with setuid, copies from symlinks, kinds swapped, duplicates).
//! Without edits the patch must apply, to a new directory and in place,
//! and give exactly NEW; with edits it may be refused. Either way nothing
//! outside the tree changes and nothing appears beside it.
#![no_main]
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ota_delta::tree::{self, ApplyOptions, Entry, From, Manifest};
use ota_delta::DiffOptions;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

const NAMES: &[&str] = &[
    "a",
    "b",
    "lib",
    "bin",
    "x.so",
    "README",
    "a.ota-copy",
    "lib.ota-copy",
    "x.so.ota-copy",
    ".ota-tmp-0000000000000000",
    "dev.ota-stage",
    "dev.ota-journal.tmp",
];
const HOSTILE: &[&str] = &[
    "../escape",
    "/tmp/ota-fuzz-escape",
    "a/../../escape",
    "lnk/escape",
    "a.ota-copy",
    "lib/a.ota-copy",
    "a/b/c",
    "",
];
const MODES: &[u32] = &[0o644, 0o755, 0o600, 0o444, 0o4755, 0o2755, 0o1777, 0o700];
/// Directory modes keep the owner's rwx so the harness can always clean up.
const DIR_MODES: &[u32] = &[0o755, 0o700, 0o1777, 0o2775, 0o750];

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Target {
    Victim,
    SentinelDir,
    Relative,
    Inside(u8),
    Dangling,
}

#[derive(Arbitrary, Debug)]
enum Kind {
    File { data: Vec<u8>, mode: u8 },
    Dir { mode: u8 },
    Link(Target),
}

#[derive(Arbitrary, Debug)]
struct Node {
    name: u8,
    parent: u8,
    kind: Kind,
}

#[derive(Arbitrary, Debug)]
enum Edit {
    Path { entry: u8, to: u8 },
    Rename { entry: u8, name: u8 },
    Mode { entry: u8, mode: u8 },
    CopyFrom { entry: u8, src: u8 },
    ToLink { entry: u8, to: Target },
    Delete { name: u8 },
    Duplicate { entry: u8 },
    Source { index: u8, to: u8 },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Plant {
    Stage,
    StageDirWithLinks,
    Backup,
    Journal,
    JournalTmp,
    OutStage,
}

#[derive(Arbitrary, Debug)]
struct Input {
    old: Vec<Node>,
    new: Vec<Node>,
    edits: Vec<Edit>,
    plants: Vec<(Plant, bool)>,
}

/// Everything under `root`: path -> kind, mode, content or link text.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let Ok(m) = fs::symlink_metadata(e.path()) else {
                continue;
            };
            let mode = m.permissions().mode() & 0o7777;
            let desc = if m.file_type().is_symlink() {
                format!("link {:?}", fs::read_link(e.path()).ok())
            } else if m.is_dir() {
                stack.push((e.path(), path.clone()));
                format!("dir {mode:o}")
            } else {
                format!("file {mode:o} {:?}", fs::read(e.path()).ok())
            };
            out.insert(path, desc);
        }
    }
    out
}

fn link_text(base: &Path, t: Target) -> String {
    match t {
        Target::Victim => base.join("sentinel/victim").display().to_string(),
        Target::SentinelDir => base.join("sentinel/sub").display().to_string(),
        Target::Relative => "../sentinel/victim".into(),
        Target::Inside(i) => NAMES[usize::from(i) % NAMES.len()].into(),
        Target::Dangling => "../../nowhere".into(),
    }
}

/// Builds a tree from `nodes`; returns the relative paths it holds.
fn build(base: &Path, root: &Path, nodes: &[Node]) -> Vec<String> {
    fs::create_dir(root).expect("tree root");
    let mut dirs: Vec<(String, u8)> = vec![(String::new(), 0)];
    let mut paths = Vec::new();
    for n in nodes.iter().take(24) {
        let parent = &dirs[usize::from(n.parent) % dirs.len()].0;
        let name = NAMES[usize::from(n.name) % NAMES.len()];
        let rel = if parent.is_empty() {
            name.to_owned()
        } else {
            format!("{parent}/{name}")
        };
        let p = root.join(&rel);
        if fs::symlink_metadata(&p).is_ok() {
            continue;
        }
        let ok = match &n.kind {
            Kind::File { data, mode } => {
                fs::write(&p, &data[..data.len().min(512)]).and_then(|()| {
                    fs::set_permissions(
                        &p,
                        fs::Permissions::from_mode(MODES[usize::from(*mode) % MODES.len()]),
                    )
                })
            }
            // Directory modes are set once the tree is filled.
            Kind::Dir { mode } => fs::create_dir(&p).map(|()| dirs.push((rel.clone(), *mode))),
            Kind::Link(t) => symlink(link_text(base, *t), &p),
        };
        if ok.is_ok() {
            paths.push(rel);
        }
    }
    // Directory modes once filled, deepest first.
    for (d, mode) in dirs.iter().skip(1).rev() {
        let mode = DIR_MODES[usize::from(*mode) % DIR_MODES.len()];
        let _ = fs::set_permissions(root.join(d), fs::Permissions::from_mode(mode));
    }
    paths
}

fn plant(base: &Path, p: Plant, to_dir: bool) {
    let target = if to_dir {
        base.join("sentinel/sub")
    } else {
        base.join("sentinel/victim")
    };
    let at = |n: &str| base.join(n);
    let _ = match p {
        Plant::Stage => symlink(&target, at("dev.ota-stage")),
        // create_dir, not create_dir_all: a symlink planted there first
        // must not lead the harness itself into the sentinel.
        Plant::StageDirWithLinks => fs::create_dir(at("dev.ota-stage"))
            .and_then(|()| fs::create_dir(at("dev.ota-stage/lib")))
            .and_then(|()| symlink(&target, at("dev.ota-stage/a")))
            .and_then(|()| symlink(&target, at("dev.ota-stage/lib/x.so"))),
        Plant::Backup => symlink(&target, at("dev.ota-old")),
        Plant::Journal => symlink(&target, at("dev.ota-journal")),
        Plant::JournalTmp => symlink(&target, at("dev.ota-journal.tmp")),
        Plant::OutStage => symlink(&target, at("out.ota-stage")),
    };
}

fn edit(m: &mut Manifest, e: &Edit) {
    let n = m.entries.len();
    let entry = |i: u8| usize::from(i) % n.max(1);
    match *e {
        Edit::Path { entry: i, to } if n > 0 => set_path(
            &mut m.entries[entry(i)],
            HOSTILE[usize::from(to) % HOSTILE.len()],
        ),
        Edit::Rename { entry: i, name } if n > 0 => set_path(
            &mut m.entries[entry(i)],
            NAMES[usize::from(name) % NAMES.len()],
        ),
        Edit::Mode { entry: i, mode } if n > 0 => match &mut m.entries[entry(i)] {
            Entry::File { mode: md, .. } | Entry::Dir { mode: md, .. } => {
                *md = MODES[usize::from(mode) % MODES.len()]
            }
            Entry::Symlink { .. } => {}
        },
        Edit::CopyFrom { entry: i, src } if n > 0 => {
            if let Entry::File { from, .. } = &mut m.entries[entry(i)] {
                *from = From::Copy(NAMES[usize::from(src) % NAMES.len()].into());
            }
        }
        Edit::ToLink { entry: i, to } if n > 0 => {
            let path = m.entries[entry(i)].path().to_owned();
            let target = match to {
                Target::Victim | Target::SentinelDir | Target::Relative => {
                    "../sentinel/victim".into()
                }
                Target::Inside(k) => NAMES[usize::from(k) % NAMES.len()].into(),
                Target::Dangling => "/".into(),
            };
            m.entries[entry(i)] = Entry::Symlink { path, target };
        }
        Edit::Delete { name } => m
            .deleted
            .push(NAMES[usize::from(name) % NAMES.len()].into()),
        Edit::Duplicate { entry: i } if n > 0 => {
            let e = m.entries[entry(i)].clone();
            m.entries.push(e);
        }
        Edit::Source { index, to } if !m.sources.is_empty() => {
            let k = usize::from(index) % m.sources.len();
            m.sources[k].path = NAMES[usize::from(to) % NAMES.len()].into();
        }
        _ => {}
    }
}

fn set_path(e: &mut Entry, to: &str) {
    match e {
        Entry::Dir { path, .. } | Entry::Symlink { path, .. } | Entry::File { path, .. } => {
            *path = to.to_owned()
        }
    }
}

fn tamper(patch: &[u8], edits: &[Edit]) -> Option<Vec<u8>> {
    let mlen = usize::try_from(u64::from_le_bytes(patch.get(8..16)?.try_into().ok()?)).ok()?;
    let json = zstd::decode_all(patch.get(16..16 + mlen)?).ok()?;
    let mut m: Manifest = serde_json::from_slice(&json).ok()?;
    for e in edits.iter().take(8) {
        edit(&mut m, e);
    }
    let z = zstd::encode_all(&serde_json::to_vec(&m).ok()?[..], 1).ok()?;
    let mut v = patch[..8].to_vec();
    v.extend_from_slice(&(z.len() as u64).to_le_bytes());
    v.extend_from_slice(&z);
    v.extend_from_slice(&patch[16 + mlen..]);
    Some(v)
}

fuzz_target!(|input: Input| {
    let shm = Path::new("/dev/shm");
    let tmp = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    };
    let tmp = tmp.expect("temporary directory");
    let base = tmp.path();
    let sentinel = base.join("sentinel");
    fs::create_dir_all(sentinel.join("sub")).expect("sentinel");
    fs::write(sentinel.join("victim"), b"sentinel\n").expect("sentinel");
    fs::set_permissions(sentinel.join("victim"), fs::Permissions::from_mode(0o600)).expect("mode");
    fs::write(sentinel.join("sub/deep"), b"deep\n").expect("sentinel");
    let before = snapshot(&sentinel);

    build(base, &base.join("old"), &input.old);
    build(base, &base.join("dev"), &input.old);
    build(base, &base.join("new"), &input.new);
    let p = base.join("p");
    let opts = DiffOptions {
        level: 1,
        threads: 1,
        ..DiffOptions::default()
    };
    if tree::diff_trees(&base.join("old"), &base.join("new"), &p, None, &opts).is_err() {
        assert_eq!(snapshot(&sentinel), before);
        return;
    }
    let clean = input.edits.is_empty();
    if !clean {
        let bytes = fs::read(&p).expect("patch");
        let Some(bad) = tamper(&bytes, &input.edits) else {
            return;
        };
        fs::write(&p, bad).expect("patch");
    }
    let mut planted = false;
    for &(pl, to_dir) in input.plants.iter().take(4) {
        plant(base, pl, to_dir);
        planted = true;
    }
    let allow = ApplyOptions { allow_setuid: true };
    let out = base.join("out");
    let r1 = tree::patch_tree_with(&base.join("old"), &p, &out, &allow);
    let r2 = tree::patch_tree_in_place_with(&base.join("dev"), &p, &allow);
    assert_eq!(
        snapshot(&sentinel),
        before,
        "the sentinel changed: {r1:?} {r2:?}"
    );
    if clean {
        let want = snapshot(&base.join("new"));
        if !planted {
            r1.as_ref().expect("a clean patch applies");
        }
        if r1.is_ok() {
            assert_eq!(snapshot(&out), want, "patched tree differs from NEW");
        }
        let journal_planted = input
            .plants
            .iter()
            .take(4)
            .any(|(p, _)| matches!(p, Plant::Journal));
        if !journal_planted {
            r2.as_ref().expect("a clean patch applies in place");
            assert_eq!(
                snapshot(&base.join("dev")),
                want,
                "in-place result differs from NEW"
            );
        }
    }
    // Nothing appeared beside the trees (an escape would land here).
    for e in fs::read_dir(base).expect("base").flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        assert!(
            ["sentinel", "old", "dev", "new", "p", "out"].contains(&n.as_str())
                || n.starts_with("dev.ota-")
                || n.starts_with("out.ota-"),
            "unexpected entry beside the tree: {n}"
        );
    }
    assert!(!Path::new("/tmp/ota-fuzz-escape").exists());
});
