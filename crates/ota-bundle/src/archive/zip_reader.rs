//! The zip reader, checked against the central directory walked here.

use super::*;
pub(super) const S_IFMT: u32 = 0o170000;
pub(super) const S_IFREG: u32 = 0o100000;
pub(super) const S_IFDIR: u32 = 0o040000;
pub(super) const S_IFLNK: u32 = 0o120000;
pub(super) const CENTRAL_SIG: &[u8] = b"PK\x01\x02";

/// The names in a zip's central directory, walked here record by record
/// from its start (at most `max` of them).
pub(super) fn central_names(
    r: &mut (impl Read + Seek),
    start: u64,
    max: u64,
) -> io::Result<Vec<Vec<u8>>> {
    r.seek(SeekFrom::Start(start))?;
    let mut names = Vec::new();
    loop {
        let mut fixed = [0u8; 46];
        if read_up_to(r, &mut fixed)? < fixed.len() || &fixed[..4] != CENTRAL_SIG {
            return Ok(names);
        }
        let len = |at: usize| u16::from_le_bytes([fixed[at], fixed[at + 1]]);
        let mut name = vec![0u8; usize::from(len(28))];
        r.read_exact(&mut name)?;
        r.seek(SeekFrom::Current(i64::from(len(30)) + i64::from(len(32))))?;
        names.push(name);
        if names.len() as u64 > max {
            return Ok(names);
        }
    }
}

pub(super) fn unpack_zip<R: Read + Seek>(mut r: R, out: &mut Out<'_>) -> Result<()> {
    let start = {
        let zip = zip::ZipArchive::new(&mut r).map_err(|e| out.damaged(e))?;
        (zip.central_directory_start(), zip.len())
    };
    let (dir_start, len) = start;
    let max = out.limits.max_entries;
    // Our own walk of the central directory: duplicates the zip reader
    // would fold into one are refused, and the counts must agree.
    let names = central_names(&mut r, dir_start, max).map_err(|e| out.damaged(e))?;
    if names.len() as u64 > max || len as u64 > max {
        return Err(BundleError::Archive {
            archive: out.archive.into(),
            why: format!("more than the limit of {max} members"),
        });
    }
    let mut seen = HashSet::new();
    for n in &names {
        if !seen.insert(n.as_slice()) {
            return Err(out.refuse(
                &shown(n),
                "duplicate member: listed twice in the central directory",
            ));
        }
    }
    if names.len() != len {
        return Err(out.damaged(format!(
            "the central directory holds {} records, the zip reader sees {len}",
            names.len()
        )));
    }
    let mut zip = zip::ZipArchive::new(r).map_err(|e| out.damaged(e))?;
    // Declared sizes first: an archive over the limit is refused before
    // anything is written.
    let mut declared = 0u64;
    for i in 0..len {
        let f = zip.by_index_raw(i).map_err(|e| out.damaged(e))?;
        declared = declared.saturating_add(f.size());
        if declared > out.limits.max_total_bytes {
            return Err(out.refuse(
                &shown(f.name_raw()),
                format!(
                    "the members up to this one declare {declared} bytes, over the limit of {} bytes",
                    out.limits.max_total_bytes
                ),
            ));
        }
    }
    for i in 0..len {
        let (raw_name, encrypted) = {
            let f = zip.by_index_raw(i).map_err(|e| out.damaged(e))?;
            (f.name_raw().to_vec(), f.encrypted())
        };
        let member = shown(&raw_name);
        out.count(&member)?;
        if encrypted {
            return Err(out.refuse(&member, "encrypted members are not supported"));
        }
        let mut f = zip
            .by_index(i)
            .map_err(|e| out.refuse(&member, format!("unreadable: {e}")))?;
        let unix = f.unix_mode();
        let ftype = unix.map_or(0, |m| m & S_IFMT);
        let dir_name = raw_name.last() == Some(&b'/');
        let perms = unix.map(|m| m & 0o777);
        match ftype {
            S_IFLNK if !dir_name => {
                let rel = out.rel_path(&raw_name, false)?;
                if f.size() > LINK_MAX {
                    return Err(out.refuse(&member, "refused symlink: text over 4096 bytes"));
                }
                let mut text = Vec::new();
                (&mut f)
                    .take(LINK_MAX + 1)
                    .read_to_end(&mut text)
                    .map_err(|e| out.refuse(&member, format!("reading its data: {e}")))?;
                out.symlink(&member, &rel, &text)?;
            }
            S_IFDIR | 0 if dir_name => {
                let rel = out.rel_path(&raw_name, true)?;
                out.dir(&member, &rel, perms.unwrap_or(0o755))?;
            }
            S_IFDIR => {
                return Err(out.refuse(
                    &member,
                    "a directory (by its mode) whose name does not end with '/'",
                ))
            }
            S_IFREG | 0 if !dir_name => {
                let rel = out.rel_path(&raw_name, false)?;
                let size = f.size();
                out.file(&member, &rel, perms.unwrap_or(0o644), size, &mut f)?;
            }
            S_IFREG | S_IFLNK => {
                return Err(out.refuse(&member, "a name ending with '/' for a file or symlink"))
            }
            _ => {
                return Err(out.refuse(
                    &member,
                    format!(
                        "file type {:o} refused (devices, FIFOs and sockets are not unpacked)",
                        ftype
                    ),
                ))
            }
        }
    }
    Ok(())
}
