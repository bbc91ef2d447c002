//! Signed checkpoints of the global hash chain.
//!
//! A checkpoint is `(position, hash, signed_at)` of the log's durable head, signed with Ed25519.
//! The signed message is text, so a verifier in any language can rebuild it:
//!
//! ```text
//! vivirk-checkpoint/1\n
//! position=<decimal>\n
//! hash=<64 lower-case hex digits>\n
//! signed_at=<unix seconds>\n
//! ```
//!
//! The signature is base64url (no padding) over those bytes; the public key is published as an
//! OKP JWK (`GET /.well-known/vivirk-checkpoint-key`, `vivirk keys show`) with `kid` = the first
//! 16 hex digits of SHA-256 of the raw key.
//!
//! Why it matters: the chains alone prove an export is self-consistent, not that it is the
//! original — whoever can write `log/` can change an event and recompute every hash after it.
//! They cannot recompute a signature. Recompute the hash at a checkpoint's position from a full
//! export and compare it with the signed hash: equal means nothing at or before that position
//! changed since it was signed. The guarantee is as strong as the key's secrecy: keep
//! `keys/checkpoint-ed25519.pk8` readable by the service only (0600), and let auditors keep
//! copies of checkpoints they fetched — an old checkpoint still catches a rewrite made later
//! with a stolen key.
//!
//! Checkpoints are stored append-only in `data_dir/audit/` (tree `checkpoints`, keyed by
//! position). They are not derivable from the log.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{AuditError, AuditStore};
use crate::clock::SharedClock;
use crate::log::{EventLog, Hash};

/// The checkpoint key's file name in `data_dir/keys/` (separate from the JWT key: different
/// purpose, different lifetime — rotating token keys must not break old exports).
pub const KEY_FILE: &str = "checkpoint-ed25519.pk8";

/// The published public key: `{kty:"OKP", crv:"Ed25519", x, kid}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublicKey {
    /// Always `OKP`.
    pub kty: String,
    /// Always `Ed25519`.
    pub crv: String,
    /// The raw 32-byte public key, base64url without padding.
    pub x: String,
    /// The first 16 hex digits of SHA-256 of the raw key.
    pub kid: String,
}

impl PublicKey {
    pub fn from_verifying(key: &VerifyingKey) -> Self {
        let raw = key.to_bytes();
        PublicKey {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: URL_SAFE_NO_PAD.encode(raw),
            kid: crate::auth::keys::kid_of(&raw),
        }
    }

    /// The key, after checking the JWK is what it claims (and its kid is its own).
    pub fn verifying_key(&self) -> Result<VerifyingKey, String> {
        if self.kty != "OKP" || self.crv != "Ed25519" {
            return Err("the public key is not an Ed25519 OKP key".into());
        }
        let raw: [u8; 32] = URL_SAFE_NO_PAD
            .decode(&self.x)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("the public key's x is not 32 bytes of base64url")?;
        if crate::auth::keys::kid_of(&raw) != self.kid {
            return Err("the public key's kid does not match its x".into());
        }
        VerifyingKey::from_bytes(&raw).map_err(|_| "the public key is not a valid Ed25519 point".to_owned())
    }
}

/// A signed checkpoint, as stored, served and carried in exports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignedCheckpoint {
    /// The global log position signed.
    pub position: u64,
    /// The global chain hash at that position (hex).
    #[schema(value_type = String)]
    pub hash: Hash,
    /// When it was signed (whole seconds; the signature covers the unix seconds).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub signed_at: OffsetDateTime,
    /// The signing key's id.
    pub kid: String,
    /// Ed25519 signature over the message in this module's documentation, base64url.
    pub signature: String,
}

impl SignedCheckpoint {
    pub fn message(position: u64, hash: &Hash, signed_at: OffsetDateTime) -> Vec<u8> {
        format!(
            "vivirk-checkpoint/1\nposition={position}\nhash={}\nsigned_at={}\n",
            hash.to_hex(),
            signed_at.unix_timestamp()
        )
        .into_bytes()
    }

    /// Checks the signature with `key` (and that the checkpoint names that key).
    pub fn verify(&self, key: &PublicKey) -> Result<(), String> {
        if self.kid != key.kid {
            return Err(format!("the checkpoint was signed with key {}, not {}", self.kid, key.kid));
        }
        let vk = key.verifying_key()?;
        let sig: [u8; 64] = URL_SAFE_NO_PAD
            .decode(&self.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("the checkpoint signature is not 64 bytes of base64url")?;
        vk.verify_strict(&Self::message(self.position, &self.hash, self.signed_at), &Signature::from_bytes(&sig))
            .map_err(|_| format!("the checkpoint signature does not verify with key {}", key.kid))
    }
}

/// The private checkpoint key. Never logged; only its kid is.
pub struct CheckpointKey {
    signing: SigningKey,
    public: PublicKey,
}

impl CheckpointKey {
    pub fn from_signing_key(signing: SigningKey) -> Self {
        let public = PublicKey::from_verifying(&signing.verifying_key());
        CheckpointKey { signing, public }
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    pub fn sign(&self, position: u64, hash: Hash, at: OffsetDateTime) -> SignedCheckpoint {
        // Whole seconds: the message carries unix seconds, so the JSON's RFC 3339 time must
        // round-trip to exactly what was signed.
        let signed_at = at.replace_nanosecond(0).unwrap_or(at);
        let sig = self.signing.sign(&SignedCheckpoint::message(position, &hash, signed_at));
        SignedCheckpoint {
            position,
            hash,
            signed_at,
            kid: self.public.kid.clone(),
            signature: URL_SAFE_NO_PAD.encode(sig.to_bytes()),
        }
    }

    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(crate::auth::keys::KEY_DIR).join(KEY_FILE)
    }

    /// Loads the key (tools: `vivirk keys show`); never creates one.
    pub fn load(data_dir: &Path) -> Result<Self, AuditError> {
        let path = Self::path(data_dir);
        let der = fs::read(&path).map_err(|e| AuditError::Key(format!("{}: {e}", path.display())))?;
        let signing = SigningKey::from_pkcs8_der(&der)
            .map_err(|e| AuditError::Key(format!("{} is not an Ed25519 PKCS#8 key: {e}", path.display())))?;
        Ok(Self::from_signing_key(signing))
    }

    /// Loads the key, or generates and stores it on first start (PKCS#8 DER, 0600, in a 0700
    /// directory; written to a temporary file, synced and renamed, as the JWT key is).
    pub fn load_or_generate(data_dir: &Path) -> Result<Self, AuditError> {
        let dir = data_dir.join(crate::auth::keys::KEY_DIR);
        let io = |p: &Path| {
            let p = p.display().to_string();
            move |e: std::io::Error| AuditError::Key(format!("{p}: {e}"))
        };
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(io(&dir))?;
        let path = dir.join(KEY_FILE);
        match fs::metadata(&path) {
            Ok(m) => {
                if m.permissions().mode() & 0o077 != 0 {
                    tracing::warn!("the checkpoint signing key was readable by others; restricting it to 0600");
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(io(&path))?;
                }
                let key = Self::load(data_dir)?;
                tracing::info!(kid = %key.public.kid, "checkpoint signing key loaded");
                Ok(key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                getrandom::fill(&mut seed).map_err(|e| AuditError::Key(format!("no randomness for a key: {e}")))?;
                let signing = SigningKey::from_bytes(&seed);
                seed.fill(0);
                let der = signing.to_pkcs8_der().map_err(|e| AuditError::Key(format!("encoding the key: {e}")))?;
                let tmp = dir.join(format!("{KEY_FILE}.tmp"));
                let _ = fs::remove_file(&tmp);
                let mut f =
                    fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(io(&tmp))?;
                f.write_all(der.as_bytes()).map_err(io(&tmp))?;
                f.sync_all().map_err(io(&tmp))?;
                drop(f);
                fs::rename(&tmp, &path).map_err(io(&path))?;
                fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(io(&dir))?;
                let key = Self::from_signing_key(signing);
                tracing::info!(kid = %key.public.kid, "generated a new checkpoint signing key");
                Ok(key)
            }
            Err(e) => Err(io(&path)(e)),
        }
    }
}

/// Signs and keeps checkpoints of one log.
pub struct Checkpoints {
    key: CheckpointKey,
    store: AuditStore,
    log: EventLog,
    clock: SharedClock,
    /// Serialises signing, so two callers cannot store two checkpoints of one head.
    signing: Mutex<()>,
}

impl Checkpoints {
    pub fn new(key: CheckpointKey, store: AuditStore, log: EventLog, clock: SharedClock) -> Self {
        Checkpoints { key, store, log, clock, signing: Mutex::new(()) }
    }

    pub fn public_key(&self) -> &PublicKey {
        self.key.public()
    }

    /// The latest stored checkpoint.
    pub fn latest(&self) -> Result<Option<SignedCheckpoint>, AuditError> {
        latest_in(&self.store)
    }

    /// Signs the log's durable head if it moved since the latest checkpoint; answers the latest
    /// checkpoint either way (`None` while the log is empty). The checkpoint is flushed before
    /// it is answered: once handed out, it must survive a crash.
    pub fn sign_if_moved(&self) -> Result<Option<SignedCheckpoint>, AuditError> {
        let _guard = self.signing.lock().unwrap_or_else(|p| p.into_inner());
        let latest = self.latest()?;
        let (position, hash) = self.log.head();
        if position == 0 || latest.as_ref().is_some_and(|c| c.position >= position) {
            return Ok(latest);
        }
        let cp = self.key.sign(position, hash, self.clock.now());
        let value = serde_json::to_vec(&cp).map_err(|e| AuditError::Storage(e.to_string()))?;
        // Append-only: a position is signed once; an existing entry is never replaced.
        let r = self.store.checkpoints.compare_and_swap(position.to_be_bytes(), None as Option<&[u8]>, Some(value))?;
        if r.is_err() {
            return self.latest();
        }
        self.store.flush()?;
        tracing::info!(position, kid = %cp.kid, "signed a checkpoint");
        Ok(Some(cp))
    }

    /// On start: the log must still hash to what the latest checkpoint signed. A mismatch means
    /// the log was rewritten behind the server's back; it is logged loudly (not refused: the
    /// auditors' exports and `vivirk verify --file` are where it is proven).
    pub fn check_log(&self) -> Result<(), AuditError> {
        let Some(cp) = self.latest()? else { return Ok(()) };
        if cp.verify(self.key.public()).is_err() {
            tracing::error!(position = cp.position, "the latest checkpoint does not verify with the current key");
            return Ok(());
        }
        let at = self.log.read_all(cp.position, 1).map_err(|e| AuditError::Log(e.to_string()))?;
        match at.first() {
            Some(e) if e.position == cp.position && e.hash == cp.hash => Ok(()),
            Some(_) => {
                tracing::error!(
                    position = cp.position,
                    "the log's hash differs from the signed checkpoint: the log was rewritten"
                );
                Ok(())
            }
            None => {
                tracing::error!(position = cp.position, "the log ends before the latest signed checkpoint");
                Ok(())
            }
        }
    }

    /// Signs every `interval` while the head moves. The interval is wall time (tokio); the
    /// signed time is the injected clock's.
    pub fn spawn(self: Arc<Self>, interval: std::time::Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let me = self.clone();
                match tokio::task::spawn_blocking(move || me.sign_if_moved()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "cannot sign a checkpoint"),
                    Err(e) => tracing::error!(error = %e, "checkpoint task failed"),
                }
            }
        })
    }
}

/// The latest checkpoint in a store (also for tools reading a stopped server's directory).
pub fn latest_in(store: &AuditStore) -> Result<Option<SignedCheckpoint>, AuditError> {
    match store.checkpoints.last()? {
        None => Ok(None),
        Some((_, v)) => serde_json::from_slice(&v)
            .map(Some)
            .map_err(|e| AuditError::Storage(format!("a stored checkpoint does not decode: {e}"))),
    }
}
