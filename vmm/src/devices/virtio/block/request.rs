//! Parsing and executing one virtio-blk request.

use std::fs::File;
use std::io::{Read, Write};

use virtio_queue::{Reader, Writer};

use super::file_io;

/// Sector size of the virtio-blk protocol.
pub const SECTOR_SIZE: u64 = 512;

/// Request types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestType {
    /// Read (VIRTIO_BLK_T_IN).
    In,
    /// Write (VIRTIO_BLK_T_OUT).
    Out,
    /// Flush (VIRTIO_BLK_T_FLUSH).
    Flush,
    /// Device id (VIRTIO_BLK_T_GET_ID).
    GetId,
    /// Anything else.
    Unsupported(u32),
}

impl From<u32> for RequestType {
    fn from(v: u32) -> Self {
        match v {
            0 => RequestType::In,
            1 => RequestType::Out,
            4 => RequestType::Flush,
            8 => RequestType::GetId,
            other => RequestType::Unsupported(other),
        }
    }
}

/// Completion status written to the request's last byte.
pub const STATUS_OK: u8 = 0;
/// I/O error.
pub const STATUS_IOERR: u8 = 1;
/// Unsupported request.
pub const STATUS_UNSUPP: u8 = 2;

/// Length of the device id string.
pub const ID_LEN: usize = 20;

const CHUNK: usize = 128 * 1024;

/// The disk a request runs against.
pub struct Disk<'a> {
    /// The image.
    pub file: &'a File,
    /// Size in bytes (capacity).
    pub size: u64,
    /// Writes are refused.
    pub read_only: bool,
    /// The GET_ID answer.
    pub id: &'a [u8; ID_LEN],
}

/// Executes the request in `reader` (header + data to write) / `writer`
/// (data to read + status byte); returns the bytes written into the chain.
pub fn execute(disk: &Disk, mut reader: Reader, mut writer: Writer) -> u32 {
    let writable = writer.available_bytes();
    if writable == 0 {
        return 0; // Nowhere to put a status: malformed, drop it.
    }
    let mut status_writer = match writer.split_at(writable - 1) {
        Ok(s) => s,
        Err(_) => return 0,
    };
    let (status, data_written) = match run(disk, &mut reader, &mut writer) {
        Ok(n) => (STATUS_OK, n),
        Err(s) => (s, writer.bytes_written()),
    };
    let _ = status_writer.write_all(&[status]);
    (data_written + 1) as u32
}

fn run(disk: &Disk, reader: &mut Reader, writer: &mut Writer) -> Result<usize, u8> {
    let kind: u32 = reader.read_obj().map_err(|_| STATUS_IOERR)?;
    let _reserved: u32 = reader.read_obj().map_err(|_| STATUS_IOERR)?;
    let sector: u64 = reader.read_obj().map_err(|_| STATUS_IOERR)?;
    let offset = sector.checked_mul(SECTOR_SIZE).ok_or(STATUS_IOERR)?;
    let in_bounds = |len: usize| {
        offset
            .checked_add(len as u64)
            .is_some_and(|end| end <= disk.size)
    };
    match RequestType::from(u32::from_le(kind)) {
        RequestType::In => {
            let len = writer.available_bytes();
            if !in_bounds(len) {
                return Err(STATUS_IOERR);
            }
            let mut buf = vec![0u8; len.min(CHUNK)];
            let mut done = 0;
            while done < len {
                let n = (len - done).min(CHUNK);
                read_full_at(disk.file, &mut buf[..n], offset + done as u64)
                    .map_err(|_| STATUS_IOERR)?;
                writer.write_all(&buf[..n]).map_err(|_| STATUS_IOERR)?;
                done += n;
            }
            Ok(len)
        }
        RequestType::Out => {
            if disk.read_only {
                return Err(STATUS_IOERR);
            }
            let len = reader.available_bytes();
            if !in_bounds(len) {
                return Err(STATUS_IOERR);
            }
            let mut buf = vec![0u8; len.min(CHUNK)];
            let mut done = 0;
            while done < len {
                let n = (len - done).min(CHUNK);
                reader.read_exact(&mut buf[..n]).map_err(|_| STATUS_IOERR)?;
                file_io::write_all_at(disk.file, &buf[..n], offset + done as u64)
                    .map_err(|_| STATUS_IOERR)?;
                done += n;
            }
            Ok(0)
        }
        RequestType::Flush => {
            if !disk.read_only {
                disk.file.sync_all().map_err(|_| STATUS_IOERR)?;
            }
            Ok(0)
        }
        RequestType::GetId => {
            let n = writer.available_bytes().min(ID_LEN);
            writer.write_all(&disk.id[..n]).map_err(|_| STATUS_IOERR)?;
            Ok(n)
        }
        RequestType::Unsupported(_) => Err(STATUS_UNSUPP),
    }
}

/// Reads exactly `buf.len()` bytes at `offset`; a short file reads as zeros.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file_io::read_at(file, &mut buf[done..], offset + done as u64) {
            Ok(0) => {
                buf[done..].fill(0);
                return Ok(());
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
