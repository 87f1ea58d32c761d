//! The i8042 keyboard controller, reduced to what a Linux guest uses without
//! a keyboard: its reset line. With `reboot=k`, `reboot(2)` writes 0xFE to
//! port 0x64, which ends the VM cleanly.

use super::BusDevice;

/// Port of the first i8042 register (data).
pub const I8042_DATA_PORT: u64 = 0x60;
/// Offset of the command/status port (0x64) from the data port.
const COMMAND_OFFSET: u64 = 4;
/// "Pulse output line 0" = CPU reset.
const CMD_RESET_CPU: u8 = 0xfe;

/// Whether a guest write of `data` to I/O port `port` is the reset command
/// (for a vCPU loop that stops after handing it to the device).
pub fn is_reset_write(port: u64, data: &[u8]) -> bool {
    port == I8042_DATA_PORT + COMMAND_OFFSET && data.first() == Some(&CMD_RESET_CPU)
}

/// i8042 with only the reset command implemented.
pub struct I8042 {
    on_reset: Box<dyn Fn() + Send>,
}

impl I8042 {
    /// `on_reset` runs once per reset request.
    pub fn new(on_reset: Box<dyn Fn() + Send>) -> Self {
        I8042 { on_reset }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // Status 0: output buffer empty, input buffer empty (ready for a command).
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == COMMAND_OFFSET && data.first() == Some(&CMD_RESET_CPU) {
            (self.on_reset)();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_command_is_reported() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut dev = I8042::new(Box::new(move || tx.send(()).unwrap()));
        let mut status = [0xffu8];
        dev.read(COMMAND_OFFSET, &mut status);
        assert_eq!(status[0], 0);
        dev.write(0, &[CMD_RESET_CPU]);
        assert!(rx.try_recv().is_err(), "data port writes are not commands");
        dev.write(COMMAND_OFFSET, &[CMD_RESET_CPU]);
        assert!(rx.try_recv().is_ok());
        assert!(is_reset_write(0x64, &[0xfe]));
        assert!(!is_reset_write(0x60, &[0xfe]));
        assert!(!is_reset_write(0x64, &[0xfd]));
        assert!(!is_reset_write(0x64, &[]));
    }
}
