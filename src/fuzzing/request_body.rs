//! Request bodies of the write endpoints: bytes → JSON → write metadata and the event's fields →
//! the typed command ("parse, don't validate") → `decide`.
//!
//! Input: an endpoint byte (an index into [`ENDPOINTS`]), a byte of request flags (bits 0–2 the
//! caller's role, an index into `Role::ALL`; bit 3 a closed course; bit 4 an `If-Match`; bit 5 an
//! `X-Correlation-Id`), then the body. The seeds are the payloads of `events/examples`.
//!
//! The body goes through the handlers' own steps (`json_value`, `write_options`, `bind_id`,
//! `default_id`, `from_value`) on a real `HttpRequest` with the path's ids, in the order the
//! handlers in `api/courses.rs`, `api/companies.rs` and `api/accounts.rs` take them:
//! - a refusal is a 4xx problem, never a 500;
//! - an accepted body is a command whose decision, against a course staffed like
//!   `domain::testing` (open, or closed with bit 3), either is a refusal with a 4xx problem or
//!   gives events that start with exactly the payload asked for, encode and decode to
//!   themselves, and pass every check the log makes before it writes (lengths, size, JSON, a
//!   time it can store).

use std::sync::OnceLock;

use actix_web::ResponseError;
use actix_web::test::TestRequest;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::event_decode::{NOW, account_of};
use crate::api::ApiError;
use crate::api::extract::{bind_id, default_id, from_value, json_value, path_id, write_options};
use crate::app::{AppError, WriteOptions};
use crate::auth::NewAccount;
use crate::auth::accounts::{check_password_policy, normalize_username};
use crate::domain::course::events::*;
use crate::domain::testing;
use crate::domain::{
    Actor, CommandContext, CompanyCommand, CompanyEvent, CompanyState, CourseCommand, CourseEvent, CourseState,
    EventMeta, Role, ShortText, apply_company, decide, decide_company,
};
use crate::log::envelope::{check_lengths, is_storable_json};
use crate::log::{LogActor, MAX_DATA, Metadata, NewEvent, to_nanos};

/// What an accepted body becomes.
pub enum Parsed {
    Course(CourseCommand),
    Company(CompanyCommand),
    Account(NewAccount),
    Cursor(crate::projections::views::Cursor),
}

/// One write endpoint, as its handler parses it.
pub struct Endpoint {
    /// The route (OpenAPI path).
    pub path: &'static str,
    /// The request body's schema (OpenAPI component).
    pub body: &'static str,
    /// (path parameter, body field): the path's id goes into the body.
    pub bind: &'static [(&'static str, &'static str)],
    /// Body fields naming a new thing, generated when absent.
    pub generate: &'static [&'static str],
    pub parse: fn(serde_json::Value) -> Result<Parsed, ApiError>,
}

fn course<T: DeserializeOwned>(v: serde_json::Value, command: fn(T) -> CourseCommand) -> Result<Parsed, ApiError> {
    from_value(v).map(|p| Parsed::Course(command(p)))
}

fn company<T: DeserializeOwned>(v: serde_json::Value, command: fn(T) -> CompanyCommand) -> Result<Parsed, ApiError> {
    from_value(v).map(|p| Parsed::Company(command(p)))
}

macro_rules! course_endpoints {
    ($($path:literal => $cmd:ident($body:ident), bind: [$(($param:literal, $field:literal)),*], generate: [$($gen:literal),*];)*) => {
        &[$(Endpoint {
            path: $path,
            body: stringify!($body),
            bind: &[$(($param, $field)),*],
            generate: &[$($gen),*],
            parse: |v| course::<$body>(v, CourseCommand::$cmd),
        },)*]
    };
}

/// The course endpoints, as declared in `api/courses.rs`.
pub const COURSE_ENDPOINTS: &[Endpoint] = course_endpoints! {
    "/v1/courses" => OpenCourse(CourseOpened), bind: [], generate: ["course_id"];
    "/v1/courses/{id}/participants" => AssignParticipant(ParticipantAssigned), bind: [], generate: [];
    "/v1/courses/{id}/participants/unassign" => UnassignParticipant(ParticipantUnassigned), bind: [], generate: [];
    "/v1/courses/{id}/check-ins" => LogCheckIn(CheckInLogged), bind: [], generate: [];
    "/v1/courses/{id}/contacts" => LogContact(ContactLogged), bind: [], generate: [];
    "/v1/courses/{id}/guidance-sessions" => HoldGuidanceSession(GuidanceSessionHeld), bind: [], generate: [];
    "/v1/courses/{id}/meetings" => RecordMeeting(MeetingHeld), bind: [], generate: [];
    "/v1/courses/{id}/goals" => SetGoal(GoalSet), bind: [], generate: ["goal_id"];
    "/v1/courses/{id}/goals/{parent_goal_id}/sub-goals" => SetSubGoal(SubGoalSet),
        bind: [("parent_goal_id", "parent_goal_id")], generate: ["goal_id"];
    "/v1/courses/{id}/goals/{goal_id}/progress" => RecordGoalProgress(GoalProgressRecorded), bind: [("goal_id", "goal_id")], generate: [];
    "/v1/courses/{id}/goals/{goal_id}/achieve" => AchieveGoal(GoalAchieved), bind: [("goal_id", "goal_id")], generate: [];
    "/v1/courses/{id}/goals/{goal_id}/drop" => DropGoal(GoalDropped), bind: [("goal_id", "goal_id")], generate: [];
    "/v1/courses/{id}/actions" => AgreeAction(ActionAgreed), bind: [], generate: ["action_id"];
    "/v1/courses/{id}/actions/{action_id}/complete" => CompleteAction(ActionCompleted), bind: [("action_id", "action_id")], generate: [];
    "/v1/courses/{id}/actions/{action_id}/reschedule" => RescheduleAction(ActionRescheduled),
        bind: [("action_id", "action_id")], generate: [];
    "/v1/courses/{id}/actions/{action_id}/cancel" => CancelAction(ActionCancelled), bind: [("action_id", "action_id")], generate: [];
    "/v1/courses/{id}/placements" => StartPlacement(PlacementStarted), bind: [], generate: ["placement_id"];
    "/v1/courses/{id}/placements/{placement_id}/end" => EndPlacement(PlacementEnded),
        bind: [("placement_id", "placement_id")], generate: [];
    "/v1/courses/{id}/mentor-agreements" => MakeMentorAgreement(MentorAgreementMade), bind: [], generate: ["agreement_id"];
    "/v1/courses/{id}/mentor-agreements/{agreement_id}/renew" => RenewMentorAgreement(MentorAgreementRenewed),
        bind: [("agreement_id", "agreement_id")], generate: [];
    "/v1/courses/{id}/assessments" => RecordAssessment(AssessmentRecorded), bind: [], generate: [];
    "/v1/courses/{id}/support-needs" => RecordSupportNeed(SupportNeedRecorded), bind: [], generate: [];
    "/v1/courses/{id}/contact-plan" => AgreeContactPlan(ContactPlanAgreed), bind: [], generate: [];
    "/v1/courses/{id}/corrections" => CorrectEvent(EventCorrected), bind: [], generate: [];
    "/v1/courses/{id}/retractions" => RetractEvent(EventRetracted), bind: [], generate: [];
    "/v1/courses/{id}/phase" => ChangePhase(PhaseChanged), bind: [], generate: [];
    "/v1/courses/{id}/close" => CloseCourse(CourseClosed), bind: [], generate: [];
};

/// The other write bodies: companies (`api/companies.rs`), accounts (`api/accounts.rs`), and the
/// history cursor (a query parameter, `api/reads.rs`).
pub const OTHER_ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        path: "/v1/companies",
        body: "CompanyRegistered",
        bind: &[],
        generate: &["company_id"],
        parse: |v| company(v, CompanyCommand::RegisterCompany),
    },
    Endpoint {
        path: "/v1/companies/{company_id}/mentors",
        body: "MentorRegistered",
        bind: &[],
        generate: &[],
        parse: |v| company(v, CompanyCommand::RegisterMentor),
    },
    Endpoint {
        path: "/v1/companies/{company_id}/relational-capacity",
        body: "RelationalCapacityAssessed",
        bind: &[],
        generate: &[],
        parse: |v| company(v, CompanyCommand::AssessRelationalCapacity),
    },
    Endpoint {
        path: "/v1/accounts",
        body: "NewAccount",
        bind: &[],
        generate: &[],
        parse: |v| from_value(v).map(Parsed::Account),
    },
    Endpoint {
        path: "/v1/courses/{id}/history?cursor",
        body: "",
        bind: &[],
        generate: &[],
        parse: |v| {
            let s = v.as_str().ok_or_else(|| ApiError::InvalidParameter("not a string".into()))?;
            crate::projections::views::Cursor::decode(s)
                .map(Parsed::Cursor)
                .ok_or_else(|| ApiError::InvalidParameter("cursor".into()))
        },
    },
];

pub fn endpoint(i: u8) -> &'static Endpoint {
    let i = usize::from(i) % (COURSE_ENDPOINTS.len() + OTHER_ENDPOINTS.len());
    COURSE_ENDPOINTS.get(i).unwrap_or_else(|| &OTHER_ENDPOINTS[i - COURSE_ENDPOINTS.len()])
}

/// The id each path parameter gets: the ids of `domain::testing`.
fn path_value(param: &str) -> Uuid {
    match param {
        "id" => testing::COURSE.0,
        "parent_goal_id" | "goal_id" => testing::GOAL.0,
        "action_id" => testing::ACTION.0,
        "placement_id" => testing::PLACEMENT.0,
        "agreement_id" => testing::AGREEMENT.0,
        "company_id" => testing::COMPANY.0,
        _ => Uuid::nil(),
    }
}

fn request(ep: &Endpoint, flags: u8) -> actix_web::HttpRequest {
    let mut r = TestRequest::post().uri("/").insert_header(("content-type", "application/json"));
    for param in ["id", "parent_goal_id", "goal_id", "action_id", "placement_id", "agreement_id", "company_id"] {
        if ep.path.contains(&format!("{{{param}}}")) {
            r = r.param(param, path_value(param).to_string());
        }
    }
    if flags & 0x10 != 0 {
        r = r.insert_header(("if-match", "\"7\""));
    }
    if flags & 0x20 != 0 {
        r = r.insert_header(("x-correlation-id", "0190a6c0-0000-7000-8000-000000000009"));
    }
    r.to_http_request()
}

/// A body as the endpoint's handler parses it.
pub fn parse(ep: &Endpoint, req: &actix_web::HttpRequest, body: &[u8]) -> Result<(Parsed, WriteOptions), ApiError> {
    if ep.path.ends_with("?cursor") {
        let s = std::str::from_utf8(body).map_err(|_| ApiError::InvalidParameter("not UTF-8".into()))?;
        return Ok(((ep.parse)(serde_json::Value::String(s.to_owned()))?, WriteOptions::default()));
    }
    let mut v = json_value(req, body)?;
    if ep.path == "/v1/accounts" {
        return Ok(((ep.parse)(v)?, WriteOptions::default()));
    }
    if ep.path == "/v1/courses" || ep.path == "/v1/companies" {
        // The handler fills the new id, checks it, and hands the body on re-serialised.
        let field = ep.generate[0];
        default_id(&mut v, field)?;
        if v.get(field).and_then(|s| s.as_str()).and_then(|s| Uuid::try_parse(s).ok()).is_none() {
            return Err(ApiError::InvalidBody(format!("{field} must be a UUID")));
        }
        let body = serde_json::to_vec(&v).map_err(|e| ApiError::Internal(e.to_string()))?;
        v = json_value(req, &body)?;
    }
    let opts = write_options(req, &mut v)?;
    for (param, field) in ep.bind {
        bind_id(&mut v, field, path_id(req, param)?)?;
    }
    for field in ep.generate {
        default_id(&mut v, field)?;
    }
    Ok(((ep.parse)(v)?, opts))
}

struct States {
    empty: CourseState,
    open: CourseState,
    closed: CourseState,
    company: CompanyState,
}

fn states() -> &'static States {
    static STATES: OnceLock<States> = OnceLock::new();
    STATES.get_or_init(|| {
        let history = || {
            let mut h = testing::staffed();
            h.extend([
                testing::goal().into(),
                testing::sub_goal().into(),
                testing::action().into(),
                testing::placement().into(),
                testing::agreement().into(),
                testing::contact().into(),
                testing::check_in().into(),
                testing::contact_plan().into(),
            ]);
            h
        };
        let open = testing::given(history()).state();
        let mut closed_history = history();
        closed_history.push(CourseClosed { outcome: Outcome::Job, note: None }.into());
        let closed = testing::given(closed_history).state();
        let mut company = CompanyState::default();
        let meta = EventMeta {
            event_id: Uuid::from_u128(1),
            stream_version: 1,
            occurred_at: testing::T0,
            recorded_at: testing::T0,
            actor: testing::caseworker(),
        };
        for (i, e) in testing::company_examples().into_iter().enumerate() {
            apply_company(&mut company, &e, &EventMeta { stream_version: i as u64 + 1, ..meta.clone() });
        }
        States { empty: CourseState::default(), open, closed, company }
    })
}

pub fn check(data: &[u8]) {
    let [endpoint_byte, flags, body @ ..] = data else { return };
    let ep = endpoint(*endpoint_byte);
    let req = request(ep, *flags);
    let (parsed, opts) = match parse(ep, &req, body) {
        Ok(p) => p,
        Err(e) => {
            assert!(e.status_code().is_client_error(), "{} answers a body with {}: {e}", ep.path, e.status_code());
            return;
        }
    };
    let role = Role::ALL[usize::from(flags & 7)];
    let actor = Actor { account_id: account_of(role), role };
    let ctx = CommandContext { now: NOW, actor, occurred_at: opts.occurred_at.unwrap_or(NOW) };
    match parsed {
        Parsed::Course(cmd) => {
            let s = states();
            let state = match (&cmd, flags & 8 != 0) {
                (CourseCommand::OpenCourse(_), _) => &s.empty,
                (_, true) => &s.closed,
                (_, false) => &s.open,
            };
            match decide(state, &cmd, &ctx) {
                Ok(events) => {
                    assert_eq!(events.first(), Some(&testing::echo(&cmd)), "{}: not what was asked for", ep.path);
                    for e in &events {
                        let (t, v, data) = (e.event_type(), e.schema_version(), e.to_data());
                        let back =
                            CourseEvent::decode(t, v, &data).unwrap_or_else(|err| panic!("{t} does not decode: {err}"));
                        assert_eq!(&back, e, "{t} changes when stored");
                        storable(ep, t, v, data, &ctx, &opts);
                    }
                }
                Err(e) => refused(ep, e),
            }
        }
        Parsed::Company(cmd) => {
            let state = match cmd {
                CompanyCommand::RegisterCompany(_) => CompanyState::default(),
                _ => states().company.clone(),
            };
            match decide_company(&state, &cmd, &ctx) {
                Ok(events) => {
                    for e in &events {
                        let (t, v, data) = (e.event_type(), e.schema_version(), e.to_data());
                        let back = CompanyEvent::decode(t, v, &data)
                            .unwrap_or_else(|err| panic!("{t} does not decode: {err}"));
                        assert_eq!(&back, e, "{t} changes when stored");
                        storable(ep, t, v, data, &ctx, &opts);
                    }
                }
                Err(e) => refused(ep, e),
            }
        }
        Parsed::Account(a) => {
            // `Auth::create_account`'s checks, without hashing the password (that is argon2).
            if let Ok(u) = normalize_username(&a.username) {
                assert_eq!(normalize_username(&u).ok(), Some(u.clone()), "usernames do not normalise once and for all");
                assert!((3..=64).contains(&u.len()) && u.is_ascii(), "username {u:?} accepted");
            }
            let _ = ShortText::try_from(a.display_name);
            let _ = check_password_policy(&a.password);
        }
        Parsed::Cursor(c) => {
            assert_eq!(crate::projections::views::Cursor::decode(&c.encode()), Some(c), "a cursor does not round-trip");
        }
    }
}

fn refused(ep: &Endpoint, e: crate::domain::DomainError) {
    assert!(!e.code().is_empty() && !e.to_string().is_empty());
    let status = ApiError::App(AppError::Domain(e)).status_code();
    assert!(status.is_client_error(), "{}: a refusal answered with {status}", ep.path);
}

/// The checks the log's writer makes before it appends (`writer.rs`): an accepted decision must
/// not be refused there.
fn storable(
    ep: &Endpoint,
    event_type: &str,
    schema_version: u16,
    data: Vec<u8>,
    ctx: &CommandContext,
    opts: &WriteOptions,
) {
    let ev = NewEvent {
        event_id: opts.event_id.unwrap_or_else(Uuid::nil),
        event_type: event_type.to_owned(),
        schema_version,
        occurred_at: ctx.occurred_at,
        actor: LogActor { account_id: ctx.actor.account_id.0, role: ctx.actor.role.as_str().to_owned() },
        metadata: Metadata {
            correlation_id: opts.correlation_id,
            causation_id: None,
            device_id: opts.device_id.clone(),
        },
        data,
    };
    if let Err(e) = check_lengths(&ev) {
        panic!("{}: the log refuses an accepted {event_type}: {e}", ep.path);
    }
    assert!(ev.data.len() <= MAX_DATA, "{}: an accepted {event_type} is too large to store", ep.path);
    assert!(is_storable_json(&ev.data), "{}: the log refuses the data of an accepted {event_type}", ep.path);
    assert!(
        to_nanos(ev.occurred_at).is_some(),
        "{}: an accepted {event_type} happened at {}, which the log cannot store",
        ep.path,
        ev.occurred_at
    );
}
