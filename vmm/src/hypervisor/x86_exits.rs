//! Backend-independent decoding for x86 backends that report exits as
//! packed bitfields (WHP today): port-I/O access info, instruction length,
//! and the VMX access-rights form of a segment. Pure functions, unit-tested
//! on every host; `whp` only moves the raw words in and out.

use crate::arch::x86_64::Segment;

/// A decoded port I/O access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoAccess {
    /// `out` (true) or `in`.
    pub write: bool,
    /// 1, 2 or 4 bytes.
    pub size: usize,
    /// `ins`/`outs`.
    pub string: bool,
    /// With a `rep` prefix.
    pub rep: bool,
}

impl IoAccess {
    /// Decodes WHP's `WHV_X64_IO_PORT_ACCESS_INFO`: IsWrite (bit 0),
    /// AccessSize (bits 1..4), StringOp (bit 4), RepPrefix (bit 5).
    pub fn from_whp(bits: u32) -> Self {
        IoAccess {
            write: bits & 1 != 0,
            size: ((bits >> 1) & 0x7) as usize,
            string: bits & (1 << 4) != 0,
            rep: bits & (1 << 5) != 0,
        }
    }

    /// Whether the VMM can complete it from the exit alone (no string I/O,
    /// a valid size).
    pub fn is_simple(&self) -> bool {
        !self.string && matches!(self.size, 1 | 2 | 4)
    }
}

/// The length of the exiting instruction from WHP's VP-context bitfield
/// (InstructionLength, bits 0..4).
pub fn whp_instruction_length(bits: u8) -> u64 {
    u64::from(bits & 0xf)
}

/// A segment's attributes in the VMX access-rights layout WHP (and Intel
/// hypervisors generally) use: type 0..4, S 4, DPL 5..7, P 7, AVL 12, L 13,
/// D/B 14, G 15.
pub fn segment_attributes(s: &Segment) -> u16 {
    u16::from(s.type_ & 0xf)
        | u16::from(s.s & 1) << 4
        | u16::from(s.dpl & 3) << 5
        | u16::from(s.present & 1) << 7
        | u16::from(s.avl & 1) << 12
        | u16::from(s.l & 1) << 13
        | u16::from(s.db & 1) << 14
        | u16::from(s.g & 1) << 15
}

/// The value `in` leaves in RAX: the low `size` bytes replaced by `data`.
pub fn merge_in_value(rax: u64, data: &[u8], size: usize) -> u64 {
    let mut bytes = rax.to_le_bytes();
    let n = size.min(data.len()).min(8);
    bytes[..n].copy_from_slice(&data[..n]);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::regs::BOOT_GDT;

    #[test]
    fn io_access_bits() {
        // outb: write, size 1
        assert_eq!(
            IoAccess::from_whp(0b0000_0011),
            IoAccess {
                write: true,
                size: 1,
                string: false,
                rep: false
            }
        );
        // inl
        let inl = IoAccess::from_whp(4 << 1);
        assert!(!inl.write && inl.size == 4 && inl.is_simple());
        // rep outsb
        let rep = IoAccess::from_whp(1 | 1 << 1 | 1 << 4 | 1 << 5);
        assert!(rep.string && rep.rep && !rep.is_simple());
        assert_eq!(whp_instruction_length(0xf2), 2);
    }

    #[test]
    fn boot_segments_in_vmx_form() {
        // 64-bit code: type 0xb, S, P, L, G -> 0xa09b
        let cs = Segment::from_gdt_entry(2, BOOT_GDT[2]);
        assert_eq!(segment_attributes(&cs), 0xa09b);
        // flat data: type 3, S, P, D/B, G -> 0xc093
        let ds = Segment::from_gdt_entry(3, BOOT_GDT[3]);
        assert_eq!(segment_attributes(&ds), 0xc093);
    }

    #[test]
    fn in_replaces_only_the_low_bytes() {
        assert_eq!(
            merge_in_value(0x1122_3344_5566_7788, &[0xaa], 1),
            0x1122_3344_5566_77aa
        );
        assert_eq!(
            merge_in_value(0xffff_ffff_ffff_ffff, &[1, 2, 3, 4], 4),
            0xffff_ffff_0403_0201
        );
    }
}
