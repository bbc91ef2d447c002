//! Refresh tokens: opaque, rotated on every use, grouped in families.
//!
//! A refresh token is 32 random bytes (base64url). Only its SHA-256 is stored, so a copy of the
//! sled tree does not hand out sessions. Every login starts a family; every refresh marks the
//! presented token used and issues the next one in the same family. Presenting a used token
//! means two parties hold the family (one of them stole it), so the whole family is revoked and
//! the legitimate holder has to log in again.
//!
//! Sessions are security state, not part of the record: they live in sled only and are never
//! appended to the log. Losing the trees just signs everyone out. For the same reason writes are
//! not flushed on the request path: a crash may forget the last rotations (the previous token
//! of a family works once more) or the last logins (those people log in again).
//!
//! Trees (all values JSON):
//! - `refresh_tokens`: SHA-256(token) → [`TokenRecord`]
//! - `refresh_families`: family id → [`FamilyRecord`] (revocation is one write, however many
//!   tokens the family has)
//! - `refresh_by_account`: account id ‖ family id → `[]`, to revoke an account's sessions

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use super::AuthError;
use crate::domain::AccountId;

/// base64url without padding of 32 bytes.
const TOKEN_LEN: usize = 43;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct TokenRecord {
    account_id: Uuid,
    family_id: Uuid,
    /// Unix seconds.
    expires_at: i64,
    used: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct FamilyRecord {
    account_id: Uuid,
    revoked: bool,
    /// The newest token's expiry: after it the family is garbage.
    expires_at: i64,
}

/// What a successful rotation hands back: whose family it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rotated {
    pub account_id: AccountId,
    pub family_id: Uuid,
}

pub(crate) struct RefreshStore {
    tokens: sled::Tree,
    families: sled::Tree,
    by_account: sled::Tree,
}

fn storage(e: impl std::fmt::Display) -> AuthError {
    AuthError::StorageUnavailable(format!("session store: {e}"))
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn account_key(account_id: Uuid, family_id: Uuid) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..16].copy_from_slice(account_id.as_bytes());
    k[16..].copy_from_slice(family_id.as_bytes());
    k
}

impl RefreshStore {
    pub fn open(db: &sled::Db) -> Result<Self, AuthError> {
        Ok(Self {
            tokens: db.open_tree("refresh_tokens").map_err(storage)?,
            families: db.open_tree("refresh_families").map_err(storage)?,
            by_account: db.open_tree("refresh_by_account").map_err(storage)?,
        })
    }

    /// Issues a token in `family` (a new family when `None`) valid until `expires_at`.
    pub fn issue(
        &self,
        account_id: AccountId,
        family: Option<Uuid>,
        expires_at: OffsetDateTime,
    ) -> Result<String, AuthError> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| AuthError::Internal(format!("no randomness for a token: {e}")))?;
        let token = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, raw);
        let family_id = family.unwrap_or_else(Uuid::new_v4);
        let expires_at = expires_at.unix_timestamp();
        let rec = TokenRecord { account_id: account_id.0, family_id, expires_at, used: false };
        let fam = FamilyRecord { account_id: account_id.0, revoked: false, expires_at };
        if family.is_none() {
            self.by_account.insert(account_key(account_id.0, family_id), &[]).map_err(storage)?;
            self.families.insert(family_id.as_bytes(), to_json(&fam)?).map_err(storage)?;
        } else {
            // Extend the family's life unless it was revoked meanwhile (then the new token is
            // born dead, which is what we want).
            self.families
                .fetch_and_update(family_id.as_bytes(), |old| {
                    let old: FamilyRecord = old.and_then(|b| serde_json::from_slice(b).ok())?;
                    serde_json::to_vec(&FamilyRecord { expires_at: old.expires_at.max(expires_at), ..old }).ok()
                })
                .map_err(storage)?;
        }
        self.tokens.insert(hash(&token), to_json(&rec)?).map_err(storage)?;
        Ok(token)
    }

    /// Marks `token` used and says whose family it is; the caller issues the next token.
    /// A token seen before revokes its family.
    pub fn rotate(&self, token: &str, now: OffsetDateTime) -> Result<Rotated, AuthError> {
        if token.len() != TOKEN_LEN {
            return Err(AuthError::RefreshTokenInvalid);
        }
        let key = hash(token);
        loop {
            let Some(old) = self.tokens.get(key).map_err(storage)? else {
                return Err(AuthError::RefreshTokenInvalid);
            };
            let rec: TokenRecord = serde_json::from_slice(&old).map_err(storage)?;
            if rec.used {
                self.revoke_family(rec.family_id)?;
                tracing::warn!(account_id = %rec.account_id, family_id = %rec.family_id, "refresh token reused; family revoked");
                return Err(AuthError::RefreshTokenReused);
            }
            if self.family(rec.family_id)?.is_none_or(|f| f.revoked) {
                return Err(AuthError::RefreshTokenInvalid);
            }
            if now.unix_timestamp() >= rec.expires_at {
                return Err(AuthError::RefreshTokenExpired);
            }
            let new = to_json(&TokenRecord { used: true, ..rec })?;
            // Compare-and-swap: of two concurrent refreshes with one token exactly one wins; the
            // other goes round again, finds it used, and revokes the family.
            match self.tokens.compare_and_swap(key, Some(old), Some(new)).map_err(storage)? {
                Ok(()) => return Ok(Rotated { account_id: AccountId(rec.account_id), family_id: rec.family_id }),
                Err(_) => continue,
            }
        }
    }

    fn family(&self, family_id: Uuid) -> Result<Option<FamilyRecord>, AuthError> {
        match self.families.get(family_id.as_bytes()).map_err(storage)? {
            Some(b) => Ok(Some(serde_json::from_slice(&b).map_err(storage)?)),
            None => Ok(None),
        }
    }

    /// Every token of the family stops working.
    pub fn revoke_family(&self, family_id: Uuid) -> Result<(), AuthError> {
        self.families
            .fetch_and_update(family_id.as_bytes(), |old| {
                let old: FamilyRecord = old.and_then(|b| serde_json::from_slice(b).ok())?;
                serde_json::to_vec(&FamilyRecord { revoked: true, ..old }).ok()
            })
            .map_err(storage)?;
        Ok(())
    }

    /// Logout: revokes the family of this token, if it is one of ours.
    pub fn revoke_by_token(&self, token: &str) -> Result<Option<Rotated>, AuthError> {
        if token.len() != TOKEN_LEN {
            return Ok(None);
        }
        let Some(b) = self.tokens.get(hash(token)).map_err(storage)? else { return Ok(None) };
        let rec: TokenRecord = serde_json::from_slice(&b).map_err(storage)?;
        self.revoke_family(rec.family_id)?;
        Ok(Some(Rotated { account_id: AccountId(rec.account_id), family_id: rec.family_id }))
    }

    /// Revokes every family of an account (password changed, disabled, deleted).
    pub fn revoke_account(&self, account_id: AccountId) -> Result<usize, AuthError> {
        let mut n = 0;
        for kv in self.by_account.scan_prefix(account_id.0.as_bytes()) {
            let (k, _) = kv.map_err(storage)?;
            let family = Uuid::from_slice(&k[16..]).map_err(storage)?;
            self.revoke_family(family)?;
            n += 1;
        }
        Ok(n)
    }

    /// Drops expired tokens and families. Run at open and from time to time; without it the
    /// trees grow with every login.
    pub fn purge_expired(&self, now: OffsetDateTime) -> Result<usize, AuthError> {
        let now = now.unix_timestamp();
        let mut n = 0;
        for kv in self.tokens.iter() {
            let (k, v) = kv.map_err(storage)?;
            let rec: Option<TokenRecord> = serde_json::from_slice(&v).ok();
            if rec.is_none_or(|r| r.expires_at <= now) {
                self.tokens.remove(k).map_err(storage)?;
                n += 1;
            }
        }
        for kv in self.families.iter() {
            let (k, v) = kv.map_err(storage)?;
            let fam: Option<FamilyRecord> = serde_json::from_slice(&v).ok();
            if fam.is_none_or(|f| f.expires_at <= now) {
                self.families.remove(&k).map_err(storage)?;
                if let (Some(f), Ok(family)) = (fam, Uuid::from_slice(&k)) {
                    self.by_account.remove(account_key(f.account_id, family)).map_err(storage)?;
                }
            }
        }
        Ok(n)
    }
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, AuthError> {
    serde_json::to_vec(v).map_err(|e| AuthError::Internal(e.to_string()))
}
