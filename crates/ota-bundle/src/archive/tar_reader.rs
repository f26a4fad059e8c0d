//! The tar reader: members and their extension headers (GNU long names,
//! pax), read with bounds and checked before anything is written.

use super::*;
/// Extension headers waiting for the member they describe.
#[derive(Default)]
pub(super) struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

impl Pending {
    pub(super) fn is_empty(&self) -> bool {
        self.long_name.is_none() && self.long_link.is_none() && self.pax.is_none()
    }
}

/// What a pax header says about its member.
#[derive(Default)]
pub(super) struct Pax {
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    size: Option<u64>,
    sparse: bool,
}

pub(super) fn parse_pax(data: &[u8]) -> std::result::Result<Pax, String> {
    let mut pax = Pax::default();
    for ext in tar::PaxExtensions::new(data) {
        let ext = ext.map_err(|e| format!("malformed pax header ({e})"))?;
        let key = ext.key_bytes();
        match key {
            b"path" => pax.path = Some(ext.value_bytes().to_vec()),
            b"linkpath" => pax.linkpath = Some(ext.value_bytes().to_vec()),
            b"size" => {
                let v = ext
                    .value()
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or("malformed pax size")?;
                pax.size = Some(v);
            }
            k if k.starts_with(b"GNU.sparse.") => pax.sparse = true,
            _ => {}
        }
    }
    Ok(pax)
}

/// Reads an extension header's data, refusing more than `max` bytes.
pub(super) fn read_ext(
    out: &Out<'_>,
    entry: &mut impl Read,
    size: u64,
    max: u64,
    what: &str,
) -> Result<Vec<u8>> {
    if size > max {
        return Err(out.damaged(format!("{what} of {size} bytes (at most {max})")));
    }
    let mut v = Vec::with_capacity(size as usize);
    entry
        .take(max)
        .read_to_end(&mut v)
        .map_err(|e| out.damaged(e))?;
    Ok(v)
}

/// Drops the NUL a GNU long name ends with.
pub(super) fn strip_nul(mut v: Vec<u8>) -> Vec<u8> {
    if v.last() == Some(&0) {
        v.pop();
    }
    v
}

pub(super) fn unpack_tar(r: impl Read, out: &mut Out<'_>) -> Result<()> {
    use tar::EntryType as T;
    let mut archive = tar::Archive::new(r);
    // Raw: the extension headers come to us, so their size is bounded here
    // (the tar crate would read them whole into memory).
    let entries = archive.entries().map_err(|e| out.damaged(e))?.raw(true);
    let mut pending = Pending::default();
    for entry in entries {
        let mut entry = entry.map_err(|e| out.damaged(e))?;
        let t = entry.header().entry_type();
        let size = entry.header().entry_size().map_err(|e| out.damaged(e))?;
        match t {
            T::GNULongName | T::GNULongLink | T::XHeader => {
                let (slot, max, what) = match t {
                    T::GNULongName => (&mut pending.long_name, LONG_NAME_MAX, "GNU long name"),
                    T::GNULongLink => (&mut pending.long_link, LONG_NAME_MAX, "GNU long link"),
                    _ => (&mut pending.pax, PAX_MAX, "pax header"),
                };
                if slot.is_some() {
                    return Err(out.damaged(format!("two {what}s for one member")));
                }
                *slot = Some(read_ext(out, &mut entry, size, max, what)?);
                continue;
            }
            T::XGlobalHeader => {
                out.count("pax global header")?;
                let data = read_ext(out, &mut entry, size, PAX_MAX, "pax global header")?;
                let g = parse_pax(&data).map_err(|e| out.damaged(e))?;
                if g.path.is_some() || g.linkpath.is_some() || g.size.is_some() || g.sparse {
                    return Err(out.damaged(
                        "a pax global header sets path, linkpath, size or sparse records for every member",
                    ));
                }
                continue;
            }
            _ => {}
        }
        let ext = std::mem::take(&mut pending);
        let pax = match &ext.pax {
            Some(d) => parse_pax(d).map_err(|e| out.damaged(e))?,
            None => Pax::default(),
        };
        let raw_name = match (pax.path, ext.long_name) {
            (Some(p), _) => p,
            (None, Some(l)) => strip_nul(l),
            (None, None) => entry.header().path_bytes().into_owned(),
        };
        let member = shown(&raw_name);
        out.count(&member)?;
        if let Some(s) = pax.size.filter(|s| *s != size) {
            return Err(out.refuse(
                &member,
                format!("pax size {s} disagrees with the header's {size} (unsupported)"),
            ));
        }
        if pax.sparse {
            return Err(out.refuse(&member, "sparse files are not supported"));
        }
        let link = match (pax.linkpath, ext.long_link) {
            (Some(p), _) => Some(p),
            (None, Some(l)) => Some(strip_nul(l)),
            (None, None) => entry.header().link_name_bytes().map(|c| c.into_owned()),
        };
        let mode = || entry.header().mode().map_err(|e| out.damaged(e));
        match t {
            T::Regular | T::Continuous => {
                let mode = mode()?;
                let rel = out.rel_path(&raw_name, false)?;
                out.file(&member, &rel, mode, size, &mut entry)?;
            }
            T::Directory => {
                let mode = mode()?;
                let rel = out.rel_path(&raw_name, true)?;
                out.dir(&member, &rel, mode)?;
            }
            T::Symlink => {
                let rel = out.rel_path(&raw_name, false)?;
                let target = link.unwrap_or_default();
                out.symlink(&member, &rel, &target)?;
            }
            T::Link => {
                let target = shown(&link.unwrap_or_default());
                return Err(out.refuse(&member, format!("hard links are refused (to {target:?})")));
            }
            T::Char | T::Block => {
                return Err(out.refuse(&member, "device nodes are refused"));
            }
            T::Fifo => return Err(out.refuse(&member, "FIFOs are refused")),
            T::GNUSparse => {
                return Err(out.refuse(&member, "sparse files are not supported"));
            }
            other => {
                return Err(out.refuse(
                    &member,
                    format!("unsupported member type {:?}", other.as_byte() as char),
                ))
            }
        }
    }
    if !pending.is_empty() {
        return Err(out.damaged("an extension header at the end describes no member"));
    }
    Ok(())
}
