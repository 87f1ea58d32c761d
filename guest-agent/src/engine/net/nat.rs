//! Egress NAT and network isolation for bridge networks, with nftables: the
//! rules are generated here and applied by running `nft -f -`, one
//! transaction per change, so a bridge's rules are replaced atomically.
//!
//! Each bridge has its own table, `table ip berth-<bridge>` (the name made a
//! valid nft identifier), with the semantics of dockerd's rules:
//! - `postrouting` (nat, srcnat): masquerade what comes from the subnet and
//!   leaves by another interface than the bridge (none on internal networks);
//! - `forward` (filter, policy accept): drop traffic between this bridge and
//!   any other berth bridge (all are named `berth0` or `berth-…`, matched as
//!   `berth*`); accept replies and what leaves the bridge. On an internal
//!   network, drop everything entering or leaving the bridge except traffic
//!   from the bridge to itself.
//!
//! Limitation: nftables runs every base chain registered on a hook, and an
//! accept ends only its own chain while a drop anywhere is final. A host
//! whose iptables FORWARD policy is DROP (dockerd with iptables does this)
//! or another firewall that drops forwarded traffic will still drop berth's
//! containers' egress, whatever this table accepts; on such a host (if
//! `br_netfilter` is loaded, as dockerd does) even traffic between
//! containers on one bridge goes through that FORWARD chain. The host's
//! firewall must let `berth*` interfaces forward (e.g. rules in dockerd's
//! DOCKER-USER chain).

// Wired into the engine by the network integration; until then only the
// tests use this module.

use std::fmt::Write as _;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

/// The prefix of every table berth owns.
const TABLE_PREFIX: &str = "berth-";
/// Where `nft` lives when it is not on PATH (daemons often run with a PATH
/// without the sbin directories).
const NFT_DIRS: [&str; 4] = ["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin"];
/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;

/// What went wrong installing or removing nftables rules.
#[derive(Debug, thiserror::Error)]
pub enum NatError {
    /// No `nft` binary on this system.
    #[error("bridge networks need nftables: install the nftables package (the nft command)")]
    NoNft,
    /// A bridge name that cannot be an interface name or be quoted in a
    /// ruleset (`"`, `\`, `*`, whitespace, control characters).
    #[error("invalid bridge name {0:?} for nftables rules")]
    InvalidBridge(String),
    /// A subnet that is not IPv4 CIDR notation.
    #[error("invalid IPv4 subnet {0:?} (expected CIDR notation, e.g. 172.18.0.0/16)")]
    InvalidSubnet(String),
    /// `nft` could not be run.
    #[error("run {program:?}: {source}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `nft` ran and failed.
    #[error("nft {action} failed ({status}): {stderr}")]
    Nft {
        action: String,
        status: ExitStatus,
        stderr: String,
    },
}

/// The rules of one bridge network.
#[derive(Debug, Clone)]
pub struct BridgeRules<'a> {
    pub bridge: &'a str,
    /// IPv4 CIDR, e.g. "172.18.0.0/16".
    pub subnet: &'a str,
    /// No egress: nothing enters or leaves the bridge except to itself.
    pub internal: bool,
}

/// Installs (or replaces) the table of `r.bridge`, atomically.
pub fn install(r: &BridgeRules) -> Result<(), NatError> {
    Nft::find()?.install(r)
}

/// Removes the table of `bridge`. Ok when it does not exist.
pub fn remove(bridge: &str) -> Result<(), NatError> {
    Nft::find()?.remove(bridge)
}

#[cfg(test)]
/// The names of berth's tables (family ip) in the caller's network namespace.
pub fn tables() -> Result<Vec<String>, NatError> {
    Nft::find()?.tables()
}

#[cfg(test)]
/// Whether an `nft` that runs is installed.
pub fn available() -> bool {
    Nft::find().is_ok_and(|nft| nft.run("--version", &["--version"], None).is_ok())
}

/// The table name of `bridge`: `berth-<bridge>`, with what an nft
/// identifier may not hold (anything but ASCII letters, digits, `_`, `.`,
/// `-`) replaced by `_`, and then a hash of the real name appended so that
/// two bridges never share a table.
pub fn table_name(bridge: &str) -> String {
    let sanitized: String = bridge
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if sanitized == bridge && !bridge.is_empty() {
        format!("{TABLE_PREFIX}{bridge}")
    } else {
        format!("{TABLE_PREFIX}{sanitized}-{:08x}", fnv1a(bridge.as_bytes()))
    }
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The ruleset that replaces the table of `r.bridge`: declaring the table
/// first makes the delete succeed when it does not exist yet.
pub fn ruleset(r: &BridgeRules) -> Result<String, NatError> {
    let bridge = quotable_bridge(r.bridge)?;
    let subnet = normalize_subnet(r.subnet)?;
    let table = table_name(bridge);
    let mut out = String::new();
    let _ = writeln!(out, "table ip {table}");
    let _ = writeln!(out, "delete table ip {table}");
    let _ = writeln!(out, "table ip {table} {{");
    if !r.internal {
        let _ = writeln!(out, "\tchain postrouting {{");
        let _ = writeln!(
            out,
            "\t\ttype nat hook postrouting priority srcnat; policy accept;"
        );
        let _ = writeln!(
            out,
            "\t\tip saddr {subnet} oifname != \"{bridge}\" masquerade"
        );
        let _ = writeln!(out, "\t}}");
    }
    let _ = writeln!(out, "\tchain forward {{");
    let _ = writeln!(
        out,
        "\t\ttype filter hook forward priority filter; policy accept;"
    );
    if r.internal {
        let _ = writeln!(out, "\t\tiifname \"{bridge}\" oifname != \"{bridge}\" drop");
        let _ = writeln!(out, "\t\toifname \"{bridge}\" iifname != \"{bridge}\" drop");
        let _ = writeln!(out, "\t\tiifname \"{bridge}\" oifname \"{bridge}\" accept");
    } else {
        let _ = writeln!(
            out,
            "\t\tiifname \"{bridge}\" oifname \"berth*\" oifname != \"{bridge}\" drop"
        );
        let _ = writeln!(
            out,
            "\t\toifname \"{bridge}\" iifname \"berth*\" iifname != \"{bridge}\" drop"
        );
        let _ = writeln!(
            out,
            "\t\toifname \"{bridge}\" ct state established,related accept"
        );
        let _ = writeln!(out, "\t\tiifname \"{bridge}\" accept");
    }
    let _ = writeln!(out, "\t}}");
    let _ = writeln!(out, "}}");
    Ok(out)
}

/// `bridge` when it is an interface name that can sit between double
/// quotes in a ruleset and match only itself.
fn quotable_bridge(bridge: &str) -> Result<&str, NatError> {
    let valid = !bridge.is_empty()
        && bridge.len() <= IFNAME_MAX
        && bridge != "."
        && bridge != ".."
        && !bridge.chars().any(|c| {
            matches!(c, '"' | '\\' | '*' | '/' | ':') || c.is_whitespace() || c.is_control()
        });
    if valid {
        Ok(bridge)
    } else {
        Err(NatError::InvalidBridge(bridge.to_string()))
    }
}

/// `subnet` as `network/prefix` (host bits cleared).
fn normalize_subnet(subnet: &str) -> Result<String, NatError> {
    let invalid = || NatError::InvalidSubnet(subnet.to_string());
    let (addr, prefix) = subnet.split_once('/').ok_or_else(invalid)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| invalid())?;
    let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
    if prefix > 32 {
        return Err(invalid());
    }
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    Ok(format!(
        "{}/{prefix}",
        Ipv4Addr::from(u32::from(addr) & mask)
    ))
}

/// The `nft` program.
struct Nft {
    program: PathBuf,
}

impl Nft {
    /// `nft` from PATH, else from the usual sbin directories.
    fn find() -> Result<Nft, NatError> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let dirs = std::env::split_paths(&path).chain(NFT_DIRS.iter().map(PathBuf::from));
        Nft::find_in(dirs)
    }

    fn find_in(dirs: impl IntoIterator<Item = PathBuf>) -> Result<Nft, NatError> {
        dirs.into_iter()
            .map(|dir| dir.join("nft"))
            .find(|candidate| is_executable(candidate))
            .map(|program| Nft { program })
            .ok_or(NatError::NoNft)
    }

    fn install(&self, r: &BridgeRules) -> Result<(), NatError> {
        let rules = ruleset(r)?;
        self.run(
            &format!("install rules for {}", r.bridge),
            &["-f", "-"],
            Some(&rules),
        )
        .map(drop)
    }

    fn remove(&self, bridge: &str) -> Result<(), NatError> {
        let table = table_name(bridge);
        let script = format!("table ip {table}\ndelete table ip {table}\n");
        self.run(
            &format!("remove rules for {bridge}"),
            &["-f", "-"],
            Some(&script),
        )
        .map(drop)
    }

    #[cfg(test)]
    fn tables(&self) -> Result<Vec<String>, NatError> {
        let listing = self.run("list tables", &["list", "tables", "ip"], None)?;
        Ok(listing
            .lines()
            .filter_map(|line| line.trim().strip_prefix("table ip "))
            .filter(|name| name.starts_with(TABLE_PREFIX))
            .map(str::to_string)
            .collect())
    }

    /// Runs nft with `args` and `stdin`; its standard output.
    fn run(&self, action: &str, args: &[&str], stdin: Option<&str>) -> Result<String, NatError> {
        let spawn_error = |source: io::Error| {
            if source.kind() == io::ErrorKind::NotFound {
                NatError::NoNft
            } else {
                NatError::Spawn {
                    program: self.program.clone(),
                    source,
                }
            }
        };
        let mut cmd = Command::new(&self.program);
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // nft reads the whole script before it writes anything, and the
        // script is far smaller than a pipe's buffer.
        let output =
            crate::children::wait_owned(cmd, stdin.map(str::as_bytes)).map_err(spawn_error)?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(NatError::Nft {
                action: action.to_string(),
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            })
        }
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::super::link::testing::{in_netns, in_new_netns, PinnedNetns};
    use super::super::link::{self, VethSpec};
    use super::*;
    use std::io::{Read, Write};
    use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
    use std::time::Duration;

    /// The system's nft, or None after printing SKIPPED.
    fn nft() -> Option<Nft> {
        match Nft::find() {
            Ok(nft) => Some(nft),
            Err(e) => {
                println!("SKIPPED: {e}");
                None
            }
        }
    }

    fn rules<'a>(bridge: &'a str, subnet: &'a str, internal: bool) -> BridgeRules<'a> {
        BridgeRules {
            bridge,
            subnet,
            internal,
        }
    }

    #[test]
    fn ruleset_text() {
        assert_eq!(
            ruleset(&rules("berth0", "172.17.0.0/16", false)).unwrap(),
            r#"table ip berth-berth0
delete table ip berth-berth0
table ip berth-berth0 {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 172.17.0.0/16 oifname != "berth0" masquerade
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "berth0" oifname "berth*" oifname != "berth0" drop
		oifname "berth0" iifname "berth*" iifname != "berth0" drop
		oifname "berth0" ct state established,related accept
		iifname "berth0" accept
	}
}
"#
        );
        assert_eq!(
            ruleset(&rules("berth-a1b2", "10.5.0.0/24", true)).unwrap(),
            r#"table ip berth-berth-a1b2
delete table ip berth-berth-a1b2
table ip berth-berth-a1b2 {
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "berth-a1b2" oifname != "berth-a1b2" drop
		oifname "berth-a1b2" iifname != "berth-a1b2" drop
		iifname "berth-a1b2" oifname "berth-a1b2" accept
	}
}
"#
        );
    }

    #[test]
    fn subnets_are_checked_and_normalized() {
        assert_eq!(normalize_subnet("172.18.3.4/16").unwrap(), "172.18.0.0/16");
        assert_eq!(normalize_subnet("10.0.0.1/32").unwrap(), "10.0.0.1/32");
        assert_eq!(normalize_subnet("10.0.0.1/0").unwrap(), "0.0.0.0/0");
        for bad in [
            "",
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0/8",
            "fd00::/64",
            "x/8",
            "10.0.0.0/-1",
        ] {
            assert!(
                matches!(normalize_subnet(bad), Err(NatError::InvalidSubnet(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn names_are_sanitized() {
        assert_eq!(table_name("berth0"), "berth-berth0");
        assert_eq!(table_name("berth-x_y.z"), "berth-berth-x_y.z");
        let odd = table_name("br@1");
        assert!(odd.starts_with("berth-br_1-"), "{odd}");
        assert_ne!(odd, table_name("br#1"), "distinct names, distinct tables");
        assert_eq!(odd, table_name("br@1"), "stable");
        for name in ["br@1", "é", "a+b", ""] {
            let table = table_name(name);
            assert!(table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')));
        }
        // What cannot be quoted in a ruleset is refused.
        for bad in [
            "",
            "a\"b",
            "a\\b",
            "berth*",
            "a b",
            "a\nb",
            "sixteen-chars-xx",
        ] {
            assert!(
                matches!(
                    ruleset(&rules(bad, "10.0.0.0/8", false)),
                    Err(NatError::InvalidBridge(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn missing_nft_is_reported() {
        let err = Nft::find_in([PathBuf::from("/nonexistent")]).err().unwrap();
        assert!(matches!(err, NatError::NoNft));
        assert_eq!(
            err.to_string(),
            "bridge networks need nftables: install the nftables package (the nft command)"
        );
        let gone = Nft {
            program: PathBuf::from("/nonexistent/nft"),
        };
        let r = rules("berth0", "172.17.0.0/16", false);
        assert!(matches!(gone.install(&r), Err(NatError::NoNft)));
        assert!(matches!(gone.remove("berth0"), Err(NatError::NoNft)));
        assert!(matches!(gone.tables(), Err(NatError::NoNft)));
    }

    #[test]
    fn install_replace_remove() {
        let Some(nft) = nft() else { return };
        assert!(available());
        in_new_netns(|| {
            assert_eq!(tables().unwrap(), Vec::<String>::new());
            let list = |table: &str| nft.run("list", &["list", "table", "ip", table], None);

            install(&rules("berth0", "172.17.0.0/16", false)).unwrap();
            install(&rules("berth-n1", "172.18.0.0/16", false)).unwrap();
            assert_eq!(tables().unwrap(), ["berth-berth0", "berth-berth-n1"]);
            let text = list("berth-berth-n1").unwrap();
            assert!(text.contains("masquerade"), "{text}");

            // Replacing: the internal variant has no masquerade, and the
            // rules are not duplicated.
            install(&rules("berth-n1", "172.18.0.0/16", true)).unwrap();
            install(&rules("berth-n1", "172.18.0.0/16", true)).unwrap();
            let text = list("berth-berth-n1").unwrap();
            assert!(!text.contains("masquerade"), "{text}");
            assert_eq!(
                text.matches("oifname != \"berth-n1\" drop").count(),
                1,
                "{text}"
            );
            assert_eq!(tables().unwrap(), ["berth-berth0", "berth-berth-n1"]);

            // A failed install leaves the previous rules in place.
            let err = nft
                .install(&rules("berth-n1", "300.0.0.0/8", false))
                .unwrap_err();
            assert!(matches!(err, NatError::InvalidSubnet(_)), "{err}");
            assert_eq!(list("berth-berth-n1").unwrap(), text);

            remove("berth-n1").unwrap();
            remove("berth-n1").unwrap();
            assert_eq!(tables().unwrap(), ["berth-berth0"]);
            remove("berth0").unwrap();
            assert_eq!(tables().unwrap(), Vec::<String>::new());

            // Sanitized names round-trip.
            install(&rules("br@1", "10.3.0.0/16", false)).unwrap();
            assert_eq!(tables().unwrap(), [table_name("br@1")]);
            remove("br@1").unwrap();
            assert_eq!(tables().unwrap(), Vec::<String>::new());

            // Other tables are not berth's.
            nft.run("add", &["add", "table", "ip", "other"], None)
                .unwrap();
            assert_eq!(tables().unwrap(), Vec::<String>::new());
        });
    }

    /// A container: a pinned namespace with eth0 on `bridge`.
    fn container(bridge: &str, host_name: &str, addr: Ipv4Addr, gateway: Ipv4Addr) -> PinnedNetns {
        let netns = PinnedNetns::new();
        link::attach_veth(&VethSpec {
            host_name,
            bridge,
            netns: &netns.path,
            ifname: "eth0",
            mac: [
                0x02,
                0x42,
                addr.octets()[0],
                addr.octets()[1],
                addr.octets()[2],
                addr.octets()[3],
            ],
            addr,
            prefix_len: 24,
            gateway: Some(gateway),
        })
        .unwrap();
        netns
    }

    /// Connects from namespace `from` to a [`serve_peer_address`] server:
    /// the client address the server saw, or None when the connection fails.
    fn connect(from: &Path, to: SocketAddr) -> Option<IpAddr> {
        let mut conn = in_netns(from, || {
            TcpStream::connect_timeout(&to, Duration::from_secs(2))
        })
        .ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut seen = [0u8; 4];
        conn.read_exact(&mut seen).ok()?;
        Some(IpAddr::V4(Ipv4Addr::from(seen)))
    }

    /// A server in `netns` that tells each client its address as it sees it.
    fn serve_peer_address(netns: &Path, addr: SocketAddr) -> TcpListener {
        let listener = in_netns(netns, || TcpListener::bind(addr).unwrap());
        let server = listener.try_clone().unwrap();
        std::thread::spawn(move || {
            for conn in server.incoming() {
                let Ok(mut conn) = conn else { return };
                if let Ok(SocketAddr::V4(peer)) = conn.peer_addr() {
                    let _ = conn.write_all(&peer.ip().octets());
                }
            }
        });
        listener
    }

    /// Containers on two bridges and an "outside" namespace behind a third,
    /// with this namespace routing between them: egress is masqueraded,
    /// the bridges are isolated from each other, internal has no egress.
    #[test]
    fn rules_masquerade_and_isolate() {
        if nft().is_none() {
            return;
        }
        in_new_netns(|| {
            let gw_a = Ipv4Addr::new(10, 91, 0, 1);
            let gw_b = Ipv4Addr::new(10, 92, 0, 1);
            let gw_out = Ipv4Addr::new(192, 0, 2, 1);
            link::ensure_bridge("berth-a", gw_a, 24).unwrap();
            link::ensure_bridge("berth-b", gw_b, 24).unwrap();
            link::ensure_bridge("uplink", gw_out, 24).unwrap();
            link::enable_ip_forward().unwrap();
            let a = container("berth-a", "va", Ipv4Addr::new(10, 91, 0, 2), gw_a);
            let b = container("berth-b", "vb", Ipv4Addr::new(10, 92, 0, 2), gw_b);
            let outside = container("uplink", "vo", Ipv4Addr::new(192, 0, 2, 2), gw_out);
            let out_addr = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 2), 8000));
            let b_addr = SocketAddr::from((Ipv4Addr::new(10, 92, 0, 2), 8000));
            let _out_server = serve_peer_address(&outside.path, out_addr);
            let _b_server = serve_peer_address(&b.path, b_addr);

            // Without rules: plain routing, no address translation.
            assert_eq!(connect(&a.path, b_addr), Some("10.91.0.2".parse().unwrap()));

            install(&rules("berth-a", "10.91.0.0/24", false)).unwrap();
            install(&rules("berth-b", "10.92.0.0/24", false)).unwrap();
            assert_eq!(
                connect(&a.path, out_addr),
                Some(IpAddr::V4(gw_out)),
                "masqueraded"
            );
            assert_eq!(connect(&a.path, b_addr), None, "bridges are isolated");

            install(&rules("berth-a", "10.91.0.0/24", true)).unwrap();
            assert_eq!(connect(&a.path, out_addr), None, "internal: no egress");
            assert_eq!(connect(&b.path, out_addr), Some(IpAddr::V4(gw_out)));

            remove("berth-a").unwrap();
            remove("berth-b").unwrap();
            assert_eq!(tables().unwrap(), Vec::<String>::new());
            assert_eq!(connect(&a.path, b_addr), Some("10.91.0.2".parse().unwrap()));
        });
    }
}
