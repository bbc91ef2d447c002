//! Access tokens: short-lived EdDSA JWTs we sign, and optionally JWTs from configured external
//! identity providers.
//!
//! jsonwebtoken checks the signature with the algorithm pinned (the header's `alg` must be in
//! our one-element list, so `none` and HS256-with-the-public-key are refused before any key is
//! touched), and `iss` and `aud`. It would check `exp` and `nbf` against the system clock, so
//! those checks are switched off there and done here against the injected clock. Whether the
//! account still exists, is enabled and holds the role in the token is checked by the caller
//! against the registry.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::pkcs8::spki::SubjectPublicKeyInfoRef;
use ed25519_dalek::pkcs8::spki::der::Decode;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::AuthError;
use super::keys::SigningKeys;
use crate::domain::Role;

/// Tokens longer than this are refused before any parsing: no legitimate token of ours or of an
/// identity provider comes near it, and it bounds the work an attacker can cause.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// The most clock skew we forgive on `exp`, `nbf` and `iat`.
pub const MAX_LEEWAY_SECS: u64 = 30;
/// How many of our verified tokens are remembered (see `TokenService::verified`).
const VERIFIED_CACHE_ENTRIES: usize = 8192;

/// The claims of our access tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// The account id.
    pub sub: String,
    pub role: Role,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: String,
}

/// What a verified token says, before the account is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verified {
    /// Ours: subject, role claimed, issued at.
    Own { account_id: Uuid, role: Role, iat: i64 },
    /// An external provider's: who it maps to, and when it was issued if it says.
    External { subject: ExternalSubject, iat: Option<i64> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExternalSubject {
    AccountId(Uuid),
    Username(String),
}

pub(crate) struct TokenService {
    keys: SigningKeys,
    issuer: String,
    audience: String,
    leeway: i64,
    validation: Validation,
    external: Vec<PreparedIdp>,
    /// Our tokens whose signature, issuer and audience have been checked, by their exact text.
    /// An Ed25519 verification costs more than the rest of a page read, and a client sends the
    /// same token for its whole lifetime; the times are still checked on every use, and the
    /// account by the caller. Any changed byte misses, so nothing unverified is ever trusted.
    /// Bounded: when full it is emptied, which costs one verification per live token.
    verified: RwLock<HashMap<Box<str>, OwnClaims>>,
}

/// What an already verified token of ours said.
#[derive(Debug, Clone, Copy)]
struct OwnClaims {
    account_id: Uuid,
    role: Role,
    iat: i64,
    nbf: i64,
    exp: i64,
}

impl TokenService {
    pub fn new(
        keys: SigningKeys,
        issuer: String,
        audience: String,
        leeway_secs: u64,
        external: &[ExternalIdp],
    ) -> Result<Self, AuthError> {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.set_issuer(&[&issuer]);
        validation.set_audience(&[&audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        // Time is checked in `check_times` against the injected clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        let external = external.iter().map(PreparedIdp::new).collect::<Result<Vec<_>, _>>()?;
        if external.iter().any(|i| i.config.issuer == issuer) {
            return Err(AuthError::Config("an external identity provider cannot use our own issuer".into()));
        }
        Ok(Self {
            keys,
            issuer,
            audience,
            leeway: leeway_secs.min(MAX_LEEWAY_SECS) as i64,
            validation,
            external,
            verified: RwLock::new(HashMap::new()),
        })
    }

    pub fn jwks(&self) -> serde_json::Value {
        self.keys.jwks()
    }

    /// Signs an access token for `sub` in `role`, valid from `now` for `ttl`.
    pub fn issue(
        &self,
        account_id: Uuid,
        role: Role,
        now: OffsetDateTime,
        ttl: time::Duration,
    ) -> Result<String, AuthError> {
        let iat = now.unix_timestamp();
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: account_id.to_string(),
            role,
            iat,
            nbf: iat,
            exp: iat + ttl.whole_seconds(),
            jti: Uuid::now_v7().to_string(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.keys.kid.clone());
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, &claims, &self.keys.encoding)
            .map_err(|e| AuthError::Internal(format!("signing a token: {e}")))
    }

    /// Checks signature, algorithm, issuer, audience and times. Never touches the registry.
    pub fn verify(&self, token: &str, now: OffsetDateTime) -> Result<Verified, AuthError> {
        if token.len() > MAX_TOKEN_LEN || token.is_empty() {
            return Err(AuthError::InvalidToken);
        }
        let cached = self.verified.read().unwrap_or_else(|p| p.into_inner()).get(token).copied();
        if let Some(c) = cached {
            check_times(now, Some(c.exp), Some(c.nbf), Some(c.iat), self.leeway)?;
            return Ok(Verified::Own { account_id: c.account_id, role: c.role, iat: c.iat });
        }
        // Route by issuer. The claims are read unverified only to pick the keys; everything is
        // verified with those keys and the issuer is pinned again in the validation.
        #[derive(Deserialize)]
        struct Iss {
            iss: Option<String>,
        }
        let iss = jsonwebtoken::dangerous::insecure_decode_claims::<Iss>(token)
            .map_err(|_| AuthError::InvalidToken)?
            .iss
            .ok_or(AuthError::InvalidToken)?;
        if iss == self.issuer {
            self.verify_own(token, now)
        } else if let Some(idp) = self.external.iter().find(|i| i.config.issuer == iss) {
            idp.verify(token, now, self.leeway)
        } else {
            Err(AuthError::InvalidToken)
        }
    }

    fn verify_own(&self, token: &str, now: OffsetDateTime) -> Result<Verified, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::InvalidToken)?;
        if header.kid.as_deref().is_some_and(|k| k != self.keys.kid) {
            return Err(AuthError::InvalidToken);
        }
        let data = jsonwebtoken::decode::<AccessClaims>(token, &self.keys.decoding, &self.validation)
            .map_err(|_| AuthError::InvalidToken)?;
        let c = data.claims;
        check_times(now, Some(c.exp), Some(c.nbf), Some(c.iat), self.leeway)?;
        let account_id = Uuid::try_parse(&c.sub).map_err(|_| AuthError::InvalidToken)?;
        let mut cache = self.verified.write().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= VERIFIED_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(token.into(), OwnClaims { account_id, role: c.role, iat: c.iat, nbf: c.nbf, exp: c.exp });
        Ok(Verified::Own { account_id, role: c.role, iat: c.iat })
    }
}

/// `exp` and `nbf` (and a sanity bound on `iat`) against the injected clock.
fn check_times(
    now: OffsetDateTime,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    leeway: i64,
) -> Result<(), AuthError> {
    let now = now.unix_timestamp();
    let exp = exp.ok_or(AuthError::InvalidToken)?;
    if now >= exp.saturating_add(leeway) {
        return Err(AuthError::TokenExpired);
    }
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err(AuthError::InvalidToken);
    }
    // A token "issued" in the future was not issued by anyone honest.
    if iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
        return Err(AuthError::InvalidToken);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// External identity providers

/// Algorithms an external provider may use. A fixed, safe set: no HMAC (a shared secret would
/// have to live here), no `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExternalAlgorithm {
    EdDSA,
    ES256,
    RS256,
}

impl ExternalAlgorithm {
    fn jwt(self) -> Algorithm {
        match self {
            Self::EdDSA => Algorithm::EdDSA,
            Self::ES256 => Algorithm::ES256,
            Self::RS256 => Algorithm::RS256,
        }
    }
}

/// The provider's public keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExternalKeys {
    /// A JWKS document (`{"keys":[…]}`), e.g. a copy of the provider's `jwks_uri`.
    Jwks(String),
    /// `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo) blocks: Ed25519, P-256 or RSA.
    Pem(Vec<String>),
}

/// How the provider's token names a vivirk account. Tokens of people without an account are
/// refused: the provider authenticates, vivirk decides who has which role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectMapping {
    /// `sub` is a vivirk account id.
    AccountId,
    /// This claim (e.g. `preferred_username`) holds a vivirk username.
    UsernameClaim(String),
}

/// An external identity provider whose tokens are accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalIdp {
    pub issuer: String,
    pub audience: String,
    pub keys: ExternalKeys,
    pub algorithms: Vec<ExternalAlgorithm>,
    pub subject: SubjectMapping,
}

struct PreparedKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

struct PreparedIdp {
    config: ExternalIdp,
    keys: Vec<PreparedKey>,
}

impl PreparedIdp {
    fn new(config: &ExternalIdp) -> Result<Self, AuthError> {
        let allowed: HashSet<Algorithm> = config.algorithms.iter().map(|a| a.jwt()).collect();
        let bad = |why: String| AuthError::Config(format!("identity provider {:?}: {why}", config.issuer));
        let keys = match &config.keys {
            ExternalKeys::Jwks(json) => parse_jwks(json).map_err(bad)?,
            ExternalKeys::Pem(pems) => pems.iter().map(|p| parse_pem(p)).collect::<Result<Vec<_>, _>>().map_err(bad)?,
        };
        // Keys of an algorithm the provider is not allowed to use are dropped, not kept around.
        let keys: Vec<_> = keys.into_iter().filter(|k| allowed.contains(&k.alg)).collect();
        if keys.is_empty() {
            return Err(bad("no usable key for the allowed algorithms".into()));
        }
        if config.issuer.is_empty() || config.audience.is_empty() {
            return Err(bad("issuer and audience are required".into()));
        }
        Ok(Self { config: config.clone(), keys })
    }

    fn verify(&self, token: &str, now: OffsetDateTime, leeway: i64) -> Result<Verified, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::InvalidToken)?;
        // The header's alg picks the key, and the validation allows only that key's algorithm:
        // a token can never make us use a key with an algorithm it was not published for.
        let candidates = self.keys.iter().filter(|k| {
            k.alg == header.alg && header.kid.as_ref().is_none_or(|kid| k.kid.as_ref().is_none_or(|k| k == kid))
        });
        for k in candidates {
            let mut v = Validation::new(k.alg);
            v.algorithms = vec![k.alg];
            v.set_issuer(&[&self.config.issuer]);
            v.set_audience(&[&self.config.audience]);
            v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            v.validate_exp = false;
            v.validate_nbf = false;
            v.leeway = 0;
            let Ok(data) = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &k.key, &v) else {
                continue;
            };
            let c = data.claims;
            let int = |name: &str| c.get(name).and_then(serde_json::Value::as_i64);
            if c.get("nbf").is_some() && int("nbf").is_none() {
                return Err(AuthError::InvalidToken);
            }
            check_times(now, int("exp"), int("nbf"), int("iat"), leeway)?;
            let subject = match &self.config.subject {
                SubjectMapping::AccountId => {
                    let sub = c.get("sub").and_then(|s| s.as_str()).ok_or(AuthError::InvalidToken)?;
                    ExternalSubject::AccountId(Uuid::try_parse(sub).map_err(|_| AuthError::InvalidToken)?)
                }
                SubjectMapping::UsernameClaim(claim) => {
                    let name = c.get(claim).and_then(|s| s.as_str()).ok_or(AuthError::InvalidToken)?;
                    ExternalSubject::Username(name.to_owned())
                }
            };
            return Ok(Verified::External { subject, iat: int("iat") });
        }
        Err(AuthError::InvalidToken)
    }
}

fn parse_jwks(json: &str) -> Result<Vec<PreparedKey>, String> {
    let doc: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("JWKS is not JSON: {e}"))?;
    let keys = doc.get("keys").and_then(|k| k.as_array()).ok_or("JWKS has no \"keys\" array")?;
    let mut out = Vec::new();
    for jwk in keys {
        let s = |name: &str| jwk.get(name).and_then(|v| v.as_str());
        if s("use").is_some_and(|u| u != "sig") {
            continue;
        }
        let kid = s("kid").map(str::to_owned);
        let b64 = |name: &str| -> Result<Vec<u8>, String> {
            URL_SAFE_NO_PAD.decode(s(name).ok_or(format!("key {kid:?} has no {name}"))?).map_err(|e| e.to_string())
        };
        let (alg, key) = match (s("kty"), s("crv")) {
            (Some("OKP"), Some("Ed25519")) => (Algorithm::EdDSA, ed_key(&b64("x")?)?),
            (Some("EC"), Some("P-256")) => {
                let (x, y) = (b64("x")?, b64("y")?);
                if x.len() != 32 || y.len() != 32 {
                    return Err(format!("key {kid:?}: P-256 coordinates must be 32 bytes"));
                }
                let point = [&[0x04][..], &x, &y].concat();
                (Algorithm::ES256, DecodingKey::from_ec_der(&point))
            }
            (Some("RSA"), _) => {
                let (n, e) = (b64("n")?, b64("e")?);
                check_rsa_modulus(&n)?;
                (Algorithm::RS256, DecodingKey::from_rsa_raw_components(&n, &e))
            }
            // Other key types (HMAC `oct`, other curves) are never usable here.
            _ => continue,
        };
        // A key that names its algorithm is used for that one only.
        if s("alg").is_some_and(|a| a != format!("{alg:?}")) {
            continue;
        }
        out.push(PreparedKey { kid, alg, key });
    }
    Ok(out)
}

/// Parses one `PUBLIC KEY` PEM block (SubjectPublicKeyInfo).
fn parse_pem(pem: &str) -> Result<PreparedKey, String> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "-----BEGIN PUBLIC KEY-----")
        .skip(1)
        .take_while(|l| *l != "-----END PUBLIC KEY-----")
        .collect();
    let der = STANDARD.decode(body).map_err(|e| format!("PEM is not base64: {e}"))?;
    let spki = SubjectPublicKeyInfoRef::from_der(&der).map_err(|e| format!("not a SubjectPublicKeyInfo: {e}"))?;
    let raw = spki.subject_public_key.as_bytes().ok_or("public key is not whole bytes")?;
    let (oid, params) = spki.algorithm.oids().map_err(|e| e.to_string())?;
    let (alg, key) = match (oid.to_string().as_str(), params.map(|p| p.to_string())) {
        ("1.3.101.112", None) => (Algorithm::EdDSA, ed_key(raw)?),
        ("1.2.840.10045.2.1", Some(curve)) if curve == "1.2.840.10045.3.1.7" => {
            if raw.len() != 65 || raw[0] != 0x04 {
                return Err("P-256 key must be an uncompressed point".into());
            }
            (Algorithm::ES256, DecodingKey::from_ec_der(raw))
        }
        ("1.2.840.113549.1.1.1", _) => (Algorithm::RS256, DecodingKey::from_rsa_der(raw)),
        (other, _) => return Err(format!("unsupported key algorithm {other}")),
    };
    Ok(PreparedKey { kid: None, alg, key })
}

/// jsonwebtoken slices the first 32 bytes of an Ed25519 key and panics on a shorter one, so the
/// length is checked here.
fn ed_key(raw: &[u8]) -> Result<DecodingKey, String> {
    if raw.len() != 32 {
        return Err("Ed25519 public key must be 32 bytes".into());
    }
    ed25519_dalek::VerifyingKey::from_bytes(raw.try_into().map_err(|_| "bad key length")?)
        .map_err(|e| format!("invalid Ed25519 key: {e}"))?;
    Ok(DecodingKey::from_ed_der(raw))
}

fn check_rsa_modulus(n: &[u8]) -> Result<(), String> {
    let significant = n.iter().skip_while(|b| **b == 0).count();
    if significant * 8 < 2048 {
        return Err("RSA keys must be at least 2048 bits".into());
    }
    Ok(())
}
