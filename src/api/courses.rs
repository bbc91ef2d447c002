//! `/v1/courses`: writes (one per kind of event) and reads of one course.
//!
//! Every write body is the event's own fields (see `events/`), plus optional `event_id` (the
//! client's id: a retry with it appends nothing), `occurred_at` (RFC 3339; when it happened, if
//! not now) and `device_id`. Ids named in the path are filled into the body; ids of new things
//! (goal, action, placement, agreement) are generated when the body has none. Each write answers
//! `201 {event_id, position, version}` with `ETag` set to the course's new version.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::de::DeserializeOwned;

use super::extract::{Caller, bind_id, default_id, from_value, json_value, path_id, write_options};
use super::problem::{ApiError, Problem};
use super::{AppState, etag_json};
use crate::app::{Permission, Written, access};
use crate::domain::course::events::*;
use crate::domain::{CourseCommand, CourseId};
use crate::log::verify::Verifier;

/// A write body: the event's fields plus the optional write metadata.
#[derive(utoipa::ToSchema)]
#[schema(as = WriteMeta)]
#[allow(dead_code)]
pub struct WriteMetaDoc {
    /// The client's id for this event (UUID). A retry with the same id appends nothing and
    /// answers with the original result.
    event_id: Option<uuid::Uuid>,
    /// When it happened (RFC 3339), if not now; at most 5 minutes ahead of the server's clock.
    occurred_at: Option<String>,
    /// The device that recorded it.
    device_id: Option<String>,
}

/// How one write endpoint builds its command.
struct WriteSpec<T> {
    /// (path parameter, body field) pairs: the path's id goes into the body.
    bind: &'static [(&'static str, &'static str)],
    /// Body fields that name a new thing, generated when absent.
    generate: &'static [&'static str],
    command: fn(T) -> CourseCommand,
}

async fn course_write<T: DeserializeOwned>(
    state: &AppState,
    caller: &Caller,
    req: &HttpRequest,
    body: &[u8],
    spec: WriteSpec<T>,
    course: Option<CourseId>,
) -> Result<HttpResponse, ApiError> {
    idempotent_write(state, caller, req, body, |mut v, opts| async move {
        for (param, field) in spec.bind {
            bind_id(&mut v, field, path_id(req, param)?)?;
        }
        for field in spec.generate {
            default_id(&mut v, field)?;
        }
        let new_id = spec
            .generate
            .first()
            .and_then(|f| v.get(*f))
            .and_then(|s| s.as_str())
            .and_then(|s| uuid::Uuid::try_parse(s).ok());
        let course = match course {
            Some(c) => c,
            None => CourseId(path_id(req, "id")?),
        };
        let payload: T = from_value(v)?;
        let mut w = state.app.execute_course(&caller.0, course, (spec.command)(payload), opts).await?;
        w.id = new_id;
        Ok(w)
    })
    .await
}

/// The shape every write shares: `Idempotency-Key` (a retry gets the stored response), the JSON
/// body split into the event's fields and the write metadata, then `write` decides and appends;
/// the answer is `201` once the projections have seen the write (read-your-writes).
pub(super) async fn idempotent_write<'a, F, Fut>(
    state: &'a AppState,
    caller: &'a Caller,
    req: &'a HttpRequest,
    body: &'a [u8],
    write: F,
) -> Result<HttpResponse, ApiError>
where
    F: FnOnce(serde_json::Value, crate::app::WriteOptions) -> Fut,
    Fut: std::future::Future<Output = Result<Written, ApiError>>,
{
    let key = req.headers().get("idempotency-key").map(|v| v.to_str().unwrap_or("\u{0}"));
    let fingerprint = [req.method().as_str().as_bytes(), req.path().as_bytes(), body];
    state
        .idem
        .run(caller.0.account_id, key, &fingerprint, || async {
            let mut v = json_value(req, body)?;
            let opts = write_options(req, &mut v)?;
            let w = write(v, opts).await?;
            state.after_write(w.position).await;
            Ok(created(&w))
        })
        .await
}

pub fn created(w: &Written) -> HttpResponse {
    HttpResponse::Created().insert_header(("ETag", format!("\"{}\"", w.version))).json(w)
}

/// Declares one write endpoint: its route, OpenAPI operation and command.
macro_rules! course_write {
    ($fn:ident, $path:literal, $body:ty, $cmd:ident, $perm:literal, $summary:literal,
     bind: [$(($param:literal, $field:literal)),*], generate: [$($gen:literal),*]) => {
        #[doc = $summary]
        #[utoipa::path(
            post, path = $path, tag = "course writes",
            summary = $summary,
            description = concat!("Requires permission `", $perm, "` and a role on the course. Body: the fields of `", stringify!($body), "` plus optional write metadata (`event_id`, `occurred_at`, `device_id`)."),
            request_body(content = $body, content_type = "application/json"),
            params(
                ("id" = uuid::Uuid, Path, description = "Course id"),
                $(($param = uuid::Uuid, Path),)*
                ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key returns the original response."),
                ("If-Match" = Option<String>, Header, description = "The course version you last saw; 412 if it moved."),
            ),
            responses(
                (status = 201, description = "Written", body = Written),
                (status = 400, description = "Malformed body or id", body = Problem, content_type = "application/problem+json"),
                (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
                (status = 403, description = "Your role may not do this", body = Problem, content_type = "application/problem+json"),
                (status = 404, description = "No such course, or not yours to see", body = Problem, content_type = "application/problem+json"),
                (status = 409, description = "Refused by the course's state, or a concurrent write", body = Problem, content_type = "application/problem+json"),
                (status = 412, description = "If-Match does not match", body = Problem, content_type = "application/problem+json"),
                (status = 422, description = "Refused: the content is not acceptable (see `code`)", body = Problem, content_type = "application/problem+json"),
                (status = 503, description = "The log cannot take writes now", body = Problem, content_type = "application/problem+json"),
            ),
            security(("bearer" = []))
        )]
        #[post($path)]
        pub async fn $fn(state: web::Data<AppState>, caller: Caller, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, ApiError> {
            course_write::<$body>(&state, &caller, &req, &body, WriteSpec {
                bind: &[$(($param, $field)),*],
                generate: &[$($gen),*],
                command: CourseCommand::$cmd,
            }, None).await
        }
    };
}

/// Open a course.
#[utoipa::path(
    post, path = "/v1/courses", tag = "course writes",
    description = "Requires permission `open_course` (caseworker or youth coordinator). `course_id` is generated when absent.",
    request_body(content = CourseOpened, content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe.")),
    responses(
        (status = 201, description = "Opened", body = Written),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Your role may not open courses", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The course id is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Refused (see `code`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/v1/courses")]
pub async fn open_course(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    // The course id is part of the body; read it first to know which stream to lock.
    let mut v = json_value(&req, &body)?;
    default_id(&mut v, "course_id")?;
    let id = v.get("course_id").and_then(|s| s.as_str()).and_then(|s| uuid::Uuid::try_parse(s).ok());
    let Some(id) = id else { return Err(ApiError::InvalidBody("course_id must be a UUID".into())) };
    let body = serde_json::to_vec(&v).map_err(|e| ApiError::Internal(e.to_string()))?;
    let spec = WriteSpec::<CourseOpened> { bind: &[], generate: &["course_id"], command: CourseCommand::OpenCourse };
    course_write(&state, &caller, &req, &body, spec, Some(CourseId(id))).await
}

course_write!(assign_participant, "/v1/courses/{id}/participants", ParticipantAssigned, AssignParticipant,
    "manage_participants", "Assign an account to the course in a role", bind: [], generate: []);
course_write!(unassign_participant, "/v1/courses/{id}/participants/unassign", ParticipantUnassigned, UnassignParticipant,
    "manage_participants", "Unassign an account from a role on the course", bind: [], generate: []);
course_write!(log_check_in, "/v1/courses/{id}/check-ins", CheckInLogged, LogCheckIn,
    "log_check_in", "Log a mentor check-in", bind: [], generate: []);
course_write!(log_contact, "/v1/courses/{id}/contacts", ContactLogged, LogContact,
    "log_contact", "Log a contact with the young person", bind: [], generate: []);
course_write!(hold_guidance_session, "/v1/courses/{id}/guidance-sessions", GuidanceSessionHeld, HoldGuidanceSession,
    "hold_guidance_session", "Record a guidance session tied to work tasks", bind: [], generate: []);
course_write!(record_meeting, "/v1/courses/{id}/meetings", MeetingHeld, RecordMeeting,
    "plan_course", "Record a meeting and its decisions", bind: [], generate: []);
course_write!(set_goal, "/v1/courses/{id}/goals", GoalSet, SetGoal,
    "plan_course", "Set a goal in a life domain", bind: [], generate: ["goal_id"]);
course_write!(set_sub_goal, "/v1/courses/{id}/goals/{parent_goal_id}/sub-goals", SubGoalSet, SetSubGoal,
    "plan_course", "Set a sub-goal under a goal", bind: [("parent_goal_id", "parent_goal_id")], generate: ["goal_id"]);
course_write!(record_goal_progress, "/v1/courses/{id}/goals/{goal_id}/progress", GoalProgressRecorded, RecordGoalProgress,
    "plan_course", "Record progress on a goal", bind: [("goal_id", "goal_id")], generate: []);
course_write!(achieve_goal, "/v1/courses/{id}/goals/{goal_id}/achieve", GoalAchieved, AchieveGoal,
    "plan_course", "Mark a goal achieved", bind: [("goal_id", "goal_id")], generate: []);
course_write!(drop_goal, "/v1/courses/{id}/goals/{goal_id}/drop", GoalDropped, DropGoal,
    "plan_course", "Drop a goal", bind: [("goal_id", "goal_id")], generate: []);
course_write!(agree_action, "/v1/courses/{id}/actions", ActionAgreed, AgreeAction,
    "plan_course", "Agree an action: what, owner, due date, method", bind: [], generate: ["action_id"]);
course_write!(complete_action, "/v1/courses/{id}/actions/{action_id}/complete", ActionCompleted, CompleteAction,
    "complete_action", "Complete an agreed action", bind: [("action_id", "action_id")], generate: []);
course_write!(reschedule_action, "/v1/courses/{id}/actions/{action_id}/reschedule", ActionRescheduled, RescheduleAction,
    "plan_course", "Move an action's due date", bind: [("action_id", "action_id")], generate: []);
course_write!(cancel_action, "/v1/courses/{id}/actions/{action_id}/cancel", ActionCancelled, CancelAction,
    "plan_course", "Cancel an agreed action", bind: [("action_id", "action_id")], generate: []);
course_write!(start_placement, "/v1/courses/{id}/placements", PlacementStarted, StartPlacement,
    "plan_course", "Start a placement", bind: [], generate: ["placement_id"]);
course_write!(end_placement, "/v1/courses/{id}/placements/{placement_id}/end", PlacementEnded, EndPlacement,
    "plan_course", "End a placement with an outcome", bind: [("placement_id", "placement_id")], generate: []);
course_write!(make_mentor_agreement, "/v1/courses/{id}/mentor-agreements", MentorAgreementMade, MakeMentorAgreement,
    "plan_course", "Make a mentor agreement (at most 6 months)", bind: [], generate: ["agreement_id"]);
course_write!(renew_mentor_agreement, "/v1/courses/{id}/mentor-agreements/{agreement_id}/renew", MentorAgreementRenewed,
    RenewMentorAgreement, "plan_course", "Renew a mentor agreement", bind: [("agreement_id", "agreement_id")], generate: []);
course_write!(record_assessment, "/v1/courses/{id}/assessments", AssessmentRecorded, RecordAssessment,
    "plan_course", "Record a work-trial or industry-clarification assessment", bind: [], generate: []);
course_write!(record_support_need, "/v1/courses/{id}/support-needs", SupportNeedRecorded, RecordSupportNeed,
    "plan_course", "Record a support need", bind: [], generate: []);
course_write!(agree_contact_plan, "/v1/courses/{id}/contact-plan", ContactPlanAgreed, AgreeContactPlan,
    "plan_course", "Agree how often the young person is contacted, and by whom", bind: [], generate: []);
course_write!(correct_event, "/v1/courses/{id}/corrections", EventCorrected, CorrectEvent,
    "correct_events", "Correct an earlier event (the original stays in the record)", bind: [], generate: []);
course_write!(retract_event, "/v1/courses/{id}/retractions", EventRetracted, RetractEvent,
    "correct_events", "Retract an earlier event (the original stays in the record)", bind: [], generate: []);
course_write!(change_phase, "/v1/courses/{id}/phase", PhaseChanged, ChangePhase,
    "coordinate_course", "Move the course to another phase", bind: [], generate: []);
course_write!(close_course, "/v1/courses/{id}/close", CourseClosed, CloseCourse,
    "coordinate_course", "Close the course with an outcome", bind: [], generate: []);

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// First stream version to return (default 1).
    pub from_version: Option<u64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// The raw envelopes of a course, oldest first, with their hashes.
#[utoipa::path(
    get, path = "/v1/courses/{id}/events", tag = "course record",
    description = "Requires permission `read_record`. Each item is an envelope as in exports.",
    params(("id" = uuid::Uuid, Path), EventsQuery),
    responses(
        (status = 200, description = "Envelopes", body = Vec<Object>),
        (status = 404, description = "No such course, or not yours to see", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/v1/courses/{id}/events")]
pub async fn course_events(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    q: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let course = CourseId(path_id(&req, "id")?);
    state.app.check_course_visible(&caller.0, course).await?;
    access::require(&caller.0, Permission::ReadRecord)?;
    let use_ = super::audit::Use::begin(&req, crate::audit::AccessKind::Read, false)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let events = state
        .app
        .log
        .read_stream(&crate::app::course_stream(course), q.from_version.unwrap_or(1), false, limit)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let items: Vec<_> = events.iter().map(|e| e.to_json()).collect();
    use_.record(&state, &caller, &req, Some(course)).await;
    etag_json(&req, &items)
}

/// The result of verifying one course's chain.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct VerifyResult {
    pub ok: bool,
    /// Events checked.
    pub events: u64,
    /// The stream hash of the last event checked (hex).
    pub head_hash: Option<String>,
    /// The first stream version that does not verify.
    pub first_bad_version: Option<u64>,
    /// Why it does not verify.
    pub reason: Option<String>,
}

/// Recompute a course's stream chain and each event's own hash.
#[utoipa::path(
    get, path = "/v1/courses/{id}/verify", tag = "course record",
    description = "Requires permission `read_record`.",
    params(("id" = uuid::Uuid, Path)),
    responses(
        (status = 200, description = "Verification result", body = VerifyResult),
        (status = 404, description = "No such course, or not yours to see", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/v1/courses/{id}/verify")]
pub async fn verify_course(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let course = CourseId(path_id(&req, "id")?);
    state.app.check_course_visible(&caller.0, course).await?;
    access::require(&caller.0, Permission::ReadRecord)?;
    let use_ = super::audit::Use::begin(&req, crate::audit::AccessKind::Read, false)?;
    let stream = crate::app::course_stream(course);
    let mut v = Verifier::streams_only();
    let mut from = 1;
    let mut failure = None;
    'outer: loop {
        let batch =
            state.app.log.read_stream(&stream, from, false, 1000).map_err(|e| ApiError::Internal(e.to_string()))?;
        if batch.is_empty() {
            break;
        }
        for e in &batch {
            if let Err(f) = v.check(e) {
                failure = Some(f);
                break 'outer;
            }
            from = e.stream_version + 1;
        }
    }
    let head = v.stream_head(stream.as_str());
    let r = VerifyResult {
        ok: failure.is_none(),
        events: v.checked,
        head_hash: head.map(|(_, h)| h.to_hex()),
        first_bad_version: failure.as_ref().map(|f| f.stream_version),
        reason: failure.map(|f| f.reason),
    };
    use_.record(&state, &caller, &req, Some(course)).await;
    Ok(HttpResponse::Ok().json(r))
}
