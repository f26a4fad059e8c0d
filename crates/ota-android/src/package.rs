//! The OTA zip being written: entries dated 2009-01-01 with their Unix
//! permissions (`ZipWriteStr`), `META-INF/com/android/metadata`, the
//! script and update-binary, and the whole-file signature at the end.
//!
//! The zip is written to a temporary file beside the output and renamed
//! only once complete (and signed), so a failed build leaves no package;
//! the package gets `0666 & !umask`, like any file a program creates.

use crate::error::{io, zip_err, AndroidError, Result};
use crate::script::Script;
use crate::sign::Signer;
use crate::target_files::TargetFiles;
use sha1::{Digest, Sha1};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use zip::write::SimpleFileOptions;

/// Options shared by full and incremental builds (`ota_from_target_files`).
#[derive(Default)]
pub struct BuildOptions {
    /// Sign with this key and certificate (`-k`).
    pub signer: Option<Signer>,
    /// Format `/data` (`-w`).
    pub wipe_user_data: bool,
    /// Skip the older-build check of full packages (`-n`).
    pub no_prereq: bool,
    /// Edify text appended before the end (`-e`).
    pub extra_script: Option<String>,
    /// Parallel diffs for incrementals (`--worker_threads`); 0 = all cores.
    pub worker_threads: usize,
}

/// What a build did, for the command to print.
#[derive(Debug, Default)]
pub struct BuildReport {
    /// Where the package was written.
    pub output: PathBuf,
    /// Bytes in the package.
    pub size: u64,
    /// Files sent whole.
    pub verbatim: Vec<String>,
    /// Files sent as patches: (path, patch bytes, file bytes).
    pub patched: Vec<(String, u64, u64)>,
    /// Files removed by the package.
    pub deleted: Vec<String>,
    /// Things worth telling the user (a missing updater, a skipped image).
    pub notes: Vec<String>,
}

/// SHA-1 in lowercase hex, as scripts and applypatch use.
pub fn sha1_hex(data: &[u8]) -> String {
    hex::encode(Sha1::digest(data))
}

/// A zip being written to a temporary file.
pub struct PackageWriter {
    zip: zip::ZipWriter<std::fs::File>,
    tmp: tempfile::NamedTempFile,
    out: PathBuf,
    names: std::collections::BTreeSet<String>,
    /// Digests of every file entry, kept when the package will be signed
    /// (for the jar manifest).
    digests: Option<(crate::sign::DigestAlg, BTreeMap<String, Vec<u8>>)>,
}

impl PackageWriter {
    /// Starts a package that will end up at `out`, to be signed by `signer`.
    pub fn create(out: &Path, signer: Option<&Signer>) -> Result<PackageWriter> {
        let dir = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // Created 0666 so the kernel applies the umask, as for any new
        // file: the renamed package is 0644 under umask 022, readable by a
        // web server of another user (a temporary's 0600 would stay).
        let tmp = tempfile::Builder::new()
            .prefix(".ota-package-")
            .permissions(std::fs::Permissions::from_mode(0o666))
            .tempfile_in(&dir)
            .map_err(io(format!(
                "creating a temporary file in {}",
                dir.display()
            )))?;
        let file = tmp
            .reopen()
            .map_err(io("reopening the temporary package"))?;
        Ok(PackageWriter {
            zip: zip::ZipWriter::new(file),
            tmp,
            out: out.to_path_buf(),
            names: Default::default(),
            digests: signer.map(|s| (s.digest, BTreeMap::new())),
        })
    }

    /// Records `name`, refusing a second entry of the same name.
    fn claim(&mut self, name: &str) -> Result<()> {
        if !self.names.insert(name.to_string()) {
            return Err(AndroidError::Invalid(format!(
                "{name} would be written twice to the package"
            )));
        }
        Ok(())
    }

    /// Adds one entry with Unix permissions `perms`.
    pub fn add(&mut self, name: &str, data: &[u8], perms: u32) -> Result<()> {
        self.claim(name)?;
        let opts = entry_options(data.len(), perms)?;
        let ctx = || format!("writing {name} to the package");
        self.zip.start_file(name, opts).map_err(zip_err(ctx()))?;
        self.zip.write_all(data).map_err(io(ctx()))?;
        if let Some((alg, map)) = &mut self.digests {
            map.insert(name.to_string(), alg.digest(data));
        }
        Ok(())
    }

    /// Adds many entries, deflating them in parallel (in batches of about
    /// 64 MiB, so memory stays bounded) and appending them in order.
    pub fn add_all(&mut self, entries: &[(&str, &[u8], u32)]) -> Result<()> {
        use rayon::prelude::*;
        const BATCH: usize = 64 << 20;
        for (name, _, _) in entries {
            self.claim(name)?;
        }
        let alg = self.digests.as_ref().map(|(a, _)| *a);
        let mut start = 0;
        while start < entries.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < entries.len() && (end == start || bytes + entries[end].1.len() <= BATCH) {
                bytes += entries[end].1.len();
                end += 1;
            }
            let done: Vec<Result<Compressed>> = entries[start..end]
                .par_iter()
                .map(|(name, data, perms)| {
                    let ctx = || format!("compressing {name}");
                    let mut one = zip::ZipWriter::new(std::io::Cursor::new(Vec::with_capacity(
                        data.len() / 2 + 256,
                    )));
                    one.start_file(*name, entry_options(data.len(), *perms)?)
                        .map_err(zip_err(ctx()))?;
                    one.write_all(data).map_err(io(ctx()))?;
                    let bytes = one.finish().map_err(zip_err(ctx()))?.into_inner();
                    Ok((bytes, alg.map(|a| a.digest(data))))
                })
                .collect();
            for ((name, _, _), r) in entries[start..end].iter().zip(done) {
                let (bytes, digest) = r?;
                let ctx = || format!("writing {name} to the package");
                let mut one =
                    zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(zip_err(ctx()))?;
                let file = one.by_index_raw(0).map_err(zip_err(ctx()))?;
                self.zip.raw_copy_file(file).map_err(zip_err(ctx()))?;
                if let (Some((_, map)), Some(d)) = (&mut self.digests, digest) {
                    map.insert(name.to_string(), d);
                }
            }
            start = end;
        }
        Ok(())
    }

    /// Adds a directory entry (so `package_extract_dir` recreates empty
    /// directories).
    pub fn add_dir(&mut self, name: &str) -> Result<()> {
        let date = zip::DateTime::from_date_and_time(2009, 1, 1, 0, 0, 0)
            .map_err(|_| AndroidError::Invalid("bad zip date".into()))?;
        let opts = SimpleFileOptions::default()
            .last_modified_time(date)
            .unix_permissions(0o755);
        self.zip
            .add_directory(name, opts)
            .map_err(zip_err(format!("writing {name}/ to the package")))
    }

    /// Adds the script, the update-binary (if the build has one) and the
    /// metadata (`AddToZip` + `WriteMetadata`).
    pub fn finish_script(
        &mut self,
        script: &Script,
        target: &TargetFiles,
        metadata: &BTreeMap<String, String>,
        report: &mut BuildReport,
    ) -> Result<()> {
        self.add(
            "META-INF/com/google/android/updater-script",
            script.text().as_bytes(),
            0o644,
        )?;
        match &target.updater {
            Some(u) => self.add("META-INF/com/google/android/update-binary", u, 0o755)?,
            None => report.notes.push(
                "target-files has no OTA/bin/updater: the package has no META-INF/com/google/android/update-binary, which a device's recovery needs".into(),
            ),
        }
        let text: String = metadata.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        self.add("META-INF/com/android/metadata", text.as_bytes(), 0o644)
    }

    /// Closes the zip, signs it when asked, and renames it into place.
    pub fn finish(mut self, signer: Option<&Signer>, report: &mut BuildReport) -> Result<()> {
        if let Some(s) = signer {
            let pem = s.cert_pem();
            self.add("META-INF/com/android/otacert", pem.as_bytes(), 0o644)?;
            // The jar signature signapk writes before the whole-file one.
            let digests = self.digests.take().map(|(_, m)| m).unwrap_or_default();
            let (manifest, sf, rsa) = s.jar_signature(&digests)?;
            self.add("META-INF/MANIFEST.MF", &manifest, 0o644)?;
            self.add("META-INF/CERT.SF", &sf, 0o644)?;
            self.add("META-INF/CERT.RSA", &rsa, 0o644)?;
        }
        let file = self
            .zip
            .finish()
            .map_err(zip_err("finishing the package"))?;
        drop(file);
        if let Some(s) = signer {
            s.sign_whole_file(self.tmp.path())?;
        }
        self.tmp
            .as_file()
            .sync_all()
            .map_err(io("syncing the package"))?;
        report.size = std::fs::metadata(self.tmp.path())
            .map_err(io("reading the package size"))?
            .len();
        self.tmp.persist(&self.out).map_err(|e| AndroidError::Io {
            context: format!("renaming the package to {}", self.out.display()),
            source: e.error,
        })?;
        report.output = self.out;
        Ok(())
    }
}

/// One entry deflated into its own little zip, and its digest (when signing).
type Compressed = (Vec<u8>, Option<Vec<u8>>);

/// Options of one file entry: deflated, dated 2009-01-01, Unix `perms`.
fn entry_options(len: usize, perms: u32) -> Result<SimpleFileOptions> {
    let date = zip::DateTime::from_date_and_time(2009, 1, 1, 0, 0, 0)
        .map_err(|_| AndroidError::Invalid("bad zip date".into()))?;
    Ok(SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(date)
        .unix_permissions(perms)
        .large_file(len as u64 >= u32::MAX as u64))
}

/// `ro.build.date.utc`, which must be a number (scripts compare it with
/// `less_than_int`, metadata and downgrade checks order builds by it).
pub fn build_timestamp(t: &TargetFiles) -> Result<i64> {
    let v = t.prop("ro.build.date.utc")?;
    v.parse().map_err(|_| {
        AndroidError::Invalid(format!(
            "SYSTEM/build.prop of {}: ro.build.date.utc={v:?} is not a number",
            t.source.display()
        ))
    })
}

/// The metadata keys of the build's own side (`post-*`), plus `ota-type`.
pub fn base_metadata(target: &TargetFiles) -> Result<BTreeMap<String, String>> {
    let mut m = BTreeMap::new();
    m.insert(
        "post-build".into(),
        target.prop("ro.build.fingerprint")?.to_string(),
    );
    m.insert(
        "post-timestamp".into(),
        build_timestamp(target)?.to_string(),
    );
    if let Some(inc) = target.build_prop.get("ro.build.version.incremental") {
        m.insert("post-build-incremental".into(), inc.to_string());
    }
    m.insert("ota-type".into(), "FILE".into());
    Ok(m)
}

/// The default file name of seed 000: `update-{source}-{target}.zip` for an
/// incremental (by `ro.build.version.incremental`), `update-{target}.zip`
/// for a full package.
pub fn default_name(source: Option<&TargetFiles>, target: &TargetFiles) -> Result<String> {
    let inc = |t: &TargetFiles| -> Result<String> {
        let v = t.prop("ro.build.version.incremental")?;
        if v.is_empty() || v.contains(['/', '\\']) || v.starts_with('.') {
            return Err(AndroidError::Invalid(format!(
                "ro.build.version.incremental {v:?} cannot be part of a file name"
            )));
        }
        Ok(v.to_string())
    };
    Ok(match source {
        Some(s) => format!("update-{}-{}.zip", inc(s)?, inc(target)?),
        None => format!("update-{}.zip", inc(target)?),
    })
}

/// The recovery patch and its install script (`MakeRecoveryPatch`): the
/// recovery image as a BSDIFF40 patch from the boot image, and the shell
/// script that init runs to apply it. Returns the two zip entries.
pub fn recovery_patch(
    target: &TargetFiles,
    boot: &[u8],
    recovery: &[u8],
) -> Result<Vec<(String, Vec<u8>, u32)>> {
    let b = target.fstab.get("/boot")?;
    let r = target.fstab.get("/recovery")?;
    let mut patch = Vec::new();
    let opts = ota_delta::DiffOptions {
        format: ota_delta::Format::Bsdiff40,
        ..Default::default()
    };
    ota_delta::diff_bytes(boot, recovery, &opts, &mut patch)?;
    let (bt, rt) = (b.partition_type()?, r.partition_type()?);
    let (bs, rs) = (sha1_hex(boot), sha1_hex(recovery));
    let sh = format!(
        "#!/system/bin/sh\nif ! applypatch -c {rt}:{rd}:{rl}:{rs}; then\n  log -t recovery \"Installing new recovery image\"\n  applypatch {bt}:{bd}:{bl}:{bs} {rt}:{rd} {rs} {rl} {bs}:/system/recovery-from-boot.p\nelse\n  log -t recovery \"Recovery image already installed\"\nfi\n",
        rd = r.device,
        rl = recovery.len(),
        bd = b.device,
        bl = boot.len(),
    );
    Ok(vec![
        ("recovery/recovery-from-boot.p".into(), patch, 0o644),
        (
            "recovery/etc/install-recovery.sh".into(),
            sh.into_bytes(),
            0o544,
        ),
    ])
}

/// The system tree plus the two files the recovery patch installs, with
/// their fixed metadata (0 0 0644 and 0 0 0544), so permissions cover them.
pub fn with_recovery_items(
    target: &TargetFiles,
    tree: &crate::target_files::Tree,
) -> (crate::target_files::Tree, crate::fs_config::FsConfig) {
    use crate::target_files::RawNode;
    let mut tree = tree.clone();
    let mut cfg = target.fs_config.clone();
    if tree.name == "system"
        && target.boot_image.is_some()
        && target.recovery_image.is_some()
        && target.fstab.get("/recovery").is_ok()
    {
        for (p, mode) in [
            ("system/recovery-from-boot.p", 0o644),
            ("system/etc/install-recovery.sh", 0o544),
        ] {
            tree.entries.insert(
                p.into(),
                RawNode::File {
                    data: Vec::new(),
                    mode: Some(mode),
                },
            );
            tree.entries
                .entry("system/etc".into())
                .or_insert(RawNode::Dir { mode: None });
            cfg.entries
                .entry("system/etc".into())
                .or_insert(crate::fs_config::Meta {
                    uid: 0,
                    gid: 0,
                    mode: 0o755,
                    selabel: None,
                    capabilities: None,
                });
            // Like releasetools: no label of their own (they keep the one
            // the recursive call gives).
            cfg.entries.insert(
                p.into(),
                crate::fs_config::Meta {
                    uid: 0,
                    gid: 0,
                    mode,
                    selabel: None,
                    capabilities: None,
                },
            );
        }
    }
    (tree, cfg)
}
