//! Writes the seed corpus of the decoder fuzz targets: real patches from
//! the encoder (OTADIFF1 and BSDIFF40) for small edits of one fixed OLD,
//! each prefixed with the byte 0 that tells the targets "a whole patch
//! follows".
//!
//! `cargo run -p ota-delta --example fuzz_seeds -- fuzz/corpus`

use ota_delta::{diff_bytes, DiffOptions, Format};
use std::path::PathBuf;

/// The OLD the fuzz targets apply seed patches to (they build the same).
fn seed_old() -> Vec<u8> {
    (0..2048u32)
        .map(|i| ((i.wrapping_mul(2654435761) >> 24) as u8) ^ (i as u8 & 0x0f))
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: fuzz_seeds CORPUS_DIR")?,
    );
    let old = seed_old();
    let mut news: Vec<(&str, Vec<u8>)> = vec![("same", old.clone()), ("empty", Vec::new())];
    let mut v = old.clone();
    v[700] ^= 0x55;
    v[701] ^= 0x01;
    news.push(("bytes-changed", v));
    let mut v = old.clone();
    v.splice(1000..1000, b"inserted text ".repeat(8));
    news.push(("inserted", v));
    let mut v = old.clone();
    v.drain(300..900);
    news.push(("deleted", v));
    let mut v = old[1024..].to_vec();
    v.extend_from_slice(&old[..1024]);
    news.push(("rotated", v));
    news.push((
        "unrelated",
        (0..1500u32).map(|i| (i * 7 % 251) as u8).collect(),
    ));
    let mut v = old.clone();
    for i in (0..v.len()).step_by(97) {
        v[i] = v[i].wrapping_add(3);
    }
    news.push(("sparse", v));
    for (target, format) in [
        ("otadiff_decode", Format::Otadiff),
        ("bsdiff40_decode", Format::Bsdiff40),
    ] {
        let d = dir.join(target);
        std::fs::create_dir_all(&d)?;
        for (name, new) in &news {
            let opts = DiffOptions {
                format,
                threads: 1,
                level: 19,
                window_log: 0,
                exe_rounds: 1,
            };
            let mut patch = vec![0u8];
            diff_bytes(&old, new, &opts, &mut patch)?;
            std::fs::write(d.join(format!("seed-{name}")), &patch)?;
        }
    }
    Ok(())
}
