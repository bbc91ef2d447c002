//! The index: where each event is, which ids exist, and each stream's head. Derived from the log,
//! held in memory for the hot paths, persisted in sled so a restart does not rescan the log.
//!
//! Why not one sled key per event: on this class of machine a sled insert costs 8–10 µs, and an
//! event needs two or three of them, which caps durable appends far below what group commit
//! delivers. So the writer updates memory, and a persist writes the new events' entries to a file
//! of fixed 24-byte slots, `entries.idx` (position `p` at byte `(p - 1) * 24`: `event_id[16]
//! stream_no u32 offset u32`), and the rest to sled:
//!
//! | sled key                 | value                                                        |
//! |--------------------------|--------------------------------------------------------------|
//! | `k` block(BE u64)        | how many slots of block `block` (positions `block*4096+1 ..`) the CRC covers, u32, and their CRC32C, u32 |
//! | `n` stream_no(BE u32)    | the stream's index key                                       |
//! | `h` stream_no(BE u32)    | version u64, stream_hash[32] as of the checkpoint            |
//! | `m:checkpoint`           | the last position persisted, u64                             |
//!
//! Why the entries are not in sled (they were, as `c` block keys of 4,096 entries, until
//! 2026-11-28; an older store is moved at open): sled keeps every node it writes in memory for
//! as long as its handle lives, whatever its cache bound, so the index's 24 bytes per event were
//! held twice, growing with the record. The file is read once at open and then only written.
//!
//! A persist writes the file (`fdatasync`ed: sled's own writes reach its disk in the background,
//! and a checkpoint must never name slots the file could lose), then single sled keys, in an
//! order that makes every prefix of it harmless (sled's batches take its process-wide lock
//! exclusively, which can deadlock it; see `crate::open_sled`): the CRCs of the blocks it
//! touched, new stream numbers, moved heads, and the checkpoint **last**. Only what is at or
//! before the checkpoint is loaded: slots after it are ignored (and written again), and a head
//! ahead of it is left for the catch-up, which re-reads those events from the log and rewrites
//! the same slots and keys with the same values. A block whose slots do not match its CRC, or a
//! file shorter than the checkpoint, makes the log rebuild the index. It is persisted when a block fills, about once a second
//! otherwise, and at shutdown, and never flushed on the request path: after a crash the index is
//! behind the log (never ahead: it is written after the log's fsync) and catches up from the
//! checkpoint.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::RwLock;

use uuid::Uuid;

use super::envelope::Hash;

pub const BLOCK: u64 = 4096;
const ENTRY: usize = 24;
const CHECKPOINT: &[u8] = b"m:checkpoint";
/// The slots file, beside sled's files in the index directory.
const ENTRIES_FILE: &str = "entries.idx";

/// Where a record lives: its global position (which names the segment) and its byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub position: u64,
    pub offset: u32,
}

/// The head of a stream: its current version and the hash of its last event's stream chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamHead {
    pub version: u64,
    pub stream_hash: Hash,
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("index entries file: {0}")]
    Io(#[from] std::io::Error),
    #[error("index entry is malformed: {0}")]
    Malformed(&'static str),
}

/// Event id → position, compactly: what the writer's idempotency check and `read_event` look up.
///
/// Kept for every event, so its size per event matters more than anything else here. A map from
/// the 16-byte id (24-byte entries in tables half to seven-eighths full) took ~52 bytes per event,
/// the largest share of a million-event server's memory. Here an entry is 8 bytes: a 32-bit
/// fingerprint of the id and the position, in sorted runs per shard, binary-searched. New
/// entries go into a small sorted vector beside the run (an insert moves at most an eighth of a
/// run's bytes), merged into the run when it reaches an eighth of it, so each entry is moved a
/// bounded number of times on average. (That vector was an exact map of the ids, ~40 bytes per
/// entry for up to an eighth of the entries.) An open puts the persisted entries straight into
/// the runs and sorts each once: 0.52–0.59 s to ready on a million events, against 0.77–0.85 s
/// merging them in as they came.
///
/// A fingerprint names **candidates**, not answers: the caller reads the event at each candidate
/// position and compares its id (the writer reads it anyway, to compare content). The
/// fingerprint is a keyed hash with a per-process random key, so clients cannot choose ids that
/// collide; a false candidate costs one read per 4 billion / (events in a shard) lookups.
/// Positions past `u32::MAX` are kept in an exact map.
struct Ids {
    shards: Vec<IdShard>,
    hasher: std::collections::hash_map::RandomState,
}

#[derive(Default)]
struct IdShard {
    /// `fingerprint << 32 | position`, sorted.
    run: Vec<u64>,
    /// The same, for entries not merged into `run` yet; sorted.
    recent: Vec<u64>,
    /// Positions past `u32::MAX`, exactly.
    wide: HashMap<Uuid, u64>,
}

const ID_SHARDS: usize = 256;

impl Default for Ids {
    fn default() -> Self {
        Self::with_shards(ID_SHARDS)
    }
}

/// The entries of `v` (sorted) with this fingerprint, as positions.
fn with_fingerprint(v: &[u64], fp: u64) -> impl Iterator<Item = u64> + '_ {
    let from = v.partition_point(|e| e >> 32 < fp);
    v[from..].iter().take_while(move |e| *e >> 32 == fp).map(|e| e & u64::from(u32::MAX))
}

impl Ids {
    fn with_shards(n: usize) -> Self {
        Ids {
            shards: (0..n).map(|_| IdShard::default()).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn with_capacity(n: usize) -> Self {
        let mut ids = Ids::default();
        for s in &mut ids.shards {
            s.run.reserve(n / ID_SHARDS + n / ID_SHARDS / 16 + 16);
        }
        ids
    }

    /// (shard, fingerprint)
    fn place(&self, id: &Uuid) -> (usize, u64) {
        use std::hash::BuildHasher;
        let h = self.hasher.hash_one(id.as_u128());
        ((h as usize) % self.shards.len(), h >> 32)
    }

    /// Positions that may hold the event with this id, each to be checked by reading it.
    fn candidates(&self, id: Uuid) -> Vec<u64> {
        let (shard, fp) = self.place(&id);
        let s = &self.shards[shard];
        let mut out: Vec<u64> = s.wide.get(&id).copied().into_iter().collect();
        out.extend(with_fingerprint(&s.recent, fp));
        out.extend(with_fingerprint(&s.run, fp));
        out
    }

    fn insert(&mut self, id: Uuid, position: u64) {
        let (shard, fp) = self.place(&id);
        let s = &mut self.shards[shard];
        if position > u64::from(u32::MAX) {
            s.wide.insert(id, position);
            return;
        }
        let e = fp << 32 | position;
        let at = s.recent.partition_point(|x| *x < e);
        s.recent.insert(at, e);
        if s.recent.len() < 64.max(s.run.len() / 8) {
            return;
        }
        // Merge: both sorted.
        let old = std::mem::take(&mut s.run);
        let moved = std::mem::take(&mut s.recent);
        let mut run = Vec::with_capacity(old.len() + moved.len());
        let (mut a, mut b) = (old.into_iter().peekable(), moved.into_iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x <= y => a.next(),
                (Some(_), Some(_)) | (None, Some(_)) => b.next(),
                (Some(_), None) => a.next(),
                (None, None) => break,
            };
            run.extend(next);
        }
        s.run = run;
    }

    /// Loading: entries go straight into the runs, unsorted, until [`Ids::loaded`].
    fn load(&mut self, id: Uuid, position: u64) {
        let (shard, fp) = self.place(&id);
        let s = &mut self.shards[shard];
        if position > u64::from(u32::MAX) {
            s.wide.insert(id, position);
        } else {
            s.run.push(fp << 32 | position);
        }
    }

    /// Ends a load: sorts the runs.
    fn loaded(&mut self) {
        for s in &mut self.shards {
            s.run.sort_unstable();
        }
    }

    /// Bytes held (for the memory breakdown in tests).
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.shards.iter().map(|s| (s.run.capacity() + s.recent.capacity()) * 8 + s.wide.capacity() * 24).sum()
    }
}

struct StreamEntry {
    no: u32,
    /// Positions of versions 1..=len.
    positions: Positions,
    hash: Hash,
}

/// A stream's positions in version order: 4 bytes each while every position fits in 32 bits
/// (the first 4 billion events), 8 after. One entry per event, so its width is most of what
/// the stream table costs.
#[derive(Debug, Clone, PartialEq)]
enum Positions {
    Narrow(Vec<u32>),
    Wide(Vec<u64>),
}

impl Default for Positions {
    fn default() -> Self {
        Positions::Narrow(Vec::new())
    }
}

impl Positions {
    fn len(&self) -> usize {
        match self {
            Positions::Narrow(v) => v.len(),
            Positions::Wide(v) => v.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The position of version `i + 1`.
    fn get(&self, i: usize) -> u64 {
        match self {
            Positions::Narrow(v) => u64::from(v[i]),
            Positions::Wide(v) => v[i],
        }
    }

    fn push(&mut self, p: u64) {
        match self {
            Positions::Narrow(v) => match u32::try_from(p) {
                Ok(n) => v.push(n),
                Err(_) => {
                    let mut wide: Vec<u64> = v.iter().map(|&n| u64::from(n)).collect();
                    wide.push(p);
                    *self = Positions::Wide(wide);
                }
            },
            Positions::Wide(v) => v.push(p),
        }
    }
}

#[derive(Default)]
struct Mem {
    /// `offsets[p - 1]`: the byte offset of position `p` in its segment.
    offsets: Vec<u32>,
    ids: Ids,
    streams: HashMap<Vec<u8>, StreamEntry>,
    /// stream_no → index key.
    stream_keys: Vec<Vec<u8>>,
    /// Per position: (event id, stream_no), kept until its block is persisted.
    unpersisted: Vec<(Uuid, u32)>,
    /// The first position in `unpersisted`.
    unpersisted_from: u64,
    /// Streams whose head moved since the last persist, and streams new since then.
    dirty: HashSet<u32>,
    new_streams: Vec<u32>,
}

pub struct Index {
    db: sled::Db,
    tree: sled::Tree,
    /// `entries.idx`: one 24-byte slot per position.
    entries: File,
    /// The block the next persisted position falls in, its slots persisted and their CRC (only
    /// persists use it, one at a time; it moves when one succeeds).
    tail: std::sync::Mutex<BlockCrc>,
    mem: RwLock<Mem>,
    persisting: std::sync::Mutex<()>,
}

/// A block of the entries file as far as it is persisted: `slots` slots, with this CRC32C.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct BlockCrc {
    block: u64,
    slots: u64,
    crc: u32,
}

fn block_crc_value(slots: u64, crc: u32) -> [u8; 8] {
    let mut v = [0u8; 8];
    v[..4].copy_from_slice(&(slots as u32).to_le_bytes());
    v[4..].copy_from_slice(&crc.to_le_bytes());
    v
}

/// Moves the entries of an index persisted before they had a file of their own (`c` block keys
/// in sled) into the file: written and synced, their blocks' CRCs inserted, then the old keys
/// removed. A crash in between leaves the old keys, and the next open moves them again.
fn move_chunks_to_file(tree: &sled::Tree, entries: &File, checkpoint: u64) -> Result<(), IndexError> {
    let mut blocks = Vec::new();
    let mut position = 0u64;
    for item in tree.scan_prefix(b"c") {
        let (k, v) = item?;
        let block = u64::from_be_bytes(k[1..].try_into().map_err(|_| IndexError::Malformed("chunk key"))?);
        if block * BLOCK >= checkpoint {
            break;
        }
        if block * BLOCK != position || v.len() % ENTRY != 0 {
            return Err(IndexError::Malformed("chunks are not contiguous"));
        }
        let slots = ((v.len() / ENTRY) as u64).min(checkpoint - block * BLOCK);
        let bytes = &v[..slots as usize * ENTRY];
        entries.write_all_at(bytes, block * BLOCK * ENTRY as u64)?;
        blocks.push((block, slots, crc32c::crc32c(bytes)));
        position += slots;
    }
    if position < checkpoint {
        return Err(IndexError::Malformed("chunks end before the checkpoint"));
    }
    entries.sync_data()?;
    for (block, slots, crc) in blocks {
        tree.insert(be_key(b'k', &block.to_be_bytes()), &block_crc_value(slots, crc))?;
    }
    let old: Vec<sled::IVec> = tree.scan_prefix(b"c").keys().collect::<Result<_, _>>()?;
    for k in old {
        tree.remove(k)?;
    }
    tracing::info!(checkpoint, "index: entries moved out of sled into their own file");
    Ok(())
}

/// One event to add, as the writer or the catch-up sees it.
pub struct Entry<'a> {
    pub stream_key: &'a [u8],
    pub event_id: Uuid,
    pub loc: Loc,
    pub stream_hash: Hash,
}

fn be_key(prefix: u8, n: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + n.len());
    k.push(prefix);
    k.extend_from_slice(n);
    k
}

impl Index {
    /// Opens sled and the entries file and loads the persisted index into memory.
    pub fn open(path: &Path) -> Result<Self, IndexError> {
        // sled writes its buffers out in the background (a crash loses at most what the next
        // open catches up from the log); we never wait for it.
        let db = crate::open_sled(path, Some(1000))?;
        let tree = db.open_tree("index")?;
        let checkpoint = match tree.get(CHECKPOINT)? {
            None => 0,
            Some(v) => u64::from_le_bytes(v.as_ref().try_into().map_err(|_| IndexError::Malformed("checkpoint"))?),
        };
        let entries = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path.join(ENTRIES_FILE))?;
        if tree.scan_prefix(b"c").next().is_some() {
            move_chunks_to_file(&tree, &entries, checkpoint)?;
        }
        let mut mem = Mem { unpersisted_from: checkpoint + 1, ..Mem::default() };
        for item in tree.scan_prefix(b"n") {
            let (k, v) = item?;
            let no = u32::from_be_bytes(k[1..].try_into().map_err(|_| IndexError::Malformed("stream number"))?);
            if no as usize != mem.stream_keys.len() {
                return Err(IndexError::Malformed("stream numbers are not dense"));
            }
            mem.stream_keys.push(v.to_vec());
            mem.streams.insert(v.to_vec(), StreamEntry { no, positions: Positions::default(), hash: Hash::default() });
        }
        mem.offsets.reserve(checkpoint as usize);
        // Sized once: growing a million-entry map step by step rehashes it again and again.
        mem.ids = Ids::with_capacity(checkpoint as usize);
        // Positions by stream number, so loading an event hashes nothing but its id; moved into
        // the streams map once per stream at the end.
        let mut by_no: Vec<Positions> = vec![Positions::default(); mem.stream_keys.len()];
        let mut crcs: HashMap<u64, (u64, u32)> = HashMap::new();
        for item in tree.scan_prefix(b"k") {
            let (k, v) = item?;
            let block = u64::from_be_bytes(k[1..].try_into().map_err(|_| IndexError::Malformed("block key"))?);
            let (len, crc) = match v.as_ref() {
                [a, b, c, d, e, f, g, h] => {
                    (u32::from_le_bytes([*a, *b, *c, *d]), u32::from_le_bytes([*e, *f, *g, *h]))
                }
                _ => return Err(IndexError::Malformed("block checksum")),
            };
            crcs.insert(block, (u64::from(len), crc));
        }
        if entries.metadata()?.len() < checkpoint * ENTRY as u64 {
            return Err(IndexError::Malformed("the entries file ends before the checkpoint"));
        }
        let mut tail = BlockCrc::default();
        let mut buf = vec![0u8; BLOCK as usize * ENTRY];
        let mut position = 0u64;
        for block in 0..checkpoint.div_ceil(BLOCK) {
            let needed = (checkpoint - block * BLOCK).min(BLOCK);
            let &(len, crc) = crcs.get(&block).ok_or(IndexError::Malformed("a block has no checksum"))?;
            if len < needed || len > BLOCK {
                return Err(IndexError::Malformed("a block's checksum covers less than the checkpoint"));
            }
            let bytes = &mut buf[..len as usize * ENTRY];
            entries.read_exact_at(bytes, block * BLOCK * ENTRY as u64)?;
            if crc32c::crc32c(bytes) != crc {
                return Err(IndexError::Malformed("a block does not match its checksum"));
            }
            let used = &bytes[..needed as usize * ENTRY];
            for e in used.chunks_exact(ENTRY) {
                position += 1;
                let id = Uuid::from_slice(&e[..16]).map_err(|_| IndexError::Malformed("event id"))?;
                let no = u32::from_le_bytes(e[16..20].try_into().map_err(|_| IndexError::Malformed("entry"))?);
                let offset = u32::from_le_bytes(e[20..24].try_into().map_err(|_| IndexError::Malformed("entry"))?);
                by_no.get_mut(no as usize).ok_or(IndexError::Malformed("unknown stream number"))?.push(position);
                mem.ids.load(id, position);
                mem.offsets.push(offset);
            }
            tail = BlockCrc { block, slots: needed, crc: crc32c::crc32c(used) };
        }
        mem.ids.loaded();
        if tail.slots == BLOCK {
            tail = BlockCrc { block: tail.block + 1, slots: 0, crc: 0 };
        }
        for (no, positions) in by_no.into_iter().enumerate() {
            let s = mem.streams.get_mut(&mem.stream_keys[no]).ok_or(IndexError::Malformed("unknown stream"))?;
            s.positions = positions;
        }
        for item in tree.scan_prefix(b"h") {
            let (k, v) = item?;
            let no = u32::from_be_bytes(k[1..].try_into().map_err(|_| IndexError::Malformed("head key"))?);
            if v.len() != 40 {
                return Err(IndexError::Malformed("stream head"));
            }
            let version = u64::from_le_bytes(v[..8].try_into().map_err(|_| IndexError::Malformed("head"))?);
            let key = mem.stream_keys.get(no as usize).ok_or(IndexError::Malformed("unknown stream number"))?.clone();
            let s = mem.streams.get_mut(&key).ok_or(IndexError::Malformed("unknown stream"))?;
            let known = s.positions.len() as u64;
            if version > known {
                // Moved by a persist whose checkpoint did not make it: the stream has events
                // after the checkpoint, and the catch-up sets its hash from the last of them.
                continue;
            }
            if version < known {
                return Err(IndexError::Malformed("stream head is behind its events"));
            }
            s.hash = Hash(v[8..40].try_into().map_err(|_| IndexError::Malformed("head"))?);
        }
        // Loading read every key through sled, which keeps the pages it read for as long as the
        // handle lives (its cache bound does not apply to them): a store reopened holds none.
        drop((tree, db));
        let db = crate::open_sled(path, Some(1000))?;
        let tree = db.open_tree("index")?;
        Ok(Index {
            db,
            tree,
            entries,
            tail: std::sync::Mutex::new(tail),
            mem: RwLock::new(mem),
            persisting: std::sync::Mutex::new(()),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Mem> {
        self.mem.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The last position in the index (in memory).
    pub fn indexed(&self) -> u64 {
        self.read().offsets.len() as u64
    }

    /// The last position persisted in sled.
    pub fn checkpoint(&self) -> u64 {
        self.read().unpersisted_from - 1
    }

    pub fn head(&self, stream_key: &[u8]) -> Option<StreamHead> {
        self.read()
            .streams
            .get(stream_key)
            .filter(|s| !s.positions.is_empty())
            .map(|s| StreamHead { version: s.positions.len() as u64, stream_hash: s.hash })
    }

    /// Where the event with this id may be: usually none or one location. The id is compared
    /// by reading the event (see [`Ids`]); `read_event` and the writer do.
    pub fn event_candidates(&self, id: Uuid) -> Vec<Loc> {
        let m = self.read();
        m.ids
            .candidates(id)
            .into_iter()
            .filter_map(|position| Some(Loc { position, offset: *m.offsets.get(position.checked_sub(1)? as usize)? }))
            .collect()
    }

    pub fn loc(&self, position: u64) -> Option<Loc> {
        let m = self.read();
        Some(Loc { position, offset: *m.offsets.get(position.checked_sub(1)? as usize)? })
    }

    /// Index keys of the streams that have events and whose key starts with `prefix`.
    pub fn stream_keys_with_prefix(&self, prefix: &[u8]) -> Vec<Vec<u8>> {
        self.read()
            .streams
            .iter()
            .filter(|(k, s)| k.starts_with(prefix) && !s.positions.is_empty())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Locations of versions `from..=to` of a stream, in the order asked.
    pub fn stream_range(&self, stream_key: &[u8], from: u64, to: u64, backward: bool, limit: usize) -> Vec<(u64, Loc)> {
        let m = self.read();
        let Some(s) = m.streams.get(stream_key) else { return Vec::new() };
        let len = s.positions.len() as u64;
        let (from, to) = (from.max(1), to.min(len));
        if from > to {
            return Vec::new();
        }
        let at = |v: u64| {
            let p = s.positions.get(v as usize - 1);
            (v, Loc { position: p, offset: m.offsets.get(p as usize - 1).copied().unwrap_or(0) })
        };
        if backward {
            (from..=to).rev().take(limit).map(at).collect()
        } else {
            (from..=to).take(limit).map(at).collect()
        }
    }

    /// Adds durable events (in position order, continuing the index) to memory.
    pub fn add(&self, entries: &[Entry<'_>]) {
        let mut guard = self.mem.write().unwrap_or_else(|p| p.into_inner());
        let m = &mut *guard;
        for e in entries {
            debug_assert_eq!(e.loc.position, m.offsets.len() as u64 + 1);
            let no = match m.streams.get_mut(e.stream_key) {
                Some(s) => {
                    s.positions.push(e.loc.position);
                    s.hash = e.stream_hash;
                    s.no
                }
                None => {
                    let no = m.stream_keys.len() as u32;
                    m.stream_keys.push(e.stream_key.to_vec());
                    m.streams.insert(
                        e.stream_key.to_vec(),
                        StreamEntry {
                            no,
                            positions: {
                                let mut p = Positions::default();
                                p.push(e.loc.position);
                                p
                            },
                            hash: e.stream_hash,
                        },
                    );
                    m.new_streams.push(no);
                    no
                }
            };
            m.dirty.insert(no);
            m.ids.insert(e.event_id, e.loc.position);
            m.offsets.push(e.loc.offset);
            m.unpersisted.push((e.event_id, no));
        }
    }

    /// Whether enough is waiting that the writer should persist now (a block boundary passed).
    pub fn block_ready(&self) -> bool {
        let m = self.read();
        let from = m.unpersisted_from;
        !m.unpersisted.is_empty() && (from - 1) / BLOCK != (from - 1 + m.unpersisted.len() as u64) / BLOCK
    }

    /// Writes everything not yet persisted: the new events' slots to the entries file (synced),
    /// then the CRCs of the blocks they fall in, new stream numbers, moved heads and, last, the
    /// checkpoint, each a single-key sled insert (see the module header for why any prefix of that
    /// is safe). The in-memory index is locked only to take a snapshot, so readers and the writer
    /// never wait for the I/O.
    pub fn persist(&self) -> Result<(), IndexError> {
        let _one_at_a_time = self.persisting.lock().unwrap_or_else(|p| p.into_inner());
        // 1. Snapshot under the lock.
        let (first, entries, offsets, new_streams, heads) = {
            let mut guard = self.mem.write().unwrap_or_else(|p| p.into_inner());
            let m = &mut *guard;
            if m.unpersisted.is_empty() {
                return Ok(());
            }
            let first = m.unpersisted_from;
            let entries = std::mem::take(&mut m.unpersisted);
            let last = first + entries.len() as u64 - 1;
            let offsets = m.offsets[first as usize - 1..last as usize].to_vec();
            let new_streams: Vec<(u32, Vec<u8>)> =
                m.new_streams.drain(..).map(|no| (no, m.stream_keys[no as usize].clone())).collect();
            let heads: Vec<(u32, u64, Hash)> = m
                .dirty
                .drain()
                .map(|no| {
                    let st = &m.streams[&m.stream_keys[no as usize]];
                    (no, st.positions.len() as u64, st.hash)
                })
                .collect();
            (first, entries, offsets, new_streams, heads)
        };
        let last = first + entries.len() as u64 - 1;
        let written = self.write_persist(first, &entries, &offsets, &new_streams, &heads);
        match written {
            Ok(tail) => {
                *self.tail.lock().unwrap_or_else(|p| p.into_inner()) = tail;
                self.mem.write().unwrap_or_else(|p| p.into_inner()).unpersisted_from = last + 1;
                Ok(())
            }
            Err(e) => {
                // Put the snapshot back so the next attempt covers it.
                let mut guard = self.mem.write().unwrap_or_else(|p| p.into_inner());
                let m = &mut *guard;
                let newer = std::mem::take(&mut m.unpersisted);
                m.unpersisted = entries;
                m.unpersisted.extend(newer);
                m.new_streams.extend(new_streams.iter().map(|(no, _)| *no));
                m.dirty.extend(heads.iter().map(|(no, _, _)| *no));
                Err(e)
            }
        }
    }

    /// The I/O of a persist, without the in-memory lock; returns where the tail block stands.
    fn write_persist(
        &self,
        first: u64,
        entries: &[(Uuid, u32)],
        offsets: &[u32],
        new_streams: &[(u32, Vec<u8>)],
        heads: &[(u32, u64, Hash)],
    ) -> Result<BlockCrc, IndexError> {
        let mut tail = *self.tail.lock().unwrap_or_else(|p| p.into_inner());
        if tail.block * BLOCK + tail.slots + 1 != first {
            return Err(IndexError::Malformed("the persisted entries and the checkpoint disagree"));
        }
        let mut slots = Vec::with_capacity(entries.len() * ENTRY);
        for ((id, no), offset) in entries.iter().zip(offsets) {
            slots.extend_from_slice(id.as_bytes());
            slots.extend_from_slice(&no.to_le_bytes());
            slots.extend_from_slice(&offset.to_le_bytes());
        }
        self.entries.write_all_at(&slots, (first - 1) * ENTRY as u64)?;
        self.entries.sync_data()?;
        // The CRC of every block touched, continued from what the block already held.
        let mut writes: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut rest = &slots[..];
        while !rest.is_empty() {
            let room = (BLOCK - tail.slots) as usize;
            let n = room.min(rest.len() / ENTRY);
            let (part, after) = rest.split_at(n * ENTRY);
            tail.crc = crc32c::crc32c_append(tail.crc, part);
            tail.slots += n as u64;
            writes.push((be_key(b'k', &tail.block.to_be_bytes()), block_crc_value(tail.slots, tail.crc).to_vec()));
            if tail.slots == BLOCK {
                tail = BlockCrc { block: tail.block + 1, slots: 0, crc: 0 };
            }
            rest = after;
        }
        for (no, key) in new_streams {
            writes.push((be_key(b'n', &no.to_be_bytes()), key.clone()));
        }
        for (no, version, hash) in heads {
            let mut head = [0u8; 40];
            head[..8].copy_from_slice(&version.to_le_bytes());
            head[8..].copy_from_slice(&hash.0);
            writes.push((be_key(b'h', &no.to_be_bytes()), head.to_vec()));
        }
        let last = first + entries.len() as u64 - 1;
        writes.push((CHECKPOINT.to_vec(), last.to_le_bytes().to_vec()));
        for (k, v) in writes {
            self.tree.insert(k, v)?;
        }
        Ok(tail)
    }

    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0) + self.entries.metadata().map_or(0, |m| m.len())
    }

    /// Writes sled's buffers out. Only for tools (rebuild, benchmarks, shutdown) — never on the
    /// request path, and never mistaken for durability: the log is what is durable.
    pub fn flush(&self) -> Result<(), IndexError> {
        self.persist()?;
        // One flush at a time (see `crate::open_sled`): the writer's shutdown and a tool may both
        // ask.
        let _one = crate::one_sled_flush();
        self.tree.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A stream's positions read back as pushed, 4 bytes each until one passes `u32::MAX`, and
    /// exactly after it (the earlier ones widened).
    #[test]
    fn stream_positions_are_narrow_until_one_does_not_fit() {
        let mut p = Positions::default();
        let pushed: Vec<u64> = vec![1, 5, u64::from(u32::MAX), u64::from(u32::MAX) + 1, u64::MAX - 3];
        for (i, &x) in pushed.iter().enumerate() {
            p.push(x);
            assert_eq!(matches!(p, Positions::Narrow(_)), i < 3, "after {x}");
        }
        assert_eq!((0..p.len()).map(|i| p.get(i)).collect::<Vec<_>>(), pushed);
    }

    /// Every inserted id finds its position among its candidates, through the merges of the
    /// exact map into the sorted runs; ids never inserted have (almost) no candidates; positions
    /// past `u32::MAX` are kept exactly; and the table stays near 8 bytes per id.
    #[test]
    fn every_id_finds_its_position_and_unknown_ids_find_almost_none() {
        let mut ids = Ids::default();
        let n = 200_000u64;
        // Half random, half sequential (clients' ids need not be random).
        let id = |i: u64| if i.is_multiple_of(2) { Uuid::from_u128(u128::from(i)) } else { Uuid::new_v4() };
        let all: Vec<(Uuid, u64)> = (1..=n).map(|p| (id(p), p)).collect();
        for (i, p) in &all {
            ids.insert(*i, *p);
        }
        let wide = (Uuid::new_v4(), u64::from(u32::MAX) + 7);
        ids.insert(wide.0, wide.1);
        for (i, p) in all.iter().chain([&wide]) {
            assert!(ids.candidates(*i).contains(p), "{i} lost its position {p}");
        }
        let strangers: usize = (0..100_000).map(|_| ids.candidates(Uuid::new_v4()).len()).sum();
        assert!(strangers <= 5, "{strangers} false candidates for 100,000 unknown ids");
        let per_id = ids.bytes() as f64 / n as f64;
        assert!(per_id < 10.0, "{per_id:.1} bytes per id");
        // Loaded in bulk (an open), then inserted into: the same answers.
        let mut loaded = Ids::with_capacity(n as usize);
        loaded.hasher = ids.hasher.clone();
        let (first, rest) = all.split_at(all.len() / 2);
        for (i, p) in first {
            loaded.load(*i, *p);
        }
        loaded.loaded();
        for (i, p) in rest {
            loaded.insert(*i, *p);
        }
        for (i, p) in &all {
            let (mut a, mut b) = (loaded.candidates(*i), ids.candidates(*i));
            a.sort_unstable();
            b.sort_unstable();
            assert_eq!(a, b, "{i} at {p}");
        }
    }

    proptest! {
        /// Against a map, with ids inserted in any order of positions and looked up at any time.
        #[test]
        fn ids_agree_with_a_map(seeds in proptest::collection::vec(any::<u16>(), 1..3000)) {
            // Few shards, so the exact maps merge into the runs many times.
            let mut ids = Ids::with_shards(2);
            let mut model = HashMap::new();
            for (p, s) in seeds.iter().enumerate() {
                let id = Uuid::from_u128(u128::from(*s) * 0x9E37_79B9);
                if model.contains_key(&id) {
                    continue;
                }
                ids.insert(id, p as u64 + 1);
                model.insert(id, p as u64 + 1);
                let probe = Uuid::from_u128(u128::from(seeds[p / 2]) * 0x9E37_79B9);
                if let Some(want) = model.get(&probe) {
                    prop_assert!(ids.candidates(probe).contains(want));
                }
            }
            for (id, p) in &model {
                prop_assert!(ids.candidates(*id).contains(p));
            }
        }
    }
}
