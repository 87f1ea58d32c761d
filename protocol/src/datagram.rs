//! Datagram framing on a byte stream: `u16 BE length || payload`, one
//! frame per UDP datagram, so boundaries survive a stream (the host's UDP
//! port forwarder and the agent's `PortConnectUdp` stream, VM placements).
//!
//! The reader trusts nothing: a length above [`MAX_DATAGRAM`] or a stream
//! that ends inside a frame is an error (the stream is then dropped, never
//! resynchronised), and no allocation depends on the peer.

use std::io::{ErrorKind, Read, Write};

/// Largest UDP payload carried: the most an IPv4 datagram holds
/// (65535 - 20 IP - 8 UDP), docker-proxy's buffer size.
pub const MAX_DATAGRAM: usize = 65507;

/// Bytes of a frame's length prefix.
pub const HEADER: usize = 2;

/// Errors reading or writing datagram frames.
#[derive(Debug, thiserror::Error)]
pub enum DatagramError {
    /// The transport failed.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer announced, or the caller gave, a datagram above
    /// [`MAX_DATAGRAM`].
    #[error("datagram of {0} bytes exceeds the {MAX_DATAGRAM}-byte limit")]
    TooLarge(usize),
    /// The stream ended inside a frame.
    #[error("stream ended inside a datagram frame")]
    Truncated,
}

/// One frame for `payload`, header included (one write on the stream).
pub fn encode(payload: &[u8]) -> Result<Vec<u8>, DatagramError> {
    if payload.len() > MAX_DATAGRAM {
        return Err(DatagramError::TooLarge(payload.len()));
    }
    let len = u16::try_from(payload.len()).map_err(|_| DatagramError::TooLarge(payload.len()))?;
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Writes one datagram frame and flushes.
pub fn write_datagram<W: Write>(w: &mut W, payload: &[u8]) -> Result<(), DatagramError> {
    w.write_all(&encode(payload)?)?;
    w.flush()?;
    Ok(())
}

/// Reads one datagram into `buf` (at least [`MAX_DATAGRAM`] bytes long):
/// `Ok(Some(len))`, or `Ok(None)` when the stream ended cleanly between
/// frames.
pub fn read_datagram<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<Option<usize>, DatagramError> {
    let mut header = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(DatagramError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = usize::from(u16::from_be_bytes(header));
    if len > MAX_DATAGRAM {
        return Err(DatagramError::TooLarge(len));
    }
    let Some(body) = buf.get_mut(..len) else {
        return Err(DatagramError::TooLarge(len));
    };
    match r.read_exact(body) {
        Ok(()) => Ok(Some(len)),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => Err(DatagramError::Truncated),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn read_all(bytes: &[u8]) -> (Vec<Vec<u8>>, Option<DatagramError>) {
        let mut r = Cursor::new(bytes);
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut out = Vec::new();
        loop {
            match read_datagram(&mut r, &mut buf) {
                Ok(Some(n)) => out.push(buf[..n].to_vec()),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    #[test]
    fn boundaries_survive_back_to_back_frames() {
        let grams: Vec<Vec<u8>> = vec![
            b"ping".to_vec(),
            Vec::new(),
            vec![0xff; 1],
            vec![7; MAX_DATAGRAM],
            b"pong".to_vec(),
        ];
        let mut stream = Vec::new();
        for g in &grams {
            write_datagram(&mut stream, g).unwrap();
        }
        assert_eq!(&stream[..6], b"\x00\x04ping");
        let (got, err) = read_all(&stream);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(got, grams);
    }

    #[test]
    fn oversized_datagrams_are_refused_both_ways() {
        assert!(matches!(
            encode(&vec![0; MAX_DATAGRAM + 1]),
            Err(DatagramError::TooLarge(65508))
        ));
        // Lengths a u16 can announce but no IPv4 datagram holds: the
        // reader stops before reading (or allocating) the body.
        for len in [65508u16, 65535] {
            let mut s = len.to_be_bytes().to_vec();
            s.extend_from_slice(&[0; 16]);
            let (got, err) = read_all(&s);
            assert!(got.is_empty());
            assert!(
                matches!(err, Some(DatagramError::TooLarge(n)) if n == usize::from(len)),
                "{err:?}"
            );
        }
    }

    #[test]
    fn truncated_streams_are_errors_not_datagrams() {
        // Clean end between frames.
        assert!(read_all(b"").1.is_none());
        // Half a header.
        assert!(matches!(
            read_all(b"\x00").1,
            Some(DatagramError::Truncated)
        ));
        // A body shorter than announced, after one good frame.
        let (got, err) = read_all(b"\x00\x01a\x00\x05abc");
        assert_eq!(got, vec![b"a".to_vec()]);
        assert!(matches!(err, Some(DatagramError::Truncated)), "{err:?}");
    }

    #[test]
    fn a_small_buffer_is_never_overrun() {
        let mut r = Cursor::new(b"\x00\x08abcdefgh".to_vec());
        let mut buf = [0u8; 4];
        assert!(matches!(
            read_datagram(&mut r, &mut buf),
            Err(DatagramError::TooLarge(8))
        ));
    }

    /// A reader that hands out one byte per call: frames are reassembled
    /// from short reads.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let Some((first, rest)) = self.0.split_first() else {
                return Ok(0);
            };
            if buf.is_empty() {
                return Ok(0);
            }
            buf[0] = *first;
            self.0 = rest;
            Ok(1)
        }
    }

    #[test]
    fn short_reads_are_reassembled() {
        let mut s = encode(b"hello").unwrap();
        s.extend(encode(b"").unwrap());
        let mut r = Trickle(&s);
        let mut buf = vec![0u8; MAX_DATAGRAM];
        assert_eq!(read_datagram(&mut r, &mut buf).unwrap(), Some(5));
        assert_eq!(&buf[..5], b"hello");
        assert_eq!(read_datagram(&mut r, &mut buf).unwrap(), Some(0));
        assert_eq!(read_datagram(&mut r, &mut buf).unwrap(), None);
    }

    #[test]
    fn random_garbage_never_panics_and_never_yields_oversize() {
        // A fixed-seed xorshift: arbitrary hostile streams.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..500 {
            let len = (next() % 300) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let (got, _) = read_all(&bytes);
            let total: usize = got.iter().map(|g| g.len() + HEADER).sum();
            assert!(total <= bytes.len());
        }
    }
}
