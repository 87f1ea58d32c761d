//! virtio-rng: the guest reads /dev/hwrng.
// Boots guests with the KVM backend and an x86_64 kernel.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod common;

#[test]
fn guest_reads_hwrng() {
    let _one = common::serialize();
    let Some(guest) = common::guest_or_skip("rng") else {
        return;
    };
    let mut vm = common::start_vm(&guest, "rng", &["--rng"]);
    let (line, _) = vm.wait_for_line("BERTH-VMM-RANDOM");
    let hex = line.trim().strip_prefix("BERTH-VMM-RANDOM ").unwrap();
    assert_eq!(hex.len(), 64, "{line}");
    assert!(hex.chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(hex, "0".repeat(64));
    vm.assert_clean_exit();
}
