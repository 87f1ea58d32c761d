//! Refusals of container arguments (flags and their models: `-v`,
//! `--mount`, `-p`, `--network`), kept apart from how the CLI prints them.

/// A `run`/`create` argument berth refuses, printed the way docker's CLI
/// prints the same refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// A flag value that does not parse.
    #[error("invalid argument {value:?} for \"{flag}\" flag: {reason}")]
    Flag {
        flag: &'static str,
        value: String,
        reason: String,
    },
    /// Any other argument error.
    #[error("{0}")]
    Other(String),
    /// What docker's daemon refuses but only berth's CLI can check (the
    /// protocol carries the parsed log options, not the raw ones).
    #[error("Error response from daemon: {0}")]
    Daemon(String),
}

/// docker's CLI capability spelling (`normalizeCapabilities`): upper case,
/// a `CAP_` prefix where missing (`ALL` stays), each once, sorted. Which
/// names exist is the engine's to say. Shared by `run`/`create` and the
/// Engine API's container create.
pub fn normalize_caps<S: AsRef<str>>(list: impl IntoIterator<Item = S>) -> Vec<String> {
    let mut out: Vec<String> = list
        .into_iter()
        .map(|c| {
            let c = c.as_ref().to_ascii_uppercase();
            if c == "ALL" || c.starts_with("CAP_") {
                c
            } else {
                format!("CAP_{c}")
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}
