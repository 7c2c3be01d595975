//! The account pool over HTTP: add, list, show, pause, resume, change limits, remove; the
//! QR code of a native account being paired, as PNG; what a task cost each account.
//!
//! Admins (`admin` scope) see and manage every account and may add shared ones (used for
//! everyone's work); other users see and manage only their own, which only their work uses.

use actix_web::{HttpResponse, web};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wacheck_app::accounts::{self, LimitsChange, Summary};
use wacheck_core::{AccountKind, AccountState};

use crate::auth::{AuthUser, Need, Tasks};
use crate::json::{parse, rfc3339};
#[allow(unused_imports)] // named in the OpenAPI annotations
use crate::openapi::{ErrorBody, FileBody, Refusals};
use crate::router::{Router, route};
use crate::{ApiError, AppState};

pub fn routes(r: &mut Router) {
    route!(r, list);
    route!(r, create);
    route!(r, show);
    route!(r, update);
    route!(r, remove);
    route!(r, pause);
    route!(r, resume);
    route!(r, qr_png);
    route!(r, add_alias);
    route!(r, remove_alias);
    route!(r, task_usage);
}

/// An account as the API shows it. Gateway keys are never shown.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccountView {
    pub id: String,
    /// `native`, `waha`, `evolution` or `simulated`.
    #[schema(value_type = String)]
    pub kind: AccountKind,
    /// `null`: the shared pool; otherwise the only user whose work it does.
    pub owner: Option<String>,
    /// `pairing`, `unreachable`, `connected`, `cooling_down`, `logged_out`, `banned` or `failed`.
    #[schema(value_type = String)]
    pub state: AccountState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    pub state_changed_at: String,
    /// End of a cool-down or temporary ban.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cool_until: Option<String>,
    pub paused: bool,
    /// Whether it can take work now.
    pub healthy: bool,
    pub per_minute: u32,
    pub burst: u32,
    pub daily_cap: u32,
    pub jitter_ms: u32,
    /// Numbers asked about today (UTC), against `daily_cap`.
    pub checks_today: i64,
    /// The account's own WhatsApp id, once paired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub me: Option<String>,
    /// Pairing in progress: when the current QR code expires (fetch it from `qr_url`), or the
    /// code to type on the phone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qr_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qr_expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pair_code: Option<String>,
    /// Other names clients use for it (a Walytic session id, a CommBox stream id).
    pub aliases: Vec<String>,
    /// Its settings, with any gateway key replaced by `"[redacted]"`.
    #[schema(value_type = Object)]
    pub settings: Value,
    pub simulated: bool,
    pub created_at: String,
}

/// What a task cost each account.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskUsageView {
    pub task_id: String,
    /// Rows answered from the result cache, at no cost.
    pub cached: i64,
    pub accounts: Vec<AccountUsageView>,
}

/// Numbers asked about in check and detail calls, and calls (failed ones too).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccountUsageView {
    pub account: String,
    pub checks: i64,
    pub details: i64,
    pub calls: i64,
}

fn redacted(mut settings: Value) -> Value {
    if let Some(o) = settings.as_object_mut()
        && let Some(k) = o.get_mut("api_key")
        && !k.is_null()
    {
        *k = Value::String("[redacted]".into());
    }
    settings
}

fn view(s: Summary) -> AccountView {
    let Summary {
        record: r,
        checks_today,
        aliases,
    } = s;
    let now = Utc::now();
    let pairing = r.state == AccountState::Pairing;
    let qr_live = pairing && r.qr_code.is_some() && r.qr_expires_at.is_some_and(|t| t > now);
    AccountView {
        healthy: r.healthy_at(now),
        qr_url: qr_live.then(|| format!("/v1/accounts/{}/qr.png", r.id)),
        qr_expires_at: r.qr_expires_at.filter(|_| qr_live).map(rfc3339),
        pair_code: r.pair_code.filter(|_| pairing),
        simulated: r.kind == AccountKind::Simulated,
        id: r.id,
        kind: r.kind,
        owner: r.owner,
        state: r.state,
        state_reason: r.state_reason,
        state_changed_at: rfc3339(r.state_changed_at),
        cool_until: r.cool_until.filter(|t| *t > now).map(rfc3339),
        paused: r.paused,
        per_minute: r.limits.per_minute,
        burst: r.limits.burst,
        daily_cap: r.limits.daily_cap,
        jitter_ms: r.limits.jitter_ms,
        checks_today,
        me: r.me,
        aliases,
        settings: redacted(r.settings),
        created_at: rfc3339(r.created_at),
    }
}

#[utoipa::path(
    get,
    path = "/v1/accounts",
    tag = "accounts",
    summary = "The accounts the caller may see",
    responses(
        (status = 200, description = "Accounts, by id", body = [AccountView]),
        Refusals
    )
)]
pub(crate) async fn list(
    state: web::Data<AppState>,
    user: Need<Tasks>,
) -> Result<HttpResponse, ApiError> {
    let all = accounts::list(&state.pool, &user).await?;
    Ok(HttpResponse::Ok().json(all.into_iter().map(view).collect::<Vec<_>>()))
}

/// A new account.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewAccountIn {
    /// 1-64 letters, digits, `-`, `_`, `.`.
    id: String,
    /// `native`, `waha`, `evolution` or `simulated`.
    #[schema(value_type = String)]
    kind: AccountKind,
    /// What the backend needs: see docs/backends.md.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    settings: Option<Value>,
    per_minute: Option<u32>,
    burst: Option<u32>,
    daily_cap: Option<u32>,
    jitter_ms: Option<u32>,
    /// Admins add to the shared pool unless they name a user here; other users' accounts are
    /// always their own.
    #[serde(default)]
    owner: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/accounts",
    tag = "accounts",
    summary = "Add an account",
    request_body(content = NewAccountIn, content_type = "application/json"),
    responses(
        (status = 201, description = "The account", body = AccountView),
        (status = 400, description = "A parameter, the body or the file is wrong (see `code`)", body = ErrorBody),
        (status = 409, description = "The resource is not in a state for this", body = ErrorBody),
        Refusals
    )
)]
pub(crate) async fn create(
    state: web::Data<AppState>,
    user: Need<Tasks>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let user_accounts = state.accounts.settings.user_accounts;
    accounts::may_add(&user, user_accounts)?;
    let input: NewAccountIn = parse(&body)?;
    let new = accounts::NewAccountRequest {
        id: input.id,
        kind: input.kind,
        settings: input
            .settings
            .unwrap_or_else(|| Value::Object(Default::default())),
        limits: LimitsChange {
            per_minute: input.per_minute,
            burst: input.burst,
            daily_cap: input.daily_cap,
            jitter_ms: input.jitter_ms,
        },
        owner: input.owner,
    };
    let record = accounts::add(&state.pool, &user, user_accounts, new).await?;
    refresh(&state).await;
    Ok(HttpResponse::Created().json(view(Summary {
        record,
        checks_today: 0,
        aliases: Vec::new(),
    })))
}

/// The pool of this process follows at once (the others at their next refresh).
async fn refresh(state: &AppState) {
    if let Err(e) = state.accounts.refresh().await {
        tracing::warn!("reloading the accounts: {e:#}");
    }
}

#[utoipa::path(
    get,
    path = "/v1/accounts/{id}",
    tag = "accounts",
    summary = "One account",
    params(("id" = String, Path, description = "The account's name")),
    responses(
        (status = 200, description = "The account", body = AccountView),
        (status = 404, description = "No such resource for this caller", body = ErrorBody),
        Refusals
    )
)]
pub(crate) async fn show(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(view(accounts::show(&state.pool, &user, &id).await?)))
}

/// Changes to an account; absent fields stay.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateAccountIn {
    #[serde(default)]
    paused: Option<bool>,
    per_minute: Option<u32>,
    burst: Option<u32>,
    daily_cap: Option<u32>,
    jitter_ms: Option<u32>,
}

#[utoipa::path(
    patch,
    path = "/v1/accounts/{id}",
    tag = "accounts",
    summary = "Change an account's limits, or pause it",
    params(("id" = String, Path, description = "The account's name")),
    request_body(content = UpdateAccountIn, content_type = "application/json"),
    responses(
        (status = 200, description = "The account", body = AccountView),
        (status = 400, description = "A parameter, the body or the file is wrong (see `code`)", body = ErrorBody),
        (status = 404, description = "No such resource for this caller", body = ErrorBody),
        Refusals
    )
)]
pub(crate) async fn update(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    // Someone else's account answers 404 whatever the body holds.
    accounts::visible(&state.pool, &user, &id).await?;
    let input: UpdateAccountIn = parse(&body)?;
    let limits = LimitsChange {
        per_minute: input.per_minute,
        burst: input.burst,
        daily_cap: input.daily_cap,
        jitter_ms: input.jitter_ms,
    };
    accounts::change(&state.pool, &user, &id, input.paused, limits).await?;
    refresh(&state).await;
    show(state, user, id).await
}

async fn set_paused(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
    paused: bool,
) -> Result<HttpResponse, ApiError> {
    accounts::change(
        &state.pool,
        &user,
        &id,
        Some(paused),
        LimitsChange::default(),
    )
    .await?;
    refresh(&state).await;
    show(state, user, id).await
}

#[utoipa::path(
    post,
    path = "/v1/accounts/{id}/pause",
    tag = "accounts",
    summary = "Stop giving work to an account",
    params(("id" = String, Path, description = "The account's name")),
    responses(
        (status = 200, description = "The account", body = AccountView),
        (status = 404, description = "No such resource for this caller", body = ErrorBody),
        Refusals
    )
)]
pub(crate) async fn pause(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_paused(state, user, id, true).await
}

#[utoipa::path(
    post,
    path = "/v1/accounts/{id}/resume",
    tag = "accounts",
    summary = "Give work to an account again",
    params(("id" = String, Path, description = "The account's name")),
    responses(
        (status = 200, description = "The account", body = AccountView),
        (status = 404, description = "No such resource for this caller", body = ErrorBody),
        Refusals
    )
)]
pub(crate) async fn resume(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_paused(state, user, id, false).await
}

#[utoipa::path(
    delete,
    path = "/v1/accounts/{id}",
    tag = "accounts",
    summary = "Remove an account",
    params(("id" = String, Path, description = "The account's name")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such resource for this caller", body = ErrorBody),
        Refusals
    )
)]
pub(crate) async fn remove(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    accounts::remove(&state.pool, &user, &id).await?;
    refresh(&state).await;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    get,
    path = "/v1/accounts/{id}/qr.png",
    tag = "accounts",
    summary = "The QR code of a native account being paired",
    params(("id" = String, Path, description = "The account's name")),
    responses(
        (status = 200, description = "The QR code", content_type = "image/png", body = inline(FileBody)),
        (status = 404, description = "No such resource for this caller", body = ErrorBody),
        (status = 409, description = "The resource is not in a state for this", body = ErrorBody),
        Refusals
    )
)]
pub(crate) async fn qr_png(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let code = accounts::qr_code(&state.pool, &user, &id).await?;
    let png = crate::qr::png(&code).map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type("image/png")
        .insert_header(("Cache-Control", "no-store"))
        .body(png))
}

/// What a task cost each account: its owner and admins may see it.
#[utoipa::path(
    get,
    path = "/v1/tasks/{task_id}/usage",
    tag = "accounts",
    summary = "What a task cost each account",
    params(("task_id" = String, Path, description = "The task id (a ULID)")),
    responses(
        (status = 200, description = "Usage", body = TaskUsageView),
        (status = 404, description = "No such resource for this caller", body = ErrorBody),
        Refusals
    )
)]
pub(crate) async fn task_usage(
    state: web::Data<AppState>,
    user: Need<Tasks>,
    task_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (task, usage) = accounts::task_usage(&state.pool, &user, &task_id).await?;
    Ok(HttpResponse::Ok().json(TaskUsageView {
        task_id: task.id.to_string(),
        cached: task.cached,
        accounts: usage
            .into_iter()
            .map(|u| AccountUsageView {
                account: u.account,
                checks: u.checks,
                details: u.details,
                calls: u.calls,
            })
            .collect(),
    }))
}

/// Another name for an account.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AliasIn {
    /// 1-200 characters of letters, digits and `-_.~+=` (it appears in URL paths).
    alias: String,
}

#[utoipa::path(
    post,
    path = "/v1/accounts/{id}/aliases",
    tag = "accounts",
    summary = "Give an account another name (a Walytic session or CommBox stream id)",
    params(("id" = String, Path, description = "The account's name")),
    request_body(content = AliasIn, content_type = "application/json"),
    responses(
        (status = 200, description = "The account", body = AccountView),
        (status = 400, description = "A parameter, the body or the file is wrong (see `code`)", body = ErrorBody),
        (status = 404, description = "No such resource for this caller", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
        Refusals
    )
)]
pub(crate) async fn add_alias(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    // Someone else's account answers 404 whatever the body holds.
    accounts::visible(&state.pool, &user, &id).await?;
    let input: AliasIn = parse(&body)?;
    accounts::add_alias(&state.pool, &user, &id, &input.alias).await?;
    show(state, user, id).await
}

#[utoipa::path(
    delete,
    path = "/v1/accounts/{id}/aliases/{alias}",
    tag = "accounts",
    summary = "Remove a name of an account",
    params(("id" = String, Path, description = "The account's name"), ("alias" = String, Path)),
    responses(
        (status = 200, description = "The account", body = AccountView),
        (status = 404, description = "No such resource for this caller", body = ErrorBody),
        Refusals
    )
)]
pub(crate) async fn remove_alias(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, alias) = path.into_inner();
    accounts::remove_alias(&state.pool, &user, &id, &alias).await?;
    show(state, user, web::Path::from(id)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_keys_are_redacted() {
        let v = redacted(serde_json::json!({"base_url": "http://x", "api_key": "s3cret"}));
        assert_eq!(v["api_key"], "[redacted]");
        let none = redacted(serde_json::json!({"registered_percent": 70}));
        assert!(none.get("api_key").is_none());
    }
}
