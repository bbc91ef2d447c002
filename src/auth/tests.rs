use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use time::macros::datetime;

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::log::{LogConfig, StreamId};

const START: time::OffsetDateTime = datetime!(2026-11-27 08:00 UTC);
const PASSWORD: &str = "correct horse battery";

/// Cheap argon2 so the suite stays fast; `default_params_hash_and_verify` covers the real cost.
fn fast_config() -> AuthConfig {
    AuthConfig {
        password_hash: PasswordHashParams { memory_kib: 1024, iterations: 1, parallelism: 1 },
        ..AuthConfig::default()
    }
}

struct Env {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    clock: ManualClock,
    log: EventLog,
    auth: Auth,
    admin: Principal,
}

fn open_log(dir: &Path, clock: &ManualClock) -> EventLog {
    let mut c = LogConfig::new(dir);
    c.clock = Arc::new(clock.clone());
    EventLog::open(c).expect("open log").0
}

fn open_auth(dir: &Path, log: &EventLog, clock: &ManualClock, sled_dir: &str, config: AuthConfig) -> Auth {
    let db = sled::open(dir.join(sled_dir)).expect("sled");
    Auth::open(dir, log.clone(), db, Arc::new(clock.clone()), config).expect("open auth")
}

async fn env_with(config: AuthConfig) -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let clock = ManualClock::new(START);
    let log = open_log(&dir, &clock);
    let auth = open_auth(&dir, &log, &clock, "auth", config);
    let password = auth.bootstrap_admin().await.unwrap().expect("bootstrap on an empty log");
    let pair = auth.login("admin", &password, addr(1)).await.unwrap();
    let admin = auth.verify_access(&pair.access_token).unwrap();
    Env { _tmp: tmp, dir, clock, log, auth, admin }
}

async fn env() -> Env {
    env_with(fast_config()).await
}

fn addr(n: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, n])
}

fn new_account(username: &str, role: Role) -> NewAccount {
    NewAccount { username: username.into(), display_name: "Some One".into(), role, password: PASSWORD.into() }
}

async fn user(e: &Env, username: &str, role: Role) -> AccountView {
    e.auth.create_account(&e.admin, new_account(username, role)).await.unwrap()
}

/// Our signing key, read from disk the way an attacker who stole it would.
fn our_key(dir: &Path) -> EncodingKey {
    EncodingKey::from_ed_der(&std::fs::read(dir.join("keys/jwt-ed25519.pk8")).unwrap())
}

fn sign(key: &EncodingKey, alg: Algorithm, claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

fn claims(e: &Env, sub: AccountId, role: &str) -> serde_json::Value {
    let now = e.clock.now().unix_timestamp();
    json!({"iss": "vivirk", "aud": "vivirk-api", "sub": sub.to_string(), "role": role,
           "iat": now, "nbf": now, "exp": now + 600, "jti": "x"})
}

fn code<T: std::fmt::Debug>(r: Result<T, AuthError>) -> &'static str {
    r.expect_err("expected a refusal").code()
}

// ---------------------------------------------------------------------------------------------
// Logins and refresh tokens

#[tokio::test]
async fn login_succeeds_with_the_right_password_only() {
    let e = env().await;
    let v = user(&e, "  Mentor.Anna ", Role::Mentor).await;
    assert_eq!(v.username, "mentor.anna");
    let pair = e.auth.login("MENTOR.anna", PASSWORD, addr(2)).await.unwrap();
    assert_eq!(pair.token_type, "Bearer");
    assert_eq!(pair.expires_in, 900);
    let p = e.auth.verify_access(&pair.access_token).unwrap();
    assert_eq!((p.account_id, p.role, p.username.as_str()), (v.account_id, Role::Mentor, "mentor.anna"));
    assert_eq!(code(e.auth.login("mentor.anna", "wrong password!!", addr(2)).await), "invalid_credentials");
    assert_eq!(code(e.auth.login("nobody.here", PASSWORD, addr(2)).await), "invalid_credentials");
    assert_eq!(code(e.auth.login("x", PASSWORD, addr(2)).await), "invalid_credentials");
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let e = env().await;
    user(&e, "teacher1", Role::Teacher).await;
    let first = e.auth.login("teacher1", PASSWORD, addr(2)).await.unwrap();
    let second = e.auth.refresh(&first.refresh_token).await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    e.auth.verify_access(&second.access_token).unwrap();
    let third = e.auth.refresh(&second.refresh_token).await.unwrap();
    // Someone replays the first token: the whole family dies, the newest token included.
    assert_eq!(code(e.auth.refresh(&first.refresh_token).await), "refresh_token_reused");
    assert_eq!(code(e.auth.refresh(&third.refresh_token).await), "refresh_token_invalid");
    // Another login is another family and is unaffected.
    let other = e.auth.login("teacher1", PASSWORD, addr(2)).await.unwrap();
    e.auth.refresh(&other.refresh_token).await.unwrap();
    for bad in ["", "garbage", &"A".repeat(43), &"A".repeat(5000)] {
        assert_eq!(code(e.auth.refresh(bad).await), "refresh_token_invalid");
    }
}

#[tokio::test]
async fn refresh_tokens_expire_and_logout_ends_the_family() {
    let e = env().await;
    user(&e, "teacher1", Role::Teacher).await;
    let pair = e.auth.login("teacher1", PASSWORD, addr(2)).await.unwrap();
    e.clock.advance(time::Duration::days(30) - time::Duration::seconds(1));
    let pair = e.auth.refresh(&pair.refresh_token).await.unwrap();
    e.clock.advance(time::Duration::days(30));
    assert_eq!(code(e.auth.refresh(&pair.refresh_token).await), "refresh_token_expired");
    // The admin's login token from `env()` and both of the teacher's.
    assert_eq!(e.auth.purge_expired_sessions().unwrap(), 3);

    let pair = e.auth.login("teacher1", PASSWORD, addr(2)).await.unwrap();
    e.auth.logout(&pair.refresh_token).unwrap();
    assert_eq!(code(e.auth.refresh(&pair.refresh_token).await), "refresh_token_invalid");
    e.auth.logout("not-a-token").unwrap();
}

#[tokio::test]
async fn password_change_ends_sessions_and_needs_the_current_password() {
    let e = env().await;
    let v = user(&e, "caseworker1", Role::Caseworker).await;
    let pair = e.auth.login("caseworker1", PASSWORD, addr(2)).await.unwrap();
    let me = e.auth.verify_access(&pair.access_token).unwrap();
    e.clock.advance(time::Duration::seconds(5));
    let new = "a much better passphrase";
    assert_eq!(code(e.auth.change_password(&me, v.account_id, None, new).await), "wrong_password");
    assert_eq!(code(e.auth.change_password(&me, v.account_id, Some("nope nope nope"), new).await), "wrong_password");
    assert_eq!(code(e.auth.change_password(&me, v.account_id, Some(PASSWORD), "short").await), "weak_password");
    e.auth.change_password(&me, v.account_id, Some(PASSWORD), new).await.unwrap();
    assert_eq!(code(e.auth.verify_access(&pair.access_token)), "invalid_token");
    assert_eq!(code(e.auth.refresh(&pair.refresh_token).await), "refresh_token_invalid");
    assert_eq!(code(e.auth.login("caseworker1", PASSWORD, addr(2)).await), "invalid_credentials");
    let pair = e.auth.login("caseworker1", new, addr(2)).await.unwrap();
    e.auth.verify_access(&pair.access_token).unwrap();
    // Not one's own and not an admin: refused. An admin may reset without the current one.
    let other = user(&e, "teacher1", Role::Teacher).await;
    assert_eq!(code(e.auth.change_password(&me, other.account_id, None, new).await), "not_permitted");
    e.auth.change_password(&e.admin, other.account_id, None, new).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Access tokens under attack

#[tokio::test]
async fn jwt_attacks_are_rejected() {
    let e = env().await;
    let v = user(&e, "mentor1", Role::Mentor).await;
    let good = e.auth.login("mentor1", PASSWORD, addr(2)).await.unwrap().access_token;
    e.auth.verify_access(&good).unwrap();
    let key = our_key(&e.dir);
    let c = claims(&e, v.account_id, "mentor");
    // Our key, our claims, signed by the test: accepted (the helpers are sound).
    e.auth.verify_access(&sign(&key, Algorithm::EdDSA, &c)).unwrap();

    let b64 = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    let alg_none = format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&c));
    assert_eq!(code(e.auth.verify_access(&alg_none)), "invalid_token", "alg none");

    let jwks = e.auth.jwks();
    let x = jwks["keys"][0]["x"].as_str().unwrap();
    let raw_public = URL_SAFE_NO_PAD.decode(x).unwrap();
    for secret in [&raw_public[..], x.as_bytes()] {
        let hs = sign(&EncodingKey::from_secret(secret), Algorithm::HS256, &c);
        assert_eq!(code(e.auth.verify_access(&hs)), "invalid_token", "HS256 with the public key");
    }

    let now = e.clock.now().unix_timestamp();
    let with = |k: &str, val: serde_json::Value| {
        let mut c = c.clone();
        c[k] = val;
        sign(&key, Algorithm::EdDSA, &c)
    };
    assert_eq!(code(e.auth.verify_access(&with("exp", json!(now - 31)))), "token_expired");
    e.auth.verify_access(&with("exp", json!(now - 10))).expect("within the leeway");
    assert_eq!(code(e.auth.verify_access(&with("nbf", json!(now + 120)))), "invalid_token", "nbf");
    assert_eq!(code(e.auth.verify_access(&with("iat", json!(now + 120)))), "invalid_token", "iat");
    assert_eq!(code(e.auth.verify_access(&with("iss", json!("evil")))), "invalid_token", "iss");
    assert_eq!(code(e.auth.verify_access(&with("aud", json!("other-api")))), "invalid_token", "aud");
    assert_eq!(code(e.auth.verify_access(&with("aud", json!(["other-api"])))), "invalid_token", "aud list");
    assert_eq!(code(e.auth.verify_access(&with("sub", json!("not-a-uuid")))), "invalid_token", "sub");
    assert_eq!(code(e.auth.verify_access(&with("role", json!("admin")))), "invalid_token", "role not held");
    assert_eq!(code(e.auth.verify_access(&with("sub", json!(uuid::Uuid::new_v4())))), "invalid_token");
    for missing in ["exp", "nbf", "aud", "iss", "sub"] {
        let mut c = c.clone();
        c.as_object_mut().unwrap().remove(missing);
        assert_eq!(code(e.auth.verify_access(&sign(&key, Algorithm::EdDSA, &c))), "invalid_token", "{missing}");
    }

    // Tampered payload: role flipped to admin, signature kept.
    let parts: Vec<&str> = good.split('.').collect();
    let mut payload: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["role"] = json!("admin");
    let tampered = format!("{}.{}.{}", parts[0], b64(&payload), parts[2]);
    assert_eq!(code(e.auth.verify_access(&tampered)), "invalid_token", "tampered");

    // A key of our shape that is not ours.
    let stranger = SigningKey::from_bytes(&[7; 32]);
    let stranger = EncodingKey::from_ed_der(stranger.to_pkcs8_der().unwrap().as_bytes());
    assert_eq!(code(e.auth.verify_access(&sign(&stranger, Algorithm::EdDSA, &c))), "invalid_token");

    // Oversized, even when properly signed.
    let mut big = c.clone();
    big["pad"] = json!("x".repeat(9000));
    assert_eq!(code(e.auth.verify_access(&sign(&key, Algorithm::EdDSA, &big))), "invalid_token", "oversized");
    assert_eq!(code(e.auth.verify_access(&"a".repeat(100_000))), "invalid_token");
    for garbage in ["", "Bearer", "a.b.c", "....", "eyJ.eyJ.sig", &format!("{good}x"), "\u{0}\u{1}"] {
        assert_eq!(code(e.auth.verify_access(garbage)), "invalid_token", "{garbage:?}");
    }

    // The real token expires with the clock, not with the wall.
    e.clock.advance(time::Duration::seconds(900 + 31));
    assert_eq!(code(e.auth.verify_access(&good)), "token_expired");
}

#[tokio::test]
async fn tokens_of_disabled_deleted_or_changed_accounts_are_dead() {
    let e = env().await;
    let v = user(&e, "mentor1", Role::Mentor).await;
    let pair = e.auth.login("mentor1", PASSWORD, addr(2)).await.unwrap();
    let before = e.log.head().0;

    // Role changed since issue.
    e.auth.change_role(&e.admin, v.account_id, Role::Teacher).await.unwrap();
    assert_eq!(code(e.auth.verify_access(&pair.access_token)), "invalid_token");
    let pair = e.auth.refresh(&pair.refresh_token).await.unwrap();
    assert_eq!(e.auth.verify_access(&pair.access_token).unwrap().role, Role::Teacher);

    // Disabled: refused, and re-enabling does not revive old tokens or sessions.
    e.clock.advance(time::Duration::seconds(2));
    e.auth.disable_account(&e.admin, v.account_id).await.unwrap();
    assert_eq!(code(e.auth.verify_access(&pair.access_token)), "account_disabled");
    assert_eq!(code(e.auth.login("mentor1", PASSWORD, addr(2)).await), "account_disabled");
    assert_eq!(code(e.auth.refresh(&pair.refresh_token).await), "refresh_token_invalid");
    e.auth.enable_account(&e.admin, v.account_id).await.unwrap();
    assert_eq!(code(e.auth.verify_access(&pair.access_token)), "invalid_token");
    let pair = e.auth.login("mentor1", PASSWORD, addr(2)).await.unwrap();
    e.auth.verify_access(&pair.access_token).unwrap();

    // Deleted: the tombstone is final.
    e.auth.delete_account(&e.admin, v.account_id).await.unwrap();
    assert_eq!(code(e.auth.verify_access(&pair.access_token)), "invalid_token");
    assert_eq!(code(e.auth.login("mentor1", PASSWORD, addr(2)).await), "invalid_credentials");
    assert_eq!(code(e.auth.refresh(&pair.refresh_token).await), "refresh_token_invalid");
    assert_eq!(code(e.auth.enable_account(&e.admin, v.account_id).await), "account_deleted");
    assert_eq!(code(e.auth.create_account(&e.admin, new_account("mentor1", Role::Mentor)).await), "username_taken");
    assert_eq!(e.auth.account(v.account_id).unwrap().status, AccountStatus::Deleted);

    // Refused verifications append nothing; the four changes above appended one event each.
    let after = e.log.head().0;
    assert_eq!(after - before, 4);
    for _ in 0..3 {
        let _ = e.auth.verify_access(&pair.access_token);
    }
    assert_eq!(e.log.head().0, after);
}

// ---------------------------------------------------------------------------------------------
// Rate limits

#[tokio::test]
async fn failures_per_username_are_limited_until_the_window_passes() {
    let e = env().await;
    user(&e, "mentor1", Role::Mentor).await;
    // A success clears the failures before it.
    for _ in 0..4 {
        let _ = e.auth.login("mentor1", "wrong password!!", addr(2)).await;
    }
    e.auth.login("mentor1", PASSWORD, addr(2)).await.unwrap();
    for i in 0..5 {
        let r = e.auth.login("mentor1", "wrong password!!", IpAddr::from([198, 51, 100, i])).await;
        assert_eq!(code(r), "invalid_credentials");
    }
    // Locked, even with the right password and from elsewhere.
    let err = e.auth.login("Mentor1", PASSWORD, addr(3)).await.unwrap_err();
    assert_eq!((err.code(), err.status()), ("rate_limited", 429));
    assert!(err.retry_after_secs().is_some_and(|s| s > 0 && s <= 900));
    // Other usernames are not affected.
    assert_eq!(code(e.auth.login("someone.else", PASSWORD, addr(3)).await), "invalid_credentials");
    e.clock.advance(time::Duration::minutes(15));
    e.auth.login("mentor1", PASSWORD, addr(3)).await.unwrap();
}

#[tokio::test]
async fn attempts_per_address_are_limited_until_the_window_passes() {
    let e = env().await;
    user(&e, "mentor1", Role::Mentor).await;
    // env() logged in once from addr(1); use another.
    for i in 0..30 {
        let _ = e.auth.login(&format!("guess{i}"), PASSWORD, addr(9)).await;
    }
    assert_eq!(code(e.auth.login("mentor1", PASSWORD, addr(9)).await), "rate_limited");
    e.auth.login("mentor1", PASSWORD, addr(10)).await.unwrap();
    // An IPv6 client is limited by its /64.
    let v6 = |last: u16| IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, last]);
    for i in 0..30 {
        let _ = e.auth.login("mentor1", PASSWORD, v6(i)).await;
    }
    assert_eq!(code(e.auth.login("mentor1", PASSWORD, v6(999)).await), "rate_limited");
    e.clock.advance(time::Duration::seconds(61));
    e.auth.login("mentor1", PASSWORD, addr(9)).await.unwrap();
    e.auth.login("mentor1", PASSWORD, v6(5)).await.unwrap();
}

#[test]
fn limiter_memory_is_bounded() {
    let w: ratelimit::Window<u32> = ratelimit::Window::new(3, 60, 100);
    let mut now = START;
    for k in 0..10_000 {
        w.hit(&k, now).unwrap();
        now += time::Duration::milliseconds(1);
    }
    assert!(w.len() <= 100, "{} keys kept", w.len());
    // The most recent keys survive eviction and are still counted.
    w.hit(&9_999, now).unwrap();
    w.hit(&9_999, now).unwrap();
    assert_eq!(w.hit(&9_999, now).unwrap_err().code(), "rate_limited");
}

// ---------------------------------------------------------------------------------------------
// Accounts

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usernames_stay_unique_under_concurrent_creation() {
    let e = env().await;
    // A second handle on the same log, as another process part would have.
    let other = open_auth(&e.dir, &e.log, &e.clock, "auth2", fast_config());
    for round in 0..5 {
        let name = format!("same.name{round}");
        let (a, b, c) = tokio::join!(
            e.auth.create_account(&e.admin, new_account(&name, Role::Teacher)),
            other.create_account(&e.admin, new_account(&name, Role::Mentor)),
            e.auth.create_account(&e.admin, new_account(&name, Role::Network)),
        );
        let results = [a, b, c];
        let won = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "round {round}: {results:?}");
        assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|e| e.code() == "username_taken"));
    }
    other.refresh_from_log().unwrap();
    e.auth.refresh_from_log().unwrap();
    assert_eq!(e.auth.list_accounts(), other.list_accounts());
    assert_eq!(e.auth.list_accounts().len(), 6);
    // The stream holds exactly one AccountCreated per account.
    let stream = e.log.read_stream(&StreamId::parse("accounts").unwrap(), 1, false, 100).unwrap();
    assert_eq!(stream.len(), 6);
    assert!(stream.iter().all(|env| env.event_type == "AccountCreated"));
}

#[tokio::test]
async fn only_admins_create_accounts_and_input_is_checked() {
    let e = env().await;
    let v = user(&e, "teacher1", Role::Teacher).await;
    let teacher = Principal { account_id: v.account_id, role: Role::Teacher, username: v.username.clone() };
    let err = e.auth.create_account(&teacher, new_account("x.y.z", Role::Admin)).await.unwrap_err();
    assert_eq!((err.code(), err.status()), ("not_permitted", 403));
    for bad in ["ab", "has space", "ünïcode", &"a".repeat(65), "semi;colon"] {
        assert_eq!(code(e.auth.create_account(&e.admin, new_account(bad, Role::Mentor)).await), "invalid_username");
    }
    let mut weak = new_account("weak.one", Role::Mentor);
    weak.password = "elevenchars".into();
    assert_eq!(code(e.auth.create_account(&e.admin, weak.clone()).await), "weak_password");
    weak.password = "x".repeat(257);
    assert_eq!(code(e.auth.create_account(&e.admin, weak).await), "weak_password");
    let mut blank = new_account("blank.name", Role::Mentor);
    blank.display_name = "   ".into();
    assert_eq!(code(e.auth.create_account(&e.admin, blank).await), "invalid_display_name");
    assert_eq!(code(e.auth.create_account(&e.admin, new_account("TEACHER1", Role::Mentor)).await), "username_taken");
    // Admins cannot lock themselves out.
    assert_eq!(code(e.auth.disable_account(&e.admin, e.admin.account_id).await), "not_permitted");
    assert_eq!(code(e.auth.delete_account(&e.admin, e.admin.account_id).await), "not_permitted");
    assert_eq!(code(e.auth.change_role(&e.admin, e.admin.account_id, Role::Mentor).await), "not_permitted");
    assert_eq!(code(e.auth.disable_account(&teacher, e.admin.account_id).await), "not_permitted");
    assert_eq!(code(e.auth.disable_account(&e.admin, AccountId(uuid::Uuid::new_v4())).await), "unknown_account");
    // Views and the list never carry the hash.
    let listed = serde_json::to_string(&e.auth.list_accounts()).unwrap();
    assert!(!listed.contains("argon2"), "{listed}");
    assert_eq!(e.auth.list_accounts().iter().map(|a| a.username.as_str()).collect::<Vec<_>>(), ["admin", "teacher1"]);
}

#[tokio::test]
async fn the_registry_is_rebuilt_from_the_log() {
    let e = env().await;
    let v = user(&e, "mentor1", Role::Mentor).await;
    e.auth.change_role(&e.admin, v.account_id, Role::Teacher).await.unwrap();
    e.auth.disable_account(&e.admin, v.account_id).await.unwrap();
    let reopened = open_auth(&e.dir, &e.log, &e.clock, "auth3", fast_config());
    assert_eq!(reopened.list_accounts(), e.auth.list_accounts());
    assert_eq!(reopened.account(v.account_id).unwrap().status, AccountStatus::Disabled);
    // Every stored event decodes; the hash is in the record but not in Debug output.
    let stream = e.log.read_stream(&StreamId::parse("accounts").unwrap(), 1, false, 100).unwrap();
    for env in &stream {
        let ev = AccountEvent::decode(&env.event_type, env.schema_version, &env.data).unwrap();
        assert!(!format!("{ev:?}").contains("argon2"));
        assert_eq!(env.actor.role, if env.stream_version == 1 { "system" } else { "admin" });
    }
    assert_eq!(
        AccountEvent::decode("AccountExploded", 1, b"{}").unwrap_err().to_string(),
        "unknown event type \"AccountExploded\""
    );
}

#[tokio::test]
async fn default_params_hash_and_verify() {
    let hasher = accounts::Hasher::new(PasswordHashParams::default()).unwrap();
    let hash = tokio::task::spawn_blocking(move || {
        let h = hasher.hash(PASSWORD).unwrap();
        assert!(hasher.verify(PASSWORD, Some(&h)));
        assert!(!hasher.verify("wrong password!!", Some(&h)));
        assert!(!hasher.verify(PASSWORD, None), "the dummy never matches");
        assert!(!hasher.verify(PASSWORD, Some("$argon2i$v=19$m=16,t=2,p=1$c29tZXNhbHQ$Zm9v")));
        assert!(!hasher.verify(PASSWORD, Some("not a hash")));
        h
    })
    .await
    .unwrap();
    assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
}

// ---------------------------------------------------------------------------------------------
// Bootstrap and keys

#[tokio::test]
async fn bootstrap_creates_the_admin_once() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let log = open_log(tmp.path(), &clock);
    let auth = open_auth(tmp.path(), &log, &clock, "auth", fast_config());
    let password = auth.bootstrap_admin().await.unwrap().unwrap();
    assert_eq!(password.len(), 24);
    let file = tmp.path().join(INITIAL_ADMIN_PASSWORD_FILE);
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim_end(), password);
    let pair = auth.login("admin", &password, addr(1)).await.unwrap();
    assert_eq!(auth.verify_access(&pair.access_token).unwrap().role, Role::Admin);
    assert_eq!(auth.bootstrap_admin().await.unwrap(), None);
    let again = open_auth(tmp.path(), &log, &clock, "auth2", fast_config());
    assert_eq!(again.bootstrap_admin().await.unwrap(), None);
    assert_eq!(auth.list_accounts().len(), 1);
    // Two racing bootstraps on a fresh log: one admin.
    let tmp = tempfile::tempdir().unwrap();
    let log = open_log(tmp.path(), &clock);
    let a = open_auth(tmp.path(), &log, &clock, "a", fast_config());
    let b = open_auth(tmp.path(), &log, &clock, "b", fast_config());
    let (ra, rb) = tokio::join!(a.bootstrap_admin(), b.bootstrap_admin());
    assert_eq!([&ra, &rb].iter().filter(|r| matches!(r, Ok(Some(_)))).count(), 1, "{ra:?} {rb:?}");
    a.refresh_from_log().unwrap();
    assert_eq!(a.list_accounts().len(), 1);
}

#[tokio::test]
async fn keys_persist_across_reopen_and_jwks_has_the_right_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let (token, jwks) = {
        let log = open_log(tmp.path(), &clock);
        let auth = open_auth(tmp.path(), &log, &clock, "auth", fast_config());
        let password = auth.bootstrap_admin().await.unwrap().unwrap();
        let pair = auth.login("admin", &password, addr(1)).await.unwrap();
        (pair, auth.jwks())
    };
    let keys = tmp.path().join("keys");
    assert_eq!(std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(keys.join("jwt-ed25519.pk8")).unwrap().permissions().mode() & 0o777, 0o600);

    let log = open_log(tmp.path(), &clock);
    let auth = open_auth(tmp.path(), &log, &clock, "auth", fast_config());
    assert_eq!(auth.jwks(), jwks);
    assert_eq!(auth.verify_access(&token.access_token).unwrap().username, "admin");
    auth.refresh(&token.refresh_token).await.expect("sessions survive a restart");

    let k = &jwks["keys"][0];
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert_eq!(
        (k["kty"].as_str(), k["crv"].as_str(), k["alg"].as_str(), k["use"].as_str()),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA"), Some("sig"))
    );
    let x = URL_SAFE_NO_PAD.decode(k["x"].as_str().unwrap()).unwrap();
    assert_eq!(x.len(), 32);
    assert_eq!(k["kid"].as_str().unwrap(), keys::kid_of(&x));
    assert_eq!(k["kid"].as_str().unwrap().len(), 16);
    let header = jsonwebtoken::decode_header(&token.access_token).unwrap();
    assert_eq!((header.alg, header.kid.as_deref()), (Algorithm::EdDSA, k["kid"].as_str()));
}

// ---------------------------------------------------------------------------------------------
// External identity providers

#[tokio::test]
async fn external_idp_tokens_map_to_accounts() {
    let idp_key = SigningKey::from_bytes(&[42; 32]);
    let idp_enc = EncodingKey::from_ed_der(idp_key.to_pkcs8_der().unwrap().as_bytes());
    let x = URL_SAFE_NO_PAD.encode(idp_key.verifying_key().to_bytes());
    let jwks = json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "idp-1", "use": "sig"},
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
    ]});
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD
            .encode(idp_key.verifying_key().to_public_key_der().unwrap().as_bytes())
    );
    let mut config = fast_config();
    config.external_idps = vec![
        ExternalIdp {
            issuer: "https://idp.example".into(),
            audience: "vivirk".into(),
            keys: ExternalKeys::Jwks(jwks.to_string()),
            algorithms: vec![ExternalAlgorithm::EdDSA, ExternalAlgorithm::RS256],
            subject: SubjectMapping::UsernameClaim("preferred_username".into()),
        },
        ExternalIdp {
            issuer: "https://pem.example".into(),
            audience: "vivirk".into(),
            keys: ExternalKeys::Pem(vec![pem]),
            algorithms: vec![ExternalAlgorithm::EdDSA],
            subject: SubjectMapping::AccountId,
        },
    ];
    let e = env_with(config).await;
    let v = user(&e, "mentor1", Role::Mentor).await;
    let now = e.clock.now().unix_timestamp();
    let c = json!({"iss": "https://idp.example", "aud": "vivirk", "sub": "idp-user-77",
                   "preferred_username": "Mentor1", "iat": now, "exp": now + 300});
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("idp-1".into());
    let token = jsonwebtoken::encode(&header, &c, &idp_enc).unwrap();
    let p = e.auth.verify_access(&token).unwrap();
    assert_eq!((p.account_id, p.role), (v.account_id, Role::Mentor), "the role is the account's");

    let with = |k: &str, val: serde_json::Value| {
        let mut c = c.clone();
        c[k] = val;
        jsonwebtoken::encode(&header, &c, &idp_enc).unwrap()
    };
    assert_eq!(code(e.auth.verify_access(&with("aud", json!("vivirk-api")))), "invalid_token");
    assert_eq!(code(e.auth.verify_access(&with("preferred_username", json!("nobody")))), "invalid_token");
    assert_eq!(code(e.auth.verify_access(&with("exp", json!(now - 60)))), "token_expired");
    // Our own key cannot speak for the provider, nor HMAC with its "oct" key.
    assert_eq!(code(e.auth.verify_access(&sign(&our_key(&e.dir), Algorithm::EdDSA, &c))), "invalid_token");
    let hs = sign(&EncodingKey::from_secret(b"secret"), Algorithm::HS256, &c);
    assert_eq!(code(e.auth.verify_access(&hs)), "invalid_token");
    // And the provider's key cannot speak for us.
    let ours = claims(&e, v.account_id, "mentor");
    assert_eq!(code(e.auth.verify_access(&sign(&idp_enc, Algorithm::EdDSA, &ours))), "invalid_token");

    // PEM-configured provider with `sub` = account id.
    let c2 = json!({"iss": "https://pem.example", "aud": "vivirk", "sub": v.account_id.to_string(), "exp": now + 300});
    let p = e.auth.verify_access(&sign(&idp_enc, Algorithm::EdDSA, &c2)).unwrap();
    assert_eq!(p.account_id, v.account_id);
    e.auth.disable_account(&e.admin, v.account_id).await.unwrap();
    assert_eq!(code(e.auth.verify_access(&sign(&idp_enc, Algorithm::EdDSA, &c2))), "account_disabled");
}

#[test]
fn bad_external_idp_config_is_refused() {
    let keys = keys::SigningKeys::from_signing_key(&SigningKey::from_bytes(&[1; 32])).unwrap();
    let idp = |keys: ExternalKeys, algs: Vec<ExternalAlgorithm>| ExternalIdp {
        issuer: "https://idp.example".into(),
        audience: "vivirk".into(),
        keys,
        algorithms: algs,
        subject: SubjectMapping::AccountId,
    };
    let short = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}]}).to_string();
    let hmac_only = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}).to_string();
    let ok = json!({"keys": [{"kty": "OKP", "crv": "Ed25519",
        "x": URL_SAFE_NO_PAD.encode(SigningKey::from_bytes(&[2; 32]).verifying_key().to_bytes())}]})
    .to_string();
    for bad in [
        idp(ExternalKeys::Jwks(short), vec![ExternalAlgorithm::EdDSA]),
        idp(ExternalKeys::Jwks(hmac_only), vec![ExternalAlgorithm::EdDSA]),
        idp(ExternalKeys::Jwks(ok.clone()), vec![ExternalAlgorithm::RS256]),
        idp(ExternalKeys::Jwks("not json".into()), vec![ExternalAlgorithm::EdDSA]),
        idp(
            ExternalKeys::Pem(vec!["-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----".into()]),
            vec![ExternalAlgorithm::EdDSA],
        ),
    ] {
        let r = tokens::TokenService::new(
            keys::SigningKeys::from_signing_key(&SigningKey::from_bytes(&[1; 32])).unwrap(),
            "vivirk".into(),
            "vivirk-api".into(),
            30,
            &[bad],
        );
        assert_eq!(r.err().map(|e| e.code()), Some("auth_misconfigured"));
    }
    tokens::TokenService::new(
        keys,
        "vivirk".into(),
        "vivirk-api".into(),
        30,
        &[idp(ExternalKeys::Jwks(ok), vec![ExternalAlgorithm::EdDSA])],
    )
    .expect("a valid provider");
}

#[test]
fn every_error_has_a_listed_code_and_status() {
    let all = [
        AuthError::InvalidCredentials,
        AuthError::RateLimited { retry_after_secs: 1 },
        AuthError::InvalidToken,
        AuthError::TokenExpired,
        AuthError::AccountDisabled,
        AuthError::RefreshTokenReused,
        AuthError::RefreshTokenInvalid,
        AuthError::RefreshTokenExpired,
        AuthError::UsernameTaken,
        AuthError::InvalidUsername,
        AuthError::InvalidDisplayName,
        AuthError::WeakPassword { min: 12, max: 256 },
        AuthError::WrongPassword,
        AuthError::NotPermitted,
        AuthError::UnknownAccount,
        AuthError::AccountDeleted,
        AuthError::Busy,
        AuthError::StorageUnavailable(String::new()),
        AuthError::Config(String::new()),
        AuthError::Internal(String::new()),
    ];
    assert_eq!(all.len(), AuthError::CODES.len());
    for e in &all {
        assert!(AuthError::CODES.contains(&(e.code(), e.status())), "{e:?}");
    }
}
