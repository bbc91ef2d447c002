//! Each write endpoint through HTTP: a success, and a refusal with its code. Then the hostile
//! input catalogue against every POST: each answer is a 4xx problem with a stable code, and the
//! log head does not move.

use serde_json::json;

use super::api_journey::world;
use super::helpers::Resp;

fn created(r: &Resp, what: &str) -> String {
    assert_eq!(r.status, 201, "{what}: {:?}", r.body);
    r.body["id"].as_str().map(str::to_owned).unwrap_or_else(|| r.body["event_id"].as_str().unwrap().to_owned())
}

fn refused(r: &Resp, status: u16, code: &str, what: &str) {
    assert_eq!((r.status, r.code()), (status, code), "{what}: {:?}", r.body);
    assert_eq!(r.header("content-type"), Some("application/problem+json"), "{what}");
}

#[test]
fn every_write_endpoint_succeeds_and_refuses() {
    let w = world();
    let app = &w.app;
    let cw = &w.caseworker.1;
    let c = &w.course;
    let p = |s: &str| format!("/v1/courses/{c}{s}");
    let yp = w.young.0;
    let (teacher_id, teacher) = app.account(&w.admin, "teacher.ib", "teacher");
    let r = app.post(
        cw,
        &p("/participants"),
        &json!({"account_id": teacher_id, "role": "teacher", "relation": null, "company_id": null}),
    );
    created(&r, "assign teacher");
    refused(
        &app.post(
            cw,
            &p("/participants"),
            &json!({"account_id": teacher_id, "role": "teacher", "relation": null, "company_id": null}),
        ),
        409,
        "already_assigned",
        "assign twice",
    );

    // Goals.
    let goal = created(
        &app.post(
            &teacher,
            &p("/goals"),
            &json!({"life_domain": "work_life", "title": "Arrive on time", "description": null}),
        ),
        "goal",
    );
    let sub = app.post(
        &teacher,
        &p(&format!("/goals/{goal}/sub-goals")),
        &json!({"title": "Two alarms", "description": null}),
    );
    created(&sub, "sub-goal");
    refused(
        &app.post(
            &teacher,
            &p(&format!("/goals/{}/sub-goals", uuid::Uuid::new_v4())),
            &json!({"title": "x", "description": null}),
        ),
        422,
        "unknown_goal",
        "sub-goal of unknown goal",
    );
    created(
        &app.post(
            &teacher,
            &p(&format!("/goals/{goal}/progress")),
            &json!({"percent": 40, "note": "three of five days"}),
        ),
        "progress",
    );
    let goal2 = created(
        &app.post(
            &teacher,
            &p("/goals"),
            &json!({"life_domain": "leisure_life", "title": "Football", "description": null}),
        ),
        "goal2",
    );
    created(&app.post(&teacher, &p(&format!("/goals/{goal2}/drop")), &json!({"reason": "changed their mind"})), "drop");
    refused(
        &app.post(&teacher, &p(&format!("/goals/{goal2}/achieve")), &json!({"note": null})),
        409,
        "goal_not_open",
        "achieve a dropped goal",
    );
    created(&app.post(&teacher, &p(&format!("/goals/{goal}/achieve")), &json!({"note": null})), "achieve");

    // Actions.
    let action = |due: &str| json!({"what": "Apply for a bus card", "owner": w.caseworker.0, "due": due, "method": null, "goal_id": null, "agreed_by": [yp]});
    refused(&app.post(cw, &p("/actions"), &action("2020-01-01")), 422, "due_before_agreement", "due in the past");
    let a1 = created(&app.post(cw, &p("/actions"), &action("2026-12-15")), "agree");
    created(
        &app.post(cw, &p(&format!("/actions/{a1}/reschedule")), &json!({"due": "2026-12-20", "reason": "holiday"})),
        "reschedule",
    );
    created(&app.post(cw, &p(&format!("/actions/{a1}/complete")), &json!({"note": null})), "complete");
    refused(
        &app.post(cw, &p(&format!("/actions/{a1}/complete")), &json!({"note": null})),
        409,
        "action_not_open",
        "complete twice",
    );
    let a2 = created(&app.post(cw, &p("/actions"), &action("2026-12-15")), "agree 2");
    created(&app.post(cw, &p(&format!("/actions/{a2}/cancel")), &json!({"reason": "not needed"})), "cancel");
    refused(
        &app.post(cw, &p(&format!("/actions/{}/cancel", uuid::Uuid::new_v4())), &json!({"reason": "x"})),
        422,
        "unknown_action",
        "cancel unknown",
    );

    // Contacts, check-ins, guidance, meetings.
    let contact = json!({"with": [yp], "channel": "phone", "direction": "to_young_person", "outreach": true, "individual": true, "duration_minutes": 20, "summary": "weekly call"});
    let contact_id = created(&app.post(cw, &p("/contacts"), &contact), "contact");
    let mut future = contact.clone();
    future["occurred_at"] = json!("2026-11-27T10:00:00Z"); // the test clock says 09:00
    refused(&app.post(cw, &p("/contacts"), &future), 422, "occurred_in_future", "contact in the future");
    let check_in = json!({"placement_id": w.placement, "attendance": "present", "wellbeing": 4, "tasks_done": [], "concerns": null, "next_step": null});
    let check_in_id = created(&app.post(&w.mentor.1, &p("/check-ins"), &check_in), "check-in");
    let mut bad = check_in.clone();
    bad["wellbeing"] = json!(6);
    refused(&app.post(&w.mentor.1, &p("/check-ins"), &bad), 422, "out_of_range", "wellbeing 6");
    refused(&app.post(&teacher, &p("/check-ins"), &check_in), 403, "forbidden", "a teacher's check-in");
    let session =
        json!({"work_tasks": ["till"], "goal_ids": [goal], "duration_minutes": 30, "summary": "till training"});
    created(&app.post(&teacher, &p("/guidance-sessions"), &session), "guidance");
    refused(&app.post(cw, &p("/guidance-sessions"), &session), 403, "forbidden", "a caseworker's guidance session");
    created(&app.post(cw, &p("/meetings"), &json!({"kind": "network", "attendees": [yp, teacher_id], "other_attendees": ["aunt"], "decisions": ["keep going"]})), "meeting");
    refused(
        &app.post(
            cw,
            &p("/meetings"),
            &json!({"kind": "network", "attendees": [uuid::Uuid::new_v4()], "other_attendees": [], "decisions": []}),
        ),
        422,
        "unknown_participant",
        "meeting with a stranger",
    );

    // Corrections and retractions.
    let mut corrected = check_in.clone();
    corrected["wellbeing"] = json!(3);
    let correction = json!({"target_event_id": check_in_id, "reason": "typo", "replacement": {"event_type": "CheckInLogged", "schema_version": 1, "data": corrected}});
    created(&app.post(&w.mentor.1, &p("/corrections"), &correction), "correct");
    created(
        &app.post(cw, &p("/retractions"), &json!({"target_event_id": contact_id, "reason": "wrong course"})),
        "retract",
    );
    refused(
        &app.post(cw, &p("/retractions"), &json!({"target_event_id": contact_id, "reason": "again"})),
        409,
        "event_retracted",
        "retract twice",
    );

    // Assessments, support needs, contact plan, mentor agreements.
    created(&app.post(cw, &p("/assessments"), &json!({"kind": "work_trial", "placement_id": w.placement, "findings": "steady pace", "recommendation": null})), "assessment");
    created(
        &app.post(
            cw,
            &p("/support-needs"),
            &json!({"area": "personal", "life_domain": "everyday_life", "description": "reminders"}),
        ),
        "support need",
    );
    created(
        &app.post(cw, &p("/contact-plan"), &json!({"every_days": 14, "by": [w.caseworker.0], "note": null})),
        "contact plan",
    );
    refused(
        &app.post(cw, &p("/contact-plan"), &json!({"every_days": 0, "by": [w.caseworker.0], "note": null})),
        422,
        "out_of_range",
        "every 0 days",
    );
    let agreement = |to: &str| json!({"placement_id": w.placement, "mentor": w.mentor.0, "valid_from": "2026-11-02", "valid_to": to, "goal_ids": [], "tasks": ["stocking"], "hours_per_week": 12});
    refused(&app.post(cw, &p("/mentor-agreements"), &agreement("2027-06-30")), 422, "agreement_too_long", "8 months");
    let ag = created(&app.post(cw, &p("/mentor-agreements"), &agreement("2027-02-01")), "agreement");
    created(&app.post(cw, &p(&format!("/mentor-agreements/{ag}/renew")), &json!({"valid_to": "2027-05-01"})), "renew");

    // Phase, placement end, close.
    created(&app.post(cw, &p("/phase"), &json!({"phase": "practice"})), "phase");
    refused(&app.post(cw, &p("/phase"), &json!({"phase": "practice"})), 409, "phase_unchanged", "same phase");
    refused(
        &app.post(cw, &p("/close"), &json!({"outcome": "job", "note": null})),
        409,
        "placement_already_active",
        "close with an active placement",
    );
    created(
        &app.post(
            cw,
            &p(&format!("/placements/{}/end", w.placement)),
            &json!({"end_date": "2026-11-27", "outcome": "completed", "note": null}),
        ),
        "end placement",
    );
    refused(
        &app.post(
            cw,
            &p(&format!("/placements/{}/end", w.placement)),
            &json!({"end_date": "2026-11-27", "outcome": "completed", "note": null}),
        ),
        409,
        "placement_not_active",
        "end twice",
    );
    created(&app.post(cw, &p("/close"), &json!({"outcome": "education", "note": null})), "close");
    refused(&app.post(cw, &p("/contacts"), &contact), 409, "course_closed", "write to a closed course");

    // The history honours the correction and the retraction; the record still shows both.
    let history = app.get(cw, &p("/contacts?limit=50"));
    let items = history.body["items"].as_array().unwrap();
    assert!(items.iter().all(|i| i["event_id"] != json!(contact_id)), "a retracted contact is gone from the history");
    let ci = items.iter().find(|i| i["kind"] == "check_in").expect("the check-in");
    assert_eq!((ci["wellbeing"].clone(), ci["corrected"].clone()), (json!(3), json!(true)));
    let events = app.get(cw, &p("/events?limit=1000"));
    let types: Vec<&str> = events.body.as_array().unwrap().iter().map(|e| e["event_type"].as_str().unwrap()).collect();
    assert!(types.contains(&"EventCorrected") && types.contains(&"EventRetracted") && types.contains(&"ContactLogged"));
}

/// The hostile input catalogue: every POST, many kinds of bad input; each a 4xx problem with a
/// code, nothing appended, never a 5xx.
#[test]
fn hostile_input_gets_a_clear_4xx_and_appends_nothing() {
    let w = world();
    let app = &w.app;
    let c = &w.course;
    let nobody = uuid::Uuid::new_v4();
    let posts: Vec<(String, &str)> = [
        "/v1/courses",
        "/v1/courses/{c}/participants",
        "/v1/courses/{c}/participants/unassign",
        "/v1/courses/{c}/check-ins",
        "/v1/courses/{c}/contacts",
        "/v1/courses/{c}/guidance-sessions",
        "/v1/courses/{c}/meetings",
        "/v1/courses/{c}/goals",
        "/v1/courses/{c}/goals/{x}/sub-goals",
        "/v1/courses/{c}/goals/{x}/progress",
        "/v1/courses/{c}/goals/{x}/achieve",
        "/v1/courses/{c}/goals/{x}/drop",
        "/v1/courses/{c}/actions",
        "/v1/courses/{c}/actions/{x}/complete",
        "/v1/courses/{c}/actions/{x}/reschedule",
        "/v1/courses/{c}/actions/{x}/cancel",
        "/v1/courses/{c}/placements",
        "/v1/courses/{c}/placements/{x}/end",
        "/v1/courses/{c}/mentor-agreements",
        "/v1/courses/{c}/mentor-agreements/{x}/renew",
        "/v1/courses/{c}/assessments",
        "/v1/courses/{c}/support-needs",
        "/v1/courses/{c}/contact-plan",
        "/v1/courses/{c}/corrections",
        "/v1/courses/{c}/retractions",
        "/v1/courses/{c}/phase",
        "/v1/courses/{c}/close",
        "/v1/companies",
        "/v1/companies/{co}/mentors",
        "/v1/companies/{co}/relational-capacity",
        "/v1/accounts",
        "/v1/auth/token",
        "/v1/auth/refresh",
    ]
    .iter()
    .map(|t| (t.replace("{c}", c).replace("{x}", &nobody.to_string()).replace("{co}", &w.company), *t))
    .collect();
    let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
    let huge = format!("{{\"summary\": \"{}\"}}", "x".repeat(100 * 1024));
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("malformed JSON", "application/json", b"{\"summary\": ".to_vec()),
        ("not an object", "application/json", b"[1, 2, 3]".to_vec()),
        ("a bare string", "application/json", b"\"hello\"".to_vec()),
        ("empty body", "application/json", Vec::new()),
        (
            "wrong types",
            "application/json",
            br#"{"wellbeing": "five", "with": 3, "title": 12, "username": []}"#.to_vec(),
        ),
        ("unknown fields only", "application/json", br#"{"surprise": true}"#.to_vec()),
        ("deep nesting", "application/json", deep.into_bytes()),
        ("huge body", "application/json", huge.into_bytes()),
        (
            "invalid uuid",
            "application/json",
            br#"{"account_id": "not-a-uuid", "placement_id": "zz", "target_event_id": "1"}"#.to_vec(),
        ),
        ("invalid timestamp", "application/json", br#"{"occurred_at": "yesterday"}"#.to_vec()),
        (
            "numbers out of range",
            "application/json",
            br#"{"wellbeing": 99999999999999999999, "hours_per_week": -1, "every_days": 1e400}"#.to_vec(),
        ),
        (
            "control characters",
            "application/json",
            "{\"device_id\": \"\\u0000\\u0007\", \"summary\": \"\\u0000\"}".as_bytes().to_vec(),
        ),
        (
            "odd unicode",
            "application/json",
            "{\"title\": \"\u{202e}\u{0}\u{fffd}\", \"what\": \"\u{1F600}\"}".as_bytes().to_vec(),
        ),
        ("lone surrogate", "application/json", br#"{"title": "\ud800"}"#.to_vec()),
        ("invalid utf-8", "application/json", vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}']),
        ("wrong content type", "text/plain", br#"{"title": "x"}"#.to_vec()),
        ("form content type", "application/x-www-form-urlencoded", b"title=x".to_vec()),
    ];
    let head = app.head();
    let mut checked = 0;
    for (path, template) in &posts {
        for (what, ct, body) in &cases {
            let token = if template.starts_with("/v1/companies") || template.starts_with("/v1/accounts") {
                if template.starts_with("/v1/accounts") { w.admin.clone() } else { w.caseworker.1.clone() }
            } else if template.contains("check-ins") {
                w.mentor.1.clone()
            } else {
                w.caseworker.1.clone()
            };
            let r = app.post_raw(&token, path, ct, body.clone());
            assert!((400..500).contains(&r.status), "{what} → POST {template}: {} {:?}", r.status, r.body);
            assert_eq!(r.header("content-type"), Some("application/problem+json"), "{what} → POST {template}");
            assert!(!r.code().is_empty(), "{what} → POST {template}: no code in {:?}", r.body);
            checked += 1;
        }
    }
    // Path segments that are not ids.
    for path in ["/v1/courses/not-an-id/check-ins", "/v1/courses/%00/contacts", "/v1/companies/123/mentors"] {
        let r = app.post(&w.caseworker.1, path, &json!({}));
        assert_eq!((r.status, r.code()), (400, "invalid_parameter"), "{path}: {:?}", r.body);
    }
    for path in ["/v1/courses/not-an-id", "/v1/courses/not-an-id/contacts?limit=abc"] {
        let r = app.get(&w.caseworker.1, path);
        assert!((400..500).contains(&r.status) && !r.code().is_empty(), "{path}: {:?}", r.body);
    }
    let r = app.get(&w.caseworker.1, &format!("/v1/courses/{c}/contacts?limit=abc"));
    assert_eq!((r.status, r.code()), (400, "invalid_parameter"));
    let r = app.get(&w.caseworker.1, &format!("/v1/courses/{c}/contacts?cursor=garbage"));
    assert_eq!((r.status, r.code()), (400, "invalid_parameter"), "{:?}", r.body);
    let r = app.get(&w.caseworker.1, "/v1/no/such/path");
    assert_eq!((r.status, r.code()), (404, "not_found"));
    assert_eq!(app.head(), head, "hostile input appended something");
    assert_eq!(checked, posts.len() * cases.len());
}

/// A course's decision state keeps only its newest events for corrections (`KnownEvents`); an
/// older target is looked up in the log by its id. Corrections and retractions of events far
/// back work, their rules still hold (retracted once, own or coordinating), and an event of
/// another course is still not this course's to change.
#[test]
fn events_older_than_the_decision_window_can_be_corrected_and_retracted() {
    let w = world();
    let app = &w.app;
    let cw = &w.caseworker.1;
    let c = &w.course;
    let p = |s: &str| format!("/v1/courses/{c}{s}");
    let check_in = json!({"placement_id": w.placement, "attendance": "present", "wellbeing": 4, "tasks_done": [], "concerns": null, "next_step": null});
    let old_check_in = created(&app.post(&w.mentor.1, &p("/check-ins"), &check_in), "check-in");
    let contact = json!({"with": [w.young.0], "channel": "phone", "direction": "to_young_person", "outreach": false, "individual": true, "duration_minutes": 15, "summary": "call"});
    let old_contact = created(&app.post(cw, &p("/contacts"), &contact), "contact");
    for _ in 0..40 {
        created(&app.post(&w.mentor.1, &p("/check-ins"), &check_in), "a later check-in");
    }
    // Another course, with a contact of its own.
    let (other_yp, _) = app.account(&w.admin, "young.two", "young_person");
    let r = app.post(
        cw,
        "/v1/courses",
        &json!({"young_person": other_yp, "programme": "ressourceforloeb", "referring_caseworker": w.caseworker.0,
                "municipality": "Aarhus Kommune", "start_date": "2025-09-01"}),
    );
    let other = created(&r, "second course");
    let mut other_contact = contact.clone();
    other_contact["with"] = json!([other_yp]);
    let foreign = created(&app.post(cw, &format!("/v1/courses/{other}/contacts"), &other_contact), "other contact");

    let mut corrected = check_in.clone();
    corrected["wellbeing"] = json!(2);
    let correction = |target: &str| json!({"target_event_id": target, "reason": "typo", "replacement": {"event_type": "CheckInLogged", "schema_version": 1, "data": corrected}});
    let head = app.head();
    refused(&app.post(&w.young.1, &p("/corrections"), &correction(&old_check_in)), 403, "forbidden", "not theirs");
    assert_eq!(app.head(), head, "a refused correction appends nothing");
    created(&app.post(&w.mentor.1, &p("/corrections"), &correction(&old_check_in)), "correct an old check-in");
    let retraction = |target: &str| json!({"target_event_id": target, "reason": "wrong course"});
    created(&app.post(cw, &p("/retractions"), &retraction(&old_contact)), "retract an old contact");
    refused(&app.post(cw, &p("/retractions"), &retraction(&old_contact)), 409, "event_retracted", "retract twice");
    refused(&app.post(cw, &p("/retractions"), &retraction(&foreign)), 422, "unknown_event", "another course's event");
    let stranger = uuid::Uuid::new_v4().to_string();
    refused(&app.post(cw, &p("/retractions"), &retraction(&stranger)), 422, "unknown_event", "no such event");

    // The history shows both.
    let r = app.get(cw, &p("/contacts?limit=100"));
    assert_eq!(r.status, 200, "{:?}", r.body);
    let items = r.body["items"].as_array().expect("items");
    assert!(items.iter().all(|i| i["event_id"] != json!(old_contact)), "the retracted contact is gone");
    let ci = items.iter().find(|i| i["event_id"] == json!(old_check_in)).expect("the corrected check-in");
    assert_eq!((ci["wellbeing"].clone(), ci["corrected"].clone()), (json!(2), json!(true)));
}
