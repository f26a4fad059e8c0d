//! Arbitrary bytes after a valid OTADIFF1 header for a small OLD (so the
//! body decoder is reached), and raw bytes through format detection: errors
//! or a verified result, never a panic or an unbounded allocation.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ota_delta::format::Header;
use sha2::{Digest, Sha256};

const OLD: &[u8] = b"The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnop";

fuzz_target!(|data: &[u8]| {
    let (sizes, body) = data.split_at(data.len().min(2));
    let new_size = sizes.iter().fold(0u64, |a, b| a << 8 | u64::from(*b));
    let header = Header {
        old_size: OLD.len() as u64,
        new_size,
        old_sha256: Sha256::digest(OLD).into(),
        new_sha256: [0; 32],
    };
    let mut patch = header.to_bytes().to_vec();
    patch.extend_from_slice(body);
    let _ = ota_delta::patch_bytes(OLD, &patch[..], &mut Vec::new());
    let _ = ota_delta::patch_bytes(OLD, data, &mut Vec::new());
});
