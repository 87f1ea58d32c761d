//! The flattened device tree an arm64 guest boots with: CPUs (PSCI over
//! HVC), RAM, GICv3, the architected timer, a PL011 console and the
//! virtio-mmio devices. Linux needs nothing else on this platform.

use vm_fdt::{FdtWriter, FdtWriterResult};

use super::layout;

/// phandle of the interrupt controller.
const PHANDLE_GIC: u32 = 1;
/// phandle of the fixed clock the PL011 driver insists on.
const PHANDLE_APB_CLOCK: u32 = 2;

/// GIC interrupt specifier types (first cell).
const GIC_SPI: u32 = 0;
const GIC_PPI: u32 = 1;
/// Trigger types (third cell).
const IRQ_EDGE_RISING: u32 = 1;
const IRQ_LEVEL_HIGH: u32 = 4;
const IRQ_LEVEL_LOW: u32 = 8;

/// Errors building the device tree.
#[derive(Debug, thiserror::Error)]
pub enum FdtError {
    /// The writer rejected a node or property.
    #[error("device tree: {0}")]
    Writer(#[from] vm_fdt::Error),
    /// The result does not fit the space the layout reserves.
    #[error("device tree of {0} bytes exceeds the 2 MiB reserved for it")]
    TooLarge(usize),
    /// More virtio devices than the layout has windows for.
    #[error("{0} virtio devices; at most {max}", max = layout::VIRTIO_MMIO_MAX)]
    TooManyDevices(usize),
}

/// One virtio-mmio device as the guest sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioMmioNode {
    /// Base of its register window.
    pub base: u64,
    /// Size of the window.
    pub size: u64,
    /// Its SPI (device tree numbering, INTID - 32).
    pub spi: u32,
}

/// What the device tree describes.
#[derive(Clone, Debug)]
pub struct FdtConfig {
    /// Number of vCPUs.
    pub cpus: u8,
    /// Guest RAM in bytes (at [`layout::RAM_BASE`]).
    pub ram_size: u64,
    /// Kernel command line.
    pub cmdline: String,
    /// Guest physical range of the initrd, if any.
    pub initrd: Option<(u64, u64)>,
    /// virtio-mmio devices.
    pub virtio: Vec<VirtioMmioNode>,
}

impl FdtConfig {
    /// `devices` virtio devices at the layout's standard windows and SPIs.
    pub fn standard_virtio(devices: u32) -> Vec<VirtioMmioNode> {
        (0..devices)
            .map(|i| {
                let (base, size) = layout::virtio_mmio_window(i);
                VirtioMmioNode {
                    base,
                    size,
                    spi: layout::VIRTIO_SPI_BASE + i,
                }
            })
            .collect()
    }
}

/// Builds the DTB.
pub fn create_fdt(cfg: &FdtConfig) -> Result<Vec<u8>, FdtError> {
    if cfg.virtio.len() > layout::VIRTIO_MMIO_MAX as usize {
        return Err(FdtError::TooManyDevices(cfg.virtio.len()));
    }
    let mut fdt = FdtWriter::new()?;
    let root = fdt.begin_node("")?;
    fdt.property_string("compatible", "linux,dummy-virt")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_u32("interrupt-parent", PHANDLE_GIC)?;

    write_chosen(&mut fdt, cfg)?;
    let memory = fdt.begin_node(&format!("memory@{:x}", layout::RAM_BASE))?;
    fdt.property_string("device_type", "memory")?;
    fdt.property_array_u64("reg", &[layout::RAM_BASE, cfg.ram_size])?;
    fdt.end_node(memory)?;
    write_cpus(&mut fdt, cfg.cpus)?;
    write_psci(&mut fdt)?;
    write_gic(&mut fdt, cfg.cpus)?;
    write_timer(&mut fdt)?;
    write_uart(&mut fdt)?;
    for dev in &cfg.virtio {
        let node = fdt.begin_node(&format!("virtio_mmio@{:x}", dev.base))?;
        fdt.property_string("compatible", "virtio,mmio")?;
        fdt.property_array_u64("reg", &[dev.base, dev.size])?;
        fdt.property_array_u32("interrupts", &[GIC_SPI, dev.spi, IRQ_EDGE_RISING])?;
        fdt.property_null("dma-coherent")?;
        fdt.end_node(node)?;
    }
    fdt.end_node(root)?;
    let blob = fdt.finish()?;
    if blob.len() as u64 > layout::FDT_MAX_SIZE {
        return Err(FdtError::TooLarge(blob.len()));
    }
    Ok(blob)
}

fn write_chosen(fdt: &mut FdtWriter, cfg: &FdtConfig) -> FdtWriterResult<()> {
    let chosen = fdt.begin_node("chosen")?;
    fdt.property_string("bootargs", &cfg.cmdline)?;
    fdt.property_string("stdout-path", &format!("/pl011@{:x}", layout::UART_BASE))?;
    if let Some((start, size)) = cfg.initrd {
        fdt.property_u64("linux,initrd-start", start)?;
        fdt.property_u64("linux,initrd-end", start + size)?;
    }
    fdt.end_node(chosen)
}

fn write_cpus(fdt: &mut FdtWriter, cpus: u8) -> FdtWriterResult<()> {
    let node = fdt.begin_node("cpus")?;
    fdt.property_u32("#address-cells", 1)?;
    fdt.property_u32("#size-cells", 0)?;
    for i in 0..cpus {
        let cpu = fdt.begin_node(&format!("cpu@{i:x}"))?;
        fdt.property_string("device_type", "cpu")?;
        fdt.property_string("compatible", "arm,arm-v8")?;
        fdt.property_string("enable-method", "psci")?;
        // MPIDR Aff0 (see regs::mpidr)
        fdt.property_u32("reg", u32::from(i))?;
        fdt.end_node(cpu)?;
    }
    fdt.end_node(node)
}

fn write_psci(fdt: &mut FdtWriter) -> FdtWriterResult<()> {
    let node = fdt.begin_node("psci")?;
    fdt.property_string_list(
        "compatible",
        vec!["arm,psci-1.0".into(), "arm,psci-0.2".into()],
    )?;
    // HVC: the call traps to the hypervisor (SMC would go to EL3 firmware).
    fdt.property_string("method", "hvc")?;
    fdt.end_node(node)
}

fn write_gic(fdt: &mut FdtWriter, cpus: u8) -> FdtWriterResult<()> {
    let node = fdt.begin_node(&format!("intc@{:x}", layout::GIC_DIST_BASE))?;
    fdt.property_string("compatible", "arm,gic-v3")?;
    fdt.property_null("interrupt-controller")?;
    fdt.property_u32("#interrupt-cells", 3)?;
    fdt.property_array_u64(
        "reg",
        &[
            layout::GIC_DIST_BASE,
            layout::GIC_DIST_SIZE,
            layout::GIC_REDIST_BASE,
            layout::gic_redist_size(cpus),
        ],
    )?;
    fdt.property_u32("#redistributor-regions", 1)?;
    fdt.property_phandle(PHANDLE_GIC)?;
    fdt.end_node(node)
}

fn write_timer(fdt: &mut FdtWriter) -> FdtWriterResult<()> {
    use layout::timer_ppi;
    let node = fdt.begin_node("timer")?;
    fdt.property_string("compatible", "arm,armv8-timer")?;
    fdt.property_array_u32(
        "interrupts",
        &[
            GIC_PPI,
            timer_ppi::SECURE_PHYS,
            IRQ_LEVEL_LOW,
            GIC_PPI,
            timer_ppi::PHYS,
            IRQ_LEVEL_LOW,
            GIC_PPI,
            timer_ppi::VIRT,
            IRQ_LEVEL_LOW,
            GIC_PPI,
            timer_ppi::HYP,
            IRQ_LEVEL_LOW,
        ],
    )?;
    fdt.property_null("always-on")?;
    fdt.end_node(node)
}

fn write_uart(fdt: &mut FdtWriter) -> FdtWriterResult<()> {
    let clock = fdt.begin_node("apb-pclk")?;
    fdt.property_string("compatible", "fixed-clock")?;
    fdt.property_u32("#clock-cells", 0)?;
    fdt.property_u32("clock-frequency", 24_000_000)?;
    fdt.property_string("clock-output-names", "clk24mhz")?;
    fdt.property_phandle(PHANDLE_APB_CLOCK)?;
    fdt.end_node(clock)?;

    let node = fdt.begin_node(&format!("pl011@{:x}", layout::UART_BASE))?;
    fdt.property_string_list(
        "compatible",
        vec!["arm,pl011".into(), "arm,primecell".into()],
    )?;
    fdt.property_array_u64("reg", &[layout::UART_BASE, layout::UART_SIZE])?;
    fdt.property_array_u32("interrupts", &[GIC_SPI, layout::UART_SPI, IRQ_LEVEL_HIGH])?;
    fdt.property_array_u32("clocks", &[PHANDLE_APB_CLOCK, PHANDLE_APB_CLOCK])?;
    fdt.property_string_list("clock-names", vec!["uartclk".into(), "apb_pclk".into()])?;
    fdt.end_node(node)
}

/// A minimal reader of flattened device trees, for tests and diagnostics:
/// every node path with its properties, in order.
pub mod reader {
    /// One property.
    pub type Property = (String, Vec<u8>);
    /// One node: its full path and properties.
    pub type Node = (String, Vec<Property>);

    /// Errors of [`parse`].
    #[derive(Debug, PartialEq, Eq, thiserror::Error)]
    pub enum ParseError {
        /// Not a DTB or truncated.
        #[error("malformed device tree: {0}")]
        Malformed(&'static str),
    }

    fn be32(b: &[u8], off: usize) -> Result<u32, ParseError> {
        b.get(off..off + 4)
            .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
            .ok_or(ParseError::Malformed("truncated"))
    }

    fn cstr(b: &[u8], off: usize) -> Result<String, ParseError> {
        let rest = b
            .get(off..)
            .ok_or(ParseError::Malformed("bad string offset"))?;
        let end = rest
            .iter()
            .position(|c| *c == 0)
            .ok_or(ParseError::Malformed("unterminated string"))?;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }

    /// Parses a DTB (version 17) into its nodes.
    pub fn parse(dtb: &[u8]) -> Result<Vec<Node>, ParseError> {
        if be32(dtb, 0)? != 0xd00d_feed {
            return Err(ParseError::Malformed("bad magic"));
        }
        if be32(dtb, 4)? as usize != dtb.len() {
            return Err(ParseError::Malformed("totalsize mismatch"));
        }
        let off_struct = be32(dtb, 8)? as usize;
        let off_strings = be32(dtb, 12)? as usize;
        let mut nodes: Vec<Node> = Vec::new();
        let mut path: Vec<String> = Vec::new();
        let mut open: Vec<usize> = Vec::new();
        let mut p = off_struct;
        loop {
            let token = be32(dtb, p)?;
            p += 4;
            match token {
                1 => {
                    let name = cstr(dtb, p)?;
                    p += (name.len() + 1).div_ceil(4) * 4;
                    path.push(name);
                    let full = if path.len() == 1 {
                        "/".to_string()
                    } else {
                        path[1..].iter().fold(String::new(), |a, n| a + "/" + n)
                    };
                    open.push(nodes.len());
                    nodes.push((full, Vec::new()));
                }
                2 => {
                    path.pop();
                    open.pop()
                        .ok_or(ParseError::Malformed("unbalanced END_NODE"))?;
                }
                3 => {
                    let len = be32(dtb, p)? as usize;
                    let nameoff = be32(dtb, p + 4)? as usize;
                    let value = dtb
                        .get(p + 8..p + 8 + len)
                        .ok_or(ParseError::Malformed("truncated property"))?
                        .to_vec();
                    p += 8 + len.div_ceil(4) * 4;
                    let name = cstr(dtb, off_strings + nameoff)?;
                    let node = *open
                        .last()
                        .ok_or(ParseError::Malformed("property outside node"))?;
                    nodes[node].1.push((name, value));
                }
                4 => {}
                9 => return Ok(nodes),
                _ => return Err(ParseError::Malformed("unknown token")),
            }
        }
    }

    /// The value of property `name` of the node at `path`.
    pub fn property<'a>(nodes: &'a [Node], path: &str, name: &str) -> Option<&'a [u8]> {
        nodes
            .iter()
            .find(|(p, _)| p == path)?
            .1
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// A property as big-endian u32 cells.
    pub fn cells(value: &[u8]) -> Vec<u32> {
        value
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::reader::{cells, parse, property};
    use super::*;

    fn config() -> FdtConfig {
        FdtConfig {
            cpus: 2,
            ram_size: 256 << 20,
            cmdline: "console=ttyAMA0 panic=-1".into(),
            initrd: Some((0x4f00_0000, 0x1234)),
            virtio: FdtConfig::standard_virtio(3),
        }
    }

    #[test]
    fn describes_the_machine() {
        let dtb = create_fdt(&config()).unwrap();
        let nodes = parse(&dtb).unwrap();
        let paths: Vec<&str> = nodes.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/",
                "/chosen",
                "/memory@40000000",
                "/cpus",
                "/cpus/cpu@0",
                "/cpus/cpu@1",
                "/psci",
                "/intc@8000000",
                "/timer",
                "/apb-pclk",
                "/pl011@9000000",
                "/virtio_mmio@a000000",
                "/virtio_mmio@a000200",
                "/virtio_mmio@a000400",
            ]
        );
        assert_eq!(
            property(&nodes, "/chosen", "bootargs").unwrap(),
            b"console=ttyAMA0 panic=-1\0"
        );
        assert_eq!(
            cells(property(&nodes, "/chosen", "linux,initrd-end").unwrap()),
            [0, 0x4f00_1234]
        );
        assert_eq!(
            cells(property(&nodes, "/memory@40000000", "reg").unwrap()),
            [0, 0x4000_0000, 0, 0x1000_0000]
        );
        assert_eq!(property(&nodes, "/psci", "method").unwrap(), b"hvc\0");
        assert_eq!(cells(property(&nodes, "/cpus/cpu@1", "reg").unwrap()), [1]);
    }

    #[test]
    fn interrupts_point_at_the_gic() {
        let dtb = create_fdt(&config()).unwrap();
        let nodes = parse(&dtb).unwrap();
        let gic_phandle = cells(property(&nodes, "/intc@8000000", "phandle").unwrap());
        assert_eq!(
            cells(property(&nodes, "/", "interrupt-parent").unwrap()),
            gic_phandle
        );
        // distributor + redistributors for 2 vCPUs
        assert_eq!(
            cells(property(&nodes, "/intc@8000000", "reg").unwrap()),
            [0, 0x0800_0000, 0, 0x1_0000, 0, 0x080a_0000, 0, 0x4_0000]
        );
        // third virtio device: SPI 18, edge
        assert_eq!(
            cells(property(&nodes, "/virtio_mmio@a000400", "interrupts").unwrap()),
            [0, 18, 1]
        );
        // virtual timer PPI 11, among the four timer interrupts
        let timer = cells(property(&nodes, "/timer", "interrupts").unwrap());
        assert_eq!(timer.len(), 12);
        assert_eq!(&timer[6..9], &[1, 11, 8]);
        assert!(property(&nodes, "/virtio_mmio@a000000", "dma-coherent").is_some());
    }

    #[test]
    fn limits() {
        let mut c = config();
        c.virtio = FdtConfig::standard_virtio(33);
        assert!(matches!(create_fdt(&c), Err(FdtError::TooManyDevices(33))));
        c.virtio.clear();
        c.initrd = None;
        let nodes = parse(&create_fdt(&c).unwrap()).unwrap();
        assert!(property(&nodes, "/chosen", "linux,initrd-start").is_none());
    }
}
