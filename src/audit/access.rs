//! The access log: who used course data, when, how, and why.
//!
//! Every read or search of course data (and every export and replay) becomes an
//! [`AccessEntry`]: time, account, role, course, kind of use, the criteria of a search, and the
//! purpose the client sent in `X-Purpose`. It is its own log, not the course record: entries are
//! not events, are not hash-chained, and are **deleted** after the retention period (default 183
//! days), as Danish public-sector practice expects of logs of personal-data use.
//!
//! **Cost on the read path**: [`AccessLog::record`] puts the entry on an in-memory queue and
//! returns; a background task appends the queue to the access log's files and `fdatasync`s them
//! every `access_log_flush_ms` (default 100 ms) or every `access_log_batch` entries (group
//! commit). No write, no sync on the request path. **What a crash may lose**: the entries of the
//! current group commit — at most one window (~100 ms) of reads, plus the batch being written.
//! Nothing older: each batch is synced before the next one is gathered. A graceful shutdown
//! drains the queue ([`AccessLog::flush`]).
//!
//! The entries live in their own append-only files, one UTC day (or 64 MiB) per file, in
//! `data_dir/access/` ([`super::access_files`]): entries are listed in the order they were
//! written, a per-course or per-time query skips the files that cannot hold a match, and the
//! sweep deletes whole files. (They lived in the audit sled store before; the first start of
//! this version moves them, see [`AccessStore::new`].)

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::access_files::{ACCESS_DIR, AccessFiles};
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

/// A stored entry with its id (hex: its sequence number and time; also the pagination cursor).
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

/// The store side: writes, queries, the sweep. Synchronous (files; see [`super::access_files`]).
pub struct AccessStore {
    files: AccessFiles,
}

pub fn parse_cursor(s: &str) -> Option<[u8; 16]> {
    let mut k = [0u8; 16];
    hex::decode_to_slice(s, &mut k).ok()?;
    Some(k)
}

impl AccessStore {
    /// Opens `data_dir/access/`. Entries an older version kept in the audit sled store are moved
    /// there once, oldest first (see [`Self::move_out_of_sled`]).
    pub fn new(store: AuditStore) -> Result<Self, AuditError> {
        let dir = store.data_dir.join(ACCESS_DIR);
        let fresh = !dir.exists();
        if fresh && !store.access.is_empty() {
            Self::move_out_of_sled(&store, &dir)?;
        }
        let files = AccessFiles::open(&dir)?;
        // The move finished (the directory is there): what sled still holds is a copy.
        for tree in [&store.access, &store.access_by_course] {
            for k in tree.iter().keys() {
                tree.remove(k?)?;
            }
        }
        Ok(AccessStore { files })
    }

    /// Writes the sled store's entries (`at ‖ seq` keys, so in time order) into a directory
    /// beside the new one, synced, then renames it into place: a crash before the rename leaves
    /// sled as it was for the next open; after it, the files are whole and sled is cleared.
    fn move_out_of_sled(store: &AuditStore, dir: &std::path::Path) -> Result<(), AuditError> {
        let tmp = dir.with_extension("moving");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| AuditError::Storage(e.to_string()))?;
        }
        let files = AccessFiles::open(&tmp)?;
        let mut batch = Vec::with_capacity(4096);
        let mut moved = 0u64;
        for kv in store.access.iter() {
            let (_, v) = kv?;
            let Ok(e) = serde_json::from_slice::<AccessEntry>(&v) else { continue };
            batch.push(e);
            if batch.len() == 4096 {
                files.write(&batch)?;
                moved += batch.len() as u64;
                batch.clear();
            }
        }
        files.write(&batch)?;
        moved += batch.len() as u64;
        drop(files);
        std::fs::rename(&tmp, dir).map_err(|e| AuditError::Storage(e.to_string()))?;
        if let Some(parent) = dir.parent() {
            std::fs::File::open(parent).and_then(|d| d.sync_all()).map_err(|e| AuditError::Storage(e.to_string()))?;
        }
        tracing::info!(entries = moved, "access log: entries moved out of the audit sled store into access/");
        Ok(())
    }

    /// Appends entries and syncs them.
    pub fn write(&self, entries: &[AccessEntry]) -> Result<(), AuditError> {
        self.files.write(entries)
    }

    pub fn query(&self, f: &AccessFilter) -> Result<AccessPage, AuditError> {
        self.files.query(f)
    }

    /// Deletes every entry recorded before `cutoff`; returns how many.
    pub fn sweep_before(&self, cutoff: OffsetDateTime) -> Result<u64, AuditError> {
        self.files.sweep_before(cutoff)
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
