//! The projections' persisted course records (`projections::codec`): a CRC, an id table and
//! either a head (the view, field by field, with its tail of observations and its chunks' CRCs)
//! or a sealed chunk of observations.
//!
//! Input: a record without its leading CRC32C; the check puts the right one in front so the
//! decoder is reached (the input as it is, CRC included, is tried too). The seeds are views
//! folded from `events/examples`.
//!
//! Decoding never panics (nor allocates by a damaged length), and what decodes, as either kind,
//! encodes to a record that decodes to the same value and re-encodes to the same bytes.

use crate::projections::codec;

pub fn check(data: &[u8]) {
    round_trip(data);
    let mut record = crc32c::crc32c(data).to_le_bytes().to_vec();
    record.extend_from_slice(data);
    round_trip(&record);
}

fn round_trip(record: &[u8]) {
    if let Some((view, crcs)) = codec::decode_head(record) {
        let bytes = codec::encode_head(&view, &crcs);
        assert_eq!(codec::decode_head(&bytes), Some((view.clone(), crcs.clone())), "a head changes when re-read");
        assert_eq!(codec::encode_head(&view, &crcs), bytes, "a head encodes differently the second time");
    }
    if let Some(obs) = codec::decode_chunk(record) {
        let bytes = codec::encode_chunk(&obs);
        assert_eq!(codec::decode_chunk(&bytes).as_ref(), Some(&obs), "a chunk changes when re-read");
        assert_eq!(codec::encode_chunk(&obs), bytes, "a chunk encodes differently the second time");
    }
}
