//! What the tree test files share: snapshots of real directories, writing
//! files with a mode, and fast diff options.
#![allow(dead_code)]

use ota_delta::DiffOptions;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// What a tree holds, for comparisons: path -> description.
pub fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let m = fs::symlink_metadata(e.path()).unwrap();
            let mode = m.permissions().mode() & 0o7777;
            let desc = if m.file_type().is_symlink() {
                format!("link {}", fs::read_link(e.path()).unwrap().display())
            } else if m.is_dir() {
                stack.push((e.path(), path.clone()));
                format!("dir {mode:o}")
            } else {
                format!("file {mode:o} {:?}", fs::read(e.path()).unwrap())
            };
            out.insert(path, desc);
        }
    }
    out
}

pub fn opts() -> DiffOptions {
    DiffOptions {
        level: 3,
        threads: 2,
        ..DiffOptions::default()
    }
}

pub fn write(root: &Path, rel: &str, data: &[u8], mode: u32) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, data).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
}

/// [`snapshot`], with the root's own mode under "".
pub fn snapshot_with_root(root: &Path) -> BTreeMap<String, String> {
    let mut out = snapshot(root);
    let m = fs::symlink_metadata(root).unwrap();
    out.insert(
        String::new(),
        format!("dir {:o}", m.permissions().mode() & 0o7777),
    );
    out
}
