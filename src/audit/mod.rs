//! Audit: the record taken away and checked without trusting the server, and the trace of who
//! used a young person's data and why.
//!
//! - [`checkpoint`]: the server signs the head of the global hash chain (position, hash, time)
//!   with its own Ed25519 key. Anyone holding the public key can then prove that nothing at or
//!   before a checkpoint was rewritten — even by someone who can write the data directory and
//!   recompute every hash.
//! - [`export`]: the JSON-lines export (a header with the latest checkpoint and the public key,
//!   then envelopes) and its offline verification.
//! - [`access`]: the access log — every read, search, export and replay of course data, with the
//!   caller's purpose — kept for a retention period, then swept away.
//! - [`replay`]: a course's history in readable form with its state after each event.
//!
//! Checkpoints live in their own sled database, `data_dir/audit/`, and access entries in their
//! own append-only files, `data_dir/access/` ([`access_files`]). Neither is derived from the
//! event log: signed checkpoints and access entries cannot be rebuilt, so deleting those
//! directories loses them (unlike `index/` or `projections/`). Back them up with the log.

pub mod access;
mod access_files;
pub mod checkpoint;
pub mod export;
pub mod replay;

#[cfg(test)]
mod tests;

use std::path::Path;

use serde::Deserialize;

pub use access::{AccessEntry, AccessFilter, AccessKind, AccessLog, AccessPage, StoredAccess};
pub use checkpoint::{CheckpointKey, Checkpoints, PublicKey, SignedCheckpoint};
pub use export::{ExportFailure, ExportHeader, ExportReport, Scope};

/// The directory of the audit store inside the data directory.
pub const AUDIT_DIR: &str = "audit";

/// Audit settings (`[audit]` in the TOML file; flags for the two that operators change).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Sign a checkpoint this often, when the log's head moved since the last one.
    pub checkpoint_interval_secs: u64,
    /// Access entries older than this are deleted (Danish practice: a set period, then gone).
    pub access_log_retention_days: u32,
    /// How often the cleaner runs.
    pub access_log_sweep_interval_secs: u64,
    /// The access log's group-commit window: entries wait at most this long in memory, which is
    /// also what a crash may lose.
    pub access_log_flush_ms: u64,
    /// …or are written as soon as this many are waiting.
    pub access_log_batch: usize,
    /// `false` turns the access log off. Only for measuring what it costs (`benches/load.py
    /// --no-access-log`): in production every use of personal data must be logged.
    pub access_log_enabled: bool,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            checkpoint_interval_secs: 60,
            access_log_retention_days: 183,
            access_log_sweep_interval_secs: 3600,
            access_log_flush_ms: 100,
            access_log_batch: 1024,
            access_log_enabled: true,
        }
    }
}

impl AuditConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.checkpoint_interval_secs == 0 {
            return Err("audit.checkpoint_interval_secs must be at least 1".into());
        }
        if self.access_log_retention_days == 0 {
            return Err("audit.access_log_retention_days must be at least 1".into());
        }
        if self.access_log_sweep_interval_secs == 0 || self.access_log_flush_ms == 0 || self.access_log_batch == 0 {
            return Err("audit intervals and batch size must be positive".into());
        }
        Ok(())
    }

    pub fn retention(&self) -> time::Duration {
        time::Duration::days(i64::from(self.access_log_retention_days))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit store: {0}")]
    Storage(String),
    #[error("checkpoint key: {0}")]
    Key(String),
    #[error("the record could not be read: {0}")]
    Log(String),
}

impl From<sled::Error> for AuditError {
    fn from(e: sled::Error) -> Self {
        AuditError::Storage(e.to_string())
    }
}

/// The audit sled database and its trees. sled takes a lock on the directory, so a tool can
/// open it only while the server is stopped (the log's lock says the same).
#[derive(Clone)]
pub struct AuditStore {
    pub(crate) db: sled::Db,
    /// position (u64 BE) → signed checkpoint JSON; append-only.
    pub(crate) checkpoints: sled::Tree,
    /// Where the access log lived before it moved to `data_dir/access/` (its own files):
    /// at (u64 BE unix nanos) ‖ seq (u64 BE) → access entry JSON. Emptied by the move.
    pub(crate) access: sled::Tree,
    /// course id ‖ at ‖ seq → (): the old per-course index of `access`. Emptied by the move.
    pub(crate) access_by_course: sled::Tree,
    /// The data directory (the access log's files are in `access/` beside this store).
    pub(crate) data_dir: std::path::PathBuf,
}

impl AuditStore {
    /// Writes sled's buffers out. The access writer and the checkpoint signer both flush, from
    /// different threads, so flushes go one at a time (`crate::one_sled_flush`).
    pub(crate) fn flush(&self) -> sled::Result<usize> {
        let _one = crate::one_sled_flush();
        self.db.flush()
    }
}

impl AuditStore {
    pub fn open(data_dir: &Path) -> Result<Self, AuditError> {
        // No background flush: the access writer and the checkpoint signer flush themselves,
        // at the moments that define what a crash may lose.
        let db = crate::open_sled(&data_dir.join(AUDIT_DIR), None)?;
        Ok(AuditStore {
            checkpoints: db.open_tree("checkpoints")?,
            access: db.open_tree("access")?,
            access_by_course: db.open_tree("access_by_course")?,
            data_dir: data_dir.to_owned(),
            db,
        })
    }
}
