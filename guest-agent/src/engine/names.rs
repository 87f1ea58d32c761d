//! Docker's name rules.

/// Docker's rule for container and volume names,
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, at most `max` bytes.
pub(super) fn docker_name(n: &str, max: usize) -> bool {
    let b = n.as_bytes();
    b.len() >= 2
        && b.len() <= max
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}
