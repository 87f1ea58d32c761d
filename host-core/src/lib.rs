//! berth's host library: everything the `berth` CLI (and any later front
//! end: an Engine API server, compose) needs to run containers, without
//! argument parsing or printing.
//!
//! - [`placement`]: where containers run (native, the shared machine VM,
//!   an own VM each), chosen in one place, and how to reach the engine.
//! - [`engine`]: the typed engine client, the only code that builds
//!   protocol requests.
//! - [`machine`], [`vm_pool`], [`image_disk`], [`shares`]: the VMs.
//! - [`image_cache`], [`registry`], [`archive`]: images on the host;
//!   [`transfer`]: save, load and push.
//! - [`build`]: the Dockerfile build driver.
//! - [`ports`], [`port_forward`], [`mounts`]: publishing and mount models;
//!   [`limits`]: docker's limit, device and sysctl values.
//! - [`inspect`], [`net_settings`]: docker-shaped inspect/list JSON.
//! - [`compose`]: compose projects (the model is `berth_compose`) on an
//!   engine.

pub mod archive;
pub mod args;
pub mod build;
pub mod client;
pub mod compare;
pub mod compose;
pub mod docker_info;
pub mod engine;
pub mod env;
pub mod image_cache;
pub mod image_disk;
pub mod inspect;
pub mod limits;
pub mod machine;
pub mod mounts;
pub mod net_settings;
pub mod paths;
pub mod placement;
pub mod platform;
pub mod port_forward;
pub mod ports;
pub mod registry;
pub mod shares;
pub mod sig_proxy;
pub mod system_check;
pub mod transfer;
pub mod tty;
pub mod vm_fleet;
pub mod vm_pool;
pub mod vm_shares;
pub mod vm_volumes;
