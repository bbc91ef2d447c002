//! `projections/chunks.dat`: the sealed observation chunks of every course, appended by persists
//! and read back when a view's memory has forgotten one ([`super::obs_list`]).
//!
//! They were sled records before. sled keeps in memory what every insert wrote, whatever its
//! cache bound, and chunks are what grows with the data (one of ~2.4 KB per 64 observations):
//! a third of the soak's live memory growth. Here memory holds where each chunk is (12 bytes per
//! chunk) and the kernel's page cache holds the rest.
//!
//! ```text
//! frames: len u32 LE | crc32c(payload) u32 LE | payload
//!     payload: course id [16] | chunk no u32 LE | record (codec::encode_chunk)
//! ```
//!
//! Append-only: a chunk rewritten (a correction landing in it) is appended again, and the
//! course's head in sled names the one it was written with by CRC, so a persist that did not
//! finish leaves the old record in place and still found. The file is written and
//! `fdatasync`ed before the heads that name its new chunks are inserted, so a head never names
//! a chunk the disk may not have (a crash may still lose heads: the checkpoint is behind them,
//! and the next open catches up). A torn frame at the end (a crash mid-append) ends the scan
//! and is cut off. Records a head no longer names are garbage until the store is rebuilt;
//! only corrections make them, so the file grows by what is sealed, not by what is rewritten.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Mutex, RwLock};

use uuid::Uuid;

use super::obs_list::ChunkReader;
use crate::domain::CourseId;
use crate::framing::{self, HEADER};

pub const FILE: &str = "chunks.dat";
/// Course id and chunk number, before the record.
const KEY: usize = 20;
/// No chunk record comes near this; a longer frame is damage.
const MAX_FRAME: usize = 1 << 20;

/// Where a record is in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Loc {
    offset: u64,
    len: u32,
}

pub struct ChunkFile {
    file: File,
    /// Where the next frame goes. Only persists append, one at a time; it moves when an append
    /// succeeded, so one that failed half-way is written over.
    end: Mutex<u64>,
    /// Per course, where the record of each sealed chunk the store holds is. Kept apart from the
    /// engine's CRCs of the same chunks (`Inner::chunk_crcs`): a read takes this lock while it
    /// holds the views' read lock, and a persist takes the views' lock while it holds the CRCs,
    /// so one lock for both would let the two wait for each other.
    locs: RwLock<HashMap<CourseId, Vec<Loc>>>,
}

/// A frame found by [`ChunkFile::scan`]: the chunk and its record's bytes in the scanned file.
pub struct Frame {
    pub course: CourseId,
    pub chunk: u32,
    pub record: Range<usize>,
}

/// Frames to append, built by a persist: [`Batch::add`] each chunk, then [`ChunkFile::append`].
#[derive(Default)]
pub struct Batch {
    bytes: Vec<u8>,
    /// (course, chunk, record offset in `bytes`, record length)
    placed: Vec<(CourseId, u32, u64, u32)>,
}

impl Batch {
    pub fn add(&mut self, course: CourseId, chunk: u32, record: &[u8]) {
        let at = (self.bytes.len() + HEADER + KEY) as u64;
        framing::append(&mut self.bytes, |v| {
            v.extend_from_slice(course.0.as_bytes());
            v.extend_from_slice(&chunk.to_le_bytes());
            v.extend_from_slice(record);
        });
        self.placed.push((course, chunk, at, record.len() as u32));
    }
}

impl ChunkFile {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(dir.join(FILE))?;
        let end = file.metadata()?.len();
        Ok(ChunkFile { file, end: Mutex::new(end), locs: RwLock::new(HashMap::new()) })
    }

    /// Reads the whole file: its bytes and every whole frame in it, in order. A torn or damaged
    /// frame ends it and is cut off, with everything after it.
    pub fn scan(&self) -> std::io::Result<(Vec<u8>, Vec<Frame>)> {
        let mut bytes = vec![0u8; self.file.metadata()?.len() as usize];
        self.file.read_exact_at(&mut bytes, 0)?;
        // The shared frame reader, so a torn or damaged frame ends this scan as it ends the
        // other side files'; a frame too short for its key is damage too.
        let mut frames = Vec::new();
        let mut reader = framing::Frames::new(&bytes[..], 0, MAX_FRAME);
        loop {
            let at = reader.good as usize;
            let Some(payload) = reader.next_frame() else { break };
            let (Some(course), Some(&[a, b, c, d])) = (payload.get(..16), payload.get(16..KEY)) else {
                reader.good = at as u64;
                break;
            };
            frames.push(Frame {
                course: CourseId(Uuid::from_slice(course).map_err(std::io::Error::other)?),
                chunk: u32::from_le_bytes([a, b, c, d]),
                record: at + HEADER + KEY..at + HEADER + payload.len(),
            });
        }
        let at = reader.good as usize;
        if at < bytes.len() {
            tracing::warn!(at, len = bytes.len(), "projections: the chunk file ends in a torn frame; cutting it off");
            self.file.set_len(at as u64)?;
            bytes.truncate(at);
        }
        *self.end.lock().unwrap_or_else(|p| p.into_inner()) = at as u64;
        Ok((bytes, frames))
    }

    /// Empties the file (the store is rebuilt).
    pub fn clear(&self) -> std::io::Result<()> {
        let mut end = self.end.lock().unwrap_or_else(|p| p.into_inner());
        self.file.set_len(0)?;
        self.file.sync_data()?;
        *end = 0;
        self.locs.write().unwrap_or_else(|p| p.into_inner()).clear();
        Ok(())
    }

    /// Appends a batch and syncs it. Its chunks are not read back from here until
    /// [`ChunkFile::place`]: the persist does that once its heads are written too.
    pub fn append(&self, batch: &Batch) -> std::io::Result<Placed> {
        let mut end = self.end.lock().unwrap_or_else(|p| p.into_inner());
        if !batch.bytes.is_empty() {
            self.file.write_all_at(&batch.bytes, *end)?;
            self.file.sync_data()?;
        }
        let placed = batch.placed.iter().map(|&(c, n, at, len)| (c, n, Loc { offset: *end + at, len })).collect();
        *end += batch.bytes.len() as u64;
        Ok(Placed(placed))
    }

    /// From now on, these chunks are read back from where the append put them.
    pub fn place(&self, placed: Placed) {
        let mut locs = self.locs.write().unwrap_or_else(|p| p.into_inner());
        for (course, chunk, loc) in placed.0 {
            let v = locs.entry(course).or_default();
            let i = chunk as usize;
            if v.len() <= i {
                v.resize(i + 1, Loc { offset: 0, len: 0 });
            }
            v[i] = loc;
        }
    }

    /// The chunks a load found, per course in order: (offset, length) of each record.
    pub fn set_loaded(&self, loaded: HashMap<CourseId, Vec<(u64, u32)>>) {
        let locs = loaded
            .into_iter()
            .map(|(c, v)| (c, v.into_iter().map(|(offset, len)| Loc { offset, len }).collect()))
            .collect();
        *self.locs.write().unwrap_or_else(|p| p.into_inner()) = locs;
    }

    /// How many chunks are placed (tests).
    #[cfg(test)]
    pub fn placed(&self) -> usize {
        self.locs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|v| v.iter().filter(|l| l.len > 0).count())
            .sum()
    }

    /// The file's length as appended so far (tests).
    #[cfg(test)]
    pub fn len(&self) -> u64 {
        *self.end.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Where an append put its chunks (see [`ChunkFile::place`]).
pub struct Placed(Vec<(CourseId, u32, Loc)>);

impl ChunkReader for ChunkFile {
    fn read(&self, course: CourseId, chunk: u32) -> Option<Vec<u8>> {
        let loc = *self.locs.read().unwrap_or_else(|p| p.into_inner()).get(&course)?.get(chunk as usize)?;
        if loc.len == 0 {
            return None;
        }
        let mut record = vec![0u8; loc.len as usize];
        match self.file.read_exact_at(&mut record, loc.offset) {
            Ok(()) => Some(record),
            Err(e) => {
                tracing::error!(course = %course.0, chunk, error = %e, "projections: reading a sealed chunk back failed");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn course(n: u128) -> CourseId {
        CourseId(Uuid::from_u128(n))
    }

    #[test]
    fn chunks_are_read_back_where_placed_and_a_torn_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let f = ChunkFile::open(dir.path()).unwrap();
        let mut b = Batch::default();
        b.add(course(1), 0, b"first record");
        b.add(course(2), 0, b"second");
        let placed = f.append(&b).unwrap();
        assert_eq!(f.read(course(1), 0), None, "not read back before it is placed");
        f.place(placed);
        assert_eq!(f.read(course(1), 0).as_deref(), Some(&b"first record"[..]));
        assert_eq!(f.read(course(2), 0).as_deref(), Some(&b"second"[..]));
        // A rewrite is appended; the old record stays, the new one is read.
        let mut b = Batch::default();
        b.add(course(1), 0, b"first, corrected");
        b.add(course(1), 1, b"next");
        let placed = f.append(&b).unwrap();
        f.place(placed);
        assert_eq!(f.read(course(1), 0).as_deref(), Some(&b"first, corrected"[..]));
        assert_eq!(f.read(course(1), 1).as_deref(), Some(&b"next"[..]));
        assert_eq!((f.read(course(1), 2), f.read(course(3), 0)), (None, None));
        let whole = f.len();
        drop(f);
        // A crash mid-append: half a frame at the end.
        let path = dir.path().join(FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[40, 0, 0, 0, 1, 2, 3, 4, 5]);
        std::fs::write(&path, &bytes).unwrap();
        let f = ChunkFile::open(dir.path()).unwrap();
        let (bytes, frames) = f.scan().unwrap();
        let found: Vec<(u128, u32, &[u8])> =
            frames.iter().map(|fr| (fr.course.0.as_u128(), fr.chunk, &bytes[fr.record.clone()])).collect();
        assert_eq!(
            found,
            vec![
                (1, 0, &b"first record"[..]),
                (2, 0, &b"second"[..]),
                (1, 0, &b"first, corrected"[..]),
                (1, 1, &b"next"[..])
            ]
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), whole, "the torn frame is cut off");
        // The next append goes where the torn frame was.
        let mut b = Batch::default();
        b.add(course(4), 0, b"after");
        let placed = f.append(&b).unwrap();
        f.place(placed);
        assert_eq!(f.read(course(4), 0).as_deref(), Some(&b"after"[..]));
        assert_eq!(f.scan().unwrap().1.len(), 5);
        f.clear().unwrap();
        assert_eq!((f.scan().unwrap().1.len(), f.read(course(4), 0)), (0, None));
    }
}
