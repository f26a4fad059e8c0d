//! `ota android …`: file-based Android OTA packages from target-files.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use ota_android::fstab::Fstab;
use ota_android::package::{self, BuildOptions, BuildReport};
use ota_android::props::Props;
use ota_android::recovery::{self, ApplyOptions};
use ota_android::sign::{self, Signer, VerifyOptions};
use ota_android::target_files::TargetFiles;
use ota_android::{full, incremental};
use std::io::Seek;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `ota android` subcommands.
#[derive(Subcommand)]
pub enum AndroidCommand {
    /// Build a full OTA package from a target-files zip or directory.
    Full {
        #[command(flatten)]
        build: BuildArgs,
        /// Target-files (zip or unpacked directory).
        target: PathBuf,
        /// Package to write; a directory gets update-{incremental}.zip.
        out: PathBuf,
    },
    /// Build an incremental OTA package (patches from SOURCE to TARGET).
    Incremental {
        #[command(flatten)]
        build: BuildArgs,
        /// Target-files of the build on the device now.
        #[arg(long = "from", short = 'i')]
        source: PathBuf,
        /// Parallel diff workers [default: all cores]
        #[arg(long)]
        worker_threads: Option<usize>,
        /// Target-files of the new build.
        target: PathBuf,
        /// Package to write; a directory gets update-{source inc}-{target inc}.zip.
        out: PathBuf,
    },
    /// Check a package's whole-file signature (as recovery does).
    Verify {
        /// The package.
        package: PathBuf,
        /// Certificate (PEM or DER) whose key must have signed it.
        #[arg(long)]
        cert: PathBuf,
        /// Accept a SHA-1 signature (KitKat-era keys; the certificate must
        /// itself be SHA-1). Without it only SHA-256 is accepted.
        #[arg(long)]
        allow_sha1: bool,
    },
    /// Run a package's updater-script against a directory standing in for
    /// the device (a recovery simulator).
    Apply {
        /// The package.
        package: PathBuf,
        /// Directory standing in for the device's root.
        root: PathBuf,
        /// Properties for getprop() [default: ROOT/system/build.prop]
        #[arg(long)]
        props: Option<PathBuf>,
        /// Verify the package's signature against this certificate first;
        /// the install then reads the same open file.
        #[arg(long)]
        cert: Option<PathBuf>,
        /// With --cert: accept a SHA-1 signature (KitKat-era keys; the
        /// certificate must itself be SHA-1).
        #[arg(long, requires = "cert")]
        allow_sha1: bool,
        /// The device's recovery.fstab (v1 or v2): mount() and format()
        /// accept only its mount points [default: /system, /vendor, /data,
        /// /cache and the other usual partitions]
        #[arg(long)]
        fstab: Option<PathBuf>,
    },
}

/// Options shared by `full` and `incremental`.
#[derive(Args)]
pub struct BuildArgs {
    /// Private key to sign with (PKCS#8 DER like testkey.pk8, or PEM).
    #[arg(long, short = 'k', requires = "cert")]
    package_key: Option<PathBuf>,
    /// Certificate of the key (PEM or DER, like testkey.x509.pem).
    #[arg(long, requires = "package_key")]
    cert: Option<PathBuf>,
    /// Format /data too (factory reset).
    #[arg(long, short = 'w')]
    wipe_user_data: bool,
    /// Skip the "older build" check (full packages).
    #[arg(long, short = 'n')]
    no_prereq: bool,
    /// Edify file appended to the script.
    #[arg(long, short = 'e')]
    extra_script: Option<PathBuf>,
}

impl BuildArgs {
    fn options(&self, worker_threads: usize) -> Result<BuildOptions> {
        let signer = match (&self.package_key, &self.cert) {
            (Some(k), Some(c)) => Some(Signer::load(k, c)?),
            _ => None,
        };
        let extra_script = match &self.extra_script {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .with_context(|| format!("reading extra script {}", p.display()))?,
            ),
            None => None,
        };
        if let Some(text) = &extra_script {
            // Refuse a script recovery could not parse, now rather than on a device.
            ota_android::edify::parse(text).with_context(|| "the extra script does not parse")?;
        }
        Ok(BuildOptions {
            signer,
            wipe_user_data: self.wipe_user_data,
            no_prereq: self.no_prereq,
            extra_script,
            worker_threads,
        })
    }
}

fn out_path(out: &Path, source: Option<&TargetFiles>, target: &TargetFiles) -> Result<PathBuf> {
    if out.is_dir() {
        Ok(out.join(package::default_name(source, target)?))
    } else {
        Ok(out.to_path_buf())
    }
}

fn open(path: &Path) -> Result<TargetFiles> {
    TargetFiles::open(path).with_context(|| format!("reading target-files {}", path.display()))
}

fn print_report(r: &BuildReport, started: Instant, signed: bool) {
    for n in &r.notes {
        eprintln!("note: {n}");
    }
    let patch_bytes: u64 = r.patched.iter().map(|p| p.1).sum();
    println!(
        "wrote {} ({} bytes{}): {} patched ({} bytes of patches), {} whole, {} deleted, in {:.2} s",
        r.output.display(),
        r.size,
        if signed { ", signed" } else { "" },
        r.patched.len(),
        patch_bytes,
        r.verbatim.len(),
        r.deleted.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Runs one `ota android` subcommand.
pub fn run(cmd: AndroidCommand) -> Result<()> {
    match cmd {
        AndroidCommand::Full { build, target, out } => {
            let started = Instant::now();
            let opts = build.options(0)?;
            let t = open(&target)?;
            let out = out_path(&out, None, &t)?;
            let r = full::write_full(&t, &out, &opts).context("building the full package")?;
            print_report(&r, started, opts.signer.is_some());
        }
        AndroidCommand::Incremental {
            build,
            source,
            worker_threads,
            target,
            out,
        } => {
            let started = Instant::now();
            let opts = build.options(worker_threads.unwrap_or(0))?;
            let s = open(&source)?;
            let t = open(&target)?;
            let out = out_path(&out, Some(&s), &t)?;
            let r = incremental::write_incremental(&s, &t, &out, &opts)
                .context("building the incremental package")?;
            print_report(&r, started, opts.signer.is_some());
        }
        AndroidCommand::Verify {
            package,
            cert,
            allow_sha1,
        } => {
            let v = sign::verify(&package, &cert, VerifyOptions { allow_sha1 })
                .with_context(|| format!("verifying {}", package.display()))?;
            println!(
                "signature OK: {:?} over {} bytes{}",
                v.digest,
                v.signed_len,
                if v.embedded_cert_matches {
                    ""
                } else {
                    " (the package embeds a different certificate)"
                }
            );
        }
        AndroidCommand::Apply {
            package,
            root,
            props,
            cert,
            allow_sha1,
            fstab,
        } => {
            // One open file for the check and the install: a package
            // swapped on disk in between is never the one installed.
            let mut file = std::fs::File::open(&package)
                .with_context(|| format!("opening {}", package.display()))?;
            if let Some(c) = cert {
                sign::verify_file(&mut file, &c, VerifyOptions { allow_sha1 })
                    .with_context(|| format!("verifying {}", package.display()))?;
                file.rewind()
                    .with_context(|| format!("rereading {}", package.display()))?;
            }
            let props = match props {
                Some(p) => {
                    let text = std::fs::read_to_string(&p)
                        .with_context(|| format!("reading {}", p.display()))?;
                    Some(Props::parse(&text, &p.display().to_string())?)
                }
                None => None,
            };
            let fstab = match fstab {
                Some(p) => {
                    let text = std::fs::read_to_string(&p)
                        .with_context(|| format!("reading {}", p.display()))?;
                    Some(Fstab::parse_any(&text, &p.display().to_string())?)
                }
                None => None,
            };
            let mut stdout = std::io::stdout();
            recovery::apply_reader(
                std::io::BufReader::new(file),
                &package.display().to_string(),
                &root,
                ApplyOptions { props, fstab },
                &mut stdout,
            )
            .with_context(|| format!("installing {} into {}", package.display(), root.display()))?;
            println!(
                "install complete; owners and labels are in {}",
                root.join(recovery::METADATA_FILE).display()
            );
        }
    }
    Ok(())
}
