//! `ota bundle apply` as a device runs it: multi-hop trees and files, the
//! output, `--to`, and every tampering case (exit 1, the error, where the
//! target is, and the target byte for byte unchanged); openssl verifies a
//! pack taken out of a bundle with the system's tar.

mod common;

use common::{ota, text};
use ota_bundle::fixtures::{
    build_chain, bundle_members, rewrite_tree_manifest, sample_files, sample_nodes, sample_trees,
    snapshot, write_bundle_file, write_raw_bundle, write_tree, BuiltPack, SAMPLE_VERSIONS,
};
use ota_core::signing::SecretKey;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

/// A bundle's members, names and bytes.
type Members = Vec<(String, Vec<u8>)>;

struct Setup {
    dir: TempDir,
    versions: Vec<PathBuf>,
    key: SecretKey,
    packs: Vec<BuiltPack>,
    target: PathBuf,
    public_pem: PathBuf,
}

impl Setup {
    fn new(tree: bool) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let versions = if tree {
            sample_trees(dir.path()).unwrap()
        } else {
            sample_files(dir.path()).unwrap()
        };
        let key = SecretKey::generate();
        let work = dir.path().join("work");
        fs::create_dir(&work).unwrap();
        let named: Vec<(&str, &Path)> = SAMPLE_VERSIONS
            .iter()
            .copied()
            .zip(versions.iter().map(PathBuf::as_path))
            .collect();
        let packs = build_chain("app", "stable", &named, &key, &work).unwrap();
        fs::create_dir(dir.path().join("device")).unwrap();
        let target = dir.path().join("device/app");
        if tree {
            write_tree(&target, &sample_nodes()[0]).unwrap();
        } else {
            fs::copy(&versions[0], &target).unwrap();
        }
        let public_pem = dir.path().join("public.pem");
        fs::write(&public_pem, key.public().to_pem()).unwrap();
        Setup {
            dir,
            versions,
            key,
            packs,
            target,
            public_pem,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn bundle_of(&self, name: &str, packs: &[BuiltPack]) -> PathBuf {
        let p = self.path(name);
        write_bundle_file(packs, &p).unwrap();
        p
    }

    fn raw(&self, name: &str, edit: impl FnOnce(&mut Members)) -> PathBuf {
        let mut m = bundle_members(&self.packs).unwrap();
        edit(&mut m);
        let p = self.path(name);
        write_raw_bundle(&m, &p).unwrap();
        p
    }

    fn apply(&self, bundle: &Path, extra: &[&str]) -> Output {
        let mut args = vec![
            "bundle",
            "apply",
            bundle.to_str().unwrap(),
            self.target.to_str().unwrap(),
            "--public-key",
            self.public_pem.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        ota(&args)
    }

    /// A pack from version `a` to `b`, its info and patch edited before it
    /// is written and signed.
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

    /// `ota bundle apply BUNDLE` fails with exit 1, prints `needle` and
    /// `at`, and leaves the target byte for byte as it was.
    fn refused(&self, bundle: &Path, extra: &[&str], needle: &str, at: &str) {
        let before = snapshot(&self.target).unwrap();
        let out = self.apply(bundle, extra);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{all}");
        assert!(all.contains(needle), "{all:?} lacks {needle:?}");
        let target = self.target.display();
        assert!(
            all.contains(&format!("{target} {at}")),
            "{all:?} lacks {at:?}"
        );
        assert!(out.stdout.is_empty(), "{all}");
        assert!(
            snapshot(&self.target).unwrap() == before,
            "target changed: {all}"
        );
        let beside: Vec<_> = fs::read_dir(self.target.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(beside, [self.target.file_name().unwrap()], "{all}");
    }
}

fn digest(p: &Path) -> String {
    ota_core::digest::digest_path(p)
        .unwrap()
        .as_str()
        .to_owned()
}

fn idx(m: &Members, name: &str) -> usize {
    m.iter().position(|(n, _)| n == name).unwrap()
}

const AT_FIRST: &str = "is at version 1.0.0";
const UNNAMED: &str = "was not changed";

#[test]
fn applies_a_tree_bundle_then_has_nothing_to_do() {
    let s = Setup::new(true);
    let bundle = s.bundle_of("data.tar.gz", &s.packs);
    let out = s.apply(&bundle, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "applied 3 packs: 1.0.0 -> 2.0.0\n"
    );
    assert_eq!(digest(&s.target), digest(&s.versions[3]));
    assert!(snapshot(&s.target).unwrap() == snapshot(&s.versions[3]).unwrap());
    let out = s.apply(&bundle, &["--to", "2.0.0"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "applied 0 packs: 2.0.0 -> 2.0.0 (already at the bundle's last version)\n"
    );
}

#[test]
fn applies_a_file_bundle_and_checks_the_final_version() {
    let s = Setup::new(false);
    let bundle = s.bundle_of("data.tar.gz", &s.packs);
    s.refused(
        &bundle,
        &["--to", "1.1.0"],
        "leads to version 2.0.0, not 1.1.0",
        AT_FIRST,
    );
    let out = s.apply(&bundle, &["--to", "2.0.0"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "applied 3 packs: 1.0.0 -> 2.0.0\n"
    );
    assert_eq!(
        fs::read(&s.target).unwrap(),
        fs::read(&s.versions[3]).unwrap()
    );
}

#[test]
fn resumes_from_a_later_version() {
    let s = Setup::new(true);
    fs::remove_dir_all(&s.target).unwrap();
    write_tree(&s.target, &sample_nodes()[1]).unwrap();
    let out = s.apply(&s.bundle_of("data.tar.gz", &s.packs), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "applied 2 packs: 1.0.1 -> 2.0.0\n"
    );
}

#[test]
fn tampered_bundles_are_refused_and_change_nothing() {
    let s = Setup::new(true);
    // A flipped byte in a pack.
    let b = s.raw("flip2.tar.gz", |m| {
        let i = idx(m, "pack_2.tar.gz");
        let mid = m[i].1.len() / 2;
        m[i].1[mid] ^= 1;
    });
    s.refused(
        &b,
        &[],
        "pack_2.tar.gz: signature does not verify",
        AT_FIRST,
    );
    let b = s.raw("flip1.tar.gz", |m| {
        let i = idx(m, "pack_1.tar.gz");
        let last = m[i].1.len() - 1;
        m[i].1[last] ^= 0xff;
    });
    s.refused(&b, &[], "pack_1.tar.gz: signature does not verify", UNNAMED);
    // Signatures swapped between packs.
    let b = s.raw("swap.tar.gz", |m| {
        let (i, j) = (idx(m, "pack_2_sig"), idx(m, "pack_3_sig"));
        let t = m[i].1.clone();
        m[i].1 = m[j].1.clone();
        m[j].1 = t;
    });
    s.refused(
        &b,
        &[],
        "pack_2.tar.gz: signature does not verify",
        AT_FIRST,
    );
    // A missing signature file.
    let b = s.raw("nosig.tar.gz", |m| m.retain(|(n, _)| n != "pack_1_sig"));
    s.refused(&b, &[], "lists pack_1_sig, which the bundle lacks", UNNAMED);
    // Reordered apply_log.
    let b = s.raw("reorder.tar.gz", |m| {
        let i = idx(m, "apply_log");
        let t = String::from_utf8(m[i].1.clone()).unwrap();
        let l: Vec<&str> = t.lines().collect();
        m[i].1 = format!("{}\n{}\n{}\n", l[0], l[2], l[1]).into_bytes();
    });
    s.refused(&b, &[], "line 2 is \"./pack_3.tar.gz", UNNAMED);
    // Truncated apply_log: the last line dropped, or cut mid-line.
    let b = s.raw("drop.tar.gz", |m| {
        let i = idx(m, "apply_log");
        let t = String::from_utf8(m[i].1.clone()).unwrap();
        let keep: String = t.lines().take(2).map(|l| format!("{l}\n")).collect();
        m[i].1 = keep.into_bytes();
    });
    s.refused(&b, &[], "also holds pack_3.tar.gz", UNNAMED);
    let b = s.raw("cut.tar.gz", |m| {
        let i = idx(m, "apply_log");
        let n = m[i].1.len();
        m[i].1.truncate(n - 20);
    });
    s.refused(&b, &[], "does not end with a newline", UNNAMED);
    // A pack_N_hash that lies.
    let b = s.raw("hash.tar.gz", |m| {
        let i = idx(m, "pack_3_hash");
        m[i].1 = format!("{}\n", "f".repeat(64)).into_bytes();
    });
    s.refused(&b, &[], "pack_3_hash: says ffff", AT_FIRST);
    // A member that is no part of a bundle.
    let b = s.raw("extra.tar.gz", |m| {
        m.insert(
            0,
            ("../../etc/cron.d/x".into(), b"* * * * * root sh\n".to_vec()),
        )
    });
    s.refused(&b, &[], "not a member of a bundle", UNNAMED);
}

#[test]
fn hostile_and_foreign_packs_are_refused() {
    let s = Setup::new(true);
    // A tree patch whose manifest writes "../x" (validly signed).
    let hostile = s.custom_pack(
        "hostile",
        1,
        2,
        |_| {},
        |p| {
            rewrite_tree_manifest(p, |m| {
                for e in &mut m.entries {
                    if let ota_delta::tree::Entry::File { path, .. } = e {
                        *path = "../x".into();
                        break;
                    }
                }
            })
            .unwrap()
        },
    );
    let b = s.bundle_of("hostile.tar.gz", &[s.packs[0].clone(), hostile]);
    s.refused(&b, &[], "refused path", AT_FIRST);
    assert!(!s.path("device/x").exists() && !s.path("x").exists());
    // Signed by another key.
    let other = SecretKey::generate();
    let mut m = bundle_members(&s.packs).unwrap();
    for n in 1..=3 {
        let data = m[idx(&m, &format!("pack_{n}.tar.gz"))].1.clone();
        let i = idx(&m, &format!("pack_{n}_sig"));
        m[i].1 = other.sign(&data).to_vec();
    }
    let b = s.path("other-key.tar.gz");
    write_raw_bundle(&m, &b).unwrap();
    s.refused(&b, &[], "pack_1.tar.gz: signature does not verify", UNNAMED);
    // A pack for another package in the chain.
    let foreign = s.custom_pack("foreign", 1, 2, |i| i.package = "other".into(), |_| {});
    let b = s.bundle_of(
        "foreign.tar.gz",
        &[s.packs[0].clone(), foreign, s.packs[2].clone()],
    );
    s.refused(&b, &[], "is for other/stable", AT_FIRST);
    // A public key that is not one.
    fs::write(&s.public_pem, "not a key").unwrap();
    let b = s.bundle_of("data.tar.gz", &s.packs);
    let before = snapshot(&s.target).unwrap();
    let out = s.apply(&b, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("reading the public key"),
        "{}",
        text(&out)
    );
    assert!(snapshot(&s.target).unwrap() == before);
}

#[test]
fn a_pack_that_breaks_its_promise_is_reported_where_it_left_the_target() {
    // A setuid bit added to pack 2's tree after its digests were computed:
    // allowed, it applies, and the result is not the signed to_digest.
    let s = Setup::new(true);
    let setuid = s.custom_pack(
        "setuid",
        1,
        2,
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
    let b = s.bundle_of("setuid.tar.gz", &[s.packs[0].clone(), setuid]);
    s.refused(&b, &[], "setuid", AT_FIRST);
    let out = s.apply(&b, &["--allow-setuid"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("digest mismatch"), "{all}");
    assert!(
        all.contains(&format!("{} is at version 1.1.0", s.target.display())),
        "{all}"
    );
}

#[test]
fn openssl_verifies_a_pack_taken_out_of_the_bundle() {
    let openssl = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !openssl {
        assert!(
            std::env::var("OTA_TEST_STRICT").as_deref() != Ok("1"),
            "openssl is missing"
        );
        eprintln!("notice: openssl is not installed; skipping");
        return;
    }
    let s = Setup::new(true);
    let bundle = s.bundle_of("data.tar.gz", &s.packs);
    let out_dir = s.path("unpacked");
    fs::create_dir(&out_dir).unwrap();
    let tar = Command::new("tar")
        .arg("-xzf")
        .arg(&bundle)
        .arg("-C")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        tar.status.success(),
        "{}",
        String::from_utf8_lossy(&tar.stderr)
    );
    for n in 1..=3 {
        let verify = Command::new("openssl")
            .args(["pkeyutl", "-verify", "-rawin", "-pubin", "-inkey"])
            .arg(&s.public_pem)
            .arg("-in")
            .arg(out_dir.join(format!("pack_{n}.tar.gz")))
            .arg("-sigfile")
            .arg(out_dir.join(format!("pack_{n}_sig")))
            .output()
            .unwrap();
        assert!(
            verify.status.success(),
            "pack {n}: {}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );
    }
    // And refuses one whose pack was changed.
    let mut pack = fs::read(out_dir.join("pack_1.tar.gz")).unwrap();
    pack[100] ^= 1;
    fs::write(out_dir.join("pack_1.tar.gz"), pack).unwrap();
    let verify = Command::new("openssl")
        .args(["pkeyutl", "-verify", "-rawin", "-pubin", "-inkey"])
        .arg(&s.public_pem)
        .arg("-in")
        .arg(out_dir.join("pack_1.tar.gz"))
        .arg("-sigfile")
        .arg(out_dir.join("pack_1_sig"))
        .output()
        .unwrap();
    assert!(!verify.status.success());
}
