//! One module per CLI verb (or family of verbs).

pub mod build;
pub mod compare;
pub mod compose;
pub mod container;
pub mod cp;
pub mod df;
pub mod events;
pub mod image;
pub mod images;
pub mod import;
pub mod load;
pub mod login;
pub mod machine;
pub use berth_host::net_settings;
pub mod network;
pub mod ps;
pub mod pull;
pub mod push;
pub mod run;
pub mod run_namespaces;
pub mod run_resources;
pub mod run_values;
pub mod save;
pub mod search;
pub mod system;
pub mod version;
pub mod vm_keeper;
pub mod vm_verbs;
pub mod volume;

use crate::engine::Engine;
use crate::placement::Isolation;
use crate::{Cli, Command, ContainerCommand};
use anyhow::Result;

/// Opens a control connection for the selected placement.
pub fn connect(iso: Isolation) -> Result<Engine> {
    iso.connect()
}

/// Runs the command; returns the process exit code.
pub fn dispatch(cli: &Cli) -> Result<i32> {
    let iso = cli.isolation;
    match &cli.command {
        Command::Load(a) => load::run(iso, a),
        Command::Import(a) => import::run(iso, a),
        Command::Images(a) => images::list(iso, a),
        Command::Tag { source, target } => {
            connect(iso)?.image_tag(source, target)?;
            Ok(0)
        }
        Command::Rmi { force, images } => image::rmi(iso, images, *force),
        Command::Compare(a) => compare::run(a),
        Command::Run(a) => run::run(iso, a),
        Command::VmKeeper => vm_keeper::keeper(),
        Command::Ps(a) => ps::run(iso, a),
        Command::Rm {
            force,
            volumes,
            containers,
        } => {
            if iso.own_vm() {
                return container::rm_own_vm(containers, *force);
            }
            let mut c = connect(iso)?;
            let mut code = 0;
            for k in containers {
                match c.container_remove(k, *force, *volumes) {
                    Ok(_) => println!("{k}"),
                    // docker's CLI reports an unknown container itself;
                    // with -f it says so and goes on (exit 0), as docker's
                    // `rm -f` of a container that is already gone.
                    Err(e) if e.kind() == Some(berth_protocol::ErrorKind::NotFound) => {
                        eprintln!("Error: {e}");
                        if !*force {
                            code = 1;
                        }
                    }
                    Err(e) => {
                        eprintln!("Error response from daemon: {e}");
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        Command::Inspect { names, format } => ps::inspect(iso, names, format.as_deref()),
        Command::Logs(a) => container::logs(iso, a),
        Command::Events(a) => events::events(iso, a),
        Command::Exec(a) => container::exec(iso, a),
        Command::Start(a) => container::start(iso, a),
        Command::Stop(a) => container::stop(iso, a),
        Command::Restart(a) => container::restart(iso, a),
        Command::Kill(a) => container::kill(iso, a),
        Command::Wait { containers } => container::wait(iso, containers),
        Command::Rename {
            container,
            new_name,
        } => container::rename(iso, container, new_name),
        Command::Pause { containers } => {
            container::simple(iso, containers, &|c, id| c.container_pause(id))
        }
        Command::Unpause { containers } => {
            container::simple(iso, containers, &|c, id| c.container_unpause(id))
        }
        Command::Top { container } => container::top(iso, container),
        Command::Diff { container } => container::diff(iso, container),
        Command::Stats(a) => container::stats(iso, a),
        Command::Update(a) => container::update(iso, a),
        Command::Port(a) => container::port(iso, a),
        Command::Build(a) => build::run(iso, a),
        Command::Compose(a) => compose::run(iso, a),
        Command::Commit(a) => container::commit(iso, a),
        Command::Cp(a) => cp::run(iso, a),
        Command::Export(a) => cp::export(iso, a),
        Command::Attach(a) => container::attach_cmd(iso, a),
        Command::Container(ContainerCommand::Prune(a)) => container::prune(iso, a),
        Command::Container(ContainerCommand::Ls(a)) => ps::run(iso, a),
        Command::Container(ContainerCommand::Port(a)) => container::port(iso, a),
        Command::Machine(m) => machine::run(m),
        Command::Pull(a) => pull::run(iso, a),
        Command::Push(a) => push::run(iso, a),
        Command::Search(a) => search::run(a),
        Command::Login(a) => login::login(a),
        Command::Logout(a) => login::logout(a),
        Command::Save(a) => save::run(iso, a),
        Command::History(a) => image::history(iso, a),
        Command::Image(c) => image::run(iso, c),
        Command::Volume(c) => volume::run(iso, c),
        Command::Network(c) => network::run(iso, c),
        Command::System(c) => system::run(iso, c),
        Command::DockerEnv => system::docker_env(),
        Command::Completion { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "berth", &mut script);
            // A reader that stops early (`| head`) is not an error.
            use std::io::Write;
            match std::io::stdout().lock().write_all(&script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(0),
            }
        }
        Command::Version(a) => version::run(iso, a),
        Command::Create(a) => run::create(iso, a),
        Command::Info(a) => system::info(iso, a),
    }
}
