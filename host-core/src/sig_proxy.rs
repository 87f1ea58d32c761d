//! `--sig-proxy`: signals the attached CLI receives go to the container,
//! as docker's CLI does for `run`, `start -a` and `attach` without a tty.
//!
//! A terminal's Ctrl-C, a CI job's timeout or a `kill` of the CLI then
//! reach the container's process instead of ending the CLI and leaving
//! the container (and, with `--rm`, its removal) behind. SIGKILL cannot
//! be caught, so `kill -9` of the CLI still orphans the container, as
//! with docker.

use crate::engine::Engine;

/// Host signals that are forwarded, with their number in the Linux guest.
/// docker forwards every signal but SIGCHLD, SIGPIPE and SIGURG; the
/// synchronous faults (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGABRT)
/// are the CLI's own and SIGKILL/SIGSTOP cannot be caught.
#[cfg(unix)]
fn forwarded() -> Vec<(i32, i32)> {
    use crate::platform::linux_signals as g;
    vec![
        (libc::SIGHUP, g::SIGHUP),
        (libc::SIGINT, g::SIGINT),
        (libc::SIGQUIT, g::SIGQUIT),
        (libc::SIGUSR1, g::SIGUSR1),
        (libc::SIGUSR2, g::SIGUSR2),
        (libc::SIGALRM, g::SIGALRM),
        (libc::SIGTERM, g::SIGTERM),
        (libc::SIGCONT, g::SIGCONT),
        (libc::SIGTSTP, g::SIGTSTP),
        (libc::SIGTTIN, g::SIGTTIN),
        (libc::SIGTTOU, g::SIGTTOU),
        (libc::SIGXCPU, g::SIGXCPU),
        (libc::SIGXFSZ, g::SIGXFSZ),
        (libc::SIGVTALRM, g::SIGVTALRM),
        (libc::SIGPROF, g::SIGPROF),
        (libc::SIGWINCH, g::SIGWINCH),
        (libc::SIGIO, g::SIGIO),
    ]
}

/// Starts forwarding this process's signals to container `id` over `ctl`
/// (a connection of its own: the attach stream is busy). Lasts until the
/// process exits. Returns false where signals cannot be caught (Windows,
/// or a failed handler install, which is printed).
#[cfg(unix)]
pub fn forward(mut ctl: Engine, id: String) -> bool {
    let table = forwarded();
    let host: Vec<i32> = table.iter().map(|(h, _)| *h).collect();
    let mut signals = match signal_hook::iterator::Signals::new(&host) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("berth: warning: cannot forward signals to the container: {e}");
            return false;
        }
    };
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if let Some((_, guest)) = table.iter().find(|(h, _)| *h == sig) {
                // As docker: a failed kill (the container just exited, or
                // was never started) is not the user's error.
                let _ = ctl.container_kill(&id, *guest);
            }
        }
    });
    true
}

#[cfg(not(unix))]
pub fn forward(_ctl: Engine, _id: String) -> bool {
    false
}

#[cfg(all(test, unix))]
mod tests {
    #[test]
    fn no_uncatchable_or_fault_signal_is_forwarded() {
        for (h, _) in super::forwarded() {
            assert!(!signal_hook::consts::FORBIDDEN.contains(&h), "{h}");
            assert!(![libc::SIGCHLD, libc::SIGPIPE, libc::SIGURG].contains(&h));
        }
    }
}
