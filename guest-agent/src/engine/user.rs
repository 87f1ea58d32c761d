//! `--user` resolution against the image's /etc/passwd and /etc/group.

use super::rootfs_path::secure_join;
use std::path::Path;

/// A resolved process identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

/// Why a user spec could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
    #[error("invalid user specification {0:?}")]
    Invalid(String),
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn read_small(root: &Path, path: &str) -> String {
    let Ok(p) = secure_join(root, Path::new(path)) else {
        return String::new();
    };
    match std::fs::metadata(&p) {
        Ok(m) if m.is_file() && m.len() < 4 * 1024 * 1024 => {
            std::fs::read_to_string(p).unwrap_or_default()
        }
        _ => String::new(),
    }
}

fn passwd(root: &Path) -> Vec<PasswdEntry> {
    read_small(root, "/etc/passwd")
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 7 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].into(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].into(),
            })
        })
        .collect()
}

fn groups(root: &Path) -> Vec<GroupEntry> {
    read_small(root, "/etc/group")
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(GroupEntry {
                name: f[0].into(),
                gid: f[2].parse().ok()?,
                members: f[3]
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
            })
        })
        .collect()
}

/// Resolves `spec` (`user`, `uid`, `user:group`, `uid:gid`; empty = root).
pub fn resolve(root: &Path, spec: &str) -> Result<Identity, UserError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    if user.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err(UserError::Invalid(spec.into()));
    }
    let pw = passwd(root);
    let entry = match user.parse::<u32>() {
        Ok(uid) => pw.iter().find(|e| e.uid == uid),
        Err(_) => Some(
            pw.iter()
                .find(|e| e.name == user)
                .ok_or_else(|| UserError::NoUser(user.into()))?,
        ),
    };
    let uid = user
        .parse::<u32>()
        .unwrap_or_else(|_| entry.map(|e| e.uid).unwrap_or(0));
    let mut gid = entry.map(|e| e.gid).unwrap_or(0);
    let grs = groups(root);
    if let Some(g) = group.filter(|g| !g.is_empty()) {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => grs
                .iter()
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| UserError::NoGroup(g.into()))?,
        };
    }
    // As docker (20.10.24 and later, containerd's fix for CVE-2023-25173):
    // the primary group is always among the additional groups, so that
    // setgroups(2) cannot leave a group of the engine's own in place and a
    // file's group permissions apply to the process as `id` shows them.
    let mut additional_gids = vec![gid];
    if group.is_none() {
        if let Some(e) = entry {
            for g in &grs {
                if g.members.contains(&e.name) && g.gid != gid && !additional_gids.contains(&g.gid)
                {
                    additional_gids.push(g.gid);
                }
            }
        }
    }
    let home = entry
        .map(|e| e.home.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".into());
    Ok(Identity {
        uid,
        gid,
        additional_gids,
        home,
    })
}

/// Adds `--group-add`'s groups (names in the image's /etc/group, or
/// numbers) to `identity`'s additional groups, each once.
pub fn add_groups(root: &Path, identity: &mut Identity, extra: &[String]) -> Result<(), String> {
    if extra.is_empty() {
        return Ok(());
    }
    let grs = groups(root);
    for g in extra {
        let gid = match grs.iter().find(|e| e.name == *g || e.gid.to_string() == *g) {
            Some(e) => e.gid,
            None => g.parse::<u32>().map_err(|_| {
                format!("Unable to find group {g}: no matching entries in group file")
            })?,
        };
        if !identity.additional_gids.contains(&gid) {
            identity.additional_gids.push(gid);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_names_and_numbers() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nwww:x:33:\nstaff:x:50:www\n",
        )
        .unwrap();
        let r = resolve(d.path(), "").unwrap();
        assert_eq!((r.uid, r.gid, r.home.as_str()), (0, 0, "/root"));
        let w = resolve(d.path(), "www").unwrap();
        assert_eq!(
            (w.uid, w.gid, w.additional_gids.clone()),
            (33, 33, vec![33, 50])
        );
        assert_eq!(r.additional_gids, vec![0]);
        // An explicit group: only that one, no memberships.
        assert_eq!(
            resolve(d.path(), "www:staff").unwrap().additional_gids,
            vec![50]
        );
        // A uid without a passwd entry: group root.
        assert_eq!(resolve(d.path(), "1000").unwrap().additional_gids, vec![0]);
        assert_eq!(resolve(d.path(), "1000:staff").unwrap().gid, 50);
        assert_eq!(resolve(d.path(), "1000").unwrap().home, "/");
        assert!(matches!(
            resolve(d.path(), "nobody"),
            Err(UserError::NoUser(_))
        ));
        assert!(matches!(
            resolve(d.path(), "www:nogroup"),
            Err(UserError::NoGroup(_))
        ));
    }
}
