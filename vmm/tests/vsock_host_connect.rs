//! Host -> guest vsock: the guest listens on port 1024; the host connects
//! through the Unix socket with `CONNECT 1024\n` and gets 1 MiB echoed back.
// Boots guests with the KVM backend and an x86_64 kernel.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

const SIZE: usize = 1 << 20;

#[test]
fn host_connects_and_echoes_one_mib() {
    let _one = common::serialize();
    let Some(guest) = common::guest_or_skip("vsock-host") else {
        return;
    };
    let uds = guest.workdir.join("vsock.sock");
    let mut vm = common::start_vm(
        &guest,
        "vsock_listen",
        &["--vsock-uds", uds.to_str().unwrap()],
    );
    vm.wait_for_line("BERTH-VMM-LISTENING 1024");

    let mut stream = UnixStream::connect(&uds).unwrap();
    stream.set_read_timeout(Some(common::TIMEOUT)).unwrap();
    stream.write_all(b"CONNECT 1024\n").unwrap();
    let ok = common::read_line(&mut stream).unwrap();
    assert!(
        ok.starts_with("OK ") && ok.ends_with('\n'),
        "handshake answer {ok:?}"
    );
    ok[3..].trim().parse::<u32>().expect("OK <hostport>");

    let data: Vec<u8> = (0..SIZE).map(|i| (i * 7 + i / 4096) as u8).collect();
    let start = Instant::now();
    let mut writer = stream.try_clone().unwrap();
    let to_send = data.clone();
    let sender = std::thread::spawn(move || {
        writer.write_all(&to_send).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut echoed = Vec::with_capacity(SIZE);
    stream.read_to_end(&mut echoed).unwrap();
    sender.join().unwrap();
    let secs = start.elapsed().as_secs_f64().max(1e-6);
    println!(
        "vsock: 1 MiB echoed in {:.2} s ({:.2} MiB/s each way)",
        secs,
        1.0 / secs
    );
    assert_eq!(echoed.len(), SIZE, "{}", vm.report());
    assert!(echoed == data, "echoed data differs");
    let (line, _) = vm.wait_for_line("BERTH-VMM-ECHOED");
    assert_eq!(line.trim(), format!("BERTH-VMM-ECHOED {SIZE}"));
    vm.assert_clean_exit();
    let _ = Duration::ZERO;
}
