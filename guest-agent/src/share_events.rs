//! Live file-change events of virtio-fs shares, guest side.
//!
//! The VMM watches each writable share on the host and streams its changes
//! here (vsock, host port [`PORT`], one JSON object a line; see the VMM's
//! `devices/virtio/fs/watch.rs`). This loop performs the matching operation
//! on the share's mount point, in order: mknod/symlink/mkdir for a create,
//! unlink/rmdir, rename, `utimensat(OMIT, NOW)` for a write (IN_MODIFY) and
//! `utimensat(NOW, NOW)` for a metadata change (IN_ATTRIB). The VMM's FUSE
//! server expects exactly these requests and answers them with the host's
//! state without repeating them on the host, so the guest kernel raises the
//! event to every inotify watcher (containers' bind mounts included) and
//! updates its caches. One `\n` goes back per event done.
//!
//! The input comes from the VMM; it is still checked: paths must be
//! relative, without `.`/`..` components or NULs, and lines are bounded.
//!
//! The VMM watches only the folders running containers bind-mount: each
//! container's shim registers the bind-mount sources of its container in
//! `<engine root>/share-watch/<id>` before the container's process starts
//! and removes the file when the container ends ([`register`],
//! [`unregister`]); a thread here follows that directory (inotify) and
//! sends the VMM the share-relative folders as one watch line
//! (`{"watch":[{"tag":"s0","path":"proj/src"}]}`) whenever the set
//! changes, on the same connection as the acknowledgements (which are
//! empty lines, so the two never mix up).

use std::collections::BTreeSet;
use std::ffi::CString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The host vsock port of the VMM's share-event stream (the VMM's
/// `fs::watch::SHARE_EVENTS_PORT`).
pub const PORT: u32 = 1031;
/// The host's vsock CID.
const VMADDR_CID_HOST: u32 = 2;
/// Longest event line read.
const LINE_MAX: u64 = 16 * 1024;
/// Failed operations logged (the rest are counted silently).
const LOG_MAX: u32 = 20;

/// One event as the VMM sends it.
#[derive(Debug, serde::Deserialize, PartialEq, Eq)]
pub struct Event {
    /// The VMM's sequence number.
    pub seq: u64,
    /// The share's tag.
    pub tag: String,
    /// create, mkdir, delete, rmdir, rename, modify, attrib.
    pub kind: String,
    /// file, symlink, fifo, socket (create only).
    #[serde(default, rename = "type")]
    pub ftype: Option<String>,
    /// Relative to the share's root.
    pub path: String,
    /// A rename's new path.
    #[serde(default)]
    pub to: Option<String>,
}

/// `rel` under `root`, if it is a plain relative path.
pub fn under(root: &Path, rel: &str) -> Option<PathBuf> {
    if rel.is_empty() || rel.contains('\0') {
        return None;
    }
    let p = Path::new(rel);
    if !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(root.join(p))
}

fn cstr(p: &Path) -> std::io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| std::io::Error::other("NUL in path"))
}

fn cvt(r: libc::c_int) -> std::io::Result<()> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn utimes(p: &Path, atime: libc::c_long) -> std::io::Result<()> {
    let c = cstr(p)?;
    let ts = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: atime,
        },
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
    ];
    // SAFETY: c is a NUL-terminated path, ts two valid timespecs.
    cvt(unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// Performs `ev` under the share mounted at `root`.
pub fn apply(root: &Path, ev: &Event) -> std::io::Result<()> {
    let bad = || std::io::Error::from_raw_os_error(libc::EINVAL);
    let p = under(root, &ev.path).ok_or_else(bad)?;
    match ev.kind.as_str() {
        "create" => {
            let c = cstr(&p)?;
            let kind = match ev.ftype.as_deref() {
                Some("symlink") => return std::os::unix::fs::symlink(".", &p),
                Some("fifo") => libc::S_IFIFO,
                Some("socket") => libc::S_IFSOCK,
                _ => libc::S_IFREG,
            };
            // SAFETY: c is a NUL-terminated path.
            cvt(unsafe { libc::mknod(c.as_ptr(), kind | 0o644, 0) })
        }
        "mkdir" => std::fs::create_dir(&p),
        "delete" => std::fs::remove_file(&p),
        "rmdir" => std::fs::remove_dir(&p),
        "rename" => {
            let to = ev
                .to
                .as_deref()
                .and_then(|t| under(root, t))
                .ok_or_else(bad)?;
            std::fs::rename(&p, &to)
        }
        "modify" => utimes(&p, libc::UTIME_OMIT),
        "attrib" => utimes(&p, libc::UTIME_NOW),
        _ => Err(bad()),
    }
}

fn connect(port: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    cvt(fd)?;
    // SAFETY: fd is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_vm is plain old data; all-zero is valid.
    let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_port = port;
    addr.svm_cid = VMADDR_CID_HOST;
    // SAFETY: addr is a valid sockaddr_vm of the size passed.
    cvt(unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_vm).cast(),
            std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
        )
    })?;
    Ok(fd)
}

/// Reads events from `input`, applies each to its share (`shares`: tag and
/// mount point), and acknowledges each on `ack`. Returns at end of input.
pub fn serve(shares: &[(String, PathBuf)], input: impl Read, mut ack: impl Write) {
    let mut input = BufReader::new(input);
    let mut failed = 0u32;
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut input).take(LINE_MAX).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.last() != Some(&b'\n') {
            // Over-long: skip to its end, acknowledged as done.
            let mut rest = Vec::new();
            if input.read_until(b'\n', &mut rest).unwrap_or(0) == 0 {
                return;
            }
        } else if let Ok(ev) = serde_json::from_slice::<Event>(&line) {
            let result = match shares.iter().find(|(t, _)| *t == ev.tag) {
                Some((_, root)) => apply(root, &ev),
                None => Err(std::io::Error::from_raw_os_error(libc::ENODEV)),
            };
            if let Err(e) = result {
                failed += 1;
                if failed <= LOG_MAX {
                    crate::machine::log(&format!(
                        "share event {} {} {}: {e}",
                        ev.tag, ev.kind, ev.path
                    ));
                }
            }
        }
        if ack.write_all(b"\n").is_err() {
            return;
        }
    }
}

/// The (tag, share-relative path) pairs of `sources` (resolved guest
/// paths) under the shares mounted at `shares` (tag, mount point); a
/// source under nested shares belongs to the innermost.
pub fn watch_set(shares: &[(String, PathBuf)], sources: &[PathBuf]) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for src in sources {
        let best = shares
            .iter()
            .filter_map(|(tag, mp)| Some((tag, mp, src.strip_prefix(mp).ok()?)))
            .max_by_key(|(_, mp, _)| mp.as_os_str().len());
        if let Some((tag, _, rel)) = best {
            if let Some(rel) = rel.to_str() {
                out.insert((tag.clone(), rel.to_string()));
            }
        }
    }
    out
}

/// The watch line of `set`.
pub fn watch_line(set: &BTreeSet<(String, String)>) -> String {
    let watch: Vec<_> = set
        .iter()
        .map(|(tag, path)| serde_json::json!({"tag": tag, "path": path}))
        .collect();
    let mut line = serde_json::json!({ "watch": watch }).to_string();
    line.push('\n');
    line
}

/// A writer shared by the acknowledgements and the watch lines: each
/// write goes out whole under the lock, so lines never interleave.
#[derive(Clone)]
struct Shared(Arc<Mutex<std::fs::File>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut f = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends the VMM the folders the running containers bind-mount, now and
/// whenever a registration in `dir` changes.
fn follow_interest(shares: &[(String, PathBuf)], dir: &Path, mut out: Shared, generation: u64) {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let _ = std::fs::create_dir_all(dir);
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC).ok().filter(|i| {
        i.add_watch(
            dir,
            AddWatchFlags::IN_CREATE
                | AddWatchFlags::IN_DELETE
                | AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_MOVED_FROM
                | AddWatchFlags::IN_CLOSE_WRITE,
        )
        .is_ok()
    });
    let mut last = None;
    loop {
        if GENERATION.load(std::sync::atomic::Ordering::SeqCst) != generation {
            // Stopped (a suspend): `out`, the socket's last holder, closes.
            return;
        }
        let sources: Vec<PathBuf> = crate::engine::share_watch::registered(dir)
            .into_iter()
            .filter_map(|p| std::fs::canonicalize(p).ok())
            .collect();
        let set = watch_set(shares, &sources);
        if last.as_ref() != Some(&set) {
            if out.write_all(watch_line(&set).as_bytes()).is_err() {
                return;
            }
            crate::machine::log(&format!(
                "share events: {} folder(s) bind-mounted by containers",
                set.len()
            ));
            last = Some(set);
        }
        match &inotify {
            Some(i) => {
                if i.read_events().is_err() {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
            }
            None => std::thread::sleep(std::time::Duration::from_secs(1)),
        }
    }
}

/// Connects to the VMM's event stream and serves it on a thread of its
/// own (no stream: a VMM without the watcher; nothing happens). Another
/// thread tells the VMM which folders to watch (see the module docs).
/// The socket of the running event stream (a duplicate, for [`stop`]).
static STREAM: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// Ends the running event stream, if any: its socket is shut down, so the
/// VMM sees the connection close and the serving thread returns (the
/// interest thread returns at its next write). Before a suspend: a
/// snapshot carries no vsock connection.
pub fn stop() {
    let fd = STREAM.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(fd) = fd {
        // SAFETY: shutdown(2) on a socket descriptor this process owns.
        unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) };
    }
    // The interest thread holds the socket too, asleep on its inotify
    // watch: a new generation and a file made and removed in the folder
    // it watches wake it, and it returns, so that the socket is closed
    // (a snapshot refuses a connection the guest has only shut down).
    GENERATION.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    if let Some(dir) = INTEREST_DIR
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
    {
        let wake = dir.join(".stop");
        let _ = std::fs::File::create(&wake);
        let _ = std::fs::remove_file(&wake);
    }
}

/// Bumped by [`stop`]: an interest thread of an older generation returns.
static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// The folder the interest thread watches (for [`stop`]'s wake-up).
static INTEREST_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

pub fn spawn(shares: Vec<(String, PathBuf)>, engine_root: &Path) {
    if shares.is_empty() {
        return;
    }
    let dir = crate::engine::share_watch::interest_dir(engine_root);
    let _ = std::thread::Builder::new()
        .name("share-events".into())
        .spawn(move || {
            let fd = match connect(PORT) {
                Ok(fd) => fd,
                Err(e) => {
                    crate::machine::log(&format!("share events: no stream from the VMM ({e})"));
                    return;
                }
            };
            let reader = match fd.try_clone() {
                Ok(r) => std::fs::File::from(r),
                Err(_) => return,
            };
            if let Ok(d) = fd.try_clone() {
                *STREAM.lock().unwrap_or_else(|e| e.into_inner()) = Some(d);
            }
            let out = Shared(Arc::new(Mutex::new(std::fs::File::from(fd))));
            let watch_out = out.clone();
            let watch_shares = shares.clone();
            let generation = GENERATION.load(std::sync::atomic::Ordering::SeqCst);
            *INTEREST_DIR.lock().unwrap_or_else(|e| e.into_inner()) = Some(dir.clone());
            let _ = std::thread::Builder::new()
                .name("share-watch".into())
                .spawn(move || follow_interest(&watch_shares, &dir, watch_out, generation));
            serve(&shares, reader, out);
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_stay_under_the_share() {
        let root = Path::new("/host_mnt/x");
        assert_eq!(under(root, "a/b"), Some(PathBuf::from("/host_mnt/x/a/b")));
        for bad in ["", "/etc/passwd", "../x", "a/../../b", "./a", "a\0b"] {
            assert_eq!(under(root, bad), None, "{bad:?}");
        }
    }

    #[test]
    fn applies_events_in_order_and_acknowledges_each() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let lines = [
            r#"{"seq":1,"tag":"s0","kind":"mkdir","path":"d"}"#,
            r#"{"seq":2,"tag":"s0","kind":"create","type":"file","path":"d/f"}"#,
            r#"{"seq":3,"tag":"s0","kind":"modify","path":"d/f"}"#,
            r#"{"seq":4,"tag":"s0","kind":"rename","path":"d/f","to":"g"}"#,
            r#"{"seq":5,"tag":"s0","kind":"create","type":"symlink","path":"l"}"#,
            r#"{"seq":6,"tag":"s0","kind":"rmdir","path":"d"}"#,
            r#"{"seq":7,"tag":"nope","kind":"mkdir","path":"x"}"#,
            r#"{"seq":8,"tag":"s0","kind":"mkdir","path":"../escape"}"#,
            "not json",
            r#"{"seq":9,"tag":"s0","kind":"attrib","path":"g"}"#,
        ];
        let mut input = lines.join("\n");
        input.push('\n');
        let mut acks = Vec::new();
        serve(&[("s0".into(), root.clone())], input.as_bytes(), &mut acks);
        assert_eq!(acks.len(), lines.len(), "one ack per line");
        assert!(root.join("g").is_file());
        assert!(!root.join("d").exists());
        assert!(root
            .join("l")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(!root.join("x").exists() && !dir.path().join("../escape").exists());
    }

    #[test]
    fn bind_sources_map_to_share_relative_folders() {
        let shares = vec![
            ("s0".to_string(), PathBuf::from("/host_mnt/tmp")),
            ("s1".to_string(), PathBuf::from("/host_mnt/tmp/inner")),
            ("s2".to_string(), PathBuf::from("/host_mnt/home/u")),
        ];
        let sources: Vec<PathBuf> = [
            "/host_mnt/tmp/a/b",
            "/host_mnt/tmp/inner/c",
            "/host_mnt/home/u",
            "/host_mnt/home/other",
            "/var/lib/x",
            "/host_mnt/tmpfoo",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        let set = watch_set(&shares, &sources);
        let want: BTreeSet<(String, String)> = [("s0", "a/b"), ("s1", "c"), ("s2", "")]
            .iter()
            .map(|(t, p)| (t.to_string(), p.to_string()))
            .collect();
        assert_eq!(set, want);
        let line = watch_line(&set);
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v["watch"][0],
            serde_json::json!({"tag": "s0", "path": "a/b"})
        );
        assert_eq!(watch_line(&BTreeSet::new()), "{\"watch\":[]}\n");
    }
}
