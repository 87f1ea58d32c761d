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
