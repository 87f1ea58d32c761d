//! Runs a virtio device's queue notifications on the VMM's event loop.

use std::sync::{Arc, Mutex};

use crate::devices::notify::QueueNotifier;
use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};

use super::VirtioDevice;

/// `Events` data value of the device's host event source.
const HOST_EVENT: u32 = u32::MAX;

/// Event-loop subscriber of one device: one eventfd per queue (signalled by
/// ioeventfd or by the transport) and the optional host event source.
pub struct VirtioEventHandler {
    device: Arc<Mutex<dyn VirtioDevice>>,
    queue_evts: Vec<QueueNotifier>,
}

impl VirtioEventHandler {
    /// `queue_evts` are clones of the transport's queue notifiers.
    pub fn new(device: Arc<Mutex<dyn VirtioDevice>>, queue_evts: Vec<QueueNotifier>) -> Self {
        VirtioEventHandler { device, queue_evts }
    }
}

impl MutEventSubscriber for VirtioEventHandler {
    fn init(&mut self, ops: &mut EventOps) {
        for (i, evt) in self.queue_evts.iter().enumerate() {
            if let Err(e) = ops.add(Events::with_data(evt.event_fd(), i as u32, EventSet::IN)) {
                log::warn!("cannot watch queue {i} notifications: {e:?}");
            }
        }
        let host_fd = self
            .device
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .host_event_fd();
        if let Some(fd) = host_fd {
            if let Err(e) = ops.add(Events::with_data_raw(fd, HOST_EVENT, EventSet::IN)) {
                log::warn!("cannot watch device host events: {e:?}");
            }
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        let mut device = self.device.lock().unwrap_or_else(|e| e.into_inner());
        match events.data() {
            HOST_EVENT => device.process_host_events(),
            i => {
                if let Some(evt) = self.queue_evts.get(i as usize) {
                    // Drain the counter; one pass handles all notifications.
                    let _ = evt.take();
                    device.process_queue(i as usize);
                }
            }
        }
    }
}
