//! Boot time of berth-vmm vs QEMU `-M microvm` on the same kernel and
//! initramfs (launch -> first marker on serial), median of 3 each. Prints
//! numbers and the ratio; asserts nothing about time. Run with
//! `cargo test -p berth-vmm --test boot_bench -- --ignored --nocapture`.
// Boots guests with the KVM backend and an x86_64 kernel.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 3;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn qemu_boot(guest: &common::Guest) -> Option<Duration> {
    let serial = guest.workdir.join("qemu-serial.log");
    let _ = std::fs::remove_file(&serial);
    let cmdline = format!(
        "{} bt_mode=boot {}",
        common::CMDLINE,
        berth_vmm::pvm_cmdline_extras().unwrap_or("")
    );
    let started = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-M",
            "microvm,x-option-roms=off,isa-serial=on,rtc=on,acpi=off",
        ])
        .args([
            "-enable-kvm",
            "-cpu",
            "host,-arch-capabilities",
            "-m",
            "128",
            "-smp",
            "1",
        ])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
            "-device",
            "i8042",
        ])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-kernel")
        .arg(&guest.kernel)
        .arg("-initrd")
        .arg(&guest.initrd)
        .arg("-append")
        .arg(cmdline)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = started + common::TIMEOUT;
    let at = loop {
        let text = std::fs::read_to_string(&serial).unwrap_or_default();
        if text.contains("BERTH-VMM-BOOT-OK") {
            break started.elapsed();
        }
        if Instant::now() > deadline || matches!(child.try_wait(), Ok(Some(_))) {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = child.wait();
    Some(at)
}

#[test]
#[ignore = "benchmark: boots the guest 6 times"]
fn boot_time_vs_qemu_microvm() {
    let _one = common::serialize();
    let Some(guest) = common::guest_or_skip("boot-bench") else {
        return;
    };
    let mut ours = Vec::new();
    for _ in 0..RUNS {
        let mut vm = common::start_vm(&guest, "boot", &[]);
        let (_, at) = vm.wait_for_line("BERTH-VMM-BOOT-OK");
        vm.assert_clean_exit();
        ours.push(at);
    }
    let ours_median = median(ours.clone());
    println!(
        "berth-vmm: launch -> marker {ours:?}, median {:.2} s",
        ours_median.as_secs_f64()
    );
    if Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        common::skipped("qemu-system-x86_64 is not installed; no comparison");
        return;
    }
    let mut qemu = Vec::new();
    for _ in 0..RUNS {
        match qemu_boot(&guest) {
            Some(d) => qemu.push(d),
            None => {
                println!("qemu microvm did not reach the marker");
                return;
            }
        }
    }
    let qemu_median = median(qemu.clone());
    println!(
        "qemu microvm: launch -> marker {qemu:?}, median {:.2} s",
        qemu_median.as_secs_f64()
    );
    println!(
        "berth-vmm / qemu = {:.2}",
        ours_median.as_secs_f64() / qemu_median.as_secs_f64()
    );
}
