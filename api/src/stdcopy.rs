//! docker's stdcopy framing of attach and logs streams without a TTY: an
//! 8-byte header `[stream, 0, 0, 0, len u32 BE]` then `len` bytes; stream
//! 0 is stdin, 1 stdout, 2 stderr.

/// Stream numbers in the header.
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;

/// Largest payload put in one frame (larger ones are split).
const MAX_PAYLOAD: usize = 1 << 20;

/// Appends `payload` as frames of `stream` to `out`.
pub fn encode(out: &mut Vec<u8>, stream: u8, payload: &[u8]) {
    for chunk in payload.chunks(MAX_PAYLOAD) {
        let len = (chunk.len() as u32).to_be_bytes();
        out.extend_from_slice(&[stream, 0, 0, 0, len[0], len[1], len[2], len[3]]);
        out.extend_from_slice(chunk);
    }
}

/// One frame of `stream`.
pub fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + payload.len());
    encode(&mut v, stream, payload);
    v
}

/// Decodes a whole framed buffer into (stream, payload) pairs; None when
/// it is cut short or a header is malformed.
pub fn decode(mut buf: &[u8]) -> Option<Vec<(u8, Vec<u8>)>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        if buf.len() < 8 || buf[0] > 2 || buf[1..4] != [0, 0, 0] {
            return None;
        }
        let len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
        let rest = &buf[8..];
        if rest.len() < len {
            return None;
        }
        out.push((buf[0], rest[..len].to_vec()));
        buf = &rest[len..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut b = frame(STDOUT, b"hi\n");
        assert_eq!(&b[..8], &[1, 0, 0, 0, 0, 0, 0, 3]);
        encode(&mut b, STDERR, b"oops");
        encode(&mut b, STDOUT, b"");
        assert_eq!(
            decode(&b).unwrap(),
            vec![(1, b"hi\n".to_vec()), (2, b"oops".to_vec())]
        );
        let big = vec![b'x'; MAX_PAYLOAD + 5];
        let f = frame(STDOUT, &big);
        let d = decode(&f).unwrap();
        assert_eq!((d.len(), d[0].1.len(), d[1].1.len()), (2, MAX_PAYLOAD, 5));
    }

    #[test]
    fn short_or_bad_frames_are_refused() {
        assert!(decode(&[1, 0, 0]).is_none());
        assert!(decode(&[1, 0, 0, 0, 0, 0, 0, 9, b'a']).is_none());
        assert!(decode(&[7, 0, 0, 0, 0, 0, 0, 0]).is_none());
    }
}
