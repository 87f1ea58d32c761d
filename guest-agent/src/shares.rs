//! The virtio-fs shares a berth guest mounts: the machine VM's from the
//! kernel command line at boot (`berth.shares=TAG@/host/path[:ro],…`,
//! failures logged and skipped), an own VM's on the `SharesMount` request
//! after its restore (its snapshot's share slots, filled per clone;
//! failures fail the request). Each is mounted at [`HOST_MNT`] + host path;
//! writable ones get live host events (`share_events`).

use crate::machine::{log, param, uptime};
use nix::mount::{mount, MsFlags};
use std::path::Path;

pub use crate::engine::share_watch::HOST_MNT;

/// One `berth.shares=` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// virtio-fs tag (`[A-Za-z0-9_-]`, at most 36 bytes).
    pub tag: String,
    /// The host path as the host names it (absolute, normalized).
    pub host_path: String,
    /// Mount read-only.
    pub read_only: bool,
}

impl Share {
    /// `/host_mnt` + the host path.
    pub fn mount_point(&self) -> String {
        if self.host_path == "/" {
            HOST_MNT.to_string()
        } else {
            format!("{HOST_MNT}{}", self.host_path)
        }
    }
}

/// Parses the value of `berth.shares=`: comma-separated `TAG@/abs/path`
/// entries, each optionally ending in `:ro`. Returns the valid shares and
/// one message per refused entry (bad tag, relative path, `.`/`..`
/// components, a tag or mount point given twice).
pub fn parse_shares(value: &str) -> (Vec<Share>, Vec<String>) {
    let mut shares: Vec<Share> = Vec::new();
    let mut refused = Vec::new();
    for entry in value.split(',').filter(|e| !e.is_empty()) {
        let Some((tag, rest)) = entry.split_once('@') else {
            refused.push(format!("share `{entry}`: expected TAG@/path"));
            continue;
        };
        let (path, read_only) = match rest.strip_suffix(":ro") {
            Some(p) => (p, true),
            None => (rest, false),
        };
        match Share::checked(tag, path, read_only, &shares) {
            Ok(share) => shares.push(share),
            Err(why) => refused.push(format!("share `{entry}`: {why}")),
        }
    }
    (shares, refused)
}

impl Share {
    /// A share from its parts: the tag as the VMM takes it, an absolute
    /// path without `.`/`..` (normalized), neither tag nor path among
    /// `others`; why not otherwise.
    pub fn checked(
        tag: &str,
        path: &str,
        read_only: bool,
        others: &[Share],
    ) -> Result<Share, String> {
        let tag_ok = !tag.is_empty()
            && tag.len() <= 36
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !tag_ok {
            return Err("tag must be 1 to 36 characters of A-Z a-z 0-9 _ -".into());
        }
        if !path.starts_with('/') {
            return Err("path must be absolute".into());
        }
        let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        if parts
            .iter()
            .any(|c| *c == "." || *c == ".." || c.contains('\0'))
        {
            return Err("path must not contain . or .. components".into());
        }
        let share = Share {
            tag: tag.to_string(),
            host_path: format!("/{}", parts.join("/")),
            read_only,
        };
        if others
            .iter()
            .any(|s| s.tag == share.tag || s.host_path == share.host_path)
        {
            return Err("tag or path given twice".into());
        }
        Ok(share)
    }
}

/// Mounts the shares of `berth.shares=`; failures are logged and skipped.
pub fn mount_shares(cmdline: &str, engine_root: &Path) {
    let Some(value) = param(cmdline, "berth.shares") else {
        return;
    };
    let check = param(cmdline, "berth.shares_check") == Some("1");
    let (shares, refused) = parse_shares(value);
    for why in refused {
        log(&format!("{why}; not mounted"));
    }
    // Writable shares get live host events (share_events.rs).
    let mut watched = Vec::new();
    for share in shares {
        match mount_share(&share, check) {
            Ok(mp) if !share.read_only => watched.push((share.tag.clone(), mp.into())),
            Ok(_) => {}
            Err(why) => log(&why),
        }
    }
    crate::share_events::spawn(watched, engine_root);
}

/// The boot's shares (`berth.shares=` of /proc/cmdline), parsed again.
fn boot_shares() -> Result<Vec<Share>, String> {
    let cmdline =
        std::fs::read_to_string("/proc/cmdline").map_err(|e| format!("/proc/cmdline: {e}"))?;
    Ok(param(&cmdline, "berth.shares")
        .map(|v| parse_shares(v).0)
        .unwrap_or_default())
}

/// Whether `mp` is a mount point in this mount namespace.
fn is_mounted(mp: &str) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(mp))
}

/// `SharesRelease`: ends the share-event stream and unmounts the boot's
/// shares before a suspend (see the request's docs). A share a container
/// still binds stays alive in the guest kernel (its FUSE session goes on):
/// the VMM then refuses the suspend and the host asks for
/// [`remount`].
pub fn release() -> Result<(), String> {
    if std::process::id() != 1 {
        return Err("shares are only for guest agents".into());
    }
    crate::share_events::stop();
    for share in boot_shares()? {
        let mp = share.mount_point();
        if !is_mounted(&mp) {
            continue;
        }
        nix::mount::umount2(mp.as_str(), nix::mount::MntFlags::empty())
            .map_err(|e| format!("share {} at {mp}: unmount: {e}", share.tag))?;
    }
    log(&format!(
        "shares released for a suspend (uptime {:.3} s)",
        uptime()
    ));
    Ok(())
}

/// `SharesRemount`: mounts the boot's shares that are not mounted and
/// restarts the live events of the writable ones.
pub fn remount(engine_root: &Path) -> Result<(), String> {
    if std::process::id() != 1 {
        return Err("shares are only for guest agents".into());
    }
    let mut watched = Vec::new();
    let mut failed = Vec::new();
    for share in boot_shares()? {
        let mp = share.mount_point();
        if !is_mounted(&mp) {
            if let Err(why) = mount_share(&share, false) {
                failed.push(why);
                continue;
            }
        }
        if !share.read_only {
            watched.push((share.tag.clone(), mp.into()));
        }
    }
    crate::share_events::stop();
    crate::share_events::spawn(watched, engine_root);
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}

/// Whether [`mount_requested`] ran (a guest mounts its requested shares once).
static REQUESTED_SHARES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `SharesMount`: mounts the shares a throw-away VM got at restore (its
/// snapshot's share slots; see `host-core/src/vm_shares.rs`), and starts
/// live events for the writable ones. Unlike the boot's shares, a share
/// that does not mount fails the request: the container would otherwise
/// see an empty folder where its bind mount should be.
pub fn mount_requested(
    list: &[berth_protocol::ShareMount],
    engine_root: &Path,
) -> Result<(), String> {
    use std::sync::atomic::Ordering;
    if std::process::id() != 1 {
        return Err("shares are only for guest agents".into());
    }
    let mut shares: Vec<Share> = Vec::new();
    for m in list {
        let share = Share::checked(&m.tag, &m.host_path, m.read_only, &shares)
            .map_err(|why| format!("share `{}`: {why}", m.tag))?;
        shares.push(share);
    }
    if REQUESTED_SHARES.swap(true, Ordering::SeqCst) {
        return Err("this guest's shares are already mounted".into());
    }
    let mut watched = Vec::new();
    for share in &shares {
        let mp = mount_share(share, false)?;
        if !share.read_only {
            watched.push((share.tag.clone(), mp.into()));
        }
    }
    crate::share_events::spawn(watched, engine_root);
    Ok(())
}

/// Mounts `share` at its mount point; the mount point, or why not.
fn mount_share(share: &Share, check: bool) -> Result<String, String> {
    let mp = share.mount_point();
    std::fs::create_dir_all(&mp).map_err(|e| format!("share {} at {mp}: mkdir: {e}", share.tag))?;
    let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if share.read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    mount(
        Some(share.tag.as_str()),
        mp.as_str(),
        Some("virtiofs"),
        flags,
        None::<&str>,
    )
    .map_err(|e| format!("share {} at {mp}: mount virtiofs: {e}", share.tag))?;
    if check && !share.read_only {
        if let Err(e) = std::fs::write(
            format!("{mp}/.berth-share-check"),
            format!("written by the guest through share {}\n", share.tag),
        ) {
            log(&format!("share {} at {mp}: check file: {e}", share.tag));
        }
    }
    // Not listed here: reading a large host folder (the /tmp share has
    // thousands of entries) through virtio-fs cost over a second of
    // boot time in an emulated guest. `berth.shares_check=1` still
    // lists it.
    let entries = if check {
        std::fs::read_dir(&mp)
            .map(|d| format!(": {} entries", d.count()))
            .unwrap_or_else(|e| format!(": unreadable ({e})"))
    } else {
        String::new()
    };
    log(&format!(
        "share {} at {mp}{}{entries} (uptime {:.3} s)",
        share.tag,
        if share.read_only { " (ro)" } else { "" },
        uptime()
    ));
    Ok(mp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(tag: &str, path: &str, ro: bool) -> Share {
        Share {
            tag: tag.into(),
            host_path: path.into(),
            read_only: ro,
        }
    }

    #[test]
    fn shares_parse() {
        let (ok, bad) = parse_shares("t1@/root/proj,src_2-b@/Users/me/code:ro,root@/");
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(
            ok,
            [
                share("t1", "/root/proj", false),
                share("src_2-b", "/Users/me/code", true),
                share("root", "/", false)
            ]
        );
        assert_eq!(ok[0].mount_point(), "/host_mnt/root/proj");
        assert_eq!(ok[2].mount_point(), "/host_mnt");
        // Redundant slashes are normalized.
        let (ok, _) = parse_shares("t@//a//b/");
        assert_eq!(ok[0].mount_point(), "/host_mnt/a/b");
    }

    #[test]
    fn bad_shares_are_refused_and_the_rest_kept() {
        let (ok, bad) = parse_shares(
            "good@/a,@/x,no-at,bad/tag@/x,b@rel/path,c@/a/../etc,d@/a/./b,e@/a,good@/z,\
             way-too-long-tag-of-more-than-36-chars@/y,f g@/q",
        );
        assert_eq!(ok, [share("good", "/a", false)]);
        assert_eq!(bad.len(), 10, "{bad:#?}");
        let (ok, bad) = parse_shares("");
        assert!(ok.is_empty() && bad.is_empty());
    }
}
