//! The updater's built-in functions (`install.c`), run against ROOT.

use super::{args_str, arity, fail, parent, parse_num, Device, Recorded};
use crate::edify::{Host, Value};
use crate::error::Result;
use crate::package::sha1_hex;
use rustix::fs::FileType;
use std::collections::BTreeMap;
use std::io::{Read, Seek};

impl<R: Read + Seek> Host for Device<'_, R> {
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
                let k = if n == "show_progress" { 2 } else { 1 };
                arity(n, &args, k, k)?;
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
                let dev = self.host(n, a[0], true)?;
                let text = self
                    .root
                    .read(&dev)
                    .map_err(|e| fail(format!("{n}: failed to read \"{}\": {e}", a[0])))?;
                let v = String::from_utf8_lossy(&text)
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
                let mp = self.mount_point(n, a[3])?;
                if self.mounted.contains(&mp) {
                    return Err(fail(format!("{n}: {mp} is already mounted")));
                }
                self.root
                    .create_dir_all(&mp)
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
                let Some(m) = a.get(4) else {
                    return Err(fail(format!(
                        "{n}: this simulator needs the mount point argument to know what to empty"
                    )));
                };
                let mp = self.mount_point(n, m)?;
                if self.mounted.contains(&mp) {
                    return Err(fail(format!(
                        "{n}: {mp} is mounted; unmount it before formatting"
                    )));
                }
                // A link at the mount point is removed, never followed.
                self.root
                    .remove_all(&mp)
                    .map_err(|e| fail(format!("{n}: emptying {mp}: {e}")))?;
                self.root
                    .create_dir_all(&mp)
                    .map_err(|e| fail(format!("{n}: creating {mp}: {e}")))?;
                self.forget_under(&mp);
                Ok(Value::Str(a[2].to_string()))
            }
            "delete" | "delete_recursive" => {
                let mut done = 0;
                for p in args_str(n, &args)? {
                    let dev = self.host(n, p, false)?;
                    let r = match self.root.kind(&dev) {
                        Ok(Some(FileType::Directory)) if n == "delete_recursive" => {
                            self.root.remove_all(&dev)
                        }
                        Ok(Some(FileType::Directory)) | Ok(None) | Err(_) => continue,
                        Ok(Some(_)) => self.root.remove(&dev),
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
                let mut names: Vec<String> = self
                    .zip
                    .file_names()
                    .filter(|f| f.starts_with(&prefix))
                    .map(String::from)
                    .collect();
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
                    let dev = self.host(n, &dest, false)?;
                    if name.ends_with('/') {
                        self.root
                            .create_dir_all(&dev)
                            .map_err(|e| fail(format!("{n}: creating {dev}: {e}")))?;
                        self.meta.entry(Self::rel(&dev)).or_insert(Recorded {
                            mode: Some(0o755),
                            ..Default::default()
                        });
                        continue;
                    }
                    let data = self.zip_entry(n, &name)?;
                    self.write_file(n, &dev, &data, 0o644)?;
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
                    let real = self.partition(n, "EMMC", dest)?;
                    self.write_partition(n, &real, &data)?;
                    return Ok(Value::t());
                }
                let dev = self.host(n, dest, false)?;
                self.write_file(n, &dev, &data, 0o644)?;
                Ok(Value::t())
            }
            "write_raw_image" => {
                arity(n, &args, 2, 2)?;
                let part = args[1].str(n)?;
                let data = match &args[0] {
                    Value::Blob(b) => b.clone(),
                    Value::Str(f) => self.load(n, f)?,
                };
                let real = self.partition(n, "MTD", part)?;
                self.write_partition(n, &real, &data)?;
                Ok(Value::Str(part.to_string()))
            }
            "symlink" => {
                arity(n, &args, 1, usize::MAX)?;
                let a = args_str(n, &args)?;
                let target = a[0];
                for link in &a[1..] {
                    let dev = self.host(n, link, false)?;
                    if self
                        .root
                        .kind(&dev)
                        .is_ok_and(|k| k.is_some_and(|k| k != FileType::Directory))
                    {
                        self.root
                            .remove(&dev)
                            .map_err(|e| fail(format!("{n}: failed to remove {dev}: {e}")))?;
                    }
                    if let Some(p) = parent(&dev) {
                        self.root
                            .create_dir_all(p)
                            .map_err(|e| fail(format!("{n}: creating parents of {dev}: {e}")))?;
                    }
                    self.root.symlink(target, &dev).map_err(|e| {
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
            "apply_patch_check" => self.apply_patch_check(&args),
            "apply_patch_space" => {
                arity(n, &args, 1, 1)?;
                let need = parse_num(n, args[0].str(n)?)?;
                let st = self
                    .root
                    .statvfs()
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
                let dev = self.host(n, args[0].str(n)?, true)?;
                let d = self
                    .root
                    .read(&dev)
                    .map_err(|e| fail(format!("{n}: {e}")))?;
                Ok(Value::Blob(d))
            }
            "rename" => {
                arity(n, &args, 2, 2)?;
                let a = args_str(n, &args)?;
                let from = self.host(n, a[0], false)?;
                let to = self.host(n, a[1], false)?;
                if let Some(p) = parent(&to) {
                    self.root
                        .create_dir_all(p)
                        .map_err(|e| fail(format!("{n}: creating parents of {to}: {e}")))?;
                }
                self.root
                    .rename(&from, &to)
                    .map_err(|e| fail(format!("{n}: {} → {}: {e}", a[0], a[1])))?;
                if let Some(r) = self.meta.remove(&Self::rel(&from)) {
                    self.meta.insert(Self::rel(&to), r);
                }
                Ok(Value::t())
            }
            "wipe_cache" => {
                self.root
                    .remove_all("/cache")
                    .map_err(|e| fail(format!("{n}: wiping /cache: {e}")))?;
                self.root
                    .create_dir_all("/cache")
                    .map_err(|e| fail(format!("{n}: creating /cache: {e}")))?;
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

impl<R: Read + Seek> Device<'_, R> {
    fn apply_meta(
        &mut self,
        func: &str,
        path: &str,
        keys: &BTreeMap<String, Value>,
        recursive: bool,
    ) -> Result<()> {
        let dev = self.host(func, path, false)?;
        if !recursive {
            return self.set_meta(func, &dev, keys, None);
        }
        let mut all = Vec::new();
        self.walk(&dev, &mut all)
            .map_err(|e| fail(format!("{func}: {path}: {e}")))?;
        for (d, is_dir) in all {
            self.set_meta(func, &d, keys, Some(!is_dir))?;
        }
        Ok(())
    }

    /// Applies parsed metadata to one path (symlinks: owner and label only;
    /// capabilities: regular files only, as `install.c` does).
    fn set_meta(
        &mut self,
        func: &str,
        dev: &str,
        keys: &BTreeMap<String, Value>,
        recursive_file: Option<bool>,
    ) -> Result<()> {
        let ft = self
            .root
            .kind(dev)
            .map_err(|e| fail(format!("{func}: {dev}: {e}")))?
            .ok_or_else(|| fail(format!("{func}: {dev}: No such file or directory")))?;
        let num = |k: &str| -> Result<Option<u64>> {
            keys.get(k)
                .map(|v| parse_num(func, v.str(func)?))
                .transpose()
        };
        let mode = match recursive_file {
            None => num("mode")?,
            Some(true) => num("fmode")?,
            Some(false) => num("dmode")?,
        };
        let (uid, gid, caps) = (num("uid")?, num("gid")?, num("capabilities")?);
        let label = keys.get("selabel").map(|l| l.str(func)).transpose()?;
        let entry = self.meta.entry(Self::rel(dev)).or_default();
        if let Some(u) = uid {
            entry.uid = u as u32;
        }
        if let Some(g) = gid {
            entry.gid = g as u32;
        }
        if let Some(l) = label {
            entry.selabel = Some(l.to_string());
        }
        if ft == FileType::Symlink {
            entry.mode = None;
            return Ok(());
        }
        if let Some(m) = mode {
            let m = (m & 0o7777) as u32;
            entry.mode = Some(m);
            let real = if ft == FileType::Directory {
                m | 0o700
            } else {
                m
            };
            self.root
                .chmod(dev, real)
                .map_err(|e| fail(format!("{func}: chmod {dev}: {e}")))?;
        }
        if ft == FileType::RegularFile {
            if let Some(c) = caps {
                self.meta.entry(Self::rel(dev)).or_default().capabilities = Some(c);
            }
        }
        Ok(())
    }

    /// `dev` and everything below it (not following links): (path, is a directory).
    fn walk(&self, dev: &str, out: &mut Vec<(String, bool)>) -> std::io::Result<()> {
        let is_dir = self.root.kind(dev)? == Some(FileType::Directory);
        out.push((dev.to_string(), is_dir));
        if is_dir {
            for n in self.root.list(dev)? {
                let n = n.to_string_lossy();
                self.walk(&format!("{}/{n}", dev.trim_end_matches('/')), out)?;
            }
        }
        Ok(())
    }
}
