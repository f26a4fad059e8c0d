//! `apply_patch`, `apply_patch_check` and the partition specs they read
//! (`applypatch.c`).

use super::{args_str, arity, fail, parse_num, Device, PREALLOC_MAX, SAVED_FILE};
use crate::edify::Value;
use crate::error::Result;
use crate::package::sha1_hex;
use std::io::{Read, Seek, Write};

/// A buffer that refuses to grow past what the script said the target
/// holds: a patch that produces more is wrong anyway, and stops early.
struct Capped<'a> {
    buf: &'a mut Vec<u8>,
    limit: u64,
}

impl Write for Capped<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() as u64 + b.len() as u64 > self.limit {
            return Err(std::io::Error::other(format!(
                "the patch produces more than the {} bytes the script gives",
                self.limit
            )));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `TYPE:dev:size:sha1…` → (type, dev, [size, sha1, …]) for MTD/EMMC specs.
fn partition_spec(spec: &str) -> Option<(&str, &str, Vec<&str>)> {
    let (kind, rest) = spec
        .split_once(':')
        .filter(|(k, _)| *k == "MTD" || *k == "EMMC")?;
    let mut parts = rest.split(':');
    let dev = parts.next().unwrap_or_default();
    Some((kind, dev, parts.collect()))
}

impl<R: Read + Seek> Device<'_, R> {
    /// Reads a file or a partition spec `TYPE:dev:size:sha1[:size:sha1…]`;
    /// for a spec, the first (size, sha1) prefix that matches wins, else
    /// the first size's prefix.
    pub(super) fn load(&self, func: &str, spec: &str) -> Result<Vec<u8>> {
        if let Some((kind, dev, pairs)) = partition_spec(spec) {
            if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
                return Err(fail(format!("{func}: bad partition spec {spec:?}")));
            }
            let real = self.partition(func, kind, dev)?;
            let data = self.root.read(&real).map_err(|e| {
                fail(format!(
                    "{func}: failed to read {kind} partition {dev}: {e}"
                ))
            })?;
            let mut first = None;
            for pair in pairs.chunks(2) {
                let size = parse_num(func, pair[0])?;
                let Some(prefix) = usize::try_from(size).ok().and_then(|s| data.get(..s)) else {
                    continue;
                };
                if sha1_hex(prefix) == pair[1] {
                    return Ok(prefix.to_vec());
                }
                first.get_or_insert(prefix);
            }
            return Ok(first.unwrap_or(&data[..0]).to_vec());
        }
        let dev = self.host(func, spec, true)?;
        self.root
            .read(&dev)
            .map_err(|e| fail(format!("{func}: failed to read {spec}: {e}")))
    }

    pub(super) fn apply_patch_check(&mut self, args: &[Value]) -> Result<Value> {
        let n = "apply_patch_check";
        arity(n, args, 1, usize::MAX)?;
        let a = args_str(n, args)?;
        let want: Vec<&str> = a[1..].to_vec();
        let spec_pairs: Vec<String> = partition_spec(a[0])
            .map(|(_, _, pairs)| {
                pairs
                    .chunks(2)
                    .filter_map(|c| c.get(1).map(|s| s.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let ok = |d: &[u8]| {
            let s = sha1_hex(d);
            (want.is_empty() && spec_pairs.is_empty())
                || want.contains(&s.as_str())
                || spec_pairs.contains(&s)
        };
        if self.load(n, a[0]).is_ok_and(|d| ok(&d)) {
            return Ok(Value::t());
        }
        let saved = self.root.read(SAVED_FILE);
        Ok(Value::bool(saved.is_ok_and(|d| ok(&d))))
    }

    pub(super) fn apply_patch(&mut self, args: &[Value]) -> Result<Value> {
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
        let mut which = source
            .as_ref()
            .and_then(|(_, s)| patches.iter().position(|(sha, _)| sha == s));
        let mut source = source.map(|(d, _)| d);
        if which.is_none() {
            // The source may have been lost mid-patch: use the saved copy.
            if let Ok(saved) = self.root.read(SAVED_FILE) {
                let s = sha1_hex(&saved);
                which = patches.iter().position(|(sha, _)| *sha == s);
                if which.is_some() {
                    source = Some(saved);
                    from_cache = true;
                }
            }
        }
        let (Some(idx), Some(source)) = (which, source) else {
            return Err(fail(format!("{F}: {src} matches none of the patches' sources (and no good copy in {SAVED_FILE})")));
        };
        // tgt_size comes from the script: a capacity hint only, capped.
        let mut out = Vec::with_capacity(tgt_size.min(PREALLOC_MAX) as usize);
        ota_delta::patch_bytes(
            &source,
            patches[idx].1,
            &mut Capped {
                buf: &mut out,
                limit: tgt_size,
            },
        )
        .map_err(|e| fail(format!("{F}: patching {src}: {e}")))?;
        if out.len() as u64 != tgt_size || sha1_hex(&out) != tgt_sha1 {
            return Err(fail(format!("{F}: patch of {src} gave {} bytes with SHA-1 {}, expected {tgt_size} bytes with {tgt_sha1}", out.len(), sha1_hex(&out))));
        }
        // Keep a copy of the source until the target is in place.
        if !from_cache && tgt == src {
            self.root
                .create_dir_all("/cache")
                .and_then(|_| self.root.write(SAVED_FILE, &source, 0o644))
                .map_err(|e| fail(format!("{F}: saving the source to {SAVED_FILE}: {e}")))?;
        }
        if let Some((kind, dev, _)) = partition_spec(&tgt) {
            let real = self.partition(F, kind, dev)?;
            self.write_partition(F, &real, &out)?;
        } else {
            let dev = self.host(F, &tgt, true)?;
            let mode = self
                .root
                .lstat(&dev)
                .map(|st| st.st_mode & 0o7777)
                .unwrap_or(0o644);
            // Written beside the target under a fresh name, then renamed.
            self.root
                .write(&dev, &out, mode)
                .map_err(|e| fail(format!("{F}: writing {dev}: {e}")))?;
        }
        match self.root.remove(SAVED_FILE) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(fail(format!("{F}: removing {SAVED_FILE}: {e}")))
            }
            _ => {}
        }
        Ok(Value::t())
    }
}
