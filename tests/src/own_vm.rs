//! What an installation's own VMs (`--isolation vm`) leave on the host,
//! for issue 24's leak check after concurrent clones.
//!
//! An own VM is a `berth-vmm` process (and, for `run -d`, its keeper)
//! with a directory under `$BERTH_HOME/vms/`, cloned from the snapshot in
//! `$BERTH_HOME/cache/snapshots/`. Its network is the VMM's user-mode
//! stack (host sockets: no tap, veth, bridge or firewall rule) and the
//! host makes no cgroup for it; a VM with file binds has them mounted in
//! its VMM's own mount namespace. [`traces`] looks for every one of these
//! kinds, so that it also catches one that should never appear.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The live (not zombie) processes whose command line or environment
/// names `home` (the VMMs' `--vsock-uds`, every berth process's
/// `BERTH_HOME`): PID and command line.
pub fn processes_of(home: &Path) -> Vec<(i32, String)> {
    let home = home.to_string_lossy().into_owned();
    let env = format!("BERTH_HOME={home}");
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == std::process::id() as i32 || !alive(pid) {
            continue;
        }
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let environ = std::fs::read(e.path().join("environ")).unwrap_or_default();
        let named = String::from_utf8_lossy(&cmdline).contains(&home)
            || environ.split(|b| *b == 0).any(|v| v == env.as_bytes());
        if named {
            found.push((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")));
        }
    }
    found
}

/// Whether `pid` is a live process (not a zombie).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// The PIDs in `$BERTH_HOME/vms/*/vmm.pid` now.
pub fn recorded_vmm_pids(home: &Path) -> Vec<i32> {
    std::fs::read_dir(home.join("vms"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|d| std::fs::read_to_string(d.path().join("vmm.pid")).ok())
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// The tun/tap links on the host now.
pub fn tap_links() -> BTreeSet<String> {
    std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("tun_flags").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The files and sockets below `dir` (recursively, not following links).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(&p, out),
            Ok(_) => out.push(p),
            Err(_) => {}
        }
    }
}

/// Everything of `home`'s own VMs left on the host, one line per trace,
/// its kind first (`process`, `file`, `socket`, `mount`, `cgroup`,
/// `link`): empty when nothing is left.
///
/// - `process`: a live process naming `home` ([`processes_of`]), or one
///   of `vmm_pids` (recorded while the VMs ran) still a `berth-vmm`.
/// - `file`: a VM directory under `vms/` (anything there but the
///   keepers' shared `keeper.log`), debris of a snapshot build or
///   replacement (`.tmp-*`, `.bad-*`, `*.building`) in the snapshot
///   cache, a warm-pool standby's socket under `pool/`.
/// - `socket`: a Unix socket anywhere below `home`.
/// - `mount`: a mount below `home`, in the host's mount table or in that
///   of a process of `home` (a VMM's private binds).
/// - `cgroup`: a process of `home` in a cgroup other than this test's
///   (the host makes none for an own VM), or a cgroup directory named
///   after one of `ids` (the containers, at most three levels down).
/// - `link`: a tun/tap link not in `taps_before`, or a process of `home`
///   holding `/dev/net/tun`.
pub fn traces(
    home: &Path,
    vmm_pids: &[i32],
    ids: &[String],
    taps_before: &BTreeSet<String>,
) -> Vec<String> {
    let prefix = home.to_string_lossy().into_owned();
    let mut left = Vec::new();
    let procs = processes_of(home);
    for (pid, cmd) in &procs {
        left.push(format!("process {pid} {cmd}"));
    }
    for pid in vmm_pids {
        let vmm = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.contains("(berth-vmm)"));
        if vmm && alive(*pid) && !procs.iter().any(|(p, _)| p == pid) {
            left.push(format!("process {pid} berth-vmm (recorded)"));
        }
    }

    for e in std::fs::read_dir(home.join("vms"))
        .into_iter()
        .flatten()
        .flatten()
    {
        // The keepers' shared error log stays (not one VM's).
        if e.file_name() != "keeper.log" {
            left.push(format!("file {}", e.path().display()));
        }
    }
    for e in std::fs::read_dir(home.join("cache/snapshots"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(".tmp-") || name.starts_with(".bad-") || name.ends_with(".building") {
            left.push(format!("file {}", e.path().display()));
        }
    }
    let mut pool = Vec::new();
    walk(&home.join("pool"), &mut pool);
    left.extend(pool.iter().map(|p| format!("file {}", p.display())));
    let mut all = Vec::new();
    walk(home, &mut all);
    for p in all {
        use std::os::unix::fs::FileTypeExt;
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_socket()) {
            left.push(format!("socket {}", p.display()));
        }
    }

    let mut tables = vec![("host".to_string(), PathBuf::from("/proc/self/mountinfo"))];
    for (pid, _) in &procs {
        tables.push((
            format!("pid {pid}"),
            format!("/proc/{pid}/mountinfo").into(),
        ));
    }
    let mut mounts = BTreeSet::new();
    for (whose, table) in tables {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for l in text.lines() {
            if l.split(' ').nth(4).is_some_and(|m| m.starts_with(&prefix)) {
                mounts.insert(format!("mount ({whose}) {l}"));
            }
        }
    }
    left.extend(mounts);

    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    for (pid, _) in &procs {
        if let Ok(cg) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) {
            if cg != own {
                left.push(format!("cgroup of {pid}: {}", cg.trim()));
            }
        }
    }
    if !ids.is_empty() {
        let mut dirs = vec![PathBuf::from("/sys/fs/cgroup")];
        for _ in 0..3 {
            let mut next = Vec::new();
            for d in &dirs {
                for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        let name = e.file_name().to_string_lossy().into_owned();
                        if ids.iter().any(|id| name.contains(id.as_str())) {
                            left.push(format!("cgroup {}", e.path().display()));
                        }
                        next.push(e.path());
                    }
                }
            }
            dirs = next;
        }
    }

    for tap in tap_links().difference(taps_before) {
        left.push(format!("link {tap} (a new tun/tap device)"));
    }
    for (pid, _) in &procs {
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if std::fs::read_link(fd.path()).is_ok_and(|t| t == Path::new("/dev/net/tun")) {
                left.push(format!("link: {pid} holds /dev/net/tun"));
            }
        }
    }
    left
}

/// Each file of the snapshots in `$BERTH_HOME/cache/snapshots/<key>/`:
/// path, size, inode and modification time (a snapshot rewritten or
/// replaced shows as a change).
pub fn snapshot_files(home: &Path) -> Vec<(PathBuf, u64, u64, std::time::SystemTime)> {
    use std::os::unix::fs::MetadataExt;
    let mut files = Vec::new();
    for e in std::fs::read_dir(home.join("cache/snapshots"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if e.path().join("state.bin").is_file() {
            walk(&e.path(), &mut files);
        }
    }
    files.sort();
    files
        .into_iter()
        .filter_map(|p| {
            let m = std::fs::metadata(&p).ok()?;
            Some((p, m.len(), m.ino(), m.modified().ok()?))
        })
        .collect()
}
