//! `berth`: Docker-compatible containers, run natively or in microVMs.

mod argv;
mod commands;
mod fmt;
mod net_flags;
mod out_file;

// The host library's modules, under the names the commands use.
use berth_host::{
    build, client, engine, image_cache, machine, mounts, placement, platform, ports, registry,
    shares, sig_proxy, tty,
};

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use placement::Isolation;

/// Exit code docker uses when the engine itself failed.
pub const EXIT_ENGINE: i32 = 125;

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "Docker-compatible containers in lightweight microVMs"
)]
pub struct Cli {
    /// Where containers run: native (this Linux host), shared (one machine VM), vm (own microVM each)
    #[arg(
        long,
        global = true,
        env = "BERTH_ISOLATION",
        value_enum,
        default_value = "shared"
    )]
    pub isolation: Isolation,
    /// Diagnostics to show on stderr: error, warn (the default), info, debug or trace (overrides BERTH_LOG)
    #[arg(long, global = true, value_name = "LEVEL", value_parser = berth_log::parse_level)]
    pub log_level: Option<berth_log::LevelFilter>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Load images from a docker-save or OCI archive
    Load(commands::load::LoadArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(commands::import::ImportArgs),
    /// List images
    Images(commands::images::ImagesArgs),
    /// Create a new tag that refers to an image
    Tag { source: String, target: String },
    /// Remove one or more images
    Rmi {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Measure the same image natively, in the machine VM and in an own VM, side by side
    Compare(Box<commands::compare::CompareArgs>),
    /// Run a command in a new container
    Run(Box<commands::run::RunArgs>),
    /// Keeps one detached `--isolation vm` container (started by `run -d`)
    #[command(name = "vm-keeper", hide = true)]
    VmKeeper,
    /// Create a new container
    Create(Box<commands::run::CreateArgs>),
    /// List containers
    Ps(commands::ps::PsArgs),
    /// Remove one or more containers
    Rm {
        /// Force the removal of a running container (uses SIGKILL)
        #[arg(short, long)]
        force: bool,
        /// Remove anonymous volumes associated with the container
        #[arg(short, long)]
        volumes: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Return low-level information on containers or images
    Inspect {
        /// Format output using a custom template ("json" for JSON)
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Fetch the logs of a container
    Logs(commands::container::LogsArgs),
    /// Get real time events from the server
    Events(commands::events::EventsArgs),
    /// Execute a command in a running container
    Exec(commands::container::ExecArgs),
    /// Start one or more stopped containers
    Start(commands::container::StartArgs),
    /// Stop one or more running containers
    Stop(commands::container::StopArgs),
    /// Restart one or more containers
    Restart(commands::container::StopArgs),
    /// Kill one or more running containers
    Kill(commands::container::KillArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Rename a container
    Rename { container: String, new_name: String },
    /// Pause all processes within one or more containers
    Pause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Unpause all processes within one or more containers
    Unpause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Display the running processes of a container
    Top { container: String },
    /// Inspect changes to files or directories on a container's filesystem
    Diff { container: String },
    /// Display a live stream of container(s) resource usage statistics
    Stats(commands::container::StatsArgs),
    /// Update configuration of one or more containers
    Update(commands::container::UpdateArgs),
    /// List port mappings or a specific mapping for the container
    Port(commands::container::PortArgs),
    /// Build an image from a Dockerfile
    Build(commands::build::BuildArgs),
    /// Define and run multi-container applications
    Compose(Box<commands::compose::ComposeArgs>),
    /// Create a new image from a container's changes
    Commit(commands::container::CommitArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(commands::cp::CpArgs),
    /// Export a container's filesystem as a tar archive
    Export(commands::cp::ExportArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(commands::container::AttachArgs),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Show agent and placement information (docker's `info` with --format)
    Info(commands::system::InfoArgs),
    /// Show the berth version information (client and engine)
    Version(commands::version::VersionArgs),
    /// Manage the machine VM that hosts shared-placement containers
    #[command(subcommand)]
    Machine(commands::machine::MachineCommand),
    /// Download an image from a registry
    Pull(commands::pull::PullArgs),
    /// Upload an image to a registry
    Push(commands::push::PushArgs),
    /// Search a registry's repositories (HOST[:PORT]/TERM), or Docker Hub
    Search(commands::search::SearchArgs),
    /// Log in to a registry
    Login(commands::login::LoginArgs),
    /// Log out from a registry
    Logout(commands::login::LogoutArgs),
    /// Save images to a tar archive (streamed to STDOUT by default)
    Save(commands::save::SaveArgs),
    /// Show the history of an image
    History(commands::image::HistoryArgs),
    /// Manage images
    #[command(subcommand)]
    Image(commands::image::ImageCommand),
    /// Manage volumes
    #[command(subcommand)]
    Volume(commands::volume::VolumeCommand),
    /// Manage networks
    #[command(subcommand)]
    Network(commands::network::NetworkCommand),
    /// Serve the Docker Engine API (`system service`)
    #[command(subcommand)]
    System(commands::system::SystemCommand),
    /// Print the DOCKER_HOST that points docker at berth's API socket
    DockerEnv,
    /// Generate the autocompletion script for the specified shell (bash, zsh, fish, powershell, elvish)
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
pub enum ContainerCommand {
    /// Remove all stopped containers
    Prune(commands::container::PruneArgs),
    /// List containers
    #[command(alias = "ps", alias = "list")]
    Ls(commands::ps::PsArgs),
    /// List port mappings or a specific mapping for the container
    Port(commands::container::PortArgs),
}

fn main() {
    let mut definition = Cli::command();
    definition.build();
    let args = argv::stop_at_operand(&definition, argv::alias_args(std::env::args_os().collect()));
    let parsed = definition
        .try_get_matches_from_mut(args)
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            // docker's exit codes: 1 for a missing argument or an unknown
            // command, 125 for a bad flag or value, 0 for help.
            use clap::error::ErrorKind as K;
            let code = match e.kind() {
                K::DisplayHelp
                | K::DisplayVersion
                | K::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                K::MissingRequiredArgument | K::InvalidSubcommand | K::MissingSubcommand => 1,
                _ => EXIT_ENGINE,
            };
            match docker_style(&e) {
                Some(text) => eprintln!("{text}"),
                None => {
                    let _ = e.print();
                }
            }
            std::process::exit(code);
        }
    };
    let level = berth_log::init(cli.log_level);
    // The programs berth starts (the VMM, a native agent; the machine VM's
    // agent through its kernel command line) log at the same level.
    if berth_log::requested() {
        berth_log::export(level);
    }
    log::debug!(
        "berth {} (log level {}, isolation {:?})",
        env!("CARGO_PKG_VERSION"),
        berth_log::level_name(level),
        cli.isolation
    );
    let code = match commands::dispatch(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

/// The verb path typed (`run`, `container ls`), global flags skipped.
fn verb_path() -> String {
    let mut words = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--isolation" || a == "--log-level" {
            args.next();
            continue;
        }
        if a.starts_with('-') {
            continue;
        }
        words.push(a);
        if !matches!(
            words[0].as_str(),
            "container" | "image" | "machine" | "network" | "system" | "volume"
        ) || words.len() == 2
        {
            break;
        }
    }
    words.join(" ")
}

/// docker's wording for the usage errors a script is likely to match:
/// an unknown flag, a missing argument. Others keep clap's text.
fn docker_style(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind as K};
    let verb = verb_path();
    if verb.is_empty() {
        return None;
    }
    let hint = format!("See 'berth {verb} --help'.");
    match e.kind() {
        K::UnknownArgument => {
            let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
                return None;
            };
            let arg = arg.split('=').next().unwrap_or(arg);
            if arg.starts_with("--") {
                Some(format!("unknown flag: {arg}\n{hint}"))
            } else {
                let c = arg.trim_start_matches('-').chars().next()?;
                Some(format!("unknown shorthand flag: '{c}' in {arg}\n{hint}"))
            }
        }
        K::MissingRequiredArgument => Some(format!(
            "\"berth {verb}\" requires at least 1 argument.\n{hint}"
        )),
        _ => None,
    }
}
