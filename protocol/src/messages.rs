//! Request and response types.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// First frame from the client on every connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    /// [`crate::PROTOCOL_VERSION`] of the client.
    pub version: u32,
    /// Free-form client name and version, for logs.
    pub client: String,
}

/// One share of [`Request::SharesMount`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareMount {
    /// The virtio-fs tag (`[A-Za-z0-9_-]`, at most 36 bytes).
    pub tag: String,
    /// The host folder it serves (absolute, without `.`/`..`): where the
    /// guest mounts it under `/host_mnt`.
    pub host_path: String,
    /// Mount it read-only (the VMM refuses changes to it too).
    pub read_only: bool,
}

/// The agent's answer to [`Hello`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HelloReply {
    /// Protocol version of the agent.
    pub version: u32,
    /// `Err` when the versions are incompatible; the agent then closes.
    pub error: Option<String>,
    /// Agent build version.
    pub agent_version: String,
}

/// A request with its id; the response carries the same id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestEnvelope {
    pub id: u64,
    pub request: Request,
}

/// A response to the request with the same id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResponseEnvelope {
    pub id: u64,
    pub result: Result<Response, ApiError>,
}

/// Error classes; the CLI maps them to messages and exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    NotFound,
    Conflict,
    InvalidArgument,
    /// The container's command does not exist (docker exit code 127).
    CommandNotFound,
    /// The container's command cannot be executed (docker exit code 126).
    CommandNotExecutable,
    Internal,
}

/// An error reported by the agent.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }
}

/// Everything a client may ask of the agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", content = "args")]
pub enum Request {
    /// Agent facts (versions, kernel, data root).
    Info,
    /// The running kernel's work counters since boot (forks, context
    /// switches, interrupts, page faults, CPU time): what a guest kernel
    /// did, which costs exits and emulation on a VM host.
    KernelCounters,
    /// Bytes on disk of containers' writable layers and of volumes, as
    /// docker counts them (`ps --size`, `system df`). Walking the trees
    /// costs, so each part is asked for.
    DiskUsage {
        containers: bool,
        volumes: bool,
    },
    /// Which of these blob digests the store already holds.
    BlobsPresent {
        digests: Vec<String>,
    },
    /// Stream request: after an `Ok(Response::Ready)` reply the client sends
    /// exactly `size` raw bytes; the agent verifies the digest and answers
    /// with one more frame (`Response::BlobStored` or an error).
    PutBlob {
        digest: String,
        size: u64,
    },
    /// Registers an image from blobs already stored: unpacks its layers and
    /// tags it. Idempotent.
    ImageCommit(ImageCommit),
    ImageList,
    ImageInspect {
        reference: String,
    },
    ImageTag {
        source: String,
        target: String,
    },
    ImageRemove {
        reference: String,
        force: bool,
    },
    /// Logs docker's event for an image verb the host carries out from
    /// its cache: `reference` is the event's actor id, `name` its `name`
    /// attribute (the image's labels are added when it resolves).
    ImageEvent {
        action: ImageEventAction,
        reference: String,
        name: String,
    },
    ContainerCreate(Box<ContainerConfig>),
    /// Starts a created or stopped container in the background.
    ContainerStart {
        id: String,
    },
    /// `restart`: stop (as `ContainerStop`) then start; records docker's
    /// `restart` event.
    ContainerRestart {
        id: String,
        timeout: Option<i64>,
    },
    /// Stream request: after `Ok(Response::Ready)` the connection carries
    /// [`crate::mux`] frames. With `start`, the container is started once the
    /// stream is attached, so no output is lost.
    Attach {
        id: String,
        stdin: bool,
        start: bool,
        /// Initial terminal size (rows, cols), applied before the process
        /// starts.
        tty_size: Option<(u16, u16)>,
    },
    /// Blocks until the container is not running; returns its exit code.
    ContainerWait {
        id: String,
    },
    ContainerList {
        all: bool,
    },
    ContainerInspect {
        id: String,
    },
    ContainerKill {
        id: String,
        signal: i32,
    },
    /// Guest placements: stop containers, sync and power the VM off.
    Shutdown,
    ContainerRemove {
        id: String,
        force: bool,
        /// Also remove the container's anonymous volumes (`rm -v`).
        #[serde(default)]
        volumes: bool,
    },
    /// Sends the stop signal, waits `timeout` seconds (default 10), then
    /// SIGKILL. Marks the container as stopped by the user (no restart).
    ContainerStop {
        id: String,
        timeout: Option<i64>,
    },
    /// Stream request: after `Ok(Response::Ready)` the connection carries
    /// stdout/stderr mux frames of the stored log, then an `Exit` frame (0).
    Logs(LogsOptions),
    /// Stream request (`events`): after `Ok(Response::Ready)` the agent
    /// sends one [`Event`] as a JSON line per event — the stored ones in
    /// `since..=until`, then new ones as they happen — and closes the
    /// connection once `until` has passed (or the client went away).
    /// Without `since` no stored events are sent (as docker).
    Events(EventsOptions),
    /// Runs an extra process in a running container. Unless `detach`, a
    /// stream request like `Attach` ending with the process's exit code.
    Exec {
        id: String,
        config: ExecConfig,
        detach: bool,
        tty_size: Option<(u16, u16)>,
    },
    ContainerRename {
        id: String,
        name: String,
    },
    ContainerPause {
        id: String,
    },
    ContainerUnpause {
        id: String,
    },
    /// Processes of the container (`top`).
    ContainerTop {
        id: String,
    },
    /// What the container changed in its filesystem (`diff`).
    ContainerChanges {
        id: String,
    },
    ContainerStats {
        id: String,
    },
    /// Changes resource limits of a container (live when it runs).
    ContainerUpdate {
        id: String,
        memory: Option<i64>,
        nano_cpus: Option<i64>,
        pids_limit: Option<i64>,
        restart: Option<RestartPolicy>,
    },
    /// Removes all stopped containers.
    ContainerPrune,
    /// Makes an image from the container's changes.
    ContainerCommit(CommitOptions),
    /// Stream request: after `Ready`, the agent sends a tar of `path` as
    /// raw bytes and closes the stream.
    CopyFrom {
        id: String,
        path: String,
    },
    /// Stream request: after `Ready`, the client sends a tar stream and
    /// shuts down its write side; the agent extracts it below `path` and
    /// answers with one more frame.
    CopyTo {
        id: String,
        path: String,
        /// Build mode (`COPY`/`ADD`): entries keep the owner in their
        /// headers, and directories that already exist keep their metadata.
        #[serde(default)]
        build: bool,
    },
    /// Makes a new image: `parent`'s layers (none: an empty image, `FROM
    /// scratch`), plus the changes of `container` as one more layer when
    /// given, with `config` as its run configuration.
    ImageDerive(Box<DeriveOptions>),
    /// The image a build step with these inputs made earlier (`NotFound`
    /// when there is none, or it was removed).
    BuildCacheGet {
        key: String,
    },
    /// Stream request: after `Ready` the agent sends the raw bytes of a
    /// stored blob and closes the stream (images made in the engine, by
    /// `build` or `commit`, are copied to the host this way for `save` and
    /// `push`).
    BlobGet {
        digest: String,
    },
    /// Sent first to a guest restored from a snapshot (and to the VM the
    /// snapshot was taken of): it was cloned. The agent sets the wall clock,
    /// mixes `seed` (fresh host entropy) into the kernel RNG and reseeds it,
    /// and takes `hostname` (empty: keeps its own; a machine VM resumed
    /// from its suspend snapshot is sent this too). Guest agents only.
    CloneInit {
        /// Host wall clock, nanoseconds since the Unix epoch.
        unix_time_ns: u64,
        /// Host random bytes (at least 32).
        seed: Vec<u8>,
        hostname: String,
    },
    /// Mounts the read-only image disk `device` (`/dev/vdb` … `/dev/vdz`)
    /// made by the host and links the unpacked layers and configs it holds
    /// into the store; an `ImageCommit` of the image then unpacks nothing.
    /// Answers `Ok`. Guest agents only.
    ImageDiskAttach {
        device: String,
    },
    /// Mounts the virtio-fs shares a throw-away VM was given at restore (the
    /// share slots of its snapshot, filled per clone with the folders of
    /// its `-v` binds): each at `/host_mnt` + `host_path`, read-only with
    /// `read_only`; writable ones get live host events. Once per guest.
    /// Answers `Ok`, or an error naming the share that failed. Guest
    /// agents only.
    SharesMount {
        shares: Vec<ShareMount>,
    },
    /// Before a suspend of the machine VM: ends the share-event stream and
    /// unmounts the boot's shares (`berth.shares=`), so that no FUSE
    /// session is left for the snapshot to carry (the VMM refuses the
    /// suspend while one is: a container that binds a share keeps it).
    /// Answers `Ok`. Guest agents only.
    SharesRelease,
    /// After a resume, or a refused suspend: mounts the boot's shares again
    /// (a new FUSE session with the VMM) and restarts their live events.
    /// Shares still mounted are left as they are. Answers `Ok`. Guest
    /// agents only.
    SharesRemount,
    /// Creates a volume (a new anonymous one without a name); creating
    /// one that exists returns it unchanged, as docker does.
    VolumeCreate {
        name: Option<String>,
        driver: Option<String>,
        labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
    },
    VolumeList,
    VolumeInspect {
        name: String,
    },
    /// Refused while a container uses it; `force` only hides NotFound.
    VolumeRemove {
        name: String,
        force: bool,
    },
    /// Removes unused volumes: anonymous ones, or all with `all`.
    VolumePrune {
        all: bool,
    },
    /// Creates a user-defined bridge network.
    NetworkCreate {
        name: String,
        driver: Option<String>,
        subnet: Option<String>,
        gateway: Option<String>,
        internal: bool,
        labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
    },
    NetworkList,
    /// By name, full id or unique id prefix.
    NetworkInspect {
        name: String,
    },
    /// Refused while a container is connected, and for the predefined
    /// networks.
    NetworkRemove {
        name: String,
    },
    /// Removes user-defined networks no container uses.
    NetworkPrune,
    /// Attaches a container (running or not) to a network.
    NetworkConnect {
        network: String,
        container: String,
        aliases: Vec<String>,
        ipv4_address: Option<String>,
    },
    NetworkDisconnect {
        network: String,
        container: String,
        force: bool,
    },
    /// The ports a container publishes now (`port`).
    ContainerPorts {
        id: String,
    },
    /// Every port published by a running container (the host's port
    /// forwarder in VM placements).
    PublishedPorts,
    /// A stream request: the agent connects to `127.0.0.1:port` where it
    /// runs (a published port's proxy) and, after `Ready`, the connection
    /// carries that TCP stream's bytes both ways.
    PortConnect {
        port: u16,
    },
    /// A stream request: the agent sends to `127.0.0.1:port`/udp where it
    /// runs (a published UDP port's proxy) from a socket of this stream's
    /// own and, after `Ready`, the connection carries datagrams both ways
    /// in [`crate::datagram`] frames. One stream per host peer.
    PortConnectUdp {
        port: u16,
    },
}

/// A build step's new image.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeriveOptions {
    /// Image id or reference; `None` for an image without layers.
    pub parent: Option<String>,
    /// Container whose filesystem changes become the new layer.
    pub container: Option<String>,
    /// The image config's `config` object (Env, Cmd, Entrypoint, ...).
    pub config: serde_json::Value,
    /// History entry of the step.
    pub created_by: String,
    pub comment: Option<String>,
    /// The image's `author`.
    pub author: Option<String>,
    /// Record no layer when the container changed nothing.
    pub skip_empty_layer: bool,
    /// Fully qualified references to tag the new image with.
    pub tags: Vec<String>,
    /// Remember the image under this key (lowercase hex sha256) for
    /// [`Request::BuildCacheGet`].
    pub cache_key: Option<String>,
}

/// `logs` flags.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogsOptions {
    pub id: String,
    pub follow: bool,
    /// Only the last N lines.
    pub tail: Option<u64>,
    /// Only entries at or after this time (unix nanoseconds).
    pub since: Option<i64>,
    /// Only entries before this time (unix nanoseconds).
    pub until: Option<i64>,
    /// Prefix each line with its RFC 3339 timestamp.
    pub timestamps: bool,
}

/// `events` flags.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EventsOptions {
    /// Events at or after this time (unix nanoseconds).
    #[serde(default)]
    pub since: Option<i64>,
    /// Events at or before this time (unix nanoseconds); the stream ends
    /// once it has passed.
    #[serde(default)]
    pub until: Option<i64>,
    /// docker's event filters (`type`, `event`, `container`, `image`,
    /// `volume`, `label`, …), each key with its values.
    #[serde(default)]
    pub filters: BTreeMap<String, Vec<String>>,
}

/// One engine event, as docker's `events.Message` (its JSON shape).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Legacy fields (docker's JSONMessage): `status` and `id` on
    /// container and image events, `from` on container events.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from: String,
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: EventActor,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    #[serde(default)]
    pub time: i64,
    #[serde(default, rename = "timeNano")]
    pub time_nano: i64,
}

/// What an event is about.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventActor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes", default)]
    pub attributes: BTreeMap<String, String>,
}

/// What `exec` runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExecConfig {
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub tty: bool,
    pub stdin: bool,
}

/// `commit` options.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CommitOptions {
    pub id: String,
    /// Fully qualified reference to tag the new image with.
    pub tag: Option<String>,
    pub message: Option<String>,
    pub author: Option<String>,
    /// Dockerfile-like changes: `CMD`, `ENTRYPOINT`, `ENV`, `WORKDIR`,
    /// `USER`, `LABEL`, `EXPOSE` (JSON or shell form).
    pub changes: Vec<String>,
    pub pause: bool,
}

/// docker's `--ulimit` names (go-units' `ulimitNameMapping`) and the OCI
/// rlimit each sets: the CLI checks the name, the engine maps it.
pub const ULIMIT_RLIMITS: &[(&str, &str)] = &[
    ("core", "RLIMIT_CORE"),
    ("cpu", "RLIMIT_CPU"),
    ("data", "RLIMIT_DATA"),
    ("fsize", "RLIMIT_FSIZE"),
    ("locks", "RLIMIT_LOCKS"),
    ("memlock", "RLIMIT_MEMLOCK"),
    ("msgqueue", "RLIMIT_MSGQUEUE"),
    ("nice", "RLIMIT_NICE"),
    ("nofile", "RLIMIT_NOFILE"),
    ("nproc", "RLIMIT_NPROC"),
    ("rss", "RLIMIT_RSS"),
    ("rtprio", "RLIMIT_RTPRIO"),
    ("rttime", "RLIMIT_RTTIME"),
    ("sigpending", "RLIMIT_SIGPENDING"),
    ("stack", "RLIMIT_STACK"),
];

/// The sysctls of a container's own IPC namespace (runc's list; with
/// `fs.mqueue.*` and, outside the host's network, `net.*`, what
/// `--sysctl` may set): the CLI and the engine both check against it.
pub const IPC_SYSCTLS: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// One `--ulimit` (docker's `Ulimit`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    /// docker's name: `nofile`, `nproc`, `core`, …
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// One `--device` (docker's `DeviceMapping`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceMapping {
    pub path_on_host: String,
    pub path_in_container: String,
    /// Some of `rwm`.
    pub cgroup_permissions: String,
}

/// `--restart` policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    /// `no`, `on-failure`, `always`, `unless-stopped`.
    pub name: String,
    pub maximum_retry_count: u32,
}

/// How a path changed (`diff`); the numbers are the Engine API's `Kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    Modified = 0,
    Added = 1,
    Deleted = 2,
}

impl ChangeKind {
    /// The letter `docker diff` prints.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Modified => 'C',
            ChangeKind::Added => 'A',
            ChangeKind::Deleted => 'D',
        }
    }
}

/// One changed path of a container's filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChange {
    /// Absolute, inside the container.
    pub path: String,
    pub kind: ChangeKind,
}

/// A process row of `top`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopInfo {
    pub titles: Vec<String>,
    pub processes: Vec<Vec<String>>,
}

/// A `stats` sample.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StatsSample {
    pub id: String,
    pub name: String,
    /// Total CPU time used (nanoseconds) and the wall time of the sample.
    pub cpu_usage_ns: u64,
    pub system_ns: u64,
    pub online_cpus: u32,
    pub memory_usage: u64,
    pub memory_limit: u64,
    pub pids: u64,
    /// Bytes received and sent on the container's own interfaces
    /// (loopback not counted; zero with `--network host`).
    #[serde(default)]
    pub net_rx_bytes: u64,
    #[serde(default)]
    pub net_tx_bytes: u64,
    /// Bytes its cgroup read from and wrote to block devices.
    #[serde(default)]
    pub block_read_bytes: u64,
    #[serde(default)]
    pub block_write_bytes: u64,
    /// The counters of each of those interfaces (the Engine API's
    /// `networks`); empty with `--network host`.
    #[serde(default)]
    pub networks: Vec<InterfaceCounters>,
    /// The cgroup's block I/O byte counters a device and operation a row
    /// (the Engine API's `blkio_stats.io_service_bytes_recursive`).
    #[serde(default)]
    pub blkio_service_bytes: Vec<BlkioEntry>,
    /// Read from a cgroup v1 hierarchy (dockerd's stats then have every
    /// `blkio_stats` list, empty ones as `[]`; on v2 only the bytes).
    #[serde(default)]
    pub cgroup_v1: bool,
}

/// One network interface's counters, as `/proc/PID/net/dev` has them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceCounters {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// One block I/O counter of a cgroup: the device, the operation as the
/// cgroup names it (v1 `Read`, `Write`, `Sync`, …, `Total`; v2 `read`,
/// `write`) and the bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

/// Successful responses.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", content = "value")]
pub enum Response {
    Info(AgentInfo),
    /// Counter name to value (see `Request::KernelCounters`).
    KernelCounters(BTreeMap<String, u64>),
    DiskUsage(DiskUsage),
    /// The stream may begin.
    Ready,
    BlobsPresent {
        present: Vec<String>,
    },
    BlobStored {
        digest: String,
    },
    Image(ImageSummary),
    Images(Vec<ImageSummary>),
    /// Untagged and deleted image ids and tags, like `docker rmi` prints.
    Removed(Vec<String>),
    Created {
        id: String,
        warnings: Vec<String>,
    },
    Containers(Vec<ContainerSummary>),
    Container(Box<ContainerDetails>),
    Exited {
        code: i32,
    },
    Ok,
    Top(TopInfo),
    Changes(Vec<FileChange>),
    Stats(StatsSample),
    Volume(VolumeInfo),
    Volumes(Vec<VolumeInfo>),
    /// `volume prune`: the names removed and the bytes they held.
    VolumesPruned {
        names: Vec<String>,
        reclaimed: u64,
    },
    Network(crate::NetworkInfo),
    Networks(Vec<crate::NetworkInfo>),
    /// `network prune`: the names removed.
    NetworksPruned {
        names: Vec<String>,
    },
    Ports(Vec<crate::PublishedPort>),
}

/// Facts about the agent and where it runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentInfo {
    pub agent_version: String,
    pub kernel_release: String,
    pub arch: String,
    pub data_root: String,
    pub cgroup_version: u32,
    pub images: usize,
    pub containers: usize,
    /// CPUs the agent may run on (0 from agents that predate it).
    #[serde(default)]
    pub cpus: usize,
    /// Host quirks the agent works around (`emulated-kernel`), if any.
    #[serde(default)]
    pub quirks: Vec<String>,
    /// How often each workaround was used under this engine root.
    #[serde(default)]
    pub workarounds: BTreeMap<String, u64>,
}

/// One layer of an image being committed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerRef {
    /// Digest of the blob as stored (possibly compressed).
    pub digest: String,
    pub media_type: String,
    pub size: u64,
}

/// The image verbs the host carries out that docker logs an event for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageEventAction {
    /// `push`: the reference pushed (`NAME:TAG`), named by its repository.
    Push,
    /// `save`: the image id, named by itself.
    Save,
}

impl ImageEventAction {
    /// docker's action word.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageEventAction::Push => "push",
            ImageEventAction::Save => "save",
        }
    }
}

/// An image assembled from stored blobs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageCommit {
    /// Digest of the image config blob (the image id).
    pub config_digest: String,
    /// Layers, bottom first.
    pub layers: Vec<LayerRef>,
    /// Fully qualified references to point at the image.
    pub tags: Vec<String>,
    /// Digest of the manifest the image came from, if any.
    pub manifest_digest: Option<String>,
    /// How the image came in, for the engine's event log (docker's image
    /// `pull`, `load` and `import` events). Absent from older hosts, from
    /// the host cache's own records, and for images that log no such
    /// event (build steps, `commit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<ImageOrigin>,
}

impl ImageCommit {
    /// The same commit, telling the engine how the image came in.
    pub fn with_origin(&self, origin: ImageOrigin) -> ImageCommit {
        ImageCommit {
            origin: Some(origin),
            ..self.clone()
        }
    }
}

/// What brought an image into the engine (see [`ImageCommit::origin`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageOrigin {
    /// Pulled from a registry: `reference` as docker's event names it
    /// (`busybox:latest`, `reg:5000/app@sha256:…`: the digest when one was
    /// asked for, else the tag) and `name` its repository (`busybox`).
    Pull { reference: String, name: String },
    /// Loaded from an archive (`load`).
    Load,
    /// Made from a filesystem tarball (`import`).
    Import,
}

/// What `images` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageSummary {
    /// `sha256:<hex>` of the config.
    pub id: String,
    pub tags: Vec<String>,
    pub created: Option<String>,
    /// Unpacked size in bytes.
    pub size: u64,
    pub layers: usize,
    pub architecture: String,
    pub os: String,
    /// The image config as stored (OCI image config JSON).
    pub config: serde_json::Value,
    /// The image a build step derived this one from.
    #[serde(default)]
    pub parent: Option<String>,
    /// Every blob of the image as stored, with its size: the config first,
    /// then the layers bottom first (filled by `ImageInspect`).
    #[serde(default)]
    pub blobs: Vec<LayerRef>,
}

/// Everything `run`/`create` can set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContainerConfig {
    pub image: String,
    pub name: Option<String>,
    /// Replaces the image's Cmd when set.
    pub cmd: Option<Vec<String>>,
    /// Replaces the image's Entrypoint when set; `Some(vec![])` clears it
    /// (docker's `--entrypoint ''`).
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=VALUE` entries added to (and overriding) the image's Env.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub tty: bool,
    pub open_stdin: bool,
    pub auto_remove: bool,
    pub labels: BTreeMap<String, String>,
    /// Memory limit in bytes (`-m`).
    pub memory: Option<i64>,
    /// CPU quota in units of 1e-9 CPUs (`--cpus`).
    pub nano_cpus: Option<i64>,
    pub pids_limit: Option<i64>,
    /// `--ulimit NAME=SOFT[:HARD]` (docker's names: `nofile`, `nproc`, …;
    /// -1 is unlimited).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<Ulimit>,
    /// `--shm-size` in bytes; docker's 64 MiB when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<i64>,
    /// `--sysctl KEY=VALUE` (namespaced keys only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// `--cpu-shares` (relative weight, docker's 1024 scale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<i64>,
    /// `--cpuset-cpus` (`0-1,3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuset_cpus: Option<String>,
    /// `--memory-swap` in bytes: memory plus swap; -1 is unlimited swap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_swap: Option<i64>,
    /// `--memory-reservation` in bytes (a soft limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<i64>,
    /// `--oom-kill-disable`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oom_kill_disable: bool,
    /// `--device HOST[:CONTAINER][:PERMISSIONS]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceMapping>,
    /// `--group-add`: group names or ids added to the process's groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_add: Vec<String>,
    #[serde(default)]
    pub read_only: bool,
    /// `--tmpfs PATH[:OPTIONS]`.
    #[serde(default)]
    pub tmpfs: Vec<String>,
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Run a tiny init as PID 1 that reaps zombies and forwards signals.
    #[serde(default)]
    pub init: bool,
    /// Signal `stop` sends first (name or number); the image's StopSignal
    /// or SIGTERM when unset.
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// Log rotation (`--log-opt max-size=`, `max-file=`).
    #[serde(default)]
    pub log_max_size: Option<u64>,
    #[serde(default)]
    pub log_max_files: Option<u32>,
    /// `-v` and `--mount`, in the order given.
    #[serde(default)]
    pub mounts: Vec<MountSpec>,
    /// `--volumes-from CONTAINER[:ro|rw]`.
    #[serde(default)]
    pub volumes_from: Vec<String>,
    /// `--network`: `bridge` (the default when unset), `none`, `host`, or a
    /// user-defined network's name or id.
    #[serde(default)]
    pub network_mode: Option<String>,
    /// `--network-alias`, on the network of `network_mode`.
    #[serde(default)]
    pub network_aliases: Vec<String>,
    /// `--ip`.
    #[serde(default)]
    pub ipv4_address: Option<String>,
    /// `-p`.
    #[serde(default)]
    pub ports: Vec<crate::PortBinding>,
    /// `-P`: publish every exposed port on a free host port.
    #[serde(default)]
    pub publish_all: bool,
    /// `--expose` (`80`, `80/udp`), added to the image's ExposedPorts.
    #[serde(default)]
    pub expose: Vec<String>,
    #[serde(default)]
    pub dns: Vec<String>,
    #[serde(default)]
    pub dns_search: Vec<String>,
    #[serde(default)]
    pub dns_options: Vec<String>,
    /// `--add-host NAME:IP`; `IP` may be `host-gateway`.
    #[serde(default)]
    pub extra_hosts: Vec<String>,
    #[serde(default)]
    pub domainname: Option<String>,
    /// `--link CONTAINER[:ALIAS]`.
    #[serde(default)]
    pub links: Vec<String>,
    /// `--health-*` / `--no-healthcheck` as given; in a stored record, the
    /// merge with the image's `Healthcheck` (docker's `Config.Healthcheck`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<crate::HealthConfig>,
    /// `--cap-add`, as the CLI normalized them (`CAP_NET_ADMIN`, `ALL`).
    #[serde(default)]
    pub cap_add: Vec<String>,
    /// `--cap-drop`, likewise.
    #[serde(default)]
    pub cap_drop: Vec<String>,
    /// `--privileged`: every capability, no seccomp, no masked or
    /// read-only paths, the host's devices.
    #[serde(default)]
    pub privileged: bool,
    /// `--security-opt` as docker's API carries them: `no-new-privileges`,
    /// `no-new-privileges:BOOL`, `seccomp=unconfined`, or `seccomp=` followed
    /// by the profile's JSON itself (the CLI reads the file).
    #[serde(default)]
    pub security_opt: Vec<String>,
    /// `--ipc`: `none`, `private`, `shareable`, `host` or `container:ID`
    /// (the engine stores the full ID); unset is the engine's default,
    /// `private`.
    #[serde(default)]
    pub ipc_mode: Option<String>,
    /// `--pid`: `host` or `container:ID` (full ID once created); unset is
    /// a private PID namespace.
    #[serde(default)]
    pub pid_mode: Option<String>,
    /// `--uts host`; unset is a private UTS namespace.
    #[serde(default)]
    pub uts_mode: Option<String>,
    /// `--cgroupns host|private`; unset is private on cgroup v2, host on v1.
    #[serde(default)]
    pub cgroupns_mode: Option<String>,
    /// `--stop-timeout`: seconds `stop` waits before SIGKILL when it is
    /// not given `-t` (docker's `Config.StopTimeout`; 10 when unset).
    #[serde(default)]
    pub stop_timeout: Option<i64>,
    /// `--log-driver`: `json-file` (unset), `local` (stored as json-file
    /// is), or `none` (nothing kept; `logs` refuses).
    #[serde(default)]
    pub log_driver: Option<String>,
    /// `--cidfile`, as given (docker's `HostConfig.ContainerIDFile`).
    #[serde(default)]
    pub container_id_file: Option<String>,
}

/// The kinds of mount `-v` and `--mount` make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    Bind,
    Volume,
    Tmpfs,
}

impl MountType {
    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Volume => "volume",
            MountType::Tmpfs => "tmpfs",
        }
    }
}

/// One `-v` or `--mount` as the CLI parsed it (docker's `mount.Mount`).
/// What the engine makes of it is a [`MountPoint`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    #[serde(rename = "type")]
    pub kind: MountType,
    /// Bind: an absolute path where the engine runs. Volume: its name, or
    /// empty for a new anonymous volume. Tmpfs: empty.
    #[serde(default)]
    pub source: String,
    /// Absolute path in the container.
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
    /// `-v`'s mode field as given (`ro,z`); inspect shows it as `Mode`.
    #[serde(default)]
    pub mode: String,
    /// Bind propagation (`rprivate` when unset).
    #[serde(default)]
    pub propagation: Option<String>,
    /// Bind: no `rbind` (`bind-nonrecursive`).
    #[serde(default)]
    pub non_recursive: bool,
    /// Bind from `-v`: create a missing host directory (`--mount` refuses).
    #[serde(default)]
    pub create_host_path: bool,
    /// Volume: do not fill a new volume with the image's content.
    #[serde(default)]
    pub no_copy: bool,
    /// Volume: labels and driver options for a volume this mount creates.
    #[serde(default)]
    pub volume_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub volume_options: BTreeMap<String, String>,
    #[serde(default)]
    pub volume_driver: Option<String>,
    /// Tmpfs: size in bytes and mode.
    #[serde(default)]
    pub tmpfs_size: Option<i64>,
    #[serde(default)]
    pub tmpfs_mode: Option<u32>,
}

impl MountSpec {
    /// A mount of `kind` at `target` with every option at its default.
    pub fn new(kind: MountType, source: &str, target: &str) -> MountSpec {
        MountSpec {
            kind,
            source: source.into(),
            target: target.into(),
            read_only: false,
            mode: String::new(),
            propagation: None,
            non_recursive: false,
            create_host_path: false,
            no_copy: false,
            volume_labels: BTreeMap::new(),
            volume_options: BTreeMap::new(),
            volume_driver: None,
            tmpfs_size: None,
            tmpfs_mode: None,
        }
    }
}

/// A container's mount as the engine resolved it (inspect's `Mounts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPoint {
    #[serde(rename = "type")]
    pub kind: MountType,
    /// The volume's name (volumes only).
    #[serde(default)]
    pub name: Option<String>,
    /// Host path (bind), the volume's data directory, or empty (tmpfs).
    pub source: String,
    pub destination: String,
    pub mode: String,
    pub rw: bool,
    /// Bind propagation; empty for volumes and tmpfs.
    pub propagation: String,
    /// The engine made this volume for this container (`-v /path`, an
    /// image `VOLUME`): `rm -v` and `--rm` remove it.
    #[serde(default)]
    pub anonymous: bool,
    #[serde(default)]
    pub non_recursive: bool,
    /// Fill the volume from the image at the first start when it is empty.
    #[serde(default)]
    pub copy_up: bool,
    /// Tmpfs mount options (`size=`, `mode=`).
    #[serde(default)]
    pub tmpfs_options: Vec<String>,
}

/// A volume (`volume ls`, `volume inspect`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    pub name: String,
    pub driver: String,
    /// Where its files are, where the engine runs.
    pub mountpoint: String,
    /// RFC 3339.
    pub created_at: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Made by the engine for one container (no name given).
    #[serde(default)]
    pub anonymous: bool,
    /// Ids of the containers (in any state) that mount it.
    #[serde(default)]
    pub used_by: Vec<String>,
}

/// Container states, named as docker names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerStatus {
    Created,
    Running,
    Paused,
    Restarting,
    Exited,
    Dead,
}

impl ContainerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerStatus::Created => "created",
            ContainerStatus::Running => "running",
            ContainerStatus::Paused => "paused",
            ContainerStatus::Restarting => "restarting",
            ContainerStatus::Exited => "exited",
            ContainerStatus::Dead => "dead",
        }
    }
}

/// A row of `ps`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerSummary {
    pub id: String,
    pub name: String,
    pub image: String,
    pub image_id: String,
    /// The command line as docker shows it.
    pub command: String,
    pub created: String,
    pub status: ContainerStatus,
    pub exit_code: Option<i32>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub restart_count: u32,
    /// `State.Health`: set once a container with a healthcheck started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::Health>,
    /// The ports it publishes now (empty unless it runs), set in the
    /// answer to `ContainerList` so that a list needs no `ContainerPorts`
    /// per container. None from an agent that predates it (or where the
    /// summary is part of another answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<crate::PublishedPort>>,
}

/// The answer to `Request::DiskUsage`: regular files and symbolic links,
/// each hard-linked inode once, never crossing into another file system.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DiskUsage {
    /// Container id to the bytes of its writable layer.
    pub containers: BTreeMap<String, u64>,
    /// Volume name to the bytes under its mount point.
    pub volumes: BTreeMap<String, u64>,
    /// A walk stopped at the entry budget: the sizes are lower bounds.
    #[serde(default)]
    pub truncated: bool,
}

/// `inspect` output (docker-shaped fields are assembled by the CLI).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerDetails {
    pub summary: ContainerSummary,
    pub config: ContainerConfig,
    /// Resolved argv run in the container.
    pub path: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub pid: Option<i32>,
    pub hostname: String,
    #[serde(default)]
    pub mounts: Vec<MountPoint>,
    /// The networks it is attached to, by network name; addresses are
    /// filled while it runs.
    #[serde(default)]
    pub networks: BTreeMap<String, crate::EndpointInfo>,
    /// Ports published now (empty unless running).
    #[serde(default)]
    pub ports: Vec<crate::PublishedPort>,
    /// Image ExposedPorts plus `--expose`, as `80/tcp`.
    #[serde(default)]
    pub exposed_ports: Vec<String>,
}
