//! `berth system service` (the Docker Engine API socket) and
//! `berth docker-env` (how to point docker at it).

use crate::placement::Isolation;
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum SystemCommand {
    /// Serve the Docker Engine API on a Unix socket, in the foreground
    Service(ServiceArgs),
}

#[derive(clap::Args)]
pub struct ServiceArgs {
    /// The socket to listen on (default: $BERTH_HOME/docker.sock)
    #[arg(long)]
    socket: Option<PathBuf>,
}

pub fn run(iso: Isolation, c: &SystemCommand) -> Result<i32> {
    match c {
        #[cfg(unix)]
        SystemCommand::Service(a) => {
            let socket = a.socket.clone().unwrap_or_else(berth_api::default_socket);
            eprintln!(
                "berth: serving the Docker Engine API at unix://{} ({} placement)",
                socket.display(),
                format!("{iso:?}").to_lowercase()
            );
            berth_api::serve(&berth_api::ServeOptions {
                socket,
                isolation: iso,
            })?;
            Ok(0)
        }
        #[cfg(not(unix))]
        SystemCommand::Service(a) => {
            let _ = (iso, &a.socket);
            anyhow::bail!("the Docker Engine API socket needs a Unix host")
        }
    }
}

/// Prints the `DOCKER_HOST` to export for the default socket.
pub fn docker_env() -> Result<i32> {
    let socket = berth_host::paths::state_dir().join("docker.sock");
    println!("export DOCKER_HOST=unix://{}", socket.display());
    println!("# serve it with: berth system service");
    println!(
        "# or as a docker context: docker context create berth --docker host=unix://{}",
        socket.display()
    );
    Ok(0)
}
