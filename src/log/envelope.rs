//! The event envelope: what every stored event carries, its canonical bytes and its hashes.
//!
//! The canonical encoding is ours and is the contract an offline verifier relies on, so it is
//! spelled out here byte by byte (all integers little-endian):
//!
//! ```text
//! u8        canonical format (1)
//! u64       position                  global, gap-free, from 1
//! u16+bytes stream                    e.g. "course-0b6d…"
//! u64       stream_version            per stream, gap-free, from 1
//! [16]      event_id
//! u8+bytes  event_type
//! u16       schema_version
//! i64       occurred_at               unix nanoseconds, UTC
//! i64       recorded_at               unix nanoseconds, UTC
//! [16]      actor.account_id
//! u8+bytes  actor.role
//! u8        metadata presence bits    1 correlation, 2 causation, 4 device
//! [16]?     correlation_id
//! [16]?     causation_id
//! u8+bytes? device_id
//! [32]      data_sha256               SHA-256 of the data's JSON bytes
//! ```
//!
//! `hash        = SHA-256(prev_hash        || canonical)` chains the whole log;
//! `stream_hash = SHA-256(stream_prev_hash || canonical)` chains one stream.
//! The data enters only through its digest, so an audited redaction of personal data after its
//! retention period can drop the data and the chains still verify.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use super::stream::StreamId;

pub const CANONICAL_FORMAT: u8 = 1;
pub const ZERO_HASH: Hash = Hash([0; 32]);
pub const MAX_EVENT_TYPE_LEN: usize = 128;
pub const MAX_ROLE_LEN: usize = 64;
pub const MAX_DEVICE_ID_LEN: usize = 128;

/// A SHA-256 digest, shown as lower-case hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub fn of(bytes: &[u8]) -> Self {
        Hash(Sha256::digest(bytes).into())
    }

    pub fn chain(prev: &Hash, canonical: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(prev.0);
        h.update(canonical);
        Hash(h.finalize().into())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Hash(out))
    }
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", &self.to_hex()[..12])
    }
}

impl std::fmt::Display for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Hash::from_hex(&s).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

/// Who did it: an account and the role it acted in. The log keeps the role as text; the domain
/// owns the closed set of roles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogActor {
    pub account_id: Uuid,
    pub role: String,
}

/// Correlation for tracing a write back to a request and a device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub correlation_id: Option<Uuid>,
    #[serde(default)]
    pub causation_id: Option<Uuid>,
    #[serde(default)]
    pub device_id: Option<String>,
}

/// An event as the caller hands it to `append`. Position, version, `recorded_at` and the hashes
/// are the log's to assign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u16,
    pub occurred_at: OffsetDateTime,
    pub actor: LogActor,
    pub metadata: Metadata,
    /// The event's payload as compact JSON.
    pub data: Vec<u8>,
}

/// A stored event with everything needed to verify it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub position: u64,
    pub stream: StreamId,
    pub stream_version: u64,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u16,
    pub occurred_at: OffsetDateTime,
    pub recorded_at: OffsetDateTime,
    pub actor: LogActor,
    pub metadata: Metadata,
    pub data_sha256: Hash,
    pub data: Vec<u8>,
    pub prev_hash: Hash,
    pub hash: Hash,
    pub stream_prev_hash: Hash,
    pub stream_hash: Hash,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record ends early (needed {needed} more bytes at {at})")]
    Truncated { at: usize, needed: usize },
    #[error("unknown canonical format {0}")]
    Format(u8),
    #[error("field {0} is not valid")]
    Invalid(&'static str),
    #[error("{0} trailing bytes after the record")]
    Trailing(usize),
}

/// A timestamp as the canonical encoding stores it.
pub fn to_nanos(t: OffsetDateTime) -> Option<i64> {
    i64::try_from(t.unix_timestamp_nanos()).ok()
}

pub fn from_nanos(n: i64) -> OffsetDateTime {
    // Every i64 of nanoseconds is within time's range (years 1677..2262).
    OffsetDateTime::from_unix_timestamp_nanos(n as i128).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The fields that enter the canonical bytes, borrowed: what writing encodes (from a `NewEvent`
/// plus what the log assigns), what verifying an export re-encodes, and what reading decodes in
/// place ([`decode_canonical_ref`]; point reads and bulk catch-ups, no allocation per field).
pub struct CanonicalFields<'a> {
    pub position: u64,
    pub stream: &'a str,
    pub stream_version: u64,
    pub event_id: Uuid,
    pub event_type: &'a str,
    pub schema_version: u16,
    pub occurred_at_nanos: i64,
    pub recorded_at_nanos: i64,
    pub actor: ActorRef<'a>,
    pub metadata: MetadataRef<'a>,
    pub data_sha256: Hash,
}

/// [`LogActor`], borrowed.
#[derive(Clone, Copy)]
pub struct ActorRef<'a> {
    pub account_id: Uuid,
    pub role: &'a str,
}

/// [`Metadata`], borrowed.
#[derive(Clone, Copy)]
pub struct MetadataRef<'a> {
    pub correlation_id: Option<Uuid>,
    pub causation_id: Option<Uuid>,
    pub device_id: Option<&'a str>,
}

impl<'a> From<&'a LogActor> for ActorRef<'a> {
    fn from(a: &'a LogActor) -> Self {
        ActorRef { account_id: a.account_id, role: &a.role }
    }
}

impl<'a> From<&'a Metadata> for MetadataRef<'a> {
    fn from(m: &'a Metadata) -> Self {
        MetadataRef {
            correlation_id: m.correlation_id,
            causation_id: m.causation_id,
            device_id: m.device_id.as_deref(),
        }
    }
}

impl CanonicalFields<'_> {
    /// Appends the canonical bytes to `out`. Lengths were validated before (see `check_lengths`),
    /// the casts below cannot truncate.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(CANONICAL_FORMAT);
        out.extend_from_slice(&self.position.to_le_bytes());
        out.extend_from_slice(&(self.stream.len() as u16).to_le_bytes());
        out.extend_from_slice(self.stream.as_bytes());
        out.extend_from_slice(&self.stream_version.to_le_bytes());
        out.extend_from_slice(self.event_id.as_bytes());
        out.push(self.event_type.len() as u8);
        out.extend_from_slice(self.event_type.as_bytes());
        out.extend_from_slice(&self.schema_version.to_le_bytes());
        out.extend_from_slice(&self.occurred_at_nanos.to_le_bytes());
        out.extend_from_slice(&self.recorded_at_nanos.to_le_bytes());
        out.extend_from_slice(self.actor.account_id.as_bytes());
        out.push(self.actor.role.len() as u8);
        out.extend_from_slice(self.actor.role.as_bytes());
        let m = self.metadata;
        let bits = (m.correlation_id.is_some() as u8)
            | ((m.causation_id.is_some() as u8) << 1)
            | ((m.device_id.is_some() as u8) << 2);
        out.push(bits);
        if let Some(c) = m.correlation_id {
            out.extend_from_slice(c.as_bytes());
        }
        if let Some(c) = m.causation_id {
            out.extend_from_slice(c.as_bytes());
        }
        if let Some(d) = m.device_id {
            out.push(d.len() as u8);
            out.extend_from_slice(d.as_bytes());
        }
        out.extend_from_slice(&self.data_sha256.0);
    }

    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(160 + self.stream.len() + self.event_type.len());
        self.encode(&mut v);
        v
    }
}

/// Checks the variable-length fields fit the canonical encoding.
pub fn check_lengths(ev: &NewEvent) -> Result<(), &'static str> {
    if ev.event_type.is_empty() || ev.event_type.len() > MAX_EVENT_TYPE_LEN {
        return Err("event_type must be 1..=128 bytes");
    }
    if !ev.event_type.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.') {
        return Err("event_type must be ASCII letters, digits, '_' or '.'");
    }
    if ev.actor.role.is_empty() || ev.actor.role.len() > MAX_ROLE_LEN {
        return Err("actor role must be 1..=64 bytes");
    }
    if let Some(d) = &ev.metadata.device_id
        && d.len() > MAX_DEVICE_ID_LEN
    {
        return Err("device_id must be at most 128 bytes");
    }
    Ok(())
}

/// Whether `data` may be stored as an event's payload: JSON text exactly as an export carries it
/// (`Envelope::to_json` embeds it raw), i.e. UTF-8 without surrounding whitespace, so the data of
/// an export always hashes to its `data_sha256`.
pub fn is_storable_json(data: &[u8]) -> bool {
    std::str::from_utf8(data).is_ok_and(|s| {
        serde_json::from_str::<&serde_json::value::RawValue>(s).is_ok_and(|raw| raw.get().len() == s.len())
    })
}

/// A cursor over a byte slice that never panics.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, at: 0 }
    }

    pub fn pos(&self) -> usize {
        self.at
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.at
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated { at: self.at, needed: n - self.remaining() });
        }
        let s = &self.buf[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    pub fn uuid(&mut self) -> Result<Uuid, DecodeError> {
        Ok(Uuid::from_bytes(self.array()?))
    }
    pub fn hash(&mut self) -> Result<Hash, DecodeError> {
        Ok(Hash(self.array()?))
    }
    pub fn str(&mut self, len: usize, field: &'static str) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.bytes(len)?).map_err(|_| DecodeError::Invalid(field))
    }
}

/// The canonical part of an envelope, decoded.
pub(crate) struct DecodedCanonical {
    pub position: u64,
    pub stream: StreamId,
    pub stream_version: u64,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u16,
    pub occurred_at: OffsetDateTime,
    pub recorded_at: OffsetDateTime,
    pub actor: LogActor,
    pub metadata: Metadata,
    pub data_sha256: Hash,
}

/// Decodes the canonical part in place: the one parser of the format ([`decode_canonical`] and
/// `record::decode_payload` make it owned).
pub fn decode_canonical_ref<'a>(r: &mut Reader<'a>) -> Result<CanonicalFields<'a>, DecodeError> {
    let format = r.u8()?;
    if format != CANONICAL_FORMAT {
        return Err(DecodeError::Format(format));
    }
    let position = r.u64()?;
    let stream_len = r.u16()? as usize;
    let stream = r.str(stream_len, "stream")?;
    let stream_version = r.u64()?;
    let event_id = r.uuid()?;
    let et_len = r.u8()? as usize;
    let event_type = r.str(et_len, "event_type")?;
    let schema_version = r.u16()?;
    let occurred_at_nanos = r.i64()?;
    let recorded_at_nanos = r.i64()?;
    let account_id = r.uuid()?;
    let role_len = r.u8()? as usize;
    let role = r.str(role_len, "actor.role")?;
    let bits = r.u8()?;
    if bits & !0b111 != 0 {
        return Err(DecodeError::Invalid("metadata bits"));
    }
    let correlation_id = if bits & 1 != 0 { Some(r.uuid()?) } else { None };
    let causation_id = if bits & 2 != 0 { Some(r.uuid()?) } else { None };
    let device_id = if bits & 4 != 0 {
        let n = r.u8()? as usize;
        Some(r.str(n, "device_id")?)
    } else {
        None
    };
    let data_sha256 = r.hash()?;
    Ok(CanonicalFields {
        position,
        stream,
        stream_version,
        event_id,
        event_type,
        schema_version,
        occurred_at_nanos,
        recorded_at_nanos,
        actor: ActorRef { account_id, role },
        metadata: MetadataRef { correlation_id, causation_id, device_id },
        data_sha256,
    })
}

#[cfg(any(test, fuzzing))]
pub(crate) fn decode_canonical(r: &mut Reader<'_>) -> Result<DecodedCanonical, DecodeError> {
    decode_canonical_ref(r)?.into_owned()
}

impl CanonicalFields<'_> {
    /// The owned form, as an envelope holds it.
    pub(crate) fn into_owned(self) -> Result<DecodedCanonical, DecodeError> {
        Ok(DecodedCanonical {
            position: self.position,
            stream: StreamId::parse(self.stream).map_err(|_| DecodeError::Invalid("stream"))?,
            stream_version: self.stream_version,
            event_id: self.event_id,
            event_type: self.event_type.to_owned(),
            schema_version: self.schema_version,
            occurred_at: from_nanos(self.occurred_at_nanos),
            recorded_at: from_nanos(self.recorded_at_nanos),
            actor: LogActor { account_id: self.actor.account_id, role: self.actor.role.to_owned() },
            metadata: Metadata {
                correlation_id: self.metadata.correlation_id,
                causation_id: self.metadata.causation_id,
                device_id: self.metadata.device_id.map(str::to_owned),
            },
            data_sha256: self.data_sha256,
        })
    }
}

impl Envelope {
    pub fn canonical_fields(&self) -> CanonicalFields<'_> {
        CanonicalFields {
            position: self.position,
            stream: self.stream.as_str(),
            stream_version: self.stream_version,
            event_id: self.event_id,
            event_type: &self.event_type,
            schema_version: self.schema_version,
            occurred_at_nanos: to_nanos(self.occurred_at).unwrap_or(0),
            recorded_at_nanos: to_nanos(self.recorded_at).unwrap_or(0),
            actor: (&self.actor).into(),
            metadata: (&self.metadata).into(),
            data_sha256: self.data_sha256,
        }
    }

    /// The envelope as one JSON object: the form of exports, `/events` and `/record`.
    pub fn to_json(&self) -> EnvelopeJson<'_> {
        EnvelopeJson {
            position: self.position,
            stream: self.stream.as_str(),
            stream_version: self.stream_version,
            event_id: self.event_id,
            event_type: &self.event_type,
            schema_version: self.schema_version,
            occurred_at: self.occurred_at,
            recorded_at: self.recorded_at,
            actor: &self.actor,
            metadata: &self.metadata,
            data_sha256: self.data_sha256,
            // The stored bytes are JSON (checked at append); RawValue keeps them byte-exact so
            // a verifier can hash them again.
            data: std::str::from_utf8(&self.data)
                .ok()
                .and_then(|s| serde_json::from_str::<&serde_json::value::RawValue>(s).ok()),
            prev_hash: self.prev_hash,
            hash: self.hash,
            stream_prev_hash: self.stream_prev_hash,
            stream_hash: self.stream_hash,
        }
    }
}

/// The JSON shape of an envelope (serialising side).
#[derive(Serialize)]
pub struct EnvelopeJson<'a> {
    pub position: u64,
    pub stream: &'a str,
    pub stream_version: u64,
    pub event_id: Uuid,
    pub event_type: &'a str,
    pub schema_version: u16,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
    pub actor: &'a LogActor,
    pub metadata: &'a Metadata,
    pub data_sha256: Hash,
    pub data: Option<&'a serde_json::value::RawValue>,
    pub prev_hash: Hash,
    pub hash: Hash,
    pub stream_prev_hash: Hash,
    pub stream_hash: Hash,
}

/// The JSON shape of an envelope (parsing side, for offline verification). `data` may be
/// absent or null after a redaction; the digest still enters the hash.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnedEnvelopeJson {
    pub position: u64,
    pub stream: String,
    pub stream_version: u64,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u16,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
    pub actor: LogActor,
    pub metadata: Metadata,
    pub data_sha256: Hash,
    #[serde(default)]
    pub data: Option<Box<serde_json::value::RawValue>>,
    pub prev_hash: Hash,
    pub hash: Hash,
    pub stream_prev_hash: Hash,
    pub stream_hash: Hash,
}

impl OwnedEnvelopeJson {
    /// The canonical bytes of the line's fields, or `None` when they have none: a time outside
    /// the encoding's range, an invalid stream id, or a text longer than its length prefix can
    /// say (cut to fit, the bytes would no longer be the line's). What this accepts is
    /// exactly what a stored record can hold (`decode_canonical`).
    pub fn canonical(&self) -> Option<Vec<u8>> {
        let fits = |s: &str| s.len() <= usize::from(u8::MAX);
        StreamId::parse(&self.stream).ok()?;
        let device_fits = self.metadata.device_id.as_deref().is_none_or(fits);
        (fits(&self.event_type) && fits(&self.actor.role) && device_fits).then_some(())?;
        Some(
            CanonicalFields {
                position: self.position,
                stream: &self.stream,
                stream_version: self.stream_version,
                event_id: self.event_id,
                event_type: &self.event_type,
                schema_version: self.schema_version,
                occurred_at_nanos: to_nanos(self.occurred_at)?,
                recorded_at_nanos: to_nanos(self.recorded_at)?,
                actor: (&self.actor).into(),
                metadata: (&self.metadata).into(),
                data_sha256: self.data_sha256,
            }
            .to_vec(),
        )
    }
}
