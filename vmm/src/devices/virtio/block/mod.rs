//! virtio-blk backed by a raw (usually sparse) image file.

mod device;
mod file_io;
mod request;

pub use device::{Block, BlockError};
pub use request::{RequestType, SECTOR_SIZE};
