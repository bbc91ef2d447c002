//! Audit endpoints: the course record as a verifiable export, signed checkpoints and their
//! public key, the access log (auditors) and the young person's view of who-looked-when (without
//! who). Also the helper every course read uses to leave its trace ([`Use`]).

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, MessageBody};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::Deserialize;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use super::AppState;
use super::extract::{Caller, path_id};
use super::problem::{ApiError, Problem};
use crate::app::{AppError, Permission, access};
use crate::audit::export::{Scope, write_export};
use crate::audit::{
    AccessEntry, AccessFilter, AccessKind, AccessPage, PublicKey, SignedCheckpoint, access::parse_cursor,
};
use crate::domain::{CourseId, Role};

/// Longest accepted `X-Purpose`, in characters.
pub const MAX_PURPOSE: usize = 200;

/// Reads `X-Purpose`: 1..=200 printable UTF-8 characters. `required` turns its absence into
/// `428 purpose_required`. The purpose is stored in the access log and never traced (it is
/// free text and might name someone).
pub fn purpose(req: &HttpRequest, required: bool) -> Result<Option<String>, ApiError> {
    let value = match req.headers().get("x-purpose") {
        None if required => return Err(ApiError::PurposeRequired),
        None => return Ok(None),
        Some(v) => v,
    };
    let text = std::str::from_utf8(value.as_bytes())
        .map_err(|_| ApiError::InvalidParameter("X-Purpose must be UTF-8 text".into()))?
        .trim();
    if text.is_empty() {
        return if required { Err(ApiError::PurposeRequired) } else { Ok(None) };
    }
    if text.chars().count() > MAX_PURPOSE || text.chars().any(char::is_control) {
        return Err(ApiError::InvalidParameter(format!("X-Purpose must be 1..={MAX_PURPOSE} printable characters")));
    }
    Ok(Some(text.to_owned()))
}

/// One use of course data, begun before the data is read (so a missing or malformed purpose
/// refuses the request) and recorded once it was served.
pub struct Use {
    kind: AccessKind,
    purpose: Option<String>,
    criteria: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Use {
    pub fn begin(req: &HttpRequest, kind: AccessKind, purpose_required: bool) -> Result<Self, ApiError> {
        Ok(Use { kind, purpose: purpose(req, purpose_required)?, criteria: None })
    }

    /// A search: its criteria are the query parameters as sent, minus paging.
    pub fn search(req: &HttpRequest, purpose_required: bool) -> Result<Self, ApiError> {
        let mut u = Self::begin(req, AccessKind::Search, purpose_required)?;
        let pairs = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
            .map(|q| q.into_inner())
            .unwrap_or_default();
        u.criteria = Some(
            pairs
                .into_iter()
                .filter(|(k, _)| k != "limit" && k != "cursor")
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect(),
        );
        Ok(u)
    }

    /// Queues the entry (no I/O on this path). The young person reading their own course is not
    /// logged: the log exists to show the data subject and the auditors how *others* used the
    /// data, and a young person can only ever see their own course.
    pub async fn record(self, state: &AppState, caller: &Caller, req: &HttpRequest, course: Option<CourseId>) {
        if caller.0.role == Role::YoungPerson {
            return;
        }
        let entry = AccessEntry {
            at: state.access_log.now(),
            account_id: Some(caller.0.account_id.0),
            role: caller.0.role.as_str().to_owned(),
            course_id: course.map(|c| c.0),
            kind: self.kind,
            resource: format!("{} {}", req.method(), req.match_pattern().unwrap_or_default()),
            criteria: self.criteria,
            purpose: self.purpose,
        };
        state.access_log.record(entry).await;
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RecordQuery {
    /// What the download is for, as the access log records it: `export` (default) or `replay`.
    pub kind: Option<String>,
}

/// A streaming body fed from a blocking writer, so a long record never sits whole in memory.
struct ChannelBody(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl MessageBody for ChannelBody {
    type Error = std::io::Error;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        self.get_mut().0.poll_recv(cx)
    }
}

/// `Write` that hands 64 KiB chunks to the response body.
struct ChunkWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(64 * 1024)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= 64 * 1024 {
            self.send()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// The full course record as JSON lines: a header (format, scope, the latest signed checkpoint,
/// the checkpoint public key), then every envelope with its hashes, oldest first. The same format
/// as `vivirk export --course`; check it offline with `vivirk verify --file`.
#[utoipa::path(
    get, path = "/v1/courses/{id}/record", tag = "audit",
    description = "Requires permission `read_record` and `X-Purpose` (stored in the access log as an export or \
        replay). Streamed as `application/x-ndjson`; if the server fails half-way the body ends early, which \
        verification reports as truncated.",
    params(("id" = uuid::Uuid, Path), RecordQuery, ("X-Purpose" = String, Header, description = "Why the record is taken")),
    responses(
        (status = 200, description = "Header line, then one envelope per line", content_type = "application/x-ndjson", body = String),
        (status = 400, description = "Malformed kind or purpose", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Your role may not read the record", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such course, or not yours to see", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "X-Purpose missing", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/v1/courses/{id}/record")]
pub async fn course_record(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    q: web::Query<RecordQuery>,
) -> Result<HttpResponse, ApiError> {
    let course = CourseId(path_id(&req, "id")?);
    state.app.check_course_visible(&caller.0, course).await?;
    access::require(&caller.0, Permission::ReadRecord)?;
    let kind = match q.kind.as_deref() {
        None | Some("export") => AccessKind::Export,
        Some("replay") => AccessKind::Replay,
        Some(_) => return Err(ApiError::InvalidParameter("kind must be export or replay".into())),
    };
    let use_ = Use::begin(&req, kind, true)?;
    let checkpoints = state.checkpoints.clone();
    let checkpoint = web::block(move || checkpoints.sign_if_moved()).await.map_err(internal)?.map_err(internal)?;
    use_.record(&state, &caller, &req, Some(course)).await;
    let (tx, rx) = mpsc::channel(8);
    let log = state.app.log.clone();
    let key = state.checkpoints.public_key().clone();
    let now = state.app.clock.now();
    tokio::task::spawn_blocking(move || {
        let mut w = ChunkWriter { tx: tx.clone(), buf: Vec::with_capacity(64 * 1024) };
        let scope = Scope::Course { course_id: course.0 };
        if let Err(e) = write_export(&log, scope, checkpoint, Some(key), now, &mut w) {
            // The status line is gone; ending the body with an error makes the client see a
            // truncated download, which verification names.
            tracing::error!(course = %course.0, error = %e, "record download failed");
            let _ = tx.blocking_send(Err(std::io::Error::other("record download failed")));
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header(("Cache-Control", "no-store"))
        .body(ChannelBody(rx)))
}

/// The latest signed checkpoint of the global hash chain, signed now if the log moved since.
#[utoipa::path(
    get, path = "/v1/checkpoints/latest", tag = "audit",
    description = "Requires permission `read_record`. Verify the signature with the key at \
        `/.well-known/vivirk-checkpoint-key`; keep checkpoints you fetch — each proves the record up to its \
        position.",
    responses(
        (status = 200, description = "The checkpoint", body = SignedCheckpoint),
        (status = 403, description = "Your role may not read the record", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The log is empty", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/v1/checkpoints/latest")]
pub async fn latest_checkpoint(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    access::require(&caller.0, Permission::ReadRecord)?;
    let checkpoints = state.checkpoints.clone();
    let cp = web::block(move || checkpoints.sign_if_moved()).await.map_err(internal)?.map_err(internal)?;
    Ok(HttpResponse::Ok().insert_header(("Cache-Control", "no-store")).json(cp.ok_or(ApiError::NotFound)?))
}

/// The public key that verifies checkpoints (an OKP JWK). Stable: it changes only if the key
/// file is replaced, and then old checkpoints name the old `kid`.
#[utoipa::path(
    get, path = "/.well-known/vivirk-checkpoint-key", tag = "audit",
    responses((status = 200, description = "`{kty, crv, x, kid}`", body = PublicKey))
)]
#[get("/.well-known/vivirk-checkpoint-key")]
pub async fn checkpoint_key(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().insert_header(("Cache-Control", "public, max-age=300")).json(state.checkpoints.public_key())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AccessLogQuery {
    /// Only uses of this course.
    pub course: Option<uuid::Uuid>,
    /// Only uses by this account.
    pub account: Option<uuid::Uuid>,
    /// From this instant (RFC 3339), inclusive.
    pub from: Option<String>,
    /// Until this instant (RFC 3339), exclusive.
    pub to: Option<String>,
    /// Page size, 1–1000 (default 100).
    pub limit: Option<usize>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

fn instant(s: &Option<String>, name: &str) -> Result<Option<OffsetDateTime>, ApiError> {
    s.as_deref()
        .map(|t| {
            OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .map_err(|_| ApiError::InvalidParameter(format!("{name} must be an RFC 3339 timestamp")))
        })
        .transpose()
}

fn page_params(limit: Option<usize>, cursor: &Option<String>) -> Result<(usize, Option<[u8; 16]>), ApiError> {
    let limit = limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::InvalidParameter("limit must be 1..=1000".into()));
    }
    let cursor = cursor
        .as_deref()
        .map(|c| parse_cursor(c).ok_or_else(|| ApiError::InvalidParameter("malformed cursor".into())))
        .transpose()?;
    Ok((limit, cursor))
}

/// The access log: every read, search, export and replay of course data, oldest first.
#[utoipa::path(
    get, path = "/v1/access-log", tag = "audit",
    description = "Requires permission `read_access_log`. Entries are kept for the retention period (default 183 \
        days), then deleted. The newest ~100 ms of uses are written before the answer.",
    params(AccessLogQuery),
    responses(
        (status = 200, description = "A page of entries: `{items, next_cursor}`", body = AccessPage),
        (status = 400, description = "A malformed parameter", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an auditor", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/v1/access-log")]
pub async fn access_log(
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<AccessLogQuery>,
) -> Result<HttpResponse, ApiError> {
    access::require(&caller.0, Permission::ReadAccessLog)?;
    let (limit, cursor) = page_params(q.limit, &q.cursor)?;
    let filter = AccessFilter {
        course: q.course,
        account: q.account,
        from: instant(&q.from, "from")?,
        to: instant(&q.to, "to")?,
        cursor,
        limit,
    };
    let page = state.access_log.query(filter).await.map_err(internal)?;
    Ok(HttpResponse::Ok().insert_header(("Cache-Control", "no-store")).json(page))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MyAccessLogQuery {
    /// Page size, 1–1000 (default 100).
    pub limit: Option<usize>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

/// One look-up of my data, as I may see it: when (the Copenhagen date), how and why — not who.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct MyAccessItem {
    /// The Copenhagen date of the look-up, `YYYY-MM-DD`.
    pub date: String,
    pub course_id: uuid::Uuid,
    pub kind: AccessKind,
    pub purpose: Option<String>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct MyAccessPage {
    /// Oldest first.
    pub items: Vec<MyAccessItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Look-ups of my own course: dates, kinds and purposes, without the employees' identities or
/// roles (in a small team a role names a person), and without search criteria (they can name
/// participants).
#[utoipa::path(
    get, path = "/v1/me/access-log", tag = "me",
    description = "For young people: the uses of the courses they are the young person of.",
    params(MyAccessLogQuery),
    responses(
        (status = 200, description = "`{items, next_cursor}`", body = MyAccessPage),
        (status = 400, description = "A malformed parameter", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a young person", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/v1/me/access-log")]
pub async fn my_access_log(
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<MyAccessLogQuery>,
) -> Result<HttpResponse, ApiError> {
    if caller.0.role != Role::YoungPerson {
        return Err(AppError::Forbidden("read_own_access_log").into());
    }
    let (limit, cursor) = page_params(q.limit, &q.cursor)?;
    let me = caller.0.account_id;
    let courses: Vec<CourseId> = state
        .projections
        .courses_of(me)
        .into_iter()
        .filter(|c| state.projections.course_participants(*c).contains(&(me, Role::YoungPerson)))
        .collect();
    // Keys are global and time-ordered, so one cursor pages across several courses: take a
    // page from each, merge, keep the first `limit`.
    let mut items = Vec::new();
    let mut more = false;
    for course in courses {
        let filter = AccessFilter { course: Some(course.0), cursor, limit, ..Default::default() };
        let page = state.access_log.query(filter).await.map_err(internal)?;
        more |= page.next_cursor.is_some();
        items.extend(page.items);
    }
    items.sort_by(|a, b| a.id.cmp(&b.id));
    if items.len() > limit {
        items.truncate(limit);
        more = true;
    }
    let next_cursor = if more { items.last().map(|s| s.id.clone()) } else { None };
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let items = items
        .into_iter()
        .filter_map(|s| {
            Some(MyAccessItem {
                date: crate::projections::cph::local_date(s.entry.at).format(&fmt).ok()?,
                course_id: s.entry.course_id?,
                kind: s.entry.kind,
                purpose: s.entry.purpose,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().insert_header(("Cache-Control", "no-store")).json(MyAccessPage { items, next_cursor }))
}

/// The result of a sweep.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SweepResult {
    /// Entries deleted.
    pub deleted: u64,
    /// Entries recorded before this instant were deleted.
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "time::serde::rfc3339")]
    pub cutoff: OffsetDateTime,
}

/// Runs the access-log cleaner now (it also runs on its own, hourly by default): deletes entries
/// older than the retention period, by the server's clock.
#[utoipa::path(
    post, path = "/v1/access-log/sweep", tag = "audit",
    description = "Admins only: retention is an operational duty; auditors read the log but do not remove from it.",
    responses(
        (status = 200, description = "What was deleted", body = SweepResult),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/v1/access-log/sweep")]
pub async fn sweep_access_log(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    if caller.0.role != Role::Admin {
        return Err(AppError::Forbidden("sweep_access_log").into());
    }
    let now = state.app.clock.now();
    let deleted = state.access_log.sweep(now).await.map_err(internal)?;
    Ok(HttpResponse::Ok().json(SweepResult { deleted, cutoff: now - state.access_log.retention() }))
}
