//! PSCI (Power State Coordination Interface) calls a guest makes with HVC:
//! function ids, decoding, and what the VMM must do for each.
//! Reference: Arm DEN0022 (PSCI 1.1).

/// PSCI_VERSION.
pub const PSCI_VERSION: u32 = 0x8400_0000;
/// CPU_SUSPEND (SMC64).
pub const CPU_SUSPEND_64: u32 = 0xc400_0001;
/// CPU_OFF.
pub const CPU_OFF: u32 = 0x8400_0002;
/// CPU_ON (SMC32).
pub const CPU_ON_32: u32 = 0x8400_0003;
/// CPU_ON (SMC64).
pub const CPU_ON_64: u32 = 0xc400_0003;
/// AFFINITY_INFO (SMC64).
pub const AFFINITY_INFO_64: u32 = 0xc400_0004;
/// MIGRATE_INFO_TYPE.
pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
/// SYSTEM_OFF.
pub const SYSTEM_OFF: u32 = 0x8400_0008;
/// SYSTEM_RESET.
pub const SYSTEM_RESET: u32 = 0x8400_0009;
/// PSCI_FEATURES.
pub const PSCI_FEATURES: u32 = 0x8400_000a;

/// PSCI return codes (as the guest reads them in x0).
pub mod ret {
    /// Success.
    pub const SUCCESS: i64 = 0;
    /// Not supported.
    pub const NOT_SUPPORTED: i64 = -1;
    /// Invalid parameters.
    pub const INVALID_PARAMETERS: i64 = -2;
    /// The target CPU is already on.
    pub const ALREADY_ON: i64 = -4;
}

/// The version berth reports: 1.0.
pub const VERSION_1_0: u64 = 1 << 16;
/// MIGRATE_INFO_TYPE answer: no trusted OS, migration not required.
pub const TOS_NOT_PRESENT: u64 = 2;

/// What the VMM does for one PSCI call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciAction {
    /// Put `value` in x0 and continue the calling vCPU.
    Return(u64),
    /// Power the machine off.
    SystemOff,
    /// Reset the machine.
    SystemReset,
    /// Start vCPU `target_mpidr` at `entry` with x0 = `context`.
    CpuOn {
        /// MPIDR affinity of the CPU to start.
        target_mpidr: u64,
        /// Entry point (guest physical).
        entry: u64,
        /// Value for the started CPU's x0.
        context: u64,
    },
    /// Stop the calling vCPU.
    CpuOff,
}

/// Decodes a PSCI call from the caller's x0..x3. Calls berth does not
/// implement return NOT_SUPPORTED, which Linux handles.
pub fn handle_call(x0: u64, x1: u64, x2: u64, x3: u64) -> PsciAction {
    let ret = |v: i64| PsciAction::Return(v as u64);
    match x0 as u32 {
        PSCI_VERSION => PsciAction::Return(VERSION_1_0),
        MIGRATE_INFO_TYPE => PsciAction::Return(TOS_NOT_PRESENT),
        SYSTEM_OFF => PsciAction::SystemOff,
        SYSTEM_RESET => PsciAction::SystemReset,
        CPU_OFF => PsciAction::CpuOff,
        CPU_ON_32 | CPU_ON_64 => PsciAction::CpuOn {
            target_mpidr: x1,
            entry: x2,
            context: x3,
        },
        // WFI-like: returning at once is a valid (if lazy) suspend.
        CPU_SUSPEND_64 => ret(ret::SUCCESS),
        PSCI_FEATURES => match x1 as u32 {
            PSCI_VERSION | CPU_OFF | CPU_ON_64 | SYSTEM_OFF | SYSTEM_RESET | MIGRATE_INFO_TYPE
            | PSCI_FEATURES | CPU_SUSPEND_64 => ret(ret::SUCCESS),
            _ => ret(ret::NOT_SUPPORTED),
        },
        _ => ret(ret::NOT_SUPPORTED),
    }
}

/// The vCPU index of an MPIDR value as berth assigns them (Aff0 = index,
/// higher affinity levels zero); `None` for anything else.
pub fn mpidr_to_index(mpidr: u64) -> Option<u8> {
    let aff = mpidr & 0xff_00ff_ffff;
    (aff <= 0xff).then_some(aff as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_and_power() {
        assert_eq!(
            handle_call(0x8400_0000, 0, 0, 0),
            PsciAction::Return(0x1_0000)
        );
        assert_eq!(handle_call(0x8400_0008, 0, 0, 0), PsciAction::SystemOff);
        assert_eq!(handle_call(0x8400_0009, 0, 0, 0), PsciAction::SystemReset);
        // The function id is 32 bits; the upper half of x0 is ignored.
        assert_eq!(
            handle_call(0xffff_ffff_8400_0008, 0, 0, 0),
            PsciAction::SystemOff
        );
    }

    #[test]
    fn cpu_on_carries_its_arguments() {
        assert_eq!(
            handle_call(0xc400_0003, 1, 0x4008_0000, 7),
            PsciAction::CpuOn {
                target_mpidr: 1,
                entry: 0x4008_0000,
                context: 7
            }
        );
        assert_eq!(mpidr_to_index(0x8000_0001), Some(1));
        assert_eq!(mpidr_to_index(0x100), None);
    }

    #[test]
    fn features_and_unknown_calls() {
        assert_eq!(
            handle_call(u64::from(PSCI_FEATURES), u64::from(SYSTEM_OFF), 0, 0),
            PsciAction::Return(0)
        );
        assert_eq!(
            handle_call(u64::from(PSCI_FEATURES), 0xc400_0012, 0, 0),
            PsciAction::Return(ret::NOT_SUPPORTED as u64)
        );
        assert_eq!(
            handle_call(0xc400_0012, 0, 0, 0),
            PsciAction::Return(u64::MAX)
        );
    }
}
