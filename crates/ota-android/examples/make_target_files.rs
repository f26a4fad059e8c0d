//! Writes sample target-files zips, for trying `ota android` by hand and
//! for `bench/android.sh`.
//!
//! `make_target_files OUTDIR` writes v1.zip, v2.zip, v3.zip (the test
//! fixtures). `make_target_files OUTDIR --large MB --changed FRACTION DIR…`
//! writes large-v1.zip from this machine's files under DIR… (up to MB
//! megabytes) and large-v2.zip with FRACTION of the files changed.

use ota_android::fixtures::Spec;
use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = PathBuf::from(
        args.first()
            .ok_or("usage: make_target_files OUTDIR [--large MB --changed FRACTION DIR…]")?,
    );
    std::fs::create_dir_all(&out)?;
    if args.get(1).map(String::as_str) == Some("--large") {
        let mb: u64 = args.get(2).ok_or("--large MB")?.parse()?;
        let frac: f64 = match args.get(3).map(String::as_str) {
            Some("--changed") => args.get(4).ok_or("--changed FRACTION")?.parse()?,
            _ => return Err("--changed FRACTION is required".into()),
        };
        let dirs: Vec<&Path> = args[5..].iter().map(Path::new).collect();
        let v1 = Spec::from_host(&dirs, mb << 20)?;
        let v2 = v1.mutated(frac, 1);
        v1.write_zip(&out.join("large-v1.zip"))?;
        v2.write_zip(&out.join("large-v2.zip"))?;
        let files = v1
            .system
            .values()
            .filter(|n| matches!(n, ota_android::target_files::RawNode::File { .. }))
            .count();
        println!("wrote large-v1.zip and large-v2.zip ({files} files, {frac} of them changed)");
        return Ok(());
    }
    for v in 1..=3 {
        Spec::sample(v)?.write_zip(&out.join(format!("v{v}.zip")))?;
    }
    println!("wrote v1.zip v2.zip v3.zip in {}", out.display());
    Ok(())
}
