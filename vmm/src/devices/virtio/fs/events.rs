//! Live file-change events of a share: the tables the host watcher
//! ([`super::watch`]) and the FUSE server ([`super::ShareFs`]) share.
//!
//! Guest inotify events are raised only by guest VFS operations, and
//! virtiofs has no notification queue, so a host change reaches guest
//! watchers this way (see `docs/file-events.md`):
//! 1. the watcher sees the host change and records what the guest agent
//!    will do to mirror it: an *expectation* ([`Expect`]) keyed by the host
//!    object ([`Key`]);
//! 2. the agent performs the matching operation in the guest (mknod,
//!    mkdir, unlink, rmdir, rename, utimensat);
//! 3. the server, receiving that request, finds the expectation, consumes
//!    it and answers success with the host's current state *without*
//!    touching the host (the host already did it). The guest kernel then
//!    raises exactly the event of the operation and updates its caches.
//!
//! While an expectation of a new name (create, mkdir, rename target) is
//! pending, LOOKUP of that name answers ENOENT (the guest must not see it
//! before its create); while one of a gone name (delete, rmdir, rename
//! source) is pending, LOOKUP answers a *ghost*: a node id of the
//! server's own that no host file backs, so that the guest can remove or
//! move the name it never saw.
//!
//! Expectations live until the agent acknowledges their event (or
//! [`PENDING_TTL`] passes), so a stale one cannot turn a later real guest
//! operation into a no-op.
//!
//! Echoes: what the server does on the host for the guest is recorded for
//! [`ECHO_TTL`]; the watcher drops host events of those objects, so a
//! container's own write never comes back as a second event.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest time an expectation waits for its guest operation (the agent
/// normally acknowledges long before: then it goes at once).
pub const PENDING_TTL: Duration = Duration::from_secs(30);
/// How long an operation the server did for the guest silences host
/// events of the same object.
pub const ECHO_TTL: Duration = Duration::from_secs(2);
/// Most echo records kept (the oldest go first).
const ECHO_MAX: usize = 4096;
/// Most expectations kept (the watcher sends at most a window of events;
/// this only bounds a misbehaving one).
const PENDING_MAX: usize = 4096;
/// Node ids of ghosts start here (PassthroughFs numbers its inodes from 1
/// upwards and never gets near).
pub const GHOST_BASE: u64 = 1 << 62;

/// A host object, by host identity (stable across the watcher's paths and
/// the server's node ids).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// A file or directory: host device and inode.
    Node {
        /// `st_dev`.
        dev: u64,
        /// `st_ino`.
        ino: u64,
    },
    /// A name in a directory: the directory's host device and inode, and
    /// the name's bytes.
    Entry {
        /// `st_dev` of the directory.
        dev: u64,
        /// `st_ino` of the directory.
        dir: u64,
        /// The name (no `/`, no NUL).
        name: Vec<u8>,
    },
}

/// A file's type, as events and MKNOD/SYMLINK/MKDIR tell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A FIFO.
    Fifo,
    /// A Unix socket.
    Socket,
}

impl FileType {
    /// The type of an `st_mode` (`None`: devices, which the server refuses).
    pub fn of_mode(mode: u32) -> Option<FileType> {
        match mode & libc::S_IFMT {
            0 | libc::S_IFREG => Some(FileType::File),
            libc::S_IFDIR => Some(FileType::Dir),
            libc::S_IFLNK => Some(FileType::Symlink),
            libc::S_IFIFO => Some(FileType::Fifo),
            libc::S_IFSOCK => Some(FileType::Socket),
            _ => None,
        }
    }

    /// The name on the wire to the agent.
    pub fn wire(self) -> &'static str {
        match self {
            FileType::File => "file",
            FileType::Dir => "dir",
            FileType::Symlink => "symlink",
            FileType::Fifo => "fifo",
            FileType::Socket => "socket",
        }
    }
}

/// What the guest agent will do, as the server sees it arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// MKNOD / SYMLINK / MKDIR of this type at an [`Key::Entry`].
    Create(FileType),
    /// UNLINK (`dir: false`) or RMDIR (`dir: true`) of an [`Key::Entry`].
    Remove {
        /// The name was a directory.
        dir: bool,
    },
    /// The source of a RENAME ([`Key::Entry`]).
    RenameFrom {
        /// The object moved is a directory.
        dir: bool,
    },
    /// The target of a RENAME ([`Key::Entry`]).
    RenameTo,
    /// SETATTR of the mtime alone (`utimensat(OMIT, NOW)`, IN_MODIFY) of
    /// a [`Key::Node`].
    Modify,
    /// SETATTR of both times (`utimensat(NOW, NOW)`, IN_ATTRIB) of a
    /// [`Key::Node`].
    Attrib,
}

struct Pending {
    seq: u64,
    key: Key,
    expect: Expect,
    /// The object's [`Key::Node`] when the watcher saw it (a create, a
    /// rename): a ghost made for this name stands for that node.
    node: Option<Key>,
    made: Instant,
}

/// A ghost: whether it is a directory, and the host node it stands for
/// (if known), so that a later mirrored SETATTR on it still finds its
/// expectation.
pub type Ghost = (bool, Option<Key>);

/// The expectation and echo tables of one share.
pub struct ShareEvents {
    /// A watcher serves this share: the server records echoes.
    watching: std::sync::atomic::AtomicBool,
    pending: Mutex<Vec<Pending>>,
    /// `pending.len()`, read without the lock on every request.
    pending_len: AtomicUsize,
    echo: Mutex<VecDeque<(Instant, Key)>>,
    ghosts: Mutex<HashMap<u64, Ghost>>,
    next_ghost: AtomicU64,
}

impl Default for ShareEvents {
    fn default() -> Self {
        ShareEvents::new()
    }
}

impl ShareEvents {
    /// Empty tables.
    pub fn new() -> ShareEvents {
        ShareEvents {
            watching: std::sync::atomic::AtomicBool::new(false),
            pending: Mutex::new(Vec::new()),
            pending_len: AtomicUsize::new(0),
            echo: Mutex::new(VecDeque::new()),
            ghosts: Mutex::new(HashMap::new()),
            next_ghost: AtomicU64::new(GHOST_BASE),
        }
    }

    /// A watcher now serves this share (echo records start).
    pub fn set_watching(&self) {
        self.watching.store(true, Ordering::Release);
    }

    /// Whether a watcher serves this share.
    pub fn watching(&self) -> bool {
        self.watching.load(Ordering::Acquire)
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Vec<Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether any expectation is pending (the server's fast path).
    pub fn any_pending(&self) -> bool {
        self.pending_len.load(Ordering::Acquire) != 0
    }

    fn sweep(p: &mut Vec<Pending>, now: Instant) {
        p.retain(|e| now.duration_since(e.made) < PENDING_TTL);
    }

    /// Records that the guest will do `expect` on `key` for event `seq`.
    pub fn expect(&self, seq: u64, key: Key, expect: Expect) {
        self.expect_node(seq, key, expect, None)
    }

    /// [`Self::expect`], with the host node of the object if known.
    pub fn expect_node(&self, seq: u64, key: Key, expect: Expect, node: Option<Key>) {
        self.expect_at(seq, key, expect, node, Instant::now())
    }

    fn expect_at(&self, seq: u64, key: Key, expect: Expect, node: Option<Key>, now: Instant) {
        let mut p = self.lock_pending();
        Self::sweep(&mut p, now);
        if p.len() >= PENDING_MAX {
            p.remove(0);
        }
        p.push(Pending {
            seq,
            key,
            expect,
            node,
            made: now,
        });
        self.pending_len.store(p.len(), Ordering::Release);
    }

    /// The agent is done with every event up to `seq`: their expectations
    /// that no guest operation consumed go.
    pub fn acked(&self, seq: u64) {
        self.acked_at(seq, Instant::now())
    }

    fn acked_at(&self, seq: u64, now: Instant) {
        let mut p = self.lock_pending();
        p.retain(|e| e.seq > seq);
        Self::sweep(&mut p, now);
        self.pending_len.store(p.len(), Ordering::Release);
    }

    fn find(p: &[Pending], key: &Key, now: Instant, ok: impl Fn(Expect) -> bool) -> Option<usize> {
        p.iter()
            .position(|e| &e.key == key && ok(e.expect) && now.duration_since(e.made) < PENDING_TTL)
    }

    /// LOOKUP of `key` must answer ENOENT: a new name whose guest create
    /// (or rename onto it) is pending.
    pub fn hides(&self, key: &Key) -> bool {
        if !self.any_pending() {
            return false;
        }
        let p = self.lock_pending();
        Self::find(&p, key, Instant::now(), |x| {
            matches!(x, Expect::Create(_) | Expect::RenameTo)
        })
        .is_some()
    }

    /// LOOKUP of `key` must answer a ghost: a gone name whose guest
    /// removal (or move) is pending: the ghost to make.
    pub fn gone(&self, key: &Key) -> Option<Ghost> {
        if !self.any_pending() {
            return None;
        }
        let p = self.lock_pending();
        let now = Instant::now();
        let i = Self::find(&p, key, now, |x| {
            matches!(x, Expect::Remove { .. } | Expect::RenameFrom { .. })
        })?;
        match p[i].expect {
            Expect::Remove { dir } | Expect::RenameFrom { dir } => Some((dir, p[i].node.clone())),
            _ => None,
        }
    }

    /// Consumes the expectation `expect` of `key`: true if it was pending
    /// (the server then answers success without a host operation).
    pub fn take(&self, key: &Key, expect: Expect) -> bool {
        self.take_node(key, expect).is_some()
    }

    /// [`Self::take`], returning the node recorded with the expectation.
    pub fn take_node(&self, key: &Key, expect: Expect) -> Option<Option<Key>> {
        if !self.any_pending() {
            return None;
        }
        let mut p = self.lock_pending();
        let i = Self::find(&p, key, Instant::now(), |x| x == expect)?;
        let e = p.remove(i);
        self.pending_len.store(p.len(), Ordering::Release);
        Some(e.node)
    }

    /// Consumes a pending rename `from` -> `to` (both sides, or neither).
    pub fn take_rename(&self, from: &Key, to: &Key) -> bool {
        if !self.any_pending() {
            return false;
        }
        let mut p = self.lock_pending();
        let now = Instant::now();
        let Some(i) = Self::find(&p, from, now, |x| matches!(x, Expect::RenameFrom { .. })) else {
            return false;
        };
        let seq = p[i].seq;
        let Some(j) = p
            .iter()
            .position(|e| &e.key == to && e.expect == Expect::RenameTo && e.seq == seq)
        else {
            return false;
        };
        let (a, b) = if i > j { (i, j) } else { (j, i) };
        p.remove(a);
        p.remove(b);
        self.pending_len.store(p.len(), Ordering::Release);
        true
    }

    /// Records a host change the server made for the guest.
    pub fn echo(&self, key: Key) {
        self.echo_at(key, Instant::now())
    }

    fn echo_at(&self, key: Key, now: Instant) {
        let mut e = self.echo.lock().unwrap_or_else(|p| p.into_inner());
        while e
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= ECHO_TTL)
        {
            e.pop_front();
        }
        if e.len() >= ECHO_MAX {
            e.pop_front();
        }
        e.push_back((now, key));
    }

    /// Whether a host event of `key` is the echo of a guest operation.
    pub fn is_echo(&self, key: &Key) -> bool {
        self.is_echo_at(key, Instant::now())
    }

    fn is_echo_at(&self, key: &Key, now: Instant) -> bool {
        let e = self.echo.lock().unwrap_or_else(|p| p.into_inner());
        e.iter()
            .any(|(t, k)| k == key && now.duration_since(*t) < ECHO_TTL)
    }

    /// A new ghost node id.
    pub fn new_ghost(&self, ghost: Ghost) -> u64 {
        let id = self.next_ghost.fetch_add(1, Ordering::Relaxed);
        let mut g = self.ghosts.lock().unwrap_or_else(|p| p.into_inner());
        // The guest forgets ghosts once it dropped their names; a guest
        // that never does cannot grow this past the bound.
        if g.len() >= PENDING_MAX {
            g.clear();
        }
        g.insert(id, ghost);
        id
    }

    /// The ghost of a node id, if it is one.
    pub fn ghost(&self, id: u64) -> Option<Ghost> {
        if id < GHOST_BASE {
            return None;
        }
        let g = self.ghosts.lock().unwrap_or_else(|p| p.into_inner());
        g.get(&id).cloned()
    }

    /// The guest forgot a ghost.
    pub fn forget_ghost(&self, id: u64) {
        let mut g = self.ghosts.lock().unwrap_or_else(|p| p.into_inner());
        g.remove(&id);
    }
}

/// One host change, relative to the share's root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A new file of this type (not a directory).
    Create(FileType),
    /// A new directory.
    Mkdir,
    /// A file removed.
    Delete,
    /// A directory removed.
    Rmdir,
    /// Moved to `to` (relative path); `dir`: a directory.
    Rename {
        /// The new path.
        to: Vec<u8>,
        /// Whether it is a directory.
        dir: bool,
    },
    /// Content written.
    Modify,
    /// Metadata (mode, owner, times, xattrs) changed.
    Attrib,
}

impl Change {
    /// The kind's name on the wire.
    pub fn wire(&self) -> &'static str {
        match self {
            Change::Create(_) => "create",
            Change::Mkdir => "mkdir",
            Change::Delete => "delete",
            Change::Rmdir => "rmdir",
            Change::Rename { .. } => "rename",
            Change::Modify => "modify",
            Change::Attrib => "attrib",
        }
    }
}

/// A change with the host keys its expectations need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostEvent {
    /// The path relative to the share root (bytes, no leading `/`).
    pub path: Vec<u8>,
    /// What happened.
    pub change: Change,
    /// Where the guest operation lands: the [`Key::Entry`] of the name
    /// (create, mkdir, delete, rmdir, rename source) or the [`Key::Node`]
    /// (modify, attrib).
    pub key: Key,
    /// A rename's target [`Key::Entry`].
    pub to_key: Option<Key>,
    /// The object's [`Key::Node`] when seen (creates and renames), for
    /// ghosts.
    pub node: Option<Key>,
}

impl HostEvent {
    /// The expectations the guest operation of this event must meet.
    pub fn expectations(&self) -> Vec<(Key, Expect)> {
        // (The node, if any, goes with each: see `ShareEvents::expect_node`.)
        let k = self.key.clone();
        match &self.change {
            Change::Create(t) => vec![(k, Expect::Create(*t))],
            Change::Mkdir => vec![(k, Expect::Create(FileType::Dir))],
            Change::Delete => vec![(k, Expect::Remove { dir: false })],
            Change::Rmdir => vec![(k, Expect::Remove { dir: true })],
            Change::Rename { dir, .. } => {
                let mut v = vec![(k, Expect::RenameFrom { dir: *dir })];
                if let Some(to) = &self.to_key {
                    v.push((to.clone(), Expect::RenameTo));
                }
                v
            }
            Change::Modify => vec![(k, Expect::Modify)],
            Change::Attrib => vec![(k, Expect::Attrib)],
        }
    }
}

/// Adds `ev` to the queue of unsent events, coalescing storms: a modify
/// (or attrib) of a path whose latest queued event is the same change of
/// the same path is dropped (the guest's one event stands for both).
/// Returns whether `ev` was queued.
pub fn push_coalesced<T>(queue: &mut VecDeque<(T, HostEvent)>, share: T, ev: HostEvent) -> bool
where
    T: PartialEq,
{
    if matches!(ev.change, Change::Modify | Change::Attrib) {
        let latest = queue.iter().rev().find(|(s, q)| {
            *s == share
                && (q.path == ev.path
                    || matches!(&q.change, Change::Rename { to, .. } if *to == ev.path))
        });
        if let Some((_, q)) = latest {
            if q.path == ev.path && q.change == ev.change {
                return false;
            }
        }
    }
    queue.push_back((share, ev));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dir: u64, name: &str) -> Key {
        Key::Entry {
            dev: 1,
            dir,
            name: name.as_bytes().to_vec(),
        }
    }

    #[test]
    fn create_hides_the_name_until_the_guest_mknod_takes_it() {
        let t = ShareEvents::new();
        assert!(!t.any_pending());
        t.expect(1, entry(5, "a"), Expect::Create(FileType::File));
        assert!(t.hides(&entry(5, "a")));
        assert!(!t.hides(&entry(5, "b")), "another name");
        assert!(!t.hides(&entry(6, "a")), "another directory");
        assert_eq!(t.gone(&entry(5, "a")), None);
        // The wrong operation or type does not consume it.
        assert!(!t.take(&entry(5, "a"), Expect::Create(FileType::Dir)));
        assert!(!t.take(&entry(5, "a"), Expect::Remove { dir: false }));
        assert!(t.take(&entry(5, "a"), Expect::Create(FileType::File)));
        assert!(!t.any_pending());
        assert!(!t.hides(&entry(5, "a")));
        // Consumed once: a second mknod is a real one.
        assert!(!t.take(&entry(5, "a"), Expect::Create(FileType::File)));
    }

    #[test]
    fn removals_show_a_ghost_until_taken() {
        let t = ShareEvents::new();
        t.expect(1, entry(5, "f"), Expect::Remove { dir: false });
        t.expect(2, entry(5, "d"), Expect::Remove { dir: true });
        assert_eq!(t.gone(&entry(5, "f")), Some((false, None)));
        assert_eq!(t.gone(&entry(5, "d")), Some((true, None)));
        assert!(!t.hides(&entry(5, "f")));
        assert!(!t.take(&entry(5, "f"), Expect::Remove { dir: true }));
        assert!(t.take(&entry(5, "f"), Expect::Remove { dir: false }));
        assert!(t.take(&entry(5, "d"), Expect::Remove { dir: true }));
        let node = Key::Node { dev: 1, ino: 77 };
        let g = t.new_ghost((true, Some(node.clone())));
        assert!(g >= GHOST_BASE);
        assert_eq!(t.ghost(g), Some((true, Some(node))));
        assert_eq!(t.ghost(3), None, "server node ids are never ghosts");
        t.forget_ghost(g);
        assert_eq!(t.ghost(g), None);
    }

    #[test]
    fn a_rename_is_taken_whole_or_not_at_all() {
        let t = ShareEvents::new();
        t.expect(7, entry(5, "a"), Expect::RenameFrom { dir: false });
        t.expect(7, entry(6, "b"), Expect::RenameTo);
        assert!(t.hides(&entry(6, "b")));
        assert_eq!(t.gone(&entry(5, "a")), Some((false, None)));
        // A rename to another target consumes nothing.
        assert!(!t.take_rename(&entry(5, "a"), &entry(6, "c")));
        assert!(t.any_pending());
        assert!(t.take_rename(&entry(5, "a"), &entry(6, "b")));
        assert!(!t.any_pending());
    }

    #[test]
    fn acks_and_age_drop_expectations_no_guest_operation_took() {
        let t = ShareEvents::new();
        let node = Key::Node { dev: 1, ino: 9 };
        t.expect(1, node.clone(), Expect::Modify);
        t.expect(2, node.clone(), Expect::Attrib);
        t.acked(1);
        assert!(!t.take(&node, Expect::Modify), "acked: gone");
        assert!(t.any_pending());
        // An expectation older than PENDING_TTL no longer counts.
        let now = Instant::now();
        t.expect_at(3, entry(1, "x"), Expect::Create(FileType::File), None, now);
        t.acked_at(2, now + PENDING_TTL);
        assert!(!t.any_pending());
    }

    #[test]
    fn echoes_expire() {
        let t = ShareEvents::new();
        let node = Key::Node { dev: 1, ino: 9 };
        let now = Instant::now();
        t.echo_at(node.clone(), now);
        assert!(t.is_echo_at(&node, now + Duration::from_millis(10)));
        // Not consumed by a match: one guest write may raise several
        // host events.
        assert!(t.is_echo_at(&node, now + Duration::from_millis(20)));
        assert!(!t.is_echo_at(&Key::Node { dev: 1, ino: 10 }, now));
        assert!(!t.is_echo_at(&node, now + ECHO_TTL));
        // Bounded.
        for i in 0..(ECHO_MAX as u64 + 10) {
            t.echo_at(Key::Node { dev: 2, ino: i }, now);
        }
        assert_eq!(t.echo.lock().unwrap().len(), ECHO_MAX);
    }

    fn ev(path: &str, change: Change) -> HostEvent {
        HostEvent {
            path: path.as_bytes().to_vec(),
            change,
            key: Key::Node { dev: 1, ino: 1 },
            to_key: None,
            node: None,
        }
    }

    #[test]
    fn storms_of_one_change_coalesce() {
        let mut q = VecDeque::new();
        assert!(push_coalesced(
            &mut q,
            0,
            ev("a", Change::Create(FileType::File))
        ));
        for _ in 0..100 {
            push_coalesced(&mut q, 0, ev("a", Change::Modify));
        }
        assert!(push_coalesced(&mut q, 0, ev("b", Change::Modify)));
        // A modify after another kind of event of the path is kept.
        assert!(push_coalesced(&mut q, 0, ev("a", Change::Attrib)));
        assert!(push_coalesced(&mut q, 0, ev("a", Change::Modify)));
        // Another share's path of the same name is another file.
        assert!(push_coalesced(&mut q, 1, ev("a", Change::Modify)));
        let kinds: Vec<_> = q
            .iter()
            .map(|(s, e)| {
                (
                    *s,
                    String::from_utf8(e.path.clone()).unwrap(),
                    e.change.wire(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                (0, "a".into(), "create"),
                (0, "a".into(), "modify"),
                (0, "b".into(), "modify"),
                (0, "a".into(), "attrib"),
                (0, "a".into(), "modify"),
                (1, "a".into(), "modify"),
            ]
        );
        // A path renamed onto in between is a new file: kept.
        let mut q = VecDeque::new();
        push_coalesced(&mut q, 0, ev("x", Change::Modify));
        push_coalesced(
            &mut q,
            0,
            ev(
                "y",
                Change::Rename {
                    to: b"x".to_vec(),
                    dir: false,
                },
            ),
        );
        assert!(push_coalesced(&mut q, 0, ev("x", Change::Modify)));
    }

    #[test]
    fn expectations_of_each_change() {
        let mut e = ev(
            "a",
            Change::Rename {
                to: b"b".to_vec(),
                dir: true,
            },
        );
        e.key = entry(1, "a");
        e.to_key = Some(entry(1, "b"));
        assert_eq!(
            e.expectations(),
            [
                (entry(1, "a"), Expect::RenameFrom { dir: true }),
                (entry(1, "b"), Expect::RenameTo)
            ]
        );
        assert_eq!(
            ev("a", Change::Mkdir).expectations()[0].1,
            Expect::Create(FileType::Dir)
        );
        assert_eq!(ev("a", Change::Modify).expectations()[0].1, Expect::Modify);
    }
}
