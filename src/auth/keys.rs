//! The Ed25519 key that signs access tokens: generated on first start, kept in
//! `data_dir/keys/jwt-ed25519.pk8` (PKCS#8 DER, mode 0600, directory 0700), loaded afterwards.
//!
//! The key is security state, not part of the record: losing it invalidates every access token
//! (they live minutes) and nothing else. It is never logged; only its `kid` is.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use jsonwebtoken::{DecodingKey, EncodingKey};
use sha2::{Digest, Sha256};

use super::AuthError;

pub const KEY_DIR: &str = "keys";
pub const KEY_FILE: &str = "jwt-ed25519.pk8";

/// The signing key in the forms jsonwebtoken wants, plus what the JWKS publishes.
pub(crate) struct SigningKeys {
    pub kid: String,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    public: [u8; 32],
}

impl SigningKeys {
    /// Loads the key from `data_dir/keys/`, or generates and stores it when there is none.
    pub fn load_or_generate(data_dir: &Path) -> Result<Self, AuthError> {
        let dir = data_dir.join(KEY_DIR);
        let io = |what: &str, p: &Path| {
            let what = format!("{what} {}", p.display());
            move |e: std::io::Error| AuthError::StorageUnavailable(format!("{what}: {e}"))
        };
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(io("creating", &dir))?;
        // `mode` only applies to directories it creates; tighten one that already existed.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(io("securing", &dir))?;
        let path = dir.join(KEY_FILE);
        let signing = match fs::read(&path) {
            Ok(der) => {
                let mode = fs::metadata(&path).map_err(io("reading", &path))?.permissions().mode();
                if mode & 0o077 != 0 {
                    tracing::warn!(
                        mode = format!("{:o}", mode & 0o777),
                        "the JWT signing key was readable by others; restricting it to 0600"
                    );
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(io("securing", &path))?;
                }
                SigningKey::from_pkcs8_der(&der)
                    .map_err(|e| AuthError::Config(format!("{} is not an Ed25519 PKCS#8 key: {e}", path.display())))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = generate()?;
                write_new_key(&dir, &path, &key)?;
                tracing::info!("generated a new JWT signing key");
                key
            }
            Err(e) => return Err(io("reading", &path)(e)),
        };
        let keys = Self::from_signing_key(&signing)?;
        tracing::info!(kid = %keys.kid, "JWT signing key loaded");
        Ok(keys)
    }

    pub fn from_signing_key(signing: &SigningKey) -> Result<Self, AuthError> {
        let der = signing.to_pkcs8_der().map_err(|e| AuthError::Internal(format!("encoding the key: {e}")))?;
        let public = signing.verifying_key().to_bytes();
        Ok(Self {
            kid: kid_of(&public),
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            // jsonwebtoken's Ed25519 "DER" decoding key is the raw 32-byte public key.
            decoding: DecodingKey::from_ed_der(&public),
            public,
        })
    }

    /// `{"keys":[{"kty":"OKP","crv":"Ed25519","x":…,"kid":…,"alg":"EdDSA","use":"sig"}]}`
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": [{
                "kty": "OKP",
                "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(self.public),
                "kid": self.kid,
                "alg": "EdDSA",
                "use": "sig",
            }]
        })
    }
}

/// The key id: the first 16 hex digits of SHA-256 of the raw public key. Stable across restarts
/// and different for a different key, so a verifier holding a cached JWKS notices a new key.
pub fn kid_of(public: &[u8]) -> String {
    hex::encode(&Sha256::digest(public)[..8])
}

fn generate() -> Result<SigningKey, AuthError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| AuthError::Internal(format!("no randomness for a key: {e}")))?;
    let key = SigningKey::from_bytes(&seed);
    seed.fill(0);
    Ok(key)
}

/// Writes the key to a temporary file created 0600, syncs, and renames it into place, so a crash
/// leaves either no key or a whole one (never a truncated key that fails every later start).
fn write_new_key(dir: &Path, path: &Path, key: &SigningKey) -> Result<(), AuthError> {
    let der = key.to_pkcs8_der().map_err(|e| AuthError::Internal(format!("encoding the key: {e}")))?;
    let tmp: PathBuf = dir.join(format!("{KEY_FILE}.tmp"));
    let err = |e: std::io::Error| AuthError::StorageUnavailable(format!("writing {}: {e}", path.display()));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(err)?;
    f.write_all(der.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    fs::rename(&tmp, path).map_err(err)?;
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
    Ok(())
}
