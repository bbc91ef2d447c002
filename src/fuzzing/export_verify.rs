//! Exports (JSON lines): the parser and offline verifier behind `vivirk verify --file`.
//!
//! Input: an export file, a header line then one envelope per line. The seeds are real exports
//! written by `write_export`.
//!
//! - `verify_export` never panics, and pinning the key the file carries changes nothing but
//!   the "pinned" flag of its report;
//! - every line that parses as an envelope has canonical bytes that decode back to exactly its
//!   fields (the encoding is injective, so two different lines never hash alike), and an
//!   envelope read back from its line (`vivirk replay`) writes the same line again;
//! - those envelopes, re-chained the way the log chains them (positions, versions, SHA-256
//!   chains, a signed checkpoint) and written the way `write_export` writes, verify: as a full
//!   export, and as a one-course export of the first line's course.
//!
//! Crashes kept: `crash-line-with-invalid-stream-id` (a line whose canonical bytes did not
//! decode: `OwnedEnvelopeJson::canonical` took any stream id and cut over-long texts to fit).

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};
use time::OffsetDateTime;

use crate::audit::export::{CheckpointCheck, FORMAT, VERSION, verify_export};
use crate::audit::replay::envelope_of;
use crate::audit::{ExportHeader, PublicKey, Scope, SignedCheckpoint};
use crate::log::envelope::{Reader, decode_canonical};
use crate::log::{Envelope, Hash, OwnedEnvelopeJson, ZERO_HASH};

/// At most this many lines are looked at.
const MAX_LINES: usize = 64;
const EXPORTED_AT: OffsetDateTime = time::macros::datetime!(2025-09-01 12:00 UTC);

/// The checkpoint key of these checks (a fixed test key).
pub fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

pub fn check(data: &[u8]) {
    verify_is_total(data);
    let mut envelopes = Vec::new();
    for line in data.split(|b| *b == b'\n').take(MAX_LINES) {
        let Ok(e) = serde_json::from_slice::<OwnedEnvelopeJson>(line) else { continue };
        canonical_is_injective(&e);
        let has_canonical = e.canonical().is_some();
        let Ok(env) = envelope_of(e) else { continue };
        line_round_trip(&env);
        if has_canonical {
            envelopes.push(env);
        }
    }
    rechained_exports_verify(envelopes);
}

fn verify_is_total(data: &[u8]) {
    let plain = verify_export(data, None);
    let first = data.split(|b| *b == b'\n').next().unwrap_or_default();
    let Some(key) = serde_json::from_slice::<ExportHeader>(first).ok().and_then(|h| h.public_key) else { return };
    let pinned = verify_export(data, Some(&key));
    match (plain, pinned) {
        (Ok(mut a), Ok(b)) => {
            if let Some(k) = &mut a.key {
                k.1 = true;
            }
            assert_eq!(a, b, "pinning the file's own key changes the report");
        }
        (Err(a), Err(b)) => assert_eq!(a, b, "pinning the file's own key changes the failure"),
        (a, b) => panic!("pinning the file's own key changes the verdict: {a:?} / {b:?}"),
    }
}

/// The canonical bytes a verifier hashes decode back to the line's fields.
fn canonical_is_injective(e: &OwnedEnvelopeJson) {
    // `None`: fields no stored record can hold; the verifier refuses the line.
    let Some(canonical) = e.canonical() else { return };
    let mut r = Reader::new(&canonical);
    let c = decode_canonical(&mut r).unwrap_or_else(|err| {
        panic!("the canonical bytes of an export line do not decode ({err}): another line could hash alike")
    });
    assert_eq!(r.remaining(), 0, "trailing canonical bytes");
    let same = c.position == e.position
        && c.stream.as_str() == e.stream
        && c.stream_version == e.stream_version
        && c.event_id == e.event_id
        && c.event_type == e.event_type
        && c.schema_version == e.schema_version
        && c.occurred_at == e.occurred_at
        && c.recorded_at == e.recorded_at
        && c.actor == e.actor
        && c.metadata == e.metadata
        && c.data_sha256 == e.data_sha256;
    assert!(same, "the canonical bytes of an export line decode to other fields: another line could hash alike");
}

fn line_of(e: &Envelope) -> String {
    serde_json::to_string(&e.to_json()).unwrap_or_else(|err| panic!("an envelope does not serialise: {err}"))
}

/// An envelope read back from its line writes the same line.
fn line_round_trip(e: &Envelope) {
    let line = line_of(e);
    let back: OwnedEnvelopeJson =
        serde_json::from_str(&line).unwrap_or_else(|err| panic!("a written line does not parse: {err}\n{line}"));
    let back = envelope_of(back).unwrap_or_else(|err| panic!("a written line is not an envelope: {err}\n{line}"));
    assert_eq!(line_of(&back), line, "an envelope's line changes when read back and written again");
}

fn sign(position: u64, hash: Hash) -> SignedCheckpoint {
    let key = signing_key();
    let signature = key.sign(&SignedCheckpoint::message(position, &hash, EXPORTED_AT));
    SignedCheckpoint {
        position,
        hash,
        signed_at: EXPORTED_AT,
        kid: PublicKey::from_verifying(&key.verifying_key()).kid,
        signature: URL_SAFE_NO_PAD.encode(signature.to_bytes()),
    }
}

fn export_file(scope: Scope, checkpoint: SignedCheckpoint, envelopes: &[&Envelope]) -> Vec<u8> {
    let header = ExportHeader {
        format: FORMAT.into(),
        version: VERSION,
        scope,
        exported_at: EXPORTED_AT,
        events: envelopes.len() as u64,
        checkpoint: Some(checkpoint),
        public_key: Some(PublicKey::from_verifying(&signing_key().verifying_key())),
    };
    let mut out = serde_json::to_vec(&header).unwrap_or_else(|e| panic!("a header does not serialise: {e}"));
    out.push(b'\n');
    for e in envelopes {
        out.extend_from_slice(line_of(e).as_bytes());
        out.push(b'\n');
    }
    out
}

fn rechained_exports_verify(envelopes: Vec<Envelope>) {
    let mut chain = Vec::new();
    let mut prev = ZERO_HASH;
    let mut streams: HashMap<String, (u64, Hash)> = HashMap::new();
    for mut e in envelopes {
        let (version, stream_prev) = streams.get(e.stream.as_str()).map_or((1, ZERO_HASH), |(v, h)| (v + 1, *h));
        e.position = chain.len() as u64 + 1;
        e.stream_version = version;
        e.prev_hash = prev;
        e.stream_prev_hash = stream_prev;
        if !e.data.is_empty() {
            e.data_sha256 = Hash::of(&e.data);
        }
        let canonical = e.canonical_fields().to_vec();
        e.hash = Hash::chain(&prev, &canonical);
        e.stream_hash = Hash::chain(&stream_prev, &canonical);
        prev = e.hash;
        streams.insert(e.stream.as_str().to_owned(), (version, e.stream_hash));
        chain.push(e);
    }
    let Some(first) = chain.first() else { return };
    let all: Vec<&Envelope> = chain.iter().collect();
    let at = all[all.len() / 2];
    let file = export_file(Scope::Full, sign(at.position, at.hash), &all);
    let pinned = PublicKey::from_verifying(&signing_key().verifying_key());
    let report = verify_export(&file[..], Some(&pinned)).unwrap_or_else(|f| {
        panic!("a full export written like write_export does not verify: {f}\n{}", String::from_utf8_lossy(&file))
    });
    let last = all[all.len() - 1];
    assert_eq!(report.events, all.len() as u64);
    assert_eq!(report.last, Some((last.position, last.hash)));
    assert_eq!(report.checkpoint, CheckpointCheck::Matched { position: at.position });

    // One course: the first line's, when it is a course stream.
    let Some(course_id) = first.stream.entity_id().filter(|_| first.stream.category() == "course") else { return };
    if crate::log::StreamId::for_entity("course", course_id) != first.stream {
        return;
    }
    let course: Vec<&Envelope> = chain.iter().filter(|e| e.stream == first.stream).collect();
    let file = export_file(Scope::Course { course_id }, sign(at.position, at.hash), &course);
    let report = verify_export(&file[..], Some(&pinned)).unwrap_or_else(|f| {
        panic!("a course export written like write_export does not verify: {f}\n{}", String::from_utf8_lossy(&file))
    });
    assert_eq!(report.events, course.len() as u64);
    let expected = if course.iter().any(|e| e.position == at.position) {
        CheckpointCheck::Matched { position: at.position }
    } else {
        CheckpointCheck::NotCovered { position: at.position }
    };
    assert_eq!(report.checkpoint, expected);
}
