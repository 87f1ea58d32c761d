//! `berth-agent`: berth's container engine.
//!
//! ```text
//! berth-agent serve --root DIR --socket PATH   engine daemon on a Unix socket (native placement)
//! berth-agent shim --root DIR --id ID [--wait-attach]   per-container monitor (internal)
//! berth-agent exec-shim --root DIR --id ID --exec EXEC [--wait-attach]   per-exec monitor (internal)
//! berth-agent health-probe --root DIR --id ID   one healthcheck probe (internal)
//! ```

#[cfg(target_os = "linux")]
use berth_agent::engine;
#[cfg(target_os = "linux")]
use std::path::PathBuf;

#[cfg(target_os = "linux")]
fn usage() -> ! {
    eprintln!("usage: berth-agent serve --root DIR --socket PATH\n       berth-agent shim --root DIR --id ID [--wait-attach]\n       berth-agent image-disk-tree --root EMPTY-DIR --blobs DIR < image-commit.json\n       berth-agent --version");
    std::process::exit(2);
}

#[cfg(target_os = "linux")]
struct Args {
    cmd: String,
    root: Option<PathBuf>,
    socket: Option<PathBuf>,
    id: Option<String>,
    exec: Option<String>,
    blobs: Option<PathBuf>,
    wait_attach: bool,
}

#[cfg(target_os = "linux")]
fn parse_args() -> Args {
    let mut it = std::env::args().skip(1);
    let cmd = it.next().unwrap_or_else(|| usage());
    let mut a = Args {
        cmd,
        root: None,
        socket: None,
        id: None,
        exec: None,
        blobs: None,
        wait_attach: false,
    };
    while let Some(k) = it.next() {
        match k.as_str() {
            "--root" => a.root = Some(it.next().unwrap_or_else(|| usage()).into()),
            "--socket" => a.socket = Some(it.next().unwrap_or_else(|| usage()).into()),
            "--id" => a.id = Some(it.next().unwrap_or_else(|| usage())),
            "--exec" => a.exec = Some(it.next().unwrap_or_else(|| usage())),
            "--blobs" => a.blobs = Some(it.next().unwrap_or_else(|| usage()).into()),
            "--wait-attach" => a.wait_attach = true,
            _ => usage(),
        }
    }
    a
}

#[cfg(target_os = "linux")]
fn main() {
    // As `--init` in a container the binary is PID 1 of that container.
    let argv0 = std::env::args().next().unwrap_or_default();
    if argv0.ends_with("docker-init") {
        let args: Vec<String> = std::env::args().skip(1).collect();
        engine::mini_init::run(&args);
    }
    if std::process::id() == 1 {
        berth_agent::guest::run_as_init();
    }
    // After the docker-init case: there the environment is the container's.
    berth_log::init(None);
    let args = parse_args();
    match args.cmd.as_str() {
        "--version" | "version" => println!("berth-agent {}", env!("CARGO_PKG_VERSION")),
        "serve" => berth_agent::serve(
            args.root.unwrap_or_else(|| usage()),
            args.socket.unwrap_or_else(|| usage()),
        ),
        "shim" => {
            let code = engine::shim::run(
                &args.root.unwrap_or_else(|| usage()),
                &args.id.unwrap_or_else(|| usage()),
                args.wait_attach,
            );
            std::process::exit(code);
        }
        "exec-shim" => {
            let code = engine::exec::run_shim(
                &args.root.unwrap_or_else(|| usage()),
                &args.id.unwrap_or_else(|| usage()),
                &args.exec.unwrap_or_else(|| usage()),
                args.wait_attach,
            );
            std::process::exit(code);
        }
        "health-probe" => std::process::exit(engine::health::run_probe(
            &args.root.unwrap_or_else(|| usage()),
            &args.id.unwrap_or_else(|| usage()),
        )),
        "image-disk-tree" => std::process::exit(berth_agent::image_disk_tree(
            &args.root.unwrap_or_else(|| usage()),
            &args.blobs.unwrap_or_else(|| usage()),
        )),
        _ => usage(),
    }
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!(
        "berth-agent {} runs only on Linux (inside berth's guest VM, or natively on a Linux host)",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(1);
}
