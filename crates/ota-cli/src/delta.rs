//! `ota diff` and `ota patch`: files and directory trees.

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use ota_delta::tree::{Applied, ApplyOptions};
use ota_delta::{DiffOptions, Format, PatchOptions};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    /// Own format: zstd, SHA-256 of both sides, applied front to back.
    Otadiff,
    /// Classic bsdiff 4.x, for Debian's bspatch and Android's applypatch.
    Bsdiff40,
}

/// Arguments of `ota diff`.
#[derive(Args)]
pub struct DiffArgs {
    /// Patch format (files only: trees are always OTATREE1, and asking for
    /// bsdiff40 with directories is an error) [default: otadiff]
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// zstd level, 1-22.
    #[arg(long, default_value_t = 19, value_parser = clap::value_parser!(i32).range(1..=22))]
    level: i32,
    /// Threads [default: all cores]
    #[arg(long)]
    threads: Option<usize>,
    /// Executable-aware rounds for x86-64 ELF files: each rewrites the old
    /// file's branch and pointer targets as NEW's layout moved them, then
    /// diffs again (about one more suffix sort each); the patch keeps the
    /// transform only when it is smaller. 0 = off.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=4))]
    exe_rounds: u32,
    /// Also write the reverse patch (NEW → OLD), for rollback without a download.
    #[arg(long)]
    reverse_out: Option<PathBuf>,
    /// Old file or directory.
    old: PathBuf,
    /// New file or directory.
    new: PathBuf,
    /// Patch to write.
    patch: PathBuf,
}

/// Arguments of `ota patch`.
#[derive(Args)]
pub struct PatchArgs {
    /// Update OLD_DIR itself (journaled; rolled back on any failure).
    #[arg(long)]
    in_place: bool,
    /// Skip the fsync before the final rename (when the caller syncs itself).
    #[arg(long)]
    no_sync: bool,
    /// Refuse unless the result has this SHA-256 (files; nothing is written
    /// on a mismatch). BSDIFF40 carries no checksum: this is its only check.
    #[arg(long, value_name = "HEX", value_parser = parse_sha256)]
    expect_sha256: Option<[u8; 32]>,
    /// Refuse unless OLD has this SHA-256 (files; checked before writing).
    #[arg(long, value_name = "HEX", value_parser = parse_sha256)]
    old_sha256: Option<[u8; 32]>,
    /// Accept tree entries whose mode sets setuid or setgid (refused by default).
    #[arg(long)]
    allow_setuid: bool,
    /// Old file or directory.
    old: PathBuf,
    /// Patch (OTADIFF1, BSDIFF40 or OTATREE1; detected by magic).
    patch: PathBuf,
    /// Output file or directory (omit with --in-place).
    out: Option<PathBuf>,
}

pub fn diff(args: DiffArgs) -> Result<()> {
    let mut opts = DiffOptions {
        level: args.level,
        exe_rounds: args.exe_rounds,
        ..DiffOptions::default()
    };
    if let Some(t) = args.threads {
        opts.threads = t.max(1);
    }
    opts.format = match args.format {
        None | Some(FormatArg::Otadiff) => Format::Otadiff,
        Some(FormatArg::Bsdiff40) => Format::Bsdiff40,
    };
    let t0 = Instant::now();
    let old_is_dir = args.old.is_dir();
    if old_is_dir != args.new.is_dir() {
        bail!("OLD and NEW must both be files or both be directories");
    }
    if old_is_dir && opts.format == Format::Bsdiff40 {
        bail!(
            "--format bsdiff40 describes one file; directory trees are always written as \
             OTATREE1 (omit --format)"
        );
    }
    if old_is_dir {
        ota_delta::tree::diff_trees(
            &args.old,
            &args.new,
            &args.patch,
            args.reverse_out.as_deref(),
            &opts,
        )
        .with_context(|| format!("diffing {} → {}", args.old.display(), args.new.display()))?;
    } else {
        ota_delta::diff_files(&args.old, &args.new, &args.patch, &opts)
            .with_context(|| format!("diffing {} → {}", args.old.display(), args.new.display()))?;
    }
    if let (Some(rev), false) = (&args.reverse_out, old_is_dir) {
        ota_delta::diff_files(&args.new, &args.old, rev, &opts)
            .with_context(|| format!("diffing {} → {}", args.new.display(), args.old.display()))?;
    }
    let size = std::fs::metadata(&args.patch).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "wrote {} ({size} bytes) in {:.2}s",
        args.patch.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Parses a SHA-256 given as 64 hex digits.
fn parse_sha256(s: &str) -> Result<[u8; 32], String> {
    let s = s.trim();
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("expected 64 hex digits".into());
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

pub fn patch(args: PatchArgs) -> Result<()> {
    let ctx = || {
        format!(
            "applying {} to {}",
            args.patch.display(),
            args.old.display()
        )
    };
    if args.old.is_dir() {
        if args.expect_sha256.is_some() || args.old_sha256.is_some() {
            bail!("--expect-sha256 and --old-sha256 apply to files (a tree patch checks every file itself)");
        }
        let opts = ApplyOptions {
            allow_setuid: args.allow_setuid,
        };
        if args.in_place {
            if args.out.is_some() {
                bail!("--in-place takes no OUT");
            }
            match ota_delta::tree::patch_tree_in_place_with(&args.old, &args.patch, &opts)
                .with_context(ctx)?
            {
                Applied::Updated => eprintln!(
                    "updated {} in place (every file verified by SHA-256)",
                    args.old.display()
                ),
                Applied::AlreadyUpToDate => eprintln!(
                    "{} is already up to date (it is the patch's target; nothing changed)",
                    args.old.display()
                ),
            }
        } else {
            let out = args
                .out
                .as_ref()
                .context("missing OUT_DIR (or use --in-place)")?;
            ota_delta::tree::patch_tree_with(&args.old, &args.patch, out, &opts)
                .with_context(ctx)?;
            eprintln!("wrote {} (every file verified by SHA-256)", out.display());
        }
        return Ok(());
    }
    if args.in_place {
        bail!("--in-place applies to directory trees");
    }
    let out = args
        .out
        .as_ref()
        .context("missing OUT (the file to write)")?;
    let opts = PatchOptions {
        sync: !args.no_sync,
        old_sha256: args.old_sha256,
        new_sha256: args.expect_sha256,
    };
    let format =
        ota_delta::patch_file_with(&args.old, &args.patch, out, &opts).with_context(ctx)?;
    let verified = match (format, args.expect_sha256) {
        (Format::Otadiff, _) => "source and result verified by SHA-256",
        (Format::Bsdiff40, Some(_)) => "result verified against --expect-sha256",
        (Format::Bsdiff40, None) => {
            eprintln!(
                "warning: BSDIFF40 carries no checksum, so this result is unverified; \
                 pass --expect-sha256 (and --old-sha256) to check it"
            );
            "BSDIFF40: not verified"
        }
    };
    eprintln!("wrote {} ({verified})", out.display());
    Ok(())
}
