//! The host-side registry client (OCI distribution API v2): manifests,
//! blobs, uploads and authentication. Everything a registry sends is
//! untrusted input to a process that feeds a root agent, so sizes are
//! capped and every digest is verified before anything is stored.
//!
//! Transport rules:
//! - HTTPS with the system CA roots, plus the PEM bundle named by
//!   `BERTH_REGISTRY_CA` and `$BERTH_HOME/certs.d/<host[:port]>/ca.crt`.
//! - Plain HTTP only for `localhost`, `127.0.0.0/8`, `::1` and the
//!   registries listed in `BERTH_INSECURE_REGISTRIES` (comma separated
//!   `host[:port]`), and only after HTTPS failed.

pub mod auth;
pub mod client;
pub mod fetch;
pub mod manifest;
pub mod pull;
pub mod search;
pub mod upload;

pub use client::RegistryClient;

/// Registry failures.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The network or TLS layer failed.
    #[error("{0}")]
    Transport(String),
    /// The registry answered with an error status.
    #[error("{0}")]
    Status(String),
    /// Authentication was refused or impossible.
    #[error("{0}")]
    Auth(String),
    /// The registry sent something malformed or hostile.
    #[error("invalid response from registry: {0}")]
    Invalid(String),
    /// Content did not hash to the digest it was named by.
    #[error("digest mismatch for {digest}: got {actual}")]
    DigestMismatch { digest: String, actual: String },
    /// Well-formed but not something berth can use.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// No index entry for the requested platform.
    #[error("no matching manifest for {want} in the manifest list entries (available: {have})")]
    NoPlatform { want: String, have: String },
    /// A search term that is empty, too long or holds control characters.
    #[error("invalid search term {0:?}")]
    Term(String),
    /// A registry name that is not a host[:port].
    #[error("invalid registry address {0:?}")]
    Address(String),
    /// Reading or writing saved credentials failed.
    #[error("credentials: {0}")]
    Credentials(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
