//! Projections: the read side. Caseworkers, mentors and auditors read these, never the log.
//!
//! # Design
//!
//! - **One fold, four views.** Every course projection — course status, contact frequency,
//!   agreed actions, contact history — is rendered at read time from one per-course fold,
//!   [`CourseView`] ([`course`]). The fold is a pure function of the course's events; the
//!   engine, a rebuild and an as-of replay ([`fold_envelopes`]) all run it, so they cannot
//!   diverge. Anything that depends on "today" (overdue, due soon, warnings) is computed when
//!   read, against the injected clock ([`views`]), never baked in at apply time.
//! - **In memory, persisted in chunks.** The engine keeps every course's view in memory for
//!   fast reads and applies events as they are committed (either [`Projections::catch_up`],
//!   or the task from [`Projections::spawn_follower`] that follows `log.subscribe()`). It
//!   persists to `data_dir/projections/` (heads in sled, sealed chunks in a file of their own,
//!   [`chunk_file`]) every [`ProjectionConfig::persist_every`]
//!   events or [`ProjectionConfig::persist_interval`], whichever comes first: the views of the
//!   courses changed since the last write, then *the checkpoint*, each a single-key insert
//!   (sled's batches take its process-wide lock exclusively, which can deadlock it; see
//!   `crate::open_sled`). A view records the log position it is the state at, so a crash
//!   between the two leaves views at or ahead of the checkpoint, never behind: the next open
//!   re-applies from the checkpoint and skips, per course, what the view already holds. No
//!   event is applied twice or skipped.
//! - **Compact records.** A view is stored in a checksummed binary form ([`codec`], ≈ 3.8 KB
//!   for a course of 100 events, against ≈ 35 KB as JSON), so a rebuild's final write and a cold
//!   start's load take a fraction of a second. A record that fails its checksum or does not
//!   decode strictly makes the whole store rebuild.
//! - **A persist writes what changed, not whole histories.** A course's observations are stored
//!   in sealed chunks of [`codec::CHUNK_OBS`], written once, and a head record with everything
//!   else and the tail; a persist of a course that only grew writes its head (and a chunk when
//!   one fills), and a correction or retraction rewrites the one chunk it lands in. So a
//!   persist costs what was applied since the last one, however long the courses are (it used
//!   to re-encode every changed course whole: under a steady write load its cost grew with the
//!   data). The head names its chunks by CRC, so a chunk rewritten by a persist that did not
//!   finish is never mistaken for the one the head was written with: the chunk file is
//!   append-only, and the record with the CRC the head names is the one loaded.
//! - **Pipelined catch-up.** Reading and decoding the log cost about four times what applying
//!   does, so a long catch-up reads and decodes on other threads while one thread applies the
//!   chunks in log order and persists between them, exactly as a short catch-up does.
//! - **One shared checkpoint.** All four views live in the same per-course record and are
//!   written by the same persist, so there is one checkpoint for all of them; `rebuild NAME`
//!   therefore rebuilds the shared store.
//! - **Derived, disposable.** A missing, unreadable or differently formatted store (or one
//!   ahead of the log) is thrown away and rebuilt from position 1. sled is never flushed on
//!   the request path; durability comes from the log.
//! - **Bad events don't stop the engine.** An event that does not decode is logged at warn
//!   level with its position and type (never its content), counted ([`Projections::skipped`])
//!   and skipped, identically in the engine and in as-of replays.
//! - **Cross-course indexes** (courses of an account, actions of an owner) are derived in
//!   memory from the views on open and kept up to date per chunk; they are not persisted.

pub mod bench;
mod chunk_file;
pub(crate) mod codec;
pub mod course;
pub mod cph;
pub mod digest;
pub mod obs_list;
pub mod views;

#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::watch;
use uuid::Uuid;

use chunk_file::ChunkFile;
pub use course::{CourseView, Observation, Recorded, SegmentOffset};
use obs_list::{ChunkReader, ChunkSource, ObsList};
pub use views::{
    ActionItem, ActionState, ComplianceState, ContactFrequency, CourseStatus, Cursor, EventDetail, HistoryFilter,
    HistoryPage, MyCourse,
};

use crate::clock::SharedClock;
use crate::domain::{AccountId, Actor, CourseEvent, CourseId, EventMeta, Role};
use crate::log::{
    CanonicalFields, Envelope, EventLog, LogIter, StreamId, category_of, decode_payload_ref, entity_id_of, from_nanos,
};

/// The names accepted by `vivirk projections rebuild [NAME]`.
pub const NAMES: &[&str] = &["course_status", "contact_frequency", "actions", "contact_history"];

/// Bumped when the persisted form of [`CourseView`] ([`codec`]) changes; a store in another
/// format is rebuilt.
const FORMAT: &[u8] = b"vivirk-projections-5";
const KEY_FORMAT: &[u8] = b"m:format";
const KEY_CHECKPOINT: &[u8] = b"m:checkpoint";
/// `c` course → the course's head record ([`codec::encode_head`]).
const COURSE_PREFIX: u8 = b'c';
/// Log events read and decoded per step; decoding happens outside the state lock.
const CHUNK: usize = 4096;
/// A catch-up of at least this many events reads and decodes on other threads while this one
/// applies (see [`Projections::catch_up_inner`]); below it, one thread does everything.
const PIPELINE_MIN: u64 = 4 * CHUNK as u64;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("projection store: {0}")]
    Store(#[from] sled::Error),
    #[error("reading the log: {0}")]
    Log(String),
    #[error("encoding a view: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("projection store directory: {0}")]
    Io(#[from] std::io::Error),
}

type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

#[derive(Clone)]
pub struct ProjectionConfig {
    /// Where the sled store lives (normally `data_dir/projections`).
    pub dir: PathBuf,
    /// Persist after this many applied events …
    pub persist_every: u64,
    /// … or this long after the last persist, whichever comes first. The store is derived, so
    /// this only bounds what a start after a crash re-applies; under a steady write load every
    /// course changes within seconds, so each persist rewrites every course's head, and its cost
    /// per second is the rate of persists (10 s took ~9 % of a check-in's CPU at 10,000 courses).
    pub persist_interval: Duration,
    /// How often the follower forgets the sealed chunks no read used (memory, not the store).
    pub sweep_interval: Duration,
    /// Called during catch-up with (done, total) events.
    pub progress: Option<Progress>,
}

impl ProjectionConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: data_dir.into().join("projections"),
            persist_every: 250_000,
            persist_interval: Duration::from_secs(30),
            sweep_interval: Duration::from_secs(10),
            progress: None,
        }
    }
}

/// How `open` went.
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    /// Courses loaded from the store.
    pub loaded: usize,
    pub checkpoint: u64,
    /// Why the store was thrown away and rebuilt, if it was.
    pub rebuilt: Option<String>,
    /// Events applied while catching up.
    pub caught_up: u64,
}

/// Where to cut a course's history for an as-of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// Every event recorded at or before this instant; "now" for overdue is this instant.
    RecordedAt(OffsetDateTime),
    /// Every event up to this stream version; "now" is when that version was recorded.
    Version(u64),
    /// The whole stream, read now.
    Head,
}

/// A line of a caseworker's contact worklist.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContactWorkItem {
    pub course_id: CourseId,
    pub young_person: Option<AccountId>,
    pub compliance: views::Compliance,
}

#[derive(Default)]
struct State {
    /// Shared with a persist in progress, which encodes them off the apply path; applying to a
    /// shared view copies it first (`Arc::make_mut`).
    courses: HashMap<CourseId, Arc<CourseView>>,
    /// Courses where the account currently holds any role.
    by_account: HashMap<AccountId, BTreeSet<CourseId>>,
    /// Courses where the account owns any action.
    by_owner: HashMap<AccountId, BTreeSet<CourseId>>,
    /// What each course is indexed under now, to undo it when the course changes.
    indexed: HashMap<CourseId, (Vec<AccountId>, Vec<AccountId>)>,
    /// Last log position applied in memory.
    applied: u64,
    /// Courses changed since the last persist, and which of their observations.
    dirty: HashMap<CourseId, Dirty>,
}

impl State {
    fn reindex(&mut self, id: CourseId) {
        let Some(view) = self.courses.get(&id) else { return };
        let mut accounts: Vec<AccountId> = view.participants.iter().map(|p| p.account_id).collect();
        accounts.sort_unstable();
        accounts.dedup();
        let mut owners: Vec<AccountId> = view.actions.iter().map(|a| a.owner).collect();
        owners.sort_unstable();
        owners.dedup();
        let (old_accounts, old_owners) = self.indexed.remove(&id).unwrap_or_default();
        if old_accounts != accounts {
            for a in &old_accounts {
                if let Some(set) = self.by_account.get_mut(a) {
                    set.remove(&id);
                }
            }
            for a in &accounts {
                self.by_account.entry(*a).or_default().insert(id);
            }
        }
        if old_owners != owners {
            for a in &old_owners {
                if let Some(set) = self.by_owner.get_mut(a) {
                    set.remove(&id);
                }
            }
            for a in &owners {
                self.by_owner.entry(*a).or_default().insert(id);
            }
        }
        self.indexed.insert(id, (accounts, owners));
    }
}

struct Applier {
    since_persist: u64,
    last_persist: Instant,
    /// When the follower last dropped decoded observations not read since ([`ObsList::drop_cold`]).
    last_sweep: Instant,
    /// The follower's persist, running on its own thread (see [`Projections::persist_in_background`]).
    in_flight: Option<std::thread::JoinHandle<()>>,
}

struct Inner {
    log: EventLog,
    clock: SharedClock,
    config: ProjectionConfig,
    tree: sled::Tree,
    // Kept so the store stays open as long as the projections.
    _db: sled::Db,
    state: RwLock<State>,
    /// Serialises catch-up and persist: one applier at a time.
    applier: Mutex<Applier>,
    applied_tx: watch::Sender<u64>,
    persisted: AtomicU64,
    skipped: AtomicU64,
    /// The CRCs of each course's sealed chunks as stored, for the next head. Only persists use
    /// it, one at a time; it changes only when a persist's writes all succeeded.
    chunk_crcs: Mutex<HashMap<CourseId, Vec<u32>>>,
    /// The sealed chunks ([`chunk_file`]), read back for views whose memory forgot them.
    chunks: Arc<ChunkFile>,
    /// Records and bytes written by persists so far.
    persist_records: AtomicU64,
    persist_bytes: AtomicU64,
}

/// The projection engine; cheap to clone.
#[derive(Clone)]
pub struct Projections {
    inner: Arc<Inner>,
}

/// The changed views and the position they are the state at (see `Projections::snapshot`).
struct Snapshot {
    dirty: HashMap<CourseId, Dirty>,
    views: Vec<(CourseId, Arc<CourseView>, Dirty)>,
    applied: u64,
}

/// Courses a persist encodes and writes at a time (see `write_snapshot`).
#[cfg(not(test))]
const PERSIST_BATCH: usize = 1024;
/// In tests, small, so the tests' persists (crashes between them included) run in many batches.
#[cfg(test)]
const PERSIST_BATCH: usize = 3;

/// What a persist writes for one course: its changed sealed chunks, then its head.
struct EncodedCourse {
    id: CourseId,
    chunks: Vec<(u32, Vec<u8>)>,
    head: Vec<u8>,
    /// The CRCs of all its sealed chunks, as the head names them.
    crcs: Vec<u32>,
}

/// What changed in a course since the last persist: observations appended from index
/// `appended` on, and the sealed chunks holding observations corrected or retracted in place.
/// The other sealed chunks are as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Dirty {
    appended: usize,
    changed: BTreeSet<u32>,
}

impl Dirty {
    /// Everything: what a course whose stored form is unknown needs.
    fn all() -> Self {
        Dirty::default()
    }

    fn merge(&mut self, other: Dirty) {
        self.appended = self.appended.min(other.appended);
        self.changed.extend(other.changed);
    }
}

fn mark_dirty(dirty: &mut HashMap<CourseId, Dirty>, id: CourseId, d: Dirty) {
    match dirty.entry(id) {
        std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().merge(d),
        std::collections::hash_map::Entry::Vacant(e) => {
            e.insert(d);
        }
    }
}

/// Why an envelope was not folded into a course.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Not a course stream: nothing to do, not an error.
    NotACourse,
    /// A course event that does not decode, or an unknown actor role.
    Bad,
}

/// Turns an envelope into a course id and a decoded event. Shared by the engine and as-of.
pub fn decode_envelope(env: &Envelope) -> Result<(CourseId, Recorded, CourseEvent), Skip> {
    decode_fields(&env.canonical_fields(), &env.data, 0)
}

/// The one decode of a stored course event, from its canonical fields, borrowed from an envelope
/// or from a record read in place, and its data.
fn decode_fields(c: &CanonicalFields<'_>, data: &[u8], offset: u32) -> Result<(CourseId, Recorded, CourseEvent), Skip> {
    if category_of(c.stream) != "course" {
        return Err(Skip::NotACourse);
    }
    let course_id = CourseId(entity_id_of(c.stream).ok_or(Skip::Bad)?);
    let role = Role::ALL.iter().copied().find(|r| r.as_str() == c.actor.role).ok_or(Skip::Bad)?;
    let event = CourseEvent::decode(c.event_type, c.schema_version, data).map_err(|_| Skip::Bad)?;
    let meta = EventMeta {
        event_id: c.event_id,
        stream_version: c.stream_version,
        occurred_at: from_nanos(c.occurred_at_nanos),
        recorded_at: from_nanos(c.recorded_at_nanos),
        actor: Actor { account_id: AccountId(c.actor.account_id), role },
    };
    Ok((course_id, Recorded { position: c.position, offset: SegmentOffset(offset), meta }, event))
}

fn warn_bad(position: u64, event_type: &str, schema_version: u16) {
    // Ids and codes only: the payload may hold personal data.
    tracing::warn!(
        position,
        event_type,
        version = schema_version,
        "projections: skipping an event that does not decode"
    );
}

/// A decoded run of consecutive log events.
struct DecodedChunk {
    /// The course events, in log order.
    events: Vec<(CourseId, Recorded, CourseEvent)>,
    /// Log events read (course or not, good or bad).
    read: u64,
    /// Course events that did not decode (already logged).
    bad: u64,
    /// Position of the last log event read.
    last: u64,
}

/// Reads up to `max` (at most [`CHUNK`]) events from the log.
/// The payloads of consecutive log events, read (CRCs and positions checked) but not decoded:
/// a large catch-up decodes them in place on other threads, with no envelope built per event.
struct RawChunk {
    bytes: Vec<u8>,
    /// Each payload's range in `bytes` and its record's offset in its segment.
    payloads: Vec<(std::ops::Range<usize>, u32)>,
}

fn read_chunk(it: &mut LogIter, max: u64) -> Result<RawChunk, ProjectionError> {
    let n = max.min(CHUNK as u64) as usize;
    let mut raw = RawChunk { bytes: Vec::with_capacity(n * 512), payloads: Vec::with_capacity(n) };
    for _ in 0..n {
        match it.next_payload_into(&mut raw.bytes) {
            None => break,
            Some(Ok(p)) => raw.payloads.push(p),
            Some(Err(e)) => return Err(ProjectionError::Log(e.to_string())),
        }
    }
    Ok(raw)
}

fn decode_chunk(raw: &RawChunk) -> Result<DecodedChunk, ProjectionError> {
    let mut chunk = DecodedChunk {
        events: Vec::with_capacity(raw.payloads.len()),
        read: raw.payloads.len() as u64,
        bad: 0,
        last: 0,
    };
    for (range, offset) in &raw.payloads {
        let payload = decode_payload_ref(&raw.bytes[range.clone()]).map_err(|e| ProjectionError::Log(e.to_string()))?;
        let (position, event_type, version) =
            (payload.canonical.position, payload.canonical.event_type, payload.canonical.schema_version);
        chunk.last = position;
        match decode_fields(&payload.canonical, payload.data, *offset) {
            Ok(x) => chunk.events.push(x),
            Err(Skip::NotACourse) => {}
            Err(Skip::Bad) => {
                warn_bad(position, event_type, version);
                chunk.bad += 1;
            }
        }
    }
    Ok(chunk)
}

/// Folds a course's envelopes (in stream order) up to `cut`. Pure; the engine applies the same
/// `decode_envelope` + `CourseView::apply`. Returns the view, "now" for read-time rules
/// (`None`: use the clock) and how many events were skipped as bad.
pub fn fold_envelopes(course_id: CourseId, envs: &[Envelope], cut: AsOf) -> (CourseView, Option<OffsetDateTime>, u64) {
    let mut view = CourseView::new(course_id);
    let mut now = match cut {
        AsOf::RecordedAt(t) => Some(t),
        AsOf::Version(_) | AsOf::Head => None,
    };
    let mut skipped = 0;
    for env in envs {
        let included = match cut {
            AsOf::RecordedAt(t) => env.recorded_at <= t,
            AsOf::Version(v) => env.stream_version <= v,
            AsOf::Head => true,
        };
        if !included {
            continue;
        }
        if let AsOf::Version(_) = cut {
            now = Some(env.recorded_at);
        }
        match decode_envelope(env) {
            Ok((_, rec, event)) => view.apply(&rec, &event),
            Err(Skip::NotACourse) => {}
            Err(Skip::Bad) => skipped += 1,
        }
    }
    (view, now, skipped)
}

/// Encodes one course for a persist: the sealed chunks that changed (the others are as stored,
/// with the CRCs in `stored`), then the head with the tail.
fn encode_course(id: CourseId, view: &CourseView, dirty: &Dirty, stored: &[u32]) -> EncodedCourse {
    let k = codec::CHUNK_OBS;
    let sealed = view.observations.sealed_chunks();
    // Chunks from `start` on hold appended observations (or were never stored).
    let start = (dirty.appended / k).min(stored.len()).min(sealed);
    let mut crcs = stored[..start].to_vec();
    let rewrite = dirty.changed.iter().map(|c| *c as usize).filter(|c| *c < start).chain(start..sealed);
    let mut chunks = Vec::new();
    for c in rewrite {
        // Kept encoded in memory: written as it is.
        let record = view.observations.chunk_record(c).to_vec();
        let crc = codec::record_crc(&record).unwrap_or_default();
        if c < crcs.len() {
            crcs[c] = crc;
        } else {
            crcs.push(crc);
        }
        chunks.push((c as u32, record));
    }
    let head = codec::encode_head(view, &crcs);
    EncodedCourse { id, chunks, head, crcs }
}

/// Encodes views for the store. With `parallel`, a large persist (a rebuild's, a catch-up's) is
/// split over a few threads; the follower's persists run on one, beside the requests they would
/// otherwise take both cores from.
fn encode_all(
    views: &[(CourseId, Arc<CourseView>, Dirty)],
    stored: &HashMap<CourseId, Vec<u32>>,
    parallel: bool,
) -> Vec<EncodedCourse> {
    let min = if parallel { 256 } else { usize::MAX };
    par_map(views, min, |(id, v, dirty)| encode_course(*id, v, dirty, stored.get(id).map_or(&[][..], |c| c.as_slice())))
}

/// Maps `f` over `items`, keeping their order: on up to four threads when there are at least
/// `min` items (a rebuild's persist, a cold start's load), on this one otherwise.
fn par_map<I: Sync, T: Send>(items: &[I], min: usize, f: impl Fn(&I) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
    if threads < 2 || items.len() < min {
        return items.iter().map(f).collect();
    }
    let f = &f;
    std::thread::scope(|s| {
        let parts: Vec<_> = items
            .chunks(items.len().div_ceil(threads))
            .map(|part| s.spawn(move || part.iter().map(f).collect::<Vec<T>>()))
            .collect();
        parts.into_iter().flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    })
}

fn course_key(id: CourseId) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = COURSE_PREFIX;
    k[1..].copy_from_slice(id.0.as_bytes());
    k
}

fn chunk_source(chunks: &Arc<ChunkFile>, course: CourseId) -> ChunkSource {
    let reader: std::sync::Weak<dyn ChunkReader> = Arc::downgrade(chunks) as _;
    ChunkSource { reader, course }
}

/// What [`load`] returns: the checkpoint, the views and their chunks' CRCs.
type Loaded = (u64, HashMap<CourseId, Arc<CourseView>>, HashMap<CourseId, Vec<u32>>);

/// Loads the store; `Err(reason)` when it must be rebuilt. A head names its chunks by CRC: the
/// chunk file's record of each with that CRC is the one (records appended by a persist that did
/// not finish are passed over), and a named chunk the file does not have makes the store rebuild.
fn load(tree: &sled::Tree, log_head: u64, chunks_from: &Arc<ChunkFile>) -> Result<Loaded, String> {
    let format = tree.get(KEY_FORMAT).map_err(|e| format!("unreadable: {e}"))?;
    let checkpoint = tree.get(KEY_CHECKPOINT).map_err(|e| format!("unreadable: {e}"))?;
    let (Some(format), Some(checkpoint)) = (format, checkpoint) else {
        return if tree.is_empty() { Ok((0, HashMap::new(), HashMap::new())) } else { Err("no checkpoint".into()) };
    };
    if format.as_ref() != FORMAT {
        return Err("written in another format".into());
    }
    let checkpoint = u64::from_be_bytes(checkpoint.as_ref().try_into().map_err(|_| "malformed checkpoint".to_owned())?);
    if checkpoint > log_head {
        return Err(format!("checkpoint {checkpoint} is ahead of the log head {log_head}"));
    }
    // Records are read in key order here and decoded on a few threads (most of a cold start).
    let heads_raw = scan_raw(tree, COURSE_PREFIX)?;
    let decoded = decode_parallel(&heads_raw, |(k, v)| {
        let id = Uuid::from_slice(&k[1..]).map_err(|_| "malformed key".to_owned())?;
        let head = codec::decode_head(v).ok_or_else(|| format!("undecodable view of course {id}"))?;
        Ok((CourseId(id), head))
    })?;
    drop(heads_raw);
    let heads: HashMap<CourseId, (CourseView, Vec<u32>)> = decoded.into_iter().collect();
    // The records the heads name, found in the chunk file.
    let (bytes, frames) = chunks_from.scan().map_err(|e| format!("chunk file unreadable: {e}"))?;
    let mut named: HashMap<(CourseId, u32), std::ops::Range<usize>> = HashMap::new();
    for f in frames {
        let want = heads.get(&f.course).and_then(|(_, crcs)| crcs.get(f.chunk as usize)).copied();
        if want.is_some() && codec::record_crc(&bytes[f.record.clone()]) == want {
            named.insert((f.course, f.chunk), f.record);
        }
    }
    let mut wanted = Vec::with_capacity(named.len());
    for (id, (_, crcs)) in &heads {
        for (chunk, crc) in crcs.iter().enumerate() {
            let Some(range) = named.remove(&(*id, chunk as u32)) else {
                return Err(format!("course {} is missing sealed chunk {chunk}", id.0));
            };
            wanted.push((*id, *crc, range));
        }
    }
    drop(named);
    // Decoded here only to be sure they can be: memory keeps only their CRCs and where they are,
    // and a read fetches them back from the file.
    let checked = par_map(&wanted, 1024, |(id, crc, range)| {
        let obs = codec::decode_chunk(&bytes[range.clone()])
            .ok_or_else(|| format!("undecodable chunk of course {}", id.0))?;
        if obs.len() != codec::CHUNK_OBS {
            return Err(format!("a chunk of course {} is not full", id.0));
        }
        Ok((*crc, obs_list::newest(&obs)))
    });
    drop(bytes);
    let mut sealed: HashMap<CourseId, Vec<(u32, obs_list::TimeKey)>> = HashMap::with_capacity(heads.len());
    let mut locs: HashMap<CourseId, Vec<(u64, u32)>> = HashMap::with_capacity(heads.len());
    for ((id, _, range), chunk) in wanted.into_iter().zip(checked) {
        sealed.entry(id).or_default().push(chunk?);
        locs.entry(id).or_default().push((range.start as u64, range.len() as u32));
    }
    let mut courses = HashMap::with_capacity(heads.len());
    let mut chunk_crcs = HashMap::with_capacity(heads.len());
    for (id, (mut view, crcs)) in heads {
        let course_chunks = sealed.remove(&id).unwrap_or_default();
        let tail = view.observations.take_tail();
        view.observations = ObsList::from_store(course_chunks, tail, chunk_source(chunks_from, id));
        courses.insert(id, Arc::new(view));
        if !crcs.is_empty() {
            chunk_crcs.insert(id, crcs);
        }
    }
    chunks_from.set_loaded(locs);
    Ok((checkpoint, courses, chunk_crcs))
}

/// Every record under `prefix`, in key order.
fn scan_raw(tree: &sled::Tree, prefix: u8) -> Result<Vec<(sled::IVec, sled::IVec)>, String> {
    tree.scan_prefix([prefix]).collect::<Result<Vec<_>, _>>().map_err(|e| format!("unreadable: {e}"))
}

/// Decodes records with [`par_map`]; the first error wins.
fn decode_parallel<T: Send>(
    items: &[(sled::IVec, sled::IVec)],
    f: impl Fn(&(sled::IVec, sled::IVec)) -> Result<T, String> + Sync,
) -> Result<Vec<T>, String> {
    par_map(items, 1024, f).into_iter().collect()
}

fn open_store(dir: &std::path::Path) -> Result<(sled::Db, sled::Tree), sled::Error> {
    // sled writes its buffers out in the background; a crash loses at most what was persisted
    // since, and the next open catches that up from the checkpoint.
    let db = crate::open_sled(dir, Some(500))?;
    let tree = db.open_tree("views")?;
    Ok((db, tree))
}

impl Projections {
    /// Opens (or creates, or rebuilds) the store, loads it, and catches up with the log.
    pub fn open(
        log: EventLog,
        clock: SharedClock,
        config: ProjectionConfig,
    ) -> Result<(Self, OpenReport), ProjectionError> {
        let mut report = OpenReport::default();
        std::fs::create_dir_all(&config.dir)?;
        let (db, tree) = match open_store(&config.dir) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "projections: store does not open; rebuilding it");
                report.rebuilt = Some(format!("store does not open: {e}"));
                std::fs::remove_dir_all(&config.dir)?;
                open_store(&config.dir)?
            }
        };
        let chunks = Arc::new(ChunkFile::open(&config.dir)?);
        let (checkpoint, courses, chunk_crcs) = match load(&tree, log.committed(), &chunks) {
            Ok(loaded) => loaded,
            Err(reason) => {
                tracing::warn!(%reason, "projections: rebuilding the store from the log");
                tree.clear()?;
                report.rebuilt = Some(reason);
                (0, HashMap::new(), HashMap::new())
            }
        };
        // Loading read every head through sled, which keeps the pages it read for as long as the
        // handle lives (its cache bound does not apply to them): a store reopened holds none.
        let (db, tree) = if checkpoint > 0 {
            drop((tree, db));
            open_store(&config.dir)?
        } else {
            (db, tree)
        };
        if checkpoint == 0 {
            // Built from position 1: no chunk in the file is named by anything.
            chunks.clear()?;
            // Mark the format now, so an empty store is recognisably ours (a store with a format
            // and no checkpoint does not load, and is rebuilt).
            tree.insert(KEY_FORMAT, FORMAT)?;
            tree.insert(KEY_CHECKPOINT, &0u64.to_be_bytes())?;
        }
        report.loaded = courses.len();
        report.checkpoint = checkpoint;
        let mut state = State { applied: checkpoint, ..State::default() };
        let ids: Vec<CourseId> = courses.keys().copied().collect();
        state.courses = courses;
        for id in ids {
            state.reindex(id);
        }
        let (applied_tx, _) = watch::channel(checkpoint);
        let p = Projections {
            inner: Arc::new(Inner {
                log,
                clock,
                config,
                tree,
                _db: db,
                state: RwLock::new(state),
                applier: Mutex::new(Applier {
                    since_persist: 0,
                    last_persist: Instant::now(),
                    last_sweep: Instant::now(),
                    in_flight: None,
                }),
                applied_tx,
                persisted: AtomicU64::new(checkpoint),
                skipped: AtomicU64::new(0),
                chunk_crcs: Mutex::new(chunk_crcs),
                chunks,
                persist_records: AtomicU64::new(0),
                persist_bytes: AtomicU64::new(0),
            }),
        };
        // The backlog is persisted by count only: in a bulk catch-up nearly every course changes
        // in every chunk, so a time-based persist would rewrite the whole store every second.
        report.caught_up = p.catch_up_inner(u64::MAX, true, true, false)?;
        Ok((p, report))
    }

    /// Throws the store away and rebuilds it from position 1 (`vivirk projections rebuild`).
    pub fn rebuild(
        log: EventLog,
        clock: SharedClock,
        config: ProjectionConfig,
    ) -> Result<(Self, OpenReport), ProjectionError> {
        if config.dir.exists() {
            std::fs::remove_dir_all(&config.dir)?;
        }
        Self::open(log, clock, config)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.inner.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.inner.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }

    /// Last log position applied (visible to reads).
    pub fn applied(&self) -> u64 {
        self.read().applied
    }

    /// Last log position persisted with the checkpoint.
    pub fn checkpoint(&self) -> u64 {
        self.inner.persisted.load(Ordering::Acquire)
    }

    /// Events skipped because they did not decode, since open.
    pub fn skipped(&self) -> u64 {
        self.inner.skipped.load(Ordering::Relaxed)
    }

    /// Applies everything committed to the log so far; persists when a chunk is due. Blocking:
    /// call from a blocking context (the follower uses `spawn_blocking`).
    pub fn catch_up(&self) -> Result<u64, ProjectionError> {
        self.catch_up_to(u64::MAX, false)
    }

    /// Applies up to `limit` events, persisting chunks as configured; with `force_persist`, also
    /// persists what is left at the end. Returns how many events were applied.
    pub fn catch_up_to(&self, limit: u64, force_persist: bool) -> Result<u64, ProjectionError> {
        self.catch_up_inner(limit, force_persist, false, false)
    }

    /// Applies up to `limit` committed events. Reading the log and decoding events costs about
    /// four times as much as applying them, so a long catch-up (a rebuild, a cold start far
    /// behind) runs as a pipeline: a reader thread cuts the log into chunks, decoder threads
    /// decode them, and this thread applies the decoded chunks strictly in log order, persisting
    /// between chunks exactly as the single-threaded path does. Both paths decode with
    /// [`decode_envelope`] and apply with [`CourseView::apply`], like [`fold_envelopes`].
    ///
    /// With `background` (the follower), a persist due by time or count encodes and writes on
    /// its own thread, so applying, and every write waiting to read its own event, does not wait
    /// for it.
    fn catch_up_inner(
        &self,
        limit: u64,
        force_persist: bool,
        bulk: bool,
        background: bool,
    ) -> Result<u64, ProjectionError> {
        let mut applier = self.inner.applier.lock().unwrap_or_else(|p| p.into_inner());
        if background {
            // Reads alone start no persist, so the follower sweeps on its own clock too.
            self.sweep_when_due(&mut applier);
        }
        let from = self.applied() + 1;
        let head = self.inner.log.committed();
        let until = head.min(from.saturating_add(limit).saturating_sub(1));
        let total = until.saturating_add(1).saturating_sub(from);
        let mut done = 0u64;
        if total > 0 {
            let mut it = self.inner.log.iter_from(from).map_err(|e| ProjectionError::Log(e.to_string()))?;
            let decoders = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
            if total >= PIPELINE_MIN && decoders > 1 {
                done = self.apply_pipelined(it, total, decoders, &mut applier, bulk)?;
            } else {
                while done < total {
                    let raw = read_chunk(&mut it, total - done)?;
                    if raw.payloads.is_empty() {
                        break;
                    }
                    let chunk = decode_chunk(&raw)?;
                    done += chunk.read;
                    self.step(&chunk, done, total, &mut applier, bulk, background)?;
                }
            }
        }
        let due =
            !bulk && applier.since_persist > 0 && applier.last_persist.elapsed() >= self.inner.config.persist_interval;
        if force_persist {
            self.persist(&mut applier)?;
        } else if due {
            self.persist_when_due(&mut applier, background)?;
        }
        Ok(done)
    }

    /// The pipelined catch-up (see [`Self::catch_up_inner`]). Channels are bounded, so at most a
    /// few chunks are in flight; if this thread stops (an error), the others see their channel
    /// close and stop too.
    fn apply_pipelined(
        &self,
        mut it: LogIter,
        total: u64,
        decoders: usize,
        applier: &mut Applier,
        bulk: bool,
    ) -> Result<u64, ProjectionError> {
        type Decoded = (u64, Result<DecodedChunk, ProjectionError>);
        let (raw_tx, raw_rx) = mpsc::sync_channel::<(u64, RawChunk)>(decoders * 2);
        let raw_rx = Arc::new(Mutex::new(raw_rx));
        let (dec_tx, dec_rx) = mpsc::sync_channel::<Decoded>(decoders * 2);
        std::thread::scope(|s| {
            let reader_tx = dec_tx.clone();
            s.spawn(move || {
                let mut read = 0u64;
                for seq in 0.. {
                    if read >= total {
                        break;
                    }
                    match read_chunk(&mut it, total - read) {
                        Ok(raw) if raw.payloads.is_empty() => break,
                        Ok(raw) => {
                            read += raw.payloads.len() as u64;
                            if raw_tx.send((seq, raw)).is_err() {
                                break;
                            }
                        }
                        Err(e) => {
                            let _ = reader_tx.send((seq, Err(e)));
                            break;
                        }
                    }
                }
            });
            for _ in 0..decoders {
                let (raw_rx, dec_tx) = (raw_rx.clone(), dec_tx.clone());
                s.spawn(move || {
                    loop {
                        let next = raw_rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok((seq, raw)) = next else { break };
                        if dec_tx.send((seq, decode_chunk(&raw))).is_err() {
                            break;
                        }
                    }
                });
            }
            drop((raw_rx, dec_tx));
            // Owns the receiving end, so returning (done or failed) releases the other threads.
            let mut apply = move || -> Result<u64, ProjectionError> {
                let mut done = 0u64;
                let mut pending: BTreeMap<u64, Result<DecodedChunk, ProjectionError>> = BTreeMap::new();
                let mut next_seq = 0u64;
                for (seq, chunk) in dec_rx.iter() {
                    pending.insert(seq, chunk);
                    while let Some(chunk) = pending.remove(&next_seq) {
                        next_seq += 1;
                        let chunk = chunk?;
                        done += chunk.read;
                        self.step(&chunk, done, total, applier, bulk, false)?;
                    }
                }
                Ok(done)
            };
            apply()
        })
    }

    /// Applies one decoded chunk, reports progress and persists when due.
    fn step(
        &self,
        chunk: &DecodedChunk,
        done: u64,
        total: u64,
        applier: &mut Applier,
        bulk: bool,
        background: bool,
    ) -> Result<(), ProjectionError> {
        self.inner.skipped.fetch_add(chunk.bad, Ordering::Relaxed);
        self.apply_chunk(&chunk.events, chunk.last);
        applier.since_persist += chunk.events.len() as u64 + chunk.bad;
        if let Some(p) = &self.inner.config.progress {
            p(done, total);
        }
        // A bulk catch-up rewrites nearly every course per persist, so it persists 4× less
        // often; a crash then redoes at most that much, from the checkpoint.
        let every =
            if bulk { self.inner.config.persist_every.saturating_mul(4) } else { self.inner.config.persist_every };
        if applier.since_persist >= every
            || (!bulk && applier.last_persist.elapsed() >= self.inner.config.persist_interval)
        {
            self.persist_when_due(applier, background)?;
        }
        Ok(())
    }

    fn apply_chunk(&self, chunk: &[(CourseId, Recorded, CourseEvent)], last: u64) {
        let mut st = self.write();
        let mut touched: HashMap<CourseId, Dirty> = HashMap::new();
        for (id, rec, event) in chunk {
            let view = st.courses.entry(*id).or_insert_with(|| Arc::new(CourseView::new(*id)));
            if rec.position <= view.position {
                // The stored view already holds it: its persist got further than the checkpoint.
                continue;
            }
            // The first observation this event changes: a correction or retraction changes its
            // target in place (and appends nothing), anything else can only append.
            let target = match event {
                CourseEvent::EventCorrected(e) => Some(e.target_event_id),
                CourseEvent::EventRetracted(e) => Some(e.target_event_id),
                _ => None,
            };
            let changed = target
                .and_then(|t| view.observations.iter().rposition(|o| o.event_id == t))
                .map(|i| (i / codec::CHUNK_OBS) as u32);
            let dirty = Dirty { appended: view.observations.len(), changed: changed.into_iter().collect() };
            Arc::make_mut(view).apply(rec, event);
            mark_dirty(&mut touched, *id, dirty);
        }
        for id in touched.keys() {
            st.reindex(*id);
        }
        for (id, dirty) in touched {
            mark_dirty(&mut st.dirty, id, dirty);
        }
        st.applied = last;
        drop(st);
        self.inner.applied_tx.send_replace(last);
    }

    fn persist_when_due(&self, applier: &mut Applier, background: bool) -> Result<(), ProjectionError> {
        if background { self.persist_in_background(applier) } else { self.persist(applier) }
    }

    /// Waits for the follower's persist in progress, if any. A failed one has already marked its
    /// courses dirty again; one that panicked could not, so then every course is marked.
    fn finish_in_flight(&self, applier: &mut Applier) {
        if let Some(h) = applier.in_flight.take()
            && h.join().is_err()
        {
            self.mark_all_dirty();
        }
    }

    fn mark_all_dirty(&self) {
        let mut st = self.write();
        let ids: Vec<CourseId> = st.courses.keys().copied().collect();
        for id in ids {
            mark_dirty(&mut st.dirty, id, Dirty::all());
        }
    }

    /// What a persist writes: the changed views (shared, not copied) and the position they are
    /// the state at. The applier lock is held by the caller, so nothing is applied in between.
    fn snapshot(&self, applier: &mut Applier) -> Snapshot {
        let dirty = std::mem::take(&mut self.write().dirty);
        let st = self.read();
        let views =
            dirty.iter().filter_map(|(id, d)| st.courses.get(id).map(|v| (*id, v.clone(), d.clone()))).collect();
        let applied = st.applied;
        drop(st);
        applier.since_persist = 0;
        applier.last_persist = Instant::now();
        Snapshot { dirty, views, applied }
    }

    /// Encodes a snapshot and writes its views, then its checkpoint (single-key inserts; see the
    /// module header). If a write fails, its courses are marked dirty again, so no later persist
    /// (with a later checkpoint) goes without them.
    fn write_snapshot(&self, snap: Snapshot, parallel: bool) -> Result<(), ProjectionError> {
        let started = Instant::now();
        let Snapshot { dirty, views, applied } = snap;
        let courses = views.len();
        // Only persists use the CRCs, one at a time; held until the writes are done.
        let mut stored = self.inner.chunk_crcs.lock().unwrap_or_else(|p| p.into_inner());
        let (mut bytes, mut records) = (0usize, 0usize);
        // In batches of courses, each encoded, written and dropped before the next: a persist
        // under a steady write load changes every course, and encoding them all first held
        // every head encoded at once (~40 MB at 10,000 courses) plus each view until the last
        // was encoded (the follower copies a held view it changes). A view is let go once its
        // batch is encoded.
        let mut views = views.into_iter();
        let written = loop {
            let batch: Vec<_> = views.by_ref().take(PERSIST_BATCH).collect();
            if batch.is_empty() {
                break self.inner.tree.insert(KEY_CHECKPOINT, &applied.to_be_bytes()).map(|_| ()).map_err(Into::into);
            }
            let encoded = encode_all(&batch, &stored, parallel);
            drop(batch);
            match self.write_encoded(&encoded, &mut bytes, &mut records) {
                Ok(placed) => {
                    // Before the CRCs: a sweep forgets a chunk the CRCs say is stored, and then
                    // reads it back.
                    self.inner.chunks.place(placed);
                    for c in encoded {
                        stored.insert(c.id, c.crcs);
                    }
                }
                Err(e) => break Err(e),
            }
        };
        self.inner.persist_records.fetch_add(records as u64, Ordering::Relaxed);
        self.inner.persist_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        if let Err(e) = written {
            // Every course of this persist is due again (rewriting a head is harmless).
            let mut st = self.write();
            for (id, d) in dirty {
                mark_dirty(&mut st.dirty, id, d);
            }
            return Err(e);
        }
        drop(stored);
        self.inner.persisted.store(applied, Ordering::Release);
        tracing::debug!(
            checkpoint = applied,
            courses,
            records,
            bytes,
            total_ms = started.elapsed().as_millis() as u64,
            "projections persisted"
        );
        Ok(())
    }

    /// Writes encoded courses: their new chunks appended to the chunk file (synced), then the
    /// heads naming them (see the module header); the checkpoint is the caller's, after all.
    fn write_encoded(
        &self,
        encoded: &[EncodedCourse],
        bytes: &mut usize,
        records: &mut usize,
    ) -> Result<chunk_file::Placed, ProjectionError> {
        let mut batch = chunk_file::Batch::default();
        for c in encoded {
            for (n, record) in &c.chunks {
                *bytes += record.len();
                *records += 1;
                batch.add(c.id, *n, record);
            }
        }
        let placed = self.inner.chunks.append(&batch)?;
        drop(batch);
        for c in encoded {
            *bytes += c.head.len();
            *records += 1;
            self.inner.tree.insert(course_key(c.id), c.head.as_slice())?;
        }
        Ok(placed)
    }

    /// The follower's sweep, every `sweep_interval`, if no persist is in flight: a persist holds
    /// the views it writes, and a held view is not swept.
    fn sweep_when_due(&self, applier: &mut Applier) {
        let idle = applier.in_flight.as_ref().is_none_or(|h| h.is_finished());
        if idle && applier.last_sweep.elapsed() >= self.inner.config.sweep_interval {
            applier.last_sweep = Instant::now();
            self.drop_cold_observations();
        }
    }

    /// Drops the decoded form of sealed observation chunks no read has used since the last
    /// sweep, and the records of those the store holds, so memory holds the history only while
    /// it is being read (and what the store does not have yet, encoded). Views a persist still
    /// holds are left for next time. Returns how many chunks were dropped and how many views
    /// were held.
    fn drop_cold_observations(&self) -> (usize, usize) {
        let started = Instant::now();
        let (mut dropped, mut held) = (0, 0);
        let mut cold = Vec::new();
        // Persists change the CRCs, and none is in flight during a sweep; taken before the state,
        // as a persist does.
        let stored = self.inner.chunk_crcs.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = self.write();
        for (id, view) in st.courses.iter_mut() {
            match Arc::get_mut(view) {
                Some(v) => {
                    if !v.observations.has_source() {
                        v.observations.set_source(chunk_source(&self.inner.chunks, *id));
                    }
                    let crcs = stored.get(id).map_or(&[][..], |c| c.as_slice());
                    dropped += v.observations.drop_cold(&mut cold, crcs);
                }
                None => held += 1,
            }
        }
        drop(st);
        drop(stored);
        let locked = started.elapsed();
        // Freed after the lock: thousands of chunks (and the vectors inside their observations)
        // took up to 11 ms to free, every read and the follower waiting.
        drop(cold);
        tracing::debug!(
            dropped,
            held,
            locked_us = locked.as_micros() as u64,
            took_us = started.elapsed().as_micros() as u64,
            "projections: cold chunks dropped"
        );
        (dropped, held)
    }

    /// The follower's persist: the snapshot is taken here, with the applier lock held, and
    /// encoded and written on a thread of its own, so applying goes on meanwhile (a view applied
    /// to while shared is copied first). One at a time, in order: while one runs, the next is
    /// put off and its courses stay dirty.
    fn persist_in_background(&self, applier: &mut Applier) -> Result<(), ProjectionError> {
        if applier.in_flight.as_ref().is_some_and(|h| !h.is_finished()) {
            return Ok(());
        }
        self.finish_in_flight(applier);
        // No persist holds a view now (a held view cannot be swept), and the snapshot is next.
        self.sweep_when_due(applier);
        let snap = self.snapshot(applier);
        let me = self.clone();
        let spawned = std::thread::Builder::new().name("projections-persist".into()).spawn(move || {
            if let Err(e) = me.write_snapshot(snap, false) {
                tracing::error!(error = %e, "projections: persisting failed; the next persist retries");
            }
            crate::return_free_memory_to_os();
        });
        match spawned {
            Ok(h) => applier.in_flight = Some(h),
            Err(e) => {
                // The snapshot went with the closure: write every course next time.
                self.mark_all_dirty();
                tracing::error!(error = %e, "projections: no thread to persist on; the next persist retries");
            }
        }
        Ok(())
    }

    /// Writes the changed views and then the checkpoint, on this thread.
    fn persist(&self, applier: &mut Applier) -> Result<(), ProjectionError> {
        self.finish_in_flight(applier);
        let snap = self.snapshot(applier);
        self.write_snapshot(snap, true)
    }

    /// Records and bytes written to the store by persists since open.
    pub fn persist_stats(&self) -> (u64, u64) {
        (self.inner.persist_records.load(Ordering::Relaxed), self.inner.persist_bytes.load(Ordering::Relaxed))
    }

    /// Persists whatever is applied but not yet written (shutdown, tools).
    pub fn persist_now(&self) -> Result<(), ProjectionError> {
        let mut applier = self.inner.applier.lock().unwrap_or_else(|p| p.into_inner());
        self.persist(&mut applier)
    }

    /// Waits until the projections have applied `position` (read-your-writes: an API handler
    /// passes the position its append returned). Needs the follower or someone calling
    /// `catch_up`.
    pub async fn wait_for(&self, position: u64) {
        let mut rx = self.inner.applied_tx.subscribe();
        let _ = rx.wait_for(|p| *p >= position).await;
    }

    /// Follows the log: applies new commits as they come, persists at least every
    /// `persist_interval` and sweeps every `sweep_interval`. Runs until the log's watch channel
    /// closes.
    pub fn spawn_follower(&self) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        let mut rx = self.inner.log.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { break },
                    _ = tokio::time::sleep(me.inner.config.sweep_interval.min(me.inner.config.persist_interval)) => {}
                }
                let p = me.clone();
                match tokio::task::spawn_blocking(move || p.catch_up_inner(u64::MAX, false, false, true)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "projections: catch-up failed; retrying"),
                    Err(e) => tracing::error!(error = %e, "projections: catch-up task failed"),
                }
            }
        })
    }

    // -----------------------------------------------------------------------------------------
    // reads

    /// A copy of a course's fold (tests, tools), whole: its sealed chunks read back from the
    /// store if memory had forgotten them, so the copy may outlive the engine.
    pub fn course_view(&self, id: CourseId) -> Option<CourseView> {
        self.read().courses.get(&id).map(|v| {
            let mut copy = CourseView::clone(v);
            copy.observations = v.observations.detached();
            copy
        })
    }

    pub fn course_ids(&self) -> Vec<CourseId> {
        self.read().courses.keys().copied().collect()
    }

    pub fn course_status(&self, id: CourseId) -> Option<CourseStatus> {
        let now = self.now();
        self.read().courses.get(&id).map(|v| views::course_status(v, now))
    }

    pub fn contact_frequency(&self, id: CourseId) -> Option<ContactFrequency> {
        let now = self.now();
        self.read().courses.get(&id).map(|v| views::contact_frequency(v, now))
    }

    /// A course's actions: open and overdue first (by due date), then done and cancelled.
    pub fn course_actions(&self, id: CourseId) -> Option<Vec<ActionItem>> {
        let now = self.now();
        self.read().courses.get(&id).map(|v| views::actions(v, now))
    }

    /// Every action an account owns, across courses, open and overdue first.
    pub fn actions_of(&self, owner: AccountId) -> Vec<ActionItem> {
        let now = self.now();
        let today = cph::local_date(now);
        let st = self.read();
        let mut items: Vec<ActionItem> = st
            .by_owner
            .get(&owner)
            .into_iter()
            .flatten()
            .filter_map(|id| st.courses.get(id))
            .flat_map(|v| {
                v.actions.iter().filter(|a| a.owner == owner).map(|a| views::action_item(v.course_id, a, today))
            })
            .collect();
        views::sort_actions(&mut items);
        items
    }

    /// A page of a course's contact history, newest first (see [`Cursor`] for the order), with
    /// each item's full payload read from the log. `Ok(None)`: no such course.
    pub fn contact_history(
        &self,
        id: CourseId,
        filter: &HistoryFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Option<HistoryPage>, ProjectionError> {
        let after = match cursor {
            Some(c) => Some(Cursor::decode(c).ok_or_else(|| ProjectionError::Log("malformed cursor".into()))?),
            None => None,
        };
        let (mut items, next, course_version) = {
            let st = self.read();
            let Some(view) = st.courses.get(&id) else { return Ok(None) };
            let (items, next) = views::history_page(view, filter, after, limit.clamp(1, 500));
            (items, next, view.version)
        };
        for item in &mut items {
            // An uncorrected item shows its own event, found by position (a direct index);
            // a corrected one shows the correction, found by id.
            let at = (item.source_event_id == item.event_id).then_some((item.position, item.offset.0));
            item.detail = self.detail(item.source_event_id, at);
        }
        Ok(Some(HistoryPage { items, next_cursor: next.map(|c| c.encode()), course_version }))
    }

    /// The effective payload of an observation: the event itself, or a correction's replacement.
    fn detail(&self, event_id: Uuid, at: Option<(u64, u32)>) -> Option<EventDetail> {
        // Most items: the event itself, in its current version, served as stored, read in place
        // where the observation says it is.
        let position = at.map(|(p, _)| p);
        if let Some((p, offset)) = at {
            let stored = self.inner.log.with_event_near(p, offset, |e| {
                (e.event_id == event_id).then(|| EventDetail::stored(e.event_type, e.schema_version, e.data))
            });
            if let Ok(Some(Some(Some(d)))) = stored {
                return Some(d);
            }
        }
        let read = match position.map(|p| self.inner.log.read_position(p)) {
            Some(Ok(Some(e))) if e.event_id == event_id => Ok(Some(e)),
            _ => self.inner.log.read_event(event_id),
        };
        let env = match read {
            Ok(Some(env)) => env,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(%event_id, error = %e, "projections: history detail unreadable");
                return None;
            }
        };
        if let Some(d) = EventDetail::stored(&env.event_type, env.schema_version, &env.data) {
            return Some(d);
        }
        match CourseEvent::decode(&env.event_type, env.schema_version, &env.data) {
            Ok(CourseEvent::EventCorrected(c)) => EventDetail::of(&c.replacement),
            Ok(e) => EventDetail::of(&e),
            Err(_) => {
                warn_bad(env.position, &env.event_type, env.schema_version);
                None
            }
        }
    }

    /// The stream version of a course as folded so far.
    pub fn course_version(&self, id: CourseId) -> Option<u64> {
        self.read().courses.get(&id).map(|v| v.version)
    }

    /// Whether an opened course is visible to the caller, by the same rule as
    /// `app::access::can_see_course` (auditors see every course, admins none, others the courses
    /// they hold a role on), from the projection every course has in memory: a read does not
    /// need the course's decision state, which is cached for only some courses. `None`: no
    /// such course.
    pub fn course_visible_to(&self, id: CourseId, account: AccountId, role: Role) -> Option<bool> {
        let st = self.read();
        let view = st.courses.get(&id).filter(|v| v.programme.is_some())?;
        Some(match role {
            Role::Auditor => true,
            Role::Admin => false,
            _ => view.participants.iter().any(|p| p.account_id == account),
        })
    }

    /// Current participants of a course (account and role), for access control.
    pub fn course_participants(&self, id: CourseId) -> Vec<(AccountId, Role)> {
        self.read()
            .courses
            .get(&id)
            .map(|v| v.participants.iter().map(|p| (p.account_id, p.role)).collect())
            .unwrap_or_default()
    }

    /// Courses where the account currently holds any role (a closed course keeps the people
    /// who were on it when it closed).
    pub fn courses_of(&self, account: AccountId) -> Vec<CourseId> {
        self.read().by_account.get(&account).map(|s| s.iter().copied().collect()).unwrap_or_default()
    }

    /// Every open course as a summary, most urgent contact first (for auditors).
    pub fn all_course_summaries(&self) -> Vec<MyCourse> {
        let now = self.now();
        let st = self.read();
        let mut out: Vec<MyCourse> = st
            .courses
            .values()
            .filter(|v| v.is_open())
            .map(|v| views::my_course(v, AccountId(Uuid::nil()), now))
            .collect();
        out.sort_by(|a, b| {
            (std::cmp::Reverse(a.contact), a.next_contact_due).cmp(&(std::cmp::Reverse(b.contact), b.next_contact_due))
        });
        out
    }

    /// The phone's home screen: the account's open courses, most urgent contact first.
    pub fn my_courses(&self, account: AccountId) -> Vec<MyCourse> {
        let now = self.now();
        let st = self.read();
        let mut out: Vec<MyCourse> = st
            .by_account
            .get(&account)
            .into_iter()
            .flatten()
            .filter_map(|id| st.courses.get(id))
            .filter(|v| v.is_open())
            .map(|v| views::my_course(v, account, now))
            .collect();
        out.sort_by(|a, b| {
            (std::cmp::Reverse(a.contact), a.next_contact_due).cmp(&(std::cmp::Reverse(b.contact), b.next_contact_due))
        });
        out
    }

    /// A caseworker's open courses ordered by how overdue contact is (most overdue first).
    pub fn contact_worklist(&self, caseworker: AccountId) -> Vec<ContactWorkItem> {
        let today = cph::local_date(self.now());
        let st = self.read();
        let mut out: Vec<ContactWorkItem> = st
            .by_account
            .get(&caseworker)
            .into_iter()
            .flatten()
            .filter_map(|id| st.courses.get(id).map(|v| (*id, v)))
            .filter(|(_, v)| {
                v.is_open() && v.participants.iter().any(|p| p.account_id == caseworker && p.role == Role::Caseworker)
            })
            .map(|(id, v)| ContactWorkItem {
                course_id: id,
                young_person: v.young_person,
                compliance: views::compliance(v, today),
            })
            .collect();
        out.sort_by_key(|w| (w.compliance.urgency(), w.course_id));
        out
    }

    /// The course status and contact frequency as they stood at `cut`, replayed from the
    /// course's stream (not from the projection), with the same fold. `Ok(None)`: no events.
    pub fn course_as_of(
        &self,
        id: CourseId,
        cut: AsOf,
    ) -> Result<Option<(CourseStatus, ContactFrequency)>, ProjectionError> {
        let stream = StreamId::for_entity("course", id.0);
        let envs = self
            .inner
            .log
            .read_stream(&stream, 1, false, usize::MAX)
            .map_err(|e| ProjectionError::Log(e.to_string()))?;
        let (view, now, _) = fold_envelopes(id, &envs, cut);
        if view.version == 0 {
            return Ok(None);
        }
        let now = now.unwrap_or_else(|| self.now());
        Ok(Some((views::course_status(&view, now), views::contact_frequency(&view, now))))
    }
}
