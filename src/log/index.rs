//! The index: where each event is, which ids exist, and each stream's head. Derived from the log,
//! persisted so a restart does not rescan the log. Memory keeps what is bounded by the streams
//! and what waits for the next persist; what grows with every event is read from files (an
//! offset from its slot, an id from a [`DiskSet`], a stream's older positions from the scratch
//! file of sealed chunks), except the newest 65,536 offsets, kept for history pages.
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
use crate::disk_set::DiskSet;

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

/// Event id → position: what the writer's idempotency check and `read_event` look up.
///
/// Kept for every event, so its size per event matters more than anything else here. An entry
/// is 8 bytes, a 32-bit fingerprint of the id and the position (`fingerprint << 32 | position`),
/// and the entries live on disk in a [`DiskSet`] (sorted runs in 64 shards by the fingerprint's
/// top bits, one `pread` of 2 KiB per lookup; memory keeps a fence per 256 entries and the
/// entries not merged into a run yet, at most 4,096 per shard). They were sorted vectors in
/// memory until 2026-11-28, 8 bytes per event for as long as the server ran (a map of the ids
/// before that, ~52). The set is derived scratch: an open builds it afresh from the entries
/// file, with a new key.
///
/// A fingerprint names **candidates**, not answers: the caller reads the event at each candidate
/// position and compares its id (the writer reads it anyway, to compare content). The
/// fingerprint is a keyed hash with a per-process random key, so clients cannot choose ids that
/// collide; a false candidate costs one read per 4 billion / (events) lookups (one in 4,300 at a
/// million events). Positions past
/// `u32::MAX` are kept in an exact map.
struct Ids {
    set: DiskSet,
    wide: std::sync::Mutex<HashMap<Uuid, u64>>,
    hasher: std::collections::hash_map::RandomState,
}

/// The set's shards: 64, so a merge rewrites a 64th of the entries.
const ID_SHARD_BITS: u32 = 6;
const IDS_NAME: &str = "ids";

/// Collects the entries of an open, to build the set from in one go.
struct IdsLoad {
    entries: Vec<u64>,
    wide: HashMap<Uuid, u64>,
    hasher: std::collections::hash_map::RandomState,
}

fn fingerprint_of(hasher: &std::collections::hash_map::RandomState, id: &Uuid) -> u64 {
    use std::hash::BuildHasher;
    hasher.hash_one(id.as_u128()) >> 32
}

impl IdsLoad {
    fn with_capacity(n: usize) -> Self {
        IdsLoad { entries: Vec::with_capacity(n), wide: HashMap::new(), hasher: Default::default() }
    }

    fn push(&mut self, id: Uuid, position: u64) {
        if position > u64::from(u32::MAX) {
            self.wide.insert(id, position);
        } else {
            self.entries.push(fingerprint_of(&self.hasher, &id) << 32 | position);
        }
    }

    /// Writes the set (the entries' memory goes with it).
    fn build(self, dir: &Path) -> std::io::Result<Ids> {
        Ok(Ids {
            set: DiskSet::create(dir, IDS_NAME, ID_SHARD_BITS, self.entries)?,
            wide: std::sync::Mutex::new(self.wide),
            hasher: self.hasher,
        })
    }
}

impl Ids {
    /// Positions that may hold the event with this id, each to be checked by reading it.
    fn candidates(&self, id: Uuid) -> std::io::Result<Vec<u64>> {
        let fp = fingerprint_of(&self.hasher, &id);
        let mut out: Vec<u64> =
            self.wide.lock().unwrap_or_else(|p| p.into_inner()).get(&id).copied().into_iter().collect();
        out.extend(
            self.set.range(fp << 32, fp << 32 | u64::from(u32::MAX))?.into_iter().map(|e| e & u64::from(u32::MAX)),
        );
        Ok(out)
    }

    fn insert(&self, id: Uuid, position: u64) {
        if position > u64::from(u32::MAX) {
            self.wide.lock().unwrap_or_else(|p| p.into_inner()).insert(id, position);
        } else {
            self.set.insert(fingerprint_of(&self.hasher, &id) << 32 | position);
        }
    }

    /// Moves what waits in memory to the runs where it is due (the persister's thread).
    fn maintain(&self) -> std::io::Result<usize> {
        self.set.maintain(false, &|_| true)
    }
}

struct StreamEntry {
    no: u32,
    positions: StreamPositions,
    hash: Hash,
}

/// How many positions a sealed chunk of a stream holds.
const CHUNK: usize = 64;
const CHUNK_BYTES: usize = CHUNK * 8;

/// A stream's positions in version order: the full chunks of 64 in the scratch file (their slots
/// here, 4 bytes per 64 events) and the newest ones in memory. A stream's positions were all in
/// memory until 2026-11-28, 4 bytes per event for as long as the server ran; the versions read
/// are nearly always the newest (a decision state catching up), and an older chunk costs one
/// `pread` of 512 bytes.
#[derive(Debug, Default)]
struct StreamPositions {
    sealed: Vec<u32>,
    tail: Positions,
}

impl StreamPositions {
    /// The stream's version: how many positions it has.
    fn len(&self) -> u64 {
        self.sealed.len() as u64 * CHUNK as u64 + self.tail.len() as u64
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&mut self, p: u64, scratch: &mut SealedPositions) {
        self.tail.push(p);
        if self.tail.len() == CHUNK {
            let chunk: Vec<u64> = (0..CHUNK).map(|i| self.tail.get(i)).collect();
            self.sealed.push(scratch.seal(chunk));
            self.tail.clear();
        }
    }
}

/// The sealed chunks of every stream's positions: a scratch file in the index directory,
/// `stream-positions.scratch`, written again from the entries at every open (so nothing about it
/// needs to survive a crash, and it is never synced): slot `n` at byte `n * 512`, 64 positions as
/// u64 LE. A chunk whose write fails (a full disk) stays in memory instead.
struct SealedPositions {
    file: File,
    next: u32,
    unwritten: HashMap<u32, Vec<u64>>,
}

const SCRATCH_FILE: &str = "stream-positions.scratch";

impl SealedPositions {
    fn create(dir: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join(SCRATCH_FILE))?;
        Ok(SealedPositions { file, next: 0, unwritten: HashMap::new() })
    }

    /// Writes a full chunk and returns its slot.
    fn seal(&mut self, chunk: Vec<u64>) -> u32 {
        let slot = self.next;
        self.next += 1;
        let mut buf = [0u8; CHUNK_BYTES];
        for (b, p) in buf.chunks_exact_mut(8).zip(&chunk) {
            b.copy_from_slice(&p.to_le_bytes());
        }
        if let Err(e) = self.file.write_all_at(&buf, u64::from(slot) * CHUNK_BYTES as u64) {
            tracing::warn!(error = %e, slot, "index: a chunk of stream positions is kept in memory");
            self.unwritten.insert(slot, chunk);
        }
        slot
    }

    fn read(&self, slot: u32) -> Result<Vec<u64>, IndexError> {
        if let Some(c) = self.unwritten.get(&slot) {
            return Ok(c.clone());
        }
        let mut buf = [0u8; CHUNK_BYTES];
        self.file.read_exact_at(&mut buf, u64::from(slot) * CHUNK_BYTES as u64)?;
        Ok(buf.chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default())).collect())
    }
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

    /// The position of version `i + 1`.
    fn get(&self, i: usize) -> u64 {
        match self {
            Positions::Narrow(v) => u64::from(v[i]),
            Positions::Wide(v) => v[i],
        }
    }

    /// Empties it, keeping its room (a stream's tail fills again).
    fn clear(&mut self) {
        match self {
            Positions::Narrow(v) => v.clear(),
            Positions::Wide(v) => v.clear(),
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

/// How many persisted positions keep their offsets in memory (256 KiB).
const RECENT_OFFSETS: usize = 1 << 16;

/// A position not persisted yet: what its slot in the entries file will hold.
#[derive(Debug, Clone, Copy)]
struct Pending {
    id: Uuid,
    stream_no: u32,
    offset: u32,
}

struct Mem {
    streams: HashMap<Vec<u8>, StreamEntry>,
    /// stream_no → index key.
    stream_keys: Vec<Vec<u8>>,
    /// The positions from `unpersisted_from` on, kept until a persist has written their slots.
    /// An earlier position's offset is read from its slot in the entries file (it was kept in
    /// memory, 4 bytes per event, until 2026-11-28).
    unpersisted: Vec<Pending>,
    /// The first position in `unpersisted`.
    unpersisted_from: u64,
    /// The sealed chunks of the streams' positions.
    scratch: SealedPositions,
    /// The offsets of the newest positions, from `offsets_from`: every unpersisted one and up to
    /// [`RECENT_OFFSETS`] before them. A history page shows a course's newest events, which are
    /// nearly always here, so it reads no slot (a `pread` per item cost the soak's mix a tenth
    /// of its peak).
    recent_offsets: std::collections::VecDeque<u32>,
    offsets_from: u64,
    /// [`RECENT_OFFSETS`] (tests take fewer, to read slots).
    offsets_kept: usize,
    /// Streams whose head moved since the last persist, and streams new since then.
    dirty: HashSet<u32>,
    new_streams: Vec<u32>,
}

impl Mem {
    /// Drops the oldest offsets past the [`RECENT_OFFSETS`] kept, never an unpersisted one.
    fn forget_old_offsets(&mut self) {
        let persisted = self.unpersisted_from - self.offsets_from;
        let excess = self.recent_offsets.len().saturating_sub(self.unpersisted.len() + self.offsets_kept);
        let n = (persisted as usize).min(excess);
        self.recent_offsets.drain(..n);
        self.offsets_from += n as u64;
    }
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
    ids: Ids,
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
        // Sized once: growing a million-entry table step by step moves it again and again.
        let mut ids = IdsLoad::with_capacity(checkpoint as usize);
        let mut mem = Mem {
            streams: HashMap::new(),
            stream_keys: Vec::new(),
            unpersisted: Vec::new(),
            unpersisted_from: checkpoint + 1,
            scratch: SealedPositions::create(path)?,
            recent_offsets: Default::default(),
            offsets_from: checkpoint + 1,
            offsets_kept: RECENT_OFFSETS,
            dirty: HashSet::new(),
            new_streams: Vec::new(),
        };
        for item in tree.scan_prefix(b"n") {
            let (k, v) = item?;
            let no = u32::from_be_bytes(k[1..].try_into().map_err(|_| IndexError::Malformed("stream number"))?);
            if no as usize != mem.stream_keys.len() {
                return Err(IndexError::Malformed("stream numbers are not dense"));
            }
            mem.stream_keys.push(v.to_vec());
            mem.streams
                .insert(v.to_vec(), StreamEntry { no, positions: StreamPositions::default(), hash: Hash::default() });
        }
        // Positions by stream number, so loading an event hashes nothing but its id; moved into
        // the streams map once per stream at the end.
        let mut by_no: Vec<StreamPositions> =
            std::iter::repeat_with(StreamPositions::default).take(mem.stream_keys.len()).collect();
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
                by_no
                    .get_mut(no as usize)
                    .ok_or(IndexError::Malformed("unknown stream number"))?
                    .push(position, &mut mem.scratch);
                ids.push(id, position);
            }
            tail = BlockCrc { block, slots: needed, crc: crc32c::crc32c(used) };
        }
        let ids = ids.build(path)?;
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
            let known = s.positions.len();
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
            ids,
            persisting: std::sync::Mutex::new(()),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Mem> {
        self.mem.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The last position in the index.
    pub fn indexed(&self) -> u64 {
        let m = self.read();
        m.unpersisted_from - 1 + m.unpersisted.len() as u64
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
            .map(|s| StreamHead { version: s.positions.len(), stream_hash: s.hash })
    }

    /// Where the event with this id may be: usually none or one location. The id is compared
    /// by reading the event (see [`Ids`]); `read_event` and the writer do.
    pub fn event_candidates(&self, id: Uuid) -> Result<Vec<Loc>, IndexError> {
        let positions = self.ids.candidates(id)?;
        let mut out = Vec::with_capacity(positions.len());
        for p in positions {
            out.extend(self.loc(p)?);
        }
        Ok(out)
    }

    /// Where the event at `position` is, if the index has it: from memory if its slot is not
    /// persisted yet, else from the slot (a `pread` of 4 bytes, from the page cache as a rule).
    pub fn loc(&self, position: u64) -> Result<Option<Loc>, IndexError> {
        if position == 0 {
            return Ok(None);
        }
        {
            let m = self.read();
            if position >= m.offsets_from {
                let at = (position - m.offsets_from) as usize;
                return Ok(m.recent_offsets.get(at).map(|offset| Loc { position, offset: *offset }));
            }
        }
        // Persisted: its slot was written (and synced) before `unpersisted_from` passed it, and
        // is never written again with anything else.
        let mut b = [0u8; 4];
        self.entries.read_exact_at(&mut b, (position - 1) * ENTRY as u64 + 20)?;
        Ok(Some(Loc { position, offset: u32::from_le_bytes(b) }))
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
    pub fn stream_range(
        &self,
        stream_key: &[u8],
        from: u64,
        to: u64,
        backward: bool,
        limit: usize,
    ) -> Result<Vec<(u64, Loc)>, IndexError> {
        let positions = {
            let m = self.read();
            let Some(s) = m.streams.get(stream_key) else { return Ok(Vec::new()) };
            let len = s.positions.len();
            let (from, to) = (from.max(1), to.min(len));
            if from > to {
                return Ok(Vec::new());
            }
            let versions: Vec<u64> =
                if backward { (from..=to).rev().take(limit).collect() } else { (from..=to).take(limit).collect() };
            let sp = &s.positions;
            let sealed_versions = sp.sealed.len() as u64 * CHUNK as u64;
            // The chunk last read, so a range reads each chunk it crosses once.
            let mut chunk: Option<(usize, Vec<u64>)> = None;
            let mut out = Vec::with_capacity(versions.len());
            for v in versions {
                let i = v - 1;
                let p = if i < sealed_versions {
                    let c = (i / CHUNK as u64) as usize;
                    if chunk.as_ref().is_none_or(|(n, _)| *n != c) {
                        chunk = Some((c, m.scratch.read(sp.sealed[c])?));
                    }
                    chunk.as_ref().map_or(0, |(_, ps)| ps[(i % CHUNK as u64) as usize])
                } else {
                    sp.tail.get((i - sealed_versions) as usize)
                };
                out.push((v, p));
            }
            out
        };
        let mut out = Vec::with_capacity(positions.len());
        for (v, p) in positions {
            if let Some(loc) = self.loc(p)? {
                out.push((v, loc));
            }
        }
        Ok(out)
    }

    /// Adds durable events (in position order, continuing the index) to memory.
    pub fn add(&self, entries: &[Entry<'_>]) {
        let mut guard = self.mem.write().unwrap_or_else(|p| p.into_inner());
        let m = &mut *guard;
        for e in entries {
            debug_assert_eq!(e.loc.position, m.unpersisted_from + m.unpersisted.len() as u64);
            let no = match m.streams.get_mut(e.stream_key) {
                Some(s) => {
                    s.positions.push(e.loc.position, &mut m.scratch);
                    s.hash = e.stream_hash;
                    s.no
                }
                None => {
                    let no = m.stream_keys.len() as u32;
                    m.stream_keys.push(e.stream_key.to_vec());
                    let mut positions = StreamPositions::default();
                    positions.push(e.loc.position, &mut m.scratch);
                    m.streams.insert(e.stream_key.to_vec(), StreamEntry { no, positions, hash: e.stream_hash });
                    m.new_streams.push(no);
                    no
                }
            };
            m.dirty.insert(no);
            self.ids.insert(e.event_id, e.loc.position);
            m.unpersisted.push(Pending { id: e.event_id, stream_no: no, offset: e.loc.offset });
            m.recent_offsets.push_back(e.loc.offset);
        }
        m.forget_old_offsets();
    }

    /// How many appended events wait in memory for the next persist.
    pub fn unpersisted(&self) -> usize {
        self.read().unpersisted.len()
    }

    /// Writes everything not yet persisted: the new events' slots to the entries file (synced),
    /// then the CRCs of the blocks they fall in, new stream numbers, moved heads and, last, the
    /// checkpoint, each a single-key sled insert (see the module header for why any prefix of that
    /// is safe). The in-memory index is locked only to take a snapshot, so readers and the writer
    /// never wait for the I/O.
    pub fn persist(&self) -> Result<(), IndexError> {
        let _one_at_a_time = self.persisting.lock().unwrap_or_else(|p| p.into_inner());
        // 1. Snapshot under the lock.
        let (first, entries, new_streams, heads) = {
            let mut guard = self.mem.write().unwrap_or_else(|p| p.into_inner());
            let m = &mut *guard;
            if m.unpersisted.is_empty() {
                return Ok(());
            }
            let first = m.unpersisted_from;
            // Copied, not taken: until their slots are written, reads find their offsets here.
            let entries = m.unpersisted.clone();
            let new_streams: Vec<(u32, Vec<u8>)> =
                m.new_streams.drain(..).map(|no| (no, m.stream_keys[no as usize].clone())).collect();
            let heads: Vec<(u32, u64, Hash)> = m
                .dirty
                .drain()
                .map(|no| {
                    let st = &m.streams[&m.stream_keys[no as usize]];
                    (no, st.positions.len(), st.hash)
                })
                .collect();
            (first, entries, new_streams, heads)
        };
        let written = self.write_persist(first, &entries, &new_streams, &heads);
        match written {
            Ok(tail) => {
                *self.tail.lock().unwrap_or_else(|p| p.into_inner()) = tail;
                {
                    let mut m = self.mem.write().unwrap_or_else(|p| p.into_inner());
                    m.unpersisted.drain(..entries.len());
                    m.unpersisted_from = first + entries.len() as u64;
                    m.forget_old_offsets();
                }
                // Ids waiting in memory go to their runs here, off the writer's path. A failure
                // (a full disk) only keeps them in memory until the next persist.
                if let Err(e) = self.ids.maintain() {
                    tracing::warn!(error = %e, "index: event ids stay in memory for now");
                }
                Ok(())
            }
            Err(e) => {
                // The entries stay where they are; the next attempt covers them again.
                let mut guard = self.mem.write().unwrap_or_else(|p| p.into_inner());
                let m = &mut *guard;
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
        entries: &[Pending],
        new_streams: &[(u32, Vec<u8>)],
        heads: &[(u32, u64, Hash)],
    ) -> Result<BlockCrc, IndexError> {
        let mut tail = *self.tail.lock().unwrap_or_else(|p| p.into_inner());
        if tail.block * BLOCK + tail.slots + 1 != first {
            return Err(IndexError::Malformed("the persisted entries and the checkpoint disagree"));
        }
        let mut slots = Vec::with_capacity(entries.len() * ENTRY);
        for e in entries {
            slots.extend_from_slice(e.id.as_bytes());
            slots.extend_from_slice(&e.stream_no.to_le_bytes());
            slots.extend_from_slice(&e.offset.to_le_bytes());
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
        self.db.size_on_disk().unwrap_or(0)
            + self.entries.metadata().map_or(0, |m| m.len())
            + self.ids.set.disk_bytes()
            + self.read().scratch.file.metadata().map_or(0, |m| m.len())
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

    /// Streams' positions (sealed into the scratch file every 64) and events' offsets (read from
    /// the entries file once persisted) read back the same before a persist, after it, after more
    /// events, and after a reopen, forwards and backwards, from any version.
    #[test]
    fn positions_and_offsets_read_back_through_persists_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<Vec<u8>> = (0..3).map(|i| format!("course-{i}").into_bytes()).collect();
        // Stream 0 gets most events, so it seals many chunks; stream 2 stays in its tail.
        let stream_of = |p: u64| {
            if p.is_multiple_of(50) {
                2
            } else if p.is_multiple_of(3) {
                1
            } else {
                0
            }
        };
        let offset_of = |p: u64| (p * 37 % 100_000) as u32;
        let mut model: Vec<Vec<u64>> = vec![Vec::new(); 3];
        let add = |index: &Index, model: &mut Vec<Vec<u64>>, from: u64, to: u64| {
            let ids: Vec<Uuid> = (from..=to).map(|p| Uuid::from_u128(u128::from(p) << 64 | 7)).collect();
            let entries: Vec<Entry<'_>> = (from..=to)
                .zip(&ids)
                .map(|(p, id)| Entry {
                    stream_key: &keys[stream_of(p)],
                    event_id: *id,
                    loc: Loc { position: p, offset: offset_of(p) },
                    stream_hash: Hash([p as u8; 32]),
                })
                .collect();
            index.add(&entries);
            for p in from..=to {
                model[stream_of(p)].push(p);
            }
        };
        let check = |index: &Index, model: &Vec<Vec<u64>>, last: u64| {
            assert_eq!(index.indexed(), last);
            for p in 1..=last {
                assert_eq!(index.loc(p).unwrap(), Some(Loc { position: p, offset: offset_of(p) }), "at {p}");
                let id = Uuid::from_u128(u128::from(p) << 64 | 7);
                assert!(index.event_candidates(id).unwrap().contains(&Loc { position: p, offset: offset_of(p) }));
            }
            assert_eq!(index.loc(last + 1).unwrap(), None);
            for (s, want) in model.iter().enumerate() {
                let n = want.len() as u64;
                assert_eq!(index.head(&keys[s]).map(|h| h.version), (n > 0).then_some(n));
                let forward: Vec<u64> = index
                    .stream_range(&keys[s], 1, u64::MAX, false, usize::MAX)
                    .unwrap()
                    .iter()
                    .map(|(_, l)| l.position)
                    .collect();
                assert_eq!(&forward, want, "stream {s}");
                for from in [1, 63, 64, 65, 130, n.saturating_sub(5)] {
                    let got = index.stream_range(&keys[s], 1, from, true, 70).unwrap();
                    let want_back: Vec<(u64, u64)> =
                        (1..=from.min(n)).rev().take(70).map(|v| (v, want[v as usize - 1])).collect();
                    assert_eq!(
                        got.iter().map(|(v, l)| (*v, l.position)).collect::<Vec<_>>(),
                        want_back,
                        "stream {s} from {from}"
                    );
                }
            }
        };
        let index = Index::open(dir.path()).unwrap();
        // Few offsets kept in memory, so most are read from their slots.
        index.mem.write().unwrap().offsets_kept = 50;
        add(&index, &mut model, 1, 700);
        check(&index, &model, 700);
        index.persist().unwrap();
        check(&index, &model, 700);
        add(&index, &mut model, 701, 1000);
        check(&index, &model, 1000);
        {
            let m = index.read();
            assert_eq!(m.offsets_from, 651, "700 persisted, 50 of them kept, and the 300 unpersisted");
            assert_eq!(m.recent_offsets.len(), 350);
        }
        index.persist().unwrap();
        drop(index);
        let index = Index::open(dir.path()).unwrap();
        index.mem.write().unwrap().offsets_kept = 50;
        check(&index, &model, 1000);
        add(&index, &mut model, 1001, 1100);
        check(&index, &model, 1100);
    }

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

    /// Every inserted id finds its position among its candidates, through the merges into the
    /// runs on disk; ids never inserted have (almost) no candidates; positions past `u32::MAX`
    /// are kept exactly; memory stays far under a byte per id; and a set built in bulk (an
    /// open), then inserted into, gives the same answers.
    #[test]
    fn every_id_finds_its_position_and_unknown_ids_find_almost_none() {
        let dir = tempfile::tempdir().unwrap();
        let ids = IdsLoad::with_capacity(0).build(&dir.path().join("a")).unwrap();
        let n = 200_000u64;
        // Half random, half sequential (clients' ids need not be random).
        let id = |i: u64| if i.is_multiple_of(2) { Uuid::from_u128(u128::from(i)) } else { Uuid::new_v4() };
        let all: Vec<(Uuid, u64)> = (1..=n).map(|p| (id(p), p)).collect();
        for (k, (i, p)) in all.iter().enumerate() {
            ids.insert(*i, *p);
            if k % 4096 == 0 {
                ids.maintain().unwrap();
            }
        }
        ids.maintain().unwrap();
        let wide = (Uuid::new_v4(), u64::from(u32::MAX) + 7);
        ids.insert(wide.0, wide.1);
        for (i, p) in all.iter().chain([&wide]) {
            assert!(ids.candidates(*i).unwrap().contains(p), "{i} lost its position {p}");
        }
        let strangers: usize = (0..100_000).map(|_| ids.candidates(Uuid::new_v4()).unwrap().len()).sum();
        // A 32-bit fingerprint: n / 2^32 false candidates per lookup (4.7 here), never many more.
        let expected = 100_000.0 * n as f64 / 2f64.powi(32);
        assert!((strangers as f64) < 3.0 * expected + 5.0, "{strangers} false candidates for 100,000 unknown ids");
        let per_id = ids.set.memory_bytes() as f64 / n as f64;
        assert!(per_id < 1.0, "{per_id:.2} bytes of memory per id");
        // Loaded in bulk (an open), then inserted into: the same answers.
        let mut load = IdsLoad::with_capacity(n as usize);
        load.hasher = ids.hasher.clone();
        let (first, rest) = all.split_at(all.len() / 2);
        for (i, p) in first {
            load.push(*i, *p);
        }
        let loaded = load.build(&dir.path().join("b")).unwrap();
        for (i, p) in rest {
            loaded.insert(*i, *p);
        }
        for (i, p) in &all {
            let (mut a, mut b) = (loaded.candidates(*i).unwrap(), ids.candidates(*i).unwrap());
            a.sort_unstable();
            b.sort_unstable();
            assert_eq!(a, b, "{i} at {p}");
        }
    }

    proptest! {
        /// Against a map, with ids inserted in any order of positions and looked up at any time.
        #[test]
        fn ids_agree_with_a_map(seeds in proptest::collection::vec(any::<u16>(), 1..3000)) {
            let dir = tempfile::tempdir().unwrap();
            let ids = IdsLoad::with_capacity(0).build(dir.path()).unwrap();
            let mut model = HashMap::new();
            for (p, s) in seeds.iter().enumerate() {
                let id = Uuid::from_u128(u128::from(*s) * 0x9E37_79B9);
                if model.contains_key(&id) {
                    continue;
                }
                ids.insert(id, p as u64 + 1);
                model.insert(id, p as u64 + 1);
                if p % 200 == 0 {
                    ids.maintain().unwrap();
                }
                let probe = Uuid::from_u128(u128::from(seeds[p / 2]) * 0x9E37_79B9);
                if let Some(want) = model.get(&probe) {
                    prop_assert!(ids.candidates(probe).unwrap().contains(want));
                }
            }
            for (id, p) in &model {
                prop_assert!(ids.candidates(*id).unwrap().contains(p));
            }
        }
    }
}
