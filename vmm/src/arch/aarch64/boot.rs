//! Puts an arm64 guest into memory: the kernel `Image` at its text offset
//! from the start of RAM, the initrd just below the device tree, the device
//! tree at the top of RAM; returns the boot vCPU's registers.

use vm_memory::{Bytes, GuestAddress, GuestMemory};

use super::fdt::{create_fdt, FdtConfig, FdtError};
use super::image::{load_addr, parse_header, ImageError};
use super::layout;
use super::regs::{boot_cpu, BootRegs};

/// Errors of [`load_guest`].
#[derive(Debug, thiserror::Error)]
pub enum Arm64BootError {
    /// The kernel is not an arm64 Image.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The device tree could not be built.
    #[error(transparent)]
    Fdt(#[from] FdtError),
    /// Kernel, initrd and device tree do not fit in RAM.
    #[error("{0} does not fit in guest RAM")]
    TooLarge(&'static str),
    /// Writing guest memory failed.
    #[error("writing the {what} to guest memory: {source}")]
    Memory {
        /// Which part.
        what: &'static str,
        /// The error.
        #[source]
        source: vm_memory::GuestMemoryError,
    },
}

/// What the guest needs besides its memory image.
#[derive(Clone, Debug)]
pub struct GuestSpec<'a> {
    /// The kernel `Image`.
    pub kernel: &'a [u8],
    /// The initrd, if any.
    pub initrd: Option<&'a [u8]>,
    /// Kernel command line.
    pub cmdline: &'a str,
    /// vCPUs.
    pub cpus: u8,
    /// RAM at [`layout::RAM_BASE`], in bytes.
    pub ram_size: u64,
    /// virtio-mmio devices, at the layout's standard windows.
    pub virtio_devices: u32,
}

/// Where things went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arm64Boot {
    /// Registers of the boot vCPU.
    pub regs: BootRegs,
    /// Guest physical address of the DTB.
    pub fdt_addr: u64,
    /// Guest physical range of the initrd.
    pub initrd: Option<(u64, u64)>,
}

fn write<M: GuestMemory>(
    mem: &M,
    what: &'static str,
    data: &[u8],
    addr: u64,
) -> Result<(), Arm64BootError> {
    mem.write_slice(data, GuestAddress(addr))
        .map_err(|source| Arm64BootError::Memory { what, source })
}

/// Loads kernel, initrd and device tree into `mem` (RAM at
/// [`layout::RAM_BASE`], `spec.ram_size` bytes).
pub fn load_guest<M: GuestMemory>(
    mem: &M,
    spec: &GuestSpec<'_>,
) -> Result<Arm64Boot, Arm64BootError> {
    let header = parse_header(spec.kernel)?;
    let entry = load_addr(layout::RAM_BASE, &header);
    let kernel_end = entry + header.image_size.max(spec.kernel.len() as u64);
    if spec.ram_size < 2 * layout::FDT_MAX_SIZE {
        return Err(Arm64BootError::TooLarge("the device tree"));
    }
    let fdt_addr = layout::fdt_addr(spec.ram_size);
    if kernel_end > fdt_addr {
        return Err(Arm64BootError::TooLarge("the kernel"));
    }
    write(mem, "kernel", spec.kernel, entry)?;
    let initrd = match spec.initrd {
        Some(data) => {
            let addr = fdt_addr
                .checked_sub(data.len() as u64)
                .map(|a| a & !0xfff)
                .filter(|a| *a >= kernel_end)
                .ok_or(Arm64BootError::TooLarge("the initrd"))?;
            write(mem, "initrd", data, addr)?;
            Some((addr, data.len() as u64))
        }
        None => None,
    };
    let dtb = create_fdt(&FdtConfig {
        cpus: spec.cpus,
        ram_size: spec.ram_size,
        cmdline: spec.cmdline.to_owned(),
        initrd,
        virtio: FdtConfig::standard_virtio(spec.virtio_devices),
    })?;
    write(mem, "device tree", &dtb, fdt_addr)?;
    Ok(Arm64Boot {
        regs: boot_cpu(entry, fdt_addr),
        fdt_addr,
        initrd,
    })
}

#[cfg(test)]
mod tests {
    use super::super::fdt::reader::{cells, parse, property};
    use super::super::image::{HEADER_SIZE, MAGIC};
    use super::*;
    use crate::GuestMemoryMmap;

    const RAM: u64 = 64 << 20;

    fn kernel(image_size: u64) -> Vec<u8> {
        let mut k = vec![0xaa; 4096];
        k[..HEADER_SIZE].fill(0);
        k[16..24].copy_from_slice(&image_size.to_le_bytes());
        k[56..60].copy_from_slice(&MAGIC.to_le_bytes());
        k
    }

    fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(layout::RAM_BASE), RAM as usize)]).unwrap()
    }

    #[test]
    fn places_kernel_initrd_and_fdt() {
        let mem = memory();
        let k = kernel(8 << 20);
        let initrd = vec![0x55u8; 10_000];
        let boot = load_guest(
            &mem,
            &GuestSpec {
                kernel: &k,
                initrd: Some(&initrd),
                cmdline: "console=ttyAMA0",
                cpus: 1,
                ram_size: RAM,
                virtio_devices: 2,
            },
        )
        .unwrap();
        assert_eq!(boot.regs.pc, layout::RAM_BASE);
        assert_eq!(boot.regs.x0, boot.fdt_addr);
        assert_eq!(boot.fdt_addr, layout::RAM_BASE + RAM - (2 << 20));
        let (initrd_addr, initrd_len) = boot.initrd.unwrap();
        assert_eq!(initrd_addr % 4096, 0);
        assert!(initrd_addr + initrd_len <= boot.fdt_addr);

        let mut b = [0u8; 4];
        mem.read_slice(&mut b, GuestAddress(layout::RAM_BASE + 100))
            .unwrap();
        assert_eq!(b, [0xaa; 4]);
        mem.read_slice(&mut b, GuestAddress(initrd_addr)).unwrap();
        assert_eq!(b, [0x55; 4]);

        let mut size = [0u8; 4];
        mem.read_slice(&mut size, GuestAddress(boot.fdt_addr + 4))
            .unwrap();
        let mut dtb = vec![0u8; u32::from_be_bytes(size) as usize];
        mem.read_slice(&mut dtb, GuestAddress(boot.fdt_addr))
            .unwrap();
        let nodes = parse(&dtb).unwrap();
        assert_eq!(
            cells(property(&nodes, "/chosen", "linux,initrd-start").unwrap()),
            [0, initrd_addr as u32]
        );
        assert!(property(&nodes, "/virtio_mmio@a000200", "reg").is_some());
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let mem = memory();
        let k = kernel(63 << 20);
        let spec = GuestSpec {
            kernel: &k,
            initrd: None,
            cmdline: "",
            cpus: 1,
            ram_size: RAM,
            virtio_devices: 0,
        };
        assert!(matches!(
            load_guest(&mem, &spec),
            Err(Arm64BootError::TooLarge("the kernel"))
        ));
        let k = kernel(8 << 20);
        let big = vec![0u8; 60 << 20];
        let spec = GuestSpec {
            kernel: &k,
            initrd: Some(&big),
            ..spec
        };
        assert!(matches!(
            load_guest(&mem, &spec),
            Err(Arm64BootError::TooLarge("the initrd"))
        ));
    }
}
