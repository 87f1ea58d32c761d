//! `berth-agent`: berth's container engine.
//!
//! ```text
//! berth-agent serve --root DIR --socket PATH   engine daemon on a Unix socket (native placement)
//! berth-agent shim --root DIR --id ID [--wait-attach]   per-container monitor (internal)
//! berth-agent exec-shim --root DIR --id ID --exec EXEC [--wait-attach]   per-exec monitor (internal)
//! berth-agent health-probe --root DIR --id ID   one healthcheck probe (internal)
//! ```

#[cfg(target_os = "linux")]
mod engine;
#[cfg(target_os = "linux")]
mod guest;
#[cfg(target_os = "linux")]
mod layout;
#[cfg(target_os = "linux")]
mod memory;
#[cfg(target_os = "linux")]
mod quirks;
#[cfg(target_os = "linux")]
mod server;
#[cfg(target_os = "linux")]
mod share_events;
#[cfg(target_os = "linux")]
mod store;
#[cfg(target_os = "linux")]
mod vsock;

#[cfg(target_os = "linux")]
use engine::Engine;
#[cfg(target_os = "linux")]
use layout::Layout;
#[cfg(target_os = "linux")]
use std::os::unix::net::UnixListener;
#[cfg(target_os = "linux")]
use std::path::PathBuf;
#[cfg(target_os = "linux")]
use std::sync::Arc;

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

/// Children that some thread waits for itself (see [`wait_owned`]): the
/// reaper leaves them alone.
#[cfg(target_os = "linux")]
static OWNED_CHILDREN: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

#[cfg(target_os = "linux")]
/// Reaps exited children (shims) so none stays a zombie, except those a
/// thread waits for itself ([`wait_owned`]).
pub(crate) fn spawn_reaper() {
    use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag};
    std::thread::spawn(|| loop {
        // Look without reaping, then reap only what nobody else awaits.
        match waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Err(nix::errno::Errno::ECHILD) => {
                // No children at all: nothing can need reaping before one
                // is spawned. Each wake-up is guest-kernel work (emulated
                // on kvm_pvm hosts), so an idle agent looks rarely; a child
                // that exits meanwhile stays a zombie that long (liveness
                // checks treat zombies as gone).
                std::thread::sleep(std::time::Duration::from_secs(5));
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            Ok(st) => {
                let Some(pid) = st.pid() else {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                };
                let owned = OWNED_CHILDREN
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(&pid.as_raw());
                if owned {
                    // Its owner reaps it in a moment.
                    std::thread::sleep(std::time::Duration::from_millis(5));
                } else {
                    let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
                }
            }
        }
    });
}

/// Runs `cmd` to completion with its output captured, safe from the
/// reaper thread (which would otherwise take its exit status).
#[cfg(target_os = "linux")]
pub(crate) fn wait_owned(
    mut cmd: std::process::Command,
    stdin: Option<&[u8]>,
) -> std::io::Result<std::process::Output> {
    use std::io::Write;
    let mut list = OWNED_CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
    // Spawned under the lock: the reaper cannot look at the new child
    // before it is on the list.
    let mut child = cmd.spawn()?;
    let pid = child.id() as i32;
    list.push(pid);
    drop(list);
    let result = (|| {
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input)?;
        }
        child.wait_with_output()
    })();
    OWNED_CHILDREN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|p| *p != pid);
    result
}

#[cfg(target_os = "linux")]
fn lock_root(root: &std::path::Path) -> std::fs::File {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join("agent.lock"))
        .unwrap_or_else(|e| {
            eprintln!("berth-agent: {}: {e}", root.display());
            std::process::exit(1)
        });
    // A predecessor that was just killed may still be tearing down its
    // threads; wait a little for its lock before declaring a conflict.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        // SAFETY: flock on a descriptor we own; the lock lives as long as `f`.
        let rc = unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&f),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        };
        if rc == 0 {
            return f;
        }
        if std::time::Instant::now() >= deadline {
            eprintln!(
                "berth-agent: another agent is already serving {}",
                root.display()
            );
            std::process::exit(1);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[cfg(target_os = "linux")]
fn serve(root: PathBuf, socket: PathBuf) -> ! {
    let layout = Layout::new(&root);
    if let Err(e) = std::fs::create_dir_all(&root) {
        eprintln!("berth-agent: {}: {e}", root.display());
        std::process::exit(1);
    }
    let _lock = lock_root(&root);
    if let Err(e) = layout.prepare() {
        eprintln!("berth-agent: preparing {}: {e}", root.display());
        std::process::exit(1);
    }
    let engine = Arc::new(Engine::open(layout));
    engine::restart::spawn(engine.clone());
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).unwrap_or_else(|e| {
        eprintln!("berth-agent: {}: {e}", socket.display());
        std::process::exit(1)
    });
    spawn_reaper();
    let _ = std::fs::write(root.join("agent.pid"), format!("{}\n", std::process::id()));
    eprintln!(
        "berth-agent {} serving {} on {}",
        env!("CARGO_PKG_VERSION"),
        root.display(),
        socket.display()
    );
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let engine = engine.clone();
        std::thread::spawn(move || server::serve_connection(engine, Box::new(conn)));
    }
    std::process::exit(0)
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
        guest::run_as_init();
    }
    let args = parse_args();
    match args.cmd.as_str() {
        "--version" | "version" => println!("berth-agent {}", env!("CARGO_PKG_VERSION")),
        "serve" => serve(
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
        "image-disk-tree" => std::process::exit(image_disk_tree(
            &args.root.unwrap_or_else(|| usage()),
            &args.blobs.unwrap_or_else(|| usage()),
        )),
        _ => usage(),
    }
}

/// `image-disk-tree`: the host's half of an image disk (see
/// `store::image_disk`): unpacks the image named by the `ImageCommit` JSON
/// on stdin into a tree for `mkfs.ext4 -d`.
#[cfg(target_os = "linux")]
fn image_disk_tree(root: &std::path::Path, blobs: &std::path::Path) -> i32 {
    use std::io::Read;
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().take(1 << 20).read_to_end(&mut input) {
        eprintln!("berth-agent: reading the image commit: {e}");
        return 2;
    }
    let commit: berth_protocol::ImageCommit = match serde_json::from_slice(&input) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth-agent: invalid image commit on stdin: {e}");
            return 2;
        }
    };
    match store::image_disk::build_tree(root, blobs, &commit) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("berth-agent: {e}");
            1
        }
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
