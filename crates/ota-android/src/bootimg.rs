//! Boot and recovery images from target-files `BOOT/` and `RECOVERY/`
//! (releasetools' `BuildBootableImage`: `mkbootfs | gzip` then `mkbootimg`).
//!
//! The ramdisk is a `newc` cpio archive of `RAMDISK/`, sorted by path and
//! with zero timestamps so that the same input gives the same image; the
//! image uses the classic (KitKat, 608-byte) `boot_img_hdr` layout with the
//! SHA-1 id `mkbootimg` computes. `mkbootimg_args` from `misc_info.txt`
//! are not interpreted.

use crate::error::{AndroidError, Result};
use crate::fs_config::FsConfig;
use crate::target_files::RawNode;
use sha1::{Digest, Sha1};
use std::collections::BTreeMap;
use std::io::Write;

/// Inputs of one bootable image (`BOOT/` or `RECOVERY/` of target-files).
pub struct BootParts<'a> {
    /// `kernel`.
    pub kernel: &'a [u8],
    /// `second` (second-stage bootloader), if any.
    pub second: Option<&'a [u8]>,
    /// `cmdline`, trimmed.
    pub cmdline: String,
    /// `base` load address (default 0x10000000).
    pub base: u32,
    /// `pagesize` (default 2048).
    pub page_size: u32,
    /// Entries under `RAMDISK/`, by relative path.
    pub ramdisk: BTreeMap<String, RawNode>,
    /// Owners and modes for ramdisk entries (`META/boot_filesystem_config.txt`).
    pub fs_config: Option<FsConfig>,
}

/// Writes a gzip'd `newc` cpio archive of the ramdisk.
pub fn ramdisk(parts: &BootParts<'_>) -> Result<Vec<u8>> {
    let mut cpio = Vec::new();
    for (ino, (path, node)) in parts.ramdisk.iter().enumerate() {
        let meta = parts.fs_config.as_ref().and_then(|c| c.get(path));
        let (kind, data, default_perm): (u32, &[u8], u32) = match node {
            RawNode::Dir { mode } => (0o040000, &[], mode.unwrap_or(0o755)),
            RawNode::File { data, mode } => (0o100000, data, mode.unwrap_or(0o644)),
            RawNode::Symlink(t) => (0o120000, t.as_bytes(), 0o777),
        };
        let perm = meta.map_or(default_perm, |m| m.mode);
        let (uid, gid) = meta.map_or((0, 0), |m| (m.uid, m.gid));
        cpio_entry(
            &mut cpio,
            ino as u32 + 300_000,
            kind | perm,
            uid,
            gid,
            path,
            data,
        )?;
    }
    cpio_entry(&mut cpio, 0, 0, 0, 0, "TRAILER!!!", &[])?;
    let mut gz = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::best());
    gz.write_all(&cpio)
        .map_err(crate::error::io("compressing the ramdisk"))?;
    gz.finish()
        .map_err(crate::error::io("compressing the ramdisk"))
}

fn cpio_entry(
    out: &mut Vec<u8>,
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    name: &str,
    data: &[u8],
) -> Result<()> {
    let size = u32::try_from(data.len())
        .map_err(|_| AndroidError::Invalid(format!("ramdisk entry {name} is over 4 GiB")))?;
    let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
    let fields = [
        ino,
        mode,
        uid,
        gid,
        nlink,
        0,
        size,
        0,
        0,
        0,
        0,
        name.len() as u32 + 1,
        0,
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
    Ok(())
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// Builds the whole image: header page, kernel, ramdisk, second, each
/// padded to the page size.
pub fn build(parts: &BootParts<'_>) -> Result<Vec<u8>> {
    let ramdisk = ramdisk(parts)?;
    let second = parts.second.unwrap_or(&[]);
    let page = parts.page_size as usize;
    if !page.is_power_of_two() || !(2048..=131072).contains(&page) {
        return Err(AndroidError::Invalid(format!(
            "pagesize {page} is not a power of two in 2048..=131072"
        )));
    }
    if parts.cmdline.len() > 511 {
        return Err(AndroidError::Invalid(format!(
            "kernel cmdline is {} bytes; the boot header holds 511",
            parts.cmdline.len()
        )));
    }
    let len32 = |what: &str, d: &[u8]| {
        u32::try_from(d.len()).map_err(|_| AndroidError::Invalid(format!("{what} is over 4 GiB")))
    };
    let (ks, rs, ss) = (
        len32("kernel", parts.kernel)?,
        len32("ramdisk", &ramdisk)?,
        len32("second", second)?,
    );
    let mut id = Sha1::new();
    for (d, n) in [(parts.kernel, ks), (&ramdisk[..], rs), (second, ss)] {
        id.update(d);
        id.update(n.to_le_bytes());
    }
    let id = id.finalize();
    let base = parts.base;
    let mut hdr = Vec::with_capacity(page);
    hdr.extend_from_slice(b"ANDROID!");
    for v in [
        ks,
        base.wrapping_add(0x0000_8000),
        rs,
        base.wrapping_add(0x0100_0000),
        ss,
        base.wrapping_add(0x00f0_0000),
        base.wrapping_add(0x0000_0100),
        parts.page_size,
        0,
        0,
    ] {
        hdr.extend_from_slice(&v.to_le_bytes());
    }
    hdr.extend_from_slice(&[0u8; 16]); // name
    let mut cmdline = [0u8; 512];
    cmdline[..parts.cmdline.len()].copy_from_slice(parts.cmdline.as_bytes());
    hdr.extend_from_slice(&cmdline);
    let mut idf = [0u8; 32];
    idf[..20].copy_from_slice(&id);
    hdr.extend_from_slice(&idf);
    let mut img = hdr;
    for d in [parts.kernel, &ramdisk[..], second] {
        img.resize(img.len().div_ceil(page) * page, 0);
        img.extend_from_slice(d);
    }
    img.resize(img.len().div_ceil(page) * page, 0);
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_layout_and_determinism() {
        let mut ramdisk = BTreeMap::new();
        ramdisk.insert(
            "init".to_string(),
            RawNode::File {
                data: b"#!init".to_vec(),
                mode: Some(0o750),
            },
        );
        ramdisk.insert("sbin".to_string(), RawNode::Dir { mode: None });
        let parts = BootParts {
            kernel: b"KERNEL",
            second: None,
            cmdline: "console=ttyS0".into(),
            base: 0x1000_0000,
            page_size: 2048,
            ramdisk,
            fs_config: None,
        };
        let a = build(&parts).unwrap();
        assert_eq!(a, build(&parts).unwrap());
        assert_eq!(&a[..8], b"ANDROID!");
        assert_eq!(a.len() % 2048, 0);
        assert_eq!(&a[2048..2054], b"KERNEL");
        assert_eq!(
            u32::from_le_bytes(a[12..16].try_into().unwrap()),
            0x1000_8000
        );
        // The ramdisk unpacks to a cpio archive naming both entries.
        let rs = u32::from_le_bytes(a[16..20].try_into().unwrap()) as usize;
        let mut cpio = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(&a[4096..4096 + rs]),
            &mut cpio,
        )
        .unwrap();
        let text = String::from_utf8_lossy(&cpio);
        assert!(text.starts_with("070701") && text.contains("init") && text.contains("TRAILER!!!"));
    }
}
