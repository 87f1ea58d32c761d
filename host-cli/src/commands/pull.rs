//! `berth pull`: fetch an image from a registry into the host cache, then
//! hand it to the agent like `load` does.

use crate::commands::connect;
use crate::placement::Isolation;
use crate::registry::fetch::PullProgress;
use crate::registry::manifest::Platform;
use anyhow::Result;
use berth_protocol::reference::Reference;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

#[derive(clap::Args)]
pub struct PullArgs {
    /// Set platform if server is multi-platform capable (os/arch[/variant])
    #[arg(long)]
    platform: Option<String>,
    /// Suppress verbose output (print only the image id)
    #[arg(short, long)]
    quiet: bool,
    /// Image reference: NAME[:TAG|@DIGEST]
    image: String,
}

/// Where a command's progress lines go: stdout for `berth pull`/`build`;
/// stderr when compose runs them, as docker compose keeps its stdout for
/// the verb's own output (`up -d` prints nothing there).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Sink {
    Stdout,
    Stderr,
}

impl Sink {
    pub fn line(self, text: &str) {
        match self {
            Sink::Stdout => println!("{text}"),
            Sink::Stderr => eprintln!("{text}"),
        }
    }

    /// A writer for streamed output (a build's step output).
    pub fn writer(self) -> Box<dyn std::io::Write> {
        match self {
            Sink::Stdout => Box::new(std::io::stdout()),
            Sink::Stderr => Box::new(std::io::stderr()),
        }
    }
}

/// Progress bars on a terminal; otherwise docker-style summary lines.
struct Reporter {
    bars: Option<(MultiProgress, Mutex<HashMap<String, ProgressBar>>)>,
    lines: bool,
    sink: Sink,
    /// `TAG: Pulling from REPO`, printed once the registry resolved the
    /// reference (a pull that fails before prints only its error).
    header: Option<String>,
}

fn short(d: &str) -> &str {
    &d[7..19]
}

impl Reporter {
    fn new(quiet: bool, sink: Sink, header: Option<String>) -> Reporter {
        let tty = std::io::stderr().is_terminal() && std::io::stdout().is_terminal();
        let bars = (!quiet && tty).then(|| {
            let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            (mp, Mutex::new(HashMap::new()))
        });
        Reporter {
            lines: !quiet && bars.is_none(),
            bars,
            sink,
            header,
        }
    }
}

impl PullProgress for Reporter {
    fn resolved(&self) {
        if let Some(h) = &self.header {
            self.sink.line(h);
        }
    }

    fn start(&self, digest: &str, size: u64, cached: bool) {
        if let Some((mp, map)) = &self.bars {
            let pb = mp.add(ProgressBar::new(size));
            pb.set_style(
                ProgressStyle::with_template("{prefix}: {msg} [{bar:30}] {bytes}/{total_bytes}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            pb.set_prefix(short(digest).to_string());
            if cached {
                pb.set_style(
                    ProgressStyle::with_template("{prefix}: {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                pb.finish_with_message("Already exists");
            } else {
                pb.set_message("Downloading");
            }
            map.lock().unwrap().insert(digest.to_string(), pb);
        } else if self.lines && cached {
            self.sink
                .line(&format!("{}: Already exists", short(digest)));
        }
    }

    fn advance(&self, digest: &str, bytes: u64) {
        if let Some((_, map)) = &self.bars {
            if let Some(pb) = map.lock().unwrap().get(digest) {
                pb.inc(bytes);
            }
        }
    }

    fn done(&self, digest: &str) {
        if let Some((_, map)) = &self.bars {
            if let Some(pb) = map.lock().unwrap().get(digest) {
                pb.finish_with_message("Pull complete");
            }
        } else if self.lines {
            self.sink.line(&format!("{}: Pull complete", short(digest)));
        }
    }
}

pub fn run(iso: Isolation, a: &PullArgs) -> Result<i32> {
    // A bad reference is the client's error; what the registry (or the
    // engine) answered is the daemon's, printed as docker prints it.
    Reference::parse(&a.image)?;
    match run_to(iso, a, Sink::Stdout) {
        Err(e) => {
            eprintln!("Error response from daemon: {e:#}");
            Ok(1)
        }
        ok => ok,
    }
}

/// [`run`] with its output on `sink`.
pub fn run_to(iso: Isolation, a: &PullArgs, sink: Sink) -> Result<i32> {
    let connector = || connect(iso);
    let upload: Option<&dyn Fn() -> Result<crate::engine::Engine>> = if !iso.has_engine() {
        None
    } else {
        Some(&connector)
    };
    pull(a, upload, true, true, sink)
}

/// `FROM`/`COPY --from` of an image that is not in the engine yet.
pub fn pull_for_build(
    connect: &dyn Fn() -> Result<crate::engine::Engine>,
    image: &str,
    quiet: bool,
    sink: Sink,
) -> Result<i32> {
    let a = PullArgs {
        platform: None,
        quiet,
        image: image.to_string(),
    };
    pull(&a, Some(connect), !quiet, true, sink)
}

/// `run`/`create --pull`: the image into the engine (or, without one,
/// only the host cache), progress on stderr (where docker's `run` prints
/// it).
pub fn pull_for_run(
    connect: Option<&dyn Fn() -> Result<crate::engine::Engine>>,
    image: &str,
    platform: Option<String>,
) -> Result<i32> {
    let a = PullArgs {
        platform,
        quiet: false,
        image: image.to_string(),
    };
    pull(&a, connect, true, false, Sink::Stderr)
}

/// Pulls into the host cache and, with `upload`, into the engine;
/// `name_last` ends the report with the reference (`berth pull`'s last
/// line, which `run` does not print).
fn pull(
    a: &PullArgs,
    upload: Option<&dyn Fn() -> Result<crate::engine::Engine>>,
    print: bool,
    name_last: bool,
    sink: Sink,
) -> Result<i32> {
    let r = Reference::parse(&a.image)?;
    let platform = match &a.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let reference = r
        .digest
        .clone()
        .or_else(|| r.tag.clone())
        .unwrap_or_else(|| "latest".into());
    let header = (!a.quiet && print).then(|| format!("{}: Pulling from {}", reference, r.path));
    let reporter = Reporter::new(a.quiet, sink, header);
    let pulled = berth_host::registry::pull::pull(&r, &platform, &reporter, upload)?;
    let (commit, before) = (&pulled.commit, pulled.before);
    if !print {
    } else if a.quiet {
        sink.line(&commit.config_digest);
    } else {
        sink.line(&format!("Digest: {}", pulled.top_digest));
        let name = r.familiar();
        if before.as_deref() == Some(commit.config_digest.as_str()) {
            sink.line(&format!("Status: Image is up to date for {name}"));
        } else {
            sink.line(&format!("Status: Downloaded newer image for {name}"));
        }
        if name_last {
            sink.line(&r.to_string());
        }
    }
    Ok(0)
}
