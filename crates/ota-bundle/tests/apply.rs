//! Applying bundles as a device does: multi-hop trees and files with real
//! content, resume, every kind of tampering (refused with the target byte
//! for byte unchanged), packs that lie, the lock, and SIGKILL at random
//! moments of a multi-hop apply (the target is always exactly one version).

use ota_bundle::apply::{apply_bundle, Applied, ApplyFailure, ApplyOptions};
use ota_bundle::fixtures::{
    self, build_chain, bundle_members, rewrite_tree_manifest, sample_files, sample_nodes,
    sample_trees, write_bundle_file, write_raw_bundle, write_tree, BuiltPack, Snap,
    SAMPLE_VERSIONS,
};
use ota_bundle::BundleError;
use ota_core::digest::digest_path;
use ota_core::signing::{PublicKey, SecretKey};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use tempfile::TempDir;

/// A bundle's members, names and bytes.
type Members = Vec<(String, Vec<u8>)>;

/// Versions, their signed packs, and a target holding the first version.
struct Setup {
    dir: TempDir,
    versions: Vec<PathBuf>,
    key: SecretKey,
    packs: Vec<BuiltPack>,
    target: PathBuf,
}

impl Setup {
    fn trees() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let versions = sample_trees(dir.path()).unwrap();
        Self::finish(dir, versions, true)
    }

    fn files() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let versions = sample_files(dir.path()).unwrap();
        Self::finish(dir, versions, false)
    }

    fn finish(dir: TempDir, versions: Vec<PathBuf>, tree: bool) -> Setup {
        let key = SecretKey::generate();
        let work = dir.path().join("work");
        fs::create_dir(&work).unwrap();
        let named: Vec<(&str, &Path)> = SAMPLE_VERSIONS
            .iter()
            .copied()
            .zip(versions.iter().map(PathBuf::as_path))
            .collect();
        let packs = build_chain("app", "stable", &named, &key, &work).unwrap();
        let device = dir.path().join("device");
        fs::create_dir(&device).unwrap();
        let target = device.join("app");
        if tree {
            write_tree(&target, &sample_nodes()[0]).unwrap();
        } else {
            fs::copy(&versions[0], &target).unwrap();
        }
        Setup {
            dir,
            versions,
            key,
            packs,
            target,
        }
    }

    fn public(&self) -> PublicKey {
        self.key.public()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn bundle(&self) -> PathBuf {
        let p = self.path("data.tar.gz");
        write_bundle_file(&self.packs, &p).unwrap();
        p
    }

    fn raw_bundle(&self, members: &[(String, Vec<u8>)]) -> PathBuf {
        let p = self.path("raw.tar.gz");
        write_raw_bundle(members, &p).unwrap();
        p
    }

    #[allow(clippy::result_large_err)]
    fn apply(&self, bundle: &Path) -> Result<Applied, ApplyFailure> {
        apply_bundle(
            bundle,
            &self.target,
            &self.public(),
            &ApplyOptions::default(),
        )
    }

    fn digest(&self, i: usize) -> String {
        digest_path(&self.versions[i]).unwrap().as_str().to_owned()
    }

    fn target_digest(&self) -> String {
        digest_path(&self.target).unwrap().as_str().to_owned()
    }

    /// A pack made from versions `a` to `b` with `edit` applied to its
    /// info (and `edit_patch` to its patch) before it is written and signed.
    fn custom_pack(
        &self,
        name: &str,
        a: usize,
        b: usize,
        edit: impl FnOnce(&mut ota_bundle::pack::PackInfo),
        edit_patch: impl FnOnce(&Path),
    ) -> BuiltPack {
        ota_bundle::fixtures::custom_pack(
            self.dir.path(),
            &self.versions,
            &self.key,
            name,
            a,
            b,
            edit,
            edit_patch,
        )
        .unwrap()
    }
}

fn snapshot(root: &Path) -> BTreeMap<String, Snap> {
    fixtures::snapshot(root).unwrap()
}

/// Names in the target's directory other than the target.
fn leftovers(target: &Path) -> Vec<String> {
    let name = target.file_name().unwrap();
    fs::read_dir(target.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != name)
        .map(|n| n.to_string_lossy().into_owned())
        .collect()
}

/// `bundle` is refused with a message containing `needle`; the target is
/// byte for byte what it was and nothing was left beside it.
fn refused(s: &Setup, bundle: &Path, needle: &str) -> ApplyFailure {
    refused_with(s, bundle, &ApplyOptions::default(), needle)
}

fn refused_with(s: &Setup, bundle: &Path, opts: &ApplyOptions, needle: &str) -> ApplyFailure {
    let before = snapshot(&s.target);
    let f = apply_bundle(bundle, &s.target, &s.public(), opts).unwrap_err();
    let msg = f.to_string();
    assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
    assert!(!f.changed, "{msg}");
    assert!(snapshot(&s.target) == before, "target changed by: {msg}");
    assert_eq!(leftovers(&s.target), Vec::<String>::new(), "{msg}");
    f
}

#[test]
fn applies_a_multi_hop_tree_bundle_and_reapplying_changes_nothing() {
    let s = Setup::trees();
    let bundle = s.bundle();
    let applied = s.apply(&bundle).unwrap();
    assert_eq!(
        applied,
        Applied {
            from: "1.0.0".into(),
            to: "2.0.0".into(),
            hops: 3
        }
    );
    assert_eq!(s.target_digest(), s.digest(3));
    assert!(snapshot(&s.target) == snapshot(&s.versions[3]));
    assert_eq!(leftovers(&s.target), Vec::<String>::new());
    // Already at the last version: nothing to do, nothing changed.
    let again = s.apply(&bundle).unwrap();
    assert_eq!(again.hops, 0);
    assert_eq!((again.from.as_str(), again.to.as_str()), ("2.0.0", "2.0.0"));
    assert!(snapshot(&s.target) == snapshot(&s.versions[3]));
}

#[test]
fn resumes_from_a_version_the_bundle_passes_through() {
    let s = Setup::trees();
    fs::remove_dir_all(&s.target).unwrap();
    write_tree(&s.target, &sample_nodes()[2]).unwrap();
    let applied = s.apply(&s.bundle()).unwrap();
    assert_eq!((applied.from.as_str(), applied.hops), ("1.1.0", 1));
    assert_eq!(s.target_digest(), s.digest(3));
}

#[test]
fn applies_a_file_bundle_keeping_the_mode() {
    let s = Setup::files();
    fs::set_permissions(&s.target, fs::Permissions::from_mode(0o750)).unwrap();
    let applied = s.apply(&s.bundle()).unwrap();
    assert_eq!(applied.hops, 3);
    assert_eq!(
        fs::read(&s.target).unwrap(),
        fs::read(&s.versions[3]).unwrap()
    );
    assert_eq!(
        fs::metadata(&s.target).unwrap().permissions().mode() & 0o7777,
        0o750
    );
    assert_eq!(leftovers(&s.target), Vec::<String>::new());
}

#[test]
fn expected_final_version() {
    let s = Setup::trees();
    let bundle = s.bundle();
    let opts = ApplyOptions {
        expect_to: Some("1.1.0".into()),
        ..ApplyOptions::default()
    };
    let f = refused_with(&s, &bundle, &opts, "leads to version 2.0.0, not 1.1.0");
    assert_eq!(f.left_at.as_deref(), Some("1.0.0"));
    let opts = ApplyOptions {
        expect_to: Some("2.0.0".into()),
        ..ApplyOptions::default()
    };
    apply_bundle(&bundle, &s.target, &s.public(), &opts).unwrap();
    assert_eq!(s.target_digest(), s.digest(3));
}

#[test]
fn tampered_bundles_are_refused_before_anything_changes() {
    let s = Setup::trees();
    let good = bundle_members(&s.packs).unwrap();
    let with = |edit: &dyn Fn(&mut Members)| {
        let mut m = good.clone();
        edit(&mut m);
        s.raw_bundle(&m)
    };
    let idx = |m: &[(String, Vec<u8>)], name: &str| m.iter().position(|(n, _)| n == name).unwrap();

    // A flipped byte in a pack: its signature fails. Pack 1 verified, so
    // the target's version can be named.
    let b = with(&|m| {
        let i = idx(m, "pack_2.tar.gz");
        let mid = m[i].1.len() / 2;
        m[i].1[mid] ^= 1;
    });
    let f = refused(&s, &b, "pack_2.tar.gz: signature does not verify");
    assert!(matches!(f.error, BundleError::BadSignature { .. }));
    assert_eq!(f.left_at.as_deref(), Some("1.0.0"));
    let b = with(&|m| {
        let i = idx(m, "pack_1.tar.gz");
        m[i].1[20] ^= 0x80;
    });
    let f = refused(&s, &b, "pack_1.tar.gz: signature does not verify");
    assert_eq!(f.left_at, None);

    // Signatures swapped between packs.
    let b = with(&|m| {
        let (i, j) = (idx(m, "pack_1_sig"), idx(m, "pack_2_sig"));
        let t = m[i].1.clone();
        m[i].1 = m[j].1.clone();
        m[j].1 = t;
    });
    refused(&s, &b, "pack_1.tar.gz: signature does not verify");

    // A missing signature file.
    let b = with(&|m| m.retain(|(n, _)| n != "pack_2_sig"));
    refused(&s, &b, "lists pack_2_sig, which the bundle lacks");

    // A signature of the wrong length.
    let b = with(&|m| {
        let i = idx(m, "pack_3_sig");
        m[i].1.pop();
    });
    refused(&s, &b, "63 bytes");

    // Reordered apply_log.
    let b = with(&|m| {
        let i = idx(m, "apply_log");
        let text = String::from_utf8(m[i].1.clone()).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.swap(0, 1);
        m[i].1 = format!("{}\n", lines.join("\n")).into_bytes();
    });
    refused(&s, &b, "line 1");

    // Truncated apply_log: the last line dropped; cut mid-line.
    let b = with(&|m| {
        let i = idx(m, "apply_log");
        let text = String::from_utf8(m[i].1.clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        m[i].1 = format!("{}\n", lines[..2].join("\n")).into_bytes();
    });
    refused(&s, &b, "also holds pack_3.tar.gz");
    let b = with(&|m| {
        let i = idx(m, "apply_log");
        let n = m[i].1.len();
        m[i].1.truncate(n - 12);
    });
    refused(&s, &b, "newline");
    let b = with(&|m| m.retain(|(n, _)| n != "apply_log"));
    refused(&s, &b, "no apply_log");

    // A pack_N_hash that lies (the member is not signed; the pack is).
    let b = with(&|m| {
        let i = idx(m, "pack_2_hash");
        m[i].1 = format!("{}\n", "0".repeat(64)).into_bytes();
    });
    refused(&s, &b, "pack_2_hash: says 0000");
    let b = with(&|m| {
        let i = idx(m, "pack_2_hash");
        m[i].1.pop();
    });
    refused(&s, &b, "pack_2_hash");

    // Members a bundle does not have.
    let b = with(&|m| m.push(("evil.sh".into(), b"#!/bin/sh\n".to_vec())));
    refused(&s, &b, "\"evil.sh\": not a member of a bundle");
    let b = with(&|m| m.push(("../pack_4_sig".into(), vec![0; 64])));
    refused(&s, &b, "not a member of a bundle");
    let b = with(&|m| {
        let i = idx(m, "pack_1_sig");
        let dup = m[i].clone();
        m.push(dup);
    });
    refused(&s, &b, "duplicate member");

    // Not a bundle at all.
    let b = s.path("garbage.tar.gz");
    fs::write(&b, b"\x1f\x8b garbage").unwrap();
    refused(&s, &b, "reading bundle");
    refused(&s, &s.path("missing.tar.gz"), "opening");
}

#[test]
fn a_bundle_signed_by_another_key_is_refused() {
    let s = Setup::trees();
    let bundle = s.bundle();
    let other = SecretKey::generate();
    let before = snapshot(&s.target);
    let f = apply_bundle(
        &bundle,
        &s.target,
        &other.public(),
        &ApplyOptions::default(),
    )
    .unwrap_err();
    assert!(f.to_string().contains("pack_1.tar.gz: signature"), "{f}");
    assert!(snapshot(&s.target) == before);
    // Re-signed by another key as a whole: still refused.
    let mut m = bundle_members(&s.packs).unwrap();
    for (name, data) in m.clone() {
        if let Some(n) = name.strip_suffix(".tar.gz") {
            let sig = format!("{}_sig", n);
            let i = m.iter().position(|(x, _)| *x == sig).unwrap();
            m[i].1 = other.sign(&data).to_vec();
        }
    }
    refused(&s, &s.raw_bundle(&m), "signature does not verify");
}

#[test]
fn packs_that_do_not_chain_are_refused() {
    let s = Setup::trees();
    // Pack 2 for another package (validly signed).
    let other = s.custom_pack("other", 1, 2, |i| i.package = "other".into(), |_| {});
    let packs = vec![s.packs[0].clone(), other, s.packs[2].clone()];
    let b = s.path("other.tar.gz");
    write_bundle_file(&packs, &b).unwrap();
    let f = refused(
        &s,
        &b,
        "is for other/stable, the packs before it for app/stable",
    );
    assert_eq!(f.left_at.as_deref(), Some("1.0.0"));

    // Another branch.
    let other = s.custom_pack("branch", 1, 2, |i| i.branch = "beta".into(), |_| {});
    let b = s.path("branch.tar.gz");
    write_bundle_file(&[s.packs[0].clone(), other, s.packs[2].clone()], &b).unwrap();
    refused(&s, &b, "app/beta");

    // A gap: pack 1 then pack 3.
    let b = s.path("gap.tar.gz");
    write_bundle_file(&[s.packs[0].clone(), s.packs[2].clone()], &b).unwrap();
    refused(&s, &b, "starts at 1.1.0");

    // A signed pack.json whose to_digest lies: the next pack does not
    // start there.
    let liar = s.custom_pack("liar", 1, 2, |i| i.to_digest = "ab".repeat(32), |_| {});
    let b = s.path("liar.tar.gz");
    write_bundle_file(&[s.packs[0].clone(), liar, s.packs[2].clone()], &b).unwrap();
    refused(&s, &b, "but the pack before it ends at 1.1.0");

    // Bad names and digests in a signed pack.json.
    let bad = s.custom_pack("badname", 0, 1, |i| i.package = "../x".into(), |_| {});
    let b = s.path("badname.tar.gz");
    write_bundle_file(&[bad], &b).unwrap();
    refused(&s, &b, "invalid package");
    let bad = s.custom_pack(
        "badver",
        0,
        1,
        |i| i.to = "1.0.1\nTARGET is at 9".into(),
        |_| {},
    );
    let b = s.path("badver.tar.gz");
    write_bundle_file(&[bad], &b).unwrap();
    refused(&s, &b, "version");
    let bad = s.custom_pack(
        "baddigest",
        0,
        1,
        |i| i.from_digest = "A".repeat(64),
        |_| {},
    );
    let b = s.path("baddigest.tar.gz");
    write_bundle_file(&[bad], &b).unwrap();
    refused(&s, &b, "lowercase hex");

    // A bundle for another starting version.
    let b = s.path("later.tar.gz");
    write_bundle_file(&s.packs[1..], &b).unwrap();
    let f = refused(&s, &b, "made for another version");
    assert_eq!(f.left_at, None);
}

#[test]
fn hostile_tree_patches_are_refused_before_the_first_pack() {
    let s = Setup::trees();
    // A "../x" entry in pack 3's manifest: pack 1 and 2 are fine, but
    // nothing is applied.
    for (label, edit) in [
        ("dotdot", "../x"),
        ("absolute", "/etc/evil"),
        ("nested", "bin/../../x"),
    ] {
        let hostile = s.custom_pack(
            label,
            2,
            3,
            |_| {},
            |p| {
                rewrite_tree_manifest(p, |m| {
                    for e in &mut m.entries {
                        if let ota_delta::tree::Entry::File { path, .. } = e {
                            *path = edit.into();
                            break;
                        }
                    }
                })
                .unwrap()
            },
        );
        let b = s.path(&format!("{label}.tar.gz"));
        write_bundle_file(&[s.packs[0].clone(), s.packs[1].clone(), hostile], &b).unwrap();
        refused(&s, &b, "refused path");
    }
    // A deleted path outside the tree.
    let hostile = s.custom_pack(
        "delete",
        0,
        1,
        |_| {},
        |p| rewrite_tree_manifest(p, |m| m.deleted.push("../../victim".into())).unwrap(),
    );
    let b = s.path("delete.tar.gz");
    write_bundle_file(&[hostile], &b).unwrap();
    refused(&s, &b, "refused path");
    // A setuid entry: refused unless allowed.
    let setuid = s.custom_pack(
        "setuid",
        0,
        1,
        |_| {},
        |p| {
            rewrite_tree_manifest(p, |m| {
                for e in &mut m.entries {
                    if let ota_delta::tree::Entry::File { mode, .. } = e {
                        *mode |= 0o4000;
                        break;
                    }
                }
            })
            .unwrap()
        },
    );
    let b = s.path("setuid.tar.gz");
    write_bundle_file(&[setuid], &b).unwrap();
    refused(&s, &b, "setuid");
    // Allowed, the setuid file is applied; the digest then is not the one
    // pack.json promised (it was made from the tree without the bit), so
    // the target is reported at the claimed version with the mismatch.
    let f = apply_bundle(
        &b,
        &s.target,
        &s.public(),
        &ApplyOptions {
            allow_setuid: true,
            ..ApplyOptions::default()
        },
    )
    .unwrap_err();
    assert!(f.to_string().contains("digest mismatch"), "{f}");
    assert_eq!(f.left_at.as_deref(), Some("1.0.1"));
    assert!(f.changed);
}

#[test]
fn a_wrong_target_is_refused() {
    let s = Setup::trees();
    let bundle = s.bundle();
    // A tree bundle on a file.
    let file = s.path("device/file");
    fs::write(&file, b"x").unwrap();
    let f = apply_bundle(&bundle, &file, &s.public(), &ApplyOptions::default()).unwrap_err();
    assert!(f.to_string().contains("not a directory"), "{f}");
    assert_eq!(fs::read(&file).unwrap(), b"x");
    fs::remove_file(&file).unwrap();
    // A tree the bundle was not made for.
    fs::write(s.target.join("etc/app.conf"), b"local edit\n").unwrap();
    let f = refused(&s, &bundle, "made for another version");
    assert_eq!(f.left_at, None);
    // A file bundle on a directory.
    let fs_setup = Setup::files();
    let f = apply_bundle(
        &fs_setup.bundle(),
        &s.target,
        &fs_setup.public(),
        &ApplyOptions::default(),
    )
    .unwrap_err();
    assert!(f.to_string().contains("not a regular file"), "{f}");
}

#[test]
fn a_file_pack_that_is_not_otadiff1_is_refused() {
    let s = Setup::files();
    let bsdiff = s.custom_pack(
        "bsdiff",
        0,
        1,
        |_| {},
        |p| {
            let old = fs::read(&s.versions[0]).unwrap();
            let new = fs::read(&s.versions[1]).unwrap();
            let mut out = Vec::new();
            let opts = ota_delta::DiffOptions {
                format: ota_delta::Format::Bsdiff40,
                ..ota_delta::DiffOptions::default()
            };
            ota_delta::diff_bytes(&old, &new, &opts, &mut out).unwrap();
            fs::write(p, out).unwrap();
        },
    );
    let b = s.path("bsdiff.tar.gz");
    write_bundle_file(&[bsdiff], &b).unwrap();
    refused(&s, &b, "not an OTADIFF1 patch");
}

#[test]
fn a_second_apply_waits_for_none_and_is_refused() {
    let s = Setup::trees();
    let bundle = s.bundle();
    let parent = fs::File::open(s.target.parent().unwrap()).unwrap();
    rustix::fs::flock(&parent, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let f = refused(&s, &bundle, "another update holds the lock");
    assert_eq!(f.left_at.as_deref(), Some("1.0.0"));
    drop(parent);
    s.apply(&bundle).unwrap();
}

/// The child side of the kill test: applies the bundle named in the
/// environment (does nothing in a normal run).
#[test]
fn kill_child() {
    let Ok(spec) = std::env::var("OTA_BUNDLE_KILL_CHILD") else {
        return;
    };
    let parts: Vec<&str> = spec.split('\n').collect();
    let key = PublicKey::from_pem(&fs::read_to_string(parts[2]).unwrap()).unwrap();
    let r = apply_bundle(
        Path::new(parts[0]),
        Path::new(parts[1]),
        &key,
        &ApplyOptions::default(),
    );
    println!("child: {:?}", r.map_err(|e| e.to_string()));
}

#[test]
fn sigkill_at_any_moment_leaves_exactly_one_version() {
    let s = Setup::trees();
    let bundle = s.bundle();
    let key_pem = s.path("public.pem");
    fs::write(&key_pem, s.public().to_pem()).unwrap();
    let tmp = s.path("tmp");
    fs::create_dir(&tmp).unwrap();
    let digests: Vec<String> = (0..4).map(|i| s.digest(i)).collect();
    let spec = format!(
        "{}\n{}\n{}",
        bundle.display(),
        s.target.display(),
        key_pem.display()
    );
    let child = || {
        Command::new(std::env::current_exe().unwrap())
            .args(["kill_child", "--exact", "--nocapture", "--test-threads=1"])
            .env("OTA_BUNDLE_KILL_CHILD", &spec)
            .env("TMPDIR", &tmp)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let reset = || {
        if s.target.exists() {
            fs::remove_dir_all(&s.target).unwrap();
        }
        write_tree(&s.target, &sample_nodes()[0]).unwrap();
    };
    // How long a whole run takes.
    let t0 = Instant::now();
    let out = child().wait_with_output().unwrap();
    let full = t0.elapsed();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("child: Ok"), "{said}");
    assert_eq!(s.target_digest(), digests[3]);

    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        | 1;
    eprintln!("kill test: full run {full:?}, seed {seed}");
    let mut seen = [0usize; 4];
    let mut stale_journal_temps = 0;
    let mut recovered = 0;
    for i in 0..30 {
        reset();
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let delay = full.mul_f64(f64::from(seed % 1000) / 1000.0 * 1.1);
        let mut c = child();
        std::thread::sleep(delay);
        let _ = c.kill(); // SIGKILL
        let _ = c.wait();
        let mut at = None;
        if i % 2 == 0 {
            // Whatever the moment, recovery leaves exactly one version.
            if ota_delta::tree::recover_in_place(&s.target).unwrap() {
                recovered += 1;
            }
            let d = s.target_digest();
            let v = digests
                .iter()
                .position(|x| *x == d)
                .unwrap_or_else(|| panic!("killed after {delay:?}: digest {d} is no version"));
            seen[v] += 1;
            at = Some(v);
        }
        // Recovery leaves nothing beside the target, whatever the moment
        // of the kill (journal temporaries included).
        let clean_up = |stale: &mut usize| {
            let left = leftovers(&s.target);
            assert!(left.is_empty(), "after {delay:?}: {left:?}");
            *stale += left.len();
        };
        if at.is_some() {
            clean_up(&mut stale_journal_temps);
        }
        // Applying again (recovering by itself on odd rounds) finishes the
        // path from wherever the kill left it.
        let applied = s.apply(&bundle).unwrap();
        if let Some(v) = at {
            assert_eq!(applied.hops, 3 - v);
        }
        assert_eq!(s.target_digest(), digests[3]);
        clean_up(&mut stale_journal_temps);
    }
    eprintln!("kill test: {recovered} kills interrupted a swap (journal found)");
    eprintln!(
        "kill test: versions found after the kill: {seen:?}; stale journal temporaries: {stale_journal_temps}"
    );
}

#[test]
fn a_killed_run_resumes_without_explicit_recovery() {
    // An interrupted swap leaves the journal; the next apply_bundle
    // finishes or undoes it itself.
    let s = Setup::trees();
    let bundle = s.bundle();
    // Simulate the crash: pack 1's tree staged and the journal written,
    // the old tree moved aside, the new one not yet in place.
    let stage = s.path("device/app.ota-stage");
    write_tree(&stage, &sample_nodes()[1]).unwrap();
    fs::write(s.path("device/app.ota-journal"), b"staged").unwrap();
    fs::rename(&s.target, s.path("device/app.ota-old")).unwrap();
    assert!(!s.target.exists());
    let applied = s.apply(&bundle).unwrap();
    assert_eq!(applied.hops, 3, "rolled back to 1.0.0, then applied");
    assert_eq!(s.target_digest(), s.digest(3));
    assert_eq!(leftovers(&s.target), Vec::<String>::new());
}
