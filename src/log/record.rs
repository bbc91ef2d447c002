//! One record per event on disk: a frame of `u32 len | u32 crc32c(payload) | payload`.
//!
//! ```text
//! payload = u8 flags | u64 batch | canonical bytes (see envelope.rs)
//!         | [32] prev_hash | [32] hash | [32] stream_prev_hash | [32] stream_hash
//!         | u32 data_len | data
//! ```
//!
//! `flags` and `batch` describe how the record was written, not the event, so they are outside
//! the canonical bytes: `TXN_END` marks the last event of one atomic `append`, `BATCH_START` the
//! first record of one group-commit write. Recovery uses them to tell a torn, never-acknowledged
//! tail from damage to acknowledged data (see `segment::scan`).

use super::envelope::{CanonicalFields, DecodeError, Envelope, Hash, Reader, decode_canonical_ref};

pub const FRAME_HEADER: usize = 8;
pub const FLAG_TXN_END: u8 = 1;
pub const FLAG_BATCH_START: u8 = 2;
pub const KNOWN_FLAGS: u8 = FLAG_TXN_END | FLAG_BATCH_START;
/// Smallest possible payload: flags, batch, the fixed part of the canonical bytes, four hashes
/// and the data length.
pub const MIN_PAYLOAD: usize = 1 + 8 + 100 + 128 + 4;
/// Largest payload accepted; data is capped well below it at append.
pub const MAX_PAYLOAD: usize = 16 << 20;
pub const MAX_DATA: usize = 4 << 20;

/// How a record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub flags: u8,
    pub batch: u64,
}

/// A decoded record and where its canonical bytes sit inside the payload (for verification
/// without re-encoding).
pub struct DecodedRecord {
    pub header: RecordHeader,
    pub envelope: Envelope,
    pub canonical: std::ops::Range<usize>,
}

/// Appends one framed record to `out`. `canonical` are the event's canonical bytes.
#[allow(clippy::too_many_arguments)]
pub fn encode_frame(
    out: &mut Vec<u8>,
    header: RecordHeader,
    canonical: &[u8],
    prev_hash: &Hash,
    hash: &Hash,
    stream_prev_hash: &Hash,
    stream_hash: &Hash,
    data: &[u8],
) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER]);
    out.push(header.flags);
    out.extend_from_slice(&header.batch.to_le_bytes());
    out.extend_from_slice(canonical);
    out.extend_from_slice(&prev_hash.0);
    out.extend_from_slice(&hash.0);
    out.extend_from_slice(&stream_prev_hash.0);
    out.extend_from_slice(&stream_hash.0);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    let payload_len = out.len() - start - FRAME_HEADER;
    let crc = crc32c::crc32c(&out[start + FRAME_HEADER..]);
    out[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// What the 8-byte frame header says, before the payload is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameHead {
    /// All zeros: the end of written data in a preallocated segment.
    Zero,
    /// A plausible frame of this payload length and checksum.
    Frame { len: usize, crc: u32 },
    /// A length no writer produces.
    Implausible,
}

pub fn frame_head(bytes: &[u8; FRAME_HEADER]) -> FrameHead {
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if len == 0 && crc == 0 {
        FrameHead::Zero
    } else if !(MIN_PAYLOAD..=MAX_PAYLOAD).contains(&len) {
        FrameHead::Implausible
    } else {
        FrameHead::Frame { len, crc }
    }
}

pub fn crc_ok(payload: &[u8], crc: u32) -> bool {
    crc32c::crc32c(payload) == crc
}

/// The log position a payload claims, read without decoding the rest.
pub fn payload_position(payload: &[u8]) -> Option<u64> {
    let mut r = Reader::new(payload);
    let (_flags, _batch, _format) = (r.u8().ok()?, r.u64().ok()?, r.u8().ok()?);
    r.u64().ok()
}

/// A payload decoded in place: borrowed from the record's bytes.
pub struct PayloadRef<'a> {
    pub header: RecordHeader,
    pub canonical: CanonicalFields<'a>,
    /// Where the canonical bytes sit in the payload.
    pub canonical_range: std::ops::Range<usize>,
    pub prev_hash: Hash,
    pub hash: Hash,
    pub stream_prev_hash: Hash,
    pub stream_hash: Hash,
    pub data: &'a [u8],
}

/// Decodes a payload whose CRC was already checked, in place (the one parser of the payload;
/// [`decode_payload`] makes it owned).
pub fn decode_payload_ref(payload: &[u8]) -> Result<PayloadRef<'_>, DecodeError> {
    let mut r = Reader::new(payload);
    let flags = r.u8()?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(DecodeError::Invalid("record flags"));
    }
    let batch = r.u64()?;
    let canonical_start = r.pos();
    let canonical = decode_canonical_ref(&mut r)?;
    let canonical_range = canonical_start..r.pos();
    let prev_hash = r.hash()?;
    let hash = r.hash()?;
    let stream_prev_hash = r.hash()?;
    let stream_hash = r.hash()?;
    let data_len = r.u32()? as usize;
    let data = r.bytes(data_len)?;
    if r.remaining() != 0 {
        return Err(DecodeError::Trailing(r.remaining()));
    }
    Ok(PayloadRef {
        header: RecordHeader { flags, batch },
        canonical,
        canonical_range,
        prev_hash,
        hash,
        stream_prev_hash,
        stream_hash,
        data,
    })
}

/// Decodes a payload whose CRC was already checked.
pub fn decode_payload(payload: &[u8]) -> Result<DecodedRecord, DecodeError> {
    let p = decode_payload_ref(payload)?;
    let c = p.canonical.into_owned()?;
    Ok(DecodedRecord {
        header: p.header,
        envelope: Envelope {
            position: c.position,
            stream: c.stream,
            stream_version: c.stream_version,
            event_id: c.event_id,
            event_type: c.event_type,
            schema_version: c.schema_version,
            occurred_at: c.occurred_at,
            recorded_at: c.recorded_at,
            actor: c.actor,
            metadata: c.metadata,
            data_sha256: c.data_sha256,
            data: p.data.to_vec(),
            prev_hash: p.prev_hash,
            hash: p.hash,
            stream_prev_hash: p.stream_prev_hash,
            stream_hash: p.stream_hash,
        },
        canonical: p.canonical_range,
    })
}

/// Reads just the flags, batch and position of a payload; used by the recovery scan to judge a
/// candidate frame cheaply before checking its CRC.
pub fn peek_payload(payload: &[u8]) -> Option<(u8, u64, u64)> {
    if payload.len() < 1 + 8 + 1 + 8 {
        return None;
    }
    let flags = payload[0];
    let batch = u64::from_le_bytes(payload[1..9].try_into().ok()?);
    let format = payload[9];
    let position = u64::from_le_bytes(payload[10..18].try_into().ok()?);
    (flags & !KNOWN_FLAGS == 0 && format == super::envelope::CANONICAL_FORMAT).then_some((flags, batch, position))
}
