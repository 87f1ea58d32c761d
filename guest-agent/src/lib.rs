//! berth's container engine as a library; the `berth-agent` binary
//! (`src/main.rs`) parses its arguments and calls in here.
//!
//! Layers, each using only those below it: transports ([`guest`], PID 1 of
//! the guest on vsock or serial; [`vsock`]; [`serve`], a Unix socket for the
//! native placement), then [`server`] (the wire protocol), then [`engine`]
//! (containers, images, networks, volumes), then [`layout`].

#[cfg(target_os = "linux")]
pub mod children;
#[cfg(target_os = "linux")]
pub mod conn;
#[cfg(target_os = "linux")]
pub mod engine;
#[cfg(target_os = "linux")]
pub mod events;
#[cfg(target_os = "linux")]
pub mod guest;
#[cfg(target_os = "linux")]
pub mod kernel_counters;
#[cfg(target_os = "linux")]
pub mod layout;
#[cfg(target_os = "linux")]
pub mod machine;
#[cfg(target_os = "linux")]
pub mod memory;
#[cfg(target_os = "linux")]
pub mod quirks;
#[cfg(target_os = "linux")]
pub mod server;
#[cfg(target_os = "linux")]
pub mod share_events;
#[cfg(target_os = "linux")]
pub mod shares;
#[cfg(target_os = "linux")]
pub mod splice;
#[cfg(target_os = "linux")]
pub mod store;
#[cfg(target_os = "linux")]
pub mod vsock;
#[cfg(target_os = "linux")]
pub mod workers;

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
/// `berth-agent serve`: the engine daemon on a Unix socket (native
/// placement); never returns.
pub fn serve(root: PathBuf, socket: PathBuf) -> ! {
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
    children::spawn_reaper();
    let _ = std::fs::write(root.join("agent.pid"), format!("{}\n", std::process::id()));
    log::info!(
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

/// `image-disk-tree`: the host's half of an image disk (see
/// `store::image_disk`): unpacks the image named by the `ImageCommit` JSON
/// on stdin into a tree for `mkfs.ext4 -d`.
#[cfg(target_os = "linux")]
pub fn image_disk_tree(root: &std::path::Path, blobs: &std::path::Path) -> i32 {
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
