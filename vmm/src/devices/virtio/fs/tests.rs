//! The virtio-fs device driven with raw FUSE requests built in guest
//! memory and handed over on its request queue, as a hostile guest would.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use fuse_backend_rs::abi::fuse_abi::{
    AccessIn, AttrOut, CreateIn, Dirent, EntryOut, GetattrIn, GetxattrIn, InHeader, MkdirIn,
    MknodIn, Opcode, OpenIn, OpenOut, OutHeader, ReadIn, SetattrIn, SetxattrIn, WriteIn,
};
use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Address, ByteValued, Bytes, GuestAddress};

use super::{Fs, FsConfig, Override, OVERRIDE_XATTR};
use crate::devices::test_thread::{on_thread, DeviceThread, Kind};
use crate::devices::virtio::test_utils::{null_interrupt, test_memory};
use crate::devices::virtio::{ActivateContext, VirtioDevice, VIRTIO_F_VERSION_1};
use crate::GuestMemoryMmap;
use std::sync::{Arc, Mutex};

const ROOT: u64 = 1;
const QSIZE: u16 = 256;
const HIPRIO_Q: u64 = 0x1000;
const REQUEST_Q: u64 = 0x1_0000;
const IN_ADDR: u64 = 0x10_0000;
const OUT_ADDR: u64 = 0x40_0000;
const OUT_LEN: u32 = 64 * 1024;

/// A share laid out for attacks: `<tmp>/outside/secret.txt` next to the
/// share `<tmp>/share` holding `hello.txt`, `d/`, and symlinks leading out.
struct Layout {
    _tmp: tempfile::TempDir,
    share: PathBuf,
    outside: PathBuf,
}

const SECRET: &[u8] = b"host secret, not for the guest\n";

fn layout() -> Layout {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(share.join("d")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), SECRET).unwrap();
    std::fs::set_permissions(
        outside.join("secret.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::write(share.join("hello.txt"), b"hello from the host").unwrap();
    std::os::unix::fs::symlink(&outside, share.join("esc")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", share.join("passwd")).unwrap();
    std::os::unix::fs::symlink("../outside/secret.txt", share.join("secret")).unwrap();
    Layout {
        _tmp: tmp,
        share,
        outside,
    }
}

/// One activated device and its request queue.
struct Session<'a> {
    mem: &'a GuestMemoryMmap,
    vq: MockSplitQueue<'a, GuestMemoryMmap>,
    dev: Arc<Mutex<Fs>>,
    /// The events thread that serves every request, under its filter, as
    /// production's one `berth-events` thread (the server's files are
    /// opened and used by the same thread and credentials).
    events: DeviceThread<Arc<Mutex<Fs>>>,
    next_desc: u16,
    requests: u16,
    unique: u64,
}

impl<'a> Session<'a> {
    fn new(mem: &'a GuestMemoryMmap, root: &Path, read_only: bool) -> Self {
        let hq = MockSplitQueue::create(mem, GuestAddress(HIPRIO_Q), QSIZE);
        let vq = MockSplitQueue::create(mem, GuestAddress(REQUEST_Q), QSIZE);
        let mut dev = Fs::new(&FsConfig {
            tag: "t1".into(),
            path: root.to_path_buf(),
            read_only,
        })
        .unwrap();
        {
            let ctx = ActivateContext {
                mem: mem.clone(),
                queues: vec![hq.create_queue().unwrap(), vq.create_queue().unwrap()],
                interrupt: null_interrupt(),
                acked_features: VIRTIO_F_VERSION_1,
            };
            on_thread(Kind::Vcpu, || dev.activate(ctx))
        }
        .unwrap();
        let dev = Arc::new(Mutex::new(dev));
        Session {
            mem,
            vq,
            events: DeviceThread::spawn(Kind::EventsWithShares, dev.clone()),
            dev,
            next_desc: 0,
            requests: 0,
            unique: 0,
        }
    }

    /// The device, for what the test asks of it directly.
    fn dev(&self) -> std::sync::MutexGuard<'_, Fs> {
        self.dev.lock().unwrap()
    }

    /// Resets the driver and activates it again on fresh queues, as a guest
    /// that reloads its virtio-fs driver does.
    fn restart(&mut self) {
        let dev = self.dev.clone();
        on_thread(Kind::Vcpu, || dev.lock().unwrap().reset());
        let hq = MockSplitQueue::create(self.mem, GuestAddress(HIPRIO_Q), QSIZE);
        self.vq = MockSplitQueue::create(self.mem, GuestAddress(REQUEST_Q), QSIZE);
        {
            let ctx = ActivateContext {
                mem: self.mem.clone(),
                queues: vec![hq.create_queue().unwrap(), self.vq.create_queue().unwrap()],
                interrupt: null_interrupt(),
                acked_features: VIRTIO_F_VERSION_1,
            };
            on_thread(Kind::Vcpu, || dev.lock().unwrap().activate(ctx))
        }
        .unwrap();
        self.next_desc = 0;
        self.requests = 0;
    }

    /// Puts `bytes` (header included) on the request queue with a 64 KiB
    /// reply buffer; returns the used length and the reply buffer.
    fn raw(&mut self, bytes: &[u8]) -> (u32, Vec<u8>) {
        self.mem.write_slice(bytes, GuestAddress(IN_ADDR)).unwrap();
        self.mem
            .write_slice(&vec![0u8; OUT_LEN as usize], GuestAddress(OUT_ADDR))
            .unwrap();
        let i = self.next_desc;
        let descs = [
            RawDescriptor::from(Descriptor::new(
                IN_ADDR,
                bytes.len() as u32,
                VRING_DESC_F_NEXT as u16,
                i + 1,
            )),
            RawDescriptor::from(Descriptor::new(
                OUT_ADDR,
                OUT_LEN,
                VRING_DESC_F_WRITE as u16,
                0,
            )),
        ];
        self.vq.add_desc_chains(&descs, i).unwrap();
        self.next_desc = (i + 2) % QSIZE;
        // As production's events thread, under its filter; a test that
        // switched this thread's credentials (`AsUser`) runs the request
        // here, as that user (a confined thread cannot switch).
        // SAFETY: getuid and geteuid only read this thread's credentials.
        if unsafe { libc::geteuid() == libc::getuid() } {
            self.events.call(|d| d.lock().unwrap().process_queue(1));
        } else {
            self.dev().process_queue(1);
        }
        let slot = u64::from(self.requests % QSIZE);
        self.requests = self.requests.wrapping_add(1);
        let used_idx: u16 = self
            .mem
            .read_obj(self.vq.used_addr().unchecked_add(2))
            .unwrap();
        assert_eq!(used_idx, self.requests, "every request is returned");
        let used_len: u32 = self
            .mem
            .read_obj(self.vq.used_addr().unchecked_add(4 + 8 * slot + 4))
            .unwrap();
        let mut out = vec![0u8; OUT_LEN as usize];
        self.mem
            .read_slice(&mut out, GuestAddress(OUT_ADDR))
            .unwrap();
        (used_len, out)
    }

    /// A well-formed request from uid/gid 1000; `Err(errno)` for an
    /// error reply.
    fn call(&mut self, opcode: Opcode, nodeid: u64, body: &[u8]) -> Result<Vec<u8>, i32> {
        self.call_as(1000, 1000, opcode, nodeid, body)
    }

    /// A well-formed request from `uid`/`gid`.
    fn call_as(
        &mut self,
        uid: u32,
        gid: u32,
        opcode: Opcode,
        nodeid: u64,
        body: &[u8],
    ) -> Result<Vec<u8>, i32> {
        self.unique += 1;
        let header = InHeader {
            len: (std::mem::size_of::<InHeader>() + body.len()) as u32,
            opcode: opcode as u32,
            unique: self.unique,
            nodeid,
            uid,
            gid,
            pid: 42,
            padding: 0,
        };
        let mut bytes = header.as_slice().to_vec();
        bytes.extend_from_slice(body);
        let (used, out) = self.raw(&bytes);
        let oh = OutHeader::from_slice(&out[..16]).copied().unwrap();
        assert_eq!(oh.unique, self.unique, "reply to this request");
        assert_eq!(used, oh.len, "used length is the reply length");
        if oh.error != 0 {
            return Err(-oh.error);
        }
        Ok(out[16..oh.len as usize].to_vec())
    }

    fn lookup(&mut self, parent: u64, name: &[u8]) -> Result<EntryOut, i32> {
        let mut body = name.to_vec();
        body.push(0);
        let out = self.call(Opcode::Lookup, parent, &body)?;
        Ok(
            EntryOut::from_slice(&out[..std::mem::size_of::<EntryOut>()])
                .copied()
                .unwrap(),
        )
    }

    fn getattr(&mut self, node: u64) -> Result<AttrOut, i32> {
        let out = self.call(Opcode::Getattr, node, GetattrIn::default().as_slice())?;
        Ok(AttrOut::from_slice(&out[..std::mem::size_of::<AttrOut>()])
            .copied()
            .unwrap())
    }

    fn open(&mut self, node: u64, flags: i32) -> Result<u64, i32> {
        let body = OpenIn {
            flags: flags as u32,
            fuse_flags: 0,
        };
        let out = self.call(Opcode::Open, node, body.as_slice())?;
        Ok(OpenOut::from_slice(&out[..std::mem::size_of::<OpenOut>()])
            .unwrap()
            .fh)
    }

    fn read(&mut self, node: u64, fh: u64, size: u32) -> Result<Vec<u8>, i32> {
        let body = ReadIn {
            fh,
            size,
            ..Default::default()
        };
        self.call(Opcode::Read, node, body.as_slice())
    }

    fn write(&mut self, node: u64, fh: u64, data: &[u8]) -> Result<Vec<u8>, i32> {
        let body = WriteIn {
            fh,
            size: data.len() as u32,
            ..Default::default()
        };
        let mut bytes = body.as_slice().to_vec();
        bytes.extend_from_slice(data);
        self.call(Opcode::Write, node, &bytes)
    }

    fn create(&mut self, parent: u64, name: &[u8], flags: i32, mode: u32) -> Result<u64, i32> {
        let args = CreateIn {
            flags: flags as u32,
            mode,
            umask: 0,
            fuse_flags: 0,
        };
        let mut body = args.as_slice().to_vec();
        body.extend_from_slice(name);
        body.push(0);
        let out = self.call(Opcode::Create, parent, &body)?;
        Ok(
            EntryOut::from_slice(&out[..std::mem::size_of::<EntryOut>()])
                .unwrap()
                .nodeid,
        )
    }

    /// CREATE by `uid`/`gid`: the entry and the open handle.
    fn create_as(
        &mut self,
        (uid, gid): (u32, u32),
        parent: u64,
        name: &[u8],
        flags: i32,
        mode: u32,
    ) -> Result<(EntryOut, u64), i32> {
        let args = CreateIn {
            flags: flags as u32,
            mode: libc::S_IFREG | mode,
            umask: 0o022,
            fuse_flags: 0,
        };
        let mut body = args.as_slice().to_vec();
        body.extend_from_slice(name);
        body.push(0);
        let out = self.call_as(uid, gid, Opcode::Create, parent, &body)?;
        let n = std::mem::size_of::<EntryOut>();
        let entry = EntryOut::from_slice(&out[..n]).copied().unwrap();
        let open = OpenOut::from_slice(&out[n..n + std::mem::size_of::<OpenOut>()])
            .copied()
            .unwrap();
        Ok((entry, open.fh))
    }

    fn mkdir(&mut self, parent: u64, name: &[u8]) -> Result<EntryOut, i32> {
        self.mkdir_as((1000, 1000), parent, name, 0o755)
    }

    fn mkdir_as(
        &mut self,
        (uid, gid): (u32, u32),
        parent: u64,
        name: &[u8],
        mode: u32,
    ) -> Result<EntryOut, i32> {
        let args = MkdirIn { mode, umask: 0 };
        let mut body = args.as_slice().to_vec();
        body.extend_from_slice(name);
        body.push(0);
        let out = self.call_as(uid, gid, Opcode::Mkdir, parent, &body)?;
        Ok(
            EntryOut::from_slice(&out[..std::mem::size_of::<EntryOut>()])
                .copied()
                .unwrap(),
        )
    }

    /// Every entry READDIRPLUS returns for directory `node`, by name.
    fn readdirplus(&mut self, node: u64) -> Vec<(String, EntryOut)> {
        let open = OpenIn {
            flags: libc::O_RDONLY as u32,
            fuse_flags: 0,
        };
        let out = self.call(Opcode::Opendir, node, open.as_slice()).unwrap();
        let fh = OpenOut::from_slice(&out[..std::mem::size_of::<OpenOut>()])
            .unwrap()
            .fh;
        let mut entries = Vec::new();
        let mut offset = 0;
        loop {
            let body = ReadIn {
                fh,
                offset,
                size: 32 * 1024,
                ..Default::default()
            };
            let out = self
                .call(Opcode::Readdirplus, node, body.as_slice())
                .unwrap();
            if out.is_empty() {
                return entries;
            }
            let mut rest = &out[..];
            while !rest.is_empty() {
                let n = std::mem::size_of::<EntryOut>();
                let entry = EntryOut::from_slice(&rest[..n]).copied().unwrap();
                let d = std::mem::size_of::<Dirent>();
                let dirent = Dirent::from_slice(&rest[n..n + d]).copied().unwrap();
                let name = &rest[n + d..n + d + dirent.namelen as usize];
                entries.push((String::from_utf8(name.to_vec()).unwrap(), entry));
                offset = dirent.off;
                let len = (n + d + dirent.namelen as usize + 7) & !7;
                rest = &rest[len..];
            }
        }
    }

    fn setattr(&mut self, node: u64, args: SetattrIn) -> Result<AttrOut, i32> {
        let out = self.call(Opcode::Setattr, node, args.as_slice())?;
        Ok(AttrOut::from_slice(&out[..std::mem::size_of::<AttrOut>()])
            .copied()
            .unwrap())
    }
}

// FATTR_* bits of SetattrIn::valid.
const FATTR_MODE: u32 = 1 << 0;
const FATTR_UID: u32 = 1 << 1;
const FATTR_GID: u32 = 1 << 2;
const FATTR_SIZE: u32 = 1 << 3;

fn is_symlink(mode: u32) -> bool {
    mode & libc::S_IFMT == libc::S_IFLNK
}

fn host_ino(p: &Path) -> u64 {
    std::fs::symlink_metadata(p).unwrap().ino()
}

#[test]
fn trace_logs_one_line_per_request_with_its_opcode() {
    let l = layout();
    let mem = test_memory();
    let mut s = Session::new(&mem, &l.share, false);
    let log = l.share.parent().unwrap().join("trace.log");
    s.dev().trace_to(std::fs::File::create(&log).unwrap());
    let e = s.lookup(ROOT, b"hello.txt").unwrap();
    s.getattr(e.nodeid).unwrap();
    assert_eq!(s.lookup(ROOT, b"missing").err(), Some(libc::ENOENT));
    let text = std::fs::read_to_string(&log).unwrap();
    let ops: Vec<&str> = text
        .lines()
        .map(|line| {
            let (time, op) = line.split_once(' ').expect("TIME OPCODE");
            assert!(time.parse::<f64>().unwrap() > 1.0e9, "{line}");
            op
        })
        .collect();
    let (lookup, getattr) = (Opcode::Lookup as u32, Opcode::Getattr as u32);
    assert_eq!(
        ops,
        [lookup, getattr, lookup].map(|o| o.to_string()),
        "{text}"
    );
}

#[test]
fn dotdot_at_the_root_stays_at_the_root() {
    let l = layout();
    let mem = test_memory();
    let mut s = Session::new(&mem, &l.share, false);
    let root_ino = host_ino(&l.share);
    let up = s.lookup(ROOT, b"..").unwrap();
    assert_eq!(up.nodeid, ROOT);
    assert_eq!(up.attr.ino, root_ino);
    // Twice more, and from a subdirectory: still the share's root.
    let d = s.lookup(ROOT, b"d").unwrap();
    let d_up = s.lookup(d.nodeid, b"..").unwrap();
    assert_eq!(d_up.attr.ino, root_ino);
    let up2 = s.lookup(up.nodeid, b"..").unwrap();
    assert_eq!(up2.attr.ino, root_ino);
    // The share's siblings are not reachable through it.
    assert_eq!(s.lookup(up2.nodeid, b"outside").err(), Some(libc::ENOENT));
    // A NUL ends the name: "..\0/outside" is "..", i.e. the root again.
    let nul = s.lookup(ROOT, b"..\0/outside").unwrap();
    assert_eq!(nul.attr.ino, root_ino);
    // READDIRPLUS-style lookups of ".." from the root also stay (same
    // code path), and "." is the root.
    assert_eq!(s.lookup(ROOT, b".").unwrap().attr.ino, root_ino);
}

#[test]
fn symlinks_leading_out_are_not_followed() {
    let l = layout();
    let mem = test_memory();
    let mut s = Session::new(&mem, &l.share, false);
    // `esc` -> <tmp>/outside (absolute): the symlink itself, not the dir.
    let esc = s.lookup(ROOT, b"esc").unwrap();
    assert!(is_symlink(esc.attr.mode), "mode {:o}", esc.attr.mode);
    assert_eq!(esc.attr.ino, host_ino(&l.share.join("esc")));
    assert_ne!(esc.attr.ino, host_ino(&l.outside));
    // Walking through it fails: the server does not follow it.
    assert_eq!(
        s.lookup(esc.nodeid, b"secret.txt").err(),
        Some(libc::ENOTDIR)
    );
    // Its target is only text (the guest kernel resolves it in the guest).
    let target = s.call(Opcode::Readlink, esc.nodeid, &[]).unwrap();
    assert_eq!(target, l.outside.as_os_str().as_encoded_bytes());
    // Opening it as a directory is refused too.
    let body = OpenIn {
        flags: libc::O_DIRECTORY as u32,
        fuse_flags: 0,
    };
    assert!(s
        .call(Opcode::Opendir, esc.nodeid, body.as_slice())
        .is_err());
}

#[test]
fn opening_a_symlink_to_a_host_file_reads_nothing() {
    let l = layout();
    let mem = test_memory();
    let mut s = Session::new(&mem, &l.share, false);
    let passwd = s.lookup(ROOT, b"passwd").unwrap();
    assert!(is_symlink(passwd.attr.mode));
    assert_ne!(passwd.attr.ino, host_ino(Path::new("/etc/passwd")));
    assert_eq!(
        s.open(passwd.nodeid, libc::O_RDONLY).err(),
        Some(libc::EBADF)
    );
    // A made-up handle does not read anything either.
    assert_eq!(s.read(passwd.nodeid, 1, 4096).err(), Some(libc::EBADF));
    // CREATE on the existing symlink (no O_EXCL) must not open its target.
    assert!(s
        .create(ROOT, b"passwd", libc::O_RDWR | libc::O_CREAT, 0o644)
        .is_err());

    // Metadata changes through a symlink to a file outside the share do
    // not reach the file.
    let secret = s.lookup(ROOT, b"secret").unwrap();
    assert!(is_symlink(secret.attr.mode));
    let before = std::fs::metadata(l.outside.join("secret.txt")).unwrap();
    let chmod = SetattrIn {
        valid: FATTR_MODE,
        mode: 0o666,
        ..Default::default()
    };
    let _ = s.setattr(secret.nodeid, chmod);
    let truncate = SetattrIn {
        valid: FATTR_SIZE,
        size: 0,
        ..Default::default()
    };
    assert!(s.setattr(secret.nodeid, truncate).is_err());
    let after = std::fs::metadata(l.outside.join("secret.txt")).unwrap();
    assert_eq!(after.permissions().mode(), before.permissions().mode());
    assert_eq!(std::fs::read(l.outside.join("secret.txt")).unwrap(), SECRET);
    // A regular file in the share reads normally.
    let hello = s.lookup(ROOT, b"hello.txt").unwrap();
    let fh = s.open(hello.nodeid, libc::O_RDONLY).unwrap();
    assert_eq!(
        s.read(hello.nodeid, fh, 4096).unwrap(),
        b"hello from the host"
    );
}

#[test]
fn hostile_names_and_lengths_are_refused() {
    let l = layout();
    let mem = test_memory();
    let mut s = Session::new(&mem, &l.share, false);
    // '/' inside a name.
    assert_eq!(s.lookup(ROOT, b"d/../../outside").err(), Some(libc::EINVAL));
    assert_eq!(s.lookup(ROOT, b"esc/secret.txt").err(), Some(libc::EINVAL));
    // Creating names must be plain components.
    for bad in [&b"."[..], b"..", b"x/y", b""] {
        assert!(s.mkdir(ROOT, bad).is_err(), "{:?}", bad);
    }
    assert!(s.create(ROOT, b"../escape", libc::O_RDWR, 0o644).is_err());
    assert!(!l.share.parent().unwrap().join("escape").exists());
    // An oversized name.
    assert_eq!(s.lookup(ROOT, &[b'a'; 300]).err(), Some(libc::ENAMETOOLONG));
    assert_eq!(s.mkdir(ROOT, &[b'a'; 300]).err(), Some(libc::ENAMETOOLONG));
    // A name without its terminating NUL.
    assert_eq!(
        s.call(Opcode::Lookup, ROOT, b"hello.txt").err(),
        Some(libc::EINVAL)
    );

    // A header that claims more than the chain holds: no reply, and the
    // device keeps serving.
    let mut h = InHeader {
        len: 40 + 1000,
        opcode: Opcode::Lookup as u32,
        unique: 999,
        nodeid: ROOT,
        ..Default::default()
    };
    let mut bytes = h.as_slice().to_vec();
    bytes.extend_from_slice(b"hello.txt\0");
    assert_eq!(s.raw(&bytes).0, 0);
    // A header that claims less than a header.
    h.len = 8;
    assert_eq!(s.raw(h.as_slice()).0, 0);
    // A request over the server's limit (1 MiB + 4 KiB) is refused.
    h.len = (1 << 20) + 4096 + 1;
    let (used, out) = s.raw(h.as_slice());
    assert!(used >= 16);
    let oh = OutHeader::from_slice(&out[..16]).copied().unwrap();
    assert_eq!(oh.error, -libc::ENOMEM);
    // A chain shorter than a header.
    assert_eq!(s.raw(&[1, 2, 3]).0, 0);
    // An unknown opcode.
    s.unique += 1;
    let h = InHeader {
        len: 40,
        opcode: 4000,
        unique: s.unique,
        nodeid: ROOT,
        ..Default::default()
    };
    let (_, out) = s.raw(h.as_slice());
    let oh = OutHeader::from_slice(&out[..16]).copied().unwrap();
    assert_eq!(oh.error, -libc::ENOSYS);
    // Still serving.
    assert!(s.lookup(ROOT, b"hello.txt").is_ok());
}

/// READ and WRITE sizes the guest claims are bounded: a read larger than
/// the reply buffer or the server's limit, and a write whose size claims
/// more than the request carries, are refused without touching the file.
#[test]
fn read_and_write_sizes_are_bounded() {
    let l = layout();
    let mem = test_memory();
    let mut s = Session::new(&mem, &l.share, false);
    let hello = s.lookup(ROOT, b"hello.txt").unwrap();
    let fh = s.open(hello.nodeid, libc::O_RDWR).unwrap();
    for size in [u32::MAX, 1 << 30, (1 << 20) + 4096 + 1, OUT_LEN * 2] {
        assert!(s.read(hello.nodeid, fh, size).is_err(), "read {size}");
    }
    for claimed in [u32::MAX, 1 << 30, 11] {
        let body = WriteIn {
            fh,
            size: claimed,
            ..Default::default()
        };
        let mut bytes = body.as_slice().to_vec();
        bytes.extend_from_slice(b"overwrite");
        let r = s.call(Opcode::Write, hello.nodeid, &bytes);
        // At most the bytes the request carries reach the file.
        if let Ok(out) = r {
            let written = u32::from_le_bytes(out[..4].try_into().unwrap());
            assert!(written <= 9, "write claiming {claimed} wrote {written}");
        }
        let now = std::fs::read(l.share.join("hello.txt")).unwrap();
        assert_eq!(now.len(), b"hello from the host".len(), "{claimed}");
        assert!(
            now == b"hello from the host" || now == b"overwritem the host",
            "{:?}",
            String::from_utf8_lossy(&now)
        );
    }
    // Still serving, and in-bounds I/O works.
    assert_eq!(s.read(hello.nodeid, fh, 4).unwrap().len(), 4);
}

#[test]
fn unknown_node_ids_are_refused() {
    let l = layout();
    let mem = test_memory();
    let mut s = Session::new(&mem, &l.share, false);
    for node in [0, 2, 12345, u64::MAX] {
        assert_eq!(s.getattr(node).err(), Some(libc::EBADF), "node {node}");
        assert_eq!(s.lookup(node, b"hello.txt").err(), Some(libc::EBADF));
        assert_eq!(s.open(node, libc::O_RDONLY).err(), Some(libc::EBADF));
        assert_eq!(s.mkdir(node, b"x").err(), Some(libc::EBADF));
    }
    // A forgotten node is gone too (FORGET has no reply: hand it to the
    // server directly through the high-priority path's code).
    let hello = s.lookup(ROOT, b"hello.txt").unwrap();
    assert!(s.getattr(hello.nodeid).is_ok());
    forget(&mut s, hello.nodeid, 1);
    assert_eq!(s.getattr(hello.nodeid).err(), Some(libc::EBADF));
    // The root cannot be forgotten.
    forget(&mut s, ROOT, 100);
    assert!(s.getattr(ROOT).is_ok());
}

/// FORGET on the request queue (it gets no reply; the used length is 0).
fn forget(s: &mut Session<'_>, node: u64, n: u64) {
    let h = InHeader {
        len: 48,
        opcode: Opcode::Forget as u32,
        unique: 0,
        nodeid: node,
        ..Default::default()
    };
    let mut bytes = h.as_slice().to_vec();
    bytes.extend_from_slice(&n.to_le_bytes());
    assert_eq!(s.raw(&bytes).0, 0);
}

#[test]
fn read_only_shares_refuse_every_change_in_the_server() {
    let l = layout();
    let mem = test_memory();
    let mut s = Session::new(&mem, &l.share, true);
    let hello = s.lookup(ROOT, b"hello.txt").unwrap();
    let d = s.lookup(ROOT, b"d").unwrap();
    let erofs = Some(libc::EROFS);
    assert_eq!(s.create(ROOT, b"new", libc::O_RDWR, 0o644).err(), erofs);
    assert_eq!(s.mkdir(ROOT, b"new").err(), erofs);
    assert_eq!(s.open(hello.nodeid, libc::O_WRONLY).err(), erofs);
    assert_eq!(s.open(hello.nodeid, libc::O_RDWR).err(), erofs);
    assert_eq!(
        s.open(hello.nodeid, libc::O_RDONLY | libc::O_TRUNC).err(),
        erofs
    );
    let truncate = SetattrIn {
        valid: FATTR_SIZE,
        ..Default::default()
    };
    assert_eq!(s.setattr(hello.nodeid, truncate).err(), erofs);
    assert_eq!(s.call(Opcode::Unlink, ROOT, b"hello.txt\0").err(), erofs);
    assert_eq!(s.call(Opcode::Rmdir, ROOT, b"d\0").err(), erofs);
    let mut rename = d.nodeid.to_le_bytes().to_vec();
    rename.extend_from_slice(b"hello.txt\0moved\0");
    assert_eq!(s.call(Opcode::Rename, ROOT, &rename).err(), erofs);
    assert_eq!(
        s.call(Opcode::Symlink, ROOT, b"link\0/etc/passwd\0").err(),
        erofs
    );
    let mut link = hello.nodeid.to_le_bytes().to_vec();
    link.extend_from_slice(b"hard\0");
    assert_eq!(s.call(Opcode::Link, d.nodeid, &link).err(), erofs);
    let mut mknod = MknodIn {
        mode: libc::S_IFIFO | 0o644,
        ..Default::default()
    }
    .as_slice()
    .to_vec();
    mknod.extend_from_slice(b"fifo\0");
    assert_eq!(s.call(Opcode::Mknod, ROOT, &mknod).err(), erofs);
    // A handle opened for reading cannot be written through.
    let fh = s.open(hello.nodeid, libc::O_RDONLY).unwrap();
    assert_eq!(s.write(hello.nodeid, fh, b"x").err(), erofs);
    assert_eq!(
        s.read(hello.nodeid, fh, 100).unwrap(),
        b"hello from the host"
    );
    // Nothing changed on the host.
    let mut names: Vec<_> = std::fs::read_dir(&l.share)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["d", "esc", "hello.txt", "passwd", "secret"]);
    assert_eq!(
        std::fs::read(l.share.join("hello.txt")).unwrap(),
        b"hello from the host"
    );
}

#[test]
fn guest_changes_reach_the_host_without_set_id_bits_or_devices() {
    let l = layout();
    let mem = test_memory();
    let mut s = Session::new(&mem, &l.share, false);
    let node = s
        .create(ROOT, b"from-guest", libc::O_RDWR, 0o4755 | libc::S_IFREG)
        .unwrap();
    let fh = s.open(node, libc::O_RDWR).unwrap();
    s.write(node, fh, b"written by the guest").unwrap();
    let host = l.share.join("from-guest");
    assert_eq!(std::fs::read(&host).unwrap(), b"written by the guest");
    let meta = std::fs::metadata(&host).unwrap();
    assert_eq!(meta.mode() & 0o7000, 0, "set-id bits are stripped");
    // The VMM's credentials, not the guest's uid 1000.
    assert_eq!(meta.uid(), euid());
    // chmod u+s is stripped; chown goes to the override only.
    let chmod = SetattrIn {
        valid: FATTR_MODE | FATTR_UID,
        mode: 0o6777,
        uid: 4242,
        ..Default::default()
    };
    let attr = s.setattr(node, chmod).unwrap();
    assert_eq!(attr.attr.mode & 0o7777, 0o777);
    let meta = std::fs::metadata(&host).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o777);
    assert_ne!(meta.uid(), 4242);
    assert_eq!(attr.attr.uid, 4242);
    // Device nodes are refused.
    let mut mknod = MknodIn {
        mode: libc::S_IFCHR | 0o666,
        rdev: libc::makedev(1, 3) as u32,
        ..Default::default()
    }
    .as_slice()
    .to_vec();
    mknod.extend_from_slice(b"null\0");
    assert_eq!(s.call(Opcode::Mknod, ROOT, &mknod).err(), Some(libc::EPERM));
    assert!(!l.share.join("null").exists());
    // A directory made by the guest.
    let made = s.mkdir(ROOT, b"newdir").unwrap();
    assert_eq!(made.attr.mode & libc::S_IFMT, libc::S_IFDIR);
    assert!(l.share.join("newdir").is_dir());
}

#[test]
fn device_shape() {
    let l = layout();
    let mut dev =
        Fs::new(&FsConfig::parse(&format!("tag=t1,path={}", l.share.display())).unwrap()).unwrap();
    assert_eq!(dev.device_type(), 26);
    assert_eq!(dev.queue_max_sizes().len(), 2);
    // Linux's driver caps a request at the queue size less 4 descriptors
    // (FUSE_HEADER_OVERHEAD): a whole max_pages (256) request must fit,
    // or every 1 MiB read or write becomes two requests.
    for (q, size) in dev.queue_max_sizes().iter().enumerate() {
        assert!(
            usize::from(*size) >= 256 + 4 && size.is_power_of_two(),
            "queue {q}: {size}"
        );
    }
    let mut cfg = [0u8; 40];
    dev.read_config(0, &mut cfg);
    assert_eq!(&cfg[..3], b"t1\0");
    assert_eq!(&cfg[36..], &1u32.to_le_bytes());
    let mem = test_memory();
    let vq = MockSplitQueue::create(&mem, GuestAddress(REQUEST_Q), QSIZE);
    assert!({
        let ctx = ActivateContext {
            mem: mem.clone(),
            queues: vec![vq.create_queue().unwrap()],
            interrupt: null_interrupt(),
            acked_features: VIRTIO_F_VERSION_1,
        };
        on_thread(Kind::Vcpu, || dev.activate(ctx))
    }
    .is_err());
    // A missing directory or a file is refused at creation.
    assert!(Fs::new(&FsConfig {
        tag: "t".into(),
        path: l.share.join("nope"),
        read_only: false
    })
    .is_err());
    assert!(Fs::new(&FsConfig {
        tag: "t".into(),
        path: l.share.join("hello.txt"),
        read_only: false
    })
    .is_err());
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

fn egid() -> u32 {
    // SAFETY: getegid has no preconditions.
    unsafe { libc::getegid() }
}

fn c_path(p: &Path) -> std::ffi::CString {
    std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
}

/// The override xattr of a host file, as the host reads it.
fn host_override(p: &Path) -> Option<String> {
    let path = c_path(p);
    let mut buf = [0u8; 128];
    // SAFETY: both strings are NUL-terminated; the kernel writes at most
    // `buf.len()` bytes into `buf`.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            OVERRIDE_XATTR.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| String::from_utf8(buf[..n as usize].to_vec()).unwrap())
}

/// Sets the override xattr of a host file as a host tool (or libkrun)
/// would.
fn set_host_override(p: &Path, value: &str) {
    let path = c_path(p);
    // SAFETY: both strings are NUL-terminated; the value is read for
    // `value.len()` bytes.
    let r = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            OVERRIDE_XATTR.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
}

fn owner_mode(a: &fuse_backend_rs::abi::fuse_abi::Attr) -> (u32, u32, u32) {
    (a.uid, a.gid, a.mode & 0o7777)
}

const GUEST: (u32, u32) = (1000, 1000);

#[test]
fn override_values_parse_and_encode() {
    let o = Override::parse(b"1000:1000:0640").unwrap();
    assert_eq!((o.uid, o.gid, o.mode), (1000, 1000, 0o640));
    assert_eq!(o.encode(), "1000:1000:0640");
    // libkrun may store the file type too: only permission bits count.
    let o = Override::parse(b"0:0:0100755").unwrap();
    assert_eq!((o.uid, o.gid, o.mode), (0, 0, 0o755));
    assert_eq!(Override::parse(b"0:0:4755\0").unwrap().mode, 0o4755);
    for bad in [
        &b""[..],
        b"1:2",
        b"1:2:3:4",
        b"a:0:0644",
        b"-1:0:0644",
        b"1:2:0899",
        b"1::0644",
        b"99999999999:0:0644",
        b"\xff:0:0",
    ] {
        assert_eq!(Override::parse(bad), None, "{:?}", bad);
    }
}

#[test]
fn guest_owner_and_mode_live_in_the_override_not_on_the_host() {
    let l = layout();
    let mem = test_memory();
    let mut s = Session::new(&mem, &l.share, false);
    let host = l.share.join("owned");
    // CREATE by 1000:1000, mode 0640: the reply shows the creator.
    let (entry, fh) = s
        .create_as(GUEST, ROOT, b"owned", libc::O_RDWR | libc::O_CREAT, 0o640)
        .unwrap();
    assert_eq!(owner_mode(&entry.attr), (1000, 1000, 0o640));
    assert_eq!(entry.attr.mode & libc::S_IFMT, libc::S_IFREG);
    s.write(entry.nodeid, fh, b"data").unwrap();
    // ...and so do GETATTR and LOOKUP.
    let node = entry.nodeid;
    assert_eq!(
        owner_mode(&s.getattr(node).unwrap().attr),
        (1000, 1000, 0o640)
    );
    assert_eq!(
        owner_mode(&s.lookup(ROOT, b"owned").unwrap().attr),
        (1000, 1000, 0o640)
    );
    // On the host: the VMM's user, the override beside.
    let meta = std::fs::metadata(&host).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (euid(), egid()));
    assert_eq!(meta.mode() & 0o600, 0o600);
    assert_eq!(host_override(&host).as_deref(), Some("1000:1000:0640"));

    // chown 0:0: the guest sees root, the host owner does not change.
    let chown = SetattrIn {
        valid: FATTR_UID | FATTR_GID,
        uid: 0,
        gid: 0,
        ..Default::default()
    };
    let attr = s.setattr(node, chown).unwrap();
    assert_eq!(owner_mode(&attr.attr), (0, 0, 0o640));
    assert_eq!(owner_mode(&s.getattr(node).unwrap().attr), (0, 0, 0o640));
    let meta = std::fs::metadata(&host).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (euid(), egid()));
    assert_eq!(host_override(&host).as_deref(), Some("0:0:0640"));

    // chmod 0200: shown as 0200; the host file stays owner-rw, so the
    // server can still open it for writing (and the host user read it).
    let chmod = SetattrIn {
        valid: FATTR_MODE,
        mode: libc::S_IFREG | 0o200,
        ..Default::default()
    };
    let attr = s.setattr(node, chmod).unwrap();
    assert_eq!(owner_mode(&attr.attr), (0, 0, 0o200));
    assert_eq!(attr.attr.mode & libc::S_IFMT, libc::S_IFREG);
    assert_eq!(owner_mode(&s.getattr(node).unwrap().attr), (0, 0, 0o200));
    let meta = std::fs::metadata(&host).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o600);
    assert_eq!(host_override(&host).as_deref(), Some("0:0:0200"));
    let fh = s.open(node, libc::O_WRONLY | libc::O_TRUNC).unwrap();
    s.write(node, fh, b"written at 0200").unwrap();
    assert_eq!(std::fs::read(&host).unwrap(), b"written at 0200");
    // chmod 0000 keeps the host file owner-rw as well.
    let chmod = SetattrIn {
        valid: FATTR_MODE,
        mode: 0,
        ..Default::default()
    };
    assert_eq!(s.setattr(node, chmod).unwrap().attr.mode & 0o7777, 0);
    assert_eq!(std::fs::metadata(&host).unwrap().mode() & 0o7777, 0o600);
    let fh = s.open(node, libc::O_RDONLY).unwrap();
    assert_eq!(s.read(node, fh, 100).unwrap(), b"written at 0200");
    // chmod's group/other bits reach the host file; set-id bits never.
    let chmod = SetattrIn {
        valid: FATTR_MODE,
        mode: 0o6755,
        ..Default::default()
    };
    assert_eq!(s.setattr(node, chmod).unwrap().attr.mode & 0o7777, 0o755);
    assert_eq!(std::fs::metadata(&host).unwrap().mode() & 0o7777, 0o755);
    // Other changes (truncate) keep the view.
    let truncate = SetattrIn {
        valid: FATTR_SIZE,
        size: 0,
        ..Default::default()
    };
    let attr = s.setattr(node, truncate).unwrap();
    assert_eq!(owner_mode(&attr.attr), (0, 0, 0o755));
    assert_eq!(attr.attr.size, 0);
}

#[test]
fn a_file_created_0200_is_writable_by_its_creator() {
    let l = layout();
    let mem = test_memory();
    let mut s = Session::new(&mem, &l.share, false);
    // open(O_WRONLY|O_CREAT, 0200) as uid 1000, write through that handle.
    let (entry, fh) = s
        .create_as(GUEST, ROOT, b"w", libc::O_WRONLY | libc::O_CREAT, 0o200)
        .unwrap();
    assert_eq!(owner_mode(&entry.attr), (1000, 1000, 0o200));
    s.write(entry.nodeid, fh, b"first").unwrap();
    let host = l.share.join("w");
    assert_eq!(std::fs::read(&host).unwrap(), b"first");
    // Opened again for writing (the guest kernel allows its owner, from
    // the mode reported), and rewritten.
    let fh = s
        .open(entry.nodeid, libc::O_WRONLY | libc::O_TRUNC)
        .unwrap();
    s.write(entry.nodeid, fh, b"second").unwrap();
    assert_eq!(std::fs::read(&host).unwrap(), b"second");
    let meta = std::fs::metadata(&host).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o600, "owner-rw on the host");
    assert_eq!(meta.uid(), euid());
    // ACCESS answers from the view: its owner may write, not read;
    // others neither.
    let access = |s: &mut Session<'_>, uid, mask: i32| {
        let body = AccessIn {
            mask: mask as u32,
            padding: 0,
        };
        s.call_as(uid, uid, Opcode::Access, entry.nodeid, body.as_slice())
            .map(|_| ())
    };
    assert_eq!(access(&mut s, 1000, libc::W_OK), Ok(()));
    assert_eq!(access(&mut s, 1000, libc::R_OK), Err(libc::EACCES));
    assert_eq!(access(&mut s, 2000, libc::W_OK), Err(libc::EACCES));
    assert_eq!(access(&mut s, 0, libc::R_OK | libc::W_OK), Ok(()));
    assert_eq!(access(&mut s, 0, libc::X_OK), Err(libc::EACCES));
    assert_eq!(access(&mut s, 2000, libc::F_OK), Ok(()));
}

#[test]
fn directories_keep_an_override_and_stay_usable_by_the_server() {
    let l = layout();
    let mem = test_memory();
    let mut s = Session::new(&mem, &l.share, false);
    let made = s.mkdir_as((0, 0), ROOT, b"rootdir", 0o755).unwrap();
    assert_eq!(owner_mode(&made.attr), (0, 0, 0o755));
    assert_eq!(made.attr.mode & libc::S_IFMT, libc::S_IFDIR);
    let host = l.share.join("rootdir");
    assert_eq!(host_override(&host).as_deref(), Some("0:0:0755"));
    assert_eq!(std::fs::metadata(&host).unwrap().uid(), euid());
    // A 0500 directory: shown 0500, rwx for the server on the host, so a
    // file can still be made in it (the guest kernel decides who may).
    let ro = s.mkdir_as(GUEST, ROOT, b"r-x", 0o500).unwrap();
    assert_eq!(owner_mode(&ro.attr), (1000, 1000, 0o500));
    assert_eq!(
        std::fs::metadata(l.share.join("r-x")).unwrap().mode() & 0o7777,
        0o700
    );
    let (inner, _) = s
        .create_as((0, 0), ro.nodeid, b"f", libc::O_RDWR | libc::O_CREAT, 0o644)
        .unwrap();
    assert_eq!(owner_mode(&inner.attr), (0, 0, 0o644));
    // A set-group-ID directory of group 50: new files and directories in
    // it get group 50; directories inherit the bit.
    let shared = s.mkdir_as(GUEST, ROOT, b"team", 0o775).unwrap();
    let chown = SetattrIn {
        valid: FATTR_MODE | FATTR_GID,
        mode: libc::S_IFDIR | 0o2775,
        gid: 50,
        ..Default::default()
    };
    let attr = s.setattr(shared.nodeid, chown).unwrap();
    assert_eq!(owner_mode(&attr.attr), (1000, 50, 0o2775));
    let (f, _) = s
        .create_as(
            GUEST,
            shared.nodeid,
            b"f",
            libc::O_RDWR | libc::O_CREAT,
            0o664,
        )
        .unwrap();
    assert_eq!(owner_mode(&f.attr), (1000, 50, 0o644), "umask 022 applies");
    let d = s.mkdir_as(GUEST, shared.nodeid, b"sub", 0o755).unwrap();
    assert_eq!(owner_mode(&d.attr), (1000, 50, 0o2755));
}

#[test]
fn host_files_show_their_host_owner_and_host_overrides_are_read() {
    let l = layout();
    let mem = test_memory();
    let mut s = Session::new(&mem, &l.share, false);
    let meta = std::fs::metadata(l.share.join("hello.txt")).unwrap();
    let hello = s.lookup(ROOT, b"hello.txt").unwrap();
    assert_eq!(
        owner_mode(&hello.attr),
        (meta.uid(), meta.gid(), meta.mode() & 0o7777)
    );
    assert_eq!(host_override(&l.share.join("hello.txt")), None);
    // CREATE of an existing host file without O_EXCL opens it; it does
    // not become the guest's.
    let (again, _) = s
        .create_as(
            GUEST,
            ROOT,
            b"hello.txt",
            libc::O_RDWR | libc::O_CREAT,
            0o600,
        )
        .unwrap();
    assert_eq!(again.nodeid, hello.nodeid);
    assert_eq!(owner_mode(&again.attr), owner_mode(&hello.attr));
    assert_eq!(host_override(&l.share.join("hello.txt")), None);
    // With O_EXCL it is refused.
    assert_eq!(
        s.create_as(
            GUEST,
            ROOT,
            b"hello.txt",
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
            0o600
        )
        .err(),
        Some(libc::EEXIST)
    );
    // An override set on the host (by a host tool, or a folder libkrun
    // served) is what the guest sees; one that does not parse is not.
    let d = l.share.join("d");
    set_host_override(&d, "33:44:0100750");
    let attr = s.lookup(ROOT, b"d").unwrap().attr;
    assert_eq!(owner_mode(&attr), (33, 44, 0o750));
    assert_eq!(attr.mode & libc::S_IFMT, libc::S_IFDIR);
    set_host_override(&d, "thirty-three");
    let meta = std::fs::metadata(&d).unwrap();
    assert_eq!(
        owner_mode(&s.lookup(ROOT, b"d").unwrap().attr),
        (meta.uid(), meta.gid(), meta.mode() & 0o7777)
    );
    // A symlink the guest makes shows the host owner (no xattrs on
    // symlinks); chown on it is accepted and not kept.
    let link = s.call(Opcode::Symlink, ROOT, b"lnk\0hello.txt\0").unwrap();
    let link = EntryOut::from_slice(&link[..std::mem::size_of::<EntryOut>()])
        .copied()
        .unwrap();
    assert!(is_symlink(link.attr.mode));
    assert_eq!((link.attr.uid, link.attr.gid), (euid(), egid()));
    let chown = SetattrIn {
        valid: FATTR_UID,
        uid: 1000,
        ..Default::default()
    };
    assert_eq!(s.setattr(link.nodeid, chown).unwrap().attr.uid, euid());
    // A hard link shows its inode's override.
    let (f, _) = s
        .create_as(GUEST, ROOT, b"orig", libc::O_RDWR | libc::O_CREAT, 0o604)
        .unwrap();
    let mut body = f.nodeid.to_le_bytes().to_vec();
    body.extend_from_slice(b"hard\0");
    let hard = s.call(Opcode::Link, ROOT, &body).unwrap();
    let hard = EntryOut::from_slice(&hard[..std::mem::size_of::<EntryOut>()])
        .copied()
        .unwrap();
    assert_eq!(owner_mode(&hard.attr), (1000, 1000, 0o604));
}

#[test]
fn readdirplus_entries_show_overrides() {
    let l = layout();
    let mem = test_memory();
    let mut s = Session::new(&mem, &l.share, false);
    s.create_as(
        (0, 0),
        ROOT,
        b"by-root",
        libc::O_RDWR | libc::O_CREAT,
        0o600,
    )
    .unwrap();
    s.mkdir_as((1000, 1001), ROOT, b"by-user", 0o700).unwrap();
    let entries = s.readdirplus(ROOT);
    let get = |name: &str| {
        entries
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} in {entries:?}"))
            .1
    };
    assert_eq!(owner_mode(&get("by-root").attr), (0, 0, 0o600));
    assert_eq!(owner_mode(&get("by-user").attr), (1000, 1001, 0o700));
    let meta = std::fs::metadata(l.share.join("hello.txt")).unwrap();
    assert_eq!(
        owner_mode(&get("hello.txt").attr),
        (meta.uid(), meta.gid(), meta.mode() & 0o7777)
    );
    assert!(is_symlink(get("esc").attr.mode));
}

#[test]
fn overrides_survive_a_new_server_and_read_only_shares_refuse_chown() {
    let l = layout();
    let mem = test_memory();
    {
        let mut s = Session::new(&mem, &l.share, false);
        s.create_as(GUEST, ROOT, b"kept", libc::O_RDWR | libc::O_CREAT, 0o600)
            .unwrap();
        let d = s.mkdir_as(GUEST, ROOT, b"kept-dir", 0o750).unwrap();
        let chown = SetattrIn {
            valid: FATTR_UID | FATTR_GID | FATTR_MODE,
            uid: 0,
            gid: 0,
            mode: 0o711,
            ..Default::default()
        };
        s.setattr(d.nodeid, chown).unwrap();
    }
    // The VMM restarts: a new device over the same folder.
    let mem = test_memory();
    let mut s = Session::new(&mem, &l.share, false);
    let kept = s.lookup(ROOT, b"kept").unwrap();
    assert_eq!(owner_mode(&kept.attr), (1000, 1000, 0o600));
    assert_eq!(
        owner_mode(&s.lookup(ROOT, b"kept-dir").unwrap().attr),
        (0, 0, 0o711)
    );
    drop(s);
    // A read-only share shows the overrides and refuses chown/chmod.
    let mem = test_memory();
    let mut s = Session::new(&mem, &l.share, true);
    let kept = s.lookup(ROOT, b"kept").unwrap();
    assert_eq!(owner_mode(&kept.attr), (1000, 1000, 0o600));
    for valid in [FATTR_UID, FATTR_GID, FATTR_MODE] {
        let change = SetattrIn {
            valid,
            mode: 0o777,
            ..Default::default()
        };
        assert_eq!(s.setattr(kept.nodeid, change).err(), Some(libc::EROFS));
    }
    assert_eq!(
        host_override(&l.share.join("kept")).as_deref(),
        Some("1000:1000:0600")
    );
}

#[test]
fn the_override_xattr_is_out_of_the_guests_reach() {
    let l = layout();
    let mem = test_memory();
    let mut s = Session::new(&mem, &l.share, false);
    let (f, _) = s
        .create_as(GUEST, ROOT, b"mine", libc::O_RDWR | libc::O_CREAT, 0o644)
        .unwrap();
    let name = OVERRIDE_XATTR.to_bytes_with_nul();
    let mut get = GetxattrIn {
        size: 256,
        padding: 0,
    }
    .as_slice()
    .to_vec();
    get.extend_from_slice(name);
    assert_eq!(
        s.call(Opcode::Getxattr, f.nodeid, &get).err(),
        Some(libc::ENOSYS)
    );
    let list = GetxattrIn {
        size: 256,
        padding: 0,
    };
    assert_eq!(
        s.call(Opcode::Listxattr, f.nodeid, list.as_slice()).err(),
        Some(libc::ENOSYS)
    );
    let value = b"0:0:04755";
    let mut set = SetxattrIn {
        size: value.len() as u32,
        flags: 0,
    }
    .as_slice()
    .to_vec();
    set.extend_from_slice(name);
    set.extend_from_slice(value);
    assert_eq!(
        s.call_as(0, 0, Opcode::Setxattr, f.nodeid, &set).err(),
        Some(libc::ENOSYS)
    );
    assert_eq!(
        s.call_as(0, 0, Opcode::Removexattr, f.nodeid, name).err(),
        Some(libc::ENOSYS)
    );
    assert_eq!(
        host_override(&l.share.join("mine")).as_deref(),
        Some("1000:1000:0644")
    );
}

/// This thread's effective uid/gid switched to `id` (the thread only:
/// raw setresuid/setresgid, as PassthroughFs does), back on drop; `None`
/// when the process is not root (it then already runs unprivileged).
struct AsUser;

impl AsUser {
    fn enter(id: u32) -> Option<AsUser> {
        if euid() != 0 {
            return None;
        }
        let keep = libc::c_long::from(-1i32);
        // SAFETY: setresgid/setresuid change only this thread's
        // credentials; -1 keeps the real and saved ids (root, to return).
        let r = unsafe { libc::syscall(libc::SYS_setresgid, keep, id, keep) };
        assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
        // SAFETY: as above.
        let r = unsafe { libc::syscall(libc::SYS_setresuid, keep, id, keep) };
        assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
        Some(AsUser)
    }
}

impl Drop for AsUser {
    fn drop(&mut self) {
        let keep = libc::c_long::from(-1i32);
        // SAFETY: back to the saved root ids, this thread only.
        unsafe {
            libc::syscall(libc::SYS_setresuid, keep, 0, keep);
            libc::syscall(libc::SYS_setresgid, keep, 0, keep);
        }
    }
}

#[test]
fn an_unprivileged_vmm_keeps_0200_and_0000_files_usable() {
    // Root would pass every host permission check: serve the share as an
    // unprivileged user, as berth-vmm runs on a desktop.
    const NOBODY: u32 = 65534;
    let l = layout();
    let tmp = l.share.parent().unwrap();
    std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    let host_made = l.share.join("host-0400");
    std::fs::write(&host_made, b"made on the host").unwrap();
    std::fs::set_permissions(&host_made, std::fs::Permissions::from_mode(0o400)).unwrap();
    if euid() == 0 {
        for p in [&l.share, &l.share.join("d"), &host_made] {
            std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).unwrap();
        }
    }
    let _user = AsUser::enter(NOBODY);
    let mem = test_memory();
    let mut s = Session::new(&mem, &l.share, false);
    // Created 0200 by the guest: written, opened again, written again.
    let (w, fh) = s
        .create_as(GUEST, ROOT, b"w", libc::O_WRONLY | libc::O_CREAT, 0o200)
        .unwrap();
    assert_eq!(owner_mode(&w.attr), (1000, 1000, 0o200));
    s.write(w.nodeid, fh, b"one").unwrap();
    let fh = s.open(w.nodeid, libc::O_WRONLY | libc::O_TRUNC).unwrap();
    s.write(w.nodeid, fh, b"two").unwrap();
    // chmod 0000: still shown (the server reads the override) and the
    // data still reachable by the server.
    let chmod = SetattrIn {
        valid: FATTR_MODE,
        mode: 0,
        ..Default::default()
    };
    assert_eq!(s.setattr(w.nodeid, chmod).unwrap().attr.mode & 0o7777, 0);
    assert_eq!(
        owner_mode(&s.getattr(w.nodeid).unwrap().attr),
        (1000, 1000, 0)
    );
    let fh = s.open(w.nodeid, libc::O_RDONLY).unwrap();
    assert_eq!(s.read(w.nodeid, fh, 10).unwrap(), b"two");
    // A 0500 directory of the guest's still takes new files.
    let dir = s.mkdir_as(GUEST, ROOT, b"r-x", 0o500).unwrap();
    s.create_as(
        GUEST,
        dir.nodeid,
        b"in",
        libc::O_RDWR | libc::O_CREAT,
        0o644,
    )
    .unwrap();
    // A host file at 0400: chown from the guest gets the host file its
    // owner's write bit (for the override) and shows 0400 still.
    let h = s.lookup(ROOT, b"host-0400").unwrap();
    let chown = SetattrIn {
        valid: FATTR_UID | FATTR_GID,
        ..Default::default()
    };
    assert_eq!(
        owner_mode(&s.setattr(h.nodeid, chown).unwrap().attr),
        (0, 0, 0o400)
    );
    assert_eq!(
        owner_mode(&s.getattr(h.nodeid).unwrap().attr),
        (0, 0, 0o400)
    );
    drop(s);
    drop(_user);
    assert_eq!(std::fs::read(l.share.join("w")).unwrap(), b"two");
    let meta = std::fs::metadata(l.share.join("w")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o600);
    assert_eq!(
        std::fs::metadata(&host_made).unwrap().mode() & 0o7777,
        0o600
    );
    assert_eq!(host_override(&host_made).as_deref(), Some("0:0:0400"));
    if euid() == 0 {
        assert_eq!(meta.uid(), NOBODY, "files belong to the VMM's user");
    }
}

#[test]
fn init_offers_one_mebibyte_requests() {
    use fuse_backend_rs::abi::fuse_abi::{FsOptions, InitIn, InitOut};
    let l = layout();
    let mem = test_memory();
    let mut s = Session::new(&mem, &l.share, false);
    let offered = FsOptions::MAX_PAGES
        | FsOptions::BIG_WRITES
        | FsOptions::ASYNC_READ
        | FsOptions::PARALLEL_DIROPS
        | FsOptions::AUTO_INVAL_DATA
        | FsOptions::DO_READDIRPLUS;
    let body = InitIn {
        major: 7,
        minor: 38,
        max_readahead: 128 * 1024,
        flags: offered.bits() as u32,
    };
    let out = s.call(Opcode::Init, 0, body.as_slice()).unwrap();
    let init = InitOut::from_slice(&out[..std::mem::size_of::<InitOut>()])
        .copied()
        .unwrap();
    assert_eq!(init.max_write, 1 << 20, "1 MiB writes");
    assert_eq!(init.max_pages, 256);
    let got = FsOptions::from_bits_truncate(u64::from(init.flags));
    assert!(
        got.contains(
            FsOptions::MAX_PAGES
                | FsOptions::ASYNC_READ
                | FsOptions::PARALLEL_DIROPS
                | FsOptions::AUTO_INVAL_DATA
        ),
        "{got:?}"
    );
    // Nothing the guest did not offer is switched on.
    assert!(!got.contains(FsOptions::WRITEBACK_CACHE), "{got:?}");
}

// Live file events (events.rs): the guest agent's mirroring requests are
// completed from the host's state, without a host operation.

const FATTR_ATIME: u32 = 1 << 4;
const FATTR_MTIME: u32 = 1 << 5;
const FATTR_ATIME_NOW: u32 = 1 << 7;
const FATTR_MTIME_NOW: u32 = 1 << 8;

fn entry_key(dir: &Path, name: &str) -> super::events::Key {
    let m = std::fs::symlink_metadata(dir).unwrap();
    super::events::Key::Entry {
        dev: m.dev(),
        dir: m.ino(),
        name: name.as_bytes().to_vec(),
    }
}

fn node_key(p: &Path) -> super::events::Key {
    let m = std::fs::symlink_metadata(p).unwrap();
    super::events::Key::Node {
        dev: m.dev(),
        ino: m.ino(),
    }
}

fn mknod_body(mode: u32, name: &[u8]) -> Vec<u8> {
    let mut b = MknodIn {
        mode,
        ..Default::default()
    }
    .as_slice()
    .to_vec();
    b.extend_from_slice(name);
    b.push(0);
    b
}

/// Sets `p`'s atime and mtime to `secs` (no follow).
fn set_times(p: &Path, secs: i64) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let ts = [libc::timespec {
        tv_sec: secs,
        tv_nsec: 0,
    }; 2];
    // SAFETY: c is a NUL-terminated path, ts two valid timespecs.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(r, 0);
}

#[test]
fn mirrored_host_changes_complete_without_a_host_operation() {
    use super::events::{Expect, FileType, GHOST_BASE};
    let l = layout();
    let mem = test_memory();
    let mut s = Session::new(&mem, &l.share, false);
    let ev = s.dev().events();
    let root = l.share.clone();

    // create: the host made new.txt; the name is hidden until the
    // agent's MKNOD, which gets the host file's entry.
    std::fs::write(root.join("new.txt"), b"abc").unwrap();
    ev.expect(
        1,
        entry_key(&root, "new.txt"),
        Expect::Create(FileType::File),
    );
    assert_eq!(s.lookup(ROOT, b"new.txt").err(), Some(libc::ENOENT));
    let out = s
        .call(
            Opcode::Mknod,
            ROOT,
            &mknod_body(libc::S_IFREG | 0o644, b"new.txt"),
        )
        .unwrap();
    let e = EntryOut::from_slice(&out[..std::mem::size_of::<EntryOut>()])
        .copied()
        .unwrap();
    assert_eq!(e.attr.ino, host_ino(&root.join("new.txt")));
    assert_eq!(e.attr.size, 3, "the host's attributes");
    assert_eq!(std::fs::read(root.join("new.txt")).unwrap(), b"abc");
    assert_eq!(s.lookup(ROOT, b"new.txt").unwrap().attr.ino, e.attr.ino);

    // mkdir, and a symlink.
    std::fs::create_dir(root.join("nd")).unwrap();
    ev.expect(2, entry_key(&root, "nd"), Expect::Create(FileType::Dir));
    assert_eq!(s.lookup(ROOT, b"nd").err(), Some(libc::ENOENT));
    let nd = s.mkdir(ROOT, b"nd").unwrap();
    assert_eq!(nd.attr.ino, host_ino(&root.join("nd")));
    std::os::unix::fs::symlink("target-text", root.join("nd/ln")).unwrap();
    ev.expect(
        3,
        entry_key(&root.join("nd"), "ln"),
        Expect::Create(FileType::Symlink),
    );
    let out = s.call(Opcode::Symlink, nd.nodeid, b"ln\0.\0").unwrap();
    let ln = EntryOut::from_slice(&out[..std::mem::size_of::<EntryOut>()])
        .copied()
        .unwrap();
    assert!(is_symlink(ln.attr.mode));
    assert_eq!(
        std::fs::read_link(root.join("nd/ln")).unwrap(),
        Path::new("target-text"),
        "the host's symlink is untouched"
    );

    // delete: the host removed hello.txt; the guest never looked it up,
    // so LOOKUP answers a ghost it can unlink.
    std::fs::remove_file(root.join("hello.txt")).unwrap();
    ev.expect(
        4,
        entry_key(&root, "hello.txt"),
        Expect::Remove { dir: false },
    );
    let ghost = s.lookup(ROOT, b"hello.txt").unwrap();
    assert!(ghost.nodeid >= GHOST_BASE);
    assert_eq!(ghost.attr.mode & libc::S_IFMT, libc::S_IFREG);
    assert_eq!(s.getattr(ghost.nodeid).unwrap().attr.ino, ghost.nodeid);
    assert_eq!(s.call(Opcode::Unlink, ROOT, b"hello.txt\0"), Ok(vec![]));
    assert_eq!(s.lookup(ROOT, b"hello.txt").err(), Some(libc::ENOENT));
    // Its FORGET is the server's own business (no host inode behind it).
    let forget = fuse_backend_rs::abi::fuse_abi::ForgetIn { nlookup: 1 };
    let _ = s.raw(&{
        let h = InHeader {
            len: (std::mem::size_of::<InHeader>() + 8) as u32,
            opcode: Opcode::Forget as u32,
            unique: 999,
            nodeid: ghost.nodeid,
            ..Default::default()
        };
        let mut b = h.as_slice().to_vec();
        b.extend_from_slice(forget.as_slice());
        b
    });
    assert_eq!(s.getattr(ghost.nodeid).err(), Some(libc::EBADF));

    // rmdir of a directory the guest knows.
    let d = s.lookup(ROOT, b"d").unwrap();
    assert!(d.nodeid < GHOST_BASE);
    std::fs::remove_dir(root.join("d")).unwrap();
    ev.expect(5, entry_key(&root, "d"), Expect::Remove { dir: true });
    assert_eq!(s.call(Opcode::Rmdir, ROOT, b"d\0"), Ok(vec![]));

    // rename: both names as the guest knew them, taken together.
    std::fs::rename(root.join("new.txt"), root.join("nd/moved")).unwrap();
    ev.expect(
        6,
        entry_key(&root, "new.txt"),
        Expect::RenameFrom { dir: false },
    );
    ev.expect(6, entry_key(&root.join("nd"), "moved"), Expect::RenameTo);
    assert_eq!(s.lookup(nd.nodeid, b"moved").err(), Some(libc::ENOENT));
    let mut rename = nd.nodeid.to_le_bytes().to_vec();
    rename.extend_from_slice(b"new.txt\0moved\0");
    assert_eq!(s.call(Opcode::Rename, ROOT, &rename), Ok(vec![]));
    let moved = s.lookup(nd.nodeid, b"moved").unwrap();
    assert_eq!(moved.attr.ino, e.attr.ino);
    assert!(!ev.any_pending(), "every expectation was consumed");

    // modify (mtime alone) and attrib (both times): the host's times
    // stay, the guest gets the host's attributes.
    let moved_path = root.join("nd/moved");
    set_times(&moved_path, 1_000_000);
    ev.expect(7, node_key(&moved_path), Expect::Modify);
    ev.expect(8, node_key(&moved_path), Expect::Attrib);
    let modify = SetattrIn {
        valid: FATTR_MTIME | FATTR_MTIME_NOW,
        ..Default::default()
    };
    let a = s.setattr(moved.nodeid, modify).unwrap();
    assert_eq!(a.attr.mtime, 1_000_000);
    let attrib = SetattrIn {
        valid: FATTR_ATIME | FATTR_MTIME | FATTR_ATIME_NOW | FATTR_MTIME_NOW,
        ..Default::default()
    };
    let a = s.setattr(moved.nodeid, attrib).unwrap();
    assert_eq!(a.attr.atime, 1_000_000);
    assert_eq!(std::fs::metadata(&moved_path).unwrap().mtime(), 1_000_000);

    // Without an expectation the same requests are real ones.
    let a = s.setattr(moved.nodeid, attrib).unwrap();
    assert_ne!(a.attr.mtime, 1_000_000);
    assert!(s
        .call(
            Opcode::Mknod,
            ROOT,
            &mknod_body(libc::S_IFREG | 0o644, b"real")
        )
        .is_ok());
    assert!(root.join("real").is_file());
}

#[test]
fn acknowledged_or_mismatched_expectations_change_nothing() {
    use super::events::{Expect, FileType};
    let l = layout();
    let mem = test_memory();
    let mut s = Session::new(&mem, &l.share, false);
    let ev = s.dev().events();
    let root = l.share.clone();
    // An expectation the agent acknowledged without using it is gone: a
    // later guest MKNOD of that name is a real one.
    ev.expect(1, entry_key(&root, "late"), Expect::Create(FileType::File));
    ev.acked(1);
    assert!(s
        .call(
            Opcode::Mknod,
            ROOT,
            &mknod_body(libc::S_IFREG | 0o644, b"late")
        )
        .is_ok());
    assert!(root.join("late").is_file(), "made on the host");
    // An expected removal is not taken by an operation of the other kind:
    // RMDIR of an expected file removal, a rename to another name.
    ev.expect(2, entry_key(&root, "late"), Expect::Remove { dir: false });
    assert_eq!(
        s.call(Opcode::Rmdir, ROOT, b"late\0").err(),
        Some(libc::ENOTDIR)
    );
    ev.acked(2);
    ev.expect(
        3,
        entry_key(&root, "late"),
        Expect::RenameFrom { dir: false },
    );
    ev.expect(3, entry_key(&root, "other"), Expect::RenameTo);
    let mut rename = ROOT.to_le_bytes().to_vec();
    rename.extend_from_slice(b"late\0third\0");
    assert_eq!(s.call(Opcode::Rename, ROOT, &rename), Ok(vec![]));
    assert!(root.join("third").is_file(), "a real rename");
    // A SETATTR that changes more than times is never a mirror.
    let third = s.lookup(ROOT, b"third").unwrap();
    ev.expect(4, node_key(&root.join("third")), Expect::Modify);
    let truncate = SetattrIn {
        valid: FATTR_SIZE | FATTR_MTIME,
        size: 0,
        ..Default::default()
    };
    std::fs::write(root.join("third"), b"data").unwrap();
    s.setattr(third.nodeid, truncate).unwrap();
    assert_eq!(std::fs::metadata(root.join("third")).unwrap().len(), 0);
    assert!(ev.any_pending(), "not consumed by the truncate");
}

#[test]
fn the_guests_own_changes_are_recorded_as_echoes() {
    let l = layout();
    let mem = test_memory();
    let mut s = Session::new(&mem, &l.share, false);
    let ev = s.dev().events();
    let root = l.share.clone();
    // Without a watcher nothing is recorded.
    s.create(ROOT, b"quiet", libc::O_RDWR, 0o644).unwrap();
    assert!(!ev.is_echo(&entry_key(&root, "quiet")));
    ev.set_watching();
    let (e, fh) = s
        .create_as((1000, 1000), ROOT, b"x", libc::O_RDWR, 0o644)
        .unwrap();
    assert!(ev.is_echo(&entry_key(&root, "x")));
    assert!(ev.is_echo(&node_key(&root.join("x"))));
    s.write(e.nodeid, fh, b"data").unwrap();
    let hello = s.lookup(ROOT, b"hello.txt").unwrap();
    assert!(!ev.is_echo(&node_key(&root.join("hello.txt"))));
    let fh = s.open(hello.nodeid, libc::O_RDWR).unwrap();
    s.write(hello.nodeid, fh, b"guest").unwrap();
    assert!(ev.is_echo(&node_key(&root.join("hello.txt"))));
    s.mkdir(ROOT, b"gd").unwrap();
    assert!(ev.is_echo(&entry_key(&root, "gd")));
    s.call(Opcode::Unlink, ROOT, b"quiet\0").unwrap();
    assert!(ev.is_echo(&entry_key(&root, "quiet")));
}

#[test]
fn a_guest_behind_the_host_mirrors_through_ghosts() {
    use super::events::{Expect, FileType, GHOST_BASE};
    let l = layout();
    let mem = test_memory();
    let mut s = Session::new(&mem, &l.share, false);
    let ev = s.dev().events();
    let root = l.share.clone();
    // The host made q, wrote it and moved it to q2 before the guest
    // mirrored anything: the watcher saw q's node at its create.
    std::fs::write(root.join("q"), b"").unwrap();
    let node = node_key(&root.join("q"));
    std::fs::rename(root.join("q"), root.join("q2")).unwrap();
    ev.expect_node(
        1,
        entry_key(&root, "q"),
        Expect::Create(FileType::File),
        Some(node.clone()),
    );
    ev.expect(2, node.clone(), Expect::Modify);
    ev.expect_node(
        3,
        entry_key(&root, "q"),
        Expect::RenameFrom { dir: false },
        Some(node.clone()),
    );
    ev.expect(3, entry_key(&root, "q2"), Expect::RenameTo);
    // The create gets a ghost (q is gone on the host)...
    let out = s
        .call(
            Opcode::Mknod,
            ROOT,
            &mknod_body(libc::S_IFREG | 0o644, b"q"),
        )
        .unwrap();
    let q = EntryOut::from_slice(&out[..std::mem::size_of::<EntryOut>()])
        .copied()
        .unwrap();
    assert!(q.nodeid >= GHOST_BASE);
    assert_eq!(q.attr.mode & libc::S_IFMT, libc::S_IFREG);
    // ...the modify on the ghost finds the node's expectation...
    let modify = SetattrIn {
        valid: FATTR_MTIME | FATTR_MTIME_NOW,
        ..Default::default()
    };
    assert!(s.setattr(q.nodeid, modify).is_ok());
    // ...a second one has none left: stale.
    assert_eq!(s.setattr(q.nodeid, modify).err(), Some(libc::ESTALE));
    // ...and the rename completes; q2 is then the real file.
    let mut rename = ROOT.to_le_bytes().to_vec();
    rename.extend_from_slice(b"q\0q2\0");
    assert_eq!(s.call(Opcode::Rename, ROOT, &rename), Ok(vec![]));
    assert!(!ev.any_pending());
    assert_eq!(
        s.lookup(ROOT, b"q2").unwrap().attr.ino,
        host_ino(&root.join("q2"))
    );
}

/// Host descriptors the test process holds open inside `dir`.
fn fds_in(dir: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|t| t.starts_with(dir))
        .count()
}

#[test]
fn a_driver_reset_closes_what_the_guest_had_open() {
    let l = layout();
    let mem = test_memory();
    let mut s = Session::new(&mem, &l.share, false);
    let share = std::fs::canonicalize(&l.share).unwrap();
    let before = fds_in(&share);
    let hello = s.lookup(ROOT, b"hello.txt").unwrap();
    let fh = s.open(hello.nodeid, libc::O_RDONLY).unwrap();
    assert_eq!(s.read(hello.nodeid, fh, 5).unwrap(), b"hello");
    for i in 0..20 {
        let name = format!("f{i}");
        s.create(ROOT, name.as_bytes(), libc::O_RDWR, 0o644)
            .unwrap();
    }
    let held = fds_in(&share);
    assert!(held >= before + 21, "{held} open, {before} before");
    s.restart();
    // The new session's first request closes the old one's nodes and
    // handles; old node ids are unknown to it.
    assert_eq!(s.getattr(hello.nodeid).err(), Some(libc::EBADF));
    assert!(
        fds_in(&share) <= before,
        "{} descriptors open after the reset ({before} before, {held} held)",
        fds_in(&share)
    );
    assert!(s.lookup(ROOT, b"hello.txt").is_ok());
}

#[test]
fn an_unused_share_can_be_snapshotted_and_one_in_use_cannot() {
    let l = layout();
    let mem = test_memory();
    let mut s = Session::new(&mem, &l.share, false);
    // Probed and set up by the driver, never mounted: nothing but queues,
    // which the transport saves (a snapshot's empty share slot).
    assert_eq!(s.dev().snapshot_blocker(), None);
    // Both queues are saved (a restore refuses another count).
    assert_eq!(s.dev().queue_snapshots().len(), 2);
    // A notification that carries no request starts no session.
    s.events.call(|d| d.lock().unwrap().process_queue(1));
    assert_eq!(s.dev().snapshot_blocker(), None);
    // The guest mounted it (any request): its FUSE session lives in this
    // process and a restore could not continue it.
    s.lookup(ROOT, b"hello.txt").unwrap();
    let why = s
        .dev()
        .snapshot_blocker()
        .expect("a share in use must refuse");
    assert!(why.contains("`t1`") && why.contains("in use"), "{why}");
    // A reset driver has no session left until it sends again.
    s.restart();
    assert_eq!(s.dev().snapshot_blocker(), None);
    s.lookup(ROOT, b"hello.txt").unwrap();
    assert!(s.dev().snapshot_blocker().is_some());
    // The guest unmounted it (its last mount): DESTROY ends the session,
    // and the share can be snapshotted again (a suspended machine VM)
    // until the next mount's requests.
    // (DESTROY has no reply: sent raw, its header only.)
    let mut destroy = Vec::new();
    destroy.extend_from_slice(&40u32.to_le_bytes());
    destroy.extend_from_slice(&(Opcode::Destroy as u32).to_le_bytes());
    destroy.extend_from_slice(&9999u64.to_le_bytes());
    destroy.extend_from_slice(&[0u8; 24]);
    s.raw(&destroy);
    assert_eq!(s.dev().snapshot_blocker(), None);
    let _ = s.lookup(ROOT, b"hello.txt");
    assert!(s.dev().snapshot_blocker().is_some());
}
