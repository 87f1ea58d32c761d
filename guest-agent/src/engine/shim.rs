//! The per-container monitor (`berth-agent shim`): one small
//! single-threaded process per running container, like containerd's shim or
//! conmon. It creates the container with libcontainer (which must not run
//! inside a multi-threaded runtime), owns the container's stdio, writes the
//! log, serves attach connections on a Unix socket, reaps the container's
//! init and records its exit code. It outlives agent restarts.
//!
//! Readiness is reported to the agent as one JSON line on fd 3.

use super::files::ContainerPaths;
use super::fsutil::is_mounted;
pub(super) use super::launch::{check_executable, nofile_limit, StartError};
use super::launch::{Readiness, CONSOLE_TRACE_ENV};
use super::logs::{self, LogWriter};
use super::net::{self, netns};
use super::record::{boot_id, ContainerRecord, ExitState, RunState};
use super::rootfs_path::secure_join;
use super::{spec, user, Engine, Error};
use crate::layout::{read_json, write_json_atomic_unsynced, Layout};
use berth_protocol::mux::{self, Kind};
use berth_protocol::ErrorKind;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long each step of a container start took. Reported (shim log, and
/// the console in guests) when the whole took over [`Phases::SLOW`]: where
/// the guest kernel is emulated a start takes tens of seconds, and this is
/// how to see which step.
struct Phases {
    id: String,
    t0: Instant,
    last: Instant,
    steps: Vec<(&'static str, Duration)>,
}

impl Phases {
    const SLOW: Duration = Duration::from_secs(1);

    fn new(id: &str) -> Phases {
        let now = Instant::now();
        Phases {
            id: id.to_string(),
            t0: now,
            last: now,
            steps: Vec::new(),
        }
    }

    fn mark(&mut self, step: &'static str) {
        let now = Instant::now();
        self.steps.push((step, now - self.last));
        self.last = now;
    }

    fn report(&self, what: &str) {
        if self.t0.elapsed() < Self::SLOW {
            return;
        }
        let steps: Vec<String> = self
            .steps
            .iter()
            .map(|(n, d)| format!("{n} {:.2}", d.as_secs_f64()))
            .collect();
        let line = format!(
            "berth-agent: container {}: {what} took {:.2} s: {}\n",
            &self.id[..12.min(self.id.len())],
            self.t0.elapsed().as_secs_f64(),
            steps.join(", ")
        );
        eprint!("{line}");
        if std::env::var_os(CONSOLE_TRACE_ENV).is_some() {
            if let Ok(mut c) = std::fs::OpenOptions::new().write(true).open("/dev/console") {
                let _ = c.write_all(line.as_bytes());
            }
        }
    }
}

/// First line a client writes on the attach socket.
#[derive(Debug, Serialize, Deserialize)]
pub struct AttachHello {
    pub stdin: bool,
    /// Initial terminal size (rows, cols).
    #[serde(default)]
    pub tty_size: Option<(u16, u16)>,
}

pub(super) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Mounts the container's overlay root filesystem.
pub fn mount_rootfs(
    engine: &Engine,
    rec: &ContainerRecord,
    p: &ContainerPaths,
) -> Result<(), Error> {
    if is_mounted(&p.rootfs) {
        return Ok(());
    }
    let lowers = engine
        .images
        .lowerdirs(&rec.image_id)
        .map_err(Error::unexpected)?;
    for d in [&p.rootfs, &p.upper, &p.work] {
        std::fs::create_dir_all(d).map_err(Error::io(d.display().to_string()))?;
    }
    let lower = if lowers.is_empty() {
        // An image without layers (FROM scratch + no files): an empty lower.
        let empty = p.dir.join(super::files::EMPTY_LOWER);
        std::fs::create_dir_all(&empty).map_err(Error::unexpected)?;
        empty.display().to_string()
    } else {
        lowers
            .iter()
            .map(|l| l.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    };
    let opts = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        p.upper.display(),
        p.work.display()
    );
    nix::mount::mount(
        Some("overlay"),
        &p.rootfs,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(opts.as_str()),
    )
    .map_err(Error::failed("mounting overlay root filesystem"))
}

pub(super) fn report(ready: &mut Option<File>, r: &Readiness) {
    if let Some(mut f) = ready.take() {
        let mut line = serde_json::to_vec(r).unwrap_or_default();
        line.push(b'\n');
        let _ = f.write_all(&line);
    }
}

/// Container stdio as seen by the shim.
pub(super) enum Stdio {
    Pipes {
        stdin: Option<File>,
        stdout: File,
        stderr: File,
    },
    Pty {
        master: File,
    },
}

pub(super) struct Client {
    pub stream: UnixStream,
    pub stdin: bool,
    pub tty_size: Option<(u16, u16)>,
}

/// Entry point of `berth-agent shim`.
pub fn run(root: &Path, id: &str, wait_attach: bool) -> i32 {
    // SAFETY: fd 3 is the readiness pipe the agent passes; nothing else in
    // this fresh process owns it.
    let mut ready = Some(unsafe { File::from_raw_fd(3) });
    let engine = Engine::open(Layout::new(root));
    let layout = engine.layout().clone();
    let paths = ContainerPaths::new(&layout, id);
    let rec: ContainerRecord = match read_json(&paths.dir.join(super::files::RECORD)) {
        Ok(Some(r)) => r,
        _ => {
            report(
                &mut ready,
                &Readiness {
                    ok: false,
                    kind: Some(ErrorKind::NotFound),
                    message: Some(format!("No such container: {id}")),
                },
            );
            return 1;
        }
    };
    // Reap the container's init even if libcontainer's intermediate exits.
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer flag.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let _ = std::fs::remove_file(paths.dir.join(super::files::EXIT_STATE));
    match start(&engine, &rec, &paths, wait_attach, &mut ready) {
        Ok(code) => code,
        Err(e) => {
            let _ = write_json_atomic_unsynced(
                &paths.dir.join(super::files::EXIT_STATE),
                &ExitState {
                    code: e.code,
                    finished_at: now(),
                    started_at: None,
                    error: Some(e.message.clone()),
                },
            );
            // Clean up first: with --rm the container is gone by the time
            // the client hears about the failure.
            cleanup(&engine, &rec, &paths);
            report(
                &mut ready,
                &Readiness {
                    ok: false,
                    kind: Some(e.kind),
                    message: Some(e.message),
                },
            );
            e.code
        }
    }
}

/// Tears down what a run set up; removes the container when asked to.
fn cleanup(engine: &Engine, rec: &ContainerRecord, paths: &ContainerPaths) {
    let left = teardown(engine, rec, paths, false, &mut Phases::new(&rec.id));
    net::container::disconnected(engine, rec, &left);
    if rec.config.auto_remove && engine.containers.remove_files(&rec.id).is_ok() {
        engine.containers.remove_anonymous_volumes(rec);
    }
}

/// Unmounts and deletes what a run set up (runtime state, rootfs mount,
/// network namespace, sockets). Returns the networks the container left,
/// whose `disconnect` events the caller logs (after `die`, as docker).
///
/// `exited`: the container's init is known to have exited, so its cgroups
/// can be removed without libcontainer (see [`super::cgroup`]).
fn teardown(
    engine: &Engine,
    rec: &ContainerRecord,
    paths: &ContainerPaths,
    exited: bool,
    phases: &mut Phases,
) -> Vec<(String, String)> {
    let runtime = engine.layout().runtime().join(&rec.id);
    if runtime.exists() {
        let fast = exited && super::cgroup::remove(&format!("/berth/{}", rec.id)).is_ok();
        if !fast {
            if let Ok(mut c) = libcontainer::container::Container::load(runtime.clone()) {
                let _ = c.delete(true);
            }
        }
        super::controllers::relax();
        phases.mark("delete");
        let _ = std::fs::remove_dir_all(&runtime);
    }
    let _ = nix::mount::umount2(&paths.rootfs, nix::mount::MntFlags::MNT_DETACH);
    super::namespaces::unmount_shm(&paths.dir);
    phases.mark("umount");
    let left = net::container::teardown(engine, rec);
    phases.mark("net");
    netns::remove(&paths.netns);
    phases.mark("netns");
    let _ = std::fs::remove_file(engine.layout().attach_socket(&rec.id));
    let _ = std::fs::remove_file(engine.layout().console_socket(&rec.id));
    let _ = std::fs::remove_file(paths.dir.join(super::files::PAUSED));
    super::share_watch::unregister(engine.layout().root(), &rec.id);
    left
}

fn etc_files(
    engine: &Engine,
    rec: &ContainerRecord,
    paths: &ContainerPaths,
    mode: net::container::Mode,
) -> std::io::Result<Vec<(String, PathBuf)>> {
    let dir = paths.dir.join(super::files::ETC);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("hostname"), format!("{}\n", rec.hostname))?;
    std::fs::write(
        dir.join("hosts"),
        net::container::hosts_file(engine, rec, mode),
    )?;
    let user_network = engine
        .containers
        .runtime_net(&rec.id)
        .is_some_and(|rt| rt.endpoints.iter().any(|e| e.user_defined));
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    std::fs::write(
        dir.join("resolv.conf"),
        net::container::resolv_conf(rec, mode, user_network, &host),
    )?;
    Ok(["hostname", "hosts", "resolv.conf"]
        .iter()
        .map(|n| (format!("/etc/{n}"), dir.join(n)))
        .collect())
}

fn pipe() -> std::io::Result<(File, File)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    Ok((File::from(r), File::from(w)))
}

fn start(
    engine: &Engine,
    rec: &ContainerRecord,
    paths: &ContainerPaths,
    wait_attach: bool,
    ready: &mut Option<File>,
) -> Result<i32, StartError> {
    let layout = engine.layout();
    let mut phases = Phases::new(&rec.id);
    mount_rootfs(engine, rec, paths)?;
    phases.mark("rootfs");
    super::mounts::prepare_mounts(layout, rec, &paths.rootfs)?;
    // Before the process starts: the machine's VMM then watches the shared
    // folders this container bind-mounts (share_watch.rs).
    super::share_watch::register(
        layout.root(),
        &rec.id,
        rec.mounts
            .iter()
            .filter(|m| m.kind == berth_protocol::MountType::Bind)
            .map(|m| m.source.as_str()),
    );
    let mut identity = user::resolve(&paths.rootfs, &rec.user).map_err(Error::unexpected)?;
    user::add_groups(&paths.rootfs, &mut identity, &rec.config.group_add)
        .map_err(StartError::engine)?;
    let devices = super::resources::host_devices(&rec.config.devices).map_err(|m| {
        // docker's CLI exits 127 for any start error that says "no such
        // file or directory".
        if m.ends_with("no such file or directory") {
            StartError {
                kind: berth_protocol::ErrorKind::CommandNotFound,
                code: 127,
                message: m,
            }
        } else {
            StartError::engine(m)
        }
    })?;
    let mut env = rec.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", identity.home));
    }
    // Docker creates a missing working directory.
    let cwd = secure_join(&paths.rootfs, Path::new(&rec.workdir)).map_err(Error::unexpected)?;
    if !cwd.exists() {
        std::fs::create_dir_all(&cwd).map_err(Error::failed("creating working directory"))?;
    }
    check_executable(&paths.rootfs, &rec.mounts, &rec.args, &env, &rec.workdir)?;
    phases.mark("user+cwd+exe");
    let mode = net::container::mode(engine, rec);
    netns::remove(&paths.netns);
    let prepared = if mode == net::container::Mode::Host {
        None
    } else {
        netns::create(&paths.netns).map_err(Error::failed("creating network namespace"))?;
        Some(net::container::prepare(engine, rec, &paths.netns).map_err(StartError::engine)?)
    };
    phases.mark("netns");
    let etc = etc_files(engine, rec, paths, mode).map_err(Error::unexpected)?;
    let etc_refs: Vec<(String, &Path)> =
        etc.iter().map(|(d, p)| (d.clone(), p.as_path())).collect();
    let swap_accounting = Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists();
    let cgroups_path = format!("/berth/{}", rec.id);
    // A copy in the engine root, made on first use, never this binary's
    // own path: an upgrade may have replaced that file while the agent
    // runs, and a bind mount of `… (deleted)` fails.
    let init_binary = if rec.config.init {
        Some(
            layout
                .install_init_binary()
                .map_err(Error::failed("installing the --init binary"))?,
        )
    } else {
        None
    };
    let privileges =
        super::security::Privileges::resolve(&rec.config).map_err(StartError::engine)?;
    let joins = super::namespaces::joins(&engine.containers, &rec.id, &rec.config)
        .map_err(StartError::engine)?;
    if rec.config.ipc_mode.as_deref() == Some("shareable") {
        super::namespaces::mount_shm(&paths.dir, rec.config.shm_size)
            .map_err(Error::failed("mounting /dev/shm"))?;
    }
    let mut spec_json = spec::build(
        rec,
        &spec::SpecInputs {
            rootfs: &paths.rootfs,
            identity: &identity,
            env: &env,
            netns: prepared.as_ref().map(|_| paths.netns.as_path()),
            etc_files: &etc_refs,
            cgroups_path,
            swap_accounting,
            cgroup_v2: Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
            nofile: nofile_limit(),
            init_binary: init_binary.as_deref(),
            privileges: &privileges,
            joins: &joins,
        },
    );
    spec::add_devices(&mut spec_json, devices);
    let seccomp = super::security::seccomp_executor(
        &privileges,
        &mut spec_json["process"],
        &layout.seccomp_cache(),
    )
    .map_err(StartError::engine)?;
    write_json_atomic_unsynced(&paths.bundle.join("config.json"), &spec_json)
        .map_err(Error::unexpected)?;
    phases.mark("spec");

    // Stale libcontainer state from a crashed run blocks a new create.
    let runtime_dir = layout.runtime().join(&rec.id);
    if runtime_dir.exists() {
        if let Ok(mut c) = libcontainer::container::Container::load(runtime_dir.clone()) {
            let _ = c.delete(true);
        }
        let _ = std::fs::remove_dir_all(&runtime_dir);
    }

    // The cgroup, made before libcontainer so that `cpu`/`cpuset` are on
    // only for a container with CPU limits (see `controllers`); the guard
    // keeps them on until libcontainer has written the limits.
    let wants = super::controllers::Wants::of_cpu(&spec_json["linux"]["resources"]["cpu"]);
    let cgroup_guard = super::controllers::prepare(&rec.id, wants)
        .map_err(Error::failed("creating the container's cgroup"))?;

    let attach_path = layout.attach_socket(&rec.id);
    let _ = std::fs::remove_file(&attach_path);
    let listener = UnixListener::bind(&attach_path).map_err(Error::failed("attach socket"))?;

    let builder = libcontainer::container::builder::ContainerBuilder::new(
        rec.id.clone(),
        libcontainer::syscall::syscall::SyscallType::Linux,
    )
    .with_root_path(layout.runtime())
    .map_err(Error::unexpected)?;
    // libcontainer also writes the init pid here; see below.
    let pid_file = paths.bundle.join("init.pid");
    let _ = std::fs::remove_file(&pid_file);
    let builder = builder
        .with_pid_file(Some(pid_file.clone()))
        .map_err(Error::unexpected)?;
    let builder = match seccomp {
        Some(x) => builder.with_executor(x),
        None => builder,
    };
    let (builder, plan) = plan_stdio(
        builder,
        rec.config.tty,
        rec.config.open_stdin,
        &layout.console_socket(&rec.id),
    )?;
    // Children must not inherit an ignored SIGPIPE (Rust ignores it).
    // SAFETY: resetting a signal disposition to default is always sound.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let built = builder
        .as_init(&paths.bundle)
        .with_systemd(false)
        .with_detach(true)
        .build();
    // SAFETY: as above; the shim itself must not die of SIGPIPE.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    drop(cgroup_guard);
    let mut container = built.map_err(Error::failed("creating container"))?;
    phases.mark("create");
    // In guests whose kernel is emulated (kvm_pvm) the state libcontainer
    // saves and reads straight back has been seen to come back without
    // the pid; the pid file it writes as well is the fallback there. On
    // other hosts a missing pid is a state-save bug, reported as one.
    let fault = super::fault::take(&paths.dir, super::fault::Fault::StateWithoutPid);
    let pid = match container.pid().filter(|_| !fault) {
        Some(pid) => pid,
        None if !crate::quirks::Quirks::detect().emulated_kernel => {
            let _ = container.delete(true);
            return Err(StartError::engine(
                "creating container: libcontainer saved no init pid",
            ));
        }
        None => {
            crate::quirks::record(layout.root(), crate::quirks::PID_FROM_PID_FILE, &rec.id);
            let pid = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
                .filter(|p| *p > 0)
                .ok_or_else(|| StartError::engine("container has no init pid"))?;
            eprintln!(
                "berth-agent: container {}: state without the init pid, using {pid} from its pid file",
                rec.id
            );
            container
                .set_pid(pid)
                .set_status(libcontainer::container::ContainerStatus::Created);
            let _ = container.save();
            Pid::from_raw(pid)
        }
    };
    // libcontainer leaves the OOM switch (cgroup v1) alone.
    if rec.config.oom_kill_disable {
        if let Err(e) = super::cgroup::disable_oom_killer(&format!("/berth/{}", rec.id)) {
            let _ = container.delete(true);
            return Err(StartError::engine(format!("disabling the OOM killer: {e}")));
        }
    }
    // Fault injection for the start retry's test: a shim dying here leaves
    // a created container (runtime state, an init waiting to be started)
    // behind, as the shims that died in emulated guests did.
    super::fault::shim_dies_here(&paths.dir, &rec.id);
    let stdio = plan.into_stdio()?;
    phases.mark("stdio");

    let mut clients: Vec<Client> = Vec::new();
    if wait_attach {
        report(ready, &Readiness::OK);
        // The process starts once the first client attached, so it sees all
        // output; a client that never comes must not wedge the container.
        if let Some(c) = accept_client(&listener, Duration::from_secs(60)) {
            if let (Stdio::Pty { master }, Some((rows, cols))) = (&stdio, c.tty_size) {
                set_winsize(master, rows, cols);
            }
            clients.push(c);
        }
        phases.mark("attach");
    }
    let started_at = now();
    // Before the start, never after: see START_ATTEMPTED.
    let _ = std::fs::write(paths.dir.join(super::files::START_ATTEMPTED), b"");
    if let Err(e) = container.start() {
        let _ = container.delete(true);
        return Err(StartError::engine(format!("starting container: {e}")));
    }
    phases.mark("start");
    if let Some(p) = prepared {
        net::container::activate(engine, rec, p);
    }
    phases.report("start");
    let state = RunState {
        pid: pid.as_raw(),
        shim_pid: std::process::id() as i32,
        started_at: started_at.clone(),
        boot_id: boot_id(),
    };
    let _ = write_json_atomic_unsynced(&paths.dir.join(super::files::RUN_STATE), &state);
    // After run.json, as docker logs `start` once the container is
    // running: whoever acts on the event finds it running, with its
    // published ports (the machine's port forwarder lists them on each
    // `start`; before, it could list the container still dead after a
    // machine restart and never publish its ports).
    super::events::container(layout.root(), rec, "start", &[]);
    super::fault::shim_pauses_after_start_event(&paths.dir);
    if !wait_attach {
        report(ready, &Readiness::OK);
    }
    let mut health = super::health::Monitor::new(layout.root(), rec, &started_at);
    let code = monitor(
        pid,
        stdio,
        listener,
        clients,
        // `--log-driver none` keeps nothing.
        (rec.config.log_driver.as_deref() != Some("none")).then_some((
            paths.log.as_path(),
            rec.config.log_max_size.unwrap_or(logs::DEFAULT_MAX_SIZE),
            rec.config.log_max_files.unwrap_or(logs::DEFAULT_MAX_FILES),
        )),
        health.as_mut(),
    );
    if let Some(h) = health.as_mut() {
        h.stop();
    }
    // Tear down first and only then record the exit: until exit.json exists
    // the container counts as running, so `wait`, `stop`, `start` and `cp`
    // never meet a half-cleaned container. With --rm it is removed before
    // attached clients hear the exit code.
    let mut phases = Phases::new(&rec.id);
    let left = teardown(engine, rec, paths, true, &mut phases);
    // Before exit.json: whoever sees the container stopped finds its `die`.
    super::events::container(
        layout.root(),
        rec,
        "die",
        &[("exitCode", code.0.to_string())],
    );
    net::container::disconnected(engine, rec, &left);
    let _ = write_json_atomic_unsynced(
        &paths.dir.join(super::files::EXIT_STATE),
        &ExitState {
            code: code.0,
            finished_at: now(),
            started_at: Some(started_at),
            error: None,
        },
    );
    // With --rm the container is gone (its directory moved aside) before
    // attached clients hear the exit code; deleting its files can wait
    // until they have it.
    let mut trash = None;
    if rec.config.auto_remove {
        if let Ok(t) = engine.containers.detach_files(&rec.id) {
            phases.mark("remove");
            engine.containers.remove_anonymous_volumes(rec);
            phases.mark("volumes");
            trash = t;
        }
    }
    for mut c in code.1 {
        let _ = mux::write_frame(&mut c.stream, Kind::Exit, &code.0.to_be_bytes());
    }
    if let Some(t) = trash {
        // Nobody waits for this any more: at the lowest priority it yields
        // to the next container's start (a machine VM here has one vCPU).
        // SAFETY: setpriority on this process only changes its nice value.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
        let _ = super::fsutil::remove_tree_same_fs(&t);
        phases.mark("delete");
    }
    phases.report("exit");
    Ok(code.0)
}

/// How the container's stdio will be connected, decided before the
/// process is created.
pub(super) struct StdioPlan {
    console: Option<UnixListener>,
    pipes: Option<(Option<File>, File, File)>,
    early: Option<std::thread::JoinHandle<std::io::Result<File>>>,
}

type Builder = libcontainer::container::builder::ContainerBuilder;

/// Sets up pipes (or a console socket for a pty) on the builder.
pub(super) fn plan_stdio(
    mut builder: Builder,
    tty: bool,
    open_stdin: bool,
    console_path: &Path,
) -> Result<(Builder, StdioPlan), StartError> {
    if tty {
        let _ = std::fs::remove_file(console_path);
        let l = UnixListener::bind(console_path).map_err(Error::failed("console socket"))?;
        builder = builder.with_console_socket(Some(console_path));
        return Ok((
            builder,
            StdioPlan {
                console: Some(l),
                pipes: None,
                early: None,
            },
        ));
    }
    let (out_r, out_w) = pipe().map_err(Error::unexpected)?;
    let (err_r, err_w) = pipe().map_err(Error::unexpected)?;
    let stdin_w = if open_stdin {
        let (in_r, in_w) = pipe().map_err(Error::unexpected)?;
        builder = builder.with_stdin(OwnedFd::from(in_r));
        Some(in_w)
    } else {
        let null = File::open("/dev/null").map_err(Error::unexpected)?;
        builder = builder.with_stdin(OwnedFd::from(null));
        None
    };
    builder = builder
        .with_stdout(OwnedFd::from(out_w))
        .with_stderr(OwnedFd::from(err_w));
    Ok((
        builder,
        StdioPlan {
            console: None,
            pipes: Some((stdin_w, out_r, err_r)),
            early: None,
        },
    ))
}

impl StdioPlan {
    /// For a process that starts as soon as it is created (exec): receive
    /// the terminal on a thread while libcontainer creates the process, and
    /// size it at once, so the first thing the process sees is the right
    /// window size.
    pub(super) fn receive_console_early(&mut self, size: Option<(u16, u16)>) {
        if let Some(l) = self.console.take() {
            self.early = Some(std::thread::spawn(move || {
                let m = receive_pty_master(&l)?;
                if let Some((rows, cols)) = size {
                    set_winsize(&m, rows, cols);
                }
                Ok(m)
            }));
        }
    }

    /// After the process was created: our ends of its stdio.
    pub(super) fn into_stdio(self) -> Result<Stdio, StartError> {
        if let Some(t) = self.early {
            let master = t
                .join()
                .map_err(|_| StartError::engine("terminal thread panicked"))?
                .map_err(Error::failed("receiving terminal"))?;
            return Ok(Stdio::Pty { master });
        }
        match (self.pipes, self.console) {
            (Some((stdin, stdout, stderr)), _) => Ok(Stdio::Pipes {
                stdin,
                stdout,
                stderr,
            }),
            (None, Some(l)) => Ok(Stdio::Pty {
                master: receive_pty_master(&l).map_err(Error::failed("receiving terminal"))?,
            }),
            (None, None) => Err(StartError::engine("no stdio plan")),
        }
    }
}

pub(super) fn set_winsize(tty: &File, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer.
    unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
}

fn receive_pty_master(l: &UnixListener) -> std::io::Result<File> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    l.set_nonblocking(false)?;
    let (s, _) = l.accept()?;
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        s.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel just installed this fd for us.
                return Ok(unsafe { File::from_raw_fd(*fd) });
            }
        }
    }
    Err(std::io::Error::other("no terminal fd received"))
}

pub(super) fn accept_client(listener: &UnixListener, timeout: Duration) -> Option<Client> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let mut fds = [nix::poll::PollFd::new(
            listener.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let ms = left.as_millis().min(i32::MAX as u128) as u16;
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)) {
            Ok(0) | Err(_) => continue,
            Ok(_) => {
                if let Some(c) = handshake(listener) {
                    return Some(c);
                }
            }
        }
    }
}

fn handshake(listener: &UnixListener) -> Option<Client> {
    let (stream, _) = listener.accept().ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    // Byte by byte: a buffered reader would swallow the mux frames that
    // follow the line.
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() < 4096 {
        if (&stream).read(&mut b).ok()? == 0 {
            return None;
        }
        if b[0] == b'\n' {
            break;
        }
        line.push(b[0]);
    }
    let hello: AttachHello = serde_json::from_slice(&line).ok()?;
    stream.set_read_timeout(None).ok()?;
    Some(Client {
        stream,
        stdin: hello.stdin,
        tty_size: hello.tty_size,
    })
}

/// How long [`monitor`] sleeps with nothing to do when a pidfd tells it of
/// the init's exit. Each wake-up of an idle guest is emulated kernel work
/// on kvm_pvm hosts (a 1 s poll per running container was measurable idle
/// CPU); the pidfd, the SIGCHLD signalfd and every stdio, attach and health
/// descriptor wake it at once, so the timeout only bounds how long an
/// orphaned zombie of another child can wait to be reaped.
const IDLE_WAIT_MS: u16 = 30_000;

/// A pidfd for `pid` (Linux 5.3+): readable once the process has exited.
fn pidfd_open(pid: Pid) -> Option<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new
    // descriptor or -1; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    let fd = RawFd::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: fd was just returned by pidfd_open and nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Pumps stdio until the init exits and its output is drained. Returns
/// the exit code and the clients still attached.
pub(super) fn monitor(
    pid: Pid,
    stdio: Stdio,
    listener: UnixListener,
    mut clients: Vec<Client>,
    log: Option<(&Path, u64, u32)>,
    mut health: Option<&mut super::health::Monitor>,
) -> (i32, Vec<Client>) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    let _ = mask.thread_block();
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).ok();
    // SIGCHLD can be taken by another thread of this process (not blocked
    // there), so the init's exit is watched on a pidfd as well; without
    // one, the monitor looks every second.
    let pidfd = pidfd_open(pid);
    let mut log = log.map(|(path, size, files)| LogWriter::open(path, size, files));
    let (mut stdin, mut outputs): (Option<File>, Vec<(File, Kind)>) = match stdio {
        Stdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => (stdin, vec![(stdout, Kind::Stdout), (stderr, Kind::Stderr)]),
        Stdio::Pty { master } => (master.try_clone().ok(), vec![(master, Kind::Stdout)]),
    };
    let tty = outputs.len() == 1;
    let mut exit: Option<i32> = None;
    let mut drain_deadline: Option<Instant> = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if exit.is_none() {
            exit = reap(pid);
            if exit.is_some() {
                drain_deadline = Some(Instant::now() + Duration::from_secs(2));
            }
        }
        if exit.is_some()
            && (outputs.is_empty() || drain_deadline.is_some_and(|d| Instant::now() > d))
        {
            break;
        }
        let mut fds: Vec<PollFd> = Vec::new();
        let in_flags = PollFlags::POLLIN;
        fds.push(PollFd::new(listener.as_fd(), in_flags));
        let sig_fd: Option<BorrowedFd> = sfd.as_ref().map(|s| s.as_fd());
        let sig_idx = sig_fd.map(|f| {
            fds.push(PollFd::new(f, in_flags));
            fds.len() - 1
        });
        let out_base = fds.len();
        for (f, _) in &outputs {
            fds.push(PollFd::new(f.as_fd(), in_flags));
        }
        let client_base = fds.len();
        for c in &clients {
            fds.push(PollFd::new(c.stream.as_fd(), in_flags));
        }
        if let Some(p) = pidfd.as_ref().filter(|_| exit.is_none()) {
            fds.push(PollFd::new(p.as_fd(), in_flags));
        }
        let mut wait_ms: u16 = match (exit, &pidfd) {
            (Some(_), _) => 100,
            (None, Some(_)) => IDLE_WAIT_MS,
            (None, None) => 1000,
        };
        if let Some(h) = health.as_deref().filter(|_| exit.is_none()) {
            if let Some(fd) = h.fd() {
                fds.push(PollFd::new(fd, in_flags));
            }
            wait_ms = wait_ms.min(h.wait().as_millis().min(u128::from(wait_ms)) as u16);
        }
        let timeout = PollTimeout::from(wait_ms);
        if poll(&mut fds, timeout).is_err() {
            continue;
        }
        let revents: Vec<PollFlags> = fds
            .iter()
            .map(|f| f.revents().unwrap_or(PollFlags::empty()))
            .collect();
        drop(fds);
        let ready = |i: usize| {
            revents[i].intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
        };
        if let Some(i) = sig_idx {
            if ready(i) {
                if let Some(s) = &sfd {
                    while let Ok(Some(_)) = s.read_signal() {}
                }
            }
        }
        // Container output.
        let mut closed = Vec::new();
        for (i, (f, kind)) in outputs.iter_mut().enumerate() {
            if !ready(out_base + i) {
                continue;
            }
            match f.read(&mut buf) {
                Ok(0) | Err(_) => closed.push(i),
                Ok(n) => {
                    let data = &buf[..n];
                    if let Some(l) = log.as_mut() {
                        l.write(usize::from(*kind == Kind::Stderr), data);
                    }
                    clients.retain_mut(|c| mux::write_frame(&mut c.stream, *kind, data).is_ok());
                }
            }
        }
        for i in closed.into_iter().rev() {
            outputs.remove(i);
        }
        // Client input.
        let mut gone = Vec::new();
        for (i, c) in clients.iter_mut().enumerate() {
            if !ready(client_base + i) {
                continue;
            }
            match mux::read_frame(&mut c.stream) {
                Ok(Some((Kind::Stdin, data))) if c.stdin => {
                    if let Some(w) = stdin.as_mut() {
                        if w.write_all(&data).is_err() {
                            stdin = None;
                        }
                    }
                }
                Ok(Some((Kind::StdinEof, _))) if c.stdin => {
                    if tty {
                        if let Some(w) = stdin.as_mut() {
                            let _ = w.write_all(&[4]);
                        }
                    } else {
                        stdin = None;
                    }
                }
                Ok(Some((Kind::Resize, p))) => {
                    if let (Some((rows, cols)), Some(w)) = (mux::parse_resize(&p), stdin.as_ref()) {
                        if tty {
                            set_winsize(w, rows, cols);
                        }
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => gone.push(i),
            }
        }
        for i in gone.into_iter().rev() {
            clients.remove(i);
        }
        if ready(0) {
            if let Some(c) = handshake(&listener) {
                clients.push(c);
            }
        }
        if let Some(h) = health.as_deref_mut().filter(|_| exit.is_none()) {
            h.service();
        }
    }
    if let Some(l) = log.as_mut() {
        l.flush();
    }
    (exit.unwrap_or(255), clients)
}

/// Reaps children; returns the init's exit code once it has ended.
fn reap(pid: Pid) -> Option<i32> {
    let mut result = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, code)) if p == pid => result = Some(code),
            Ok(WaitStatus::Signaled(p, sig, _)) if p == pid => result = Some(128 + sig as i32),
            Ok(WaitStatus::StillAlive) | Err(_) => return result,
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_protocol::{MountPoint, MountType};
    use std::os::unix::fs::PermissionsExt;

    fn point(kind: MountType, source: &Path, dest: &str) -> MountPoint {
        MountPoint {
            kind,
            name: None,
            source: source.to_string_lossy().into_owned(),
            destination: dest.into(),
            mode: String::new(),
            rw: true,
            propagation: String::new(),
            anonymous: false,
            non_recursive: false,
            copy_up: false,
            tmpfs_options: Vec::new(),
        }
    }

    fn touch_exec(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn executables_are_found_in_binds_volumes_and_the_root() {
        let root = tempfile::tempdir().unwrap();
        let bind = tempfile::tempdir().unwrap();
        let vol = tempfile::tempdir().unwrap();
        touch_exec(&root.path().join("bin/sh"));
        touch_exec(&bind.path().join("prog"));
        touch_exec(&vol.path().join("bin/tool"));
        // The root has its own /p/prog-less mount point directories.
        std::fs::create_dir_all(root.path().join("p")).unwrap();
        touch_exec(&root.path().join("p/shadowed"));
        let mounts = [
            point(MountType::Bind, bind.path(), "/p"),
            point(MountType::Volume, vol.path(), "/p/v"),
            point(MountType::Tmpfs, Path::new(""), "/scratch"),
        ];
        let env = ["PATH=/p/v/bin:/bin".to_string()];
        let check = |cmd: &str| {
            check_executable(root.path(), &mounts, &[cmd.to_string()], &env, "/")
                .map_err(|e| e.code)
        };
        assert_eq!(check("/p/prog"), Ok(()));
        assert_eq!(check("/p/v/bin/tool"), Ok(()));
        // PATH lookup reaches into the volume nested under the bind.
        assert_eq!(check("tool"), Ok(()));
        assert_eq!(check("sh"), Ok(()));
        // The bind hides what the image has under its mount point; a tmpfs
        // is empty at start; `..` cannot climb out of the bind's source.
        assert_eq!(check("/p/shadowed"), Err(127));
        assert_eq!(check("/scratch/x"), Err(127));
        assert_eq!(check("/p/../p/prog"), Ok(()));
        assert_eq!(check("/p/../bin/sh"), Ok(()));
        std::fs::write(bind.path().join("data"), "x").unwrap();
        assert_eq!(check("/p/data"), Err(126));
    }
}
