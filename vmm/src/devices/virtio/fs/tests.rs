//! The virtio-fs device driven with raw FUSE requests built in guest
//! memory and handed over on its request queue, as a hostile guest would.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use fuse_backend_rs::abi::fuse_abi::{
    AttrOut, CreateIn, EntryOut, GetattrIn, InHeader, MkdirIn, MknodIn, Opcode, OpenIn, OpenOut,
    OutHeader, ReadIn, SetattrIn, WriteIn,
};
use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Address, ByteValued, Bytes, GuestAddress};

use super::{Fs, FsConfig};
use crate::devices::virtio::test_utils::{null_interrupt, test_memory};
use crate::devices::virtio::{ActivateContext, VirtioDevice, VIRTIO_F_VERSION_1};
use crate::GuestMemoryMmap;

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
    dev: Fs,
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
        dev.activate(ActivateContext {
            mem: mem.clone(),
            queues: vec![hq.create_queue().unwrap(), vq.create_queue().unwrap()],
            interrupt: null_interrupt(),
            acked_features: VIRTIO_F_VERSION_1,
        })
        .unwrap();
        Session {
            mem,
            vq,
            dev,
            next_desc: 0,
            requests: 0,
            unique: 0,
        }
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
        self.dev.process_queue(1);
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

    /// A well-formed request; `Err(errno)` for an error reply.
    fn call(&mut self, opcode: Opcode, nodeid: u64, body: &[u8]) -> Result<Vec<u8>, i32> {
        self.unique += 1;
        let header = InHeader {
            len: (std::mem::size_of::<InHeader>() + body.len()) as u32,
            opcode: opcode as u32,
            unique: self.unique,
            nodeid,
            uid: 1000,
            gid: 1000,
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

    fn mkdir(&mut self, parent: u64, name: &[u8]) -> Result<EntryOut, i32> {
        let args = MkdirIn {
            mode: 0o755,
            umask: 0,
        };
        let mut body = args.as_slice().to_vec();
        body.extend_from_slice(name);
        body.push(0);
        let out = self.call(Opcode::Mkdir, parent, &body)?;
        Ok(
            EntryOut::from_slice(&out[..std::mem::size_of::<EntryOut>()])
                .copied()
                .unwrap(),
        )
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
const FATTR_SIZE: u32 = 1 << 3;

fn is_symlink(mode: u32) -> bool {
    mode & libc::S_IFMT == libc::S_IFLNK
}

fn host_ino(p: &Path) -> u64 {
    std::fs::symlink_metadata(p).unwrap().ino()
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
    // SAFETY: geteuid has no preconditions.
    assert_eq!(meta.uid(), unsafe { libc::geteuid() });
    // chmod u+s is stripped; chown is accepted and ignored.
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
    let mut cfg = [0u8; 40];
    dev.read_config(0, &mut cfg);
    assert_eq!(&cfg[..3], b"t1\0");
    assert_eq!(&cfg[36..], &1u32.to_le_bytes());
    let mem = test_memory();
    let vq = MockSplitQueue::create(&mem, GuestAddress(REQUEST_Q), QSIZE);
    assert!(dev
        .activate(ActivateContext {
            mem: mem.clone(),
            queues: vec![vq.create_queue().unwrap()],
            interrupt: null_interrupt(),
            acked_features: VIRTIO_F_VERSION_1,
        })
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
