//! Recomputes the hash chains. Used by `vivirk verify`, the verify endpoint and offline checks of
//! exports; it trusts nothing but the canonical encoding and SHA-256.

use std::collections::HashMap;

use super::envelope::{Envelope, Hash, ZERO_HASH};

/// The first thing that did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("position {position} ({stream} v{stream_version}): {reason}")]
pub struct VerifyFailure {
    pub position: u64,
    pub stream: String,
    pub stream_version: u64,
    pub reason: String,
}

/// Checks envelopes one at a time, in log order.
///
/// With `global` set, every position must follow the one before and link to its hash; without
/// it (a single stream or a one-course export) each event must still hash correctly from its
/// recorded `prev_hash`, and the stream chain must be unbroken.
pub struct Verifier {
    global: bool,
    last: Option<(u64, Hash)>,
    streams: HashMap<String, (u64, Hash)>,
    pub checked: u64,
}

impl Verifier {
    pub fn global() -> Self {
        Verifier { global: true, last: None, streams: HashMap::new(), checked: 0 }
    }

    pub fn streams_only() -> Self {
        Verifier { global: false, last: None, streams: HashMap::new(), checked: 0 }
    }

    /// The last position and hash checked.
    pub fn head(&self) -> Option<(u64, Hash)> {
        self.last
    }

    pub fn stream_head(&self, stream: &str) -> Option<(u64, Hash)> {
        self.streams.get(stream).copied()
    }

    pub fn check(&mut self, e: &Envelope) -> Result<(), VerifyFailure> {
        let canonical = e.canonical_fields().to_vec();
        self.check_parts(e.position, e.stream.as_str(), e.stream_version, &canonical, Some(&e.data), e)
    }

    /// The general form: `data` is `None` when it was redacted (only its digest remains).
    pub fn check_parts(
        &mut self,
        position: u64,
        stream: &str,
        stream_version: u64,
        canonical: &[u8],
        data: Option<&[u8]>,
        hashes: &impl Hashes,
    ) -> Result<(), VerifyFailure> {
        let fail = |reason: String| VerifyFailure { position, stream: stream.to_owned(), stream_version, reason };
        if self.global {
            let (want_pos, want_hash) = self.last.map_or((1, ZERO_HASH), |(p, h)| (p + 1, h));
            if position != want_pos {
                return Err(fail(format!("expected position {want_pos}")));
            }
            if hashes.prev_hash() != want_hash {
                return Err(fail("prev_hash does not match the previous event's hash".into()));
            }
        }
        if let Some(data) = data
            && Hash::of(data) != hashes.data_sha256()
        {
            return Err(fail("data does not match data_sha256".into()));
        }
        if Hash::chain(&hashes.prev_hash(), canonical) != hashes.hash() {
            return Err(fail("hash does not match the event's content".into()));
        }
        let (want_ver, want_stream_hash) = self.streams.get(stream).map_or((1, ZERO_HASH), |(v, h)| (v + 1, *h));
        if stream_version != want_ver {
            return Err(fail(format!("expected stream version {want_ver}")));
        }
        if hashes.stream_prev_hash() != want_stream_hash {
            return Err(fail("stream_prev_hash does not match the stream's previous event".into()));
        }
        if Hash::chain(&hashes.stream_prev_hash(), canonical) != hashes.stream_hash() {
            return Err(fail("stream_hash does not match the event's content".into()));
        }
        self.streams.insert(stream.to_owned(), (stream_version, hashes.stream_hash()));
        self.last = Some((position, hashes.hash()));
        self.checked += 1;
        Ok(())
    }
}

/// The stored hashes of an event, whatever shape it came in.
pub trait Hashes {
    fn prev_hash(&self) -> Hash;
    fn hash(&self) -> Hash;
    fn stream_prev_hash(&self) -> Hash;
    fn stream_hash(&self) -> Hash;
    fn data_sha256(&self) -> Hash;
}

impl Hashes for Envelope {
    fn prev_hash(&self) -> Hash {
        self.prev_hash
    }
    fn hash(&self) -> Hash {
        self.hash
    }
    fn stream_prev_hash(&self) -> Hash {
        self.stream_prev_hash
    }
    fn stream_hash(&self) -> Hash {
        self.stream_hash
    }
    fn data_sha256(&self) -> Hash {
        self.data_sha256
    }
}

impl Hashes for super::envelope::OwnedEnvelopeJson {
    fn prev_hash(&self) -> Hash {
        self.prev_hash
    }
    fn hash(&self) -> Hash {
        self.hash
    }
    fn stream_prev_hash(&self) -> Hash {
        self.stream_prev_hash
    }
    fn stream_hash(&self) -> Hash {
        self.stream_hash
    }
    fn data_sha256(&self) -> Hash {
        self.data_sha256
    }
}

/// What a whole-directory verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirReport {
    pub events: u64,
    pub head: Option<(u64, Hash)>,
    pub segments: usize,
}

/// Verifies a data directory's log straight from the segment files, without the index and
/// without opening the log for writing (so it also works on a copy, or while refusing to start).
/// With `stream`, only that stream's chain and its events' own hashes are checked.
pub fn verify_dir(dir: &std::path::Path, stream: Option<&str>) -> Result<DirReport, VerifyFailure> {
    use super::segment;
    let io_fail = |reason: String| VerifyFailure { position: 0, stream: String::new(), stream_version: 0, reason };
    let log_dir = dir.join("log");
    let list = segment::list_segments(&log_dir).map_err(|e| io_fail(format!("{}: {e}", log_dir.display())))?;
    let mut v = if stream.is_some() { Verifier::streams_only() } else { Verifier::global() };
    let mut next_position = 1u64;
    let mut events = 0;
    for (first, path) in &list {
        let seg = std::sync::Arc::new(
            segment::open(path, *first, false).map_err(|e| io_fail(format!("{}: {e}", path.display())))?,
        );
        let mut header = [0u8; segment::HEADER_LEN as usize];
        std::os::unix::fs::FileExt::read_exact_at(&seg.file, &mut header, 0)
            .map_err(|e| io_fail(format!("{}: {e}", path.display())))?;
        segment::check_header(&header).map_err(|e| io_fail(format!("{}: {e}", path.display())))?;
        if *first != next_position {
            return Err(VerifyFailure {
                position: next_position,
                stream: String::new(),
                stream_version: 0,
                reason: format!("segment {} starts at {first}, expected {next_position}", path.display()),
            });
        }
        let mut cursor = segment::SegmentCursor::new(seg, segment::HEADER_LEN);
        loop {
            let rec = match cursor.next_record() {
                Ok(Some((_, rec))) => rec,
                Ok(None) => break,
                Err(reason) => {
                    return Err(VerifyFailure {
                        position: next_position,
                        stream: String::new(),
                        stream_version: 0,
                        reason,
                    });
                }
            };
            let e = &rec.envelope;
            if e.position != next_position {
                return Err(VerifyFailure {
                    position: next_position,
                    stream: e.stream.to_string(),
                    stream_version: e.stream_version,
                    reason: format!("found position {} where {next_position} belongs", e.position),
                });
            }
            next_position += 1;
            if stream.is_none_or(|s| s == e.stream.as_str()) {
                v.check(e)?;
                events += 1;
            }
        }
    }
    Ok(DirReport { events, head: v.head(), segments: list.len() })
}
