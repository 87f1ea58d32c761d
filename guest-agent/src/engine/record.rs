//! Container records and the state files the shim writes.

use berth_protocol::ContainerConfig;
use serde::{Deserialize, Serialize};

/// What `create` decided, stored as `containers/<id>/container.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub name: String,
    pub created: String,
    /// The image reference as the user gave it.
    pub image: String,
    pub image_id: String,
    pub config: ContainerConfig,
    /// Entrypoint + cmd after applying the image defaults.
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub workdir: String,
    pub user: String,
    pub hostname: String,
    /// `-v`, `--mount`, `--volumes-from` and image `VOLUME`s, resolved at
    /// create.
    #[serde(default)]
    pub mounts: Vec<berth_protocol::MountPoint>,
    /// The networks it joins, resolved at create. Records made before
    /// berth had networks have none: loopback only, as they always had.
    #[serde(default)]
    pub networks: Option<Vec<Attachment>>,
    /// The image's ExposedPorts, `--expose` and `-p` ports (`80/tcp`).
    #[serde(default)]
    pub exposed_ports: Vec<String>,
}

impl ContainerRecord {
    pub fn attachments(&self) -> Vec<Attachment> {
        self.networks.clone().unwrap_or_default()
    }
}

/// A network a container is attached to, as its record keeps it (the
/// networks themselves are `net::store`'s). Here, with the record, so the
/// record depends on no engine module.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Attachment {
    pub network_id: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub ipv4_requested: Option<String>,
    #[serde(default)]
    pub links: Vec<String>,
}

/// Written by the shim once the container process runs (`state.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    pub pid: i32,
    pub shim_pid: i32,
    pub started_at: String,
    /// Kernel boot id; a state from an earlier boot is stale.
    pub boot_id: String,
}

/// Written by the shim when the container process has ended (`exit.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExitState {
    pub code: i32,
    pub finished_at: String,
    pub started_at: Option<String>,
    /// Set when the container never ran.
    pub error: Option<String>,
}

/// The current kernel boot id.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Merges image and user environment: later entries override earlier ones
/// with the same key; PATH gets docker's default when missing. A user
/// entry without `=` removes the variable (docker's rule for `-e NAME`
/// when NAME was unset on the client).
pub fn merge_env(image: &[String], user: &[String], hostname: &str, tty: bool) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut set = |kv: &str| {
        let key = kv.split('=').next().unwrap_or(kv);
        out.retain(|e| e.split('=').next() != Some(key));
        if kv.contains('=') {
            out.push(kv.to_string());
        }
    };
    if !image.iter().any(|e| e.starts_with("PATH=")) {
        set("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    }
    set(&format!("HOSTNAME={hostname}"));
    for e in image {
        set(e);
    }
    if tty {
        set("TERM=xterm");
    }
    for e in user {
        set(e);
    }
    out
}

/// Docker's rule: an `--entrypoint` override drops the image's Cmd.
pub fn resolve_args(
    image_entrypoint: Option<&[String]>,
    image_cmd: Option<&[String]>,
    entrypoint: Option<&[String]>,
    cmd: Option<&[String]>,
) -> Vec<String> {
    let ep: Vec<String> = entrypoint.or(image_entrypoint).unwrap_or_default().to_vec();
    let c: Vec<String> = match (cmd, entrypoint) {
        (Some(c), _) => c.to_vec(),
        (None, Some(_)) => Vec::new(),
        (None, None) => image_cmd.unwrap_or_default().to_vec(),
    };
    ep.into_iter().chain(c).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn args_follow_docker_rules() {
        let ep = v(&["/entry"]);
        let cmd = v(&["default"]);
        assert_eq!(
            resolve_args(Some(&ep), Some(&cmd), None, None),
            v(&["/entry", "default"])
        );
        assert_eq!(
            resolve_args(Some(&ep), Some(&cmd), None, Some(&v(&["x"]))),
            v(&["/entry", "x"])
        );
        assert_eq!(
            resolve_args(Some(&ep), Some(&cmd), Some(&v(&["sh"])), None),
            v(&["sh"])
        );
        assert_eq!(
            resolve_args(Some(&ep), Some(&cmd), Some(&[]), Some(&v(&["ls"]))),
            v(&["ls"])
        );
        assert_eq!(resolve_args(None, None, None, None), Vec::<String>::new());
    }

    #[test]
    fn env_overrides_by_key() {
        let e = merge_env(&v(&["PATH=/bin", "A=1"]), &v(&["A=2", "B=3"]), "h", false);
        assert_eq!(e, v(&["HOSTNAME=h", "PATH=/bin", "A=2", "B=3"]));
        // A bare name removes the variable, image default included.
        let e = merge_env(&v(&["PATH=/bin", "A=1"]), &v(&["A", "C"]), "h", false);
        assert_eq!(e, v(&["HOSTNAME=h", "PATH=/bin"]));
    }
}
