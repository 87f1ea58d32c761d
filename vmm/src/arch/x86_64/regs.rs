//! The boot CPU's 64-bit entry state: GDT, identity page tables, control
//! registers, and the MSRs and local APIC settings every vCPU starts with.

use vm_memory::{Bytes, GuestAddress, GuestMemory};

use super::{BOOT_STACK_POINTER, GDT_ADDR, PML4_ADDR, ZERO_PAGE_ADDR};

/// Errors while writing boot structures into guest memory.
#[derive(Debug, thiserror::Error)]
pub enum RegsError {
    /// Guest memory is too small or not mapped where the tables go.
    #[error("cannot write {what} to guest memory: {source}")]
    Memory {
        /// Which structure.
        what: &'static str,
        /// The memory error.
        #[source]
        source: vm_memory::GuestMemoryError,
    },
}

/// A segment register in hypervisor-neutral form.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Base address.
    pub base: u64,
    /// Limit (in bytes, already scaled by granularity).
    pub limit: u32,
    /// Selector.
    pub selector: u16,
    /// Type field (4 bits).
    pub type_: u8,
    /// Present.
    pub present: u8,
    /// Descriptor privilege level.
    pub dpl: u8,
    /// Default operation size (1 = 32-bit).
    pub db: u8,
    /// Code/data (1) or system (0) segment.
    pub s: u8,
    /// 64-bit code segment.
    pub l: u8,
    /// Granularity (1 = 4 KiB).
    pub g: u8,
    /// Available for software.
    pub avl: u8,
}

impl Segment {
    /// Decodes GDT entry `entry` found at index `index`.
    pub fn from_gdt_entry(index: u16, entry: u64) -> Self {
        let limit_raw = ((entry & 0xffff) | ((entry >> 32) & 0xf_0000)) as u32;
        let g = ((entry >> 55) & 1) as u8;
        Segment {
            base: ((entry >> 16) & 0xff_ffff) | (((entry >> 56) & 0xff) << 24),
            limit: if g == 1 {
                (limit_raw << 12) | 0xfff
            } else {
                limit_raw
            },
            selector: index * 8,
            type_: ((entry >> 40) & 0xf) as u8,
            present: ((entry >> 47) & 1) as u8,
            dpl: ((entry >> 45) & 3) as u8,
            db: ((entry >> 54) & 1) as u8,
            s: ((entry >> 44) & 1) as u8,
            l: ((entry >> 53) & 1) as u8,
            g,
            avl: ((entry >> 52) & 1) as u8,
        }
    }
}

/// The boot GDT: null, null, 64-bit code (selector 0x10), data (0x18).
/// Linux's 64-bit entry expects `__BOOT_CS` = 0x10 and `__BOOT_DS` = 0x18.
pub const BOOT_GDT: [u64; 4] = [0, 0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff];

/// CR0: PE | ET | PG.
pub const CR0_BOOT: u64 = 0x8000_0011;
/// CR4: PAE.
pub const CR4_BOOT: u64 = 0x20;
/// EFER: LME | LMA.
pub const EFER_BOOT: u64 = 0x500;
/// Number of 1 GiB ranges the boot identity map covers.
pub const IDENTITY_MAP_GIB: u64 = 4;

/// Entry state of the boot CPU for the Linux 64-bit boot protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootCpuState {
    /// Entry point.
    pub rip: u64,
    /// Stack pointer.
    pub rsp: u64,
    /// Zero page address (the protocol passes it in RSI).
    pub rsi: u64,
    /// Flags (bit 1 is reserved and set).
    pub rflags: u64,
    /// Code segment.
    pub cs: Segment,
    /// Data segments (DS, ES, FS, GS, SS).
    pub data: Segment,
    /// GDT base.
    pub gdt_base: u64,
    /// GDT limit.
    pub gdt_limit: u16,
    /// CR0.
    pub cr0: u64,
    /// CR3 (the PML4).
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// EFER.
    pub efer: u64,
}

impl BootCpuState {
    /// The state for entering a 64-bit kernel at `entry`.
    pub fn linux_64bit(entry: u64) -> Self {
        BootCpuState {
            rip: entry,
            rsp: BOOT_STACK_POINTER,
            rsi: ZERO_PAGE_ADDR,
            rflags: 2,
            cs: Segment::from_gdt_entry(2, BOOT_GDT[2]),
            data: Segment::from_gdt_entry(3, BOOT_GDT[3]),
            gdt_base: GDT_ADDR,
            gdt_limit: (BOOT_GDT.len() * 8 - 1) as u16,
            cr0: CR0_BOOT,
            cr3: PML4_ADDR,
            cr4: CR4_BOOT,
            efer: EFER_BOOT,
        }
    }
}

/// Writes the boot GDT and the identity page tables (2 MiB pages covering
/// the first [`IDENTITY_MAP_GIB`] GiB) into guest memory.
pub fn write_boot_tables<M: GuestMemory>(mem: &M) -> Result<(), RegsError> {
    let err = |what| move |source| RegsError::Memory { what, source };
    for (i, entry) in BOOT_GDT.iter().enumerate() {
        mem.write_obj(*entry, GuestAddress(GDT_ADDR + i as u64 * 8))
            .map_err(err("GDT"))?;
    }
    let pdpt = PML4_ADDR + 0x1000;
    let pd = pdpt + 0x1000;
    mem.write_obj(pdpt | 3, GuestAddress(PML4_ADDR))
        .map_err(err("PML4"))?;
    for gib in 0..IDENTITY_MAP_GIB {
        let pd_page = pd + gib * 0x1000;
        mem.write_obj(pd_page | 3, GuestAddress(pdpt + gib * 8))
            .map_err(err("PDPT"))?;
        let mut entries = [0u8; 4096];
        for (i, chunk) in entries.chunks_exact_mut(8).enumerate() {
            // Present | writable | 2 MiB page.
            let value = ((gib << 30) + ((i as u64) << 21)) | 0x83;
            chunk.copy_from_slice(&value.to_le_bytes());
        }
        mem.write_slice(&entries, GuestAddress(pd_page))
            .map_err(err("page directory"))?;
    }
    Ok(())
}

/// MSRs every vCPU starts with (index, value), as real firmware leaves them.
pub fn boot_msrs() -> Vec<(u32, u64)> {
    vec![
        (0x174, 0),       // IA32_SYSENTER_CS
        (0x175, 0),       // IA32_SYSENTER_ESP
        (0x176, 0),       // IA32_SYSENTER_EIP
        (0xc000_0081, 0), // STAR
        (0xc000_0082, 0), // LSTAR
        (0xc000_0083, 0), // CSTAR
        (0xc000_0084, 0), // SYSCALL_MASK
        (0xc000_0102, 0), // KERNEL_GS_BASE
        (0x1a0, 1),       // IA32_MISC_ENABLE: fast strings
    ]
}

/// Offsets of the local APIC LVT LINT0/LINT1 registers in the APIC page.
const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
/// Delivery modes.
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

/// Wires LINT0 to ExtINT (the legacy PIC) and LINT1 to NMI in a local APIC
/// register page, as the MP specification's virtual-wire mode expects.
pub fn set_lint(apic_regs: &mut [u8]) {
    let set_mode = |regs: &mut [u8], off: usize, mode: u32| {
        let mut v = u32::from_le_bytes(regs[off..off + 4].try_into().unwrap());
        v = (v & !0x700) | (mode << 8);
        regs[off..off + 4].copy_from_slice(&v.to_le_bytes());
    };
    set_mode(apic_regs, APIC_LVT0, APIC_MODE_EXTINT);
    set_mode(apic_regs, APIC_LVT1, APIC_MODE_NMI);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GuestMemoryMmap;

    #[test]
    fn gdt_entries_decode_to_long_mode_segments() {
        let cs = Segment::from_gdt_entry(2, BOOT_GDT[2]);
        assert_eq!(
            (cs.selector, cs.l, cs.db, cs.type_, cs.present),
            (0x10, 1, 0, 11, 1)
        );
        assert_eq!(cs.limit, 0xffff_ffff);
        let ds = Segment::from_gdt_entry(3, BOOT_GDT[3]);
        assert_eq!(
            (ds.selector, ds.l, ds.db, ds.type_, ds.s),
            (0x18, 0, 1, 3, 1)
        );
    }

    #[test]
    fn identity_map_covers_four_gib() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        write_boot_tables(&mem).unwrap();
        let pml4: u64 = mem.read_obj(GuestAddress(PML4_ADDR)).unwrap();
        assert_eq!(pml4, 0xa003);
        let pdpt3: u64 = mem.read_obj(GuestAddress(0xa000 + 24)).unwrap();
        assert_eq!(pdpt3, 0xe003);
        let last: u64 = mem.read_obj(GuestAddress(0xe000 + 511 * 8)).unwrap();
        assert_eq!(last, ((3u64 << 30) + (511 << 21)) | 0x83);
        let gdt2: u64 = mem.read_obj(GuestAddress(GDT_ADDR + 16)).unwrap();
        assert_eq!(gdt2, BOOT_GDT[2]);
    }

    #[test]
    fn lint_modes() {
        let mut regs = vec![0u8; 1024];
        set_lint(&mut regs);
        assert_eq!(regs[APIC_LVT0 + 1] & 7, 7);
        assert_eq!(regs[APIC_LVT1 + 1] & 7, 4);
    }
}
