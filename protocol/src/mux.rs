//! Framing of attach streams: an 8-byte header `[kind, 0, 0, 0, len u32 BE]`
//! then `len` bytes, in the shape of Docker's stdcopy format, with extra
//! kinds for control events.

use std::io::{Read, Write};

/// Largest payload of one mux frame.
pub const MAX_MUX_PAYLOAD: usize = 1 << 20;

/// What a mux frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Client → container standard input.
    Stdin = 0,
    Stdout = 1,
    Stderr = 2,
    /// Container exited; payload is the exit code as i32 BE.
    Exit = 3,
    /// Client terminal size; payload is rows u16 BE, cols u16 BE.
    Resize = 4,
    /// Client standard input reached end of file.
    StdinEof = 5,
    /// Engine failure; payload is a UTF-8 message.
    Error = 6,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            0 => Kind::Stdin,
            1 => Kind::Stdout,
            2 => Kind::Stderr,
            3 => Kind::Exit,
            4 => Kind::Resize,
            5 => Kind::StdinEof,
            6 => Kind::Error,
            _ => return None,
        })
    }
}

/// Errors decoding mux frames.
#[derive(Debug, thiserror::Error)]
pub enum MuxError {
    #[error("stream error: {0}")]
    Io(#[from] std::io::Error),
    #[error("unknown stream frame kind {0}")]
    UnknownKind(u8),
    #[error("stream frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
}

/// Encodes a frame header.
pub fn header(kind: Kind, len: usize) -> [u8; 8] {
    let l = (len as u32).to_be_bytes();
    [kind as u8, 0, 0, 0, l[0], l[1], l[2], l[3]]
}

/// Decodes a frame header into its kind and payload length.
pub fn parse_header(h: [u8; 8]) -> Result<(Kind, usize), MuxError> {
    let kind = Kind::from_u8(h[0]).ok_or(MuxError::UnknownKind(h[0]))?;
    let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
    if len > MAX_MUX_PAYLOAD {
        return Err(MuxError::TooLarge(len));
    }
    Ok((kind, len))
}

/// Writes one frame, splitting payloads larger than [`MAX_MUX_PAYLOAD`].
pub fn write_frame<W: Write>(w: &mut W, kind: Kind, payload: &[u8]) -> std::io::Result<()> {
    if payload.is_empty() {
        return w.write_all(&header(kind, 0));
    }
    for chunk in payload.chunks(MAX_MUX_PAYLOAD) {
        let mut buf = Vec::with_capacity(8 + chunk.len());
        buf.extend_from_slice(&header(kind, chunk.len()));
        buf.extend_from_slice(chunk);
        w.write_all(&buf)?;
    }
    Ok(())
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub fn read_frame<R: Read>(r: &mut R) -> Result<Option<(Kind, Vec<u8>)>, MuxError> {
    let mut h = [0u8; 8];
    let mut got = 0;
    while got < 8 {
        let n = r.read(&mut h[got..])?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        got += n;
    }
    let (kind, len) = parse_header(h)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some((kind, payload)))
}

/// Payload of a [`Kind::Resize`] frame.
pub fn resize_payload(rows: u16, cols: u16) -> [u8; 4] {
    let r = rows.to_be_bytes();
    let c = cols.to_be_bytes();
    [r[0], r[1], c[0], c[1]]
}

/// Parses a [`Kind::Resize`] payload.
pub fn parse_resize(p: &[u8]) -> Option<(u16, u16)> {
    if p.len() != 4 {
        return None;
    }
    Some((
        u16::from_be_bytes([p[0], p[1]]),
        u16::from_be_bytes([p[2], p[3]]),
    ))
}

/// Parses a [`Kind::Exit`] payload.
pub fn parse_exit(p: &[u8]) -> Option<i32> {
    Some(i32::from_be_bytes(p.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_split() {
        let mut buf = Vec::new();
        write_frame(&mut buf, Kind::Stdout, b"hello").unwrap();
        write_frame(&mut buf, Kind::Exit, &3i32.to_be_bytes()).unwrap();
        let big = vec![7u8; MAX_MUX_PAYLOAD + 10];
        write_frame(&mut buf, Kind::Stderr, &big).unwrap();
        let mut r = &buf[..];
        assert_eq!(
            read_frame(&mut r).unwrap().unwrap(),
            (Kind::Stdout, b"hello".to_vec())
        );
        let (k, p) = read_frame(&mut r).unwrap().unwrap();
        assert_eq!((k, parse_exit(&p)), (Kind::Exit, Some(3)));
        assert_eq!(
            read_frame(&mut r).unwrap().unwrap().1.len(),
            MAX_MUX_PAYLOAD
        );
        assert_eq!(read_frame(&mut r).unwrap().unwrap().1.len(), 10);
        assert!(read_frame(&mut r).unwrap().is_none());
    }

    #[test]
    fn hostile_headers_are_rejected() {
        assert!(matches!(
            parse_header([9, 0, 0, 0, 0, 0, 0, 1]),
            Err(MuxError::UnknownKind(9))
        ));
        assert!(matches!(
            parse_header([1, 0, 0, 0, 0xff, 0, 0, 0]),
            Err(MuxError::TooLarge(_))
        ));
        assert!(read_frame(&mut &[1u8, 0, 0][..]).is_err());
    }
}
