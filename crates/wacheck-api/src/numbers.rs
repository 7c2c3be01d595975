//! The native single-number API: one number (`GET /v1/numbers/{number}`) or up to
//! `api.check_max_numbers` (`POST /v1/numbers:check`) answered in the request, and the
//! caller's history of such checks (`GET /v1/history`).

use actix_web::{HttpResponse, web};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use wacheck_app::history::{self, Paging, Which};

use crate::auth::{Check, Need};
use crate::json::rfc3339;
#[allow(unused_imports)] // named in the OpenAPI annotations
use crate::openapi::{ErrorBody, Refusals};
use crate::router::{Router, route};
use crate::{ApiError, AppState, Code};
use wacheck_app::checks::{Checked, Route, check_now};

pub fn routes(r: &mut Router) {
    route!(r, check_many);
    route!(r, check_one);
    route!(r, history_page);
}

/// One number's answer.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NumberView {
    /// As given.
    pub input: String,
    /// E.164, or `null` for an invalid number.
    pub e164: Option<String>,
    /// `yes`, `no`, `invalid` or `unknown`.
    pub whatsapp: String,
    /// The id WhatsApp answered with (for `yes`).
    pub jid: Option<String>,
    pub business: Option<bool>,
    /// About text (with `details=true`, for `yes`).
    pub signature: Option<String>,
    /// Date of the about text, `YYYY-MM-DD`.
    pub status_update: Option<String>,
    /// `about hidden by privacy settings`, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privacy: Option<String>,
    /// Answered from the result cache, at no cost to any account.
    pub cached: bool,
    /// When the answer was obtained (RFC 3339); `null` for an invalid number.
    pub checked_at: Option<String>,
    /// Why the answer is `unknown` or `invalid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn view(c: &Checked) -> NumberView {
    let o = &c.outcome;
    let valid = c.e164.is_some();
    NumberView {
        input: c.input.clone(),
        e164: c.e164.as_ref().map(|e| e.as_str().to_owned()),
        whatsapp: c.whatsapp().as_str().to_owned(),
        jid: o.jid.clone(),
        business: o.business,
        signature: o.signature.clone(),
        status_update: o.status_update.map(|d| d.format("%Y-%m-%d").to_string()),
        privacy: o.privacy.clone(),
        cached: o.cached,
        checked_at: valid.then(|| rfc3339(o.checked_at.unwrap_or_else(Utc::now))),
        reason: o.reason.clone(),
    }
}

/// Options of a check.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CheckQuery {
    /// Two-letter country of numbers written without an international prefix.
    default_region: Option<String>,
    /// Also the about text, its date and the business flag (costs a details query).
    details: Option<bool>,
}

fn route(details: bool) -> Route<'static> {
    Route {
        source: "api",
        session: None,
        account: None,
        details,
    }
}

#[utoipa::path(
    get,
    path = "/v1/numbers/{number}",
    tag = "numbers",
    summary = "Check one number now",
    params(("number" = String, Path, description = "The number, in any usual spelling"), CheckQuery),
    responses(
        (status = 200, description = "The answer", body = NumberView),
        (status = 400, description = "A parameter is wrong (see `code`)", body = ErrorBody),
        Refusals
    )
)]
pub(crate) async fn check_one(
    state: web::Data<AppState>,
    user: Need<Check>,
    number: web::Path<String>,
    query: crate::query::Query<CheckQuery>,
) -> Result<HttpResponse, ApiError> {
    let inputs = [number.into_inner()];
    let region = query.default_region.as_deref().filter(|r| !r.is_empty());
    let checked = check_now(
        &state,
        &user,
        &inputs,
        region,
        route(query.details == Some(true)),
    )
    .await?;
    let one = checked
        .first()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("a checked number has no answer")))?;
    Ok(HttpResponse::Ok().json(view(one)))
}

/// Numbers to check in one request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckIn {
    /// The numbers, in any usual spelling (at most 1,000 by default).
    numbers: Vec<String>,
    /// Two-letter country of numbers written without an international prefix.
    #[serde(default)]
    default_region: Option<String>,
    /// Also the about text, its date and the business flag.
    #[serde(default)]
    details: bool,
}

/// One answer per number, in the order given.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckOut {
    pub results: Vec<NumberView>,
}

#[utoipa::path(
    post,
    path = "/v1/numbers:check",
    tag = "numbers",
    summary = "Check up to 1,000 numbers now",
    request_body(content = CheckIn, content_type = "application/json"),
    responses(
        (status = 200, description = "One answer per number, in order", body = CheckOut),
        (status = 400, description = "The body is wrong (see `code`)", body = ErrorBody),
        (status = 413, description = "More numbers than one request may carry", body = ErrorBody),
        Refusals
    )
)]
pub(crate) async fn check_many(
    state: web::Data<AppState>,
    user: Need<Check>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let input: CheckIn = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            Code::InvalidBody,
            format!("send {{\"numbers\": [\"+41…\", …]}}: {e}"),
        )
    })?;
    let max = state.api.check_max_numbers;
    if input.numbers.is_empty() {
        return Err(ApiError::new(Code::MissingParameter, "`numbers` is empty"));
    }
    if input.numbers.len() > max {
        return Err(ApiError::new(
            Code::PayloadTooLarge,
            format!(
                "at most {max} numbers per request; upload a file to the task API \
             (POST /wa/api/simple/tasks) for more"
            ),
        ));
    }
    let region = input.default_region.as_deref().filter(|r| !r.is_empty());
    let checked = check_now(&state, &user, &input.numbers, region, route(input.details)).await?;
    Ok(HttpResponse::Ok().json(CheckOut {
        results: checked.iter().map(view).collect(),
    }))
}

/// Which history entries.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    /// Only checks through this API family: `api`, `walytic` or `commbox`.
    source: Option<String>,
    /// Only checks through this session or stream.
    session: Option<String>,
    /// Entries per page (default 100, at most 1,000).
    limit: Option<i64>,
    /// Page, from 1.
    page: Option<i64>,
}

/// A checked number in the caller's history.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryView {
    pub id: String,
    pub source: String,
    pub session: Option<String>,
    pub input: String,
    pub e164: Option<String>,
    pub whatsapp: String,
    pub cached: bool,
    pub checked_at: String,
}

#[utoipa::path(
    get,
    path = "/v1/history",
    tag = "numbers",
    summary = "The caller's single-number checks, newest first",
    params(HistoryQuery),
    responses(
        (status = 200, description = "A page of entries; `X-Total-Count` has them all",
         body = [HistoryView], headers(("X-Total-Count" = i64))),
        (status = 400, description = "A parameter is wrong", body = ErrorBody),
        Refusals
    )
)]
pub(crate) async fn history_page(
    state: web::Data<AppState>,
    user: Need<Check>,
    query: crate::query::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let paging = Paging::new(query.limit, query.page)?;
    let which = Which::new(query.session.as_deref(), query.source.as_deref())?;
    let (entries, total) = history::page(&state, &user, which, paging).await?;
    let out: Vec<HistoryView> = entries
        .into_iter()
        .map(|e| HistoryView {
            id: e.id,
            source: e.source,
            session: e.session_id,
            input: e.input,
            e164: e.e164,
            whatsapp: e.outcome,
            cached: e.cached,
            checked_at: rfc3339(e.created_at),
        })
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header(("X-Total-Count", total.to_string()))
        .json(out))
}
