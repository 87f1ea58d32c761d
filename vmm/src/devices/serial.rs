//! 16550A UART at 0x3f8 (IRQ 4), the guest console. The register model is
//! vm-superio's; this module adds the interrupt wiring and an output sink
//! that writes whole lines (so a log being watched shows complete lines)
//! and remembers when the first byte arrived (for `--timings`).

use std::io::{self, Write};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use vm_superio::{Serial as Uart, Trigger};

use super::BusDevice;
use crate::hypervisor::InterruptLine;

/// COM1 base port.
pub const COM1_PORT: u64 = 0x3f8;
/// Number of UART registers.
pub const COM1_LEN: u64 = 8;

/// Adapts an [`InterruptLine`] to vm-superio's `Trigger`.
pub struct IrqTrigger(pub Arc<dyn InterruptLine>);

impl Trigger for IrqTrigger {
    type E = io::Error;
    fn trigger(&self) -> io::Result<()> {
        self.0.trigger()
    }
}

/// A callback for a console line (see [`ConsoleSink::with_marker`]).
pub type LineHook = Box<dyn FnMut() + Send>;

/// Console output: line-buffered, with the time of the first byte.
pub struct ConsoleSink {
    out: Box<dyn Write + Send>,
    line: Vec<u8>,
    first_byte: Arc<OnceLock<Instant>>,
    /// Called once, for the first output line that contains the text.
    marker: Option<(Vec<u8>, LineHook)>,
}

impl ConsoleSink {
    /// Wraps `out`; `first_byte` is set when the guest writes its first byte.
    pub fn new(out: Box<dyn Write + Send>, first_byte: Arc<OnceLock<Instant>>) -> Self {
        ConsoleSink {
            out,
            line: Vec::with_capacity(256),
            first_byte,
            marker: None,
        }
    }

    /// Calls `on_line` once, when the guest writes a line containing `text`
    /// (e.g. the agent's `ready on vsock port`).
    pub fn with_marker(mut self, text: &str, on_line: LineHook) -> Self {
        self.marker = Some((text.as_bytes().to_vec(), on_line));
        self
    }

    fn check_marker(&mut self) {
        let hit = match &self.marker {
            Some((text, _)) => !text.is_empty() && self.line.windows(text.len()).any(|w| w == text),
            None => false,
        };
        if hit {
            if let Some((_, mut f)) = self.marker.take() {
                f();
            }
        }
    }
}

impl Write for ConsoleSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !buf.is_empty() {
            self.first_byte.get_or_init(Instant::now);
        }
        self.line.extend_from_slice(buf);
        if buf.contains(&b'\n') || self.line.len() >= 4096 {
            self.check_marker();
            self.flush_all()?;
        }
        Ok(buf.len())
    }

    /// vm-superio flushes after every byte; whole lines are written by
    /// `write`, so this keeps a partial line buffered.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ConsoleSink {
    /// Writes out everything, including a partial line.
    pub fn flush_all(&mut self) -> io::Result<()> {
        self.out.write_all(&self.line)?;
        self.line.clear();
        self.out.flush()
    }
}

impl Drop for ConsoleSink {
    fn drop(&mut self) {
        let _ = self.flush_all();
    }
}

/// The 16550 registers (vm-superio's `SerialState`, serializable).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SerialSnapshot {
    #[allow(missing_docs)]
    pub baud_divisor_low: u8,
    #[allow(missing_docs)]
    pub baud_divisor_high: u8,
    #[allow(missing_docs)]
    pub interrupt_enable: u8,
    #[allow(missing_docs)]
    pub interrupt_identification: u8,
    #[allow(missing_docs)]
    pub line_control: u8,
    #[allow(missing_docs)]
    pub line_status: u8,
    #[allow(missing_docs)]
    pub modem_control: u8,
    #[allow(missing_docs)]
    pub modem_status: u8,
    #[allow(missing_docs)]
    pub scratch: u8,
    /// Received bytes not yet read by the guest.
    pub in_buffer: Vec<u8>,
}

/// The guest's serial port.
pub struct SerialPort {
    uart: Uart<IrqTrigger, vm_superio::serial::NoEvents, ConsoleSink>,
}

impl SerialPort {
    /// A UART raising `irq` and writing to `sink`.
    pub fn new(irq: Arc<dyn InterruptLine>, sink: ConsoleSink) -> Self {
        SerialPort {
            uart: Uart::new(IrqTrigger(irq), sink),
        }
    }

    /// A UART with saved registers (a restored VM).
    pub fn from_state(
        state: &SerialSnapshot,
        irq: Arc<dyn InterruptLine>,
        sink: ConsoleSink,
    ) -> Result<Self, String> {
        let st = vm_superio::serial::SerialState {
            baud_divisor_low: state.baud_divisor_low,
            baud_divisor_high: state.baud_divisor_high,
            interrupt_enable: state.interrupt_enable,
            interrupt_identification: state.interrupt_identification,
            line_control: state.line_control,
            line_status: state.line_status,
            modem_control: state.modem_control,
            modem_status: state.modem_status,
            scratch: state.scratch,
            in_buffer: state.in_buffer.clone(),
        };
        let uart = Uart::from_state(&st, IrqTrigger(irq), vm_superio::serial::NoEvents, sink)
            .map_err(|e| format!("serial state: {e:?}"))?;
        Ok(SerialPort { uart })
    }

    /// The UART registers, for a snapshot.
    pub fn save_state(&self) -> SerialSnapshot {
        let s = self.uart.state();
        SerialSnapshot {
            baud_divisor_low: s.baud_divisor_low,
            baud_divisor_high: s.baud_divisor_high,
            interrupt_enable: s.interrupt_enable,
            interrupt_identification: s.interrupt_identification,
            line_control: s.line_control,
            line_status: s.line_status,
            modem_control: s.modem_control,
            modem_status: s.modem_status,
            scratch: s.scratch,
            in_buffer: s.in_buffer,
        }
    }

    /// Flushes pending output (at VM exit).
    pub fn flush(&mut self) {
        let _ = self.uart.writer_mut().flush_all();
    }
}

impl BusDevice for SerialPort {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if let Some(first) = data.first_mut() {
            *first = self.uart.read(offset as u8);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let Some(v) = data.first() {
            // An output error (closed log) must not stop the guest.
            let _ = self.uart.write(offset as u8, *v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    struct CountingLine(AtomicUsize);
    impl InterruptLine for CountingLine {
        fn trigger(&self) -> io::Result<()> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_reach_the_sink_and_thre_interrupts_fire() {
        let out = Shared::default();
        let first = Arc::new(OnceLock::new());
        let irq = Arc::new(CountingLine(AtomicUsize::new(0)));
        let mut port = SerialPort::new(
            irq.clone(),
            ConsoleSink::new(Box::new(out.clone()), first.clone()),
        );
        port.write(1, &[0x02]); // IER: THR empty interrupt
        for b in b"hi\nthere" {
            port.write(0, &[*b]);
        }
        assert_eq!(&*out.0.lock().unwrap(), b"hi\n");
        assert!(first.get().is_some());
        assert!(irq.0.load(Ordering::SeqCst) > 0);
        port.flush();
        assert_eq!(&*out.0.lock().unwrap(), b"hi\nthere");
        let mut lsr = [0u8];
        port.read(5, &mut lsr);
        assert_ne!(lsr[0] & 0x20, 0, "THR empty");
    }
}
