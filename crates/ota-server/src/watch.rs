//! `ota serve --watch DIR`: versions dropped into a directory are published.
//!
//! Layout: `DIR/<package>/<branch>/<version>/…` is a tree (published as a
//! deterministic `.tar.gz`, so devices get the archive whole or the tree's
//! deltas), `DIR/<package>/<branch>/<version>.<ext>` a single file (`.tar`,
//! `.tar.gz`, `.tar.zst` and `.zip` files are archives, diffed as trees).
//! A version is taken once it has stopped changing for one scan interval
//! (same file count, size and newest modification time twice in a row), so
//! a copy in progress is never published half-written. What was published
//! is left in place; a version already in the catalogue is skipped.

use crate::state::AppState;
use crate::upload::{publish_file, UploadError};
use anyhow::Context;
use ota_core::content::Content;
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a scan saw of one candidate: (entries, bytes, newest mtime ns).
type Signature = (u64, u64, i128);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Candidate {
    package: String,
    branch: String,
    version: String,
    path: PathBuf,
}

/// Scans `dir` every `every` until the runtime stops.
pub async fn run(state: AppState, dir: PathBuf, every: Duration) {
    let mut seen: HashMap<Candidate, Signature> = HashMap::new();
    let mut handled: HashMap<Candidate, Signature> = HashMap::new();
    loop {
        let d = dir.clone();
        let scan = tokio::task::spawn_blocking(move || scan(&d)).await;
        match scan {
            Ok(Ok(found)) => {
                let mut next = HashMap::new();
                for (c, sig) in found {
                    let stable = seen.get(&c) == Some(&sig) && sig.0 > 0;
                    if stable && handled.get(&c) != Some(&sig) {
                        match take(&state, &c).await {
                            Ok(true) => tracing::info!(
                                package = c.package,
                                branch = c.branch,
                                version = c.version,
                                "published from {}",
                                c.path.display()
                            ),
                            Ok(false) => {}
                            Err(e) => tracing::warn!("not publishing {}: {e:#}", c.path.display()),
                        }
                        handled.insert(c.clone(), sig);
                    }
                    next.insert(c, sig);
                }
                seen = next;
            }
            Ok(Err(e)) => tracing::warn!("scanning {}: {e:#}", dir.display()),
            Err(e) => tracing::warn!("scanning {}: {e}", dir.display()),
        }
        tokio::time::sleep(every).await;
    }
}

/// The version in a file name: the name without `.tar.gz`, `.tar.zst`,
/// the name itself, or the name without its last extension: the first
/// that is a version.
fn version_of_file(name: &str) -> Option<String> {
    let candidates = [".tar.gz", ".tar.zst", ".tgz"]
        .iter()
        .filter_map(|ext| name.strip_suffix(ext))
        .chain(std::iter::once(name))
        .chain(name.rsplit_once('.').map(|(stem, _)| stem));
    candidates
        .map(str::to_owned)
        .find(|v| ota_core::Version::parse(v).is_ok())
}

fn scan(dir: &Path) -> anyhow::Result<Vec<(Candidate, Signature)>> {
    let mut out = Vec::new();
    let list = |d: &Path| -> anyhow::Result<Vec<(String, PathBuf, std::fs::Metadata)>> {
        let mut v = Vec::new();
        for e in std::fs::read_dir(d).with_context(|| format!("listing {}", d.display()))? {
            let e = e?;
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') {
                continue; // editors' and copy tools' temporary files
            }
            v.push((name, e.path(), std::fs::symlink_metadata(e.path())?));
        }
        Ok(v)
    };
    for (package, ppath, pmeta) in list(dir)? {
        if !pmeta.is_dir() || ota_core::name::check_name("package", &package).is_err() {
            continue;
        }
        for (branch, bpath, bmeta) in list(&ppath)? {
            if !bmeta.is_dir() || ota_core::name::check_name("branch", &branch).is_err() {
                continue;
            }
            for (name, vpath, vmeta) in list(&bpath)? {
                let version = if vmeta.is_dir() {
                    ota_core::Version::parse(&name).ok().map(|_| name.clone())
                } else if vmeta.is_file() {
                    version_of_file(&name)
                } else {
                    None
                };
                let Some(version) = version else { continue };
                let sig = signature(&vpath, &vmeta)?;
                out.push((
                    Candidate {
                        package: package.clone(),
                        branch: branch.clone(),
                        version,
                        path: vpath,
                    },
                    sig,
                ));
            }
        }
    }
    Ok(out)
}

fn signature(path: &Path, meta: &std::fs::Metadata) -> anyhow::Result<Signature> {
    let mtime =
        |m: &std::fs::Metadata| i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
    if !meta.is_dir() {
        return Ok((1, meta.len(), mtime(meta)));
    }
    let mut sig = (0u64, 0u64, mtime(meta));
    let mut stack = vec![path.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let e = e?;
            let m = std::fs::symlink_metadata(e.path())?;
            sig.0 += 1;
            sig.1 += m.len();
            sig.2 = sig.2.max(mtime(&m));
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Ok(sig)
}

/// Publishes one candidate; false when that version is already published.
async fn take(state: &AppState, c: &Candidate) -> anyhow::Result<bool> {
    if state
        .catalogue
        .get(&c.package, &c.branch, &c.version)
        .await?
        .is_some()
    {
        return Ok(false);
    }
    let (blobs, path) = (state.blobs.clone(), c.path.clone());
    let file = tokio::task::spawn_blocking(move || -> anyhow::Result<ota_store::BlobWriter> {
        let mut w = blobs.begin().context("creating a temporary file")?;
        if path.is_dir() {
            let gz = flate2::write::GzEncoder::new(&mut w, flate2::Compression::default());
            let mut t = tar::Builder::new(gz);
            t.mode(tar::HeaderMode::Deterministic);
            t.follow_symlinks(false);
            t.append_dir_all(".", &path)
                .with_context(|| format!("archiving {}", path.display()))?;
            t.into_inner()?.finish()?;
        } else {
            let mut f = std::fs::File::open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            std::io::copy(&mut f, &mut w).with_context(|| format!("reading {}", path.display()))?;
        }
        w.flush()?;
        Ok(w)
    })
    .await??;
    if file.len() > state.max_upload {
        anyhow::bail!(
            "{} bytes is over the upload limit of {}",
            file.len(),
            ota_core::size::describe(state.max_upload)
        );
    }
    let content = Content::from_value(serde_json::json!({
        "package": c.package,
        "branch": c.branch,
        "version": c.version,
        "sha256": file.digest().to_string(),
        "description": format!("published from {}", c.path.display()),
    }))
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    match publish_file(state, content, file, "serve:watch").await {
        Ok(u) => Ok(u.created),
        Err(UploadError::Api(e)) => Err(anyhow::anyhow!("{}", e.message)),
        Err(UploadError::HashMismatch(m)) => Err(anyhow::anyhow!(m)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_in_file_names() {
        assert_eq!(version_of_file("1.2.3.tar.gz").as_deref(), Some("1.2.3"));
        assert_eq!(version_of_file("1.2.3.bin").as_deref(), Some("1.2.3"));
        assert_eq!(version_of_file("2.0.zip").as_deref(), Some("2.0"));
        assert_eq!(version_of_file("1.2.3").as_deref(), Some("1.2.3"));
        assert_eq!(version_of_file("notes.txt"), None);
    }
}
