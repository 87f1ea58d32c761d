//! Container records: create, list, inspect, start (via a shim), kill,
//! remove. Status is derived from the files the shim writes, so it survives
//! agent restarts.

use super::files::ContainerPaths;
use super::fsutil::{is_mounted, remove_tree_same_fs};
use super::launch::Readiness;
use super::record::{boot_id, merge_env, resolve_args, ContainerRecord, ExitState, RunState};
use super::record_cache::Snapshot;
use super::{Error, Object};
use crate::layout::{publish_dir, random_hex, read_json, Layout};
use crate::store::ImageStore;
use berth_protocol::{
    ContainerConfig, ContainerDetails, ContainerStatus, ContainerSummary, ErrorKind, HealthConfig,
};
use std::io::BufRead;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Container bookkeeping under `<root>/containers`.
pub struct ContainerStore {
    layout: Layout,
    /// Serialises create/rename/remove so names stay unique.
    pub(super) lock: Mutex<()>,
    /// Some container may have a restart policy (see `restart.rs`).
    pub(super) policy_hint: std::sync::atomic::AtomicBool,
    /// Held by the restart-policy thread from its "not stopped by the
    /// user" check through the start, and by stop/kill/rm while they mark
    /// a container stopped: a user stop that races a policy restart either
    /// comes first (no restart) or waits and then stops the new run.
    pub(super) policy_gate: Mutex<()>,
    /// Each container directory's parsed files, for listings (issue 22).
    cache: super::record_cache::RecordCache,
}

const ADJECTIVES: &[&str] = &[
    "brave", "calm", "eager", "fond", "gentle", "happy", "jolly", "keen", "lucid", "merry",
    "nifty", "proud", "quiet", "sharp", "tender", "vivid", "witty", "zealous",
];
const NOUNS: &[&str] = &[
    "albatross",
    "beacon",
    "cormorant",
    "dinghy",
    "estuary",
    "frigate",
    "galley",
    "harbor",
    "islet",
    "jetty",
    "keel",
    "lagoon",
    "mooring",
    "narwhal",
    "outrigger",
    "pier",
    "quay",
    "schooner",
];

pub(super) use super::names::docker_name;

pub(super) fn valid_name(n: &str) -> bool {
    docker_name(n, 128)
}

impl ContainerStore {
    pub fn new(layout: Layout) -> ContainerStore {
        ContainerStore {
            layout,
            lock: Mutex::new(()),
            policy_hint: std::sync::atomic::AtomicBool::new(false),
            policy_gate: Mutex::new(()),
            cache: super::record_cache::RecordCache::default(),
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Every container's files, newest first (see `record_cache`): a
    /// directory without a readable record is left out.
    fn snapshots(&self) -> Vec<Arc<Snapshot>> {
        let Ok(rd) = std::fs::read_dir(self.layout.containers()) else {
            return Vec::new();
        };
        let mut seen = std::collections::HashSet::new();
        let mut out: Vec<Arc<Snapshot>> = Vec::new();
        for e in rd.flatten() {
            let Ok(id) = e.file_name().into_string() else {
                continue;
            };
            if let Some(s) = self.cache.get(&id, &e.path()) {
                if s.record.is_some() {
                    out.push(s);
                }
            }
            seen.insert(id);
        }
        self.cache.retain(&seen);
        out.sort_by(|a, b| created(b).cmp(created(a)));
        out
    }

    pub(super) fn records(&self) -> Vec<ContainerRecord> {
        self.snapshots()
            .into_iter()
            .filter_map(|s| s.record.clone())
            .collect()
    }

    /// Resolves a name, full id or unique id prefix.
    pub fn resolve(&self, key: &str) -> Result<ContainerRecord, Error> {
        let key = key.trim_start_matches('/');
        // A whole id names its record's folder: read that one record, not
        // every container's (an inspect of N containers by id read N²).
        // Only 64 hex digits get here, so the key cannot leave the folder.
        if key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()) {
            let rec: Option<ContainerRecord> =
                read_json(&self.layout.container(key).join(super::files::RECORD))
                    .ok()
                    .flatten();
            if let Some(r) = rec.filter(|r| r.id == key) {
                return Ok(r);
            }
        }
        let recs = self.records();
        if let Some(r) = recs.iter().find(|r| r.id == key || r.name == key) {
            return Ok(r.clone());
        }
        let m: Vec<&ContainerRecord> = if key.is_empty() {
            Vec::new()
        } else {
            recs.iter().filter(|r| r.id.starts_with(key)).collect()
        };
        match m.len() {
            1 => Ok(m[0].clone()),
            0 => Err(Error::not_found(Object::Container, key)),
            _ => Err(Error::conflict(format!(
                "multiple containers match id prefix {key:?}"
            ))),
        }
    }

    pub fn uses_image(&self, image_id: &str) -> bool {
        self.records().iter().any(|r| r.image_id == image_id)
    }

    pub fn count(&self) -> usize {
        self.records().len()
    }

    /// Creates a container record from `cfg` on the given image.
    pub fn create(
        &self,
        images: &ImageStore,
        cfg: ContainerConfig,
    ) -> Result<(String, Vec<String>), Error> {
        // As docker's daemon: the host settings are checked before the image.
        validate_host_config(&cfg, cpu_count())?;
        let mut cfg = cfg;
        super::resources::adapt(&mut cfg);
        let image_id = images.resolve(&cfg.image).map_err(|e| match e {
            crate::store::StoreError::NoSuchImage(_) => Error::not_found(Object::Image, &cfg.image),
            other => Error::malformed(other),
        })?;
        let image_cfg = images.config(&image_id).map_err(Error::unexpected)?;
        let run = image_cfg.config.clone().unwrap_or_default();
        for e in &cfg.env {
            if e.is_empty() || e.starts_with('=') || e.contains('\0') {
                return Err(Error::invalid(format!(
                    "invalid environment variable: {e:?}"
                )));
            }
        }
        // A bare NAME (unset where the client ran) removes NAME, as in
        // docker; merge_env does that.
        let env_user: Vec<String> = cfg.env.clone();
        let args = resolve_args(
            run.entrypoint.as_deref(),
            run.cmd.as_deref(),
            cfg.entrypoint.as_deref(),
            cfg.cmd.as_deref(),
        );
        if args.is_empty() {
            return Err(Error::invalid("no command specified"));
        }
        let workdir = cfg
            .workdir
            .clone()
            .filter(|w| !w.is_empty())
            .or(run.working_dir.clone().filter(|w| !w.is_empty()))
            .unwrap_or_else(|| "/".into());
        if !workdir.starts_with('/') {
            return Err(Error::invalid(format!(
                "the working directory '{workdir}' is invalid, it needs to be an absolute path"
            )));
        }
        let user = cfg.user.clone().or(run.user.clone()).unwrap_or_default();
        // docker's merge: unset healthcheck fields come from the image.
        let healthcheck = HealthConfig::merge(cfg.healthcheck.clone(), run.healthcheck.as_ref());
        // As docker: the container's labels are the image's, overridden by
        // the ones given to `run`.
        cfg.healthcheck = healthcheck;
        super::namespaces::resolve(self, &mut cfg)?;
        if let Some(image_labels) = &run.labels {
            let mut labels = image_labels.clone();
            labels.append(&mut cfg.labels);
            cfg.labels = labels;
        }
        let _g = self.lock.lock().unwrap();
        let id = random_hex(32);
        let name = match &cfg.name {
            Some(n) => {
                if !valid_name(n) {
                    return Err(Error::invalid(format!(
                        "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed."
                    )));
                }
                if let Some(other) = self.records().iter().find(|r| r.name == *n) {
                    return Err(Error::conflict(format!("Conflict. The container name \"/{n}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.", other.id),
                    ));
                }
                n.clone()
            }
            None => {
                let taken: Vec<String> = self.records().into_iter().map(|r| r.name).collect();
                let r = random_hex(2);
                let a = ADJECTIVES[r.as_bytes()[0] as usize % ADJECTIVES.len()];
                let n = NOUNS[r.as_bytes()[1] as usize * 7 % NOUNS.len()];
                let mut name = format!("{a}_{n}");
                while taken.contains(&name) {
                    name = format!("{a}_{n}_{}", random_hex(2));
                }
                name
            }
        };
        let hostname = cfg
            .hostname
            .clone()
            .filter(|h| !h.is_empty())
            // As docker: the short id, also for a named container.
            .unwrap_or_else(|| id[..12].to_string());
        if hostname.len() > 64
            || !hostname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            return Err(Error::invalid(format!("invalid hostname {hostname:?}")));
        }
        let env = merge_env(
            run.env.as_deref().unwrap_or_default(),
            &env_user,
            &hostname,
            cfg.tty,
        );
        let image_volumes: Vec<String> = run
            .volumes
            .as_ref()
            .map(|v| v.keys().cloned().collect())
            .unwrap_or_default();
        let exposed_ports = super::ports::exposed_ports(
            run.exposed_ports
                .as_ref()
                .map(|m| m.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default(),
            &cfg,
        )?;
        let networks = self.resolve_attachments(&cfg)?;
        let mounts = self.resolve_mounts(&cfg.mounts, &cfg.volumes_from, &image_volumes)?;
        if !matches!(cfg.restart.name.as_str(), "" | "no") {
            self.policy_hint
                .store(true, std::sync::atomic::Ordering::Relaxed);
            wake_policy_thread();
        }
        let rec = ContainerRecord {
            id: id.clone(),
            name,
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            image: cfg.image.clone(),
            image_id,
            config: cfg,
            args,
            env,
            workdir,
            user,
            hostname,
            mounts,
            networks: Some(networks),
            exposed_ports,
        };
        // Write into tmp/ and rename, so a crash never leaves half a record.
        let written = (|| {
            let tmp = self.layout.temp_dir("ctr")?;
            // The directory is private until the rename below: the record
            // is written in place and fsynced (a rename within it and a
            // second directory fsync would add a journal commit).
            // Durable before `create` answers: a crash in the next seconds
            // (the journal's commit interval) must not take the container
            // back into tmp/, which the next start empties.
            let json = serde_json::to_vec_pretty(&rec).map_err(std::io::Error::other)?;
            publish_dir(
                &tmp,
                &self.layout.container(&id),
                &[(super::files::RECORD, &json)],
            )
        })();
        if let Err(e) = written {
            // The volumes made for it go too; named ones stay, as in docker.
            for m in rec.mounts.iter().filter(|m| m.anonymous) {
                if let Some(n) = &m.name {
                    let _ = self.volume_delete_locked(n);
                }
            }
            return Err(Error::unexpected(e));
        }
        super::events::container(self.layout.root(), &rec, "create", &[]);
        Ok((id, Vec::new()))
    }

    /// Current status and exit state of a container.
    pub fn status(&self, id: &str) -> (ContainerStatus, Option<RunState>, Option<ExitState>) {
        let dir = self.layout.container(id);
        let run: Option<RunState> = read_json(&dir.join(super::files::RUN_STATE)).ok().flatten();
        let exit: Option<ExitState> = read_json(&dir.join(super::files::EXIT_STATE))
            .ok()
            .flatten();
        let status =
            super::decide::status(run.as_ref(), exit.as_ref(), |r| super::decide::Liveness {
                same_boot: r.boot_id == this_boot(),
                shim_alive: shim_alive(r.shim_pid),
                paused: dir.join(super::files::PAUSED).exists(),
            });
        (status, run, exit)
    }

    /// The summary of `r` from its files as they are now.
    fn summary(&self, r: &ContainerRecord) -> ContainerSummary {
        let dir = self.layout.container(&r.id);
        let snap = self
            .cache
            .get(&r.id, &dir)
            .unwrap_or_else(|| Arc::new(Snapshot::read(&dir)));
        summary_of(r, &snap)
    }

    pub fn list(&self, all: bool) -> Vec<ContainerSummary> {
        self.snapshots()
            .iter()
            .filter_map(|s| s.record.as_ref().map(|r| summary_of(r, s)))
            .filter(|s| {
                all || matches!(s.status, ContainerStatus::Running | ContainerStatus::Paused)
            })
            .collect()
    }

    pub fn inspect(&self, key: &str) -> Result<ContainerDetails, Error> {
        let r = self.resolve(key)?;
        let (_, run, _) = self.status(&r.id);
        let summary = self.summary(&r);
        Ok(ContainerDetails {
            pid: run
                .filter(|_| {
                    matches!(
                        summary.status,
                        ContainerStatus::Running | ContainerStatus::Paused
                    )
                })
                .map(|s| s.pid),
            summary,
            path: r.args.first().cloned().unwrap_or_default(),
            args: r.args.iter().skip(1).cloned().collect(),
            env: r.env.clone(),
            mounts: r.mounts.clone(),
            hostname: r.hostname.clone(),
            networks: self.endpoints_for_inspect(&r),
            config: r.config.clone(),
            ports: self.published_ports(&r.id),
            exposed_ports: r.exposed_ports.clone(),
        })
    }

    /// Starts the container's shim; returns once the container runs (or,
    /// with `wait_attach`, is created and waits for its first attach).
    pub fn start(&self, key: &str, wait_attach: bool) -> Result<String, Error> {
        let r = self.resolve(key)?;
        let (status, run, _) = self.status(&r.id);
        match (status, &run) {
            // Its process just ended and its shim is still tearing down:
            // start it again once that is done (below).
            (ContainerStatus::Running, Some(run)) if !process_alive(run.pid) => {}
            // As docker: starting a running container changes nothing (and
            // `start -a` then attaches to it).
            (ContainerStatus::Running, _) => return Ok(r.id),
            (ContainerStatus::Paused, _) => {
                return Err(Error::conflict(
                    "cannot start a paused container, try unpause instead",
                ))
            }
            _ => {}
        }
        // The previous run's shim may still be tearing down (unmounting,
        // removing the network namespace): let it finish first.
        if let Some(run) = run.filter(|r| r.boot_id == boot_id()) {
            wait_shim_gone(&run, Duration::from_secs(10));
        }
        let _ = std::fs::remove_file(self.layout.container(&r.id).join(super::files::STOPPED));
        // Addresses are chosen here, under the store's lock, so two
        // starts never take the same one; the shim sets them up.
        let net = self.allocate_endpoints(&r)?;
        for e in &net.endpoints {
            super::events::network_endpoint(
                self.layout.root(),
                &e.info.network_id,
                &e.info.network_name,
                &r.id,
                "connect",
            );
        }
        let mut args = vec!["shim", "--id", r.id.as_str()];
        if wait_attach {
            args.push("--wait-attach");
        }
        let log = self.layout.container(&r.id).join(super::files::SHIM_LOG);
        let attempted = self
            .layout
            .container(&r.id)
            .join(super::files::START_ATTEMPTED);
        let _ = std::fs::remove_file(&attempted);
        let spawn = || spawn_monitor(self.layout.root(), &args, &log, SHIM);
        match spawn() {
            // In emulated guests (kvm_pvm hosts only) a shim has been seen
            // to die right after creating the container, under load. The
            // next shim clears what it left (libcontainer state, the
            // waiting init, the rootfs mount, the network namespace), so
            // one more try is safe as long as the dead shim never asked for
            // the user's process to start (it marks that first). Elsewhere
            // a shim that dies is a bug and is reported as it is.
            Err(e)
                if matches!(&e, Error::MonitorDied { what, .. } if what == SHIM)
                    && crate::quirks::Quirks::detect().emulated_kernel
                    && !attempted.exists() =>
            {
                eprintln!(
                    "berth-agent: container {}: {}; starting it once more (emulated-kernel workaround)",
                    r.id, e
                );
                crate::quirks::record(self.layout.root(), crate::quirks::SHIM_RESTART, &r.id);
                spawn()?;
            }
            other => other?,
        }
        Ok(r.id)
    }

    /// Waits until the container is not running; returns its exit code.
    pub fn wait(&self, key: &str) -> Result<i32, Error> {
        let r = self.resolve(key)?;
        loop {
            let (status, _, exit) = self.status(&r.id);
            match status {
                ContainerStatus::Running | ContainerStatus::Paused => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                ContainerStatus::Dead => return Ok(255),
                _ => return Ok(exit.map(|e| e.code).unwrap_or(0)),
            }
            if !self.layout.container(&r.id).exists() {
                return Ok(0);
            }
        }
    }

    pub fn kill(&self, key: &str, signal: i32) -> Result<(), Error> {
        let r = self.resolve(key)?;
        let (status, run, _) = self.status(&r.id);
        let (ContainerStatus::Running | ContainerStatus::Paused, Some(run)) = (status, run) else {
            return Err(Error::conflict(format!(
                "Cannot kill container: {}: Container {} is not running",
                key, r.id
            )));
        };
        let sig = nix::sys::signal::Signal::try_from(signal)
            .map_err(|_| Error::invalid(format!("invalid signal {signal}")))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(run.pid), sig)
            .map_err(Error::unexpected)?;
        super::events::container(
            self.layout.root(),
            &r,
            "kill",
            &[("signal", signal.to_string())],
        );
        // As docker: a container the user signalled counts as stopped by the
        // user, so its restart policy does not bring it back.
        let _gate = self.policy_gate.lock().unwrap_or_else(|e| e.into_inner());
        let _ = std::fs::write(
            self.layout.container(&r.id).join(super::files::STOPPED),
            b"",
        );
        Ok(())
    }

    /// `rm`: refuses a running container unless forced; with `volumes`
    /// also removes the anonymous volumes it made.
    pub fn remove(&self, key: &str, force: bool, volumes: bool) -> Result<String, Error> {
        let r = self.resolve(key)?;
        let (status, _, _) = self.status(&r.id);
        if matches!(status, ContainerStatus::Running | ContainerStatus::Paused) {
            if !force {
                return Err(Error::conflict(format!("You cannot remove a running container {}. Stop the container before attempting removal or force remove", r.id),
                ));
            }
            {
                let _gate = self.policy_gate.lock().unwrap_or_else(|e| e.into_inner());
                let _ = std::fs::write(
                    self.layout.container(&r.id).join(super::files::STOPPED),
                    b"",
                );
            }
            let _ = self.kill(&r.id, libc::SIGKILL);
            if status == ContainerStatus::Paused {
                let _ = self.unpause(&r.id);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.is_running(&r.id) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.remove_files(&r.id).map_err(Error::unexpected)?;
        if volumes {
            self.remove_anonymous_volumes(&r);
        }
        Ok(r.id)
    }

    /// Deletes a stopped container's files: unmounts what is mounted, then
    /// moves the directory aside and deletes it without crossing mounts.
    pub fn remove_files(&self, id: &str) -> std::io::Result<()> {
        match self.detach_files(id)? {
            Some(trash) => remove_tree_same_fs(&trash),
            None => Ok(()),
        }
    }

    /// The part of [`Self::remove_files`] that makes the container gone:
    /// unmounts, moves its directory into the engine's tmp/ and records
    /// `destroy`. Returns the moved directory, which the caller deletes
    /// (tmp/ is emptied at the next engine start should that not happen);
    /// `None` when there was nothing to remove.
    pub fn detach_files(&self, id: &str) -> std::io::Result<Option<std::path::PathBuf>> {
        let _g = self.lock.lock().unwrap();
        let paths = ContainerPaths::new(&self.layout, id);
        if !paths.dir.exists() {
            return Ok(None);
        }
        for m in [&paths.rootfs, &paths.netns] {
            if is_mounted(m) {
                nix::mount::umount2(m.as_path(), nix::mount::MntFlags::MNT_DETACH)?;
            }
        }
        let runtime = self.layout.runtime().join(id);
        if runtime.exists() {
            let _ = std::fs::remove_dir_all(&runtime);
        }
        let rec: Option<ContainerRecord> = read_json(&paths.dir.join(super::files::RECORD))
            .ok()
            .flatten();
        let trash = self.layout.tmp().join(format!("rm-{id}"));
        std::fs::rename(&paths.dir, &trash)?;
        self.cache.forget(id);
        rec.inspect(|r| super::events::container(self.layout.root(), r, "destroy", &[]));
        Ok(Some(trash))
    }
}

/// How long a monitor may take to report that its process started. Far
/// above the slowest start seen (minutes, in an emulated guest kernel on a
/// loaded host); what passes it is stuck.
const MONITOR_REPORT_TIMEOUT: Duration = Duration::from_secs(900);

/// What [`spawn_monitor`] calls a container's shim.
const SHIM: &str = "container shim";

/// Starts a monitor process (`berth-agent shim` or `exec-shim`, with
/// `--root <root>` added) in its own session, its output in `log`, and waits
/// for the readiness line it writes on fd 3.
pub(super) fn spawn_monitor(
    root: &Path,
    args: &[&str],
    log: &Path,
    what: &str,
) -> Result<(), Error> {
    // Close-on-exec: only the monitor gets the write end (as fd 3), not
    // monitors other threads start meanwhile.
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(Error::unexpected)?;
    // /proc/self/exe still works after the binary was replaced on disk.
    let mut argv: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    argv.push("--root".as_ref());
    argv.push(root.as_os_str());
    let trace: &[(&str, &str)] = if std::process::id() == 1 {
        &[(super::launch::CONSOLE_TRACE_ENV, "1")]
    } else {
        &[]
    };
    let log_file = std::fs::File::create(log).map_err(Error::unexpected)?;
    // In a new session, stdin /dev/null, output in the log, the write end
    // as fd 3; spawned without a fork of the agent (spawn.rs). Reaped by
    // the agent's reaper, not here.
    let pid = super::spawn::spawn(&super::spawn::Monitor {
        program: "/proc/self/exe".as_ref(),
        args: &argv,
        extra_env: trace,
        log: &log_file,
        ready: wr.as_raw_fd(),
    })
    .map_err(Error::io(format!("starting {what}")))?;
    drop(log_file);
    drop(wr);
    // Wait for the line, or for the monitor to die without writing it: its
    // children (a container init waiting to be started) may still hold the
    // pipe open, so end of file alone is not enough.
    let rd = std::fs::File::from(rd);
    // Gone for good: no /proc entry, or a zombie; a /proc read that fails
    // otherwise proves nothing. Seen twice in a row before giving up.
    let gone = || match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        Ok(s) => s
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    };
    let mut gone_before = false;
    // A monitor that neither reports nor dies would wedge the request (and
    // the client) forever: past this it is killed and the start fails.
    let deadline = Instant::now() + MONITOR_REPORT_TIMEOUT;
    loop {
        use std::os::fd::AsFd;
        if Instant::now() > deadline {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let out = std::fs::read_to_string(log).unwrap_or_default();
            eprintln!(
                "berth-agent: {what} {pid} did not report within {} s; killed",
                MONITOR_REPORT_TIMEOUT.as_secs()
            );
            return Err(Error::internal(format!(
                "{what} did not report within {} s (killed): {}",
                MONITOR_REPORT_TIMEOUT.as_secs(),
                out.trim()
            )));
        }
        let mut fds = [nix::poll::PollFd::new(
            rd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        if let Ok(n) = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(500u16)) {
            if n > 0 {
                break;
            }
        }
        let now_gone = gone();
        if now_gone && gone_before {
            let mut fds = [nix::poll::PollFd::new(
                rd.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            if nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).is_ok_and(|n| n > 0) {
                break;
            }
            let out = std::fs::read_to_string(log).unwrap_or_default();
            eprintln!("berth-agent: {what} {pid} died without reporting");
            return Err(Error::MonitorDied {
                what: what.into(),
                output: out.trim().into(),
            });
        }
        gone_before = now_gone;
    }
    let mut line = String::new();
    std::io::BufReader::new(rd)
        .read_line(&mut line)
        .map_err(Error::unexpected)?;
    let ready: Readiness = serde_json::from_str(line.trim()).map_err(|_| {
        let out = std::fs::read_to_string(log).unwrap_or_default();
        Error::internal(format!("{what} failed: {}", out.trim()))
    })?;
    if !ready.ok {
        return Err(Error::Reported {
            kind: ready.kind.unwrap_or(ErrorKind::Internal),
            message: ready.message.unwrap_or_default(),
        });
    }
    Ok(())
}

/// Waits (up to `timeout`) until the shim of `run` has exited.
pub(super) fn wait_shim_gone(run: &RunState, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while shim_alive(run.shim_pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// How often the restart policy restarted this container.
/// The record's creation time, for sorting (snapshots without a record
/// are left out before).
fn created(s: &Snapshot) -> &str {
    s.record.as_ref().map(|r| r.created.as_str()).unwrap_or("")
}

/// A container's status from its parsed files and what is alive now.
fn status_of(snap: &Snapshot) -> ContainerStatus {
    super::decide::status(snap.run.as_ref(), snap.exit.as_ref(), |r| {
        super::decide::Liveness {
            same_boot: r.boot_id == this_boot(),
            shim_alive: shim_alive(r.shim_pid),
            paused: snap.paused,
        }
    })
}

/// The kernel boot id, read once: this process cannot outlive its boot.
fn this_boot() -> &'static str {
    static BOOT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BOOT.get_or_init(boot_id)
}

/// A listing's row for `r` from its directory's parsed files.
fn summary_of(r: &ContainerRecord, snap: &Snapshot) -> ContainerSummary {
    let (status, exit_code) = super::decide::shown(status_of(snap), snap.exit.as_ref());
    ContainerSummary {
        id: r.id.clone(),
        name: r.name.clone(),
        image: r.image.clone(),
        image_id: r.image_id.clone(),
        command: r
            .args
            .iter()
            .map(|a| {
                if a.contains(' ') {
                    format!("'{a}'")
                } else {
                    a.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
        created: r.created.clone(),
        status,
        exit_code,
        started_at: snap.run.as_ref().map(|s| s.started_at.clone()),
        finished_at: snap.exit.as_ref().map(|e| e.finished_at.clone()),
        labels: r.config.labels.clone(),
        restart_count: snap.restarts,
        health: snap.health.clone(),
        ports: None,
    }
}

impl super::namespaces::Donors for ContainerStore {
    fn donor(&self, key: &str) -> Result<(String, Option<String>), Error> {
        let r = self.resolve(key)?;
        Ok((r.id, r.config.ipc_mode))
    }

    fn running_pid(&self, id: &str) -> Option<i32> {
        let (status, run, _) = self.status(id);
        matches!(status, ContainerStatus::Running | ContainerStatus::Paused)
            .then_some(run.map(|r| r.pid))
            .flatten()
    }

    fn dir(&self, id: &str) -> std::path::PathBuf {
        self.layout().container(id)
    }
}

pub(super) fn shim_alive(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| c.split(|b| *b == 0).any(|a| a == b"shim"))
        .unwrap_or(false)
        && process_alive(pid)
}

/// Whether `pid` is a live (not zombie) process.
pub(super) fn process_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

/// The restart policy thread (`super::restart`), for [`wake_policy_thread`].
static POLICY_THREAD: std::sync::OnceLock<std::thread::Thread> = std::sync::OnceLock::new();

/// Tells the policy thread that a container may have a policy now (call
/// after setting `policy_hint`).
pub(super) fn wake_policy_thread() {
    if let Some(t) = POLICY_THREAD.get() {
        t.unpark();
    }
}

/// Registers the restart policy thread ([`wake_policy_thread`] wakes it).
pub(super) fn set_policy_thread(t: std::thread::Thread) {
    let _ = POLICY_THREAD.set(t);
}

/// CPUs this engine may run containers on.
fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// docker's daemon-side checks of a new container's host settings, with
/// its messages (the CLI passes what it parsed; an API client may send
/// anything).
pub fn validate_host_config(cfg: &ContainerConfig, cpus: usize) -> Result<(), Error> {
    let invalid = |m: String| Err(Error::invalid(m));
    // docker checks the container config (healthcheck) before the host's.
    super::health::validate(cfg.healthcheck.as_ref()).or_else(invalid)?;
    if let Some(m) = cfg.memory {
        if m > 0 && m < 6 * 1024 * 1024 {
            return invalid("Minimum memory limit allowed is 6MB".into());
        }
        if m < 0 && m != -1 {
            return invalid(format!("invalid memory limit {m}"));
        }
    }
    if let Some(n) = cfg.nano_cpus {
        if n < 0 || n > cpus as i64 * 1_000_000_000 {
            return invalid(format!(
                "Range of CPUs is from 0.01 to {cpus}.00, as there are only {cpus} CPUs available"
            ));
        }
    }
    let p = &cfg.restart;
    match p.name.as_str() {
        "" | "no" | "always" | "unless-stopped" if p.maximum_retry_count != 0 => {
            return invalid(format!(
                "maximum retry count cannot be used with restart policy '{}'",
                p.name
            ))
        }
        "" | "no" | "always" | "unless-stopped" => {}
        "on-failure" => {}
        other => return invalid(format!("invalid restart policy '{other}'")),
    }
    if let Some(s) = &cfg.stop_signal {
        super::signal::parse(s).map_err(Error::malformed)?;
    }
    super::resources::validate(cfg, cpus).or_else(invalid)?;
    // Capabilities, --security-opt and a custom seccomp profile: refused
    // now with the reason rather than when the container starts.
    super::security::Privileges::resolve(cfg)
        .map(|_| ())
        .or_else(invalid)?;
    super::namespaces::validate(cfg)?;
    for t in &cfg.tmpfs {
        let dest = t.split_once(':').map_or(t.as_str(), |p| p.0);
        if !dest.starts_with('/') {
            return invalid(format!(
                "invalid mount path: '{dest}' mount path must be absolute"
            ));
        }
        if dest.split('/').any(|c| c == "..") || dest.contains('\0') {
            return invalid(format!("invalid mount path: '{dest}'"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod validate_tests {
    use super::*;

    fn cfg() -> ContainerConfig {
        ContainerConfig {
            image: "x".into(),
            ..Default::default()
        }
    }

    #[test]
    fn host_settings_are_checked_with_dockers_messages() {
        let msg = |c: &ContainerConfig| {
            validate_host_config(c, 2)
                .err()
                .map(|e| e.message())
                .unwrap_or_default()
        };
        assert_eq!(msg(&cfg()), "");
        let mut c = cfg();
        c.memory = Some(1024);
        assert_eq!(msg(&c), "Minimum memory limit allowed is 6MB");
        let mut c = cfg();
        c.nano_cpus = Some(-1_000_000_000);
        assert!(msg(&c).starts_with("Range of CPUs is from 0.01 to 2.00"));
        c.nano_cpus = Some(3_000_000_000);
        assert!(msg(&c).contains("only 2 CPUs"));
        let mut c = cfg();
        c.restart.name = "bogus".into();
        assert_eq!(msg(&c), "invalid restart policy 'bogus'");
        c.restart.name = "always".into();
        c.restart.maximum_retry_count = 3;
        assert_eq!(
            msg(&c),
            "maximum retry count cannot be used with restart policy 'always'"
        );
        c.restart.name = "on-failure".into();
        assert_eq!(msg(&c), "");
        let mut c = cfg();
        c.stop_signal = Some("NOPE".into());
        assert_eq!(msg(&c), "Invalid signal: NOPE");
        let mut c = cfg();
        c.tmpfs = vec!["data:size=1m".into()];
        assert_eq!(
            msg(&c),
            "invalid mount path: 'data' mount path must be absolute"
        );
        c.tmpfs = vec!["/a/../etc".into()];
        assert!(msg(&c).starts_with("invalid mount path"));
    }
}
