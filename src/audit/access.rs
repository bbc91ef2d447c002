//! The access log: who used course data, when, how, and why.
//!
//! Every read or search of course data (and every export and replay) becomes an
//! [`AccessEntry`]: time, account, role, course, kind of use, the criteria of a search, and the
//! purpose the client sent in `X-Purpose`. It is its own log, not the course record: entries are
//! not events, are not hash-chained, and are **deleted** after the retention period (default 183
//! days), as Danish public-sector practice expects of logs of personal-data use.
//!
//! **Cost on the read path**: [`AccessLog::record`] puts the entry on an in-memory queue and
//! returns; a background task writes the queue to sled and flushes every
//! `access_log_flush_ms` (default 100 ms) or every `access_log_batch` entries (group commit).
//! No sled write, no fsync on the request path. **What a crash may lose**: the entries of the
//! current group commit — at most one window (~100 ms) of reads, plus the batch being written.
//! Nothing older: each batch is flushed (fsync) before the next one is gathered. A graceful
//! shutdown drains the queue ([`AccessLog::flush`]).
//!
//! Keys are `at (unix nanos, u64 BE) ‖ seq (u64 BE)`, so a range scan is a time range and the
//! sweep deletes a prefix. A second tree, `course ‖ at ‖ seq`, answers per-course questions (the
//! auditor's `?course=`, the young person's own list) without scanning everything; a query by
//! account alone scans the time range.
//!
//! **Single-key writes, ordered.** sled's transactions take its process-wide lock exclusively,
//! which can deadlock it (see `crate::open_sled`), so an entry is two inserts: the per-course
//! index first, then the entry. A crash between them leaves an index key with no entry, which a
//! query skips (as it does one whose entry the sweep deleted); never an entry the per-course
//! query cannot find.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{AuditError, AuditStore};
use crate::clock::SharedClock;

/// How the data was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccessKind {
    /// One course's data was read.
    Read,
    /// A search: filter criteria within a course, or a look across courses.
    Search,
    /// The course record (or the whole log) was taken away.
    Export,
    /// The course's history was replayed.
    Replay,
}

/// One use of course data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccessEntry {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    /// `None`: a command-line tool run on the data directory by an operator.
    pub account_id: Option<Uuid>,
    /// The role the account acted in (`operator` for a tool).
    pub role: String,
    /// `None` for a search across courses.
    pub course_id: Option<Uuid>,
    pub kind: AccessKind,
    /// What was used: the route pattern (`GET /v1/courses/{id}/contacts`) or the tool.
    pub resource: String,
    /// A search's criteria (query parameters), as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub criteria: Option<serde_json::Map<String, serde_json::Value>>,
    /// The purpose the client gave (`X-Purpose`).
    pub purpose: Option<String>,
}

/// A stored entry with its id (the key, hex; also the pagination cursor).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StoredAccess {
    pub id: String,
    #[serde(flatten)]
    pub entry: AccessEntry,
}

#[derive(Debug, Clone, Default)]
pub struct AccessFilter {
    pub course: Option<Uuid>,
    pub account: Option<Uuid>,
    pub from: Option<OffsetDateTime>,
    /// Exclusive.
    pub to: Option<OffsetDateTime>,
    /// Entries after this id (exclusive).
    pub cursor: Option<[u8; 16]>,
    pub limit: usize,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AccessPage {
    /// Oldest first.
    pub items: Vec<StoredAccess>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

enum Msg {
    Entry(Box<AccessEntry>),
    /// Answer once everything queued before it is written and flushed.
    Flush(oneshot::Sender<()>),
}

/// The store side: keys, writes, queries, the sweep. Synchronous (sled).
pub struct AccessStore {
    store: AuditStore,
    seq: AtomicU64,
}

fn nanos(t: OffsetDateTime) -> u64 {
    // Entries are never before 1970; clamp rather than wrap if a clock says otherwise.
    u64::try_from(t.unix_timestamp_nanos()).unwrap_or(0)
}

fn key(at: OffsetDateTime, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&nanos(at).to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn course_key(course: Uuid, k: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(32);
    v.extend_from_slice(course.as_bytes());
    v.extend_from_slice(k);
    v
}

pub fn parse_cursor(s: &str) -> Option<[u8; 16]> {
    let mut k = [0u8; 16];
    hex::decode_to_slice(s, &mut k).ok()?;
    Some(k)
}

impl AccessStore {
    pub fn new(store: AuditStore) -> Result<Self, AuditError> {
        // Continue the sequence after the newest key, so keys stay unique across restarts even
        // when the clock stands still (tests) or steps back.
        let seq = match store.access.last()? {
            Some((k, _)) if k.len() == 16 => u64::from_be_bytes(k[8..16].try_into().unwrap_or([0; 8])) + 1,
            _ => 0,
        };
        Ok(AccessStore { store, seq: AtomicU64::new(seq) })
    }

    /// Writes entries (each: its per-course index key, then the entry), then flushes.
    pub fn write(&self, entries: &[AccessEntry]) -> Result<(), AuditError> {
        if entries.is_empty() {
            return Ok(());
        }
        let rows: Vec<([u8; 16], Option<Uuid>, Vec<u8>)> = entries
            .iter()
            .map(|e| {
                let k = key(e.at, self.seq.fetch_add(1, Ordering::Relaxed));
                let v = serde_json::to_vec(e).unwrap_or_default();
                (k, e.course_id, v)
            })
            .collect();
        for (k, course, v) in rows {
            if let Some(c) = course {
                self.store.access_by_course.insert(course_key(c, &k), &[][..])?;
            }
            self.store.access.insert(&k[..], v)?;
        }
        self.store.flush()?;
        Ok(())
    }

    fn decode(k: &[u8], v: &[u8]) -> Option<StoredAccess> {
        let entry: AccessEntry = serde_json::from_slice(v).ok()?;
        Some(StoredAccess { id: hex::encode(k), entry })
    }

    pub fn query(&self, f: &AccessFilter) -> Result<AccessPage, AuditError> {
        let from = f.from.map(|t| key(t, 0)).unwrap_or([0; 16]);
        let mut lo = from.to_vec();
        if let Some(c) = f.cursor
            && c[..] >= lo[..]
        {
            // Strictly after the cursor: the smallest key greater than it.
            lo = c.to_vec();
            lo.push(0);
        }
        let hi = f.to.map(|t| key(t, 0)).unwrap_or([0xff; 16]);
        let limit = f.limit.max(1);
        let mut items = Vec::new();
        let mut more = false;
        let accept = |s: &StoredAccess| f.account.is_none_or(|a| s.entry.account_id == Some(a));
        match f.course {
            Some(course) => {
                let range = course_key(course, &lo)..course_key(course, &hi);
                for kv in self.store.access_by_course.range(range) {
                    let (ck, _) = kv?;
                    let k = &ck[16..];
                    // A missing main entry was swept between the two trees' deletes: skip.
                    let Some(v) = self.store.access.get(k)? else { continue };
                    let Some(s) = Self::decode(k, &v) else { continue };
                    // An index key left by a crash between the two inserts may name a key that a
                    // later entry (same instant, same sequence) reused: it must be this course's.
                    if s.entry.course_id != Some(course) || !accept(&s) {
                        continue;
                    }
                    if items.len() == limit {
                        more = true;
                        break;
                    }
                    items.push(s);
                }
            }
            None => {
                for kv in self.store.access.range(lo..hi.to_vec()) {
                    let (k, v) = kv?;
                    let Some(s) = Self::decode(&k, &v) else { continue };
                    if !accept(&s) {
                        continue;
                    }
                    if items.len() == limit {
                        more = true;
                        break;
                    }
                    items.push(s);
                }
            }
        }
        let next_cursor = if more { items.last().map(|s| s.id.clone()) } else { None };
        Ok(AccessPage { items, next_cursor })
    }

    /// Deletes every entry recorded before `cutoff`; returns how many. The per-course index
    /// goes first: a crash in between leaves main entries the next sweep finds again, never
    /// index entries nothing would delete.
    pub fn sweep_before(&self, cutoff: OffsetDateTime) -> Result<u64, AuditError> {
        let end = key(cutoff, 0);
        let mut deleted = 0;
        loop {
            let mut batch = Vec::with_capacity(10_000);
            for kv in self.store.access.range(..end.to_vec()).take(10_000) {
                let (k, v) = kv?;
                let course = serde_json::from_slice::<AccessEntry>(&v).ok().and_then(|e| e.course_id);
                batch.push((k, course));
            }
            if batch.is_empty() {
                break;
            }
            for (k, course) in &batch {
                if let Some(c) = course {
                    self.store.access_by_course.remove(course_key(*c, k))?;
                }
                self.store.access.remove(k)?;
            }
            deleted += batch.len() as u64;
        }
        if deleted > 0 {
            self.store.flush()?;
        }
        Ok(deleted)
    }
}

/// The access log as the server uses it: a queue in front of the store.
#[derive(Clone)]
pub struct AccessLog {
    tx: mpsc::Sender<Msg>,
    store: Arc<AccessStore>,
    clock: SharedClock,
    retention: time::Duration,
    enabled: bool,
}

impl AccessLog {
    /// Starts the group-commit writer on the current tokio runtime.
    pub fn start(store: AuditStore, clock: SharedClock, config: &super::AuditConfig) -> Result<Self, AuditError> {
        let store = Arc::new(AccessStore::new(store)?);
        // Bounded: if sled ever stalls, reads wait for room rather than memory growing without
        // limit; a queue this deep is many seconds of peak reads.
        let (tx, rx) = mpsc::channel(64 * 1024);
        tokio::spawn(writer(
            store.clone(),
            rx,
            Duration::from_millis(config.access_log_flush_ms),
            config.access_log_batch,
        ));
        if !config.access_log_enabled {
            tracing::warn!("the access log is OFF (benchmark setting): reads of personal data are not logged");
        }
        Ok(AccessLog { tx, store, clock, retention: config.retention(), enabled: config.access_log_enabled })
    }

    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    pub fn retention(&self) -> time::Duration {
        self.retention
    }

    /// Queues one entry. Cheap: no I/O. Waits only if the queue is full.
    pub async fn record(&self, entry: AccessEntry) {
        if !self.enabled {
            return;
        }
        let msg = Msg::Entry(Box::new(entry));
        let msg = match self.tx.try_send(msg) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(m)) => m,
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::error!("the access log writer has stopped; an access entry is lost");
                return;
            }
        };
        if self.tx.send(msg).await.is_err() {
            tracing::error!("the access log writer has stopped; an access entry is lost");
        }
    }

    /// Waits until everything queued so far is written and flushed (queries read their own
    /// writes; shutdown drains).
    pub async fn flush(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(reply)).await.is_ok() {
            let _ = rx.await;
        }
    }

    pub async fn query(&self, filter: AccessFilter) -> Result<AccessPage, AuditError> {
        self.flush().await;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.query(&filter))
            .await
            .map_err(|e| AuditError::Storage(e.to_string()))?
    }

    /// Deletes entries older than the retention period, as of `now`.
    pub async fn sweep(&self, now: OffsetDateTime) -> Result<u64, AuditError> {
        self.flush().await;
        let store = self.store.clone();
        let cutoff = now - self.retention;
        let n = tokio::task::spawn_blocking(move || store.sweep_before(cutoff))
            .await
            .map_err(|e| AuditError::Storage(e.to_string()))??;
        if n > 0 {
            tracing::info!(deleted = n, "access log: entries past retention deleted");
        }
        Ok(n)
    }

    /// The cleaner: sweeps every `interval` (wall time) with the injected clock's "now".
    pub fn spawn_cleaner(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = me.sweep(me.clock.now()).await {
                    tracing::error!(error = %e, "access log sweep failed");
                }
            }
        })
    }
}

/// Gathers a group commit: the first entry opens a window; it closes after `window`, at `max`
/// entries, or at once when someone waits for a flush. Then one transaction and one flush.
async fn writer(store: Arc<AccessStore>, mut rx: mpsc::Receiver<Msg>, window: Duration, max: usize) {
    while let Some(first) = rx.recv().await {
        let mut entries = Vec::new();
        let mut waiters = Vec::new();
        let take = |m: Msg, entries: &mut Vec<AccessEntry>, waiters: &mut Vec<oneshot::Sender<()>>| match m {
            Msg::Entry(e) => entries.push(*e),
            Msg::Flush(w) => waiters.push(w),
        };
        take(first, &mut entries, &mut waiters);
        let deadline = tokio::time::Instant::now() + window;
        while waiters.is_empty() && entries.len() < max {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(m)) => take(m, &mut entries, &mut waiters),
                Ok(None) | Err(_) => break,
            }
        }
        // Whatever is already queued rides along.
        while entries.len() < max {
            match rx.try_recv() {
                Ok(m) => take(m, &mut entries, &mut waiters),
                Err(_) => break,
            }
        }
        let s = store.clone();
        let n = entries.len();
        match tokio::task::spawn_blocking(move || s.write(&entries)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, entries = n, "cannot write access log entries"),
            Err(e) => tracing::error!(error = %e, entries = n, "access log writer failed"),
        }
        for w in waiters {
            let _ = w.send(());
        }
    }
}
