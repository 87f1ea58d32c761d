//! Typed errors. Each names the file and, where one applies, the line,
//! column and dotted key path (`services.web.ports`).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("{}: {source}", file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no compose file found in {} (looked for compose.yaml, compose.yml, docker-compose.yml, docker-compose.yaml)", dir.display())]
    NoComposeFile { dir: PathBuf },
    #[error("{}: not valid UTF-8 (at byte {offset})", file.display())]
    NotUtf8 { file: PathBuf, offset: usize },
    #[error("{}: {what}", file.display())]
    Limit { file: PathBuf, what: String },
    #[error("{}:{line}:{col}: YAML syntax error: {msg}", file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        col: usize,
        msg: String,
    },
    #[error("{}:{line}:{col}: {key}: {msg}", file.display())]
    Invalid {
        file: PathBuf,
        line: usize,
        col: usize,
        key: String,
        msg: String,
    },
    #[error("{}:{line}:{col}: {key}: {msg}", file.display())]
    Interpolation {
        file: PathBuf,
        line: usize,
        col: usize,
        key: String,
        msg: String,
    },
    /// A service refers to something undefined, or mounts a path twice.
    /// `key` is the dotted path (`services.web.depends_on`); `location`
    /// is where that key was written (the last file that set it).
    #[error("{}{key}: {msg}", fmt_location(.location))]
    Service {
        service: String,
        key: String,
        location: Option<Location>,
        msg: String,
    },
    #[error("invalid project name {name:?}: use lowercase letters, digits, '-' and '_', starting with a letter or digit")]
    ProjectName { name: String },
    #[error("circular dependency between services: {}", cycle.join(" -> "))]
    Cycle { cycle: Vec<String> },
}

/// Where a key was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
}

fn fmt_location(l: &Option<Location>) -> String {
    match l {
        Some(l) => format!("{}:{}:{}: ", l.file.display(), l.line, l.col),
        None => String::new(),
    }
}

impl ComposeError {
    /// The dotted key path an error is about, when it has one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ComposeError::Invalid { key, .. }
            | ComposeError::Interpolation { key, .. }
            | ComposeError::Service { key, .. } => Some(key),
            _ => None,
        }
    }
}
