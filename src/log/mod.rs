//! The durable event log: segment files are the truth, sled is the index.
//!
//! - [`EventLog::open`] recovers the tail of the last segment, opens (or rebuilds) the index,
//!   catches it up from its checkpoint and starts the single writer.
//! - [`EventLog::append`] hands events to the writer, which answers only after `fdatasync`.
//! - Reads (`read_stream`, `read_all`, `iter_from`, `subscribe`) never see an event before it is
//!   durable and indexed.
//!
//! Invariants: positions and stream versions are gap-free; every record is framed with its
//! length and CRC32C and chained by SHA-256 twice (globally and per stream); the index is
//! written only after the log is durable, so it is never ahead of the log.

pub(crate) mod envelope;
mod index;
pub(crate) mod record;
pub(crate) mod segment;
mod stream;
pub mod verify;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

pub use envelope::{
    CanonicalFields, DecodeError, Envelope, EnvelopeJson, Hash, LogActor, Metadata, NewEvent, OwnedEnvelopeJson,
    ZERO_HASH, from_nanos, to_nanos,
};
pub use index::{IndexError, Loc, StreamHead};
pub use record::{MAX_DATA, PayloadRef, decode_payload, decode_payload_ref, frame_head};
#[doc(hidden)] // for benches/hot_paths.rs
pub use record::{RecordHeader, crc_ok, encode_frame};
pub use segment::ChainTip;
pub use stream::{InvalidStreamId, StreamId, category_of, entity_id_of};

use crate::clock::{SharedClock, SystemClock};
use index::Index;
use segment::{HEADER_LEN, Segment};
use writer::{Request, Writer};

/// Whether an append waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// `fdatasync` before any append is acknowledged. The only setting for real data.
    #[default]
    Fsync,
    /// No sync at all: an OS crash or power cut loses acknowledged events. For benchmarks, to
    /// measure what durability costs.
    None,
}

#[derive(Clone)]
pub struct LogConfig {
    /// The data directory; the log lives in `log/`, the index in `index/`.
    pub dir: PathBuf,
    /// A segment is sealed and a new one started once it would grow past this.
    pub segment_size: u64,
    pub durability: Durability,
    pub clock: SharedClock,
    /// Called during index catch-up or rebuild with (done, total) positions.
    pub progress: Option<Arc<dyn Fn(u64, u64) + Send + Sync>>,
}

impl LogConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LogConfig {
            dir: dir.into(),
            segment_size: 64 << 20,
            durability: Durability::Fsync,
            clock: Arc::new(SystemClock),
            progress: None,
        }
    }
}

/// What the stream must look like for an append to go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "version")]
pub enum ExpectedVersion {
    Any,
    /// The stream has no events yet.
    NoStream,
    /// The stream's current version (its last event's version) is exactly this.
    Exact(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct AppendResult {
    pub first_position: u64,
    pub last_position: u64,
    /// The stream's version after the append (its last event's version).
    pub version: u64,
    /// True when every event id was already stored with the same content: nothing was appended
    /// and this is the original result.
    pub duplicate: bool,
    /// When the log recorded the events, exactly as stored (`None` for a duplicate: the
    /// original's time is not looked up). Lets a caller apply what it appended without reading
    /// it back.
    pub recorded_at: Option<time::OffsetDateTime>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AppendError {
    #[error("stream {stream} is at version {actual}, expected {expected:?}")]
    WrongExpectedVersion { stream: StreamId, expected: ExpectedVersion, actual: u64 },
    #[error("event id {event_id} is already stored with different content")]
    EventIdConflict { event_id: Uuid },
    #[error("invalid append: {0}")]
    Invalid(String),
    /// The disk refused (full, read-only, failed sync). Nothing of the append was acknowledged.
    #[error("storage unavailable: {0}")]
    Storage(String),
    #[error("the log is shut down")]
    Closed,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("data directory {path}: {source}")]
    Dir { path: String, source: std::io::Error },
    #[error("data directory {0} is in use by another vivirk process")]
    Locked(String),
    #[error(transparent)]
    Damaged(#[from] segment::ScanError),
    #[error("index: {0}")]
    Index(#[from] IndexError),
    #[error("log: {0}")]
    Log(String),
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ReadError {
    #[error("the log is damaged: {0}")]
    Damaged(String),
    #[error("index: {0}")]
    Index(String),
}

#[derive(Default, Debug)]
pub struct LogStats {
    pub batches: AtomicU64,
    pub events: AtomicU64,
    /// Time the writer spent, in nanoseconds: checking and encoding, writing, syncing, indexing.
    pub prepare_ns: AtomicU64,
    pub write_ns: AtomicU64,
    pub sync_ns: AtomicU64,
    pub index_ns: AtomicU64,
    /// Syncs that took longer than 10 ms, and the longest one (ns): the disk's stalls.
    pub slow_syncs: AtomicU64,
    pub max_sync_ns: AtomicU64,
}

/// What the writer and the readers share.
pub(crate) struct Shared {
    segments: RwLock<Vec<Arc<Segment>>>,
    committed: AtomicU64,
    /// Bytes written to the active segment (it is preallocated, so its size says nothing).
    active_end: AtomicU64,
    head_hash: Mutex<Hash>,
    watch: watch::Sender<u64>,
    pub(crate) poisoned: AtomicBool,
    pub(crate) index_stale: AtomicBool,
    pub(crate) stats: LogStats,
}

impl Shared {
    fn publish(&self, position: u64, hash: Hash) {
        *self.head_hash.lock().unwrap_or_else(|p| p.into_inner()) = hash;
        self.committed.store(position, Ordering::Release);
        self.watch.send_replace(position);
    }

    fn push_segment(&self, seg: Arc<Segment>) {
        self.segments.write().unwrap_or_else(|p| p.into_inner()).push(seg);
    }

    fn segment_for(&self, position: u64) -> Option<Arc<Segment>> {
        let segs = self.segments.read().unwrap_or_else(|p| p.into_inner());
        let i = segs.partition_point(|s| s.first_position <= position);
        i.checked_sub(1).map(|i| segs[i].clone())
    }

    fn segment_after(&self, first_position: u64) -> Option<Arc<Segment>> {
        let segs = self.segments.read().unwrap_or_else(|p| p.into_inner());
        let i = segs.partition_point(|s| s.first_position <= first_position);
        segs.get(i).cloned()
    }

    /// Reads the record at `loc` in place and hands `f` what a point read needs.
    fn with_loc<R>(&self, loc: Loc, f: impl FnOnce(&EventRef<'_>) -> R) -> Result<R, String> {
        let seg =
            self.segment_for(loc.position).ok_or_else(|| format!("no segment holds position {}", loc.position))?;
        let read = segment::read_frame_with(&seg.file, loc.offset as u64, |payload| {
            let p = record::decode_payload_ref(payload).map_err(|e| e.to_string())?;
            let c = &p.canonical;
            if c.position != loc.position {
                return Err(format!("index points at position {} but found {}", loc.position, c.position));
            }
            let event = EventRef {
                position: c.position,
                event_id: c.event_id,
                event_type: c.event_type,
                schema_version: c.schema_version,
                data: p.data,
            };
            Ok(f(&event))
        })?;
        read.unwrap_or_else(|| Err(format!("no record at position {}", loc.position)))
    }

    fn read_loc(&self, loc: Loc) -> Result<Envelope, String> {
        let seg =
            self.segment_for(loc.position).ok_or_else(|| format!("no segment holds position {}", loc.position))?;
        match segment::read_frame_at(&seg.file, loc.offset as u64)? {
            Some(r) if r.envelope.position == loc.position => Ok(r.envelope),
            Some(r) => Err(format!("index points at position {} but found {}", loc.position, r.envelope.position)),
            None => Err(format!("no record at position {}", loc.position)),
        }
    }
}

struct Inner {
    shared: Arc<Shared>,
    index: Arc<Index>,
    tx: mpsc::Sender<Request>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    dir: PathBuf,
    _lock: std::fs::File,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropping `tx` lets the writer drain what is queued and stop; wait so the files are
        // released when the log is dropped (tests reopen the same directory).
        let (tx, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.tx, tx));
        if let Some(h) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = h.join();
        }
    }
}

/// An event as a point read sees it, borrowed from the record (see [`EventLog::with_event_at`]).
pub struct EventRef<'a> {
    pub position: u64,
    pub event_id: Uuid,
    pub event_type: &'a str,
    pub schema_version: u16,
    pub data: &'a [u8],
}

/// A handle on the log; cheap to clone.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
}

/// How `open` went: for the operator and for readiness.
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    pub head: u64,
    pub torn_tail: Option<(String, u64, String)>,
    pub index_rebuilt: Option<String>,
    pub index_caught_up: u64,
}

/// Takes the data directory's exclusive lock (released when the file is dropped or the process dies).
pub fn lock_data_dir(dir: &Path) -> Result<std::fs::File, OpenError> {
    use std::os::fd::AsRawFd;
    let path = dir.join("LOCK");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| OpenError::Dir { path: path.display().to_string(), source })?;
    // SAFETY: flock on an fd we own; released by the kernel when the process dies.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(OpenError::Locked(dir.display().to_string()));
    }
    Ok(f)
}

impl EventLog {
    pub fn open(config: LogConfig) -> Result<(Self, OpenReport), OpenError> {
        let dir_err = |p: &Path| {
            let path = p.display().to_string();
            move |source| OpenError::Dir { path, source }
        };
        let log_dir = config.dir.join("log");
        std::fs::create_dir_all(&log_dir).map_err(dir_err(&log_dir))?;
        let lock = lock_data_dir(&config.dir)?;
        let mut report = OpenReport::default();

        // 1. The log: find the segments, recover the tail of the last one.
        let mut list = segment::list_segments(&log_dir).map_err(dir_err(&log_dir))?;
        if list.is_empty() {
            let seg = segment::create(&log_dir, 1, config.segment_size).map_err(dir_err(&log_dir))?;
            list.push((1, seg.path));
        }
        let (end, tip) = loop {
            let (first, path) = list.last().cloned().ok_or_else(|| OpenError::Log("no segments".into()))?;
            let bytes = std::fs::read(&path).map_err(dir_err(&path))?;
            let before = (first == 1).then(ChainTip::default);
            let scan = segment::scan(&bytes, &path, before)?;
            if scan.end == HEADER_LEN && list.len() > 1 {
                // A segment created by a roll whose first batch never made it (or never started):
                // nothing in it was acknowledged. Drop it and recover the sealed one before it.
                // (Scanned without its predecessor, an empty segment cannot know the chain's tip.)
                tracing::warn!(segment = %path.display(), "removing an empty last segment left by a crash");
                std::fs::remove_file(&path).map_err(dir_err(&path))?;
                list.pop();
                continue;
            }
            if let Some((offset, reason)) = &scan.torn {
                tracing::warn!(
                    segment = %path.display(), offset, cut_at = scan.end, reason = %reason,
                    "cutting a torn tail that was never acknowledged"
                );
                report.torn_tail = Some((path.display().to_string(), *offset, reason.clone()));
                let f = std::fs::OpenOptions::new().write(true).open(&path).map_err(dir_err(&path))?;
                f.set_len(scan.end).map_err(dir_err(&path))?;
                f.sync_all().map_err(dir_err(&path))?;
            }
            break (scan.end, scan.tip);
        };
        let mut segments = Vec::with_capacity(list.len());
        for (i, (first, path)) in list.iter().enumerate() {
            let last = i + 1 == list.len();
            let seg = segment::open(path, *first, last).map_err(dir_err(path))?;
            if last {
                segment::preallocate(&seg.file, config.segment_size).map_err(dir_err(path))?;
            }
            segments.push(Arc::new(seg));
        }
        let active = segments.last().cloned().ok_or_else(|| OpenError::Log("no segments".into()))?;
        let (watch_tx, _) = watch::channel(tip.position);
        let shared = Arc::new(Shared {
            segments: RwLock::new(segments),
            committed: AtomicU64::new(tip.position),
            active_end: AtomicU64::new(end),
            head_hash: Mutex::new(tip.hash),
            watch: watch_tx,
            poisoned: AtomicBool::new(false),
            index_stale: AtomicBool::new(false),
            stats: LogStats::default(),
        });
        report.head = tip.position;

        // 2. The index: open, or rebuild when it is missing, damaged or ahead of the log.
        let index_dir = config.dir.join("index");
        let opened = std::panic::catch_unwind(|| Index::open(&index_dir));
        let rebuild_reason = match opened {
            Ok(Ok(i)) if i.checkpoint() <= tip.position => Ok(i),
            Ok(Ok(i)) => {
                let why = format!("index checkpoint {} is ahead of the log head {}", i.checkpoint(), tip.position);
                drop(i);
                Err(why)
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("sled panicked while opening the index".to_string()),
        };
        let index = match rebuild_reason {
            Ok(i) => i,
            Err(why) => {
                tracing::warn!(reason = %why, "rebuilding the index from the log");
                report.index_rebuilt = Some(why);
                std::fs::remove_dir_all(&index_dir).map_err(dir_err(&index_dir))?;
                Index::open(&index_dir)?
            }
        };
        let index = Arc::new(index);
        report.index_caught_up = catch_up(&shared, &index, tip.position, config.progress.as_deref())?;

        // 3. The writer and the index persister.
        let (persist_tx, persister) = writer::spawn_persister(index.clone(), shared.clone())
            .map_err(|e| OpenError::Log(format!("cannot start the index persister: {e}")))?;
        let (tx, rx) = mpsc::channel(16 * 1024);
        let spare = segment::SparePrep::start(&log_dir, config.segment_size)
            .map_err(|e| OpenError::Log(format!("cannot start the segment preparer: {e}")))?;
        let writer = Writer {
            spare,
            dir: log_dir,
            shared: shared.clone(),
            index: index.clone(),
            active,
            end,
            tip,
            segment_size: config.segment_size,
            durability: config.durability,
            clock: config.clock.clone(),
            persist_tx,
            persister: Some(persister),
            buf: Vec::with_capacity(1 << 20),
            scratch: Vec::with_capacity(512),
        };
        let handle = std::thread::Builder::new()
            .name("vivirk-log-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| OpenError::Log(format!("cannot start the writer thread: {e}")))?;
        let log = EventLog {
            inner: Arc::new(Inner {
                shared,
                index,
                tx,
                writer: Mutex::new(Some(handle)),
                dir: config.dir.clone(),
                _lock: lock,
            }),
        };
        Ok((log, report))
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Appends events to one stream, atomically, once they are durable.
    pub async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, AppendError> {
        let (reply, rx) = oneshot::channel();
        let req = Request::Append { stream: stream.clone(), expected, events, reply };
        self.inner.tx.send(req).await.map_err(|_| AppendError::Closed)?;
        rx.await.map_err(|_| AppendError::Closed)?
    }

    /// The same, for callers outside an async runtime (CLI tools, benchmarks).
    pub fn append_blocking(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, AppendError> {
        let (reply, rx) = oneshot::channel();
        let req = Request::Append { stream: stream.clone(), expected, events, reply };
        self.inner.tx.blocking_send(req).map_err(|_| AppendError::Closed)?;
        rx.blocking_recv().map_err(|_| AppendError::Closed)?
    }

    /// Finishes every append already handed over, then stops the writer.
    pub async fn shutdown(&self) {
        let (reply, rx) = oneshot::channel();
        if self.inner.tx.send(Request::Shutdown { reply }).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// The last durable position (0 for an empty log) and its hash.
    pub fn head(&self) -> (u64, Hash) {
        let hash = *self.inner.shared.head_hash.lock().unwrap_or_else(|p| p.into_inner());
        // Read the position after the hash: publish stores the hash first.
        let pos = self.inner.shared.committed.load(Ordering::Acquire);
        if pos == 0 { (0, ZERO_HASH) } else { (pos, hash) }
    }

    pub fn committed(&self) -> u64 {
        self.inner.shared.committed.load(Ordering::Acquire)
    }

    /// Wakes on every newly durable position.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.shared.watch.subscribe()
    }

    /// Waits until the log has reached `position` (read-your-writes across handles).
    pub async fn wait_for(&self, position: u64) {
        let mut rx = self.subscribe();
        let _ = rx.wait_for(|p| *p >= position).await;
    }

    pub fn stats(&self) -> (u64, u64) {
        let s = &self.inner.shared.stats;
        (s.batches.load(Ordering::Relaxed), s.events.load(Ordering::Relaxed))
    }

    /// The writer's counters (for `/metrics` and the benchmark).
    pub fn writer_stats(&self) -> &LogStats {
        &self.inner.shared.stats
    }

    pub fn is_healthy(&self) -> bool {
        !self.inner.shared.poisoned.load(Ordering::Acquire) && !self.inner.shared.index_stale.load(Ordering::Acquire)
    }

    pub fn stream_head(&self, stream: &StreamId) -> Result<Option<StreamHead>, ReadError> {
        Ok(self.inner.index.head(&stream.index_key()))
    }

    /// Every stream of an entity category (`company`, `course`, …) that has events.
    pub fn entity_streams(&self, category: &str) -> Vec<StreamId> {
        let mut prefix = category.as_bytes().to_vec();
        prefix.push(0);
        let mut out: Vec<StreamId> = self
            .inner
            .index
            .stream_keys_with_prefix(&prefix)
            .iter()
            .filter_map(|k| StreamId::from_index_key(k))
            .collect();
        out.sort();
        out
    }

    /// The event with this id, if stored.
    pub fn read_event(&self, event_id: Uuid) -> Result<Option<Envelope>, ReadError> {
        let candidates = self.inner.index.event_candidates(event_id).map_err(|e| ReadError::Index(e.to_string()))?;
        for loc in candidates {
            if loc.position > self.committed() {
                continue;
            }
            let env = self.inner.shared.read_loc(loc).map_err(ReadError::Damaged)?;
            if env.event_id == event_id {
                return Ok(Some(env));
            }
        }
        Ok(None)
    }

    /// What `f` makes of the event at a global position, if it is committed, read in place:
    /// no envelope is built (a history page reads 50 payloads this way).
    pub fn with_event_at<R>(&self, position: u64, f: impl FnOnce(&EventRef<'_>) -> R) -> Result<Option<R>, ReadError> {
        if position == 0 || position > self.committed() {
            return Ok(None);
        }
        match self.inner.index.loc(position).map_err(|e| ReadError::Index(e.to_string()))? {
            None => Ok(None),
            Some(loc) => self.inner.shared.with_loc(loc, f).map(Some).map_err(ReadError::Damaged),
        }
    }

    /// [`Self::with_event_at`] with the record's offset in its segment as the caller last saw it
    /// ([`LogIter::next_payload_into`]; 0 when unknown): read there directly, without the
    /// index's lookup, which is a `pread` of its own for an event outside the newest ones (half
    /// the reads of a history page). The record read is checked (CRC, and that it holds
    /// `position`); an offset that does not hold it falls back to the index.
    pub fn with_event_near<R>(
        &self,
        position: u64,
        offset: u32,
        f: impl FnOnce(&EventRef<'_>) -> R,
    ) -> Result<Option<R>, ReadError> {
        if position == 0 || position > self.committed() {
            return Ok(None);
        }
        let mut f = Some(f);
        if offset != 0
            && let Ok(Some(r)) = self.inner.shared.with_loc(Loc { position, offset }, |e| f.take().map(|f| f(e)))
        {
            return Ok(Some(r));
        }
        // `f` is still there: `with_loc` calls it only for the record it was sent to.
        match f {
            Some(f) => self.with_event_at(position, f),
            None => Ok(None),
        }
    }

    /// The event at a global position, if it is committed.
    pub fn read_position(&self, position: u64) -> Result<Option<Envelope>, ReadError> {
        if position == 0 || position > self.committed() {
            return Ok(None);
        }
        match self.inner.index.loc(position).map_err(|e| ReadError::Index(e.to_string()))? {
            None => Ok(None),
            Some(loc) => self.inner.shared.read_loc(loc).map(Some).map_err(ReadError::Damaged),
        }
    }

    /// Up to `limit` events of a stream from `from_version` (inclusive), oldest first, or newest
    /// first when `backward` (then `from_version = u64::MAX` means "from the end").
    pub fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        backward: bool,
        limit: usize,
    ) -> Result<Vec<Envelope>, ReadError> {
        let key = stream.index_key();
        let locs = if backward {
            self.inner.index.stream_range(&key, 1, from_version, true, limit)
        } else {
            self.inner.index.stream_range(&key, from_version.max(1), u64::MAX, false, limit)
        }
        .map_err(|e| ReadError::Index(e.to_string()))?;
        let committed = self.committed();
        locs.into_iter()
            .filter(|(_, loc)| loc.position <= committed)
            .map(|(_, loc)| self.inner.shared.read_loc(loc).map_err(ReadError::Damaged))
            .collect()
    }

    /// Up to `limit` events of the whole log from `from_position` (inclusive).
    pub fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<Envelope>, ReadError> {
        self.iter_from(from_position)?.take(limit).collect()
    }

    /// Iterates the log from `from_position` to the position that was durable when called.
    pub fn iter_from(&self, from_position: u64) -> Result<LogIter, ReadError> {
        LogIter::new(self.inner.shared.clone(), &self.inner.index, from_position.max(1), self.committed())
    }

    /// Bytes on disk: (log segments, index).
    pub fn disk_usage(&self) -> (u64, u64) {
        let segs = self.inner.shared.segments.read().unwrap_or_else(|p| p.into_inner());
        let sealed: u64 =
            segs[..segs.len().saturating_sub(1)].iter().map(|s| s.file.metadata().map(|m| m.len()).unwrap_or(0)).sum();
        drop(segs);
        (sealed + self.inner.shared.active_end.load(Ordering::Relaxed), self.inner.index.size_on_disk())
    }

    /// Persists and flushes the index (tools only; see [`Index::flush`]).
    pub fn flush_index(&self) -> Result<(), IndexError> {
        self.inner.index.flush()
    }
}

/// Adds log records after the index's last position up to `head`, then persists; returns how
/// many.
fn catch_up(
    shared: &Arc<Shared>,
    index: &Index,
    head: u64,
    progress: Option<&(dyn Fn(u64, u64) + Send + Sync)>,
) -> Result<u64, OpenError> {
    let from = index.indexed() + 1;
    if from > head {
        return Ok(0);
    }
    let mut it = LogIter::new(shared.clone(), index, from, head).map_err(|e| OpenError::Log(e.to_string()))?;
    let mut chunk: Vec<(Vec<u8>, Uuid, Loc, Hash)> = Vec::with_capacity(20_000);
    let mut done = 0u64;
    let flush = |chunk: &mut Vec<(Vec<u8>, Uuid, Loc, Hash)>| {
        let entries: Vec<index::Entry<'_>> = chunk
            .iter()
            .map(|(k, id, loc, h)| index::Entry { stream_key: k, event_id: *id, loc: *loc, stream_hash: *h })
            .collect();
        index.add(&entries);
        drop(entries);
        chunk.clear();
    };
    while let Some(r) = it.next_with_offset() {
        let (offset, env) = r.map_err(|e| OpenError::Log(e.to_string()))?;
        chunk.push((
            env.stream.index_key(),
            env.event_id,
            Loc { position: env.position, offset: offset as u32 },
            env.stream_hash,
        ));
        done += 1;
        if chunk.len() >= 20_000 {
            flush(&mut chunk);
            if let Some(p) = progress {
                p(done, head + 1 - from);
            }
        }
    }
    flush(&mut chunk);
    index.persist()?;
    if let Some(p) = progress {
        p(done, head + 1 - from);
    }
    Ok(done)
}

/// A sequential iterator over the log, across segments.
pub struct LogIter {
    shared: Arc<Shared>,
    segment: Option<Arc<Segment>>,
    cursor: Option<segment::SegmentCursor>,
    next_position: u64,
    until: u64,
    failed: bool,
}

impl LogIter {
    fn new(shared: Arc<Shared>, index: &Index, from: u64, until: u64) -> Result<Self, ReadError> {
        let mut it = LogIter { shared, segment: None, cursor: None, next_position: from, until, failed: false };
        if from > until {
            return Ok(it);
        }
        let seg = it.shared.segment_for(from).ok_or_else(|| ReadError::Damaged(format!("no segment holds {from}")))?;
        // Seek straight to `from` when the index knows it; otherwise (catching up) to the last
        // position it knows in this segment, or the segment's start, and skip forward.
        let known = from.min(index.indexed());
        let (mut pos, offset) = match index.loc(known).map_err(|e| ReadError::Index(e.to_string()))? {
            Some(loc) if loc.position >= seg.first_position => (loc.position, loc.offset as u64),
            _ => (seg.first_position, HEADER_LEN),
        };
        let mut cursor = segment::SegmentCursor::new(seg.clone(), offset);
        while pos < from {
            if !cursor.skip_record().map_err(ReadError::Damaged)? {
                return Err(ReadError::Damaged(format!("position {from} is missing from its segment")));
            }
            pos += 1;
        }
        it.segment = Some(seg);
        it.cursor = Some(cursor);
        Ok(it)
    }

    /// The next envelope and the byte offset of its record in its segment.
    fn next_with_offset(&mut self) -> Option<Result<(u64, Envelope), ReadError>> {
        self.advance(|at, payload| {
            record::decode_payload(payload).map(|r| (at, r.envelope)).map_err(|e| format!("record at offset {at}: {e}"))
        })
    }

    /// Appends the next record's payload (CRC and position checked, not decoded) to `bytes` and
    /// returns where it sits, with the record's offset in its segment (a reader may keep it, to
    /// read the event again without the index: [`EventLog::with_event_near`]): for bulk readers
    /// that decode in place on other threads (a rebuild), without building an envelope per event.
    pub fn next_payload_into(
        &mut self,
        bytes: &mut Vec<u8>,
    ) -> Option<Result<(std::ops::Range<usize>, u32), ReadError>> {
        self.advance(|off, payload| {
            let start = bytes.len();
            bytes.extend_from_slice(payload);
            // Segments are far below 4 GiB (`LogConfig::segment_size`); 0 means "unknown".
            Ok((start..bytes.len(), u32::try_from(off).unwrap_or(0)))
        })
    }

    /// Moves to the next record, checks it holds the next position, and hands it to `f`.
    fn advance<R>(&mut self, f: impl FnOnce(u64, &[u8]) -> Result<R, String>) -> Option<Result<R, ReadError>> {
        if self.failed || self.next_position > self.until {
            return None;
        }
        let seg = self.segment.clone()?;
        // Move to the next segment when this position starts it.
        if let Some(next) = self.shared.segment_after(seg.first_position)
            && next.first_position == self.next_position
        {
            self.cursor = Some(segment::SegmentCursor::new(next.clone(), HEADER_LEN));
            self.segment = Some(next);
        }
        let cursor = self.cursor.as_mut()?;
        let expected = self.next_position;
        let r = match cursor.next_payload() {
            Ok(Some((off, payload))) => match record::payload_position(payload) {
                Some(p) if p == expected => f(off, payload).map_err(ReadError::Damaged),
                Some(p) => Err(ReadError::Damaged(format!("expected position {expected} at offset {off}, found {p}"))),
                None => Err(ReadError::Damaged(format!("record at offset {off} is too short"))),
            },
            Ok(None) => Err(ReadError::Damaged(format!("position {expected} is missing"))),
            Err(e) => Err(ReadError::Damaged(e)),
        };
        match &r {
            Ok(_) => self.next_position += 1,
            Err(_) => self.failed = true,
        }
        Some(r)
    }
}

impl Iterator for LogIter {
    type Item = Result<Envelope, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_with_offset().map(|r| r.map(|(_, e)| e))
    }
}

#[cfg(test)]
mod tests;
