//! `ota bundle apply`: verify a bundle (`data.tar.gz`) completely, then
//! apply it to a directory tree or file in place (`ota_bundle::apply`).

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use ota_bundle::apply::{apply_bundle, ApplyOptions};
use ota_core::signing::PublicKey;
use std::path::PathBuf;

/// `ota bundle …`.
#[derive(Subcommand)]
pub enum BundleCommand {
    /// Verify every pack of a bundle (signatures, apply_log, chain of
    /// digests) and apply them to TARGET in place; a run that was
    /// interrupted resumes.
    Apply(ApplyArgs),
}

/// Arguments of `ota bundle apply`.
#[derive(Args)]
pub struct ApplyArgs {
    /// The bundle (data.tar.gz, as the server's confirm answers).
    bundle: PathBuf,
    /// The directory tree (or single file) to update in place.
    target: PathBuf,
    /// The server's Ed25519 public key, PEM (`ota keys signing-public` prints it).
    #[arg(long, value_name = "PEM")]
    public_key: PathBuf,
    /// Accept tree entries whose mode sets setuid or setgid (refused by default).
    #[arg(long)]
    allow_setuid: bool,
    /// Refuse the bundle unless it leads to this version.
    #[arg(long = "to", value_name = "VERSION")]
    to: Option<String>,
}

/// Runs `ota bundle …`.
pub fn run(cmd: BundleCommand) -> Result<()> {
    match cmd {
        BundleCommand::Apply(args) => apply(args),
    }
}

/// An error and its causes on one line, each cause once (some messages
/// already include their cause's text).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let t = c.to_string();
        if !text.contains(&t) {
            text = format!("{text}: {t}");
        }
        cause = c.source();
    }
    text
}

fn apply(args: ApplyArgs) -> Result<()> {
    let pem = std::fs::read_to_string(&args.public_key)
        .with_context(|| format!("reading the public key {}", args.public_key.display()))?;
    let key = PublicKey::from_pem(&pem)
        .with_context(|| format!("reading the public key {}", args.public_key.display()))?;
    let opts = ApplyOptions {
        allow_setuid: args.allow_setuid,
        expect_to: args.to.clone(),
    };
    let target = args.target.display();
    match apply_bundle(&args.bundle, &args.target, &key, &opts) {
        Ok(a) => {
            let plural = if a.hops == 1 { "" } else { "s" };
            let note = if a.hops == 0 {
                " (already at the bundle's last version)"
            } else {
                ""
            };
            println!(
                "applied {} pack{plural}: {} -> {}{note}",
                a.hops, a.from, a.to
            );
            Ok(())
        }
        Err(f) => {
            let state = match (&f.left_at, f.changed) {
                (Some(v), _) => format!("{target} is at version {v}"),
                (None, false) => format!(
                    "{target} was not changed (its version is not one this bundle can name)"
                ),
                (None, true) => format!(
                    "{target} is at a version this bundle cannot name (`ota digest {target}` shows its digest)"
                ),
            };
            anyhow::bail!("{}\n{state}", chain(&f.error))
        }
    }
}
