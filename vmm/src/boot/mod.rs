//! Loading a Linux guest: kernel image (ELF vmlinux or bzImage), initrd,
//! command line and the zero page of the x86 64-bit boot protocol.

#[cfg(unix)]
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use linux_loader::cmdline::Cmdline;
use linux_loader::loader::bootparam::{boot_params, setup_header};
use linux_loader::loader::{BzImage, Elf, KernelLoader};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory};

use crate::arch::x86_64::{
    CMDLINE_ADDR, CMDLINE_MAX_SIZE, HIGH_RAM_START, HIMEM_START, LOW_RAM_END, MPTABLE_START,
    ZERO_PAGE_ADDR,
};

pub mod zero_page;

/// Errors while loading the guest.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// A file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel image is neither a loadable ELF nor a bzImage.
    #[error("cannot load kernel {path}: {source}")]
    Kernel {
        /// The kernel file.
        path: PathBuf,
        /// The loader's error.
        #[source]
        source: linux_loader::loader::Error,
    },
    /// The initrd does not fit in guest RAM.
    #[error("the initrd ({size} bytes) does not fit in guest RAM")]
    InitrdTooLarge {
        /// Its size.
        size: u64,
    },
    /// The command line is invalid or too long.
    #[error("invalid kernel command line: {0}")]
    Cmdline(#[from] linux_loader::cmdline::Error),
    /// Guest memory could not be written.
    #[error("cannot write {what} to guest memory: {source}")]
    Memory {
        /// Which structure.
        what: &'static str,
        /// The memory error.
        #[source]
        source: vm_memory::GuestMemoryError,
    },
}

/// The loaded kernel.
#[derive(Debug)]
pub struct LoadedKernel {
    /// 64-bit entry point.
    pub entry: u64,
    /// The bzImage setup header, to be copied into the zero page.
    pub setup_header: Option<setup_header>,
}

/// Where the initrd was placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitrdPlacement {
    /// Guest physical address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
}

#[cfg(unix)]
fn open(path: &Path) -> Result<File, BootError> {
    File::open(path).map_err(|source| BootError::File {
        path: path.to_owned(),
        source,
    })
}

/// The kernel image as linux-loader reads it: the file itself where
/// vm-memory can read volatile memory from a file descriptor (Unix), the
/// whole image in memory elsewhere (Windows).
#[cfg(unix)]
fn open_kernel(path: &Path) -> Result<File, BootError> {
    open(path)
}

#[cfg(not(unix))]
fn open_kernel(path: &Path) -> Result<std::io::Cursor<Vec<u8>>, BootError> {
    std::fs::read(path)
        .map(std::io::Cursor::new)
        .map_err(|source| BootError::File {
            path: path.to_owned(),
            source,
        })
}

/// Loads an ELF vmlinux (entered at its ELF entry in 64-bit mode) or a
/// bzImage (entered at its 64-bit entry, 0x200 past the protected-mode code).
pub fn load_kernel<M: GuestMemory>(mem: &M, path: &Path) -> Result<LoadedKernel, BootError> {
    let mut file = open_kernel(path)?;
    let mut magic = [0u8; 4];
    let is_elf = file.read_exact(&mut magic).is_ok() && magic == *b"\x7fELF";
    file.seek(SeekFrom::Start(0))
        .map_err(|source| BootError::File {
            path: path.to_owned(),
            source,
        })?;
    let kernel_err = |source| BootError::Kernel {
        path: path.to_owned(),
        source,
    };
    if is_elf {
        let r =
            Elf::load(mem, None, &mut file, Some(GuestAddress(HIMEM_START))).map_err(kernel_err)?;
        Ok(LoadedKernel {
            entry: r.kernel_load.raw_value(),
            setup_header: None,
        })
    } else {
        let r = BzImage::load(mem, None, &mut file, Some(GuestAddress(HIMEM_START)))
            .map_err(kernel_err)?;
        Ok(LoadedKernel {
            entry: r.kernel_load.raw_value() + 0x200,
            setup_header: r.setup_header,
        })
    }
}

/// Copies the initrd to the top of low RAM (page aligned, below `max_addr`).
pub fn load_initrd<M: GuestMemory>(
    mem: &M,
    path: &Path,
    mem_size: u64,
    max_addr: u64,
) -> Result<InitrdPlacement, BootError> {
    let data = std::fs::read(path).map_err(|source| BootError::File {
        path: path.to_owned(),
        source,
    })?;
    let size = data.len() as u64;
    let top = mem_size.min(LOW_RAM_END).min(max_addr);
    let addr = top
        .checked_sub(size)
        .map(|a| a & !0xfff)
        .filter(|a| *a >= HIMEM_START)
        .ok_or(BootError::InitrdTooLarge { size })?;
    mem.write_slice(&data, GuestAddress(addr))
        .map_err(|source| BootError::Memory {
            what: "initrd",
            source,
        })?;
    Ok(InitrdPlacement { addr, size })
}

/// A fresh command line with the x86 size limit.
pub fn new_cmdline(initial: &str) -> Result<Cmdline, BootError> {
    let mut c = Cmdline::new(CMDLINE_MAX_SIZE)?;
    if !initial.trim().is_empty() {
        c.insert_str(initial.trim())?;
    }
    Ok(c)
}

/// Writes the command line; returns its length without the NUL.
pub fn write_cmdline<M: GuestMemory>(mem: &M, cmdline: &Cmdline) -> Result<usize, BootError> {
    let c = cmdline.as_cstring()?;
    mem.write_slice(c.as_bytes_with_nul(), GuestAddress(CMDLINE_ADDR))
        .map_err(|source| BootError::Memory {
            what: "command line",
            source,
        })?;
    Ok(c.as_bytes().len())
}

/// The e820 map for `mem_size` bytes of RAM: low RAM with the MP-table/BIOS
/// hole reserved, and RAM above 4 GiB if any.
pub fn e820_map(mem_size: u64) -> Vec<zero_page::E820Entry> {
    use zero_page::{E820Entry, E820_RAM, E820_RESERVED};
    let mut map = vec![
        E820Entry {
            addr: 0,
            size: MPTABLE_START,
            kind: E820_RAM,
        },
        E820Entry {
            addr: MPTABLE_START,
            size: HIMEM_START - MPTABLE_START,
            kind: E820_RESERVED,
        },
        E820Entry {
            addr: HIMEM_START,
            size: mem_size.min(LOW_RAM_END) - HIMEM_START,
            kind: E820_RAM,
        },
    ];
    if mem_size > LOW_RAM_END {
        map.push(E820Entry {
            addr: HIGH_RAM_START,
            size: mem_size - LOW_RAM_END,
            kind: E820_RAM,
        });
    }
    map
}

/// Builds and writes the zero page.
pub fn write_zero_page<M: GuestMemory>(
    mem: &M,
    kernel: &LoadedKernel,
    cmdline_len: usize,
    initrd: Option<InitrdPlacement>,
    mem_size: u64,
) -> Result<boot_params, BootError> {
    let params = zero_page::build(
        kernel.setup_header,
        CMDLINE_ADDR,
        cmdline_len,
        initrd,
        &e820_map(mem_size),
    );
    mem.write_obj(params, GuestAddress(ZERO_PAGE_ADDR))
        .map_err(|source| BootError::Memory {
            what: "zero page",
            source,
        })?;
    Ok(params)
}

/// Highest address (exclusive) the kernel accepts for the initrd.
pub fn initrd_max_addr(kernel: &LoadedKernel) -> u64 {
    match kernel.setup_header {
        Some(h) if h.initrd_addr_max != 0 => u64::from(h.initrd_addr_max) + 1,
        _ => LOW_RAM_END,
    }
}
