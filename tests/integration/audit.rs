//! Audit through HTTP: every course read leaves exactly one access entry of the right kind
//! with its purpose; cross-course searches and record downloads need a purpose; the record
//! verifies offline against the published key; the young person sees dates and purposes, not
//! who; entries past retention are swept.

use serde_json::Value;

use super::api_journey::world;

const P: (&str, &str) = ("x-purpose", "quarterly case review 2026-Q4");

#[test]
fn reads_are_logged_once_with_kind_and_purpose_and_swept_after_retention() {
    let w = world();
    let app = &w.app;
    let c = &w.course;
    let cw = &w.caseworker.1;
    let auditor = app.account(&w.admin, "auditor.ane", "auditor");

    // Each course read path, by the caseworker, with a purpose.
    let reads: [(String, &str); 7] = [
        (format!("/v1/courses/{c}"), "read"),
        (format!("/v1/courses/{c}/contacts?channel=phone&limit=10"), "search"),
        (format!("/v1/courses/{c}/contact-frequency"), "read"),
        (format!("/v1/courses/{c}/actions"), "read"),
        (format!("/v1/courses/{c}/state"), "read"),
        (format!("/v1/courses/{c}/events"), "read"),
        (format!("/v1/courses/{c}/verify"), "read"),
    ];
    for (path, _) in &reads {
        let r = app.get_with(cw, path, &[P]);
        assert_eq!(r.status, 200, "{path}: {:?}", r.body);
    }
    // The young person reading their own course leaves no entry (documented decision).
    assert_eq!(app.get(&w.young.1, &format!("/v1/courses/{c}")).status, 200);
    // A refused read leaves none either.
    assert_eq!(app.get(&w.mentor.1, &format!("/v1/courses/{c}/events")).status, 403);

    // Searches across courses and record downloads need a purpose.
    let r = app.get(&auditor.1, "/v1/courses");
    assert_eq!((r.status, r.code()), (428, "purpose_required"));
    let r = app.get(&auditor.1, "/v1/sync?after=0");
    assert_eq!((r.status, r.code()), (428, "purpose_required"));
    let r = app.get(&auditor.1, &format!("/v1/courses/{c}/record"));
    assert_eq!((r.status, r.code()), (428, "purpose_required"));
    assert_eq!(app.get_with(&auditor.1, "/v1/courses?compliance=overdue", &[P]).status, 200);
    assert_eq!(app.get_with(&auditor.1, "/v1/sync?after=0", &[P]).status, 200);
    // A caseworker's own list is not a search across courses: no purpose needed, no entry.
    assert_eq!(app.get(cw, "/v1/courses").status, 200);

    // The record: JSON lines, verifiable offline against the published key.
    let record = app.get_with(&auditor.1, &format!("/v1/courses/{c}/record"), &[P]);
    assert_eq!(record.status, 200, "{:?}", record.body);
    assert_eq!(record.header("content-type"), Some("application/x-ndjson"));
    let text = record.body.as_str().expect("ndjson text").to_owned();
    let key = app.get(&auditor.1, "/.well-known/vivirk-checkpoint-key");
    assert_eq!(key.status, 200);
    let key: vivirk::audit::PublicKey = serde_json::from_value(key.body).unwrap();
    // Its private half: generated on first start, its own file, 0600.
    let key_file = vivirk::audit::CheckpointKey::path(app.dir.path());
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key_file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let report = vivirk::audit::export::verify_export(text.as_bytes(), Some(&key)).expect("the record verifies");
    assert_eq!(report.events, 3, "opened, assigned, placement");
    // The checkpoint is the log's head; the course's last event may well be it.
    let cp = app.get(&auditor.1, "/v1/checkpoints/latest");
    assert_eq!(cp.status, 200, "{:?}", cp.body);
    assert_eq!(cp.body["position"].as_u64(), Some(app.head()));
    let header: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(header["checkpoint"], cp.body);
    assert_eq!(app.get(cw, "/v1/checkpoints/latest").status, 200, "read_record includes caseworkers");
    assert_eq!(app.get(&w.mentor.1, "/v1/checkpoints/latest").status, 403);
    // Downloaded for a replay: recorded as such.
    let r = app.get_with(&auditor.1, &format!("/v1/courses/{c}/record?kind=replay"), &[P]);
    assert_eq!(r.status, 200);

    // The auditor's view of this course: one entry per read path, in order, with the purpose.
    let log = app.get(&auditor.1, &format!("/v1/access-log?course={c}"));
    assert_eq!(log.status, 200, "{:?}", log.body);
    let items = log.body["items"].as_array().unwrap().clone();
    let got: Vec<(&str, &str)> =
        items.iter().map(|i| (i["resource"].as_str().unwrap(), i["kind"].as_str().unwrap())).collect();
    assert_eq!(
        got,
        [
            ("GET /v1/courses/{id}", "read"),
            ("GET /v1/courses/{id}/contacts", "search"),
            ("GET /v1/courses/{id}/contact-frequency", "read"),
            ("GET /v1/courses/{id}/actions", "read"),
            ("GET /v1/courses/{id}/state", "read"),
            ("GET /v1/courses/{id}/events", "read"),
            ("GET /v1/courses/{id}/verify", "read"),
            ("GET /v1/courses/{id}/record", "export"),
            ("GET /v1/courses/{id}/record", "replay"),
        ]
    );
    assert_eq!(items.len(), reads.len() + 2);
    assert!(items.iter().all(|i| i["purpose"] == P.1));
    assert!(items[..7].iter().all(|i| i["account_id"] == w.caseworker.0.to_string() && i["role"] == "caseworker"));
    assert_eq!(items[1]["criteria"], serde_json::json!({"channel": "phone"}), "criteria without paging");
    // The cross-course searches have no course; find them by account.
    let mine = app.get(&auditor.1, &format!("/v1/access-log?account={}", auditor.0));
    let kinds: Vec<(&str, &str, Value)> = mine.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["resource"].as_str().unwrap(), i["kind"].as_str().unwrap(), i["course_id"].clone()))
        .collect();
    assert_eq!(kinds[0], ("GET /v1/courses", "search", Value::Null));
    assert_eq!(kinds[1], ("GET /v1/sync", "search", Value::Null));
    assert_eq!(mine.body["items"][0]["criteria"], serde_json::json!({"compliance": "overdue"}));
    // Paging.
    let page = app.get(&auditor.1, &format!("/v1/access-log?course={c}&limit=4"));
    assert_eq!(page.body["items"].as_array().unwrap().len(), 4);
    let next = page.body["next_cursor"].as_str().unwrap();
    let page2 = app.get(&auditor.1, &format!("/v1/access-log?course={c}&limit=4&cursor={next}"));
    assert_eq!(page2.body["items"][0], items[4]);
    // Only auditors read it.
    assert_eq!(app.get(cw, "/v1/access-log").status, 403);

    // The young person: dates, kinds and purposes of look-ups of their course; nobody's identity.
    let me = app.get(&w.young.1, "/v1/me/access-log");
    assert_eq!(me.status, 200, "{:?}", me.body);
    let my = me.body["items"].as_array().unwrap();
    assert_eq!(my.len(), items.len());
    assert_eq!(my[0], serde_json::json!({"date": "2026-11-27", "course_id": c, "kind": "read", "purpose": P.1}));
    let text = me.body.to_string();
    assert!(!text.contains(&w.caseworker.0.to_string()) && !text.contains("caseworker"), "{text}");
    assert_eq!(app.get(cw, "/v1/me/access-log").status, 403);

    // Retention: 183 days on, the cleaner deletes them all (admins may run it now).
    assert_eq!(app.post(&auditor.1, "/v1/access-log/sweep", &Value::Null).status, 403);
    app.clock.advance(time::Duration::days(182));
    // Tokens live minutes: sign in again on the new day.
    let admin = app.admin_token();
    let r = app.post(&admin, "/v1/access-log/sweep", &Value::Null);
    assert_eq!((r.status, r.body["deleted"].as_u64()), (200, Some(0)), "{:?}", r.body);
    // A read today stays; everything from 183+ days ago goes.
    app.clock.advance(time::Duration::days(2));
    let admin = app.admin_token();
    let auditor2 = app.account(&admin, "auditor.bo", "auditor");
    assert_eq!(app.get_with(&auditor2.1, &format!("/v1/courses/{c}"), &[P]).status, 200);
    // A POST without a body.
    let r = app.post_raw(&admin, "/v1/access-log/sweep", "application/json", Vec::new());
    assert_eq!(r.status, 200);
    assert_eq!(r.body["deleted"].as_u64(), Some(items.len() as u64 + 2));
    let left = app.get(&auditor2.1, "/v1/access-log");
    let left = left.body["items"].as_array().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["account_id"], auditor2.0.to_string());
}

#[test]
fn a_malformed_purpose_is_refused() {
    let w = world();
    let long = "x".repeat(201);
    let r = w.app.get_with(&w.caseworker.1, &format!("/v1/courses/{}", w.course), &[("x-purpose", &long)]);
    assert_eq!((r.status, r.code()), (400, "invalid_parameter"));
}
