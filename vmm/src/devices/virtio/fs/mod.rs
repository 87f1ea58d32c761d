//! virtio-fs: a host directory shared with the guest, served in-process
//! (as libkrun does) by fuse-backend-rs's FUSE server and `PassthroughFs`.
//!
//! The device (Linux hosts only, [`Fs`]) has two queues, the high-priority
//! queue (FORGET) and one request queue, and a configuration space of the
//! tag (36 bytes, NUL-padded) and the number of request queues. The guest
//! mounts it with `mount -t virtiofs TAG /mnt`.
//!
//! # Confinement (the guest is untrusted)
//! What fuse-backend-rs 0.14's `PassthroughFs` guarantees (read from its
//! source, and checked by the tests in `tests.rs`):
//! - every name is resolved with `openat(parent_fd, name, O_PATH |
//!   O_NOFOLLOW)` relative to an `O_PATH` fd the server holds for the
//!   parent inode: the server never walks a path and never follows a
//!   symlink itself. A symlink is an inode of its own (its target is text
//!   the guest kernel resolves in the guest's namespace);
//! - LOOKUP of `..` at the share root is answered with the root itself;
//!   names containing `/` are refused (EINVAL) by LOOKUP, and every
//!   creating operation refuses `.`, `..` and `/` in names;
//! - names end at their first NUL (`bytes_to_cstr`), over-long names get
//!   the host's ENAMETOOLONG, and requests over 1 MiB + 4 KiB get ENOMEM;
//! - node ids are the server's own numbers (not host inode numbers): an
//!   unknown id gets EBADF;
//! - only regular files and directories can be opened for I/O (a symlink,
//!   device or FIFO inode gets EBADF), reopened through `/proc/self/fd`
//!   from the `O_PATH` fd, so a symlink swapped in after LOOKUP is not
//!   followed either.
//!
//! What berth adds in [`ShareFs`], a thin `FileSystem` wrapper:
//! - `ro` shares refuse every mutating operation with EROFS in the server
//!   (not only through the guest's mount flags);
//! - the guest's uid/gid are not used on the host: every operation runs
//!   with the VMM's credentials, so files the guest creates belong to the
//!   user who runs the VMM (Docker Desktop behaviour);
//! - the guest's view of a regular file's or directory's owner and mode
//!   lives in the xattr `user.containers.override_stat`
//!   ([`OVERRIDE_XATTR`], text `UID:GID:0MODE`, libkrun's and
//!   fuse-overlayfs's name and format): written when the guest makes the
//!   file (the request's uid/gid, the parent's group if it is
//!   set-group-ID, the mode after umask) and on chown/chmod, and shown in
//!   every reply carrying attributes (the file type is the host's). The
//!   host file keeps the VMM user as owner and always its owner's `rw-`
//!   (`rwx` for directories), so that a file the guest makes 0200 or
//!   chmods 0000 stays usable by the server; its group/other bits follow
//!   the guest's chmod. Permission checks are the guest kernel's (virtiofs
//!   mounts with `default_permissions`), from the attributes shown;
//!   ACCESS, if asked, answers from the same view. Files without an
//!   override (made on the host) show their host owner and mode; so do
//!   symlinks, FIFOs and sockets (Linux refuses `user.*` xattrs on them:
//!   chown of them is accepted and not kept). On a host file system
//!   without user xattrs, chmod goes to the host file and chown is not
//!   kept;
//! - setuid/setgid bits are stripped from modes the guest sets on files,
//!   and device nodes (mknod of block/char devices) are refused, so a
//!   guest cannot plant set-id programs or device nodes for host users;
//! - extended attributes are not offered to the guest (ENOSYS for all
//!   four xattr requests), so the override cannot be read, listed, set
//!   or removed from the guest; the server writes it through the inode's
//!   own fd (PassthroughFs's xattr support, enabled for that alone).
//!
//! Not covered: a directory the *host* moves out of the share while the
//! guest holds it stays reachable (as with virtiofsd); host bind mounts
//! inside the share are followed; the guest can hold one host fd per
//! looked-up inode (bounded by the VMM's RLIMIT_NOFILE).

#[cfg(target_os = "linux")]
mod device;
#[cfg(target_os = "linux")]
pub mod events;
#[cfg(target_os = "linux")]
mod share;
#[cfg(all(test, target_os = "linux"))]
mod tests;
#[cfg(target_os = "linux")]
pub mod watch;

#[cfg(target_os = "linux")]
pub use device::Fs;
#[cfg(target_os = "linux")]
pub use share::{Override, ShareFs, OVERRIDE_XATTR};

use std::path::PathBuf;

/// Longest tag the configuration space holds.
pub const TAG_LEN: usize = 36;

/// One shared directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsConfig {
    /// The mount tag the guest names (`[A-Za-z0-9_-]`, 1 to 36 bytes).
    pub tag: String,
    /// Host directory served as the share's root.
    pub path: PathBuf,
    /// Refuse every change.
    pub read_only: bool,
}

/// Errors of virtio-fs configuration and setup.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The `--fs` specification does not parse.
    #[error("invalid --fs `{spec}`: {why} (use tag=TAG,path=HOSTDIR[,ro])")]
    Spec {
        /// The specification given.
        spec: String,
        /// What is wrong.
        why: String,
    },
    /// The tag is empty, too long or has other characters than
    /// `[A-Za-z0-9_-]`.
    #[error("invalid virtio-fs tag `{0}` (1 to 36 characters of A-Z a-z 0-9 _ -)")]
    Tag(String),
    /// The shared directory cannot be used.
    #[error("shared directory {path}: {source}")]
    Dir {
        /// The host path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Two shares have the same tag.
    #[error("virtio-fs tag `{0}` given twice")]
    DuplicateTag(String),
}

/// Checks a tag: 1 to 36 bytes of `[A-Za-z0-9_-]` (what the guest's
/// `berth.shares=` parser accepts).
pub fn validate_tag(tag: &str) -> Result<(), FsError> {
    let ok = !tag.is_empty()
        && tag.len() <= TAG_LEN
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(FsError::Tag(tag.to_string()))
    }
}

impl FsConfig {
    /// Parses `tag=TAG,path=HOSTDIR[,ro]` (keys in any order; `rw` is the
    /// default; a path may contain commas unless a part after one is
    /// itself `ro`, `rw` or starts with `tag=`/`path=`).
    pub fn parse(spec: &str) -> Result<FsConfig, FsError> {
        let bad = |why: &str| FsError::Spec {
            spec: spec.to_string(),
            why: why.to_string(),
        };
        let mut tag: Option<String> = None;
        let mut path: Option<String> = None;
        let mut read_only = false;
        // Whether the last key was `path=` (a following unknown part is
        // then a comma inside the path).
        let mut in_path = false;
        for part in spec.split(',') {
            if let Some(t) = part.strip_prefix("tag=") {
                if tag.replace(t.to_string()).is_some() {
                    return Err(bad("tag= given twice"));
                }
                in_path = false;
            } else if let Some(p) = part.strip_prefix("path=") {
                if path.replace(p.to_string()).is_some() {
                    return Err(bad("path= given twice"));
                }
                in_path = true;
            } else if part == "ro" {
                read_only = true;
                in_path = false;
            } else if part == "rw" {
                read_only = false;
                in_path = false;
            } else if in_path {
                let p = path.as_mut().expect("in_path implies a path");
                p.push(',');
                p.push_str(part);
            } else {
                return Err(bad(&format!("unknown option `{part}`")));
            }
        }
        let tag = tag.ok_or_else(|| bad("tag= is missing"))?;
        let path = path.ok_or_else(|| bad("path= is missing"))?;
        validate_tag(&tag)?;
        if path.is_empty() {
            return Err(bad("path= is empty"));
        }
        Ok(FsConfig {
            tag,
            path: PathBuf::from(path),
            read_only,
        })
    }

    /// The virtio-fs configuration space: the tag, NUL-padded to 36
    /// bytes, then `num_request_queues` (le32).
    pub fn config_space(&self, request_queues: u32) -> [u8; TAG_LEN + 4] {
        let mut c = [0u8; TAG_LEN + 4];
        let n = self.tag.len().min(TAG_LEN);
        c[..n].copy_from_slice(&self.tag.as_bytes()[..n]);
        c[TAG_LEN..].copy_from_slice(&request_queues.to_le_bytes());
        c
    }
}

/// Refuses two shares with one tag (the guest could only mount one).
pub fn check_unique_tags(shares: &[FsConfig]) -> Result<(), FsError> {
    for (i, s) in shares.iter().enumerate() {
        if shares[..i].iter().any(|o| o.tag == s.tag) {
            return Err(FsError::DuplicateTag(s.tag.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod spec_tests {
    use super::*;

    #[test]
    fn parses_specs() {
        let c = FsConfig::parse("tag=t1,path=/tmp/x").unwrap();
        assert_eq!(c.tag, "t1");
        assert_eq!(c.path, PathBuf::from("/tmp/x"));
        assert!(!c.read_only);
        let c = FsConfig::parse("tag=src_2-b,path=/a,b/c,ro").unwrap();
        assert_eq!(c.path, PathBuf::from("/a,b/c"));
        assert!(c.read_only);
        let c = FsConfig::parse("path=/p,tag=x,rw").unwrap();
        assert_eq!((c.tag.as_str(), c.read_only), ("x", false));
        for bad in [
            "",
            "tag=t",
            "path=/x",
            "tag=,path=/x",
            "tag=a/b,path=/x",
            "tag=a b,path=/x",
            "tag=t,path=",
            "tag=t,path=/x,tag=u",
            "bogus,tag=t,path=/x",
            "tag=t,ro,path=/x,ro,bogus",
            &format!("tag={},path=/x", "a".repeat(37)),
        ] {
            assert!(FsConfig::parse(bad).is_err(), "{bad} should be refused");
        }
        // 36 bytes is the most the tag field holds.
        assert!(FsConfig::parse(&format!("tag={},path=/x", "a".repeat(36))).is_ok());
    }

    #[test]
    fn config_space_is_tag_then_queue_count() {
        let c = FsConfig::parse("tag=t1,path=/x").unwrap().config_space(1);
        assert_eq!(&c[..3], b"t1\0");
        assert!(c[2..36].iter().all(|b| *b == 0));
        assert_eq!(&c[36..], &1u32.to_le_bytes());
    }

    #[test]
    fn duplicate_tags_are_refused() {
        let a = FsConfig::parse("tag=t,path=/a").unwrap();
        let b = FsConfig::parse("tag=t,path=/b").unwrap();
        assert!(check_unique_tags(&[a.clone(), b]).is_err());
        assert!(check_unique_tags(&[a]).is_ok());
    }
}
