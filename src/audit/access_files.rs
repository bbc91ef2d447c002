//! The access log's storage: append-only files of framed entries, one day (UTC) or 64 MiB per
//! file, swept by deleting whole files (and rewriting the one file the cutoff falls inside).
//!
//! Why not sled, where it lived before: every read of course data writes an entry, so this is
//! the store that grows fastest, and sled keeps memory for every page it holds (its page table
//! and the nodes it wrote, beyond its cache bound): the soak measured the access log as the
//! largest share of the server's growth per event. Entries are written once, read rarely (by an
//! auditor), and deleted by age, which is exactly what an append-only file does well: memory
//! here is a few bytes per file, not per entry.
//!
//! ```text
//! data_dir/access/{first_seq:020}.acc   frames: len u32 LE | crc32c(payload) u32 LE | payload
//!                                       payload: seq u64 BE | at unix nanos u64 BE | flags u8
//!                                                | course [16] | account [16] (flags bit 0: a
//!                                                course, bit 1: an account; zeros when absent)
//!                                                | the rest of the entry as JSON (role, kind,
//!                                                resource, criteria, purpose)
//! data_dir/access/{first_seq:020}.sum   a sealed file's summary (below); rebuilt by a scan when
//!                                       missing or damaged
//! ```
//!
//! An entry's id is `seq ‖ at` (16 bytes, hex): entries are ordered by `seq`, the order they
//! were written in, which is also the files' order, so a cursor never skips an entry whose
//! time is a little out of order (requests queue their entries concurrently).
//!
//! **Durability**: a batch is written and `fdatasync`ed before the writer takes the next one
//! (the queue in `access.rs` is the group commit). A crash can leave a torn frame at the end of
//! the newest file: opening cuts it off with a warning. A failed write truncates the file back
//! to where the batch began, so no later batch lands behind a torn frame.
//!
//! **Memory**: per file its summary — first and last seq, the time range, the set of courses in
//! it, and a mark (seq, offset) every 1,024 entries so a cursor needs no scan from the start.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use time::OffsetDateTime;
use uuid::Uuid;

use super::AuditError;
use super::access::{AccessEntry, AccessFilter, AccessKind, AccessPage, StoredAccess};
use crate::framing::{self, Frames, HEADER};

/// The directory of the access log inside the data directory.
pub const ACCESS_DIR: &str = "access";

const FIXED: usize = 49;
/// A frame longer than this is damage, not an entry (entries are a few hundred bytes; a
/// search's criteria are bounded by the URL length).
const MAX_FRAME: usize = 1 << 20;
const MARK_EVERY: u64 = 1024;
const SUM_MAGIC: &[u8; 8] = b"vvaccsum";
const DAY_NANOS: u64 = 86_400 * 1_000_000_000;

fn io(e: std::io::Error) -> AuditError {
    AuditError::Storage(format!("access log: {e}"))
}

pub(super) fn nanos(t: OffsetDateTime) -> u64 {
    // Entries are never before 1970; clamp rather than wrap if a clock says otherwise.
    u64::try_from(t.unix_timestamp_nanos()).unwrap_or(0)
}

pub(super) fn id_of(seq: u64, at: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&seq.to_be_bytes());
    k[8..].copy_from_slice(&at.to_be_bytes());
    k
}

/// The fixed part of a payload, read without decoding the JSON.
#[derive(Debug, Clone, Copy)]
struct Head {
    seq: u64,
    at: u64,
    course: Option<Uuid>,
    account: Option<Uuid>,
}

impl Head {
    fn parse(p: &[u8]) -> Option<Head> {
        if p.len() < FIXED {
            return None;
        }
        let flags = p[16];
        let uuid = |bit: u8, b: &[u8]| -> Option<Option<Uuid>> {
            Some((flags & bit != 0).then_some(Uuid::from_bytes(b.try_into().ok()?)))
        };
        Some(Head {
            seq: u64::from_be_bytes(p[..8].try_into().ok()?),
            at: u64::from_be_bytes(p[8..16].try_into().ok()?),
            course: uuid(1, &p[17..33])?,
            account: uuid(2, &p[33..49])?,
        })
    }
}

/// The parts of an entry that are not in the frame's fixed head, as JSON: the time, the course
/// and the account are there already (half of an entry's bytes when repeated in JSON).
#[derive(serde::Serialize)]
struct RestRef<'a> {
    role: &'a str,
    kind: AccessKind,
    resource: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    criteria: Option<&'a serde_json::Map<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    purpose: Option<&'a str>,
}

#[derive(serde::Deserialize)]
struct Rest {
    role: String,
    kind: AccessKind,
    resource: String,
    #[serde(default)]
    criteria: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    purpose: Option<String>,
}

fn decode_entry(h: &Head, p: &[u8]) -> Option<AccessEntry> {
    let r: Rest = serde_json::from_slice(&p[FIXED..]).ok()?;
    Some(AccessEntry {
        at: OffsetDateTime::from_unix_timestamp_nanos(i128::from(h.at)).ok()?,
        account_id: h.account,
        role: r.role,
        course_id: h.course,
        kind: r.kind,
        resource: r.resource,
        criteria: r.criteria,
        purpose: r.purpose,
    })
}

fn encode_frame(out: &mut Vec<u8>, seq: u64, e: &AccessEntry) {
    let rest = RestRef {
        role: &e.role,
        kind: e.kind,
        resource: &e.resource,
        criteria: e.criteria.as_ref(),
        purpose: e.purpose.as_deref(),
    };
    let json = serde_json::to_vec(&rest).unwrap_or_default();
    framing::append(out, |out| {
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&nanos(e.at).to_be_bytes());
        out.push(u8::from(e.course_id.is_some()) | (u8::from(e.account_id.is_some()) << 1));
        out.extend_from_slice(e.course_id.unwrap_or_default().as_bytes());
        out.extend_from_slice(e.account_id.unwrap_or_default().as_bytes());
        out.extend_from_slice(&json);
    });
}

/// What is known of one file without reading it.
#[derive(Debug, Clone, PartialEq)]
struct Summary {
    /// The seq in the file's name (≤ its first entry's).
    name_seq: u64,
    /// Bytes of whole frames.
    len: u64,
    count: u64,
    first_seq: u64,
    last_seq: u64,
    min_at: u64,
    max_at: u64,
    /// Sorted.
    courses: Vec<Uuid>,
    /// (seq, offset) of every `MARK_EVERY`th entry, the first included.
    marks: Vec<(u64, u64)>,
}

impl Summary {
    fn empty(name_seq: u64) -> Self {
        Summary {
            name_seq,
            len: 0,
            count: 0,
            first_seq: u64::MAX,
            last_seq: 0,
            min_at: u64::MAX,
            max_at: 0,
            courses: Vec::new(),
            marks: Vec::new(),
        }
    }

    fn add(&mut self, h: &Head, offset: u64, frame_len: u64, courses: &mut HashSet<Uuid>) {
        if self.count.is_multiple_of(MARK_EVERY) {
            self.marks.push((h.seq, offset));
        }
        self.count += 1;
        self.len = offset + frame_len;
        self.first_seq = self.first_seq.min(h.seq);
        self.last_seq = self.last_seq.max(h.seq);
        self.min_at = self.min_at.min(h.at);
        self.max_at = self.max_at.max(h.at);
        if let Some(c) = h.course {
            courses.insert(c);
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut v = SUM_MAGIC.to_vec();
        for n in [self.name_seq, self.len, self.count, self.first_seq, self.last_seq, self.min_at, self.max_at] {
            v.extend_from_slice(&n.to_le_bytes());
        }
        v.extend_from_slice(&(self.courses.len() as u64).to_le_bytes());
        for c in &self.courses {
            v.extend_from_slice(c.as_bytes());
        }
        v.extend_from_slice(&(self.marks.len() as u64).to_le_bytes());
        for (s, o) in &self.marks {
            v.extend_from_slice(&s.to_le_bytes());
            v.extend_from_slice(&o.to_le_bytes());
        }
        let crc = crc32c::crc32c(&v);
        v.extend_from_slice(&crc.to_le_bytes());
        v
    }

    fn decode(b: &[u8]) -> Option<Summary> {
        let (body, crc) = b.split_at_checked(b.len().checked_sub(4)?)?;
        if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().ok()?) || !body.starts_with(SUM_MAGIC) {
            return None;
        }
        let mut r = Cursor(&body[SUM_MAGIC.len()..]);
        let [name_seq, len, count, first_seq, last_seq, min_at, max_at] =
            [r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?];
        let n = usize::try_from(r.u64()?).ok()?;
        let courses =
            (0..n).map(|_| Some(Uuid::from_bytes(r.take(16)?.try_into().ok()?))).collect::<Option<Vec<_>>>()?;
        let m = usize::try_from(r.u64()?).ok()?;
        let marks = (0..m).map(|_| Some((r.u64()?, r.u64()?))).collect::<Option<Vec<_>>>()?;
        Some(Summary { name_seq, len, count, first_seq, last_seq, min_at, max_at, courses, marks })
    }
}

/// Reads a summary front to back.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

/// The file being appended to.
struct Active {
    file: File,
    sum: Summary,
    courses: HashSet<Uuid>,
    /// The UTC day of its entries (`None` while it has none): a file holds one day, so the
    /// sweep deletes whole files.
    day: Option<u64>,
}

impl Active {
    /// The summary as a sealed file would have it.
    fn snapshot(&self) -> Summary {
        let mut s = self.sum.clone();
        s.courses = self.courses.iter().copied().collect();
        s.courses.sort_unstable();
        s
    }
}

/// The access log's files. Writes, sweeps and rotation take `active`; a query takes a snapshot
/// of the summaries and reads without a lock (a file swept meanwhile stays readable through an
/// open handle, or is skipped if already gone).
pub struct AccessFiles {
    dir: PathBuf,
    max_file: u64,
    sealed: RwLock<Vec<Arc<Summary>>>,
    active: Mutex<Option<Active>>,
    next_seq: Mutex<u64>,
}

fn data_path(dir: &Path, name_seq: u64) -> PathBuf {
    dir.join(format!("{name_seq:020}.acc"))
}

fn sum_path(dir: &Path, name_seq: u64) -> PathBuf {
    dir.join(format!("{name_seq:020}.sum"))
}

fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    crate::log::segment::sync_dir(dir).map_err(io)
}

/// Scans a whole file: its summary, the courses, and where its whole frames end.
fn scan(path: &Path, name_seq: u64) -> Result<(Summary, HashSet<Uuid>), AuditError> {
    let f = File::open(path).map_err(io)?;
    let mut frames = Frames::new(BufReader::with_capacity(256 << 10, f), 0, MAX_FRAME);
    let mut sum = Summary::empty(name_seq);
    let mut courses = HashSet::new();
    loop {
        let offset = frames.good;
        let Some(p) = frames.next_frame() else { break };
        let Some(h) = Head::parse(p) else { break };
        let frame_len = (HEADER + p.len()) as u64;
        sum.add(&h, offset, frame_len, &mut courses);
    }
    sum.len = frames.good;
    Ok((sum, courses))
}

impl AccessFiles {
    pub fn open(dir: &Path) -> Result<Self, AuditError> {
        Self::open_with(dir, 64 << 20)
    }

    pub(super) fn open_with(dir: &Path, max_file: u64) -> Result<Self, AuditError> {
        fs::create_dir_all(dir).map_err(io)?;
        // Leftovers of a rewrite or a summary a crash interrupted: the file they were to
        // replace is still whole.
        for e in fs::read_dir(dir).map_err(io)?.flatten() {
            if e.file_name().to_str().is_some_and(|n| n.ends_with(".tmp")) {
                let _ = fs::remove_file(e.path());
            }
        }
        let mut names: Vec<u64> = fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".acc")?.parse().ok())
            .collect();
        names.sort_unstable();
        let mut sealed = Vec::new();
        let mut active = None;
        let mut next_seq = 0;
        for (i, &name) in names.iter().enumerate() {
            let path = data_path(dir, name);
            let last = i + 1 == names.len();
            let stored = if last {
                None
            } else {
                fs::read(sum_path(dir, name)).ok().and_then(|b| Summary::decode(&b)).filter(|s| s.name_seq == name)
            };
            let (sum, courses) = match stored {
                Some(s) => (s, HashSet::new()),
                None => scan(&path, name)?,
            };
            // Ids are never reused: an empty file's name is where numbering goes on (the sweep
            // leaves the newest file in place, emptied, under the next number).
            next_seq = next_seq.max(if sum.count > 0 { sum.last_seq + 1 } else { name });
            if last {
                let file = OpenOptions::new().read(true).write(true).open(&path).map_err(io)?;
                let on_disk = file.metadata().map_err(io)?.len();
                if on_disk > sum.len {
                    // A torn tail (a crash during a write): the entries before it are whole.
                    tracing::warn!(file = %path.display(), offset = sum.len, "access log: cutting a torn tail");
                    file.set_len(sum.len).map_err(io)?;
                    file.sync_all().map_err(io)?;
                }
                let day = (sum.count > 0).then_some(sum.min_at / DAY_NANOS);
                active = Some(Active { file, sum, courses, day });
            } else {
                let mut sum = sum;
                if !courses.is_empty() {
                    sum.courses = courses.into_iter().collect();
                    sum.courses.sort_unstable();
                }
                sealed.push(Arc::new(sum));
            }
        }
        Ok(AccessFiles {
            dir: dir.to_owned(),
            max_file,
            sealed: RwLock::new(sealed),
            active: Mutex::new(active),
            next_seq: Mutex::new(next_seq),
        })
    }

    /// Appends entries in order and syncs them.
    pub fn write(&self, entries: &[AccessEntry]) -> Result<(), AuditError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut guard = self.active.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = self.next_seq.lock().unwrap_or_else(|p| p.into_inner());
        let mut buf = Vec::with_capacity(entries.len() * 320);
        let mut pending: Vec<(Head, u64, u64)> = Vec::with_capacity(entries.len());
        for e in entries {
            let at = nanos(e.at);
            let day = at / DAY_NANOS;
            let needs_new = match guard.as_ref() {
                None => true,
                Some(a) => a.day.is_some_and(|d| d != day || a.sum.len + buf.len() as u64 >= self.max_file),
            };
            if needs_new {
                self.flush_pending(&mut guard, &mut buf, &mut pending)?;
                self.rotate(&mut guard, *next)?;
            }
            if let Some(a) = guard.as_mut() {
                a.day.get_or_insert(day);
            }
            let offset = guard.as_ref().map_or(0, |a| a.sum.len) + buf.len() as u64;
            let start = buf.len();
            encode_frame(&mut buf, *next, e);
            let h = Head { seq: *next, at, course: e.course_id, account: e.account_id };
            pending.push((h, offset, (buf.len() - start) as u64));
            *next += 1;
        }
        self.flush_pending(&mut guard, &mut buf, &mut pending)
    }

    fn flush_pending(
        &self,
        active: &mut Option<Active>,
        buf: &mut Vec<u8>,
        pending: &mut Vec<(Head, u64, u64)>,
    ) -> Result<(), AuditError> {
        if pending.is_empty() {
            return Ok(());
        }
        let a = active.as_mut().ok_or_else(|| AuditError::Storage("access log: no file".into()))?;
        let written = (|| {
            a.file.seek(SeekFrom::Start(a.sum.len))?;
            a.file.write_all(buf)?;
            a.file.sync_data()
        })();
        if let Err(e) = written {
            // No later batch may land behind a torn frame.
            let _ = a.file.set_len(a.sum.len);
            buf.clear();
            pending.clear();
            return Err(io(e));
        }
        for (h, offset, len) in pending.drain(..) {
            a.sum.add(&h, offset, len, &mut a.courses);
        }
        buf.clear();
        Ok(())
    }

    /// Seals the active file (its summary written beside it) and starts one named `seq`.
    fn rotate(&self, active: &mut Option<Active>, seq: u64) -> Result<(), AuditError> {
        if let Some(a) = active.take() {
            let sum = a.snapshot();
            if sum.count == 0 {
                // Empty: reuse its name's slot by removing it.
                drop(a);
                fs::remove_file(data_path(&self.dir, sum.name_seq)).map_err(io)?;
            } else {
                // A summary is a shortcut: without one, the next open scans the file.
                if let Err(e) = write_summary(&self.dir, &sum) {
                    tracing::warn!(error = %e, "access log: cannot write a file's summary");
                }
                self.sealed.write().unwrap_or_else(|p| p.into_inner()).push(Arc::new(sum));
            }
        }
        let path = data_path(&self.dir, seq);
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).map_err(io)?;
        sync_dir(&self.dir)?;
        *active = Some(Active { file, sum: Summary::empty(seq), courses: HashSet::new(), day: None });
        Ok(())
    }

    /// The files as they are now that `wanted` accepts, oldest first (the active one last),
    /// each opened under the lock: a sweep that rewrites one afterwards renames a new file over
    /// the name, and the handle keeps reading the one its summary describes.
    fn snapshot(&self, wanted: impl Fn(&Summary) -> bool) -> Vec<(Arc<Summary>, File)> {
        let active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        let mut v = self.sealed.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(a) = active.as_ref().filter(|a| a.sum.count > 0) {
            v.push(Arc::new(a.snapshot()));
        }
        v.into_iter()
            .filter(|s| wanted(s))
            .filter_map(|s| Some((s.clone(), File::open(data_path(&self.dir, s.name_seq)).ok()?)))
            .collect()
    }

    pub fn query(&self, f: &AccessFilter) -> Result<AccessPage, AuditError> {
        let after = f.cursor.map(|c| u64::from_be_bytes(c[..8].try_into().unwrap_or([0; 8])));
        let from = f.from.map(nanos).unwrap_or(0);
        let to = f.to.map(nanos).unwrap_or(u64::MAX);
        let limit = f.limit.max(1);
        let mut items = Vec::new();
        let mut more = false;
        let files = self.snapshot(|s| {
            !(s.max_at < from
                || s.min_at >= to
                || after.is_some_and(|c| s.last_seq <= c)
                || f.course.is_some_and(|c| s.courses.binary_search(&c).is_err()))
        });
        'files: for (s, mut file) in files {
            // Start at the last mark at or before the cursor.
            let start = after.and_then(|c| s.marks.iter().rev().find(|(seq, _)| *seq <= c)).map_or(0, |(_, o)| *o);
            file.seek(SeekFrom::Start(start)).map_err(io)?;
            let r = BufReader::with_capacity(64 << 10, file.take(s.len.saturating_sub(start)));
            let mut frames = Frames::new(r, start, MAX_FRAME);
            while let Some(p) = frames.next_frame() {
                let Some(h) = Head::parse(p) else { break };
                if after.is_some_and(|c| h.seq <= c)
                    || h.at < from
                    || h.at >= to
                    || f.course.is_some_and(|c| h.course != Some(c))
                    || f.account.is_some_and(|a| h.account != Some(a))
                {
                    continue;
                }
                let Some(entry) = decode_entry(&h, p) else { continue };
                if items.len() == limit {
                    more = true;
                    break 'files;
                }
                items.push(StoredAccess { id: hex::encode(id_of(h.seq, h.at)), entry });
            }
            if frames.good < s.len {
                // Damage inside a file: what follows it cannot be framed, so it is not listed.
                tracing::warn!(
                    file = s.name_seq,
                    offset = frames.good,
                    "access log: an unreadable entry ends a file's read"
                );
            }
        }
        let next_cursor = if more { items.last().map(|s| s.id.clone()) } else { None };
        Ok(AccessPage { items, next_cursor })
    }

    /// Deletes every entry recorded before `cutoff`; returns how many. Whole files go when all
    /// their entries are older; a file with older and newer entries is rewritten with the newer
    /// ones (to a temporary file, synced, then renamed over it).
    pub fn sweep_before(&self, cutoff: OffsetDateTime) -> Result<u64, AuditError> {
        let cutoff = nanos(cutoff);
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        let mut deleted = 0;
        // A step that fails leaves its file as it was (and listed), and the sweep goes on with
        // the others; the first error is returned at the end, and the next sweep tries again.
        let mut failed: Option<AuditError> = None;
        let sealed: Vec<Arc<Summary>> = self.sealed.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut kept = Vec::with_capacity(sealed.len());
        for s in sealed {
            if s.min_at >= cutoff {
                kept.push(s);
            } else if s.max_at < cutoff {
                // Summary first: a crash in between leaves a file that the next open scans.
                let _ = fs::remove_file(sum_path(&self.dir, s.name_seq));
                match fs::remove_file(data_path(&self.dir, s.name_seq)) {
                    Ok(()) => deleted += s.count,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        failed.get_or_insert(io(e));
                        kept.push(s);
                    }
                }
            } else {
                match self.rewrite(&s, cutoff) {
                    Ok((mut sum, courses, n)) => {
                        deleted += n;
                        sum.courses = courses.into_iter().collect();
                        sum.courses.sort_unstable();
                        if let Err(e) = write_summary(&self.dir, &sum) {
                            tracing::warn!(error = %e, "access log: cannot write a file's summary");
                        }
                        kept.push(Arc::new(sum));
                    }
                    Err(e) => {
                        failed.get_or_insert(e);
                        kept.push(s);
                    }
                }
            }
        }
        if let Some(a) = active.as_mut().filter(|a| a.sum.count > 0 && a.sum.min_at < cutoff) {
            match self.rewrite(&a.sum, cutoff) {
                Err(e) => {
                    failed.get_or_insert(e);
                }
                Ok((sum, courses, n)) => {
                    deleted += n;
                    // The handle still names the file that was replaced: open its successor, or
                    // (if that fails) seal the rewritten file, so the next write starts a new one.
                    let path = data_path(&self.dir, sum.name_seq);
                    let day = a.day;
                    if sum.count == 0 {
                        drop(active.take());
                        let _ = fs::remove_file(&path);
                    } else {
                        match OpenOptions::new().read(true).write(true).open(&path) {
                            Ok(file) => *a = Active { file, sum, courses, day },
                            Err(e) => {
                                failed.get_or_insert(io(e));
                                let mut sum = sum;
                                sum.courses = courses.into_iter().collect();
                                sum.courses.sort_unstable();
                                let _ = write_summary(&self.dir, &sum);
                                kept.push(Arc::new(sum));
                                *active = None;
                            }
                        }
                    }
                }
            }
        }
        if active.is_none() {
            // Nothing left to append to (emptied, or a failed reopen): an empty file named by
            // the next id keeps the numbering across a restart.
            let next = *self.next_seq.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = self.rotate(&mut active, next) {
                failed.get_or_insert(e);
            }
        }
        if deleted > 0
            && let Err(e) = sync_dir(&self.dir)
        {
            failed.get_or_insert(e);
        }
        *self.sealed.write().unwrap_or_else(|p| p.into_inner()) = kept;
        match failed {
            Some(e) => Err(e),
            None => Ok(deleted),
        }
    }

    /// Copies the entries at or after `cutoff` of one file into its place; returns the new
    /// summary, its courses and how many entries were dropped.
    fn rewrite(&self, s: &Summary, cutoff: u64) -> Result<(Summary, HashSet<Uuid>, u64), AuditError> {
        let path = data_path(&self.dir, s.name_seq);
        let tmp = path.with_extension("acc.tmp");
        let src = File::open(&path).map_err(io)?;
        let mut frames = Frames::new(BufReader::with_capacity(256 << 10, src.take(s.len)), 0, MAX_FRAME);
        let mut out = std::io::BufWriter::with_capacity(256 << 10, File::create(&tmp).map_err(io)?);
        let mut sum = Summary::empty(s.name_seq);
        let mut courses = HashSet::new();
        let mut dropped = 0;
        let mut frame = Vec::new();
        while let Some(p) = frames.next_frame() {
            let Some(h) = Head::parse(p) else { break };
            if h.at < cutoff {
                dropped += 1;
                continue;
            }
            let frame_len = (HEADER + p.len()) as u64;
            frame.clear();
            framing::append(&mut frame, |o| o.extend_from_slice(p));
            out.write_all(&frame).map_err(io)?;
            sum.add(&h, sum.len, frame_len, &mut courses);
        }
        let out = out.into_inner().map_err(|e| io(e.into_error()))?;
        out.sync_all().map_err(io)?;
        // The old summary first (a missing one means "scan"), then the data, atomically.
        let _ = fs::remove_file(sum_path(&self.dir, s.name_seq));
        fs::rename(&tmp, &path).map_err(io)?;
        // Replaced: from here on the new file is the one, whatever else fails.
        if let Err(e) = sync_dir(&self.dir) {
            tracing::warn!(error = %e, "access log: cannot sync the directory after a rewrite");
        }
        Ok((sum, courses, dropped))
    }
}

fn write_summary(dir: &Path, sum: &Summary) -> Result<(), AuditError> {
    let path = sum_path(dir, sum.name_seq);
    let tmp = path.with_extension("sum.tmp");
    let mut f = File::create(&tmp).map_err(io)?;
    f.write_all(&sum.encode()).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, &path).map_err(io)?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::access::AccessKind;
    use proptest::prelude::*;

    fn entry(at_secs: i64, course: Option<u128>, account: u128) -> AccessEntry {
        AccessEntry {
            at: OffsetDateTime::from_unix_timestamp(1_767_225_600 + at_secs).unwrap(),
            account_id: Some(Uuid::from_u128(account)),
            role: "caseworker".into(),
            course_id: course.map(Uuid::from_u128),
            kind: AccessKind::Read,
            resource: "GET /v1/courses/{id}".into(),
            criteria: None,
            purpose: Some("case review".into()),
        }
    }

    fn all(files: &AccessFiles, f: AccessFilter) -> Vec<StoredAccess> {
        let mut out = Vec::new();
        let mut f = f;
        loop {
            let page = files.query(&f).unwrap();
            out.extend(page.items);
            match page.next_cursor {
                Some(c) => f.cursor = crate::audit::access::parse_cursor(&c),
                None => return out,
            }
        }
    }

    /// The files against a list: whatever is written, rotated, reopened (with or without the
    /// summaries) and swept, every query pages through exactly the entries the list holds.
    #[derive(Debug, Clone)]
    enum Op {
        Write(Vec<(i64, Option<u128>, u128)>),
        Sweep(i64),
        Reopen { drop_summaries: bool },
        Query { course: Option<u128>, account: Option<u128>, from: Option<i64>, to: Option<i64>, limit: usize },
    }

    fn op() -> impl Strategy<Value = Op> {
        let t = 0i64..5 * 86_400;
        prop_oneof![
            4 => prop::collection::vec((t.clone(), prop::option::of(0u128..4), 0u128..3), 1..40).prop_map(Op::Write),
            1 => t.clone().prop_map(Op::Sweep),
            1 => any::<bool>().prop_map(|drop_summaries| Op::Reopen { drop_summaries }),
            3 => (prop::option::of(0u128..4), prop::option::of(0u128..3), prop::option::of(t.clone()),
                  prop::option::of(t), 1usize..7)
                .prop_map(|(course, account, from, to, limit)| Op::Query { course, account, from, to, limit }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        #[test]
        fn the_files_agree_with_a_list(ops in prop::collection::vec(op(), 1..30), max_file in 600u64..6000) {
            let dir = tempfile::tempdir().unwrap();
            let mut files = AccessFiles::open_with(dir.path(), max_file).unwrap();
            let mut model: Vec<AccessEntry> = Vec::new();
            // Every id ever listed, with its entry: an id names one entry for good.
            let mut ids: std::collections::HashMap<String, AccessEntry> = std::collections::HashMap::new();
            for op in ops {
                match op {
                    Op::Write(es) => {
                        let es: Vec<_> = es.into_iter().map(|(t, c, a)| entry(t, c, a)).collect();
                        files.write(&es).unwrap();
                        model.extend(es);
                    }
                    Op::Sweep(t) => {
                        let cutoff = entry(t, None, 0).at;
                        let before = model.len();
                        model.retain(|e| e.at >= cutoff);
                        prop_assert_eq!(files.sweep_before(cutoff).unwrap(), (before - model.len()) as u64);
                    }
                    Op::Reopen { drop_summaries } => {
                        drop(files);
                        if drop_summaries {
                            for e in fs::read_dir(dir.path()).unwrap().flatten() {
                                if e.path().extension().is_some_and(|x| x == "sum") {
                                    fs::remove_file(e.path()).unwrap();
                                }
                            }
                        }
                        files = AccessFiles::open_with(dir.path(), max_file).unwrap();
                    }
                    Op::Query { course, account, from, to, limit } => {
                        let (from, to) = (from.map(|t| entry(t, None, 0).at), to.map(|t| entry(t, None, 0).at));
                        let f = AccessFilter {
                            course: course.map(Uuid::from_u128),
                            account: account.map(Uuid::from_u128),
                            from, to, cursor: None, limit,
                        };
                        let listed = all(&files, f.clone());
                        prop_assert!(listed.windows(2).all(|w| w[0].id < w[1].id), "listed in id order");
                        for s in &listed {
                            prop_assert_eq!(ids.entry(s.id.clone()).or_insert_with(|| s.entry.clone()), &s.entry);
                        }
                        let got: Vec<AccessEntry> = listed.into_iter().map(|s| s.entry).collect();
                        let want: Vec<AccessEntry> = model.iter().filter(|e| {
                            f.course.is_none_or(|c| e.course_id == Some(c))
                                && f.account.is_none_or(|a| e.account_id == Some(a))
                                && from.is_none_or(|t| e.at >= t) && to.is_none_or(|t| e.at < t)
                        }).cloned().collect();
                        prop_assert_eq!(got, want);
                    }
                }
            }
        }
    }

    #[test]
    fn files_rotate_by_day_and_size_and_old_ones_are_deleted_whole() {
        let dir = tempfile::tempdir().unwrap();
        let files = AccessFiles::open_with(dir.path(), 4096).unwrap();
        let day = 86_400;
        // Day 0: enough to fill two files; day 1 and day 2: one entry each.
        let es: Vec<_> =
            (0..40).map(|i| entry(i, Some(1), 1)).chain([entry(day, Some(2), 1), entry(2 * day, None, 1)]).collect();
        files.write(&es).unwrap();
        let names = |ext: &str| {
            let mut v: Vec<String> = fs::read_dir(dir.path())
                .unwrap()
                .flatten()
                .map(|e| e.file_name().into_string().unwrap())
                .filter(|n| n.ends_with(ext))
                .collect();
            v.sort();
            v
        };
        let data = names(".acc");
        assert!(data.len() >= 4, "{data:?}");
        assert_eq!(names(".sum").len(), data.len() - 1, "every sealed file has its summary");
        // A per-course query reads only the files that hold the course.
        assert_eq!(
            all(&files, AccessFilter { course: Some(Uuid::from_u128(2)), limit: 5, ..Default::default() }).len(),
            1
        );
        // The sweep before day 1 deletes day 0's files whole and rewrites nothing.
        let before: Vec<_> = names(".acc");
        assert_eq!(files.sweep_before(entry(day, None, 0).at).unwrap(), 40);
        assert_eq!(names(".acc"), before[before.len() - 2..].to_vec());
        assert_eq!(all(&files, AccessFilter { limit: 10, ..Default::default() }).len(), 2);
    }

    #[test]
    fn a_sweep_goes_on_past_a_file_that_is_already_gone() {
        let dir = tempfile::tempdir().unwrap();
        let files = AccessFiles::open(dir.path()).unwrap();
        let day = 86_400;
        files.write(&[entry(0, Some(1), 1), entry(day, Some(1), 1), entry(2 * day, Some(1), 1)]).unwrap();
        // Day 0's file disappears behind the store's back (an operator, a restore).
        fs::remove_file(data_path(dir.path(), 0)).unwrap();
        assert_eq!(files.sweep_before(entry(2 * day, None, 0).at).unwrap(), 1, "day 1's entry; day 0's was gone");
        files.write(&[entry(2 * day + 1, Some(1), 1)]).unwrap();
        assert_eq!(all(&files, AccessFilter { limit: 10, ..Default::default() }).len(), 2);
    }

    #[test]
    fn a_torn_tail_is_cut_at_open_and_numbering_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let files = AccessFiles::open(dir.path()).unwrap();
        files.write(&[entry(0, Some(1), 1), entry(1, Some(1), 1)]).unwrap();
        let first_ids: Vec<String> =
            all(&files, AccessFilter { limit: 10, ..Default::default() }).into_iter().map(|s| s.id).collect();
        drop(files);
        let path = data_path(dir.path(), 0);
        let whole = fs::metadata(&path).unwrap().len();
        // A crash in the middle of the next frame.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 5]).unwrap();
        drop(f);
        let files = AccessFiles::open(dir.path()).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), whole, "the torn frame is cut off");
        files.write(&[entry(2, Some(1), 1)]).unwrap();
        let got = all(&files, AccessFilter { course: Some(Uuid::from_u128(1)), limit: 10, ..Default::default() });
        assert_eq!(got.len(), 3);
        assert_eq!(got[..2].iter().map(|s| s.id.clone()).collect::<Vec<_>>(), first_ids);
        assert!(got[2].id > got[1].id, "a new entry's id follows the old ones");
    }

    #[test]
    fn a_damaged_summary_is_rebuilt_from_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let files = AccessFiles::open_with(dir.path(), 1000).unwrap();
        files.write(&(0..10).map(|i| entry(i, Some(i as u128 % 3), 1)).collect::<Vec<_>>()).unwrap();
        let want = all(&files, AccessFilter { course: Some(Uuid::from_u128(2)), limit: 2, ..Default::default() });
        drop(files);
        let sum = sum_path(dir.path(), 0);
        let mut b = fs::read(&sum).unwrap();
        b[20] ^= 1;
        fs::write(&sum, b).unwrap();
        let files = AccessFiles::open_with(dir.path(), 1000).unwrap();
        assert_eq!(
            all(&files, AccessFilter { course: Some(Uuid::from_u128(2)), limit: 2, ..Default::default() }),
            want
        );
        assert_eq!(want.len(), 3);
    }
}
