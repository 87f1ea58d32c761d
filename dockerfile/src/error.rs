//! The error type of [`crate::parse`].

/// A Dockerfile that Docker would refuse, with the position of the offending
/// instruction (or line, for problems found before instructions are split).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}
