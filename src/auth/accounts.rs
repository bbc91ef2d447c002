//! Accounts: their events in the `accounts` stream, the in-memory registry folded from them, and
//! password hashing.
//!
//! Accounts are part of the record like everything else: who could act in which role, and since
//! when, must be answerable years later. The stream is small (one event per account change), so
//! the whole registry lives in memory and is rebuilt from the stream at open.
//!
//! Uniqueness of usernames is decided against the registry at a known stream version and the
//! append carries `ExpectedVersion::Exact(version)`: if anyone appended in between, the writer
//! refuses, we catch up and decide again. No lock spans the append, and two handles on the same
//! log (or two tasks) cannot both win.
//!
//! The password hash is an argon2id PHC string inside the event. It is never part of any view
//! handed out of this module ([`AccountView`] has no hash), and the HTTP layer must never expose
//! the raw `accounts` stream.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::AuthError;
use crate::clock::SharedClock;
use crate::domain::events_macro::event_enum;
use crate::domain::{AccountId, DecodeError, Role, ShortText};
use crate::log::{AppendError, Envelope, EventLog, ExpectedVersion, LogActor, Metadata, NewEvent, StreamId};

/// The stream every account event goes to.
pub const ACCOUNTS_STREAM: &str = "accounts";
pub const USERNAME_MIN: usize = 3;
pub const USERNAME_MAX: usize = 64;
/// Characters, not bytes; a passphrase of any script counts by what the person typed.
pub const PASSWORD_MIN: usize = 12;
/// Bounded so that a megabyte "password" cannot be used to burn CPU in argon2.
pub const PASSWORD_MAX: usize = 256;
/// How often an append is retried when another writer got in between.
const APPEND_ATTEMPTS: usize = 16;

// ---------------------------------------------------------------------------------------------
// Events

/// An account was created. `password_hash` is an argon2id PHC string.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountCreated {
    pub account_id: AccountId,
    /// Normalised: lower case, `[a-z0-9._-]{3,64}`.
    pub username: String,
    pub display_name: ShortText,
    pub role: Role,
    pub password_hash: String,
}

/// The account's password was replaced. Sessions issued before this stop working.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountPasswordChanged {
    pub account_id: AccountId,
    pub password_hash: String,
}

/// The account now holds another role. Access tokens naming the old role stop working at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountRoleChanged {
    pub account_id: AccountId,
    pub role: Role,
}

/// The account may no longer log in or use its tokens, until enabled again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountDisabled {
    pub account_id: AccountId,
}

/// A disabled account may log in again (tokens from before it was disabled stay dead).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountEnabled {
    pub account_id: AccountId,
}

/// A tombstone: the account can never log in or use tokens again. Its id stays in the record
/// (events it authored still name it) and its username stays reserved, so a new account can
/// never inherit an old one's identity, e.g. through an external identity provider's mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountDeleted {
    pub account_id: AccountId,
}

// The hashes must not end up in logs through a stray `{:?}`.
impl std::fmt::Debug for AccountCreated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountCreated").field("account_id", &self.account_id).field("role", &self.role).finish()
    }
}

impl std::fmt::Debug for AccountPasswordChanged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountPasswordChanged").field("account_id", &self.account_id).finish()
    }
}

event_enum! {
    /// Everything that can happen to an account.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum AccountEvent {
        AccountCreated = 1,
        AccountPasswordChanged = 1,
        AccountRoleChanged = 1,
        AccountDisabled = 1,
        AccountEnabled = 1,
        AccountDeleted = 1,
    }
}

impl AccountEvent {
    /// Reads a stored payload (no account event has an older version yet).
    pub fn decode(event_type: &str, schema_version: u16, data: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_current_version(event_type, schema_version, data)
    }

    pub fn account_id(&self) -> AccountId {
        match self {
            Self::AccountCreated(e) => e.account_id,
            Self::AccountPasswordChanged(e) => e.account_id,
            Self::AccountRoleChanged(e) => e.account_id,
            Self::AccountDisabled(e) => e.account_id,
            Self::AccountEnabled(e) => e.account_id,
            Self::AccountDeleted(e) => e.account_id,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// State

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    Active,
    Disabled,
    Deleted,
}

/// An account as the API may show it: never the password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AccountView {
    pub account_id: AccountId,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub status: AccountStatus,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String")]
    pub created_at: OffsetDateTime,
}

/// What the registry keeps per account.
#[derive(Clone)]
pub(crate) struct AccountRecord {
    pub view: AccountView,
    pub password_hash: String,
    /// Tokens issued (`iat`) before this, in unix seconds, are dead: set when the password
    /// changes or the account is disabled, so a stolen session does not outlive either.
    pub sessions_valid_from: i64,
}

/// All accounts, folded from the stream up to `version`.
#[derive(Default)]
pub(crate) struct Registry {
    pub by_id: HashMap<AccountId, AccountRecord>,
    pub by_username: HashMap<String, AccountId>,
    /// The last stream version applied (0: none).
    pub version: u64,
}

impl Registry {
    /// Folds one stored event in. No validation: the decision was made before the append, and
    /// replay must give the same registry whatever the code has since learned to refuse.
    fn apply(&mut self, event: AccountEvent, occurred_at: OffsetDateTime) {
        let at = occurred_at.unix_timestamp();
        match event {
            AccountEvent::AccountCreated(e) => {
                self.by_username.insert(e.username.clone(), e.account_id);
                let view = AccountView {
                    account_id: e.account_id,
                    username: e.username,
                    display_name: e.display_name.into(),
                    role: e.role,
                    status: AccountStatus::Active,
                    created_at: occurred_at,
                };
                self.by_id.insert(
                    e.account_id,
                    AccountRecord { view, password_hash: e.password_hash, sessions_valid_from: i64::MIN },
                );
            }
            AccountEvent::AccountPasswordChanged(e) => {
                if let Some(r) = self.by_id.get_mut(&e.account_id) {
                    r.password_hash = e.password_hash;
                    r.sessions_valid_from = at;
                }
            }
            AccountEvent::AccountRoleChanged(e) => {
                if let Some(r) = self.by_id.get_mut(&e.account_id) {
                    r.view.role = e.role;
                }
            }
            AccountEvent::AccountDisabled(e) => {
                if let Some(r) = self.by_id.get_mut(&e.account_id) {
                    r.view.status = AccountStatus::Disabled;
                    r.sessions_valid_from = at;
                }
            }
            AccountEvent::AccountEnabled(e) => {
                if let Some(r) = self.by_id.get_mut(&e.account_id) {
                    r.view.status = AccountStatus::Active;
                }
            }
            AccountEvent::AccountDeleted(e) => {
                if let Some(r) = self.by_id.get_mut(&e.account_id) {
                    r.view.status = AccountStatus::Deleted;
                    // The hash of a dead account is of no use to anyone; drop it from memory.
                    r.password_hash.clear();
                    r.sessions_valid_from = i64::MAX;
                }
            }
        }
    }

    pub fn by_username(&self, username: &str) -> Option<&AccountRecord> {
        self.by_username.get(username).and_then(|id| self.by_id.get(id))
    }
}

// ---------------------------------------------------------------------------------------------
// Validation

/// Trims and lower-cases, then checks `[a-z0-9._-]{3,64}`.
pub fn normalize_username(raw: &str) -> Result<String, AuthError> {
    let u = raw.trim().to_lowercase();
    let ok = (USERNAME_MIN..=USERNAME_MAX).contains(&u.len())
        && u.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'));
    if ok { Ok(u) } else { Err(AuthError::InvalidUsername) }
}

pub fn check_password_policy(password: &str) -> Result<(), AuthError> {
    // Length is the policy (NIST 800-63B): no composition rules, which only push people to
    // predictable patterns. An all-whitespace "password" is refused as a typo.
    let n = password.chars().count();
    if !(PASSWORD_MIN..=PASSWORD_MAX).contains(&n) || password.trim().is_empty() {
        return Err(AuthError::WeakPassword { min: PASSWORD_MIN, max: PASSWORD_MAX });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Password hashing

/// argon2id cost. The default is OWASP's minimum recommendation (19 MiB, 2 passes, 1 lane):
/// about 20–40 ms per hash on a server core, which is what makes offline guessing expensive and
/// why every hash and verify runs on the blocking pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordHashParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for PasswordHashParams {
    fn default() -> Self {
        Self { memory_kib: 19_456, iterations: 2, parallelism: 1 }
    }
}

/// Hashes and verifies passwords; cheap to clone.
#[derive(Clone)]
pub(crate) struct Hasher {
    params: PasswordHashParams,
    /// A hash of a random password, verified against when the username is unknown so that the
    /// answer takes as long as for a known one. Computed at open ([`Hasher::warm_up`]).
    dummy: Arc<OnceLock<String>>,
}

impl Hasher {
    pub fn new(params: PasswordHashParams) -> Result<Self, AuthError> {
        argon2_params(params)?;
        Ok(Self { params, dummy: Arc::new(OnceLock::new()) })
    }

    /// Computes the dummy hash now (blocking), so the first login with an unknown username does
    /// not take measurably longer than later ones.
    pub fn warm_up(&self) {
        let _ = self.dummy();
    }

    fn dummy(&self) -> &str {
        self.dummy.get_or_init(|| {
            let mut pw = [0u8; 32];
            let _ = getrandom::fill(&mut pw);
            self.hash(&hex::encode(pw)).unwrap_or_default()
        })
    }

    /// Blocking: call from the blocking pool.
    pub fn hash(&self, password: &str) -> Result<String, AuthError> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| AuthError::Internal(format!("no randomness for a salt: {e}")))?;
        let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Internal(format!("salt: {e}")))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, argon2_params(self.params)?);
        argon
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AuthError::Internal(format!("argon2: {e}")))
    }

    /// Blocking: call from the blocking pool. `None` verifies against the dummy hash (same cost)
    /// and is always false.
    pub fn verify(&self, password: &str, phc: Option<&str>) -> bool {
        match phc {
            Some(phc) if !phc.is_empty() => verify_phc(password, phc),
            _ => {
                let _ = verify_phc(password, self.dummy());
                false
            }
        }
    }
}

fn argon2_params(p: PasswordHashParams) -> Result<argon2::Params, AuthError> {
    argon2::Params::new(p.memory_kib, p.iterations, p.parallelism, None)
        .map_err(|e| AuthError::Config(format!("argon2 parameters: {e}")))
}

/// Verifies with the parameters stored in the hash, so raising the cost later does not lock
/// anyone out. Only argon2id hashes are accepted.
fn verify_phc(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else { return false };
    if parsed.algorithm != argon2::Algorithm::Argon2id.ident() {
        return false;
    }
    argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()
}

// ---------------------------------------------------------------------------------------------
// The store

/// The accounts stream plus the registry folded from it.
pub(crate) struct Accounts {
    log: EventLog,
    stream: StreamId,
    clock: SharedClock,
    registry: RwLock<Registry>,
}

/// Who an append is attributed to: an account, or the system itself (bootstrap).
#[derive(Debug, Clone, Copy)]
pub(crate) enum By {
    Account(AccountId, Role),
    System,
}

impl By {
    fn log_actor(self) -> LogActor {
        match self {
            By::Account(id, role) => LogActor { account_id: id.0, role: role.as_str().to_owned() },
            // The nil account in role "system": nobody logged in did this.
            By::System => LogActor { account_id: Uuid::nil(), role: "system".to_owned() },
        }
    }
}

impl Accounts {
    pub fn open(log: EventLog, clock: SharedClock) -> Result<Self, AuthError> {
        let stream = StreamId::parse(ACCOUNTS_STREAM).map_err(|e| AuthError::Internal(e.to_string()))?;
        let accounts = Self { log, stream, clock, registry: RwLock::new(Registry::default()) };
        accounts.refresh_from_log()?;
        Ok(accounts)
    }

    /// Applies events appended since the registry's version, by this handle or any other.
    pub fn refresh_from_log(&self) -> Result<(), AuthError> {
        let mut reg = self.registry.write().unwrap_or_else(|p| p.into_inner());
        loop {
            let batch = self
                .log
                .read_stream(&self.stream, reg.version + 1, false, 1024)
                .map_err(|e| AuthError::StorageUnavailable(e.to_string()))?;
            if batch.is_empty() {
                return Ok(());
            }
            for env in batch {
                apply_envelope(&mut reg, env)?;
            }
        }
    }

    pub fn read<R>(&self, f: impl FnOnce(&Registry) -> R) -> R {
        f(&self.registry.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn get(&self, id: AccountId) -> Option<AccountRecord> {
        self.read(|r| r.by_id.get(&id).cloned())
    }

    /// Decide-then-append with optimistic concurrency: `decide` sees the registry at version
    /// `v` and returns the events to append (none: nothing to do); the append expects exactly
    /// `v`, and on a conflict we catch up and decide again.
    pub async fn append_decided<T>(
        &self,
        by: By,
        mut decide: impl FnMut(&Registry) -> Result<(Vec<AccountEvent>, T), AuthError>,
    ) -> Result<T, AuthError> {
        for _ in 0..APPEND_ATTEMPTS {
            self.refresh_from_log()?;
            let (version, decided) = self.read(|r| decide(r).map(|d| (r.version, d)))?;
            let (events, out) = decided;
            if events.is_empty() {
                return Ok(out);
            }
            let now = self.clock.now();
            let new: Vec<NewEvent> = events
                .iter()
                .map(|e| NewEvent {
                    event_id: Uuid::now_v7(),
                    event_type: e.event_type().to_owned(),
                    schema_version: e.schema_version(),
                    occurred_at: now,
                    actor: by.log_actor(),
                    metadata: Metadata::default(),
                    data: e.to_data(),
                })
                .collect();
            match self.log.append(&self.stream, ExpectedVersion::Exact(version), new).await {
                Ok(_) => {
                    self.refresh_from_log()?;
                    return Ok(out);
                }
                Err(AppendError::WrongExpectedVersion { actual, .. }) => {
                    tracing::debug!(expected = version, actual, "accounts stream moved; deciding again");
                    // The events that beat us are durable, but may not be readable for a
                    // moment (reads see an event once it is indexed); wait for them.
                    self.wait_for_version(actual).await;
                }
                Err(AppendError::Storage(e)) | Err(AppendError::Invalid(e)) => {
                    return Err(AuthError::StorageUnavailable(e));
                }
                Err(e) => return Err(AuthError::StorageUnavailable(e.to_string())),
            }
        }
        Err(AuthError::Busy)
    }

    async fn wait_for_version(&self, version: u64) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
        while tokio::time::Instant::now() < deadline {
            match self.log.stream_head(&self.stream) {
                Ok(Some(h)) if h.version >= version => return,
                Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(2)).await,
                Err(_) => return,
            }
        }
    }
}

fn apply_envelope(reg: &mut Registry, env: Envelope) -> Result<(), AuthError> {
    if env.stream_version != reg.version + 1 {
        return Err(AuthError::StorageUnavailable(format!(
            "accounts stream: expected version {}, read {}",
            reg.version + 1,
            env.stream_version
        )));
    }
    let event = AccountEvent::decode(&env.event_type, env.schema_version, &env.data).map_err(|e| {
        // A stored account event we cannot read means we cannot know who may log in: refuse to
        // run rather than guess.
        AuthError::StorageUnavailable(format!("accounts stream version {}: {e}", env.stream_version))
    })?;
    reg.apply(event, env.occurred_at);
    reg.version = env.stream_version;
    Ok(())
}
