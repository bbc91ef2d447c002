//! Where `Idempotency-Key` responses are kept: append-only files, one per hour, deleted whole
//! once every response in them is past the retention.
//!
//! They lived in sled before, which kept memory for every page it held (the soak measured
//! ~300 bytes per stored response) and never deleted an expired one (lookups only ignored
//! them). Here the lookup table is on disk too: one entry per response, `fingerprint (24 bits) |
//! hour (8 bits) | offset (32 bits)`, in a [`DiskSet`] (`idempotency/set/`: sorted runs, one
//! `pread` per lookup; memory keeps a fence per 256 entries and what is not merged yet). It was
//! 8 bytes of memory per response within the retention until 2026-11-28. A lookup reads each
//! candidate record and compares the whole key, so a fingerprint collision costs one read,
//! never a wrong answer; the hour is the record's hour modulo 256, unambiguous while the
//! retention is under 200 hours.
//!
//! ```text
//! data_dir/idempotency/{hour:012}.idem   frames: len u32 LE | crc32c(payload) u32 LE | payload
//!     payload: created i64 LE | key_len u16 LE | key | fingerprint [32] | status u16 LE | body
//! ```
//! `hour` is the hour (unix seconds / 3600) of the records' `created`. Records are written
//! without a sync: they are a convenience (the client event id is what keeps a retried write
//! from appending twice), and a crash losing the last ones makes a retry execute again, which
//! that id makes harmless. Opening reads the files of the retention window (a torn tail ends a
//! file's scan and is cut off); a past hour whose table the cleaner wrote beside it
//! (`{hour:012}.idx`, still matching the file's length) is read from that table instead. The
//! set is derived scratch, built afresh at every open from those.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::BufReader;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::disk_set::DiskSet;
use crate::framing::{self, Frames, HEADER};

/// The directory inside the data directory.
pub const IDEMPOTENCY_DIR: &str = "idempotency";

const MAX_FRAME: usize = 16 << 20;
/// The lookup set's directory inside the store's, its name and its shards.
const SET_DIR: &str = "set";
const SET_NAME: &str = "keys";
const SET_SHARD_BITS: u32 = 6;
/// The longest retention the 8 bits of an entry's hour tell apart (with room to spare).
const MAX_RETENTION_SECS: i64 = 200 * 3600;

/// A lookup entry: the top 24 bits of the key's fingerprint, the hour modulo 256, the offset.
fn entry(fp: u32, hour: i64, offset: u32) -> u64 {
    u64::from(fp >> 8) << 40 | (hour.rem_euclid(256) as u64) << 32 | u64::from(offset)
}

fn entry_hour8(e: u64) -> i64 {
    ((e >> 32) & 0xff) as i64
}

/// One stored response.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub created: i64,
    pub key: Vec<u8>,
    pub fingerprint: [u8; 32],
    pub status: u16,
    pub body: Vec<u8>,
}

impl Record {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER + 44 + self.key.len() + self.body.len());
        framing::append(&mut v, |v| {
            v.extend_from_slice(&self.created.to_le_bytes());
            v.extend_from_slice(&(self.key.len() as u16).to_le_bytes());
            v.extend_from_slice(&self.key);
            v.extend_from_slice(&self.fingerprint);
            v.extend_from_slice(&self.status.to_le_bytes());
            v.extend_from_slice(&self.body);
        });
        v
    }

    fn decode(p: &[u8]) -> Option<Record> {
        let created = i64::from_le_bytes(p.get(..8)?.try_into().ok()?);
        let klen = u16::from_le_bytes(p.get(8..10)?.try_into().ok()?) as usize;
        let key = p.get(10..10 + klen)?.to_vec();
        let rest = p.get(10 + klen..)?;
        Some(Record {
            created,
            key,
            fingerprint: rest.get(..32)?.try_into().ok()?,
            status: u16::from_le_bytes(rest.get(32..34)?.try_into().ok()?),
            body: rest.get(34..)?.to_vec(),
        })
    }

    /// The key of a payload, without decoding the rest.
    fn key_of(p: &[u8]) -> Option<&[u8]> {
        let klen = u16::from_le_bytes(p.get(8..10)?.try_into().ok()?) as usize;
        p.get(10..10 + klen)
    }
}

fn fingerprint(key: &[u8]) -> u32 {
    use sha2::Digest;
    let h = sha2::Sha256::digest(key);
    u32::from_le_bytes([h[0], h[1], h[2], h[3]])
}

/// One hour's file.
struct Hour {
    file: File,
    len: u64,
    /// Its table is written beside it (`.idx`) as of `len`.
    indexed: bool,
}

const IDX_MAGIC: &[u8; 8] = b"vvidemix";

fn idx_path(dir: &Path, hour: i64) -> PathBuf {
    dir.join(format!("{hour:012}.idx"))
}

/// A past hour's table, so opening reads 8 bytes per response instead of every record:
/// `magic | file length u64 | count u64 | entries u64… | crc32c`, all little-endian. It counts
/// only if the file is still that long.
fn encode_idx(len: u64, sorted: &[u64]) -> Vec<u8> {
    let mut v = Vec::with_capacity(28 + sorted.len() * 8);
    v.extend_from_slice(IDX_MAGIC);
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(&(sorted.len() as u64).to_le_bytes());
    for e in sorted {
        v.extend_from_slice(&e.to_le_bytes());
    }
    let crc = crc32c::crc32c(&v);
    v.extend_from_slice(&crc.to_le_bytes());
    v
}

fn decode_idx(b: &[u8], file_len: u64) -> Option<Vec<u64>> {
    let (body, crc) = b.split_at_checked(b.len().checked_sub(4)?)?;
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().ok()?) || !body.starts_with(IDX_MAGIC) {
        return None;
    }
    let len = u64::from_le_bytes(body.get(8..16)?.try_into().ok()?);
    let n = usize::try_from(u64::from_le_bytes(body.get(16..24)?.try_into().ok()?)).ok()?;
    let entries = body.get(24..)?;
    if len != file_len || entries.len() != n.checked_mul(8)? {
        return None;
    }
    let v: Vec<u64> = entries.chunks_exact(8).filter_map(|c| Some(u64::from_le_bytes(c.try_into().ok()?))).collect();
    v.is_sorted().then_some(v)
}

impl Hour {
    /// Its table: `fingerprint << 32 | offset` of every whole record, sorted (a scan of the file).
    fn table(&self) -> std::io::Result<Vec<u64>> {
        // The clone shares the file's position (an open's scan left it at the end); everything
        // else uses positional reads and writes, so moving it is harmless.
        let mut f = self.file.try_clone()?;
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(0))?;
        let r = BufReader::with_capacity(256 << 10, f);
        let mut frames = Frames::new(std::io::Read::take(r, self.len), 0, MAX_FRAME);
        let mut out = Vec::new();
        loop {
            let offset = frames.good;
            let Some(p) = frames.next_frame() else { break };
            if let Some(key) = Record::key_of(p) {
                out.push(u64::from(fingerprint(key)) << 32 | offset);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    fn read_payload(&self, offset: u64) -> Option<Vec<u8>> {
        let mut h = [0u8; HEADER];
        self.file.read_exact_at(&mut h, offset).ok()?;
        let (len, crc) = framing::header(&h);
        if len > MAX_FRAME {
            return None;
        }
        let mut p = vec![0u8; len];
        self.file.read_exact_at(&mut p, offset + HEADER as u64).ok()?;
        (crc32c::crc32c(&p) == crc).then_some(p)
    }
}

pub struct IdempotencyFiles {
    dir: PathBuf,
    retention_secs: i64,
    hours: Mutex<HashMap<i64, Hour>>,
    set: DiskSet,
}

fn path_of(dir: &Path, hour: i64) -> PathBuf {
    dir.join(format!("{hour:012}.idem"))
}

fn io(e: std::io::Error) -> String {
    format!("idempotency store: {e}")
}

impl IdempotencyFiles {
    /// Opens the directory, reading the files of the retention window as of `now` (unix
    /// seconds) and deleting older ones.
    pub fn open(dir: &Path, retention_secs: i64, now: i64) -> Result<Self, String> {
        if retention_secs > MAX_RETENTION_SECS {
            return Err(format!("idempotency store: a retention over {MAX_RETENTION_SECS} s is not supported"));
        }
        fs::create_dir_all(dir).map_err(io)?;
        let expired = |hour: i64| (hour + 1) * 3600 + retention_secs <= now;
        let mut hours = HashMap::new();
        let mut entries = Vec::new();
        for e in fs::read_dir(dir).map_err(io)?.flatten() {
            let name = e.file_name();
            let name = name.to_str().unwrap_or_default();
            // Tables of expired hours, and what a crash left of a table being written.
            let stale_idx = name.strip_suffix(".idx").and_then(|h| h.parse::<i64>().ok()).is_some_and(expired);
            if stale_idx || name.ends_with(".tmp") {
                let _ = fs::remove_file(e.path());
                continue;
            }
            let Some(hour) = name.strip_suffix(".idem").and_then(|h| h.parse::<i64>().ok()) else {
                continue;
            };
            if expired(hour) {
                let _ = fs::remove_file(e.path());
                let _ = fs::remove_file(idx_path(dir, hour));
                continue;
            }
            let file = OpenOptions::new().read(true).write(true).open(e.path()).map_err(io)?;
            let file_len = file.metadata().map_err(io)?.len();
            let add = |entries: &mut Vec<u64>, table: &[u64]| {
                entries.extend(table.iter().map(|t| entry((t >> 32) as u32, hour, *t as u32)));
            };
            if let Some(table) = fs::read(idx_path(dir, hour)).ok().and_then(|b| decode_idx(&b, file_len)) {
                add(&mut entries, &table);
                hours.insert(hour, Hour { file, len: file_len, indexed: true });
                continue;
            }
            let mut h = Hour { file, len: file_len, indexed: false };
            let r = BufReader::with_capacity(256 << 10, h.file.try_clone().map_err(io)?);
            let mut frames = Frames::new(r, 0, MAX_FRAME);
            loop {
                let offset = frames.good;
                let Some(p) = frames.next_frame() else { break };
                // A whole frame whose key cannot be read is passed over: no lookup can find it.
                if let Some(key) = Record::key_of(p) {
                    entries.push(entry(fingerprint(key), hour, offset as u32));
                }
            }
            h.len = frames.good;
            // Whatever follows the last whole record is a torn write: cut it off, so the next
            // record lands where a scan finds it.
            if file_len > h.len {
                h.file.set_len(h.len).map_err(io)?;
            }
            hours.insert(hour, h);
        }
        let set = DiskSet::create(&dir.join(SET_DIR), SET_NAME, SET_SHARD_BITS, entries).map_err(io)?;
        Ok(IdempotencyFiles { dir: dir.to_owned(), retention_secs, hours: Mutex::new(hours), set })
    }

    /// Whether every record an hour's file can hold is past the retention at `now`.
    fn expired(&self, hour: i64, now: i64) -> bool {
        (hour + 1) * 3600 + self.retention_secs <= now
    }

    /// The newest record under `key` created within the retention as of `now`.
    pub fn get(&self, key: &[u8], now: i64) -> Option<Record> {
        let candidates = match self.candidates(fingerprint(key)) {
            Ok(c) => c,
            Err(e) => {
                // Unreadable: answered as "not stored", so the request executes (its client event
                // id still keeps a retry from appending twice).
                tracing::warn!(error = %e, "idempotency store: a lookup failed");
                return None;
            }
        };
        let hours = self.hours.lock().unwrap_or_else(|p| p.into_inner());
        let mut newest: Option<Record> = None;
        for (hour8, offset) in candidates {
            let Some(h) = hours.iter().find(|(hour, _)| hour.rem_euclid(256) == hour8).map(|(_, h)| h) else {
                continue;
            };
            let Some(p) = h.read_payload(offset) else { continue };
            if Record::key_of(&p) != Some(key) {
                continue;
            }
            let Some(r) = Record::decode(&p) else { continue };
            if now - r.created < self.retention_secs && newest.as_ref().is_none_or(|n| r.created >= n.created) {
                newest = Some(r);
            }
        }
        newest
    }

    /// (hour modulo 256, offset) of the records whose key may have this fingerprint.
    fn candidates(&self, fp: u32) -> std::io::Result<Vec<(i64, u64)>> {
        let lo = u64::from(fp >> 8) << 40;
        Ok(self.set.range(lo, lo | ((1 << 40) - 1))?.into_iter().map(|e| (entry_hour8(e), e & 0xffff_ffff)).collect())
    }

    pub fn put(&self, r: &Record) -> Result<(), String> {
        let hour = r.created.div_euclid(3600);
        let frame = r.encode();
        let mut hours = self.hours.lock().unwrap_or_else(|p| p.into_inner());
        let h = match hours.entry(hour) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(path_of(&self.dir, hour))
                    .map_err(io)?;
                let len = file.metadata().map_err(io)?.len();
                v.insert(Hour { file, len, indexed: false })
            }
        };
        if h.len + frame.len() as u64 > u64::from(u32::MAX) {
            return Err("idempotency store: an hour's file is full".into());
        }
        if let Err(e) = h.file.write_all_at(&frame, h.len) {
            // Nothing after a torn record: the next one overwrites it.
            return Err(io(e));
        }
        self.set.insert(entry(fingerprint(&r.key), hour, h.len as u32));
        h.len += frame.len() as u64;
        h.indexed = false;
        Ok(())
    }

    /// Moves the lookup entries waiting in memory to their runs on disk where that is due; run
    /// often (every few seconds), off the request path.
    pub fn maintain(&self) {
        if let Err(e) = self.set.maintain(false, &|_| true) {
            tracing::warn!(error = %e, "idempotency store: lookup entries stay in memory for now");
        }
    }

    /// Deletes the files whose records are all past the retention at `now` (returns how many),
    /// writes the table of every past hour that has none yet, and rewrites the lookup set
    /// without the deleted hours' entries.
    pub fn sweep(&self, now: i64) -> usize {
        let mut hours = self.hours.lock().unwrap_or_else(|p| p.into_inner());
        let old: Vec<i64> = hours.keys().copied().filter(|h| self.expired(*h, now)).collect();
        for h in &old {
            hours.remove(h);
            let _ = fs::remove_file(idx_path(&self.dir, *h));
            if let Err(e) = fs::remove_file(path_of(&self.dir, *h)) {
                tracing::warn!(error = %e, hour = h, "idempotency store: cannot delete an expired file");
            }
        }
        let current = now.div_euclid(3600);
        let due: Vec<i64> = hours.iter().filter(|(hour, h)| **hour < current && !h.indexed).map(|(h, _)| *h).collect();
        for hour in due {
            let Some(h) = hours.get_mut(&hour) else { continue };
            let path = idx_path(&self.dir, hour);
            let tmp = path.with_extension("idx.tmp");
            // Unsynced like the records: a table lost or torn is only a scan at the next open.
            match h.table().and_then(|t| fs::write(&tmp, encode_idx(h.len, &t))).and_then(|()| fs::rename(&tmp, &path))
            {
                Ok(()) => h.indexed = true,
                Err(e) => tracing::warn!(error = %e, hour, "idempotency store: cannot write an hour's table"),
            }
        }
        drop(hours);
        if !old.is_empty() {
            // The hours still held are newer than every deleted one by less than 256 hours, so
            // none shares a deleted one's number: a new record's entry is never dropped here.
            let gone: std::collections::HashSet<i64> = old.iter().map(|h| h.rem_euclid(256)).collect();
            if let Err(e) = self.set.maintain(true, &|e| !gone.contains(&entry_hour8(e))) {
                tracing::warn!(error = %e, "idempotency store: cannot drop expired lookup entries");
            }
        }
        old.len()
    }

    /// Files held (for tests).
    #[cfg(test)]
    fn files(&self) -> usize {
        self.hours.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn rec(created: i64, key: &str, body: &str) -> Record {
        Record {
            created,
            key: key.as_bytes().to_vec(),
            fingerprint: [7; 32],
            status: 201,
            body: body.as_bytes().to_vec(),
        }
    }

    const DAY: i64 = 24 * 3600;

    /// Hours' files and tables in the store's directory (not the lookup set's).
    fn files_in(dir: &Path) -> usize {
        fs::read_dir(dir).unwrap().flatten().filter(|e| e.file_type().unwrap().is_file()).count()
    }

    #[test]
    fn records_are_found_by_key_across_hours_and_restarts_and_expire_by_the_hour() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = 1_767_225_600; // an hour boundary
        let store = IdempotencyFiles::open(dir.path(), DAY, t0).unwrap();
        // Many keys in two hours, so sorted runs and recent entries both answer.
        for i in 0..2000 {
            store.put(&rec(t0 + i, &format!("k{i}"), &format!("body {i}"))).unwrap();
        }
        for i in 0..300 {
            store.put(&rec(t0 + 3600 + i, &format!("h{i}"), "later")).unwrap();
        }
        let check = |s: &IdempotencyFiles, now: i64| {
            for i in (0..2000).step_by(7) {
                assert_eq!(s.get(format!("k{i}").as_bytes(), now).unwrap().body, format!("body {i}").into_bytes());
            }
            assert_eq!(s.get(b"h299", now).unwrap().body, b"later");
            assert!(s.get(b"k2000", now).is_none());
        };
        check(&store, t0 + 7200);
        drop(store);
        let store = IdempotencyFiles::open(dir.path(), DAY, t0 + 7200).unwrap();
        check(&store, t0 + 7200);
        // One day and an hour later the first hour's records are past the retention: not found,
        // and the sweep deletes that file, not the next one.
        assert!(store.get(b"k5", t0 + DAY + 3600).is_none());
        assert!(store.get(b"h5", t0 + DAY + 3600).is_some());
        assert_eq!(store.sweep(t0 + DAY + 3600), 1);
        assert_eq!(store.files(), 1);
        assert_eq!(files_in(dir.path()), 2, "the next hour's file and its table");
        // Opening after the whole window deletes the rest.
        drop(store);
        let store = IdempotencyFiles::open(dir.path(), DAY, t0 + 3 * DAY).unwrap();
        assert_eq!(store.files(), 0);
        assert_eq!(files_in(dir.path()), 0);
    }

    /// The sweep takes an expired hour's entries out of the lookup set too (not only its
    /// file), and a retention the 8-bit hour cannot tell apart is refused.
    #[test]
    fn the_sweep_drops_expired_lookup_entries_and_a_long_retention_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = IdempotencyFiles::open(dir.path(), DAY, 0).unwrap();
        for i in 0..300 {
            store.put(&rec(i, &format!("old{i}"), "o")).unwrap();
            store.put(&rec(3600 + i, &format!("new{i}"), "n")).unwrap();
        }
        store.maintain();
        assert_eq!(store.set.len(), 600);
        assert_eq!(store.sweep(DAY + 3600), 1);
        assert_eq!(store.set.len(), 300, "the expired hour's entries are gone");
        assert_eq!(store.get(b"new7", DAY + 3600).unwrap().body, b"n");
        assert!(IdempotencyFiles::open(&dir.path().join("x"), MAX_RETENTION_SECS + 1, 0).is_err());
    }

    #[test]
    fn a_fingerprint_collision_is_told_apart_by_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = IdempotencyFiles::open(dir.path(), DAY, 0).unwrap();
        // Two keys with the same 32-bit fingerprint (a birthday search: ~80k keys).
        let mut seen = HashMap::new();
        let (a, b) = (0u64..)
            .find_map(|i| {
                let k = format!("key-{i}");
                seen.insert(fingerprint(k.as_bytes()), k.clone()).map(|other| (other, k))
            })
            .unwrap();
        store.put(&rec(10, &a, "a")).unwrap();
        store.put(&rec(11, &b, "b")).unwrap();
        assert_eq!(store.candidates(fingerprint(a.as_bytes())).unwrap().len(), 2);
        assert_eq!(store.get(a.as_bytes(), 20).unwrap().body, b"a");
        assert_eq!(store.get(b.as_bytes(), 20).unwrap().body, b"b");
    }

    #[test]
    fn a_past_hour_is_opened_from_its_table_and_a_stale_or_damaged_table_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = IdempotencyFiles::open(dir.path(), DAY, 0).unwrap();
        for i in 0..1500 {
            store.put(&rec(i, &format!("k{i}"), &format!("b{i}"))).unwrap();
        }
        store.put(&rec(3600, "next-hour", "n")).unwrap();
        assert_eq!(store.sweep(3601), 0);
        let idx = idx_path(dir.path(), 0);
        assert!(idx.exists(), "the past hour has its table");
        assert!(!idx_path(dir.path(), 1).exists(), "the current hour has none");
        drop(store);
        let found = |now: i64| {
            let s = IdempotencyFiles::open(dir.path(), DAY, now).unwrap();
            let all = (0..1500).step_by(11).all(|i| {
                s.get(format!("k{i}").as_bytes(), now).is_some_and(|r| r.body == format!("b{i}").into_bytes())
            });
            (all, s.hours.lock().unwrap()[&0].indexed)
        };
        assert_eq!(found(3700), (true, true), "opened from the table");
        // A record added to that hour later makes the table stale: the file is scanned.
        let s = IdempotencyFiles::open(dir.path(), DAY, 3700).unwrap();
        s.put(&rec(10, "late", "l")).unwrap();
        drop(s);
        assert_eq!(found(3700), (true, false));
        assert_eq!(IdempotencyFiles::open(dir.path(), DAY, 3700).unwrap().get(b"late", 3700).unwrap().body, b"l");
        // A damaged table is ignored too.
        let s = IdempotencyFiles::open(dir.path(), DAY, 3700).unwrap();
        s.sweep(3700);
        drop(s);
        let mut b = fs::read(&idx).unwrap();
        b[30] ^= 1;
        fs::write(&idx, b).unwrap();
        assert_eq!(found(3700), (true, false));
    }

    #[test]
    fn a_torn_record_is_cut_off_and_the_next_one_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = IdempotencyFiles::open(dir.path(), DAY, 0).unwrap();
        store.put(&rec(1, "one", "1")).unwrap();
        drop(store);
        let path = path_of(dir.path(), 0);
        let whole = fs::metadata(&path).unwrap().len();
        OpenOptions::new().append(true).open(&path).unwrap().write_all(&[90, 0, 0, 0, 1, 2]).unwrap();
        let store = IdempotencyFiles::open(dir.path(), DAY, 5).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), whole);
        store.put(&rec(2, "two", "2")).unwrap();
        drop(store);
        let store = IdempotencyFiles::open(dir.path(), DAY, 5).unwrap();
        assert_eq!(store.get(b"one", 5).unwrap().body, b"1");
        assert_eq!(store.get(b"two", 5).unwrap().body, b"2");
    }
}
