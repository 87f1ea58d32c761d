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
//! Agent to VMM, one line at a time: an empty line (`\n`) per event
//! applied, in order, and a watch line
//! `{"watch":[{"tag":"s0","path":"proj/src"}]}` whenever the set of
//! share-relative folders its running containers bind-mount changes
//! (checked: [`parse_watch`]). Only those folders are watched on the host.
//! At most [`WINDOW`] events are unacknowledged; an event's expectations
//! go when it is acknowledged (see `events.rs`).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
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
/// Most paths remembered as told to the guest under new directories that
/// wait to be read again (past it, the reading again is given up).
const TOLD_MAX: usize = 65_536;
/// How often a watched folder that is missing (removed, moved away, or
/// not there when asked for) is looked for again.
const RETRY: Duration = Duration::from_secs(1);

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

/// Starts serving the agent on `listen` (a Unix socket path, replaced if
/// stale) and watching the parts of `shares` the agent asks for.
///
/// Nothing is watched until the agent sends a watch line (the folders its
/// running containers bind-mount): host changes elsewhere in a share cost
/// nothing. The watches are set up on a thread of their own (walking a
/// large folder takes a while), which also creates the `notify` watchers,
/// so their inotify thread inherits that thread's confinement.
pub fn start(shares: Vec<WatchedShare>, listen: &Path) -> std::io::Result<()> {
    let (tx, rx) = channel();
    let (watch_tx, watch_rx) = channel();
    let sent = Arc::new(AtomicU64::new(0));
    let mut roots = Vec::new();
    for share in &shares {
        share.events.set_watching();
        roots.push((share.tag.clone(), share.root.clone(), share.events.clone()));
    }
    let tags: Arc<Vec<String>> = Arc::new(shares.iter().map(|s| s.tag.clone()).collect());
    let watch_events = tx.clone();
    let watch_sent = sent.clone();
    let checks = watch_tx.clone();
    std::thread::Builder::new()
        .name("berth-fswatch-watch".into())
        .spawn(move || watch_loop(roots, watch_events, watch_rx, checks, watch_sent))?;
    let _ = std::fs::remove_file(listen);
    let listener = UnixListener::bind(listen)?;
    let accept_tx = tx.clone();
    std::thread::Builder::new()
        .name("berth-fswatch-accept".into())
        .spawn(move || accept_loop(listener, accept_tx, watch_tx, tags))?;
    drop(tx);
    std::thread::Builder::new()
        .name("berth-fswatch".into())
        .spawn(move || send_loop(shares, rx, sent))?;
    Ok(())
}

/// Most bytes of one line from the agent.
pub const WATCH_LINE_MAX: usize = 64 * 1024;
/// Most folders in one watch line.
pub const WATCH_MAX: usize = 256;
/// Longest share-relative path in a watch line.
pub const WATCH_PATH_MAX: usize = 4096;
/// Refused agent lines logged (the rest are counted silently).
const REFUSED_LOG_MAX: u64 = 20;

/// Why a watch line from the agent was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WatchLineError {
    /// Longer than [`WATCH_LINE_MAX`].
    #[error("line longer than {WATCH_LINE_MAX} bytes")]
    TooLong,
    /// Not the expected JSON object.
    #[error("not a watch line: {0}")]
    Json(String),
    /// More than [`WATCH_MAX`] folders.
    #[error("{0} folders (at most {WATCH_MAX})")]
    TooMany(usize),
    /// A tag of no watched share.
    #[error("unknown share tag {0:?}")]
    UnknownTag(String),
    /// Not a plain relative path.
    #[error("path {0:?} is not a plain relative path")]
    BadPath(String),
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WatchLine {
    watch: Vec<WatchEntry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WatchEntry {
    tag: String,
    path: String,
}

/// Whether `p` is a plain relative path: `""` (the share's root) or
/// `/`-separated names, none empty, `.` or `..`, no NUL, bounded length.
fn plain_relative(p: &str) -> bool {
    p.len() <= WATCH_PATH_MAX
        && !p.contains('\0')
        && (p.is_empty() || p.split('/').all(|c| !c.is_empty() && c != "." && c != ".."))
}

/// Parses the agent's watch line (without its `\n`):
/// `{"watch":[{"tag":"s0","path":"proj/src"},…]}`, the share-relative
/// folders its running containers bind-mount (`""`: the whole share).
/// Returns (index in `tags`, path) pairs, without duplicates. The line is
/// guest input: its length, count, tags and paths are checked.
pub fn parse_watch(line: &[u8], tags: &[String]) -> Result<Vec<(usize, PathBuf)>, WatchLineError> {
    if line.len() > WATCH_LINE_MAX {
        return Err(WatchLineError::TooLong);
    }
    let w: WatchLine =
        serde_json::from_slice(line).map_err(|e| WatchLineError::Json(e.to_string()))?;
    if w.watch.len() > WATCH_MAX {
        return Err(WatchLineError::TooMany(w.watch.len()));
    }
    let mut out = Vec::new();
    for e in w.watch {
        let Some(i) = tags.iter().position(|t| *t == e.tag) else {
            return Err(WatchLineError::UnknownTag(e.tag));
        };
        if !plain_relative(&e.path) {
            return Err(WatchLineError::BadPath(e.path));
        }
        let p = (i, PathBuf::from(e.path));
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// The folders to watch per share: of nested ones, only the outermost
/// (a recursive watch covers the rest).
fn cover(n: usize, set: &[(usize, PathBuf)]) -> Vec<BTreeSet<PathBuf>> {
    let mut out = vec![BTreeSet::new(); n];
    for (i, p) in set {
        if *i >= n {
            continue;
        }
        let covered = set
            .iter()
            .any(|(j, q)| j == i && q != p && p.starts_with(q));
        if !covered {
            out[*i].insert(p.clone());
        }
    }
    out
}

/// `root` joined with a share-relative folder (`""`: `root` itself).
fn full_path(root: &Path, rel: &Path) -> PathBuf {
    if rel.as_os_str().is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
}

/// Confines the calling watcher thread as a [`crate::confine::ThreadKind::Watch`]
/// thread (x86_64 VMMs that enabled confinement; nothing otherwise). The
/// threads it spawns afterwards inherit the filter.
fn confine_watch_thread() {
    #[cfg(target_arch = "x86_64")]
    {
        crate::confine::confine_or_exit(crate::confine::ThreadKind::Watch);
        #[cfg(feature = "test-hooks")]
        crate::confine::test_hook_forbidden_syscall(crate::confine::ThreadKind::Watch);
    }
}

/// What the watch thread acts on.
enum WatchMsg {
    /// A watch request: the agent connection it came from, and its
    /// folders.
    Set(u64, Vec<(usize, PathBuf)>),
    /// A translator has new directories to read again once their watch
    /// is in place, or watched folders that went away.
    Check,
}

fn lock(t: &Mutex<Translator>) -> std::sync::MutexGuard<'_, Translator> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether `p` is a real directory: no component a symbolic link (the
/// guest can make those).
fn real_dir(p: &Path) -> bool {
    std::fs::canonicalize(p).is_ok_and(|c| c == p) && lstat(p).is_some_and(|m| m.is_dir())
}

/// Owns the `notify` watchers and keeps their watches on the folders the
/// newest agent connection asked for: again when one is removed (or moved
/// away) and made again. Reads new directories again once their watch is
/// in place.
///
/// Never holds a translator's lock while it calls the watcher: `notify`
/// answers on the thread that runs the handler, which takes that lock.
fn watch_loop(
    shares: Vec<(String, PathBuf, Arc<ShareEvents>)>,
    tx: Sender<Msg>,
    rx: Receiver<WatchMsg>,
    checks: Sender<WatchMsg>,
    sent: Arc<AtomicU64>,
) {
    // Before the watchers exist: notify's inotify thread inherits this.
    confine_watch_thread();
    let mut watchers = Vec::new();
    let mut translators = Vec::new();
    for (i, (_, root, events)) in shares.iter().enumerate() {
        let translator = Arc::new(Mutex::new(Translator::new(root.clone(), events.clone())));
        translators.push(translator.clone());
        let tx = tx.clone();
        let checks = checks.clone();
        let handler = move |res: notify::Result<notify::Event>| match res {
            Ok(ev) => {
                let mut t = lock(&translator);
                for h in t.translate(ev) {
                    let _ = tx.send(Msg::Host(i, h));
                }
                if t.take_wake() {
                    let _ = checks.send(WatchMsg::Check);
                }
            }
            Err(e) => log::warn!("share watcher: {e}"),
        };
        // Symbolic links are not followed: a link in a share may point
        // anywhere on the host.
        let config = notify::Config::default().with_follow_symlinks(false);
        match notify::RecommendedWatcher::new(handler, config) {
            Ok(w) => watchers.push(Some(w)),
            Err(e) => {
                log::warn!("share events of {}: {e}", root.display());
                watchers.push(None);
            }
        }
    }
    drop(checks);
    let n = shares.len();
    // The folders asked for (outermost only), those watched now, and
    // those to look for again (missing or gone since: logged once).
    let mut want: Vec<BTreeSet<PathBuf>> = vec![BTreeSet::new(); n];
    let mut current: Vec<BTreeSet<PathBuf>> = vec![BTreeSet::new(); n];
    let mut retry: Vec<BTreeSet<PathBuf>> = vec![BTreeSet::new(); n];
    let mut latest = 0u64;
    loop {
        // While an asked-for folder is not watched, look again now and
        // then; otherwise sleep until told.
        let missing = (0..n).any(|i| watchers[i].is_some() && want[i] != current[i]);
        let first = if missing {
            match rx.recv_timeout(RETRY) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        } else {
            match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => return,
            }
        };
        let mut next = None;
        for m in first.into_iter().chain(rx.try_iter()) {
            // A closed connection clears its set; an older one is ignored.
            // A check needs nothing more: every share is checked below.
            if let WatchMsg::Set(conn, set) = m {
                if conn >= latest {
                    latest = conn;
                    next = Some(set);
                }
            }
        }
        let mut changed = false;
        if let Some(set) = next {
            want = cover(n, &set);
            changed = true;
            for (i, (_, root, _)) in shares.iter().enumerate() {
                if let Some(w) = watchers[i].as_mut() {
                    for p in current[i].difference(&want[i]) {
                        let _ = w.unwatch(&full_path(root, p));
                    }
                }
                current[i] = current[i].intersection(&want[i]).cloned().collect();
                retry[i].retain(|p| want[i].contains(p));
            }
        }
        for (i, (_, root, _)) in shares.iter().enumerate() {
            let Some(w) = watchers[i].as_mut() else {
                continue;
            };
            let t = &translators[i];
            // Watched folders that went away: removed, or moved (notify
            // would go on reporting a moved one under its old path).
            let lost = lock(t).take_lost();
            for full in lost {
                let Ok(rel) = full.strip_prefix(root) else {
                    continue;
                };
                if current[i].remove(rel) {
                    let _ = w.unwatch(&full);
                    retry[i].insert(rel.to_path_buf());
                    changed = true;
                }
            }
            let full_of = |set: &BTreeSet<PathBuf>| -> Vec<PathBuf> {
                set.iter().map(|p| full_path(root, p)).collect()
            };
            // Until it is watched again, the translator drops what is
            // reported under an asked-for folder: reading it when the
            // watch is in place tells the guest its state.
            lock(t).set_roots(full_of(&current[i]), full_of(&want[i]));
            for p in want[i].difference(&current[i]).cloned().collect::<Vec<_>>() {
                let full = full_path(root, &p);
                let again = retry[i].contains(&p);
                // Only a real folder of the share.
                if !real_dir(&full) {
                    if retry[i].insert(p) {
                        log::warn!(
                            "share events: not watching {} (yet): missing or behind a symbolic link",
                            full.display()
                        );
                    }
                    continue;
                }
                match w.watch(&full, RecursiveMode::Recursive) {
                    // A partial watch (e.g. past fs.inotify.max_user_watches)
                    // still reports what it covers.
                    Err(e) => {
                        if retry[i].insert(p) {
                            log::warn!("share events of {}: {e}", full.display());
                        }
                    }
                    Ok(()) => {
                        // A folder made again (or late) is new to the
                        // guest: reported as made, with what it holds.
                        let mut g = lock(t);
                        for h in g.watched_again(&full, again) {
                            let _ = tx.send(Msg::Host(i, h));
                        }
                        drop(g);
                        current[i].insert(p.clone());
                        retry[i].remove(&p);
                        changed = true;
                    }
                }
            }
            // New directories: `notify` adds their watch on its own
            // thread after the batch of events that reported them, and
            // answers any request only after that batch; a request
            // answered means their watches are in place: read them again.
            // Only those known before the request: one reported since
            // may not be watched yet (the handler asks again for it).
            let known = lock(t).reads_pending();
            if let Some(upto) = known {
                let _ = w.configure(notify::Config::default());
                let mut g = lock(t);
                for h in g.rescan(upto) {
                    let _ = tx.send(Msg::Host(i, h));
                }
            }
        }
        if !changed {
            continue;
        }
        let mut names = Vec::new();
        for (i, (tag, _, _)) in shares.iter().enumerate() {
            for p in &current[i] {
                names.push(format!("{tag}:{}", p.display()));
            }
        }
        // Plain stderr (the VMM's log file) at every level: the watched set
        // and the running count are what vm_share_events reads.
        eprintln!(
            "berth-vmm: share events: watching [{}]; {} sent",
            names.join(", "),
            sent.load(Ordering::Relaxed)
        );
    }
}

fn accept_loop(
    listener: UnixListener,
    tx: Sender<Msg>,
    watch_tx: Sender<WatchMsg>,
    tags: Arc<Vec<String>>,
) {
    // The reader threads of agent connections inherit this.
    confine_watch_thread();
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
        let watch_tx = watch_tx.clone();
        let tags = tags.clone();
        let conn = id;
        let _ = std::thread::Builder::new()
            .name("berth-fswatch-acks".into())
            .spawn(move || agent_loop(conn, reader, tx, watch_tx, &tags));
    }
}

/// What the agent sends, line by line: an empty line acknowledges one
/// event; any other line is a watch line ([`parse_watch`]). A line
/// past [`WATCH_LINE_MAX`] is refused whole and acknowledges nothing.
#[derive(Default)]
pub struct AgentLines {
    line: Vec<u8>,
    overlong: bool,
    /// Empty lines so far.
    pub acked: u64,
    /// Lines refused so far.
    pub refused: u64,
}

impl AgentLines {
    /// Takes `bytes`; returns the watch sets and refusals of the lines
    /// they complete, in order.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        tags: &[String],
    ) -> Vec<Result<Vec<(usize, PathBuf)>, WatchLineError>> {
        let mut out = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                if self.line.len() >= WATCH_LINE_MAX {
                    self.overlong = true;
                    self.line.clear();
                }
                if !self.overlong {
                    self.line.push(b);
                }
                continue;
            }
            let r = if self.overlong {
                Some(Err(WatchLineError::TooLong))
            } else if self.line.is_empty() {
                self.acked += 1;
                None
            } else {
                Some(parse_watch(&self.line, tags))
            };
            if let Some(r) = r {
                self.refused += u64::from(r.is_err());
                out.push(r);
            }
            self.line.clear();
            self.overlong = false;
        }
        out
    }
}

/// Reads the agent's acknowledgements and watch lines.
fn agent_loop(
    conn: u64,
    mut s: UnixStream,
    tx: Sender<Msg>,
    watch_tx: Sender<WatchMsg>,
    tags: &[String],
) {
    let mut buf = [0u8; 4096];
    let mut lines = AgentLines::default();
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = tx.send(Msg::Closed(conn));
                let _ = watch_tx.send(WatchMsg::Set(conn, Vec::new()));
                return;
            }
            Ok(n) => n,
        };
        let acked = lines.acked;
        let logged = lines.refused;
        for (k, r) in lines.feed(&buf[..n], tags).into_iter().enumerate() {
            match r {
                Ok(set) => {
                    let _ = watch_tx.send(WatchMsg::Set(conn, set));
                }
                // The first few are logged, the rest only counted.
                Err(e) if logged + (k as u64) < REFUSED_LOG_MAX => {
                    log::warn!("share events: agent line refused: {e}");
                }
                Err(_) => {}
            }
        }
        if lines.acked != acked && tx.send(Msg::Acked(conn, lines.acked)).is_err() {
            return;
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

fn send_loop(shares: Vec<WatchedShare>, rx: Receiver<Msg>, total: Arc<AtomicU64>) {
    confine_watch_thread();
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
            total.fetch_add(1, Ordering::Relaxed);
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
    /// The watched folders (full paths, as given to the watcher).
    roots: Vec<PathBuf>,
    /// Asked-for folders not watched now (removed, moved away, not there
    /// yet): what is reported under them is dropped.
    gone: Vec<PathBuf>,
    /// Watched folders found gone, for the watch thread to take.
    lost: Vec<PathBuf>,
    /// New directories to read again once their watch is in place, each
    /// with its number (from `pending_seq`).
    pending: Vec<(PathBuf, u64)>,
    pending_seq: u64,
    /// Paths under `pending` directories the guest has been told exist.
    told: HashSet<PathBuf>,
    /// Whether the watch thread has something to do ([`Self::take_wake`]).
    wake: bool,
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
            roots: Vec::new(),
            gone: Vec::new(),
            lost: Vec::new(),
            pending: Vec::new(),
            pending_seq: 0,
            told: HashSet::new(),
            wake: false,
        }
    }

    /// Whether the watch thread should look at this translator (new
    /// directories to read again, or a watched folder gone); clears it.
    pub fn take_wake(&mut self) -> bool {
        std::mem::take(&mut self.wake)
    }

    /// The watched folders found gone (removed or moved away) since the
    /// watch thread last took them.
    fn take_lost(&mut self) -> Vec<PathBuf> {
        std::mem::take(&mut self.lost)
    }

    /// The folders watched now and those asked for (full paths): events
    /// under an asked-for one that is not watched are dropped. One found
    /// gone and not yet taken stays gone.
    fn set_roots(&mut self, watched: Vec<PathBuf>, wanted: Vec<PathBuf>) {
        let lost = &self.lost;
        self.gone = wanted
            .into_iter()
            .filter(|w| !watched.contains(w) || lost.contains(w))
            .collect();
        self.roots = watched.into_iter().filter(|w| !lost.contains(w)).collect();
    }

    /// `root` is watched (again): with `again`, it is reported as made,
    /// with what it holds (it was gone, or not there when asked for).
    fn watched_again(&mut self, root: &Path, again: bool) -> Vec<HostEvent> {
        self.gone.retain(|g| g != root);
        if !self.roots.iter().any(|r| r == root) {
            self.roots.push(root.to_path_buf());
        }
        let mut out = Vec::new();
        // The share's root itself has no name to make in the guest.
        if again && self.rel(root).is_some() {
            self.created(root, true, &mut out);
            self.note(&out);
        }
        out
    }

    /// Reads directory `p` again once its watch is in place.
    fn read_again(&mut self, p: &Path) {
        if !self.pending.iter().any(|(d, _)| d == p) {
            self.pending_seq += 1;
            self.pending.push((p.to_path_buf(), self.pending_seq));
        }
        self.wake = true;
    }

    /// Whether new directories wait to be read again: the number of the
    /// newest.
    fn reads_pending(&self) -> Option<u64> {
        self.pending.iter().map(|(_, n)| *n).max()
    }

    /// Reads the new directories again, now that their watch is in place
    /// (the watch thread knows): reports what they hold that the guest
    /// was not told of (made after the first reading and before the
    /// watch). What happens from now on comes as events; a create of a
    /// name found here is absorbed for [`SCAN_TTL`]. Only those numbered
    /// up to `upto` ([`Self::reads_pending`] before the watch thread made
    /// sure of their watch).
    pub fn rescan(&mut self, upto: u64) -> Vec<HostEvent> {
        let mut out = Vec::new();
        let mut budget = SCAN_MAX;
        let (now, later) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(_, n)| *n <= upto);
        self.pending = later;
        for (d, _) in now {
            // Removed (or moved out) since: its events told the guest.
            if !lstat(&d).is_some_and(|m| m.is_dir()) || self.gone.iter().any(|g| d.starts_with(g))
            {
                continue;
            }
            self.scan(&d, &mut out, &mut budget);
        }
        if self.pending.is_empty() {
            self.told.clear();
        }
        out
    }

    /// Keeps `told` (paths under new directories the guest knows of) and
    /// `scanned` up to date with `evs`, the events just reported.
    fn note(&mut self, evs: &[HostEvent]) {
        if self.pending.is_empty() && self.scanned.is_empty() {
            return;
        }
        for e in evs {
            let p = self.root.join(std::ffi::OsStr::from_bytes(&e.path));
            let under = |t: &Translator, q: &Path| t.pending.iter().any(|(d, _)| q.starts_with(d));
            match &e.change {
                Change::Create(_) | Change::Mkdir => {
                    if under(self, &p) {
                        self.told.insert(p);
                    }
                }
                Change::Delete | Change::Rmdir => {
                    // A name found by a scan and gone since: a create of
                    // it again is news.
                    self.scanned.remove(&p);
                    self.told.retain(|t| !t.starts_with(&p));
                }
                Change::Rename { to, .. } => {
                    self.scanned.remove(&p);
                    let to = self.root.join(std::ffi::OsStr::from_bytes(to));
                    // A new directory moved: read it where it is now.
                    for (d, _) in self.pending.iter_mut() {
                        if let Ok(r) = d.strip_prefix(&p) {
                            *d = full_path(&to, r);
                        }
                    }
                    let moved: Vec<PathBuf> = self
                        .told
                        .iter()
                        .filter(|t| t.starts_with(&p))
                        .cloned()
                        .collect();
                    for m in moved {
                        self.told.remove(&m);
                        if let Ok(r) = m.strip_prefix(&p) {
                            let n = full_path(&to, r);
                            if under(self, &n) {
                                self.told.insert(n);
                            }
                        }
                    }
                }
                Change::Modify | Change::Attrib => {}
            }
        }
        if self.told.len() > TOLD_MAX {
            log::warn!(
                "share events of {}: too many new paths at once; new directories are not read again",
                self.root.display()
            );
            self.pending.clear();
            self.told.clear();
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
            // Told already, but a directory found by a reading is read
            // again too once its own watch is in place.
            if lstat(p).is_some_and(|m| m.is_dir()) {
                self.read_again(p);
            }
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
            // Read now (what it holds shows before later events of it)
            // and again once its watch is in place ([`Self::rescan`]).
            self.read_again(p);
            let mut budget = SCAN_MAX;
            self.scan(p, out, &mut budget);
        }
    }

    /// Reports what a new directory already holds (depth first), but for
    /// what the guest was told of already.
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
            // Told already: by an event, or by a reading a moment ago.
            if self.told.contains(&p) || self.scanned.contains_key(&p) {
                if t == FileType::Dir {
                    self.scan(&p, out, budget);
                }
                continue;
            }
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
            self.told.insert(p.clone());
            if t == FileType::Dir {
                self.scan(&p, out, budget);
            }
        }
    }

    /// The events of one `notify` event.
    pub fn translate(&mut self, ev: notify::Event) -> Vec<HostEvent> {
        let out = self.translate_one(ev);
        self.note(&out);
        out
    }

    fn translate_one(&mut self, ev: notify::Event) -> Vec<HostEvent> {
        let mut out = Vec::new();
        let first = ev.paths.first().cloned();
        // A watched folder removed or moved away (its own watch tells it):
        // the watch thread watches it again when it is back.
        if let Some(p) = &first {
            if self.roots.contains(p) {
                let moved = matches!(
                    ev.kind,
                    EventKind::Modify(ModifyKind::Name(RenameMode::From))
                ) && ev.attrs.tracker().is_none();
                if moved || matches!(ev.kind, EventKind::Remove(_)) {
                    self.gone.push(p.clone());
                    self.lost.push(p.clone());
                    self.roots.retain(|r| r != p);
                    self.wake = true;
                    // A moved one is still full in the guest (no rmdir);
                    // a removed one was emptied by the events before.
                    if moved {
                        return out;
                    }
                }
            }
        }
        if ev
            .paths
            .iter()
            .any(|p| self.gone.iter().any(|g| p.starts_with(g) && p != g))
        {
            return out;
        }
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
    fn a_new_directory_is_read_again_for_what_came_before_its_watch() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let mut t = Translator::new(root.clone(), Arc::new(ShareEvents::new()));
        let n = root.join("n");
        std::fs::create_dir(&n).unwrap();
        std::fs::write(n.join("a"), b"").unwrap();
        let got = t.translate(ev(EventKind::Create(CreateKind::Folder), &[&n]));
        assert_eq!(
            summary(&got),
            [("n".into(), "mkdir"), ("n/a".into(), "create")]
        );
        assert!(t.take_wake());
        let upto = t.reads_pending().unwrap();
        // Before the watch: b and m/c made (no events); then, watched, d
        // made and reported.
        std::fs::write(n.join("b"), b"").unwrap();
        std::fs::create_dir(n.join("m")).unwrap();
        std::fs::write(n.join("m/c"), b"").unwrap();
        std::fs::write(n.join("d"), b"").unwrap();
        let got = t.translate(ev(EventKind::Create(CreateKind::File), &[&n.join("d")]));
        assert_eq!(summary(&got), [("n/d".into(), "create")]);
        // Read again: only what the guest was not told of.
        let got = t.rescan(upto);
        assert_eq!(
            summary(&got),
            [
                ("n/b".into(), "create"),
                ("n/m".into(), "mkdir"),
                ("n/m/c".into(), "create")
            ]
        );
        assert!(t.reads_pending().is_none() && !t.take_wake());
        // Events of what the reading found, queued behind it, are absorbed.
        assert!(t
            .translate(ev(EventKind::Create(CreateKind::File), &[&n.join("b")]))
            .is_empty());
        // A removed and made again name is news.
        std::fs::remove_file(n.join("m/c")).unwrap();
        let rm = t.translate(ev(EventKind::Remove(RemoveKind::File), &[&n.join("m/c")]));
        assert_eq!(summary(&rm), [("n/m/c".into(), "delete")]);
        std::fs::write(n.join("m/c"), b"").unwrap();
        let got = t.translate(ev(EventKind::Create(CreateKind::File), &[&n.join("m/c")]));
        assert_eq!(summary(&got), [("n/m/c".into(), "create")]);
    }

    #[test]
    fn a_new_directory_moved_or_removed_before_its_reading_again() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let mut t = Translator::new(root.clone(), Arc::new(ShareEvents::new()));
        std::fs::create_dir_all(root.join("p/q")).unwrap();
        std::fs::write(root.join("p/q/x"), b"").unwrap();
        t.translate(ev(
            EventKind::Create(CreateKind::Folder),
            &[&root.join("p")],
        ));
        std::fs::create_dir(root.join("r")).unwrap();
        t.translate(ev(
            EventKind::Create(CreateKind::Folder),
            &[&root.join("r")],
        ));
        // p moved to p2 (told), then y made in it; r removed (told).
        std::fs::rename(root.join("p"), root.join("p2")).unwrap();
        let from = ev(
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
            &[&root.join("p")],
        )
        .set_tracker(3);
        let both = ev(
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
            &[&root.join("p"), &root.join("p2")],
        )
        .set_tracker(3);
        t.translate(from);
        assert_eq!(summary(&t.translate(both)), [("p".into(), "rename")]);
        std::fs::write(root.join("p2/q/y"), b"").unwrap();
        std::fs::remove_dir(root.join("r")).unwrap();
        let got = t.translate(ev(
            EventKind::Remove(RemoveKind::Folder),
            &[&root.join("r")],
        ));
        assert_eq!(summary(&got), [("r".into(), "rmdir")]);
        // Read again where it is now; nothing it had is told twice.
        // Only those asked for before: a later one waits for its watch.
        let upto = t.reads_pending().unwrap();
        std::fs::create_dir(root.join("z")).unwrap();
        std::fs::write(root.join("z/later"), b"").unwrap();
        t.translate(ev(
            EventKind::Create(CreateKind::Folder),
            &[&root.join("z")],
        ));
        std::fs::write(root.join("z/later2"), b"").unwrap();
        assert_eq!(summary(&t.rescan(upto)), [("p2/q/y".into(), "create")]);
        let upto = t.reads_pending().unwrap();
        assert_eq!(summary(&t.rescan(upto)), [("z/later2".into(), "create")]);
        assert!(t.reads_pending().is_none());
    }

    #[test]
    fn a_watched_folder_gone_drops_its_events_until_watched_again() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let mut t = Translator::new(root.clone(), Arc::new(ShareEvents::new()));
        let w = root.join("w");
        std::fs::create_dir(&w).unwrap();
        t.set_roots(vec![w.clone()], vec![w.clone()]);
        std::fs::remove_dir(&w).unwrap();
        // Its own watch says it went: told once, and taken by the watch
        // thread.
        let got = t.translate(ev(EventKind::Remove(RemoveKind::Folder), &[&w]));
        assert_eq!(summary(&got), [("w".into(), "rmdir")]);
        assert!(t.take_wake());
        assert_eq!(t.take_lost(), std::slice::from_ref(&w));
        t.set_roots(vec![], vec![w.clone()]);
        // Made again with a file: nothing under it counts until watched.
        std::fs::create_dir(&w).unwrap();
        std::fs::write(w.join("a"), b"").unwrap();
        assert!(t
            .translate(ev(EventKind::Create(CreateKind::File), &[&w.join("a")]))
            .is_empty());
        let got = t.watched_again(&w, true);
        assert_eq!(
            summary(&got),
            [("w".into(), "mkdir"), ("w/a".into(), "create")]
        );
        // A first watch (not again) reports nothing.
        let v = root.join("v");
        std::fs::create_dir(&v).unwrap();
        assert!(t.watched_again(&v, false).is_empty());
        // Moved away: no event (the guest's copy is full), gone.
        std::fs::rename(&w, root.join("w.old")).unwrap();
        let moved = ev(EventKind::Modify(ModifyKind::Name(RenameMode::From)), &[&w]);
        assert!(t.translate(moved).is_empty());
        assert_eq!(t.take_lost(), std::slice::from_ref(&w));
        // Reported under the old path by its stale watch: dropped.
        std::fs::write(root.join("w.old/b"), b"").unwrap();
        assert!(t
            .translate(ev(EventKind::Create(CreateKind::File), &[&w.join("b")]))
            .is_empty());
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

    /// Writes `poke0`, `poke1`, … into `dir` until an event line comes
    /// (the watches are set up on their own thread); returns how many.
    fn poke_until_event(dir: &Path, r: &mut std::io::BufReader<UnixStream>) -> usize {
        let mut k = 0;
        loop {
            std::fs::write(dir.join(format!("poke{k}")), b"").unwrap();
            k += 1;
            if next(r).is_some() {
                return k;
            }
            assert!(k < 100, "no event after {k} pokes");
        }
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
        // The whole share: the agent's containers bind-mount its root.
        acks.write_all(b"{\"watch\":[{\"tag\":\"s0\",\"path\":\"\"}]}\n")
            .unwrap();
        let mut r = std::io::BufReader::new(agent);
        // The watches are set up on their own thread: poke until one shows.
        let k = poke_until_event(&root, &mut r);
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
        // `d`'s own watch is added after its mkdir is sent: an event from
        // inside it shows the watch is there (a probe made before it is
        // found by the new directory's scan, after it by the watch), so
        // the rename below is seen as a rename, not found as a create.
        step(
            &|| std::fs::create_dir(root.join("d/p")).unwrap(),
            &[("mkdir", "d/p")],
        );
        step(
            &|| std::fs::remove_dir(root.join("d/p")).unwrap(),
            &[("rmdir", "d/p")],
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
            ("mkdir", "d/p"),
            ("rmdir", "d/p"),
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

    /// A fake agent on `listen` that asks for `watch` (a watch line's
    /// list) and acknowledges every event; returns the events' (kind, path)
    /// as they come, once the watch is shown to be in place by a poke file
    /// in `poke_dir` (its events are not returned).
    fn agent(listen: &Path, watch: &str, poke_dir: &Path) -> Receiver<(String, String)> {
        let agent = UnixStream::connect(listen).unwrap();
        let mut w = agent.try_clone().unwrap();
        w.write_all(format!("{{\"watch\":{watch}}}\n").as_bytes())
            .unwrap();
        let mut r = std::io::BufReader::new(agent);
        let k = poke_until_event(poke_dir, &mut r);
        w.write_all(&vec![b'\n'; k + 1]).unwrap();
        while next(&mut r).is_some() {
            w.write_all(b"\n").unwrap();
        }
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            while let Some(e) = next_within(&mut r, Duration::from_secs(600)) {
                if w.write_all(b"\n").is_err() || tx.send(e).is_err() {
                    return;
                }
            }
        });
        rx
    }

    /// Waits until `want` are all among the events (or 30 s pass with
    /// none new); returns those never seen. Every event read is added to
    /// `seen`.
    fn missing(
        rx: &Receiver<(String, String)>,
        want: &[(String, String)],
        seen: &mut Vec<(String, String)>,
    ) -> Vec<(String, String)> {
        let mut left: HashSet<(String, String)> = want.iter().cloned().collect();
        while !left.is_empty() {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(e) => {
                    left.remove(&e);
                    seen.push(e);
                }
                Err(_) => break,
            }
        }
        let mut v: Vec<_> = left.into_iter().collect();
        v.sort();
        v
    }

    #[test]
    fn files_made_at_once_in_a_new_directory_are_all_reported() {
        // The race of a new directory: its watch is added after the event
        // that reports it; what is made in it before is found by reading
        // it once the watch is known to be in place.
        let share = tempfile::tempdir().unwrap();
        let sockdir = tempfile::tempdir().unwrap();
        let root = share.path().canonicalize().unwrap();
        let listen = listen_path(&sockdir.path().join("v.sock"));
        start(
            vec![WatchedShare {
                tag: "s0".into(),
                root: root.clone(),
                events: Arc::new(ShareEvents::new()),
            }],
            &listen,
        )
        .unwrap();
        let rx = agent(&listen, r#"[{"tag":"s0","path":""}]"#, &root);
        let (dirs, files) = (200, 5);
        let mut want = Vec::new();
        for i in 0..dirs {
            let d = format!("d{i}");
            std::fs::create_dir(root.join(&d)).unwrap();
            want.push(("mkdir".to_string(), d.clone()));
            // Nested too: a directory made in the new one at once.
            std::fs::create_dir(root.join(&d).join("s")).unwrap();
            want.push(("mkdir".to_string(), format!("{d}/s")));
            for j in 0..files {
                let f = format!("{d}/f{j}");
                std::fs::write(root.join(&f), b"x").unwrap();
                want.push(("create".to_string(), f));
                let f = format!("{d}/s/f{j}");
                std::fs::write(root.join(&f), b"x").unwrap();
                want.push(("create".to_string(), f));
            }
        }
        let mut seen = Vec::new();
        let lost = missing(&rx, &want, &mut seen);
        let mut told = HashSet::new();
        let twice: Vec<_> = seen
            .iter()
            .filter(|(k, _)| k == "create" || k == "mkdir")
            .filter(|e| !told.insert(*e))
            .collect();
        eprintln!(
            "new directories: {} of {} events lost, {} told twice",
            lost.len(),
            want.len(),
            twice.len()
        );
        assert!(twice.is_empty(), "told twice: {twice:?}");
        assert!(
            lost.is_empty(),
            "{} of {} lost: {:?}",
            lost.len(),
            want.len(),
            &lost[..lost.len().min(10)]
        );
    }

    #[test]
    fn a_watched_folder_removed_or_moved_and_made_again_is_watched_again() {
        let share = tempfile::tempdir().unwrap();
        let sockdir = tempfile::tempdir().unwrap();
        let root = share.path().canonicalize().unwrap();
        let w = root.join("w");
        std::fs::create_dir(&w).unwrap();
        let listen = listen_path(&sockdir.path().join("v.sock"));
        start(
            vec![WatchedShare {
                tag: "s0".into(),
                root: root.clone(),
                events: Arc::new(ShareEvents::new()),
            }],
            &listen,
        )
        .unwrap();
        let rx = agent(&listen, r#"[{"tag":"s0","path":"w"}]"#, &w);
        let ev = |k: &str, p: &str| (k.to_string(), p.to_string());
        let mut seen = Vec::new();
        // Removed, made again at once, a file in it.
        std::fs::remove_dir_all(&w).unwrap();
        std::fs::create_dir(&w).unwrap();
        std::fs::write(w.join("a"), b"x").unwrap();
        assert_eq!(
            missing(&rx, &[ev("mkdir", "w"), ev("create", "w/a")], &mut seen),
            []
        );
        std::fs::write(w.join("b"), b"x").unwrap();
        assert_eq!(missing(&rx, &[ev("create", "w/b")], &mut seen), []);
        // Moved away and made again later: what the old one gets is not
        // reported, the new one is watched.
        std::fs::rename(&w, root.join("w.old")).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        std::fs::write(root.join("w.old/c"), b"x").unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        std::fs::create_dir(&w).unwrap();
        std::fs::write(w.join("d"), b"x").unwrap();
        assert_eq!(missing(&rx, &[ev("create", "w/d")], &mut seen), []);
        std::fs::write(w.join("e"), b"x").unwrap();
        assert_eq!(missing(&rx, &[ev("create", "w/e")], &mut seen), []);
        seen.extend(rx.try_iter());
        assert!(
            !seen.iter().any(|(_, p)| p == "w/c"),
            "the moved folder's file was reported: {seen:?}"
        );
    }

    #[test]
    fn only_the_folders_the_agent_names_are_watched() {
        let share = tempfile::tempdir().unwrap();
        let sockdir = tempfile::tempdir().unwrap();
        let root = share.path().canonicalize().unwrap();
        for d in ["in/deep", "out", "later"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let events = Arc::new(ShareEvents::new());
        let listen = listen_path(&sockdir.path().join("v.sock"));
        start(
            vec![WatchedShare {
                tag: "s0".into(),
                root: root.clone(),
                events,
            }],
            &listen,
        )
        .unwrap();
        let agent = UnixStream::connect(&listen).unwrap();
        let mut w = agent.try_clone().unwrap();
        let mut r = std::io::BufReader::new(agent);
        // Nothing asked for: nothing sent.
        std::fs::write(root.join("in/deep/early"), b"").unwrap();
        assert_eq!(next(&mut r), None);
        // A hostile line changes nothing; a nested duplicate is covered.
        w.write_all(b"{\"watch\":[{\"tag\":\"s0\",\"path\":\"../x\"}]}\n")
            .unwrap();
        w.write_all(
            b"{\"watch\":[{\"tag\":\"s0\",\"path\":\"in\"},{\"tag\":\"s0\",\"path\":\"in/deep\"}]}\n",
        )
        .unwrap();
        poke_until_event(&root.join("in/deep"), &mut r);
        while next(&mut r).is_some() {}
        std::fs::write(root.join("out/x"), b"").unwrap();
        std::fs::write(root.join("in/y"), b"").unwrap();
        assert_eq!(
            next_within(&mut r, Duration::from_secs(30)),
            Some(("create".into(), "in/y".into()))
        );
        assert_eq!(next(&mut r), None, "out/x is not watched");
        // A new set replaces the old one: in/ is no longer watched, and a
        // folder behind a symbolic link (the guest can make those) never is.
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("link")).unwrap();
        w.write_all(
            b"{\"watch\":[{\"tag\":\"s0\",\"path\":\"link\"},{\"tag\":\"s0\",\"path\":\"later\"}]}\n",
        )
        .unwrap();
        poke_until_event(&root.join("later"), &mut r);
        while next(&mut r).is_some() {}
        std::fs::write(root.join("in/z"), b"").unwrap();
        std::fs::write(outside.path().join("z"), b"").unwrap();
        std::fs::write(root.join("later/z"), b"").unwrap();
        assert_eq!(
            next_within(&mut r, Duration::from_secs(30)),
            Some(("create".into(), "later/z".into()))
        );
        assert_eq!(next(&mut r), None, "in/z and link/z are not watched");
    }
}

#[cfg(test)]
mod agent_line_tests {
    use super::*;

    fn tags() -> Vec<String> {
        vec!["s0".into(), "s1".into()]
    }

    #[test]
    fn watch_lines_name_known_shares_and_plain_relative_paths() {
        let got = parse_watch(
            br#"{"watch":[{"tag":"s1","path":"a/b"},{"tag":"s0","path":""},{"tag":"s1","path":"a/b"}]}"#,
            &tags(),
        )
        .unwrap();
        assert_eq!(got, [(1, PathBuf::from("a/b")), (0, PathBuf::new())]);
        assert_eq!(parse_watch(br#"{"watch":[]}"#, &tags()).unwrap(), []);
        let long = "a/".repeat(WATCH_PATH_MAX / 2) + "b";
        for bad in [
            "/etc",
            "..",
            "a/..",
            "../a",
            "a/../b",
            ".",
            "./a",
            "a/.",
            "a//b",
            "a/",
            "a\u{0}b",
            long.as_str(),
        ] {
            let line = serde_json::json!({"watch":[{"tag":"s0","path":bad}]}).to_string();
            assert!(
                matches!(
                    parse_watch(line.as_bytes(), &tags()),
                    Err(WatchLineError::BadPath(_))
                ),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_watch(br#"{"watch":[{"tag":"s9","path":"a"}]}"#, &tags()),
            Err(WatchLineError::UnknownTag("s9".into()))
        );
        for bad in [
            &br#"{"watch":[{"tag":"s0"}]}"#[..],
            br#"{"watch":[{"tag":"s0","path":"a","x":1}]}"#,
            br#"{"watch":{"tag":"s0"}}"#,
            br#"{"watch":[{"tag":0,"path":"a"}]}"#,
            br#"["s0","a"]"#,
            b"\xff\xfe",
            b"{",
        ] {
            assert!(
                matches!(parse_watch(bad, &tags()), Err(WatchLineError::Json(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let many: Vec<_> = (0..WATCH_MAX + 1)
            .map(|i| serde_json::json!({"tag":"s0","path":format!("d{i}")}))
            .collect();
        let line = serde_json::json!({ "watch": many }).to_string();
        assert_eq!(
            parse_watch(line.as_bytes(), &tags()),
            Err(WatchLineError::TooMany(WATCH_MAX + 1))
        );
        assert_eq!(
            parse_watch(&vec![b' '; WATCH_LINE_MAX + 1], &tags()),
            Err(WatchLineError::TooLong)
        );
    }

    #[test]
    fn empty_lines_are_acks_and_other_lines_never_count_as_acks() {
        let mut l = AgentLines::default();
        // Split anywhere: a watch line between acks.
        let input = b"\n\n{\"watch\":[{\"tag\":\"s0\",\"path\":\"p\"}]}\n\nnonsense\n";
        let mut got = Vec::new();
        for chunk in input.chunks(3) {
            got.extend(l.feed(chunk, &tags()));
        }
        assert_eq!(l.acked, 3);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], Ok(vec![(0, PathBuf::from("p"))]));
        assert!(matches!(got[1], Err(WatchLineError::Json(_))));
        assert_eq!(l.refused, 1);
        // An endless line is refused once, whole, and acknowledges nothing;
        // the stream goes on after its newline.
        let mut l = AgentLines::default();
        let junk = vec![b'x'; 3 * WATCH_LINE_MAX];
        assert!(l.feed(&junk, &tags()).is_empty());
        let got = l.feed(b"x\n\n", &tags());
        assert_eq!(got, [Err(WatchLineError::TooLong)]);
        assert_eq!((l.acked, l.refused), (1, 1));
    }

    #[test]
    fn nested_folders_are_covered_by_the_outermost() {
        let set = [
            (0, PathBuf::from("a/b")),
            (0, PathBuf::from("a")),
            (0, PathBuf::from("ab")),
            (1, PathBuf::from("a/b")),
            (7, PathBuf::from("x")),
        ];
        let c = cover(2, &set);
        assert_eq!(
            c[0].iter().collect::<Vec<_>>(),
            [Path::new("a"), Path::new("ab")]
        );
        assert_eq!(c[1].iter().collect::<Vec<_>>(), [Path::new("a/b")]);
        let root = cover(1, &[(0, PathBuf::new()), (0, PathBuf::from("z"))]);
        assert_eq!(root[0].iter().collect::<Vec<_>>(), [Path::new("")]);
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod confined_tests {
    use super::*;

    /// The watch thread under its own seccomp filter (EPERM instead of a
    /// kill, so that a refused call shows as a failure here): new
    /// directories read again, a watched folder made again watched again.
    #[test]
    fn the_watch_thread_works_under_its_filter() {
        let share = tempfile::tempdir().unwrap();
        let root = share.path().canonicalize().unwrap();
        let w = root.join("w");
        std::fs::create_dir(&w).unwrap();
        let (tx, rx) = channel();
        let (watch_tx, watch_rx) = channel();
        let checks = watch_tx.clone();
        let shares = vec![("s0".to_string(), root.clone(), Arc::new(ShareEvents::new()))];
        std::thread::spawn(move || {
            let prog = crate::confine::build_filter(
                crate::confine::ThreadKind::Watch,
                seccompiler::SeccompAction::Errno(libc::EPERM as u32),
            )
            .unwrap();
            seccompiler::apply_filter(&prog).unwrap();
            watch_loop(shares, tx, watch_rx, checks, Arc::new(AtomicU64::new(0)));
        });
        watch_tx
            .send(WatchMsg::Set(1, vec![(0, PathBuf::from("w"))]))
            .unwrap();
        let paths = |want: &[&str]| {
            let mut left: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
            while !left.is_empty() {
                let Ok(Msg::Host(_, e)) = rx.recv_timeout(Duration::from_secs(30)) else {
                    break;
                };
                left.remove(&String::from_utf8_lossy(&e.path).into_owned());
            }
            left
        };
        let mut k = 0;
        loop {
            std::fs::write(w.join(format!("poke{k}")), b"").unwrap();
            k += 1;
            if let Ok(Msg::Host(..)) = rx.recv_timeout(Duration::from_millis(300)) {
                break;
            }
            assert!(k < 100, "no event after {k} pokes");
        }
        let mut want = Vec::new();
        for i in 0..20 {
            std::fs::create_dir(w.join(format!("d{i}"))).unwrap();
            for j in 0..5 {
                std::fs::write(w.join(format!("d{i}/f{j}")), b"x").unwrap();
                want.push(format!("w/d{i}/f{j}"));
            }
        }
        let want: Vec<&str> = want.iter().map(|s| s.as_str()).collect();
        assert_eq!(paths(&want), BTreeSet::new());
        std::fs::remove_dir_all(&w).unwrap();
        std::fs::create_dir(&w).unwrap();
        std::fs::write(w.join("a"), b"x").unwrap();
        assert_eq!(paths(&["w/a"]), BTreeSet::new());
    }
}
