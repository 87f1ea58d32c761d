//! `berth push`: upload an image from the host cache to a registry
//! ([`berth_host::transfer::push`]).

use crate::commands::pull::Sink;
use crate::placement::Isolation;
use anyhow::Result;
use berth_host::registry::upload::BlobOutcome;
use berth_host::transfer::push::{push, PushEvent};

#[derive(clap::Args)]
pub struct PushArgs {
    /// Suppress verbose output
    #[arg(short, long)]
    quiet: bool,
    /// Image reference: NAME[:TAG]
    image: String,
}

pub fn run(iso: Isolation, a: &PushArgs) -> Result<i32> {
    run_to(iso, &a.image, a.quiet, Some(Sink::Stdout))
}

/// Pushes `image`, its progress and result lines to `sink` (`compose
/// push` prints them on stderr, as its other image verbs do; with `-q`,
/// nothing: no sink).
pub fn run_to(iso: Isolation, image: &str, quiet: bool, sink: Option<Sink>) -> Result<i32> {
    let line = |text: &str| {
        if let Some(s) = sink {
            s.line(text)
        }
    };
    let pushed = push(iso, image, None, &|ev| match ev {
        _ if quiet => {}
        PushEvent::Start { repository } => {
            line(&format!("The push refers to repository [{repository}]"))
        }
        PushEvent::Layer { id, outcome } => match outcome {
            BlobOutcome::AlreadyExists => line(&format!("{id}: Layer already exists")),
            BlobOutcome::Mounted(from) => line(&format!("{id}: Mounted from {from}")),
            BlobOutcome::Pushed => line(&format!("{id}: Pushed")),
        },
    })?;
    if quiet {
        line(&pushed.name);
    } else {
        line(&format!(
            "{}: digest: {} size: {}",
            pushed.tag, pushed.digest, pushed.size
        ));
    }
    Ok(0)
}
