//! Log records: the record decoder, the two frame readers and the recovery scan.
//!
//! Input: a mode byte, a damage location (`u16` LE), a damage byte, then the bytes of a segment
//! after its 16-byte header (frames of `u32 len | u32 crc32c | payload`). The committed seeds
//! are real segments written by `EventLog`.
//!
//! Always, on the bytes as they are:
//! - every payload the frame lengths delimit (CRCs ignored, so the decoder is reached) either
//!   fails to decode or re-encodes to exactly its bytes, and its export line gives back the same
//!   canonical bytes;
//! - `SegmentCursor` (replay) and `read_frame_at` (random reads) return the same records and
//!   fail at the same offset with the same reason, and `skip_record` steps over the same frames;
//! - `scan` (recovery) never panics; what it keeps, the readers read back, and after its cut a
//!   second scan finds a clean end at the same place (recovery is idempotent).
//!
//! With mode bit 0 set, the payloads that decode are also rewritten into a log as the writer
//! would write it (positions following on, SHA-256 chain, CRCs, group-commit batches with
//! `BATCH_START`, atomic appends ending in `TXN_END`), anchored at position 1 (mode bit 1) or at
//! the first record's own `prev_hash`. Then damaged by mode bits 2–3: 1 cuts the tail at the
//! location (a crash: zeros from there), 2 flips the damage byte into the byte at the location.
//! Recovery must keep exactly every atomic append that is wholly before a cut, and must refuse
//! to open (rather than cut) when damage is followed by a later group commit.

use std::fs::File;
use std::os::fd::FromRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use crate::log::envelope::{Hash, OwnedEnvelopeJson, is_storable_json};
use crate::log::record::{
    self, DecodedRecord, FLAG_BATCH_START, FLAG_TXN_END, FRAME_HEADER, FrameHead, MAX_PAYLOAD, RecordHeader,
};
use crate::log::segment::{self, ChainTip, HEADER_LEN, ScanError, ScanResult, Segment, SegmentCursor};

const PATH: &str = "fuzz.seg";
/// At most this many records go into a rebuilt chain.
const MAX_RECORDS: usize = 64;

pub fn check(data: &[u8]) {
    let [mode, lo, hi, damage, body @ ..] = data else { return };
    let payloads = delimit(body);
    for p in &payloads {
        payload_round_trip(p);
    }
    readers_agree(&segment_of(body));
    if mode & 1 != 0 {
        let records: Vec<DecodedRecord> =
            payloads.iter().filter_map(|p| record::decode_payload(p).ok()).take(MAX_RECORDS).collect();
        rebuilt_log(*mode, u16::from_le_bytes([*lo, *hi]), *damage, &records);
    }
}

/// A segment file's bytes: the header, then `body`.
pub fn segment_of(body: &[u8]) -> Vec<u8> {
    let mut seg = Vec::with_capacity(HEADER_LEN as usize + body.len());
    seg.extend_from_slice(segment::MAGIC);
    seg.extend_from_slice(&segment::FORMAT_VERSION.to_le_bytes());
    seg.extend_from_slice(&[0; 4]);
    seg.extend_from_slice(body);
    seg
}

/// The payloads the frame lengths delimit, checksums ignored; the last may be cut short.
fn delimit(body: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(head) = body.get(at..at + FRAME_HEADER) {
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if len == 0 {
            break;
        }
        let start = at + FRAME_HEADER;
        let end = start.saturating_add(len).min(body.len());
        out.push(&body[start..end]);
        at = end;
    }
    out
}

/// A payload either does not decode, or re-encodes to exactly its bytes.
fn payload_round_trip(payload: &[u8]) {
    let Ok(rec) = record::decode_payload(payload) else { return };
    let e = &rec.envelope;
    assert_eq!(
        record::peek_payload(payload),
        Some((rec.header.flags, rec.header.batch, e.position)),
        "the recovery scan's quick look disagrees with the decoder"
    );
    let canonical = e.canonical_fields().to_vec();
    assert_eq!(&payload[rec.canonical.clone()], &canonical[..], "the canonical bytes do not re-encode to themselves");
    let mut frame = Vec::new();
    frame_of(&mut frame, rec.header, &canonical, e);
    assert_eq!(&frame[FRAME_HEADER..], payload, "a decoded record does not re-encode to its bytes");
    let head: [u8; FRAME_HEADER] = frame[..FRAME_HEADER].try_into().unwrap_or_default();
    if payload.len() <= MAX_PAYLOAD {
        assert_eq!(record::frame_head(&head), FrameHead::Frame { len: payload.len(), crc: crc32c::crc32c(payload) });
    }

    // Its line in an export (`vivirk export`, `GET …/record`) gives back the canonical bytes, so
    // an offline verifier recomputes the same hash; data that is JSON travels byte for byte.
    let line =
        serde_json::to_string(&e.to_json()).unwrap_or_else(|err| panic!("an envelope does not serialise: {err}"));
    let back: OwnedEnvelopeJson =
        serde_json::from_str(&line).unwrap_or_else(|err| panic!("an exported line does not parse: {err}\n{line}"));
    assert_eq!(back.canonical().as_deref(), Some(&canonical[..]), "the export line's canonical bytes differ");
    assert_eq!(
        (back.prev_hash, back.hash, back.stream_prev_hash, back.stream_hash),
        (e.prev_hash, e.hash, e.stream_prev_hash, e.stream_hash)
    );
    if is_storable_json(&e.data) {
        assert_eq!(
            back.data.as_ref().map(|d| d.get().as_bytes()),
            Some(&e.data[..]),
            "JSON data the log accepts does not travel byte for byte in an export"
        );
    }
}

/// An in-memory file holding `bytes`, for the readers that take a `File`.
fn memfd(bytes: &[u8]) -> File {
    // SAFETY: plain syscall; the name is a NUL-terminated literal.
    let fd = unsafe { libc::memfd_create(c"vivirk-fuzz".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create failed: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let file = unsafe { File::from_raw_fd(fd) };
    file.write_all_at(bytes, 0).unwrap_or_else(|e| panic!("writing the memfd: {e}"));
    file
}

fn same_record(a: &DecodedRecord, b: &DecodedRecord) -> bool {
    a.header == b.header && a.envelope == b.envelope && a.canonical == b.canonical
}

/// The readers agree with each other and with recovery. Returns the records read.
fn readers_agree(seg: &[u8]) -> Vec<(u64, u64, DecodedRecord)> {
    let seg_file = Arc::new(Segment { first_position: 1, path: PATH.into(), file: memfd(seg) });
    let mut cursor = SegmentCursor::new(seg_file.clone(), HEADER_LEN);
    let mut skipper = SegmentCursor::new(seg_file.clone(), HEADER_LEN);
    // (offset, end, record)
    let mut records = Vec::new();
    loop {
        let at = cursor.offset;
        let replayed = cursor.next_record();
        let read = segment::read_frame_at(&seg_file.file, at);
        match (replayed, read) {
            (Ok(Some((off, a))), Ok(Some(b))) => {
                assert_eq!(off, at);
                assert!(same_record(&a, &b), "the cursor and read_frame_at decode different records at {at}");
                assert_eq!(skipper.skip_record(), Ok(true), "skip_record stops where next_record reads at {at}");
                assert_eq!(skipper.offset, cursor.offset, "skip_record steps differently at {at}");
                records.push((at, cursor.offset, a));
            }
            (Ok(None), Ok(None)) => break,
            (Err(a), Err(b)) => {
                assert_eq!(a, b, "the cursor and read_frame_at fail differently at {at}");
                break;
            }
            (a, b) => panic!(
                "the cursor and read_frame_at disagree at {at}: {:?} / {:?}",
                a.map(|r| r.map(|(_, r)| r.envelope.position)),
                b.map(|r| r.map(|r| r.envelope.position))
            ),
        }
    }
    for before in [None, Some(ChainTip::default())] {
        match segment::scan(seg, Path::new(PATH), before) {
            Ok(r) => kept_is_readable(seg, before, &r, &records),
            Err(ScanError::Damaged { .. }) => {}
            Err(e) => panic!("scan failed on a segment with a good header: {e}"),
        }
    }
    records
}

/// What recovery keeps, the readers read back; cutting there and scanning again finds a clean
/// end at the same place with the same tip.
fn kept_is_readable(seg: &[u8], before: Option<ChainTip>, r: &ScanResult, records: &[(u64, u64, DecodedRecord)]) {
    let end = r.end;
    assert!(end >= HEADER_LEN && end <= seg.len().max(HEADER_LEN as usize) as u64, "scan end {end} out of bounds");
    assert!(r.torn.as_ref().is_none_or(|(off, _)| *off >= end), "a torn tail before the end {end}");
    let kept: Vec<_> = records.iter().take_while(|(_, e, _)| *e <= end).collect();
    let kept_end = kept.last().map_or(HEADER_LEN, |(_, e, _)| *e);
    assert_eq!(kept_end, end, "recovery keeps up to {end}, which is not where a record the readers read ends");
    if let Some((_, _, last)) = kept.last() {
        let tip = ChainTip { position: last.envelope.position, hash: last.envelope.hash, batch: last.header.batch };
        assert_eq!(r.tip, tip, "the recovered tip is not the last record kept");
    }
    let mut cut = seg[..end as usize].to_vec();
    cut.resize(seg.len().max(HEADER_LEN as usize), 0);
    match segment::scan(&cut, Path::new(PATH), before) {
        Ok(again) => {
            assert_eq!((again.end, &again.torn), (end, &None), "a second recovery after the cut is not clean");
            if !kept.is_empty() || before.is_some() {
                assert_eq!(again.tip, r.tip, "a second recovery after the cut finds another tip");
            }
        }
        Err(e) => panic!("the log recovery cut does not open again: {e}"),
    }
}

/// Rewrites decodable records into a log as the writer writes one, damages it, and checks what
/// recovery makes of it.
fn rebuilt_log(mode: u8, location: u16, damage_byte: u8, records: &[DecodedRecord]) {
    let Some(first) = records.first() else { return };
    let anchored = mode & 2 != 0;
    let (before, mut tip) = if anchored {
        (Some(ChainTip::default()), ChainTip::default())
    } else {
        let p = first.envelope.position.max(1);
        (None, ChainTip { position: p - 1, hash: first.envelope.prev_hash, batch: 0 })
    };
    let anchor = tip;
    let mut body = Vec::new();
    // (start, end, header, tip after it)
    let mut frames: Vec<(u64, u64, RecordHeader, ChainTip)> = Vec::new();
    let mut batch = 0u64;
    for (i, rec) in records.iter().enumerate() {
        let Some(position) = tip.position.checked_add(1) else { break };
        let starts_batch = i == 0 || rec.header.flags & FLAG_BATCH_START != 0;
        if starts_batch {
            batch += 1;
        }
        let mut flags = rec.header.flags & FLAG_TXN_END;
        if starts_batch {
            flags |= FLAG_BATCH_START;
        }
        let last_of_batch = records.get(i + 1).is_some_and(|next| next.header.flags & FLAG_BATCH_START != 0);
        if last_of_batch {
            // A group commit writes whole appends.
            flags |= FLAG_TXN_END;
        }
        let mut e = rec.envelope.clone();
        e.position = position;
        e.prev_hash = tip.hash;
        e.data_sha256 = Hash::of(&e.data);
        let canonical = e.canonical_fields().to_vec();
        e.hash = Hash::chain(&e.prev_hash, &canonical);
        let header = RecordHeader { flags, batch };
        let start = HEADER_LEN + body.len() as u64;
        frame_of(&mut body, header, &canonical, &e);
        tip = ChainTip { position, hash: e.hash, batch };
        frames.push((start, HEADER_LEN + body.len() as u64, header, tip));
    }
    let Some(&(_, last_end, _, _)) = frames.last() else { return };
    let mut seg = segment_of(&body);
    seg.resize(seg.len() + 64, 0);
    let original = seg.clone();

    // Where the atomic appends that are wholly in `frames[..n]` end, and the tip there. With
    // nothing read, an unanchored scan cannot know the tip (`EventLog::open` drops such a
    // segment).
    let kept_of = |n: usize| {
        let none = if n == 0 { ChainTip::default() } else { anchor };
        frames[..n]
            .iter()
            .rev()
            .find(|(_, _, h, _)| h.flags & FLAG_TXN_END != 0)
            .map_or((HEADER_LEN, none), |(_, end, _, tip)| (*end, *tip))
    };
    let at = HEADER_LEN + (u64::from(location) * (last_end - HEADER_LEN)) / 65536;
    let scanned = match (mode >> 2) & 3 {
        1 => {
            // A crash: nothing from `at` on reached the disk.
            seg[at as usize..].fill(0);
            // Frames whose bytes from `at` on were zeros anyway are still whole.
            let nonzero =
                original[at as usize..].iter().position(|b| *b != 0).map_or(seg.len() as u64, |i| at + i as u64);
            let whole = frames.iter().take_while(|(_, end, _, _)| *end <= nonzero).count();
            let (end, tip) = kept_of(whole);
            let r = segment::scan(&seg, Path::new(PATH), before)
                .unwrap_or_else(|e| panic!("recovery refuses a log whose tail was cut at {at}: {e}"));
            assert_eq!((r.end, r.tip), (end, tip), "recovery after a cut at {at} keeps the wrong records");
            r
        }
        2 => {
            seg[at as usize] ^= damage_byte.max(1);
            let hit = frames.iter().position(|(start, end, _, _)| (*start..*end).contains(&at)).unwrap_or(frames.len());
            let later_batch = frames[hit + 1..].iter().any(|(_, _, h, _)| h.flags & FLAG_BATCH_START != 0);
            match segment::scan(&seg, Path::new(PATH), before) {
                Err(ScanError::Damaged { .. }) if later_batch => return,
                Ok(r) if !later_batch => {
                    assert_eq!((r.end, r.tip), kept_of(hit), "recovery after damage at {at} keeps the wrong records");
                    r
                }
                Ok(r) => panic!("recovery cut damage at {at} to {} though a later group commit follows it", r.end),
                Err(e) => panic!("recovery refuses a log damaged at {at} in its last group commit: {e}"),
            }
        }
        _ => {
            let r = segment::scan(&seg, Path::new(PATH), before)
                .unwrap_or_else(|e| panic!("recovery refuses a log as the writer writes it: {e}"));
            assert_eq!((r.end, r.tip), kept_of(frames.len()), "recovery keeps the wrong records of a whole log");
            r
        }
    };
    assert!(scanned.end <= last_end);
    readers_agree(&seg);
}

/// The frame the writer would write for `e` (which carries its hashes).
fn frame_of(out: &mut Vec<u8>, header: RecordHeader, canonical: &[u8], e: &crate::log::Envelope) {
    record::encode_frame(out, header, canonical, &e.prev_hash, &e.hash, &e.stream_prev_hash, &e.stream_hash, &e.data);
}
