//! The executable-aware transform (OTADIFF2). The fuzz input chooses one of:
//!
//! - `Rewrite`: an x86-64 ELF header whose program headers describe the
//!   input's segments over the input's bytes, and an address map from the
//!   input: the rewrite must return, keep the length and give the same
//!   bytes twice (the device must compute what the differ computed);
//! - `Pair`: a synthetic program (functions calling each other, a data
//!   table of pointers; `crates/ota-delta/tests/common/elf.rs`) and the
//!   same with instructions inserted, diffed for real; the patch, its
//!   address map and body edited by the input: exactly NEW, or refused;
//! - `Map`: arbitrary bytes as the address map behind a valid OTADIFF2
//!   header, and alone.
//!
//! Never a panic, never an unbounded allocation, never an unverified result.
#![no_main]
use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use ota_delta::exe::{self, AddrMap, Layout};
use ota_delta::format::{Header, Transform};
use ota_delta::DiffOptions;
use sha2::{Digest, Sha256};

#[path = "../../crates/ota-delta/tests/common/elf.rs"]
mod elf;

#[derive(Arbitrary, Debug)]
enum Input {
    Rewrite {
        segments: Vec<(u16, u16, u32, u8)>,
        body: Vec<u8>,
        map: Vec<u8>,
    },
    Pair {
        seed: u64,
        funcs: u16,
        inserts: u8,
        edits: Vec<(u16, u8)>,
        cut: Option<u16>,
    },
    Map {
        map: Vec<u8>,
    },
}

fn sha(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

fn apply(old: &[u8], patch: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    ota_delta::patch_bytes(old, patch, &mut out)
        .ok()
        .map(|_| out)
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    match input {
        Input::Rewrite {
            segments,
            body,
            map,
        } => {
            let old = elf::over(&body, &segments);
            let Some(layout) = Layout::parse(&old) else {
                return;
            };
            let map = AddrMap::decode(&mut &map[..]).unwrap_or_default();
            let (a, _) = exe::rewrite(&old, &layout, &map);
            let (b, _) = exe::rewrite(&old, &layout, &map);
            assert_eq!(a.len(), old.len());
            assert!(a == b, "the rewrite is not deterministic");
        }
        Input::Pair {
            seed,
            funcs,
            inserts,
            edits,
            cut,
        } => {
            let p = elf::program(seed, 1 + usize::from(funcs % 300));
            let q = elf::edit(&p, seed, usize::from(inserts % 40));
            let (old, new) = (elf::link(&p), elf::link(&q));
            let opts = DiffOptions {
                threads: 1,
                level: 1,
                exe_rounds: 1,
                ..DiffOptions::default()
            };
            let mut patch = Vec::new();
            ota_delta::diff_bytes(&old, &new, &opts, &mut patch).expect("diff");
            if edits.is_empty() && cut.is_none() {
                assert!(
                    apply(&old, &patch) == Some(new),
                    "an unedited patch did not apply"
                );
                return;
            }
            for (at, v) in edits {
                let i = usize::from(at) % patch.len();
                patch[i] ^= v;
            }
            if let Some(c) = cut {
                patch.truncate(usize::from(c) % (patch.len() + 1));
            }
            if let Some(out) = apply(&old, &patch) {
                assert!(out == new, "an edited patch gave something other than NEW");
            }
        }
        Input::Map { map } => {
            let _ = exe::read_map(&mut &map[..]);
            let p = elf::program(1, 50);
            let old = elf::link(&p);
            let header = Header {
                old_size: old.len() as u64,
                new_size: 16,
                old_sha256: sha(&old),
                new_sha256: [0; 32],
                transform: Transform::ElfAddresses,
            };
            let mut patch = header.to_bytes().to_vec();
            patch.extend_from_slice(&map);
            if let Some(out) = apply(&old, &patch) {
                assert_eq!(sha(&out), header.new_sha256, "unverified output");
            }
        }
    }
});
