//! `/v1/companies`: the network of local companies, their mentors and relational capacity.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::de::DeserializeOwned;

use super::AppState;
use super::courses::idempotent_write;
use super::extract::{Caller, default_id, from_value, json_value, path_id};
use super::problem::{ApiError, Problem};
use crate::app::{Permission, Written, access};
use crate::domain::company::{CompanyRegistered, MentorRegistered, RelationalCapacityAssessed};
use crate::domain::{CompanyCommand, CompanyId};

async fn company_write<T: DeserializeOwned>(
    state: &AppState,
    caller: &Caller,
    req: &HttpRequest,
    body: &[u8],
    id: Option<CompanyId>,
    command: fn(T) -> CompanyCommand,
) -> Result<HttpResponse, ApiError> {
    idempotent_write(state, caller, req, body, |v, opts| async move {
        let id = match id {
            Some(id) => id,
            None => CompanyId(path_id(req, "company_id")?),
        };
        let payload: T = from_value(v)?;
        let mut w = state.app.execute_company(&caller.0, id, command(payload), opts).await?;
        if req.path() == "/v1/companies" {
            w.id = Some(id.0);
        }
        Ok(w)
    })
    .await
}

/// Register a company (social-economic enterprise or ordinary company).
#[utoipa::path(
    post, path = "/v1/companies", tag = "companies",
    description = "Requires permission `manage_companies`. `company_id` is generated when absent.",
    request_body(content = CompanyRegistered, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered", body = Written),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Your role may not manage companies", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already registered", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/v1/companies")]
pub async fn register_company(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    access::require(&caller.0, Permission::ManageCompanies)?;
    let mut v = json_value(&req, &body)?;
    default_id(&mut v, "company_id")?;
    let id = v.get("company_id").and_then(|s| s.as_str()).and_then(|s| uuid::Uuid::try_parse(s).ok());
    let Some(id) = id else { return Err(ApiError::InvalidBody("company_id must be a UUID".into())) };
    let body = serde_json::to_vec(&v).map_err(|e| ApiError::Internal(e.to_string()))?;
    company_write(&state, &caller, &req, &body, Some(CompanyId(id)), CompanyCommand::RegisterCompany).await
}

/// Register a mentor at a company.
#[utoipa::path(
    post, path = "/v1/companies/{company_id}/mentors", tag = "companies",
    description = "Requires permission `manage_companies`.",
    request_body(content = MentorRegistered, content_type = "application/json"),
    params(("company_id" = uuid::Uuid, Path)),
    responses(
        (status = 201, description = "Registered", body = Written),
        (status = 403, description = "Your role may not manage companies", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Unknown company or mentor already registered", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/v1/companies/{company_id}/mentors")]
pub async fn register_mentor(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    company_write(&state, &caller, &req, &body, None, CompanyCommand::RegisterMentor).await
}

/// Record an assessment of the company's relational capacity.
#[utoipa::path(
    post, path = "/v1/companies/{company_id}/relational-capacity", tag = "companies",
    description = "Requires permission `manage_companies`.",
    request_body(content = RelationalCapacityAssessed, content_type = "application/json"),
    params(("company_id" = uuid::Uuid, Path)),
    responses(
        (status = 201, description = "Recorded", body = Written),
        (status = 403, description = "Your role may not manage companies", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Score outside 1–5 or texts too long", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/v1/companies/{company_id}/relational-capacity")]
pub async fn assess_relational_capacity(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    company_write(&state, &caller, &req, &body, None, CompanyCommand::AssessRelationalCapacity).await
}

/// One company with its mentors and latest relational-capacity assessment.
#[utoipa::path(
    get, path = "/v1/companies/{company_id}", tag = "companies",
    description = "Requires permission `read_companies`.",
    params(("company_id" = uuid::Uuid, Path)),
    responses(
        (status = 200, description = "The company", body = Object),
        (status = 404, description = "No such company", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/v1/companies/{company_id}")]
pub async fn company(state: web::Data<AppState>, caller: Caller, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    access::require(&caller.0, Permission::ReadCompanies)?;
    let id = CompanyId(path_id(&req, "company_id")?);
    let (version, company) = state.app.company(id).await?;
    super::etag_json(&req, &serde_json::json!({"company_id": id, "version": version, "company": company}))
}

/// Every registered company, with its mentors and relational-capacity assessments, for
/// matching young people to companies.
#[utoipa::path(
    get, path = "/v1/companies", tag = "companies",
    description = "Requires permission `read_companies`.",
    responses(
        (status = 200, description = "Companies", body = Vec<Object>),
        (status = 403, description = "Your role may not read companies", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/v1/companies")]
pub async fn list_companies(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    access::require(&caller.0, Permission::ReadCompanies)?;
    let list: Vec<_> = state
        .app
        .companies()
        .await?
        .into_iter()
        .map(|(id, version, state)| serde_json::json!({"company_id": id, "version": version, "company": state}))
        .collect();
    super::etag_json(&req, &list)
}
