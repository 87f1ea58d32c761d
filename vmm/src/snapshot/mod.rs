//! VM snapshots: a versioned, checksummed state file plus a sparse raw
//! memory file.
//!
//! A snapshot is a directory:
//! - `state.bin`: `MAGIC` (8 bytes) | format version (u32 LE) | header
//!   length (u32 LE) | header (JSON, [`Header`]) | state section (JSON of the
//!   machine state; its length and sha256 are in the header).
//! - `memory.bin`: guest RAM, regions back to back in guest-address order,
//!   written sparsely (zero pages are holes). A restore maps it
//!   `MAP_PRIVATE`: pages are shared with the page cache until the guest
//!   writes them (copy-on-write), so a restore reads nothing up front and the
//!   file never changes.
//!
//! This module (format, header checks) is platform-independent; taking and
//! restoring a snapshot of a running VM is the backend's part (`machine`,
//! Linux x86_64 / KVM).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[cfg(target_os = "linux")]
pub mod memory;

/// First bytes of `state.bin`.
pub const MAGIC: [u8; 8] = *b"BERTHSNP";
/// Version of the file layout and state encoding written by this VMM.
pub const FORMAT_VERSION: u32 = 1;
/// The state file in a snapshot directory.
pub const STATE_FILE: &str = "state.bin";
/// The memory file in a snapshot directory.
pub const MEMORY_FILE: &str = "memory.bin";
/// Largest header accepted (it is small JSON).
const MAX_HEADER: usize = 1 << 20;

/// The VMM version that writes snapshots (state layouts may change between
/// versions, so a snapshot is only restored by the same version).
pub fn vmm_version() -> String {
    format!("berth-vmm {}", env!("CARGO_PKG_VERSION"))
}

/// What a snapshot was taken of and on.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// [`vmm_version`] of the writer.
    pub vmm_version: String,
    /// Hypervisor backend ("kvm").
    pub hypervisor: String,
    /// Guest architecture ("x86_64").
    pub arch: String,
    /// sha256 (hex) of the kernel image the guest booted.
    pub kernel_sha256: String,
    /// Guest TSC frequency in kHz (the guest calibrated against it; kvm_pvm
    /// cannot scale it, so a restore needs the same frequency).
    pub tsc_khz: u32,
    /// Guest RAM in bytes.
    pub mem_size: u64,
    /// Guest RAM regions (guest address, size), in `memory.bin` order.
    pub memory_regions: Vec<(u64, u64)>,
    /// Length of the state section.
    pub state_len: u64,
    /// sha256 (hex) of the state section.
    pub state_sha256: String,
    /// When it was taken (Unix seconds).
    pub created_unix: u64,
}

/// Why a snapshot cannot be read or restored here.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Not a snapshot at all.
    #[error("not a berth snapshot (bad magic)")]
    BadMagic,
    /// The file ends early.
    #[error("snapshot state file is truncated")]
    Truncated,
    /// Written in a layout this VMM does not read.
    #[error(
        "snapshot format version {found} is not supported (this VMM reads version {supported})"
    )]
    FormatVersion {
        /// Version in the file.
        found: u32,
        /// Version this VMM reads.
        supported: u32,
    },
    /// Header or state does not parse.
    #[error("snapshot {what} is corrupt: {source}")]
    Corrupt {
        /// Which part.
        what: &'static str,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The state section does not match its checksum.
    #[error("snapshot state checksum mismatch (expected sha256 {expected}, got {actual}): the file was modified or damaged")]
    Checksum {
        /// From the header.
        expected: String,
        /// Of the bytes read.
        actual: String,
    },
    /// Taken by another VMM version.
    #[error(
        "snapshot was taken by {snapshot}, this is {this}: restore it with the same VMM version"
    )]
    VmmVersion {
        /// The writer.
        snapshot: String,
        /// This VMM.
        this: String,
    },
    /// Another hypervisor or architecture.
    #[error("snapshot is for {snapshot}, this host is {host}")]
    Platform {
        /// hypervisor/arch of the snapshot.
        snapshot: String,
        /// hypervisor/arch here.
        host: String,
    },
    /// The host's TSC runs at another frequency.
    #[error("snapshot guest TSC is {snapshot} kHz but this host's is {host} kHz (no TSC scaling here): restore on a host with the same TSC frequency")]
    TscKhz {
        /// kHz in the snapshot.
        snapshot: u32,
        /// kHz here.
        host: u32,
    },
    /// The kernel given on restore is not the one the guest booted.
    #[error("snapshot guest booted kernel sha256 {snapshot}, the given kernel is {given}")]
    Kernel {
        /// Hash in the snapshot.
        snapshot: String,
        /// Hash of the given kernel.
        given: String,
    },
    /// The memory file does not fit the header.
    #[error("snapshot memory file: {0}")]
    Memory(String),
    /// The restore configuration does not fit the snapshot (devices, disks).
    #[error("snapshot does not match the restore configuration: {0}")]
    Mismatch(String),
    /// The VM cannot be snapshotted in its current state.
    #[error("cannot snapshot now: {0}")]
    NotQuiescent(String),
    /// The hypervisor refused to save or load some state.
    #[error("hypervisor state: {0}")]
    Hypervisor(String),
}

/// Wraps an OS error with what was being done.
pub fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SnapshotError {
    let what = what.into();
    move |source| SnapshotError::Io { what, source }
}

/// sha256 of `bytes`, as hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// sha256 of a file, as hex.
pub fn file_sha256(path: &std::path::Path) -> Result<String, SnapshotError> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(io_err(format!("open {}", path.display())))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(io_err(format!("read {}", path.display())))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Serializes `state` and frames it with `header` (whose `state_len` and
/// `state_sha256` are filled in here).
pub fn encode<S: Serialize>(mut header: Header, state: &S) -> Result<Vec<u8>, SnapshotError> {
    let state = serde_json::to_vec(state).map_err(|source| SnapshotError::Corrupt {
        what: "state (while writing)",
        source,
    })?;
    header.state_len = state.len() as u64;
    header.state_sha256 = sha256_hex(&state);
    let head = serde_json::to_vec(&header).map_err(|source| SnapshotError::Corrupt {
        what: "header (while writing)",
        source,
    })?;
    let mut out = Vec::with_capacity(16 + head.len() + state.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(head.len() as u32).to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(&state);
    Ok(out)
}

/// Reads the header and verifies the state section's checksum; returns the
/// header and the (still serialized) state.
pub fn decode_header(bytes: &[u8]) -> Result<(Header, &[u8]), SnapshotError> {
    if bytes.len() < 8 || bytes[..8] != MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    if bytes.len() < 16 {
        return Err(SnapshotError::Truncated);
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(SnapshotError::FormatVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let head_len = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize;
    if head_len > MAX_HEADER || bytes.len() < 16 + head_len {
        return Err(SnapshotError::Truncated);
    }
    let header: Header = serde_json::from_slice(&bytes[16..16 + head_len]).map_err(|source| {
        SnapshotError::Corrupt {
            what: "header",
            source,
        }
    })?;
    let state = &bytes[16 + head_len..];
    if (state.len() as u64) < header.state_len {
        return Err(SnapshotError::Truncated);
    }
    let state = &state[..header.state_len as usize];
    let actual = sha256_hex(state);
    if actual != header.state_sha256 {
        return Err(SnapshotError::Checksum {
            expected: header.state_sha256.clone(),
            actual,
        });
    }
    Ok((header, state))
}

/// Parses a state section returned by [`decode_header`].
pub fn decode_state<S: for<'de> Deserialize<'de>>(state: &[u8]) -> Result<S, SnapshotError> {
    serde_json::from_slice(state).map_err(|source| SnapshotError::Corrupt {
        what: "state",
        source,
    })
}

/// What the restoring host offers, to check a header against.
#[derive(Debug, Clone)]
pub struct HostIdentity {
    /// [`vmm_version`] here.
    pub vmm_version: String,
    /// Hypervisor backend here.
    pub hypervisor: String,
    /// Architecture here.
    pub arch: String,
    /// The host's TSC frequency (None: not known, not checked).
    pub tsc_khz: Option<u32>,
    /// sha256 of the kernel the caller expects (None: not checked).
    pub kernel_sha256: Option<String>,
}

/// Refuses a snapshot this host cannot restore, with the reason.
pub fn check_compatible(header: &Header, host: &HostIdentity) -> Result<(), SnapshotError> {
    if header.vmm_version != host.vmm_version {
        return Err(SnapshotError::VmmVersion {
            snapshot: header.vmm_version.clone(),
            this: host.vmm_version.clone(),
        });
    }
    if header.hypervisor != host.hypervisor || header.arch != host.arch {
        return Err(SnapshotError::Platform {
            snapshot: format!("{}/{}", header.hypervisor, header.arch),
            host: format!("{}/{}", host.hypervisor, host.arch),
        });
    }
    if let Some(khz) = host.tsc_khz {
        if khz != header.tsc_khz {
            return Err(SnapshotError::TscKhz {
                snapshot: header.tsc_khz,
                host: khz,
            });
        }
    }
    if let Some(k) = &host.kernel_sha256 {
        if *k != header.kernel_sha256 {
            return Err(SnapshotError::Kernel {
                snapshot: header.kernel_sha256.clone(),
                given: k.clone(),
            });
        }
    }
    let regions: u64 = header.memory_regions.iter().map(|r| r.1).sum();
    if regions != header.mem_size {
        return Err(SnapshotError::Memory(format!(
            "regions cover {regions} bytes, header says {}",
            header.mem_size
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct State {
        regs: Vec<u64>,
        name: String,
    }

    fn header() -> Header {
        Header {
            vmm_version: vmm_version(),
            hypervisor: "kvm".into(),
            arch: "x86_64".into(),
            kernel_sha256: "ab".repeat(32),
            tsc_khz: 2_000_000,
            mem_size: 256 << 20,
            memory_regions: vec![(0, 256 << 20)],
            state_len: 0,
            state_sha256: String::new(),
            created_unix: 1,
        }
    }

    fn host() -> HostIdentity {
        HostIdentity {
            vmm_version: vmm_version(),
            hypervisor: "kvm".into(),
            arch: "x86_64".into(),
            tsc_khz: Some(2_000_000),
            kernel_sha256: Some("ab".repeat(32)),
        }
    }

    fn state() -> State {
        State {
            regs: vec![1, 2, u64::MAX],
            name: "vcpu0".into(),
        }
    }

    #[test]
    fn round_trip() {
        let bytes = encode(header(), &state()).unwrap();
        let (h, s) = decode_header(&bytes).unwrap();
        assert_eq!(h.state_len as usize, s.len());
        assert_eq!(h.state_sha256, sha256_hex(s));
        assert_eq!(decode_state::<State>(s).unwrap(), state());
        check_compatible(&h, &host()).unwrap();
    }

    #[test]
    fn tampered_state_fails_the_checksum() {
        let mut bytes = encode(header(), &state()).unwrap();
        let n = bytes.len();
        // "vcpu0" -> "vcpu1": still valid JSON, different bytes.
        let pos = bytes.windows(5).rposition(|w| w == b"vcpu0").unwrap();
        bytes[pos + 4] = b'1';
        assert!(matches!(
            decode_header(&bytes),
            Err(SnapshotError::Checksum { .. })
        ));
        assert!(matches!(
            decode_header(&bytes[..n - 3]),
            Err(SnapshotError::Truncated)
        ));
    }

    #[test]
    fn bad_magic_and_format_version() {
        let mut bytes = encode(header(), &state()).unwrap();
        assert!(matches!(
            decode_header(b"ELF\x7f...."),
            Err(SnapshotError::BadMagic)
        ));
        bytes[8] = 9;
        let e = decode_header(&bytes).unwrap_err();
        assert!(matches!(
            e,
            SnapshotError::FormatVersion {
                found: 9,
                supported: FORMAT_VERSION
            }
        ));
        assert!(e.to_string().contains("format version 9"));
    }

    #[test]
    fn incompatible_hosts_are_refused_with_the_reason() {
        let mut h = header();
        h.vmm_version = "berth-vmm 0.0.1".into();
        let e = check_compatible(&h, &host()).unwrap_err();
        assert!(matches!(e, SnapshotError::VmmVersion { .. }));
        assert!(e.to_string().contains("berth-vmm 0.0.1"), "{e}");

        let mut other = host();
        other.tsc_khz = Some(3_000_000);
        let e = check_compatible(&header(), &other).unwrap_err();
        assert!(matches!(
            e,
            SnapshotError::TscKhz {
                snapshot: 2_000_000,
                host: 3_000_000
            }
        ));

        let mut other = host();
        other.kernel_sha256 = Some("cd".repeat(32));
        assert!(matches!(
            check_compatible(&header(), &other),
            Err(SnapshotError::Kernel { .. })
        ));

        let mut other = host();
        other.hypervisor = "whp".into();
        assert!(matches!(
            check_compatible(&header(), &other),
            Err(SnapshotError::Platform { .. })
        ));

        // Unknown TSC / no kernel given: not checked.
        let mut other = host();
        other.tsc_khz = None;
        other.kernel_sha256 = None;
        check_compatible(&header(), &other).unwrap();
    }
}
