//! The projections' persisted course views (`projections::codec`): a CRC, an id table and the
//! view, field by field.
//!
//! Input: a record without its leading CRC32C; the check puts the right one in front so the
//! decoder is reached (the input as it is, CRC included, is tried too). The seeds are views
//! folded from `events/examples`.
//!
//! Decoding never panics (nor allocates by a damaged length), and what decodes encodes to a
//! record that decodes to the same view and re-encodes to the same bytes.

use crate::projections::codec;

pub fn check(data: &[u8]) {
    round_trip(data);
    let mut record = crc32c::crc32c(data).to_le_bytes().to_vec();
    record.extend_from_slice(data);
    round_trip(&record);
}

fn round_trip(record: &[u8]) {
    let Some(view) = codec::decode(record) else { return };
    let bytes = codec::encode(&view);
    assert_eq!(codec::decode(&bytes).as_ref(), Some(&view), "a view changes when encoded and decoded again");
    assert_eq!(codec::encode(&view), bytes, "a view encodes differently the second time");
}
