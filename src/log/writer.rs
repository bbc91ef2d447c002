//! The single writer: owns the active segment and does group commit.
//!
//! It runs on its own OS thread because its work is blocking I/O (`pwrite`, `fdatasync`). Each
//! turn it takes every append that is waiting, checks idempotency and expected versions against
//! the stream heads (including earlier appends of the same turn), encodes all records into one
//! buffer, writes it with one call, syncs once, updates the index in one sled batch, publishes
//! the new committed position, and only then answers every waiting caller.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::envelope::{CanonicalFields, Hash, NewEvent, check_lengths, to_nanos};
use super::index::{Index, IndexBatch, Loc, StreamHead};
use super::record::{FLAG_BATCH_START, FLAG_TXN_END, MAX_DATA, RecordHeader, encode_frame};
use super::segment::{self, ChainTip, HEADER_LEN, Segment};
use super::stream::StreamId;
use super::{AppendError, AppendResult, Durability, ExpectedVersion, Shared};
use crate::clock::SharedClock;

pub(crate) enum Request {
    Append {
        stream: StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        reply: oneshot::Sender<Result<AppendResult, AppendError>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

pub(crate) const MAX_EVENTS_PER_APPEND: usize = 1000;
/// A turn stops taking requests past this many bytes, so one turn's buffer stays bounded.
const MAX_BATCH_BYTES: usize = 8 << 20;

pub(crate) struct Writer {
    pub dir: PathBuf,
    pub shared: Arc<Shared>,
    pub index: Arc<Index>,
    pub active: Arc<Segment>,
    pub end: u64,
    pub tip: ChainTip,
    pub segment_size: u64,
    pub durability: Durability,
    pub clock: SharedClock,
    pub heads: HashMap<Vec<u8>, StreamHead>,
    pub buf: Vec<u8>,
    pub scratch: Vec<u8>,
}

/// What one event id of this turn looks like, for idempotent retries within the same turn.
struct PendingId {
    stream: StreamId,
    event_type: String,
    schema_version: u16,
    digest: Hash,
    position: u64,
    version: u64,
}

enum Outcome {
    Ready(Result<AppendResult, AppendError>),
    /// Succeeds once this turn is durable.
    AfterCommit(AppendResult),
}

/// An index entry waiting for its segment offset to be known.
struct PendingIndex {
    stream_key: Vec<u8>,
    version: u64,
    event_id: Uuid,
    position: u64,
    rel_offset: usize,
    stream_hash: Hash,
}

impl Writer {
    pub fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let mut requests = Vec::new();
        loop {
            let Some(first) = rx.blocking_recv() else {
                return;
            };
            requests.push(first);
            let mut bytes: usize = 0;
            while bytes < MAX_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(r) => {
                        if let Request::Append { events, .. } = &r {
                            bytes += events.iter().map(|e| e.data.len() + 256).sum::<usize>();
                        }
                        requests.push(r);
                    }
                    Err(_) => break,
                }
            }
            let mut shutdown = None;
            let mut appends = Vec::with_capacity(requests.len());
            for r in requests.drain(..) {
                match r {
                    Request::Append {
                        stream,
                        expected,
                        events,
                        reply,
                    } => appends.push((stream, expected, events, reply)),
                    Request::Shutdown { reply } => shutdown = Some(reply),
                }
            }
            if !appends.is_empty() {
                self.turn(appends);
            }
            if let Some(reply) = shutdown {
                // Everything sent before the shutdown was in this turn or an earlier one.
                rx.close();
                while let Ok(r) = rx.try_recv() {
                    if let Request::Append { reply, .. } = r {
                        let _ = reply.send(Err(AppendError::Closed));
                    }
                }
                let _ = reply.send(());
                return;
            }
        }
    }

    fn head(&mut self, key: &[u8]) -> Result<Option<StreamHead>, AppendError> {
        if let Some(h) = self.heads.get(key) {
            return Ok(Some(*h));
        }
        let h = self
            .index
            .head(key)
            .map_err(|e| AppendError::Storage(e.to_string()))?;
        if let Some(h) = h {
            self.heads.insert(key.to_vec(), h);
        }
        Ok(h)
    }

    #[allow(clippy::type_complexity)]
    fn turn(
        &mut self,
        appends: Vec<(
            StreamId,
            ExpectedVersion,
            Vec<NewEvent>,
            oneshot::Sender<Result<AppendResult, AppendError>>,
        )>,
    ) {
        if self.shared.poisoned.load(Ordering::Acquire) {
            for (_, _, _, reply) in appends {
                let _ = reply.send(Err(AppendError::Storage(
                    "the log stopped accepting writes after a storage failure; restart to recover"
                        .into(),
                )));
            }
            return;
        }
        let recorded_at = self.clock.now();
        let recorded_nanos = to_nanos(recorded_at).unwrap_or(0);
        let batch_id = self.tip.batch + 1;
        self.buf.clear();
        let mut position = self.tip.position;
        let mut hash = self.tip.hash;
        let mut pending_ids: HashMap<Uuid, PendingId> = HashMap::new();
        let mut pending_index: Vec<PendingIndex> = Vec::new();
        // Heads as they were before this turn, to undo the cache if the write fails.
        let mut undo: Vec<(Vec<u8>, Option<StreamHead>)> = Vec::new();
        let mut outcomes = Vec::with_capacity(appends.len());
        let mut replies = Vec::with_capacity(appends.len());

        for (stream, expected, events, reply) in appends {
            replies.push(reply);
            let outcome = match self.prepare(
                &stream,
                expected,
                &events,
                recorded_nanos,
                batch_id,
                &mut position,
                &mut hash,
                &mut pending_ids,
                &mut pending_index,
                &mut undo,
            ) {
                Ok(o) => o,
                Err(e) => Outcome::Ready(Err(e)),
            };
            outcomes.push(outcome);
        }

        if !self.buf.is_empty() {
            let first_position = self.tip.position + 1;
            if let Err(e) = self.commit(first_position, position, hash, batch_id, pending_index) {
                tracing::error!(error = %e, "append failed; no waiting append was acknowledged");
                for (key, old) in undo.into_iter().rev() {
                    match old {
                        Some(h) => self.heads.insert(key, h),
                        None => self.heads.remove(&key),
                    };
                }
                for (o, reply) in outcomes.into_iter().zip(replies) {
                    let r = match o {
                        Outcome::Ready(r) => r,
                        Outcome::AfterCommit(_) => Err(AppendError::Storage(e.clone())),
                    };
                    let _ = reply.send(r);
                }
                return;
            }
        }
        for (o, reply) in outcomes.into_iter().zip(replies) {
            let r = match o {
                Outcome::Ready(r) => r,
                Outcome::AfterCommit(a) => Ok(a),
            };
            let _ = reply.send(r);
        }
    }

    /// Validates one append and encodes its records into the turn's buffer.
    #[allow(clippy::too_many_arguments)]
    fn prepare(
        &mut self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
        recorded_nanos: i64,
        batch_id: u64,
        position: &mut u64,
        hash: &mut Hash,
        pending_ids: &mut HashMap<Uuid, PendingId>,
        pending_index: &mut Vec<PendingIndex>,
        undo: &mut Vec<(Vec<u8>, Option<StreamHead>)>,
    ) -> Result<Outcome, AppendError> {
        if events.is_empty() {
            return Err(AppendError::Invalid(
                "an append needs at least one event".into(),
            ));
        }
        if events.len() > MAX_EVENTS_PER_APPEND {
            return Err(AppendError::Invalid(format!(
                "at most {MAX_EVENTS_PER_APPEND} events per append"
            )));
        }
        let mut digests = Vec::with_capacity(events.len());
        for ev in events {
            check_lengths(ev).map_err(|e| AppendError::Invalid(e.into()))?;
            if ev.data.len() > MAX_DATA {
                return Err(AppendError::Invalid(format!(
                    "event data is larger than {MAX_DATA} bytes"
                )));
            }
            if serde_json::from_slice::<serde::de::IgnoredAny>(&ev.data).is_err() {
                return Err(AppendError::Invalid("event data is not JSON".into()));
            }
            if to_nanos(ev.occurred_at).is_none() {
                return Err(AppendError::Invalid("occurred_at is out of range".into()));
            }
            digests.push(Hash::of(&ev.data));
        }
        let mut seen = std::collections::HashSet::new();
        if !events.iter().all(|e| seen.insert(e.event_id)) {
            return Err(AppendError::Invalid(
                "the same event id twice in one append".into(),
            ));
        }

        // Idempotency: all ids known with the same content → the original result; some known, or
        // known with other content → a conflict. Nothing new is written either way.
        let mut originals = Vec::new();
        for (ev, digest) in events.iter().zip(&digests) {
            let stored = if let Some(p) = pending_ids.get(&ev.event_id) {
                Some((
                    p.stream.clone(),
                    p.event_type.clone(),
                    p.schema_version,
                    p.digest,
                    p.position,
                    p.version,
                    true,
                ))
            } else {
                match self
                    .index
                    .event(ev.event_id)
                    .map_err(|e| AppendError::Storage(e.to_string()))?
                {
                    None => None,
                    Some(loc) => {
                        let env = self.shared.read_loc(loc).map_err(AppendError::Storage)?;
                        Some((
                            env.stream,
                            env.event_type,
                            env.schema_version,
                            env.data_sha256,
                            env.position,
                            env.stream_version,
                            false,
                        ))
                    }
                }
            };
            if let Some((s, et, sv, d, pos, ver, in_turn)) = stored {
                if &s != stream || et != ev.event_type || sv != ev.schema_version || d != *digest {
                    return Err(AppendError::EventIdConflict {
                        event_id: ev.event_id,
                    });
                }
                originals.push((pos, ver, in_turn));
            }
        }
        if !originals.is_empty() {
            if originals.len() != events.len() {
                return Err(AppendError::EventIdConflict {
                    event_id: events[originals.len().min(events.len() - 1)].event_id,
                });
            }
            let result = AppendResult {
                first_position: originals.iter().map(|o| o.0).min().unwrap_or(0),
                last_position: originals.iter().map(|o| o.0).max().unwrap_or(0),
                version: originals.iter().map(|o| o.1).max().unwrap_or(0),
                duplicate: true,
            };
            return Ok(if originals.iter().any(|o| o.2) {
                Outcome::AfterCommit(result)
            } else {
                Outcome::Ready(Ok(result))
            });
        }

        let key = stream.index_key();
        let head = self.head(&key)?;
        let current = head.map_or(0, |h| h.version);
        let ok = match expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current == 0,
            ExpectedVersion::Exact(n) => current == n,
        };
        if !ok {
            return Err(AppendError::WrongExpectedVersion {
                stream: stream.clone(),
                expected,
                actual: current,
            });
        }

        let first_position = *position + 1;
        let mut stream_hash = head.map_or(super::envelope::ZERO_HASH, |h| h.stream_hash);
        for (i, (ev, digest)) in events.iter().zip(&digests).enumerate() {
            *position += 1;
            let version = current + i as u64 + 1;
            self.scratch.clear();
            CanonicalFields {
                position: *position,
                stream: stream.as_str(),
                stream_version: version,
                event_id: ev.event_id,
                event_type: &ev.event_type,
                schema_version: ev.schema_version,
                occurred_at_nanos: to_nanos(ev.occurred_at).unwrap_or(0),
                recorded_at_nanos: recorded_nanos,
                actor: &ev.actor,
                metadata: &ev.metadata,
                data_sha256: digest,
            }
            .encode(&mut self.scratch);
            let new_hash = Hash::chain(hash, &self.scratch);
            let new_stream_hash = Hash::chain(&stream_hash, &self.scratch);
            let mut flags = 0;
            if i + 1 == events.len() {
                flags |= FLAG_TXN_END;
            }
            if self.buf.is_empty() {
                flags |= FLAG_BATCH_START;
            }
            let rel_offset = self.buf.len();
            encode_frame(
                &mut self.buf,
                RecordHeader {
                    flags,
                    batch: batch_id,
                },
                &self.scratch,
                hash,
                &new_hash,
                &stream_hash,
                &new_stream_hash,
                &ev.data,
            );
            pending_index.push(PendingIndex {
                stream_key: key.clone(),
                version,
                event_id: ev.event_id,
                position: *position,
                rel_offset,
                stream_hash: new_stream_hash,
            });
            pending_ids.insert(
                ev.event_id,
                PendingId {
                    stream: stream.clone(),
                    event_type: ev.event_type.clone(),
                    schema_version: ev.schema_version,
                    digest: *digest,
                    position: *position,
                    version,
                },
            );
            *hash = new_hash;
            stream_hash = new_stream_hash;
        }
        let new_version = current + events.len() as u64;
        undo.push((key.clone(), head));
        self.heads.insert(
            key,
            StreamHead {
                version: new_version,
                stream_hash,
            },
        );
        Ok(Outcome::AfterCommit(AppendResult {
            first_position,
            last_position: *position,
            version: new_version,
            duplicate: false,
        }))
    }

    /// Makes the turn's buffer durable, then indexes and publishes it.
    fn commit(
        &mut self,
        first_position: u64,
        last_position: u64,
        last_hash: Hash,
        batch_id: u64,
        pending_index: Vec<PendingIndex>,
    ) -> Result<(), String> {
        if self.end > HEADER_LEN && self.end + self.buf.len() as u64 > self.segment_size {
            self.roll(first_position)
                .map_err(|e| format!("cannot start a new segment: {e}"))?;
        }
        let base = self.end;
        if base + self.buf.len() as u64 > u32::MAX as u64 {
            return Err("segment would exceed 4 GiB".into());
        }
        let written = self.active.file.write_all_at(&self.buf, base);
        let synced = written.and_then(|_| match self.durability {
            Durability::Fsync => self.active.file.sync_data(),
            Durability::None => Ok(()),
        });
        if let Err(e) = synced {
            // The bytes may be partly on disk. Zero them so the log ends where it did; if even
            // that fails, stop taking writes: a restart's recovery scan will sort out the tail.
            let zeros = vec![0u8; self.buf.len()];
            let undone = self
                .active
                .file
                .write_all_at(&zeros, base)
                .and_then(|_| self.active.file.sync_data());
            if undone.is_err() {
                self.shared.poisoned.store(true, Ordering::Release);
            }
            return Err(format!("write to the log failed: {e}"));
        }
        self.end += self.buf.len() as u64;
        self.shared.active_end.store(self.end, Ordering::Relaxed);
        self.tip = ChainTip {
            position: last_position,
            hash: last_hash,
            batch: batch_id,
        };

        let mut ib = IndexBatch::default();
        for p in &pending_index {
            let loc = Loc {
                position: p.position,
                offset: (base + p.rel_offset as u64) as u32,
            };
            ib.add(&p.stream_key, p.version, p.event_id, loc, &p.stream_hash);
        }
        if let Err(e) = self.index.apply(ib) {
            // The events are durable; only the derived index is behind. Readiness reports it and
            // the next open catches up from the checkpoint.
            tracing::error!(error = %e, "index update failed; the index will catch up on restart");
            self.shared.index_stale.store(true, Ordering::Release);
        }
        self.shared.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.shared
            .stats
            .events
            .fetch_add(last_position + 1 - first_position, Ordering::Relaxed);
        self.shared.publish(last_position, last_hash);
        Ok(())
    }

    fn roll(&mut self, first_position: u64) -> std::io::Result<()> {
        // Seal: trim the preallocated tail so a sealed segment ends at its last record.
        self.active.file.set_len(self.end)?;
        self.active.file.sync_all()?;
        let seg = Arc::new(segment::create(
            &self.dir,
            first_position,
            self.segment_size,
        )?);
        self.shared.push_segment(seg.clone());
        self.active = seg;
        self.end = HEADER_LEN;
        Ok(())
    }
}
