//! A recovery simulator: runs a package's `updater-script` against a
//! directory standing in for the device.
//!
//! - Device paths map under ROOT (`/system/bin/sh` → `ROOT/system/bin/sh`).
//!   Symlinks met on the way are resolved inside ROOT, as in a chroot, so a
//!   link to `/system/bin/toolbox` never leaves ROOT.
//! - File operations must fall under a mounted mount point, `/tmp` or
//!   `/cache`; `format` empties a mount point's directory.
//! - Raw partitions are files: an EMMC device path maps under ROOT like any
//!   path (`/dev/block/…/boot`), an MTD partition `NAME` to `ROOT/dev/mtd/NAME`.
//! - `getprop` answers from a props file or, when none is given,
//!   `ROOT/system/build.prop` as it was when the run started.
//! - Modes are set for real (directories keep owner `rwx` so a non-root
//!   user can go on writing); owner, group, SELinux label and capabilities,
//!   which need root, are recorded in the sidecar `ROOT/.ota-metadata` in
//!   the `filesystem_config.txt` format.
//! - `apply_patch` saves the source to `/cache/saved.file` first, writes the
//!   result beside the target and renames it after its SHA-1 matches.
//! - `run_program` is refused (it would run a device binary); `sleep` does
//!   not wait.

use crate::edify::{self, Host, Value};
use crate::error::{io, zip_err, AndroidError, Result};
use crate::package::sha1_hex;
use crate::props::Props;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Name of the sidecar with owners, labels and capabilities.
pub const METADATA_FILE: &str = ".ota-metadata";
const SAVED_FILE: &str = "/cache/saved.file";

/// What the simulator records for one path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Mode last set (for symlinks: none).
    pub mode: Option<u32>,
    /// SELinux label.
    pub selabel: Option<String>,
    /// Capabilities (regular files only).
    pub capabilities: Option<u64>,
}

/// Reads a sidecar: path (no leading `/`) → record.
pub fn read_metadata(root: &Path) -> Result<BTreeMap<String, Recorded>> {
    let p = root.join(METADATA_FILE);
    let text = match fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => {
            return Err(AndroidError::Io {
                context: format!("reading {}", p.display()),
                source: e,
            })
        }
    };
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let bad = || AndroidError::Malformed {
            file: p.display().to_string(),
            line: n + 1,
            message: format!("bad line {line:?}"),
        };
        let mut cols = line.split(' ');
        let (Some(path), Some(uid), Some(gid), Some(mode)) =
            (cols.next(), cols.next(), cols.next(), cols.next())
        else {
            return Err(bad());
        };
        let mut r = Recorded {
            uid: uid.parse().map_err(|_| bad())?,
            gid: gid.parse().map_err(|_| bad())?,
            mode: if mode == "-" {
                None
            } else {
                Some(u32::from_str_radix(mode, 8).map_err(|_| bad())?)
            },
            ..Default::default()
        };
        for kv in cols {
            match kv.split_once('=') {
                Some(("selabel", v)) => r.selabel = Some(v.to_string()),
                Some(("capabilities", v)) => {
                    r.capabilities = Some(
                        u64::from_str_radix(v.trim_start_matches("0x"), 16).map_err(|_| bad())?,
                    )
                }
                _ => return Err(bad()),
            }
        }
        out.insert(path.to_string(), r);
    }
    Ok(out)
}

fn write_metadata(root: &Path, meta: &BTreeMap<String, Recorded>) -> Result<()> {
    let mut s = String::new();
    for (p, r) in meta {
        let mode = r.mode.map_or("-".to_string(), |m| format!("{m:o}"));
        s.push_str(&format!("{p} {} {} {mode}", r.uid, r.gid));
        if let Some(l) = &r.selabel {
            s.push_str(&format!(" selabel={l}"));
        }
        if let Some(c) = r.capabilities {
            s.push_str(&format!(" capabilities=0x{c:x}"));
        }
        s.push('\n');
    }
    let p = root.join(METADATA_FILE);
    let tmp = root.join(format!("{METADATA_FILE}.tmp"));
    fs::write(&tmp, s).map_err(io(format!("writing {}", tmp.display())))?;
    fs::rename(&tmp, &p).map_err(io(format!("renaming {}", p.display())))
}

/// Options of a simulated install.
#[derive(Default)]
pub struct ApplyOptions {
    /// Properties `getprop` answers (else ROOT/system/build.prop).
    pub props: Option<Props>,
}

/// Runs `package`'s updater-script against `root`. `ui_print` text goes
/// to `log`. The sidecar is written even when the script aborts, so it
/// always describes what is on disk.
pub fn apply(package: &Path, root: &Path, opts: ApplyOptions, log: &mut dyn Write) -> Result<()> {
    let file = fs::File::open(package).map_err(io(format!("opening {}", package.display())))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(zip_err(format!("reading {} as a zip", package.display())))?;
    let script = {
        let mut e = zip
            .by_name("META-INF/com/google/android/updater-script")
            .map_err(|_| {
                AndroidError::Missing(format!(
                    "META-INF/com/google/android/updater-script in {}",
                    package.display()
                ))
            })?;
        let mut s = String::new();
        e.read_to_string(&mut s)
            .map_err(io("reading updater-script"))?;
        s
    };
    let program = edify::parse(&script)?;
    fs::create_dir_all(root).map_err(io(format!("creating {}", root.display())))?;
    // The script formats /system and /data: never against the host itself.
    let real = fs::canonicalize(root).map_err(io(format!("resolving {}", root.display())))?;
    if real == Path::new("/") {
        return Err(AndroidError::Invalid(
            "ROOT is the host's / : the simulator would format this machine's /system and /data; give it an empty directory".into(),
        ));
    }
    let props = match opts.props {
        Some(p) => p,
        None => match fs::read_to_string(root.join("system/build.prop")) {
            Ok(t) => Props::parse(&t, "system/build.prop")?,
            Err(_) => Props::default(),
        },
    };
    let meta = read_metadata(root)?;
    let mut dev = Device {
        root: root.to_path_buf(),
        zip,
        props,
        mounted: BTreeSet::new(),
        meta,
        log,
    };
    let result = program.run(&mut dev);
    write_metadata(root, &dev.meta)?;
    result.map(|_| ())
}

struct Device<'a> {
    root: PathBuf,
    zip: zip::ZipArchive<std::io::BufReader<fs::File>>,
    props: Props,
    mounted: BTreeSet<String>,
    meta: BTreeMap<String, Recorded>,
    log: &'a mut dyn Write,
}

fn fail(msg: impl Into<String>) -> AndroidError {
    AndroidError::Aborted(msg.into())
}

/// `strtoul(s, 0)`: decimal, `0` octal, `0x` hex.
fn parse_num(func: &str, s: &str) -> Result<u64> {
    let s = s.trim();
    let r = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        u64::from_str_radix(&s[1..], 8)
    } else {
        s.parse()
    };
    r.map_err(|_| fail(format!("{func}: {s:?} is not a number")))
}

fn args_str<'v>(func: &str, args: &'v [Value]) -> Result<Vec<&'v str>> {
    args.iter().map(|a| a.str(func)).collect()
}

fn arity(func: &str, args: &[Value], lo: usize, hi: usize) -> Result<()> {
    if args.len() < lo || args.len() > hi {
        let want = if lo == hi {
            lo.to_string()
        } else if hi == usize::MAX {
            format!("at least {lo}")
        } else {
            format!("{lo}..{hi}")
        };
        return Err(fail(format!(
            "{func}() expects {want} arguments, got {}",
            args.len()
        )));
    }
    Ok(())
}

/// Splits `/a/b` into checked components.
fn components(func: &str, path: &str) -> Result<Vec<String>> {
    if !path.starts_with('/') {
        return Err(fail(format!(
            "{func}: {path:?} is not an absolute device path"
        )));
    }
    let mut out = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(fail(format!("{func}: {path:?} contains '..'"))),
            c => out.push(c.to_string()),
        }
    }
    Ok(out)
}

impl Device<'_> {
    /// Resolves a device path inside ROOT, following symlinks chroot-style
    /// (the last component only when `follow_last`). Returns the resolved
    /// device path.
    fn resolve(&self, func: &str, path: &str, follow_last: bool) -> Result<String> {
        let mut pending: Vec<String> = components(func, path)?;
        pending.reverse();
        let mut done: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(c) = pending.pop() {
            let last = pending.is_empty();
            let host = self
                .root
                .join(done.iter().chain(std::iter::once(&c)).collect::<PathBuf>());
            let is_link = fs::symlink_metadata(&host)
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false);
            if is_link && (!last || follow_last) {
                hops += 1;
                if hops > 40 {
                    return Err(fail(format!(
                        "{func}: too many levels of symbolic links in {path:?}"
                    )));
                }
                let target =
                    fs::read_link(&host).map_err(io(format!("reading link {}", host.display())))?;
                let t = target.to_string_lossy().to_string();
                if t.starts_with('/') {
                    done.clear();
                }
                for part in t.split('/').rev() {
                    match part {
                        "" | "." => {}
                        p => pending.push(p.to_string()),
                    }
                }
                // Resolve `..` left by relative targets against `done`.
                while pending.last().is_some_and(|p| p == "..") {
                    pending.pop();
                    done.pop();
                }
                continue;
            }
            if c == ".." {
                done.pop();
            } else {
                done.push(c);
            }
        }
        Ok(format!("/{}", done.join("/")))
    }

    /// The host path of a device path, checked to be on a mounted partition.
    fn host(&self, func: &str, path: &str, follow_last: bool) -> Result<(String, PathBuf)> {
        let dev = self.resolve(func, path, follow_last)?;
        let ok = ["/tmp", "/cache"]
            .into_iter()
            .chain(self.mounted.iter().map(String::as_str))
            .any(|m| dev == m || dev.starts_with(&format!("{m}/")));
        if !ok {
            return Err(fail(format!(
                "{func}: {path} is not on a mounted partition (mounted: {})",
                self.mounted_list()
            )));
        }
        Ok((dev.clone(), self.root.join(dev.trim_start_matches('/'))))
    }

    fn mounted_list(&self) -> String {
        if self.mounted.is_empty() {
            "none".into()
        } else {
            self.mounted.iter().cloned().collect::<Vec<_>>().join(", ")
        }
    }

    /// Host path of a raw partition (`MTD` name or `EMMC` device path).
    fn partition(&self, func: &str, kind: &str, dev: &str) -> Result<PathBuf> {
        match kind {
            "MTD" => {
                if dev.is_empty() || dev.contains('/') || dev.starts_with('.') {
                    return Err(fail(format!("{func}: bad MTD partition name {dev:?}")));
                }
                Ok(self.root.join("dev/mtd").join(dev))
            }
            "EMMC" => {
                let c = components(func, dev)?;
                if c.first().map(String::as_str) != Some("dev") {
                    return Err(fail(format!(
                        "{func}: EMMC device {dev:?} is not under /dev"
                    )));
                }
                Ok(self.root.join(c.join("/")))
            }
            k => Err(fail(format!(
                "{func}: unknown partition type {k:?} (MTD or EMMC)"
            ))),
        }
    }

    fn rel(dev: &str) -> String {
        dev.trim_start_matches('/').to_string()
    }

    /// Reads a file or a partition spec `TYPE:dev:size:sha1[:size:sha1…]`;
    /// for a spec, the first (size, sha1) prefix that matches wins, else
    /// the first size's prefix.
    fn load(&self, func: &str, spec: &str) -> Result<Vec<u8>> {
        if let Some((kind, rest)) = spec
            .split_once(':')
            .filter(|(k, _)| *k == "MTD" || *k == "EMMC")
        {
            let mut parts = rest.split(':');
            let dev = parts.next().unwrap_or_default();
            let pairs: Vec<&str> = parts.collect();
            if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
                return Err(fail(format!("{func}: bad partition spec {spec:?}")));
            }
            let host = self.partition(func, kind, dev)?;
            let data = fs::read(&host).map_err(|e| {
                fail(format!(
                    "{func}: failed to read {kind} partition {dev}: {e}"
                ))
            })?;
            let mut first = None;
            for pair in pairs.chunks(2) {
                let size = parse_num(func, pair[0])? as usize;
                if size > data.len() {
                    continue;
                }
                let prefix = &data[..size];
                if sha1_hex(prefix) == pair[1] {
                    return Ok(prefix.to_vec());
                }
                first.get_or_insert(prefix);
            }
            return Ok(first.unwrap_or(&data[..0]).to_vec());
        }
        let (_, host) = self.host(func, spec, true)?;
        fs::read(&host).map_err(|e| fail(format!("{func}: failed to read {spec}: {e}")))
    }

    fn write_file(
        &mut self,
        func: &str,
        dev: &str,
        host: &Path,
        data: &[u8],
        mode: u32,
    ) -> Result<()> {
        if let Some(parent) = host.parent() {
            fs::create_dir_all(parent).map_err(|e| {
                fail(format!(
                    "{func}: failed to create directories for {dev}: {e}"
                ))
            })?;
        }
        if fs::symlink_metadata(host).is_ok_and(|m| m.file_type().is_symlink() || m.is_file()) {
            fs::remove_file(host)
                .map_err(|e| fail(format!("{func}: failed to replace {dev}: {e}")))?;
        }
        let mut f = fs::File::create(host)
            .map_err(|e| fail(format!("{func}: failed to create {dev}: {e}")))?;
        f.write_all(data)
            .and_then(|_| f.sync_all())
            .map_err(|e| fail(format!("{func}: failed to write {dev}: {e}")))?;
        fs::set_permissions(host, fs::Permissions::from_mode(mode))
            .map_err(|e| fail(format!("{func}: chmod {dev}: {e}")))?;
        self.meta.insert(
            Self::rel(dev),
            Recorded {
                uid: 0,
                gid: 0,
                mode: Some(mode),
                ..Default::default()
            },
        );
        Ok(())
    }

    fn zip_entry(&mut self, func: &str, name: &str) -> Result<Vec<u8>> {
        let mut e = self
            .zip
            .by_name(name)
            .map_err(|_| fail(format!("{func}: no {name} in the package")))?;
        let mut data = Vec::with_capacity(e.size().min(1 << 30) as usize);
        e.read_to_end(&mut data)
            .map_err(|e| fail(format!("{func}: reading {name} from the package: {e}")))?;
        Ok(data)
    }

    /// Applies parsed metadata to one path (symlinks: owner and label only;
    /// capabilities: regular files only, as `install.c` does).
    fn set_meta(
        &mut self,
        func: &str,
        dev: &str,
        host: &Path,
        keys: &BTreeMap<String, Value>,
        recursive_file: Option<bool>,
    ) -> Result<()> {
        let md = fs::symlink_metadata(host).map_err(|e| fail(format!("{func}: {dev}: {e}")))?;
        let ft = md.file_type();
        let entry = self.meta.entry(Self::rel(dev)).or_default();
        let num = |k: &str| -> Result<Option<u64>> {
            keys.get(k)
                .map(|v| parse_num(func, v.str(func)?))
                .transpose()
        };
        if let Some(u) = num("uid")? {
            entry.uid = u as u32;
        }
        if let Some(g) = num("gid")? {
            entry.gid = g as u32;
        }
        if let Some(l) = keys.get("selabel") {
            entry.selabel = Some(l.str(func)?.to_string());
        }
        let mode = match recursive_file {
            None => num("mode")?,
            Some(true) => num("fmode")?,
            Some(false) => num("dmode")?,
        };
        if ft.is_symlink() {
            entry.mode = None;
            return Ok(());
        }
        if let Some(m) = mode {
            let m = (m & 0o7777) as u32;
            entry.mode = Some(m);
            let real = if ft.is_dir() { m | 0o700 } else { m };
            fs::set_permissions(host, fs::Permissions::from_mode(real))
                .map_err(|e| fail(format!("{func}: chmod {dev}: {e}")))?;
        }
        if ft.is_file() {
            if let Some(c) = num("capabilities")? {
                entry.capabilities = Some(c);
            }
        }
        Ok(())
    }

    fn walk(host: &Path, dev: &str, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
        out.push((dev.to_string(), host.to_path_buf()));
        let md = fs::symlink_metadata(host).map_err(io(format!("reading {}", host.display())))?;
        if md.is_dir() {
            let mut names: Vec<_> = fs::read_dir(host)
                .map_err(io(format!("listing {}", host.display())))?
                .filter_map(|e| e.ok().map(|e| e.file_name()))
                .collect();
            names.sort();
            for n in names {
                let n = n.to_string_lossy().to_string();
                Self::walk(&host.join(&n), &format!("{dev}/{n}"), out)?;
            }
        }
        Ok(())
    }

    fn forget_under(&mut self, dev: &str) {
        let rel = Self::rel(dev);
        let prefix = format!("{rel}/");
        self.meta
            .retain(|k, _| *k != rel && !k.starts_with(&prefix));
    }

    fn apply_patch(&mut self, args: &[Value]) -> Result<Value> {
        const F: &str = "apply_patch";
        if args.len() < 6 || !args.len().is_multiple_of(2) {
            return Err(fail(format!(
                "{F}() expects src, tgt, tgt_sha1, tgt_size and sha1/patch pairs, got {} arguments",
                args.len()
            )));
        }
        let src = args[0].str(F)?.to_string();
        let tgt_arg = args[1].str(F)?;
        let tgt = if tgt_arg == "-" {
            src.clone()
        } else {
            tgt_arg.to_string()
        };
        let tgt_sha1 = args[2].str(F)?.to_string();
        let tgt_size = parse_num(F, args[3].str(F)?)?;
        let mut patches: Vec<(String, &[u8])> = Vec::new();
        for pair in args[4..].chunks(2) {
            let sha = pair[0].str(F)?.to_string();
            let Value::Blob(p) = &pair[1] else {
                return Err(fail(format!(
                    "{F}: the patch for {sha} is not binary data (use package_extract_file)"
                )));
            };
            patches.push((sha, p));
        }
        let is_partition = src.starts_with("MTD:") || src.starts_with("EMMC:");
        // Each side is read and hashed once (they are one file with "-").
        let hashed = |d: Vec<u8>| {
            let s = sha1_hex(&d);
            (d, s)
        };
        let current = self.load(F, &tgt).ok().map(hashed);
        // Already patched (an interrupted install being retried)?
        if current.as_ref().is_some_and(|(_, s)| *s == tgt_sha1) {
            writeln!(self.log, "\"{tgt}\" is already the target; skipping").ok();
            return Ok(Value::t());
        }
        let source = if tgt == src {
            current
        } else {
            self.load(F, &src).ok().map(hashed)
        };
        let mut from_cache = false;
        let matching = |data: &[u8]| {
            let s = sha1_hex(data);
            patches.iter().position(|(sha, _)| *sha == s)
        };
        let mut which = source
            .as_ref()
            .and_then(|(_, s)| patches.iter().position(|(sha, _)| sha == s));
        let mut source = source.map(|(d, _)| d);
        if which.is_none() {
            // The source may have been lost mid-patch: use the saved copy.
            if let Ok(saved) = fs::read(self.root.join(SAVED_FILE.trim_start_matches('/'))) {
                which = matching(&saved);
                if which.is_some() {
                    source = Some(saved);
                    from_cache = true;
                }
            }
        }
        let (Some(idx), Some(source)) = (which, source) else {
            return Err(fail(format!("{F}: {src} matches none of the patches' sources (and no good copy in {SAVED_FILE})")));
        };
        let mut out = Vec::with_capacity(tgt_size as usize);
        ota_delta::patch_bytes(&source, patches[idx].1, &mut out)
            .map_err(|e| fail(format!("{F}: patching {src}: {e}")))?;
        if out.len() as u64 != tgt_size || sha1_hex(&out) != tgt_sha1 {
            return Err(fail(format!("{F}: patch of {src} gave {} bytes with SHA-1 {}, expected {tgt_size} bytes with {tgt_sha1}", out.len(), sha1_hex(&out))));
        }
        // Keep a copy of the source until the target is in place.
        let saved = self.root.join(SAVED_FILE.trim_start_matches('/'));
        if !from_cache && tgt == src {
            if let Some(p) = saved.parent() {
                fs::create_dir_all(p).map_err(io("creating /cache"))?;
            }
            fs::write(&saved, &source)
                .map_err(|e| fail(format!("{F}: saving the source to {SAVED_FILE}: {e}")))?;
        }
        if is_partition || tgt.starts_with("MTD:") || tgt.starts_with("EMMC:") {
            let mut parts = tgt.split(':');
            let (kind, dev) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            let host = self.partition(F, kind, dev)?;
            fs::write(&host, &out)
                .map_err(|e| fail(format!("{F}: writing {kind} partition {dev}: {e}")))?;
        } else {
            let (dev, host) = self.host(F, &tgt, true)?;
            let mode = fs::metadata(&host)
                .map(|m| m.permissions().mode() & 0o7777)
                .unwrap_or(0o644);
            let tmp = host.with_file_name(format!(
                "{}.patch",
                host.file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default()
            ));
            let mut f = fs::File::create(&tmp)
                .map_err(|e| fail(format!("{F}: creating {dev}.patch: {e}")))?;
            f.write_all(&out)
                .and_then(|_| f.sync_all())
                .map_err(|e| fail(format!("{F}: writing {dev}.patch: {e}")))?;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(io("chmod"))?;
            fs::rename(&tmp, &host).map_err(|e| fail(format!("{F}: renaming {dev}.patch: {e}")))?;
        }
        fs::remove_file(&saved).ok();
        Ok(Value::t())
    }
}

impl Host for Device<'_> {
    fn stdout(&mut self, text: &str) {
        write!(self.log, "{text}").ok();
    }

    fn call(&mut self, name: &str, args: Vec<Value>) -> Result<Value> {
        let n = name;
        match n {
            "ui_print" => {
                let s: String = args_str(n, &args)?.concat();
                writeln!(self.log, "{s}").ok();
                Ok(Value::Str(s))
            }
            "show_progress" | "set_progress" => {
                arity(
                    n,
                    &args,
                    if n == "show_progress" { 2 } else { 1 },
                    if n == "show_progress" { 2 } else { 1 },
                )?;
                for a in args_str(n, &args)? {
                    a.parse::<f64>()
                        .map_err(|_| fail(format!("{n}: {a:?} is not a number")))?;
                }
                Ok(Value::Str(args[0].str(n)?.to_string()))
            }
            "getprop" => {
                arity(n, &args, 1, 1)?;
                Ok(Value::Str(
                    self.props
                        .get(args[0].str(n)?)
                        .unwrap_or_default()
                        .to_string(),
                ))
            }
            "file_getprop" => {
                arity(n, &args, 2, 2)?;
                let a = args_str(n, &args)?;
                let (_, host) = self.host(n, a[0], true)?;
                let text = fs::read_to_string(&host)
                    .map_err(|e| fail(format!("{n}: failed to read \"{}\": {e}", a[0])))?;
                let v = text
                    .lines()
                    .filter(|l| !l.trim_start().starts_with('#'))
                    .filter_map(|l| l.split_once('='))
                    .filter(|(k, _)| k.trim() == a[1])
                    .map(|(_, v)| v.trim().to_string())
                    .next_back()
                    .unwrap_or_default();
                Ok(Value::Str(v))
            }
            "mount" => {
                arity(n, &args, 4, 5)?;
                let a = args_str(n, &args)?;
                let mp = format!("/{}", components(n, a[3])?.join("/"));
                if self.mounted.contains(&mp) {
                    return Err(fail(format!("{n}: {mp} is already mounted")));
                }
                fs::create_dir_all(self.root.join(Self::rel(&mp)))
                    .map_err(|e| fail(format!("{n}: creating {mp}: {e}")))?;
                self.mounted.insert(mp.clone());
                Ok(Value::Str(mp))
            }
            "is_mounted" => {
                arity(n, &args, 1, 1)?;
                let mp = args[0].str(n)?;
                Ok(if self.mounted.contains(mp) {
                    Value::Str(mp.to_string())
                } else {
                    Value::f()
                })
            }
            "unmount" => {
                arity(n, &args, 1, 1)?;
                let mp = args[0].str(n)?;
                if !self.mounted.remove(mp) {
                    return Err(fail(format!("unmount of {mp} failed; no such volume")));
                }
                Ok(Value::Str(mp.to_string()))
            }
            "format" => {
                arity(n, &args, 4, 5)?;
                let a = args_str(n, &args)?;
                let mp = match a.get(4) {
                    Some(m) => format!("/{}", components(n, m)?.join("/")),
                    None => {
                        return Err(fail(format!(
                        "{n}: this simulator needs the mount point argument to know what to empty"
                    )))
                    }
                };
                if self.mounted.contains(&mp) {
                    return Err(fail(format!(
                        "{n}: {mp} is mounted; unmount it before formatting"
                    )));
                }
                let host = self.root.join(Self::rel(&mp));
                if host.exists() {
                    fs::remove_dir_all(&host)
                        .map_err(|e| fail(format!("{n}: emptying {mp}: {e}")))?;
                }
                fs::create_dir_all(&host).map_err(|e| fail(format!("{n}: creating {mp}: {e}")))?;
                self.forget_under(&mp);
                Ok(Value::Str(a[2].to_string()))
            }
            "delete" | "delete_recursive" => {
                let mut done = 0;
                for p in args_str(n, &args)? {
                    let (dev, host) = self.host(n, p, false)?;
                    let Ok(md) = fs::symlink_metadata(&host) else {
                        continue;
                    };
                    let r = if md.is_dir() && n == "delete_recursive" {
                        fs::remove_dir_all(&host)
                    } else if md.is_dir() {
                        continue;
                    } else {
                        fs::remove_file(&host)
                    };
                    if r.is_ok() {
                        done += 1;
                        self.forget_under(&dev);
                    }
                }
                Ok(Value::Str(done.to_string()))
            }
            "package_extract_dir" => {
                arity(n, &args, 2, 2)?;
                let a = args_str(n, &args)?;
                let prefix = format!("{}/", a[0].trim_matches('/'));
                let names: Vec<String> = self
                    .zip
                    .file_names()
                    .filter(|f| f.starts_with(&prefix))
                    .map(String::from)
                    .collect();
                let mut names = names;
                names.sort();
                for name in names {
                    let rel = &name[prefix.len()..];
                    if rel.is_empty() {
                        continue;
                    }
                    if ota_delta::tree::check_rel_path(rel.strip_suffix('/').unwrap_or(rel))
                        .is_err()
                    {
                        return Err(fail(format!(
                            "{n}: package entry {name:?} is not a safe path"
                        )));
                    }
                    let dest = format!(
                        "{}/{}",
                        a[1].trim_end_matches('/'),
                        rel.trim_end_matches('/')
                    );
                    let (dev, host) = self.host(n, &dest, false)?;
                    if name.ends_with('/') {
                        fs::create_dir_all(&host)
                            .map_err(|e| fail(format!("{n}: creating {dev}: {e}")))?;
                        self.meta.entry(Self::rel(&dev)).or_insert(Recorded {
                            mode: Some(0o755),
                            ..Default::default()
                        });
                        continue;
                    }
                    let data = self.zip_entry(n, &name)?;
                    self.write_file(n, &dev, &host, &data, 0o644)?;
                }
                Ok(Value::t())
            }
            "package_extract_file" => {
                arity(n, &args, 1, 2)?;
                let a = args_str(n, &args)?;
                let data = self.zip_entry(n, a[0])?;
                let Some(dest) = a.get(1) else {
                    return Ok(Value::Blob(data));
                };
                if dest.starts_with("/dev/") {
                    let host = self.partition(n, "EMMC", dest)?;
                    if let Some(p) = host.parent() {
                        fs::create_dir_all(p).map_err(io("creating device directories"))?;
                    }
                    fs::write(&host, &data)
                        .map_err(|e| fail(format!("{n}: writing {dest}: {e}")))?;
                    return Ok(Value::t());
                }
                let (dev, host) = self.host(n, dest, false)?;
                self.write_file(n, &dev, &host, &data, 0o644)?;
                Ok(Value::t())
            }
            "write_raw_image" => {
                arity(n, &args, 2, 2)?;
                let part = args[1].str(n)?;
                let data = match &args[0] {
                    Value::Blob(b) => b.clone(),
                    Value::Str(f) => self.load(n, f)?,
                };
                let host = self.partition(n, "MTD", part)?;
                if let Some(p) = host.parent() {
                    fs::create_dir_all(p).map_err(io("creating /dev/mtd"))?;
                }
                fs::write(&host, &data)
                    .map_err(|e| fail(format!("{n}: writing partition {part}: {e}")))?;
                Ok(Value::Str(part.to_string()))
            }
            "symlink" => {
                arity(n, &args, 1, usize::MAX)?;
                let a = args_str(n, &args)?;
                let target = a[0];
                for link in &a[1..] {
                    let (dev, host) = self.host(n, link, false)?;
                    if fs::symlink_metadata(&host).is_ok_and(|m| !m.is_dir()) {
                        fs::remove_file(&host)
                            .map_err(|e| fail(format!("{n}: failed to remove {dev}: {e}")))?;
                    }
                    if let Some(p) = host.parent() {
                        fs::create_dir_all(p)
                            .map_err(|e| fail(format!("{n}: creating parents of {dev}: {e}")))?;
                    }
                    std::os::unix::fs::symlink(target, &host).map_err(|e| {
                        fail(format!("{n}: failed to symlink {dev} to {target}: {e}"))
                    })?;
                    self.meta.insert(Self::rel(&dev), Recorded::default());
                }
                Ok(Value::t())
            }
            "set_perm" | "set_perm_recursive" => {
                let rec = n == "set_perm_recursive";
                let fixed = if rec { 4 } else { 3 };
                arity(n, &args, fixed + 1, usize::MAX)?;
                let mut keys = BTreeMap::new();
                keys.insert("uid".to_string(), args[0].clone());
                keys.insert("gid".to_string(), args[1].clone());
                if rec {
                    keys.insert("dmode".to_string(), args[2].clone());
                    keys.insert("fmode".to_string(), args[3].clone());
                } else {
                    keys.insert("mode".to_string(), args[2].clone());
                }
                for p in args_str(n, &args[fixed..])? {
                    self.apply_meta(n, p, &keys, rec)?;
                }
                Ok(Value::t())
            }
            "set_metadata" | "set_metadata_recursive" => {
                let rec = n == "set_metadata_recursive";
                if args.len() < 3 || args.len().is_multiple_of(2) {
                    return Err(fail(format!(
                        "{n}() expects a path and key/value pairs, got {} arguments",
                        args.len()
                    )));
                }
                let path = args[0].str(n)?.to_string();
                let mut keys = BTreeMap::new();
                for kv in args[1..].chunks(2) {
                    let k = kv[0].str(n)?;
                    let allowed: &[&str] = if rec {
                        &["uid", "gid", "dmode", "fmode", "capabilities", "selabel"]
                    } else {
                        &["uid", "gid", "mode", "capabilities", "selabel"]
                    };
                    if !allowed.contains(&k) {
                        return Err(fail(format!(
                            "{n}: invalid key {k:?} (known: {})",
                            allowed.join(", ")
                        )));
                    }
                    keys.insert(k.to_string(), kv[1].clone());
                }
                self.apply_meta(n, &path, &keys, rec)?;
                Ok(Value::t())
            }
            "apply_patch" => self.apply_patch(&args),
            "apply_patch_check" => {
                arity(n, &args, 1, usize::MAX)?;
                let a = args_str(n, &args)?;
                let want: Vec<&str> = a[1..].to_vec();
                let spec_pairs: Vec<String> =
                    if a[0].starts_with("MTD:") || a[0].starts_with("EMMC:") {
                        a[0].split(':')
                            .skip(2)
                            .collect::<Vec<_>>()
                            .chunks(2)
                            .filter_map(|c| c.get(1).map(|s| s.to_string()))
                            .collect()
                    } else {
                        Vec::new()
                    };
                let ok = |d: &[u8]| {
                    let s = sha1_hex(d);
                    (want.is_empty() && spec_pairs.is_empty())
                        || want.contains(&s.as_str())
                        || spec_pairs.contains(&s)
                };
                if self.load(n, a[0]).is_ok_and(|d| ok(&d)) {
                    return Ok(Value::t());
                }
                let saved = fs::read(self.root.join(SAVED_FILE.trim_start_matches('/')));
                Ok(Value::bool(saved.is_ok_and(|d| ok(&d))))
            }
            "apply_patch_space" => {
                arity(n, &args, 1, 1)?;
                let need = parse_num(n, args[0].str(n)?)?;
                let st = rustix::fs::statvfs(&self.root)
                    .map_err(|e| fail(format!("{n}: statvfs: {e}")))?;
                Ok(Value::bool(st.f_bavail.saturating_mul(st.f_frsize) >= need))
            }
            "sha1_check" => {
                arity(n, &args, 1, usize::MAX)?;
                let data = match &args[0] {
                    Value::Blob(b) => b.clone(),
                    Value::Str(s) => s.clone().into_bytes(),
                };
                let s = sha1_hex(&data);
                if args.len() == 1 {
                    return Ok(Value::Str(s));
                }
                let want = args_str(n, &args[1..])?;
                Ok(if want.contains(&s.as_str()) {
                    Value::Str(s)
                } else {
                    Value::f()
                })
            }
            "read_file" => {
                arity(n, &args, 1, 1)?;
                let (_, host) = self.host(n, args[0].str(n)?, true)?;
                let d = fs::read(&host).map_err(|e| fail(format!("{n}: {e}")))?;
                Ok(Value::Blob(d))
            }
            "rename" => {
                arity(n, &args, 2, 2)?;
                let a = args_str(n, &args)?;
                let (from_dev, from) = self.host(n, a[0], false)?;
                let (to_dev, to) = self.host(n, a[1], false)?;
                if let Some(p) = to.parent() {
                    fs::create_dir_all(p).map_err(io("creating parents"))?;
                }
                fs::rename(&from, &to)
                    .map_err(|e| fail(format!("{n}: {} → {}: {e}", a[0], a[1])))?;
                if let Some(r) = self.meta.remove(&Self::rel(&from_dev)) {
                    self.meta.insert(Self::rel(&to_dev), r);
                }
                Ok(Value::t())
            }
            "wipe_cache" => {
                let c = self.root.join("cache");
                if c.exists() {
                    fs::remove_dir_all(&c).map_err(io("wiping /cache"))?;
                }
                fs::create_dir_all(&c).map_err(io("creating /cache"))?;
                self.forget_under("/cache");
                Ok(Value::t())
            }
            "run_program" => Err(fail(
                "run_program() is not simulated: it would run a device binary",
            )),
            _ => Err(fail(format!("unknown function {n}()"))),
        }
    }
}

impl Device<'_> {
    fn apply_meta(
        &mut self,
        func: &str,
        path: &str,
        keys: &BTreeMap<String, Value>,
        recursive: bool,
    ) -> Result<()> {
        let (dev, host) = self.host(func, path, false)?;
        if !recursive {
            return self.set_meta(func, &dev, &host, keys, None);
        }
        let mut all = Vec::new();
        Self::walk(&host, &dev, &mut all).map_err(|e| fail(format!("{func}: {path}: {e}")))?;
        for (d, h) in all {
            let is_dir = fs::symlink_metadata(&h).is_ok_and(|m| m.is_dir());
            self.set_meta(func, &d, &h, keys, Some(!is_dir))?;
        }
        Ok(())
    }
}
