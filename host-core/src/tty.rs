//! Terminal handling for `-t`: raw mode and window size.
//!
//! Unix only for now: on Windows `-t` runs without raw mode and without a
//! window size (console-mode support is still to be written).

#[cfg(unix)]
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};
#[cfg(unix)]
use std::os::fd::AsFd;

/// Puts stdin in raw mode until dropped.
pub struct RawMode {
    #[cfg(unix)]
    saved: Termios,
}

#[cfg(unix)]
impl RawMode {
    pub fn enable() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

#[cfg(not(unix))]
impl RawMode {
    pub fn enable() -> Option<RawMode> {
        None
    }
}

#[cfg(unix)]
impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// The terminal size of stdout (rows, cols), if it is a terminal.
#[cfg(not(unix))]
pub fn window_size() -> Option<(u16, u16)> {
    None
}

/// The terminal size of stdout (rows, cols), if it is a terminal.
#[cfg(unix)]
pub fn window_size() -> Option<(u16, u16)> {
    // SAFETY: winsize is plain old data; all-zero is valid.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    for fd in [1, 0] {
        // SAFETY: TIOCGWINSZ writes a winsize into a valid pointer.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_row > 0 {
            return Some((ws.ws_row, ws.ws_col));
        }
    }
    None
}
