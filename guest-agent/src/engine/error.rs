//! The engine's error type. Variants say what went wrong; the failure that
//! caused one is kept as its [`std::error::Error::source`], not flattened
//! into a string. The wire type ([`ApiError`]) is made from it once, at the
//! server edge (`impl From<Error> for ApiError` below): clients see the same
//! codes and messages as docker's daemon gives.

use berth_protocol::{ApiError, ErrorKind};
use std::fmt;

/// Any error kept as a cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The kinds of object a request can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    Container,
    Image,
    Network,
    Volume,
}

/// Docker's message for a missing object of each kind.
fn missing(kind: Object, name: &str) -> String {
    match kind {
        Object::Container => format!("No such container: {name}"),
        Object::Image => format!("No such image: {name}"),
        Object::Network => format!("network {name} not found"),
        Object::Volume => format!("get {name}: no such volume"),
    }
}

/// An engine failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request names an object that does not exist.
    #[error("{}", missing(*kind, name))]
    NotFound { kind: Object, name: String },
    /// Something else the request needs does not exist (a file in a
    /// container, a plugin, a cache entry).
    #[error("{0}")]
    Missing(String),
    /// As [`Error::Missing`], said by the error that found it missing.
    #[error(transparent)]
    MissingBecause(BoxError),
    /// The request conflicts with the current state (a name in use, a
    /// container that is not running).
    #[error("{0}")]
    Conflict(String),
    /// The request is invalid.
    #[error("{0}")]
    InvalidArgument(String),
    /// The request is invalid, as this error (from parsing its input) says.
    #[error(transparent)]
    Malformed(BoxError),
    /// The request is invalid: `context`, because of the source.
    #[error("{context}")]
    MalformedIn {
        context: String,
        #[source]
        source: BoxError,
    },
    /// A file operation failed while doing `context`.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// An operation (cgroups, netlink, a process) failed while doing
    /// `context`.
    #[error("{context}")]
    Failed {
        context: String,
        #[source]
        source: BoxError,
    },
    /// An operation failed; its error says it all.
    #[error(transparent)]
    Unexpected(BoxError),
    /// The engine cannot do what was asked, for a reason it found itself.
    #[error("{0}")]
    Internal(String),
    /// A monitor process (the container shim, an exec's monitor) exited
    /// before it reported; `output` is what it wrote.
    #[error("{what} died without reporting: {output}")]
    MonitorDied { what: String, output: String },
    /// A helper process (the container's monitor) reported the failure
    /// with its wire kind (the command not found, say).
    #[error("{message}")]
    Reported { kind: ErrorKind, message: String },
}

/// The engine's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn not_found(kind: Object, name: impl Into<String>) -> Error {
        Error::NotFound {
            kind,
            name: name.into(),
        }
    }

    pub fn missing(msg: impl Into<String>) -> Error {
        Error::Missing(msg.into())
    }

    /// For `map_err`: something is missing, as this error says.
    pub fn missing_because(e: impl Into<BoxError>) -> Error {
        Error::MissingBecause(e.into())
    }

    pub fn conflict(msg: impl Into<String>) -> Error {
        Error::Conflict(msg.into())
    }

    pub fn invalid(msg: impl Into<String>) -> Error {
        Error::InvalidArgument(msg.into())
    }

    pub fn internal(msg: impl Into<String>) -> Error {
        Error::Internal(msg.into())
    }

    /// For `map_err`: an unexpected failure whose own message is enough.
    pub fn unexpected(e: impl Into<BoxError>) -> Error {
        Error::Unexpected(e.into())
    }

    /// For `map_err`: invalid input, as the parser's error says.
    pub fn malformed(e: impl Into<BoxError>) -> Error {
        Error::Malformed(e.into())
    }

    /// A closure for `map_err` that keeps an I/O error with what was being
    /// done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }

    /// A closure for `map_err` that keeps any error with what was being
    /// done.
    pub fn failed<E: Into<BoxError>>(context: impl Into<String>) -> impl FnOnce(E) -> Error {
        let context = context.into();
        move |source| Error::Failed {
            context,
            source: source.into(),
        }
    }

    /// The wire kind: what a client (and the docker status code) sees.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } | Error::Missing(_) | Error::MissingBecause(_) => {
                ErrorKind::NotFound
            }
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::InvalidArgument(_) | Error::Malformed(_) | Error::MalformedIn { .. } => {
                ErrorKind::InvalidArgument
            }
            Error::Io { .. }
            | Error::Failed { .. }
            | Error::Unexpected(_)
            | Error::Internal(_)
            | Error::MonitorDied { .. } => ErrorKind::Internal,
            Error::Reported { kind, .. } => *kind,
        }
    }

    /// The wire message: the variant's text and, where the variant keeps a
    /// cause behind a context, `context: cause`.
    pub fn message(&self) -> String {
        match self {
            Error::MalformedIn { context, source } | Error::Failed { context, source } => {
                join(context, source)
            }
            Error::Io { context, source } => join(context, source),
            other => other.to_string(),
        }
    }
}

fn join(context: &str, cause: &dyn fmt::Display) -> String {
    format!("{context}: {cause}")
}

/// The one conversion to the wire type, used where the server answers.
impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        ApiError::new(e.kind(), e.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    fn wire(e: Error) -> (ErrorKind, String) {
        let a = ApiError::from(e);
        (a.kind, a.message)
    }

    #[test]
    fn each_variant_gives_todays_code_and_message() {
        let io = || std::io::Error::from_raw_os_error(libc::ENOENT);
        let enoent = io().to_string();
        let cases: Vec<(Error, ErrorKind, String)> = vec![
            (
                Error::not_found(Object::Container, "web"),
                ErrorKind::NotFound,
                "No such container: web".into(),
            ),
            (
                Error::not_found(Object::Image, "alpine:3"),
                ErrorKind::NotFound,
                "No such image: alpine:3".into(),
            ),
            (
                Error::not_found(Object::Network, "front"),
                ErrorKind::NotFound,
                "network front not found".into(),
            ),
            (
                Error::not_found(Object::Volume, "data"),
                ErrorKind::NotFound,
                "get data: no such volume".into(),
            ),
            (
                Error::Missing("no cached build step k".into()),
                ErrorKind::NotFound,
                "no cached build step k".into(),
            ),
            (
                Error::MissingBecause(io().into()),
                ErrorKind::NotFound,
                enoent.clone(),
            ),
            (
                Error::conflict("Container x is not running"),
                ErrorKind::Conflict,
                "Container x is not running".into(),
            ),
            (
                Error::invalid("no command specified"),
                ErrorKind::InvalidArgument,
                "no command specified".into(),
            ),
            (
                Error::malformed("bad cidr"),
                ErrorKind::InvalidArgument,
                "bad cidr".into(),
            ),
            (
                Error::MalformedIn {
                    context: "reading archive".into(),
                    source: io().into(),
                },
                ErrorKind::InvalidArgument,
                format!("reading archive: {enoent}"),
            ),
            (
                Error::io("create v")(io()),
                ErrorKind::Internal,
                format!("create v: {enoent}"),
            ),
            (
                Error::failed("freezing")(io()),
                ErrorKind::Internal,
                format!("freezing: {enoent}"),
            ),
            (Error::unexpected(io()), ErrorKind::Internal, enoent.clone()),
            (
                Error::internal("container x did not stop"),
                ErrorKind::Internal,
                "container x did not stop".into(),
            ),
            (
                Error::MonitorDied {
                    what: "container shim".into(),
                    output: "panic".into(),
                },
                ErrorKind::Internal,
                "container shim died without reporting: panic".into(),
            ),
            (
                Error::Reported {
                    kind: ErrorKind::CommandNotFound,
                    message: "exec: \"nope\": executable file not found in $PATH".into(),
                },
                ErrorKind::CommandNotFound,
                "exec: \"nope\": executable file not found in $PATH".into(),
            ),
        ];
        for (e, kind, message) in cases {
            let shown = format!("{e:?}");
            assert_eq!(wire(e), (kind, message), "{shown}");
        }
    }

    #[test]
    fn causes_are_kept() {
        let e = Error::io("remove v")(std::io::Error::from_raw_os_error(libc::EBUSY));
        let src = e.source().expect("an I/O error keeps its cause");
        let io = src
            .downcast_ref::<std::io::Error>()
            .expect("the cause is the io::Error itself");
        assert_eq!(io.raw_os_error(), Some(libc::EBUSY));
        // The context alone is the Display; the wire message adds the cause.
        assert_eq!(e.to_string(), "remove v");
        assert!(ApiError::from(e).message.starts_with("remove v: "));

        let e = Error::failed("cgroup")(nix::errno::Errno::EPERM);
        let src = e.source().expect("kept");
        assert_eq!(
            src.downcast_ref::<nix::errno::Errno>(),
            Some(&nix::errno::Errno::EPERM)
        );

        // A transparent variant is its cause: the cause's own chain shows.
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let e = Error::unexpected(Outer(std::io::Error::from_raw_os_error(libc::EIO)));
        assert_eq!(e.to_string(), "outer");
        let inner = e.source().expect("the outer error's source");
        assert_eq!(
            inner
                .downcast_ref::<std::io::Error>()
                .and_then(|e| e.raw_os_error()),
            Some(libc::EIO)
        );
    }
}
