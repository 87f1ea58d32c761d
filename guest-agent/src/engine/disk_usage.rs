//! `DiskUsage`: the bytes of containers' writable layers and of volumes,
//! for `ps --size`, `system df` and the API's `size=1` and `/system/df`.

use super::containers::ContainerStore;
use super::files::ContainerPaths;
use super::fsutil::tree_size;
use super::mounts::read_volume;
use berth_protocol::DiskUsage;

/// Entries looked at per request at most: a layer full of empty files must
/// not hold the engine for minutes. Past it the sizes are lower bounds.
pub const ENTRY_BUDGET: usize = 2_000_000;

impl ContainerStore {
    pub fn disk_usage(&self, containers: bool, volumes: bool) -> DiskUsage {
        let mut budget = ENTRY_BUDGET;
        let mut out = DiskUsage::default();
        if containers {
            for r in self.records() {
                let upper = ContainerPaths::new(self.layout(), &r.id).upper;
                out.containers
                    .insert(r.id.clone(), tree_size(&upper, &mut budget));
            }
        }
        if volumes {
            if let Ok(rd) = std::fs::read_dir(self.layout().volumes()) {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if let Some(v) = read_volume(self.layout(), &name) {
                        let data = self.layout().volume_data(&v.name);
                        out.volumes.insert(v.name, tree_size(&data, &mut budget));
                    }
                }
            }
        }
        out.truncated = budget == 0;
        out
    }
}
