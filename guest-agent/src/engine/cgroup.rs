//! Removing a stopped container's cgroups without libcontainer.
//!
//! libcontainer's `Container::load` + `delete` finds the cgroup setup again
//! through its hardened procfs access: about a dozen reads of
//! `/proc/self/mountinfo` and `/proc/self/cgroup`, each verified with
//! several `fstatfs`/`statx` calls, some 550 syscalls natively before the
//! first `rmdir`. Where the guest kernel is emulated each syscall costs
//! milliseconds, so the shim removes the cgroups of a container whose init
//! has exited itself: one read of mountinfo, then per hierarchy a kill of
//! what is left and an `rmdir`. Anything unexpected (a cgroup namespace
//! root, an `rmdir` that keeps failing) returns an error and the caller
//! falls back to libcontainer.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The mount points of the cgroup hierarchies in `mountinfo` text (v1
/// controllers and v2). `None` when a hierarchy is mounted from a root
/// other than `/` (a cgroup namespace), where paths need libcgroups'
/// translation.
pub fn hierarchies(mountinfo: &str) -> Option<Vec<PathBuf>> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let fstype = post.split_whitespace().next().unwrap_or("");
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        let mut f = pre.split_whitespace();
        let (Some(root), Some(mnt)) = (f.nth(3), f.next()) else {
            continue;
        };
        if root != "/" {
            return None;
        }
        out.push(PathBuf::from(unescape(mnt)));
    }
    Some(out)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `--oom-kill-disable`: turns the OOM killer off for the cgroup `rel`
/// (e.g. `/berth/<id>`) of the v1 memory hierarchy. Cgroup v2 has no such
/// switch (docker discards the setting there): nothing to do.
pub fn disable_oom_killer(rel: &str) -> std::io::Result<()> {
    let rel = rel.trim_start_matches('/');
    if rel
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(std::io::Error::other(format!("bad cgroup path {rel:?}")));
    }
    let root = Path::new("/sys/fs/cgroup/memory");
    if !root.join("memory.oom_control").exists() {
        return Ok(());
    }
    std::fs::write(root.join(rel).join("memory.oom_control"), b"1")
}

/// Kills what is left in the cgroup `rel` (e.g. `/berth/<id>`) of every
/// hierarchy and removes it. Ok when nothing is left.
pub fn remove(rel: &str) -> std::io::Result<()> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    let roots = hierarchies(&text)
        .ok_or_else(|| std::io::Error::other("cgroup hierarchy mounted from a non-root path"))?;
    let rel = rel.trim_start_matches('/');
    if rel.is_empty()
        || rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(std::io::Error::other(format!("bad cgroup path {rel:?}")));
    }
    for root in roots {
        remove_one(&root.join(rel))?;
    }
    Ok(())
}

fn remove_one(dir: &Path) -> std::io::Result<()> {
    // The common case first: empty, so one syscall.
    match std::fs::remove_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    let kill = dir.join("cgroup.kill");
    if std::fs::write(&kill, "1").is_err() {
        if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
    // Killed processes leave the cgroup once reaped: as libcgroups, retry
    // with a growing delay.
    let mut delay = Duration::from_millis(10);
    for _ in 0..6 {
        std::thread::sleep(delay);
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(_) => delay = (delay * 2).min(Duration::from_millis(200)),
        }
    }
    std::fs::remove_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_v1_and_v2_hierarchies() {
        let text = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
35 30 0:31 / /sys/fs/cgroup/with\\040space rw shared:9 - cgroup cgroup rw,pids
";
        let h = hierarchies(text).unwrap();
        assert_eq!(
            h,
            vec![
                PathBuf::from("/sys/fs/cgroup/unified"),
                PathBuf::from("/sys/fs/cgroup/memory"),
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"),
                PathBuf::from("/sys/fs/cgroup/with space"),
            ]
        );
        assert_eq!(
            hierarchies("1 2 3:4 / /x rw - ext4 /dev/sda rw\n").unwrap(),
            Vec::<PathBuf>::new()
        );
    }

    #[test]
    fn a_cgroup_namespace_root_is_left_to_libcgroups() {
        let text = "31 30 0:27 /berth/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(hierarchies(text), None);
    }

    #[test]
    fn hostile_lines_do_not_panic() {
        for t in [
            "",
            " - ",
            "a - cgroup2",
            "1 2 3 - cgroup2 x",
            "\\\\\\ - cgroup",
            "1 2 3:4 / /a\\0 rw - cgroup2 c rw",
        ] {
            let _ = hierarchies(t);
        }
        assert_eq!(unescape("a\\040b\\"), "a b\\");
        assert_eq!(unescape("\\04"), "\\04");
    }

    #[test]
    fn refuses_paths_that_leave_the_hierarchy() {
        for rel in ["", "/", "/berth/../x", "/berth//x", "/./x"] {
            assert!(remove(rel).is_err(), "{rel}");
        }
    }

    #[test]
    fn kills_what_is_left_and_removes_every_hierarchy() {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let roots = hierarchies(&text).unwrap();
        let writable: Vec<_> = roots
            .iter()
            .filter(|r| std::fs::metadata(r.join("cgroup.procs")).is_ok())
            .collect();
        if writable.is_empty() || !nix::unistd::geteuid().is_root() {
            println!("SKIPPED: needs root and a mounted cgroup hierarchy");
            return;
        }
        let rel = format!("berth-unit-{}/c", std::process::id());
        let mut child = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .unwrap();
        let mut made = Vec::new();
        for r in &writable {
            let d = r.join(&rel);
            if std::fs::create_dir_all(&d).is_ok()
                && std::fs::write(d.join("cgroup.procs"), child.id().to_string()).is_ok()
            {
                made.push(d);
            }
        }
        assert!(!made.is_empty(), "could not place a process in any cgroup");
        remove(&format!("/{rel}")).unwrap();
        // The process was killed, and every hierarchy's directory is gone.
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
        for d in &made {
            assert!(!d.exists(), "{} left behind", d.display());
        }
        for r in &writable {
            let d = r.join(&rel);
            let _ = std::fs::remove_dir(&d);
            let _ = std::fs::remove_dir(d.parent().unwrap());
        }
    }

    #[test]
    fn a_missing_cgroup_is_removed() {
        // Nothing named like this exists in any hierarchy.
        remove("/berth-test-does-not-exist/0123456789").unwrap();
    }
}
