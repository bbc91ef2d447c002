//! Parsing at the edge: the caller, headers, bodies and path ids become typed values here, or a
//! clear 4xx problem.

use std::future::{Ready, ready};

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use uuid::Uuid;

use super::AppState;
use super::problem::ApiError;
use crate::app::{Principal, WriteOptions};

/// The authenticated caller: as the application sees it, and as the auth module does.
pub struct Caller(pub Principal, pub crate::auth::Principal);

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(caller(req))
    }
}

fn caller(req: &HttpRequest) -> Result<Caller, ApiError> {
    let state = req.app_data::<web::Data<AppState>>().ok_or_else(|| ApiError::Internal("no state".into()))?;
    let header = req.headers().get("authorization").ok_or(ApiError::Unauthenticated)?;
    let value = header.to_str().map_err(|_| ApiError::Unauthenticated)?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(ApiError::Unauthenticated)?
        .trim();
    let p = state.auth.verify_access(token)?;
    Ok(Caller(Principal { account_id: p.account_id, role: p.role }, p))
}

/// A path segment that must be a UUID.
pub fn path_id(req: &HttpRequest, name: &str) -> Result<Uuid, ApiError> {
    let raw = req.match_info().get(name).ok_or_else(|| ApiError::InvalidParameter(format!("missing {name}")))?;
    Uuid::try_parse(raw).map_err(|_| ApiError::InvalidParameter(format!("{name} must be a UUID")))
}

/// Checks the content type and parses a JSON body (the size is capped by `PayloadConfig`).
pub fn json_value(req: &HttpRequest, body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let ct = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if mime != "application/json" && !(mime.starts_with("application/") && mime.ends_with("+json")) {
        return Err(ApiError::UnsupportedMediaType);
    }
    // serde_json refuses nesting deeper than 128 levels, so hostile depth is a 400, not a crash.
    serde_json::from_slice(body).map_err(|e| ApiError::InvalidBody(format!("not valid JSON: {e}")))
}

pub fn from_value<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::InvalidBody(e.to_string()))
}

/// The write metadata a body may carry next to the event's own fields.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteMeta {
    event_id: Option<Uuid>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    occurred_at: Option<OffsetDateTime>,
    device_id: Option<String>,
}

pub const WRITE_META_FIELDS: [&str; 3] = ["event_id", "occurred_at", "device_id"];

/// Splits a body object into the write metadata and the event's own fields, and reads the write
/// headers (`If-Match`, `X-Correlation-Id`).
pub fn write_options(req: &HttpRequest, body: &mut serde_json::Value) -> Result<WriteOptions, ApiError> {
    let obj = body.as_object_mut().ok_or_else(|| ApiError::InvalidBody("the body must be a JSON object".into()))?;
    let mut meta = serde_json::Map::new();
    for f in WRITE_META_FIELDS {
        if let Some(v) = obj.remove(f) {
            meta.insert(f.to_owned(), v);
        }
    }
    let meta: WriteMeta = from_value(serde_json::Value::Object(meta))?;
    if let Some(d) = &meta.device_id
        && (d.is_empty() || d.len() > 128 || d.chars().any(char::is_control))
    {
        return Err(ApiError::InvalidBody("device_id must be 1..=128 printable characters".into()));
    }
    let if_match = match req.headers().get("if-match") {
        None => None,
        Some(v) => {
            let s = v.to_str().map_err(|_| ApiError::InvalidParameter("If-Match is not text".into()))?;
            let s = s.trim().trim_start_matches("W/").trim_matches('"');
            Some(s.parse::<u64>().map_err(|_| ApiError::InvalidParameter("If-Match must be a stream version".into()))?)
        }
    };
    let correlation_id =
        req.headers().get("x-correlation-id").and_then(|v| v.to_str().ok()).and_then(|s| Uuid::try_parse(s).ok());
    Ok(WriteOptions {
        if_match,
        event_id: meta.event_id,
        occurred_at: meta.occurred_at,
        correlation_id,
        device_id: meta.device_id,
    })
}

/// Puts an id from the path into the body, or checks the body's matches it.
pub fn bind_id(body: &mut serde_json::Value, field: &str, id: Uuid) -> Result<(), ApiError> {
    let obj = body.as_object_mut().ok_or_else(|| ApiError::InvalidBody("the body must be a JSON object".into()))?;
    match obj.get(field) {
        None => {
            obj.insert(field.to_owned(), serde_json::Value::String(id.to_string()));
            Ok(())
        }
        Some(v) if v.as_str().and_then(|s| Uuid::try_parse(s).ok()) == Some(id) => Ok(()),
        Some(_) => Err(ApiError::InvalidBody(format!("{field} in the body does not match the path"))),
    }
}

/// Fills a new thing's id when the client did not choose one.
pub fn default_id(body: &mut serde_json::Value, field: &str) -> Result<(), ApiError> {
    let obj = body.as_object_mut().ok_or_else(|| ApiError::InvalidBody("the body must be a JSON object".into()))?;
    obj.entry(field.to_owned()).or_insert_with(|| serde_json::Value::String(Uuid::now_v7().to_string()));
    Ok(())
}
