//! virtio-blk: the guest writes a pattern to /dev/vda and fsyncs; the host
//! finds it in the image file. The guest also reads what the host wrote.
// Boots guests with the KVM backend and an x86_64 kernel.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod common;

#[test]
fn guest_writes_reach_the_image_file() {
    let _one = common::serialize();
    let Some(guest) = common::guest_or_skip("blk") else {
        return;
    };
    let image = guest.workdir.join("disk.img");
    let f = common::blk_image(&image);

    let mut vm = common::start_vm(&guest, "blk", &["--disk", image.to_str().unwrap()]);
    let (line, _) = vm.wait_for_line("BERTH-VMM-HOSTDATA");
    assert_eq!(line.trim(), "BERTH-VMM-HOSTDATA host-was-here");
    vm.assert_clean_exit();

    common::assert_blk_pattern(&f);
}
