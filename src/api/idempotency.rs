//! `Idempotency-Key` on POSTs: a retry (a phone that lost the response) gets the original
//! response with the same status; the same key with another body is a 422; a retry that
//! arrives while the first is still running is a 409.
//!
//! Responses are kept per account and key for 24 hours, in hourly append-only files
//! ([`super::idempotency_files`]; a cleaner deletes each hour's file once it has expired). This
//! is convenience, not the guarantee: the client event id in the body is what makes a retried
//! write append nothing even if this store were lost.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use sha2::{Digest, Sha256};

use super::idempotency_files::{IDEMPOTENCY_DIR, IdempotencyFiles, Record};
use super::problem::ApiError;
use crate::clock::SharedClock;
use crate::domain::AccountId;

pub const RETENTION_SECS: i64 = 24 * 3600;

pub struct IdempotencyStore {
    files: IdempotencyFiles,
    in_flight: Mutex<HashSet<Vec<u8>>>,
    clock: SharedClock,
}

/// Removes itself from the in-flight set however the request ends.
struct InFlight<'a> {
    set: &'a Mutex<HashSet<Vec<u8>>>,
    key: Vec<u8>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.set.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.key);
    }
}

impl IdempotencyStore {
    /// Opens `data_dir/idempotency/`. The sled store an older version kept these responses in
    /// (`data_dir/app/`) is deleted: its records are a convenience (see the module docs).
    pub fn open(data_dir: &Path, clock: SharedClock) -> Result<Self, String> {
        let old = data_dir.join("app");
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| format!("{}: {e}", old.display()))?;
            tracing::info!("idempotency: the old sled store app/ is deleted (responses are kept in idempotency/ now)");
        }
        let files =
            IdempotencyFiles::open(&data_dir.join(IDEMPOTENCY_DIR), RETENTION_SECS, clock.now().unix_timestamp())?;
        Ok(IdempotencyStore { files, in_flight: Mutex::new(HashSet::new()), clock })
    }

    /// Runs `f` once per (account, key); see the module docs.
    pub async fn run<F, Fut>(
        &self,
        account: AccountId,
        key: Option<&str>,
        fingerprint_parts: &[&[u8]],
        f: F,
    ) -> Result<HttpResponse, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<HttpResponse, ApiError>>,
    {
        let Some(key) = key else { return f().await };
        if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::InvalidParameter("Idempotency-Key must be 1..=255 visible ASCII characters".into()));
        }
        let mut h = Sha256::new();
        for p in fingerprint_parts {
            h.update((p.len() as u64).to_le_bytes());
            h.update(p);
        }
        let fingerprint: [u8; 32] = h.finalize().into();
        let mut store_key = account.0.as_bytes().to_vec();
        store_key.extend_from_slice(key.as_bytes());
        let now = self.clock.now().unix_timestamp();

        if let Some(stored) = self.files.get(&store_key, now) {
            if stored.fingerprint != fingerprint {
                return Err(ApiError::IdempotencyMismatch);
            }
            let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
            return Ok(HttpResponse::build(status)
                .content_type("application/json")
                .insert_header(("Idempotent-Replayed", "true"))
                .body(stored.body));
        }
        if !self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).insert(store_key.clone()) {
            return Err(ApiError::IdempotencyInProgress);
        }
        let _guard = InFlight { set: &self.in_flight, key: store_key.clone() };
        let response = f().await?;
        // Only successes are kept: a refusal may succeed later (after the state changed), and
        // 5xx must be retryable.
        if response.status().is_success() {
            let status = response.status().as_u16();
            let (response, body) = split_body(response).await;
            let stored = Record { created: now, key: store_key, fingerprint, status, body: body.clone() };
            if let Err(e) = self.files.put(&stored) {
                tracing::warn!(error = %e, "could not keep an idempotent response");
            }
            return Ok(response.set_body(actix_web::body::BoxBody::new(body)));
        }
        Ok(response)
    }

    /// Moves lookup entries waiting in memory to disk (see [`IdempotencyFiles::maintain`]).
    pub fn maintain(&self) {
        self.files.maintain()
    }

    /// Deletes the hours whose responses have all expired; returns how many files went.
    pub fn sweep(&self) -> usize {
        self.files.sweep(self.clock.now().unix_timestamp())
    }
}

async fn split_body(r: HttpResponse) -> (HttpResponse<()>, Vec<u8>) {
    let (res, body) = r.into_parts();
    let bytes = actix_web::body::to_bytes(body).await.map(|b| b.to_vec()).unwrap_or_default();
    (res, bytes)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;

    /// The sled store an older version kept responses in (`app/`) is removed on open, and the
    /// responses' own directory is made; what else is in the data directory stays.
    #[test]
    fn opening_removes_the_old_sled_store_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("app")).unwrap();
        std::fs::write(dir.path().join("app/db"), b"old").unwrap();
        std::fs::create_dir_all(dir.path().join("log")).unwrap();
        let clock: SharedClock = Arc::new(ManualClock::new(time::macros::datetime!(2026-01-01 00:00 UTC)));
        IdempotencyStore::open(dir.path(), clock).unwrap();
        assert!(!dir.path().join("app").exists());
        assert!(dir.path().join(IDEMPOTENCY_DIR).is_dir());
        assert!(dir.path().join("log").is_dir());
    }
}
