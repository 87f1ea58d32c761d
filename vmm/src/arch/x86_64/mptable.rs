//! Intel MultiProcessor Specification 1.4 table.
//!
//! Without it Linux finds no APIC description (no ACPI in berth guests),
//! falls back to virtual-wire mode and spends ≈1.2 s scanning for tables
//! under kvm_pvm. With it, it also learns about every vCPU, so SMP works.

use vm_memory::{Bytes, GuestAddress, GuestMemory};

use super::{IOAPIC_ADDR, IOAPIC_PINS, LAPIC_ADDR, MPTABLE_START};

/// Errors while building the MP table.
#[derive(Debug, thiserror::Error)]
pub enum MptableError {
    /// More vCPUs than the VMM supports.
    #[error("{0} vCPUs requested; the MP table supports 1 to 254")]
    CpuCount(u8),
    /// The table does not fit in the reserved area.
    #[error("the MP table needs {0} bytes, more than the 1 KiB reserved for it")]
    TooLarge(usize),
    /// Guest memory could not be written.
    #[error("cannot write the MP table: {0}")]
    Memory(#[source] vm_memory::GuestMemoryError),
}

const MPC_SPEC: u8 = 4;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const CPU_ENABLED: u8 = 1;
const CPU_BSP: u8 = 2;
/// Family 6 signature and FPU|APIC feature flags, like real firmware.
const CPU_SIGNATURE: u32 = 0x600;
const CPU_FEATURES: u32 = 0x201;
const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_IO_INTERRUPT: u8 = 3;
const ENTRY_LOCAL_INTERRUPT: u8 = 4;
const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;
/// Size of the area reserved for the table (0x9fc00..0xa0000).
const RESERVED: usize = 0x400;

fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |a, b| a.wrapping_add(*b))
        .wrapping_neg()
}

/// Builds the floating pointer and configuration table for `cpu_count` CPUs,
/// as the bytes to place at [`MPTABLE_START`].
pub fn build(cpu_count: u8) -> Result<Vec<u8>, MptableError> {
    if cpu_count == 0 || cpu_count == 255 {
        return Err(MptableError::CpuCount(cpu_count));
    }
    let ioapic_id = cpu_count;
    let mut entries: Vec<u8> = Vec::new();
    let mut count: u16 = 0;
    for cpu in 0..cpu_count {
        let flags = CPU_ENABLED | if cpu == 0 { CPU_BSP } else { 0 };
        entries.extend_from_slice(&[ENTRY_PROCESSOR, cpu, APIC_VERSION, flags]);
        entries.extend_from_slice(&CPU_SIGNATURE.to_le_bytes());
        entries.extend_from_slice(&CPU_FEATURES.to_le_bytes());
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    entries.extend_from_slice(&[ENTRY_BUS, 0]);
    entries.extend_from_slice(b"ISA   ");
    count += 1;
    entries.extend_from_slice(&[ENTRY_IOAPIC, ioapic_id, IOAPIC_VERSION, 1]);
    entries.extend_from_slice(&IOAPIC_ADDR.to_le_bytes());
    count += 1;
    for pin in 0..IOAPIC_PINS {
        // ISA bus IRQ `pin` -> IOAPIC pin `pin`, bus-default polarity/trigger.
        entries.extend_from_slice(&[
            ENTRY_IO_INTERRUPT,
            INT_TYPE_INT,
            0,
            0,
            0,
            pin,
            ioapic_id,
            pin,
        ]);
        count += 1;
    }
    entries.extend_from_slice(&[ENTRY_LOCAL_INTERRUPT, INT_TYPE_EXTINT, 0, 0, 0, 0, 0, 0]);
    entries.extend_from_slice(&[ENTRY_LOCAL_INTERRUPT, INT_TYPE_NMI, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    let table_len = 44 + entries.len();
    let mut header = Vec::with_capacity(table_len);
    header.extend_from_slice(b"PCMP");
    header.extend_from_slice(&(table_len as u16).to_le_bytes());
    header.extend_from_slice(&[MPC_SPEC, 0]);
    header.extend_from_slice(b"BERTH   ");
    header.extend_from_slice(b"BERTH-VMM   ");
    header.extend_from_slice(&0u32.to_le_bytes()); // OEM table pointer
    header.extend_from_slice(&0u16.to_le_bytes()); // OEM table size
    header.extend_from_slice(&count.to_le_bytes());
    header.extend_from_slice(&LAPIC_ADDR.to_le_bytes());
    header.extend_from_slice(&[0; 4]); // extended table length, checksum, reserved
    header.extend_from_slice(&entries);
    header[7] = checksum(&header);

    let mut floating = Vec::with_capacity(16);
    floating.extend_from_slice(b"_MP_");
    floating.extend_from_slice(&((MPTABLE_START + 16) as u32).to_le_bytes());
    floating.extend_from_slice(&[1, MPC_SPEC, 0, 0, 0, 0, 0, 0]);
    floating[10] = checksum(&floating);

    floating.extend_from_slice(&header);
    if floating.len() > RESERVED {
        return Err(MptableError::TooLarge(floating.len()));
    }
    Ok(floating)
}

/// Writes the MP table for `cpu_count` CPUs at [`MPTABLE_START`].
pub fn write<M: GuestMemory>(mem: &M, cpu_count: u8) -> Result<(), MptableError> {
    let table = build(cpu_count)?;
    mem.write_slice(&table, GuestAddress(MPTABLE_START))
        .map_err(MptableError::Memory)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
    }

    #[test]
    fn checksums_and_layout() {
        for cpus in [1u8, 2, 4] {
            let t = build(cpus).unwrap();
            assert_eq!(&t[0..4], b"_MP_");
            assert_eq!(sum(&t[0..16]), 0, "floating pointer checksum");
            let ptr = u32::from_le_bytes(t[4..8].try_into().unwrap()) as u64;
            assert_eq!(ptr, MPTABLE_START + 16);
            let cfg = &t[16..];
            assert_eq!(&cfg[0..4], b"PCMP");
            let len = u16::from_le_bytes([cfg[4], cfg[5]]) as usize;
            assert_eq!(len, cfg.len());
            assert_eq!(sum(cfg), 0, "config table checksum");
            let count = u16::from_le_bytes([cfg[34], cfg[35]]);
            assert_eq!(count as usize, cpus as usize + 2 + IOAPIC_PINS as usize + 2);
            // Processor entries come first; only CPU 0 is the BSP.
            for cpu in 0..cpus as usize {
                let e = &cfg[44 + cpu * 20..];
                assert_eq!((e[0], e[1]), (ENTRY_PROCESSOR, cpu as u8));
                assert_eq!(e[3] & CPU_BSP != 0, cpu == 0);
            }
        }
    }

    #[test]
    fn rejects_zero_cpus() {
        assert!(build(0).is_err());
    }
}
