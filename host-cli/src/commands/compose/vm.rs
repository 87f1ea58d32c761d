//! `berth compose --isolation vm`: each service container in a microVM
//! of its own, started by a detached keeper (`vm_keeper`), found again
//! through the keepers' records (`vm_fleet`) by the compose labels they
//! carry. The addresses that give the services each other's names are
//! host-core's `compose::vm` plan. `run`, `scale`, `push` and `down --rmi`
//! say they do not work yet; named volumes are made with the compose
//! labels (host folders the VMs share) and `down -v` removes them; `start` (and `restart` of a stopped
//! container) makes the container anew in a new VM; `build` builds in the
//! native engine (the machine VM's off Linux) and copies the image into
//! the host cache.

use super::{fail, parse_scale, parse_tail, print_logs, print_ps, pull_image, UpArgs, Verb};
use crate::commands::{container, vm_keeper, vm_verbs};
use crate::placement::Isolation;
use anyhow::{anyhow, Context, Result};
use berth_compose::{Condition, Project, PullPolicy, Service};
use berth_host::compose::vm::{self as plan, Plan};
use berth_host::compose::{self as orch, spec, Progress};
use berth_host::vm_fleet::{self, Entry};
use berth_host::vm_volumes::VolumeStore;
use berth_protocol::mux::{self, Kind};
use berth_protocol::{ContainerStatus, ContainerSummary, LogsOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

/// How long `stop` and `down` wait for a keeper to record its container's
/// exit after the guest engine stopped it.
const KEEPER_WAIT: Duration = Duration::from_secs(60);

fn note(object: &'static str, name: &str, status: &'static str) {
    super::print_progress(Progress {
        object,
        name: name.to_string(),
        status,
    });
}

/// Runs `v` on `project`'s own-VM containers.
pub(super) fn run(project: &Project, v: &Verb) -> Result<i32> {
    match v {
        Verb::Up(u) => up(project, u),
        Verb::Down {
            timeout,
            rmi,
            volumes,
            ..
        } => {
            if rmi.is_some() {
                return Ok(fail(
                    "compose down --rmi is not supported with --isolation vm yet",
                ));
            }
            down(project, *timeout)?;
            if *volumes {
                remove_volumes(project)?;
            }
            Ok(0)
        }
        Verb::Ps {
            all,
            quiet,
            format,
            services,
            names,
        } => {
            let list: Vec<ContainerSummary> = containers(project, names)?
                .into_iter()
                .map(|(_, c)| c)
                .filter(|c| *all || c.status == ContainerStatus::Running)
                .collect();
            let name = project.name.clone();
            let mut ports_of = |c: &ContainerSummary| {
                c.ports
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|p| !plan::is_peer_binding(&name, &p.host_ip))
                    .collect()
            };
            print_ps(&project.name, &list, &mut ports_of, *quiet, format, *services)
        }
        Verb::Logs {
            follow,
            timestamps,
            tail,
            no_log_prefix,
            services,
        } => {
            let tail = match parse_tail(tail) {
                Ok(t) => t,
                Err(e) => return Ok(fail(e)),
            };
            let list = containers(project, services)?;
            logs(&list, *follow, *timestamps, tail, !no_log_prefix, None)?;
            Ok(0)
        }
        Verb::Stop { timeout, services } => {
            stop(project, services, *timeout)?;
            Ok(0)
        }
        Verb::Rm {
            force,
            stop: stop_first,
            services,
            ..
        } => {
            let list: Vec<(Entry, ContainerSummary)> = containers(project, services)?
                .into_iter()
                .filter(|(e, _)| *stop_first || !e.running())
                .collect();
            let names: Vec<&str> = list.iter().map(|(_, c)| c.name.as_str()).collect();
            if !super::confirm_removal(&names, *force)? {
                return Ok(0);
            }
            for (e, c) in &list {
                remove(e, c, None);
            }
            Ok(0)
        }
        Verb::Start { services } => {
            // A stopped own-VM container cannot start again (its writable
            // layer went with its VM): the service's container is made anew.
            remake(project, &stopped_services(&containers(project, services)?))?;
            Ok(0)
        }
        Verb::Restart { timeout, services } => {
            let list = containers(project, services)?;
            let stopped = stopped_services(&list);
            let live: Vec<(Entry, ContainerSummary)> =
                list.into_iter().filter(|(e, _)| e.running()).collect();
            reverse_levels(project, &live, &|(e, c)| {
                let t = timeout.or_else(|| {
                    project
                        .services
                        .get(orch::service_of(c))
                        .and_then(spec::stop_timeout)
                });
                note("Container", &c.name, "Restarting");
                vm_verbs::restart(e, t).map_err(|err| anyhow!("restarting {}: {err}", c.name))?;
                note("Container", &c.name, "Started");
                Ok(())
            })?;
            remake(project, &stopped)?;
            Ok(0)
        }
        Verb::Kill { signal, services } => {
            let Some(sig) = container::parse_signal(signal.trim_start_matches("SIG")) else {
                return Ok(fail(format!("invalid signal: {signal}")));
            };
            let list = running(project, services)?;
            each_at_once(&list, &|(e, c)| {
                note("Container", &c.name, "Killing");
                e.engine()?
                    .container_kill(&e.record.id, sig)
                    .with_context(|| format!("killing {}", c.name))?;
                if sig == 9 {
                    // SIGKILL ends the container: its keeper records the exit.
                    e.wait_keeper(KEEPER_WAIT);
                }
                note("Container", &c.name, "Killed");
                Ok(())
            })?;
            Ok(0)
        }
        Verb::Pause { services } | Verb::Unpause { services } => {
            let pause = matches!(v, Verb::Pause { .. });
            let list = running(project, services)?;
            for (e, c) in &list {
                note("Container", &c.name, if pause { "Pausing" } else { "Unpausing" });
                let mut engine = e.engine()?;
                if pause {
                    engine.container_pause(&e.record.id)?;
                } else {
                    engine.container_unpause(&e.record.id)?;
                }
                note("Container", &c.name, if pause { "Paused" } else { "Unpaused" });
            }
            Ok(0)
        }
        Verb::Top { services } => {
            for (e, c) in running(project, services)? {
                let t = e.engine()?.container_top(&e.record.id)?;
                super::print_top(&c.name, &t);
            }
            Ok(0)
        }
        Verb::Port {
            index,
            protocol,
            service,
            private_port,
        } => {
            let (_, c) = replica(project, service, *index)?;
            let ports = c.ports.clone().unwrap_or_default();
            let found = ports.iter().find(|p| {
                p.container_port == *private_port
                    && p.proto.as_str() == protocol.as_str()
                    && !plan::is_peer_binding(&project.name, &p.host_ip)
            });
            Ok(super::print_port(found, *private_port, protocol, &c.name))
        }
        Verb::Exec { service, index, .. } => {
            let (_, c) = replica(project, service, *index)?;
            super::exec_in(Isolation::Vm, c.name, v)
        }
        Verb::Images { quiet, services } => {
            let cache = berth_host::image_cache::ImageCache::open()?;
            let mut rows = Vec::new();
            for (_, c) in containers(project, services)? {
                if let Some(i) = cache.resolve(&c.image) {
                    // The size of the compressed layers the cache holds.
                    let size = i.layers.iter().map(|l| l.size).sum();
                    rows.push((c.name, c.image, i.config_digest, size));
                }
            }
            super::print_images(&rows, *quiet);
            Ok(0)
        }
        Verb::Pull {
            quiet,
            ignore_pull_failures,
            services,
        } => {
            check_services(project, services)?;
            super::pull_services(project, Isolation::Vm, services, *quiet, *ignore_pull_failures)
        }
        Verb::Build {
            no_cache,
            pull,
            quiet,
            services,
        } => {
            check_services(project, services)?;
            for s in super::to_build(project, services) {
                let code = build(project, s, *no_cache, *pull, *quiet)?;
                if code != 0 {
                    return Ok(code);
                }
            }
            Ok(0)
        }
        _ => Ok(fail(
            "this compose command is not supported with --isolation vm yet (run, scale, push and down --rmi are not; the others are)",
        )),
    }
}

fn check_services(project: &Project, services: &[String]) -> Result<()> {
    for s in services {
        if !project.services.contains_key(s) {
            return Err(anyhow!("no such service: {s}"));
        }
    }
    Ok(())
}

/// The container `index` of `service`, running.
fn replica(project: &Project, service: &str, index: u64) -> Result<(Entry, ContainerSummary)> {
    containers(project, &[service.to_string()])?
        .into_iter()
        .find(|(e, c)| orch::number(c) == index && e.running())
        .ok_or_else(|| anyhow!("service {service:?} is not running"))
}

/// The engine that builds a service's image for own VMs: own VMs have
/// none, so the image is built where `build` runs (native on Linux, the
/// machine VM elsewhere) and copied into the host cache.
fn builder() -> Isolation {
    if cfg!(target_os = "linux") {
        Isolation::Native
    } else {
        Isolation::Shared
    }
}

/// Builds `s`'s image with [`builder`]'s engine and puts it, tagged, in
/// the host cache, where own VMs are given their images from.
fn build(project: &Project, s: &Service, no_cache: bool, pull: bool, quiet: bool) -> Result<i32> {
    let iso = builder();
    seed_bases(iso, s)?;
    let code = super::build_service(project, iso, s, no_cache, pull, quiet)?;
    if code != 0 {
        return Ok(code);
    }
    let image = spec::image_name(project, s);
    let cache = berth_host::image_cache::ImageCache::open()?;
    let mut commit = berth_host::transfer::resolve_local(iso, &cache, &image)
        .with_context(|| format!("copying image {image} into the host cache"))?;
    let tag = berth_protocol::reference::Reference::parse(&image)
        .map_err(|e| anyhow!("image {image:?}: {e}"))?
        .to_string();
    commit.tags = vec![tag];
    cache.record(&commit)?;
    Ok(0)
}

/// Gives the builder's engine the base images (`FROM`) of `s`'s
/// Dockerfile that only the host cache holds (pulled or loaded with
/// `--isolation vm`), so that the build does not pull them again.
fn seed_bases(iso: Isolation, s: &Service) -> Result<()> {
    let Some(b) = &s.build else { return Ok(()) };
    let file =
        std::path::Path::new(&b.context).join(b.dockerfile.as_deref().unwrap_or("Dockerfile"));
    let Ok(text) = std::fs::read_to_string(&file) else {
        // The build reports a missing Dockerfile in its own words.
        return Ok(());
    };
    let cache = berth_host::image_cache::ImageCache::open()?;
    let mut stages: BTreeSet<String> = BTreeSet::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if !words.next().is_some_and(|w| w.eq_ignore_ascii_case("from")) {
            continue;
        }
        let rest: Vec<&str> = words.filter(|w| !w.starts_with("--")).collect();
        let Some(base) = rest.first() else { continue };
        if let [_, kw, stage, ..] = rest.as_slice() {
            if kw.eq_ignore_ascii_case("as") {
                stages.insert(stage.to_ascii_lowercase());
            }
        }
        if base.contains('$') || stages.contains(&base.to_ascii_lowercase()) {
            continue;
        }
        let Some(commit) = cache.resolve(base) else {
            continue;
        };
        let mut engine = iso.connect()?;
        if engine.image_inspect(base).is_ok() {
            continue;
        }
        cache
            .upload(&commit, &|| iso.connect())
            .with_context(|| format!("giving the build its base image {base}"))?;
    }
    Ok(())
}

/// Makes the containers of `services` anew, in dependency order (own-VM
/// `start` and `restart` of a stopped container).
fn remake(project: &Project, services: &BTreeSet<String>) -> Result<()> {
    if services.is_empty() {
        return Ok(());
    }
    let plan = Plan::new(project)?;
    let existing = containers(project, &[])?;
    let u = UpArgs {
        detach: true,
        build: false,
        no_build: true,
        scale: Vec::new(),
        no_deps: true,
        force_recreate: false,
        no_recreate: false,
        remove_orphans: false,
        wait: false,
        services: Vec::new(),
    };
    for s in project.services_in_dependency_order()? {
        if services.contains(&s.name) {
            converge(project, &plan, s, &u, &existing)?;
        }
    }
    Ok(())
}

/// The services a project's own-VM containers are labelled with (for
/// `-p NAME` without a file).
pub(super) fn service_names(project: &str) -> Vec<String> {
    let mut names: Vec<String> = vm_fleet::list()
        .iter()
        .filter(|e| e.record.summary.labels.get(spec::label::PROJECT) == Some(&project.into()))
        .map(|e| orch::service_of(&e.record.summary).to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The project's own-VM containers of the named services (every one's
/// when empty), one-offs included, in dependency order then number.
fn containers(project: &Project, services: &[String]) -> Result<Vec<(Entry, ContainerSummary)>> {
    for s in services {
        if !project.services.contains_key(s) {
            return Err(anyhow!("no such service: {s}"));
        }
    }
    let levels = orch::dependency_levels(project)?;
    let mut list: Vec<(Entry, ContainerSummary)> = vm_fleet::list()
        .into_iter()
        .filter(|e| e.record.summary.labels.get(spec::label::PROJECT) == Some(&project.name))
        .map(|e| {
            let s = e.summary();
            (e, s)
        })
        .filter(|(_, c)| services.is_empty() || services.iter().any(|s| s == orch::service_of(c)))
        .collect();
    list.sort_by_key(|(_, c)| {
        (
            levels
                .get(orch::service_of(c))
                .copied()
                .unwrap_or(usize::MAX),
            orch::service_of(c).to_string(),
            orch::number(c),
            c.name.clone(),
        )
    });
    Ok(list)
}

/// The running ones of [`containers`].
fn running(project: &Project, services: &[String]) -> Result<Vec<(Entry, ContainerSummary)>> {
    Ok(containers(project, services)?
        .into_iter()
        .filter(|(e, _)| e.running())
        .collect())
}

/// The services of the stopped containers in `list`.
fn stopped_services(list: &[(Entry, ContainerSummary)]) -> BTreeSet<String> {
    list.iter()
        .filter(|(e, _)| !e.running())
        .map(|(_, c)| orch::service_of(c).to_string())
        .collect()
}

/// The named services and (unless `no_deps`) what they depend on, in
/// dependency order; the active services when none is named.
fn selection<'p>(
    project: &'p Project,
    names: &[String],
    no_deps: bool,
) -> Result<Vec<&'p Service>> {
    for n in names {
        if !project.services.contains_key(n) {
            return Err(anyhow!("no such service: {n}"));
        }
    }
    if names.is_empty() {
        return Ok(project.active_services()?);
    }
    let order = project.services_in_dependency_order()?;
    let mut want: BTreeSet<String> = names.iter().cloned().collect();
    if !no_deps {
        for s in order.iter().rev() {
            if want.contains(&s.name) {
                want.extend(s.dependencies());
            }
        }
    }
    Ok(order
        .into_iter()
        .filter(|s| want.contains(&s.name))
        .collect())
}

/// Runs `f` on each item at once, a thread each; the first error.
fn each_at_once<T: Sync>(items: &[T], f: &(dyn Fn(&T) -> Result<()> + Sync)) -> Result<()> {
    std::thread::scope(|scope| {
        let workers: Vec<_> = items.iter().map(|i| scope.spawn(move || f(i))).collect();
        let mut first = Ok(());
        for w in workers {
            let r = w
                .join()
                .unwrap_or_else(|_| Err(anyhow!("a worker thread panicked")));
            if first.is_ok() {
                first = r;
            }
        }
        first
    })
}

fn up(project: &Project, u: &UpArgs) -> Result<i32> {
    let scale = match parse_scale(&u.scale) {
        Ok(s) => s,
        Err(e) => return Ok(fail(e)),
    };
    for s in scale.keys() {
        if !project.services.contains_key(s) {
            return Ok(fail(format!("no such service: {s}")));
        }
    }
    let services = selection(project, &u.services, u.no_deps)?;
    let plan = Plan::new(project)?;
    for s in &services {
        let want = scale.get(&s.name).copied().unwrap_or_else(|| s.replicas());
        plan::check_service(project, s, want)?;
    }
    // The images, in the host cache (own VMs are given theirs from it).
    let cache = berth_host::image_cache::ImageCache::open()?;
    for s in &services {
        let image = spec::image_name(project, s);
        let present = cache.resolve(&image).is_some();
        let policy = s.pull_policy();
        let build_anyway = u.build || policy == Some(PullPolicy::Build);
        if s.build.is_some() && !u.no_build && (build_anyway || !present) {
            let code = build(project, s, false, false, false)?;
            if code != 0 {
                return Ok(code);
            }
            continue;
        }
        if present && !(s.build.is_none() && policy == Some(PullPolicy::Always)) {
            continue;
        }
        if s.build.is_some() {
            return Ok(fail(format!(
                "service {:?} has neither an image nor a build context specified: image {image:?} is missing and --no-build was given",
                s.name
            )));
        }
        if policy == Some(PullPolicy::Never) {
            return Ok(fail(format!(
                "Error response from daemon: No such image: {image} (service {:?} has pull_policy: never)",
                s.name
            )));
        }
        let platform = spec::run_keys::platform(s)?;
        let code = pull_image(Isolation::Vm, &image, platform.as_deref(), false)?;
        if code != 0 {
            return Ok(code);
        }
    }
    let existing = containers(project, &[])?;
    let orphans: Vec<&ContainerSummary> = existing
        .iter()
        .map(|(_, c)| c)
        .filter(|c| !project.services.contains_key(orch::service_of(c)))
        .collect();
    if !orphans.is_empty() {
        if u.remove_orphans {
            for (e, c) in existing
                .iter()
                .filter(|(_, c)| !project.services.contains_key(orch::service_of(c)))
            {
                remove(e, c, None);
            }
        } else {
            eprintln!(
                "WARN[0000] Found orphan containers ({}) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up.",
                orphans.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
    }
    ensure_volumes(project, &services)?;
    let chosen: BTreeSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
    let levels = orch::dependency_levels(project)?;
    let mut by_level: BTreeMap<usize, Vec<&Service>> = BTreeMap::new();
    for s in &services {
        by_level
            .entry(levels.get(&s.name).copied().unwrap_or(0))
            .or_default()
            .push(s);
    }
    for group in by_level.values() {
        for s in group {
            for (dep, d) in &s.depends_on {
                if chosen.contains(dep.as_str()) {
                    wait_condition(project, dep, d.condition)?;
                }
            }
        }
        // The services of one level boot at once.
        each_at_once(group, &|s| converge(project, &plan, s, u, &existing))?;
    }
    if u.wait {
        for s in &services {
            let cond = if s.healthcheck.is_some() {
                Condition::Healthy
            } else {
                Condition::Started
            };
            wait_condition(project, &s.name, cond)?;
        }
    }
    if u.detach || u.wait {
        return Ok(0);
    }
    // Attached: follow the containers' logs; Ctrl-C stops the project.
    let list = containers(project, &u.services)?;
    let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
    #[cfg(unix)]
    for sig in [libc::SIGINT, libc::SIGTERM] {
        signal_hook::flag::register(sig, flag.clone())?;
    }
    logs(&list, true, false, None, true, Some(flag.clone()))?;
    if flag.load(std::sync::atomic::Ordering::SeqCst) {
        eprintln!("Gracefully stopping... (press Ctrl+C again to force)");
        stop(project, &u.services, None)?;
        return Ok(0);
    }
    for (_, c) in containers(project, &u.services)? {
        if matches!(c.status, ContainerStatus::Exited | ContainerStatus::Dead) {
            println!("{} exited with code {}", c.name, c.exit_code.unwrap_or(0));
        }
    }
    Ok(0)
}

/// One service's container: left running when its config is unchanged,
/// else (re)made in a new VM. A stopped one is made anew too: its
/// writable layer went with its VM.
fn converge(
    project: &Project,
    plan: &Plan,
    s: &Service,
    u: &UpArgs,
    existing: &[(Entry, ContainerSummary)],
) -> Result<()> {
    let cache = berth_host::image_cache::ImageCache::open()?;
    let image = spec::image_name(project, s);
    let commit = cache
        .resolve(&image)
        .ok_or_else(|| anyhow!("No such image: {image}"))?;
    let exposed = berth_host::ports::image_exposed(
        &cache.read_blob(&commit.config_digest).unwrap_or_default(),
    );
    let (mut cfg, hash) = plan::container_config(project, s, plan, 1, &exposed)?;
    let name = cfg.name.clone().unwrap_or_default();
    let mut recreate = false;
    for (e, c) in existing
        .iter()
        .filter(|(_, c)| orch::service_of(c) == s.name)
    {
        let current = orch::number(c) == 1
            && c.labels.get(spec::label::HASH) == Some(&hash)
            && c.status == ContainerStatus::Running;
        if current && (u.no_recreate || !u.force_recreate) {
            note("Container", &c.name, "Running");
            return Ok(());
        }
        if orch::number(c) == 1 {
            recreate = true;
            note("Container", &c.name, "Recreate");
        }
        if e.running() {
            graceful_stop(e, spec::stop_timeout(s));
        }
        e.remove();
    }
    // The named volumes stay held until the keeper's VM directory
    // records them (it has when `launch` returns).
    let _held =
        berth_host::mounts::check_placement(Isolation::Vm, &mut cfg).map_err(|e| anyhow!(e))?;
    if !recreate {
        note("Container", &name, "Creating");
    }
    let launched =
        vm_keeper::launch(&image, cfg, plan.peers()).with_context(|| format!("starting {name}"))?;
    launched.notes.iter().for_each(|n| eprintln!("{n}"));
    launched.started().map_err(|(error, _)| anyhow!(error))?;
    note(
        "Container",
        &name,
        if recreate { "Recreated" } else { "Created" },
    );
    note("Container", &name, "Started");
    Ok(())
}

/// The project's named volumes that `services` mount, made (as host
/// folders, `vm_volumes`) with the compose labels when missing, so that
/// `down -v` finds them.
fn ensure_volumes(project: &Project, services: &[&Service]) -> Result<()> {
    let store = VolumeStore::open();
    let keys: BTreeSet<&str> = services
        .iter()
        .flat_map(|s| s.volumes.iter().filter_map(|m| m.named_volume()))
        .collect();
    for key in keys {
        let name = spec::volume_name(project, key);
        if store.inspect(&name).is_ok() {
            continue;
        }
        let def = project.volumes.get(key).cloned().unwrap_or_default();
        if def.external {
            return Err(anyhow!("external volume {name:?} not found"));
        }
        let mut labels = def.labels.clone();
        labels.insert(spec::label::PROJECT.into(), project.name.clone());
        labels.insert(spec::label::VOLUME.into(), key.to_string());
        labels.insert(
            spec::label::VERSION.into(),
            env!("CARGO_PKG_VERSION").into(),
        );
        note("Volume", &name, "Creating");
        store
            .create(Some(&name), &labels, &def.driver_opts)
            .map_err(|e| anyhow!("{}", e.message))?;
        note("Volume", &name, "Created");
    }
    Ok(())
}

/// `down -v`: the project's named volumes (not the external ones), once
/// no container uses them.
fn remove_volumes(project: &Project) -> Result<()> {
    let store = VolumeStore::open();
    for (key, def) in &project.volumes {
        if def.external {
            continue;
        }
        let name = spec::volume_name(project, key);
        if store.inspect(&name).is_err() {
            continue;
        }
        note("Volume", &name, "Removing");
        store
            .remove(&name, false)
            .map_err(|e| anyhow!("{}", e.message))?;
        note("Volume", &name, "Removed");
    }
    Ok(())
}

/// Blocks until `dep`'s containers meet `cond`.
fn wait_condition(project: &Project, dep: &str, cond: Condition) -> Result<()> {
    if cond == Condition::Started {
        return Ok(());
    }
    let has_check = project
        .services
        .get(dep)
        .is_some_and(|s| s.healthcheck.is_some());
    let mut noted = BTreeSet::new();
    loop {
        let cs = containers(project, &[dep.to_string()])?;
        if cs.is_empty() {
            return Err(anyhow!(
                "dependency failed to start: service {dep:?} has no container"
            ));
        }
        let mut done = true;
        for (_, c) in &cs {
            if noted.insert(c.name.clone()) {
                note("Container", &c.name, "Waiting");
            }
            let exited = matches!(c.status, ContainerStatus::Exited | ContainerStatus::Dead);
            match cond {
                Condition::Healthy if !has_check => {
                    return Err(anyhow!(
                        "dependency failed to start: container {} has no healthcheck configured",
                        c.name
                    ))
                }
                Condition::Healthy => match &c.health {
                    Some(h) if h.status == "healthy" => {}
                    Some(h) if h.status == "unhealthy" => {
                        return Err(anyhow!(
                            "dependency failed to start: container {} is unhealthy",
                            c.name
                        ))
                    }
                    _ if exited => {
                        return Err(anyhow!(
                            "dependency failed to start: container {} exited ({})",
                            c.name,
                            c.exit_code.unwrap_or(-1)
                        ))
                    }
                    _ => done = false,
                },
                Condition::CompletedSuccessfully if exited => {
                    let code = c.exit_code.unwrap_or(-1);
                    if code != 0 {
                        return Err(anyhow!(
                            "service {dep:?} didn't complete successfully: exit {code}"
                        ));
                    }
                }
                _ => done = false,
            }
        }
        if done {
            for (_, c) in &cs {
                let what = if cond == Condition::Healthy {
                    "Healthy"
                } else {
                    "Exited"
                };
                note("Container", &c.name, what);
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Stops a running container through its VM's engine and waits for its
/// keeper to record the exit and power the VM off.
fn graceful_stop(e: &Entry, timeout: Option<i64>) {
    if let Ok(mut c) = e.engine() {
        let _ = c.container_stop(&e.record.id, timeout);
    }
    e.wait_keeper(KEEPER_WAIT);
}

/// Stops (when running) and removes one container with its VM.
fn remove(e: &Entry, c: &ContainerSummary, timeout: Option<i64>) {
    if e.running() {
        note("Container", &c.name, "Stopping");
        graceful_stop(e, timeout);
        note("Container", &c.name, "Stopped");
    }
    note("Container", &c.name, "Removing");
    e.remove();
    note("Container", &c.name, "Removed");
}

/// The containers grouped by dependency level, deepest first (what
/// depends on others goes first), each group at once.
fn reverse_levels(
    project: &Project,
    list: &[(Entry, ContainerSummary)],
    f: &(dyn Fn(&(Entry, ContainerSummary)) -> Result<()> + Sync),
) -> Result<()> {
    let levels = orch::dependency_levels(project)?;
    let mut groups: BTreeMap<std::cmp::Reverse<usize>, Vec<(Entry, ContainerSummary)>> =
        BTreeMap::new();
    for item in list {
        let l = levels
            .get(orch::service_of(&item.1))
            .copied()
            .unwrap_or(usize::MAX);
        groups
            .entry(std::cmp::Reverse(l))
            .or_default()
            .push(item.clone());
    }
    for group in groups.values() {
        each_at_once(group, f)?;
    }
    Ok(())
}

fn stop(project: &Project, services: &[String], timeout: Option<i64>) -> Result<()> {
    let list = running(project, services)?;
    reverse_levels(project, &list, &|(e, c)| {
        let t = timeout.or_else(|| {
            project
                .services
                .get(orch::service_of(c))
                .and_then(spec::stop_timeout)
        });
        note("Container", &c.name, "Stopping");
        graceful_stop(e, t);
        note("Container", &c.name, "Stopped");
        Ok(())
    })
}

/// `down`: every container of the project, dependents first, with its VM
/// (there is no project network or volume to remove).
fn down(project: &Project, timeout: Option<i64>) -> Result<()> {
    let list = containers(project, &[])?;
    reverse_levels(project, &list, &|(e, c)| {
        let t = timeout.or_else(|| {
            project
                .services
                .get(orch::service_of(c))
                .and_then(spec::stop_timeout)
        });
        remove(e, c, t);
        Ok(())
    })
}

/// Prints the containers' logs: a running one's from its VM's engine, a
/// stopped one's as its keeper saved them.
fn logs(
    list: &[(Entry, ContainerSummary)],
    follow: bool,
    timestamps: bool,
    tail: Option<u64>,
    prefix: bool,
    stop: Option<Arc<std::sync::atomic::AtomicBool>>,
) -> Result<()> {
    let summaries: Vec<ContainerSummary> = list.iter().map(|(_, c)| c.clone()).collect();
    let open = |c: &ContainerSummary| -> Result<Box<dyn Read + Send>> {
        let (e, _) = list
            .iter()
            .find(|(_, x)| x.id == c.id)
            .context("a listed container")?;
        if e.running() {
            return Ok(Box::new(e.engine()?.logs(LogsOptions {
                id: e.record.id.clone(),
                follow,
                tail,
                since: None,
                until: None,
                timestamps,
            })?));
        }
        let mut buf = Vec::new();
        for (stderr, d) in e.saved_logs() {
            let kind = if stderr { Kind::Stderr } else { Kind::Stdout };
            mux::write_frame(&mut buf, kind, &d)?;
        }
        Ok(Box::new(std::io::Cursor::new(buf)))
    };
    print_logs(&summaries, &open, prefix, stop)
}
