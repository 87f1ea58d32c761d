//! Host -> guest vsock: the guest listens on port 1024; the host connects
//! through the Unix socket with `CONNECT 1024\n` and gets 1 MiB echoed back.
// Boots guests with the KVM backend and an x86_64 kernel.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod common;

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

    let (data, echoed, took) = common::vsock_echo(&uds, SIZE);
    let secs = took.as_secs_f64().max(1e-6);
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
}
