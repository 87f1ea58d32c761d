//! The typed engine client: one method per engine verb, each building its
//! protocol request and checking the response's shape. It is the only
//! code in berth's host side that constructs a [`Request`]; front ends
//! (the CLI, later an Engine API server or compose) call these methods.
//!
//! A reply of the wrong shape is [`ClientError::Unexpected`]; verbs whose
//! reply carries nothing the caller uses return `()` whatever the engine
//! acknowledged with.

use crate::client::{ClientError, Connection, Endpoint, PendingStream};
use crate::platform::UnixStream;
use berth_protocol::frame::read_frame;
use berth_protocol::{
    AgentInfo, CommitOptions, ContainerConfig, ContainerDetails, ContainerSummary, DeriveOptions,
    EventsOptions, ExecConfig, FileChange, ImageCommit, ImageSummary, LogsOptions, NetworkInfo,
    PublishedPort, Request, Response, ResponseEnvelope, RestartPolicy, StatsSample, TopInfo,
    VolumeInfo,
};
use std::collections::BTreeMap;
use std::io::{Read, Write};

/// A container the engine created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub id: String,
    pub warnings: Vec<String>,
}

/// Resource limits and restart policy `berth update` changes; `None`
/// leaves a setting as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerUpdate {
    pub memory: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub pids_limit: Option<i64>,
    pub restart: Option<RestartPolicy>,
}

/// A volume to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeCreate {
    pub name: Option<String>,
    pub driver: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

/// A network to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkCreate {
    pub name: String,
    pub driver: Option<String>,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

/// A container to attach to a network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkConnect {
    pub network: String,
    pub container: String,
    pub aliases: Vec<String>,
    pub ipv4_address: Option<String>,
}

/// What `volume prune` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumesPruned {
    pub names: Vec<String>,
    pub reclaimed: u64,
}

/// One connection to an engine (the agent, natively or in a VM).
pub struct Engine {
    conn: Connection,
}

fn unexpected(r: Response) -> ClientError {
    ClientError::Unexpected(format!("{r:?}"))
}

/// A published port's stream asked for and not yet answered
/// ([`Engine::port_connect_pipelined`]).
pub struct PortStream(PendingStream);

impl PortStream {
    /// A handle to write the stream's first bytes with now.
    pub fn writer(&self) -> std::io::Result<UnixStream> {
        self.0.try_clone()
    }

    /// Waits for the answers: the stream once the guest joined the port.
    pub fn ready(self) -> Result<UnixStream, ClientError> {
        self.0.ready()
    }
}

impl Engine {
    /// Connects and completes the protocol handshake.
    pub fn open(ep: &Endpoint) -> Result<Engine, ClientError> {
        Ok(Engine {
            conn: Connection::open(ep)?,
        })
    }

    /// The PID of the process serving a native agent's socket; None
    /// elsewhere.
    #[cfg(unix)]
    pub fn peer_pid(&self) -> Option<i32> {
        self.conn.peer_pid()
    }

    /// Whether this idle connection can be used again: the engine has
    /// not closed it (exited, restarted) and sent nothing unasked. For
    /// pools of connections; false where that cannot be told.
    pub fn idle_open(&self) -> bool {
        self.conn.idle_open()
    }

    fn call(&mut self, request: Request) -> Result<Response, ClientError> {
        self.conn.call(request)
    }

    /// A request acknowledged with anything but an error.
    fn ack(&mut self, request: Request) -> Result<(), ClientError> {
        self.conn.call(request).map(|_| ())
    }

    fn stream(self, request: Request) -> Result<UnixStream, ClientError> {
        self.conn.into_stream(request)
    }

    // ---- engine ----

    pub fn info(&mut self) -> Result<AgentInfo, ClientError> {
        match self.call(Request::Info)? {
            Response::Info(i) => Ok(i),
            other => Err(unexpected(other)),
        }
    }

    /// The engine's kernel's work counters since boot (the guest kernel's
    /// in a VM).
    pub fn kernel_counters(&mut self) -> Result<BTreeMap<String, u64>, ClientError> {
        match self.call(Request::KernelCounters)? {
            Response::KernelCounters(m) => Ok(m),
            other => Err(unexpected(other)),
        }
    }

    /// Bytes of containers' writable layers and of volumes, measured by the
    /// engine where they live (inside the VM for VM placements).
    pub fn disk_usage(
        &mut self,
        containers: bool,
        volumes: bool,
    ) -> Result<berth_protocol::DiskUsage, ClientError> {
        match self.call(Request::DiskUsage {
            containers,
            volumes,
        })? {
            Response::DiskUsage(d) => Ok(d),
            other => Err(unexpected(other)),
        }
    }

    /// `list`'s containers' sizes as docker's `SizeRw` and `SizeRootFs`:
    /// each writable layer, and that plus the container's image.
    pub fn container_sizes(
        &mut self,
        list: &[berth_protocol::ContainerSummary],
    ) -> Result<Vec<(u64, u64)>, ClientError> {
        let usage = self.disk_usage(true, false)?;
        let images: BTreeMap<String, u64> = self
            .image_list()?
            .into_iter()
            .map(|i| (i.id, i.size))
            .collect();
        Ok(list
            .iter()
            .map(|s| {
                let rw = usage.containers.get(&s.id).copied().unwrap_or(0);
                (rw, rw + images.get(&s.image_id).copied().unwrap_or(0))
            })
            .collect())
    }

    /// Asks the engine to exit (a machine VM's agent before power-off).
    pub fn shutdown(&mut self) -> Result<(), ClientError> {
        self.ack(Request::Shutdown)
    }

    /// Tells a VM's agent it was cloned from a snapshot.
    pub fn clone_init(
        &mut self,
        unix_time_ns: u64,
        seed: Vec<u8>,
        hostname: String,
    ) -> Result<(), ClientError> {
        self.ack(Request::CloneInit {
            unix_time_ns,
            seed,
            hostname,
        })
    }

    /// Mounts the virtio-fs shares a throw-away VM was given at restore.
    pub fn shares_mount(
        &mut self,
        shares: Vec<berth_protocol::ShareMount>,
    ) -> Result<(), ClientError> {
        self.ack(Request::SharesMount { shares })
    }

    /// Before a suspend: the machine's agent ends its share-event stream
    /// and unmounts its shares.
    pub fn shares_release(&mut self) -> Result<(), ClientError> {
        self.ack(Request::SharesRelease)
    }

    /// After a resume or a refused suspend: the agent mounts its shares
    /// again.
    pub fn shares_remount(&mut self) -> Result<(), ClientError> {
        self.ack(Request::SharesRemount)
    }

    /// Mounts an image disk the VM was given as `device`.
    pub fn image_disk_attach(&mut self, device: &str) -> Result<(), ClientError> {
        self.ack(Request::ImageDiskAttach {
            device: device.into(),
        })
    }

    // ---- blobs and images ----

    /// The digests among `digests` the engine already stores.
    pub fn blobs_present(&mut self, digests: Vec<String>) -> Result<Vec<String>, ClientError> {
        match self.call(Request::BlobsPresent { digests })? {
            Response::BlobsPresent { present } => Ok(present),
            other => Err(unexpected(other)),
        }
    }

    /// Uploads a blob of known digest and size from `r`.
    pub fn put_blob(self, digest: &str, size: u64, r: &mut dyn Read) -> Result<(), ClientError> {
        let mut s = self.stream(Request::PutBlob {
            digest: digest.into(),
            size,
        })?;
        if let Err(e) = std::io::copy(&mut r.take(size), &mut s) {
            // The engine stops reading when storing fails (a full disk,
            // say); its reply, still there to read, says why.
            if let Ok(resp) = read_frame::<_, ResponseEnvelope>(&mut s) {
                resp.result?;
            }
            return Err(e.into());
        }
        s.flush()?;
        let resp: ResponseEnvelope = read_frame(&mut s)?;
        resp.result?;
        Ok(())
    }

    /// A stream of one blob's bytes.
    pub fn blob_get(self, digest: &str) -> Result<UnixStream, ClientError> {
        self.stream(Request::BlobGet {
            digest: digest.into(),
        })
    }

    /// Records an image whose blobs the engine has.
    pub fn image_commit(&mut self, commit: &ImageCommit) -> Result<(), ClientError> {
        self.ack(Request::ImageCommit(commit.clone()))
    }

    pub fn image_list(&mut self) -> Result<Vec<ImageSummary>, ClientError> {
        match self.call(Request::ImageList)? {
            Response::Images(i) => Ok(i),
            other => Err(unexpected(other)),
        }
    }

    pub fn image_inspect(&mut self, reference: &str) -> Result<ImageSummary, ClientError> {
        match self.call(Request::ImageInspect {
            reference: reference.into(),
        })? {
            Response::Image(i) => Ok(i),
            other => Err(unexpected(other)),
        }
    }

    pub fn image_tag(&mut self, source: &str, target: &str) -> Result<(), ClientError> {
        self.ack(Request::ImageTag {
            source: source.into(),
            target: target.into(),
        })
    }

    /// Logs docker's event for an image verb done on the host (`push`,
    /// `save`) in the engine's event log.
    pub fn image_event(
        &mut self,
        action: berth_protocol::ImageEventAction,
        reference: &str,
        name: &str,
    ) -> Result<(), ClientError> {
        self.ack(Request::ImageEvent {
            action,
            reference: reference.into(),
            name: name.into(),
        })
    }

    /// Removes a reference (or the image); what was untagged and deleted.
    pub fn image_remove(
        &mut self,
        reference: &str,
        force: bool,
    ) -> Result<Vec<String>, ClientError> {
        match self.call(Request::ImageRemove {
            reference: reference.into(),
            force,
        })? {
            Response::Removed(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// A new image from a parent and a layer (the build driver's steps).
    pub fn image_derive(&mut self, opts: DeriveOptions) -> Result<ImageSummary, ClientError> {
        match self.call(Request::ImageDerive(Box::new(opts)))? {
            Response::Image(i) => Ok(i),
            other => Err(unexpected(other)),
        }
    }

    /// The image a build step with `key` produced before.
    pub fn build_cache_get(&mut self, key: &str) -> Result<ImageSummary, ClientError> {
        match self.call(Request::BuildCacheGet { key: key.into() })? {
            Response::Image(i) => Ok(i),
            other => Err(unexpected(other)),
        }
    }

    // ---- containers ----

    pub fn container_create(&mut self, cfg: ContainerConfig) -> Result<Created, ClientError> {
        match self.call(Request::ContainerCreate(Box::new(cfg)))? {
            Response::Created { id, warnings } => Ok(Created { id, warnings }),
            other => Err(unexpected(other)),
        }
    }

    pub fn container_start(&mut self, id: &str) -> Result<(), ClientError> {
        self.ack(Request::ContainerStart { id: id.into() })
    }

    pub fn container_stop(&mut self, id: &str, timeout: Option<i64>) -> Result<(), ClientError> {
        self.ack(Request::ContainerStop {
            id: id.into(),
            timeout,
        })
    }

    pub fn container_restart(&mut self, id: &str, timeout: Option<i64>) -> Result<(), ClientError> {
        self.ack(Request::ContainerRestart {
            id: id.into(),
            timeout,
        })
    }

    pub fn container_kill(&mut self, id: &str, signal: i32) -> Result<(), ClientError> {
        self.ack(Request::ContainerKill {
            id: id.into(),
            signal,
        })
    }

    pub fn container_remove(
        &mut self,
        id: &str,
        force: bool,
        volumes: bool,
    ) -> Result<(), ClientError> {
        self.ack(Request::ContainerRemove {
            id: id.into(),
            force,
            volumes,
        })
    }

    /// Blocks until the container stops; its exit code.
    pub fn container_wait(&mut self, id: &str) -> Result<i32, ClientError> {
        match self.call(Request::ContainerWait { id: id.into() })? {
            Response::Exited { code } => Ok(code),
            other => Err(unexpected(other)),
        }
    }

    pub fn container_list(&mut self, all: bool) -> Result<Vec<ContainerSummary>, ClientError> {
        match self.call(Request::ContainerList { all })? {
            Response::Containers(l) => Ok(l),
            other => Err(unexpected(other)),
        }
    }

    pub fn container_inspect(&mut self, id: &str) -> Result<Box<ContainerDetails>, ClientError> {
        match self.call(Request::ContainerInspect { id: id.into() })? {
            Response::Container(d) => Ok(d),
            other => Err(unexpected(other)),
        }
    }

    pub fn container_rename(&mut self, id: &str, name: &str) -> Result<(), ClientError> {
        self.ack(Request::ContainerRename {
            id: id.into(),
            name: name.into(),
        })
    }

    pub fn container_pause(&mut self, id: &str) -> Result<(), ClientError> {
        self.ack(Request::ContainerPause { id: id.into() })
    }

    pub fn container_unpause(&mut self, id: &str) -> Result<(), ClientError> {
        self.ack(Request::ContainerUnpause { id: id.into() })
    }

    pub fn container_top(&mut self, id: &str) -> Result<TopInfo, ClientError> {
        match self.call(Request::ContainerTop { id: id.into() })? {
            Response::Top(t) => Ok(t),
            other => Err(unexpected(other)),
        }
    }

    /// What the container changed in its filesystem (`diff`).
    pub fn container_changes(&mut self, id: &str) -> Result<Vec<FileChange>, ClientError> {
        match self.call(Request::ContainerChanges { id: id.into() })? {
            Response::Changes(c) => Ok(c),
            other => Err(unexpected(other)),
        }
    }

    pub fn container_stats(&mut self, id: &str) -> Result<StatsSample, ClientError> {
        match self.call(Request::ContainerStats { id: id.into() })? {
            Response::Stats(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    pub fn container_update(&mut self, id: &str, u: ContainerUpdate) -> Result<(), ClientError> {
        self.ack(Request::ContainerUpdate {
            id: id.into(),
            memory: u.memory,
            nano_cpus: u.nano_cpus,
            pids_limit: u.pids_limit,
            restart: u.restart,
        })
    }

    /// Removes every stopped container; their IDs.
    pub fn container_prune(&mut self) -> Result<Vec<String>, ClientError> {
        match self.call(Request::ContainerPrune)? {
            Response::Removed(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    pub fn container_commit(&mut self, opts: CommitOptions) -> Result<ImageSummary, ClientError> {
        match self.call(Request::ContainerCommit(opts))? {
            Response::Image(i) => Ok(i),
            other => Err(unexpected(other)),
        }
    }

    /// The container's published ports as the engine allocated them.
    pub fn container_ports(&mut self, id: &str) -> Result<Vec<PublishedPort>, ClientError> {
        match self.call(Request::ContainerPorts { id: id.into() })? {
            Response::Ports(p) => Ok(p),
            other => Err(unexpected(other)),
        }
    }

    /// Every running container's published ports.
    pub fn published_ports(&mut self) -> Result<Vec<PublishedPort>, ClientError> {
        match self.call(Request::PublishedPorts)? {
            Response::Ports(p) => Ok(p),
            other => Err(unexpected(other)),
        }
    }

    // ---- streams ----

    /// Attaches to a container's stdio (multiplexed unless it has a tty).
    pub fn attach(
        self,
        id: &str,
        stdin: bool,
        start: bool,
        tty_size: Option<(u16, u16)>,
    ) -> Result<UnixStream, ClientError> {
        self.stream(Request::Attach {
            id: id.into(),
            stdin,
            start,
            tty_size,
        })
    }

    /// Runs a process in a container, attached.
    pub fn exec(
        self,
        id: &str,
        config: ExecConfig,
        tty_size: Option<(u16, u16)>,
    ) -> Result<UnixStream, ClientError> {
        self.stream(Request::Exec {
            id: id.into(),
            config,
            detach: false,
            tty_size,
        })
    }

    /// Starts a process in a container and leaves it running.
    pub fn exec_detached(
        &mut self,
        id: &str,
        config: ExecConfig,
        tty_size: Option<(u16, u16)>,
    ) -> Result<(), ClientError> {
        self.ack(Request::Exec {
            id: id.into(),
            config,
            detach: true,
            tty_size,
        })
    }

    pub fn logs(self, opts: LogsOptions) -> Result<UnixStream, ClientError> {
        self.stream(Request::Logs(opts))
    }

    pub fn events(self, opts: EventsOptions) -> Result<UnixStream, ClientError> {
        self.stream(Request::Events(opts))
    }

    /// A tar stream of `path` in the container.
    pub fn copy_from(self, id: &str, path: &str) -> Result<UnixStream, ClientError> {
        self.stream(Request::CopyFrom {
            id: id.into(),
            path: path.into(),
        })
    }

    /// A stream that takes a tar to unpack at `path` in the container
    /// (`build`: with the build's ownership rules).
    pub fn copy_to(self, id: &str, path: &str, build: bool) -> Result<UnixStream, ClientError> {
        self.stream(Request::CopyTo {
            id: id.into(),
            path: path.into(),
            build,
        })
    }

    /// A byte stream to a published port inside the engine's host.
    pub fn port_connect(self, port: u16) -> Result<UnixStream, ClientError> {
        self.stream(Request::PortConnect { port })
    }

    /// [`Engine::port_connect`] on a connection of its own, sent without
    /// waiting ([`PortStream`]): the caller may write the stream's first
    /// bytes before the answers come.
    pub fn port_connect_pipelined(ep: &Endpoint, port: u16) -> Result<PortStream, ClientError> {
        PendingStream::send(ep, Request::PortConnect { port }).map(PortStream)
    }

    /// A stream of datagram frames ([`berth_protocol::datagram`]) to a
    /// published UDP port inside the engine's host, from a socket of its
    /// own there.
    pub fn port_connect_udp(self, port: u16) -> Result<UnixStream, ClientError> {
        self.stream(Request::PortConnectUdp { port })
    }

    // ---- volumes ----

    pub fn volume_create(&mut self, v: VolumeCreate) -> Result<VolumeInfo, ClientError> {
        match self.call(Request::VolumeCreate {
            name: v.name,
            driver: v.driver,
            labels: v.labels,
            options: v.options,
        })? {
            Response::Volume(v) => Ok(v),
            other => Err(unexpected(other)),
        }
    }

    pub fn volume_list(&mut self) -> Result<Vec<VolumeInfo>, ClientError> {
        match self.call(Request::VolumeList)? {
            Response::Volumes(v) => Ok(v),
            other => Err(unexpected(other)),
        }
    }

    pub fn volume_inspect(&mut self, name: &str) -> Result<VolumeInfo, ClientError> {
        match self.call(Request::VolumeInspect { name: name.into() })? {
            Response::Volume(v) => Ok(v),
            other => Err(unexpected(other)),
        }
    }

    pub fn volume_remove(&mut self, name: &str, force: bool) -> Result<(), ClientError> {
        self.ack(Request::VolumeRemove {
            name: name.into(),
            force,
        })
    }

    pub fn volume_prune(&mut self, all: bool) -> Result<VolumesPruned, ClientError> {
        match self.call(Request::VolumePrune { all })? {
            Response::VolumesPruned { names, reclaimed } => Ok(VolumesPruned { names, reclaimed }),
            other => Err(unexpected(other)),
        }
    }

    // ---- networks ----

    pub fn network_create(&mut self, n: NetworkCreate) -> Result<NetworkInfo, ClientError> {
        match self.call(Request::NetworkCreate {
            name: n.name,
            driver: n.driver,
            subnet: n.subnet,
            gateway: n.gateway,
            internal: n.internal,
            labels: n.labels,
            options: n.options,
        })? {
            Response::Network(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    pub fn network_list(&mut self) -> Result<Vec<NetworkInfo>, ClientError> {
        match self.call(Request::NetworkList)? {
            Response::Networks(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    pub fn network_inspect(&mut self, name: &str) -> Result<NetworkInfo, ClientError> {
        match self.call(Request::NetworkInspect { name: name.into() })? {
            Response::Network(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    pub fn network_remove(&mut self, name: &str) -> Result<(), ClientError> {
        self.ack(Request::NetworkRemove { name: name.into() })
    }

    /// Removes unused networks; their names.
    pub fn network_prune(&mut self) -> Result<Vec<String>, ClientError> {
        match self.call(Request::NetworkPrune)? {
            Response::NetworksPruned { names } => Ok(names),
            other => Err(unexpected(other)),
        }
    }

    pub fn network_connect(&mut self, c: NetworkConnect) -> Result<(), ClientError> {
        self.ack(Request::NetworkConnect {
            network: c.network,
            container: c.container,
            aliases: c.aliases,
            ipv4_address: c.ipv4_address,
        })
    }

    pub fn network_disconnect(
        &mut self,
        network: &str,
        container: &str,
        force: bool,
    ) -> Result<(), ClientError> {
        self.ack(Request::NetworkDisconnect {
            network: network.into(),
            container: container.into(),
            force,
        })
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use berth_protocol::frame::{read_frame, write_frame};
    use berth_protocol::{
        ApiError, ErrorKind, Hello, HelloReply, RequestEnvelope, ResponseEnvelope, PROTOCOL_VERSION,
    };
    use std::os::unix::net::UnixListener;

    /// An agent on a Unix socket that answers each request with what
    /// `reply` makes of it, and hands the requests it saw back.
    fn fake_agent(
        reply: fn(&Request) -> Result<Response, ApiError>,
        requests: usize,
    ) -> (
        tempfile::TempDir,
        Endpoint,
        std::thread::JoinHandle<Vec<Request>>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let agent = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let _: Hello = read_frame(&mut s).unwrap();
            write_frame(
                &mut s,
                &HelloReply {
                    version: PROTOCOL_VERSION,
                    error: None,
                    agent_version: "test".into(),
                },
            )
            .unwrap();
            let mut seen = Vec::new();
            for _ in 0..requests {
                let env: RequestEnvelope = read_frame(&mut s).unwrap();
                let result = reply(&env.request);
                write_frame(&mut s, &ResponseEnvelope { id: env.id, result }).unwrap();
                seen.push(env.request);
            }
            seen
        });
        (dir, Endpoint::Unix(path), agent)
    }

    #[test]
    fn verbs_build_their_requests_and_read_their_replies() {
        let (_dir, ep, agent) = fake_agent(
            |r| match r {
                Request::ContainerCreate(cfg) => Ok(Response::Created {
                    id: format!("id-of-{}", cfg.image),
                    warnings: vec!["w".into()],
                }),
                Request::ContainerWait { .. } => Ok(Response::Exited { code: 3 }),
                Request::NetworkPrune => Ok(Response::NetworksPruned {
                    names: vec!["n1".into()],
                }),
                Request::ContainerStop { .. } => Ok(Response::Removed(vec!["x".into()])),
                _ => Ok(Response::Ok),
            },
            4,
        );
        let mut e = Engine::open(&ep).unwrap();
        let created = e
            .container_create(ContainerConfig {
                image: "busybox".into(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            created,
            Created {
                id: "id-of-busybox".into(),
                warnings: vec!["w".into()]
            }
        );
        assert_eq!(e.container_wait("c1").unwrap(), 3);
        assert_eq!(e.network_prune().unwrap(), vec!["n1".to_string()]);
        // An acknowledgement carries nothing the caller uses.
        e.container_stop("c1", Some(2)).unwrap();
        let seen = agent.join().unwrap();
        assert!(matches!(&seen[1], Request::ContainerWait { id } if id == "c1"));
        assert!(matches!(
            &seen[3],
            Request::ContainerStop { id, timeout: Some(2) } if id == "c1"
        ));
    }

    #[test]
    fn a_reply_of_the_wrong_shape_or_an_error_is_a_client_error() {
        let (_dir, ep, agent) = fake_agent(
            |r| match r {
                Request::ContainerInspect { id } => Err(ApiError::new(
                    ErrorKind::NotFound,
                    format!("No such container: {id}"),
                )),
                _ => Ok(Response::Ok),
            },
            2,
        );
        let mut e = Engine::open(&ep).unwrap();
        // `Ok` where a list was due.
        let err = e.container_list(true).unwrap_err();
        assert!(matches!(err, ClientError::Unexpected(_)), "{err:?}");
        let err = e.container_inspect("nope").unwrap_err();
        assert_eq!(err.kind(), Some(ErrorKind::NotFound));
        assert_eq!(err.to_string(), "No such container: nope");
        agent.join().unwrap();
    }
}
