//! Users and keys over HTTP: the caller's own view (`/v1/me`), and the admin routes
//! (`admin` scope) that create users, change their limits, disable them, and issue and revoke
//! their keys.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use wacheck_app::users::{self, UserLimitsChange};
use wacheck_store::keys::KeyRecord;
use wacheck_store::users::{QuotaUse, UserLimits, UserRecord};

use wacheck_app::Limits;

use crate::auth::{Admin, AuthUser, Need};
use crate::json::{Json, rfc3339};
#[allow(unused_imports)] // named in the OpenAPI annotations
use crate::openapi::{ErrorBody, Refusals};
use crate::router::{Router, route};
use crate::{ApiError, AppState};

pub fn routes(r: &mut Router) {
    route!(r, me);
    route!(r, list_users);
    route!(r, create_user);
    route!(r, show_user);
    route!(r, update_user);
    route!(r, list_keys);
    route!(r, create_key);
    route!(r, revoke_key);
}

/// The caller: who, what it may do, its limits and what its quotas have used.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MeView {
    pub user_id: String,
    pub scopes: Vec<String>,
    /// The key used, when it was a key (not a token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    pub limits: LimitsView,
    pub used: UsedView,
}

/// Limits in force (0: unlimited).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LimitsView {
    pub requests_per_minute: u32,
    pub request_burst: u32,
    pub numbers_per_day: u64,
    pub max_concurrent_tasks: u32,
    pub max_rows: u64,
}

impl From<Limits> for LimitsView {
    fn from(l: Limits) -> Self {
        LimitsView {
            requests_per_minute: l.requests_per_minute,
            request_burst: l.request_burst,
            numbers_per_day: l.numbers_per_day,
            max_concurrent_tasks: l.max_concurrent_tasks,
            max_rows: l.max_rows,
        }
    }
}

/// What the quotas have used: input rows uploaded today (UTC), tasks being checked.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsedView {
    pub numbers_today: u64,
    pub running_tasks: u64,
}

impl From<QuotaUse> for UsedView {
    fn from(u: QuotaUse) -> Self {
        UsedView {
            numbers_today: u.numbers_today,
            running_tasks: u.running_tasks,
        }
    }
}

#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "users",
    summary = "The caller: scopes, limits, and what the quotas have used",
    responses(
        (status = 200, description = "The caller", body = MeView),
        Refusals
    )
)]
pub(crate) async fn me(
    state: web::Data<AppState>,
    user: AuthUser,
) -> Result<HttpResponse, ApiError> {
    let used = users::own_use(&state.pool, &user).await?;
    Ok(HttpResponse::Ok().json(MeView {
        user_id: user.id.clone(),
        scopes: user.scopes.iter().map(|s| s.name().to_owned()).collect(),
        key_id: user.key_id.clone(),
        limits: user.limits.into(),
        used: used.into(),
    }))
}

/// A user as admins see it: own limits (`null`: the service default) and those in force.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: String,
    pub created_at: String,
    pub disabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<String>,
    /// The user's own limits; `null` fields take the service's defaults.
    #[schema(value_type = OwnLimitsView)]
    pub own_limits: UserLimits,
    pub limits: LimitsView,
    pub used: UsedView,
}

fn user_view(state: &AppState, u: UserRecord, used: QuotaUse) -> UserView {
    UserView {
        limits: Limits::of(&u.limits, &state.limits, state.api.max_rows).into(),
        disabled: u.disabled_at.is_some(),
        disabled_at: u.disabled_at.map(rfc3339),
        created_at: rfc3339(u.created_at),
        own_limits: u.limits,
        id: u.id,
        used: used.into(),
    }
}

/// A user's own limits (documentation of `UserLimits`); `null`: the service's default.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OwnLimitsView {
    pub requests_per_minute: Option<u32>,
    pub request_burst: Option<u32>,
    pub numbers_per_day: Option<u64>,
    pub max_concurrent_tasks: Option<u32>,
    pub max_rows: Option<u64>,
}

/// A key as listed: never its secret part.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyView {
    pub id: String,
    pub user_id: String,
    /// The key's first characters.
    pub prefix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub scopes: Vec<String>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
    pub revoked: bool,
}

fn key_view(k: KeyRecord) -> KeyView {
    KeyView {
        id: k.id,
        user_id: k.user_id,
        prefix: k.prefix,
        name: k.name,
        scopes: k.scopes,
        created_at: rfc3339(k.created_at),
        last_used_at: k.last_used_at.map(rfc3339),
        revoked: k.revoked_at.is_some(),
    }
}

#[utoipa::path(
    get,
    path = "/v1/admin/users",
    tag = "users",
    summary = "Every user (admin)",
    responses(
        (status = 200, description = "Users", body = [UserView]),
        Refusals
    )
)]
pub(crate) async fn list_users(
    state: web::Data<AppState>,
    user: Need<Admin>,
) -> Result<HttpResponse, ApiError> {
    let all = users::list(&state.pool, &user).await?;
    let views: Vec<UserView> = all
        .into_iter()
        .map(|(u, used)| user_view(&state, u, used))
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

/// A user's limits as given: absent keeps what is there; `null` resets to the default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsIn {
    #[serde(default, with = "nullable")]
    requests_per_minute: Option<Option<u32>>,
    #[serde(default, with = "nullable")]
    request_burst: Option<Option<u32>>,
    #[serde(default, with = "nullable")]
    numbers_per_day: Option<Option<u64>>,
    #[serde(default, with = "nullable")]
    max_concurrent_tasks: Option<Option<u32>>,
    #[serde(default, with = "nullable")]
    max_rows: Option<Option<u64>>,
}

/// `Some(None)` for an explicit `null`, `None` for an absent field.
mod nullable {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Ok(Some(Option::deserialize(d)?))
    }
}

impl LimitsIn {
    fn change(self) -> UserLimitsChange {
        UserLimitsChange {
            requests_per_minute: self.requests_per_minute,
            request_burst: self.request_burst,
            numbers_per_day: self.numbers_per_day,
            max_concurrent_tasks: self.max_concurrent_tasks,
            max_rows: self.max_rows,
        }
    }

    /// The `limits` object of a body.
    fn parse(v: serde_json::Value) -> Result<UserLimitsChange, ApiError> {
        Ok(crate::json::parse::<LimitsIn>(v.to_string().as_bytes())?.change())
    }
}

/// A new user.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewUserIn {
    /// 1-64 letters, digits, `-`, `_`, `.` and `@`.
    id: String,
    /// Own limits (see `OwnLimitsView`); absent: the service's defaults.
    #[serde(default)]
    #[schema(value_type = Option<OwnLimitsView>)]
    limits: Option<serde_json::Value>,
}

#[utoipa::path(
    post,
    path = "/v1/admin/users",
    tag = "users",
    summary = "Create a user (admin)",
    request_body(content = NewUserIn, content_type = "application/json"),
    responses(
        (status = 201, description = "The user", body = UserView),
        (status = 400, description = "A parameter, the body or the file is wrong (see `code`)", body = ErrorBody),
        (status = 409, description = "The resource is not in a state for this", body = ErrorBody),
        Refusals
    )
)]
pub(crate) async fn create_user(
    state: web::Data<AppState>,
    user: Need<Admin>,
    Json(input): Json<NewUserIn>,
) -> Result<HttpResponse, ApiError> {
    let limits = input
        .limits
        .map(LimitsIn::parse)
        .transpose()?
        .unwrap_or_default();
    let u = users::create(&state.pool, &user, &input.id, limits).await?;
    Ok(HttpResponse::Created().json(user_view(&state, u, QuotaUse::default())))
}

#[utoipa::path(
    get,
    path = "/v1/admin/users/{user_id}",
    tag = "users",
    summary = "One user (admin)",
    params(("user_id" = String, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The user", body = UserView),
        (status = 404, description = "No such resource for this caller", body = ErrorBody),
        Refusals
    )
)]
pub(crate) async fn show_user(
    state: web::Data<AppState>,
    user: Need<Admin>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (u, used) = users::get(&state.pool, &user, &id).await?;
    Ok(HttpResponse::Ok().json(user_view(&state, u, used)))
}

/// Changes to a user; absent fields stay. In `limits`, `null` goes back to the default.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateUserIn {
    #[serde(default)]
    disabled: Option<bool>,
    #[serde(default)]
    #[schema(value_type = Option<OwnLimitsView>)]
    limits: Option<serde_json::Value>,
}

#[utoipa::path(
    patch,
    path = "/v1/admin/users/{user_id}",
    tag = "users",
    summary = "Disable, enable, or change limits of a user (admin)",
    params(("user_id" = String, Path, description = "The user's id")),
    request_body(content = UpdateUserIn, content_type = "application/json"),
    responses(
        (status = 200, description = "The user", body = UserView),
        (status = 400, description = "A parameter, the body or the file is wrong (see `code`)", body = ErrorBody),
        (status = 404, description = "No such resource for this caller", body = ErrorBody),
        (status = 409, description = "An admin cannot disable their own user", body = ErrorBody),
        Refusals
    )
)]
pub(crate) async fn update_user(
    state: web::Data<AppState>,
    user: Need<Admin>,
    id: web::Path<String>,
    Json(input): Json<UpdateUserIn>,
) -> Result<HttpResponse, ApiError> {
    let limits = input.limits.map(LimitsIn::parse).transpose()?;
    users::update(&state.pool, &user, &id, input.disabled, limits).await?;
    show_user(state, user, id).await
}

#[utoipa::path(
    get,
    path = "/v1/admin/users/{user_id}/keys",
    tag = "users",
    summary = "A user's keys (admin)",
    params(("user_id" = String, Path, description = "The user's id")),
    responses(
        (status = 200, description = "Keys, newest first", body = [KeyView]),
        (status = 404, description = "No such resource for this caller", body = ErrorBody),
        Refusals
    )
)]
pub(crate) async fn list_keys(
    state: web::Data<AppState>,
    user: Need<Admin>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let keys = users::keys(&state.pool, &user, &id).await?;
    Ok(HttpResponse::Ok().json(keys.into_iter().map(key_view).collect::<Vec<_>>()))
}

/// A new key: its scopes (default `check`, `tasks`) and a label.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewKeyIn {
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    name: Option<String>,
}

/// A new key: shown here once, never again.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewKeyView {
    /// The key itself. Store it now: wacheck keeps only its hash.
    pub key: String,
    #[serde(flatten)]
    pub record: KeyView,
}

#[utoipa::path(
    post,
    path = "/v1/admin/users/{user_id}/keys",
    tag = "users",
    summary = "A new key for a user, shown once (admin)",
    params(("user_id" = String, Path, description = "The user's id")),
    request_body(content = Option<NewKeyIn>, content_type = "application/json"),
    responses(
        (status = 201, description = "The key", body = NewKeyView),
        (status = 400, description = "A parameter, the body or the file is wrong (see `code`)", body = ErrorBody),
        (status = 404, description = "No such resource for this caller", body = ErrorBody),
        Refusals
    )
)]
pub(crate) async fn create_key(
    state: web::Data<AppState>,
    user: Need<Admin>,
    id: web::Path<String>,
    bytes: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    // An empty body asks for a key with the default scopes.
    let input: NewKeyIn = if bytes.is_empty() {
        NewKeyIn::default()
    } else {
        crate::json::parse(&bytes)?
    };
    let (record, key) = users::issue_key(
        &state.pool,
        &user,
        &id,
        input.scopes.as_deref(),
        input.name.as_deref(),
    )
    .await?;
    Ok(HttpResponse::Created().json(NewKeyView {
        key,
        record: key_view(record),
    }))
}

#[utoipa::path(
    delete,
    path = "/v1/admin/keys/{key_id}",
    tag = "users",
    summary = "Revoke a key (admin)",
    params(("key_id" = String, Path)),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such resource for this caller", body = ErrorBody),
        (status = 409, description = "The key is the one this request is made with", body = ErrorBody),
        Refusals
    )
)]
pub(crate) async fn revoke_key(
    state: web::Data<AppState>,
    user: Need<Admin>,
    key_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    users::revoke_key(&state.pool, &user, &key_id).await?;
    Ok(HttpResponse::NoContent().finish())
}
