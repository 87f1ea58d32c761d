//! The host watcher of shared folders: one recursive `notify` watcher per
//! share turns host changes into [`HostEvent`]s, and one sender thread
//! streams them to the guest agent over vsock (the agent connects to host
//! port [`SHARE_EVENTS_PORT`]; the vsock muxer forwards that to the Unix
//! socket `<vsock-uds>_<port>`, which this module listens on).
//!
//! Wire format, VMM to agent: one JSON object a line,
//! `{"seq":N,"tag":"s0","kind":"create","type":"file","path":"a/b"}`
//! (`kind`: create, mkdir, delete, rmdir, rename (with `"to"`), modify,
//! attrib; `type` only for create; paths relative to the share root).
//! Agent to VMM: one `\n` per event applied, in order (the only bytes read
//! from the guest: everything else is ignored). At most [`WINDOW`] events
//! are unacknowledged; an event's expectations go when it is acknowledged
//! (see `events.rs`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notify::event::{CreateKind, EventKind, ModifyKind, RemoveKind, RenameMode};
use notify::{RecursiveMode, Watcher};

use super::events::{push_coalesced, Change, FileType, HostEvent, Key, ShareEvents};

/// The host vsock port the agent connects to for share events (the
/// agent's `share_events.rs` has the same number).
pub const SHARE_EVENTS_PORT: u32 = 1031;
/// Most events sent and not yet acknowledged by the agent.
pub const WINDOW: u64 = 64;
/// Most events queued for the agent; past it the oldest are dropped (and
/// counted on stderr).
const QUEUE_MAX: usize = 65_536;
/// Most entries of a new directory reported as created when it appears
/// (the recursive watch of a new directory starts only after its event,
/// so what was made in it before is found by reading it).
const SCAN_MAX: usize = 1024;
/// How long a create found by such a scan absorbs the create event of
/// the same path.
const SCAN_TTL: Duration = Duration::from_secs(2);

/// One watched share.
pub struct WatchedShare {
    /// The mount tag.
    pub tag: String,
    /// The host directory (canonical, as the server serves it).
    pub root: PathBuf,
    /// The server's tables.
    pub events: Arc<ShareEvents>,
}

enum Msg {
    Host(usize, HostEvent),
    Conn(u64, UnixStream),
    Acked(u64, u64),
    Closed(u64),
}

/// The `<vsock-uds>_<port>` path guest connections to `port` reach.
pub fn listen_path(vsock_uds: &Path) -> PathBuf {
    let mut p = vsock_uds.as_os_str().to_owned();
    p.push(format!("_{SHARE_EVENTS_PORT}"));
    PathBuf::from(p)
}

/// Starts watching `shares` and serving the agent on `listen` (a Unix
/// socket path, replaced if stale).
///
/// The recursive watches are set up on a thread of their own: walking a
/// large home folder takes a while, and the VM need not wait for it (events
/// before the agent connects are not sent anyway).
pub fn start(shares: Vec<WatchedShare>, listen: &Path) -> std::io::Result<()> {
    let (tx, rx) = channel();
    let mut setup = Vec::new();
    for (i, share) in shares.iter().enumerate() {
        share.events.set_watching();
        let translator = Mutex::new(Translator::new(share.root.clone(), share.events.clone()));
        let tx = tx.clone();
        let w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(ev) => {
                let mut t = translator.lock().unwrap_or_else(|p| p.into_inner());
                for h in t.translate(ev) {
                    let _ = tx.send(Msg::Host(i, h));
                }
            }
            Err(e) => log::warn!("share watcher: {e}"),
        })
        .map_err(std::io::Error::other)?;
        setup.push((w, share.root.clone()));
    }
    std::thread::Builder::new()
        .name("berth-fswatch-setup".into())
        .spawn(move || {
            let mut watchers = Vec::new();
            for (mut w, root) in setup {
                // A partial watch (e.g. past fs.inotify.max_user_watches)
                // still reports what it covers.
                if let Err(e) = w.watch(&root, RecursiveMode::Recursive) {
                    log::warn!("share events of {}: {e}", root.display());
                }
                watchers.push(w);
            }
            // The watchers live as long as the process.
            loop {
                std::thread::park();
            }
        })?;
    let _ = std::fs::remove_file(listen);
    let listener = UnixListener::bind(listen)?;
    let accept_tx = tx.clone();
    std::thread::Builder::new()
        .name("berth-fswatch-accept".into())
        .spawn(move || accept_loop(listener, accept_tx))?;
    drop(tx);
    std::thread::Builder::new()
        .name("berth-fswatch".into())
        .spawn(move || send_loop(shares, rx))?;
    Ok(())
}

fn accept_loop(listener: UnixListener, tx: Sender<Msg>) {
    let mut id = 0u64;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        id += 1;
        let Ok(reader) = stream.try_clone() else {
            continue;
        };
        if tx.send(Msg::Conn(id, stream)).is_err() {
            return;
        }
        let tx = tx.clone();
        let conn = id;
        let _ = std::thread::Builder::new()
            .name("berth-fswatch-acks".into())
            .spawn(move || ack_loop(conn, reader, tx));
    }
}

/// Counts the agent's acknowledgements (newlines); every other byte the
/// guest sends is ignored.
fn ack_loop(conn: u64, mut s: UnixStream, tx: Sender<Msg>) {
    let mut buf = [0u8; 512];
    let mut acked = 0u64;
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = tx.send(Msg::Closed(conn));
                return;
            }
            Ok(n) => {
                acked += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
                if tx.send(Msg::Acked(conn, acked)).is_err() {
                    return;
                }
            }
        }
    }
}

/// One event as the agent reads it (`None`: a path that is not UTF-8,
/// which the line format cannot carry; such events are not sent).
fn wire(seq: u64, tag: &str, ev: &HostEvent) -> Option<String> {
    let path = std::str::from_utf8(&ev.path).ok()?;
    let mut v = serde_json::json!({
        "seq": seq,
        "tag": tag,
        "kind": ev.change.wire(),
        "path": path,
    });
    match &ev.change {
        Change::Create(t) => v["type"] = t.wire().into(),
        Change::Rename { to, .. } => v["to"] = std::str::from_utf8(to).ok()?.into(),
        _ => {}
    }
    let mut line = v.to_string();
    line.push('\n');
    Some(line)
}

fn send_loop(shares: Vec<WatchedShare>, rx: Receiver<Msg>) {
    let mut queue: VecDeque<(usize, HostEvent)> = VecDeque::new();
    let mut conn: Option<(u64, UnixStream)> = None;
    let (mut sent, mut acked) = (0u64, 0u64);
    let mut dropped = 0u64;
    let clear = |shares: &[WatchedShare]| {
        for s in shares {
            s.events.acked(u64::MAX);
        }
    };
    loop {
        let first = match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut msgs: Vec<Msg> = first.into_iter().collect();
        while let Ok(m) = rx.try_recv() {
            msgs.push(m);
        }
        for m in msgs {
            match m {
                Msg::Host(i, ev) => {
                    // Nobody in the guest to tell yet: it reads the share
                    // as it is when it connects.
                    if conn.is_none() {
                        continue;
                    }
                    push_coalesced(&mut queue, i, ev);
                    if queue.len() > QUEUE_MAX {
                        queue.pop_front();
                        dropped += 1;
                    }
                }
                Msg::Conn(id, s) => {
                    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
                    conn = Some((id, s));
                    queue.clear();
                    (sent, acked) = (0, 0);
                    clear(&shares);
                }
                Msg::Acked(id, n) => {
                    if conn.as_ref().is_some_and(|(c, _)| *c == id) {
                        acked = n.min(sent);
                        for s in &shares {
                            s.events.acked(acked);
                        }
                    }
                }
                Msg::Closed(id) => {
                    if conn.as_ref().is_some_and(|(c, _)| *c == id) {
                        conn = None;
                        queue.clear();
                        clear(&shares);
                    }
                }
            }
        }
        if dropped > 0 {
            log::warn!("share events: {dropped} dropped (the guest did not keep up)");
            dropped = 0;
        }
        let Some((_, stream)) = conn.as_mut() else {
            continue;
        };
        let mut failed = false;
        while sent - acked < WINDOW {
            let Some((i, ev)) = queue.pop_front() else {
                break;
            };
            let Some(line) = wire(sent + 1, &shares[i].tag, &ev) else {
                continue;
            };
            sent += 1;
            for (k, x) in ev.expectations() {
                shares[i].events.expect_node(sent, k, x, ev.node.clone());
            }
            if stream.write_all(line.as_bytes()).is_err() {
                failed = true;
                break;
            }
        }
        if failed {
            conn = None;
            queue.clear();
            clear(&shares);
        }
    }
}

/// Turns `notify` events of one share into [`HostEvent`]s: paths made
/// relative, host keys read at once (the state may change again soon),
/// the server's own changes (echoes) dropped, a rename's halves joined.
pub struct Translator {
    root: PathBuf,
    events: Arc<ShareEvents>,
    /// A rename source waiting for its target: (tracker, path, key).
    from: Option<(usize, PathBuf, Key)>,
    /// Paths removed since they were last created (one removal may be
    /// reported twice: a directory's own watch and its parent's).
    removed: HashSet<PathBuf>,
    /// Creates reported by scanning a new directory.
    scanned: HashMap<PathBuf, Instant>,
}

fn lstat(p: &Path) -> Option<std::fs::Metadata> {
    std::fs::symlink_metadata(p).ok()
}

fn node_key(m: &std::fs::Metadata) -> Key {
    Key::Node {
        dev: m.dev(),
        ino: m.ino(),
    }
}

fn file_type(m: &std::fs::Metadata) -> Option<FileType> {
    FileType::of_mode(m.mode())
}

impl Translator {
    /// A translator for the share served from `root`.
    pub fn new(root: PathBuf, events: Arc<ShareEvents>) -> Translator {
        Translator {
            root,
            events,
            from: None,
            removed: HashSet::new(),
            scanned: HashMap::new(),
        }
    }

    fn rel(&self, p: &Path) -> Option<Vec<u8>> {
        let r = p.strip_prefix(&self.root).ok()?;
        let b = r.as_os_str().as_bytes();
        (!b.is_empty()).then(|| b.to_vec())
    }

    /// The [`Key::Entry`] of `p` (its parent must exist).
    fn entry_key(&self, p: &Path) -> Option<Key> {
        let parent = lstat(p.parent()?)?;
        Some(Key::Entry {
            dev: parent.dev(),
            dir: parent.ino(),
            name: p.file_name()?.as_bytes().to_vec(),
        })
    }

    fn event(&self, p: &Path, change: Change, key: Key) -> Option<HostEvent> {
        Some(HostEvent {
            path: self.rel(p)?,
            change,
            key,
            to_key: None,
            node: None,
        })
    }

    fn flush_from(&mut self, out: &mut Vec<HostEvent>) {
        // A rename source without a target in the share: moved out, so
        // gone for the guest (reported as a file's removal: whether it was
        // a directory is no longer known).
        if let Some((_, p, key)) = self.from.take() {
            if !self.events.is_echo(&key) {
                out.extend(self.event(&p, Change::Delete, key));
            }
        }
    }

    /// `dir_hint`: what `notify` said the new object is, for when it is
    /// already gone again (the guest then gets a ghost of that type).
    fn created(&mut self, p: &Path, dir_hint: bool, out: &mut Vec<HostEvent>) {
        self.removed.remove(p);
        let now = Instant::now();
        self.scanned
            .retain(|_, t| now.duration_since(*t) < SCAN_TTL);
        if self.scanned.remove(p).is_some() {
            return;
        }
        let m = lstat(p);
        let t = match &m {
            Some(m) => match file_type(m) {
                Some(t) => t,
                None => return,
            },
            None if dir_hint => FileType::Dir,
            None => FileType::File,
        };
        let Some(key) = self.entry_key(p) else { return };
        if self.events.is_echo(&key) {
            return;
        }
        let change = if t == FileType::Dir {
            Change::Mkdir
        } else {
            Change::Create(t)
        };
        if let Some(mut e) = self.event(p, change, key) {
            e.node = m.as_ref().map(node_key);
            out.push(e);
        }
        if t == FileType::Dir && m.is_some() {
            let mut budget = SCAN_MAX;
            self.scan(p, out, &mut budget);
        }
    }

    /// Reports what a new directory already holds (depth first).
    fn scan(&mut self, dir: &Path, out: &mut Vec<HostEvent>, budget: &mut usize) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        let mut names: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        names.sort();
        for p in names {
            if *budget == 0 {
                return;
            }
            *budget -= 1;
            let Some(m) = lstat(&p) else { continue };
            let Some(t) = file_type(&m) else { continue };
            let Some(key) = self.entry_key(&p) else {
                continue;
            };
            let change = if t == FileType::Dir {
                Change::Mkdir
            } else {
                Change::Create(t)
            };
            if let Some(mut e) = self.event(&p, change, key) {
                e.node = Some(node_key(&m));
                out.push(e);
            }
            self.scanned.insert(p.clone(), Instant::now());
            if t == FileType::Dir {
                self.scan(&p, out, budget);
            }
        }
    }

    /// The events of one `notify` event.
    pub fn translate(&mut self, ev: notify::Event) -> Vec<HostEvent> {
        let mut out = Vec::new();
        let first = ev.paths.first().cloned();
        match ev.kind {
            EventKind::Modify(ModifyKind::Name(RenameMode::From)) => {
                let Some(p) = first else { return out };
                // MOVE_SELF of a watched directory has no tracker: its
                // parent's MOVED_FROM tells the rename.
                let Some(t) = ev.attrs.tracker() else {
                    return out;
                };
                self.flush_from(&mut out);
                if let Some(key) = self.entry_key(&p) {
                    self.from = Some((t, p, key));
                }
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
                let Some(p) = first else { return out };
                let paired = self
                    .from
                    .as_ref()
                    .is_some_and(|(t, _, _)| Some(*t) == ev.attrs.tracker());
                if !paired {
                    // Moved in from outside the share: new for the guest.
                    self.flush_from(&mut out);
                    let dir = lstat(&p).is_some_and(|m| m.is_dir());
                    self.created(&p, dir, &mut out);
                }
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
                let (Some((_, from, key)), Some(to)) = (self.from.take(), ev.paths.get(1)) else {
                    return out;
                };
                self.removed.remove(to);
                let Some(to_key) = self.entry_key(to) else {
                    return out;
                };
                if self.events.is_echo(&to_key) || self.events.is_echo(&key) {
                    return out;
                }
                let m = lstat(to);
                let dir = m.as_ref().is_some_and(|m| m.is_dir());
                if let (Some(path), Some(to_rel)) = (self.rel(&from), self.rel(to)) {
                    out.push(HostEvent {
                        path,
                        change: Change::Rename { to: to_rel, dir },
                        key,
                        to_key: Some(to_key),
                        node: m.as_ref().map(node_key),
                    });
                }
            }
            EventKind::Create(kind) => {
                self.flush_from(&mut out);
                if let Some(p) = first {
                    self.created(&p, kind == CreateKind::Folder, &mut out);
                }
            }
            EventKind::Remove(kind) => {
                self.flush_from(&mut out);
                let Some(p) = first else { return out };
                let change = match kind {
                    RemoveKind::File => Change::Delete,
                    RemoveKind::Folder => Change::Rmdir,
                    _ => return out,
                };
                if !self.removed.insert(p.clone()) {
                    return out;
                }
                if self.removed.len() > 4096 {
                    self.removed.clear();
                    self.removed.insert(p.clone());
                }
                let Some(key) = self.entry_key(&p) else {
                    return out;
                };
                if !self.events.is_echo(&key) {
                    out.extend(self.event(&p, change, key));
                }
            }
            EventKind::Modify(ModifyKind::Data(_)) | EventKind::Modify(ModifyKind::Metadata(_)) => {
                self.flush_from(&mut out);
                let Some(p) = first else { return out };
                let Some(m) = lstat(&p) else { return out };
                let change = if matches!(ev.kind, EventKind::Modify(ModifyKind::Data(_))) {
                    if !m.is_file() {
                        return out;
                    }
                    Change::Modify
                } else {
                    Change::Attrib
                };
                let key = node_key(&m);
                if !self.events.is_echo(&key) {
                    out.extend(self.event(&p, change, key));
                }
            }
            EventKind::Other if ev.need_rescan() => {
                log::warn!(
                    "share watcher of {}: host events were lost (inotify queue overflow)",
                    self.root.display()
                );
            }
            _ => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{DataChange, MetadataKind};

    fn ev(kind: EventKind, paths: &[&Path]) -> notify::Event {
        let mut e = notify::Event::new(kind);
        for p in paths {
            e = e.add_path(p.to_path_buf());
        }
        e
    }

    fn summary(v: &[HostEvent]) -> Vec<(String, &'static str)> {
        v.iter()
            .map(|e| (String::from_utf8(e.path.clone()).unwrap(), e.change.wire()))
            .collect()
    }

    #[test]
    fn translates_each_kind_and_joins_renames() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let events = Arc::new(ShareEvents::new());
        let mut t = Translator::new(root.clone(), events.clone());
        let a = root.join("a");
        std::fs::write(&a, b"x").unwrap();
        let got = t.translate(ev(EventKind::Create(CreateKind::File), &[&a]));
        assert_eq!(summary(&got), [("a".into(), "create")]);
        assert_eq!(got[0].change, Change::Create(FileType::File));
        let got = t.translate(ev(
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            &[&a],
        ));
        assert_eq!(summary(&got), [("a".into(), "modify")]);
        let got = t.translate(ev(
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
            &[&a],
        ));
        assert_eq!(summary(&got), [("a".into(), "attrib")]);
        // A rename: From (tracker), To (same tracker), Both.
        let b = root.join("b");
        std::fs::rename(&a, &b).unwrap();
        let from = ev(EventKind::Modify(ModifyKind::Name(RenameMode::From)), &[&a]).set_tracker(7);
        let to = ev(EventKind::Modify(ModifyKind::Name(RenameMode::To)), &[&b]).set_tracker(7);
        let both = ev(
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
            &[&a, &b],
        )
        .set_tracker(7);
        assert!(t.translate(from).is_empty());
        assert!(t.translate(to).is_empty());
        let got = t.translate(both);
        assert_eq!(summary(&got), [("a".into(), "rename")]);
        assert_eq!(
            got[0].change,
            Change::Rename {
                to: b"b".to_vec(),
                dir: false
            }
        );
        // A removal reported twice counts once.
        std::fs::remove_file(&b).unwrap();
        let rm = ev(EventKind::Remove(RemoveKind::File), &[&b]);
        assert_eq!(summary(&t.translate(rm.clone())), [("b".into(), "delete")]);
        assert!(t.translate(rm).is_empty());
        // A rename source with no target in the share: a removal.
        let c = root.join("c");
        std::fs::write(&c, b"").unwrap();
        t.translate(ev(EventKind::Create(CreateKind::File), &[&c]));
        std::fs::remove_file(&c).unwrap();
        let from = ev(EventKind::Modify(ModifyKind::Name(RenameMode::From)), &[&c]).set_tracker(9);
        assert!(t.translate(from).is_empty());
        let d = root.join("d");
        std::fs::create_dir(&d).unwrap();
        let got = t.translate(ev(EventKind::Create(CreateKind::Folder), &[&d]));
        assert_eq!(
            summary(&got),
            [("c".into(), "delete"), ("d".into(), "mkdir")]
        );
        // The share root itself has no relative path: nothing to tell.
        assert!(t
            .translate(ev(
                EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
                &[&root]
            ))
            .is_empty());
    }

    #[test]
    fn a_new_directory_reports_what_it_holds_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let mut t = Translator::new(root.clone(), Arc::new(ShareEvents::new()));
        std::fs::create_dir_all(root.join("n/m")).unwrap();
        std::fs::write(root.join("n/m/f"), b"").unwrap();
        let got = t.translate(ev(
            EventKind::Create(CreateKind::Folder),
            &[&root.join("n")],
        ));
        assert_eq!(
            summary(&got),
            [
                ("n".into(), "mkdir"),
                ("n/m".into(), "mkdir"),
                ("n/m/f".into(), "create")
            ]
        );
        // The watch of n/m then reports f's create: already told.
        let got = t.translate(ev(
            EventKind::Create(CreateKind::File),
            &[&root.join("n/m/f")],
        ));
        assert!(got.is_empty());
    }

    #[test]
    fn the_servers_own_changes_are_not_reported() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let events = Arc::new(ShareEvents::new());
        let mut t = Translator::new(root.clone(), events.clone());
        let f = root.join("f");
        std::fs::write(&f, b"").unwrap();
        let m = std::fs::metadata(&f).unwrap();
        let rm = std::fs::metadata(&root).unwrap();
        events.echo(Key::Entry {
            dev: rm.dev(),
            dir: rm.ino(),
            name: b"f".to_vec(),
        });
        events.echo(Key::Node {
            dev: m.dev(),
            ino: m.ino(),
        });
        assert!(t
            .translate(ev(EventKind::Create(CreateKind::File), &[&f]))
            .is_empty());
        assert!(t
            .translate(ev(
                EventKind::Modify(ModifyKind::Data(DataChange::Any)),
                &[&f]
            ))
            .is_empty());
        // Another file is reported.
        let g = root.join("g");
        std::fs::write(&g, b"").unwrap();
        assert_eq!(
            t.translate(ev(EventKind::Create(CreateKind::File), &[&g]))
                .len(),
            1
        );
    }

    #[test]
    fn wire_lines() {
        let e = HostEvent {
            path: b"a/b".to_vec(),
            change: Change::Rename {
                to: b"c\"d".to_vec(),
                dir: false,
            },
            key: Key::Node { dev: 0, ino: 0 },
            to_key: None,
            node: None,
        };
        let line = wire(3, "s0", &e).unwrap();
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["seq"], 3);
        assert_eq!(v["kind"], "rename");
        assert_eq!(v["to"], "c\"d");
        let bad = HostEvent {
            path: vec![0xff],
            ..e
        };
        assert!(wire(1, "s0", &bad).is_none());
    }
}

#[cfg(test)]
mod stream_tests {
    use super::*;
    use std::io::BufRead;

    /// The next event line's (kind, path), or `None` after 300 ms.
    fn next(r: &mut std::io::BufReader<UnixStream>) -> Option<(String, String)> {
        next_within(r, Duration::from_millis(300))
    }

    /// The next event line's (kind, path), or `None` after `wait` (an
    /// expected event gets long: the machine may be loaded).
    fn next_within(
        r: &mut std::io::BufReader<UnixStream>,
        wait: Duration,
    ) -> Option<(String, String)> {
        r.get_ref().set_read_timeout(Some(wait)).ok()?;
        let mut line = String::new();
        r.read_line(&mut line).ok()?;
        let v: serde_json::Value = serde_json::from_str(&line).ok()?;
        Some((
            v["kind"].as_str()?.to_string(),
            v["path"].as_str()?.to_string(),
        ))
    }

    #[test]
    fn host_changes_stream_to_the_agent_with_expectations_until_acked() {
        let share = tempfile::tempdir().unwrap();
        let sockdir = tempfile::tempdir().unwrap();
        let root = share.path().canonicalize().unwrap();
        let events = Arc::new(ShareEvents::new());
        let listen = listen_path(&sockdir.path().join("v.sock"));
        assert!(listen.ends_with("v.sock_1031"));
        start(
            vec![WatchedShare {
                tag: "s0".into(),
                root: root.clone(),
                events: events.clone(),
            }],
            &listen,
        )
        .unwrap();
        let agent = UnixStream::connect(&listen).unwrap();
        agent
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut acks = agent.try_clone().unwrap();
        let mut r = std::io::BufReader::new(agent);
        // The watches are set up on their own thread: poke until one shows.
        let mut k = 0;
        loop {
            std::fs::write(root.join(format!("poke{k}")), b"").unwrap();
            k += 1;
            if next(&mut r).is_some() {
                break;
            }
            assert!(k < 100, "no event after {k} pokes");
        }
        while next(&mut r).is_some() {}
        let mut seen = Vec::new();
        let mut step = |op: &dyn Fn(), want: &[(&str, &str)]| {
            op();
            for _ in want {
                seen.push(next_within(&mut r, Duration::from_secs(30)).expect("an event"));
            }
        };
        step(
            &|| std::fs::create_dir(root.join("d")).unwrap(),
            &[("mkdir", "d")],
        );
        step(
            &|| std::fs::write(root.join("f"), b"x").unwrap(),
            &[("create", "f"), ("modify", "f")],
        );
        step(
            &|| std::fs::rename(root.join("f"), root.join("d/g")).unwrap(),
            &[("rename", "f")],
        );
        step(
            &|| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(root.join("d/g"), std::fs::Permissions::from_mode(0o600))
                    .unwrap()
            },
            &[("attrib", "d/g")],
        );
        step(
            &|| std::fs::remove_file(root.join("d/g")).unwrap(),
            &[("delete", "d/g")],
        );
        step(
            &|| std::fs::remove_dir(root.join("d")).unwrap(),
            &[("rmdir", "d")],
        );
        let want = [
            ("mkdir", "d"),
            ("create", "f"),
            ("modify", "f"),
            ("rename", "f"),
            ("attrib", "d/g"),
            ("delete", "d/g"),
            ("rmdir", "d"),
        ];
        let seen: Vec<(&str, &str)> = seen.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(seen, want);
        assert!(next(&mut r).is_none(), "no duplicates");
        // Nothing acknowledged yet: the expectations wait for the guest.
        assert!(events.any_pending());
        // The agent acknowledges every event: they go.
        acks.write_all(&vec![b'\n'; 2 * k + 20]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while events.any_pending() {
            assert!(Instant::now() < deadline, "expectations not dropped on ack");
            std::thread::sleep(Duration::from_millis(10));
        }
        // A change the server made for the guest is not sent.
        let rm = std::fs::metadata(&root).unwrap();
        events.echo(Key::Entry {
            dev: rm.dev(),
            dir: rm.ino(),
            name: b"mine".to_vec(),
        });
        std::fs::write(root.join("mine"), b"").unwrap();
        std::fs::write(root.join("theirs"), b"").unwrap();
        assert_eq!(
            next_within(&mut r, Duration::from_secs(30)),
            Some(("create".into(), "theirs".into()))
        );
    }
}
