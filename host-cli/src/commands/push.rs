//! `berth push`: upload an image from the host cache to a registry
//! ([`berth_host::transfer::push`]).

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
    let quiet = a.quiet;
    let pushed = push(iso, &a.image, None, &|ev| match ev {
        _ if quiet => {}
        PushEvent::Start { repository } => {
            println!("The push refers to repository [{repository}]")
        }
        PushEvent::Layer { id, outcome } => match outcome {
            BlobOutcome::AlreadyExists => println!("{id}: Layer already exists"),
            BlobOutcome::Mounted(from) => println!("{id}: Mounted from {from}"),
            BlobOutcome::Pushed => println!("{id}: Pushed"),
        },
    })?;
    if quiet {
        println!("{}", pushed.name);
    } else {
        println!(
            "{}: digest: {} size: {}",
            pushed.tag, pushed.digest, pushed.size
        );
    }
    Ok(0)
}
