//! The account pool over HTTP: add, list, show, pause, resume, change limits, remove; the
//! QR code of a native account being paired, as PNG; what a task cost each account.
//!
//! Admins (`admin` scope) see and manage every account and may add shared ones (used for
//! everyone's work); other users see and manage only their own, which only their work uses.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wacheck_core::{AccountKind, AccountState, TaskId};
use wacheck_store::accounts::{self, AccountRecord, Limits, NewAccount};
use wacheck_worker::pool::{AddError, add_account};

use crate::auth::AuthUser;
#[allow(unused_imports)] // named in the OpenAPI annotations
use crate::openapi::{ErrorBody, FileBody, Refusals};
use crate::{ApiError, AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/accounts", web::get().to(list))
        .route("/v1/accounts", web::post().to(create))
        .route("/v1/accounts/{id}", web::get().to(show))
        .route("/v1/accounts/{id}", web::patch().to(update))
        .route("/v1/accounts/{id}", web::delete().to(remove))
        .route("/v1/accounts/{id}/pause", web::post().to(pause))
        .route("/v1/accounts/{id}/resume", web::post().to(resume))
        .route("/v1/accounts/{id}/qr.png", web::get().to(qr_png))
        .route("/v1/accounts/{id}/aliases", web::post().to(add_alias))
        .route(
            "/v1/accounts/{id}/aliases/{alias}",
            web::delete().to(remove_alias),
        )
        .route("/v1/tasks/{task_id}/usage", web::get().to(task_usage));
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
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

fn view(r: AccountRecord, checks_today: i64, aliases: Vec<String>) -> AccountView {
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

fn not_found() -> ApiError {
    ApiError::NotFound("no such account".into())
}

/// The account named `id`, if the caller may see it (another user's account looks missing).
async fn visible(state: &AppState, user: &AuthUser, id: &str) -> Result<AccountRecord, ApiError> {
    user.need("tasks")?;
    let r = accounts::get(&state.pool, id)
        .await?
        .ok_or_else(not_found)?;
    if user.is_admin() || r.owner.as_deref() == Some(user.id.as_str()) {
        Ok(r)
    } else {
        Err(not_found())
    }
}

async fn aliases_of(state: &AppState, id: &str) -> Result<Vec<String>, ApiError> {
    Ok(accounts::aliases(&state.pool)
        .await?
        .into_iter()
        .filter(|(a, _)| a == id)
        .map(|(_, alias)| alias)
        .collect())
}

async fn today(state: &AppState, id: &str) -> Result<i64, ApiError> {
    Ok(accounts::checks_on(&state.pool, id, Utc::now().date_naive()).await?)
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
    user: AuthUser,
) -> Result<HttpResponse, ApiError> {
    user.need("tasks")?;
    let today: std::collections::HashMap<String, i64> = accounts::checks_today(&state.pool)
        .await?
        .into_iter()
        .collect();
    let aliases = accounts::aliases(&state.pool).await?;
    let views: Vec<AccountView> = accounts::list(&state.pool)
        .await?
        .into_iter()
        .filter(|r| user.is_admin() || r.owner.as_deref() == Some(user.id.as_str()))
        .map(|r| {
            let n = today.get(&r.id).copied().unwrap_or(0);
            let mine = aliases
                .iter()
                .filter(|(a, _)| *a == r.id)
                .map(|(_, alias)| alias.clone())
                .collect();
            view(r, n, mine)
        })
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

/// Limits given in a request; what is missing keeps its default (or current) value.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsIn {
    per_minute: Option<u32>,
    burst: Option<u32>,
    daily_cap: Option<u32>,
    jitter_ms: Option<u32>,
}

impl LimitsIn {
    fn over(&self, base: Limits) -> Result<Limits, ApiError> {
        let l = Limits {
            per_minute: self.per_minute.unwrap_or(base.per_minute),
            burst: self.burst.unwrap_or(base.burst),
            daily_cap: self.daily_cap.unwrap_or(base.daily_cap),
            jitter_ms: self.jitter_ms.unwrap_or(base.jitter_ms),
        };
        if l.burst == 0 {
            return Err(ApiError::bad(
                "invalid_parameter",
                "burst must be at least 1",
            ));
        }
        if l.jitter_ms > 600_000 {
            return Err(ApiError::bad(
                "invalid_parameter",
                "jitter_ms must be at most 600000 (10 minutes)",
            ));
        }
        Ok(l)
    }
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
    user: AuthUser,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    user.need("tasks")?;
    if !user.is_admin() && !state.accounts.settings.user_accounts {
        return Err(ApiError::Forbidden {
            code: "missing_scope",
            message: "only admins add accounts here (the operator may let users add their own: \
                      accounts.user_accounts)"
                .into(),
        });
    }
    let input: NewAccountIn = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad(
            "invalid_body",
            format!("the body is not a valid account: {e}"),
        )
    })?;
    let owner = match (user.is_admin(), input.owner) {
        (true, owner) => owner,
        (false, None) => Some(user.id.clone()),
        (false, Some(o)) if o == user.id => Some(o),
        (false, Some(_)) => {
            return Err(ApiError::Forbidden {
                code: "missing_scope",
                message: "only admins add accounts for other users".into(),
            });
        }
    };
    let new = NewAccount {
        id: input.id,
        kind: input.kind,
        owner,
        settings: input
            .settings
            .unwrap_or_else(|| Value::Object(Default::default())),
        limits: LimitsIn {
            per_minute: input.per_minute,
            burst: input.burst,
            daily_cap: input.daily_cap,
            jitter_ms: input.jitter_ms,
        }
        .over(Limits::default())?,
        state: AccountState::Pairing,
        builtin: false,
    };
    let record = add_account(&state.pool, new).await.map_err(|e| match e {
        AddError::Invalid(m) => ApiError::bad("invalid_account", m),
        AddError::Exists(_) => ApiError::Conflict {
            code: "account_exists",
            message: e.to_string(),
        },
        AddError::Store(s) => s.into(),
    })?;
    refresh(&state).await;
    Ok(HttpResponse::Created().json(view(record, 0, Vec::new())))
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
    let r = visible(&state, &user, &id).await?;
    let n = today(&state, &r.id).await?;
    let aliases = aliases_of(&state, &r.id).await?;
    Ok(HttpResponse::Ok().json(view(r, n, aliases)))
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
    let r = visible(&state, &user, &id).await?;
    let input: UpdateAccountIn = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad(
            "invalid_body",
            format!("the body is not a valid change: {e}"),
        )
    })?;
    let limits = LimitsIn {
        per_minute: input.per_minute,
        burst: input.burst,
        daily_cap: input.daily_cap,
        jitter_ms: input.jitter_ms,
    }
    .over(r.limits)?;
    if limits != r.limits {
        accounts::set_limits(&state.pool, &r.id, limits).await?;
    }
    if let Some(p) = input.paused {
        accounts::set_paused(&state.pool, &r.id, p).await?;
    }
    refresh(&state).await;
    show(state, user, id).await
}

async fn set_paused(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
    paused: bool,
) -> Result<HttpResponse, ApiError> {
    let r = visible(&state, &user, &id).await?;
    accounts::set_paused(&state.pool, &r.id, paused).await?;
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
    let r = visible(&state, &user, &id).await?;
    accounts::remove(&state.pool, &r.id).await?;
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
    let r = visible(&state, &user, &id).await?;
    if r.state != AccountState::Pairing {
        return Err(ApiError::Conflict {
            code: "not_pairing",
            message: format!("account `{}` is {}, not pairing", r.id, r.state),
        });
    }
    let code = r
        .qr_code
        .filter(|_| r.qr_expires_at.is_some_and(|t| t > Utc::now()))
        .ok_or_else(|| {
            ApiError::NotFound(
                "no QR code right now: a worker shows one once the session reaches WhatsApp; \
                 ask again in a few seconds"
                    .into(),
            )
        })?;
    let png = crate::qr::png(&code).map_err(ApiError::Internal)?;
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
    user: AuthUser,
    task_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    user.need("tasks")?;
    let id: TaskId = task_id.parse().map_err(|_| ApiError::task_not_found())?;
    let task = wacheck_store::tasks::get(&state.pool, id)
        .await?
        .filter(|t| user.is_admin() || t.user_id == user.id)
        .ok_or_else(ApiError::task_not_found)?;
    let usage = accounts::task_usage(&state.pool, task.id).await?;
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

    #[test]
    fn limits_keep_what_is_not_given_and_refuse_nonsense() {
        let base = Limits::default();
        let l = LimitsIn {
            per_minute: Some(30),
            ..Default::default()
        }
        .over(base)
        .unwrap();
        assert_eq!((l.per_minute, l.burst), (30, base.burst));
        assert!(
            LimitsIn {
                burst: Some(0),
                ..Default::default()
            }
            .over(base)
            .is_err()
        );
    }
}

/// Another name for an account.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AliasIn {
    /// 1-200 characters of letters, digits and `-_.~+=` (it appears in URL paths).
    alias: String,
}

/// Whether a name can be an alias: it has to fit in one URL path segment.
fn valid_alias(a: &str) -> bool {
    (1..=200).contains(&a.len())
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~+=".contains(&b))
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
    let r = visible(&state, &user, &id).await?;
    let input: AliasIn = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad("invalid_body", format!("send {{\"alias\": \"…\"}}: {e}")))?;
    if !valid_alias(&input.alias) {
        return Err(ApiError::bad(
            "invalid_parameter",
            "an alias is 1-200 letters, digits and -_.~+=",
        ));
    }
    if !accounts::add_alias(&state.pool, &input.alias, &r.id).await? {
        return Err(ApiError::Conflict {
            code: "alias_taken",
            message: format!("`{}` names another account already", input.alias),
        });
    }
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
    let r = visible(&state, &user, &id).await?;
    if !accounts::remove_alias(&state.pool, &alias, &r.id).await? {
        return Err(ApiError::NotFound(format!("`{id}` has no alias `{alias}`")));
    }
    show(state, user, web::Path::from(id)).await
}
