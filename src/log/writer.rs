//! The single writer: owns the active segment and does group commit.
//!
//! It runs on its own OS thread because its work is blocking I/O (`pwrite`, `fdatasync`). Each
//! turn it takes every append that is waiting, checks idempotency and expected versions against
//! the stream heads (including earlier appends of the same turn), encodes all records into one
//! buffer, writes it with one call, syncs once, updates the in-memory index, publishes
//! the new committed position, and only then answers every waiting caller.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::envelope::{CanonicalFields, Hash, NewEvent, check_lengths, is_storable_json, to_nanos};
use super::index::{Entry, Index, Loc, StreamHead};
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
    pub persist_tx: std::sync::mpsc::SyncSender<()>,
    pub persister: Option<std::thread::JoinHandle<()>>,
    pub spare: segment::SparePrep,
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
                // Every handle is gone: persist what the index holds, then stop.
                self.final_persist();
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
                    Request::Append { stream, expected, events, reply } => {
                        appends.push((stream, expected, events, reply))
                    }
                    Request::Shutdown { reply } => shutdown = Some(reply),
                }
            }
            if !appends.is_empty() {
                self.turn(appends);
            }
            self.maybe_persist();
            if let Some(reply) = shutdown {
                self.final_persist();
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

    /// Asks the persister thread to write the index when [`PERSIST_AFTER`] events wait; it also
    /// does so every [`PERSIST_EVERY`] on its own. Never waits.
    fn maybe_persist(&mut self) {
        if self.index.unpersisted() >= PERSIST_AFTER {
            let _ = self.persist_tx.try_send(());
        }
    }

    /// At shutdown: stop the persister, then persist and flush sled so the next start need not
    /// catch up.
    fn final_persist(&mut self) {
        let (tx, _) = std::sync::mpsc::sync_channel(1);
        drop(std::mem::replace(&mut self.persist_tx, tx));
        if let Some(h) = self.persister.take() {
            let _ = h.join();
        }
        if let Err(e) = self.index.flush() {
            tracing::error!(error = %e, "persisting the index at shutdown failed; it will catch up on restart");
        }
    }

    #[allow(clippy::type_complexity)]
    fn turn(
        &mut self,
        appends: Vec<(StreamId, ExpectedVersion, Vec<NewEvent>, oneshot::Sender<Result<AppendResult, AppendError>>)>,
    ) {
        if self.shared.poisoned.load(Ordering::Acquire) {
            for (_, _, _, reply) in appends {
                let _ = reply.send(Err(AppendError::Storage(
                    "the log stopped accepting writes after a storage failure; restart to recover".into(),
                )));
            }
            return;
        }
        let t_prepare = std::time::Instant::now();
        let recorded_at = self.clock.now();
        let recorded_nanos = to_nanos(recorded_at).unwrap_or(0);
        let batch_id = self.tip.batch + 1;
        self.buf.clear();
        let mut position = self.tip.position;
        let mut hash = self.tip.hash;
        let mut pending_ids: HashMap<Uuid, PendingId> = HashMap::new();
        let mut pending_index: Vec<PendingIndex> = Vec::new();
        // Stream heads as this turn leaves them; the index learns them only once durable.
        let mut heads: HashMap<Vec<u8>, StreamHead> = HashMap::new();
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
                &mut heads,
            ) {
                Ok(o) => o,
                Err(e) => Outcome::Ready(Err(e)),
            };
            outcomes.push(outcome);
        }

        self.shared.stats.prepare_ns.fetch_add(t_prepare.elapsed().as_nanos() as u64, Ordering::Relaxed);
        if !self.buf.is_empty() {
            let first_position = self.tip.position + 1;
            if let Err(e) = self.commit(first_position, position, hash, batch_id, pending_index) {
                tracing::error!(error = %e, "append failed; no waiting append was acknowledged");
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
        heads: &mut HashMap<Vec<u8>, StreamHead>,
    ) -> Result<Outcome, AppendError> {
        if events.is_empty() {
            return Err(AppendError::Invalid("an append needs at least one event".into()));
        }
        if events.len() > MAX_EVENTS_PER_APPEND {
            return Err(AppendError::Invalid(format!("at most {MAX_EVENTS_PER_APPEND} events per append")));
        }
        let mut digests = Vec::with_capacity(events.len());
        for ev in events {
            check_lengths(ev).map_err(|e| AppendError::Invalid(e.into()))?;
            if ev.data.len() > MAX_DATA {
                return Err(AppendError::Invalid(format!("event data is larger than {MAX_DATA} bytes")));
            }
            if !is_storable_json(&ev.data) {
                return Err(AppendError::Invalid("event data is not JSON (UTF-8, no surrounding whitespace)".into()));
            }
            if to_nanos(ev.occurred_at).is_none() {
                return Err(AppendError::Invalid("occurred_at is out of range".into()));
            }
            digests.push(Hash::of(&ev.data));
        }
        let mut seen = std::collections::HashSet::new();
        if !events.iter().all(|e| seen.insert(e.event_id)) {
            return Err(AppendError::Invalid("the same event id twice in one append".into()));
        }

        // Idempotency: all ids known with the same content → the original result; some known, or
        // known with other content → a conflict. Nothing new is written either way.
        let mut originals = Vec::new();
        for (ev, digest) in events.iter().zip(&digests) {
            let stored = if let Some(p) = pending_ids.get(&ev.event_id) {
                Some((p.stream.clone(), p.event_type.clone(), p.schema_version, p.digest, p.position, p.version, true))
            } else {
                let mut found = None;
                let candidates =
                    self.index.event_candidates(ev.event_id).map_err(|e| AppendError::Storage(e.to_string()))?;
                for loc in candidates {
                    let env = self.shared.read_loc(loc).map_err(AppendError::Storage)?;
                    if env.event_id == ev.event_id {
                        found = Some((
                            env.stream,
                            env.event_type,
                            env.schema_version,
                            env.data_sha256,
                            env.position,
                            env.stream_version,
                            false,
                        ));
                        break;
                    }
                }
                found
            };
            if let Some((s, et, sv, d, pos, ver, in_turn)) = stored {
                if &s != stream || et != ev.event_type || sv != ev.schema_version || d != *digest {
                    return Err(AppendError::EventIdConflict { event_id: ev.event_id });
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
                recorded_at: None,
            };
            return Ok(if originals.iter().any(|o| o.2) {
                Outcome::AfterCommit(result)
            } else {
                Outcome::Ready(Ok(result))
            });
        }

        let key = stream.index_key();
        let head = match heads.get(&key) {
            Some(h) => Some(*h),
            None => self.index.head(&key),
        };
        let current = head.map_or(0, |h| h.version);
        let ok = match expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current == 0,
            ExpectedVersion::Exact(n) => current == n,
        };
        if !ok {
            return Err(AppendError::WrongExpectedVersion { stream: stream.clone(), expected, actual: current });
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
                actor: (&ev.actor).into(),
                metadata: (&ev.metadata).into(),
                data_sha256: *digest,
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
                RecordHeader { flags, batch: batch_id },
                &self.scratch,
                hash,
                &new_hash,
                &stream_hash,
                &new_stream_hash,
                &ev.data,
            );
            pending_index.push(PendingIndex {
                stream_key: key.clone(),
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
        heads.insert(key, StreamHead { version: new_version, stream_hash });
        Ok(Outcome::AfterCommit(AppendResult {
            first_position,
            last_position: *position,
            version: new_version,
            duplicate: false,
            recorded_at: Some(super::envelope::from_nanos(recorded_nanos)),
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
            self.roll(first_position).map_err(|e| format!("cannot start a new segment: {e}"))?;
        }
        let base = self.end;
        if base + self.buf.len() as u64 > u32::MAX as u64 {
            return Err("segment would exceed 4 GiB".into());
        }
        let t0 = std::time::Instant::now();
        let written = self.active.file.write_all_at(&self.buf, base);
        let t1 = std::time::Instant::now();
        let synced = written.and_then(|_| match self.durability {
            Durability::Fsync => self.active.file.sync_data(),
            Durability::None => Ok(()),
        });
        let t2 = std::time::Instant::now();
        self.shared.stats.write_ns.fetch_add((t1 - t0).as_nanos() as u64, Ordering::Relaxed);
        let sync_ns = (t2 - t1).as_nanos() as u64;
        self.shared.stats.sync_ns.fetch_add(sync_ns, Ordering::Relaxed);
        self.shared.stats.max_sync_ns.fetch_max(sync_ns, Ordering::Relaxed);
        if sync_ns > 10_000_000 {
            self.shared.stats.slow_syncs.fetch_add(1, Ordering::Relaxed);
        }
        if let Err(e) = synced {
            // The bytes may be partly on disk. Zero them so the log ends where it did; if even
            // that fails, stop taking writes: a restart's recovery scan will sort out the tail.
            let zeros = vec![0u8; self.buf.len()];
            let undone = self.active.file.write_all_at(&zeros, base).and_then(|_| self.active.file.sync_data());
            if undone.is_err() {
                self.shared.poisoned.store(true, Ordering::Release);
            }
            return Err(format!("write to the log failed: {e}"));
        }
        self.end += self.buf.len() as u64;
        if self.end > self.segment_size / 2 {
            self.spare.request();
        }
        self.shared.active_end.store(self.end, Ordering::Relaxed);
        self.tip = ChainTip { position: last_position, hash: last_hash, batch: batch_id };

        let t_index = std::time::Instant::now();
        let entries: Vec<Entry<'_>> = pending_index
            .iter()
            .map(|p| Entry {
                stream_key: &p.stream_key,
                event_id: p.event_id,
                loc: Loc { position: p.position, offset: (base + p.rel_offset as u64) as u32 },
                stream_hash: p.stream_hash,
            })
            .collect();
        self.index.add(&entries);
        self.shared.stats.index_ns.fetch_add(t_index.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.shared.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.shared.stats.events.fetch_add(last_position + 1 - first_position, Ordering::Relaxed);
        self.shared.publish(last_position, last_hash);
        Ok(())
    }

    fn roll(&mut self, first_position: u64) -> std::io::Result<()> {
        // Seal: trim the preallocated tail so a sealed segment ends at its last record.
        self.active.file.set_len(self.end)?;
        self.active.file.sync_all()?;
        let seg = match self.spare.take(first_position)? {
            Some(seg) => seg,
            None => segment::create(&self.dir, first_position, self.segment_size)?,
        };
        let seg = Arc::new(seg);
        self.shared.push_segment(seg.clone());
        self.active = seg;
        self.end = HEADER_LEN;
        Ok(())
    }
}

/// How long new index entries may wait in memory before the persister writes them …
pub(crate) const PERSIST_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
/// … or how many may wait, whichever comes first. A persist writes each stream that moved once,
/// however often it moved, so under writes spread over many courses its cost is per persist:
/// every 4,096 events and every second (as it was) the heads' sled inserts were ~6 % of a
/// check-in's CPU at 10,000 courses. What waits is in memory (~32 bytes an event) and is read
/// from there; a start after a crash re-reads it from the log.
pub(crate) const PERSIST_AFTER: usize = 32_768;

/// The index persister: writes the in-memory index to sled when asked and every
/// [`PERSIST_EVERY`], off the writer's thread (a sled batch can take tens of milliseconds, and
/// the writer must not stall).
pub(crate) fn spawn_persister(
    index: Arc<Index>,
    shared: Arc<Shared>,
) -> std::io::Result<(std::sync::mpsc::SyncSender<()>, std::thread::JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
    let handle = std::thread::Builder::new().name("vivirk-index-persist".into()).spawn(move || {
        loop {
            match rx.recv_timeout(PERSIST_EVERY) {
                Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            }
            match index.persist() {
                Ok(()) => shared.index_stale.store(false, Ordering::Release),
                Err(e) => {
                    tracing::error!(error = %e, "persisting the index failed; it will catch up on restart");
                    shared.index_stale.store(true, Ordering::Release);
                }
            }
        }
    })?;
    Ok((tx, handle))
}
