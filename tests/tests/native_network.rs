//! Container networking in native placement: published ports (TCP, UDP,
//! `-P`, `port`, the port-in-use error), egress through NAT, user networks
//! with the embedded DNS, isolation between networks, `--network none`, and
//! that the host's bridges, veths and nftables tables are gone afterwards.
//!
//! Only loopback addresses, the bridges berth makes, and one network
//! namespace this test creates (standing in for the internet) are used.
// Drives the Linux builds of berth and berth-agent (native placement).
#![cfg(target_os = "linux")]

use berth_tests::{have, sh, skip, wait_for, Berth, DEFAULT_IMAGE as IMG};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command};
use std::time::Duration;

fn host_links() -> Vec<String> {
    sh("ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1")
        .lines()
        .filter(|l| l.starts_with("berth") || l.starts_with("vb"))
        .map(String::from)
        .collect()
}

fn nft_tables() -> Vec<String> {
    sh("nft list tables 2>/dev/null")
        .lines()
        .filter(|l| l.contains("berth"))
        .map(String::from)
        .collect()
}

fn http_get(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(3)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// The host port `berth port NAME PORT` shows for 127.0.0.1 (or any).
fn host_port(b: &Berth, name: &str, port: &str) -> u16 {
    let out = b.run(&["port", name, port]).ok().stdout;
    let first = out.lines().next().unwrap_or_default();
    first.rsplit(':').next().unwrap().trim().parse().unwrap()
}

fn httpd(b: &Berth, args: &[&str], body: &str) -> String {
    let script =
        format!("mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 80 -h /www");
    let mut a = vec!["run", "-d"];
    a.extend_from_slice(args);
    a.extend_from_slice(&[IMG, "sh", "-c", &script]);
    b.run(&a).ok().stdout.trim().to_string()
}

fn ready() -> bool {
    if !have("nft") || !have("ip") {
        skip("nft or ip missing (scripts/deps.sh installs nftables and iproute2)");
        return false;
    }
    true
}

#[test]
fn published_ports_tcp_udp_publish_all_and_port_in_use() {
    if !ready() {
        return;
    }
    let b = Berth::new().with_default_image();

    // -p 127.0.0.1::80 to busybox httpd, fetched from the host.
    let _web = httpd(
        &b,
        &["--name", "web", "-p", "127.0.0.1::80"],
        "hello-from-web",
    );
    let hp = host_port(&b, "web", "80");
    let addr = format!("127.0.0.1:{hp}");
    wait_for("httpd behind the published port", || {
        http_get(&addr).is_some_and(|r| r.contains("hello-from-web"))
    });
    let ports = b.run(&["port", "web"]).ok().stdout;
    assert_eq!(ports.trim(), format!("80/tcp -> 127.0.0.1:{hp}"));
    let insp = b.inspect("web");
    assert_eq!(
        insp["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"],
        hp.to_string(),
        "{insp}"
    );
    let ip = insp["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ip.contains('.'), "{insp}");

    // UDP: an echo server in the container (the host's python, through a
    // read-only bind of /), reached through -p …/udp.
    let echo = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',9999))\nwhile True:\n d,a=s.recvfrom(2048)\n s.sendto(b'echo:'+d,a)\n";
    b.run(&[
        "run",
        "-d",
        "--name",
        "udp",
        "-p",
        "127.0.0.1::9999/udp",
        "-v",
        "/:/host:ro",
        IMG,
        "chroot",
        "/host",
        "python3",
        "-c",
        echo,
    ])
    .ok();
    let up = host_port(&b, "udp", "9999/udp");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 64];
    wait_for("a UDP echo through the published port", || {
        let _ = sock.send_to(b"ping", ("127.0.0.1", up));
        matches!(sock.recv_from(&mut buf), Ok((n, _)) if &buf[..n] == b"echo:ping")
    });

    // -P publishes the exposed ports on free host ports, on every address.
    httpd(
        &b,
        &["--name", "all", "--expose", "80", "-P"],
        "hello-from-all",
    );
    let out = b.run(&["port", "all"]).ok().stdout;
    assert!(out.contains("80/tcp -> 0.0.0.0:"), "{out}");
    let ap = host_port(&b, "all", "80");
    wait_for("httpd behind -P", || {
        http_get(&format!("127.0.0.1:{ap}")).is_some_and(|r| r.contains("hello-from-all"))
    });
    let ps = b
        .run(&["ps", "--format", "{{.Names}} {{.Ports}}"])
        .ok()
        .stdout;
    assert!(ps.contains(&format!("web 127.0.0.1:{hp}->80/tcp")), "{ps}");

    // A port in use: docker's error, exit 125, and the container is left
    // created, never half running.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let tp = taken.local_addr().unwrap().port();
    let out = b.run(&[
        "run",
        "-d",
        "--name",
        "clash",
        "-p",
        &format!("127.0.0.1:{tp}:80"),
        IMG,
        "sleep",
        "60",
    ]);
    assert_eq!(out.code, 125, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("address already in use")
            && out
                .stderr
                .contains("driver failed programming external connectivity"),
        "{}",
        out.stderr
    );
    assert_eq!(
        b.run(&["inspect", "-f", "{{.State.Status}}", "clash"])
            .ok()
            .stdout
            .trim(),
        "created"
    );
    assert!(b.run(&["port", "clash"]).ok().stdout.trim().is_empty());
    drop(taken);

    // Ports stop with the container, and come back with it.
    b.run(&["stop", "-t", "1", "web"]).ok();
    assert!(http_get(&addr).is_none(), "port still open after stop");
    b.run(&["start", "web"]).ok();
    let hp2 = host_port(&b, "web", "80");
    wait_for("httpd after restart", || {
        http_get(&format!("127.0.0.1:{hp2}")).is_some_and(|r| r.contains("hello-from-web"))
    });
}

/// A network namespace with a veth to the host and an HTTP server: the
/// "internet" for the egress test. Removed on drop.
struct Internet {
    ns: String,
    host_if: String,
    server: Option<Child>,
}

impl Internet {
    fn new() -> Internet {
        let tag = std::process::id() % 100_000;
        let ns = format!("berthinet{tag}");
        let host_if = format!("bi{tag}h");
        let peer = format!("bi{tag}p");
        let script = format!(
            "set -e; ip netns add {ns}; ip link add {host_if} type veth peer name {peer}; \
             ip link set {peer} netns {ns}; ip addr add 198.18.77.1/30 dev {host_if}; ip link set {host_if} up; \
             ip -n {ns} addr add 198.18.77.2/30 dev {peer}; ip -n {ns} link set {peer} up; ip -n {ns} link set lo up; \
             mkdir -p /tmp/{ns}; echo internet-says-hi > /tmp/{ns}/index.html"
        );
        let st = Command::new("sh").arg("-c").arg(&script).status().unwrap();
        assert!(st.success(), "setting up the stand-in internet");
        let server = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                "python3",
                "-m",
                "http.server",
                "80",
                "--bind",
                "198.18.77.2",
                "-d",
            ])
            .arg(format!("/tmp/{ns}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Internet {
            ns,
            host_if,
            server: Some(server),
        }
    }
}

impl Drop for Internet {
    fn drop(&mut self) {
        if let Some(mut s) = self.server.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ip link del {} 2>/dev/null; ip netns del {} 2>/dev/null; rm -rf /tmp/{}",
                self.host_if, self.ns, self.ns
            ))
            .status();
    }
}

#[test]
fn egress_user_networks_dns_isolation_and_cleanup() {
    if !ready() {
        return;
    }
    let b = Berth::new().with_default_image();

    // Egress to a host service, through the bridge's gateway address.
    let host_srv = TcpListener::bind("0.0.0.0:0").unwrap();
    let hsp = host_srv.local_addr().unwrap().port();
    let serve = std::thread::spawn(move || {
        let (mut c, _) = host_srv.accept().unwrap();
        let mut req = [0u8; 1024];
        let _ = c.read(&mut req);
        let _ = c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nhost-says\n");
    });
    let net = b.run(&["network", "inspect", "bridge"]).ok().stdout;
    let v: serde_json::Value = serde_json::from_str(&net).unwrap();
    let gw = v[0]["IPAM"]["Config"][0]["Gateway"]
        .as_str()
        .unwrap()
        .to_string();
    let out = b
        .run(&[
            "run",
            "--rm",
            IMG,
            "wget",
            "-q",
            "-O-",
            &format!("http://{gw}:{hsp}/"),
        ])
        .ok();
    assert_eq!(out.stdout, "host-says\n");
    serve.join().unwrap();

    // Egress to "the internet": a namespace that has no route back to the
    // container's subnet, so only NAT makes the reply find its way.
    let inet = Internet::new();
    wait_for("the stand-in internet's server", || {
        http_get("198.18.77.2:80").is_some()
    });
    let out = b
        .run(&[
            "run",
            "--rm",
            IMG,
            "wget",
            "-q",
            "-O-",
            "http://198.18.77.2/",
        ])
        .ok();
    assert_eq!(out.stdout, "internet-says-hi\n");
    drop(inet);

    // A user network: names and aliases resolve through 127.0.0.11.
    b.run(&["network", "create", "front"]).ok();
    b.run(&["network", "create", "back"]).ok();
    httpd(
        &b,
        &[
            "--name",
            "api",
            "--network",
            "front",
            "--network-alias",
            "alpha",
        ],
        "api-here",
    );
    let a_ip = b.inspect("api")["NetworkSettings"]["Networks"]["front"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    for name in ["api", "alpha"] {
        let out = b
            .run(&[
                "run", "--rm", "--network", "front", IMG, "sh", "-c",
                &format!("cat /etc/resolv.conf; for i in 1 2 3 4 5; do wget -q -O- http://{name}/ && exit 0; sleep 1; done; exit 1"),
            ])
            .ok();
        assert!(
            out.stdout.contains("nameserver 127.0.0.11"),
            "{}",
            out.stdout
        );
        assert!(out.stdout.contains("api-here"), "{}", out.stdout);
    }
    let out = b
        .run(&[
            "run",
            "--rm",
            "--network",
            "front",
            IMG,
            "nslookup",
            "alpha",
            "127.0.0.11",
        ])
        .ok();
    assert!(out.stdout.contains(&a_ip), "{}", out.stdout);

    // Another network can neither resolve nor reach it.
    let out = b.run(&[
        "run",
        "--rm",
        "--network",
        "back",
        IMG,
        "nslookup",
        "api",
        "127.0.0.11",
    ]);
    assert!(!out.stdout.contains(&a_ip), "{}", out.stdout);
    let out = b.run(&[
        "run",
        "--rm",
        "--network",
        "back",
        IMG,
        "wget",
        "-q",
        "-T",
        "3",
        "-O-",
        &format!("http://{a_ip}/"),
    ]);
    assert_ne!(out.code, 0, "reached another network: {}", out.stdout);

    // --network none has only lo.
    let out = b
        .run(&[
            "run",
            "--rm",
            "--network",
            "none",
            IMG,
            "ls",
            "/sys/class/net",
        ])
        .ok();
    assert_eq!(out.stdout.split_whitespace().collect::<Vec<_>>(), ["lo"]);

    // network rm refuses a network in use, then everything goes.
    let out = b.run(&["network", "rm", "front"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("active endpoints"), "{}", out.stderr);
    let api_id = b.inspect("api")["Id"].as_str().unwrap().to_string();
    let bridges = bridges_of(&b);
    assert_eq!(bridges.len(), 3, "{bridges:?}");
    for br in &bridges {
        assert!(
            host_links().contains(br),
            "{br} missing: {:?}",
            host_links()
        );
        assert!(
            nft_tables().iter().any(|t| t.contains(br.as_str())),
            "{:?}",
            nft_tables()
        );
    }
    b.run(&["rm", "-f", "api"]).ok();
    b.run(&["network", "rm", "front", "back"]).ok();
    let ls = b
        .run(&["network", "ls", "--format", "{{.Name}}"])
        .ok()
        .stdout;
    assert_eq!(
        ls.split_whitespace().collect::<Vec<_>>(),
        ["bridge", "host", "none"]
    );
    assert_eq!(bridges_of(&b).len(), 1);
    // Dropping the installation removes its default bridge (as removing
    // docker would docker0): nothing of this test is left on the host.
    drop(b);
    let veth = format!("vb{}", &api_id[..10]);
    wait_for("the host's links and tables as before", || {
        let links = host_links();
        let tables = nft_tables();
        bridges
            .iter()
            .all(|br| !links.contains(br) && !tables.iter().any(|t| t.contains(br.as_str())))
            && !links.iter().any(|l| l.starts_with(&veth))
    });
}

/// The bridges of this installation's networks, from its records.
fn bridges_of(b: &Berth) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(b.native_root().join("networks")) {
        for e in rd.flatten() {
            let Ok(text) = std::fs::read_to_string(e.path().join("network.json")) else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            if let Some(br) = v["bridge"].as_str().filter(|s| !s.is_empty()) {
                out.push(br.to_string());
            }
        }
    }
    out
}
