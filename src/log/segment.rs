//! Segment files: `log/{first_position:020}.seg`, a 16-byte header and then frames.
//!
//! The active segment is preallocated so that `fdatasync` after an append does not also have to
//! journal a new file size. Best is a segment whose zeros were really written (a "spare", made
//! in the background once the active segment is half full): then a sync flushes data only. On
//! this machine a single-appender sync took ~140 µs in a pre-zeroed segment against ~180 µs in a
//! `fallocate`d one (unwritten extents are converted, and journaled, on first write), and
//! appending to a growing file was slower still. When no spare is ready a roll falls back to
//! `fallocate`. The logical end is found by scanning, not from the file size: it is the first
//! all-zero frame header. A sealed segment is trimmed to its end.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::envelope::Hash;
use super::record::{
    self, DecodedRecord, FLAG_BATCH_START, FLAG_TXN_END, FRAME_HEADER, FrameHead, MAX_PAYLOAD, MIN_PAYLOAD,
};

pub const MAGIC: &[u8; 8] = b"VIVIRKLG";
pub const FORMAT_VERSION: u32 = 1;
pub const HEADER_LEN: u64 = 16;

/// One segment file, shared by the writer (appends with `pwrite`) and readers (`pread`).
#[derive(Debug)]
pub struct Segment {
    pub first_position: u64,
    pub path: PathBuf,
    pub file: File,
}

pub fn segment_name(first_position: u64) -> String {
    format!("{first_position:020}.seg")
}

pub fn parse_segment_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".seg")?;
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit())).then(|| stem.parse().ok())?
}

/// Lists segment files in `dir`, oldest first.
pub fn list_segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(first) = entry.file_name().to_str().and_then(parse_segment_name) {
            out.push((first, entry.path()));
        }
    }
    out.sort_by_key(|(p, _)| *p);
    Ok(out)
}

/// Creates a new segment with its header, preallocated to `prealloc` bytes, synced, and its
/// directory entry synced, so a crash never leaves a segment that exists without its header.
pub fn create(dir: &Path, first_position: u64, prealloc: u64) -> std::io::Result<Segment> {
    let path = dir.join(segment_name(first_position));
    let file = OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
    let made = (|| {
        let mut header = [0u8; HEADER_LEN as usize];
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        file.write_all_at(&header, 0)?;
        preallocate(&file, prealloc)?;
        file.sync_all()?;
        sync_dir(dir)
    })();
    if let Err(e) = made {
        // Disk full or read-only: leave nothing behind, so the next roll can try again cleanly.
        drop(file);
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(Segment { first_position, path, file })
}

pub fn open(path: &Path, first_position: u64, writable: bool) -> std::io::Result<Segment> {
    let file = OpenOptions::new().read(true).write(writable).open(path)?;
    Ok(Segment { first_position, path: path.to_owned(), file })
}

/// Reserves space up to `len` bytes without changing what reads return (zeros).
pub fn preallocate(file: &File, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let current = file.metadata()?.len();
    if len <= current {
        return Ok(());
    }
    // SAFETY: plain syscall on an fd we own; mode 0 extends the file and zero-fills.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), current as libc::off_t, (len - current) as libc::off_t) };
    match rc {
        0 => Ok(()),
        // Filesystems without fallocate (tmpfs on old kernels, some network fs): fine, slower.
        libc::EOPNOTSUPP | libc::EINVAL => Ok(()),
        e => Err(std::io::Error::from_raw_os_error(e)),
    }
}

pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Checks a segment's header.
pub fn check_header(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < HEADER_LEN as usize || &bytes[..8] != MAGIC {
        return Err("not a vivirk segment (bad magic)".into());
    }
    let v = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if v != FORMAT_VERSION {
        return Err(format!("segment format {v} is not supported (this build reads {FORMAT_VERSION})"));
    }
    Ok(())
}

/// Reads the frame at `offset`. `Ok(None)` means the logical end (a zero header or end of file).
pub fn read_frame_at(file: &File, offset: u64) -> Result<Option<DecodedRecord>, String> {
    read_frame_with(file, offset, |payload| record::decode_payload(payload).map_err(|e| e.to_string()))?
        .transpose()
        .map_err(|e| format!("record at offset {offset}: {e}"))
}

/// Reads the frame at `offset`, checks its CRC and hands its payload to `f`, without an
/// allocation: the bytes are read into a buffer kept per thread. `Ok(None)` as above.
pub fn read_frame_with<R>(file: &File, offset: u64, f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>, String> {
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with(|cell| {
        // A reentrant call (none today) gets a buffer of its own rather than a panic.
        let mut own = Vec::new();
        let mut guard = cell.try_borrow_mut();
        let buf = match guard.as_mut() {
            Ok(b) => &mut **b,
            Err(_) => &mut own,
        };
        // One read usually covers the whole record (most are a few hundred bytes); a second one
        // fetches the rest of a large one. Reading a whole page each time cost more in copying
        // than the read itself on a history page of 50 events.
        if buf.len() < 1024 {
            buf.resize(1024, 0);
        }
        let n = read_up_to(file, &mut buf[..1024], offset).map_err(|e| e.to_string())?;
        if n < FRAME_HEADER {
            return Ok(None);
        }
        let Some((len, crc)) = frame_at(&buf[..FRAME_HEADER], offset)? else { return Ok(None) };
        let total = FRAME_HEADER + len;
        if n < total {
            if buf.len() < total {
                buf.resize(total, 0);
            }
            let got = read_up_to(file, &mut buf[n..total], offset + n as u64).map_err(|e| e.to_string())?;
            if n + got < total {
                return Err(format!("record at offset {offset} is cut short"));
            }
        }
        let payload = &buf[FRAME_HEADER..total];
        if !record::crc_ok(payload, crc) {
            return Err(format!("checksum mismatch at offset {offset}"));
        }
        let out = f(payload);
        // A rare large record does not keep its buffer for good.
        if buf.len() > 64 * 1024 {
            buf.truncate(1024);
            buf.shrink_to_fit();
        }
        Ok(Some(out))
    })
}

/// A frame header's record length and CRC; `None` at the logical end (a zero header).
fn frame_at(header: &[u8], offset: u64) -> Result<Option<(usize, u32)>, String> {
    let head: [u8; FRAME_HEADER] = header.try_into().map_err(|_| "short header")?;
    match record::frame_head(&head) {
        FrameHead::Zero => Ok(None),
        FrameHead::Implausible => Err(format!("implausible record length at offset {offset}")),
        FrameHead::Frame { len, crc } => Ok(Some((len, crc))),
    }
}

fn read_up_to(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Sequential reader over one segment's bytes with a large buffer; the replay hot path.
pub struct SegmentCursor {
    seg: std::sync::Arc<Segment>,
    buf: Vec<u8>,
    buf_start: u64,
    buf_len: usize,
    pub offset: u64,
    /// Bytes the next read asks for beyond what is buffered.
    read_size: usize,
}

/// A cursor's first read, doubled on every read after it up to [`MAX_READ`]. Most cursors read
/// a few records (the projections' follower reads each group commit, a few KB, through a new
/// cursor); reading a fixed 1 MiB each time cost the server 10–15 % of its CPU in copies and
/// page faults at 16,000 check-ins/s (perf), since the active segment is preallocated and reads
/// past the last record return zeros, not a short read. Long scans reach 1 MiB reads after
/// seven.
const FIRST_READ: usize = 16 << 10;
const MAX_READ: usize = 1 << 20;

impl SegmentCursor {
    pub fn new(seg: std::sync::Arc<Segment>, offset: u64) -> Self {
        Self { seg, buf: Vec::new(), buf_start: offset, buf_len: 0, offset, read_size: FIRST_READ }
    }

    /// Makes `need` bytes at `self.offset` available in the buffer; returns how many are.
    fn fill(&mut self, need: usize) -> std::io::Result<usize> {
        let rel = (self.offset - self.buf_start) as usize;
        if rel + need <= self.buf_len {
            return Ok(need);
        }
        // Move the unread tail to the front, grow if one record is larger than the buffer.
        self.buf.copy_within(rel..self.buf_len, 0);
        self.buf_len -= rel;
        self.buf_start = self.offset;
        let want = (self.buf_len + self.read_size).max(need);
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        let n = read_up_to(&self.seg.file, &mut self.buf[self.buf_len..want], self.buf_start + self.buf_len as u64)?;
        self.read_size = (self.read_size * 2).min(MAX_READ);
        self.buf_len += n;
        Ok(self.buf_len.min(need))
    }

    /// The next record, `Ok(None)` at the logical end.
    pub fn next_record(&mut self) -> Result<Option<(u64, DecodedRecord)>, String> {
        match self.next_payload()? {
            None => Ok(None),
            Some((at, payload)) => {
                let rec = record::decode_payload(payload).map_err(|e| format!("record at offset {at}: {e}"))?;
                Ok(Some((at, rec)))
            }
        }
    }

    /// The next record's payload, CRC checked but not decoded, and its offset.
    pub fn next_payload(&mut self) -> Result<Option<(u64, &[u8])>, String> {
        let at = self.offset;
        let got = self.fill(FRAME_HEADER).map_err(|e| e.to_string())?;
        if got < FRAME_HEADER {
            return Ok(None);
        }
        let rel = (self.offset - self.buf_start) as usize;
        let Some((len, crc)) = frame_at(&self.buf[rel..rel + FRAME_HEADER], at)? else { return Ok(None) };
        let total = FRAME_HEADER + len;
        if self.fill(total).map_err(|e| e.to_string())? < total {
            return Err(format!("record at offset {at} is cut short"));
        }
        let rel = (self.offset - self.buf_start) as usize;
        let payload = &self.buf[rel + FRAME_HEADER..rel + total];
        if !record::crc_ok(payload, crc) {
            return Err(format!("checksum mismatch at offset {at}"));
        }
        self.offset += total as u64;
        Ok(Some((at, payload)))
    }

    /// Skips the next record without decoding it (still checks the frame is whole).
    pub fn skip_record(&mut self) -> Result<bool, String> {
        let at = self.offset;
        if self.fill(FRAME_HEADER).map_err(|e| e.to_string())? < FRAME_HEADER {
            return Ok(false);
        }
        let rel = (self.offset - self.buf_start) as usize;
        let Some((len, _)) = frame_at(&self.buf[rel..rel + FRAME_HEADER], at)? else { return Ok(false) };
        self.offset += (FRAME_HEADER + len) as u64;
        Ok(true)
    }
}

/// What the chain looked like just before a segment: the last record of the previous one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChainTip {
    pub position: u64,
    pub hash: Hash,
    pub batch: u64,
}

/// The result of scanning the last segment on open.
#[derive(Debug)]
pub struct ScanResult {
    /// Where the next record goes.
    pub end: u64,
    /// The last record kept (or the tip passed in, if the segment holds none).
    pub tip: ChainTip,
    /// A torn tail that was found and must be cut: (offset of the first bad byte, why).
    pub torn: Option<(u64, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("{path}: {reason} at byte offset {offset}; the record before the tail is damaged, refusing to open")]
    Damaged { path: String, offset: u64, reason: String },
    #[error("{path}: {0}", path = .1)]
    Header(String, String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Scans a whole segment, checking frames, CRCs and the hash chain, and decides where the log
/// ends. A bad frame is a torn tail (cut it, with a warning) only if nothing written after it
/// belongs to a later group commit: the writer starts a batch only after the previous one was
/// fsynced, so a later batch's `BATCH_START` record behind a bad frame proves the bad frame was
/// once durable and is now damaged — a hard error. A bad frame is also cut back to the last
/// complete atomic append (`TXN_END`), so a multi-event append survives whole or not at all.
///
/// `before` is the tip of the previous segment when known; otherwise the first record's own
/// `prev_hash` is taken as the base (the previous segments are checked by `verify`).
pub fn scan(bytes: &[u8], path: &Path, before: Option<ChainTip>) -> Result<ScanResult, ScanError> {
    let p = || path.display().to_string();
    check_header(bytes).map_err(|e| ScanError::Header(e, p()))?;
    let mut off = HEADER_LEN as usize;
    let mut anchored = before.is_some();
    let before = before.unwrap_or_default();
    let mut tip = before;
    // The last place a complete atomic append ended, and the tip there.
    let mut txn_end = (off, tip);
    let mut last_batch = before.batch;
    let bad: (usize, String) = loop {
        if off + FRAME_HEADER > bytes.len() {
            if bytes[off..].iter().all(|b| *b == 0) {
                break (usize::MAX, String::new());
            }
            break (off, "partial frame header".into());
        }
        let head: [u8; FRAME_HEADER] = bytes[off..off + FRAME_HEADER].try_into().unwrap_or_default();
        let (len, crc) = match record::frame_head(&head) {
            FrameHead::Zero => {
                if bytes[off..].iter().all(|b| *b == 0) {
                    break (usize::MAX, String::new());
                }
                break (off, "zeros followed by data".into());
            }
            FrameHead::Implausible => break (off, "implausible record length".into()),
            FrameHead::Frame { len, crc } => (len, crc),
        };
        if off + FRAME_HEADER + len > bytes.len() {
            break (off, "record cut short".into());
        }
        let payload = &bytes[off + FRAME_HEADER..off + FRAME_HEADER + len];
        if !record::crc_ok(payload, crc) {
            break (off, "checksum mismatch".into());
        }
        // A record whose CRC holds was written whole by a writer; if it does not decode or does
        // not chain, it was not a crash that did that.
        let rec = record::decode_payload(payload).map_err(|e| ScanError::Damaged {
            path: p(),
            offset: off as u64,
            reason: format!("undecodable record ({e})"),
        })?;
        let e = &rec.envelope;
        if !anchored {
            // The first record of a segment whose predecessor we did not read: it anchors.
            tip = ChainTip { position: e.position.saturating_sub(1), hash: e.prev_hash, batch: 0 };
            txn_end.1 = tip;
            anchored = true;
        }
        if e.position != tip.position + 1 || e.prev_hash != tip.hash {
            return Err(ScanError::Damaged {
                path: p(),
                offset: off as u64,
                reason: format!(
                    "hash chain broken at position {} (expected position {} after hash {})",
                    e.position,
                    tip.position + 1,
                    tip.hash
                ),
            });
        }
        let computed = Hash::chain(&e.prev_hash, &payload[rec.canonical.clone()]);
        if computed != e.hash || Hash::of(&e.data) != e.data_sha256 {
            return Err(ScanError::Damaged {
                path: p(),
                offset: off as u64,
                reason: format!("hash of position {} does not match its content", e.position),
            });
        }
        tip = ChainTip { position: e.position, hash: e.hash, batch: rec.header.batch };
        last_batch = rec.header.batch;
        off += FRAME_HEADER + len;
        if rec.header.flags & FLAG_TXN_END != 0 {
            txn_end = (off, tip);
        }
    };
    let (bad_off, reason) = bad;
    if bad_off == usize::MAX {
        // Clean end. Records after the last TXN_END mean a crash kept only a prefix of a batch
        // (the rest reads as zeros): that append was never acknowledged and goes whole.
        if txn_end.0 != off {
            return Ok(ScanResult {
                end: txn_end.0 as u64,
                tip: txn_end.1,
                torn: Some((txn_end.0 as u64, "incomplete atomic append at the tail".into())),
            });
        }
        return Ok(ScanResult { end: off as u64, tip, torn: None });
    }
    if let Some(later) = later_batch_after(bytes, bad_off + 1, last_batch) {
        return Err(ScanError::Damaged {
            path: p(),
            offset: bad_off as u64,
            reason: format!("{reason}, but a later write survives at offset {later}"),
        });
    }
    Ok(ScanResult { end: txn_end.0 as u64, tip: txn_end.1, torn: Some((bad_off as u64, reason)) })
}

/// Looks for an intact record at or after `from` that starts a group commit later than
/// `last_batch`. Cheap field checks come before the CRC so garbage is dismissed quickly.
fn later_batch_after(bytes: &[u8], from: usize, last_batch: u64) -> Option<usize> {
    let mut at = from;
    while at + FRAME_HEADER + MIN_PAYLOAD <= bytes.len() {
        let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        if (MIN_PAYLOAD..=MAX_PAYLOAD).contains(&len) && at + FRAME_HEADER + len <= bytes.len() {
            let payload = &bytes[at + FRAME_HEADER..at + FRAME_HEADER + len];
            if let Some((flags, batch, _)) = record::peek_payload(payload) {
                let crc = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
                if flags & FLAG_BATCH_START != 0 && batch > last_batch && record::crc_ok(payload, crc) {
                    return Some(at);
                }
            }
        }
        at += 1;
    }
    None
}

/// The name of the spare segment being prepared; not a segment until renamed.
pub const SPARE_NAME: &str = "next.seg.tmp";

/// Prepares a zero-filled spare segment in the background, on request.
pub struct SparePrep {
    dir: PathBuf,
    ready: std::sync::Arc<std::sync::atomic::AtomicBool>,
    busy: std::sync::Arc<std::sync::atomic::AtomicBool>,
    tx: Option<std::sync::mpsc::SyncSender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl SparePrep {
    pub fn start(dir: &Path, size: u64) -> std::io::Result<Self> {
        let spare = dir.join(SPARE_NAME);
        // A spare left by a crash may be half written; make a new one when asked.
        match std::fs::remove_file(&spare) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        use std::sync::atomic::Ordering::{Acquire, Release};
        let ready = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let busy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
        let (r, b) = (ready.clone(), busy.clone());
        let handle = std::thread::Builder::new().name("vivirk-segment-prep".into()).spawn(move || {
            while rx.recv().is_ok() {
                if r.load(Acquire) {
                    continue;
                }
                b.store(true, Release);
                match make_spare(&spare, size) {
                    Ok(()) => r.store(true, Release),
                    Err(e) => {
                        // A half-written spare would only hold disk space: remove it.
                        let _ = std::fs::remove_file(&spare);
                        tracing::warn!(error = %e, "could not prepare the next segment; rolls will use fallocate");
                    }
                }
                b.store(false, Release);
            }
        })?;
        Ok(SparePrep { dir: dir.to_owned(), ready, busy, tx: Some(tx), handle: Some(handle) })
    }

    /// Asks for a spare unless one is ready or being made (cheap; called after each commit past
    /// the middle of a segment).
    pub fn request(&mut self) {
        use std::sync::atomic::Ordering::Acquire;
        if !self.ready.load(Acquire)
            && !self.busy.load(Acquire)
            && let Some(tx) = &self.tx
        {
            let _ = tx.try_send(());
        }
    }

    /// Turns the spare into the segment starting at `first_position`, if one is ready.
    pub fn take(&mut self, first_position: u64) -> std::io::Result<Option<Segment>> {
        if !self.ready.swap(false, std::sync::atomic::Ordering::AcqRel) {
            return Ok(None);
        }
        let path = self.dir.join(segment_name(first_position));
        std::fs::rename(self.dir.join(SPARE_NAME), &path)?;
        sync_dir(&self.dir)?;
        Ok(Some(open(&path, first_position, true)?))
    }
}

impl Drop for SparePrep {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn make_spare(path: &Path, size: u64) -> std::io::Result<()> {
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)?;
    let mut header = [0u8; HEADER_LEN as usize];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    file.write_all_at(&header, 0)?;
    let zeros = vec![0u8; 1 << 20];
    let mut at = HEADER_LEN;
    while at < size {
        let n = ((size - at) as usize).min(zeros.len());
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    file.sync_all()
}
