//! Choosing `set_perm_recursive`/`set_metadata_recursive` calls: for each
//! directory, the (uid, gid, dmode, fmode, selabel, capabilities) that
//! matches most of its descendants, then one call per path that differs
//! (releasetools' `Item.CountChildMetadata` / `Item.SetPermissions`).
//!
//! Ties, which releasetools breaks by dict order, are broken here by the
//! larger value, so the script is the same on every run.

use crate::error::{AndroidError, Result};
use crate::fs_config::{FsConfig, Meta};
use crate::script::Script;
use crate::target_files::{RawNode, Tree};
use std::collections::{BTreeMap, HashMap};

/// What a recursive call sets on a subtree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subtree {
    /// Owner of everything.
    pub uid: u32,
    /// Group of everything.
    pub gid: u32,
    /// Mode of directories.
    pub dmode: u32,
    /// Mode of files.
    pub fmode: u32,
    /// Label of everything.
    pub selabel: Option<String>,
    /// Capabilities of everything.
    pub capabilities: Option<u64>,
}

type Key = (
    u32,
    u32,
    Option<u32>,
    Option<u32>,
    Option<String>,
    Option<u64>,
);

struct Item {
    name: String,
    meta: Meta,
    /// Children, sorted by name; `None` for files.
    children: Option<Vec<usize>>,
    best: Option<Subtree>,
}

/// Emits the permission statements for one partition tree into `script`.
/// Every file and directory of the tree must be listed in `fs_config`
/// (symlinks are created with `symlink` and not listed individually).
pub fn set_permissions(tree: &Tree, fs_config: &FsConfig, script: &mut Script) -> Result<()> {
    let mut items: Vec<Item> = Vec::new();
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for (path, node) in &tree.entries {
        let is_dir = match node {
            RawNode::Symlink(_) => continue,
            RawNode::Dir { .. } => true,
            RawNode::File { .. } => false,
        };
        let meta = fs_config.get(path).cloned().ok_or_else(|| {
            AndroidError::Invalid(format!("{path} has no entry in META/filesystem_config.txt"))
        })?;
        index.insert(path, items.len());
        items.push(Item {
            name: path.clone(),
            meta,
            children: is_dir.then(Vec::new),
            best: None,
        });
    }
    // BTreeMap order puts a parent before its children; children lists end
    // up sorted by path.
    for i in 0..items.len() {
        let name = items[i].name.clone();
        if let Some((parent, _)) = name.rsplit_once('/') {
            let p = *index.get(parent).ok_or_else(|| {
                AndroidError::Invalid(format!("{name}: parent {parent} is missing"))
            })?;
            match &mut items[p].children {
                Some(c) => c.push(i),
                None => {
                    return Err(AndroidError::Invalid(format!(
                        "{parent} is a file but has children"
                    )))
                }
            }
        }
    }
    let root = *index
        .get(tree.name.as_str())
        .ok_or_else(|| AndroidError::Invalid(format!("{} has no root entry", tree.name)))?;
    count(&mut items, root);
    let unset = Subtree {
        uid: u32::MAX,
        gid: u32::MAX,
        dmode: u32::MAX,
        fmode: u32::MAX,
        selabel: None,
        capabilities: None,
    };
    emit(&items, root, &unset, script);
    Ok(())
}

fn count(items: &mut [Item], i: usize) -> HashMap<Key, usize> {
    let m = items[i].meta.clone();
    let mut d: HashMap<Key, usize> = HashMap::new();
    d.insert(
        (
            m.uid,
            m.gid,
            Some(m.mode),
            None,
            m.selabel.clone(),
            m.capabilities,
        ),
        1,
    );
    let children = items[i].children.clone().unwrap_or_default();
    for c in children {
        if items[c].children.is_some() {
            for (k, v) in count(items, c) {
                *d.entry(k).or_default() += v;
            }
        } else {
            let cm = &items[c].meta;
            *d.entry((
                cm.uid,
                cm.gid,
                None,
                Some(cm.mode),
                cm.selabel.clone(),
                cm.capabilities,
            ))
            .or_default() += 1;
        }
    }
    // Sorted, so that ">=" picks the largest value among equal counts.
    let mut keys: Vec<(&Key, &usize)> = d.iter().collect();
    keys.sort();
    let mut ug: BTreeMap<(u32, u32), usize> = BTreeMap::new();
    for ((u, g, ..), n) in &keys {
        *ug.entry((*u, *g)).or_default() += **n;
    }
    let (uid, gid) = ug
        .iter()
        .map(|(k, v)| (*v, *k))
        .max()
        .map_or((0, 0), |(_, k)| k);
    let (mut dmode, mut fmode) = ((0usize, 0o755), (0usize, 0o644));
    let (mut selabel, mut caps) = ((0usize, None), (0usize, None));
    for ((u, g, dm, fm, sl, cp), n) in keys {
        if (*u, *g) != (uid, gid) {
            continue;
        }
        let n = *n;
        if let Some(x) = dm {
            if n >= dmode.0 {
                dmode = (n, *x);
            }
        }
        if let Some(x) = fm {
            if n >= fmode.0 {
                fmode = (n, *x);
            }
        }
        if sl.is_some() && n >= selabel.0 {
            selabel = (n, sl.clone());
        }
        if cp.is_some() && n >= caps.0 {
            caps = (n, *cp);
        }
    }
    items[i].best = Some(Subtree {
        uid,
        gid,
        dmode: dmode.1,
        fmode: fmode.1,
        selabel: selabel.1,
        capabilities: caps.1,
    });
    d
}

fn emit(items: &[Item], i: usize, current: &Subtree, script: &mut Script) {
    let item = &items[i];
    let path = format!("/{}", item.name);
    let m = &item.meta;
    match (&item.children, &item.best) {
        (Some(children), Some(best)) => {
            let mut cur = current;
            if current != best {
                script.set_permissions_recursive(&path, best);
                cur = best;
            }
            if m.uid != cur.uid
                || m.gid != cur.gid
                || m.mode != cur.dmode
                || m.selabel != cur.selabel
                || m.capabilities != cur.capabilities
            {
                script.set_permissions(&path, m);
            }
            for &c in children {
                emit(items, c, cur, script);
            }
        }
        _ => {
            if m.uid != current.uid
                || m.gid != current.gid
                || m.mode != current.fmode
                || m.selabel != current.selabel
                || m.capabilities != current.capabilities
            {
                script.set_permissions(&path, m);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fstab::Fstab;

    #[test]
    fn most_common_subtree_then_exceptions() {
        let mut entries = BTreeMap::new();
        for p in ["system", "system/bin", "system/etc"] {
            entries.insert(p.to_string(), RawNode::Dir { mode: None });
        }
        for p in [
            "system/bin/a",
            "system/bin/b",
            "system/bin/su",
            "system/etc/x",
            "system/etc/y",
        ] {
            entries.insert(
                p.to_string(),
                RawNode::File {
                    data: vec![],
                    mode: None,
                },
            );
        }
        entries.insert("system/bin/sh".into(), RawNode::Symlink("mksh".into()));
        let tree = Tree {
            name: "system".into(),
            entries,
        };
        let cfg = FsConfig::parse(
            "system 0 0 755\nsystem/bin 0 2000 755\nsystem/bin/a 0 2000 755\nsystem/bin/b 0 2000 755\nsystem/bin/su 0 0 6755\nsystem/etc 0 0 755\nsystem/etc/x 0 0 644\nsystem/etc/y 0 0 644\n",
            "f",
        )
        .unwrap();
        let mut s = Script::new(Fstab::default(), false);
        set_permissions(&tree, &cfg, &mut s).unwrap();
        assert_eq!(
            s.lines,
            [
                "set_perm_recursive(0, 0, 0755, 0644, \"/system\");",
                "set_perm_recursive(0, 2000, 0755, 0755, \"/system/bin\");",
                "set_perm(0, 0, 06755, \"/system/bin/su\");",
            ]
        );
        let missing = FsConfig::parse("system 0 0 755\n", "f").unwrap();
        let e = set_permissions(&tree, &missing, &mut s)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("has no entry in META/filesystem_config.txt"),
            "{e}"
        );
    }
}
