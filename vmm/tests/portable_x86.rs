//! The portable x86_64 VM assembly (`x86_vm`, what `berth-vmm` runs on the
//! Windows Hypervisor Platform) boots a real guest here, with the KVM
//! backend seen only through the `Hypervisor` traits: port I/O (console,
//! i8042 reset), MMIO to virtio-blk and virtio-rng, interrupt lines, and the
//! worker threads that replace the epoll loop off Linux (queues, and the
//! vsock muxer's host sockets). One guest writes a pattern to its disk,
//! reads what the host put there and reboots; another echoes 1 MiB over
//! vsock to a host client. Each VM must end with the i8042 reset.
// Boots guests with the KVM backend and an x86_64 kernel.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod common;

use std::io::Write;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use berth_vmm::device_manager::DiskConfig;
use berth_vmm::hypervisor::kvm::KvmHypervisor;
use berth_vmm::x86_vm::{self, ConsoleWriter, SerialOutput, VmConfig, X86Exit};
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

    /// Waits for a console line starting with `prefix`.
    fn wait_for_line(
        &self,
        prefix: &str,
        done: &mpsc::Receiver<Result<X86Exit, String>>,
    ) -> String {
        let deadline = Instant::now() + common::TIMEOUT;
        loop {
            if let Some(l) = self.text().lines().find(|l| l.starts_with(prefix)) {
                return l.to_string();
            }
            if let Ok(exit) = done.try_recv() {
                panic!("the VM ended ({exit:?}) before `{prefix}`\n{}", self.text());
            }
            assert!(
                Instant::now() < deadline,
                "no `{prefix}` within {:?}\n{}",
                common::TIMEOUT,
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs `config` through `x86_vm` with the KVM backend on its own thread;
/// the receiver gets how it ended.
fn start(config: VmConfig) -> mpsc::Receiver<Result<X86Exit, String>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let hv = KvmHypervisor::new().expect("open /dev/kvm");
        let _ = tx.send(x86_vm::run(&hv, &config).map_err(|e| e.to_string()));
    });
    rx
}

fn wait_end(rx: &mpsc::Receiver<Result<X86Exit, String>>, console: &Console) -> X86Exit {
    match rx.recv_timeout(common::TIMEOUT) {
        Ok(r) => r.unwrap_or_else(|e| panic!("{e}\n--- console ---\n{}", console.text())),
        Err(_) => panic!(
            "the VM did not end within {:?}\n--- console ---\n{}",
            common::TIMEOUT,
            console.text()
        ),
    }
}

#[test]
fn portable_assembly_boots_a_guest_through_the_traits() {
    let _one = common::serialize();
    let Some(guest) = common::guest_or_skip("portable-x86") else {
        return;
    };
    let image = guest.workdir.join("disk.img");
    let f = common::blk_image(&image);

    let console = Console::default();
    let rx = start(VmConfig {
        kernel: guest.kernel.clone(),
        initrd: Some(guest.initrd.clone()),
        cmdline: format!("{} bt_mode=blk", common::CMDLINE),
        cpus: 1,
        mem_mib: 128,
        boot_mem_mib: None,
        serial: SerialOutput::Writer(ConsoleWriter::new(console.clone())),
        vsock_uds: None,
        disks: vec![DiskConfig {
            path: image.clone(),
            read_only: false,
        }],
        rng: true,
        balloon: false,
        fs: Vec::new(),
        net: None,
        quirks: HostQuirks::detect(),
        snapshot_on_ready: None,
    });
    let exit = wait_end(&rx, &console);
    let text = console.text();
    assert_eq!(exit, X86Exit::Reset, "--- console ---\n{text}");
    assert!(
        text.lines()
            .any(|l| l.trim() == "BERTH-VMM-HOSTDATA host-was-here"),
        "--- console ---\n{text}"
    );
    assert!(
        text.contains("BERTH-VMM-DONE OK"),
        "--- console ---\n{text}"
    );

    common::assert_blk_pattern(&f);
}

#[test]
fn portable_assembly_runs_vsock_on_worker_threads() {
    const SIZE: usize = 1 << 20;
    let _one = common::serialize();
    let Some(guest) = common::guest_or_skip("portable-x86-vsock") else {
        return;
    };
    let uds = guest.workdir.join("vsock.sock");
    let console = Console::default();
    let rx = start(VmConfig {
        kernel: guest.kernel.clone(),
        initrd: Some(guest.initrd.clone()),
        cmdline: format!("{} bt_mode=vsock_listen", common::CMDLINE),
        cpus: 1,
        mem_mib: 128,
        boot_mem_mib: None,
        serial: SerialOutput::Writer(ConsoleWriter::new(console.clone())),
        vsock_uds: Some(uds.clone()),
        disks: Vec::new(),
        rng: false,
        balloon: false,
        fs: Vec::new(),
        net: None,
        quirks: HostQuirks::detect(),
        snapshot_on_ready: None,
    });
    console.wait_for_line("BERTH-VMM-LISTENING 1024", &rx);

    let (data, echoed, _) = common::vsock_echo(&uds, SIZE);
    assert_eq!(echoed.len(), SIZE, "{}", console.text());
    assert!(echoed == data, "echoed data differs");
    console.wait_for_line(&format!("BERTH-VMM-ECHOED {SIZE}"), &rx);
    assert_eq!(
        wait_end(&rx, &console),
        X86Exit::Reset,
        "{}",
        console.text()
    );
}
