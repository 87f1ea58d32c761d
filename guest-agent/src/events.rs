//! The engine's event log (`berth events`, docker's `docker events`):
//! `<root>/events.log`, one docker `events.Message` JSON object per line.
//!
//! Writers are the agent and its shims (separate processes): each event is
//! appended with one `write(2)` on an `O_APPEND` descriptor, so lines never
//! interleave. Appends hold a shared `flock` on `events.lock`; when the log
//! passes [`MAX_SIZE`] the writer that noticed takes the lock exclusively
//! and rewrites it atomically with its newest half, so no append lands in
//! a file that is being replaced.

use berth_protocol::{Event, EventActor};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The log is cut to its newest half once it grows past this.
pub const MAX_SIZE: u64 = 8 * 1024 * 1024;

/// berth's own event type: a host workaround was used (see `quirks`).
pub const BERTH_TYPE: &str = "berth";
pub const WORKAROUND: &str = "workaround";

pub fn log_path(root: &Path) -> PathBuf {
    root.join("events.log")
}

fn lock_path(root: &Path) -> PathBuf {
    root.join("events.lock")
}

/// An flock held until dropped.
struct Lock(File);

impl Lock {
    fn take(root: &Path, exclusive: bool) -> Option<Lock> {
        use std::os::fd::AsRawFd;
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(lock_path(root))
            .ok()?;
        let op = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        // SAFETY: flock on a descriptor this function owns.
        (unsafe { libc::flock(f.as_raw_fd(), op) } == 0).then_some(Lock(f))
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: unlocks the descriptor this value owns.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

/// Records one event. Errors are ignored: events never fail an operation.
pub fn emit(root: &Path, kind: &str, action: &str, id: &str, attributes: BTreeMap<String, String>) {
    let nanos = now_nanos();
    let mut ev = Event {
        kind: kind.into(),
        action: action.into(),
        actor: EventActor {
            id: id.into(),
            attributes,
        },
        scope: "local".into(),
        time: nanos.div_euclid(1_000_000_000),
        time_nano: nanos,
        ..Event::default()
    };
    // docker's legacy fields: status and id on container and image
    // events, from on container events.
    if kind == "container" || kind == "image" {
        ev.status = action.into();
        ev.id = id.into();
    }
    if kind == "container" {
        ev.from = ev
            .actor
            .attributes
            .get("image")
            .cloned()
            .unwrap_or_default();
    }
    let Ok(mut line) = serde_json::to_vec(&ev) else {
        return;
    };
    line.push(b'\n');
    let size = {
        let _shared = Lock::take(root, false);
        let Ok(mut f) = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path(root))
        else {
            return;
        };
        // One write(2): O_APPEND keeps concurrent lines whole.
        let _ = f.write_all(&line);
        f.metadata().map(|m| m.len()).unwrap_or(0)
    };
    if size > MAX_SIZE {
        trim(root, MAX_SIZE / 2);
    }
}

/// Rewrites the log with its newest lines (about `keep` bytes).
fn trim(root: &Path, keep: u64) {
    let Some(_excl) = Lock::take(root, true) else {
        return;
    };
    let path = log_path(root);
    let Ok(data) = std::fs::read(&path) else {
        return;
    };
    if (data.len() as u64) <= keep {
        return; // another writer trimmed it already
    }
    let cut = data.len() - keep as usize;
    let start = data[cut..]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(data.len(), |i| cut + i + 1);
    let tmp = root.join(format!("events.log.tmp-{}", std::process::id()));
    if std::fs::write(&tmp, &data[start..]).is_ok() {
        let _ = std::fs::rename(&tmp, &path);
    }
}

/// An image event: `id` is the image id (`sha256:…`), `name` the reference
/// the action was about, and the image's labels (as docker's).
pub fn image(root: &Path, action: &str, id: &str, name: &str, labels: BTreeMap<String, String>) {
    let mut attrs = labels;
    attrs.insert("name".into(), name.into());
    emit(root, "image", action, id, attrs);
}

/// A volume event (driver `local`, the only one).
pub fn volume(root: &Path, action: &str, name: &str) {
    let attrs = BTreeMap::from([("driver".to_string(), "local".to_string())]);
    emit(root, "volume", action, name, attrs);
}

/// A network event (`create`, `destroy`, `connect`, `disconnect`), as
/// docker records them: the network id, its name and type.
pub fn network(root: &Path, id: &str, name: &str, action: &str) {
    let mut attrs = BTreeMap::new();
    attrs.insert("name".to_string(), name.to_string());
    attrs.insert("type".to_string(), "bridge".to_string());
    emit(root, "network", action, id, attrs);
}

/// A container joining (`connect`) or leaving (`disconnect`) a bridge
/// network, as docker logs it at each start and stop.
pub fn network_endpoint(root: &Path, network_id: &str, name: &str, container: &str, action: &str) {
    let attrs = BTreeMap::from([
        ("container".to_string(), container.to_string()),
        ("name".to_string(), name.to_string()),
        ("type".to_string(), "bridge".to_string()),
    ]);
    emit(root, "network", action, network_id, attrs);
}

/// berth's `workaround` event: the host workaround `what` was used for
/// container `container`.
pub fn workaround(root: &Path, what: &str, container: &str) {
    let attrs = BTreeMap::from([
        ("name".to_string(), what.to_string()),
        ("container".to_string(), container.to_string()),
    ]);
    emit(root, BERTH_TYPE, WORKAROUND, container, attrs);
}

/// docker's check of the time window (its daemon ignores unknown filter
/// keys, and so does berth).
pub fn check_times(since: Option<i64>, until: Option<i64>) -> Result<(), String> {
    let text = |n: i64| {
        let (s, ns) = (n.div_euclid(1_000_000_000), n.rem_euclid(1_000_000_000));
        if ns == 0 {
            s.to_string()
        } else {
            format!("{s}.{ns:09}")
        }
    };
    match (since, until) {
        (Some(s), Some(u)) if s > u => Err(format!(
            "`since` time ({}) cannot be after `until` time ({})",
            text(s),
            text(u)
        )),
        _ => Ok(()),
    }
}

/// Whether `ev` passes docker's event filters.
pub fn matches(filters: &BTreeMap<String, Vec<String>>, ev: &Event) -> bool {
    let values = |k: &str| filters.get(k).filter(|v| !v.is_empty());
    let exact = |k: &str, v: &str| values(k).is_none_or(|f| f.iter().any(|x| x == v));
    let fuzzy =
        |k: &str, v: &str| values(k).is_none_or(|f| f.iter().any(|x| x == v || v.starts_with(x)));
    let name = ev.actor.attributes.get("name").map_or("", String::as_str);
    let fuzzy_name = |k: &str| {
        values(k).is_none() || (ev.kind == k && (fuzzy(k, &ev.actor.id) || fuzzy(k, name)))
    };
    // exec_create/exec_start carry the command after a colon.
    let event_ok = match values("event") {
        None => true,
        Some(f) => f.iter().any(|x| {
            x == &ev.action
                || (matches!(x.as_str(), "exec_create" | "exec_start" | "health_status")
                    && ev.action.starts_with(x.as_str()))
        }),
    };
    let strip_tag = |s: &str| -> String {
        match s.rfind(':') {
            Some(i) if !s[i..].contains('/') && !s.starts_with("sha256:") => s[..i].to_string(),
            _ => s.to_string(),
        }
    };
    let image_name = if ev.kind == "image" {
        name
    } else {
        ev.actor.attributes.get("image").map_or("", String::as_str)
    };
    let image_ok = values("image").is_none()
        || [
            ev.actor.id.clone(),
            image_name.to_string(),
            strip_tag(&ev.actor.id),
            strip_tag(image_name),
        ]
        .iter()
        .any(|v| exact("image", v));
    let labels_ok = values("label").is_none_or(|f| {
        f.iter().all(|l| match l.split_once('=') {
            Some((k, v)) => ev.actor.attributes.get(k).is_some_and(|a| a == v),
            None => ev.actor.attributes.contains_key(l.as_str()),
        })
    });
    event_ok
        && exact("type", &ev.kind)
        && exact("scope", &ev.scope)
        && fuzzy_name("container")
        && fuzzy_name("volume")
        && fuzzy_name("network")
        && fuzzy_name("plugin")
        && fuzzy_name("daemon")
        && fuzzy_name("node")
        && fuzzy_name("service")
        && fuzzy_name("secret")
        && fuzzy_name("config")
        && image_ok
        && labels_ok
}

/// Reads the log from the start and then follows it, by position and
/// surviving the rewrite that trims it.
pub struct Reader {
    path: PathBuf,
    file: Option<BufReader<File>>,
    ino: u64,
    pos: u64,
    /// The newest event returned (skips what a trim copied over).
    last: i64,
    partial: String,
}

impl Reader {
    pub fn open(root: &Path) -> Reader {
        Reader {
            path: log_path(root),
            file: None,
            ino: 0,
            pos: 0,
            last: i64::MIN,
            partial: String::new(),
        }
    }

    /// Events appended since the last call.
    pub fn poll(&mut self) -> Vec<Event> {
        let ino = std::fs::metadata(&self.path).map(|m| m.ino()).unwrap_or(0);
        if self.file.is_none() || ino != self.ino {
            // First read, or a trim replaced the file: drain the old one,
            // then read the new one from its start.
            let replaced = self.file.is_some();
            let mut out = self.read_more();
            match File::open(&self.path) {
                Ok(f) => {
                    self.file = Some(BufReader::new(f));
                    self.ino = ino;
                    self.pos = 0;
                    self.partial.clear();
                }
                Err(_) => return out,
            }
            let last = out.last().map_or(self.last, |e| e.time_nano.max(self.last));
            out.extend(
                self.read_more()
                    .into_iter()
                    .filter(|e| !replaced || e.time_nano > last),
            );
            if let Some(e) = out.last() {
                self.last = self.last.max(e.time_nano);
            }
            return out;
        }
        let out = self.read_more();
        if let Some(e) = out.last() {
            self.last = self.last.max(e.time_nano);
        }
        out
    }

    fn read_more(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        let Some(f) = self.file.as_mut() else {
            return out;
        };
        if f.seek(SeekFrom::Start(self.pos)).is_err() {
            return out;
        }
        loop {
            let mut line = String::new();
            match f.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    self.pos += n as u64;
                    if !line.ends_with('\n') {
                        // A line being written: keep it for the next poll.
                        self.partial.push_str(&line);
                        break;
                    }
                    let whole = std::mem::take(&mut self.partial) + &line;
                    if let Ok(ev) = serde_json::from_str::<Event>(whole.trim_end()) {
                        out.push(ev);
                    }
                }
            }
        }
        out
    }
}

/// Wakes an events follower when `events.log` changes, instead of polling
/// it: in an emulated guest kernel every poll (a `statx`, a `lseek`, a
/// `read` and a thread wake-up) is work, and 20 polls a second kept an idle
/// machine VM's vCPU busy (the host's port forwarder follows events all the
/// time). inotify on the log's directory sees the appends of the agent and
/// of its shims (other processes) and the rename a trim does.
pub struct Waiter {
    inotify: Option<nix::sys::inotify::Inotify>,
}

impl Waiter {
    /// A waiter for `<root>/events.log`; without inotify (error at setup)
    /// [`Waiter::wait`] falls back to a short sleep.
    pub fn new(root: &Path) -> Waiter {
        use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .ok()
            .filter(|i| {
                i.add_watch(
                    root,
                    AddWatchFlags::IN_MODIFY
                        | AddWatchFlags::IN_CREATE
                        | AddWatchFlags::IN_MOVED_TO,
                )
                .is_ok()
            });
        Waiter { inotify }
    }

    /// Returns when `events.log` may have changed, or after `timeout`.
    pub fn wait(&self, timeout: std::time::Duration) {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let Some(inotify) = &self.inotify else {
            std::thread::sleep(timeout.min(std::time::Duration::from_millis(50)));
            return;
        };
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
            let ms =
                PollTimeout::try_from(left.as_millis().max(1) as i32).unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, ms) {
                Ok(0) => return,
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    return;
                }
            }
            match inotify.read_events() {
                Ok(events) => {
                    let ours = events
                        .iter()
                        .any(|e| e.name.as_deref() == Some(std::ffi::OsStr::new("events.log")));
                    if ours {
                        return;
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => {}
                Err(_) => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    return;
                }
            }
        }
    }
}

/// Whether the peer of a stream connection has gone (a reader thread sees
/// EOF); the client sends nothing after its request.
pub fn watch_peer(mut r: Box<dyn Read + Send>) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let gone = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = gone.clone();
    std::thread::spawn(move || {
        let mut b = [0u8; 64];
        while matches!(r.read(&mut b), Ok(n) if n > 0) {}
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    gone
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, action: &str, id: &str, attrs: &[(&str, &str)]) -> Event {
        Event {
            kind: kind.into(),
            action: action.into(),
            actor: EventActor {
                id: id.into(),
                attributes: attrs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
            scope: "local".into(),
            ..Event::default()
        }
    }

    fn f(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<String>> {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in pairs {
            m.entry(k.to_string()).or_default().push(v.to_string());
        }
        m
    }

    #[test]
    fn filters_match_as_dockers() {
        let c = ev(
            "container",
            "start",
            "abcdef",
            &[("name", "web"), ("image", "busybox:latest"), ("tier", "x")],
        );
        let v = ev("volume", "create", "data", &[("driver", "local")]);
        let i = ev("image", "tag", "sha256:11", &[("name", "me/busybox:v1")]);
        assert!(matches(&f(&[]), &c));
        assert!(matches(&f(&[("type", "container")]), &c));
        assert!(!matches(&f(&[("type", "container")]), &v));
        assert!(matches(&f(&[("container", "web")]), &c));
        assert!(matches(&f(&[("container", "abc")]), &c));
        assert!(!matches(&f(&[("container", "web")]), &v));
        assert!(matches(&f(&[("event", "start"), ("event", "die")]), &c));
        assert!(!matches(&f(&[("event", "die")]), &c));
        assert!(matches(&f(&[("image", "busybox")]), &c));
        assert!(matches(&f(&[("image", "me/busybox")]), &i));
        assert!(matches(&f(&[("image", "sha256:11")]), &i));
        assert!(!matches(&f(&[("image", "other")]), &c));
        assert!(matches(&f(&[("volume", "data")]), &v));
        assert!(matches(&f(&[("label", "tier=x")]), &c));
        assert!(matches(&f(&[("label", "tier")]), &c));
        assert!(!matches(&f(&[("label", "tier=y")]), &c));
        assert!(matches(&f(&[("foo", "x")]), &c), "unknown keys are ignored");
        assert!(check_times(Some(1), Some(1)).is_ok());
        assert_eq!(
            check_times(Some(1_000_000_000), Some(500_000_000)),
            Err("`since` time (1) cannot be after `until` time (0.500000000)".into())
        );
    }

    #[test]
    fn events_are_appended_read_followed_and_trimmed() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let mut r = Reader::open(root);
        assert!(r.poll().is_empty());
        volume(root, "create", "v1");
        workaround(root, "shim restarted", "abc");
        let got = r.poll();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].kind.as_str(), got[0].action.as_str()),
            ("volume", "create")
        );
        assert_eq!(got[1].actor.attributes["container"], "abc");
        assert!(got[0].time_nano > 0 && got[0].time == got[0].time_nano / 1_000_000_000);
        assert!(r.poll().is_empty());
        // A trim keeps the newest half; the follower neither repeats nor loses.
        for n in 0..50 {
            volume(root, "create", &format!("n{n}"));
        }
        trim(root, 1000);
        volume(root, "create", "after");
        let got = r.poll();
        let names: Vec<&str> = got.iter().map(|e| e.actor.id.as_str()).collect();
        assert_eq!(names.len(), 51, "{names:?}");
        assert_eq!(names.last(), Some(&"after"));
        let kept = std::fs::read_to_string(log_path(root)).unwrap();
        assert!(kept.len() < 1400 && kept.lines().all(|l| l.starts_with('{')));
    }
}
