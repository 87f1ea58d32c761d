//! The build context: the directory whose files `COPY` and `ADD` read,
//! filtered by its `.dockerignore`, and the layer tars made from it.
//!
//! Only the files a step names are read, and only when it runs; nothing
//! outside the context root is ever read (sources are cleaned, and
//! symlinks are copied as symlinks, not followed).

use anyhow::{anyhow, bail, Context as _, Result};
use berth_dockerfile::ignore::Matcher;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest `.dockerignore` read.
const MAX_IGNORE_FILE: u64 = 1 << 20;

/// The build context directory and its ignore rules.
pub struct BuildContext {
    root: PathBuf,
    ignore: Matcher,
}

/// Who owns, and which mode have, the files a step writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ownership {
    pub uid: u64,
    pub gid: u64,
    /// `--chmod`: replaces the mode of files and directories.
    pub mode: Option<u32>,
}

/// Cleans a slash path: drops `.` and empty parts, resolves `..`. `None`
/// when `..` climbs above the start.
pub fn clean_rel(p: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            x => out.push(x),
        }
    }
    Some(out.join("/"))
}

/// An absolute container path, cleaned (`..` stops at `/`).
pub fn clean_abs(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            x => out.push(x),
        }
    }
    format!("/{}", out.join("/"))
}

/// Shell-style match of one path component: `*`, `?`, `[a-z]`, `[!x]`,
/// `\` escapes.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn m(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|i| m(&p[1..], &n[i..])),
            Some('?') => !n.is_empty() && m(&p[1..], &n[1..]),
            Some('[') => {
                let Some(c) = n.first() else { return false };
                let mut i = 1;
                let negate = matches!(p.get(1), Some('!') | Some('^'));
                if negate {
                    i += 1;
                }
                let mut hit = false;
                let mut first = true;
                while i < p.len() && (first || p[i] != ']') {
                    first = false;
                    let lo = if p[i] == '\\' && i + 1 < p.len() {
                        i += 1;
                        p[i]
                    } else {
                        p[i]
                    };
                    if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|c| *c != ']') {
                        let hi = p[i + 2];
                        hit |= lo <= *c && *c <= hi;
                        i += 3;
                    } else {
                        hit |= lo == *c;
                        i += 1;
                    }
                }
                if i >= p.len() {
                    // No closing bracket: a literal '['.
                    return *c == '[' && m(&p[1..], &n[1..]);
                }
                hit != negate && m(&p[i + 1..], &n[1..])
            }
            Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && m(&p[2..], &n[1..]),
            Some(c) => n.first() == Some(c) && m(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Bound the backtracking on hostile patterns.
    if p.iter().filter(|c| **c == '*').count() > 16 {
        return false;
    }
    m(&p, &n)
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

impl BuildContext {
    pub fn open(root: &Path) -> Result<BuildContext> {
        let meta = std::fs::metadata(root)
            .with_context(|| format!("unable to prepare context: path {:?} not found", root))?;
        if !meta.is_dir() {
            bail!(
                "unable to prepare context: context must be a directory: {}",
                root.display()
            );
        }
        let ignore_path = root.join(".dockerignore");
        let text = match File::open(&ignore_path) {
            Ok(f) => {
                let mut s = String::new();
                f.take(MAX_IGNORE_FILE)
                    .read_to_string(&mut s)
                    .with_context(|| format!("reading {}", ignore_path.display()))?;
                s
            }
            Err(_) => String::new(),
        };
        let ignore =
            Matcher::parse(&text).map_err(|e| anyhow!("error parsing .dockerignore: {e}"))?;
        Ok(BuildContext {
            root: root.to_path_buf(),
            ignore,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn excluded(&self, rel: &str) -> bool {
        !rel.is_empty() && self.ignore.excluded(rel)
    }

    /// The context-relative paths a `COPY`/`ADD` source names (wildcards
    /// expanded). Errors like docker's when nothing matches.
    pub fn sources(&self, src: &str) -> Result<Vec<String>> {
        let Some(rel) = clean_rel(src) else {
            bail!("forbidden path outside the build context: {src} ()");
        };
        let not_found = || {
            anyhow!(
                "file not found in build context or excluded by .dockerignore: stat {src}: file does not exist"
            )
        };
        if !has_wildcard(&rel) {
            let p = self.root.join(&rel);
            if std::fs::symlink_metadata(&p).is_err() || self.excluded(&rel) {
                return Err(not_found());
            }
            return Ok(vec![rel]);
        }
        let mut found = vec![String::new()];
        for part in rel.split('/') {
            let mut next = Vec::new();
            for base in &found {
                let dir = self.root.join(base);
                if !has_wildcard(part) {
                    let cand = join_rel(base, part);
                    if std::fs::symlink_metadata(self.root.join(&cand)).is_ok() {
                        next.push(cand);
                    }
                    continue;
                }
                let Ok(rd) = std::fs::read_dir(&dir) else {
                    continue;
                };
                let mut names: Vec<String> = rd
                    .flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| glob_match(part, n))
                    .collect();
                names.sort();
                next.extend(names.into_iter().map(|n| join_rel(base, &n)));
            }
            found = next;
        }
        found.retain(|r| !self.excluded(r));
        if found.is_empty() {
            return Err(not_found());
        }
        Ok(found)
    }

    /// Appends source `rel` to `out` at `dest` (an absolute container
    /// path). A directory's contents go below `dest`; a file becomes
    /// `dest` itself, or `dest/<name>` when `dest_is_dir`.
    pub fn add_source(
        &self,
        out: &mut LayerTar,
        rel: &str,
        dest: &str,
        dest_is_dir: bool,
        own: Ownership,
    ) -> Result<()> {
        let path = self.root.join(rel);
        let meta = std::fs::symlink_metadata(&path)
            .with_context(|| format!("stat {rel}: file does not exist"))?;
        if meta.is_dir() {
            out.dir(dest, 0o755, own, mtime(&meta))?;
            self.walk(out, &path, rel, dest, own)
        } else {
            let target = if dest_is_dir {
                let name = rel.rsplit('/').next().unwrap_or(rel);
                format!("{}/{name}", dest.trim_end_matches('/'))
            } else {
                dest.to_string()
            };
            out.path_entry(&path, &meta, &target, own)
        }
    }

    fn walk(
        &self,
        out: &mut LayerTar,
        dir: &Path,
        rel: &str,
        dest: &str,
        own: Ownership,
    ) -> Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let Ok(name) = e.file_name().into_string() else {
                bail!("{}: file name is not UTF-8", e.path().display());
            };
            let child_rel = join_rel(rel, &name);
            let meta = std::fs::symlink_metadata(e.path())?;
            let target = format!("{}/{name}", dest.trim_end_matches('/'));
            if self.excluded(&child_rel) {
                if meta.is_dir() && self.ignore.may_reinclude_under(&child_rel) {
                    self.walk(out, &e.path(), &child_rel, &target, own)?;
                }
                continue;
            }
            if meta.is_dir() {
                out.dir(&target, meta_mode(&meta), own, mtime(&meta))?;
                self.walk(out, &e.path(), &child_rel, &target, own)?;
            } else {
                out.path_entry(&e.path(), &meta, &target, own)?;
            }
        }
        Ok(())
    }
}

fn join_rel(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}/{name}")
    }
}

#[cfg(unix)]
fn meta_mode(m: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    m.permissions().mode() & 0o7777
}

#[cfg(not(unix))]
fn meta_mode(m: &std::fs::Metadata) -> u32 {
    if m.is_dir() {
        0o755
    } else if m.permissions().readonly() {
        0o444
    } else {
        0o644
    }
}

fn mtime(m: &std::fs::Metadata) -> u64 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A reader that hashes what passes through.
struct HashingReader<'a, R> {
    inner: R,
    hash: &'a mut Sha256,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// The tar a `COPY`/`ADD` step sends to the engine (paths relative to the
/// container's `/`), and a checksum of what it holds for the build cache:
/// names, modes, owners and contents, not modification times.
pub struct LayerTar {
    builder: tar::Builder<File>,
    file: tempfile::NamedTempFile,
    sum: Sha256,
    entries: usize,
}

impl LayerTar {
    pub fn new() -> Result<LayerTar> {
        let file = tempfile::NamedTempFile::new().context("creating a temporary file")?;
        let builder = tar::Builder::new(file.reopen()?);
        Ok(LayerTar {
            builder,
            file,
            sum: Sha256::new(),
            entries: 0,
        })
    }

    pub fn entries(&self) -> usize {
        self.entries
    }

    fn header(
        &mut self,
        kind: tar::EntryType,
        path: &str,
        mode: u32,
        own: Ownership,
        mtime: u64,
    ) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(own.mode.unwrap_or(mode) & 0o7777);
        h.set_uid(own.uid);
        h.set_gid(own.gid);
        h.set_mtime(mtime);
        h.set_size(0);
        self.sum.update(format!(
            "{:?}\0{path}\0{:o}\0{}\0{}\0",
            kind,
            own.mode.unwrap_or(mode) & 0o7777,
            own.uid,
            own.gid
        ));
        self.entries += 1;
        h
    }

    /// Entry name: the absolute container path without its leading `/`.
    fn name(path: &str) -> Result<String> {
        let p = clean_abs(path);
        let rel = p.trim_start_matches('/');
        if rel.is_empty() {
            bail!("cannot copy onto the root directory itself");
        }
        Ok(rel.to_string())
    }

    /// A directory (created by the engine only when it is missing).
    pub fn dir(&mut self, path: &str, mode: u32, own: Ownership, mtime: u64) -> Result<()> {
        let p = clean_abs(path);
        if p == "/" {
            return Ok(());
        }
        let name = Self::name(&p)?;
        let mut h = self.header(tar::EntryType::Directory, &name, mode, own, mtime);
        self.builder.append_data(&mut h, &name, std::io::empty())?;
        Ok(())
    }

    /// A regular file with contents from `r`.
    pub fn file(
        &mut self,
        path: &str,
        size: u64,
        mode: u32,
        own: Ownership,
        mtime: u64,
        r: &mut dyn Read,
    ) -> Result<()> {
        let name = Self::name(path)?;
        let mut h = self.header(tar::EntryType::Regular, &name, mode, own, mtime);
        h.set_size(size);
        let mut sum = Sha256::new();
        let reader = HashingReader {
            inner: r.take(size),
            hash: &mut sum,
        };
        self.builder.append_data(&mut h, &name, reader)?;
        self.sum.update(sum.finalize());
        Ok(())
    }

    pub fn symlink(&mut self, path: &str, target: &str, own: Ownership, mtime: u64) -> Result<()> {
        let name = Self::name(path)?;
        let own = Ownership { mode: None, ..own };
        let mut h = self.header(tar::EntryType::Symlink, &name, 0o777, own, mtime);
        self.sum.update(target.as_bytes());
        self.builder.append_link(&mut h, &name, target)?;
        Ok(())
    }

    pub fn hardlink(&mut self, path: &str, target: &str, own: Ownership) -> Result<()> {
        let name = Self::name(path)?;
        let target = Self::name(target)?;
        let mut h = self.header(tar::EntryType::Link, &name, 0o644, own, 0);
        self.sum.update(target.as_bytes());
        self.builder.append_link(&mut h, &name, &target)?;
        Ok(())
    }

    /// A file, directory or symlink of the host at `target`.
    fn path_entry(
        &mut self,
        src: &Path,
        meta: &std::fs::Metadata,
        target: &str,
        own: Ownership,
    ) -> Result<()> {
        let ft = meta.file_type();
        if ft.is_symlink() {
            let link = std::fs::read_link(src)?;
            let link = link
                .to_str()
                .ok_or_else(|| anyhow!("{}: link target is not UTF-8", src.display()))?;
            self.symlink(target, link, own, mtime(meta))
        } else if ft.is_dir() {
            self.dir(target, meta_mode(meta), own, mtime(meta))
        } else if ft.is_file() {
            let mut f = File::open(src).with_context(|| format!("opening {}", src.display()))?;
            self.file(
                target,
                meta.len(),
                meta_mode(meta),
                own,
                mtime(meta),
                &mut f,
            )
        } else {
            // Sockets, fifos and devices are not copied.
            Ok(())
        }
    }

    /// Finishes the tar; returns the file (rewound) and the checksum.
    pub fn finish(mut self) -> Result<(File, String)> {
        self.builder.finish()?;
        let mut f = self.file.reopen()?;
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(0))?;
        Ok((f, hex::encode(self.sum.finalize())))
    }
}

/// Re-roots the entries of an archive below `dest`: `ADD` of a local tar
/// (`strip` = 0) or `COPY --from` of a path the engine sent as a tar whose
/// top entry is the path's base name. Entries that climb out (`..`,
/// absolute links for hard links) are refused. With `own`, owners are
/// replaced (COPY), otherwise kept (ADD of an archive).
pub fn reroot_archive(
    out: &mut LayerTar,
    r: &mut dyn Read,
    dest: &str,
    top: Option<&str>,
    own: Option<Ownership>,
) -> Result<()> {
    let mut ar = tar::Archive::new(r);
    for entry in ar.entries().context("reading archive")? {
        let mut e = entry.context("reading archive")?;
        let raw = e.path()?.to_string_lossy().to_string();
        let Some(mut rel) = clean_rel(&raw) else {
            bail!("archive entry {raw:?} climbs out of the destination");
        };
        if let Some(top) = top {
            // `COPY --from` of a file: the tar's only entry is its name,
            // and `dest` is already the final path.
            if rel == top {
                rel = String::new();
            } else if let Some(rest) = rel.strip_prefix(&format!("{top}/")) {
                rel = rest.to_string();
            }
        }
        let target = if rel.is_empty() {
            dest.to_string()
        } else {
            format!("{}/{rel}", dest.trim_end_matches('/'))
        };
        let h = e.header();
        let o = own.unwrap_or(Ownership {
            uid: h.uid().unwrap_or(0),
            gid: h.gid().unwrap_or(0),
            mode: None,
        });
        let mode = h.mode().unwrap_or(0o644);
        let mt = h.mtime().unwrap_or(0);
        match h.entry_type() {
            tar::EntryType::Directory => out.dir(&target, mode, o, mt)?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = h.size().unwrap_or(0);
                out.file(&target, size, mode, o, mt, &mut e)?
            }
            tar::EntryType::Symlink => {
                let link = e
                    .link_name()?
                    .ok_or_else(|| anyhow!("symlink {raw:?} without a target"))?
                    .to_string_lossy()
                    .to_string();
                out.symlink(&target, &link, o, mt)?
            }
            tar::EntryType::Link => {
                let link = e
                    .link_name()?
                    .ok_or_else(|| anyhow!("hard link {raw:?} without a target"))?
                    .to_string_lossy()
                    .to_string();
                let Some(mut lrel) = clean_rel(&link) else {
                    bail!("hard link {raw:?} points out of the destination");
                };
                if let Some(top) = top {
                    if let Some(rest) = lrel.strip_prefix(&format!("{top}/")) {
                        lrel = rest.to_string();
                    }
                }
                let ltarget = format!("{}/{lrel}", dest.trim_end_matches('/'));
                out.hardlink(&target, &ltarget, o)?
            }
            // Devices, fifos and metadata-only entries are skipped.
            _ => {}
        }
    }
    Ok(())
}

/// What kind of archive `ADD` would unpack (by magic number).
pub fn archive_kind(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Some("gzip")
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        Some("tar")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*.txt", "a.txt"));
        assert!(!glob_match("*.txt", "a.txt.bak"));
        assert!(glob_match("file?", "file1"));
        assert!(glob_match("[a-c]x", "bx"));
        assert!(!glob_match("[!a-c]x", "bx"));
        assert!(glob_match("\\*", "*"));
        assert!(!glob_match(&"*".repeat(40), "x"));
    }

    #[test]
    fn cleaning() {
        assert_eq!(clean_rel("./a/../b/"), Some("b".into()));
        assert_eq!(clean_rel("/etc/passwd"), Some("etc/passwd".into()));
        assert_eq!(clean_rel("../x"), None);
        assert_eq!(clean_abs("/a/../../b"), "/b");
        assert_eq!(clean_abs("rel/./x/"), "/rel/x");
    }

    #[test]
    fn sources_stay_inside_and_honour_ignore() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.txt"), "a").unwrap();
        std::fs::write(d.path().join("b.txt"), "b").unwrap();
        std::fs::write(d.path().join("secret.txt"), "s").unwrap();
        std::fs::write(d.path().join(".dockerignore"), "secret.txt\n").unwrap();
        let c = BuildContext::open(d.path()).unwrap();
        assert_eq!(c.sources("*.txt").unwrap(), vec!["a.txt", "b.txt"]);
        assert!(c.sources("secret.txt").is_err());
        assert!(c.sources("../etc/passwd").is_err());
        assert_eq!(c.sources("/a.txt").unwrap(), vec!["a.txt"]);
    }

    #[test]
    fn hostile_archives_are_refused() {
        let mut raw = Vec::new();
        {
            let mut b = tar::Builder::new(&mut raw);
            let mut h = tar::Header::new_gnu();
            h.set_size(1);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            // tar::Builder refuses `..` in set_path: write the name raw.
            h.as_old_mut().name[..9].copy_from_slice(b"../escape");
            h.set_cksum();
            b.append(&h, &b"x"[..]).unwrap();
            b.finish().unwrap();
        }
        let mut out = LayerTar::new().unwrap();
        let e = reroot_archive(&mut out, &mut &raw[..], "/dst", None, None).unwrap_err();
        assert!(e.to_string().contains("climbs out"), "{e}");
    }
}
