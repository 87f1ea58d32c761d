//! The virtio-fs device: queue 0 is the high-priority queue (FORGET),
//! queue 1 the one request queue. Requests are served inline, on the thread
//! that runs the device's notifications.

use std::sync::Arc;

use fuse_backend_rs::abi::fuse_abi::InHeader;
use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::transport::{Reader, VirtioFsWriter, Writer};
use virtio_queue::{DescriptorChain, Queue};
use vm_memory::Bytes;

use super::{FsConfig, FsError, ShareFs, TAG_LEN};
use crate::devices::virtio::{
    device_type, drain_queue, read_config_bytes, ActivateContext, ActivateError, VirtioDevice,
    VirtioInterrupt, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX,
};
use crate::GuestMemoryMmap;

/// Descriptors per queue. Linux's virtio-fs driver caps a request at the
/// queue size less 4 pages (`FUSE_HEADER_OVERHEAD`): at 256 that is 252
/// pages, and every 1 MiB write or read the guest sends (`max_pages` 256,
/// granted at INIT) went as two requests, 1008 KiB and 16 KiB, each a
/// queue round trip (a notification, an interrupt, a guest wakeup). 1024
/// (QEMU's vhost-user-fs-device allows up to 1024, virtio's split-ring
/// maximum is 32768) fits a whole 1 MiB request in one.
const QUEUE_SIZE: u16 = 1024;
/// Request queues besides the high-priority one.
const REQUEST_QUEUES: u32 = 1;
const QUEUE_SIZES: [u16; 1 + REQUEST_QUEUES as usize] = [QUEUE_SIZE; 1 + REQUEST_QUEUES as usize];

struct Active {
    mem: GuestMemoryMmap,
    queues: Vec<Queue>,
    interrupt: VirtioInterrupt,
}

/// A virtio-fs device serving one host directory.
pub struct Fs {
    config: FsConfig,
    events: Arc<super::events::ShareEvents>,
    config_space: [u8; TAG_LEN + 4],
    /// The file system, also held here so that a new driver session can
    /// drop what the old one had open.
    fs: Arc<ShareFs>,
    server: Arc<Server<Arc<ShareFs>>>,
    active: Option<Active>,
    /// The driver was reset: the FUSE session it had is over, and its nodes
    /// and handles are closed before the next request is served.
    session_ended: bool,
    /// The guest has sent requests since the driver set the device up: a
    /// FUSE session (INIT, node ids, open files) a snapshot cannot carry.
    in_session: bool,
    /// Where each request's time and opcode are logged ([`TRACE_ENV`]).
    trace: Option<std::fs::File>,
}

/// A file the device appends one line per FUSE request to, `UNIXTIME
/// OPCODE` (seconds with nanoseconds; the opcode's number, linux/fuse.h),
/// for counting requests per operation (benches/fs.sh `COUNT=1`). Opened
/// when the device is made; unset: nothing is logged.
pub const TRACE_ENV: &str = "BERTH_VMM_FS_TRACE";

/// Appends `opcode`'s line to the trace (errors are ignored: a debug aid).
fn trace_request(trace: &mut std::fs::File, opcode: Option<u32>) {
    use std::io::Write;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let op = opcode.map_or_else(|| "?".to_string(), |o| o.to_string());
    let _ = writeln!(trace, "{}.{:09} {op}", now.as_secs(), now.subsec_nanos());
}

impl Fs {
    /// Opens the share (the directory must exist).
    pub fn new(config: &FsConfig) -> Result<Fs, FsError> {
        super::validate_tag(&config.tag)?;
        let fs = Arc::new(ShareFs::new(&config.path, config.read_only)?);
        let trace = std::env::var_os(TRACE_ENV).and_then(|p| {
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(p)
                .ok()
        });
        Ok(Fs {
            trace,
            events: fs.events(),
            config_space: config.config_space(REQUEST_QUEUES),
            config: config.clone(),
            server: Arc::new(Server::new(fs.clone())),
            fs,
            active: None,
            session_ended: false,
            in_session: false,
        })
    }

    /// The share's live-event tables (for the host watcher).
    pub fn events(&self) -> Arc<super::events::ShareEvents> {
        self.events.clone()
    }

    /// Logs each request to `trace` ([`TRACE_ENV`]'s format).
    #[cfg(test)]
    pub(super) fn trace_to(&mut self, trace: std::fs::File) {
        self.trace = Some(trace);
    }

    /// The share's configuration.
    pub fn config(&self) -> &FsConfig {
        &self.config
    }
}

/// FUSE_DESTROY's opcode (linux/fuse.h).
const FUSE_DESTROY: u32 = 38;

/// The opcode of a request chain (`None` when its header is unreadable).
fn request_opcode(mem: &GuestMemoryMmap, chain: &DescriptorChain<&GuestMemoryMmap>) -> Option<u32> {
    let mut r = Reader::from_descriptor_chain(mem, chain.clone()).ok()?;
    r.read_obj::<InHeader>().ok().map(|h| h.opcode)
}

/// Size of a FUSE reply header (`len: u32, error: i32, unique: u64`).
const OUT_HEADER_LEN: usize = 16;

/// Serves one FUSE request chain; returns the bytes written into it.
pub(super) fn serve_chain(
    server: &Server<Arc<ShareFs>>,
    mem: &GuestMemoryMmap,
    chain: DescriptorChain<&GuestMemoryMmap>,
) -> u32 {
    let reader = match Reader::from_descriptor_chain(mem, chain.clone()) {
        Ok(r) => r,
        Err(_) => return 0,
    };
    let unique = {
        let mut peek = reader.clone();
        match peek.read_obj::<InHeader>() {
            Ok(h) => h.unique,
            Err(_) => return 0,
        }
    };
    // Where the reply header goes, cleared so that a reply the server
    // wrote before giving up on a request can be recognized below.
    let reply_head = chain
        .clone()
        .writable()
        .next()
        .filter(|d| d.len() as usize >= OUT_HEADER_LEN)
        .map(|d| (d.addr(), d.len()));
    if let Some((addr, _)) = reply_head {
        if mem.write_slice(&[0u8; OUT_HEADER_LEN], addr).is_err() {
            return 0;
        }
    }
    let writer = match VirtioFsWriter::new(mem, chain) {
        Ok(w) => w,
        Err(_) => return 0,
    };
    match server.handle_message(reader, Writer::VirtioFs(writer), None, None) {
        Ok(n) => u32::try_from(n).unwrap_or(0),
        // Some failures (a name without its NUL, a bad header length) are
        // answered with an error reply and then reported as errors; the
        // driver must still learn that reply's length. Other malformed
        // requests get no reply (FORGET never has one).
        Err(_) => reply_head
            .and_then(|(addr, cap)| {
                let mut h = [0u8; OUT_HEADER_LEN];
                mem.read_slice(&mut h, addr).ok()?;
                let len = u32::from_le_bytes(h[0..4].try_into().ok()?);
                let got = u64::from_le_bytes(h[8..16].try_into().ok()?);
                (got == unique && len as usize >= OUT_HEADER_LEN && len <= cap).then_some(len)
            })
            .unwrap_or(0),
    }
}

impl VirtioDevice for Fs {
    fn device_type(&self) -> u32 {
        device_type::FS
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | VIRTIO_RING_F_EVENT_IDX
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config_space, offset, data);
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        if ctx.queues.len() != QUEUE_SIZES.len() {
            return Err(ActivateError::QueueCount {
                expected: QUEUE_SIZES.len(),
                got: ctx.queues.len(),
            });
        }
        self.active = Some(Active {
            mem: ctx.mem,
            queues: ctx.queues,
            interrupt: ctx.interrupt,
        });
        Ok(())
    }

    fn process_queue(&mut self, index: usize) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        let Some(queue) = a.queues.get_mut(index) else {
            return;
        };
        if std::mem::take(&mut self.session_ended) {
            // Here, not in `reset`: a reset runs on the vCPU thread that
            // wrote the status register, whose seccomp list has no file
            // calls, and `destroy` re-opens the share's root. Requests are
            // served on this thread, so none meets the old session's nodes.
            fuse_backend_rs::api::filesystem::FileSystem::destroy(&*self.fs);
        }
        let mem = a.mem.clone();
        let server = self.server.clone();
        let in_session = &mut self.in_session;
        let trace = &mut self.trace;
        drain_queue(queue, &mem, &a.interrupt, |chain| {
            let opcode = request_opcode(&mem, &chain);
            if let Some(t) = trace.as_mut() {
                trace_request(t, opcode);
            }
            let n = serve_chain(&server, &mem, chain);
            // DESTROY ends the session (the guest unmounted the share):
            // the server dropped its nodes and handles, and the next
            // request is a new INIT. A share the guest unmounted can be
            // snapshotted again (a suspended machine VM).
            *in_session = opcode != Some(FUSE_DESTROY);
            n
        });
    }

    fn reset(&mut self) {
        self.active = None;
        // A reset driver starts a new FUSE session (INIT again) and holds no
        // node or handle of the old one: their host descriptors are closed
        // before the next request, or a guest resetting again and again
        // would run the VMM out of them.
        self.session_ended = true;
        self.in_session = false;
    }

    fn queue_snapshots(&self) -> Vec<crate::devices::virtio::QueueSnapshot> {
        self.active
            .iter()
            .flat_map(|a| a.queues.iter())
            .map(crate::devices::virtio::QueueSnapshot::from)
            .collect()
    }

    /// A share the guest has not used yet (a probed driver, no mount) holds
    /// nothing but its queues, which the transport saves: such a slot can
    /// be snapshotted and given another folder at restore, where the guest's
    /// first mount starts a FUSE session with a fresh server. Once the guest
    /// has sent a request, its session (node ids, open files) lives in this
    /// process and cannot be carried.
    fn snapshot_blocker(&self) -> Option<String> {
        self.in_session.then(|| {
            format!(
                "virtio-fs share `{}` is in use by the guest (open host files and node ids are not saved)",
                self.config.tag
            )
        })
    }
}
