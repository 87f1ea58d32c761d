//! The arm64 Linux `Image` header (Documentation/arch/arm64/booting.rst):
//! where to load the kernel and how much memory it occupies.

/// "ARM\x64", little-endian at offset 56.
pub const MAGIC: u32 = 0x644d_5241;
/// Size of the header.
pub const HEADER_SIZE: usize = 64;

/// Errors of [`parse_header`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// The file is shorter than the header.
    #[error("kernel image too short ({0} bytes)")]
    TooShort(usize),
    /// The magic number is missing: not an arm64 Image.
    #[error("not an arm64 Image (magic {0:#x})")]
    BadMagic(u32),
    /// The image is big-endian.
    #[error("big-endian arm64 kernels are not supported")]
    BigEndian,
}

/// What the VMM needs from the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    /// Offset of the image from a 2 MiB aligned base.
    pub text_offset: u64,
    /// Effective image size, bss included (0 for kernels older than 3.17).
    pub image_size: u64,
}

fn le64(b: &[u8], off: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(v)
}

/// Parses the header at the start of `image`.
pub fn parse_header(image: &[u8]) -> Result<ImageHeader, ImageError> {
    if image.len() < HEADER_SIZE {
        return Err(ImageError::TooShort(image.len()));
    }
    let magic = u32::from_le_bytes([image[56], image[57], image[58], image[59]]);
    if magic != MAGIC {
        return Err(ImageError::BadMagic(magic));
    }
    let flags = le64(image, 24);
    if flags & 1 != 0 {
        return Err(ImageError::BigEndian);
    }
    let image_size = le64(image, 16);
    Ok(ImageHeader {
        // Kernels with image_size == 0 assume the historical 0x80000.
        text_offset: if image_size == 0 {
            0x8_0000
        } else {
            le64(image, 8)
        },
        image_size,
    })
}

/// The load address of an image with `header` when RAM starts at
/// `ram_base` (2 MiB aligned): the kernel's entry point is its first byte.
pub fn load_addr(ram_base: u64, header: &ImageHeader) -> u64 {
    ram_base + header.text_offset
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(text_offset: u64, image_size: u64, flags: u64) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_SIZE];
        h[8..16].copy_from_slice(&text_offset.to_le_bytes());
        h[16..24].copy_from_slice(&image_size.to_le_bytes());
        h[24..32].copy_from_slice(&flags.to_le_bytes());
        h[56..60].copy_from_slice(&MAGIC.to_le_bytes());
        h
    }

    #[test]
    fn parses_a_modern_header() {
        let h = parse_header(&header(0, 0x1a0_0000, 0xa)).unwrap();
        assert_eq!(
            h,
            ImageHeader {
                text_offset: 0,
                image_size: 0x1a0_0000
            }
        );
        assert_eq!(load_addr(0x4000_0000, &h), 0x4000_0000);
    }

    #[test]
    fn rejects_other_files() {
        assert_eq!(parse_header(&[0; 10]), Err(ImageError::TooShort(10)));
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        assert!(matches!(parse_header(&elf), Err(ImageError::BadMagic(_))));
        assert_eq!(
            parse_header(&header(0, 0x100, 1)),
            Err(ImageError::BigEndian)
        );
        // Old kernels: image_size 0 means text_offset 0x80000.
        assert_eq!(
            parse_header(&header(0, 0, 0)).unwrap().text_offset,
            0x8_0000
        );
    }
}
