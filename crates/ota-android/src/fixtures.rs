//! Synthetic target-files packages for tests and benchmarks.
//!
//! [`Spec::sample`] makes three related builds of one device:
//! - v1: real ELF binaries copied from this machine, text files, APKs
//!   (zips), symlinks, nested and empty directories, a filesystem_config
//!   with varied owners, modes, labels and capabilities, a boot and a
//!   recovery image;
//! - v2: v1 with changed binaries, libraries, an APK, build.prop, boot and
//!   recovery; a new file, a deleted file, a fully rewritten file (sent
//!   whole), symlink changes both ways, and metadata changes;
//! - v3: v2 rebuilt again with another fingerprint (an incremental from
//!   v1 must refuse it).
//!
//! [`Spec::from_host`] makes a large system from this machine's files for
//! benchmarks, and [`Spec::mutated`] changes a fraction of it.

use crate::error::{io, zip_err, Result};
use crate::fs_config::{FsConfig, Meta};
use crate::target_files::RawNode;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// One target-files build to write.
#[derive(Clone, Debug)]
pub struct Spec {
    /// `ro.product.device`.
    pub device: String,
    /// `ro.build.version.incremental`.
    pub incremental: String,
    /// `ro.build.date.utc`.
    pub timestamp: u64,
    /// `ro.build.fingerprint`.
    pub fingerprint: String,
    /// `SYSTEM/` entries by path relative to it (`bin/sh`); `build.prop`
    /// is generated from the fields above.
    pub system: BTreeMap<String, RawNode>,
    /// Metadata overrides by full path (`system/xbin/su`); everything else
    /// gets [`default_meta`].
    pub meta: BTreeMap<String, Meta>,
    /// `BOOT/kernel` (and `RECOVERY/kernel`).
    pub kernel: Vec<u8>,
    /// `BOOT/RAMDISK/`.
    pub boot_ramdisk: BTreeMap<String, RawNode>,
    /// Extra `RECOVERY/RAMDISK/` entries (the fstab is added).
    pub recovery_ramdisk: BTreeMap<String, RawNode>,
    /// `use_set_metadata=1` in misc_info.
    pub use_set_metadata: bool,
    /// `OTA/bin/updater` contents, if any.
    pub updater: Option<Vec<u8>>,
    /// `VENDOR/` entries (a vendor partition when not empty), by path
    /// relative to it; metadata goes to `META/vendor_filesystem_config.txt`.
    pub vendor: BTreeMap<String, RawNode>,
    /// Use [`FSTAB_V1`] (`fstab_version=1`, boot and recovery on MTD)
    /// instead of [`FSTAB_V2`].
    pub legacy_fstab: bool,
}

/// The fstab (v2) every fixture uses.
pub const FSTAB_V2: &str = "\
/dev/block/platform/msm_sdcc.1/by-name/system /system ext4 ro,barrier=1 wait
/dev/block/platform/msm_sdcc.1/by-name/vendor /vendor ext4 ro,barrier=1 wait
/dev/block/platform/msm_sdcc.1/by-name/cache /cache ext4 noatime,nosuid,nodev wait,check
/dev/block/platform/msm_sdcc.1/by-name/userdata /data ext4 noatime,nosuid,nodev wait,check,length=-16384
/dev/block/platform/msm_sdcc.1/by-name/boot /boot emmc defaults defaults
/dev/block/platform/msm_sdcc.1/by-name/recovery /recovery emmc defaults defaults
/devices/msm_sdcc.3/mmc_host /storage/sdcard1 vfat nosuid,nodev voldmanaged=sdcard1:auto
";

/// The fstab (v1, boot and recovery on MTD) of [`Spec::legacy_fstab`].
pub const FSTAB_V1: &str = "\
# mount point\tfstype\tdevice\t[device2]
/boot mtd boot
/recovery mtd recovery
/system ext4 /dev/block/platform/sdhci-tegra.3/by-name/APP
/vendor ext4 /dev/block/platform/sdhci-tegra.3/by-name/VNR
/cache ext4 /dev/block/platform/sdhci-tegra.3/by-name/CAC
/data ext4 /dev/block/platform/sdhci-tegra.3/by-name/UDA length=-16384
";

/// The label most of `/system` carries.
pub const SYSTEM_LABEL: &str = "u:object_r:system_file:s0";

/// Owner, mode and label a path gets unless [`Spec::meta`] says otherwise.
pub fn default_meta(path: &str, node: &RawNode) -> Meta {
    if path == "vendor" || path.starts_with("vendor/") {
        let (gid, mode) = match node {
            RawNode::Dir { .. } => (2000, 0o755),
            RawNode::File { .. } if path.starts_with("vendor/bin/") => (2000, 0o755),
            _ => (0, 0o644),
        };
        return Meta {
            uid: 0,
            gid,
            mode,
            selabel: Some("u:object_r:vendor_file:s0".into()),
            capabilities: Some(0),
        };
    }
    let in_bin = path.starts_with("system/bin/") || path.starts_with("system/xbin/");
    let (gid, mode) = match node {
        RawNode::Dir { .. } if path == "system/bin" || path == "system/xbin" => (2000, 0o755),
        RawNode::Dir { .. } => (0, 0o755),
        RawNode::Symlink(_) => (2000, 0o755),
        RawNode::File { .. } if in_bin => (2000, 0o755),
        RawNode::File { .. } => (0, 0o644),
    };
    Meta {
        uid: 0,
        gid,
        mode,
        selabel: Some(SYSTEM_LABEL.into()),
        capabilities: Some(0),
    }
}

/// Deterministic pseudo-random bytes (xorshift64*).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A rebuild-like change: a few regions overwritten and a short insertion.
pub fn mutate(data: &[u8], seed: u64) -> Vec<u8> {
    let mut out = data.to_vec();
    if out.is_empty() {
        return noise(seed, 64);
    }
    let r = noise(seed, 64);
    for k in 0..3 {
        let at = (u64::from_le_bytes(r[k * 8..k * 8 + 8].try_into().unwrap_or([0; 8])) as usize)
            % out.len();
        let end = (at + 48).min(out.len());
        out[at..end].copy_from_slice(&noise(seed + k as u64 + 1, end - at));
    }
    let at = (u64::from_le_bytes(r[40..48].try_into().unwrap_or([0; 8])) as usize) % out.len();
    out.splice(at..at, noise(seed + 9, 40));
    out
}

fn file(data: Vec<u8>) -> RawNode {
    RawNode::File { data, mode: None }
}

fn apk(entries: &[(&str, Vec<u8>)]) -> Result<Vec<u8>> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default());
    for (name, data) in entries {
        z.start_file(*name, opts)
            .map_err(zip_err("building a fixture APK"))?;
        z.write_all(data).map_err(io("building a fixture APK"))?;
    }
    Ok(z.finish()
        .map_err(zip_err("building a fixture APK"))?
        .into_inner())
}

/// The real ELF executables and libraries a fixture copies (the first ones
/// found on this machine).
fn host_binaries() -> Result<Vec<(String, Vec<u8>)>> {
    let wanted = [
        ("bin/mksh", &["/bin/bash", "/usr/bin/bash"][..]),
        ("bin/toolbox", &["/usr/bin/ls", "/bin/ls"][..]),
        ("bin/cat", &["/usr/bin/cat", "/bin/cat"][..]),
        ("xbin/su", &["/usr/bin/env", "/bin/env"][..]),
        ("bin/run-as", &["/usr/bin/id", "/bin/id"][..]),
        (
            "lib/libc.so",
            &[
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/usr/lib/x86_64-linux-gnu/libc.so.6",
                "/lib/aarch64-linux-gnu/libc.so.6",
            ][..],
        ),
        (
            "lib/libz.so",
            &[
                "/lib/x86_64-linux-gnu/libz.so.1",
                "/usr/lib/x86_64-linux-gnu/libz.so.1",
                "/lib/aarch64-linux-gnu/libz.so.1",
            ][..],
        ),
    ];
    let mut out = Vec::new();
    for (dest, candidates) in wanted {
        let found = candidates
            .iter()
            .find_map(|c| std::fs::read(c).ok().filter(|d| d.starts_with(b"\x7fELF")));
        match found {
            Some(d) => out.push((dest.to_string(), d)),
            None => {
                return Err(crate::AndroidError::Missing(format!(
                    "an ELF binary for fixture {dest} (looked at {candidates:?})"
                )))
            }
        }
    }
    Ok(out)
}

impl Spec {
    /// Build `version` (1, 2 or 3) of the sample device.
    pub fn sample(version: u32) -> Result<Spec> {
        let mut s = Spec {
            device: "hammerhead".into(),
            incremental: "eng.1001".into(),
            timestamp: 1_400_000_000,
            fingerprint: String::new(),
            system: BTreeMap::new(),
            meta: BTreeMap::new(),
            kernel: noise(7, 300_000),
            boot_ramdisk: BTreeMap::new(),
            recovery_ramdisk: BTreeMap::new(),
            use_set_metadata: true,
            updater: Some(b"\x7fELF fake updater for fixtures".to_vec()),
            legacy_fstab: false,
            vendor: BTreeMap::new(),
        };
        for (p, d) in host_binaries()? {
            s.system.insert(p, file(d));
        }
        let sys = &mut s.system;
        sys.insert("bin/sh".into(), RawNode::Symlink("mksh".into()));
        for l in ["ps", "top", "reboot"] {
            sys.insert(format!("bin/{l}"), RawNode::Symlink("toolbox".into()));
        }
        sys.insert(
            "bin/vi".into(),
            file(b"#!/system/bin/sh\necho vi\n".to_vec()),
        );
        sys.insert(
            "etc/hosts".into(),
            file(b"127.0.0.1 localhost\n::1 ip6-localhost\n".to_vec()),
        );
        sys.insert(
            "etc/dbus.conf".into(),
            file(b"<busconfig><user>bluetooth</user></busconfig>\n".to_vec()),
        );
        sys.insert("etc/old.conf".into(), file(b"obsolete=1\n".to_vec()));
        sys.insert("etc/random.bin".into(), file(noise(11, 20_000)));
        sys.insert(
            "etc/permissions/platform.xml".into(),
            file(
                format!(
                    "<permissions>\n{}</permissions>\n",
                    (0..200)
                        .map(|i| format!("  <permission name=\"android.permission.P{i}\" />\n"))
                        .collect::<String>()
                )
                .into_bytes(),
            ),
        );
        sys.insert(
            "app/Settings.apk".into(),
            file(apk(&[
                ("AndroidManifest.xml", noise(21, 3000)),
                ("classes.dex", noise(22, 200_000)),
                ("res/layout/main.xml", b"<LinearLayout/>".to_vec()),
            ])?),
        );
        sys.insert(
            "app/Browser.apk".into(),
            file(apk(&[
                ("AndroidManifest.xml", noise(31, 2000)),
                ("classes.dex", noise(32, 120_000)),
            ])?),
        );
        sys.insert(
            "framework/framework.jar".into(),
            file(apk(&[("classes.dex", noise(41, 400_000))])?),
        );
        sys.insert("usr/share/zoneinfo/tzdata".into(), file(noise(51, 100_000)));
        sys.insert(
            "usr/keychars/deep/er/still/qwerty.kcm".into(),
            file(b"type FULL\n".to_vec()),
        );
        sys.insert("media/audio".into(), RawNode::Dir { mode: None });
        sys.insert(
            "lib/libGLES.so".into(),
            RawNode::Symlink("/system/lib/libz.so".into()),
        );
        let m = &mut s.meta;
        m.insert(
            "system/xbin/su".into(),
            Meta {
                uid: 0,
                gid: 0,
                mode: 0o6755,
                selabel: Some("u:object_r:su_exec:s0".into()),
                capabilities: Some(0),
            },
        );
        m.insert(
            "system/bin/run-as".into(),
            Meta {
                uid: 0,
                gid: 2000,
                mode: 0o750,
                selabel: Some("u:object_r:runas_exec:s0".into()),
                capabilities: Some(0xc0),
            },
        );
        m.insert(
            "system/etc/dbus.conf".into(),
            Meta {
                uid: 1002,
                gid: 1002,
                mode: 0o440,
                selabel: Some(SYSTEM_LABEL.into()),
                capabilities: Some(0),
            },
        );
        m.insert(
            "system/usr/share/zoneinfo".into(),
            Meta {
                uid: 1000,
                gid: 1000,
                mode: 0o750,
                selabel: Some("u:object_r:zoneinfo_data_file:s0".into()),
                capabilities: Some(0),
            },
        );
        m.insert(
            "system/usr/share/zoneinfo/tzdata".into(),
            Meta {
                uid: 1000,
                gid: 1000,
                mode: 0o640,
                selabel: Some("u:object_r:zoneinfo_data_file:s0".into()),
                capabilities: Some(0),
            },
        );
        s.boot_ramdisk
            .insert("init".into(), file(noise(61, 50_000)));
        s.boot_ramdisk.insert(
            "init.rc".into(),
            file(b"on boot\n    start adbd\n".to_vec()),
        );
        s.boot_ramdisk
            .insert("sbin".into(), RawNode::Dir { mode: None });
        s.recovery_ramdisk
            .insert("sbin/recovery".into(), file(noise(71, 80_000)));

        if version >= 2 {
            s.incremental = "eng.1002".into();
            s.timestamp = 1_400_100_000;
            let sys = &mut s.system;
            for (p, seed) in [("bin/mksh", 101), ("lib/libc.so", 102), ("bin/cat", 103)] {
                if let Some(RawNode::File { data, .. }) = sys.get(p) {
                    let d = mutate(data, seed);
                    sys.insert(p.into(), file(d));
                }
            }
            sys.insert(
                "app/Settings.apk".into(),
                file(apk(&[
                    ("AndroidManifest.xml", noise(21, 3000)),
                    ("classes.dex", mutate(&noise(22, 200_000), 104)),
                    ("res/layout/main.xml", b"<LinearLayout/>".to_vec()),
                ])?),
            );
            sys.insert(
                "app/NewApp.apk".into(),
                file(apk(&[("classes.dex", noise(111, 50_000))])?),
            );
            sys.remove("etc/old.conf");
            sys.insert("etc/random.bin".into(), file(noise(12, 20_000)));
            sys.insert(
                "etc/hosts".into(),
                file(b"127.0.0.1 localhost\n::1 ip6-localhost\n10.0.0.1 gateway\n".to_vec()),
            );
            sys.insert("bin/top".into(), RawNode::Symlink("mksh".into()));
            sys.remove("bin/ps");
            sys.insert("bin/df".into(), RawNode::Symlink("toolbox".into()));
            sys.insert(
                "bin/reboot".into(),
                file(b"#!/system/bin/sh\nreboot now\n".to_vec()),
            );
            sys.insert("bin/vi".into(), RawNode::Symlink("toolbox".into()));
            s.meta.insert(
                "system/etc/hosts".into(),
                Meta {
                    uid: 0,
                    gid: 0,
                    mode: 0o600,
                    selabel: Some("u:object_r:hosts_file:s0".into()),
                    capabilities: Some(0),
                },
            );
            s.kernel = mutate(&s.kernel, 105);
            s.recovery_ramdisk.insert(
                "sbin/recovery".into(),
                file(mutate(&noise(71, 80_000), 106)),
            );
        }
        if version >= 3 {
            s.incremental = "eng.1003".into();
            s.timestamp = 1_400_200_000;
            if let Some(RawNode::File { data, .. }) = s.system.get("bin/toolbox") {
                let d = mutate(data, 201);
                s.system.insert("bin/toolbox".into(), file(d));
            }
        }
        s.fingerprint = format!(
            "acme/{d}/{d}:4.4.4/KTU84P/{}:user/release-keys",
            s.incremental,
            d = s.device
        );
        Ok(s)
    }

    /// A large system from this machine's files (`dirs`, regular files
    /// only, up to `total` bytes), for benchmarks.
    pub fn from_host(dirs: &[&Path], total: u64) -> Result<Spec> {
        let mut s = Spec::sample(1)?;
        let mut used: u64 = s
            .system
            .values()
            .map(|n| {
                if let RawNode::File { data, .. } = n {
                    data.len() as u64
                } else {
                    0
                }
            })
            .sum();
        let mut stack: Vec<std::path::PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
        let mut n = 0;
        'outer: while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            let mut ents: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
            ents.sort();
            for p in ents {
                let Ok(md) = std::fs::symlink_metadata(&p) else {
                    continue;
                };
                if md.is_dir() {
                    stack.push(p);
                } else if md.is_file() && md.len() > 0 {
                    if used + md.len() > total {
                        continue;
                    }
                    let Ok(data) = std::fs::read(&p) else {
                        continue;
                    };
                    used += data.len() as u64;
                    n += 1;
                    let name = p
                        .file_name()
                        .map(|f| {
                            f.to_string_lossy().replace(
                                |c: char| {
                                    !c.is_ascii_alphanumeric() && c != '.' && c != '_' && c != '-'
                                },
                                "_",
                            )
                        })
                        .unwrap_or_default();
                    s.system
                        .insert(format!("lib/host/{:03}/{n:05}-{name}", n % 97), file(data));
                    if used >= total {
                        break 'outer;
                    }
                }
            }
        }
        Ok(s)
    }

    /// A next build: `fraction` of the files (by count, every k-th) changed
    /// as a rebuild would, and build.prop moved on.
    pub fn mutated(&self, fraction: f64, seed: u64) -> Spec {
        let mut s = self.clone();
        let step = (1.0 / fraction.max(1e-6)).round().max(1.0) as usize;
        let paths: Vec<String> = s
            .system
            .iter()
            .filter(|(_, n)| matches!(n, RawNode::File { .. }))
            .map(|(p, _)| p.clone())
            .collect();
        for (i, p) in paths.iter().enumerate() {
            if i % step == 0 {
                if let Some(RawNode::File { data, .. }) = s.system.get(p) {
                    let d = mutate(data, seed + i as u64);
                    s.system.insert(p.clone(), file(d));
                }
            }
        }
        s.incremental = format!("{}.{seed}", self.incremental);
        s.timestamp += 1000;
        s.fingerprint = format!(
            "acme/{d}/{d}:4.4.4/KTU84P/{}:user/release-keys",
            s.incremental,
            d = s.device
        );
        s
    }

    /// `build.prop` text.
    pub fn build_prop(&self) -> String {
        format!(
            "# begin build properties\nro.build.id=KTU84P\nro.build.version.incremental={}\nro.build.date=Tue May 13 {}\nro.build.date.utc={}\nro.product.device={}\nro.build.fingerprint={}\n",
            self.incremental, self.timestamp, self.timestamp, self.device, self.fingerprint
        )
    }

    /// `name/…` entries from paths relative to the partition, with the
    /// partition root and every parent directory; empty for no entries.
    fn tree_of(name: &str, entries: &BTreeMap<String, RawNode>) -> BTreeMap<String, RawNode> {
        let mut t: BTreeMap<String, RawNode> = entries
            .iter()
            .map(|(p, n)| (format!("{name}/{p}"), n.clone()))
            .collect();
        if !t.is_empty() {
            crate::target_files::add_parents(&mut t);
        }
        t
    }

    /// Metadata for every entry of `tree`: [`Spec::meta`] or [`default_meta`].
    fn config_of(&self, tree: &BTreeMap<String, RawNode>) -> FsConfig {
        let mut c = FsConfig::default();
        for (p, n) in tree {
            let m = self
                .meta
                .get(p)
                .cloned()
                .unwrap_or_else(|| default_meta(p, n));
            c.entries.insert(p.clone(), m);
        }
        c
    }

    /// Every `SYSTEM/` entry as it ends up on the device (with build.prop
    /// and parent directories), by full path (`system/…`).
    pub fn system_tree(&self) -> BTreeMap<String, RawNode> {
        let mut all = self.system.clone();
        all.insert("build.prop".into(), file(self.build_prop().into_bytes()));
        Self::tree_of("system", &all)
    }

    /// Every `VENDOR/` entry by full path (`vendor/…`); empty without a
    /// vendor partition.
    pub fn vendor_tree(&self) -> BTreeMap<String, RawNode> {
        Self::tree_of("vendor", &self.vendor)
    }

    /// `META/vendor_filesystem_config.txt` for [`Spec::vendor_tree`].
    pub fn vendor_fs_config(&self) -> FsConfig {
        self.config_of(&self.vendor_tree())
    }

    /// `META/filesystem_config.txt` for [`Spec::system_tree`].
    pub fn fs_config(&self) -> FsConfig {
        self.config_of(&self.system_tree())
    }

    fn entries(&self) -> Vec<(String, RawNode)> {
        let mut v: Vec<(String, RawNode)> = Vec::new();
        for (p, n) in self.system_tree() {
            if p != "system" {
                v.push((format!("SYSTEM/{}", &p["system/".len()..]), n));
            }
        }
        for (p, n) in self.vendor_tree() {
            if p != "vendor" {
                v.push((format!("VENDOR/{}", &p["vendor/".len()..]), n));
            }
        }
        if !self.vendor.is_empty() {
            v.push((
                "META/vendor_filesystem_config.txt".into(),
                file(self.vendor_fs_config().to_text().into_bytes()),
            ));
        }
        let mut misc = format!(
            "recovery_api_version=3\nfstab_version={}\n",
            if self.legacy_fstab { 1 } else { 2 }
        );
        misc += "blocksize=131072\nboot_size=0x00A00000\nrecovery_size=0x00C00000\nsystem_size=1073741824\nfs_type=ext4\nextfs_sparse_flag=-s\nselinux_fc=out/root/file_contexts\n";
        if self.use_set_metadata {
            misc.push_str("use_set_metadata=1\n");
        }
        let meta = [
            ("META/misc_info.txt", misc.into_bytes()),
            (
                "META/filesystem_config.txt",
                self.fs_config().to_text().into_bytes(),
            ),
            ("BOOT/kernel", self.kernel.clone()),
            (
                "BOOT/cmdline",
                b"console=ttyHSL0,115200,n8 androidboot.hardware=hammerhead\n".to_vec(),
            ),
            ("BOOT/base", b"0x00000000\n".to_vec()),
            ("BOOT/pagesize", b"2048\n".to_vec()),
            (
                "BOOT/RAMDISK/file_contexts",
                b"/system(/.*)?    u:object_r:system_file:s0\n".to_vec(),
            ),
            ("RECOVERY/kernel", self.kernel.clone()),
            (
                "RECOVERY/cmdline",
                b"console=ttyHSL0,115200,n8 androidboot.hardware=hammerhead\n".to_vec(),
            ),
            (
                "RECOVERY/RAMDISK/etc/recovery.fstab",
                if self.legacy_fstab {
                    FSTAB_V1
                } else {
                    FSTAB_V2
                }
                .as_bytes()
                .to_vec(),
            ),
        ];
        for (p, d) in meta {
            v.push((p.to_string(), file(d)));
        }
        for (p, n) in &self.boot_ramdisk {
            v.push((format!("BOOT/RAMDISK/{p}"), n.clone()));
        }
        for (p, n) in &self.recovery_ramdisk {
            v.push((format!("RECOVERY/RAMDISK/{p}"), n.clone()));
        }
        if let Some(u) = &self.updater {
            v.push(("OTA/bin/updater".into(), file(u.clone())));
        }
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Writes the build as a target-files zip (symlinks stored as `zip -y` does).
    pub fn write_zip(&self, path: &Path) -> Result<()> {
        let f = std::fs::File::create(path).map_err(io(format!("creating {}", path.display())))?;
        let mut z = zip::ZipWriter::new(std::io::BufWriter::new(f));
        let base = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(1));
        for (p, n) in self.entries() {
            let ctx = || format!("writing {p} to {}", path.display());
            match n {
                RawNode::Dir { .. } => z.add_directory(p.clone(), base).map_err(zip_err(ctx()))?,
                RawNode::Symlink(t) => z.add_symlink(p.clone(), t, base).map_err(zip_err(ctx()))?,
                RawNode::File { data, .. } => {
                    z.start_file(p.clone(), base.unix_permissions(0o644))
                        .map_err(zip_err(ctx()))?;
                    z.write_all(&data).map_err(io(ctx()))?;
                }
            }
        }
        z.finish()
            .map_err(zip_err(format!("finishing {}", path.display())))?;
        Ok(())
    }

    /// Writes the build as an unpacked target-files directory.
    pub fn write_dir(&self, root: &Path) -> Result<()> {
        for (p, n) in self.entries() {
            let host = root.join(&p);
            if let Some(parent) = host.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(io(format!("creating {}", parent.display())))?;
            }
            match n {
                RawNode::Dir { .. } => std::fs::create_dir_all(&host)
                    .map_err(io(format!("creating {}", host.display())))?,
                RawNode::Symlink(t) => std::os::unix::fs::symlink(t, &host)
                    .map_err(io(format!("linking {}", host.display())))?,
                RawNode::File { data, .. } => std::fs::write(&host, data)
                    .map_err(io(format!("writing {}", host.display())))?,
            }
        }
        Ok(())
    }
}
