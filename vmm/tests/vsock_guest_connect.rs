//! Guest -> host vsock: a guest connection to host port 5000 reaches the
//! Unix socket `<uds>_5000`.
// Boots guests with the KVM backend and an x86_64 kernel.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::time::Instant;

#[test]
fn guest_connection_reaches_uds_port() {
    let _one = common::serialize();
    let Some(guest) = common::guest_or_skip("vsock-guest") else {
        return;
    };
    let uds = guest.workdir.join("vsock.sock");
    let listener = UnixListener::bind(guest.workdir.join("vsock.sock_5000")).unwrap();
    listener.set_nonblocking(true).unwrap();
    let mut vm = common::start_vm(
        &guest,
        "vsock_connect",
        &["--vsock-uds", uds.to_str().unwrap()],
    );

    let deadline = Instant::now() + common::TIMEOUT;
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Ok(Some(st)) = vm.child.try_wait() {
                    panic!("berth-vmm exited ({st}) before connecting\n{}", vm.report());
                }
                assert!(Instant::now() < deadline, "no connection\n{}", vm.report());
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(common::TIMEOUT)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "hello from the guest\n");
    (&stream).write_all(b"hello from the host\n").unwrap();

    let (reply, _) = vm.wait_for_line("BERTH-VMM-REPLY");
    assert_eq!(reply.trim(), "BERTH-VMM-REPLY hello from the host");
    vm.assert_clean_exit();
}
