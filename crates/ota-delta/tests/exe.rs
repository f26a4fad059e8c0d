//! The executable-aware transform end to end: synthetic x86-64 programs
//! changed by inserted instructions, diffed, applied, tampered with; and
//! the real corpus binaries when `OTA_CORPUS` holds them.

#[path = "common/elf.rs"]
mod elf;

use ota_delta::{diff_bytes, diff_files, patch_bytes, patch_file, DiffOptions, PatchOptions};
use proptest::prelude::*;

fn opts(exe_rounds: u32) -> DiffOptions {
    DiffOptions {
        level: 3,
        threads: 2,
        exe_rounds,
        ..DiffOptions::default()
    }
}

fn diff(old: &[u8], new: &[u8], exe_rounds: u32) -> Vec<u8> {
    let mut patch = Vec::new();
    diff_bytes(old, new, &opts(exe_rounds), &mut patch).expect("diff");
    patch
}

fn apply(old: &[u8], patch: &[u8]) -> ota_delta::Result<Vec<u8>> {
    let mut out = Vec::new();
    patch_bytes(old, patch, &mut out).map(|_| out)
}

/// A program of `funcs` functions and the same with `inserts` instructions
/// added, both linked.
fn pair(seed: u64, funcs: usize, inserts: usize) -> (Vec<u8>, Vec<u8>) {
    let p = elf::program(seed, funcs);
    (elf::link(&p), elf::link(&elf::edit(&p, seed, inserts)))
}

#[test]
fn inserted_instructions_make_a_transformed_patch_much_smaller() {
    let (old, new) = pair(7, 4000, 40);
    let plain = diff(&old, &new, 0);
    let transformed = diff(&old, &new, 1);
    eprintln!(
        "plain {} B, transformed {} B",
        plain.len(),
        transformed.len()
    );
    assert_eq!(&plain[..8], b"OTADIFF1");
    assert_eq!(&transformed[..8], b"OTADIFF2", "the transform pays here");
    assert!(
        transformed.len() * 3 < plain.len(),
        "transformed {} B vs plain {} B",
        transformed.len(),
        plain.len()
    );
    assert_eq!(apply(&old, &transformed).expect("apply"), new);
    assert_eq!(apply(&old, &plain).expect("apply"), new);
}

#[test]
fn more_rounds_never_make_the_patch_heavier_and_all_round_trip() {
    let (old, new) = pair(11, 1500, 25);
    for rounds in 1..=3 {
        let p = diff(&old, &new, rounds);
        assert_eq!(apply(&old, &p).expect("apply"), new, "rounds {rounds}");
    }
}

#[test]
fn unchanged_and_non_elf_pairs_stay_plain() {
    let (old, _) = pair(3, 300, 0);
    assert_eq!(&diff(&old, &old, 1)[..8], b"OTADIFF1");
    let text: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    let mut text2 = text.clone();
    text2.insert(100, 7);
    assert_eq!(&diff(&text, &text2, 1)[..8], b"OTADIFF1");
}

#[test]
fn a_wrong_old_is_refused_and_nothing_is_written() {
    let (old, new) = pair(5, 800, 10);
    let patch = diff(&old, &new, 1);
    assert_eq!(&patch[..8], b"OTADIFF2");
    let (other, _) = pair(6, 800, 0);
    let err = apply(&other, &patch).expect_err("wrong old");
    assert!(err.to_string().contains("old"), "{err}");

    let d = tempfile::tempdir().expect("tempdir");
    let (o, p, n) = (
        d.path().join("old"),
        d.path().join("patch"),
        d.path().join("new"),
    );
    std::fs::write(&o, &other).expect("write");
    std::fs::write(&p, &patch).expect("write");
    patch_file(&o, &p, &n, false).expect_err("wrong old");
    assert!(!n.exists(), "nothing written for a wrong old");
}

#[test]
fn a_damaged_or_cut_address_map_is_refused_before_anything_is_written() {
    let (old, new) = pair(9, 1500, 20);
    let patch = diff(&old, &new, 1);
    assert_eq!(&patch[..8], b"OTADIFF2");
    let map_len = u32::from_le_bytes(patch[96..100].try_into().expect("4 bytes")) as usize;
    let d = tempfile::tempdir().expect("tempdir");
    let o = d.path().join("old");
    std::fs::write(&o, &old).expect("write");
    let mut cases: Vec<Vec<u8>> = Vec::new();
    for at in [100, 100 + map_len / 2, 100 + map_len - 1] {
        let mut bad = patch.clone();
        bad[at] ^= 0x55;
        cases.push(bad);
    }
    for cut in [97, 100, 100 + map_len / 2, 100 + map_len] {
        cases.push(patch[..cut].to_vec());
    }
    let mut huge = patch.clone();
    huge[96..100].copy_from_slice(&u32::MAX.to_le_bytes());
    cases.push(huge);
    for (i, bad) in cases.iter().enumerate() {
        assert!(apply(&old, bad).is_err(), "case {i} accepted");
        let (p, n) = (
            d.path().join(format!("p{i}")),
            d.path().join(format!("n{i}")),
        );
        std::fs::write(&p, bad).expect("write");
        let err = patch_file(&o, &p, &n, false).expect_err("damaged patch");
        assert!(!n.exists(), "case {i}: {err} left output behind");
    }
}

#[test]
fn an_unknown_transform_asks_for_a_newer_ota() {
    let (old, new) = pair(2, 300, 5);
    let mut patch = diff(&old, &new, 1);
    assert_eq!(&patch[..8], b"OTADIFF2");
    patch[89] = 9;
    let err = apply(&old, &patch).expect_err("unknown transform");
    assert!(err.to_string().contains("newer"), "{err}");
}

#[test]
fn corpus_binaries_round_trip_when_present() {
    let Ok(dir) = std::env::var("OTA_CORPUS") else {
        eprintln!("OTA_CORPUS unset: corpus binaries skipped");
        return;
    };
    let x = std::path::Path::new(&dir).join("x");
    let pairs = [
        (
            "esbuild-0.24.0/package/bin/esbuild",
            "esbuild-0.24.2/package/bin/esbuild",
        ),
        ("biome-1.9.3/package/biome", "biome-1.9.4/package/biome"),
    ];
    let d = tempfile::tempdir().expect("tempdir");
    for (a, b) in pairs {
        let (old, new) = (x.join(a), x.join(b));
        if !old.exists() || !new.exists() {
            eprintln!("{a}: not fetched, skipped");
            continue;
        }
        let (p, n) = (d.path().join("patch"), d.path().join("new"));
        diff_files(&old, &new, &p, &DiffOptions::default()).expect("diff");
        let head = std::fs::read(&p).expect("read");
        assert_eq!(
            &head[..8],
            b"OTADIFF2",
            "{a}: the transform pays on real code"
        );
        ota_delta::patch_file_with(&old, &p, &n, &PatchOptions::default()).expect("apply");
        assert!(
            std::fs::read(&n).expect("read") == std::fs::read(&new).expect("read"),
            "{a}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any pair round-trips exactly: synthetic programs edited, then with
    /// random bytes anywhere (headers included) overwritten on both sides.
    #[test]
    fn any_pair_round_trips(
        seed in any::<u64>(),
        funcs in 1usize..400,
        inserts in 0usize..30,
        old_noise in prop::collection::vec((any::<u32>(), any::<u8>()), 0..8),
        new_noise in prop::collection::vec((any::<u32>(), any::<u8>()), 0..8),
        rounds in 1u32..3,
    ) {
        let (mut old, mut new) = pair(seed, funcs, inserts);
        for (at, b) in old_noise {
            let i = at as usize % old.len();
            old[i] = b;
        }
        for (at, b) in new_noise {
            let i = at as usize % new.len();
            new[i] = b;
        }
        let patch = diff(&old, &new, rounds);
        prop_assert_eq!(apply(&old, &patch).expect("apply"), new);
    }
}
