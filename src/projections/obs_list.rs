//! A course's observations in stream order: sealed chunks of [`CHUNK_OBS`], each shared behind
//! an `Arc`, and a tail of fewer than [`CHUNK_OBS`].
//!
//! Why not one `Vec`: a persist holds the views it writes (shared, not copied) while the
//! follower goes on applying, and applying to a held view copies it (`Arc::make_mut`). With one
//! flat `Vec` that copy was the course's whole history — under writes spread over every course,
//! every course, every persist, so the peak held the data about twice. Here a copy is the chunk
//! pointers and the tail; a sealed chunk is copied only when a correction or retraction changes
//! an observation in it.
//!
//! Why a sealed chunk is kept encoded: decoded, an observation is 112 bytes plus the vectors some
//! variants hold (the largest part of the server's memory, growing with the record); in the
//! store's encoding (`codec::encode_chunk`: ids in a table, varints) about 38. So a sealed chunk
//! is its stored record, which a persist writes as it is, plus its decoded form only while it is
//! in use: decoded on first access, and dropped by [`ObsList::drop_cold`] when nothing used it
//! since the previous call (the follower's sweep, every persist interval, when no persist holds
//! the views).
//!
//! Why a sealed chunk may be held in neither form: once the projection store holds the very
//! record (the CRC the store's head names for it is the record's own), the sweep forgets the
//! record too, and a read fetches it back through the list's [`ChunkSource`]. Memory then keeps
//! about a hundred bytes per 64 observations instead of ~2.4 KB, so the history of a long record
//! stays on disk, and a page reads the chunk or two it shows.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;

use super::codec;
use super::course::Observation;
use crate::domain::CourseId;

/// Reads a sealed chunk's stored record back (the projection store, in the engine).
pub trait ChunkReader: Send + Sync {
    /// The stored record of sealed chunk `chunk` of `course`, if the store has one.
    fn read(&self, course: CourseId, chunk: u32) -> Option<Vec<u8>>;
}

/// Where a course's sealed chunks are stored, so memory may forget their records. Weak: a view
/// copy that outlives the engine must not keep its store open (the next open would find it
/// locked); such a copy is made with [`ObsList::detached`].
#[derive(Clone)]
pub struct ChunkSource {
    pub reader: std::sync::Weak<dyn ChunkReader>,
    pub course: CourseId,
}

/// Observations per sealed chunk, in memory and in the store.
pub const CHUNK_OBS: usize = 64;

/// An observation's place on the timeline: when it happened, then its log position.
pub type TimeKey = (OffsetDateTime, u64);

/// The newest place on the timeline among `obs` (the log's order is nearly, not exactly, time
/// order: a phone may send a check-in logged offline hours later).
pub fn newest(obs: &[Observation]) -> TimeKey {
    obs.iter().map(|o| (o.occurred_at, o.position)).max().unwrap_or((OffsetDateTime::UNIX_EPOCH, 0))
}

/// A full chunk: always at least one of its two forms in memory, or else `stored` with the list
/// holding a [`ChunkSource`].
struct Sealed {
    /// The stored record (`codec::encode_chunk`); unset after a change in memory, until the next
    /// persist or [`ObsList::drop_cold`] encodes it again, and once the store holds it.
    record: OnceLock<Box<[u8]>>,
    /// The observations, while in use.
    decoded: OnceLock<Box<[Observation]>>,
    /// Read since the last [`ObsList::drop_cold`].
    used: AtomicBool,
    /// [`newest`] of its observations (a correction changes neither time nor position), so a
    /// newest-first reader can pass a chunk by without decoding it.
    newest: TimeKey,
    /// The CRC of the record the store holds for this chunk, once known to be this chunk's
    /// (cleared by a change in memory).
    stored: Option<u32>,
}

impl Sealed {
    /// Sealed as its record alone (the engine's lists): a chunk just sealed is rarely read, and
    /// its decoded form was most of what a write load held beyond the data (see [`ObsList::push`]).
    fn encoded(obs: &[Observation]) -> Self {
        Sealed {
            record: OnceLock::from(codec::encode_chunk(obs).into_boxed_slice()),
            newest: newest(obs),
            decoded: OnceLock::new(),
            used: AtomicBool::new(false),
            stored: None,
        }
    }

    fn from_observations(obs: Vec<Observation>) -> Self {
        Sealed {
            record: OnceLock::new(),
            newest: newest(&obs),
            decoded: OnceLock::from(obs.into_boxed_slice()),
            used: AtomicBool::new(true),
            stored: None,
        }
    }

    /// The stored record, fetched when memory has neither form (chunk `c` of the list).
    fn fetch(&self, c: usize, source: Option<&ChunkSource>) -> Option<Vec<u8>> {
        let fetched = source.and_then(|s| s.reader.upgrade()?.read(s.course, c as u32));
        if fetched.is_none() {
            tracing::error!(chunk = c, "projections: a sealed chunk is in neither form and the store does not have it");
        }
        fetched
    }

    fn obs(&self, c: usize, source: Option<&ChunkSource>) -> &[Observation] {
        if !self.used.load(Ordering::Relaxed) {
            self.used.store(true, Ordering::Relaxed);
        }
        self.decoded.get_or_init(|| {
            let decoded = match self.record.get() {
                Some(r) => codec::decode_chunk(r),
                None => self.fetch(c, source).and_then(|r| codec::decode_chunk(&r)),
            };
            match decoded {
                Some(obs) if obs.len() == CHUNK_OBS => obs.into_boxed_slice(),
                // Not reachable: a record is either our own encoding or a stored one checked when
                // it was loaded (`Projections::open`, `ObsList::from_store`). Should it happen, the course reads as if
                // it had fewer observations, and says so, rather than taking the server down.
                _ => {
                    tracing::error!(chunk = c, "projections: a sealed chunk of observations could not be decoded");
                    Box::default()
                }
            }
        })
    }

    fn record(&self, c: usize, source: Option<&ChunkSource>) -> &[u8] {
        self.record.get_or_init(|| match self.decoded.get() {
            Some(d) => codec::encode_chunk(d).into(),
            // Only a persist that rewrites every chunk asks for one the store already holds.
            None => self.fetch(c, source).unwrap_or_else(|| codec::encode_chunk(&[])).into(),
        })
    }
}

impl Clone for Sealed {
    fn clone(&self) -> Self {
        Sealed {
            record: self.record.clone(),
            decoded: self.decoded.clone(),
            used: AtomicBool::new(self.used.load(Ordering::Relaxed)),
            newest: self.newest,
            stored: self.stored,
        }
    }
}

#[derive(Clone, Default)]
pub struct ObsList {
    sealed: Vec<Arc<Sealed>>,
    tail: Vec<Observation>,
    /// Where the sealed chunks can be read back; without one, memory keeps a form of each.
    source: Option<ChunkSource>,
}

impl ObsList {
    pub fn new() -> Self {
        Self::default()
    }

    /// From sealed chunks' records held in memory (each a record `codec::decode_chunk` reads as
    /// exactly [`CHUNK_OBS`] observations, with their [`newest`]) and the observations after
    /// them, however many; no store behind them (tests; the engine loads with [`Self::from_store`]).
    #[cfg(test)]
    pub fn from_parts(sealed: Vec<(Vec<u8>, TimeKey)>, tail: Vec<Observation>) -> Self {
        let sealed = sealed
            .into_iter()
            .map(|(r, newest)| {
                Arc::new(Sealed {
                    record: OnceLock::from(r.into_boxed_slice()),
                    decoded: OnceLock::new(),
                    used: AtomicBool::new(false),
                    newest,
                    stored: None,
                })
            })
            .collect();
        let mut list = ObsList { sealed, tail: Vec::new(), source: None };
        list.extend(tail);
        list
    }

    /// From sealed chunks the store holds (the CRC its head names each by, which the caller has
    /// checked against a record `codec::decode_chunk` reads as exactly [`CHUNK_OBS`]
    /// observations, with their [`newest`]), read back from `source` when used, and the
    /// observations after them.
    pub fn from_store(sealed: Vec<(u32, TimeKey)>, tail: Vec<Observation>, source: ChunkSource) -> Self {
        let sealed = sealed
            .into_iter()
            .map(|(crc, newest)| {
                Arc::new(Sealed {
                    record: OnceLock::new(),
                    decoded: OnceLock::new(),
                    used: AtomicBool::new(false),
                    newest,
                    stored: Some(crc),
                })
            })
            .collect();
        let mut list = ObsList { sealed, tail: Vec::new(), source: Some(source) };
        list.extend(tail);
        list
    }

    /// A copy that needs no store: every sealed chunk decoded (shared with this list, as any
    /// copy is), for a copy that may outlive the engine (tests, tools).
    pub fn detached(&self) -> ObsList {
        for c in 0..self.sealed.len() {
            self.chunk(c);
        }
        ObsList { sealed: self.sealed.clone(), tail: self.tail.clone(), source: None }
    }

    /// Whether the list can read its sealed chunks back from a store.
    pub fn has_source(&self) -> bool {
        self.source.is_some()
    }

    /// Lets the list read its sealed chunks back from `source` (a view made before the store
    /// held any of it).
    pub fn set_source(&mut self, source: ChunkSource) {
        self.source = Some(source);
    }

    pub fn len(&self) -> usize {
        self.sealed.len() * CHUNK_OBS + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn push(&mut self, o: Observation) {
        self.tail.push(o);
        if self.tail.len() != CHUNK_OBS {
            return;
        }
        if self.source.is_some() {
            // The engine's list (its store can take the chunk): the chunk is kept as the record
            // a persist writes, not decoded. Kept decoded, a write load's newly sealed chunks
            // stayed until the second sweep after (10–20 s). `benches/writes.py`, four
            // alternated pairs: peak RSS 332–368 MB against 370–385, the same CPU per check-in
            // (73–89 against 77–95 µs).
            let sealed = Sealed::encoded(&self.tail);
            // The tail starts again from nothing rather than keeping its room for 64 (112 bytes
            // each): a full room in every course was the largest part of the write load's peak
            // (heaptrack, 10,000 courses: ~54 MB in tails); growing by doubling, a tail holds
            // about two thirds of that on average.
            self.tail = Vec::new();
            self.sealed.push(Arc::new(sealed));
        } else {
            let full = std::mem::take(&mut self.tail);
            self.sealed.push(Arc::new(Sealed::from_observations(full)));
        }
    }

    pub fn get(&self, i: usize) -> Option<&Observation> {
        let c = i / CHUNK_OBS;
        match self.sealed.get(c) {
            Some(chunk) => chunk.obs(c, self.source.as_ref()).get(i % CHUNK_OBS),
            None => self.tail.get(i - self.sealed.len() * CHUNK_OBS),
        }
    }

    /// How many chunks are sealed.
    pub fn sealed_chunks(&self) -> usize {
        self.sealed.len()
    }

    /// Sealed chunk `c` (observations `c * CHUNK_OBS ..`), decoded.
    pub fn chunk(&self, c: usize) -> &[Observation] {
        self.sealed[c].obs(c, self.source.as_ref())
    }

    /// [`newest`] of sealed chunk `c`, without decoding it.
    pub fn chunk_newest(&self, c: usize) -> TimeKey {
        self.sealed[c].newest
    }

    /// Sealed chunk `c` as the store holds it (`codec::encode_chunk`).
    pub fn chunk_record(&self, c: usize) -> &[u8] {
        self.sealed[c].record(c, self.source.as_ref())
    }

    /// The observations after the sealed chunks.
    pub fn tail(&self) -> &[Observation] {
        &self.tail
    }

    /// Takes the tail out, leaving the sealed chunks.
    pub fn take_tail(&mut self) -> Vec<Observation> {
        std::mem::take(&mut self.tail)
    }

    /// Room for `n` more observations in the tail (benchmarks: a clone's tail is full).
    pub fn reserve(&mut self, n: usize) {
        self.tail.reserve(n);
    }

    pub fn iter(&self) -> Iter<'_> {
        Iter { list: self, front: 0, back: self.len() }
    }

    /// The newest observation matching `pred`, to change in place: its chunk is copied first if
    /// a persist still holds it, and encoded again when next written or dropped.
    pub fn rfind_mut(&mut self, pred: impl Fn(&Observation) -> bool) -> Option<&mut Observation> {
        // Newest first: corrections usually follow their target closely.
        let i = self.iter().rposition(pred)?;
        let c = i / CHUNK_OBS;
        match self.sealed.get_mut(c) {
            Some(chunk) => {
                let chunk = Arc::make_mut(chunk);
                chunk.obs(c, self.source.as_ref());
                chunk.record.take();
                chunk.stored = None;
                chunk.decoded.get_mut()?.get_mut(i % CHUNK_OBS)
            }
            None => self.tail.get_mut(i - c * CHUNK_OBS),
        }
    }

    /// Takes out the decoded form of every sealed chunk not used since the previous call
    /// (encoding it first if it changed, unless the store holds it) into `out`, for the caller
    /// to free when it no longer holds a lock, and returns how many; with a source, also the
    /// record of each such chunk the store holds, `stored[c]` being the CRC the store names
    /// chunk `c` by. A chunk shared with a copy (a persist in progress) is left for the next
    /// call.
    pub fn drop_cold(&mut self, out: &mut Vec<Box<[Observation]>>, stored: &[u32]) -> usize {
        let mut dropped = 0;
        let forget = self.source.is_some();
        for (c, chunk) in self.sealed.iter_mut().enumerate() {
            if chunk.used.swap(false, Ordering::Relaxed) {
                continue;
            }
            let Some(chunk) = Arc::get_mut(chunk) else { continue };
            if forget {
                let crc = chunk.record.get().and_then(|r| codec::record_crc(r));
                if crc.is_some() && crc == stored.get(c).copied() {
                    chunk.stored = crc;
                    chunk.record.take();
                }
            }
            if chunk.decoded.get().is_none() {
                continue;
            }
            if chunk.stored.is_none() || !forget {
                chunk.record(c, None);
            }
            out.extend(chunk.decoded.take());
            dropped += 1;
        }
        dropped
    }

    /// Sealed chunks held decoded (tests and metrics).
    pub fn decoded_chunks(&self) -> usize {
        self.sealed.iter().filter(|c| c.decoded.get().is_some()).count()
    }

    /// Sealed chunks whose record memory holds (tests and metrics).
    pub fn recorded_chunks(&self) -> usize {
        self.sealed.iter().filter(|c| c.record.get().is_some()).count()
    }
}

impl Extend<Observation> for ObsList {
    fn extend<I: IntoIterator<Item = Observation>>(&mut self, iter: I) {
        for o in iter {
            self.push(o);
        }
    }
}

impl FromIterator<Observation> for ObsList {
    fn from_iter<I: IntoIterator<Item = Observation>>(iter: I) -> Self {
        let mut list = ObsList::new();
        list.extend(iter);
        list
    }
}

impl From<Vec<Observation>> for ObsList {
    fn from(v: Vec<Observation>) -> Self {
        v.into_iter().collect()
    }
}

impl std::ops::Index<usize> for ObsList {
    type Output = Observation;

    fn index(&self, i: usize) -> &Observation {
        match self.get(i) {
            Some(o) => o,
            None => panic!("observation {i} of {}", self.len()),
        }
    }
}

impl PartialEq for ObsList {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for ObsList {}

impl std::fmt::Debug for ObsList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for ObsList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for ObsList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<Observation>::deserialize(d).map(ObsList::from)
    }
}

impl<'a> IntoIterator for &'a ObsList {
    type Item = &'a Observation;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// In order, from either end, with an exact length (so `enumerate().rev()` and `rposition`
/// work as on a slice).
#[derive(Clone)]
pub struct Iter<'a> {
    list: &'a ObsList,
    front: usize,
    back: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a Observation;

    fn next(&mut self) -> Option<&'a Observation> {
        if self.front >= self.back {
            return None;
        }
        let o = self.list.get(self.front);
        self.front += 1;
        o
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.back - self.front;
        (n, Some(n))
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.front >= self.back {
            return None;
        }
        self.back -= 1;
        self.list.get(self.back)
    }
}

impl ExactSizeIterator for Iter<'_> {}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use time::macros::datetime;
    use uuid::Uuid;

    use super::*;
    use crate::domain::{AccountId, Actor, Role};
    use crate::projections::course::{Obs, ObsStatus, SegmentOffset};

    fn obs(n: u128) -> Observation {
        Observation {
            event_id: Uuid::from_u128(n),
            position: n as u64,
            offset: SegmentOffset(n as u32),
            occurred_at: datetime!(2026-01-05 09:00 UTC),
            actor: Actor { account_id: AccountId(Uuid::from_u128(7)), role: Role::Mentor },
            status: ObsStatus::Standing,
            obs: Obs::GoalProgress { goal_id: crate::domain::GoalId(Uuid::from_u128(n)), percent: Some(1) },
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push,
        /// Retract the newest observation with this id modulo the length.
        Change(usize),
        /// Take a copy, as a persist does, and check it keeps what it saw.
        Hold,
        /// The follower's sweep: drop what was not read since the last one.
        Sweep,
        /// A persist: the store takes every sealed chunk's record (copies held until now were
        /// the previous persists' snapshots, done with by then).
        Persist,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => Just(Op::Push),
            2 => (0usize..1000).prop_map(Op::Change),
            1 => Just(Op::Hold),
            2 => Just(Op::Sweep),
            1 => Just(Op::Persist),
        ]
    }

    /// A store in memory that counts its reads.
    #[derive(Default)]
    struct MapStore {
        records: std::sync::Mutex<std::collections::HashMap<u32, Vec<u8>>>,
        reads: std::sync::atomic::AtomicUsize,
    }

    impl ChunkReader for MapStore {
        fn read(&self, _course: CourseId, chunk: u32) -> Option<Vec<u8>> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            self.records.lock().unwrap().get(&chunk).cloned()
        }
    }

    /// Writes every sealed chunk's record to `store`, as a persist does; returns the CRCs.
    fn persist(list: &ObsList, store: &MapStore, crcs: &mut Vec<u32>) {
        for c in 0..list.sealed_chunks() {
            let record = list.chunk_record(c).to_vec();
            let crc = codec::record_crc(&record).unwrap();
            store.records.lock().unwrap().insert(c as u32, record);
            if c < crcs.len() {
                crcs[c] = crc;
            } else {
                crcs.push(crc);
            }
        }
    }

    fn source(store: &Arc<MapStore>) -> ChunkSource {
        let reader: std::sync::Weak<dyn ChunkReader> = Arc::downgrade(store) as _;
        ChunkSource { reader, course: CourseId(Uuid::from_u128(1)) }
    }

    proptest! {
        /// Against a `Vec`: the same observations in the same order from either end, the same
        /// indexing and search, whatever sweeps dropped in between, and a copy taken earlier
        /// never sees a later change. The stored records read back as the chunks, and chunks
        /// whose records only the store holds read back from it.
        #[test]
        fn behaves_as_a_vec_and_a_copy_is_unchanged_by_later_writes(ops in prop::collection::vec(op(), 0..400)) {
            let store = Arc::new(MapStore::default());
            let mut crcs = Vec::new();
            let mut list = ObsList::new();
            list.set_source(source(&store));
            let mut model: Vec<Observation> = Vec::new();
            let mut held: Vec<(ObsList, Vec<Observation>)> = Vec::new();
            let mut next = 1u128;
            for op in ops {
                match op {
                    Op::Push => {
                        list.push(obs(next));
                        model.push(obs(next));
                        next += 1;
                    }
                    Op::Change(k) if !model.is_empty() => {
                        let id = model[k % model.len()].event_id;
                        let by = Uuid::from_u128(next + 1_000_000);
                        list.rfind_mut(|o| o.event_id == id).unwrap().status = ObsStatus::Retracted { by };
                        model.iter_mut().rev().find(|o| o.event_id == id).unwrap().status = ObsStatus::Retracted { by };
                    }
                    Op::Change(_) => prop_assert!(list.rfind_mut(|_| true).is_none()),
                    Op::Hold => held.push((list.clone(), model.clone())),
                    Op::Sweep => {
                        list.drop_cold(&mut Vec::new(), &crcs);
                    }
                    Op::Persist => {
                        for (copy, seen) in held.drain(..) {
                            prop_assert!(copy.iter().eq(seen.iter()), "a held copy changed");
                        }
                        persist(&list, &store, &mut crcs);
                    }
                }
                prop_assert_eq!(list.len(), model.len());
                prop_assert!(list.tail().len() < CHUNK_OBS);
                prop_assert_eq!(list.sealed_chunks(), model.len() / CHUNK_OBS);
            }
            prop_assert!(list.iter().eq(model.iter()));
            prop_assert!(list.iter().rev().eq(model.iter().rev()));
            prop_assert_eq!(list.iter().len(), model.len());
            let pairs: Vec<(usize, &Observation)> = list.iter().enumerate().rev().collect();
            let want: Vec<(usize, &Observation)> = model.iter().enumerate().rev().collect();
            prop_assert_eq!(pairs, want);
            for (i, o) in model.iter().enumerate() {
                prop_assert_eq!(&list[i], o);
            }
            prop_assert!(list.get(model.len()).is_none());
            for c in 0..list.sealed_chunks() {
                prop_assert_eq!(list.chunk(c), &model[c * CHUNK_OBS..(c + 1) * CHUNK_OBS]);
            }
            let sealed: Vec<(Vec<u8>, TimeKey)> =
                (0..list.sealed_chunks()).map(|c| (list.chunk_record(c).to_vec(), list.chunk_newest(c))).collect();
            for c in 0..list.sealed_chunks() {
                prop_assert_eq!(list.chunk_newest(c), newest(&model[c * CHUNK_OBS..(c + 1) * CHUNK_OBS]));
            }
            prop_assert_eq!(&ObsList::from_parts(sealed, list.tail().to_vec()), &list);
            prop_assert_eq!(&ObsList::from(model.clone()), &list);
            for (copy, seen) in &held {
                prop_assert!(copy.iter().eq(seen.iter()), "a held copy changed");
            }
        }
    }

    /// Once the store holds a chunk's record, two sweeps without a read leave memory neither of
    /// its forms; a read fetches it back from the store and decodes it, and a change to it keeps
    /// it in memory until the store holds the changed record.
    #[test]
    fn a_chunk_the_store_holds_is_forgotten_and_read_back() {
        let store = Arc::new(MapStore::default());
        let mut list: ObsList = (1..=3 * CHUNK_OBS as u128 + 5).map(obs).collect();
        let model: Vec<Observation> = list.iter().cloned().collect();
        // Without a source nothing is forgotten: the records stay.
        let mut crcs = Vec::new();
        persist(&list, &store, &mut crcs);
        list.drop_cold(&mut Vec::new(), &crcs);
        list.drop_cold(&mut Vec::new(), &crcs);
        assert_eq!((list.decoded_chunks(), list.recorded_chunks()), (0, 3));
        list.set_source(source(&store));
        list.drop_cold(&mut Vec::new(), &crcs);
        assert_eq!((list.decoded_chunks(), list.recorded_chunks()), (0, 0));
        assert_eq!(store.reads.load(Ordering::Relaxed), 0);
        // A newest-first page of 10 reads the tail and the last chunk only.
        let newest: Vec<&Observation> = list.iter().rev().take(10).collect();
        assert_eq!(newest, model.iter().rev().take(10).collect::<Vec<_>>());
        assert_eq!((store.reads.load(Ordering::Relaxed), list.decoded_chunks()), (1, 1));
        assert!(list.iter().eq(model.iter()));
        assert_eq!(store.reads.load(Ordering::Relaxed), 3);
        // A change: chunk 0 is held changed (decoded), its record encoded again by the sweep
        // and kept until the store holds it.
        let target = Uuid::from_u128(2);
        list.rfind_mut(|o| o.event_id == target).unwrap().status = ObsStatus::Retracted { by: Uuid::nil() };
        list.drop_cold(&mut Vec::new(), &crcs);
        list.drop_cold(&mut Vec::new(), &crcs);
        assert_eq!((list.decoded_chunks(), list.recorded_chunks()), (0, 1), "the changed chunk keeps its record");
        persist(&list, &store, &mut crcs);
        list.drop_cold(&mut Vec::new(), &crcs);
        assert_eq!(list.recorded_chunks(), 0);
        assert!(matches!(list[1].status, ObsStatus::Retracted { .. }), "read back changed");
        assert!(list.iter().skip(2).eq(model.iter().skip(2)));
        // A store that lost a chunk: the course reads shorter, and nothing panics.
        store.records.lock().unwrap().clear();
        list.drop_cold(&mut Vec::new(), &crcs);
        list.drop_cold(&mut Vec::new(), &crcs);
        assert_eq!(list.chunk(2).len(), 0);
    }

    /// The engine's list (one with a store to read from) seals a chunk as its record alone: nothing
    /// decoded until read, the same observations when read, and the tail starts again small
    /// (not with room for a whole chunk: that was the largest part of a write load's peak).
    #[test]
    fn a_list_with_a_store_seals_chunks_as_records() {
        let store = Arc::new(MapStore::default());
        let mut list = ObsList::new();
        list.set_source(source(&store));
        list.extend((1..=2 * CHUNK_OBS as u128 + 3).map(obs));
        assert_eq!((list.decoded_chunks(), list.recorded_chunks()), (0, 2));
        assert!(list.tail.capacity() < CHUNK_OBS, "the tail kept its room: {}", list.tail.capacity());
        assert!(list.iter().eq((1..=2 * CHUNK_OBS as u128 + 3).map(obs).collect::<Vec<_>>().iter()));
        assert_eq!((list.decoded_chunks(), store.reads.load(Ordering::Relaxed)), (2, 0), "decoded from memory");
        // Without a store (an as-of fold, a copy), chunks are sealed decoded, as before.
        let plain: ObsList = (1..=CHUNK_OBS as u128).map(obs).collect();
        assert_eq!((plain.decoded_chunks(), plain.recorded_chunks()), (1, 0));
    }

    /// What copy-on-write costs: a copy shares every sealed chunk; a change copies only the chunk
    /// it falls in, and pushing copies none.
    #[test]
    fn a_copy_shares_sealed_chunks_until_one_of_them_changes() {
        let mut list: ObsList = (1..=3 * CHUNK_OBS as u128 + 5).map(obs).collect();
        assert_eq!((list.sealed_chunks(), list.tail().len()), (3, 5));
        let held = list.clone();
        let shared = |a: &ObsList, b: &ObsList| -> Vec<bool> {
            a.sealed.iter().zip(&b.sealed).map(|(x, y)| Arc::ptr_eq(x, y)).collect()
        };
        assert_eq!(shared(&list, &held), [true, true, true]);
        list.extend((1000..1000 + CHUNK_OBS as u128).map(obs));
        assert_eq!(list.sealed_chunks(), 4);
        assert_eq!(shared(&list, &held), [true, true, true]);
        let target = Uuid::from_u128(CHUNK_OBS as u128 + 3); // in chunk 1
        list.rfind_mut(|o| o.event_id == target).unwrap().status = ObsStatus::Retracted { by: Uuid::nil() };
        assert_eq!(shared(&list, &held), [true, false, true]);
        assert!(matches!(held[CHUNK_OBS + 2].status, ObsStatus::Standing), "the held copy is as it was");
        assert!(matches!(list[CHUNK_OBS + 2].status, ObsStatus::Retracted { .. }));
    }

    #[test]
    fn serializes_as_a_plain_list() {
        let list: ObsList = (1..=CHUNK_OBS as u128 + 2).map(obs).collect();
        let json = serde_json::to_value(&list).unwrap();
        assert_eq!(json.as_array().map(Vec::len), Some(CHUNK_OBS + 2));
        let back: ObsList = serde_json::from_value(json).unwrap();
        assert_eq!(back, list);
        assert_eq!((back.sealed_chunks(), back.tail().len()), (1, 2));
    }

    /// Offsets compare equal whatever they are (a hint), so equality cannot show that the store
    /// keeps them: read them back one by one.
    #[test]
    fn a_stored_chunk_keeps_each_observation_s_segment_offset() {
        let obs: Vec<Observation> =
            (1..=CHUNK_OBS as u128).map(|n| Observation { offset: SegmentOffset(n as u32 * 977), ..obs(n) }).collect();
        let back = codec::decode_chunk(&codec::encode_chunk(&obs)).expect("decodes");
        let offsets: Vec<u32> = back.iter().map(|o| o.offset.0).collect();
        assert_eq!(offsets, (1..=CHUNK_OBS as u32).map(|n| n * 977).collect::<Vec<_>>());
    }
}
