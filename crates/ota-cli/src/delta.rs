//! `ota diff` and `ota patch`: files and directory trees.

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use ota_delta::{DiffOptions, Format};
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
    /// Patch format (files only; trees always use the own format).
    #[arg(long, value_enum, default_value = "otadiff")]
    format: FormatArg,
    /// zstd level, 1-22.
    #[arg(long, default_value_t = 19, value_parser = clap::value_parser!(i32).range(1..=22))]
    level: i32,
    /// Threads [default: all cores]
    #[arg(long)]
    threads: Option<usize>,
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
        ..DiffOptions::default()
    };
    if let Some(t) = args.threads {
        opts.threads = t.max(1);
    }
    opts.format = match args.format {
        FormatArg::Otadiff => Format::Otadiff,
        FormatArg::Bsdiff40 => Format::Bsdiff40,
    };
    let t0 = Instant::now();
    let old_is_dir = args.old.is_dir();
    if old_is_dir != args.new.is_dir() {
        bail!("OLD and NEW must both be files or both be directories");
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

pub fn patch(args: PatchArgs) -> Result<()> {
    if args.old.is_dir() {
        let ctx = || {
            format!(
                "applying {} to {}",
                args.patch.display(),
                args.old.display()
            )
        };
        if args.in_place {
            if args.out.is_some() {
                bail!("--in-place takes no OUT");
            }
            ota_delta::tree::patch_tree_in_place(&args.old, &args.patch).with_context(ctx)?;
            eprintln!(
                "updated {} in place (every file verified by SHA-256)",
                args.old.display()
            );
        } else {
            let out = args.out.context("missing OUT_DIR (or use --in-place)")?;
            ota_delta::tree::patch_tree(&args.old, &args.patch, &out).with_context(ctx)?;
            eprintln!("wrote {} (every file verified by SHA-256)", out.display());
        }
        return Ok(());
    }
    if args.in_place {
        bail!("--in-place applies to directory trees");
    }
    let out = args.out.context("missing OUT (the file to write)")?;
    let format =
        ota_delta::patch_file(&args.old, &args.patch, &out, !args.no_sync).with_context(|| {
            format!(
                "applying {} to {}",
                args.patch.display(),
                args.old.display()
            )
        })?;
    let verified = match format {
        Format::Otadiff => "source and result verified by SHA-256",
        Format::Bsdiff40 => "BSDIFF40 carries no checksum",
    };
    eprintln!("wrote {} ({verified})", out.display());
    Ok(())
}
