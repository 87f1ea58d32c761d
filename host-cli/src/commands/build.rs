//! `berth build`: the command line of the builder in [`crate::build`].

use crate::build::{build_and_tag, BuildError, BuildOptions};
use crate::commands::connect;
use crate::commands::pull::Sink;
use crate::placement::Isolation;
use anyhow::Result;
use berth_protocol::reference::Reference;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct BuildArgs {
    /// Name and optionally a tag in the 'name:tag' format
    #[arg(short, long = "tag")]
    tag: Vec<String>,
    /// Name of the Dockerfile (Default is 'PATH/Dockerfile')
    #[arg(short, long)]
    file: Option<PathBuf>,
    /// Set build-time variables
    #[arg(long = "build-arg")]
    build_arg: Vec<String>,
    /// Set metadata for an image
    #[arg(long)]
    label: Vec<String>,
    /// Set the target build stage to build
    #[arg(long)]
    target: Option<String>,
    /// Do not use cache when building the image
    #[arg(long)]
    no_cache: bool,
    /// Always attempt to pull a newer version of the image
    #[arg(long)]
    pull: bool,
    /// Suppress the build output and print image ID on success
    #[arg(short, long)]
    quiet: bool,
    /// Build context directory
    context: String,
}

pub fn run(iso: Isolation, a: &BuildArgs) -> Result<i32> {
    run_to(iso, a, Sink::Stdout)
}

/// [`run`] with the build's output (steps, pulls, the result) on `sink`.
pub fn run_to(iso: Isolation, a: &BuildArgs, sink: Sink) -> Result<i32> {
    match build(iso, a, sink) {
        Ok(code) => Ok(code),
        Err(e) => {
            let code = e.downcast_ref::<BuildError>().map(|b| b.code).unwrap_or(1);
            eprintln!("{e:#}");
            Ok(code)
        }
    }
}

fn build(iso: Isolation, a: &BuildArgs, sink: Sink) -> Result<i32> {
    if !iso.has_engine() {
        anyhow::bail!("berth build runs in the engine: use --isolation shared or native");
    }
    if a.context == "-" || a.context.contains("://") || a.context.starts_with("git@") {
        anyhow::bail!(
            "unable to prepare context: only a local directory can be the build context (got {:?})",
            a.context
        );
    }
    let mut tags = Vec::new();
    for t in &a.tag {
        match Reference::parse(t) {
            Ok(r) if r.digest.is_none() => tags.push(r.to_string()),
            _ => {
                eprintln!(
                    "invalid argument {t:?} for \"-t, --tag\" flag: invalid reference format"
                );
                return Ok(125);
            }
        }
    }
    let mut build_args = BTreeMap::new();
    for kv in &a.build_arg {
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                build_args.insert(k.to_string(), v.to_string());
            }
            None if !kv.is_empty() => {
                // `--build-arg NAME` takes the value from the environment.
                if let Ok(v) = std::env::var(kv) {
                    build_args.insert(kv.clone(), v);
                }
            }
            _ => {
                eprintln!("invalid argument {kv:?} for \"--build-arg\" flag: want NAME=VALUE");
                return Ok(125);
            }
        }
    }
    // `--label k=v`; `--label k` sets k to "" (as docker).
    let labels = a
        .label
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.clone(), String::new()),
        })
        .collect();
    let root = PathBuf::from(&a.context);
    let file = match &a.file {
        Some(f) if f.is_absolute() || f.exists() => f.clone(),
        Some(f) => root.join(f),
        None => root.join("Dockerfile"),
    };
    let connector = || connect(iso);
    let opts = BuildOptions {
        build_args,
        labels,
        target: a.target.clone(),
        no_cache: a.no_cache,
        pull: a.pull,
        quiet: a.quiet,
    };
    let puller = |name: &str| super::pull::pull_for_build(&connector, name, a.quiet, sink);
    let out = (sink != Sink::Stdout).then(|| sink.writer());
    let id = build_and_tag(&connector, &puller, &root, &file, &tags, opts, out)?;
    if a.quiet {
        sink.line(&id);
    } else {
        sink.line(&format!(
            "Successfully built {}",
            &id.trim_start_matches("sha256:")[..12]
        ));
        for t in &tags {
            let fam = Reference::parse(t)
                .map(|r| r.familiar())
                .unwrap_or(t.clone());
            sink.line(&format!("Successfully tagged {fam}"));
        }
    }
    Ok(0)
}
