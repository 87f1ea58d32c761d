//! The agent's request server: one thread per connection, blocking I/O.
//! Works over any stream socket (Unix socket in native placement, vsock in
//! a guest).

use crate::engine::shim::AttachHello;
use crate::engine::Engine;
use crate::store::StoreError;
use berth_protocol::frame::{read_frame, write_frame, FrameError};
use berth_protocol::{
    AgentInfo, ApiError, ContainerStatus, ErrorKind, Hello, HelloReply, Request, RequestEnvelope,
    Response, ResponseEnvelope, PROTOCOL_VERSION,
};
use std::io::Write;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

pub use crate::conn::Conn;

fn store_err(e: StoreError) -> ApiError {
    let kind = match &e {
        StoreError::NoSuchImage(_) | StoreError::MissingBlob(_) => ErrorKind::NotFound,
        StoreError::Conflict(_) => ErrorKind::Conflict,
        StoreError::Io(_) => ErrorKind::Internal,
        _ => ErrorKind::InvalidArgument,
    };
    ApiError::new(kind, e.to_string())
}

/// Requests that take longer than this are logged at `info` (shown in a
/// guest's serial log by default), to find where time goes in an emulated
/// guest.
const SLOW_REQUEST: std::time::Duration = std::time::Duration::from_secs(2);

/// Logs, when dropped, a request that took longer than [`SLOW_REQUEST`].
struct SlowRequestLog {
    what: Option<String>,
    start: std::time::Instant,
}

impl SlowRequestLog {
    fn start(req: &Request) -> SlowRequestLog {
        let what = log::log_enabled!(log::Level::Info).then(|| {
            let d = format!("{req:?}");
            let name: String = d
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            name
        });
        SlowRequestLog {
            what,
            start: std::time::Instant::now(),
        }
    }
}

impl Drop for SlowRequestLog {
    fn drop(&mut self) {
        let took = self.start.elapsed();
        if let Some(what) = &self.what {
            if took >= SLOW_REQUEST {
                log::info!("{what} took {:.1} s", took.as_secs_f64());
            }
        }
    }
}

/// Serves one connection until the peer closes it.
pub fn serve_connection(engine: Arc<Engine>, mut conn: Box<dyn Conn>) {
    let hello: Hello = match read_frame(&mut conn) {
        Ok(h) => h,
        Err(_) => return,
    };
    let error = (hello.version != PROTOCOL_VERSION).then(|| {
        format!(
            "protocol version mismatch: client {} agent {}",
            hello.version, PROTOCOL_VERSION
        )
    });
    let reply = HelloReply {
        version: PROTOCOL_VERSION,
        error: error.clone(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
    };
    if write_frame(&mut conn, &reply).is_err() || error.is_some() {
        return;
    }
    loop {
        let env: RequestEnvelope = match read_frame(&mut conn) {
            Ok(e) => e,
            Err(FrameError::Closed) => return,
            Err(e) => {
                let _ = write_frame(
                    &mut conn,
                    &ResponseEnvelope {
                        id: 0,
                        result: Err(ApiError::new(ErrorKind::InvalidArgument, e.to_string())),
                    },
                );
                return;
            }
        };
        let id = env.id;
        let _timer = SlowRequestLog::start(&env.request);
        let respond = |conn: &mut Box<dyn Conn>, result: Result<Response, ApiError>| {
            write_frame(conn, &ResponseEnvelope { id, result }).is_ok()
        };
        match env.request {
            Request::PutBlob { digest, size } => {
                if crate::store::digest_hex(&digest).is_err() {
                    respond(
                        &mut conn,
                        Err(ApiError::new(
                            ErrorKind::InvalidArgument,
                            format!("invalid digest {digest:?}"),
                        )),
                    );
                    return;
                }
                if !respond(&mut conn, Ok(Response::Ready)) {
                    return;
                }
                let result = engine
                    .images
                    .put_blob(&digest, size, &mut conn)
                    .map(|_| Response::BlobStored { digest })
                    .map_err(store_err);
                respond(&mut conn, result);
                // The stream may be mid-blob after an error: end it.
                return;
            }
            Request::Attach {
                id: cid,
                stdin,
                start,
                tty_size,
            } => {
                attach(
                    &engine,
                    conn,
                    id,
                    &cid,
                    AttachHello { stdin, tty_size },
                    start,
                );
                return;
            }
            Request::Logs(opts) => {
                logs(&engine, conn, id, opts);
                return;
            }
            Request::Events(opts) => {
                events(&engine, conn, id, opts);
                return;
            }
            Request::Exec {
                id: cid,
                config,
                detach: false,
                tty_size,
            } => {
                let stdin = config.stdin;
                match engine.containers.exec(&cid, config, true) {
                    Ok(exec_id) => proxy(
                        conn,
                        id,
                        &crate::engine::exec::exec_socket(engine.layout(), &exec_id),
                        AttachHello { stdin, tty_size },
                        &cid,
                    ),
                    Err(e) => {
                        respond(&mut conn, Err(e.into()));
                    }
                }
                return;
            }
            Request::BlobGet { digest } => {
                let mut f = match engine.images.blob_file(&digest) {
                    Ok(f) => f,
                    Err(e) => {
                        respond(&mut conn, Err(store_err(e)));
                        continue;
                    }
                };
                if !respond(&mut conn, Ok(Response::Ready)) {
                    return;
                }
                let _ = std::io::copy(&mut f, &mut conn);
                let _ = conn.flush();
                conn.shutdown_write();
                return;
            }
            Request::PortConnect { port } => {
                port_connect(&engine, conn, id, port);
                return;
            }
            Request::PortConnectUdp { port } => {
                port_connect_udp(conn, id, port);
                return;
            }
            Request::CopyFrom { id: cid, path } => {
                match crate::engine::copy::source(&engine, &cid, &path) {
                    Err(e) => {
                        respond(&mut conn, Err(e.into()));
                    }
                    Ok(src) => {
                        if respond(&mut conn, Ok(Response::Ready)) {
                            // The client sees a short tar if this fails.
                            let _ = src.send(&mut conn);
                            let _ = conn.flush();
                            conn.shutdown_write();
                        }
                    }
                }
                return;
            }
            Request::CopyTo {
                id: cid,
                path,
                build,
            } => {
                match crate::engine::copy::target(&engine, &cid, &path, build) {
                    Err(e) => {
                        respond(&mut conn, Err(e.into()));
                    }
                    Ok(target) => {
                        if respond(&mut conn, Ok(Response::Ready)) {
                            let result = target.receive(&mut conn);
                            respond(&mut conn, wire(result.map(|()| Response::Ok)));
                        }
                    }
                }
                return;
            }
            other => {
                let result = handle(&engine, other);
                if !respond(&mut conn, result) {
                    return;
                }
            }
        }
    }
}

/// The server edge: an engine error becomes the wire error here (one
/// conversion, `From<engine::Error> for ApiError`).
fn wire<T>(r: Result<T, crate::engine::Error>) -> Result<T, ApiError> {
    r.map_err(ApiError::from)
}

fn handle(engine: &Engine, req: Request) -> Result<Response, ApiError> {
    let c = &engine.containers;
    match req {
        Request::Info => Ok(Response::Info(info(engine))),
        Request::KernelCounters => Ok(Response::KernelCounters(crate::kernel_counters::read())),
        Request::DiskUsage {
            containers,
            volumes,
        } => Ok(Response::DiskUsage(c.disk_usage(containers, volumes))),
        Request::BlobsPresent { digests } => Ok(Response::BlobsPresent {
            present: digests
                .into_iter()
                .filter(|d| engine.images.has_blob(d))
                .collect(),
        }),
        Request::ImageCommit(commit) => engine
            .images
            .commit(&commit)
            .map(Response::Image)
            .map_err(store_err),
        Request::ImageList => engine
            .images
            .list()
            .map(Response::Images)
            .map_err(store_err),
        Request::ImageInspect { reference } => {
            let id = engine.images.resolve(&reference).map_err(store_err)?;
            engine
                .images
                .summary(&id)
                .map(Response::Image)
                .map_err(store_err)
        }
        Request::ImageTag { source, target } => engine
            .images
            .tag(&source, &target)
            .map(|_| Response::Ok)
            .map_err(store_err),
        Request::ImageEvent {
            action,
            reference,
            name,
        } => {
            engine.images.log_event(action.as_str(), &reference, &name);
            Ok(Response::Ok)
        }
        Request::ImageRemove { reference, force } => engine
            .images
            .remove(&reference, force, &|id| c.uses_image(id))
            .map(Response::Removed)
            .map_err(store_err),
        Request::ContainerCreate(cfg) => wire(
            c.create(&engine.images, *cfg)
                .map(|(id, warnings)| Response::Created { id, warnings }),
        ),
        Request::ContainerStart { id } => wire(c.start(&id, false).map(|_| Response::Ok)),
        Request::ContainerRestart { id, timeout } => wire(
            c.restart(&engine.images, &id, timeout)
                .map(|_| Response::Ok),
        ),
        Request::ContainerWait { id } => wire(c.wait(&id).map(|code| Response::Exited { code })),
        Request::ContainerList { all } => {
            let mut list = c.list(all);
            // Each row's published ports: one list answers `ps` whole.
            for s in &mut list {
                s.ports = Some(if s.status == ContainerStatus::Running {
                    c.published_ports(&s.id)
                } else {
                    Vec::new()
                });
            }
            Ok(Response::Containers(list))
        }
        Request::ContainerInspect { id } => {
            wire(c.inspect(&id).map(|d| Response::Container(Box::new(d))))
        }
        Request::ContainerKill { id, signal } => wire(c.kill(&id, signal).map(|_| Response::Ok)),
        Request::ContainerRemove { id, force, volumes } => wire(
            c.remove(&id, force, volumes)
                .map(|id| Response::Removed(vec![id])),
        ),
        Request::Shutdown => {
            if std::process::id() != 1 {
                return Err(ApiError::new(
                    ErrorKind::InvalidArgument,
                    "shutdown is only for guest agents",
                ));
            }
            std::thread::spawn(|| {
                std::thread::sleep(std::time::Duration::from_millis(50));
                crate::machine::power_off()
            });
            Ok(Response::Ok)
        }
        Request::ContainerStop { id, timeout } => wire(
            c.stop(&engine.images, &id, timeout)
                .map(|id| Response::Removed(vec![id])),
        ),
        Request::Exec { id, config, .. } => {
            wire(c.exec(&id, config, false).map(|id| Response::Created {
                id,
                warnings: Vec::new(),
            }))
        }
        Request::ContainerRename { id, name } => wire(c.rename(&id, &name).map(|_| Response::Ok)),
        Request::ContainerPause { id } => wire(c.pause(&id).map(|_| Response::Ok)),
        Request::ContainerUnpause { id } => wire(c.unpause(&id).map(|_| Response::Ok)),
        Request::ContainerTop { id } => wire(c.top(&id).map(Response::Top)),
        Request::ContainerChanges { id } => {
            wire(crate::engine::commit::changes(engine, &id).map(Response::Changes))
        }
        Request::ContainerStats { id } => wire(c.stats(&id).map(Response::Stats)),
        Request::ContainerUpdate {
            id,
            memory,
            nano_cpus,
            pids_limit,
            restart,
        } => wire(
            c.update(&id, memory, nano_cpus, pids_limit, restart)
                .map(|_| Response::Ok),
        ),
        Request::ContainerPrune => Ok(Response::Removed(c.prune())),
        Request::ContainerCommit(opts) => {
            wire(crate::engine::commit::commit(engine, &opts).map(Response::Image))
        }
        Request::ImageDerive(opts) => {
            wire(crate::engine::commit::derive(engine, &opts).map(Response::Image))
        }
        Request::BuildCacheGet { key } => {
            wire(crate::engine::commit::cache_get(engine, &key).map(Response::Image))
        }
        Request::CloneInit {
            unix_time_ns,
            seed,
            hostname,
        } => crate::machine::clone_init(unix_time_ns, &seed, &hostname)
            .map(|_| Response::Ok)
            .map_err(|e| ApiError::new(ErrorKind::InvalidArgument, e)),
        Request::VolumeCreate {
            name,
            driver,
            labels,
            options,
        } => wire(
            c.volume_create(name.as_deref(), driver.as_deref(), &labels, &options)
                .map(Response::Volume),
        ),
        Request::VolumeList => Ok(Response::Volumes(c.volume_list())),
        Request::VolumeInspect { name } => wire(c.volume_inspect(&name).map(Response::Volume)),
        Request::VolumeRemove { name, force } => {
            wire(c.volume_remove(&name, force).map(|()| Response::Ok))
        }
        Request::VolumePrune { all } => {
            let (names, reclaimed) = c.volume_prune(all);
            Ok(Response::VolumesPruned { names, reclaimed })
        }
        Request::NetworkCreate {
            name,
            driver,
            subnet,
            gateway,
            internal,
            labels,
            options,
        } => wire(
            c.network_create(&crate::engine::net::store::NetworkSpec {
                name: &name,
                driver: driver.as_deref(),
                subnet: subnet.as_deref(),
                gateway: gateway.as_deref(),
                internal,
                labels: &labels,
                options: &options,
            })
            .map(Response::Network),
        ),
        Request::NetworkList => wire(c.network_list().map(Response::Networks)),
        Request::NetworkInspect { name } => wire(c.network_inspect(&name).map(Response::Network)),
        Request::NetworkRemove { name } => wire(c.network_remove(&name).map(|_| Response::Ok)),
        Request::NetworkPrune => Ok(Response::NetworksPruned {
            names: c.network_prune(),
        }),
        Request::NetworkConnect {
            network,
            container,
            aliases,
            ipv4_address,
        } => wire(
            c.network_connect(&network, &container, &aliases, ipv4_address.as_deref())
                .map(|()| Response::Ok),
        ),
        Request::NetworkDisconnect {
            network,
            container,
            force,
        } => wire(
            c.network_disconnect(&network, &container, force)
                .map(|()| Response::Ok),
        ),
        Request::ContainerPorts { id } => wire(c.ports(&id).map(Response::Ports)),
        Request::PublishedPorts => Ok(Response::Ports(
            c.list(false)
                .iter()
                .flat_map(|s| c.published_ports(&s.id))
                .collect(),
        )),
        Request::ImageDiskAttach { device } => {
            if std::process::id() != 1 {
                return Err(ApiError::new(
                    ErrorKind::InvalidArgument,
                    "image disks are only for guest agents",
                ));
            }
            crate::store::image_disk::attach(engine.images.layout(), &device)
                .map(|n| {
                    crate::machine::log(&format!("image disk {device}: {n} layers linked"));
                    Response::Ok
                })
                .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))
        }
        Request::SharesRelease => crate::shares::release()
            .map(|()| Response::Ok)
            .map_err(|e| ApiError::new(ErrorKind::Internal, e)),
        Request::SharesRemount => crate::shares::remount(engine.layout().root())
            .map(|()| Response::Ok)
            .map_err(|e| ApiError::new(ErrorKind::Internal, e)),
        Request::SharesMount { shares } => {
            crate::shares::mount_requested(&shares, engine.layout().root())
                .map(|()| Response::Ok)
                .map_err(|e| ApiError::new(ErrorKind::InvalidArgument, e))
        }
        Request::PutBlob { .. }
        | Request::Attach { .. }
        | Request::Logs(_)
        | Request::Events(_)
        | Request::CopyFrom { .. }
        | Request::BlobGet { .. }
        | Request::CopyTo { .. }
        | Request::PortConnect { .. }
        | Request::PortConnectUdp { .. } => Err(ApiError::new(
            ErrorKind::InvalidArgument,
            "stream request in control position",
        )),
    }
}

fn info(engine: &Engine) -> AgentInfo {
    let uts = nix::sys::utsname::uname().ok();
    AgentInfo {
        agent_version: env!("CARGO_PKG_VERSION").into(),
        kernel_release: uts
            .as_ref()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        arch: std::env::consts::ARCH.into(),
        data_root: engine.layout().root().display().to_string(),
        cgroup_version: if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            2
        } else {
            1
        },
        images: engine.images.count(),
        containers: engine.containers.count(),
        quirks: crate::quirks::Quirks::detect().names(),
        workarounds: crate::quirks::counts(engine.layout().root()),
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
    }
}

/// Connects the client to the container's shim and proxies both ways.
fn attach(
    engine: &Engine,
    mut conn: Box<dyn Conn>,
    id: u64,
    key: &str,
    hello_msg: AttachHello,
    start: bool,
) {
    let fail = |conn: &mut Box<dyn Conn>, e: ApiError| {
        let _ = write_frame(conn, &ResponseEnvelope { id, result: Err(e) });
    };
    let rec = match engine.containers.resolve(key) {
        Ok(r) => r,
        Err(e) => return fail(&mut conn, e.into()),
    };
    crate::engine::events::container(engine.layout().root(), &rec, "attach", &[]);
    if start {
        if let Err(e) = engine.containers.start(&rec.id, true) {
            return fail(&mut conn, e.into());
        }
    }
    let sock = engine.layout().attach_socket(&rec.id);
    proxy(conn, id, &sock, hello_msg, &rec.id)
}

/// Connects the client to a monitor's attach socket and proxies both ways.
fn proxy(
    mut conn: Box<dyn Conn>,
    id: u64,
    sock: &std::path::Path,
    hello_msg: AttachHello,
    container: &str,
) {
    let fail = |conn: &mut Box<dyn Conn>, e: ApiError| {
        let _ = write_frame(conn, &ResponseEnvelope { id, result: Err(e) });
    };
    let mut shim = match UnixStream::connect(sock) {
        Ok(s) => s,
        Err(_) => {
            return fail(
                &mut conn,
                ApiError::new(
                    ErrorKind::Conflict,
                    format!("container {container} is not running"),
                ),
            )
        }
    };
    let mut hello = serde_json::to_vec(&hello_msg).unwrap_or_default();
    hello.push(b'\n');
    if shim.write_all(&hello).is_err() {
        return fail(
            &mut conn,
            ApiError::new(ErrorKind::Internal, "attach failed"),
        );
    }
    if write_frame(
        &mut conn,
        &ResponseEnvelope {
            id,
            result: Ok(Response::Ready),
        },
    )
    .is_err()
    {
        return;
    }
    let (Ok(mut conn_r), Ok(mut shim_w)) = (conn.try_clone_conn(), shim.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut conn_r, &mut shim_w);
        let _ = shim_w.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut shim, &mut conn);
    let _ = conn.flush();
    conn.shutdown_write();
    drop(up);
}

/// Streams a container's stored log (and, with `follow`, new entries until
/// the container stops) as mux frames, then an `Exit` frame.
fn logs(engine: &Engine, mut conn: Box<dyn Conn>, id: u64, o: berth_protocol::LogsOptions) {
    use crate::engine::logs::{entry_nanos, read_all, LogEntry};
    use berth_protocol::mux::{self, Kind};
    // docker's daemon: a driver that keeps nothing has nothing to read.
    let rec = match engine.containers.resolve(&o.id).and_then(|r| {
        if r.config.log_driver.as_deref() == Some("none") {
            Err(crate::engine::error::Error::invalid(
                "configured logging driver does not support reading",
            ))
        } else {
            Ok(r)
        }
    }) {
        Ok(r) => r,
        Err(e) => {
            let _ = write_frame(
                &mut conn,
                &ResponseEnvelope {
                    id,
                    result: Err(e.into()),
                },
            );
            return;
        }
    };
    if write_frame(
        &mut conn,
        &ResponseEnvelope {
            id,
            result: Ok(Response::Ready),
        },
    )
    .is_err()
    {
        return;
    }
    let path = crate::engine::files::ContainerPaths::new(engine.layout(), &rec.id).log;
    let send = |conn: &mut Box<dyn Conn>, e: &LogEntry| -> bool {
        let t = entry_nanos(e);
        if let (Some(since), Some(t)) = (o.since, t) {
            if t < since {
                return true;
            }
        }
        if let (Some(until), Some(t)) = (o.until, t) {
            if t >= until {
                return true;
            }
        }
        let kind = if e.stream == "stderr" {
            Kind::Stderr
        } else {
            Kind::Stdout
        };
        let data = if o.timestamps {
            format!("{} {}", e.time, e.log)
        } else {
            e.log.clone()
        };
        mux::write_frame(conn, kind, data.as_bytes()).is_ok()
    };
    let (mut all, follower) = read_all(&path);
    let mut follower = o.follow.then_some(follower);
    if let Some(n) = o.tail {
        let skip = all.len().saturating_sub(n as usize);
        all.drain(..skip);
    }
    for e in &all {
        if !send(&mut conn, e) {
            return;
        }
    }
    if let Some(f) = follower.as_mut() {
        let past_until = || {
            o.until
                .is_some_and(|u| chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) >= u)
        };
        loop {
            let running = engine.containers.is_running(&rec.id);
            for e in f.poll() {
                if !send(&mut conn, &e) {
                    return;
                }
            }
            if !running || past_until() || !engine.layout().container(&rec.id).exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    let _ = mux::write_frame(&mut conn, Kind::Exit, &0i32.to_be_bytes());
    let _ = conn.flush();
}

/// Joins a host connection to a published port where the agent runs, for
/// the host's port forwarder (VM placements). The agent connects straight
/// to the container's address the port's proxy would relay to
/// ([`crate::engine::net::direct`]), from the namespace the proxy connects
/// from; a port it finds no container for is joined to `127.0.0.1:port`
/// as before (its proxy, or whatever listens there). The host → guest
/// direction runs on a kept thread ([`RELAYS`]), the other here.
fn port_connect(engine: &Engine, mut conn: Box<dyn Conn>, id: u64, port: u16) {
    let connected = match crate::engine::net::direct::target(engine, port) {
        Some(target) => std::net::TcpStream::connect_timeout(&target.into(), CONNECT_TIMEOUT),
        None => std::net::TcpStream::connect((std::net::Ipv4Addr::LOCALHOST, port)),
    };
    let tcp = match connected {
        Ok(t) => t,
        Err(e) => {
            let _ = write_frame(
                &mut conn,
                &ResponseEnvelope {
                    id,
                    result: Err(ApiError::new(
                        ErrorKind::NotFound,
                        format!("connecting to published port {port}: {e}"),
                    )),
                },
            );
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    if write_frame(
        &mut conn,
        &ResponseEnvelope {
            id,
            result: Ok(Response::Ready),
        },
    )
    .is_err()
    {
        return;
    }
    let (Ok(mut conn_r), Ok(mut tcp_w)) = (conn.try_clone_conn(), tcp.try_clone()) else {
        return;
    };
    // Both ways with splice(2) where the kernel takes it: one kernel copy
    // per byte instead of two through a buffer here.
    use std::os::fd::AsRawFd;
    let tcp_fd = Some(tcp.as_raw_fd());
    let up = RELAYS.run(move || {
        let (from_fd, to_fd) = (conn_r.stream_fd(), Some(tcp_w.as_raw_fd()));
        let _ = crate::conn::pump(&mut conn_r, from_fd, &mut tcp_w, to_fd);
        let _ = tcp_w.shutdown(std::net::Shutdown::Write);
    });
    if up.is_err() {
        // No thread for the host's bytes: end the connection rather than
        // leave the container waiting for a request that never comes.
        let _ = tcp.shutdown(std::net::Shutdown::Both);
        conn.shutdown_write();
        return;
    }
    let mut tcp_r = tcp;
    let conn_fd = conn.stream_fd();
    let _ = crate::conn::pump(&mut tcp_r, tcp_fd, &mut conn, conn_fd);
    let _ = conn.flush();
    conn.shutdown_write();
}

/// How long [`port_connect`] waits for the container to accept (the
/// port proxy's bound).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The threads of [`port_connect`]'s host → container direction. Each
/// runs only a splice loop, or a relay whose buffer is on the heap: a
/// small stack is plenty.
static RELAYS: crate::workers::Pool = crate::workers::Pool::new("port-relay", Some(64 * 1024));

/// Joins a host peer's UDP flow to a published UDP port's proxy where the
/// agent runs (VM placements): a socket of its own, connected to
/// `127.0.0.1:port`, so replies come back to this stream alone. Datagrams
/// travel in [`berth_protocol::datagram`] frames; a bad frame from the host
/// ends the flow. Ends when the host closes the stream.
fn port_connect_udp(mut conn: Box<dyn Conn>, id: u64, port: u16) {
    use berth_protocol::datagram::{read_datagram, write_datagram, MAX_DATAGRAM};
    use std::sync::atomic::{AtomicBool, Ordering};
    let socket = std::net::UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, 0)).and_then(|s| {
        s.connect((std::net::Ipv4Addr::LOCALHOST, port))?;
        // The receiving side looks at `done` this often.
        s.set_read_timeout(Some(std::time::Duration::from_secs(1)))?;
        Ok(s)
    });
    let socket = match socket {
        Ok(s) => s,
        Err(e) => {
            let _ = write_frame(
                &mut conn,
                &ResponseEnvelope {
                    id,
                    result: Err(ApiError::new(
                        ErrorKind::NotFound,
                        format!("connecting to published port {port}/udp: {e}"),
                    )),
                },
            );
            return;
        }
    };
    if write_frame(
        &mut conn,
        &ResponseEnvelope {
            id,
            result: Ok(Response::Ready),
        },
    )
    .is_err()
    {
        return;
    }
    let (Ok(mut conn_r), Ok(up_socket)) = (conn.try_clone_conn(), socket.try_clone()) else {
        return;
    };
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let up_done = std::sync::Arc::clone(&done);
    let up = std::thread::spawn(move || {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        while let Ok(Some(n)) = read_datagram(&mut conn_r, &mut buf) {
            // Nothing listening yet (ECONNREFUSED from an earlier
            // datagram's ICMP) is the client's to retry, as with UDP.
            let _ = up_socket.send(&buf[..n]);
        }
        up_done.store(true, Ordering::SeqCst);
    });
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while !done.load(Ordering::SeqCst) {
        match socket.recv(&mut buf) {
            Ok(n) => {
                if write_datagram(&mut conn, &buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                        | std::io::ErrorKind::ConnectionRefused
                ) => {}
            Err(_) => break,
        }
    }
    conn.shutdown_write();
    let _ = up.join();
}

/// Streams engine events as JSON lines: the stored ones from `since`, then
/// new ones until `until` has passed or the client went away.
fn events(engine: &Engine, mut conn: Box<dyn Conn>, id: u64, o: berth_protocol::EventsOptions) {
    use crate::engine::events::{check_times, matches, watch_peer, Reader, Waiter};
    let now = || chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let result = check_times(o.since, o.until)
        .map(|_| Response::Ready)
        .map_err(|e| ApiError::new(ErrorKind::InvalidArgument, e));
    let ok = result.is_ok();
    if write_frame(&mut conn, &ResponseEnvelope { id, result }).is_err() || !ok {
        return;
    }
    let gone = match conn.try_clone_conn() {
        Ok(r) => watch_peer(Box::new(r)),
        Err(_) => return,
    };
    let start = now();
    // Set up before the first read, so no append between the two is missed.
    let waiter = Waiter::new(engine.layout().root());
    let mut reader = Reader::open(engine.layout().root());
    // Without `since`, only what happens from now on (as docker).
    let since = o.since.unwrap_or(start);
    let wanted = |e: &berth_protocol::Event| {
        e.time_nano >= since && o.until.is_none_or(|u| e.time_nano <= u) && matches(&o.filters, e)
    };
    loop {
        let past_until = o.until.is_some_and(|u| now() > u);
        for e in reader.poll().iter().filter(|e| wanted(e)) {
            let Ok(mut line) = serde_json::to_vec(e) else {
                continue;
            };
            line.push(b'\n');
            if conn.write_all(&line).and_then(|_| conn.flush()).is_err() {
                return;
            }
        }
        if past_until || gone.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        // Woken by an append; the timeout bounds how late a closed peer or
        // a passed `until` is noticed. Long, because each wake-up of an
        // idle follower (the machine's port forwarder keeps one open) is
        // guest-kernel work, emulated on kvm_pvm hosts.
        let left = o.until.map_or(i64::MAX, |u| u.saturating_sub(now()));
        let wait_ms = (left.max(0) / 1_000_000).clamp(1, 30_000) as u64;
        waiter.wait(std::time::Duration::from_millis(wait_ms));
    }
    let _ = conn.flush();
    conn.shutdown_write();
}
