//! Published ports of containers in the machine VM, on the host.
//!
//! In the VM the container's shim binds each `-p` port on the guest's own
//! addresses, as in native placement. On the host, one long-lived
//! forwarder per machine (`berth machine port-forwarder`, started with the
//! machine and gone with its VMM) binds the same host address and port and
//! joins each connection to the guest's port over vsock (the agent's
//! `PortConnect` stream). It follows the engine's container events, so
//! ports come and go with their containers, also while no `berth` command
//! runs and after a restart policy brings a container back.
//!
//! A command that starts a container with published ports asks the
//! forwarder to catch up at once over `<machine>/ports.sock` (`sync`), and
//! hears which host ports could not be bound.
//!
//! Only TCP is forwarded so far; UDP ports are bound in the guest only.

use crate::client::Endpoint;
use crate::engine::Engine;
use crate::platform::{UnixListener, UnixStream};
use anyhow::{Context, Result};
use berth_protocol::{EventsOptions, PortProto, PublishedPort};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the forwarder, with no event coming, checks that the
/// machine's VMM still runs. Only the host is asked: a periodic catch-up
/// with the engine (a vsock connection and a container listing each time)
/// was most of an idle machine's CPU on an emulated guest kernel, 110 of
/// 145 VMM ticks a minute, and it caught nothing the event stream, the
/// reconnect and `sync` do not.
const ALIVE_CHECK: Duration = Duration::from_secs(10);

/// One host listener: the address it binds and the guest port behind it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    addr: SocketAddr,
    guest_port: u16,
}

struct Listening {
    stop: Arc<AtomicBool>,
    local: SocketAddr,
}

/// The forwarder's state: what it binds now, and the ports it could not
/// bind (with the error) at the last reconcile.
struct Forwarder {
    endpoint: Endpoint,
    bound: Mutex<BTreeMap<Key, Listening>>,
    failed: Mutex<BTreeMap<String, String>>,
}

/// `<machine>/ports.sock`, `<machine>/ports.pid`.
pub fn paths(machine_dir: &Path) -> (PathBuf, PathBuf) {
    (
        machine_dir.join("ports.sock"),
        machine_dir.join("ports.pid"),
    )
}

fn host_addrs(p: &PublishedPort) -> Option<SocketAddr> {
    let ip: IpAddr = p.host_ip.parse().ok()?;
    Some(SocketAddr::new(ip, p.host_port))
}

impl Forwarder {
    /// Ports the engine publishes now.
    fn wanted(&self) -> Result<BTreeSet<Key>> {
        let mut c = Engine::open(&self.endpoint)?;
        let ports = c.published_ports()?;
        Ok(ports
            .iter()
            .filter(|p| p.proto == PortProto::Tcp)
            .filter_map(|p| {
                Some(Key {
                    addr: host_addrs(p)?,
                    guest_port: p.host_port,
                })
            })
            .collect())
    }

    /// Binds what is wanted and not bound, closes what is bound and no
    /// longer wanted.
    fn reconcile(self: &Arc<Self>) -> Result<()> {
        let wanted = self.wanted()?;
        let mut bound = self.bound.lock().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<Key> = bound
            .keys()
            .filter(|k| !wanted.contains(k))
            .cloned()
            .collect();
        for k in gone {
            eprintln!("{} unpublish {}", stamp(), k.addr);
            if let Some(l) = bound.remove(&k) {
                l.stop.store(true, Ordering::SeqCst);
                // Wake its accept(); it sees the flag and returns.
                let _ = TcpStream::connect_timeout(&wake_addr(l.local), Duration::from_millis(200));
            }
        }
        let mut failed = BTreeMap::new();
        for k in wanted {
            if bound.contains_key(&k) {
                continue;
            }
            match bind(k.addr) {
                Ok(l) => {
                    let local = l.local_addr().unwrap_or(k.addr);
                    let stop = Arc::new(AtomicBool::new(false));
                    let me = Arc::clone(self);
                    let st = Arc::clone(&stop);
                    let guest = k.guest_port;
                    std::thread::spawn(move || me.accept_loop(l, guest, st));
                    eprintln!("{} publish {} -> guest port {guest}", stamp(), k.addr);
                    bound.insert(k, Listening { stop, local });
                }
                Err(e) => {
                    eprintln!("{} cannot bind {}: {e}", stamp(), k.addr);
                    failed.insert(k.addr.to_string(), e.to_string());
                }
            }
        }
        *self.failed.lock().unwrap_or_else(|e| e.into_inner()) = failed;
        Ok(())
    }

    fn accept_loop(self: Arc<Self>, l: TcpListener, guest_port: u16, stop: Arc<AtomicBool>) {
        for conn in l.incoming() {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let Ok(conn) = conn else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let ep = self.endpoint.clone();
            std::thread::spawn(move || {
                let _ = forward(conn, &ep, guest_port);
            });
        }
    }
}

/// Where to connect to wake a listener bound to `a` (an unspecified
/// address is reached on loopback).
fn wake_addr(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V4(v) if v.is_unspecified() => SocketAddr::from(([127, 0, 0, 1], a.port())),
        IpAddr::V6(v) if v.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port()))
        }
        _ => a,
    }
}

/// Binds like docker: SO_REUSEADDR, and an IPv6 socket for `::` that takes
/// IPv6 only (`0.0.0.0` is bound beside it).
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let domain = if addr.is_ipv6() {
        socket2::Domain::IPV6
    } else {
        socket2::Domain::IPV4
    };
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// One host connection, joined to the guest's port.
fn forward(client: TcpStream, ep: &Endpoint, guest_port: u16) -> Result<()> {
    let _ = client.set_nodelay(true);
    let conn = Engine::open(ep)?;
    let guest = conn.port_connect(guest_port)?;
    let (mut c_r, mut g_w) = (client.try_clone()?, guest.try_clone()?);
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c_r, &mut g_w);
        let _ = g_w.shutdown(Shutdown::Write);
    });
    let (mut g_r, mut c_w) = (guest, client);
    let _ = std::io::copy(&mut g_r, &mut c_w);
    let _ = c_w.shutdown(Shutdown::Write);
    let _ = up.join();
    Ok(())
}

/// Runs the forwarder for the machine at `machine_dir` until its VMM is
/// gone (`vmm_alive` says).
pub fn serve(machine_dir: &Path, endpoint: Endpoint, vmm_alive: impl Fn() -> bool) -> Result<()> {
    let (sock, pid_file) = paths(machine_dir);
    let _ = std::fs::remove_file(&sock);
    let control =
        UnixListener::bind(&sock).with_context(|| format!("binding {}", sock.display()))?;
    std::fs::write(&pid_file, std::process::id().to_string())?;
    let fwd = Arc::new(Forwarder {
        endpoint,
        bound: Mutex::new(BTreeMap::new()),
        failed: Mutex::new(BTreeMap::new()),
    });
    // `sync`: reconcile now and answer with what failed, one
    // `ADDR\tERROR` line each, then `ok`.
    {
        let fwd = Arc::clone(&fwd);
        std::thread::spawn(move || {
            for s in control.incoming().flatten() {
                let fwd = Arc::clone(&fwd);
                std::thread::spawn(move || {
                    let mut s = s;
                    let mut line = String::new();
                    if let Ok(r) = s.try_clone() {
                        let _ = BufReader::new(r).read_line(&mut line);
                    }
                    let mut out = String::new();
                    if let Err(e) = fwd.reconcile() {
                        out.push_str(&format!("error\t{e}\n"));
                    }
                    for (a, e) in fwd.failed.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                        out.push_str(&format!("{a}\t{e}\n"));
                    }
                    out.push_str("ok\n");
                    let _ = s.write_all(out.as_bytes());
                });
            }
        });
    }
    // Follow container events; reconcile on each, and after reconnecting.
    while vmm_alive() {
        if let Err(e) = fwd.reconcile() {
            eprintln!("{} engine not reachable: {e:#}", stamp());
        }
        let stream = Engine::open(&fwd.endpoint).and_then(|c| {
            c.events(EventsOptions {
                since: None,
                until: None,
                filters: BTreeMap::from([("type".to_string(), vec!["container".to_string()])]),
            })
        });
        let Ok(stream) = stream else {
            std::thread::sleep(Duration::from_secs(1));
            continue;
        };
        eprintln!("{} following container events", stamp());
        let _ = fwd.reconcile();
        // A restarting machine ends the stream; the reconnect above
        // catches up. While the stream is quiet, nothing is asked of the
        // guest.
        let _ = stream.set_read_timeout(Some(ALIVE_CHECK));
        let mut lines = BufReader::new(stream);
        let mut line = String::new();
        loop {
            line.clear();
            match lines.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) => {
                    if line.contains("\"start\"")
                        || line.contains("\"die\"")
                        || line.contains("\"destroy\"")
                    {
                        let _ = fwd.reconcile();
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if !vmm_alive() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        eprintln!("{} event stream ended", stamp());
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("{} the machine's VMM is gone; exiting", stamp());
    let _ = std::fs::remove_file(&sock);
    let _ = std::fs::remove_file(&pid_file);
    Ok(())
}

fn stamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Asks a running forwarder to catch up; returns the host addresses it
/// could not bind, with their errors. `None` when no forwarder answers.
pub fn sync(machine_dir: &Path) -> Option<Vec<(String, String)>> {
    let (sock, _) = paths(machine_dir);
    let mut s = UnixStream::connect(sock).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    s.write_all(b"sync\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let mut out = Vec::new();
    for l in text.lines() {
        if l == "ok" {
            return Some(out);
        }
        if let Some((a, e)) = l.split_once('\t') {
            out.push((a.to_string(), e.to_string()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_addresses() {
        assert_eq!(
            wake_addr("0.0.0.0:80".parse().unwrap()),
            "127.0.0.1:80".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            wake_addr("[::]:80".parse().unwrap()),
            "[::1]:80".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            wake_addr("127.0.0.2:80".parse().unwrap()),
            "127.0.0.2:80".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn bind_refuses_a_port_in_use() {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let e = bind(a.local_addr().unwrap()).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
    }
}
