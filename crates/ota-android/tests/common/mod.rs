//! What the Android test files share: fixture builds, tree snapshots,
//! checks that a ROOT holds a build, and reading package entries.
#![allow(dead_code)]

use ota_android::fixtures::Spec;
use ota_android::fs_config::FsConfig;
use ota_android::full;
use ota_android::package::BuildOptions;
use ota_android::props::Props;
use ota_android::recovery::{self, ApplyOptions};
use ota_android::target_files::{RawNode, TargetFiles};
use std::collections::BTreeMap;
use std::io::Read;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What a tree looks like: kind, contents or link target, permission bits.
pub fn snapshot(root: &Path) -> BTreeMap<String, (char, Vec<u8>, u32)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().to_string();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let mode = md.permissions().mode() & 0o7777;
            if md.file_type().is_symlink() {
                out.insert(
                    rel,
                    (
                        'l',
                        std::fs::read_link(&p)
                            .unwrap()
                            .to_string_lossy()
                            .as_bytes()
                            .to_vec(),
                        0,
                    ),
                );
            } else if md.is_dir() {
                out.insert(rel, ('d', vec![], 0));
                stack.push(p);
            } else {
                out.insert(rel, ('f', std::fs::read(&p).unwrap(), mode));
            }
        }
    }
    out
}

/// One entry of a package, as text.
pub fn entry_text(pkg: &Path, name: &str) -> String {
    let mut z = zip::ZipArchive::new(std::fs::File::open(pkg).unwrap()).unwrap();
    let mut s = String::new();
    z.by_name(name).unwrap().read_to_string(&mut s).unwrap();
    s
}

pub struct Builds {
    pub dir: tempfile::TempDir,
    pub specs: Vec<Spec>,
}

impl Builds {
    pub fn new() -> Builds {
        let dir = tempfile::tempdir().unwrap();
        let specs: Vec<Spec> = (1..=3).map(|v| Spec::sample(v).unwrap()).collect();
        for (i, s) in specs.iter().enumerate() {
            s.write_zip(&dir.path().join(format!("v{}.zip", i + 1)))
                .unwrap();
        }
        Builds { dir, specs }
    }
    pub fn tf(&self, v: usize) -> TargetFiles {
        TargetFiles::open(&self.dir.path().join(format!("v{v}.zip"))).unwrap()
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// A device at build `v`: its full package applied to an empty root.
    pub fn device_at(&self, v: usize, root: &Path) {
        let out = self.path(&format!("full-v{v}.zip"));
        if !out.exists() {
            full::write_full(&self.tf(v), &out, &BuildOptions::default()).unwrap();
        }
        let props = Props::parse(
            "ro.product.device=hammerhead\nro.build.date.utc=0\n",
            "props",
        )
        .unwrap();
        let mut log = Vec::new();
        recovery::apply(
            &out,
            root,
            ApplyOptions {
                props: Some(props),
                ..Default::default()
            },
            &mut log,
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&log)));
    }
}

/// Checks `root/system` against a build: same entries, contents, links,
/// file modes, and sidecar owners/labels/capabilities for every file and
/// directory filesystem_config lists.
pub fn assert_is_build(root: &Path, spec: &Spec) {
    assert_is_build_with(root, spec, true)
}

/// As [`assert_is_build`]; `labels: false` for `set_perm` scripts, which
/// set no labels or capabilities.
pub fn assert_is_build_with(root: &Path, spec: &Spec, labels: bool) {
    let tf_cfg: FsConfig = spec.fs_config();
    let got = snapshot(&root.join("system"));
    let mut want = BTreeMap::new();
    for (p, n) in spec.system_tree() {
        if p == "system" {
            continue;
        }
        let rel = p["system/".len()..].to_string();
        let mode = tf_cfg.get(&p).map_or(0, |m| m.mode);
        let v = match n {
            RawNode::Dir { .. } => ('d', vec![], 0),
            RawNode::File { data, .. } => ('f', data, mode),
            RawNode::Symlink(t) => ('l', t.into_bytes(), 0),
        };
        want.insert(rel, v);
    }
    // The recovery patch and its installer are added by the package.
    for extra in ["recovery-from-boot.p", "etc/install-recovery.sh"] {
        let (k, _, _) = got.get(extra).unwrap_or_else(|| panic!("missing {extra}"));
        assert_eq!(*k, 'f');
    }
    let got_filtered: BTreeMap<_, _> = got
        .iter()
        .filter(|(k, _)| *k != "recovery-from-boot.p" && *k != "etc/install-recovery.sh")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let gk: Vec<_> = got_filtered.keys().collect();
    let wk: Vec<_> = want.keys().collect();
    assert_eq!(gk, wk, "entries differ");
    for (k, w) in &want {
        let g = &got_filtered[k];
        assert_eq!(g.0, w.0, "{k}: kind");
        assert!(g.1 == w.1, "{k}: contents differ");
        assert_eq!(g.2, w.2, "{k}: mode {:o} want {:o}", g.2, w.2);
    }
    let recorded = recovery::read_metadata(root).unwrap();
    for (p, m) in &tf_cfg.entries {
        let is_link = matches!(spec.system_tree().get(p), Some(RawNode::Symlink(_)));
        if is_link {
            continue;
        }
        let r = recorded
            .get(p)
            .unwrap_or_else(|| panic!("{p} not recorded"));
        assert_eq!(
            (r.uid, r.gid, r.mode),
            (m.uid, m.gid, Some(m.mode)),
            "{p}: owner/mode"
        );
        if !labels {
            continue;
        }
        assert_eq!(r.selabel, m.selabel, "{p}: label");
        if matches!(spec.system_tree().get(p), Some(RawNode::File { .. })) {
            assert_eq!(
                r.capabilities.unwrap_or(0),
                m.capabilities.unwrap_or(0),
                "{p}: capabilities"
            );
        }
    }
    let ir = &recorded["system/etc/install-recovery.sh"];
    assert_eq!((ir.uid, ir.gid, ir.mode), (0, 0, Some(0o544)));
}

/// Writes an unsigned package of `script` and `files` into `dir`.
pub fn package(dir: &Path, script: &str, files: &[(&str, &[u8])]) -> std::path::PathBuf {
    let p = dir.join(format!("pkg-{}.zip", files.len() + script.len()));
    let mut z = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
    let o = zip::write::SimpleFileOptions::default();
    z.start_file("META-INF/com/google/android/updater-script", o)
        .unwrap();
    z.write_all(script.as_bytes()).unwrap();
    for (n, d) in files {
        z.start_file(*n, o).unwrap();
        z.write_all(d).unwrap();
    }
    z.finish().unwrap();
    p
}
