//! What every container process needs checked or set before it starts,
//! shared by the container shim, `exec` and health probes: the executable
//! lookup inside the container (docker's 126/127), the open-files limit,
//! [`StartError`], the failure before the process ran, and [`Readiness`],
//! how a monitor (shim, exec-shim) reports the start to the agent.

use super::rootfs_path::secure_join;
use super::Error;
use berth_protocol::ErrorKind;
use serde::{Deserialize, Serialize};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Set by the agent for the shims it starts as a guest's init: slow
/// container starts are also reported on the console.
pub(super) const CONSOLE_TRACE_ENV: &str = "BERTH_SHIM_CONSOLE_TRACE";

/// The line a monitor (the shim, an exec-shim) writes on fd 3.
#[derive(Debug, Serialize, Deserialize)]
pub struct Readiness {
    pub ok: bool,
    pub kind: Option<ErrorKind>,
    pub message: Option<String>,
}

impl Readiness {
    pub const OK: Readiness = Readiness {
        ok: true,
        kind: None,
        message: None,
    };
}

/// A failure before the container ran, with docker's exit code.
pub(super) struct StartError {
    pub kind: ErrorKind,
    pub code: i32,
    pub message: String,
}

impl StartError {
    pub fn engine(message: impl Into<String>) -> StartError {
        StartError {
            kind: ErrorKind::Internal,
            code: 125,
            message: message.into(),
        }
    }

    /// An engine error before the process ran: its wire message, reported
    /// as the engine's own failure (docker's 125).
    pub fn from_engine(e: Error) -> StartError {
        StartError::engine(e.message())
    }
}

/// `?` on an engine error in a monitor: [`StartError::from_engine`].
impl From<Error> for StartError {
    fn from(e: Error) -> StartError {
        StartError::from_engine(e)
    }
}

/// Where `inner` (an absolute path in the container) is found from the
/// engine's side: under the bind or volume mounted deepest above it (its
/// source), else in the root filesystem. The container's own mounts are
/// not visible from here (natively they live in its mount namespace, and
/// at start they do not exist yet), so `run -v /opt/tools:/t IMAGE
/// /t/prog` must be looked up in `/opt/tools`. A tmpfs is empty at start:
/// nothing is found under one.
pub(super) fn locate_in_container(
    rootfs: &Path,
    mounts: &[berth_protocol::MountPoint],
    inner: &Path,
) -> std::io::Result<Option<PathBuf>> {
    // `..` is taken lexically before the mount is chosen, so `/p/../q`
    // is looked up under `/q`'s mount, not inside `/p`'s source.
    let mut normal = PathBuf::from("/");
    for c in inner.components() {
        match c {
            std::path::Component::Normal(n) => normal.push(n),
            std::path::Component::ParentDir => {
                normal.pop();
            }
            _ => {}
        }
    }
    let inner = normal.as_path();
    let deepest = mounts
        .iter()
        .filter_map(|m| {
            let rest = inner.strip_prefix(&m.destination).ok()?;
            Some((Path::new(&m.destination).components().count(), m, rest))
        })
        .max_by_key(|(depth, _, _)| *depth);
    match deepest {
        Some((_, m, _)) if m.kind == berth_protocol::MountType::Tmpfs => Ok(None),
        Some((_, m, rest)) => secure_join(Path::new(&m.source), rest).map(Some),
        None => secure_join(rootfs, inner).map(Some),
    }
}

/// Finds the executable the way execvp would, inside the container root
/// and its mounts.
pub(super) fn check_executable(
    rootfs: &Path,
    mounts: &[berth_protocol::MountPoint],
    args: &[String],
    env: &[String],
    cwd: &str,
) -> Result<(), StartError> {
    let Some(cmd) = args.first() else {
        return Err(StartError {
            kind: ErrorKind::InvalidArgument,
            code: 125,
            message: "no command specified".into(),
        });
    };
    let is_exec = |p: &Path| -> Option<bool> {
        let m = std::fs::metadata(p).ok()?;
        Some(m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if cmd.contains('/') {
        let inner = if cmd.starts_with('/') {
            PathBuf::from(cmd)
        } else {
            Path::new(cwd).join(cmd)
        };
        let host = locate_in_container(rootfs, mounts, &inner).map_err(Error::unexpected)?;
        return match host.as_deref().and_then(is_exec) {
            Some(true) => Ok(()),
            Some(false) => Err(StartError {
                kind: ErrorKind::CommandNotExecutable,
                code: 126,
                message: format!("exec: {cmd:?}: permission denied"),
            }),
            None => Err(StartError {
                kind: ErrorKind::CommandNotFound,
                code: 127,
                message: format!("exec: {cmd:?}: stat {cmd}: no such file or directory"),
            }),
        };
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let mut found_non_exec = false;
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let host = locate_in_container(rootfs, mounts, &Path::new(dir).join(cmd))
            .map_err(Error::unexpected)?;
        match host.as_deref().and_then(is_exec) {
            Some(true) => return Ok(()),
            Some(false) => found_non_exec = true,
            None => {}
        }
    }
    if found_non_exec {
        return Err(StartError {
            kind: ErrorKind::CommandNotExecutable,
            code: 126,
            message: format!("exec: {cmd:?}: permission denied"),
        });
    }
    Err(StartError {
        kind: ErrorKind::CommandNotFound,
        code: 127,
        message: format!("exec: {cmd:?}: executable file not found in $PATH"),
    })
}

/// Docker's default open-files limit, or the hard limit we hold if lower
/// (raising it needs CAP_SYS_RESOURCE, which sandboxes often drop).
pub(super) fn nofile_limit() -> u64 {
    let hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(_, h)| h)
        .unwrap_or(1024);
    hard.min(1_048_576)
}
