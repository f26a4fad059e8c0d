//! The destination of an unpack: a handle on it, what each path already
//! is, and the counts the limits bound. Every directory is opened and every
//! file created by handle on its parent, nothing followed.

use super::*;
/// What a path unpacked so far is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Node {
    /// A directory with its final permission bits; `explicit` once a member
    /// names it (not only as a parent).
    Dir {
        mode: u32,
        explicit: bool,
    },
    File,
    Symlink,
}

/// The destination being filled: a handle on it, what is there, the counts.
pub(super) struct Out<'a> {
    pub(super) archive: &'a Path,
    pub(super) dest: &'a Path,
    pub(super) root: OwnedFd,
    pub(super) nodes: HashMap<String, Node>,
    pub(super) limits: &'a UnpackLimits,
    pub(super) entries: u64,
    pub(super) declared: u64,
    pub(super) written: u64,
}

pub(super) const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// The text of a member name for messages.
pub(super) fn shown(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

impl<'a> Out<'a> {
    pub(super) fn open(
        archive: &'a Path,
        dest: &'a Path,
        limits: &'a UnpackLimits,
    ) -> Result<Out<'a>> {
        let ctx = || format!("opening {}", dest.display());
        // The destination itself may be reached through symlinks: the
        // caller named it. Nothing under it is followed.
        let root = rustix::fs::openat(
            rustix::fs::CWD,
            dest,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| BundleError::io(ctx(), e.into()))?;
        let mut listing = std::fs::read_dir(dest).map_err(|e| BundleError::io(ctx(), e))?;
        if listing.next().is_some() {
            return Err(BundleError::Path {
                path: dest.into(),
                why: "refused destination: not an empty directory".into(),
            });
        }
        Ok(Out {
            archive,
            dest,
            root,
            nodes: HashMap::new(),
            limits,
            entries: 0,
            declared: 0,
            written: 0,
        })
    }

    pub(super) fn refuse(&self, member: &str, why: impl Into<String>) -> BundleError {
        BundleError::Member {
            archive: self.archive.into(),
            member: member.into(),
            why: why.into(),
        }
    }

    pub(super) fn damaged(&self, why: impl std::fmt::Display) -> BundleError {
        BundleError::Archive {
            archive: self.archive.into(),
            why: format!("damaged or unreadable archive: {why}"),
        }
    }

    pub(super) fn io_err(&self, member: &str, doing: &str, e: impl Into<io::Error>) -> BundleError {
        BundleError::io(
            format!(
                "{}: member {member:?}: {doing} in {}",
                self.archive.display(),
                self.dest.display()
            ),
            e.into(),
        )
    }

    /// Counts one more entry against the limit.
    pub(super) fn count(&mut self, member: &str) -> Result<()> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(self.refuse(
                member,
                format!(
                    "over the limit of {} entries (directories created for members' parents count)",
                    self.limits.max_entries
                ),
            ));
        }
        Ok(())
    }

    /// The relative path a member name stands for: UTF-8, `./` and (for a
    /// directory) one trailing `/` dropped, then checked. "" is the
    /// destination itself (`.` or `./`, directories only).
    pub(super) fn rel_path(&self, raw: &[u8], is_dir: bool) -> Result<String> {
        let member = shown(raw);
        let Ok(name) = std::str::from_utf8(raw) else {
            return Err(self.refuse(&member, "refused name: not UTF-8"));
        };
        let mut rel = name.strip_prefix("./").unwrap_or(name);
        if is_dir {
            rel = rel.strip_suffix('/').unwrap_or(rel);
        }
        if rel.is_empty() || rel == "." {
            if is_dir {
                return Ok(String::new());
            }
            return Err(self.refuse(&member, "refused name: empty"));
        }
        if let Err(e) = ota_delta::tree::check_rel_path(rel) {
            let why = match e {
                ota_delta::DeltaError::Path { why, .. } => why
                    .strip_prefix("refused path in patch: ")
                    .map(str::to_owned)
                    .unwrap_or(why),
                other => other.to_string(),
            };
            return Err(self.refuse(&member, format!("refused name: {why}")));
        }
        Ok(rel.to_owned())
    }

    /// Opens `name` under `dir` as a directory, never through a symlink.
    pub(super) fn open_dir(&self, dir: &OwnedFd, name: &str, member: &str) -> Result<OwnedFd> {
        rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty())
            .map_err(|e| self.io_err(member, &format!("opening directory {name:?}"), e))
    }

    /// The directory that will hold `rel`, and `rel`'s last name. Parents
    /// not seen yet are created (0700 until [`Out::finish`], then 0755);
    /// a parent that is a symlink or a file refuses the member.
    pub(super) fn parent<'r>(&mut self, member: &str, rel: &'r str) -> Result<(OwnedFd, &'r str)> {
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let mut dir = rustix::io::dup(&self.root).map_err(|e| self.io_err(member, "dup", e))?;
        if parent.is_empty() {
            return Ok((dir, name));
        }
        let mut end = 0;
        for c in parent.split('/') {
            end += if end == 0 { c.len() } else { c.len() + 1 };
            let prefix = &parent[..end];
            match self.nodes.get(prefix) {
                Some(Node::Dir { .. }) => {}
                Some(Node::Symlink) => {
                    return Err(self.refuse(
                        member,
                        format!(
                            "lies under {prefix:?}, which an earlier member made a symlink (never followed)"
                        ),
                    ))
                }
                Some(Node::File) => {
                    return Err(self.refuse(
                        member,
                        format!("lies under {prefix:?}, which an earlier member made a file"),
                    ))
                }
                None => {
                    self.count(member)?;
                    rustix::fs::mkdirat(&dir, c, Mode::from_raw_mode(0o700)).map_err(|e| {
                        self.io_err(member, &format!("creating directory {prefix:?}"), e)
                    })?;
                    self.nodes.insert(
                        prefix.to_owned(),
                        Node::Dir {
                            mode: 0o755,
                            explicit: false,
                        },
                    );
                }
            }
            dir = self.open_dir(&dir, c, member)?;
        }
        Ok((dir, name))
    }

    pub(super) fn duplicate(&self, member: &str, rel: &str) -> BundleError {
        let what = match self.nodes.get(rel) {
            Some(Node::Dir { .. }) => "a directory",
            Some(Node::File) => "a file",
            Some(Node::Symlink) => "a symlink",
            None => "something",
        };
        self.refuse(
            member,
            format!("duplicate member: an earlier member already made {rel:?} {what}"),
        )
    }

    /// A directory member.
    pub(super) fn dir(&mut self, member: &str, rel: &str, mode: u32) -> Result<()> {
        if rel.is_empty() {
            // `.` itself: the destination's own mode is the caller's.
            return Ok(());
        }
        let mode = mode & 0o777;
        match self.nodes.get(rel).copied() {
            Some(Node::Dir {
                explicit: false, ..
            }) => {
                self.nodes.insert(
                    rel.to_owned(),
                    Node::Dir {
                        mode,
                        explicit: true,
                    },
                );
                Ok(())
            }
            Some(_) => Err(self.duplicate(member, rel)),
            None => {
                let (dir, name) = self.parent(member, rel)?;
                rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o700))
                    .map_err(|e| self.io_err(member, "creating the directory", e))?;
                self.nodes.insert(
                    rel.to_owned(),
                    Node::Dir {
                        mode,
                        explicit: true,
                    },
                );
                Ok(())
            }
        }
    }

    /// A regular file member of `declared` bytes read from `data`: at most
    /// `declared` bytes are written, and a member that has more, or fewer,
    /// is refused.
    pub(super) fn file(
        &mut self,
        member: &str,
        rel: &str,
        mode: u32,
        declared: u64,
        data: &mut dyn Read,
    ) -> Result<()> {
        if self.nodes.contains_key(rel) {
            return Err(self.duplicate(member, rel));
        }
        let max = self.limits.max_total_bytes;
        match self.declared.checked_add(declared) {
            Some(total) if total <= max => self.declared = total,
            _ => {
                return Err(self.refuse(
                    member,
                    format!(
                        "declares {declared} bytes, over the limit of {max} bytes for the whole archive"
                    ),
                ))
            }
        }
        let (dir, name) = self.parent(member, rel)?;
        let fd = rustix::fs::openat(
            &dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| self.io_err(member, "creating the file", e))?;
        self.nodes.insert(rel.to_owned(), Node::File);
        let mut file = File::from(fd);
        let mut limited = data.take(declared);
        let n = copy(&mut limited, &mut file).map_err(|e| match e {
            CopyError::Read(e) => self.refuse(member, format!("reading its data: {e}")),
            CopyError::Write(e) => self.io_err(member, "writing the file", e),
        })?;
        self.written += n;
        if n < declared {
            return Err(self.refuse(
                member,
                format!("has {n} bytes, fewer than the {declared} it declares"),
            ));
        }
        // One byte more than declared means the member lied about its size.
        let mut probe = [0u8; 1];
        let more = read_up_to(limited.into_inner(), &mut probe)
            .map_err(|e| self.refuse(member, format!("reading its data: {e}")))?;
        if more != 0 {
            return Err(self.refuse(
                member,
                format!(
                    "has more bytes than the {declared} it declares (stopped after {declared})"
                ),
            ));
        }
        if self.written > max {
            // Cannot happen (written <= declared <= max), kept as a guard.
            return Err(self.refuse(member, format!("over the limit of {max} bytes")));
        }
        rustix::fs::fchmod(&file, Mode::from_raw_mode(mode & 0o777))
            .map_err(|e| self.io_err(member, "setting the file's mode", e))?;
        Ok(())
    }

    /// A symlink member with link text `target` (any UTF-8 text, created
    /// as is and never followed).
    pub(super) fn symlink(&mut self, member: &str, rel: &str, target: &[u8]) -> Result<()> {
        if self.nodes.contains_key(rel) {
            return Err(self.duplicate(member, rel));
        }
        let Ok(text) = std::str::from_utf8(target) else {
            return Err(self.refuse(member, "refused symlink: its text is not UTF-8"));
        };
        if text.is_empty() || text.contains('\0') || text.len() as u64 > LINK_MAX {
            return Err(self.refuse(
                member,
                "refused symlink: empty, over 4096 bytes or containing NUL",
            ));
        }
        let (dir, name) = self.parent(member, rel)?;
        rustix::fs::symlinkat(text, &dir, name)
            .map_err(|e| self.io_err(member, "creating the symlink", e))?;
        self.nodes.insert(rel.to_owned(), Node::Symlink);
        Ok(())
    }

    /// Gives every directory its final mode, deepest first (so a directory
    /// made read-only is not walked through afterwards).
    pub(super) fn finish(self) -> Result<()> {
        let mut dirs: Vec<(&str, u32)> = self
            .nodes
            .iter()
            .filter_map(|(p, n)| match n {
                Node::Dir { mode, .. } => Some((p.as_str(), *mode)),
                _ => None,
            })
            .collect();
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.matches('/').count()));
        for (rel, mode) in dirs {
            let mut d = rustix::io::dup(&self.root).map_err(|e| self.io_err(rel, "dup", e))?;
            for c in rel.split('/') {
                d = self.open_dir(&d, c, rel)?;
            }
            rustix::fs::fchmod(&d, Mode::from_raw_mode(mode))
                .map_err(|e| self.io_err(rel, "setting the directory's mode", e))?;
        }
        Ok(())
    }
}

pub(super) enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `r` to `w`, telling read errors (the archive's) from write errors.
pub(super) fn copy(r: &mut impl Read, w: &mut impl Write) -> std::result::Result<u64, CopyError> {
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        w.write_all(&buf[..n]).map_err(CopyError::Write)?;
        total += n as u64;
    }
}
