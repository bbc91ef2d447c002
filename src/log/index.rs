//! The sled index: everything in it can be rebuilt from the segment log.
//!
//! One tree, keys by prefix, so that one `sled::Batch` per group commit updates all of it and the
//! checkpoint atomically:
//!
//! | key                                   | value                          |
//! |---------------------------------------|--------------------------------|
//! | `s` stream_key version(BE u64)        | position u64, offset u32       |
//! | `i` event_id(16)                      | position u64, offset u32       |
//! | `h` stream_key                        | version u64, stream_hash[32]   |
//! | `p` position(BE u64), every 64th      | offset u32                     |
//! | `m:checkpoint`                        | last position applied u64      |
//!
//! The index is never flushed on the request path: it is not the truth. After a crash it may be
//! behind the log (never ahead, since it is written after the log's fsync) and catches up from
//! its checkpoint on open.

use std::path::Path;

use uuid::Uuid;

use super::envelope::Hash;

pub const SPARSE_EVERY: u64 = 64;
const CHECKPOINT: &[u8] = b"m:checkpoint";

/// Where a record lives: its global position (which names the segment) and its byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub position: u64,
    pub offset: u32,
}

impl Loc {
    fn to_bytes(self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[..8].copy_from_slice(&self.position.to_le_bytes());
        b[8..].copy_from_slice(&self.offset.to_le_bytes());
        b
    }

    fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != 12 {
            return None;
        }
        Some(Loc {
            position: u64::from_le_bytes(b[..8].try_into().ok()?),
            offset: u32::from_le_bytes(b[8..].try_into().ok()?),
        })
    }
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
    #[error("index entry is malformed: {0}")]
    Malformed(&'static str),
}

pub struct Index {
    _db: sled::Db,
    tree: sled::Tree,
}

fn sv_key(stream_key: &[u8], version: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + stream_key.len() + 8);
    k.push(b's');
    k.extend_from_slice(stream_key);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn id_key(id: Uuid) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = b'i';
    k[1..].copy_from_slice(id.as_bytes());
    k
}

fn head_key(stream_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + stream_key.len());
    k.push(b'h');
    k.extend_from_slice(stream_key);
    k
}

fn sparse_key(position: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'p';
    k[1..].copy_from_slice(&position.to_be_bytes());
    k
}

impl Index {
    pub fn open(path: &Path) -> Result<Self, IndexError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(128 << 20)
            // sled writes its own log in the background; we never wait for it.
            .flush_every_ms(Some(1000))
            .open()?;
        let tree = db.open_tree("index")?;
        Ok(Index { _db: db, tree })
    }

    pub fn checkpoint(&self) -> Result<u64, IndexError> {
        match self.tree.get(CHECKPOINT)? {
            None => Ok(0),
            Some(v) => Ok(u64::from_le_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| IndexError::Malformed("checkpoint"))?,
            )),
        }
    }

    pub fn head(&self, stream_key: &[u8]) -> Result<Option<StreamHead>, IndexError> {
        let Some(v) = self.tree.get(head_key(stream_key))? else {
            return Ok(None);
        };
        if v.len() != 40 {
            return Err(IndexError::Malformed("stream head"));
        }
        let version = u64::from_le_bytes(
            v[..8]
                .try_into()
                .map_err(|_| IndexError::Malformed("stream head"))?,
        );
        let mut h = [0u8; 32];
        h.copy_from_slice(&v[8..40]);
        Ok(Some(StreamHead {
            version,
            stream_hash: Hash(h),
        }))
    }

    pub fn event(&self, id: Uuid) -> Result<Option<Loc>, IndexError> {
        match self.tree.get(id_key(id))? {
            None => Ok(None),
            Some(v) => Loc::from_bytes(&v)
                .map(Some)
                .ok_or(IndexError::Malformed("event id")),
        }
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
        let range = self
            .tree
            .range(sv_key(stream_key, from)..=sv_key(stream_key, to));
        let decode =
            |item: sled::Result<(sled::IVec, sled::IVec)>| -> Result<(u64, Loc), IndexError> {
                let (k, v) = item?;
                let version = u64::from_be_bytes(
                    k[k.len().saturating_sub(8)..]
                        .try_into()
                        .map_err(|_| IndexError::Malformed("stream key"))?,
                );
                Ok((
                    version,
                    Loc::from_bytes(&v).ok_or(IndexError::Malformed("stream version"))?,
                ))
            };
        if backward {
            range.rev().take(limit).map(decode).collect()
        } else {
            range.take(limit).map(decode).collect()
        }
    }

    /// The nearest sparse entry at or before `position`.
    pub fn sparse_at_or_before(&self, position: u64) -> Result<Option<Loc>, IndexError> {
        let Some(item) = self
            .tree
            .range(sparse_key(0)..=sparse_key(position))
            .next_back()
        else {
            return Ok(None);
        };
        let (k, v) = item?;
        let position = u64::from_be_bytes(
            k[1..9]
                .try_into()
                .map_err(|_| IndexError::Malformed("sparse key"))?,
        );
        let offset = u32::from_le_bytes(
            v.as_ref()
                .try_into()
                .map_err(|_| IndexError::Malformed("sparse offset"))?,
        );
        Ok(Some(Loc { position, offset }))
    }

    pub fn apply(&self, batch: IndexBatch) -> Result<(), IndexError> {
        let mut b = batch.batch;
        b.insert(CHECKPOINT, &batch.checkpoint.to_le_bytes());
        self.tree.apply_batch(b)?;
        Ok(())
    }

    pub fn size_on_disk(&self) -> u64 {
        self._db.size_on_disk().unwrap_or(0)
    }

    /// Writes sled's buffers out. Only for tools (rebuild, benchmarks) — never on the request
    /// path, and never mistaken for durability: the log is what is durable.
    pub fn flush(&self) -> Result<(), IndexError> {
        self.tree.flush()?;
        Ok(())
    }
}

/// The index updates of one group commit (or one catch-up chunk).
#[derive(Default)]
pub struct IndexBatch {
    batch: sled::Batch,
    checkpoint: u64,
    pub len: usize,
}

impl IndexBatch {
    pub fn add(
        &mut self,
        stream_key: &[u8],
        version: u64,
        event_id: Uuid,
        loc: Loc,
        stream_hash: &Hash,
    ) {
        let lb = loc.to_bytes();
        self.batch.insert(sv_key(stream_key, version), &lb);
        self.batch.insert(&id_key(event_id), &lb);
        let mut head = [0u8; 40];
        head[..8].copy_from_slice(&version.to_le_bytes());
        head[8..].copy_from_slice(&stream_hash.0);
        self.batch.insert(head_key(stream_key), &head[..]);
        if loc.position % SPARSE_EVERY == 0 {
            self.batch
                .insert(&sparse_key(loc.position), &loc.offset.to_le_bytes());
        }
        self.checkpoint = loc.position;
        self.len += 1;
    }
}
