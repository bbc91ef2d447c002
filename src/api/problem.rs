//! Every error leaves as RFC 9457 `application/problem+json` with a stable `code`, mapped here
//! and nowhere else.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::app::AppError;
use crate::domain::DomainError;

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem: `urn:vivirk:problem:{code}`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What went wrong in this instance, for a person. Never contains personal data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The stable, machine-readable code; see the table of error codes.
    pub code: &'static str,
    /// For `412`: the current version of the stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<u64>,
    /// For `429`: seconds to wait.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

/// Errors of the HTTP layer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    App(#[from] AppError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    /// The body is not JSON, not the right shape, or a field is out of bounds.
    #[error("{0}")]
    InvalidBody(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("the request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("send the body as application/json")]
    UnsupportedMediaType,
    #[error("missing or malformed bearer token")]
    Unauthenticated,
    #[error("Idempotency-Key was used with a different request")]
    IdempotencyMismatch,
    #[error("a request with this Idempotency-Key is still being processed")]
    IdempotencyInProgress,
    #[error("the X-Purpose header is required for this kind of use")]
    PurposeRequired,
    #[error("no such resource")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("internal error")]
    Internal(String),
}

/// One row per code: (code, HTTP status, meaning). Published in the README and OpenAPI.
pub const API_ERROR_CODES: &[(&str, u16, &str)] = &[
    ("invalid_body", 400, "The body is not valid JSON or does not have the documented shape."),
    ("invalid_parameter", 400, "A path or query parameter is malformed."),
    ("unauthenticated", 401, "No valid bearer token."),
    ("forbidden", 403, "Your role may not do this."),
    ("not_found", 404, "No such resource, or you may not see it (the same answer, on purpose)."),
    ("method_not_allowed", 405, "The path exists with other methods."),
    ("conflict", 409, "Someone else wrote to the same course at the same time; retry."),
    ("event_id_conflict", 409, "The client event id is already used by different content."),
    ("idempotency_in_progress", 409, "A request with this Idempotency-Key is still being processed."),
    ("precondition_failed", 412, "If-Match does not match the stream's current version."),
    ("body_too_large", 413, "The body exceeds the size limit."),
    ("unsupported_media_type", 415, "Send application/json."),
    ("idempotency_key_reused", 422, "The Idempotency-Key was used before with a different request."),
    ("purpose_required", 428, "Send X-Purpose for searches across courses and for exports."),
    ("storage_unavailable", 503, "The log cannot take writes right now (disk full, read-only); reads still work."),
    ("internal", 500, "A bug or damaged data; the details are in the server log, never in the response."),
];

/// Domain refusals are client errors; which kind depends on what was refused.
fn domain_status(e: &DomainError) -> StatusCode {
    match e.code() {
        // The command contradicts the course's current state.
        "course_not_opened"
        | "course_already_opened"
        | "course_closed"
        | "already_assigned"
        | "not_assigned"
        | "duplicate_id"
        | "goal_not_open"
        | "action_not_open"
        | "placement_not_active"
        | "placement_already_active"
        | "event_retracted"
        | "phase_unchanged"
        | "company_already_registered"
        | "mentor_already_registered" => StatusCode::CONFLICT,
        // The caller is not the right person on this course.
        "not_permitted" | "not_a_participant" | "not_course_mentor" => StatusCode::FORBIDDEN,
        // Everything else: the content is not acceptable.
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::App(e) => match e {
                AppError::NotFound => "not_found",
                AppError::Forbidden(_) => "forbidden",
                AppError::Domain(d) => d.code(),
                AppError::PreconditionFailed { .. } => "precondition_failed",
                AppError::Concurrent => "conflict",
                AppError::EventIdConflict(_) => "event_id_conflict",
                AppError::Invalid(_) => "invalid_body",
                AppError::Storage(_) => "storage_unavailable",
                AppError::Damaged(_) => "internal",
            },
            ApiError::Auth(e) => e.code(),
            ApiError::InvalidBody(_) => "invalid_body",
            ApiError::InvalidParameter(_) => "invalid_parameter",
            ApiError::BodyTooLarge(_) => "body_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::IdempotencyMismatch => "idempotency_key_reused",
            ApiError::IdempotencyInProgress => "idempotency_in_progress",
            ApiError::PurposeRequired => "purpose_required",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Internal(_) => "internal",
        }
    }

    fn detail(&self) -> Option<String> {
        match self {
            // Internal details stay in the server log.
            ApiError::Internal(_) | ApiError::App(AppError::Damaged(_)) => None,
            ApiError::App(AppError::Storage(_)) => {
                Some("the record cannot take writes right now; try again later".into())
            }
            other => Some(other.to_string()),
        }
    }

    pub fn problem(&self) -> Problem {
        let status = self.status_code();
        let code = self.code();
        Problem {
            kind: format!("urn:vivirk:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: self.detail(),
            code,
            current_version: match self {
                ApiError::App(AppError::PreconditionFailed { current }) => Some(*current),
                _ => None,
            },
            retry_after: match self {
                ApiError::Auth(e) => e.retry_after_secs(),
                _ => None,
            },
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::App(e) => match e {
                AppError::NotFound => StatusCode::NOT_FOUND,
                AppError::Forbidden(_) => StatusCode::FORBIDDEN,
                AppError::Domain(d) => domain_status(d),
                AppError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
                AppError::Concurrent | AppError::EventIdConflict(_) => StatusCode::CONFLICT,
                AppError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
                AppError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
                AppError::Damaged(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::Auth(e) => StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED),
            ApiError::InvalidBody(_) | ApiError::InvalidParameter(_) => StatusCode::BAD_REQUEST,
            ApiError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::IdempotencyMismatch => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::IdempotencyInProgress => StatusCode::CONFLICT,
            ApiError::PurposeRequired => StatusCode::PRECONDITION_REQUIRED,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            // Ids and codes only: the message may name a position, never personal data.
            tracing::error!(code = self.code(), error = %self, "request failed");
        }
        let mut r = HttpResponse::build(status);
        r.content_type("application/problem+json");
        if status == StatusCode::UNAUTHORIZED {
            r.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if let ApiError::Auth(e) = self
            && let Some(s) = e.retry_after_secs()
        {
            r.insert_header(("Retry-After", s.to_string()));
        }
        r.json(self.problem())
    }
}
