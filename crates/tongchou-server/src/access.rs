//! Identity and access over HTTP: sign-in and sign-out, the caller's tokens, accounts (for
//! the bureau's admins), purposes, access requests and decisions, grants, resource policy,
//! and the access decision a caller would get.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tongchou_access::credentials::{self, CredentialKind, Issued, Lockout, TokenInfo};
use tongchou_access::events::{self, Event};
use tongchou_access::requests::{self, Approval, Grant, NewRequest, Purpose, Request, View};
use tongchou_access::users::UserChange;
use tongchou_access::{Access, Door, Scope, Scopes, User};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{Caller, ClientAddress, SESSION_COOKIE};
use crate::{ApiError, ApiResult, AppState, Shared};

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(sign_in))
        .routes(routes!(sign_out))
        .routes(routes!(me))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(list_users, add_user))
        .routes(routes!(change_user))
        .routes(routes!(change_password))
        .routes(routes!(lockouts))
        .routes(routes!(unlock))
        .routes(routes!(purposes, add_purpose))
        .routes(routes!(list_requests, file_request))
        .routes(routes!(get_request))
        .routes(routes!(approve))
        .routes(routes!(refuse))
        .routes(routes!(withdraw))
        .routes(routes!(list_grants))
        .routes(routes!(revoke))
        .routes(routes!(set_policy))
        .routes(routes!(decide))
        .routes(routes!(recent_events))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SignIn {
    pub name: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SignedIn {
    pub user: User,
    pub expires_at: Option<String>,
}

/// The session cookie: HttpOnly, SameSite=Strict, Secure over TLS.
pub fn session_cookie(value: &str, max_age: i64, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Signs in with a password; the session arrives as an HttpOnly cookie.
#[utoipa::path(post, path = "/api/auth/sign-in", request_body = SignIn, responses((status = 200, body = SignedIn), (status = 401, body = ApiError), (status = 422, body = ApiError), (status = 429, body = ApiError, description = "too many failures for the account or address, or too many sign-ins being checked; see Retry-After")))]
pub async fn sign_in(
    State(s): Shared,
    ClientAddress(address): ClientAddress,
    Json(body): Json<SignIn>,
) -> Result<Response, ApiError> {
    let (user, issued) =
        credentials::sign_in(&s.dir, &body.name, &body.password, Door::Rest, &address).await?;
    let cookie = session_cookie(
        &issued.secret,
        credentials::SESSION_HOURS * 3600,
        s.secure_cookies,
    );
    Ok((
        [(header::SET_COOKIE, cookie)],
        Json(SignedIn {
            user,
            expires_at: issued.expires_at,
        }),
    )
        .into_response())
}

/// Ends the current session.
#[utoipa::path(post, path = "/api/auth/sign-out", responses((status = 204)))]
pub async fn sign_out(State(s): Shared, caller: Caller) -> Result<Response, ApiError> {
    if let Some(session) = &caller.0.credential
        && session.kind == CredentialKind::Session
    {
        credentials::revoke_credential(&s.dir, Some(&caller.0), &session.id).await?;
    }
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, session_cookie("", 0, s.secure_cookies))],
    )
        .into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub user: User,
    pub scopes: Vec<&'static str>,
}

#[utoipa::path(get, path = "/api/me", responses((status = 200, body = Me), (status = 401, body = ApiError)))]
pub async fn me(caller: Caller) -> ApiResult<Me> {
    Ok(Json(Me {
        scopes: caller.0.scopes.names(),
        user: caller.0.user,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewToken {
    #[serde(default)]
    pub label: String,
    /// e.g. "read,query"; default "read".
    pub scopes: Option<String>,
    /// Days until it expires (1–366, default 90).
    pub days: Option<i64>,
}

/// Creates an API token for the signed-in user; the secret is shown only in this answer.
#[utoipa::path(post, path = "/api/tokens", request_body = NewToken, responses((status = 201, body = Issued), (status = 403, body = ApiError)))]
pub async fn create_token(
    State(s): Shared,
    caller: Caller,
    Json(body): Json<NewToken>,
) -> Result<(StatusCode, Json<Issued>), ApiError> {
    let scopes = Scopes::parse(body.scopes.as_deref().unwrap_or("read"))?;
    let issued =
        credentials::create_token(&s.dir, &caller.0, &body.label, scopes, body.days).await?;
    Ok((StatusCode::CREATED, Json(issued)))
}

#[utoipa::path(get, path = "/api/tokens", responses((status = 200, body = [TokenInfo])))]
pub async fn list_tokens(State(s): Shared, caller: Caller) -> ApiResult<Vec<TokenInfo>> {
    caller.require(Scope::Read)?;
    Ok(Json(
        credentials::list_tokens(&s.dir, &caller.0.user.name).await?,
    ))
}

#[utoipa::path(delete, path = "/api/tokens/{id}", responses((status = 204), (status = 403, body = ApiError)))]
pub async fn revoke_token(
    State(s): Shared,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    credentials::revoke_credential(&s.dir, Some(&caller.0), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/users", responses((status = 200, body = [User]), (status = 403, body = ApiError)))]
pub async fn list_users(State(s): Shared, caller: Caller) -> ApiResult<Vec<User>> {
    caller.0.require_admin("list accounts")?;
    Ok(Json(tongchou_access::list_users(s.dir.metadata()).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewUser {
    #[serde(flatten)]
    pub user: User,
    pub password: String,
}

#[utoipa::path(post, path = "/api/users", request_body = NewUser, responses((status = 201, body = User), (status = 403, body = ApiError)))]
pub async fn add_user(
    State(s): Shared,
    caller: Caller,
    Json(body): Json<NewUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    tongchou_access::add_user(&s.dir, Some(&caller.0), &body.user, &body.password).await?;
    Ok((StatusCode::CREATED, Json(body.user)))
}

#[utoipa::path(patch, path = "/api/users/{name}", request_body = UserChange, responses((status = 200, body = User), (status = 403, body = ApiError)))]
pub async fn change_user(
    State(s): Shared,
    caller: Caller,
    Path(name): Path<String>,
    Json(change): Json<UserChange>,
) -> ApiResult<User> {
    Ok(Json(
        tongchou_access::users::change_user(&s.dir, Some(&caller.0), &name, &change).await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewPassword {
    /// The current password: required when changing one's own.
    pub old_password: Option<String>,
    pub new_password: String,
}

/// Sets a password: the user themself (with the current one) or a platform admin. Every
/// session of the account ends, this one too when it is the user's own; tokens stay.
#[utoipa::path(post, path = "/api/users/{name}/password", request_body = NewPassword, responses((status = 204), (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 422, body = ApiError)))]
pub async fn change_password(
    State(s): Shared,
    caller: Caller,
    ClientAddress(address): ClientAddress,
    Path(name): Path<String>,
    Json(body): Json<NewPassword>,
) -> Result<StatusCode, ApiError> {
    tongchou_access::users::change_password(
        &s.dir,
        Some(&caller.0),
        &name,
        body.old_password.as_deref(),
        &body.new_password,
        &address,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The accounts wrong passwords have locked now, with the addresses they came from.
#[utoipa::path(get, path = "/api/users/locked", responses((status = 200, body = [Lockout]), (status = 403, body = ApiError)))]
pub async fn lockouts(State(s): Shared, caller: Caller) -> ApiResult<Vec<Lockout>> {
    caller.0.require_admin("see locked accounts")?;
    Ok(Json(credentials::lockouts(s.dir.metadata()).await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Unlocked {
    pub user: String,
    pub failures_cleared: u64,
}

/// Lifts a sign-in lockout (platform admins): the account's failures are forgotten.
#[utoipa::path(post, path = "/api/users/{name}/unlock", responses((status = 200, body = Unlocked), (status = 403, body = ApiError), (status = 404, body = ApiError)))]
pub async fn unlock(
    State(s): Shared,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Unlocked> {
    let failures_cleared = credentials::unlock(&s.dir, Some(&caller.0), &name).await?;
    Ok(Json(Unlocked {
        user: name,
        failures_cleared,
    }))
}

#[utoipa::path(get, path = "/api/access/purposes", responses((status = 200, body = [Purpose])))]
pub async fn purposes(State(s): Shared, caller: Caller) -> ApiResult<Vec<Purpose>> {
    caller.require(Scope::Read)?;
    Ok(Json(requests::purposes(s.dir.metadata()).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewPurpose {
    pub code: String,
    pub label: String,
    #[serde(default)]
    pub label_en: String,
}

#[utoipa::path(post, path = "/api/access/purposes", request_body = NewPurpose, responses((status = 204), (status = 403, body = ApiError)))]
pub async fn add_purpose(
    State(s): Shared,
    caller: Caller,
    Json(body): Json<NewPurpose>,
) -> Result<StatusCode, ApiError> {
    let purpose = Purpose {
        code: body.code,
        label: body.label,
        label_en: body.label_en,
    };
    requests::add_purpose(&s.dir, Some(&caller.0), &purpose).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Filed {
    pub id: i64,
    pub answer_due: String,
}

/// Files an access request to the resource's providing unit.
#[utoipa::path(post, path = "/api/access/requests", request_body = NewRequest, responses((status = 201, body = Filed), (status = 403, body = ApiError), (status = 422, body = ApiError)))]
pub async fn file_request(
    State(s): Shared,
    caller: Caller,
    Json(body): Json<NewRequest>,
) -> Result<(StatusCode, Json<Filed>), ApiError> {
    let id = requests::file_request(&s.dir, &caller.0, &body).await?;
    let request = requests::get_request(s.dir.metadata(), id).await?;
    Ok((
        StatusCode::CREATED,
        Json(Filed {
            id,
            answer_due: request.answer_due,
        }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListParams {
    /// mine (default), queue (a steward's pending), provided, or all (the bureau).
    pub view: Option<String>,
    /// Only requests past their answer deadline.
    #[serde(default)]
    pub overdue: bool,
}

fn view(text: Option<&str>) -> Result<View, ApiError> {
    let text = text.unwrap_or("mine");
    View::parse(text).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("view '{text}' is not mine, queue, provided or all"),
        )
    })
}

#[utoipa::path(get, path = "/api/access/requests", params(ListParams), responses((status = 200, body = [Request])))]
pub async fn list_requests(
    State(s): Shared,
    caller: Caller,
    Query(p): Query<ListParams>,
) -> ApiResult<Vec<Request>> {
    Ok(Json(
        requests::list_requests(
            s.dir.metadata(),
            Some(&caller.0),
            view(p.view.as_deref())?,
            p.overdue,
        )
        .await?,
    ))
}

#[utoipa::path(get, path = "/api/access/requests/{id}", responses((status = 200, body = Request), (status = 404, body = ApiError)))]
pub async fn get_request(
    State(s): Shared,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<Request> {
    let p = caller.require(Scope::Read)?;
    let request = requests::get_request(s.dir.metadata(), id).await?;
    let concerned = request.requester == p.user.name
        || request.provider == p.user.unit
        || p.is(tongchou_model::UserRole::PlatformAdmin);
    if !concerned {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("request #{id} not found"),
        ));
    }
    Ok(Json(request))
}

/// Approves a request, possibly narrower: the providing unit's steward only.
#[utoipa::path(post, path = "/api/access/requests/{id}/approve", request_body = Approval, responses((status = 200, body = Grant), (status = 403, body = ApiError), (status = 422, body = ApiError)))]
pub async fn approve(
    State(s): Shared,
    caller: Caller,
    Path(id): Path<i64>,
    Json(body): Json<Approval>,
) -> ApiResult<Grant> {
    Ok(Json(requests::approve(&s.dir, &caller.0, id, &body).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Reason {
    #[serde(default)]
    pub reason: String,
}

#[utoipa::path(post, path = "/api/access/requests/{id}/refuse", request_body = Reason, responses((status = 200, body = Request), (status = 403, body = ApiError)))]
pub async fn refuse(
    State(s): Shared,
    caller: Caller,
    Path(id): Path<i64>,
    Json(body): Json<Reason>,
) -> ApiResult<Request> {
    Ok(Json(
        requests::refuse(&s.dir, &caller.0, id, &body.reason).await?,
    ))
}

#[utoipa::path(post, path = "/api/access/requests/{id}/withdraw", responses((status = 200, body = Request), (status = 403, body = ApiError)))]
pub async fn withdraw(State(s): Shared, caller: Caller, Path(id): Path<i64>) -> ApiResult<Request> {
    Ok(Json(requests::withdraw(&s.dir, &caller.0, id).await?))
}

#[utoipa::path(get, path = "/api/access/grants", params(ListParams), responses((status = 200, body = [Grant])))]
pub async fn list_grants(
    State(s): Shared,
    caller: Caller,
    Query(p): Query<ListParams>,
) -> ApiResult<Vec<Grant>> {
    Ok(Json(
        requests::list_grants(s.dir.metadata(), Some(&caller.0), view(p.view.as_deref())?).await?,
    ))
}

/// Revokes a grant: the providing unit's steward only; the next statement is refused.
#[utoipa::path(post, path = "/api/access/grants/{id}/revoke", request_body = Reason, responses((status = 200, body = Grant), (status = 403, body = ApiError)))]
pub async fn revoke(
    State(s): Shared,
    caller: Caller,
    Path(id): Path<i64>,
    Json(body): Json<Reason>,
) -> ApiResult<Grant> {
    Ok(Json(
        requests::revoke(&s.dir, Some(&caller.0), id, &body.reason).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct CodeParam {
    pub code: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PolicyBody {
    /// Open the resource only to leaders of this level or above; null lifts it.
    pub min_leader_level: Option<i64>,
}

#[utoipa::path(put, path = "/api/access/policy", params(CodeParam), request_body = PolicyBody, responses((status = 204), (status = 403, body = ApiError)))]
pub async fn set_policy(
    State(s): Shared,
    caller: Caller,
    Query(p): Query<CodeParam>,
    Json(body): Json<PolicyBody>,
) -> Result<StatusCode, ApiError> {
    requests::set_min_leader_level(&s.dir, Some(&caller.0), &p.code, body.min_leader_level).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct DecideParams {
    pub resource: String,
    pub purpose: String,
}

/// What the caller may read of a resource for a purpose: fields, masks, row filter.
#[utoipa::path(get, path = "/api/access/decide", params(DecideParams), responses((status = 200, body = Access), (status = 403, body = ApiError)))]
pub async fn decide(
    State(s): Shared,
    caller: Caller,
    Query(p): Query<DecideParams>,
) -> ApiResult<Access> {
    let principal = caller.require(Scope::Read)?;
    Ok(Json(
        s.policy
            .decide(&principal.user.name, &p.resource, &p.purpose)
            .await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct LimitParam {
    pub limit: Option<i64>,
}

/// The newest sign-ins, requests, decisions and grant changes: the bureau's admins only.
#[utoipa::path(get, path = "/api/access/events", params(LimitParam), responses((status = 200, body = [Event])))]
pub async fn recent_events(
    State(s): Shared,
    caller: Caller,
    Query(p): Query<LimitParam>,
) -> ApiResult<Vec<Event>> {
    caller.0.require_admin("read the access record")?;
    Ok(Json(
        events::recent(s.dir.metadata(), p.limit.unwrap_or(100).clamp(1, 10_000)).await?,
    ))
}
