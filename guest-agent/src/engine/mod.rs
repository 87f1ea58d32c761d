//! The container engine: images (see [`crate::store`]) and containers.

pub mod cgroup;
pub mod changes;
pub mod commit;
pub mod containers;
pub mod controllers;
pub mod copy;
pub mod decide;
pub mod disk_usage;
pub mod error;
pub mod events;
pub mod exec;
pub mod fault;
pub mod files;
pub mod fsutil;
pub mod health;
pub mod launch;
pub mod logs;
pub mod mini_init;
pub mod mounts;
pub mod names;
pub mod namespaces;
pub mod net;
pub mod ops;
pub mod ports;
pub mod record;
pub mod record_cache;
pub mod resources;
pub mod restart;
pub mod rootfs_path;
pub mod seccomp;
pub mod security;
pub mod share_watch;
pub mod shim;
pub mod signal;
pub mod spawn;
pub mod spec;
pub mod user;
pub mod volumes;

pub use error::{Error, Object};

use crate::layout::Layout;
use crate::store::ImageStore;
use containers::ContainerStore;

/// Images and containers under one data root.
pub struct Engine {
    pub images: ImageStore,
    pub containers: ContainerStore,
}

impl Engine {
    pub fn open(layout: Layout) -> Engine {
        Engine {
            images: ImageStore::new(layout.clone()),
            containers: ContainerStore::new(layout),
        }
    }

    pub fn layout(&self) -> &Layout {
        self.images.layout()
    }
}
