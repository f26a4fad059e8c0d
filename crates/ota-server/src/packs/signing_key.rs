//! The key packs are signed with.
//!
//! Created on first start as `signing-key.pem` in the data directory (mode
//! 0600), or given with `--signing-key`. Its public half is recorded in the
//! catalogue, so a second server on the same database with another key
//! refuses to start instead of signing packs devices would reject.

use anyhow::Context;
use ota_core::signing::SecretKey;
use ota_store::Catalogue;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// File name of the key created in the data directory.
pub const FILE_NAME: &str = "signing-key.pem";
/// Catalogue setting holding the public key in force.
const SETTING: &str = "signing_public_key";

/// Loads `given`, or the data directory's key (created when missing), and
/// checks it against the one the catalogue records.
pub async fn load(
    given: Option<&Path>,
    data_dir: &Path,
    catalogue: &Catalogue,
) -> anyhow::Result<SecretKey> {
    let key = match given {
        Some(path) => read(path)?,
        None => {
            let path = data_dir.join(FILE_NAME);
            if path.exists() {
                read(&path)?
            } else {
                create(&path)?
            }
        }
    };
    let public = key.public().to_pem();
    let in_force = catalogue.setting_or_insert(SETTING, &public).await?;
    if in_force.trim() != public.trim() {
        anyhow::bail!(
            "the catalogue's packs are signed with another key than this server's ({}): \
             every server sharing a database must use the same --signing-key. The key in \
             force is:\n{in_force}",
            given
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| data_dir.join(FILE_NAME).display().to_string())
        );
    }
    Ok(key)
}

fn read(path: &Path) -> anyhow::Result<SecretKey> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("reading signing key {}", path.display()))?;
    SecretKey::from_pem(&pem).with_context(|| format!("signing key {}", path.display()))
}

fn create(path: &Path) -> anyhow::Result<SecretKey> {
    let key = SecretKey::generate();
    let pem = key.to_pem().context("encoding a new signing key")?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating signing key {}", path.display()))?;
    f.write_all(pem.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing signing key {}", path.display()))?;
    tracing::info!("created signing key {}", path.display());
    Ok(key)
}
