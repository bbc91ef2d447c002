//! Accounts, logins and tokens, independent of HTTP: the API layer calls [`Auth`] and maps
//! [`AuthError`] with [`AuthError::status`] and [`AuthError::code`] in one place.
//!
//! - [`accounts`]: account events in the `accounts` stream (part of the record) and the registry
//!   folded from them; argon2id password hashes.
//! - [`keys`]: the Ed25519 signing key, generated on first start, and the JWKS.
//! - [`tokens`]: access tokens (EdDSA JWTs, minutes) and external identity providers.
//! - [`refresh`]: rotating refresh tokens in sled (security state, not part of the record).
//! - [`ratelimit`]: login limits per username and per address.
//!
//! Every access token is checked against the registry on every request: a token of a deleted or
//! disabled account, or one whose role has changed, or one issued before the password changed,
//! is dead at once, not when it expires.
//!
//! Logging: account ids, family ids and error codes only; never usernames, passwords or tokens.
//!
//! For the HTTP layer: `Auth::open` and `bootstrap_admin` run once at start (open blocks: key
//! file, accounts stream, one argon2 hash); everything else is per request. Map errors with
//! [`AuthError::status`] / [`AuthError::code`], send `Retry-After` from
//! [`AuthError::retry_after_secs`] and `WWW-Authenticate: Bearer` with every 401. `verify_access`
//! takes the token without its `Bearer ` prefix, is synchronous and cheap (one signature check
//! and a registry lookup), and appends nothing.

pub mod accounts;
pub mod keys;
pub mod ratelimit;
pub mod refresh;
pub mod tokens;

#[cfg(test)]
mod tests;

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use accounts::{AccountEvent, AccountStatus, AccountView, PasswordHashParams};
pub use ratelimit::RateLimitConfig;
pub use tokens::{AccessClaims, ExternalAlgorithm, ExternalIdp, ExternalKeys, SubjectMapping};

use crate::clock::SharedClock;
use crate::domain::{AccountId, Actor, Role, ShortText};
use crate::log::EventLog;
use accounts::{Accounts, By, Hasher, normalize_username};
use ratelimit::{LoginLimiter, address_key};
use refresh::RefreshStore;
use tokens::{ExternalSubject, TokenService, Verified};

/// The file the bootstrap admin password is written to, in the data directory.
pub const INITIAL_ADMIN_PASSWORD_FILE: &str = "initial-admin-password";
pub const BOOTSTRAP_ADMIN_USERNAME: &str = "admin";

/// Why an auth operation was refused. Closed: every variant has a stable code and status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Unknown username, wrong password, or a deleted account: indistinguishable on purpose.
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("too many attempts; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// Bad shape, signature, algorithm, issuer, audience, not yet valid, unknown or deleted
    /// account, role changed, issued before the password changed.
    #[error("invalid access token")]
    InvalidToken,
    #[error("access token expired")]
    TokenExpired,
    #[error("the account is disabled")]
    AccountDisabled,
    #[error("refresh token already used; the session has been revoked")]
    RefreshTokenReused,
    #[error("invalid or revoked refresh token")]
    RefreshTokenInvalid,
    #[error("refresh token expired")]
    RefreshTokenExpired,
    #[error("username is taken")]
    UsernameTaken,
    #[error("username must be 3–64 characters of a-z, 0-9, '.', '_' or '-'")]
    InvalidUsername,
    #[error("display name must be 1–200 characters and not blank")]
    InvalidDisplayName,
    #[error("password must be {min}–{max} characters")]
    WeakPassword { min: usize, max: usize },
    #[error("the current password is wrong")]
    WrongPassword,
    #[error("not permitted")]
    NotPermitted,
    #[error("no such account")]
    UnknownAccount,
    #[error("the account is deleted")]
    AccountDeleted,
    #[error("the accounts stream is busy; try again")]
    Busy,
    #[error("storage unavailable: {0}")]
    StorageUnavailable(String),
    #[error("auth configuration: {0}")]
    Config(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl AuthError {
    /// The stable snake_case code (part of the API contract, never renamed).
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidCredentials => "invalid_credentials",
            Self::RateLimited { .. } => "rate_limited",
            Self::InvalidToken => "invalid_token",
            Self::TokenExpired => "token_expired",
            Self::AccountDisabled => "account_disabled",
            Self::RefreshTokenReused => "refresh_token_reused",
            Self::RefreshTokenInvalid => "refresh_token_invalid",
            Self::RefreshTokenExpired => "refresh_token_expired",
            Self::UsernameTaken => "username_taken",
            Self::InvalidUsername => "invalid_username",
            Self::InvalidDisplayName => "invalid_display_name",
            Self::WeakPassword { .. } => "weak_password",
            Self::WrongPassword => "wrong_password",
            Self::NotPermitted => "not_permitted",
            Self::UnknownAccount => "unknown_account",
            Self::AccountDeleted => "account_deleted",
            Self::Busy => "busy",
            Self::StorageUnavailable(_) => "storage_unavailable",
            Self::Config(_) => "auth_misconfigured",
            Self::Internal(_) => "internal",
        }
    }

    /// The HTTP status the API answers with.
    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidCredentials
            | Self::InvalidToken
            | Self::TokenExpired
            | Self::AccountDisabled
            | Self::RefreshTokenReused
            | Self::RefreshTokenInvalid
            | Self::RefreshTokenExpired => 401,
            Self::NotPermitted | Self::WrongPassword => 403,
            Self::UnknownAccount => 404,
            Self::UsernameTaken | Self::AccountDeleted => 409,
            Self::InvalidUsername | Self::InvalidDisplayName | Self::WeakPassword { .. } => 422,
            Self::RateLimited { .. } => 429,
            Self::Busy | Self::StorageUnavailable(_) => 503,
            Self::Config(_) | Self::Internal(_) => 500,
        }
    }

    /// Seconds for a `Retry-After` header, when there is one to send.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// Every code with its status, for the API's published error table.
    pub const CODES: &'static [(&'static str, u16)] = &[
        ("invalid_credentials", 401),
        ("invalid_token", 401),
        ("token_expired", 401),
        ("account_disabled", 401),
        ("refresh_token_reused", 401),
        ("refresh_token_invalid", 401),
        ("refresh_token_expired", 401),
        ("not_permitted", 403),
        ("wrong_password", 403),
        ("unknown_account", 404),
        ("username_taken", 409),
        ("account_deleted", 409),
        ("invalid_username", 422),
        ("invalid_display_name", 422),
        ("weak_password", 422),
        ("rate_limited", 429),
        ("auth_misconfigured", 500),
        ("internal", 500),
        ("busy", 503),
        ("storage_unavailable", 503),
    ];
}

/// Configuration; every field has a safe default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `iss` of our tokens.
    pub issuer: String,
    /// `aud` of our tokens.
    pub audience: String,
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
    /// Clock skew forgiven on `exp`/`nbf`/`iat`; capped at 30 s.
    pub leeway_secs: u64,
    pub password_hash: PasswordHashParams,
    pub rate_limits: RateLimitConfig,
    pub external_idps: Vec<ExternalIdp>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuer: "vivirk".into(),
            audience: "vivirk-api".into(),
            access_ttl_secs: 15 * 60,
            refresh_ttl_secs: 30 * 24 * 3600,
            leeway_secs: 30,
            password_hash: PasswordHashParams::default(),
            rate_limits: RateLimitConfig::default(),
            external_idps: Vec::new(),
        }
    }
}

/// The answer to a login or a refresh.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenPair {
    pub access_token: String,
    /// Always `"Bearer"`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub refresh_token: String,
}

impl std::fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPair").field("expires_in", &self.expires_in).finish_non_exhaustive()
    }
}

/// Who a verified access token speaks for, as of now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub account_id: AccountId,
    pub role: Role,
    pub username: String,
}

impl Principal {
    /// The actor commands are decided as.
    pub fn actor(&self) -> Actor {
        Actor { account_id: self.account_id, role: self.role }
    }
}

/// A request to create an account (admin only).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub password: String,
}

impl std::fmt::Debug for NewAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewAccount").field("role", &self.role).finish_non_exhaustive()
    }
}

struct Inner {
    data_dir: PathBuf,
    clock: SharedClock,
    config: AuthConfig,
    accounts: Accounts,
    hasher: Hasher,
    tokens: TokenService,
    refresh: RefreshStore,
    limiter: LoginLimiter,
}

/// Accounts, logins and tokens. Cheap to clone.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

impl Auth {
    /// Loads (or generates) the signing key, rebuilds the account registry from the log and
    /// opens the session trees in `db`. Blocking: reads the key file and the accounts stream.
    pub fn open(
        data_dir: &Path,
        log: EventLog,
        db: sled::Db,
        clock: SharedClock,
        config: AuthConfig,
    ) -> Result<Auth, AuthError> {
        if config.access_ttl_secs == 0 || config.refresh_ttl_secs == 0 {
            return Err(AuthError::Config("token lifetimes must be positive".into()));
        }
        let keys = keys::SigningKeys::load_or_generate(data_dir)?;
        let tokens = TokenService::new(
            keys,
            config.issuer.clone(),
            config.audience.clone(),
            config.leeway_secs,
            &config.external_idps,
        )?;
        let accounts = Accounts::open(log, clock.clone())?;
        let refresh = RefreshStore::open(&db)?;
        let purged = refresh.purge_expired(clock.now())?;
        tracing::debug!(purged, "expired refresh tokens purged");
        let hasher = Hasher::new(config.password_hash)?;
        hasher.warm_up();
        let inner = Inner {
            data_dir: data_dir.to_owned(),
            hasher,
            limiter: LoginLimiter::new(&config.rate_limits),
            clock,
            config,
            accounts,
            tokens,
            refresh,
        };
        Ok(Auth { inner: Arc::new(inner) })
    }

    /// With no account at all, creates `admin` with a random 24-character password, writes the
    /// password to `data_dir/initial-admin-password` (mode 0600) and returns it so the caller
    /// prints it once. With any account (even a deleted one), does nothing.
    pub async fn bootstrap_admin(&self) -> Result<Option<String>, AuthError> {
        let i = &self.inner;
        i.accounts.refresh_from_log()?;
        if i.accounts.read(|r| r.version) > 0 {
            return Ok(None);
        }
        let password = random_password(24)?;
        let hash = self.hash_password(password.clone()).await?;
        let path = i.data_dir.join(INITIAL_ADMIN_PASSWORD_FILE);
        // Written before the append: an admin whose password nobody can read would be worse
        // than a file for an admin that never came to be (removed again below).
        write_secret_file(&path, &password)?;
        let account_id = AccountId(Uuid::now_v7());
        let display_name = ShortText::try_from("Administrator").map_err(|e| AuthError::Internal(e.to_string()))?;
        let created = i
            .accounts
            .append_decided(By::System, |r| {
                if r.version > 0 {
                    return Ok((vec![], false));
                }
                let ev = accounts::AccountCreated {
                    account_id,
                    username: BOOTSTRAP_ADMIN_USERNAME.into(),
                    display_name: display_name.clone(),
                    role: Role::Admin,
                    password_hash: hash.clone(),
                };
                Ok((vec![ev.into()], true))
            })
            .await;
        match created {
            Ok(true) => {
                tracing::info!(account_id = %account_id, "created the initial admin account");
                Ok(Some(password))
            }
            Ok(false) => {
                let _ = std::fs::remove_file(&path);
                Ok(None)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// Checks a username and password and starts a session.
    pub async fn login(&self, username: &str, password: &str, client_addr: IpAddr) -> Result<TokenPair, AuthError> {
        let i = &self.inner;
        let now = i.clock.now();
        i.limiter.addresses.hit(&address_key(client_addr), now)?;
        let username = normalize_username(username).ok();
        if let Some(u) = &username {
            // Recorded as a failure up front and cleared on success, so concurrent guesses
            // cannot all pass the check before any of them is counted.
            i.limiter.usernames.hit(u, now)?;
        }
        let record = username.as_deref().and_then(|u| i.accounts.read(|r| r.by_username(u).cloned()));
        // A deleted account's hash is gone: it is verified against the dummy like an unknown
        // username, so the timing says nothing about which usernames exist.
        let hash = record.as_ref().map(|r| r.password_hash.clone()).filter(|h| !h.is_empty());
        let ok = self.verify_password(password.to_owned(), hash).await?;
        let record = match record {
            Some(r) if ok && r.view.status != AccountStatus::Deleted => r,
            _ => {
                tracing::info!(code = "invalid_credentials", "login refused");
                return Err(AuthError::InvalidCredentials);
            }
        };
        if let Some(u) = &username {
            i.limiter.usernames.reset(u);
        }
        if record.view.status == AccountStatus::Disabled {
            return Err(AuthError::AccountDisabled);
        }
        let pair = self.issue_pair(record.view.account_id, record.view.role, None)?;
        tracing::info!(account_id = %record.view.account_id, "logged in");
        Ok(pair)
    }

    /// Rotates a refresh token: the old one is spent, a new access and refresh token are issued
    /// in the same family. A spent token presented again revokes the family.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, AuthError> {
        let i = &self.inner;
        let rotated = i.refresh.rotate(refresh_token, i.clock.now())?;
        let record = match i.accounts.get(rotated.account_id) {
            Some(r) if r.view.status == AccountStatus::Active => r,
            Some(r) if r.view.status == AccountStatus::Disabled => {
                i.refresh.revoke_family(rotated.family_id)?;
                return Err(AuthError::AccountDisabled);
            }
            _ => {
                i.refresh.revoke_family(rotated.family_id)?;
                return Err(AuthError::RefreshTokenInvalid);
            }
        };
        self.issue_pair(record.view.account_id, record.view.role, Some(rotated.family_id))
    }

    /// Ends the session of this refresh token (its whole family). Unknown tokens are ignored.
    pub fn logout(&self, refresh_token: &str) -> Result<(), AuthError> {
        if let Some(r) = self.inner.refresh.revoke_by_token(refresh_token)? {
            tracing::info!(account_id = %r.account_id, family_id = %r.family_id, "logged out");
        }
        Ok(())
    }

    /// Ends every session of an account: the caller themselves, or an admin for anyone.
    pub fn revoke_sessions(&self, actor: &Principal, account_id: AccountId) -> Result<usize, AuthError> {
        if actor.account_id != account_id && actor.role != Role::Admin {
            return Err(AuthError::NotPermitted);
        }
        self.inner.refresh.revoke_account(account_id)
    }

    /// Verifies an access token (the part after `Bearer `) and says who it speaks for now.
    pub fn verify_access(&self, token: &str) -> Result<Principal, AuthError> {
        let i = &self.inner;
        let verified = i.tokens.verify(token, i.clock.now())?;
        let (record, claimed_role, iat) = match verified {
            Verified::Own { account_id, role, iat } => {
                (i.accounts.get(AccountId(account_id)).ok_or(AuthError::InvalidToken)?, Some(role), Some(iat))
            }
            Verified::External { subject, iat } => {
                let r = match subject {
                    ExternalSubject::AccountId(id) => i.accounts.get(AccountId(id)),
                    ExternalSubject::Username(name) => {
                        normalize_username(&name).ok().and_then(|u| i.accounts.read(|reg| reg.by_username(&u).cloned()))
                    }
                };
                // The provider vouches for who it is; the role is always the account's own.
                (r.ok_or(AuthError::InvalidToken)?, None, iat)
            }
        };
        match record.view.status {
            AccountStatus::Active => {}
            AccountStatus::Disabled => return Err(AuthError::AccountDisabled),
            AccountStatus::Deleted => return Err(AuthError::InvalidToken),
        }
        // A role change takes effect at once: the token's role must still be the account's.
        if claimed_role.is_some_and(|r| r != record.view.role) {
            return Err(AuthError::InvalidToken);
        }
        // Tokens from before a password change or a disable are dead. An external token without
        // `iat` cannot show it is newer; it is held to the rule only when it has one.
        if iat.unwrap_or(i64::MAX) < record.sessions_valid_from {
            return Err(AuthError::InvalidToken);
        }
        Ok(Principal { account_id: record.view.account_id, role: record.view.role, username: record.view.username })
    }

    /// Creates an account. Only an admin may.
    pub async fn create_account(&self, actor: &Principal, req: NewAccount) -> Result<AccountView, AuthError> {
        require_admin(actor)?;
        let username = normalize_username(&req.username)?;
        let display_name = ShortText::try_from(req.display_name).map_err(|_| AuthError::InvalidDisplayName)?;
        accounts::check_password_policy(&req.password)?;
        let hash = self.hash_password(req.password).await?;
        let account_id = AccountId(Uuid::now_v7());
        let role = req.role;
        self.inner
            .accounts
            .append_decided(By::Account(actor.account_id, actor.role), |r| {
                // Usernames of deleted accounts stay taken (see `AccountDeleted`).
                if r.by_username.contains_key(&username) {
                    return Err(AuthError::UsernameTaken);
                }
                let ev = accounts::AccountCreated {
                    account_id,
                    username: username.clone(),
                    display_name: display_name.clone(),
                    role,
                    password_hash: hash.clone(),
                };
                Ok((vec![ev.into()], ()))
            })
            .await?;
        tracing::info!(account_id = %account_id, by = %actor.account_id, role = role.as_str(), "account created");
        self.account(account_id).ok_or_else(|| AuthError::Internal("created account not in registry".into()))
    }

    /// Disables an account (admin only; not one's own): no logins, its tokens and sessions die.
    /// Disabling a disabled account changes nothing.
    pub async fn disable_account(&self, actor: &Principal, id: AccountId) -> Result<AccountView, AuthError> {
        self.change_status(actor, id, AccountStatus::Disabled).await
    }

    /// Enables a disabled account (admin only). Sessions from before it was disabled stay dead.
    pub async fn enable_account(&self, actor: &Principal, id: AccountId) -> Result<AccountView, AuthError> {
        self.change_status(actor, id, AccountStatus::Active).await
    }

    /// Deletes an account for good (admin only; not one's own).
    pub async fn delete_account(&self, actor: &Principal, id: AccountId) -> Result<AccountView, AuthError> {
        self.change_status(actor, id, AccountStatus::Deleted).await
    }

    async fn change_status(
        &self,
        actor: &Principal,
        id: AccountId,
        to: AccountStatus,
    ) -> Result<AccountView, AuthError> {
        require_admin(actor)?;
        // An admin locking themselves out is never what they meant; another admin can do it.
        if actor.account_id == id && to != AccountStatus::Active {
            return Err(AuthError::NotPermitted);
        }
        self.inner
            .accounts
            .append_decided(By::Account(actor.account_id, actor.role), |r| {
                let rec = r.by_id.get(&id).ok_or(AuthError::UnknownAccount)?;
                let ev: AccountEvent = match (rec.view.status, to) {
                    (AccountStatus::Deleted, AccountStatus::Deleted) => return Ok((vec![], ())),
                    (AccountStatus::Deleted, _) => return Err(AuthError::AccountDeleted),
                    (from, to) if from == to => return Ok((vec![], ())),
                    (_, AccountStatus::Active) => accounts::AccountEnabled { account_id: id }.into(),
                    (_, AccountStatus::Disabled) => accounts::AccountDisabled { account_id: id }.into(),
                    (_, AccountStatus::Deleted) => accounts::AccountDeleted { account_id: id }.into(),
                };
                Ok((vec![ev], ()))
            })
            .await?;
        if to != AccountStatus::Active {
            self.inner.refresh.revoke_account(id)?;
        }
        tracing::info!(account_id = %id, by = %actor.account_id, status = ?to, "account status changed");
        self.account(id).ok_or(AuthError::UnknownAccount)
    }

    /// Gives an account another role (admin only; not one's own, so the last admin cannot
    /// demote themselves by accident). Its access tokens naming the old role die at once; its
    /// refresh tokens carry on and issue tokens in the new role.
    pub async fn change_role(&self, actor: &Principal, id: AccountId, role: Role) -> Result<AccountView, AuthError> {
        require_admin(actor)?;
        if actor.account_id == id {
            return Err(AuthError::NotPermitted);
        }
        self.inner
            .accounts
            .append_decided(By::Account(actor.account_id, actor.role), |r| {
                let rec = r.by_id.get(&id).ok_or(AuthError::UnknownAccount)?;
                if rec.view.status == AccountStatus::Deleted {
                    return Err(AuthError::AccountDeleted);
                }
                if rec.view.role == role {
                    return Ok((vec![], ()));
                }
                Ok((vec![accounts::AccountRoleChanged { account_id: id, role }.into()], ()))
            })
            .await?;
        tracing::info!(account_id = %id, by = %actor.account_id, role = role.as_str(), "account role changed");
        self.account(id).ok_or(AuthError::UnknownAccount)
    }

    /// Changes a password. One's own needs the current password; an admin may reset anyone
    /// else's without it. Every session of the account ends, including the caller's.
    pub async fn change_password(
        &self,
        actor: &Principal,
        id: AccountId,
        current_password: Option<&str>,
        new_password: &str,
    ) -> Result<(), AuthError> {
        let i = &self.inner;
        let record = i.accounts.get(id).ok_or(AuthError::UnknownAccount)?;
        if record.view.status == AccountStatus::Deleted {
            return Err(AuthError::AccountDeleted);
        }
        if actor.account_id == id {
            let current = current_password.ok_or(AuthError::WrongPassword)?;
            if !self.verify_password(current.to_owned(), Some(record.password_hash.clone())).await? {
                return Err(AuthError::WrongPassword);
            }
        } else {
            require_admin(actor)?;
        }
        accounts::check_password_policy(new_password)?;
        let hash = self.hash_password(new_password.to_owned()).await?;
        i.accounts
            .append_decided(By::Account(actor.account_id, actor.role), |r| match r.by_id.get(&id) {
                None => Err(AuthError::UnknownAccount),
                Some(rec) if rec.view.status == AccountStatus::Deleted => Err(AuthError::AccountDeleted),
                Some(_) => Ok((
                    vec![accounts::AccountPasswordChanged { account_id: id, password_hash: hash.clone() }.into()],
                    (),
                )),
            })
            .await?;
        i.refresh.revoke_account(id)?;
        tracing::info!(account_id = %id, by = %actor.account_id, "password changed");
        Ok(())
    }

    /// The account, without its password hash.
    pub fn account(&self, id: AccountId) -> Option<AccountView> {
        self.inner.accounts.get(id).map(|r| r.view)
    }

    /// All accounts (deleted ones included, marked so), ordered by username.
    pub fn list_accounts(&self) -> Vec<AccountView> {
        let mut all: Vec<AccountView> =
            self.inner.accounts.read(|r| r.by_id.values().map(|a| a.view.clone()).collect());
        all.sort_by(|a, b| a.username.cmp(&b.username));
        all
    }

    /// Applies account events appended by another handle on the same log.
    pub fn refresh_from_log(&self) -> Result<(), AuthError> {
        self.inner.accounts.refresh_from_log()
    }

    /// Drops expired sessions; call from time to time (it also runs at open).
    pub fn purge_expired_sessions(&self) -> Result<usize, AuthError> {
        self.inner.refresh.purge_expired(self.inner.clock.now())
    }

    /// The public signing key, for `/.well-known/jwks.json`.
    pub fn jwks(&self) -> serde_json::Value {
        self.inner.tokens.jwks()
    }

    fn issue_pair(&self, account_id: AccountId, role: Role, family: Option<Uuid>) -> Result<TokenPair, AuthError> {
        let i = &self.inner;
        let now = i.clock.now();
        let access_ttl = secs(i.config.access_ttl_secs);
        let access_token = i.tokens.issue(account_id.0, role, now, access_ttl)?;
        let refresh_token = i.refresh.issue(account_id, family, now + secs(i.config.refresh_ttl_secs))?;
        Ok(TokenPair {
            access_token,
            token_type: "Bearer".into(),
            expires_in: access_ttl.whole_seconds() as u64,
            refresh_token,
        })
    }

    async fn hash_password(&self, password: String) -> Result<String, AuthError> {
        let hasher = self.inner.hasher.clone();
        tokio::task::spawn_blocking(move || hasher.hash(&password))
            .await
            .map_err(|e| AuthError::Internal(format!("hashing task: {e}")))?
    }

    async fn verify_password(&self, password: String, hash: Option<String>) -> Result<bool, AuthError> {
        let hasher = self.inner.hasher.clone();
        tokio::task::spawn_blocking(move || hasher.verify(&password, hash.as_deref()))
            .await
            .map_err(|e| AuthError::Internal(format!("verifying task: {e}")))
    }
}

fn require_admin(actor: &Principal) -> Result<(), AuthError> {
    if actor.role == Role::Admin { Ok(()) } else { Err(AuthError::NotPermitted) }
}

fn secs(s: u64) -> time::Duration {
    time::Duration::seconds(s.min(i64::MAX as u64) as i64)
}

/// A password of `len` characters from an alphabet without look-alikes (no 0/O, 1/l/I), drawn
/// without modulo bias. 24 characters of 56 symbols ≈ 139 bits.
fn random_password(len: usize) -> Result<String, AuthError> {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let limit = 256 - (256 % ALPHABET.len());
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf).map_err(|e| AuthError::Internal(format!("no randomness: {e}")))?;
        for b in buf {
            if (b as usize) < limit && out.len() < len {
                out.push(ALPHABET[b as usize % ALPHABET.len()] as char);
            }
        }
    }
    Ok(out)
}

/// Creates `path` afresh with mode 0600 and `secret` in it, synced.
fn write_secret_file(path: &Path, secret: &str) -> Result<(), AuthError> {
    let err = |e: std::io::Error| AuthError::StorageUnavailable(format!("writing {}: {e}", path.display()));
    // A file left by an earlier, failed bootstrap holds a password for no account.
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(err)?;
    f.write_all(secret.as_bytes()).and_then(|()| f.write_all(b"\n")).and_then(|()| f.sync_all()).map_err(err)?;
    Ok(())
}
