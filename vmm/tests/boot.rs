//! Boots the guest kernel to a marker on serial and exits cleanly through
//! the guest's reboot (i8042 reset); also with 2 vCPUs.
// Boots guests with the KVM backend and an x86_64 kernel.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod common;

#[test]
fn boots_to_marker_and_exits_on_reboot() {
    let _one = common::serialize();
    let Some(guest) = common::guest_or_skip("boot") else {
        return;
    };
    let mut vm = common::start_vm(&guest, "boot", &[]);
    let (_, at) = vm.wait_for_line("BERTH-VMM-BOOT-OK");
    println!("boot: launch -> marker {:.2} s", at.as_secs_f64());
    vm.assert_clean_exit();
    println!(
        "boot: launch -> exit {:.2} s",
        vm.started.elapsed().as_secs_f64()
    );
    let stderr = std::fs::read_to_string(&vm.stderr).unwrap();
    assert!(stderr.contains("timings: setup"), "{stderr}");
}

#[test]
fn boots_with_two_vcpus() {
    let _one = common::serialize();
    let Some(guest) = common::guest_or_skip("smp") else {
        return;
    };
    let mut vm = common::start_vm(&guest, "smp", &["--cpus", "2"]);
    let (line, at) = vm.wait_for_line("BERTH-VMM-CPUS");
    println!("smp: {line} after {:.2} s", at.as_secs_f64());
    assert_eq!(line.trim(), "BERTH-VMM-CPUS 0-1", "{}", vm.report());
    vm.assert_clean_exit();
}
