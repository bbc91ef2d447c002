//! Reads: course status, contact history and frequency, actions, as-of state, the phone's home
//! screen, and delta sync. All come from projections; visibility comes from the course's
//! decision state (so it is exact even while projections catch up).

use actix_web::{HttpRequest, HttpResponse, get, web};
use serde::Deserialize;
use time::OffsetDateTime;

use super::AppState;
use super::audit::Use;
use super::extract::{Caller, path_id};
use super::problem::{ApiError, Problem};
use crate::app::{Permission, access};
use crate::audit::AccessKind;
use crate::domain::{Channel, CourseId, Direction, Role};
use crate::projections::views::{HistoryFilter, InteractionKind};
use crate::projections::{AsOf, ProjectionError};

fn projection_error(e: ProjectionError) -> ApiError {
    match e {
        ProjectionError::Log(m) if m.contains("cursor") => ApiError::InvalidParameter(m),
        other => ApiError::Internal(other.to_string()),
    }
}

async fn visible(state: &AppState, caller: &Caller, req: &HttpRequest, perm: Permission) -> Result<CourseId, ApiError> {
    let course = CourseId(path_id(req, "id")?);
    // A write answers only after the projections have folded it, so they are as current as the
    // decision state for what a caller can have done; unlike it, they hold every course.
    match state.projections.course_visible_to(course, caller.0.account_id, caller.0.role) {
        Some(true) => {}
        Some(false) | None => return Err(ApiError::NotFound),
    }
    access::require(&caller.0, perm)?;
    Ok(course)
}

/// The course's status: phase, participants (with the history of who held each role), goals,
/// the active placement and mentor agreement, open and overdue actions, support needs, last
/// contact, warnings.
#[utoipa::path(
    get, path = "/v1/courses/{id}", tag = "course reads",
    description = "Requires permission `read_course` and a role on the course (or auditor).",
    params(("id" = uuid::Uuid, Path)),
    responses(
        (status = 200, description = "Course status", body = Object),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 404, description = "No such course, or not yours to see", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/v1/courses/{id}")]
pub async fn course_status(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let course = visible(&state, &caller, &req, Permission::ReadCourse).await?;
    let use_ = Use::begin(&req, AccessKind::Read, false)?;
    let status = state.projections.course_status(course).ok_or(ApiError::NotFound)?;
    use_.record(&state, &caller, &req, Some(course)).await;
    super::etag_json(&req, &status)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Only entries by someone acting in this role.
    #[param(value_type = Option<String>)]
    pub role: Option<Role>,
    /// Only entries by, with or attended by this account.
    pub participant: Option<uuid::Uuid>,
    #[param(value_type = Option<String>)]
    pub channel: Option<Channel>,
    #[param(value_type = Option<String>)]
    pub direction: Option<Direction>,
    /// contact, check_in, guidance_session, meeting
    #[param(value_type = Option<String>)]
    pub kind: Option<InteractionKind>,
    /// First local (Europe/Copenhagen) date, inclusive, `YYYY-MM-DD`.
    pub from: Option<String>,
    /// Last local date, inclusive.
    pub to: Option<String>,
    /// Page size, 1–200 (default 50).
    pub limit: Option<usize>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

fn date(s: &Option<String>, name: &str) -> Result<Option<time::Date>, ApiError> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    s.as_deref()
        .map(|s| {
            time::Date::parse(s, fmt).map_err(|_| ApiError::InvalidParameter(format!("{name} must be YYYY-MM-DD")))
        })
        .transpose()
}

/// The contact history: contacts, check-ins, guidance sessions and meetings, newest first.
#[utoipa::path(
    get, path = "/v1/courses/{id}/contacts", tag = "course reads",
    description = "Requires permission `read_contact_history`. Cursor pagination is stable while new \
        events arrive: items are ordered by (occurred_at, position), newest first.",
    params(("id" = uuid::Uuid, Path), HistoryQuery),
    responses(
        (status = 200, description = "A page of the history: `{items, next_cursor}`", body = Object),
        (status = 400, description = "A malformed filter or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such course, or not yours to see", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/v1/courses/{id}/contacts")]
pub async fn contact_history(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    q: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let course = visible(&state, &caller, &req, Permission::ReadContactHistory).await?;
    let use_ = Use::search(&req, false)?;
    let filter = HistoryFilter {
        role: q.role,
        participant: q.participant.map(crate::domain::AccountId),
        channel: q.channel,
        direction: q.direction,
        kind: q.kind,
        from: date(&q.from, "from")?,
        to: date(&q.to, "to")?,
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::InvalidParameter("limit must be 1..=200".into()));
    }
    // The page is a function of the course's version and the query (events are immutable), so
    // a client revalidating an unchanged page gets its 304 before any of it is rendered.
    let tag = |version: u64| {
        super::version_tag(&[b"contacts", course.0.as_bytes(), &version.to_be_bytes(), req.query_string().as_bytes()])
    };
    if let Some(v) = state.projections.course_version(course)
        && super::if_none_match(&req, &tag(v))
    {
        use_.record(&state, &caller, &req, Some(course)).await;
        return Ok(HttpResponse::NotModified().insert_header(("ETag", tag(v))).finish());
    }
    let page = state
        .projections
        .contact_history(course, &filter, q.cursor.as_deref(), limit)
        .map_err(projection_error)?
        .ok_or(ApiError::NotFound)?;
    use_.record(&state, &caller, &req, Some(course)).await;
    let tag = tag(page.course_version);
    super::tagged_json(&req, tag, &page, page.json_size_hint())
}

/// Contacts per ISO week and month by role, channel, direction and outreach; days since the
/// young person was last in contact; the longest gap; compliance with the programme's rule and
/// the agreed contact plan.
#[utoipa::path(
    get, path = "/v1/courses/{id}/contact-frequency", tag = "course reads",
    description = "Requires permission `read_contact_history`.",
    params(("id" = uuid::Uuid, Path)),
    responses(
        (status = 200, description = "Contact frequency", body = Object),
        (status = 404, description = "No such course, or not yours to see", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/v1/courses/{id}/contact-frequency")]
pub async fn contact_frequency(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let course = visible(&state, &caller, &req, Permission::ReadContactHistory).await?;
    let use_ = Use::begin(&req, AccessKind::Read, false)?;
    let f = state.projections.contact_frequency(course).ok_or(ApiError::NotFound)?;
    use_.record(&state, &caller, &req, Some(course)).await;
    super::etag_json(&req, &f)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ActionsQuery {
    /// open, overdue, done, cancelled (default: all)
    pub status: Option<String>,
}

fn action_filter(
    items: Vec<crate::projections::views::ActionItem>,
    status: Option<&str>,
) -> Result<Vec<crate::projections::views::ActionItem>, ApiError> {
    let Some(status) = status else { return Ok(items) };
    if !["open", "overdue", "done", "cancelled"].contains(&status) {
        return Err(ApiError::InvalidParameter("status must be open, overdue, done or cancelled".into()));
    }
    Ok(items
        .into_iter()
        .filter(|a| {
            let s = serde_json::to_value(a.state).ok();
            let s = s.as_ref().and_then(|v| v.as_str()).unwrap_or("");
            // "open" includes overdue ones: they are still open.
            s == status || (status == "open" && s == "overdue")
        })
        .collect())
}

/// Agreed actions of a course, with who agreed, the method, the linked goal and reschedules.
#[utoipa::path(
    get, path = "/v1/courses/{id}/actions", tag = "course reads",
    description = "Requires permission `read_course`.",
    params(("id" = uuid::Uuid, Path), ActionsQuery),
    responses(
        (status = 200, description = "Actions", body = Vec<Object>),
        (status = 400, description = "Unknown status", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such course, or not yours to see", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/v1/courses/{id}/actions")]
pub async fn course_actions(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    q: web::Query<ActionsQuery>,
) -> Result<HttpResponse, ApiError> {
    let course = visible(&state, &caller, &req, Permission::ReadCourse).await?;
    let use_ = Use::begin(&req, AccessKind::Read, false)?;
    let items =
        action_filter(state.projections.course_actions(course).ok_or(ApiError::NotFound)?, q.status.as_deref())?;
    use_.record(&state, &caller, &req, Some(course)).await;
    super::etag_json(&req, &items)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StateQuery {
    /// RFC 3339: the course as it stood with every event recorded at or before this instant.
    pub as_of: Option<String>,
    /// Or: the course as of this stream version.
    pub version: Option<u64>,
}

/// The course status and contact frequency as they stood at a time or version, replayed from the
/// course's own events.
#[utoipa::path(
    get, path = "/v1/courses/{id}/state", tag = "course reads",
    description = "Requires permission `read_contact_history`.",
    params(("id" = uuid::Uuid, Path), StateQuery),
    responses(
        (status = 200, description = "`{status, contact_frequency}` as of the cut", body = Object),
        (status = 400, description = "Malformed as_of", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such course, or not yours to see, or nothing before the cut", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/v1/courses/{id}/state")]
pub async fn course_state(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    q: web::Query<StateQuery>,
) -> Result<HttpResponse, ApiError> {
    let course = visible(&state, &caller, &req, Permission::ReadContactHistory).await?;
    let use_ = Use::begin(&req, AccessKind::Read, false)?;
    let cut = match (&q.as_of, q.version) {
        (Some(_), Some(_)) => return Err(ApiError::InvalidParameter("give as_of or version, not both".into())),
        (Some(t), None) => AsOf::RecordedAt(
            OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .map_err(|_| ApiError::InvalidParameter("as_of must be an RFC 3339 timestamp".into()))?,
        ),
        (None, Some(v)) => AsOf::Version(v),
        (None, None) => AsOf::Head,
    };
    let projections = state.projections.clone();
    let r = web::block(move || projections.course_as_of(course, cut))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(projection_error)?;
    let (status, frequency) = r.ok_or(ApiError::NotFound)?;
    use_.record(&state, &caller, &req, Some(course)).await;
    super::etag_json(&req, &serde_json::json!({"status": status, "contact_frequency": frequency}))
}

/// The phone's home screen: my open courses with their next actions and whether contact is due.
#[utoipa::path(
    get, path = "/v1/me/courses", tag = "me",
    responses(
        (status = 200, description = "My courses, most urgent first", body = Vec<Object>),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/v1/me/courses")]
pub async fn my_courses(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    access::require(&caller.0, Permission::ReadCourse)?;
    super::etag_json(&req, &state.projections.my_courses(caller.0.account_id))
}

/// My agreed actions across courses.
#[utoipa::path(
    get, path = "/v1/me/actions", tag = "me",
    params(ActionsQuery),
    responses(
        (status = 200, description = "Actions I own, across courses", body = Vec<Object>),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/v1/me/actions")]
pub async fn my_actions(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    q: web::Query<ActionsQuery>,
) -> Result<HttpResponse, ApiError> {
    access::require(&caller.0, Permission::ReadCourse)?;
    let items = state.projections.actions_of(caller.0.account_id);
    // Only actions on courses the caller can still see.
    let visible = state.projections.courses_of(caller.0.account_id);
    let items = items.into_iter().filter(|a| a.course_id.is_none_or(|c| visible.contains(&c))).collect();
    super::etag_json(&req, &action_filter(items, q.status.as_deref())?)
}

/// A caseworker's courses ordered by how overdue contact with the young person is.
#[utoipa::path(
    get, path = "/v1/me/contact-worklist", tag = "me",
    responses(
        (status = 200, description = "Courses, most overdue first", body = Vec<Object>),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/v1/me/contact-worklist")]
pub async fn contact_worklist(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    access::require(&caller.0, Permission::ReadContactHistory)?;
    super::etag_json(&req, &state.projections.contact_worklist(caller.0.account_id))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CoursesQuery {
    /// Only courses in this contact-compliance state: ok, due_soon, overdue.
    pub compliance: Option<String>,
}

/// The caller's courses (auditors: every course), each with a summary and its contact
/// compliance.
#[utoipa::path(
    get, path = "/v1/courses", tag = "course reads",
    params(CoursesQuery),
    responses(
        (status = 200, description = "Courses", body = Vec<Object>),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/v1/courses")]
pub async fn list_courses(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    q: web::Query<CoursesQuery>,
) -> Result<HttpResponse, ApiError> {
    access::require(&caller.0, Permission::ReadCourse)?;
    // An auditor's list is a search across every course: it needs a purpose and leaves a trace.
    let search = if caller.0.role == Role::Auditor { Some(Use::search(&req, true)?) } else { None };
    let mut list = if caller.0.role == Role::Auditor {
        state.projections.all_course_summaries()
    } else {
        state.projections.my_courses(caller.0.account_id)
    };
    if let Some(c) = &q.compliance {
        if !["ok", "due_soon", "overdue"].contains(&c.as_str()) {
            return Err(ApiError::InvalidParameter("compliance must be ok, due_soon or overdue".into()));
        }
        list.retain(|m| serde_json::to_value(m.contact).ok().and_then(|v| v.as_str().map(|s| s == c)).unwrap_or(false));
    }
    if let Some(u) = search {
        u.record(&state, &caller, &req, None).await;
    }
    super::etag_json(&req, &list)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SyncQuery {
    /// The `next` position from the previous sync (0 to start).
    pub after: Option<u64>,
    /// At most this many events (default 200, at most 1000).
    pub limit: Option<usize>,
}

/// Delta sync for phones: the events the caller may see after a log position, and where to ask
/// from next. At most 20,000 positions are scanned per call; `next` may move without events.
#[utoipa::path(
    get, path = "/v1/sync", tag = "me",
    params(SyncQuery),
    responses(
        (status = 200, description = "`{events, next, more}`", body = Object),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/v1/sync")]
pub async fn sync(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    q: web::Query<SyncQuery>,
) -> Result<HttpResponse, ApiError> {
    access::require(&caller.0, Permission::ReadCourse)?;
    // An auditor's sync reads every course: a search across courses, with a purpose.
    let search = if caller.0.role == Role::Auditor { Some(Use::search(&req, true)?) } else { None };
    let after = q.after.unwrap_or(0);
    let limit = q.limit.unwrap_or(200).clamp(1, 1000);
    let p = caller.0.clone();
    let courses: std::collections::HashSet<uuid::Uuid> = if p.role == Role::Auditor {
        Default::default()
    } else {
        state.projections.courses_of(p.account_id).into_iter().map(|c| c.0).collect()
    };
    let history = access::allows(p.role, Permission::ReadContactHistory);
    let log = state.app.log.clone();
    let result = web::block(move || -> Result<serde_json::Value, ApiError> {
        let head = log.committed();
        let scan_to = head.min(after.saturating_add(20_000));
        let mut events = Vec::new();
        let mut next = after;
        for e in log.iter_from(after + 1).map_err(|e| ApiError::Internal(e.to_string()))? {
            let e = e.map_err(|e| ApiError::Internal(e.to_string()))?;
            if e.position > scan_to || events.len() >= limit {
                break;
            }
            next = e.position;
            if e.stream.category() != "course" {
                continue;
            }
            let Some(course) = e.stream.entity_id() else { continue };
            if p.role != Role::Auditor && !courses.contains(&course) {
                continue;
            }
            if !history && is_conversation(&e.event_type) {
                continue;
            }
            events.push(serde_json::to_value(e.to_json()).unwrap_or_default());
        }
        Ok(serde_json::json!({"events": events, "next": next, "more": next < head}))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    if let Some(u) = search {
        u.record(&state, &caller, &req, None).await;
    }
    Ok(HttpResponse::Ok().json(result))
}

/// Event types that carry conversation content, hidden from roles without
/// `read_contact_history` (the network sees status and actions, not conversations).
fn is_conversation(event_type: &str) -> bool {
    matches!(
        event_type,
        "ContactLogged" | "CheckInLogged" | "GuidanceSessionHeld" | "MeetingHeld" | "EventCorrected" | "EventRetracted"
    )
}
