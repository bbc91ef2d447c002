//! `/v1/auth`, `/v1/accounts` and `/.well-known/jwks.json`.

use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use serde::Deserialize;

use super::AppState;
use super::extract::{Caller, from_value, json_value, path_id};
use super::problem::{ApiError, Problem};
use crate::app::{Permission, access};
use crate::auth::{AccountView, NewAccount, TokenPair};
use crate::domain::AccountId;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub username: String,
    pub password: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

fn client_ip(req: &HttpRequest) -> std::net::IpAddr {
    // The peer address, not X-Forwarded-For: a client must not choose its own rate-limit bucket.
    req.peer_addr().map(|a| a.ip()).unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// Sign in with a username and password.
#[utoipa::path(
    post, path = "/v1/auth/token", tag = "auth",
    request_body = TokenRequest,
    responses(
        (status = 200, description = "Tokens", body = TokenPairDoc),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Wrong username or password", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts; see Retry-After", body = Problem, content_type = "application/problem+json"),
    ),
    security(())
)]
#[post("/v1/auth/token")]
pub async fn token(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let r: TokenRequest = from_value(json_value(&req, &body)?)?;
    let pair = state.auth.login(&r.username, &r.password, client_ip(&req)).await?;
    Ok(no_store(pair))
}

/// Exchange a refresh token for new tokens; the old refresh token stops working, and using it
/// again revokes the whole session.
#[utoipa::path(
    post, path = "/v1/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "Tokens", body = TokenPairDoc),
        (status = 401, description = "Unknown, expired or reused refresh token", body = Problem, content_type = "application/problem+json"),
    ),
    security(())
)]
#[post("/v1/auth/refresh")]
pub async fn refresh(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let r: RefreshRequest = from_value(json_value(&req, &body)?)?;
    Ok(no_store(state.auth.refresh(&r.refresh_token).await?))
}

/// End a session (its refresh tokens stop working).
#[utoipa::path(
    post, path = "/v1/auth/logout", tag = "auth",
    request_body = RefreshRequest,
    responses((status = 204, description = "Signed out"), (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json")),
    security(())
)]
#[post("/v1/auth/logout")]
pub async fn logout(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let r: RefreshRequest = from_value(json_value(&req, &body)?)?;
    state.auth.logout(&r.refresh_token)?;
    Ok(HttpResponse::NoContent().finish())
}

fn no_store(pair: TokenPair) -> HttpResponse {
    HttpResponse::Ok().insert_header(("Cache-Control", "no-store")).json(pair)
}

/// The token pair (documentation shape).
#[derive(utoipa::ToSchema)]
#[schema(as = TokenPair)]
#[allow(dead_code)]
pub struct TokenPairDoc {
    access_token: String,
    /// Always `Bearer`.
    token_type: String,
    /// Seconds until the access token expires.
    expires_in: u64,
    refresh_token: String,
}

/// The public keys that verify access tokens.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth", responses((status = 200, description = "JWKS")))]
#[get("/.well-known/jwks.json")]
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().insert_header(("Cache-Control", "public, max-age=300")).json(state.auth.jwks())
}

/// The signed-in account.
#[utoipa::path(
    get, path = "/v1/accounts/me", tag = "accounts",
    responses(
        (status = 200, description = "Your account", body = AccountViewDoc),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/v1/accounts/me")]
pub async fn me(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let view = state.auth.account(caller.0.account_id).ok_or(ApiError::Unauthenticated)?;
    Ok(HttpResponse::Ok().json(view))
}

/// Change your own password; other sessions end.
#[utoipa::path(
    post, path = "/v1/accounts/me/password", tag = "accounts",
    request_body = PasswordChange,
    responses(
        (status = 204, description = "Changed"),
        (status = 401, description = "Wrong current password", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The new password is too weak", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/v1/accounts/me/password")]
pub async fn change_password(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let r: PasswordChange = from_value(json_value(&req, &body)?)?;
    let p = caller.1.clone();
    state.auth.change_password(&p, caller.0.account_id, Some(&r.current_password), &r.new_password).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The account view (documentation shape).
#[derive(utoipa::ToSchema)]
#[schema(as = Account)]
#[allow(dead_code)]
pub struct AccountViewDoc {
    account_id: uuid::Uuid,
    username: String,
    display_name: String,
    /// young_person, teacher, youth_coordinator, caseworker, network, mentor, auditor, admin
    role: String,
    /// active, disabled, deleted
    status: String,
    created_at: String,
}

/// Create an account (admin).
#[utoipa::path(
    post, path = "/v1/accounts", tag = "accounts",
    description = "Requires permission `manage_accounts` (admin).",
    request_body(content = NewAccountDoc, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = AccountViewDoc),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Username taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid username or weak password", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/v1/accounts")]
pub async fn create_account(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    access::require(&caller.0, Permission::ManageAccounts)?;
    let r: NewAccount = from_value(json_value(&req, &body)?)?;
    let p = caller.1.clone();
    let view = state.auth.create_account(&p, r).await?;
    Ok(HttpResponse::Created().json(view))
}

/// A new account (documentation shape).
#[derive(utoipa::ToSchema)]
#[schema(as = NewAccount)]
#[allow(dead_code)]
pub struct NewAccountDoc {
    /// 3–64 of a-z, 0-9, `.`, `_`, `-` (lower-cased).
    username: String,
    display_name: String,
    role: String,
    /// At least 12 characters.
    password: String,
}

/// List accounts (admin).
#[utoipa::path(
    get, path = "/v1/accounts", tag = "accounts",
    description = "Requires permission `manage_accounts` (admin).",
    responses(
        (status = 200, description = "Accounts", body = Vec<AccountViewDoc>),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/v1/accounts")]
pub async fn list_accounts(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    access::require(&caller.0, Permission::ManageAccounts)?;
    let list: Vec<AccountView> = state.auth.list_accounts();
    super::etag_json(&req, &list)
}

macro_rules! account_admin_op {
    ($fn:ident, $method:ident, $path:literal, $op:ident, $summary:literal) => {
        #[doc = $summary]
        #[utoipa::path(
            $method, path = $path, tag = "accounts",
            description = concat!($summary, ". Requires permission `manage_accounts` (admin)."),
            params(("account_id" = uuid::Uuid, Path)),
            responses(
                (status = 200, description = "Done", body = AccountViewDoc),
                (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
                (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
            ),
            security(("bearer" = []))
        )]
        #[$method($path)]
        pub async fn $fn(state: web::Data<AppState>, caller: Caller, req: HttpRequest) -> Result<HttpResponse, ApiError> {
            access::require(&caller.0, Permission::ManageAccounts)?;
            let id = AccountId(path_id(&req, "account_id")?);
            let p = caller.1.clone();
            Ok(HttpResponse::Ok().json(state.auth.$op(&p, id).await?))
        }
    };
}

account_admin_op!(disable_account, post, "/v1/accounts/{account_id}/disable", disable_account, "Disable an account");
account_admin_op!(enable_account, post, "/v1/accounts/{account_id}/enable", enable_account, "Enable an account");
account_admin_op!(delete_account, delete, "/v1/accounts/{account_id}", delete_account, "Delete an account");
