//! The journey of the API issue, through HTTP: accounts, a course, a mentor's check-in retried
//! with the same Idempotency-Key, the caseworker's reading, another mentor's 404, an auditor's
//! verification.

use serde_json::json;

use super::helpers::{TestApp, spawn_app};

/// A course with a caseworker, a young person and a mentor on a placement.
pub struct World {
    pub app: TestApp,
    pub admin: String,
    pub caseworker: (uuid::Uuid, String),
    pub young: (uuid::Uuid, String),
    pub mentor: (uuid::Uuid, String),
    pub company: String,
    pub course: String,
    pub placement: String,
}

pub fn world() -> World {
    let app = spawn_app();
    let admin = app.admin_token();
    let caseworker = app.account(&admin, "cw.hansen", "caseworker");
    let young = app.account(&admin, "young.one", "young_person");
    let mentor = app.account(&admin, "mentor.kim", "mentor");
    let r = app.post(
        &caseworker.1,
        "/v1/companies",
        &json!({"name": "Brugsen Nord", "industry": "retail", "kind": "ordinary", "cvr": null}),
    );
    assert_eq!(r.status, 201, "{:?}", r.body);
    let company_id = r.body["id"].as_str().expect("the new company's id").to_owned();
    let r = app.post(
        &caseworker.1,
        "/v1/courses",
        &json!({
            "young_person": young.0, "programme": "ressourceforloeb", "referring_caseworker": caseworker.0,
            "municipality": "Aarhus Kommune", "start_date": "2025-09-01"
        }),
    );
    assert_eq!(r.status, 201, "open: {:?}", r.body);
    let course = r.body["id"].as_str().expect("the new course's id").to_owned();
    let r = app.post(
        &caseworker.1,
        &format!("/v1/courses/{course}/participants"),
        &json!({"account_id": mentor.0, "role": "mentor", "company_id": company_id, "relation": null}),
    );
    assert_eq!(r.status, 201, "assign: {:?}", r.body);
    let r = app.post(
        &caseworker.1,
        &format!("/v1/courses/{course}/placements"),
        &json!({
            "kind": "practice_arena", "company_id": company_id, "workplace": "ordinary", "mentor": mentor.0,
            "hours_per_week": 12, "tasks": [{"task": "stocking shelves", "goal_ids": []}], "start_date": "2026-11-02"
        }),
    );
    assert_eq!(r.status, 201, "placement: {:?}", r.body);
    let placement = r.body["id"].as_str().expect("the new placement's id").to_owned();
    World { app, admin, caseworker, young, mentor, company: company_id, course, placement }
}

#[test]
fn the_journey() {
    let w = world();
    let app = &w.app;
    let check_in = json!({
        "placement_id": w.placement, "attendance": "present", "wellbeing": 4,
        "tasks_done": ["stocked shelf 4"], "concerns": null, "next_step": "try the till on Thursday"
    });
    let path = format!("/v1/courses/{}/check-ins", w.course);
    let head = app.head();
    let first = app.post_with(&w.mentor.1, &path, &check_in, &[("idempotency-key", "phone-1-checkin-1")]);
    assert_eq!(first.status, 201, "{:?}", first.body);
    let again = app.post_with(&w.mentor.1, &path, &check_in, &[("idempotency-key", "phone-1-checkin-1")]);
    assert_eq!(again.status, 201);
    assert_eq!(again.body, first.body, "the retry answers with the original response");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(app.head(), head + 1, "exactly one event for two POSTs");
    // The same key with another body is refused and appends nothing.
    let mut other = check_in.clone();
    other["wellbeing"] = json!(2);
    let r = app.post_with(&w.mentor.1, &path, &other, &[("idempotency-key", "phone-1-checkin-1")]);
    assert_eq!((r.status, r.code()), (422, "idempotency_key_reused"));
    assert_eq!(app.head(), head + 1);

    // The caseworker reads the contact history and the contact frequency.
    let contact = json!({"with": [w.young.0], "channel": "phone", "direction": "to_young_person", "outreach": true,
        "individual": true, "duration_minutes": 20, "summary": "weekly call"});
    let r = app.post(&w.caseworker.1, &format!("/v1/courses/{}/contacts", w.course), &contact);
    assert_eq!(r.status, 201, "{:?}", r.body);
    let history = app.get(&w.caseworker.1, &format!("/v1/courses/{}/contacts?limit=50", w.course));
    assert_eq!(history.status, 200, "{:?}", history.body);
    let kinds: Vec<&str> =
        history.body["items"].as_array().unwrap().iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["contact", "check_in"], "newest first, one check-in despite the retry");
    assert_eq!(history.body["items"][1]["wellbeing"], 4);
    let etag = history.header("etag").expect("ETag on GET").to_owned();
    let again = app.get_with(
        &w.caseworker.1,
        &format!("/v1/courses/{}/contacts?limit=50", w.course),
        &[("if-none-match", &etag)],
    );
    assert_eq!(again.status, 304);
    let freq = app.get(&w.caseworker.1, &format!("/v1/courses/{}/contact-frequency", w.course));
    assert_eq!(freq.status, 200, "{:?}", freq.body);
    let status = app.get(&w.caseworker.1, &format!("/v1/courses/{}", w.course));
    assert_eq!(status.status, 200, "{:?}", status.body);
    let companies = app.get(&w.caseworker.1, "/v1/companies");
    assert_eq!(companies.body.as_array().map(Vec::len), Some(1), "{:?}", companies.body);
    assert_eq!(companies.body[0]["company_id"], json!(w.company));
    // Optimistic concurrency: a write with a stale If-Match is refused and appends nothing.
    let before = app.head();
    let r = app.post_with(
        &w.caseworker.1,
        &format!("/v1/courses/{}/contacts", w.course),
        &contact,
        &[("if-match", "\"1\"")],
    );
    assert_eq!((r.status, r.code()), (412, "precondition_failed"), "{:?}", r.body);
    assert!(r.body["current_version"].as_u64().unwrap() > 1);
    assert_eq!(app.head(), before);
    let current = r.body["current_version"].as_u64().unwrap().to_string();
    let r = app.post_with(
        &w.caseworker.1,
        &format!("/v1/courses/{}/contacts", w.course),
        &contact,
        &[("if-match", &format!("\"{current}\""))],
    );
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.header("etag"), Some(format!("\"{}\"", current.parse::<u64>().unwrap() + 1).as_str()));
    // The history changed, so the tag the caseworker holds no longer matches.
    let changed = app.get_with(
        &w.caseworker.1,
        &format!("/v1/courses/{}/contacts?limit=50", w.course),
        &[("if-none-match", &etag)],
    );
    assert_eq!(changed.status, 200);
    assert_eq!(changed.body["items"].as_array().map(Vec::len), Some(3), "{:?}", changed.body);
    assert_ne!(changed.header("etag"), Some(etag.as_str()));
    // Another query of the same course is another representation, with its own tag.
    let short = app.get(&w.caseworker.1, &format!("/v1/courses/{}/contacts?limit=1", w.course));
    assert_ne!(short.header("etag"), changed.header("etag"));
    let mine = app.get(&w.mentor.1, "/v1/me/courses");
    assert_eq!(mine.body.as_array().map(Vec::len), Some(1), "{:?}", mine.body);

    // Another course's mentor cannot see this course: 404, exactly as for no course at all.
    let outsider = app.account(&w.admin, "mentor.other", "mentor");
    let r = app.post(&outsider.1, &path, &check_in);
    assert_eq!((r.status, r.code()), (404, "not_found"));
    let r = app.get(&outsider.1, &format!("/v1/courses/{}/events", w.course));
    assert_eq!(r.status, 404);
    let r = app.get(&outsider.1, &format!("/v1/courses/{}/events", uuid::Uuid::new_v4()));
    assert_eq!(r.status, 404);

    // An auditor reads the raw record and verifies it.
    let auditor = app.account(&w.admin, "auditor.ane", "auditor");
    let events = app.get(&auditor.1, &format!("/v1/courses/{}/events", w.course));
    assert_eq!(events.status, 200);
    let types: Vec<&str> = events.body.as_array().unwrap().iter().map(|e| e["event_type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["CourseOpened", "ParticipantAssigned", "PlacementStarted", "CheckInLogged", "ContactLogged", "ContactLogged"]
    );
    let v = app.get(&auditor.1, &format!("/v1/courses/{}/verify", w.course));
    assert_eq!(v.status, 200);
    assert_eq!(v.body["ok"], true, "{:?}", v.body);
    assert_eq!(v.body["events"], 6);
    // Auditors read; they do not write.
    let r = app.post(&auditor.1, &path, &check_in);
    assert_eq!((r.status, r.code()), (403, "forbidden"));
}
