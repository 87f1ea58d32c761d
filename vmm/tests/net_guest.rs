//! virtio-net with user-mode networking (`--net user`): the test guest
//! gives eth0 192.168.127.2/24 and fetches `http://192.168.127.254:PORT/`,
//! which the VMM's stack connects to the host's 127.0.0.1:PORT, where this
//! test serves one HTTP response.
// Boots guests with the KVM backend and an x86_64 kernel.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;

#[test]
fn guest_fetches_from_host_loopback() {
    let _one = common::serialize();
    let Some(guest) = common::guest_or_skip("net-http") else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        s.set_read_timeout(Some(common::TIMEOUT)).unwrap();
        let mut req = Vec::new();
        let mut b = [0u8; 1024];
        while !req.ends_with(b"\r\n\r\n") {
            let n = s.read(&mut b).unwrap();
            assert!(
                n > 0,
                "request cut short: {:?}",
                String::from_utf8_lossy(&req)
            );
            req.extend_from_slice(&b[..n]);
        }
        let body = "hello from the host";
        write!(
            s,
            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        (String::from_utf8_lossy(&req).into_owned(), peer)
    });
    let mut vm = common::start_vm(&guest, &format!("net_http:{port}"), &["--net", "user"]);
    let (status, at) = vm.wait_for_line("BERTH-VMM-HTTP");
    assert_eq!(
        status.trim(),
        "BERTH-VMM-HTTP HTTP/1.0 200 OK",
        "{}",
        vm.report()
    );
    let (body, _) = vm.wait_for_line("BERTH-VMM-BODY");
    assert_eq!(body.trim(), "BERTH-VMM-BODY hello from the host");
    vm.assert_clean_exit();
    let (req, peer) = server.join().unwrap();
    assert!(req.starts_with("GET / HTTP/1.0\r\n"), "{req}");
    // The connection came from the VMM's own host socket.
    assert!(peer.ip().is_loopback());
    println!("fetched after {:.1} s", at.as_secs_f64());
}

/// The berth agent as PID 1 configures eth0 from `berth.net=` (the
/// machine VM's command line) and says so on the console.
#[test]
fn agent_configures_eth0_from_the_command_line() {
    let _one = common::serialize();
    if !common::kvm_usable() {
        return common::skipped("/dev/kvm is not available");
    }
    let Some(kernel) = common::find_kernel() else {
        return common::skipped(
            "no guest kernel (set BERTH_KERNEL or run kernel-config/build-kernel.sh)",
        );
    };
    // The newest static agent that knows berth.net= (release or debug).
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let agent = ["release", "debug"]
        .iter()
        .map(|p| {
            target
                .join("x86_64-unknown-linux-gnu")
                .join(p)
                .join("berth-agent")
        })
        .filter(|p| std::fs::read(p).is_ok_and(|b| b.windows(9).any(|w| w == b"berth.net")))
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    let Some(agent) = agent else {
        return common::skipped("no static berth-agent with berth.net= (run scripts/dev-build.sh)");
    };
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("vmm-net-agent");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // A debug agent carries debug info the root disk has no room for.
    let stripped = dir.join("berth-agent");
    let agent = match std::process::Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(&agent)
        .status()
    {
        Ok(st) if st.success() => stripped,
        _ => agent,
    };
    let Some(rootfs) = common::write_agent_rootfs(&agent, &dir) else {
        return common::skipped("mkfs.ext4 -d failed (install e2fsprogs)");
    };
    let serial = dir.join("serial.log");
    let stderr = dir.join("vmm.log");
    let cmdline = format!(
        "{} berth.net=192.168.127.2/24,gw=192.168.127.1,dns=192.168.127.1",
        common::AGENT_CMDLINE
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_berth-vmm"))
        .arg("--kernel")
        .arg(&kernel)
        .arg("--disk")
        .arg(format!("{},ro", rootfs.display()))
        .args(["--cmdline", &cmdline, "--mem-mib", "256", "--rng"])
        .args(["--net", "user"])
        .arg("--serial-log")
        .arg(&serial)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("spawn berth-vmm");
    let report = || {
        format!(
            "--- serial ---\n{}\n--- berth-vmm stderr ---\n{}",
            std::fs::read_to_string(&serial).unwrap_or_default(),
            std::fs::read_to_string(&stderr).unwrap_or_default()
        )
    };
    let t0 = std::time::Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(&serial).unwrap_or_default();
        if text.contains("eth0 ") || text.contains("engine open") {
            break text;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "berth-vmm exited ({st}) before configuring eth0\n{}",
                report()
            );
        }
        if t0.elapsed() > common::TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("timed out waiting for the eth0 line\n{}", report());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        text.contains("berth-agent: eth0 192.168.127.2/24 via 192.168.127.1"),
        "{}",
        report()
    );
    println!("eth0 configured after {:.1} s", t0.elapsed().as_secs_f64());
}
