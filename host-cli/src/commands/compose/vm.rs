//! `berth compose --isolation vm`: each service container in a microVM
//! of its own, started by a detached keeper (`vm_keeper`), found again
//! through the keepers' records (`vm_fleet`) by the compose labels they
//! carry. The addresses that give the services each other's names are
//! host-core's `compose::vm` plan. `up`, `down`, `ps`, `logs`, `stop` and
//! `rm` work; the other verbs say they do not yet.

use super::{
    confirm, fail, parse_scale, parse_tail, print_logs, print_ps, pull_image, UpArgs, Verb,
};
use crate::commands::vm_keeper;
use crate::placement::Isolation;
use anyhow::{anyhow, Context, Result};
use berth_compose::{Condition, Project, Service};
use berth_host::compose::vm::{self as plan, Plan};
use berth_host::compose::{self as orch, spec, Progress};
use berth_host::vm_fleet::{self, Entry};
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
        Verb::Down { timeout, rmi, .. } => {
            if rmi.is_some() {
                return Ok(fail(
                    "compose down --rmi is not supported with --isolation vm yet",
                ));
            }
            down(project, *timeout)?;
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
            if list.is_empty() {
                eprintln!("No stopped containers");
                return Ok(0);
            }
            if !force {
                let names: Vec<&str> = list.iter().map(|(_, c)| c.name.as_str()).collect();
                eprintln!("Going to remove {}", names.join(", "));
                if !confirm()? {
                    return Ok(0);
                }
            }
            for (e, c) in &list {
                remove(e, c, None);
            }
            Ok(0)
        }
        _ => Ok(fail(
            "this compose command is not supported with --isolation vm yet (up, down, ps, logs, stop and rm are)",
        )),
    }
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
        if cache.resolve(&image).is_some() && !u.build {
            continue;
        }
        if s.build.is_some() {
            return Ok(fail(format!(
                "service {:?}: image {image:?} is not in the host cache and --isolation vm cannot build it (berth build runs in an engine): build it with --isolation native or shared, then `berth save {image} | berth --isolation vm load`",
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
    let list: Vec<(Entry, ContainerSummary)> = containers(project, services)?
        .into_iter()
        .filter(|(e, _)| e.running())
        .collect();
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
