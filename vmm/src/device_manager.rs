//! The device list of a VM: every virtio device kind is registered here once
//! (its configuration, how it is built, its snapshot record), and every VM
//! assembly (the KVM VMM `vmm`, the portable `x86_vm` and `arm64_vm`) and
//! the snapshot code get their devices from here.
//!
//! A VM's devices go through three steps:
//! 1. a list of [`DeviceConfig`]s (from the VM's configuration, or from a
//!    snapshot's [`DeviceKind`] records with [`DeviceConfig::for_restore`]);
//! 2. [`build()`]: each config opens its host resources and becomes a
//!    [`VirtioDevice`] with the [`DeviceKind`] a snapshot records;
//! 3. [`BuiltDevices::attach`]: device `i` gets MMIO window and interrupt line `i` of the
//!    architecture ([`slot`]), an [`MmioTransport`] on the MMIO bus, its
//!    queue notifications (ioeventfd where the hypervisor has one) and a
//!    [`QueueRunner`] (the epoll event loop or worker threads) that
//!    processes its queues; on x86 the window is also announced on the
//!    kernel command line.
//!
//! Adding a device kind means one variant in [`DeviceConfig`] and one in
//! [`DeviceKind`] and their arms in this file (see docs/adding-a-device.md).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::devices::bus::{Bus, BusError};
use crate::devices::notify::QueueNotifier;
use crate::devices::virtio::balloon::Balloon;
use crate::devices::virtio::block::{Block, BlockError};
use crate::devices::virtio::fs::{FsConfig, FsError};
use crate::devices::virtio::mmio::{reg, MmioTransport};
use crate::devices::virtio::rng::Rng;
use crate::devices::virtio::worker::DeviceWorkers;
use crate::devices::virtio::VirtioDevice;
use crate::hypervisor::{HypervisorError, Vm};
use crate::net::{NetError, UserNetConfig};
use crate::snapshot::SnapshotError;
use crate::GuestMemoryMmap;

/// A virtio-blk disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskConfig {
    /// Raw image file.
    pub path: PathBuf,
    /// Refuse guest writes.
    pub read_only: bool,
}

/// A virtio device to create, with the host resources it uses.
#[derive(Clone, Debug)]
pub enum DeviceConfig {
    /// virtio-vsock (guest CID 3) behind this host Unix socket
    /// (`CONNECT <port>\n`; guest connections to host port P go to
    /// `<PATH>_P`). Unix hosts only.
    Vsock(PathBuf),
    /// A virtio-blk disk.
    Block(DiskConfig),
    /// A virtio-rng entropy source.
    Rng,
    /// A virtio-balloon that takes back the memory the guest reports free.
    Balloon,
    /// A shared host directory (virtio-fs). Linux hosts only. A VM is
    /// snapshotted only while the guest has not used the share (no FUSE
    /// session: see the device's `snapshot_blocker`), so a snapshot holds
    /// an empty share slot that each restore fills with its own folder.
    Fs(FsConfig),
    /// virtio-net with user-mode networking (crate::net). Unix hosts only.
    /// A snapshot records the device and its queues, not the stack: a
    /// restore starts a fresh stack, so a VM is snapshotted only while its
    /// stack holds no connections (see `devices::virtio::net::snapshot_blocker`).
    Net(UserNetConfig),
}

/// A device as recorded in a snapshot (the serialized form is part of the
/// snapshot format: keep variant and field names).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// virtio-vsock (the host socket is given again at restore).
    Vsock,
    /// virtio-blk.
    Block {
        /// The image the device was made with.
        path: PathBuf,
        /// Guest writes refused.
        read_only: bool,
        /// Capacity in bytes when the device was made (absent in older
        /// snapshots). A restore given a disk of another size tells the
        /// guest its configuration changed, so the driver reads the new
        /// capacity: an empty disk slot in a snapshot can be filled per
        /// clone (berth's image disks).
        #[serde(default)]
        size: Option<u64>,
    },
    /// virtio-rng.
    Rng,
    /// A virtio-fs share slot, snapshotted before the guest mounted it (the
    /// guest driver knows the tag; no FUSE session exists): a restore may
    /// give the slot another folder under the same tag.
    Fs {
        /// The share's mount tag (the guest driver read it at probe time).
        tag: String,
        /// The folder the snapshotted VM had there (a restore given no
        /// shares uses it again, read-only).
        #[serde(default)]
        path: PathBuf,
    },
    /// virtio-net with user networking. What the guest sees of it (MAC,
    /// addresses of the VM network) is fixed by the VMM version, which a
    /// restore must match; the stack's host side (DNS upstreams) is this
    /// run's ([`RestoreResources::net`]).
    Net,
    /// virtio-balloon (free page reporting).
    Balloon,
}

/// Host resources a restore gives the snapshot's devices.
#[derive(Clone, Debug, Default)]
pub struct RestoreResources {
    /// Host Unix socket of the vsock device (required when the snapshot has
    /// one).
    pub vsock_uds: Option<PathBuf>,
    /// Disks, in the snapshot's order; empty: the paths recorded in it.
    pub disks: Vec<DiskConfig>,
    /// Shared folders for the snapshot's share slots, in its order, each
    /// with the slot's tag; empty: the folders recorded in it, read-only.
    pub shares: Vec<FsConfig>,
    /// The user-mode stack of the snapshot's network card (a fresh one:
    /// no connections); `None`: [`UserNetConfig::from_host`], the host's
    /// resolvers as they are now. Given for a snapshot without a card, it
    /// is refused (the guest would have no driver bound to a new one).
    pub net: Option<UserNetConfig>,
}

impl DeviceConfig {
    /// What a snapshot records for this device before it is built (a disk's
    /// size is only known once it is open: see [`build`]).
    pub fn kind(&self) -> DeviceKind {
        match self {
            DeviceConfig::Vsock(_) => DeviceKind::Vsock,
            DeviceConfig::Block(d) => DeviceKind::Block {
                path: d.path.clone(),
                read_only: d.read_only,
                size: None,
            },
            DeviceConfig::Rng => DeviceKind::Rng,
            DeviceConfig::Balloon => DeviceKind::Balloon,
            DeviceConfig::Fs(share) => DeviceKind::Fs {
                tag: share.tag.clone(),
                path: share.path.clone(),
            },
            DeviceConfig::Net(_) => DeviceKind::Net,
        }
    }

    /// The devices to create for a snapshot's `records`, in their order,
    /// with this run's host resources.
    pub fn for_restore(
        records: &[DeviceKind],
        resources: &RestoreResources,
    ) -> Result<Vec<DeviceConfig>, SnapshotError> {
        let mut disks = resources.disks.iter();
        let mut shares = resources.shares.iter();
        let mut out = Vec::new();
        for kind in records {
            out.push(match kind {
                DeviceKind::Vsock => {
                    DeviceConfig::Vsock(resources.vsock_uds.clone().ok_or_else(|| {
                        SnapshotError::Mismatch(
                            "the snapshot has a vsock device: give --vsock-uds".into(),
                        )
                    })?)
                }
                DeviceKind::Block {
                    path, read_only, ..
                } => DeviceConfig::Block(match disks.next() {
                    Some(given) => given.clone(),
                    None if resources.disks.is_empty() => DiskConfig {
                        path: path.clone(),
                        read_only: *read_only,
                    },
                    None => {
                        return Err(SnapshotError::Mismatch(format!(
                            "{} disks given, the snapshot has more",
                            resources.disks.len()
                        )))
                    }
                }),
                DeviceKind::Rng => DeviceConfig::Rng,
                DeviceKind::Balloon => DeviceConfig::Balloon,
                // One card: the VMM makes no more, and all would share
                // one MAC address.
                DeviceKind::Net if out.iter().any(|c| matches!(c, DeviceConfig::Net(_))) => {
                    return Err(SnapshotError::Mismatch(
                        "the snapshot claims more than one network card".into(),
                    ))
                }
                DeviceKind::Net => DeviceConfig::Net(
                    resources
                        .net
                        .clone()
                        .unwrap_or_else(UserNetConfig::from_host),
                ),
                // The guest's driver registered the slot under its tag at
                // probe time: a folder given for it must carry that tag.
                DeviceKind::Fs { tag, path } => DeviceConfig::Fs(match shares.next() {
                    Some(given) if given.tag == *tag => given.clone(),
                    Some(given) => {
                        return Err(SnapshotError::Mismatch(format!(
                            "share `{}` given for the snapshot's share slot `{tag}` (shares go in the snapshot's order, with its tags)",
                            given.tag
                        )))
                    }
                    None if resources.shares.is_empty() => FsConfig {
                        tag: tag.clone(),
                        path: path.clone(),
                        read_only: true,
                    },
                    None => {
                        return Err(SnapshotError::Mismatch(format!(
                            "{} shares given, the snapshot has more share slots",
                            resources.shares.len()
                        )))
                    }
                }),
            });
        }
        if shares.next().is_some() {
            return Err(SnapshotError::Mismatch(format!(
                "{} shares given, the snapshot has fewer share slots",
                resources.shares.len()
            )));
        }
        if disks.next().is_some() {
            return Err(SnapshotError::Mismatch(format!(
                "{} disks given, the snapshot has fewer",
                resources.disks.len()
            )));
        }
        if resources.net.is_some() && !records.contains(&DeviceKind::Net) {
            return Err(SnapshotError::Mismatch(
                "a network card was asked for, the snapshot has none".into(),
            ));
        }
        Ok(out)
    }

    /// Opens the host resources and creates the device.
    fn build(&self) -> Result<(Arc<Mutex<dyn VirtioDevice>>, DeviceKind), DeviceError> {
        let kind = self.kind();
        let dev: Arc<Mutex<dyn VirtioDevice>> = match self {
            #[cfg(unix)]
            DeviceConfig::Vsock(uds) => {
                use crate::devices::virtio::vsock::{Vsock, GUEST_CID};
                Arc::new(Mutex::new(Vsock::new(GUEST_CID, uds).map_err(
                    |source| DeviceError::Io {
                        what: format!("vsock socket {}", uds.display()),
                        source,
                    },
                )?))
            }
            DeviceConfig::Block(d) => {
                let block = Block::open(&d.path, d.read_only)?;
                let size = Some(block.size());
                return Ok((
                    Arc::new(Mutex::new(block)),
                    DeviceKind::Block {
                        path: d.path.clone(),
                        read_only: d.read_only,
                        size,
                    },
                ));
            }
            DeviceConfig::Rng => Arc::new(Mutex::new(Rng::new())),
            DeviceConfig::Balloon => Arc::new(Mutex::new(Balloon::new())),
            #[cfg(target_os = "linux")]
            DeviceConfig::Fs(share) => {
                Arc::new(Mutex::new(crate::devices::virtio::fs::Fs::new(share)?))
            }
            #[cfg(unix)]
            DeviceConfig::Net(net) => Arc::new(Mutex::new(crate::devices::virtio::net::Net::new(
                crate::net::GUEST_MAC,
                net.clone(),
            )?)),
            #[allow(unreachable_patterns)]
            other => return Err(DeviceError::NotOnThisHost(other.kind())),
        };
        Ok((dev, kind))
    }
}

/// Errors creating or attaching devices.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A disk could not be opened.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// A shared directory could not be set up.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// The network device could not be set up.
    #[error(transparent)]
    Net(#[from] NetError),
    /// A host resource failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The device kind is not available on this host.
    #[error("no {0:?} device on this host")]
    NotOnThisHost(DeviceKind),
    /// More devices than the architecture has windows and interrupt lines.
    #[error("at most {0} virtio devices")]
    TooMany(usize),
    /// The hypervisor failed (an interrupt line).
    #[error(transparent)]
    Hypervisor(#[from] HypervisorError),
    /// Devices collide on a bus.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The device could not be announced on the kernel command line.
    #[cfg(target_arch = "x86_64")]
    #[error(transparent)]
    Cmdline(#[from] crate::boot::BootError),
}

/// Where virtio device `index` lives: its MMIO window and interrupt line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioSlot {
    /// Base of the MMIO window.
    pub base: u64,
    /// Size of the window.
    pub size: u64,
    /// Interrupt line (GSI on x86, SPI on arm64).
    pub irq: u32,
}

/// How many virtio devices the architecture has room for.
#[cfg(target_arch = "x86_64")]
pub fn max_devices() -> usize {
    use crate::arch::x86_64::{FIRST_VIRTIO_IRQ, IOAPIC_PINS};
    (u32::from(IOAPIC_PINS) - FIRST_VIRTIO_IRQ) as usize
}

/// How many virtio devices the architecture has room for.
#[cfg(target_arch = "aarch64")]
pub fn max_devices() -> usize {
    crate::arch::aarch64::layout::VIRTIO_MMIO_MAX as usize
}

/// The slot of virtio device `index` (below [`max_devices`]).
#[cfg(target_arch = "x86_64")]
pub fn slot(index: usize) -> MmioSlot {
    use crate::arch::x86_64::{FIRST_VIRTIO_IRQ, MMIO_BASE, MMIO_WINDOW_SIZE};
    MmioSlot {
        base: MMIO_BASE + index as u64 * MMIO_WINDOW_SIZE,
        size: MMIO_WINDOW_SIZE,
        irq: FIRST_VIRTIO_IRQ + index as u32,
    }
}

/// The slot of virtio device `index` (below [`max_devices`]).
#[cfg(target_arch = "aarch64")]
pub fn slot(index: usize) -> MmioSlot {
    use crate::arch::aarch64::layout;
    let (base, size) = layout::virtio_mmio_window(index as u32);
    MmioSlot {
        base,
        size,
        irq: layout::VIRTIO_SPI_BASE + index as u32,
    }
}

/// Devices built from their configs, not yet on a bus.
pub struct BuiltDevices {
    devices: Vec<(Arc<Mutex<dyn VirtioDevice>>, DeviceKind)>,
}

/// Builds the devices of `configs`, in order (device `i` gets slot `i`).
pub fn build(configs: &[DeviceConfig]) -> Result<BuiltDevices, DeviceError> {
    if configs.len() > max_devices() {
        return Err(DeviceError::TooMany(max_devices()));
    }
    let mut devices = Vec::new();
    #[cfg(target_os = "linux")]
    let mut watched = Vec::new();
    #[cfg(target_os = "linux")]
    let mut events_uds = None;
    for c in configs {
        #[cfg(target_os = "linux")]
        match c {
            DeviceConfig::Fs(share) => {
                let fs = crate::devices::virtio::fs::Fs::new(share)?;
                // Host changes reach guest inotify watchers only through
                // the agent, which mirrors them in the guest; a read-only
                // guest mount cannot (see docs/file-events.md).
                if !share.read_only {
                    if let Ok(root) = std::fs::canonicalize(&share.path) {
                        watched.push(crate::devices::virtio::fs::watch::WatchedShare {
                            tag: share.tag.clone(),
                            root,
                            events: fs.events(),
                        });
                    }
                }
                devices.push((
                    Arc::new(Mutex::new(fs)) as Arc<Mutex<dyn VirtioDevice>>,
                    c.kind(),
                ));
                continue;
            }
            DeviceConfig::Vsock(uds) => {
                events_uds = Some(crate::devices::virtio::fs::watch::listen_path(uds));
            }
            _ => {}
        }
        devices.push(c.build()?);
    }
    // Without vsock the agent has no way to hear of host changes. The
    // watcher's threads run as long as the process; it listens before the
    // guest runs, and the agent connects once its shares are mounted.
    #[cfg(target_os = "linux")]
    if let Some(listen) = events_uds {
        let off = std::env::var_os(SHARE_EVENTS_ENV).is_some_and(|v| v == "0");
        if !watched.is_empty() && !off {
            if let Err(e) = crate::devices::virtio::fs::watch::start(watched, &listen) {
                // Shares still work; only live events are missing.
                log::warn!("share events are off: {e}");
            }
        }
    }
    Ok(BuiltDevices { devices })
}

/// `0` turns off the host watcher of writable shares (live file events
/// in the guest; on by default: it watches only the folders running
/// containers bind-mount, see docs/file-events.md).
pub const SHARE_EVENTS_ENV: &str = "BERTH_SHARE_EVENTS";

/// Whoever processes the queues of the VM's devices: the epoll event loop
/// (the KVM VMM) or one worker thread per queue (the portable assemblies).
pub trait QueueRunner {
    /// Processes queue `i` of `dev` whenever `notifiers[i]` rings (and the
    /// device's host events, if it has any).
    fn add(&mut self, dev: Arc<Mutex<dyn VirtioDevice>>, notifiers: Vec<QueueNotifier>);
}

impl QueueRunner for DeviceWorkers {
    fn add(&mut self, dev: Arc<Mutex<dyn VirtioDevice>>, notifiers: Vec<QueueNotifier>) {
        self.spawn(dev, notifiers);
    }
}

#[cfg(target_os = "linux")]
impl QueueRunner
    for event_manager::EventManager<Box<dyn event_manager::MutEventSubscriber + Send>>
{
    fn add(&mut self, dev: Arc<Mutex<dyn VirtioDevice>>, notifiers: Vec<QueueNotifier>) {
        use event_manager::SubscriberOps;
        self.add_subscriber(Box::new(
            crate::devices::virtio::event_handler::VirtioEventHandler::new(dev, notifiers),
        ));
    }
}

/// A device on the MMIO bus.
pub struct AttachedDevice {
    /// Its transport (registers, queues, snapshot state).
    pub transport: Arc<Mutex<MmioTransport>>,
    /// What a snapshot records.
    pub kind: DeviceKind,
    /// Where it lives.
    pub slot: MmioSlot,
}

impl BuiltDevices {
    /// How many devices there are (the arm64 device tree needs the count
    /// before the devices are attached).
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// Puts device `i` on `mmio_bus` at [`slot`] `i` with interrupt line
    /// `i`, lets the hypervisor signal its queue notifiers directly where
    /// it can, hands its queues to `runner` and, on x86, announces it on
    /// `cmdline`.
    pub fn attach(
        self,
        vm: &dyn Vm,
        mem: &GuestMemoryMmap,
        mmio_bus: &mut Bus,
        runner: &mut dyn QueueRunner,
        #[cfg(target_arch = "x86_64")] mut cmdline: Option<&mut linux_loader::cmdline::Cmdline>,
    ) -> Result<Vec<AttachedDevice>, DeviceError> {
        let io = |what: &str| {
            let what = what.to_string();
            move |source| DeviceError::Io { what, source }
        };
        let mut out = Vec::new();
        for (i, (dev, kind)) in self.devices.into_iter().enumerate() {
            let slot = slot(i);
            let transport = MmioTransport::new(
                dev.clone(),
                mem.clone(),
                vm.create_interrupt_line(slot.irq)?,
            )
            .map_err(io("virtio queue eventfd"))?;
            let mut notifiers = Vec::new();
            for (q, n) in transport.queue_evts().iter().enumerate() {
                // Without the fast path the transport signals the same
                // notifier from the vCPU thread, so a refusal only costs
                // speed.
                if let Err(e) =
                    vm.register_mmio_notifier(slot.base + reg::QUEUE_NOTIFY, q as u32, n)
                {
                    log::info!("queue notifications take the slow path: {e}");
                }
                notifiers.push(n.try_clone().map_err(io("queue notifier clone"))?);
            }
            runner.add(dev, notifiers);
            let transport = Arc::new(Mutex::new(transport));
            mmio_bus.insert(slot.base, slot.size, transport.clone())?;
            #[cfg(target_arch = "x86_64")]
            if let Some(cmdline) = cmdline.as_deref_mut() {
                cmdline
                    .add_virtio_mmio_device(
                        slot.size,
                        vm_memory::GuestAddress(slot.base),
                        slot.irq,
                        None,
                    )
                    .map_err(crate::boot::BootError::from)?;
            }
            out.push(AttachedDevice {
                transport,
                kind,
                slot,
            });
        }
        Ok(out)
    }
}

impl AttachedDevice {
    /// Sets the transport state saved with `record`, and tells the guest
    /// about what changed since (a disk of another size).
    pub fn restore(
        &self,
        record: &DeviceKind,
        state: &crate::devices::virtio::mmio::MmioState,
    ) -> Result<(), SnapshotError> {
        let mut transport = self.transport.lock().unwrap_or_else(|e| e.into_inner());
        transport
            .restore_state(state)
            .map_err(SnapshotError::Mismatch)?;
        if let (
            DeviceKind::Block { size: now, .. },
            DeviceKind::Block {
                size: Some(then), ..
            },
        ) = (&self.kind, record)
        {
            if *now != Some(*then) {
                transport.config_changed();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(p: &str) -> DiskConfig {
        DiskConfig {
            path: p.into(),
            read_only: false,
        }
    }

    #[test]
    fn restore_configs_follow_the_snapshot_order_with_this_runs_resources() {
        let records = vec![
            DeviceKind::Vsock,
            DeviceKind::Block {
                path: "/then.img".into(),
                read_only: true,
                size: Some(4096),
            },
            DeviceKind::Rng,
            DeviceKind::Balloon,
        ];
        let res = RestoreResources {
            vsock_uds: Some("/run/v.sock".into()),
            ..Default::default()
        };
        let configs = DeviceConfig::for_restore(&records, &res).unwrap();
        let kinds: Vec<_> = configs.iter().map(DeviceConfig::kind).collect();
        assert_eq!(
            kinds,
            vec![
                DeviceKind::Vsock,
                DeviceKind::Block {
                    path: "/then.img".into(),
                    read_only: true,
                    size: None
                },
                DeviceKind::Rng,
                DeviceKind::Balloon
            ]
        );
        // Given disks replace the recorded ones, one for one.
        let res = RestoreResources {
            vsock_uds: Some("/run/v.sock".into()),
            disks: vec![disk("/now.img")],
            ..Default::default()
        };
        let configs = DeviceConfig::for_restore(&records, &res).unwrap();
        assert!(
            matches!(&configs[1], DeviceConfig::Block(d) if d.path == std::path::Path::new("/now.img"))
        );
    }

    #[test]
    fn restore_refuses_missing_resources_and_wrong_disk_counts() {
        let block = DeviceKind::Block {
            path: "/a".into(),
            read_only: false,
            size: None,
        };
        let e = DeviceConfig::for_restore(&[DeviceKind::Vsock], &RestoreResources::default())
            .unwrap_err();
        assert!(matches!(e, SnapshotError::Mismatch(_)), "{e}");
        let two = RestoreResources {
            disks: vec![disk("/x"), disk("/y")],
            ..Default::default()
        };
        let e = DeviceConfig::for_restore(std::slice::from_ref(&block), &two).unwrap_err();
        assert!(e.to_string().contains("fewer"), "{e}");
        let one = RestoreResources {
            disks: vec![disk("/x")],
            ..Default::default()
        };
        let e = DeviceConfig::for_restore(&[block.clone(), block], &one).unwrap_err();
        assert!(e.to_string().contains("more"), "{e}");
    }

    fn share(tag: &str, path: &str, read_only: bool) -> FsConfig {
        FsConfig {
            tag: tag.into(),
            path: path.into(),
            read_only,
        }
    }

    #[test]
    fn share_slots_are_filled_per_restore_under_their_tags() {
        let slot = |tag: &str| DeviceKind::Fs {
            tag: tag.into(),
            path: "/cache/empty-share".into(),
        };
        let records = vec![DeviceKind::Vsock, slot("s0"), slot("s1"), DeviceKind::Rng];
        let base = RestoreResources {
            vsock_uds: Some("/run/v.sock".into()),
            ..Default::default()
        };
        // No shares given: the recorded (empty) folders, read-only.
        let configs = DeviceConfig::for_restore(&records, &base).unwrap();
        assert_eq!(configs[1].kind(), slot("s0"));
        assert!(matches!(&configs[2], DeviceConfig::Fs(f) if f.read_only && f.tag == "s1"));
        // Given ones replace them one for one, keeping their slot.
        let given = RestoreResources {
            shares: vec![
                share("s0", "/home/me/src", false),
                share("s1", "/srv", true),
            ],
            ..base.clone()
        };
        let configs = DeviceConfig::for_restore(&records, &given).unwrap();
        assert!(
            matches!(&configs[1], DeviceConfig::Fs(f) if f.path == std::path::Path::new("/home/me/src") && !f.read_only)
        );
        assert!(
            matches!(&configs[2], DeviceConfig::Fs(f) if f.path == std::path::Path::new("/srv") && f.read_only)
        );
        assert!(matches!(configs[3], DeviceConfig::Rng));
        // A tag the guest does not know, out of order, too few, too many.
        for (shares, why) in [
            (
                vec![share("s1", "/a", false), share("s0", "/b", false)],
                "slot `s0`",
            ),
            (
                vec![share("x", "/a", false), share("s1", "/b", false)],
                "slot `s0`",
            ),
            (vec![share("s0", "/a", false)], "more share slots"),
            (
                vec![
                    share("s0", "/a", false),
                    share("s1", "/b", false),
                    share("s2", "/c", false),
                ],
                "fewer share slots",
            ),
        ] {
            let res = RestoreResources {
                shares,
                ..base.clone()
            };
            let e = DeviceConfig::for_restore(&records, &res).unwrap_err();
            assert!(matches!(e, SnapshotError::Mismatch(_)), "{e}");
            assert!(e.to_string().contains(why), "{e}");
        }
        // A snapshot without slots takes no shares.
        let res = RestoreResources {
            shares: vec![share("s0", "/a", false)],
            ..base
        };
        let e = DeviceConfig::for_restore(&[DeviceKind::Vsock], &res).unwrap_err();
        assert!(e.to_string().contains("fewer share slots"), "{e}");
        // The record as the state file stores it.
        let json = serde_json::to_string(&slot("s0")).unwrap();
        assert_eq!(json, r#"{"Fs":{"tag":"s0","path":"/cache/empty-share"}}"#);
    }

    #[test]
    fn a_restored_network_card_gets_this_runs_stack_and_hostile_records_are_refused() {
        let mine = UserNetConfig::with_upstreams(vec!["127.0.0.1:5353".parse().unwrap()]);
        let with_net = RestoreResources {
            vsock_uds: Some("/run/v.sock".into()),
            net: Some(mine),
            ..Default::default()
        };
        // The card keeps its place among the devices (its slot and
        // interrupt line are the guest's), with this run's stack.
        let configs = DeviceConfig::for_restore(
            &[DeviceKind::Vsock, DeviceKind::Net, DeviceKind::Rng],
            &with_net,
        )
        .unwrap();
        assert!(
            matches!(&configs[1], DeviceConfig::Net(c) if c.dns_upstreams == ["127.0.0.1:5353".parse().unwrap()])
        );
        assert_eq!(configs.len(), 3);
        // Without one given: the host's resolvers as they are now.
        let configs =
            DeviceConfig::for_restore(&[DeviceKind::Net], &RestoreResources::default()).unwrap();
        assert!(matches!(&configs[0], DeviceConfig::Net(c) if c.host_loopback.is_loopback()));
        // A state file that claims two cards.
        let e = DeviceConfig::for_restore(
            &[DeviceKind::Net, DeviceKind::Net],
            &RestoreResources::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("more than one network card"), "{e}");
        // A card asked for a snapshot whose guest had none.
        let e = DeviceConfig::for_restore(&[DeviceKind::Vsock], &with_net).unwrap_err();
        assert!(matches!(e, SnapshotError::Mismatch(_)), "{e}");
        assert!(e.to_string().contains("has none"), "{e}");
        // The record as the state file stores it (a unit variant).
        assert_eq!(serde_json::to_string(&DeviceKind::Net).unwrap(), r#""Net""#);
        let back: DeviceKind = serde_json::from_str(r#""Net""#).unwrap();
        assert_eq!(back, DeviceKind::Net);
    }

    #[test]
    fn the_snapshot_record_format_is_unchanged() {
        // Snapshots written before the device manager existed must load.
        let old = r#"[{"Block":{"path":"/d.img","read_only":true}},"Vsock","Rng"]"#;
        let kinds: Vec<DeviceKind> = serde_json::from_str(old).unwrap();
        assert_eq!(
            kinds[0],
            DeviceKind::Block {
                path: "/d.img".into(),
                read_only: true,
                size: None
            }
        );
        assert_eq!(
            serde_json::to_string(&kinds[1..]).unwrap(),
            r#"["Vsock","Rng"]"#
        );
        // The balloon's record, as snapshots with it store it.
        assert_eq!(
            serde_json::to_string(&DeviceKind::Balloon).unwrap(),
            r#""Balloon""#
        );
    }

    #[test]
    fn slots_do_not_overlap_and_too_many_devices_are_refused() {
        let n = max_devices();
        for i in 1..n {
            let (a, b) = (slot(i - 1), slot(i));
            assert!(a.base + a.size <= b.base);
            assert_ne!(a.irq, b.irq);
        }
        let configs = vec![DeviceConfig::Rng; n + 1];
        assert!(matches!(build(&configs), Err(DeviceError::TooMany(m)) if m == n));
    }
}
