//! Every course endpoint × every role × assigned or not, through HTTP. The expected answer is
//! derived from the README's access matrix: not visible → 404 (and no course data in the body),
//! visible but the role lacks the permission → 403, otherwise the role gate is passed (the
//! domain may still refuse, with another code).

use std::collections::HashMap;

use serde_json::{Value, json};

use super::api_journey::world;

/// permission name → roles allowed, parsed from the README.
fn readme_matrix() -> HashMap<String, Vec<String>> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table = readme
        .split("<!-- access-matrix:start -->")
        .nth(1)
        .unwrap()
        .split("<!-- access-matrix:end -->")
        .next()
        .unwrap();
    let mut rows = table.lines().filter(|l| l.trim_start().starts_with('|'));
    let header: Vec<String> =
        rows.next().unwrap().split('|').map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()).collect();
    rows.skip(1)
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).filter(|c| !c.is_empty()).collect();
            let allowed =
                header[1..].iter().zip(&cells[1..]).filter(|(_, c)| **c == "✓").map(|(r, _)| r.clone()).collect();
            (cells[0].trim_matches('`').to_owned(), allowed)
        })
        .collect()
}

struct Endpoint {
    method: &'static str,
    path: String,
    permission: &'static str,
    body: Value,
}

#[test]
fn every_endpoint_every_role_assigned_or_not() {
    let w = world();
    let app = &w.app;
    let matrix = readme_matrix();
    let c = &w.course;
    let yp = w.young.0;
    // One account per participant role on the course, one per role not on it, and the two
    // roles that are never on a course.
    let roles = ["young_person", "teacher", "youth_coordinator", "caseworker", "network", "mentor"];
    let mut principals: Vec<(String, bool, String)> = Vec::new();
    for role in roles {
        let (id, token) = app.account(&w.admin, &format!("on.{role}"), role);
        let mut body = json!({"account_id": id, "role": role, "relation": null, "company_id": null});
        if role == "mentor" {
            body["company_id"] = json!(w.company);
        }
        if role == "network" {
            body["relation"] = json!("aunt");
        }
        if role == "young_person" {
            // The course's young person is fixed; use the one it has.
            principals.push((role.into(), true, app.login("young.one", "correct horse battery staple")));
        } else {
            let r = app.post(&w.caseworker.1, &format!("/v1/courses/{c}/participants"), &body);
            assert_eq!(r.status, 201, "assign {role}: {:?}", r.body);
            principals.push((role.into(), true, token));
        }
        let (_, outsider) = app.account(&w.admin, &format!("off.{role}"), role);
        principals.push((role.into(), false, outsider));
    }
    let (_, auditor) = app.account(&w.admin, "matrix.auditor", "auditor");
    principals.push(("auditor".into(), true, auditor));
    principals.push(("admin".into(), false, w.admin.clone()));

    let nobody = uuid::Uuid::new_v4();
    let endpoints = vec![
        Endpoint { method: "GET", path: format!("/v1/courses/{c}"), permission: "read_course", body: Value::Null },
        Endpoint {
            method: "GET",
            path: format!("/v1/courses/{c}/actions"),
            permission: "read_course",
            body: Value::Null,
        },
        Endpoint {
            method: "GET",
            path: format!("/v1/courses/{c}/contacts"),
            permission: "read_contact_history",
            body: Value::Null,
        },
        Endpoint {
            method: "GET",
            path: format!("/v1/courses/{c}/contact-frequency"),
            permission: "read_contact_history",
            body: Value::Null,
        },
        Endpoint {
            method: "GET",
            path: format!("/v1/courses/{c}/state"),
            permission: "read_contact_history",
            body: Value::Null,
        },
        Endpoint {
            method: "GET",
            path: format!("/v1/courses/{c}/events"),
            permission: "read_record",
            body: Value::Null,
        },
        Endpoint {
            method: "GET",
            path: format!("/v1/courses/{c}/verify"),
            permission: "read_record",
            body: Value::Null,
        },
        Endpoint {
            method: "POST",
            path: format!("/v1/courses/{c}/check-ins"),
            permission: "log_check_in",
            body: json!({"placement_id": w.placement, "attendance": "present", "wellbeing": 3, "tasks_done": [], "concerns": null, "next_step": null}),
        },
        Endpoint {
            method: "POST",
            path: format!("/v1/courses/{c}/contacts"),
            permission: "log_contact",
            body: json!({"with": [yp], "channel": "phone", "direction": "to_young_person", "outreach": true, "individual": true, "duration_minutes": 10, "summary": "call"}),
        },
        Endpoint {
            method: "POST",
            path: format!("/v1/courses/{c}/guidance-sessions"),
            permission: "hold_guidance_session",
            body: json!({"work_tasks": ["till"], "goal_ids": [], "duration_minutes": 30, "summary": "till training"}),
        },
        Endpoint {
            method: "POST",
            path: format!("/v1/courses/{c}/goals"),
            permission: "plan_course",
            body: json!({"life_domain": "work_life", "title": "Arrive on time", "description": null}),
        },
        Endpoint {
            method: "POST",
            path: format!("/v1/courses/{c}/meetings"),
            permission: "plan_course",
            body: json!({"kind": "coordination", "attendees": [yp], "other_attendees": [], "decisions": ["keep going"]}),
        },
        Endpoint {
            method: "POST",
            path: format!("/v1/courses/{c}/support-needs"),
            permission: "plan_course",
            body: json!({"area": "social", "life_domain": "work_life", "description": "a fixed colleague"}),
        },
        Endpoint {
            method: "POST",
            path: format!("/v1/courses/{c}/actions/{nobody}/complete"),
            permission: "complete_action",
            body: json!({"note": null}),
        },
        Endpoint {
            method: "POST",
            path: format!("/v1/courses/{c}/participants/unassign"),
            permission: "manage_participants",
            body: json!({"account_id": nobody, "role": "teacher", "reason": null}),
        },
        Endpoint {
            method: "POST",
            path: format!("/v1/courses/{c}/retractions"),
            permission: "correct_events",
            body: json!({"target_event_id": nobody, "reason": "wrong course"}),
        },
        Endpoint {
            // Refused by the domain (a placement is active), so the course stays open.
            method: "POST",
            path: format!("/v1/courses/{c}/close"),
            permission: "coordinate_course",
            body: json!({"outcome": "job", "note": null}),
        },
    ];

    let mut checked = 0;
    for e in &endpoints {
        let allowed = &matrix[e.permission];
        for (role, assigned, token) in &principals {
            let head = app.head();
            let r = if e.method == "GET" { app.get(token, &e.path) } else { app.post(token, &e.path, &e.body) };
            let visible = *assigned && role != "admin";
            let who =
                format!("{} {} as {role} ({})", e.method, e.path, if *assigned { "assigned" } else { "not assigned" });
            if !visible {
                assert_eq!((r.status, r.code()), (404, "not_found"), "{who}: {:?}", r.body);
                // A 404 carries nothing of the course.
                let text = r.body.to_string();
                assert!(!text.contains(c.as_str()) && !text.contains("Aarhus"), "{who} leaked: {text}");
            } else if !allowed.contains(role) {
                assert_eq!((r.status, r.code()), (403, "forbidden"), "{who}: {:?}", r.body);
            } else {
                // Past the role gate; the domain may still refuse (e.g. `not_course_mentor`).
                assert!(
                    r.code() != "forbidden" && r.status != 404 && r.status < 500,
                    "{who}: {} {:?}",
                    r.status,
                    r.body
                );
            }
            if r.status >= 400 {
                assert_eq!(app.head(), head, "{who}: a refusal appended something");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, endpoints.len() * principals.len());
}
