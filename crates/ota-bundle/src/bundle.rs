//! The bundle a confirm answers with: `data.tar.gz`.
//!
//! A gzip'd tar whose members are, for each hop `N` of the path (from 1):
//!
//! - `pack_N.tar.gz`: the pack ([`crate::pack`]);
//! - `pack_N_hash`: the digest of the whole version after pack `N`, 64 hex
//!   digits and a newline;
//! - `pack_N_sig`: the 64-byte Ed25519 signature of `pack_N.tar.gz`
//!   (`openssl pkeyutl -verify -rawin -pubin -inkey KEY -in pack_N.tar.gz
//!   -sigfile pack_N_sig`);
//!
//! and last `apply_log`, one line per hop in order:
//! `./pack_N.tar.gz|./pack_N_hash|./pack_N_sig`.
//!
//! Both sides of the format live here: [`write_bundle`] for the server,
//! and the strict reader the device's apply uses (only the members above,
//! within size limits, and an `apply_log` that lists exactly them).

use crate::error::{BundleError, Result};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Name of the log member.
pub const APPLY_LOG: &str = "apply_log";

/// One hop of a bundle being written.
#[derive(Clone, Copy, Debug)]
pub struct Hop<'a> {
    /// The stored pack file.
    pub pack: &'a Path,
    /// Digest of the version after this pack, hex.
    pub hash: &'a str,
    /// Ed25519 signature of the pack.
    pub signature: &'a [u8; 64],
}

/// The member names of hop `n` (from 1): pack, hash, signature.
pub fn member_names(n: usize) -> [String; 3] {
    [
        format!("pack_{n}.tar.gz"),
        format!("pack_{n}_hash"),
        format!("pack_{n}_sig"),
    ]
}

/// The `apply_log` of a bundle of `hops` hops.
pub fn apply_log(hops: usize) -> String {
    (1..=hops)
        .map(|n| {
            let [p, h, s] = member_names(n);
            format!("./{p}|./{h}|./{s}\n")
        })
        .collect()
}

fn header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

/// Writes the bundle of `hops` to `out`. The packs are stored compressed
/// already, so gzip only frames them (stored blocks): building a bundle
/// costs a copy, not a compression.
pub fn write_bundle<W: Write>(hops: &[Hop<'_>], out: W) -> Result<W> {
    if hops.is_empty() {
        return Err(BundleError::malformed(
            "bundle",
            "a bundle has at least one pack",
        ));
    }
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::none());
    let mut tar = tar::Builder::new(gz);
    let w = |e| BundleError::io("writing bundle", e);
    for (i, hop) in hops.iter().enumerate() {
        let [p, h, s] = member_names(i + 1);
        let f = File::open(hop.pack)
            .map_err(|e| BundleError::io(format!("opening {}", hop.pack.display()), e))?;
        let len = f
            .metadata()
            .map_err(|e| BundleError::io(format!("reading {}", hop.pack.display()), e))?
            .len();
        tar.append_data(&mut header(len), &p, std::io::Read::take(f, len))
            .map_err(w)?;
        let hash = format!("{}\n", hop.hash);
        tar.append_data(&mut header(hash.len() as u64), &h, hash.as_bytes())
            .map_err(w)?;
        tar.append_data(&mut header(64), &s, &hop.signature[..])
            .map_err(w)?;
    }
    let log = apply_log(hops.len());
    tar.append_data(&mut header(log.len() as u64), APPLY_LOG, log.as_bytes())
        .map_err(w)?;
    let gz = tar.into_inner().map_err(w)?;
    let mut out = gz.finish().map_err(w)?;
    out.flush().map_err(w)?;
    Ok(out)
}

/// Most hops a bundle may hold.
pub const MAX_HOPS: usize = 4096;
/// Largest `apply_log` accepted.
pub const LOG_MAX: u64 = 1 << 20;
/// Largest `pack_N_hash` or `pack_N_sig` member accepted (a hash is 65
/// bytes, a signature 64; anything near this is refused later anyway).
pub const SMALL_MEMBER_MAX: u64 = 1024;
/// Most bytes the packs of one bundle may hold together.
pub const BUNDLE_MAX_BYTES: u64 = 64 << 30;

// Reading a bundle (the device side).

/// The members of an unpacked bundle.
#[derive(Default)]
pub(crate) struct Members {
    pub(crate) packs: BTreeMap<usize, PathBuf>,
    pub(crate) hashes: BTreeMap<usize, Vec<u8>>,
    pub(crate) sigs: BTreeMap<usize, Vec<u8>>,
    pub(crate) log: Option<Vec<u8>>,
}

/// What a member name stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Member {
    Pack(usize),
    Hash(usize),
    Sig(usize),
    Log,
}

/// Parses a member name (`./` allowed in front); None if not a bundle's.
pub(crate) fn parse_member(name: &str) -> Option<Member> {
    let name = name.strip_prefix("./").unwrap_or(name);
    if name == APPLY_LOG {
        return Some(Member::Log);
    }
    let rest = name.strip_prefix("pack_")?;
    let (num, make): (&str, fn(usize) -> Member) = if let Some(n) = rest.strip_suffix(".tar.gz") {
        (n, Member::Pack)
    } else if let Some(n) = rest.strip_suffix("_hash") {
        (n, Member::Hash)
    } else if let Some(n) = rest.strip_suffix("_sig") {
        (n, Member::Sig)
    } else {
        return None;
    };
    if num.is_empty() || num.starts_with('0') || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: usize = num.parse().ok()?;
    (n <= MAX_HOPS).then(|| make(n))
}

/// Step 1: the bundle's members, packs written to `work`, the rest kept in
/// memory.
pub(crate) fn unpack_bundle(bundle: &Path, work: &Path) -> Result<Members> {
    let shown = bundle.display().to_string();
    let damaged = |e: io::Error| BundleError::io(format!("reading bundle {shown}"), e);
    let refuse = |member: &str, why: String| BundleError::Member {
        archive: bundle.into(),
        member: member.to_owned(),
        why,
    };
    let f = File::open(bundle).map_err(|e| BundleError::io(format!("opening {shown}"), e))?;
    let gz = flate2::read::MultiGzDecoder::new(io::BufReader::with_capacity(1 << 16, f));
    let mut tar = tar::Archive::new(gz);
    // Raw: extension headers would be read whole into memory otherwise;
    // a bundle needs none (its names are short), so they are refused.
    let entries = tar.entries().map_err(damaged)?.raw(true);
    let mut m = Members::default();
    let mut pack_bytes = 0u64;
    let mut count = 0usize;
    for entry in entries {
        let mut entry = entry.map_err(damaged)?;
        let name = String::from_utf8_lossy(&entry.header().path_bytes()).into_owned();
        count += 1;
        if count > 3 * MAX_HOPS + 1 {
            return Err(refuse(
                &name,
                format!("more than {} members", 3 * MAX_HOPS + 1),
            ));
        }
        let t = entry.header().entry_type();
        if !matches!(t, tar::EntryType::Regular) {
            return Err(refuse(
                &name,
                format!(
                    "a bundle holds only regular files (type {:?})",
                    t.as_byte() as char
                ),
            ));
        }
        let Some(kind) = parse_member(&name) else {
            return Err(refuse(
                &name,
                "not a member of a bundle (pack_N.tar.gz, pack_N_hash, pack_N_sig, apply_log)"
                    .into(),
            ));
        };
        let size = entry.header().entry_size().map_err(damaged)?;
        let duplicate = match kind {
            Member::Pack(n) => m.packs.contains_key(&n),
            Member::Hash(n) => m.hashes.contains_key(&n),
            Member::Sig(n) => m.sigs.contains_key(&n),
            Member::Log => m.log.is_some(),
        };
        if duplicate {
            return Err(refuse(&name, "duplicate member".into()));
        }
        let small = |entry: &mut tar::Entry<'_, _>, max: u64| -> Result<Vec<u8>> {
            if size > max {
                return Err(refuse(
                    &name,
                    format!("{size} bytes, at most {max} expected"),
                ));
            }
            let mut v = Vec::with_capacity(size as usize);
            entry.take(max).read_to_end(&mut v).map_err(damaged)?;
            Ok(v)
        };
        match kind {
            Member::Log => m.log = Some(small(&mut entry, LOG_MAX)?),
            Member::Hash(n) => {
                m.hashes.insert(n, small(&mut entry, SMALL_MEMBER_MAX)?);
            }
            Member::Sig(n) => {
                m.sigs.insert(n, small(&mut entry, SMALL_MEMBER_MAX)?);
            }
            Member::Pack(n) => {
                pack_bytes = pack_bytes.saturating_add(size);
                if pack_bytes > BUNDLE_MAX_BYTES {
                    return Err(refuse(
                        &name,
                        format!("the packs hold over {BUNDLE_MAX_BYTES} bytes"),
                    ));
                }
                let path = work.join(format!("pack_{n}.tar.gz"));
                let mut out = File::options()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(|e| BundleError::io(format!("creating {}", path.display()), e))?;
                let copied = io::copy(&mut (&mut entry).take(size), &mut out)
                    .map_err(|e| BundleError::io(format!("extracting {name} from {shown}"), e))?;
                if copied != size {
                    return Err(refuse(
                        &name,
                        format!("truncated: {copied} of {size} bytes"),
                    ));
                }
                m.packs.insert(n, path);
            }
        }
    }
    Ok(m)
}

/// Step 2: `apply_log` is exactly the protocol's for k hops, and the bundle
/// holds the members of those k hops and no others. Returns k.
pub(crate) fn check_log(m: &Members) -> Result<usize> {
    let bad = |why: String| BundleError::malformed(APPLY_LOG, why);
    let log = m
        .log
        .as_deref()
        .ok_or_else(|| bad("missing: the bundle has no apply_log".into()))?;
    let log = std::str::from_utf8(log).map_err(|_| bad("not UTF-8".into()))?;
    if log.is_empty() {
        return Err(bad("empty: lists no pack".into()));
    }
    let Some(body) = log.strip_suffix('\n') else {
        return Err(bad(
            "the last line does not end with a newline (truncated?)".into(),
        ));
    };
    let mut hops = 0;
    for (i, line) in body.split('\n').enumerate() {
        let n = i + 1;
        if n > MAX_HOPS {
            return Err(bad(format!("more than {MAX_HOPS} lines")));
        }
        let [p, h, s] = member_names(n);
        let want = format!("./{p}|./{h}|./{s}");
        if line != want {
            return Err(bad(format!(
                "line {n} is {line:?}, expected {want:?} (hops are listed 1, 2, … in order, one per line)"
            )));
        }
        hops = n;
    }
    let lists = |what: &str, have: Vec<usize>| -> Result<()> {
        for n in 1..=hops {
            if !have.contains(&n) {
                let name = &member_names(n)[kind_index(what)];
                return Err(bad(format!("lists {name}, which the bundle lacks")));
            }
        }
        if let Some(&extra) = have.iter().find(|&&n| n > hops) {
            let name = &member_names(extra)[kind_index(what)];
            return Err(bad(format!(
                "lists {hops} hops, but the bundle also holds {name} (a truncated log?)"
            )));
        }
        Ok(())
    };
    lists("pack", m.packs.keys().copied().collect())?;
    lists("hash", m.hashes.keys().copied().collect())?;
    lists("sig", m.sigs.keys().copied().collect())?;
    Ok(hops)
}

pub(crate) fn kind_index(what: &str) -> usize {
    match what {
        "pack" => 0,
        "hash" => 1,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_the_protocol_s() {
        assert_eq!(
            apply_log(2),
            "./pack_1.tar.gz|./pack_1_hash|./pack_1_sig\n./pack_2.tar.gz|./pack_2_hash|./pack_2_sig\n"
        );
    }

    #[test]
    fn members_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p");
        std::fs::write(&p, b"pack").unwrap();
        let sig = [7u8; 64];
        let hash = "c".repeat(64);
        let hop = Hop {
            pack: &p,
            hash: &hash,
            signature: &sig,
        };
        let bytes = write_bundle(&[hop, hop], Vec::new()).unwrap();
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
        let names: Vec<String> = tar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "pack_1.tar.gz",
                "pack_1_hash",
                "pack_1_sig",
                "pack_2.tar.gz",
                "pack_2_hash",
                "pack_2_sig",
                "apply_log"
            ]
        );
    }
}

#[cfg(test)]
mod read_tests {
    use super::*;

    #[test]
    fn member_names_parse_strictly() {
        assert_eq!(parse_member("pack_1.tar.gz"), Some(Member::Pack(1)));
        assert_eq!(parse_member("./pack_12_hash"), Some(Member::Hash(12)));
        assert_eq!(parse_member("pack_3_sig"), Some(Member::Sig(3)));
        assert_eq!(parse_member("./apply_log"), Some(Member::Log));
        for bad in [
            "pack_0.tar.gz",
            "pack_01_sig",
            "pack__hash",
            "pack_1.tar",
            "pack_-1_sig",
            "pack_+1_sig",
            "pack_1_sig.bak",
            "../pack_1_sig",
            ".//apply_log",
            "pack_99999_hash",
            "extra",
        ] {
            assert_eq!(parse_member(bad), None, "{bad}");
        }
    }

    fn members(log: &[u8], hops: &[usize]) -> Members {
        let mut m = Members {
            log: Some(log.to_vec()),
            ..Members::default()
        };
        for &n in hops {
            m.packs.insert(n, PathBuf::from(format!("pack_{n}.tar.gz")));
            m.hashes.insert(n, Vec::new());
            m.sigs.insert(n, Vec::new());
        }
        m
    }

    #[test]
    fn apply_log_is_checked_strictly() {
        let good = crate::bundle::apply_log(3);
        assert_eq!(check_log(&members(good.as_bytes(), &[1, 2, 3])).unwrap(), 3);
        let lines: Vec<&str> = good.lines().collect();
        let cases: Vec<(String, &[usize], &str)> = vec![
            // Last line dropped: pack 3 is not listed.
            (
                format!("{}\n{}\n", lines[0], lines[1]),
                &[1, 2, 3],
                "truncated log",
            ),
            // Cut mid-line.
            (good[..good.len() - 10].to_owned(), &[1, 2, 3], "newline"),
            // Reordered.
            (
                format!("{}\n{}\n{}\n", lines[1], lines[0], lines[2]),
                &[1, 2, 3],
                "line 1",
            ),
            // Duplicated line.
            (format!("{}\n{}\n", lines[0], lines[0]), &[1, 2], "line 2"),
            // A member missing.
            (good.clone(), &[1, 2], "lacks"),
            (String::new(), &[], "empty"),
            (format!("{}\r\n", lines[0]), &[1], "line 1"),
            (format!("{}\n\n", lines[0]), &[1], "line 2"),
            (format!(" {}\n", lines[0]), &[1], "line 1"),
        ];
        for (log, hops, needle) in cases {
            let err = check_log(&members(log.as_bytes(), hops))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{log:?}: {err}");
        }
        let mut m = members(good.as_bytes(), &[1, 2, 3]);
        m.log = None;
        assert!(check_log(&m).unwrap_err().to_string().contains("missing"));
        assert!(check_log(&members(b"\xff\n", &[1]))
            .unwrap_err()
            .to_string()
            .contains("UTF-8"));
    }
}
