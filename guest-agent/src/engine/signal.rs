//! Signal names as docker takes them (`--stop-signal`, `kill --signal`).

/// A signal name or number that is no signal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid signal: {0}")]
pub struct InvalidSignal(pub String);

/// Parses `SIGTERM`, `TERM`, `term` or `15`.
pub fn parse(s: &str) -> Result<i32, InvalidSignal> {
    let invalid = || InvalidSignal(s.to_string());
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n)
            .map(|s| s as i32)
            .map_err(|_| invalid());
    }
    let up = t.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(parse("SIGTERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse("kill").unwrap(), libc::SIGKILL);
        assert_eq!(parse("HUP").unwrap(), libc::SIGHUP);
        assert_eq!(parse("9").unwrap(), 9);
        assert!(parse("SIGNOPE").is_err());
        assert!(parse("0").is_err());
        assert!(parse("999").is_err());
    }

    #[test]
    fn the_error_names_the_input() {
        assert_eq!(
            parse(" nope").unwrap_err().to_string(),
            "Invalid signal:  nope"
        );
    }
}
