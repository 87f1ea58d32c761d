//! berth-compose: the Compose file model.
//!
//! [`Project::load`] reads one or more compose files (or looks up
//! `compose.yaml` / `docker-compose.yml` and its override), interpolates
//! `${VAR}` from the environment and `.env`, resolves `extends`, merges the
//! files in order and validates the result. [`Project::to_config_yaml`]
//! renders it as `docker-compose config` (1.29) does.

mod config;
pub mod error;
pub mod interp;
mod load;
pub mod model;
pub mod value;
pub mod yaml;

pub use error::ComposeError;
pub use load::{
    merge_service, normalize_project_name, normpath, LoadOptions, PullPolicy, UlimitValue,
    DEFAULT_FILES, OVERRIDE_FILES,
};
pub use model::*;
pub use value::Value;
