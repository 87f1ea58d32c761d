//! `exec`: an extra process in a running container. Like the container's
//! own shim, each exec gets a small single-threaded monitor process
//! (`berth-agent exec-shim`) that joins the container's namespaces and
//! cgroup through libcontainer's tenant builder, relays stdio over an
//! attach socket and reports the exit code.

use super::containers::{spawn_monitor, ContainerStore};
use super::files::ContainerPaths;
use super::launch::Readiness;
use super::record::ContainerRecord;
use super::rootfs_path::secure_join;
use super::shim::{self, StartError};
use super::{spec, user, Engine};
use crate::engine::Error;
use crate::layout::{random_hex, read_json, write_json_atomic_unsynced, Layout};
use berth_protocol::mux::{self, Kind};
use berth_protocol::{ContainerStatus, ErrorKind, ExecConfig};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `containers/<id>/exec/<exec-id>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecRecord {
    pub id: String,
    pub container: String,
    pub config: ExecConfig,
}

fn exec_dir(layout: &Layout, container: &str) -> PathBuf {
    layout.container(container).join(super::files::EXEC_DIR)
}

/// The attach socket of one exec.
pub fn exec_socket(layout: &Layout, exec_id: &str) -> PathBuf {
    layout
        .sockets()
        .join(format!("{}.e", &exec_id[..16.min(exec_id.len())]))
}

impl ContainerStore {
    /// Starts an exec's monitor. With `wait_attach` the process starts only
    /// once a client attached to [`exec_socket`]. Returns the exec id.
    pub fn exec(&self, key: &str, config: ExecConfig, wait_attach: bool) -> Result<String, Error> {
        let r = self.resolve(key)?;
        match self.status(&r.id).0 {
            ContainerStatus::Running => {}
            ContainerStatus::Paused => {
                return Err(Error::conflict(format!(
                    "Container {key} is paused, unpause the container before exec"
                )))
            }
            _ => {
                return Err(Error::conflict(format!(
                    "Container {} is not running",
                    r.id
                )))
            }
        }
        if config.cmd.is_empty() {
            return Err(Error::invalid("No exec command specified"));
        }
        for e in &config.env {
            if e.is_empty() || e.starts_with('=') || e.contains('\0') {
                return Err(Error::invalid(format!(
                    "invalid environment variable: {e:?}"
                )));
            }
        }
        if let Some(w) = config.workdir.as_deref().filter(|w| !w.is_empty()) {
            if !w.starts_with('/') {
                return Err(Error::invalid(format!(
                    "the working directory '{w}' is invalid, it needs to be an absolute path"
                )));
            }
        }
        let exec_id = random_hex(32);
        let action = |what: &str| format!("{what}: {}", config.cmd.join(" "));
        let (created, started) = (action("exec_create"), action("exec_start"));
        let dir = exec_dir(self.layout(), &r.id);
        std::fs::create_dir_all(&dir).map_err(Error::unexpected)?;
        write_json_atomic_unsynced(
            &dir.join(format!("{exec_id}.json")),
            &ExecRecord {
                id: exec_id.clone(),
                container: r.id.clone(),
                config,
            },
        )
        .map_err(Error::unexpected)?;
        let mut args = vec![
            "exec-shim",
            "--id",
            r.id.as_str(),
            "--exec",
            exec_id.as_str(),
        ];
        if wait_attach {
            args.push("--wait-attach");
        }
        let exec_attr = [("execID", exec_id.clone())];
        super::events::container(self.layout().root(), &r, &created, &exec_attr);
        spawn_monitor(
            self.layout().root(),
            &args,
            &dir.join(format!("{exec_id}.log")),
            "exec",
        )?;
        super::events::container(self.layout().root(), &r, &started, &exec_attr);
        Ok(exec_id)
    }
}

/// Entry point of `berth-agent exec-shim`.
pub fn run_shim(root: &Path, id: &str, exec_id: &str, wait_attach: bool) -> i32 {
    // SAFETY: fd 3 is the readiness pipe the agent passes us.
    let mut ready = Some(unsafe { File::from_raw_fd(3) });
    let engine = Engine::open(Layout::new(root));
    let layout = engine.layout().clone();
    let dir = exec_dir(&layout, id);
    let paths = ContainerPaths::new(&layout, id);
    let fail = |ready: &mut Option<File>, e: StartError| {
        shim::report(
            ready,
            &Readiness {
                ok: false,
                kind: Some(e.kind),
                message: Some(e.message),
            },
        );
        e.code
    };
    let (Ok(Some(rec)), Ok(Some(ex))) = (
        read_json::<ContainerRecord>(&paths.dir.join(super::files::RECORD)),
        read_json::<ExecRecord>(&dir.join(format!("{exec_id}.json"))),
    ) else {
        return fail(
            &mut ready,
            StartError {
                kind: ErrorKind::NotFound,
                code: 1,
                message: format!("No such exec instance: {exec_id}"),
            },
        );
    };
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer flag.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let code = match run_exec(&layout, &rec, &ex, &paths, wait_attach, &mut ready) {
        Ok(code) => code,
        Err(e) => fail(&mut ready, e),
    };
    let _ = std::fs::remove_file(dir.join(format!("{exec_id}.json")));
    let _ = std::fs::remove_file(dir.join(format!("{exec_id}.log")));
    let _ = std::fs::remove_file(exec_socket(&layout, exec_id));
    let _ = std::fs::remove_file(layout.sockets().join(format!("{}.x", &exec_id[..16])));
    code
}

fn run_exec(
    layout: &Layout,
    rec: &ContainerRecord,
    ex: &ExecRecord,
    paths: &ContainerPaths,
    wait_attach: bool,
    ready: &mut Option<File>,
) -> Result<i32, StartError> {
    let c = &ex.config;
    let user_spec = c.user.clone().unwrap_or_else(|| rec.user.clone());
    let mut identity = user::resolve(&paths.rootfs, &user_spec).map_err(Error::unexpected)?;
    // docker's exec joins the container's --group-add groups too.
    user::add_groups(&paths.rootfs, &mut identity, &rec.config.group_add)
        .map_err(StartError::engine)?;
    let mut env = rec.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", identity.home));
    }
    if c.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    for e in &c.env {
        // A bare NAME (unset where the client ran) removes NAME, as in docker.
        let key = e.split('=').next().unwrap_or_default();
        env.retain(|x| x.split('=').next() != Some(key));
        if e.contains('=') {
            env.push(e.clone());
        }
    }
    let cwd = c
        .workdir
        .clone()
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| rec.workdir.clone());
    let host_cwd = secure_join(&paths.rootfs, Path::new(&cwd)).map_err(Error::unexpected)?;
    if !host_cwd.is_dir() {
        return Err(StartError {
            kind: ErrorKind::Internal,
            code: 126,
            message: format!(
                "chdir to cwd (\"{cwd}\") set in config.json failed: no such file or directory"
            ),
        });
    }
    shim::check_executable(&paths.rootfs, &rec.mounts, &c.cmd, &env, &cwd)?;
    let privileges =
        super::security::Privileges::resolve(&rec.config).map_err(StartError::engine)?;
    let mut process = spec::process(
        c.tty,
        &identity,
        &c.cmd,
        &env,
        &cwd,
        shim::nofile_limit(),
        &privileges,
    );
    process["rlimits"] = spec::rlimits(shim::nofile_limit(), &rec.config.ulimits);
    let seccomp =
        super::security::seccomp_executor(&privileges, &mut process, &layout.seccomp_cache())
            .map_err(StartError::engine)?;
    let process_path = exec_dir(layout, &rec.id).join(format!("{}.process.json", ex.id));
    write_json_atomic_unsynced(&process_path, &process).map_err(Error::unexpected)?;

    let attach_path = exec_socket(layout, &ex.id);
    let _ = std::fs::remove_file(&attach_path);
    let listener = UnixListener::bind(&attach_path).map_err(Error::failed("attach socket"))?;
    let mut clients = Vec::new();
    if wait_attach {
        shim::report(ready, &Readiness::OK);
        if let Some(c) = shim::accept_client(&listener, Duration::from_secs(60)) {
            clients.push(c);
        }
    }
    let builder = libcontainer::container::builder::ContainerBuilder::new(
        rec.id.clone(),
        libcontainer::syscall::syscall::SyscallType::Linux,
    )
    .with_root_path(layout.runtime())
    .map_err(Error::unexpected)?;
    let console = layout.sockets().join(format!("{}.x", &ex.id[..16]));
    let builder = match seccomp {
        Some(x) => builder.with_executor(x),
        None => builder,
    };
    let (builder, mut plan) = shim::plan_stdio(builder, c.tty, c.stdin, &console)?;
    plan.receive_console_early(clients.first().and_then(|c| c.tty_size));
    // SAFETY: resetting a signal disposition to default is always sound.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let built = builder
        .as_tenant()
        .with_process(Some(&process_path))
        .with_detach(true)
        .build();
    // SAFETY: as above; the monitor itself must not die of SIGPIPE.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let _ = std::fs::remove_file(&process_path);
    let pid = built.map_err(Error::failed("exec failed"))?;
    let stdio = plan.into_stdio()?;
    if !wait_attach {
        shim::report(ready, &Readiness::OK);
    }
    let (code, clients) = shim::monitor(pid, stdio, listener, clients, None, None);
    // Before the clients hear the exit code, as `die` before exit.json.
    let attrs = [("execID", ex.id.clone()), ("exitCode", code.to_string())];
    super::events::container(layout.root(), rec, "exec_die", &attrs);
    for mut c in clients {
        let _ = mux::write_frame(&mut c.stream, Kind::Exit, &code.to_be_bytes());
        let _ = c.stream.flush();
    }
    Ok(code)
}
