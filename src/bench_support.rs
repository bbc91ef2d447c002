//! Crate-private pieces of the per-request hot paths, reachable from `benches/hot_paths.rs`.
//! Not an API: hidden from the docs, and free to change with the code it wraps.

use actix_web::HttpRequest;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::api::ApiError;
use crate::api::extract;
use crate::app::WriteOptions;
use crate::auth::keys::SigningKeys;
use crate::auth::tokens::{TokenService, Verified};
use crate::auth::{AuthConfig, AuthError};
use crate::domain::Role;

/// Our access-token service with a fixed key, configured as `Auth::open` configures it by
/// default.
pub struct Tokens(TokenService);

impl Tokens {
    pub fn new(seed: [u8; 32]) -> Result<Self, AuthError> {
        let keys = SigningKeys::from_signing_key(&ed25519_dalek::SigningKey::from_bytes(&seed))?;
        let c = AuthConfig::default();
        Ok(Tokens(TokenService::new(keys, c.issuer, c.audience, c.leeway_secs, &c.external_idps)?))
    }

    /// An access token as a login hands it out.
    pub fn issue(&self, account_id: Uuid, role: Role, now: OffsetDateTime) -> Result<String, AuthError> {
        self.0.issue(account_id, role, now, time::Duration::minutes(15))
    }

    /// What every request does with its bearer token before the registry lookup: the issuer
    /// peek, the header, the Ed25519 signature and the claims.
    pub fn verify(&self, token: &str, now: OffsetDateTime) -> Result<(Uuid, Role), AuthError> {
        match self.0.verify(token, now)? {
            Verified::Own { account_id, role, .. } => Ok((account_id, role)),
            Verified::External { .. } => Err(AuthError::InvalidToken),
        }
    }
}

/// What a course write does with its body before deciding (`api::courses::course_write`): the
/// content type, the JSON, the write metadata and headers split off, the event's typed fields.
pub fn parse_write<T: DeserializeOwned>(req: &HttpRequest, body: &[u8]) -> Result<(T, WriteOptions), ApiError> {
    let mut v = extract::json_value(req, body)?;
    let opts = extract::write_options(req, &mut v)?;
    Ok((extract::from_value(v)?, opts))
}
