//! The portable x86_64 VM assembly (`x86_vm`, what `berth-vmm` runs on the
//! Windows Hypervisor Platform) boots a real guest here, with the KVM
//! backend seen only through the `Hypervisor` traits: port I/O (console,
//! i8042 reset), MMIO to virtio-blk and virtio-rng, interrupt lines, and the
//! per-queue worker threads that replace the epoll loop off Linux. The
//! guest writes a pattern to its disk, reads what the host put there and
//! reboots; the VM must end with the i8042 reset.
// Boots guests with the KVM backend and an x86_64 kernel.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::{mpsc, Arc, Mutex};

use berth_vmm::hypervisor::kvm::KvmHypervisor;
use berth_vmm::x86_vm::{self, X86Exit, X86VmConfig};
use berth_vmm::HostQuirks;

/// Console output shared with the test.
#[derive(Clone, Default)]
struct Console(Arc<Mutex<Vec<u8>>>);

impl Write for Console {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Console {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[test]
fn portable_assembly_boots_a_guest_through_the_traits() {
    let _one = common::serialize();
    let Some(guest) = common::guest_or_skip("portable-x86") else {
        return;
    };
    let image = guest.workdir.join("disk.img");
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&image)
        .unwrap();
    f.set_len(4 << 20).unwrap();
    let mut host_sector = [0u8; 512];
    host_sector[..13].copy_from_slice(b"host-was-here");
    f.write_all_at(&host_sector, 1 << 20).unwrap();

    let console = Console::default();
    let config = X86VmConfig {
        kernel: guest.kernel.clone(),
        initrd: Some(guest.initrd.clone()),
        cmdline: format!("{} bt_mode=blk", common::CMDLINE),
        cpus: 1,
        mem_mib: 128,
        console: Box::new(console.clone()),
        disks: vec![(image.clone(), false)],
        rng: true,
        quirks: HostQuirks::detect(),
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let hv = KvmHypervisor::new().expect("open /dev/kvm");
        let _ = tx.send(x86_vm::run(&hv, config).map_err(|e| e.to_string()));
    });
    let exit = match rx.recv_timeout(common::TIMEOUT) {
        Ok(r) => r,
        Err(_) => panic!(
            "the VM did not end within {:?}\n--- console ---\n{}",
            common::TIMEOUT,
            console.text()
        ),
    };
    let text = console.text();
    assert_eq!(exit, Ok(X86Exit::Reset), "--- console ---\n{text}");
    assert!(
        text.lines()
            .any(|l| l.trim() == "BERTH-VMM-HOSTDATA host-was-here"),
        "--- console ---\n{text}"
    );
    assert!(
        text.contains("BERTH-VMM-DONE OK"),
        "--- console ---\n{text}"
    );

    let mut got = vec![0u8; 64 * 1024];
    f.read_exact_at(&mut got, 0).unwrap();
    let want: Vec<u8> = (0..got.len() as u32).map(|i| (i * 31 + 7) as u8).collect();
    assert!(got == want, "pattern not found in the image");
}
