//! The published contract in `events/`: schemas match the code, every event type has a schema
//! and an example, examples and fixtures decode, payloads round-trip, error codes are complete.
//!
//! Regenerate after a deliberate change: `VIVIRK_BLESS=1 cargo test --lib domain`.

use std::collections::BTreeSet;
use std::fs;

use super::company::*;
use super::course::*;
use super::error::{DomainError, ERROR_CODES};
use super::schema::{events_dir, schema_files};
use super::testing::*;

fn bless() -> bool {
    std::env::var_os("VIVIRK_BLESS").is_some_and(|v| v == "1")
}

#[test]
fn committed_schemas_match_the_code() {
    let dir = events_dir().join("schemas");
    let files = schema_files().unwrap();
    let expected: BTreeSet<String> = files.iter().map(|f| f.file_name()).collect();
    if bless() {
        fs::create_dir_all(&dir).unwrap();
        for f in &files {
            fs::write(dir.join(f.file_name()), &f.json).unwrap();
        }
        for entry in fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if name.ends_with(".json") && !expected.contains(&name) {
                fs::remove_file(dir.join(name)).unwrap();
            }
        }
    }
    let mut drift = Vec::new();
    for f in &files {
        match fs::read_to_string(dir.join(f.file_name())) {
            Ok(committed) if committed == f.json => {}
            Ok(_) => drift.push(format!("{} differs", f.file_name())),
            Err(_) => drift.push(format!("{} is missing", f.file_name())),
        }
    }
    for entry in fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if !expected.contains(&name) {
            drift.push(format!("{name} is not defined by the code"));
        }
    }
    assert!(
        drift.is_empty(),
        "events/schemas drifted from the code (regenerate with VIVIRK_BLESS=1 cargo test --lib domain):\n{}",
        drift.join("\n")
    );
}

/// `{"event_type", "schema_version", "data"}`, as the log stores it.
fn example_json(event_type: &str, version: u16, data: serde_json::Value) -> String {
    let v = serde_json::json!({ "event_type": event_type, "schema_version": version, "data": data });
    serde_json::to_string_pretty(&v).unwrap() + "\n"
}

#[test]
fn every_event_type_has_a_schema_and_an_example_that_decodes() {
    let dir = events_dir();
    let course = course_examples();
    let company = company_examples();
    // The example builders cover every type, in order.
    let course_types: Vec<_> = course.iter().map(|e| e.event_type()).collect();
    let company_types: Vec<_> = company.iter().map(|e| e.event_type()).collect();
    assert_eq!(course_types, CourseEvent::TYPES.iter().map(|t| t.0).collect::<Vec<_>>());
    assert_eq!(company_types, CompanyEvent::TYPES.iter().map(|t| t.0).collect::<Vec<_>>());

    if bless() {
        fs::create_dir_all(dir.join("examples")).unwrap();
        for e in &course {
            let json = example_json(e.event_type(), e.schema_version(), e.to_value());
            fs::write(dir.join(format!("examples/{}.json", e.event_type())), json).unwrap();
        }
        for e in &company {
            let json = example_json(e.event_type(), e.schema_version(), e.to_value());
            fs::write(dir.join(format!("examples/{}.json", e.event_type())), json).unwrap();
        }
    }

    let read = |name: &str| -> (String, u16, Vec<u8>) {
        let path = dir.join(format!("examples/{name}.json"));
        let text = fs::read_to_string(&path).unwrap_or_else(|_| panic!("{path:?} is missing"));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["event_type"], name, "{path:?}");
        let version = u16::try_from(v["schema_version"].as_u64().unwrap()).unwrap();
        (text, version, serde_json::to_vec(&v["data"]).unwrap())
    };
    for (name, version) in CourseEvent::TYPES {
        assert!(dir.join(format!("schemas/{name}.v{version}.json")).exists());
        let (_, v, data) = read(name);
        let event = CourseEvent::decode(name, v, &data).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(event.event_type(), *name);
    }
    for (name, version) in CompanyEvent::TYPES {
        assert!(dir.join(format!("schemas/{name}.v{version}.json")).exists());
        let (_, v, data) = read(name);
        let event = CompanyEvent::decode(name, v, &data).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(event.event_type(), *name);
    }
}

#[test]
fn payloads_round_trip_exactly() {
    for e in course_examples() {
        let data = e.to_data();
        let back = CourseEvent::decode(e.event_type(), e.schema_version(), &data).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.to_data(), data, "{}", e.event_type());
    }
    for e in company_examples() {
        let data = e.to_data();
        let back = CompanyEvent::decode(e.event_type(), e.schema_version(), &data).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.to_data(), data);
    }
}

#[test]
fn a_committed_v1_contact_still_loads_as_v2() {
    let fixture = include_str!("../../events/fixtures/ContactLogged.v1.json");
    let v: serde_json::Value = serde_json::from_str(fixture).unwrap();
    assert_eq!((v["event_type"].as_str(), v["schema_version"].as_u64()), (Some("ContactLogged"), Some(1)));
    let data = serde_json::to_vec(&v["data"]).unwrap();
    let CourseEvent::ContactLogged(c) = CourseEvent::decode("ContactLogged", 1, &data).unwrap() else {
        panic!("not a contact");
    };
    assert!(!c.individual, "v1 contacts are not counted as individual conversations");
    assert_eq!(c.duration_minutes, 25);
    assert_eq!(c.with, vec![YP]);
    // Written back, it is a v2.
    let event = CourseEvent::ContactLogged(c);
    assert_eq!(event.schema_version(), 2);
    assert!(String::from_utf8(event.to_data()).unwrap().contains("\"individual\":false"));
    // v2 data is not valid v1 and vice versa: versions are not guessed.
    assert!(CourseEvent::decode("ContactLogged", 2, &data).is_err());
}

#[test]
fn a_committed_v1_correction_of_a_v1_contact_still_loads() {
    let fixture = include_str!("../../events/fixtures/EventCorrected.v1-with-ContactLogged.v1.json");
    let v: serde_json::Value = serde_json::from_str(fixture).unwrap();
    let data = serde_json::to_vec(&v["data"]).unwrap();
    let CourseEvent::EventCorrected(c) = CourseEvent::decode("EventCorrected", 1, &data).unwrap() else {
        panic!("not a correction");
    };
    let CourseEvent::ContactLogged(inner) = *c.replacement else {
        panic!("not a contact");
    };
    assert!(!inner.individual);
}

#[test]
fn decode_errors() {
    use super::error::DecodeError as D;
    assert!(matches!(CourseEvent::decode("Nope", 1, b"{}"), Err(D::UnknownEventType(_))));
    assert!(matches!(CourseEvent::decode("GoalSet", 7, b"{}"), Err(D::UnsupportedVersion { .. })));
    assert!(matches!(CourseEvent::decode("GoalSet", 1, b"{"), Err(D::Malformed { .. })));
    assert!(matches!(CourseEvent::decode("GoalSet", 1, b"{}"), Err(D::Malformed { .. })));
    // Unknown fields are refused: a payload is exactly its schema.
    let mut v = opened();
    v.municipality = s("Aarhus");
    let mut json = serde_json::to_value(&v).unwrap();
    json["extra"] = 1.into();
    let bytes = serde_json::to_vec(&json).unwrap();
    assert!(CourseEvent::decode("CourseOpened", 1, &bytes).is_err());
    assert!(matches!(CompanyEvent::decode("CourseOpened", 1, b"{}"), Err(D::UnknownEventType(_))));
}

#[test]
fn error_codes_are_unique_snake_case_and_published() {
    let codes: BTreeSet<_> = ERROR_CODES.iter().map(|(c, _)| *c).collect();
    assert_eq!(codes.len(), ERROR_CODES.len(), "duplicate code");
    for (code, description) in ERROR_CODES {
        assert!(code.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{code}");
        assert!(!description.is_empty());
    }
    // One of each variant: its code must be in the table, and the table has nothing else.
    let u = uuid::Uuid::nil();
    let d = time::Date::MIN;
    use DomainError::*;
    let all = [
        CourseNotOpened,
        CourseAlreadyOpened,
        CourseClosed,
        ProgrammeClosedToNewCitizens { programme: "p", closed_from: d },
        ProgrammeNotYetOpen { programme: "p", opens: d },
        PhaseUnchanged,
        NotPermitted { role: "r" },
        NotAParticipant,
        NotCourseMentor,
        OccurredInFuture,
        OccurredBeforeCourse,
        DateOutOfRange { field: "f", min: d, max: d },
        DateOrder { field: "f", before: "b" },
        TextBlank,
        TextTooLong { max: 1, len: 2 },
        TooManyItems { field: "f", max: 1, len: 2 },
        OutOfRange { field: "f", value: 0, min: 1, max: 2 },
        MissingField { field: "f" },
        UnexpectedField { field: "f" },
        NotAParticipantRole { role: "r" },
        AlreadyAssigned { account_id: u, role: "r" },
        NotAssigned { account_id: u, role: "r" },
        YoungPersonIsFixed,
        UnknownParticipant { account_id: u },
        NotAMentor { account_id: u },
        DuplicateId { id: u },
        UnknownGoal { id: u },
        GoalNotOpen { id: u },
        UnknownAction { id: u },
        ActionNotOpen { id: u },
        DueBeforeAgreement,
        UnknownPlacement { id: u },
        PlacementNotActive { id: u },
        PlacementAlreadyActive { id: u },
        UnknownAgreement { id: u },
        AgreementTooLong { max_months: 6 },
        UnknownEvent { id: u },
        NotCorrectable { event_type: "t" },
        CorrectionTypeMismatch { target: "a", replacement: "b" },
        EventRetracted { id: u },
        CompanyNotRegistered,
        CompanyAlreadyRegistered,
        MentorAlreadyRegistered { account_id: u },
    ];
    let used: BTreeSet<_> = all.iter().map(|e| e.code()).collect();
    assert_eq!(used, codes);
}

// -- the company stream

#[test]
fn company_commands() {
    use super::common::{CommandContext, EventMeta, Role};
    let [registered, mentor_registered, assessed] = company_examples().try_into().unwrap();
    let ctx = |role| CommandContext::now(NOW, actor(CW, role));
    let state_of = |events: &[CompanyEvent]| {
        let mut state = CompanyState::default();
        for (n, e) in events.iter().enumerate() {
            let meta = EventMeta {
                event_id: ev(n),
                stream_version: n as u64 + 1,
                occurred_at: T0,
                recorded_at: T0,
                actor: caseworker(),
            };
            apply_company(&mut state, e, &meta);
        }
        state
    };
    let cmd_of = |e: &CompanyEvent| match e.clone() {
        CompanyEvent::CompanyRegistered(p) => CompanyCommand::RegisterCompany(p),
        CompanyEvent::MentorRegistered(p) => CompanyCommand::RegisterMentor(p),
        CompanyEvent::RelationalCapacityAssessed(p) => CompanyCommand::AssessRelationalCapacity(p),
    };
    let code = |r: Result<Vec<CompanyEvent>, DomainError>| r.unwrap_err().code();

    let empty = state_of(&[]);
    let reg = state_of(std::slice::from_ref(&registered));
    let with_mentor = state_of(&[registered.clone(), mentor_registered.clone()]);

    assert_eq!(decide_company(&empty, &cmd_of(&registered), &ctx(Role::Teacher)).unwrap(), vec![registered.clone()]);
    assert!(decide_company(&empty, &cmd_of(&registered), &ctx(Role::Admin)).is_ok());
    assert_eq!(code(decide_company(&empty, &cmd_of(&registered), &ctx(Role::Mentor))), "not_permitted");
    assert_eq!(code(decide_company(&reg, &cmd_of(&registered), &ctx(Role::Caseworker))), "company_already_registered");
    assert_eq!(
        decide_company(&reg, &cmd_of(&mentor_registered), &ctx(Role::YouthCoordinator)).unwrap(),
        vec![mentor_registered.clone()]
    );
    assert_eq!(
        code(decide_company(&empty, &cmd_of(&mentor_registered), &ctx(Role::Caseworker))),
        "company_not_registered"
    );
    assert_eq!(
        code(decide_company(&with_mentor, &cmd_of(&mentor_registered), &ctx(Role::Caseworker))),
        "mentor_already_registered"
    );
    assert_eq!(decide_company(&with_mentor, &cmd_of(&assessed), &ctx(Role::Teacher)).unwrap(), vec![assessed.clone()]);
    assert_eq!(code(decide_company(&with_mentor, &cmd_of(&assessed), &ctx(Role::Admin))), "not_permitted");
    assert_eq!(code(decide_company(&empty, &cmd_of(&assessed), &ctx(Role::Teacher))), "company_not_registered");
    let CompanyEvent::RelationalCapacityAssessed(p) = assessed else { unreachable!() };
    for score in [0, 6] {
        let cmd = CompanyCommand::AssessRelationalCapacity(RelationalCapacityAssessed { score, ..p.clone() });
        assert_eq!(code(decide_company(&with_mentor, &cmd, &ctx(Role::Teacher))), "out_of_range");
    }
    let cmd =
        CompanyCommand::AssessRelationalCapacity(RelationalCapacityAssessed { tasks_offered: vec![s("t"); 51], ..p });
    assert_eq!(code(decide_company(&with_mentor, &cmd, &ctx(Role::Teacher))), "too_many_items");
}

#[test]
fn correctable_types_list_matches_is_correctable() {
    for e in course_examples() {
        assert_eq!(e.is_correctable(), CORRECTABLE_TYPES.contains(&e.event_type()), "{}", e.event_type());
    }
}
