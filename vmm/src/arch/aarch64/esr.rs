//! Decoding of the exception syndrome (ESR_EL2) a vCPU exit reports: which
//! trap it was and, for data aborts on device memory, the access to emulate.
//! Reference: Arm ARM, D17.2.37 "ESR_EL2".

/// Exception classes the VMM handles (ESR bits 31:26).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExceptionClass {
    /// WFI or WFE (0x01).
    WfiWfe,
    /// HVC in AArch64 state (0x16): PSCI and other hypercalls.
    Hvc64,
    /// SMC in AArch64 state (0x17).
    Smc64,
    /// MSR/MRS/system instruction trap (0x18).
    SysReg,
    /// Instruction abort from a lower EL (0x20).
    InstructionAbortLowerEl,
    /// Data abort from a lower EL (0x24): an access to unmapped (device) memory.
    DataAbortLowerEl,
    /// BRK in AArch64 state (0x3c).
    Brk64,
    /// Anything else, with its raw class.
    Other(u8),
}

impl ExceptionClass {
    /// The class of syndrome `esr`.
    pub fn of(esr: u64) -> Self {
        match ((esr >> 26) & 0x3f) as u8 {
            0x01 => ExceptionClass::WfiWfe,
            0x16 => ExceptionClass::Hvc64,
            0x17 => ExceptionClass::Smc64,
            0x18 => ExceptionClass::SysReg,
            0x20 => ExceptionClass::InstructionAbortLowerEl,
            0x24 => ExceptionClass::DataAbortLowerEl,
            0x3c => ExceptionClass::Brk64,
            ec => ExceptionClass::Other(ec),
        }
    }
}

/// A data abort the VMM can emulate: a single load or store of 1, 2, 4 or
/// 8 bytes between a general-purpose register and device memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    /// Access size in bytes.
    pub size: usize,
    /// A store (true) or a load.
    pub write: bool,
    /// The transfer register (0..=30; 31 is the zero register here).
    pub reg: u8,
    /// A load sign-extends the value to the register width.
    pub sign_extend: bool,
    /// The register is 64-bit (X) rather than 32-bit (W).
    pub sixty_four: bool,
}

/// Why a data abort cannot be emulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DataAbortError {
    /// The syndrome is not a data abort.
    #[error("ESR {0:#x} is not a data abort")]
    NotDataAbort(u64),
    /// ISV = 0: the hardware gave no instruction syndrome (load/store pair,
    /// writeback, SIMD register...); it would need instruction decoding.
    #[error("data abort without a valid instruction syndrome (ESR {0:#x})")]
    NoSyndrome(u64),
}

/// Decodes the ISS of a data-abort syndrome.
pub fn decode_data_abort(esr: u64) -> Result<MmioAccess, DataAbortError> {
    if ExceptionClass::of(esr) != ExceptionClass::DataAbortLowerEl {
        return Err(DataAbortError::NotDataAbort(esr));
    }
    // ISV, bit 24.
    if esr & (1 << 24) == 0 {
        return Err(DataAbortError::NoSyndrome(esr));
    }
    Ok(MmioAccess {
        // SAS, bits 23:22.
        size: 1 << ((esr >> 22) & 0x3),
        // WnR, bit 6.
        write: esr & (1 << 6) != 0,
        // SRT, bits 20:16.
        reg: ((esr >> 16) & 0x1f) as u8,
        // SSE, bit 21.
        sign_extend: esr & (1 << 21) != 0,
        // SF, bit 15.
        sixty_four: esr & (1 << 15) != 0,
    })
}

impl MmioAccess {
    /// The register value after a load of `data` (little-endian, `size`
    /// bytes), with sign extension and the W-register truncation applied.
    pub fn load_value(&self, data: &[u8]) -> u64 {
        let mut buf = [0u8; 8];
        let n = self.size.min(8).min(data.len());
        buf[..n].copy_from_slice(&data[..n]);
        let mut v = u64::from_le_bytes(buf);
        if self.sign_extend && self.size < 8 {
            let shift = 64 - 8 * self.size as u32;
            v = (((v << shift) as i64) >> shift) as u64;
        }
        if !self.sixty_four {
            v &= 0xffff_ffff;
        }
        v
    }

    /// The bytes a store of register value `value` writes.
    pub fn store_bytes(&self, value: u64) -> [u8; 8] {
        value.to_le_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a data-abort syndrome.
    fn esr(size_log2: u64, write: bool, reg: u64, sse: bool, sf: bool) -> u64 {
        (0x24 << 26)
            | (1 << 25) // IL: 32-bit instruction
            | (1 << 24)
            | (size_log2 << 22)
            | (u64::from(sse) << 21)
            | (reg << 16)
            | (u64::from(sf) << 15)
            | (u64::from(write) << 6)
    }

    #[test]
    fn classes() {
        assert_eq!(ExceptionClass::of(0x5a00_0000), ExceptionClass::Hvc64);
        assert_eq!(
            ExceptionClass::of(0x9200_0046),
            ExceptionClass::DataAbortLowerEl
        );
        assert_eq!(ExceptionClass::of(0x0400_0000), ExceptionClass::WfiWfe);
        assert_eq!(ExceptionClass::of(0x3f << 26), ExceptionClass::Other(0x3f));
    }

    #[test]
    fn store_word_from_w3() {
        let a = decode_data_abort(esr(2, true, 3, false, false)).unwrap();
        assert_eq!(
            a,
            MmioAccess {
                size: 4,
                write: true,
                reg: 3,
                sign_extend: false,
                sixty_four: false
            }
        );
    }

    #[test]
    fn loads_extend_and_truncate() {
        // ldrsb x1, [..] of 0x80 -> 0xffff_ffff_ffff_ff80
        let a = decode_data_abort(esr(0, false, 1, true, true)).unwrap();
        assert_eq!(a.load_value(&[0x80]), 0xffff_ffff_ffff_ff80);
        // ldrsh w1, [..] of 0x8000 -> 0xffff_8000
        let a = decode_data_abort(esr(1, false, 1, true, false)).unwrap();
        assert_eq!(a.load_value(&[0x00, 0x80]), 0xffff_8000);
        // ldr x30, [..]
        let a = decode_data_abort(esr(3, false, 30, false, true)).unwrap();
        assert_eq!(a.reg, 30);
        assert_eq!(
            a.load_value(&0x1122_3344_5566_7788u64.to_le_bytes()),
            0x1122_3344_5566_7788
        );
    }

    #[test]
    fn rejects_what_it_cannot_emulate() {
        assert_eq!(
            decode_data_abort(0x5a00_0000),
            Err(DataAbortError::NotDataAbort(0x5a00_0000))
        );
        let no_isv = esr(2, true, 3, false, false) & !(1 << 24);
        assert_eq!(
            decode_data_abort(no_isv),
            Err(DataAbortError::NoSyndrome(no_isv))
        );
    }
}
