//! `Idempotency-Key` on POSTs: a retry (a phone that lost the response) gets the original
//! response with the same status; the same key with another body is a 422; a retry that
//! arrives while the first is still running is a 409.
//!
//! Responses are kept per account and key for 24 hours in sled. This is convenience, not the
//! guarantee: the client event id in the body is what makes a retried write append nothing even
//! if this store were lost.

use std::collections::HashSet;
use std::sync::Mutex;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use sha2::{Digest, Sha256};

use super::problem::ApiError;
use crate::clock::SharedClock;
use crate::domain::AccountId;

pub const RETENTION_SECS: i64 = 24 * 3600;

pub struct IdempotencyStore {
    tree: sled::Tree,
    in_flight: Mutex<HashSet<Vec<u8>>>,
    clock: SharedClock,
}

/// A stored response: `created (i64 unix secs) | fingerprint[32] | status u16 | body`.
struct Stored {
    created: i64,
    fingerprint: [u8; 32],
    status: u16,
    body: Vec<u8>,
}

impl Stored {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(42 + self.body.len());
        v.extend_from_slice(&self.created.to_le_bytes());
        v.extend_from_slice(&self.fingerprint);
        v.extend_from_slice(&self.status.to_le_bytes());
        v.extend_from_slice(&self.body);
        v
    }

    fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < 42 {
            return None;
        }
        Some(Stored {
            created: i64::from_le_bytes(b[..8].try_into().ok()?),
            fingerprint: b[8..40].try_into().ok()?,
            status: u16::from_le_bytes(b[40..42].try_into().ok()?),
            body: b[42..].to_vec(),
        })
    }
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
    pub fn new(tree: sled::Tree, clock: SharedClock) -> Self {
        IdempotencyStore { tree, in_flight: Mutex::new(HashSet::new()), clock }
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

        if let Some(stored) = self.lookup(&store_key, now)? {
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
            let stored = Stored { created: now, fingerprint, status, body: body.clone() };
            if let Err(e) = self.tree.insert(&store_key, stored.encode()) {
                tracing::warn!(error = %e, "could not keep an idempotent response");
            }
            return Ok(response.set_body(actix_web::body::BoxBody::new(body)));
        }
        Ok(response)
    }

    fn lookup(&self, key: &[u8], now: i64) -> Result<Option<Stored>, ApiError> {
        let Some(v) = self.tree.get(key).map_err(|e| ApiError::Internal(e.to_string()))? else { return Ok(None) };
        Ok(Stored::decode(&v).filter(|s| now - s.created < RETENTION_SECS))
    }

    /// Drops entries older than the retention; run now and then.
    pub fn sweep(&self) -> usize {
        let now = self.clock.now().unix_timestamp();
        let mut n = 0;
        for (k, v) in self.tree.iter().flatten() {
            if Stored::decode(&v).is_none_or(|s| now - s.created >= RETENTION_SECS) && self.tree.remove(k).is_ok() {
                n += 1;
            }
        }
        n
    }
}

async fn split_body(r: HttpResponse) -> (HttpResponse<()>, Vec<u8>) {
    let (res, body) = r.into_parts();
    let bytes = actix_web::body::to_bytes(body).await.map(|b| b.to_vec()).unwrap_or_default();
    (res, bytes)
}
