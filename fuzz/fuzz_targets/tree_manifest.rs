//! Arbitrary bytes as a tree patch head (manifest + delta header): parsed and
//! validated, or refused; never a panic, never an unbounded allocation.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut patch = b"OTATREE1".to_vec();
    patch.extend_from_slice(data);
    let _ = ota_delta::tree::read_manifest(&mut &patch[..]);
});
