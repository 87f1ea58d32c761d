//! [`ShareFs`]: `PassthroughFs` confined to berth's rules (see the module
//! documentation of `fs`): read-only shares refused in the server, the
//! VMM's credentials for every operation, no set-id bits, no device nodes,
//! and the guest's view of owners and modes kept in an override xattr
//! ([`OVERRIDE_XATTR`]).

use std::ffi::CStr;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fuse_backend_rs::abi::fuse_abi::{stat64, statvfs64, CreateIn};
use fuse_backend_rs::api::filesystem::{
    Context, DirEntry, Entry, FileLock, FileSystem, FsOptions, GetxattrReply, IoctlData,
    ListxattrReply, OpenOptions, SetattrValid, ZeroCopyReader, ZeroCopyWriter,
};
use fuse_backend_rs::passthrough::{CachePolicy, Config, PassthroughFs};
use fuse_backend_rs::transport::FsCacheReqHandler;

use super::events::{Expect, FileType, Key, ShareEvents};
use super::FsError;

type Inode = u64;
type Handle = u64;

fn erofs() -> io::Error {
    io::Error::from_raw_os_error(libc::EROFS)
}

/// Mode bits a guest may not set on host files.
const SET_ID_BITS: u32 = libc::S_ISUID | libc::S_ISGID;

/// Permission bits of a mode (what an override holds).
const PERM_BITS: u32 = 0o7777;

/// The extended attribute holding the guest's view of a regular file's or
/// a directory's owner and permission bits, as text `UID:GID:0MODE`
/// (decimal ids, octal mode, e.g. `1000:1000:0640`): the name and format
/// of libkrun, fuse-overlayfs and containers/storage
/// (`user.containers.override_stat`), so that a folder shared with those
/// reads the same. On reading, file-type bits in MODE are ignored (the
/// host file's type is reported) and a value that does not parse counts
/// as no override.
pub const OVERRIDE_XATTR: &CStr = c"user.containers.override_stat";

/// The longest override value read (`4294967295:4294967295:07777` is 29).
const OVERRIDE_MAX: u32 = 64;

/// The guest's view of a file: owner, group and permission bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Override {
    /// Owner as the guest sees it.
    pub uid: u32,
    /// Group as the guest sees it.
    pub gid: u32,
    /// Permission bits (`0o7777`) as the guest sees them.
    pub mode: u32,
}

impl Override {
    /// Parses an [`OVERRIDE_XATTR`] value.
    pub fn parse(value: &[u8]) -> Option<Override> {
        let text = std::str::from_utf8(value).ok()?;
        let text = text.trim_end_matches('\0');
        let mut parts = text.split(':');
        let mut number = |radix| {
            let part = parts.next()?;
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            u32::from_str_radix(part, radix).ok()
        };
        let (uid, gid, mode) = (number(10)?, number(10)?, number(8)?);
        if parts.next().is_some() {
            return None;
        }
        Some(Override {
            uid,
            gid,
            mode: mode & PERM_BITS,
        })
    }

    /// The [`OVERRIDE_XATTR`] value.
    pub fn encode(&self) -> String {
        format!("{}:{}:0{:o}", self.uid, self.gid, self.mode & PERM_BITS)
    }

    /// The host's attributes as a view (for files without an override).
    fn of(st: &stat64) -> Override {
        Override {
            uid: st.st_uid,
            gid: st.st_gid,
            mode: st.st_mode & PERM_BITS,
        }
    }

    /// `st` as the guest sees it: the type from the host, the rest from
    /// the override.
    fn apply(&self, st: &mut stat64) {
        st.st_uid = self.uid;
        st.st_gid = self.gid;
        st.st_mode = (st.st_mode & libc::S_IFMT) | (self.mode & PERM_BITS);
    }
}

/// Whether a file of this mode keeps an override: regular files and
/// directories only (Linux refuses `user.*` xattrs on symlinks, FIFOs,
/// sockets and devices; those show their host owner and mode).
fn keeps_override(mode: u32) -> bool {
    matches!(mode & libc::S_IFMT, libc::S_IFREG | libc::S_IFDIR)
}

/// Permission bits a host file with an override always has, so that the
/// server (the file's owner) can read and write it, search a directory,
/// and read and write the override (`user.*` xattrs need read/write
/// permission): `rw-` for files, `rwx` for directories.
fn host_owner_bits(mode: u32) -> u32 {
    if mode & libc::S_IFMT == libc::S_IFDIR {
        0o700
    } else {
        0o600
    }
}

/// The host file system has no `user.*` xattrs (or not on this file).
fn unsupported(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EOPNOTSUPP)
}

/// The context PassthroughFs gets: uid/gid 0 make it skip its per-thread
/// setresuid/setresgid, so every operation runs with the VMM's own
/// credentials; the guest's ids only go into overrides.
fn host(ctx: &Context) -> Context {
    Context {
        uid: 0,
        gid: 0,
        pid: ctx.pid,
    }
}

/// A context for the server's own requests (override xattrs).
const SERVER: Context = Context {
    uid: 0,
    gid: 0,
    pid: 0,
};

/// ACCESS from the guest's view (`st` with its override applied), by the
/// rules PassthroughFs uses: uid 0 may read and write anything and
/// execute what has an x bit (search any directory); others by owner,
/// primary group, then other bits.
fn check_access(st: &stat64, ctx: &Context, mask: u32) -> io::Result<()> {
    let mask = mask as i32 & (libc::R_OK | libc::W_OK | libc::X_OK);
    let mode = st.st_mode;
    let allowed = if ctx.uid == 0 {
        let exec = mode & libc::S_IFMT == libc::S_IFDIR || mode & 0o111 != 0;
        libc::R_OK | libc::W_OK | if exec { libc::X_OK } else { 0 }
    } else {
        // R_OK, W_OK, X_OK are 4, 2, 1: the class's bits themselves.
        let class = if ctx.uid == st.st_uid {
            mode >> 6
        } else if ctx.gid == st.st_gid {
            mode >> 3
        } else {
            mode
        };
        (class & 7) as i32
    };
    if mask & !allowed != 0 {
        Err(io::Error::from_raw_os_error(libc::EACCES))
    } else {
        Ok(())
    }
}

/// A shared host directory as the FUSE server sees it.
pub struct ShareFs {
    inner: PassthroughFs,
    read_only: bool,
    /// Live file-change events (`events.rs`): expectations of the guest
    /// agent's mirroring operations, echoes of the guest's own changes.
    events: Arc<ShareEvents>,
}

/// How long the guest caches a ghost's attributes (it only removes or
/// moves it).
const GHOST_TIMEOUT: Duration = Duration::from_secs(1);

fn enoent() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOENT)
}

impl ShareFs {
    /// Serves `root` (an existing directory; symlinks in the path are
    /// resolved once, here, by the host).
    pub fn new(root: &Path, read_only: bool) -> Result<ShareFs, FsError> {
        let dir_err = |source| FsError::Dir {
            path: root.to_path_buf(),
            source,
        };
        let canonical = std::fs::canonicalize(root).map_err(dir_err)?;
        if !canonical.is_dir() {
            return Err(dir_err(io::Error::from_raw_os_error(libc::ENOTDIR)));
        }
        let root_dir = canonical.to_str().map(str::to_string).ok_or_else(|| {
            dir_err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the path is not valid UTF-8",
            ))
        })?;
        let cfg = Config {
            root_dir,
            // Close-to-open consistency; short timeouts so that host edits
            // show up in the guest quickly.
            cache_policy: CachePolicy::Auto,
            entry_timeout: Duration::from_secs(1),
            attr_timeout: Duration::from_secs(1),
            writeback: false,
            // For the server's own override xattrs (OVERRIDE_XATTR),
            // through the inode's own fd; the guest's xattr requests are
            // refused in ShareFs.
            xattr: true,
            do_import: true,
            ..Config::default()
        };
        let inner = PassthroughFs::new(cfg).map_err(dir_err)?;
        // import() clears the process umask (virtiofsd is a process of its
        // own); the VMM's other files must keep the user's umask.
        // SAFETY: umask(2) only swaps the process's file mode mask.
        let old = unsafe { libc::umask(0o077) };
        let imported = inner.import();
        // SAFETY: as above, restoring the saved mask.
        unsafe { libc::umask(old) };
        imported.map_err(dir_err)?;
        Ok(ShareFs {
            inner,
            read_only,
            events: Arc::new(ShareEvents::new()),
        })
    }

    /// The share's event tables (the host watcher's side).
    pub fn events(&self) -> Arc<ShareEvents> {
        self.events.clone()
    }

    /// The host identity of a server node (`None`: unknown node).
    fn node_key(&self, inode: Inode) -> Option<Key> {
        let (st, _) = self.inner.getattr(&SERVER, inode, None).ok()?;
        Some(Key::Node {
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }

    /// The host identity of `name` in the directory node `parent`.
    fn entry_key(&self, parent: Inode, name: &CStr) -> Option<Key> {
        match self.node_key(parent)? {
            Key::Node { dev, ino } => Some(Key::Entry {
                dev,
                dir: ino,
                name: name.to_bytes().to_vec(),
            }),
            Key::Entry { .. } => None,
        }
    }

    /// Consumes the expectation `expect` of `name` in `parent`.
    fn take_entry(&self, parent: Inode, name: &CStr, expect: Expect) -> bool {
        self.take_entry_node(parent, name, expect).is_some()
    }

    /// [`Self::take_entry`], with the node recorded with the expectation.
    fn take_entry_node(&self, parent: Inode, name: &CStr, expect: Expect) -> Option<Option<Key>> {
        if !self.events.any_pending() {
            return None;
        }
        let k = self.entry_key(parent, name)?;
        self.events.take_node(&k, expect)
    }

    /// A ghost's entry (a name the host had, or has no more).
    fn ghost_entry(&self, ghost: super::events::Ghost) -> Entry {
        let dir = ghost.0;
        let id = self.events.new_ghost(ghost);
        Entry {
            inode: id,
            generation: 0,
            attr: Self::ghost_attr(id, dir),
            attr_flags: 0,
            attr_timeout: GHOST_TIMEOUT,
            entry_timeout: Duration::ZERO,
        }
    }

    /// A create the guest agent mirrors: the host made the file already;
    /// the guest gets its entry, or a ghost where the host has removed or
    /// moved it again since (its later events then apply to the ghost).
    fn mirrored_create(
        &self,
        ctx: &Context,
        parent: Inode,
        name: &CStr,
        kind: FileType,
        node: Option<Key>,
    ) -> io::Result<Entry> {
        match self.inner.lookup(&host(ctx), parent, name) {
            Ok(mut entry) => {
                self.view_entry(&mut entry);
                Ok(entry)
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && kind != FileType::Symlink => {
                Ok(self.ghost_entry((kind == FileType::Dir, node)))
            }
            Err(e) => Err(e),
        }
    }

    /// Records that the server changed `name` in `parent` (and the node
    /// `made`, if any) for the guest, so the host watcher drops the echo.
    fn echo_entry(&self, parent: Inode, name: &CStr, made: Option<Inode>) {
        if !self.events.watching() {
            return;
        }
        if let Some(k) = self.entry_key(parent, name) {
            self.events.echo(k);
        }
        if let Some(k) = made.and_then(|n| self.node_key(n)) {
            self.events.echo(k);
        }
    }

    /// Records that the server changed the node `inode` for the guest.
    fn echo_node(&self, inode: Inode) {
        if self.events.watching() {
            if let Some(k) = self.node_key(inode) {
                self.events.echo(k);
            }
        }
    }

    /// The attributes of a ghost (a gone name the guest removes or moves).
    fn ghost_attr(id: u64, dir: bool) -> stat64 {
        // SAFETY: stat64 is plain old data; all-zero is a valid value.
        let mut st: stat64 = unsafe { std::mem::zeroed() };
        st.st_ino = id;
        st.st_mode = if dir {
            libc::S_IFDIR | 0o755
        } else {
            libc::S_IFREG | 0o644
        };
        st.st_nlink = if dir { 2 } else { 1 };
        st.st_blksize = 4096;
        st
    }

    /// Whether every change is refused.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    fn writable(&self) -> io::Result<()> {
        if self.read_only {
            Err(erofs())
        } else {
            Ok(())
        }
    }

    /// The override of `inode` (whose host mode is `mode`), if it has a
    /// valid one the server can read.
    fn read_override(&self, inode: Inode, mode: u32) -> Option<Override> {
        if !keeps_override(mode) {
            return None;
        }
        match self
            .inner
            .getxattr(&SERVER, inode, OVERRIDE_XATTR, OVERRIDE_MAX)
        {
            Ok(GetxattrReply::Value(v)) => Override::parse(&v),
            _ => None,
        }
    }

    fn write_override(&self, inode: Inode, view: &Override) -> io::Result<()> {
        self.inner
            .setxattr(&SERVER, inode, OVERRIDE_XATTR, view.encode().as_bytes(), 0)
    }

    /// `st` (of `inode`) as the guest sees it.
    fn view(&self, inode: Inode, st: &mut stat64) {
        if let Some(o) = self.read_override(inode, st.st_mode) {
            o.apply(st);
        }
    }

    fn view_entry(&self, entry: &mut Entry) {
        if entry.inode != 0 {
            self.view(entry.inode, &mut entry.attr);
        }
    }

    /// The group of a file the guest makes in `parent`, and whether the
    /// parent is set-group-ID (its group is then inherited, and a new
    /// directory is set-group-ID too).
    fn new_group(&self, ctx: &Context, parent: Inode) -> (u32, bool) {
        match self.inner.getattr(&host(ctx), parent, None) {
            Ok((mut st, _)) => {
                self.view(parent, &mut st);
                if st.st_mode & libc::S_ISGID != 0 {
                    (st.st_gid, true)
                } else {
                    (ctx.gid, false)
                }
            }
            Err(_) => (ctx.gid, false),
        }
    }

    /// After the guest made `entry`: the host file gets its owner bits
    /// (the process umask may have cleared them) and the override `view`;
    /// `entry` then shows `view`. A failure leaves the file as the host
    /// made it (it exists; refusing now would leak the server's lookup).
    fn adopt(&self, entry: &mut Entry, view: Override) {
        if !keeps_override(entry.attr.st_mode) {
            return;
        }
        let need = host_owner_bits(entry.attr.st_mode);
        if entry.attr.st_mode & need != need {
            let mut attr = entry.attr;
            attr.st_mode = (entry.attr.st_mode & PERM_BITS) | need;
            match self
                .inner
                .setattr(&SERVER, entry.inode, attr, None, SetattrValid::MODE)
            {
                Ok((st, _)) => entry.attr = st,
                Err(_) => return,
            }
        }
        if self.write_override(entry.inode, &view).is_ok() {
            view.apply(&mut entry.attr);
        }
    }
}

/// Open flags that change a file.
fn open_writes(flags: u32) -> bool {
    let flags = flags as i32;
    (flags & libc::O_ACCMODE) != libc::O_RDONLY || flags & (libc::O_TRUNC | libc::O_CREAT) != 0
}

impl FileSystem for ShareFs {
    type Inode = Inode;
    type Handle = Handle;

    fn init(&self, capable: FsOptions) -> io::Result<FsOptions> {
        let mut capable = capable;
        if self.read_only {
            capable.remove(FsOptions::WRITEBACK_CACHE);
        }
        // PassthroughFs asks for none of these, and without them the
        // server answers INIT with a 4 KiB max_write and the guest's 128
        // KiB request default: a 1 MiB write became 256 requests, each a
        // queue round trip (and each guest step costly where the guest
        // kernel is emulated). virtiofsd asks for the same ones: 1 MiB
        // requests (MAX_PAGES, BIG_WRITES), reads issued ahead of use
        // (ASYNC_READ), lookups in one directory in parallel
        // (PARALLEL_DIROPS).
        // AUTO_INVAL_DATA (virtiofsd asks for it too): the guest drops its
        // cached data of a file when a reply shows the host's mtime
        // changed, so a host edit is read fresh at the next stat, and a
        // file the guest wrote is dropped at its next GETATTR rather than
        // at the next open.
        let wanted = FsOptions::BIG_WRITES
            | FsOptions::MAX_PAGES
            | FsOptions::ASYNC_READ
            | FsOptions::PARALLEL_DIROPS
            | FsOptions::AUTO_INVAL_DATA;
        Ok(self.inner.init(capable)? | (capable & wanted))
    }

    fn destroy(&self) {
        self.inner.destroy()
    }

    fn lookup(&self, ctx: &Context, parent: Inode, name: &CStr) -> io::Result<Entry> {
        if self.events.ghost(parent).is_some() {
            // A directory the host removed or moved: nothing below it.
            return Err(enoent());
        }
        if self.events.any_pending() {
            if let Some(k) = self.entry_key(parent, name) {
                if self.events.hides(&k) {
                    return Err(enoent());
                }
                if let Some(ghost) = self.events.gone(&k) {
                    return Ok(self.ghost_entry(ghost));
                }
            }
        }
        let mut entry = self.inner.lookup(&host(ctx), parent, name)?;
        self.view_entry(&mut entry);
        Ok(entry)
    }

    fn forget(&self, ctx: &Context, inode: Inode, count: u64) {
        if inode >= super::events::GHOST_BASE {
            return self.events.forget_ghost(inode);
        }
        self.inner.forget(&host(ctx), inode, count)
    }

    fn batch_forget(&self, ctx: &Context, requests: Vec<(Inode, u64)>) {
        let (ghosts, real): (Vec<_>, Vec<_>) = requests
            .into_iter()
            .partition(|(i, _)| *i >= super::events::GHOST_BASE);
        for (g, _) in ghosts {
            self.events.forget_ghost(g);
        }
        self.inner.batch_forget(&host(ctx), real)
    }

    fn getattr(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Option<Handle>,
    ) -> io::Result<(stat64, Duration)> {
        if let Some((dir, _)) = self.events.ghost(inode) {
            return Ok((Self::ghost_attr(inode, dir), GHOST_TIMEOUT));
        }
        let (mut st, timeout) = self.inner.getattr(&host(ctx), inode, handle)?;
        self.view(inode, &mut st);
        Ok((st, timeout))
    }

    fn setattr(
        &self,
        ctx: &Context,
        inode: Inode,
        attr: stat64,
        handle: Option<Handle>,
        valid: SetattrValid,
    ) -> io::Result<(stat64, Duration)> {
        self.writable()?;
        // The agent's utimensat mirroring a host write (mtime alone:
        // IN_MODIFY) or a host metadata change (both times: IN_ATTRIB).
        let mirror = {
            let times = SetattrValid::ATIME | SetattrValid::MTIME;
            let extra = valid
                - (times | SetattrValid::ATIME_NOW | SetattrValid::MTIME_NOW | SetattrValid::CTIME);
            if !extra.is_empty() || !self.events.any_pending() {
                None
            } else if valid & times == SetattrValid::MTIME {
                Some(Expect::Modify)
            } else if valid & times == times {
                Some(Expect::Attrib)
            } else {
                None
            }
        };
        if let Some((dir, node)) = self.events.ghost(inode) {
            // A ghost standing for a host node the host has moved since.
            return match (mirror, node) {
                (Some(expect), Some(node)) if self.events.take(&node, expect) => {
                    Ok((Self::ghost_attr(inode, dir), GHOST_TIMEOUT))
                }
                _ => Err(io::Error::from_raw_os_error(libc::ESTALE)),
            };
        }
        let hctx = host(ctx);
        let mut attr = attr;
        let (st, timeout) = self.inner.getattr(&hctx, inode, handle)?;
        if let Some(expect) = mirror {
            let key = Key::Node {
                dev: st.st_dev,
                ino: st.st_ino,
            };
            if self.events.take(&key, expect) {
                let mut st = st;
                self.view(inode, &mut st);
                return Ok((st, timeout));
            }
        }
        self.echo_node(inode);
        let chmod = valid.contains(SetattrValid::MODE);
        let chown = valid.intersects(SetattrValid::UID | SetattrValid::GID);
        if chmod {
            if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                attr.st_mode &= !SET_ID_BITS;
            } else {
                attr.st_mode &= !libc::S_ISUID;
            }
        }
        // The host owner stays the VMM user's: chown only changes the
        // override.
        let mut host_valid = valid - (SetattrValid::UID | SetattrValid::GID);
        if !keeps_override(st.st_mode) || !(chmod || chown) {
            // No override to change (symlinks, FIFOs, sockets keep their
            // host owner: chown on them is accepted and not kept).
            let (mut st, timeout) = self.inner.setattr(&hctx, inode, attr, handle, host_valid)?;
            self.view(inode, &mut st);
            return Ok((st, timeout));
        }
        let mut view = self
            .read_override(inode, st.st_mode)
            .unwrap_or_else(|| Override::of(&st));
        if valid.contains(SetattrValid::UID) {
            view.uid = attr.st_uid;
        }
        if valid.contains(SetattrValid::GID) {
            view.gid = attr.st_gid;
        }
        if chmod {
            view.mode = attr.st_mode & PERM_BITS;
        }
        // The host file keeps its owner bits (the server reads, writes,
        // searches it and its override); its other bits follow chmod.
        let need = host_owner_bits(st.st_mode);
        if chmod {
            attr.st_mode = view.mode | need;
        } else if st.st_mode & need != need {
            attr.st_mode = (st.st_mode & PERM_BITS) | need;
            host_valid |= SetattrValid::MODE;
        }
        let (mut new_st, timeout) = self.inner.setattr(&hctx, inode, attr, handle, host_valid)?;
        match self.write_override(inode, &view) {
            Ok(()) => view.apply(&mut new_st),
            Err(e) if unsupported(&e) => {
                // No user xattrs on this host file system: chmod goes to
                // the host file as asked, ownership is not kept.
                if chmod && view.mode & need != need {
                    attr.st_mode = view.mode;
                    new_st = self
                        .inner
                        .setattr(&hctx, inode, attr, handle, SetattrValid::MODE)?
                        .0;
                }
            }
            Err(e) => return Err(e),
        }
        Ok((new_st, timeout))
    }

    fn readlink(&self, ctx: &Context, inode: Inode) -> io::Result<Vec<u8>> {
        self.inner.readlink(&host(ctx), inode)
    }

    fn symlink(
        &self,
        ctx: &Context,
        linkname: &CStr,
        parent: Inode,
        name: &CStr,
    ) -> io::Result<Entry> {
        self.writable()?;
        if let Some(node) = self.take_entry_node(parent, name, Expect::Create(FileType::Symlink)) {
            return self.mirrored_create(ctx, parent, name, FileType::Symlink, node);
        }
        // No override: Linux keeps no user xattrs on symlinks, so a
        // symlink shows its host owner (its mode is always 0777).
        self.echo_entry(parent, name, None);
        self.inner.symlink(&host(ctx), linkname, parent, name)
    }

    fn mknod(
        &self,
        ctx: &Context,
        inode: Inode,
        name: &CStr,
        mode: u32,
        rdev: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        self.writable()?;
        match mode & libc::S_IFMT {
            libc::S_IFCHR | libc::S_IFBLK => return Err(io::Error::from_raw_os_error(libc::EPERM)),
            _ => {}
        }
        if let Some(t) = FileType::of_mode(mode) {
            if let Some(node) = self.take_entry_node(inode, name, Expect::Create(t)) {
                return self.mirrored_create(ctx, inode, name, t, node);
            }
        }
        let perm = mode & PERM_BITS & !SET_ID_BITS & !(umask & 0o777);
        let kind = mode & libc::S_IFMT;
        // A regular file (type 0 is one) keeps an override; FIFOs and
        // sockets get the guest's mode on the host and show the host owner.
        let (host_mode, overridden) = match kind {
            0 | libc::S_IFREG => (kind | perm | host_owner_bits(libc::S_IFREG), true),
            _ => (kind | perm, false),
        };
        let group = if overridden {
            self.new_group(ctx, inode).0
        } else {
            ctx.gid
        };
        self.echo_entry(inode, name, None);
        let mut entry = self
            .inner
            .mknod(&host(ctx), inode, name, host_mode, rdev, 0)?;
        self.echo_node(entry.inode);
        if overridden {
            self.adopt(
                &mut entry,
                Override {
                    uid: ctx.uid,
                    gid: group,
                    mode: perm,
                },
            );
        }
        Ok(entry)
    }

    fn mkdir(
        &self,
        ctx: &Context,
        parent: Inode,
        name: &CStr,
        mode: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        self.writable()?;
        if let Some(node) = self.take_entry_node(parent, name, Expect::Create(FileType::Dir)) {
            return self.mirrored_create(ctx, parent, name, FileType::Dir, node);
        }
        // mkdir keeps rwx and the sticky bit; set-group-ID comes from the
        // parent.
        let perm = mode & (0o777 | libc::S_ISVTX) & !(umask & 0o777);
        let (group, setgid) = self.new_group(ctx, parent);
        self.echo_entry(parent, name, None);
        let mut entry = self.inner.mkdir(
            &host(ctx),
            parent,
            name,
            perm | host_owner_bits(libc::S_IFDIR),
            0,
        )?;
        self.echo_node(entry.inode);
        let inherited = if setgid { libc::S_ISGID } else { 0 };
        self.adopt(
            &mut entry,
            Override {
                uid: ctx.uid,
                gid: group,
                mode: perm | inherited,
            },
        );
        Ok(entry)
    }

    fn unlink(&self, ctx: &Context, parent: Inode, name: &CStr) -> io::Result<()> {
        self.writable()?;
        if self.take_entry(parent, name, Expect::Remove { dir: false }) {
            return Ok(());
        }
        self.echo_entry(parent, name, None);
        self.inner.unlink(&host(ctx), parent, name)
    }

    fn rmdir(&self, ctx: &Context, parent: Inode, name: &CStr) -> io::Result<()> {
        self.writable()?;
        if self.take_entry(parent, name, Expect::Remove { dir: true }) {
            return Ok(());
        }
        self.echo_entry(parent, name, None);
        self.inner.rmdir(&host(ctx), parent, name)
    }

    fn rename(
        &self,
        ctx: &Context,
        olddir: Inode,
        oldname: &CStr,
        newdir: Inode,
        newname: &CStr,
        flags: u32,
    ) -> io::Result<()> {
        self.writable()?;
        if self.events.any_pending() && flags == 0 {
            if let (Some(from), Some(to)) = (
                self.entry_key(olddir, oldname),
                self.entry_key(newdir, newname),
            ) {
                if self.events.take_rename(&from, &to) {
                    return Ok(());
                }
            }
        }
        self.echo_entry(olddir, oldname, None);
        self.echo_entry(newdir, newname, None);
        self.inner
            .rename(&host(ctx), olddir, oldname, newdir, newname, flags)
    }

    fn link(
        &self,
        ctx: &Context,
        inode: Inode,
        newparent: Inode,
        newname: &CStr,
    ) -> io::Result<Entry> {
        self.writable()?;
        self.echo_entry(newparent, newname, Some(inode));
        let mut entry = self.inner.link(&host(ctx), inode, newparent, newname)?;
        self.view_entry(&mut entry);
        Ok(entry)
    }

    fn open(
        &self,
        ctx: &Context,
        inode: Inode,
        flags: u32,
        fuse_flags: u32,
    ) -> io::Result<(Option<Handle>, OpenOptions, Option<u32>)> {
        if open_writes(flags) {
            self.writable()?;
        }
        self.inner.open(&host(ctx), inode, flags, fuse_flags)
    }

    fn create(
        &self,
        ctx: &Context,
        parent: Inode,
        name: &CStr,
        args: CreateIn,
    ) -> io::Result<(Entry, Option<Handle>, OpenOptions, Option<u32>)> {
        self.writable()?;
        let perm = args.mode & PERM_BITS & !SET_ID_BITS & !(args.umask & 0o777);
        let (group, _) = self.new_group(ctx, parent);
        // O_EXCL first, to know whether the guest made the file (only then
        // does it get the creator's override).
        let made = CreateIn {
            flags: args.flags | libc::O_EXCL as u32,
            mode: (args.mode & libc::S_IFMT) | perm | host_owner_bits(libc::S_IFREG),
            umask: 0,
            ..args
        };
        self.echo_entry(parent, name, None);
        match self.inner.create(&host(ctx), parent, name, made) {
            Ok((mut entry, handle, opts, passthrough)) => {
                self.echo_node(entry.inode);
                self.adopt(
                    &mut entry,
                    Override {
                        uid: ctx.uid,
                        gid: group,
                        mode: perm,
                    },
                );
                Ok((entry, handle, opts, passthrough))
            }
            Err(e)
                if e.raw_os_error() == Some(libc::EEXIST)
                    && args.flags & libc::O_EXCL as u32 == 0 =>
            {
                // It exists: opened as it is.
                let args = CreateIn {
                    mode: args.mode & !SET_ID_BITS,
                    ..args
                };
                let (mut entry, handle, opts, passthrough) =
                    self.inner.create(&host(ctx), parent, name, args)?;
                self.view_entry(&mut entry);
                Ok((entry, handle, opts, passthrough))
            }
            Err(e) => Err(e),
        }
    }

    fn read(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        w: &mut dyn ZeroCopyWriter,
        size: u32,
        offset: u64,
        lock_owner: Option<u64>,
        flags: u32,
    ) -> io::Result<usize> {
        self.inner.read(
            &host(ctx),
            inode,
            handle,
            w,
            size,
            offset,
            lock_owner,
            flags,
        )
    }

    fn write(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        r: &mut dyn ZeroCopyReader,
        size: u32,
        offset: u64,
        lock_owner: Option<u64>,
        delayed_write: bool,
        flags: u32,
        fuse_flags: u32,
    ) -> io::Result<usize> {
        self.writable()?;
        self.echo_node(inode);
        self.inner.write(
            &host(ctx),
            inode,
            handle,
            r,
            size,
            offset,
            lock_owner,
            delayed_write,
            flags,
            fuse_flags,
        )
    }

    fn flush(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        lock_owner: u64,
    ) -> io::Result<()> {
        self.inner.flush(&host(ctx), inode, handle, lock_owner)
    }

    fn fsync(&self, ctx: &Context, inode: Inode, datasync: bool, handle: Handle) -> io::Result<()> {
        self.inner.fsync(&host(ctx), inode, datasync, handle)
    }

    fn fallocate(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        mode: u32,
        offset: u64,
        length: u64,
    ) -> io::Result<()> {
        self.writable()?;
        self.echo_node(inode);
        self.inner
            .fallocate(&host(ctx), inode, handle, mode, offset, length)
    }

    fn release(
        &self,
        ctx: &Context,
        inode: Inode,
        flags: u32,
        handle: Handle,
        flush: bool,
        flock_release: bool,
        lock_owner: Option<u64>,
    ) -> io::Result<()> {
        self.inner.release(
            &host(ctx),
            inode,
            flags,
            handle,
            flush,
            flock_release,
            lock_owner,
        )
    }

    fn statfs(&self, ctx: &Context, inode: Inode) -> io::Result<statvfs64> {
        self.inner.statfs(&host(ctx), inode)
    }

    // Extended attributes are not offered to the guest (ENOSYS, as with
    // `xattr: false`; the guest kernel then stops asking). In particular
    // the guest can neither see nor change OVERRIDE_XATTR: PassthroughFs's
    // xattr support is only for the server's own overrides. Offering
    // xattrs one day must filter that name out of all four.
    fn setxattr(
        &self,
        _ctx: &Context,
        _inode: Inode,
        _name: &CStr,
        _value: &[u8],
        _flags: u32,
    ) -> io::Result<()> {
        Err(io::Error::from_raw_os_error(libc::ENOSYS))
    }

    fn getxattr(
        &self,
        _ctx: &Context,
        _inode: Inode,
        _name: &CStr,
        _size: u32,
    ) -> io::Result<GetxattrReply> {
        Err(io::Error::from_raw_os_error(libc::ENOSYS))
    }

    fn listxattr(&self, _ctx: &Context, _inode: Inode, _size: u32) -> io::Result<ListxattrReply> {
        Err(io::Error::from_raw_os_error(libc::ENOSYS))
    }

    fn removexattr(&self, _ctx: &Context, _inode: Inode, _name: &CStr) -> io::Result<()> {
        Err(io::Error::from_raw_os_error(libc::ENOSYS))
    }

    fn opendir(
        &self,
        ctx: &Context,
        inode: Inode,
        flags: u32,
    ) -> io::Result<(Option<Handle>, OpenOptions)> {
        self.inner.opendir(&host(ctx), inode, flags)
    }

    fn readdir(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry) -> io::Result<usize>,
    ) -> io::Result<()> {
        self.inner
            .readdir(&host(ctx), inode, handle, size, offset, add_entry)
    }

    fn readdirplus(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(DirEntry, Entry) -> io::Result<usize>,
    ) -> io::Result<()> {
        self.inner.readdirplus(
            &host(ctx),
            inode,
            handle,
            size,
            offset,
            &mut |dir_entry, mut entry| {
                self.view_entry(&mut entry);
                add_entry(dir_entry, entry)
            },
        )
    }

    fn fsyncdir(
        &self,
        ctx: &Context,
        inode: Inode,
        datasync: bool,
        handle: Handle,
    ) -> io::Result<()> {
        self.inner.fsyncdir(&host(ctx), inode, datasync, handle)
    }

    fn releasedir(
        &self,
        ctx: &Context,
        inode: Inode,
        flags: u32,
        handle: Handle,
    ) -> io::Result<()> {
        self.inner.releasedir(&host(ctx), inode, flags, handle)
    }

    fn setupmapping(
        &self,
        _ctx: &Context,
        _inode: Inode,
        _handle: Handle,
        _foffset: u64,
        _len: u64,
        _flags: u64,
        _moffset: u64,
        _vu_req: &mut dyn FsCacheReqHandler,
    ) -> io::Result<()> {
        // No DAX window is offered.
        Err(io::Error::from_raw_os_error(libc::ENOSYS))
    }

    fn removemapping(
        &self,
        _ctx: &Context,
        _inode: Inode,
        _requests: Vec<fuse_backend_rs::abi::virtio_fs::RemovemappingOne>,
        _vu_req: &mut dyn FsCacheReqHandler,
    ) -> io::Result<()> {
        Err(io::Error::from_raw_os_error(libc::ENOSYS))
    }

    fn access(&self, ctx: &Context, inode: Inode, mask: u32) -> io::Result<()> {
        if self.read_only && mask & libc::W_OK as u32 != 0 {
            return Err(erofs());
        }
        // The guest mounts virtiofs with default_permissions (the kernel
        // checks from the attributes we report, and does not send ACCESS);
        // a client that asks gets the answer from the same view.
        let (mut st, _) = self.inner.getattr(&host(ctx), inode, None)?;
        self.view(inode, &mut st);
        check_access(&st, ctx, mask)
    }

    fn lseek(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        offset: u64,
        whence: u32,
    ) -> io::Result<u64> {
        self.inner.lseek(&host(ctx), inode, handle, offset, whence)
    }

    fn getlk(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        owner: u64,
        lock: FileLock,
        flags: u32,
    ) -> io::Result<FileLock> {
        self.inner
            .getlk(&host(ctx), inode, handle, owner, lock, flags)
    }

    fn setlk(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        owner: u64,
        lock: FileLock,
        flags: u32,
    ) -> io::Result<()> {
        self.inner
            .setlk(&host(ctx), inode, handle, owner, lock, flags)
    }

    fn setlkw(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        owner: u64,
        lock: FileLock,
        flags: u32,
    ) -> io::Result<()> {
        self.inner
            .setlkw(&host(ctx), inode, handle, owner, lock, flags)
    }

    fn ioctl(
        &self,
        _ctx: &Context,
        _inode: Inode,
        _handle: Handle,
        _flags: u32,
        _cmd: u32,
        _data: IoctlData,
        _out_size: u32,
    ) -> io::Result<IoctlData<'_>> {
        // Host ioctls on guest request are not forwarded.
        Err(io::Error::from_raw_os_error(libc::ENOTTY))
    }

    fn bmap(&self, _ctx: &Context, _inode: Inode, _block: u64, _blocksize: u32) -> io::Result<u64> {
        Err(io::Error::from_raw_os_error(libc::ENOSYS))
    }

    fn poll(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Handle,
        khandle: Handle,
        flags: u32,
        events: u32,
    ) -> io::Result<u32> {
        self.inner
            .poll(&host(ctx), inode, handle, khandle, flags, events)
    }

    fn notify_reply(&self) -> io::Result<()> {
        self.inner.notify_reply()
    }

    fn id_remap(&self, _ctx: &mut Context) -> io::Result<()> {
        // The guest's uid/gid reach ShareFs (they go into overrides);
        // every call into PassthroughFs gets `host(ctx)` instead.
        Ok(())
    }
}
