//! Exports, offline verification and checkpoints against a real log; the access store's
//! queries and sweep.

use std::sync::Arc;

use serde_json::Value;
use time::macros::datetime;
use uuid::Uuid;

use super::access::AccessStore;
use super::export::{CheckpointCheck, ExportFailure, Scope, verify_export, write_export};
use super::*;
use crate::clock::ManualClock;
use crate::log::{EventLog, ExpectedVersion, Hash, LogActor, LogConfig, Metadata, NewEvent, StreamId};

fn ev(n: u32) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "CheckInLogged".into(),
        schema_version: 1,
        occurred_at: datetime!(2026-11-27 07:30 UTC),
        actor: LogActor { account_id: Uuid::from_u128(7), role: "mentor".into() },
        metadata: Metadata::default(),
        data: format!(r#"{{"wellbeing":{},"note":"n{n}"}}"#, n % 5 + 1).into_bytes(),
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    log: EventLog,
    checkpoints: Checkpoints,
    course: Uuid,
}

/// Ten events over two courses (the first course gets the odd positions), then a checkpoint at
/// position 8, then two more events.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(datetime!(2026-11-27 08:00 UTC)));
    let mut config = LogConfig::new(dir.path());
    config.clock = clock.clone();
    let log = EventLog::open(config).unwrap().0;
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let append = |course: Uuid, n: u32| {
        log.append_blocking(&StreamId::for_entity("course", course), ExpectedVersion::Any, vec![ev(n)]).unwrap();
    };
    for n in 0..8 {
        append(if n % 2 == 0 { a } else { b }, n);
    }
    let store = AuditStore::open(dir.path()).unwrap();
    let key = CheckpointKey::load_or_generate(dir.path()).unwrap();
    let checkpoints = Checkpoints::new(key, store, log.clone(), clock);
    let cp = checkpoints.sign_if_moved().unwrap().unwrap();
    assert_eq!(cp.position, 8);
    assert_eq!(checkpoints.sign_if_moved().unwrap().unwrap(), cp, "the head did not move: no new checkpoint");
    append(a, 8);
    append(b, 9);
    Fixture { _dir: dir, log, checkpoints, course: a }
}

fn export(f: &Fixture, scope: Scope) -> Vec<String> {
    let mut out = Vec::new();
    let cp = f.checkpoints.latest().unwrap();
    let key = Some(f.checkpoints.public_key().clone());
    write_export(&f.log, scope, cp, key, datetime!(2026-11-27 09:00 UTC), &mut out).unwrap();
    String::from_utf8(out).unwrap().lines().map(str::to_owned).collect()
}

fn verify(lines: &[String]) -> Result<ExportReport, ExportFailure> {
    let mut text = lines.join("\n");
    text.push('\n');
    verify_export(text.as_bytes(), None)
}

#[test]
fn full_and_course_exports_verify_and_the_checkpoint_matches() {
    let f = fixture();
    let full = export(&f, Scope::Full);
    assert_eq!(full.len(), 11);
    let r = verify(&full).unwrap();
    assert_eq!(r.events, 10);
    assert_eq!(r.checkpoint, CheckpointCheck::Matched { position: 8 });
    assert_eq!(r.key, Some((f.checkpoints.public_key().kid.clone(), false)));

    let course = export(&f, Scope::Course { course_id: f.course });
    assert_eq!(course.len(), 6, "header + the course's five events");
    let r = verify(&course).unwrap();
    assert_eq!(r.events, 5);
    // Position 8 belongs to the other course.
    assert_eq!(r.checkpoint, CheckpointCheck::NotCovered { position: 8 });
    // The pinned key is the same key: fine.
    let text = course.join("\n") + "\n";
    let r = verify_export(text.as_bytes(), Some(f.checkpoints.public_key())).unwrap();
    assert_eq!(r.key, Some((f.checkpoints.public_key().kid.clone(), true)));
}

#[test]
fn a_tampered_line_is_named() {
    let f = fixture();
    let mut full = export(&f, Scope::Full);
    // Line 4 holds position 3: change its data, leave its hashes.
    full[3] = full[3].replace(r#""note":"n2""#, r#""note":"changed""#);
    let err = verify(&full).unwrap_err();
    assert_eq!((err.line, err.position), (4, Some(3)), "{err}");
    assert!(err.reason.contains("data_sha256"), "{err}");

    // The same in a one-course export (line 3 = the course's 2nd event, position 3).
    let mut course = export(&f, Scope::Course { course_id: f.course });
    course[2] = course[2].replace(r#""note":"n2""#, r#""note":"changed""#);
    let err = verify(&course).unwrap_err();
    assert_eq!((err.line, err.position), (3, Some(3)), "{err}");

    // A changed recorded time without a recomputed hash.
    let mut course = export(&f, Scope::Course { course_id: f.course });
    course[4] = course[4].replace(r#""recorded_at":"2026-11-27T08:00:00Z""#, r#""recorded_at":"2026-11-27T08:00:01Z""#);
    let err = verify(&course).unwrap_err();
    assert_eq!(err.line, 5, "{err}");
    assert!(err.reason.contains("hash does not match"), "{err}");
}

#[test]
fn a_truncated_export_is_named() {
    let f = fixture();
    let full = export(&f, Scope::Full);
    // Whole lines dropped: the header's count says so, at the first missing line.
    let err = verify(&full[..9]).unwrap_err();
    assert_eq!((err.line, err.position), (10, None), "{err}");
    assert!(err.reason.contains("truncated"), "{err}");
    // Cut in the middle of a line.
    let mut text = full.join("\n");
    text.truncate(text.len() - 40);
    let err = verify_export(text.as_bytes(), None).unwrap_err();
    assert_eq!(err.line, 11, "{err}");
    // Cut right after a closing brace, newline lost: still caught.
    let text = full.join("\n");
    let err = verify_export(text.as_bytes(), None).unwrap_err();
    assert_eq!(err.line, 11, "{err}");
    assert!(err.reason.contains("cut off"), "{err}");
    // A full export whose header was also edited to hide the cut: the signed checkpoint at
    // position 8 still proves it.
    let mut short = full[..7].to_vec();
    let mut h: Value = serde_json::from_str(&short[0]).unwrap();
    h["events"] = 6.into();
    short[0] = h.to_string();
    let err = verify(&short).unwrap_err();
    assert_eq!(err.line, 8, "{err}");
    assert!(err.reason.contains("before the signed checkpoint at 8"), "{err}");
}

/// Someone with write access changes position 3 and recomputes every hash after it, in both
/// chains. The chains verify; only the signed checkpoint at position 8 (line 9) catches it.
#[test]
fn a_rewrite_before_the_checkpoint_is_caught_only_by_the_checkpoint() {
    let f = fixture();
    let full = export(&f, Scope::Full);
    let mut prev = crate::log::ZERO_HASH;
    let mut streams: std::collections::HashMap<String, Hash> = Default::default();
    let mut rewritten = vec![full[0].clone()];
    for line in &full[1..] {
        let mut v: Value = serde_json::from_str(line).unwrap();
        if v["position"] == 3 {
            v["data"] = serde_json::json!({"wellbeing": 5, "note": "all fine"});
        }
        // Re-serialising reorders the data's keys: recompute every digest, as a forger would.
        v["data_sha256"] = Value::String(Hash::of(v["data"].to_string().as_bytes()).to_hex());
        let stream = v["stream"].as_str().unwrap().to_owned();
        let sprev = streams.get(&stream).copied().unwrap_or(crate::log::ZERO_HASH);
        v["prev_hash"] = Value::String(prev.to_hex());
        v["stream_prev_hash"] = Value::String(sprev.to_hex());
        let canonical =
            serde_json::from_value::<crate::log::OwnedEnvelopeJson>(v.clone()).unwrap().canonical().unwrap();
        prev = Hash::chain(&prev, &canonical);
        let sh = Hash::chain(&sprev, &canonical);
        streams.insert(stream, sh);
        v["hash"] = Value::String(prev.to_hex());
        v["stream_hash"] = Value::String(sh.to_hex());
        rewritten.push(v.to_string());
    }
    // Without the checkpoint, the rewrite is perfectly consistent.
    let mut no_cp = rewritten.clone();
    let mut h: Value = serde_json::from_str(&no_cp[0]).unwrap();
    h["checkpoint"] = Value::Null;
    no_cp[0] = h.to_string();
    assert!(verify(&no_cp).is_ok(), "the chains alone cannot see a full rewrite");
    // With it, the line of the checkpoint's position is named.
    let err = verify(&rewritten).unwrap_err();
    assert_eq!((err.line, err.position), (9, Some(8)), "{err}");
    assert!(err.reason.contains("signed checkpoint"), "{err}");
}

#[test]
fn a_forged_checkpoint_is_refused_on_the_header_line() {
    let f = fixture();
    let full = export(&f, Scope::Full);
    // A changed signature.
    let mut h: Value = serde_json::from_str(&full[0]).unwrap();
    let sig = h["checkpoint"]["signature"].as_str().unwrap().to_owned();
    let flipped = match sig.strip_prefix('A') {
        Some(rest) => format!("B{rest}"),
        None => format!("A{}", &sig[1..]),
    };
    h["checkpoint"]["signature"] = Value::String(flipped);
    let mut forged = full.clone();
    forged[0] = h.to_string();
    let err = verify(&forged).unwrap_err();
    assert_eq!((err.line, err.position), (1, None), "{err}");
    assert!(err.reason.contains("does not verify"), "{err}");
    // A signed position or hash moved under a valid signature.
    let mut h: Value = serde_json::from_str(&full[0]).unwrap();
    h["checkpoint"]["position"] = 7.into();
    forged[0] = h.to_string();
    assert_eq!(verify(&forged).unwrap_err().line, 1);
    // Re-signed with the forger's own key, shipped in the file: consistent with itself, but not
    // with the pinned, published key.
    let other = CheckpointKey::from_signing_key(ed25519_dalek::SigningKey::from_bytes(&[7; 32]));
    let mut h: Value = serde_json::from_str(&full[0]).unwrap();
    let cp: SignedCheckpoint = serde_json::from_value(h["checkpoint"].clone()).unwrap();
    h["checkpoint"] = serde_json::to_value(other.sign(cp.position, cp.hash, cp.signed_at)).unwrap();
    h["public_key"] = serde_json::to_value(other.public()).unwrap();
    forged[0] = h.to_string();
    let text = forged.join("\n") + "\n";
    assert!(verify_export(text.as_bytes(), None).is_ok(), "self-consistent with the key it carries");
    let err = verify_export(text.as_bytes(), Some(f.checkpoints.public_key())).unwrap_err();
    assert_eq!(err.line, 1, "{err}");
    assert!(err.reason.contains("pinned key"), "{err}");
}

#[test]
fn the_checkpoint_key_is_stored_0600_and_reloaded() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let k1 = CheckpointKey::load_or_generate(dir.path()).unwrap();
    let mode = std::fs::metadata(CheckpointKey::path(dir.path())).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let k2 = CheckpointKey::load_or_generate(dir.path()).unwrap();
    assert_eq!(k1.public(), k2.public());
    assert!(k1.public().verifying_key().is_ok());
}

fn entry(at: time::OffsetDateTime, course: Option<Uuid>, account: u128) -> AccessEntry {
    AccessEntry {
        at,
        account_id: Some(Uuid::from_u128(account)),
        role: "caseworker".into(),
        course_id: course,
        kind: AccessKind::Read,
        resource: "GET /v1/courses/{id}".into(),
        criteria: None,
        purpose: Some("case review".into()),
    }
}

#[test]
fn access_store_pages_filters_and_sweeps() {
    let dir = tempfile::tempdir().unwrap();
    let store = AccessStore::new(AuditStore::open(dir.path()).unwrap()).unwrap();
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let t0 = datetime!(2026-01-01 00:00 UTC);
    let entries: Vec<_> = (0..10)
        .map(|i| entry(t0 + time::Duration::days(i * 30), Some(if i % 2 == 0 { a } else { b }), (i % 3) as u128))
        .chain([entry(t0, None, 9)])
        .collect();
    store.write(&entries).unwrap();
    let all = store.query(&AccessFilter { limit: 100, ..Default::default() }).unwrap();
    assert_eq!(all.items.len(), 11);
    assert!(all.items.windows(2).all(|w| w[0].id < w[1].id), "oldest first");
    // By course, paged by 2.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.query(&AccessFilter { course: Some(a), limit: 2, cursor, ..Default::default() }).unwrap();
        seen.extend(page.items.iter().map(|s| s.entry.at));
        match page.next_cursor {
            Some(c) => cursor = access::parse_cursor(&c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    let by_account = store.query(&AccessFilter { account: Some(Uuid::from_u128(1)), limit: 100, ..Default::default() });
    assert_eq!(by_account.unwrap().items.len(), 3);
    let window = store
        .query(&AccessFilter {
            from: Some(t0 + time::Duration::days(30)),
            to: Some(t0 + time::Duration::days(90)),
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(window.items.len(), 2);
    // Sweep everything before day 100: entries at days 0 (two), 30, 60, 90.
    assert_eq!(store.sweep_before(t0 + time::Duration::days(100)).unwrap(), 5);
    let left = store.query(&AccessFilter { course: Some(a), limit: 100, ..Default::default() }).unwrap();
    assert_eq!(left.items.len(), 3, "the per-course index follows the sweep");
    assert_eq!(store.query(&AccessFilter { limit: 100, ..Default::default() }).unwrap().items.len(), 6);
}

/// Entries an older version kept in the audit sled store (`at ‖ seq` → JSON, plus the
/// per-course index) are moved into the files on the first open, oldest first, and the sled
/// trees emptied; a second open moves nothing again.
#[test]
fn entries_in_the_old_sled_store_are_moved_to_the_files_once() {
    let dir = tempfile::tempdir().unwrap();
    let audit = AuditStore::open(dir.path()).unwrap();
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let t0 = datetime!(2026-01-01 00:00 UTC);
    for (i, (at, course)) in
        [(t0 + time::Duration::days(2), a), (t0, b), (t0 + time::Duration::days(1), a)].into_iter().enumerate()
    {
        let mut k = u64::try_from(at.unix_timestamp_nanos()).unwrap().to_be_bytes().to_vec();
        k.extend_from_slice(&(i as u64).to_be_bytes());
        audit.access.insert(&k, serde_json::to_vec(&entry(at, Some(course), 1)).unwrap()).unwrap();
        let mut ck = course.as_bytes().to_vec();
        ck.extend_from_slice(&k);
        audit.access_by_course.insert(ck, &[][..]).unwrap();
    }
    let store = AccessStore::new(audit.clone()).unwrap();
    let all = store.query(&AccessFilter { limit: 10, ..Default::default() }).unwrap().items;
    let times: Vec<_> = all.iter().map(|s| s.entry.at).collect();
    assert_eq!(times, vec![t0, t0 + time::Duration::days(1), t0 + time::Duration::days(2)], "oldest first");
    let of_a = store.query(&AccessFilter { course: Some(a), limit: 10, ..Default::default() }).unwrap().items;
    assert_eq!(of_a.len(), 2);
    assert!(audit.access.is_empty() && audit.access_by_course.is_empty(), "sled no longer holds them");
    drop(store);
    let again = AccessStore::new(audit).unwrap();
    assert_eq!(again.query(&AccessFilter { limit: 10, ..Default::default() }).unwrap().items.len(), 3, "moved once");
}
