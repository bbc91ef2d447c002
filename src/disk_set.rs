//! A sorted set of `u64` entries that lives on disk, with a small buffer of recent entries in
//! memory. It replaces lookup tables that were sorted `Vec<u64>`s in memory (event-id
//! fingerprints → log position, idempotency-key fingerprints → file offset): 8 bytes per event,
//! for as long as the process lives, so the resident set grew with the record without bound.
//!
//! An owner packs a fingerprint in an entry's high bits and a value in its low bits, and asks for
//! ranges (all entries of one fingerprint). The entries are split into `1 << shard_bits` shards by
//! their top bits; a range always lies within one shard. Each shard holds:
//! - a run file `{name}-{shard:04}.run`: its entries, sorted, 8 bytes little-endian each, nothing
//!   else;
//! - `fences`: the first entry of each block of [`BLOCK_ENTRIES`] entries (2 KiB) of the run, so a
//!   lookup finds its block in memory and reads it with one `pread` (8 bytes of memory per 256
//!   entries);
//! - `recent`: the entries inserted since the last merge, sorted, bounded by [`DiskSet::maintain`],
//!   which rewrites a shard's run once its `recent` holds a 32nd of it (at least
//!   [`MIN_MERGE`]).
//!
//! Locks: each shard is behind a `RwLock`, and no lock is held for a merge's I/O. A merge clones
//! `recent` and the run's handle under the read lock, writes `{name}-{shard:04}.tmp` from them,
//! renames it over the run, and only then takes the write lock to swap in the new run and fences
//! and remove the snapshot's entries from `recent` (entries inserted meanwhile stay). A reader
//! holds the read lock while it reads the run, so it sees either the old run with all of `recent`
//! or the new run with what is left of it: an entry inserted before a lookup is never missed. The
//! old run's handle stays readable after the rename (it still names the old file).
//!
//! The files are derived scratch: the owner rebuilds the set from its own data at every open, so
//! nothing is fsynced and there is no manifest; [`DiskSet::create`] deletes whatever an earlier
//! process left under the same name.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The fewest recent entries a shard merges for, so a small run is not rewritten per insert.
pub const MIN_MERGE: usize = 256;
/// The most: past 32 KiB a shard merges whatever its run's size, so memory stays bounded
/// (64 shards: 2 MiB) at the cost of rewriting a large run more often.
pub const MAX_MERGE: usize = 4096;
/// Between the two, a shard merges when its `recent` holds a 32nd of its run: each entry is
/// rewritten ~22 times per doubling of its shard, and memory holds ~1/64 of the entries (an eighth
/// held 1/16, which the soak saw grow with the record).
const MERGE_FRACTION: u64 = 32;
/// Entries per block of a run: one fence each, one `pread` (2 KiB) per block a lookup touches.
const BLOCK_ENTRIES: usize = 256;
/// The write buffer and the read chunk of a merge.
const MERGE_IO: usize = 64 << 10;
const MAX_SHARD_BITS: u32 = 12;

#[derive(Default)]
struct Shard {
    /// Inserted since the last merge, sorted, no duplicates.
    recent: Vec<u64>,
    run: Option<Arc<File>>,
    /// Entries in the run.
    run_len: u64,
    /// The first entry of each `BLOCK_ENTRIES`-entry block of the run.
    fences: Vec<u64>,
}

/// A disk-resident sorted set of `u64` entries (see the module header). `Send + Sync`: every
/// `&self` method may run on many threads at once.
///
/// An entry is inserted at most once (the owners' entries carry a unique position or offset).
/// One inserted again while still in `recent` is ignored; one inserted again after it was merged
/// is returned once by [`range`](Self::range) and kept once by the next merge, but [`len`](Self::len)
/// counts it twice until then.
pub struct DiskSet {
    dir: PathBuf,
    name: String,
    shard_bits: u32,
    shards: Vec<RwLock<Shard>>,
    /// One [`maintain`](Self::maintain) at a time: two merges of a shard would race on its files.
    maintaining: Mutex<()>,
}

impl DiskSet {
    /// Creates the set in `dir` (created if missing) under `name`: deletes every file of an
    /// earlier set of this name (`{name}-*.run` and `{name}-*.tmp`), sorts `entries`, writes each
    /// shard's run file, keeps only the fences in memory and drops `entries`.
    /// shards = 1 << shard_bits, shard_bits <= 12. Duplicates in `entries` are kept once.
    /// Taking `entries` by value is the point: the owner's table is gone once the set exists.
    pub fn create(dir: &Path, name: &str, shard_bits: u32, mut entries: Vec<u64>) -> io::Result<DiskSet> {
        if shard_bits > MAX_SHARD_BITS {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("shard_bits {shard_bits} > 12")));
        }
        fs::create_dir_all(dir)?;
        for f in fs::read_dir(dir)? {
            let f = f?;
            let file_name = f.file_name();
            let Some(rest) = file_name.to_str().and_then(|n| n.strip_prefix(name)?.strip_prefix('-')) else {
                continue;
            };
            // Only `{name}-{digits}.run|.tmp`: a set named `{name}-x` keeps its files.
            let stem = rest.strip_suffix(".run").or_else(|| rest.strip_suffix(".tmp"));
            if stem.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())) {
                fs::remove_file(f.path())?;
            }
        }
        let set = DiskSet {
            dir: dir.to_path_buf(),
            name: name.to_owned(),
            shard_bits,
            shards: (0..1usize << shard_bits).map(|_| RwLock::default()).collect(),
            maintaining: Mutex::new(()),
        };
        entries.sort_unstable();
        entries.dedup();
        for chunk in entries.chunk_by(|a, b| set.shard_of(*a) == set.shard_of(*b)) {
            let i = set.shard_of(chunk[0]);
            let mut w = RunWriter::new(&set.path(i, "tmp"), chunk.len() as u64)?;
            for e in chunk {
                w.push(*e)?;
            }
            let (run, run_len, fences) = w.finish(&set.path(i, "run"))?;
            *set.write(i) = Shard { recent: Vec::new(), run, run_len, fences };
        }
        drop(entries);
        Ok(set)
    }

    /// Adds an entry (to its shard's in-memory `recent`, kept sorted).
    pub fn insert(&self, e: u64) {
        let mut shard = self.write(self.shard_of(e));
        let at = shard.recent.partition_point(|r| *r < e);
        if shard.recent.get(at) != Some(&e) {
            shard.recent.insert(at, e);
        }
    }

    /// Every entry `e` with `lo <= e <= hi`, from memory and the run file, sorted ascending.
    pub fn range(&self, lo: u64, hi: u64) -> io::Result<Vec<u64>> {
        debug_assert_eq!(self.shard_of(lo), self.shard_of(hi), "a range lies within one shard");
        let mut out = Vec::new();
        if lo > hi {
            return Ok(out);
        }
        let shard = self.read(self.shard_of(lo));
        let from = shard.recent.partition_point(|r| *r < lo);
        let to = shard.recent.partition_point(|r| *r <= hi);
        let mut mem = shard.recent[from..to].iter().copied().peekable();
        if let Some(run) = &shard.run {
            let fences = &shard.fences;
            let start = fences.partition_point(|f| *f <= lo).saturating_sub(1);
            let mut buf = [0u8; BLOCK_ENTRIES * 8];
            let mut b = start;
            // The next block is read only if it can hold entries <= hi.
            'blocks: while b < fences.len() && (b == start || fences[b] <= hi) {
                let first = (b * BLOCK_ENTRIES) as u64;
                let n = (shard.run_len - first).min(BLOCK_ENTRIES as u64) as usize;
                run.read_exact_at(&mut buf[..n * 8], first * 8)?;
                for c in buf[..n * 8].as_chunks::<8>().0 {
                    let e = u64::from_le_bytes(*c);
                    if e > hi {
                        break 'blocks;
                    }
                    if e >= lo {
                        while let Some(m) = mem.next_if(|m| *m <= e) {
                            if m < e {
                                out.push(m);
                            }
                        }
                        out.push(e);
                    }
                }
                b += 1;
            }
        }
        out.extend(mem);
        Ok(out)
    }

    /// Merges into its run file every shard whose `recent` holds at least
    /// `max(MIN_MERGE, run_len / 32)` entries (at most `MAX_MERGE`), or — when `force` — every shard that has a run or
    /// recent entries. Entries for which `keep(e)` is false are left out of the new run (and leave
    /// `recent` with the merge). Returns how many shards were merged. Only one `maintain` runs at
    /// a time; `insert` and `range` keep working while it does its I/O.
    pub fn maintain(&self, force: bool, keep: &dyn Fn(u64) -> bool) -> io::Result<usize> {
        let _one = self.maintaining.lock().unwrap_or_else(|p| p.into_inner());
        let mut buf = Vec::new();
        let mut merged = 0;
        for i in 0..self.shards.len() {
            if self.merge(i, force, keep, &mut buf)? {
                merged += 1;
            }
        }
        Ok(merged)
    }

    /// Merges shard `i` if it is due (see [`maintain`](Self::maintain)); `buf` is the read chunk.
    fn merge(&self, i: usize, force: bool, keep: &dyn Fn(u64) -> bool, buf: &mut Vec<u8>) -> io::Result<bool> {
        let (snapshot, old, old_len) = {
            let s = self.read(i);
            let due = if force {
                s.run.is_some() || !s.recent.is_empty()
            } else {
                s.recent.len() >= MIN_MERGE.max((s.run_len / MERGE_FRACTION) as usize).min(MAX_MERGE)
            };
            if !due {
                return Ok(false);
            }
            (s.recent.clone(), s.run.clone(), s.run_len)
        };
        let tmp = self.path(i, "tmp");
        let mut w = RunWriter::new(&tmp, old_len + snapshot.len() as u64)?;
        let mut push = |e: u64| if keep(e) { w.push(e) } else { Ok(()) };
        let mut mem = snapshot.iter().copied().peekable();
        if let Some(old) = &old {
            buf.resize(MERGE_IO, 0);
            let (mut off, end) = (0u64, old_len * 8);
            while off < end {
                let n = (end - off).min(MERGE_IO as u64) as usize;
                old.read_exact_at(&mut buf[..n], off)?;
                off += n as u64;
                for c in buf[..n].as_chunks::<8>().0 {
                    let e = u64::from_le_bytes(*c);
                    while let Some(m) = mem.next_if(|m| *m <= e) {
                        if m < e {
                            push(m)?;
                        }
                    }
                    push(e)?;
                }
            }
        }
        for m in mem {
            push(m)?;
        }
        let (run, run_len, fences) = w.finish(&self.path(i, "run"))?;
        let mut s = self.write(i);
        let recent = std::mem::take(&mut s.recent);
        // What was inserted during the I/O stays (both are sorted; `snapshot` ⊆ `recent`).
        let mut rest = Vec::with_capacity(recent.len().saturating_sub(snapshot.len()));
        let mut gone = snapshot.iter().peekable();
        for e in recent {
            while gone.next_if(|g| **g < e).is_some() {}
            if gone.next_if_eq(&&e).is_none() {
                rest.push(e);
            }
        }
        *s = Shard { recent: rest, run, run_len, fences };
        Ok(true)
    }

    /// Entries held (run files + recent). (After a merge that dropped entries, the new count.)
    pub fn len(&self) -> u64 {
        (0..self.shards.len()).map(|i| self.read(i)).map(|s| s.run_len + s.recent.len() as u64).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes held in memory (recent buffers' and fences' capacity * 8 + fixed per-shard
    /// overhead), for tests and metrics.
    pub fn memory_bytes(&self) -> usize {
        let per_shard = size_of::<RwLock<Shard>>();
        let per_run = size_of::<(usize, usize, File)>(); // an Arc's counts and its File
        let shards = (0..self.shards.len()).map(|i| self.read(i));
        shards
            .map(|s| per_shard + (s.recent.capacity() + s.fences.capacity()) * 8 + per_run * s.run.iter().count())
            .sum()
    }

    /// Bytes of the run files.
    pub fn disk_bytes(&self) -> u64 {
        (0..self.shards.len()).map(|i| self.read(i).run_len * 8).sum()
    }

    fn shard_of(&self, e: u64) -> usize {
        if self.shard_bits == 0 { 0 } else { (e >> (64 - self.shard_bits)) as usize }
    }

    fn path(&self, shard: usize, ext: &str) -> PathBuf {
        self.dir.join(format!("{}-{shard:04}.{ext}", self.name))
    }

    fn read(&self, i: usize) -> RwLockReadGuard<'_, Shard> {
        self.shards[i].read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, i: usize) -> RwLockWriteGuard<'_, Shard> {
        self.shards[i].write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Writes a run to its `.tmp` file, collecting the fences; `finish` renames it over the `.run`.
struct RunWriter {
    tmp: PathBuf,
    w: BufWriter<File>,
    len: u64,
    fences: Vec<u64>,
}

impl RunWriter {
    /// `most`: an upper bound of the entries to come (sizes the fences).
    fn new(tmp: &Path, most: u64) -> io::Result<RunWriter> {
        let file = OpenOptions::new().write(true).create(true).truncate(true).open(tmp)?;
        let fences = Vec::with_capacity(most.div_ceil(BLOCK_ENTRIES as u64) as usize);
        Ok(RunWriter { tmp: tmp.to_path_buf(), w: BufWriter::with_capacity(MERGE_IO, file), len: 0, fences })
    }

    fn push(&mut self, e: u64) -> io::Result<()> {
        if self.len.is_multiple_of(BLOCK_ENTRIES as u64) {
            self.fences.push(e);
        }
        self.len += 1;
        self.w.write_all(&e.to_le_bytes())
    }

    /// The new run's handle (`None`, and no file, when it is empty), length and fences.
    fn finish(mut self, run: &Path) -> io::Result<(Option<Arc<File>>, u64, Vec<u64>)> {
        self.w.flush()?;
        drop(self.w);
        if self.len == 0 {
            fs::remove_file(&self.tmp)?;
            match fs::remove_file(run) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => return Ok((None, 0, Vec::new())),
            }
        }
        fs::rename(&self.tmp, run)?;
        self.fences.shrink_to_fit();
        Ok((Some(Arc::new(File::open(run)?)), self.len, self.fences))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    fn mix(i: u64) -> u64 {
        let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The entries of fingerprint `fp` (its high 32 bits), as the owners look them up.
    fn of_fp(set: &DiskSet, fp: u64) -> Vec<u64> {
        set.range(fp << 32, fp << 32 | 0xffff_ffff).unwrap()
    }

    /// Entries cluster under a few 16-bit prefixes (spread over the shards), so ranges hit.
    const PREFIXES: [u64; 6] = [0x0000, 0x0001, 0x4000, 0x8000, 0xE001, 0xFFFF];

    #[derive(Debug, Clone)]
    enum Op {
        Insert(Vec<(usize, u64)>),
        Maintain,
        Force,
        ForceDropOdd,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => prop::collection::vec((0..PREFIXES.len(), 0..1u64 << 20), 0..900).prop_map(Op::Insert),
            2 => Just(Op::Maintain),
            1 => Just(Op::Force),
            1 => Just(Op::ForceDropOdd),
        ]
    }

    /// A prefix and two offsets under it: up to twice past the entries, so some ranges find nothing.
    fn query() -> impl Strategy<Value = (usize, u64, u64)> {
        (0..PREFIXES.len(), 0..1u64 << 21, 0..1u64 << 21)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
        /// Against a `BTreeSet`, through inserts, merges and merges that drop entries; ranges span
        /// many blocks, single entries, or nothing.
        #[test]
        fn agrees_with_a_btreeset(
            shard_bits in 0..=3u32,
            initial in prop::collection::vec((0..PREFIXES.len(), 0..1u64 << 20), 0..3000),
            steps in prop::collection::vec((op(), prop::collection::vec(query(), 3)), 1..25),
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let entry = |(p, x): (usize, u64)| PREFIXES[p] << 48 | x;
            let mut model: BTreeSet<u64> = initial.iter().copied().map(entry).collect();
            let set = DiskSet::create(tmp.path(), "t", shard_bits, initial.into_iter().map(entry).collect()).unwrap();
            for (op, queries) in steps {
                match op {
                    Op::Insert(es) => {
                        for e in es.into_iter().map(entry) {
                            // Each entry once, as the owners insert (see `DiskSet`).
                            if model.insert(e) {
                                set.insert(e);
                            }
                        }
                    }
                    Op::Maintain => _ = set.maintain(false, &|_| true).unwrap(),
                    Op::Force => _ = set.maintain(true, &|_| true).unwrap(),
                    Op::ForceDropOdd => {
                        set.maintain(true, &|e| e & 1 == 0).unwrap();
                        model.retain(|e| e & 1 == 0);
                    }
                }
                // Each prefix whole (many blocks), then the queries'.
                let mut ranges: Vec<_> = PREFIXES.iter().map(|p| (p << 48, p << 48 | 0xffff_ffff_ffff)).collect();
                for (p, a, b) in queries {
                    let base = PREFIXES[p] << 48;
                    ranges.push((base | a.min(b), base | a.max(b)));
                    ranges.push((base | a, base | a));
                    ranges.push((base | 3 << 20 | a, base | 3 << 20 | a | 0xff)); // above every entry
                }
                if let Some(e) = model.iter().nth(model.len() / 2) {
                    ranges.push((*e, *e));
                }
                for (lo, hi) in ranges {
                    let want: Vec<u64> = model.range(lo..=hi).copied().collect();
                    prop_assert_eq!(set.range(lo, hi).unwrap(), want, "{:x}..={:x}", lo, hi);
                }
                prop_assert_eq!(set.len(), model.len() as u64);
            }
        }
    }

    /// An entry inserted again after it was merged is returned once, and counted once after
    /// the next merge.
    #[test]
    fn an_entry_inserted_again_is_returned_once() {
        let tmp = tempfile::tempdir().unwrap();
        let set = DiskSet::create(tmp.path(), "t", 0, vec![5, 7, 7, 9]).unwrap();
        assert_eq!(set.len(), 3);
        set.insert(7);
        set.insert(7);
        set.insert(8);
        assert_eq!(set.range(0, 100).unwrap(), [5, 7, 8, 9]);
        assert_eq!(set.maintain(true, &|_| true).unwrap(), 1);
        assert_eq!(set.range(0, 100).unwrap(), [5, 7, 8, 9]);
        assert_eq!((set.len(), set.disk_bytes()), (4, 32));
        assert_eq!(set.maintain(true, &|_| false).unwrap(), 1);
        assert!(set.is_empty() && set.range(0, 100).unwrap().is_empty());
        assert!(fs::read_dir(tmp.path()).unwrap().next().is_none(), "an empty run leaves no file");
    }

    /// 100k entries on disk: all found, nothing invented, and under 1 % of them in memory.
    #[test]
    fn created_entries_are_found_with_little_memory() {
        let tmp = tempfile::tempdir().unwrap();
        let n = 100_000u64;
        let set = DiskSet::create(tmp.path(), "ids", 4, (0..n).map(mix).collect()).unwrap();
        assert_eq!((set.len(), set.disk_bytes()), (n, n * 8));
        let all: BTreeSet<u64> = (0..n).map(mix).collect();
        for i in (0..n).step_by(97) {
            let e = mix(i);
            assert_eq!(set.range(e, e).unwrap(), [e]);
            let fp = e >> 32;
            let want: Vec<u64> = all.range(fp << 32..=fp << 32 | 0xffff_ffff).copied().collect();
            assert_eq!(of_fp(&set, fp), want);
            for absent in [e ^ 1, e.wrapping_add(1 << 20)] {
                if !all.contains(&absent) && set.shard_of(absent) == set.shard_of(e) {
                    assert!(set.range(absent, absent).unwrap().is_empty(), "{absent:x}");
                }
            }
        }
        assert!(set.range(0, 0).unwrap().is_empty() && set.range(u64::MAX, u64::MAX).unwrap().is_empty());
        assert!(set.memory_bytes() < n as usize * 8 / 100, "{} bytes", set.memory_bytes());
    }

    /// Inserted in batches with a `maintain` after each, memory stays a fraction of the entries.
    #[test]
    fn memory_stays_bounded_while_inserting() {
        let tmp = tempfile::tempdir().unwrap();
        let n = 200_000u64;
        let set = DiskSet::create(tmp.path(), "ids", 2, Vec::new()).unwrap();
        let mut merged = 0;
        for batch in (0..n).collect::<Vec<_>>().chunks(1_000) {
            for i in batch {
                set.insert(mix(*i));
            }
            merged += set.maintain(false, &|_| true).unwrap();
        }
        assert!(merged > 20, "{merged} merges");
        assert_eq!(set.len(), n);
        assert!(set.memory_bytes() < n as usize * 8 / 4, "{} bytes", set.memory_bytes());
        for i in (0..n).step_by(7) {
            assert_eq!(set.range(mix(i), mix(i)).unwrap(), [mix(i)]);
        }
        assert_eq!(set.maintain(true, &|_| true).unwrap(), 4);
        assert!(set.memory_bytes() < n as usize * 8 / 100, "{} bytes", set.memory_bytes());
    }

    /// Lookups running during inserts and merges always find what was inserted before they began,
    /// and entries inserted during a merge outlive it.
    #[test]
    fn lookups_never_miss_an_entry_during_merges() {
        let tmp = tempfile::tempdir().unwrap();
        let set = DiskSet::create(tmp.path(), "ids", 2, Vec::new()).unwrap();
        let n = 40_000u64;
        // Entry i: a fingerprint in the high 32 bits, i in the low ones.
        let entry = |i: u64| mix(i) & !0xffff_ffff | i;
        let (inserted, done) = (AtomicU64::new(0), AtomicBool::new(false));
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..n {
                    set.insert(entry(i));
                    inserted.store(i + 1, Ordering::Release);
                    if i % 500 == 499 {
                        set.maintain(i % 10_000 == 9_999, &|_| true).unwrap();
                    }
                }
                done.store(true, Ordering::Release);
            });
            // A second maintainer, so merges also run while entries are being inserted.
            let maintainer = s.spawn(|| {
                let mut rounds = 0u64;
                while !done.load(Ordering::Acquire) {
                    set.maintain(rounds.is_multiple_of(4), &|_| true).unwrap();
                    rounds += 1;
                }
                rounds
            });
            let readers: Vec<_> = (0..3u64)
                .map(|r| {
                    let (set, inserted, done) = (&set, &inserted, &done);
                    s.spawn(move || {
                        let mut queries = 0u64;
                        while !done.load(Ordering::Acquire) || queries == 0 {
                            let have = inserted.load(Ordering::Acquire);
                            if have == 0 {
                                continue;
                            }
                            // The newest entry (likely in `recent`) and an older one (likely in a run).
                            for i in [have - 1, mix(r << 40 | queries) % have] {
                                let e = entry(i);
                                assert!(of_fp(set, e >> 32).contains(&e), "entry {i} missing");
                            }
                            queries += 1;
                        }
                        queries
                    })
                })
                .collect();
            for r in readers {
                assert!(r.join().unwrap() > 0);
            }
            assert!(maintainer.join().unwrap() > 0);
        });
        assert_eq!(set.len(), n);
    }

    /// `create` deletes an earlier set's runs and scratch files, and only this name's.
    #[test]
    fn create_replaces_an_earlier_sets_files() {
        let tmp = tempfile::tempdir().unwrap();
        let old: Vec<u64> = (0..5_000).map(mix).collect();
        drop(DiskSet::create(tmp.path(), "ids", 3, old.clone()).unwrap());
        fs::write(tmp.path().join("ids-0002.tmp"), [1u8; 16]).unwrap();
        for other in ["ids-x-0001.run", "other-0001.run", "ids.txt"] {
            fs::write(tmp.path().join(other), [1u8; 8]).unwrap();
        }
        let new: Vec<u64> = (0..5_000).map(|i| mix(i + 1_000_000) & !(1 << 63)).collect();
        let set = DiskSet::create(tmp.path(), "ids", 1, new.clone()).unwrap();
        let mut files: Vec<String> =
            fs::read_dir(tmp.path()).unwrap().map(|f| f.unwrap().file_name().into_string().unwrap()).collect();
        files.sort();
        assert_eq!(files, ["ids-0000.run", "ids-x-0001.run", "ids.txt", "other-0001.run"]);
        assert_eq!(set.len(), 5_000);
        for e in old {
            assert!(set.range(e, e).unwrap().is_empty(), "old entry {e:x} found");
        }
        for e in new.iter().step_by(13) {
            assert_eq!(set.range(*e, *e).unwrap(), [*e]);
        }
    }
}
