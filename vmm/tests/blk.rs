//! virtio-blk: the guest writes a pattern to /dev/vda and fsyncs; the host
//! finds it in the image file. The guest also reads what the host wrote.
// Boots guests with the KVM backend and an x86_64 kernel.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

#[test]
fn guest_writes_reach_the_image_file() {
    let _one = common::serialize();
    let Some(guest) = common::guest_or_skip("blk") else {
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

    let mut vm = common::start_vm(&guest, "blk", &["--disk", image.to_str().unwrap()]);
    let (line, _) = vm.wait_for_line("BERTH-VMM-HOSTDATA");
    assert_eq!(line.trim(), "BERTH-VMM-HOSTDATA host-was-here");
    vm.assert_clean_exit();

    let mut got = vec![0u8; 64 * 1024];
    f.read_exact_at(&mut got, 0).unwrap();
    let want: Vec<u8> = (0..got.len() as u32).map(|i| (i * 31 + 7) as u8).collect();
    assert!(got == want, "pattern not found in the image");
}
