//! berth's Docker Engine API server: the API the docker CLI, compose and
//! the SDKs speak, served on a Unix socket over berth's host library
//! (`berth_host`), so the API and the `berth` CLI see one state.
//!
//! - [`server`]: the listener, version prefixes, body caps, shared state;
//!   `drain`: the rest of a body a handler answered without reading.
//! - [`version`], [`filters`], [`stdcopy`]: the protocol's small parts.
//! - The endpoint modules: containers, streams (start, wait, attach,
//!   exec, logs, events), images, volumes, networks, system.
//!
//! Unix hosts only (a Unix socket, `umask`): empty elsewhere.
#![cfg(unix)]

mod archive;
mod build;
mod containers;
mod drain;
pub mod error;
pub mod filters;
mod image_transfer;
mod images;
mod networks;
mod routes;
pub mod server;
pub mod stdcopy;
mod streams;
mod system;
pub mod version;
mod volumes;

/// Request parsing reachable without a server, for the fuzz targets.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::containers::config_from_body as container_create_body;
}

pub use server::{default_socket, serve, ServeError, ServeOptions};
