//! The export format and its offline verification.
//!
//! JSON lines. Line 1 is the header:
//!
//! ```json
//! {"format":"vivirk-export","version":1,"scope":{"kind":"course","course_id":"…"},
//!  "exported_at":"…","events":42,"checkpoint":{…signed checkpoint…}|null,
//!  "public_key":{"kty":"OKP","crv":"Ed25519","x":"…","kid":"…"}|null}
//! ```
//!
//! then one envelope per line (`Envelope::to_json`, with every hash), oldest first, exactly
//! `events` of them. `scope` is `{"kind":"full"}` for the whole log. The same format is served by
//! `GET /v1/courses/{id}/record`, so a downloaded record is checked with `vivirk verify --file`.
//!
//! What verification proves:
//! - every line: the event's own hash from its recorded `prev_hash`, its `data_sha256` when the
//!   data is present, and its stream's chain (versions from 1, gap-free);
//! - a full export: the global chain too (positions from 1, each linked to the one before), and
//!   the hash at the checkpoint's position equals the signed hash — nothing at or before it was
//!   rewritten, even with every hash recomputed. Only the checkpoint catches that; the chains
//!   alone cannot;
//! - a one-course export cannot link its events to the global chain (the other courses' events
//!   are not in it), so the checkpoint is compared only if its position is one of the course's
//!   events; the signature is still checked;
//! - truncation: fewer envelope lines than the header announces, or a last line without its
//!   newline, or (full export) an end before the checkpoint's position.
//!
//! The public key in the header is only as trustworthy as the file: pin the published key
//! (`--key`, from `/.well-known/vivirk-checkpoint-key` fetched independently) to make the check
//! mean something against someone who rewrote the file and re-signed with their own key.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::checkpoint::{PublicKey, SignedCheckpoint};
use crate::log::verify::Verifier;
use crate::log::{EventLog, Hash, OwnedEnvelopeJson, StreamId};

pub const FORMAT: &str = "vivirk-export";
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Scope {
    /// The whole log.
    Full,
    /// One course's stream.
    Course { course_id: Uuid },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportHeader {
    pub format: String,
    pub version: u32,
    pub scope: Scope,
    #[serde(with = "time::serde::rfc3339")]
    pub exported_at: OffsetDateTime,
    /// How many envelope lines follow.
    pub events: u64,
    pub checkpoint: Option<SignedCheckpoint>,
    pub public_key: Option<PublicKey>,
}

/// Writes an export of `scope` as of now: the header, then every envelope up to the head (the
/// course's version, or the global position) read when it starts. `checkpoint` should be taken
/// before calling, so it is never ahead of what is exported. Returns the number of events.
pub fn write_export(
    log: &EventLog,
    scope: Scope,
    checkpoint: Option<SignedCheckpoint>,
    public_key: Option<PublicKey>,
    now: OffsetDateTime,
    out: &mut impl Write,
) -> Result<u64, ExportError> {
    let read = |e: crate::log::ReadError| ExportError::Log(e.to_string());
    let events = match scope {
        Scope::Course { course_id } => {
            let stream = StreamId::for_entity("course", course_id);
            log.stream_head(&stream).map_err(read)?.map_or(0, |h| h.version)
        }
        Scope::Full => log.committed(),
    };
    let header = ExportHeader {
        format: FORMAT.into(),
        version: VERSION,
        scope,
        exported_at: now,
        events,
        checkpoint,
        public_key,
    };
    serde_json::to_writer(&mut *out, &header).map_err(ExportError::json)?;
    out.write_all(b"\n")?;
    let mut written = 0;
    let line = |e: &crate::log::Envelope, out: &mut dyn Write| -> Result<(), ExportError> {
        serde_json::to_writer(&mut *out, &e.to_json()).map_err(ExportError::json)?;
        out.write_all(b"\n")?;
        Ok(())
    };
    match scope {
        Scope::Course { course_id } => {
            let stream = StreamId::for_entity("course", course_id);
            while written < events {
                let batch = log.read_stream(&stream, written + 1, false, 1000).map_err(read)?;
                if batch.is_empty() {
                    break;
                }
                for e in batch.iter().take((events - written) as usize) {
                    line(e, out)?;
                    written += 1;
                }
            }
        }
        Scope::Full => {
            for e in log.iter_from(1).map_err(read)? {
                let e = e.map_err(read)?;
                if e.position > events {
                    break;
                }
                line(&e, out)?;
                written += 1;
            }
        }
    }
    if written != events {
        return Err(ExportError::Log(format!("read {written} events where {events} were announced")));
    }
    out.flush()?;
    Ok(written)
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
    #[error("reading the log: {0}")]
    Log(String),
}

impl ExportError {
    fn json(e: serde_json::Error) -> Self {
        ExportError::Io(std::io::Error::other(e))
    }
}

/// The first thing in an export that does not verify: its line (1 = the header) and, when the
/// line held an envelope, its position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}{}: {reason}", position.map(|p| format!(" (position {p})")).unwrap_or_default())]
pub struct ExportFailure {
    pub line: u64,
    pub position: Option<u64>,
    pub reason: String,
}

/// What a checkpoint proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointCheck {
    /// The export carries no checkpoint: the chains are self-consistent, nothing more.
    Absent,
    /// The recomputed hash at the checkpoint's position equals the signed hash.
    Matched { position: u64 },
    /// Signature valid, but the checkpoint's position is not in this (one-course) export.
    NotCovered { position: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportReport {
    pub scope: Scope,
    pub events: u64,
    /// The last event's (position, hash).
    pub last: Option<(u64, Hash)>,
    pub checkpoint: CheckpointCheck,
    /// The key the checkpoint was checked with, and whether it was pinned by the caller.
    pub key: Option<(String, bool)>,
}

/// Verifies an export read from `input`, trusting nothing in it but SHA-256 and, for the
/// checkpoint, `pinned` (or, without it, the key the header carries).
pub fn verify_export(mut input: impl BufRead, pinned: Option<&PublicKey>) -> Result<ExportReport, ExportFailure> {
    let header_fail = |reason: String| ExportFailure { line: 1, position: None, reason };
    let mut buf = String::new();
    let n = input.read_line(&mut buf).map_err(|e| header_fail(format!("cannot read: {e}")))?;
    if n == 0 {
        return Err(header_fail("the file is empty".into()));
    }
    let header: ExportHeader =
        serde_json::from_str(buf.trim_end()).map_err(|e| header_fail(format!("not an export header: {e}")))?;
    if header.format != FORMAT || header.version != VERSION {
        return Err(header_fail(format!(
            "unknown format {:?} version {} (expected {FORMAT} {VERSION})",
            header.format, header.version
        )));
    }
    let key = match (pinned, &header.public_key) {
        (Some(p), Some(h)) if p != h => {
            return Err(header_fail(format!("the export carries key {}, not the pinned key {}", h.kid, p.kid)));
        }
        (Some(p), _) => Some((p, true)),
        (None, Some(h)) => Some((h, false)),
        (None, None) => None,
    };
    if let Some(cp) = &header.checkpoint {
        let (k, _) = key.ok_or_else(|| header_fail("a checkpoint without a public key to check it".into()))?;
        cp.verify(k).map_err(header_fail)?;
    }
    let course_stream = match header.scope {
        Scope::Course { course_id } => Some(StreamId::for_entity("course", course_id).as_str().to_owned()),
        Scope::Full => None,
    };
    let mut verifier = if course_stream.is_some() { Verifier::streams_only() } else { Verifier::global() };
    let mut line_no = 1u64;
    let mut count = 0u64;
    let mut last: Option<(u64, Hash)> = None;
    let mut matched = false;
    loop {
        buf.clear();
        let n = input.read_line(&mut buf).map_err(|e| ExportFailure {
            line: line_no + 1,
            position: None,
            reason: format!("cannot read: {e}"),
        })?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let fail = |position: Option<u64>, reason: String| ExportFailure { line: line_no, position, reason };
        if !buf.ends_with('\n') {
            return Err(fail(None, "the line is cut off (no newline): the export is truncated".into()));
        }
        let e: OwnedEnvelopeJson =
            serde_json::from_str(buf.trim_end()).map_err(|err| fail(None, format!("not an envelope: {err}")))?;
        let p = Some(e.position);
        if count == header.events {
            return Err(fail(p, format!("more events than the {} the header announces", header.events)));
        }
        if let Some(s) = &course_stream
            && &e.stream != s
        {
            return Err(fail(p, format!("an event of stream {} in an export of {s}", e.stream)));
        }
        if let Some((prev, _)) = last
            && e.position <= prev
        {
            return Err(fail(p, format!("positions must increase (after {prev})")));
        }
        let canonical = e.canonical().ok_or_else(|| {
            fail(
                p,
                "a field that no stored event can hold (a time out of range, a stream id, an over-long text)".into(),
            )
        })?;
        let data = e.data.as_ref().map(|d| d.get().as_bytes());
        verifier
            .check_parts(e.position, &e.stream, e.stream_version, &canonical, data, &e)
            .map_err(|f| fail(p, f.reason))?;
        if let Some(cp) = &header.checkpoint
            && cp.position == e.position
        {
            if cp.hash != e.hash {
                return Err(fail(
                    p,
                    format!(
                        "the hash here is {}, the signed checkpoint says {}: the record up to this position was rewritten",
                        e.hash, cp.hash
                    ),
                ));
            }
            matched = true;
        }
        last = Some((e.position, e.hash));
        count += 1;
    }
    if count < header.events {
        return Err(ExportFailure {
            line: line_no + 1,
            position: None,
            reason: format!("the export ends after {count} events; the header announces {} (truncated)", header.events),
        });
    }
    let checkpoint = match (&header.checkpoint, header.scope) {
        (None, _) => CheckpointCheck::Absent,
        (Some(cp), _) if matched => CheckpointCheck::Matched { position: cp.position },
        (Some(cp), Scope::Full) => {
            // A full export is gap-free from 1, so an unmatched checkpoint lies beyond its end.
            return Err(ExportFailure {
                line: line_no + 1,
                position: None,
                reason: format!(
                    "the export ends at position {} before the signed checkpoint at {} (truncated)",
                    last.map_or(0, |(p, _)| p),
                    cp.position
                ),
            });
        }
        (Some(cp), Scope::Course { .. }) => CheckpointCheck::NotCovered { position: cp.position },
    };
    Ok(ExportReport {
        scope: header.scope,
        events: count,
        last,
        checkpoint,
        key: key.map(|(k, pinned)| (k.kid.clone(), pinned)),
    })
}
