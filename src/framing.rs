//! The frame of our append-only side files (the access log, stored idempotency responses):
//! `len u32 LE | crc32c(payload) u32 LE | payload`. One writer and one reader for both, so a
//! torn or damaged frame ends a scan the same way everywhere. (The event log's records carry
//! more — write flags, batch ids — and have their own frame, `log::record`.)

use std::io::Read;

pub(crate) const HEADER: usize = 8;

/// Appends a frame whose payload `write` puts at the end of `out`.
pub(crate) fn append(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER]);
    write(out);
    let len = (out.len() - start - HEADER) as u32;
    let crc = crc32c::crc32c(&out[start + HEADER..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
}

/// The payload length and CRC a header names.
pub(crate) fn header(h: &[u8; HEADER]) -> (usize, u32) {
    let [a, b, c, d, e, f, g, i] = *h;
    (u32::from_le_bytes([a, b, c, d]) as usize, u32::from_le_bytes([e, f, g, i]))
}

/// Reads frames one by one; stops (returns `None`) at the end or at the first frame that is
/// short, longer than `max` or fails its CRC, leaving `good` at the end of the last whole one.
pub(crate) struct Frames<R> {
    r: R,
    max: usize,
    pub(crate) good: u64,
    buf: Vec<u8>,
}

impl<R: Read> Frames<R> {
    /// `at`: the offset the reader starts at.
    pub(crate) fn new(r: R, at: u64, max: usize) -> Self {
        Frames { r, max, good: at, buf: Vec::new() }
    }

    pub(crate) fn next_frame(&mut self) -> Option<&[u8]> {
        let mut h = [0u8; HEADER];
        self.r.read_exact(&mut h).ok()?;
        let (len, crc) = header(&h);
        if len > self.max {
            return None;
        }
        self.buf.resize(len, 0);
        self.r.read_exact(&mut self.buf).ok()?;
        if crc32c::crc32c(&self.buf) != crc {
            return None;
        }
        self.good += (HEADER + len) as u64;
        Some(&self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames read back as written; a torn last frame, one over the limit and one with a
    /// flipped bit each end the scan at the last whole frame.
    #[test]
    fn frames_read_back_and_damage_ends_the_scan() {
        let mut out = Vec::new();
        append(&mut out, |o| o.extend_from_slice(b"first"));
        append(&mut out, |o| o.extend_from_slice(b"second one"));
        let whole = out.len() as u64;
        let read = |bytes: &[u8], max: usize| {
            let mut f = Frames::new(bytes, 0, max);
            let mut got = Vec::new();
            while let Some(p) = f.next_frame() {
                got.push(p.to_vec());
            }
            (got, f.good)
        };
        assert_eq!(read(&out, 64), (vec![b"first".to_vec(), b"second one".to_vec()], whole));
        assert_eq!(read(&out, 6).0, vec![b"first".to_vec()], "over the limit");
        let mut torn = out.clone();
        append(&mut torn, |o| o.extend_from_slice(b"third"));
        torn.truncate(torn.len() - 2);
        assert_eq!(read(&torn, 64).1, whole);
        let mut flipped = out.clone();
        flipped[HEADER + 1] ^= 1;
        assert_eq!(read(&flipped, 64), (Vec::<Vec<u8>>::new(), 0));
    }
}
