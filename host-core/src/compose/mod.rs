//! Compose projects on an engine, with docker compose v2's semantics:
//! containers `<project>-<service>-<n>` carrying the
//! `com.docker.compose.*` labels, one `<project>_default` network, named
//! volumes `<project>_<name>`, dependency order on `up` (and the
//! `depends_on` conditions waited for), reverse order on `down`, and
//! recreation only of the services whose config hash changed.
//!
//! The project is [`berth_compose::Project`] (a pure model); this module
//! turns it into engine calls through [`Engine`]. Printing is the front
//! end's: every step is reported through a [`Progress`] callback.

pub mod spec;
pub mod vm;

use crate::client::ClientError;
use crate::engine::{Engine, NetworkConnect, NetworkCreate, VolumeCreate};
use crate::placement::Isolation;
use berth_compose::{Condition, Project, Service};
use berth_protocol::{ContainerConfig, ContainerStatus, ContainerSummary, ErrorKind};
use spec::label;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Why a compose operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Spec(#[from] spec::SpecError),
    #[error(transparent)]
    Model(#[from] berth_compose::ComposeError),
    #[error("Error response from daemon: {0}")]
    Engine(#[from] ClientError),
    /// The engine could not be reached.
    #[error("{0}")]
    Connect(String),
    #[error("no such service: {0}")]
    NoSuchService(String),
    /// A `depends_on` condition cannot be met.
    #[error("dependency failed to start: {0}")]
    Dependency(String),
    #[error("service {service:?} didn't complete successfully: exit {code}")]
    NotCompleted { service: String, code: i32 },
    /// What the placement cannot give a container.
    #[error("{0}")]
    Placement(String),
    #[error("external {kind} {name:?} not found")]
    External { kind: &'static str, name: String },
}

pub type Result<T> = std::result::Result<T, Error>;

/// One step, as docker compose shows it: `Container p-web-1  Started`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// `Network`, `Volume` or `Container`.
    pub object: &'static str,
    pub name: String,
    /// `Creating`, `Created`, `Started`, `Running`, `Recreate`, ...
    pub status: &'static str,
}

/// Where progress goes.
pub type Report<'a> = &'a mut dyn FnMut(Progress);

fn note(report: Report, object: &'static str, name: &str, status: &'static str) {
    report(Progress {
        object,
        name: name.to_string(),
        status,
    })
}

/// What [`Orchestrator`] runs on each container of a group at once.
type Worker<'a> = dyn Fn(&mut Engine, &ContainerSummary, Report) -> Result<()> + Sync + 'a;

/// `up`'s options.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// The services named (empty: all active ones).
    pub services: Vec<String>,
    /// Do not start the named services' dependencies.
    pub no_deps: bool,
    pub force_recreate: bool,
    pub no_recreate: bool,
    pub remove_orphans: bool,
    /// `--scale SERVICE=N`.
    pub scale: BTreeMap<String, u64>,
    /// Create the containers without starting them (`create`).
    pub no_start: bool,
}

/// `down`'s options.
#[derive(Debug, Clone, Default)]
pub struct DownOptions {
    /// Remove the project's named volumes too.
    pub volumes: bool,
    pub remove_orphans: bool,
    pub timeout: Option<i64>,
}

/// A project bound to an engine.
pub struct Orchestrator<'p> {
    pub project: &'p Project,
    iso: Isolation,
    engine: Engine,
    /// How often a `depends_on` condition is polled.
    pub poll: Duration,
}

/// The container number a summary carries (0 when unlabelled).
pub fn number(c: &ContainerSummary) -> u64 {
    c.labels
        .get(label::NUMBER)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The service a container belongs to.
pub fn service_of(c: &ContainerSummary) -> &str {
    c.labels
        .get(label::SERVICE)
        .map(String::as_str)
        .unwrap_or("")
}

/// Whether a container was made by `run`.
pub fn is_oneoff(c: &ContainerSummary) -> bool {
    c.labels.get(label::ONEOFF).map(String::as_str) == Some("True")
}

fn running(c: &ContainerSummary) -> bool {
    matches!(
        c.status,
        ContainerStatus::Running | ContainerStatus::Restarting | ContainerStatus::Paused
    )
}

fn not_found(e: &ClientError) -> bool {
    e.kind() == Some(ErrorKind::NotFound)
}

impl<'p> Orchestrator<'p> {
    /// Connects to the placement's engine.
    pub fn new(project: &'p Project, iso: Isolation) -> Result<Orchestrator<'p>> {
        let engine = iso
            .connect()
            .map_err(|e| Error::Connect(format!("{e:#}")))?;
        Ok(Orchestrator {
            project,
            iso,
            engine,
            poll: Duration::from_millis(200),
        })
    }

    /// The control connection.
    pub fn engine(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// A second connection (for streams, which consume theirs).
    pub fn connect(&self) -> Result<Engine> {
        self.iso
            .connect()
            .map_err(|e| Error::Connect(format!("{e:#}")))
    }

    pub fn isolation(&self) -> Isolation {
        self.iso
    }

    fn service(&self, name: &str) -> Result<&'p Service> {
        self.project
            .services
            .get(name)
            .ok_or_else(|| Error::NoSuchService(name.to_string()))
    }

    /// Fails on the first name that is not a service of the project.
    pub fn check_services(&self, names: &[String]) -> Result<()> {
        names.iter().try_for_each(|n| self.service(n).map(|_| ()))
    }

    /// The project's services in dependency order (all of them, profiles
    /// or not: what already runs is the project's).
    pub fn order(&self) -> Result<Vec<&'p Service>> {
        Ok(self.project.services_in_dependency_order()?)
    }

    /// The project's containers (`all`: stopped ones too), one-offs
    /// included when `oneoff`, in dependency order then number.
    pub fn containers(&mut self, all: bool, oneoff: bool) -> Result<Vec<ContainerSummary>> {
        let mut list: Vec<ContainerSummary> = self
            .engine
            .container_list(all)?
            .into_iter()
            .filter(|c| c.labels.get(label::PROJECT) == Some(&self.project.name))
            .filter(|c| oneoff || !is_oneoff(c))
            .collect();
        let rank: BTreeMap<&str, usize> = self
            .order()?
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        list.sort_by_key(|c| {
            (
                rank.get(service_of(c)).copied().unwrap_or(usize::MAX),
                service_of(c).to_string(),
                is_oneoff(c),
                number(c),
                c.name.clone(),
            )
        });
        Ok(list)
    }

    /// The containers of the named services (every service when empty).
    pub fn service_containers(
        &mut self,
        services: &[String],
        all: bool,
    ) -> Result<Vec<ContainerSummary>> {
        self.check_services(services)?;
        Ok(self
            .containers(all, false)?
            .into_iter()
            .filter(|c| services.is_empty() || services.iter().any(|s| s == service_of(c)))
            .collect())
    }

    /// What `ps` lists: the named services' containers (every service's
    /// when empty), one-offs of `run` included.
    pub fn listing(&mut self, services: &[String], all: bool) -> Result<Vec<ContainerSummary>> {
        self.check_services(services)?;
        Ok(self
            .containers(all, true)?
            .into_iter()
            .filter(|c| services.is_empty() || services.iter().any(|s| s == service_of(c)))
            .collect())
    }

    /// The named services and (unless `no_deps`) everything they depend
    /// on, in dependency order; all active services when none is named.
    pub fn selection(&self, names: &[String], no_deps: bool) -> Result<Vec<&'p Service>> {
        self.check_services(names)?;
        let order = self.order()?;
        if names.is_empty() {
            return Ok(self.project.active_services()?);
        }
        let mut want: BTreeSet<String> = names.iter().cloned().collect();
        if !no_deps {
            // Dependencies come first in `order`: walk it backwards.
            for s in order.iter().rev() {
                if want.contains(&s.name) {
                    for d in s.dependencies() {
                        want.insert(d);
                    }
                }
            }
        }
        Ok(order
            .into_iter()
            .filter(|s| want.contains(&s.name))
            .collect())
    }

    fn ensure_networks(&mut self, services: &[&Service], report: Report) -> Result<()> {
        let keys: BTreeSet<String> = services
            .iter()
            .flat_map(|s| spec::service_networks(s))
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        let existing: BTreeSet<String> = self
            .engine
            .network_list()?
            .into_iter()
            .map(|n| n.name)
            .collect();
        for key in keys {
            let name = spec::network_name(self.project, &key);
            if existing.contains(&name) {
                continue;
            }
            let def = self.project.networks.get(&key).cloned().unwrap_or_default();
            if def.external {
                return Err(Error::External {
                    kind: "network",
                    name,
                });
            }
            let mut labels = def.labels.clone();
            labels.insert(label::PROJECT.into(), self.project.name.clone());
            labels.insert(label::NETWORK.into(), key.clone());
            labels.insert(label::VERSION.into(), env!("CARGO_PKG_VERSION").into());
            note(report, "Network", &name, "Creating");
            self.engine.network_create(NetworkCreate {
                name: name.clone(),
                driver: def.driver.clone(),
                internal: def.internal.unwrap_or(false),
                labels,
                options: def.driver_opts.clone(),
                ..Default::default()
            })?;
            note(report, "Network", &name, "Created");
        }
        Ok(())
    }

    fn ensure_volumes(&mut self, services: &[&Service], report: Report) -> Result<()> {
        let keys: BTreeSet<&str> = services
            .iter()
            .flat_map(|s| s.volumes.iter().filter_map(|m| m.named_volume()))
            .collect();
        for key in keys {
            let name = spec::volume_name(self.project, key);
            match self.engine.volume_inspect(&name) {
                Ok(_) => continue,
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
            let def = self.project.volumes.get(key).cloned().unwrap_or_default();
            if def.external {
                return Err(Error::External {
                    kind: "volume",
                    name,
                });
            }
            let mut labels = def.labels.clone();
            labels.insert(label::PROJECT.into(), self.project.name.clone());
            labels.insert(label::VOLUME.into(), key.to_string());
            labels.insert(label::VERSION.into(), env!("CARGO_PKG_VERSION").into());
            note(report, "Volume", &name, "Creating");
            self.engine.volume_create(VolumeCreate {
                name: Some(name.clone()),
                driver: def.driver.clone(),
                labels,
                options: def.driver_opts.clone(),
            })?;
            note(report, "Volume", &name, "Created");
        }
        Ok(())
    }

    /// Blocks until `dep`'s containers meet `cond` (`up --wait`, and
    /// `depends_on` conditions).
    pub fn wait_condition(&mut self, dep: &str, cond: Condition, report: Report) -> Result<()> {
        if cond == Condition::Started {
            return Ok(());
        }
        let mut waiting_noted = BTreeSet::new();
        loop {
            let cs = self.service_containers(&[dep.to_string()], true)?;
            if cs.is_empty() {
                return Err(Error::Dependency(format!(
                    "service {dep:?} has no container"
                )));
            }
            let mut done = true;
            for c in &cs {
                if waiting_noted.insert(c.name.clone()) {
                    note(report, "Container", &c.name, "Waiting");
                }
                match cond {
                    Condition::Healthy => match (&c.health, c.status) {
                        (Some(h), _) if h.status == "healthy" => {}
                        (Some(h), _) if h.status == "unhealthy" => {
                            return Err(Error::Dependency(format!(
                                "container {} is unhealthy",
                                c.name
                            )))
                        }
                        (_, ContainerStatus::Exited | ContainerStatus::Dead) => {
                            return Err(Error::Dependency(format!(
                                "container {} exited ({})",
                                c.name,
                                c.exit_code.unwrap_or(-1)
                            )))
                        }
                        (None, ContainerStatus::Running) if !self.has_healthcheck(&c.id)? => {
                            return Err(Error::Dependency(format!(
                                "container {} has no healthcheck configured",
                                c.name
                            )))
                        }
                        _ => done = false,
                    },
                    Condition::CompletedSuccessfully => match c.status {
                        ContainerStatus::Exited | ContainerStatus::Dead => {
                            let code = c.exit_code.unwrap_or(-1);
                            if code != 0 {
                                return Err(Error::NotCompleted {
                                    service: dep.to_string(),
                                    code,
                                });
                            }
                        }
                        _ => done = false,
                    },
                    Condition::Started => {}
                }
            }
            if done {
                for c in &cs {
                    let what = match cond {
                        Condition::Healthy => "Healthy",
                        _ => "Exited",
                    };
                    note(report, "Container", &c.name, what);
                }
                return Ok(());
            }
            std::thread::sleep(self.poll);
        }
    }

    fn has_healthcheck(&mut self, id: &str) -> Result<bool> {
        let d = self.engine.container_inspect(id)?;
        Ok(d.config
            .healthcheck
            .as_ref()
            .is_some_and(|h| !h.test.is_empty() && h.test[0] != "NONE"))
    }

    fn prepare(&self, mut cfg: ContainerConfig) -> Result<ContainerConfig> {
        // Native or the machine VM (own VMs: host-cli's compose/vm.rs):
        // nothing is held.
        let _held = crate::mounts::check_placement(self.iso, &mut cfg).map_err(Error::Placement)?;
        Ok(cfg)
    }

    /// Creates container `number` of a service (not started).
    fn create(
        &mut self,
        s: &Service,
        base: &ContainerConfig,
        hash: &str,
        number: u64,
        report: Report,
    ) -> Result<String> {
        let name = spec::container_name(&self.project.name, &s.name, number);
        let mut cfg = base.clone();
        cfg.name = Some(name.clone());
        cfg.labels = spec::container_labels(&base.labels, number, hash, false);
        let cfg = self.prepare(cfg)?;
        note(report, "Container", &name, "Creating");
        let id = self.engine.container_create(cfg)?.id;
        for net in spec::service_networks(s).iter().skip(1) {
            self.engine.network_connect(NetworkConnect {
                network: spec::network_name(self.project, net),
                container: id.clone(),
                aliases: spec::aliases(s, net),
                ipv4_address: None,
            })?;
        }
        note(report, "Container", &name, "Created");
        Ok(id)
    }

    /// Starts a container (and binds its ports on the host for a machine
    /// VM).
    fn start_one(&mut self, id: &str, name: &str, report: Report) -> Result<()> {
        note(report, "Container", name, "Starting");
        self.engine.container_start(id)?;
        if self.iso.forwards_ports() {
            crate::ports::publish_on_host(&mut self.engine, id).map_err(Error::Placement)?;
        }
        note(report, "Container", name, "Started");
        Ok(())
    }

    fn remove_one(
        &mut self,
        c: &ContainerSummary,
        timeout: Option<i64>,
        volumes: bool,
        report: Report,
    ) -> Result<()> {
        remove_container(&mut self.engine, c, timeout, volumes, report)
    }

    fn levels(&self) -> Result<BTreeMap<String, usize>> {
        dependency_levels(self.project)
    }

    /// Runs `f` on every container of `list`, dependents before what they
    /// depend on (the deepest level first; containers of no service first
    /// of all), the containers of one level at once.
    fn reverse_levels_parallel(
        &self,
        list: &[ContainerSummary],
        report: Report,
        f: &Worker<'_>,
    ) -> Result<()> {
        let levels = self.levels()?;
        let mut groups: BTreeMap<std::cmp::Reverse<usize>, Vec<&ContainerSummary>> =
            BTreeMap::new();
        for c in list {
            let l = levels.get(service_of(c)).copied().unwrap_or(usize::MAX);
            groups.entry(std::cmp::Reverse(l)).or_default().push(c);
        }
        for group in groups.values() {
            self.parallel(group, report, f)?;
        }
        Ok(())
    }

    /// Runs `f` on each container of `group` at once, each on a
    /// connection of its own.
    fn parallel(&self, group: &[&ContainerSummary], report: Report, f: &Worker<'_>) -> Result<()> {
        let iso = self.iso;
        fan_out(group, report, &|c, report| {
            let mut engine = iso
                .connect()
                .map_err(|e| Error::Connect(format!("{e:#}")))?;
            f(&mut engine, c, report)
        })
    }

    /// Containers of the project whose service the model no longer has.
    pub fn orphans(&mut self) -> Result<Vec<ContainerSummary>> {
        Ok(self
            .containers(true, false)?
            .into_iter()
            .filter(|c| !self.project.services.contains_key(service_of(c)))
            .collect())
    }

    /// What `up` refuses before it makes anything: an unknown service
    /// (named or scaled), a service berth cannot turn into a container.
    pub fn check_up(&self, o: &UpOptions) -> Result<()> {
        for s in o.scale.keys() {
            self.service(s)?;
        }
        for s in self.selection(&o.services, o.no_deps)? {
            spec::service_config(self.project, s)?;
        }
        Ok(())
    }

    /// `up`: networks, volumes, then each service in dependency order,
    /// waiting for its dependencies' conditions first; a service's
    /// containers are recreated only when its config hash changed.
    pub fn up(&mut self, o: &UpOptions, report: Report) -> Result<()> {
        self.check_up(o)?;
        let services = self.selection(&o.services, o.no_deps)?;
        let orphans = self.orphans()?;
        if o.remove_orphans {
            for c in &orphans {
                self.remove_one(c, None, false, report)?;
            }
        }
        self.ensure_networks(&services, report)?;
        self.ensure_volumes(&services, report)?;
        let chosen: BTreeSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
        // Level by level (what a service depends on is on a lower one);
        // the services of one level at once, each on its own connection.
        let levels = self.levels()?;
        let mut by_level: BTreeMap<usize, Vec<&Service>> = BTreeMap::new();
        for s in services {
            by_level
                .entry(levels.get(&s.name).copied().unwrap_or(0))
                .or_default()
                .push(s);
        }
        for group in by_level.values() {
            for s in group {
                for (dep, d) in &s.depends_on {
                    if chosen.contains(dep.as_str()) && !o.no_start {
                        self.wait_condition(dep, d.condition, report)?;
                    }
                }
            }
            if let [s] = group.as_slice() {
                self.converge(s, o, report)?;
                continue;
            }
            let (project, iso) = (self.project, self.iso);
            fan_out(group, report, &|s, report| {
                Orchestrator::new(project, iso)?.converge(s, o, report)
            })?;
        }
        Ok(())
    }

    fn converge(&mut self, s: &Service, o: &UpOptions, report: Report) -> Result<()> {
        let base = spec::service_config(self.project, s)?;
        let hash = spec::config_hash(self.project, s, &base);
        let want = o
            .scale
            .get(&s.name)
            .copied()
            .unwrap_or_else(|| s.replicas());
        let existing = self.service_containers(std::slice::from_ref(&s.name), true)?;
        let image_id = self.engine.image_inspect(&base.image).ok().map(|i| i.id);
        let timeout = spec::stop_timeout(s);
        let mut taken = BTreeSet::new();
        for c in &existing {
            let n = number(c);
            if n == 0 || n > want || !taken.insert(n) {
                // Scaled down (the highest numbers go first) or a duplicate.
                self.remove_one(c, timeout, false, report)?;
                continue;
            }
            // A changed config, or an image rebuilt or pulled since.
            let stale = c.labels.get(label::HASH) != Some(&hash)
                || image_id.as_ref().is_some_and(|id| *id != c.image_id);
            if (stale || o.force_recreate) && !o.no_recreate {
                note(report, "Container", &c.name, "Recreate");
                if running(c) {
                    self.engine.container_stop(&c.id, timeout)?;
                }
                self.engine.container_remove(&c.id, true, false)?;
                let id = self.create(s, &base, &hash, n, &mut |_| {})?;
                note(report, "Container", &c.name, "Recreated");
                if !o.no_start {
                    self.start_one(&id, &c.name, report)?;
                }
            } else if running(c) {
                note(report, "Container", &c.name, "Running");
            } else if !o.no_start {
                self.start_one(&c.id, &c.name, report)?;
            }
        }
        for n in 1..=want {
            if taken.contains(&n) {
                continue;
            }
            let id = self.create(s, &base, &hash, n, report)?;
            if !o.no_start {
                let name = spec::container_name(&self.project.name, &s.name, n);
                self.start_one(&id, &name, report)?;
            }
        }
        Ok(())
    }

    /// `down`: the containers in reverse dependency order (one-offs too),
    /// then the project's networks, then (`volumes`) its named volumes.
    pub fn down(&mut self, o: &DownOptions, report: Report) -> Result<()> {
        let orphans: Vec<ContainerSummary> = self.orphans()?;
        let list: Vec<ContainerSummary> = self
            .containers(true, true)?
            .into_iter()
            .filter(|c| o.remove_orphans || !orphans.iter().any(|x| x.id == c.id))
            .collect();
        let project = self.project;
        self.reverse_levels_parallel(&list, report, &|engine, c, report| {
            let timeout = o.timeout.or_else(|| {
                project
                    .services
                    .get(service_of(c))
                    .and_then(spec::stop_timeout)
            });
            remove_container(engine, c, timeout, false, report)
        })?;
        let keep_networks = !o.remove_orphans && !orphans.is_empty();
        for n in self.engine.network_list()? {
            if n.labels.get(label::PROJECT) != Some(&self.project.name) || keep_networks {
                continue;
            }
            note(report, "Network", &n.name, "Removing");
            match self.engine.network_remove(&n.name) {
                Ok(()) => note(report, "Network", &n.name, "Removed"),
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if o.volumes {
            for key in self.project.volumes.keys() {
                if self.project.volumes[key].external {
                    continue;
                }
                let name = spec::volume_name(self.project, key);
                match self.engine.volume_remove(&name, false) {
                    Ok(()) => note(report, "Volume", &name, "Removed"),
                    Err(e) if not_found(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// `stop`: in reverse dependency order.
    pub fn stop(
        &mut self,
        services: &[String],
        timeout: Option<i64>,
        report: Report,
    ) -> Result<()> {
        let list = self.service_containers(services, false)?;
        let project = self.project;
        self.reverse_levels_parallel(&list, report, &|engine, c, report| {
            let t = timeout.or_else(|| {
                project
                    .services
                    .get(service_of(c))
                    .and_then(spec::stop_timeout)
            });
            note(report, "Container", &c.name, "Stopping");
            engine.container_stop(&c.id, t)?;
            note(report, "Container", &c.name, "Stopped");
            Ok(())
        })
    }

    /// `start`: the stopped containers, in dependency order.
    pub fn start(&mut self, services: &[String], report: Report) -> Result<()> {
        let list = self.service_containers(services, true)?;
        for c in list.iter().filter(|c| !running(c)) {
            self.start_one(&c.id, &c.name, report)?;
        }
        Ok(())
    }

    pub fn restart(
        &mut self,
        services: &[String],
        timeout: Option<i64>,
        report: Report,
    ) -> Result<()> {
        for c in &self.service_containers(services, true)? {
            note(report, "Container", &c.name, "Restarting");
            self.engine.container_restart(&c.id, timeout)?;
            note(report, "Container", &c.name, "Started");
        }
        Ok(())
    }

    pub fn kill(&mut self, services: &[String], signal: i32, report: Report) -> Result<()> {
        for c in &self.service_containers(services, false)? {
            note(report, "Container", &c.name, "Killing");
            self.engine.container_kill(&c.id, signal)?;
            note(report, "Container", &c.name, "Killed");
        }
        Ok(())
    }

    /// `pause` (`true`) or `unpause`.
    pub fn pause(&mut self, services: &[String], pause: bool, report: Report) -> Result<()> {
        for c in &self.service_containers(services, false)? {
            if pause {
                self.engine.container_pause(&c.id)?;
                note(report, "Container", &c.name, "Paused");
            } else {
                self.engine.container_unpause(&c.id)?;
                note(report, "Container", &c.name, "Unpaused");
            }
        }
        Ok(())
    }

    /// The stopped containers `rm` removes (with `stop`, the running ones
    /// too, stopped first).
    pub fn removable(&mut self, services: &[String], stop: bool) -> Result<Vec<ContainerSummary>> {
        Ok(self
            .service_containers(services, true)?
            .into_iter()
            .filter(|c| stop || !running(c))
            .collect())
    }

    pub fn remove(
        &mut self,
        list: &[ContainerSummary],
        volumes: bool,
        report: Report,
    ) -> Result<()> {
        for c in list {
            self.remove_one(c, None, volumes, report)?;
        }
        Ok(())
    }

    /// A one-off container for `run`: the service's config with the
    /// command (and environment) given, named `<project>-<service>-run-<id>`;
    /// ports are not published unless `service_ports`.
    pub fn run_config(
        &mut self,
        service: &str,
        command: Vec<String>,
        env: Vec<String>,
        service_ports: bool,
        overrides: &RunOverrides,
        report: Report,
    ) -> Result<ContainerConfig> {
        let s = self.service(service)?;
        self.ensure_networks(&[s], report)?;
        self.ensure_volumes(&[s], report)?;
        let mut cfg = spec::service_config(self.project, s)?;
        let hash = spec::config_hash(self.project, s, &cfg);
        cfg.name =
            Some(overrides.name.clone().unwrap_or_else(|| {
                format!("{}-{}-run-{}", self.project.name, s.name, run_suffix())
            }));
        let mut labels = cfg.labels.clone();
        labels.extend(overrides.labels.clone());
        cfg.labels = spec::container_labels(&labels, 1, &hash, true);
        if let Some(e) = &overrides.entrypoint {
            // As docker compose: a new entrypoint drops the service's command
            // unless one is given on the command line.
            cfg.entrypoint = Some(e.clone());
            cfg.cmd = Some(Vec::new());
        }
        if !command.is_empty() {
            cfg.cmd = Some(command);
        }
        if let Some(u) = &overrides.user {
            cfg.user = Some(u.clone());
        }
        if let Some(w) = &overrides.workdir {
            cfg.workdir = Some(w.clone());
        }
        cfg.env.extend(env);
        if !service_ports {
            cfg.ports.clear();
        }
        cfg.ports.extend(overrides.publish.iter().cloned());
        for m in &overrides.volumes {
            cfg.mounts.retain(|x| x.target != m.target);
            cfg.mounts.push(m.clone());
        }
        cfg.restart = Default::default();
        self.prepare(cfg)
    }
}

/// What `compose run`'s flags change in the service's container.
#[derive(Debug, Clone, Default)]
pub struct RunOverrides {
    /// `--name`.
    pub name: Option<String>,
    /// `--entrypoint`, already split into words.
    pub entrypoint: Option<Vec<String>>,
    /// `-u`.
    pub user: Option<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-l KEY=VALUE`.
    pub labels: BTreeMap<String, String>,
    /// `-p`, added to (or, without `--service-ports`, instead of) the
    /// service's ports.
    pub publish: Vec<berth_protocol::PortBinding>,
    /// `-v`; one on a target the service mounts replaces that mount.
    pub volumes: Vec<berth_protocol::MountSpec>,
}

/// Each service's depth in the dependency graph: 0 for one that needs no
/// other, else one more than the deepest it needs. `up` goes through the
/// levels upwards, `down` downwards.
pub fn dependency_levels(project: &Project) -> Result<BTreeMap<String, usize>> {
    let mut lv: BTreeMap<String, usize> = BTreeMap::new();
    for s in project.services_in_dependency_order()? {
        let l = s
            .dependencies()
            .iter()
            .filter_map(|d| lv.get(d))
            .map(|l| l + 1)
            .max()
            .unwrap_or(0);
        lv.insert(s.name.clone(), l);
    }
    Ok(lv)
}

/// Runs `f` on every item at once, a thread each. Progress is reported
/// from the calling thread; the first error is returned once every worker
/// ended.
fn fan_out<T: Sync>(
    items: &[T],
    report: Report,
    f: &(dyn Fn(&T, Report) -> Result<()> + Sync),
) -> Result<()> {
    let (tx, rx) = std::sync::mpsc::channel::<Progress>();
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .iter()
            .map(|item| {
                let tx = tx.clone();
                scope.spawn(move || {
                    let mut send = |p: Progress| {
                        let _ = tx.send(p);
                    };
                    f(item, &mut send)
                })
            })
            .collect();
        drop(tx);
        for p in rx {
            report(p);
        }
        let mut first = Ok(());
        for w in workers {
            let r = w
                .join()
                .unwrap_or_else(|_| Err(Error::Connect("a worker thread panicked".into())));
            if first.is_ok() {
                first = r;
            }
        }
        first
    })
}

/// Stops (when running) and removes one container.
fn remove_container(
    engine: &mut Engine,
    c: &ContainerSummary,
    timeout: Option<i64>,
    volumes: bool,
    report: Report,
) -> Result<()> {
    if running(c) {
        note(report, "Container", &c.name, "Stopping");
        engine.container_stop(&c.id, timeout)?;
        note(report, "Container", &c.name, "Stopped");
    }
    note(report, "Container", &c.name, "Removing");
    match engine.container_remove(&c.id, true, volumes) {
        Ok(()) => {}
        Err(e) if not_found(&e) => {}
        Err(e) => return Err(e.into()),
    }
    note(report, "Container", &c.name, "Removed");
    Ok(())
}

/// Twelve hex digits that tell one-off containers apart.
fn run_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(now);
    h.write_u32(std::process::id());
    format!("{:012x}", h.finish() & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod tests;
