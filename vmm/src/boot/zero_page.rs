//! The zero page (`struct boot_params`) of the x86 Linux boot protocol.

use linux_loader::loader::bootparam::{boot_params, setup_header};

use super::InitrdPlacement;

/// e820 type of usable RAM.
pub const E820_RAM: u32 = 1;
/// e820 type of reserved memory.
pub const E820_RESERVED: u32 = 2;

/// One e820 memory map entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    /// Start address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// `E820_RAM` or `E820_RESERVED`.
    pub kind: u32,
}

/// `boot_flag` magic.
const BOOT_FLAG: u16 = 0xaa55;
/// "HdrS".
const HDR_MAGIC: u32 = 0x5372_6448;
/// Boot protocol version we speak.
const BOOT_PROTOCOL: u16 = 0x020f;
/// "Undefined" boot loader id.
const LOADER_UNDEFINED: u8 = 0xff;
/// loadflags: the protected-mode kernel is loaded at 1 MiB.
const LOADED_HIGH: u8 = 1;

/// Builds the zero page. `header` is the bzImage's setup header (kept as
/// the kernel asked) or `None` for an ELF vmlinux.
pub fn build(
    header: Option<setup_header>,
    cmdline_addr: u64,
    cmdline_len: usize,
    initrd: Option<InitrdPlacement>,
    e820: &[E820Entry],
) -> boot_params {
    let mut p = boot_params::default();
    if let Some(h) = header {
        p.hdr = h;
    } else {
        p.hdr.boot_flag = BOOT_FLAG;
        p.hdr.header = HDR_MAGIC;
        p.hdr.version = BOOT_PROTOCOL;
    }
    p.hdr.type_of_loader = LOADER_UNDEFINED;
    p.hdr.loadflags |= LOADED_HIGH;
    p.hdr.cmd_line_ptr = cmdline_addr as u32;
    p.hdr.cmdline_size = cmdline_len as u32;
    if let Some(i) = initrd {
        p.hdr.ramdisk_image = i.addr as u32;
        p.hdr.ramdisk_size = i.size as u32;
    }
    let n = e820.len().min(p.e820_table.len());
    for (slot, e) in p.e820_table.iter_mut().zip(e820.iter()) {
        slot.addr = e.addr;
        slot.size = e.size;
        slot.type_ = e.kind;
    }
    p.e820_entries = n as u8;
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::e820_map;
    use vm_memory::ByteValued;

    fn u16_at(b: &[u8], off: usize) -> u16 {
        u16::from_le_bytes([b[off], b[off + 1]])
    }
    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
    }

    /// Checks the byte offsets the boot protocol (Documentation/arch/x86/
    /// zero-page.rst and boot.rst) defines, independent of the bindings.
    #[test]
    fn field_offsets_follow_the_boot_protocol() {
        let initrd = InitrdPlacement {
            addr: 0x700_0000,
            size: 0x1234,
        };
        let p = build(None, 0x20000, 42, Some(initrd), &e820_map(128 << 20));
        let b = p.as_slice();
        assert_eq!(b.len(), 4096);
        assert_eq!(u16_at(b, 0x1fe), 0xaa55);
        assert_eq!(u32_at(b, 0x202), HDR_MAGIC);
        assert_eq!(u16_at(b, 0x206), BOOT_PROTOCOL);
        assert_eq!(b[0x210], 0xff);
        assert_eq!(b[0x211] & 1, 1);
        assert_eq!(u32_at(b, 0x218), 0x700_0000);
        assert_eq!(u32_at(b, 0x21c), 0x1234);
        assert_eq!(u32_at(b, 0x228), 0x20000);
        assert_eq!(u32_at(b, 0x238), 42);
        assert_eq!(b[0x1e8], 3);
        // e820 entries: 20 bytes each at 0x2d0.
        assert_eq!(
            (u64_at(b, 0x2d0), u64_at(b, 0x2d8), u32_at(b, 0x2e0)),
            (0, 0x9fc00, 1)
        );
        assert_eq!(
            (u64_at(b, 0x2e4), u64_at(b, 0x2ec), u32_at(b, 0x2f4)),
            (0x9fc00, 0x100000 - 0x9fc00, 2)
        );
        assert_eq!(
            (u64_at(b, 0x2f8), u64_at(b, 0x300), u32_at(b, 0x308)),
            (0x100000, (128 << 20) - 0x100000, 1)
        );
    }

    #[test]
    fn large_memory_gets_a_high_region() {
        let map = e820_map(4 << 30);
        assert_eq!(map.len(), 4);
        assert_eq!(map[3].addr, 1 << 32);
        assert_eq!(map[3].size, (4 << 30) - 0xc000_0000);
    }
}
