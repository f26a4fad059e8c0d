//! Writing `updater-script`: the statements of releasetools'
//! `edify_generator.py`, with the same text, order and line wrapping.
//!
//! Strings are quoted with `"`; a `"` or `\` inside a path is escaped
//! (releasetools does not escape, which only differs for such names).

use crate::error::{AndroidError, Result};
use crate::fstab::Fstab;
use std::collections::BTreeSet;

/// Quotes `s` as an edify string literal.
pub fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Wraps a call whose arguments are separated by `\0` to 80 columns,
/// indenting continuation lines under the opening parenthesis
/// (`EdifyGenerator._WordWrap`).
pub fn word_wrap(cmd: &str) -> String {
    const LINELEN: usize = 80;
    let indent = cmd.find('(').map_or(0, |i| i + 1);
    let width = LINELEN.saturating_sub(indent);
    let mut out = String::new();
    let mut rest = cmd;
    let mut first = true;
    loop {
        if !first {
            out.push_str(&" ".repeat(indent));
        }
        first = false;
        // Longest prefix of at most `width` characters that ends right
        // before a `\0`.
        let mut cut = None;
        for (i, c) in rest.char_indices() {
            if rest[..i].chars().count() > width {
                break;
            }
            if c == '\0' {
                cut = Some(i);
            }
        }
        match cut {
            Some(i) => {
                out.push_str(&rest[..i]);
                out.push('\n');
                rest = &rest[i + 1..];
            }
            None => match rest.split_once('\0') {
                Some((head, tail)) => {
                    out.push_str(head);
                    out.push('\n');
                    rest = tail;
                }
                None => {
                    out.push_str(rest);
                    out.push('\n');
                    break;
                }
            },
        }
    }
    out.replace('\0', " ").trim_end_matches('\n').to_string()
}

/// An `updater-script` being written.
#[derive(Clone, Debug)]
pub struct Script {
    /// Statements, one entry per emitted line group.
    pub lines: Vec<String>,
    /// `use_set_metadata=1` in misc_info: emit `set_metadata` instead of `set_perm`.
    pub use_set_metadata: bool,
    fstab: Fstab,
    mounts: BTreeSet<String>,
}

impl Script {
    /// A new, empty script for a build with this fstab.
    pub fn new(fstab: Fstab, use_set_metadata: bool) -> Script {
        Script {
            lines: Vec::new(),
            use_set_metadata,
            fstab,
            mounts: BTreeSet::new(),
        }
    }

    /// An empty script with the same settings (`MakeTemporary`).
    pub fn temporary(&self) -> Script {
        Script::new(self.fstab.clone(), self.use_set_metadata)
    }

    /// Appends another script's statements (`AppendScript`).
    pub fn append_script(&mut self, other: Script) {
        self.lines.extend(other.lines);
    }

    /// Appends raw text (`AppendExtra`, for `--extra-script`).
    pub fn append_extra(&mut self, text: &str) {
        self.lines.push(text.trim_end_matches('\n').to_string());
    }

    /// The script's text, as written to the package.
    pub fn text(&self) -> String {
        let mut s = self.lines.join("\n");
        s.push('\n');
        s
    }

    /// `# comment` between blank lines.
    pub fn comment(&mut self, text: &str) {
        self.lines.push(String::new());
        for l in text.split('\n') {
            self.lines.push(format!("# {l}"));
        }
        self.lines.push(String::new());
    }

    /// Refuses to install over a newer build.
    pub fn assert_older_build(&mut self, timestamp: &str, timestamp_text: &str) -> Result<()> {
        if timestamp.is_empty() || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AndroidError::Invalid(format!(
                "ro.build.date.utc {timestamp:?} is not a number"
            )));
        }
        self.lines.push(format!(
            "(!less_than_int({timestamp}, getprop(\"ro.build.date.utc\"))) || abort(\"Can't install this package ({}) over newer build (\" + getprop(\"ro.build.date\") + \").\");",
            esc(timestamp_text)
        ));
        Ok(())
    }

    /// Refuses other devices.
    pub fn assert_device(&mut self, device: &str) {
        let d = esc(device);
        self.lines.push(format!(
            "getprop(\"ro.product.device\") == \"{d}\" || abort(\"This package is for \\\"{d}\\\" devices; this is a \\\"\" + getprop(\"ro.product.device\") + \"\\\".\");"
        ));
    }

    /// Requires `/system/build.prop` to carry one of these fingerprints.
    pub fn assert_some_fingerprint(&mut self, fps: &[&str]) {
        let checks: Vec<String> = fps
            .iter()
            .map(|f| {
                format!(
                    "file_getprop(\"/system/build.prop\", \"ro.build.fingerprint\") == {}",
                    q(f)
                )
            })
            .collect();
        let names: Vec<String> = fps.iter().map(|f| esc(f)).collect();
        self.lines.push(format!(
            "{} ||\n    abort(\"Package expects build fingerprint of {}; this device has \" + getprop(\"ro.build.fingerprint\") + \".\");",
            checks.join(" ||\n    "),
            names.join(" or ")
        ));
    }

    /// `show_progress(frac, secs)`.
    pub fn show_progress(&mut self, frac: f64, secs: u32) {
        self.lines
            .push(format!("show_progress({frac:.6}, {secs});"));
    }

    /// `set_progress(frac)`.
    pub fn set_progress(&mut self, frac: f64) {
        self.lines.push(format!("set_progress({frac:.6});"));
    }

    /// `ui_print(message)`.
    pub fn print(&mut self, message: &str) {
        self.lines.push(format!("ui_print({});", q(message)));
    }

    /// `apply_patch_check(file, sha1…) || abort(…)`.
    pub fn patch_check(&mut self, file: &str, sha1s: &[&str]) {
        let args: String = sha1s.iter().map(|s| format!(", {}", q(s))).collect();
        self.lines.push(format!(
            "apply_patch_check({}{args}) || abort(\"\\\"{}\\\" has unexpected contents.\");",
            q(file),
            esc(file)
        ));
    }

    /// `apply_patch_space(n) || abort(…)`.
    pub fn cache_free_space_check(&mut self, amount: u64) {
        self.lines.push(format!(
            "apply_patch_space({amount}) || abort(\"Not enough free space on /system to apply patches.\");"
        ));
    }

    /// `mount(fs, type, device, mount_point)`.
    pub fn mount(&mut self, mount_point: &str) -> Result<()> {
        let p = self.fstab.get(mount_point)?.clone();
        self.lines.push(format!(
            "mount({}, {}, {}, {});",
            q(&p.fs_type),
            q(p.partition_type()?),
            q(&p.device),
            q(&p.mount_point)
        ));
        self.mounts.insert(p.mount_point);
        Ok(())
    }

    /// `format(fs, type, device, length, mount_point)`.
    pub fn format_partition(&mut self, mount_point: &str) -> Result<()> {
        let p = self.fstab.get(mount_point)?;
        self.lines.push(format!(
            "format({}, {}, {}, \"{}\", {});",
            q(&p.fs_type),
            q(p.partition_type()?),
            q(&p.device),
            p.length,
            q(&p.mount_point)
        ));
        Ok(())
    }

    /// `unmount(mp)` for every mount made, sorted.
    pub fn unmount_all(&mut self) {
        for m in std::mem::take(&mut self.mounts) {
            self.lines.push(format!("unmount({});", q(&m)));
        }
    }

    /// `package_extract_dir(src, dst)`.
    pub fn unpack_package_dir(&mut self, src: &str, dst: &str) {
        self.lines
            .push(format!("package_extract_dir({}, {});", q(src), q(dst)));
    }

    /// `delete(f1, …)`, word-wrapped; nothing for an empty list.
    pub fn delete_files(&mut self, files: &[String]) {
        if files.is_empty() {
            return;
        }
        let args: Vec<String> = files.iter().map(|f| q(f)).collect();
        self.lines
            .push(word_wrap(&format!("delete({});", args.join(",\0"))));
    }

    /// `symlink(target, link…)`, one call per target, sorted.
    pub fn make_symlinks(&mut self, links: &[(String, String)]) {
        let mut by_dest: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
        for (dest, link) in links {
            by_dest.entry(dest).or_default().push(link);
        }
        for (dest, mut links) in by_dest {
            links.sort();
            let args: Vec<String> = links.iter().map(|l| q(l)).collect();
            self.lines.push(word_wrap(&format!(
                "symlink({}, {});",
                q(dest),
                args.join(",\0")
            )));
        }
    }

    /// `apply_patch(src, tgt, tgt_sha1, tgt_size, src_sha1, package_extract_file(patch))`.
    pub fn apply_patch(
        &mut self,
        src: &str,
        tgt: &str,
        tgt_size: u64,
        tgt_sha1: &str,
        src_sha1: &str,
        patch: &str,
    ) {
        let cmd = format!(
            "apply_patch({},\0{},\0{tgt_sha1},\0{tgt_size},\0{src_sha1}, package_extract_file({}));",
            q(src),
            q(tgt),
            q(patch)
        );
        self.lines.push(word_wrap(&cmd));
    }

    /// Writes a raw image: `write_raw_image` on MTD, `package_extract_file`
    /// onto the block device on EMMC.
    pub fn write_raw_image(&mut self, mount_point: &str, file: &str) -> Result<()> {
        let p = self.fstab.get(mount_point)?;
        match p.partition_type()? {
            "MTD" => self.lines.push(format!(
                "write_raw_image(package_extract_file({}), {});",
                q(file),
                q(&p.device)
            )),
            _ => self.lines.push(format!(
                "package_extract_file({}, {});",
                q(file),
                q(&p.device)
            )),
        }
        Ok(())
    }

    /// `set_perm` or `set_metadata` for one path.
    pub fn set_permissions(&mut self, path: &str, m: &crate::fs_config::Meta) {
        if !self.use_set_metadata {
            self.lines.push(format!(
                "set_perm({}, {}, 0{:o}, {});",
                m.uid,
                m.gid,
                m.mode,
                q(path)
            ));
            return;
        }
        let mut cmd = format!(
            "set_metadata({}, \"uid\", {}, \"gid\", {}, \"mode\", 0{:o}, \"capabilities\", 0x{:x}",
            q(path),
            m.uid,
            m.gid,
            m.mode,
            m.capabilities.unwrap_or(0)
        );
        if let Some(l) = &m.selabel {
            cmd.push_str(&format!(", \"selabel\", {}", q(l)));
        }
        cmd.push_str(");");
        self.lines.push(cmd);
    }

    /// `set_perm_recursive` or `set_metadata_recursive` for a subtree.
    pub fn set_permissions_recursive(&mut self, path: &str, s: &crate::permissions::Subtree) {
        if !self.use_set_metadata {
            self.lines.push(format!(
                "set_perm_recursive({}, {}, 0{:o}, 0{:o}, {});",
                s.uid,
                s.gid,
                s.dmode,
                s.fmode,
                q(path)
            ));
            return;
        }
        let mut cmd = format!(
            "set_metadata_recursive({}, \"uid\", {}, \"gid\", {}, \"dmode\", 0{:o}, \"fmode\", 0{:o}, \"capabilities\", 0x{:x}",
            q(path),
            s.uid,
            s.gid,
            s.dmode,
            s.fmode,
            s.capabilities.unwrap_or(0)
        );
        if let Some(l) = &s.selabel {
            cmd.push_str(&format!(", \"selabel\", {}", q(l)));
        }
        cmd.push_str(");");
        self.lines.push(cmd);
    }
}

/// Escapes text placed inside an already-quoted edify string.
fn esc(s: &str) -> String {
    let quoted = q(s);
    quoted[1..quoted.len() - 1].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_wrap_matches_releasetools() {
        let files: Vec<String> = (0..8)
            .map(|i| format!("\"/system/app/Application{i}.apk\""))
            .collect();
        let w = word_wrap(&format!("delete({});", files.join(",\0")));
        let lines: Vec<&str> = w.lines().collect();
        assert_eq!(
            lines[0],
            "delete(\"/system/app/Application0.apk\", \"/system/app/Application1.apk\","
        );
        assert!(lines[1].starts_with("       \"/system/app/Application2.apk\""));
        assert!(lines.iter().all(|l| l.len() <= 80));
        assert!(w.ends_with(");"));
        assert_eq!(word_wrap("delete(\"/a\");"), "delete(\"/a\");");
    }

    #[test]
    fn statements_are_exact() {
        let fstab =
            Fstab::parse("/system ext4 /dev/block/system\n/boot mtd boot\n", 1, "f").unwrap();
        let mut s = Script::new(fstab, true);
        s.assert_device("crespo");
        s.patch_check("/system/bin/app", &["aa", "bb"]);
        s.mount("/system").unwrap();
        s.write_raw_image("/boot", "boot.img").unwrap();
        s.format_partition("/system").unwrap();
        assert_eq!(
            s.lines,
            [
                "getprop(\"ro.product.device\") == \"crespo\" || abort(\"This package is for \\\"crespo\\\" devices; this is a \\\"\" + getprop(\"ro.product.device\") + \"\\\".\");",
                "apply_patch_check(\"/system/bin/app\", \"aa\", \"bb\") || abort(\"\\\"/system/bin/app\\\" has unexpected contents.\");",
                "mount(\"ext4\", \"EMMC\", \"/dev/block/system\", \"/system\");",
                "write_raw_image(package_extract_file(\"boot.img\"), \"boot\");",
                "format(\"ext4\", \"EMMC\", \"/dev/block/system\", \"0\", \"/system\");",
            ]
        );
        assert!(s.mount("/vendor").is_err());
    }
}
