//! Authentication: API keys (`X-API-Key: <key>`, or `Authorization: Bearer <key>`) and JWTs
//! (`Authorization: Bearer <jwt>`: HS256 with a shared secret, RS256/ES256 with public keys;
//! `exp` required, `sub` = user id), a per-caller request rate held in Redis, and the scopes a
//! route needs.
//!
//! The [`guard`] middleware authenticates every request that carries credentials (a wrong one
//! is refused at once with 401), applies the caller's request rate (429 with `Retry-After`), and
//! reports the rate in `X-RateLimit-*` headers. Handlers take an [`AuthUser`], which is the
//! guard's result, or 401 when the request carried no credentials.

use std::future::{Ready, ready};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, ResponseError, web};
use anyhow::Context;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use wacheck_store::users::UserLimits;

use crate::{ApiError, AppState};

/// How tokens are checked.
#[derive(Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Secret of HS256 tokens (at least 32 bytes); unset: HS256 tokens are refused.
    #[serde(serialize_with = "expose")]
    pub jwt_secret: Option<SecretString>,
    /// PEM files of public keys for RS256 (RSA, 2048 bits or more) and ES256 (P-256) tokens.
    pub jwt_public_keys: Vec<PathBuf>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub jwt_leeway_secs: u64,
    /// When set, tokens must carry this `iss`.
    pub jwt_issuer: Option<String>,
    /// When set, tokens must carry this `aud`.
    pub jwt_audience: Option<String>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            jwt_secret: None,
            jwt_public_keys: Vec::new(),
            jwt_leeway_secs: 30,
            jwt_issuer: None,
            jwt_audience: None,
        }
    }
}

/// Writes a secret into a configuration file the caller writes for its own processes.
fn expose<S: serde::Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(secret) => s.serialize_some(secret.expose_secret()),
        None => s.serialize_none(),
    }
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("jwt_public_keys", &self.jwt_public_keys)
            .field("jwt_leeway_secs", &self.jwt_leeway_secs)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .finish()
    }
}

/// A token's claims: `sub` is the user, `scope` (space-separated) narrows what it may do
/// (without it: `check` and `tasks`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// Checks JWTs against the configured keys.
pub struct JwtVerifier {
    hs: Option<DecodingKey>,
    rsa: Vec<DecodingKey>,
    ec: Vec<DecodingKey>,
    settings: AuthSettings,
}

/// Smallest HS256 secret accepted, in bytes.
pub const MIN_SECRET: usize = 32;

impl JwtVerifier {
    pub fn new(settings: &AuthSettings) -> anyhow::Result<Self> {
        let hs = match &settings.jwt_secret {
            Some(s) => {
                let s = s.expose_secret().as_bytes();
                anyhow::ensure!(
                    s.len() >= MIN_SECRET,
                    "auth.jwt_secret must be at least {MIN_SECRET} bytes"
                );
                Some(DecodingKey::from_secret(s).context("auth.jwt_secret")?)
            }
            None => None,
        };
        let (mut rsa, mut ec) = (Vec::new(), Vec::new());
        for path in &settings.jwt_public_keys {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading the public key {}", path.display()))?;
            if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
                rsa.push(k);
            } else {
                let k = DecodingKey::from_ec_pem(&pem).with_context(|| {
                    format!("{} is neither an RSA nor an EC public key", path.display())
                })?;
                ec.push(k);
            }
        }
        Ok(JwtVerifier {
            hs,
            rsa,
            ec,
            settings: settings.clone(),
        })
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.algorithms = vec![alg];
        v.leeway = self.settings.jwt_leeway_secs;
        v.set_required_spec_claims(&["exp", "sub"]);
        v.validate_nbf = true;
        match &self.settings.jwt_audience {
            Some(a) => v.set_audience(&[a]),
            None => v.validate_aud = false,
        }
        if let Some(i) = &self.settings.jwt_issuer {
            v.set_issuer(&[i]);
        }
        v
    }

    /// The claims of a valid token; why not, in words, otherwise.
    pub fn verify(&self, token: &str) -> Result<Claims, String> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| format!("not a valid token ({})", describe(e.kind())))?;
        let keys: Vec<&DecodingKey> = match header.alg {
            Algorithm::HS256 => self.hs.iter().collect(),
            Algorithm::RS256 => self.rsa.iter().collect(),
            Algorithm::ES256 => self.ec.iter().collect(),
            other => return Err(format!("tokens signed with {other:?} are not accepted")),
        };
        if keys.is_empty() {
            return Err(match header.alg {
                Algorithm::HS256 => "no secret is configured for HS256 tokens: set \
                                     auth.jwt_secret (WACHECK_AUTH__JWT_SECRET) in the \
                                     service's environment and restart it"
                    .to_owned(),
                alg => format!(
                    "no public key is configured for {alg:?} tokens: list its PEM file in \
                     auth.jwt_public_keys and restart the service"
                ),
            });
        }
        let v = self.validation(header.alg);
        let mut last = String::new();
        for key in keys {
            match jsonwebtoken::decode::<Claims>(token, key, &v) {
                Ok(data) if data.claims.sub.trim().is_empty() => {
                    return Err("the token's `sub` is empty".into());
                }
                Ok(data) => return Ok(data.claims),
                Err(e) => last = describe(e.kind()),
            }
        }
        Err(last)
    }

    /// A new HS256 token for `user` (the `wacheck token create` command).
    pub fn issue(
        &self,
        user: &str,
        scopes: Option<&str>,
        ttl: std::time::Duration,
    ) -> anyhow::Result<String> {
        let secret = self
            .settings
            .jwt_secret
            .as_ref()
            .context("set auth.jwt_secret (WACHECK_AUTH__JWT_SECRET) to issue tokens")?;
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: user.to_owned(),
            exp: now
                .checked_add(ttl.as_secs())
                .context("the token's lifetime is too long")?,
            iat: Some(now),
            scope: scopes.map(str::to_owned),
            iss: self.settings.jwt_issuer.clone(),
            aud: self.settings.jwt_audience.clone(),
        };
        let key = EncodingKey::from_secret(secret.expose_secret().as_bytes())?;
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &key,
        )?)
    }
}

fn describe(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet".into(),
        ErrorKind::InvalidSignature => "the token's signature is wrong".into(),
        ErrorKind::InvalidAlgorithm => "the token's algorithm is not accepted".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("the token lacks `{c}`"),
        ErrorKind::InvalidAudience => "the token is for another audience".into(),
        ErrorKind::InvalidIssuer => "the token is from another issuer".into(),
        // `alg: none` and other malformed headers fail here.
        ErrorKind::Json(_)
        | ErrorKind::Base64(_)
        | ErrorKind::Utf8(_)
        | ErrorKind::InvalidToken => "malformed".into(),
        other => format!("{other:?}"),
    }
}

/// Service-wide default limits of every user (each user may have their own).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Requests per minute of one key (or token subject); 0: unlimited.
    pub requests_per_minute: u32,
    /// Requests that may come at once.
    pub request_burst: u32,
    /// Input rows a user may upload per UTC day; 0: unlimited.
    pub numbers_per_day: u64,
    /// Tasks of a user being checked at once; 0: unlimited.
    pub max_concurrent_tasks: u32,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            requests_per_minute: 6_000,
            request_burst: 200,
            numbers_per_day: 0,
            max_concurrent_tasks: 0,
        }
    }
}

/// A user's limits with the defaults filled in (0: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub requests_per_minute: u32,
    pub request_burst: u32,
    pub numbers_per_day: u64,
    pub max_concurrent_tasks: u32,
    pub max_rows: u64,
}

impl Limits {
    pub fn of(user: &UserLimits, defaults: &LimitSettings, max_rows: u64) -> Limits {
        Limits {
            requests_per_minute: user
                .requests_per_minute
                .unwrap_or(defaults.requests_per_minute),
            request_burst: user.request_burst.unwrap_or(defaults.request_burst).max(1),
            numbers_per_day: user.numbers_per_day.unwrap_or(defaults.numbers_per_day),
            max_concurrent_tasks: user
                .max_concurrent_tasks
                .unwrap_or(defaults.max_concurrent_tasks),
            max_rows: user.max_rows.unwrap_or(max_rows).min(max_rows).max(1),
        }
    }
}

/// The caller: the user a request's key or token belongs to, what it may do, and its limits.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: String,
    pub scopes: Vec<String>,
    /// The key used (`None` for a token).
    pub key_id: Option<String>,
    pub limits: Limits,
    /// What a handler found of the caller's quotas, for the response headers.
    pub quota: QuotaReport,
}

/// The quotas a request touched, as a handler found them; the middleware turns them into
/// `X-Quota-*` response headers. Shared by the clones of one request's [`AuthUser`].
#[derive(Debug, Clone, Default)]
pub struct QuotaReport(Arc<Mutex<QuotaSeen>>);

#[derive(Debug, Clone, Copy, Default)]
struct QuotaSeen {
    /// `numbers_per_day` and what today's count is.
    numbers: Option<(u64, u64)>,
    /// `max_concurrent_tasks` and how many are being checked.
    tasks: Option<(u64, u64)>,
}

impl QuotaReport {
    /// Today's numbers: the limit (0: none, nothing reported) and the count so far.
    pub fn numbers(&self, limit: u64, used: u64) {
        if limit > 0 {
            self.0.lock().expect("quota report").numbers = Some((limit, used));
        }
    }

    /// Tasks at once: the limit (0: none, nothing reported) and how many run.
    pub fn tasks(&self, limit: u64, running: u64) {
        if limit > 0 {
            self.0.lock().expect("quota report").tasks = Some((limit, running));
        }
    }

    fn headers(&self, headers: &mut HeaderMap) {
        let seen = *self.0.lock().expect("quota report");
        if let Some((limit, used)) = seen.numbers {
            set(headers, "x-quota-numbers-limit", limit);
            set(
                headers,
                "x-quota-numbers-remaining",
                limit.saturating_sub(used),
            );
            let tomorrow = (chrono::Utc::now().date_naive() + chrono::Days::new(1))
                .and_hms_opt(0, 0, 0)
                .expect("midnight")
                .and_utc();
            set(
                headers,
                "x-quota-numbers-reset",
                tomorrow.timestamp().max(0) as u64,
            );
        }
        if let Some((limit, running)) = seen.tasks {
            set(headers, "x-quota-tasks-limit", limit);
            set(
                headers,
                "x-quota-tasks-remaining",
                limit.saturating_sub(running),
            );
        }
    }
}

impl AuthUser {
    /// The `user_id` a request names must be the caller (admins may name anyone); anything
    /// else looks like a missing resource (no existence leak). Returns whose resources to use.
    pub fn acting_for<'a>(&'a self, user_id: &'a str) -> Result<&'a str, ApiError> {
        if self.id == user_id || self.is_admin() {
            Ok(user_id)
        } else {
            Err(ApiError::task_not_found())
        }
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    pub fn is_admin(&self) -> bool {
        self.has_scope("admin")
    }

    /// The key must carry `scope` (admins may do everything).
    pub fn need(&self, scope: &str) -> Result<(), ApiError> {
        if self.has_scope(scope) || self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden {
                code: "missing_scope",
                message: format!("this API key lacks the `{scope}` scope"),
            })
        }
    }

    /// Who the request rate is counted for.
    fn rate_key(&self) -> String {
        match &self.key_id {
            Some(k) => format!("key:{k}"),
            None => format!("user:{}", self.id),
        }
    }
}

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(req.extensions().get::<AuthUser>().cloned().ok_or_else(|| {
            ApiError::Unauthorized(
                "missing credentials: send an API key in the X-API-Key header, or \
                 `Authorization: Bearer <API key or JWT>`"
                    .into(),
            )
        }))
    }
}

/// What a request presents.
enum Credentials {
    Key(String),
    Token(String),
}

fn credentials(headers: &HeaderMap) -> Result<Option<Credentials>, ApiError> {
    let key = headers
        .get("x-api-key")
        .map(|v| v.to_str().map(|s| s.trim().to_owned()));
    let bearer = headers
        .get("authorization")
        .map(|v| v.to_str().map(str::trim));
    let bad = || ApiError::Unauthorized("credentials must be plain text".into());
    if let Some(key) = key {
        let key = key.map_err(|_| bad())?;
        if key.is_empty() {
            return Err(ApiError::Unauthorized(
                "the X-API-Key header is empty".into(),
            ));
        }
        return Ok(Some(Credentials::Key(key)));
    }
    let Some(auth) = bearer else {
        return Ok(None);
    };
    let auth = auth.map_err(|_| bad())?;
    let token = match auth.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => {
            return Err(ApiError::Unauthorized(
                "use `Authorization: Bearer <API key or JWT>`".into(),
            ));
        }
    };
    if token.is_empty() {
        return Err(ApiError::Unauthorized("the bearer token is empty".into()));
    }
    Ok(Some(
        if token.starts_with(wacheck_store::keys::KEY_PREFIX) {
            Credentials::Key(token.to_owned())
        } else {
            Credentials::Token(token.to_owned())
        },
    ))
}

async fn authenticate(state: &AppState, creds: Credentials) -> Result<AuthUser, ApiError> {
    let max_rows = state.api.max_rows;
    match creds {
        Credentials::Key(key) => {
            match wacheck_store::keys::authenticate(&state.pool, &key).await? {
                Some(k) => Ok(AuthUser {
                    limits: Limits::of(&k.limits, &state.limits, max_rows),
                    id: k.user_id,
                    scopes: k.scopes,
                    key_id: Some(k.key_id),
                    quota: QuotaReport::default(),
                }),
                None => Err(ApiError::Unauthorized(
                    "unknown or revoked API key (or its user is disabled)".into(),
                )),
            }
        }
        Credentials::Token(token) => {
            let claims = state
                .jwt
                .verify(&token)
                .map_err(|why| ApiError::Unauthorized(format!("invalid token: {why}")))?;
            let user = wacheck_store::users::active(&state.pool, &claims.sub)
                .await?
                .ok_or_else(|| {
                    ApiError::Unauthorized(
                        "invalid token: its user does not exist or is disabled".into(),
                    )
                })?;
            let scopes: Vec<String> = match &claims.scope {
                Some(s) => s
                    .split_whitespace()
                    .filter(|s| wacheck_store::keys::SCOPES.contains(s))
                    .map(str::to_owned)
                    .collect(),
                None => wacheck_store::keys::DEFAULT_SCOPES
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
            };
            Ok(AuthUser {
                limits: Limits::of(&user.limits, &state.limits, max_rows),
                id: user.id,
                scopes,
                key_id: None,
                quota: QuotaReport::default(),
            })
        }
    }
}

/// The request rate: a GCRA on the Redis server's clock, shared by every API process.
/// KEYS[1] the caller's theoretical arrival time (µs). ARGV: emission interval (µs), burst
/// tolerance (µs). Returns `{allowed, remaining, reset_us, retry_us}`.
const RATE_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - tolerance
if allow_at > now then
  return {0, 0, tat - now, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return {1, math.floor((now + tolerance - new_tat) / interval), new_tat - now, 0}
";

/// Request rates of callers.
pub struct RateLimiter {
    redis: redis::aio::ConnectionManager,
    prefix: String,
    script: redis::Script,
}

/// What the rate limiter said about one request.
#[derive(Debug, Clone, Copy)]
pub struct RateDecision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u64,
    /// When the caller's budget is whole again (Unix seconds).
    pub reset: u64,
    /// When to try again, in seconds (refused requests).
    pub retry_after: u64,
}

impl RateLimiter {
    pub fn new(redis: redis::aio::ConnectionManager, prefix: &str) -> Self {
        RateLimiter {
            redis,
            prefix: prefix.to_owned(),
            script: redis::Script::new(RATE_LUA),
        }
    }

    /// `None` for an unlimited caller, or while Redis cannot be asked (the request goes
    /// through: availability before strictness; account budgets stay strict).
    async fn check(&self, user: &AuthUser) -> Option<RateDecision> {
        let per_minute = user.limits.requests_per_minute;
        if per_minute == 0 {
            return None;
        }
        let interval = 60_000_000 / u64::from(per_minute);
        let burst = u64::from(user.limits.request_burst.max(1));
        let mut conn = self.redis.clone();
        let r: redis::RedisResult<(i64, i64, i64, i64)> = self
            .script
            .key(format!("{}:req:{}", self.prefix, user.rate_key()))
            .arg(interval.max(1))
            .arg(interval * burst)
            .invoke_async(&mut conn)
            .await;
        match r {
            Ok((allowed, remaining, reset_us, retry_us)) => {
                let now = chrono::Utc::now().timestamp().max(0) as u64;
                Some(RateDecision {
                    allowed: allowed == 1,
                    limit: per_minute,
                    remaining: remaining.max(0) as u64,
                    reset: now + (reset_us.max(0) as u64).div_ceil(1_000_000),
                    retry_after: (retry_us.max(0) as u64).div_ceil(1_000_000).max(1),
                })
            }
            Err(e) => {
                tracing::warn!(
                    "request rate unknown (Redis unreachable?), letting it through: {e}"
                );
                None
            }
        }
    }
}

fn set(headers: &mut HeaderMap, name: &'static str, value: u64) {
    headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
}

fn rate_headers(headers: &mut HeaderMap, d: &RateDecision) {
    set(headers, "x-ratelimit-limit", u64::from(d.limit));
    set(headers, "x-ratelimit-remaining", d.remaining);
    set(headers, "x-ratelimit-reset", d.reset);
}

/// An error as the route family of `path` shows it (for errors raised outside handlers, such
/// as a malformed query string).
pub(crate) fn error_for_path(path: &str, e: ApiError) -> actix_web::Error {
    let resp = ErrorStyle::of(path).render(&e);
    actix_web::error::InternalError::from_response(e.to_string(), resp).into()
}

/// The error shape of a route family: compatible APIs answer in their own.
#[derive(Debug, Clone, Copy)]
enum ErrorStyle {
    Native,
    /// `{"error": "..."}` under `/api/verify`.
    Walytic,
    /// `{"status", "description", "response_time"}` under `/whatsapp`.
    CommBox,
}

impl ErrorStyle {
    fn of(path: &str) -> Self {
        if path.starts_with("/api/verify/") {
            ErrorStyle::Walytic
        } else if path.starts_with("/whatsapp/") {
            ErrorStyle::CommBox
        } else {
            ErrorStyle::Native
        }
    }

    fn render(self, e: &ApiError) -> actix_web::HttpResponse {
        match self {
            ErrorStyle::Native => e.error_response(),
            ErrorStyle::Walytic => crate::walytic::error_body(e),
            ErrorStyle::CommBox => crate::commbox::error_body(e),
        }
    }
}

/// The middleware: authenticates requests that carry credentials, applies the caller's
/// request rate, and reports it in the response headers.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let style = ErrorStyle::of(req.path());
    let creds = match credentials(req.headers()) {
        Ok(Some(c)) => c,
        // Compatible APIs answer a missing key in their own shape; elsewhere the handler's
        // extractor does (and public routes need none).
        Ok(None) if !matches!(style, ErrorStyle::Native) => {
            let e = ApiError::Unauthorized("missing credentials: send your API key".into());
            return Ok(req.into_response(style.render(&e)));
        }
        Ok(None) => return Ok(next.call(req).await?.map_into_boxed_body()),
        Err(e) => return Ok(req.into_response(style.render(&e))),
    };
    let user = match authenticate(&state, creds).await {
        Ok(u) => u,
        Err(e) => return Ok(req.into_response(style.render(&e))),
    };
    let decision = state.rate.check(&user).await;
    if let Some(d) = decision.filter(|d| !d.allowed) {
        let mut resp = style.render(&ApiError::TooManyRequests {
            code: "rate_limited",
            message: format!(
                "more than {} requests a minute for this key; retry in {} s",
                d.limit, d.retry_after
            ),
            retry_after: d.retry_after,
        });
        rate_headers(resp.headers_mut(), &d);
        return Ok(req.into_response(resp));
    }
    let quota = user.quota.clone();
    req.extensions_mut().insert(user);
    let mut res = next.call(req).await?.map_into_boxed_body();
    if let Some(d) = decision {
        rate_headers(res.headers_mut(), &d);
    }
    quota.headers(res.headers_mut());
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_static(k),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn credentials_come_from_the_key_header_or_a_bearer_token() {
        assert!(matches!(credentials(&headers(&[])), Ok(None)));
        assert!(matches!(
            credentials(&headers(&[("x-api-key", " wck_abc ")])),
            Ok(Some(Credentials::Key(k))) if k == "wck_abc"
        ));
        assert!(matches!(
            credentials(&headers(&[("authorization", "Bearer wck_abc")])),
            Ok(Some(Credentials::Key(_)))
        ));
        assert!(matches!(
            credentials(&headers(&[("authorization", "bearer a.b.c")])),
            Ok(Some(Credentials::Token(t))) if t == "a.b.c"
        ));
        assert!(credentials(&headers(&[("authorization", "Basic dXNlcg==")])).is_err());
        assert!(credentials(&headers(&[("authorization", "Bearer ")])).is_err());
        assert!(credentials(&headers(&[("x-api-key", "")])).is_err());
    }

    #[test]
    fn user_limits_fall_back_to_the_defaults_and_rows_never_exceed_the_service() {
        let defaults = LimitSettings::default();
        let own = UserLimits {
            requests_per_minute: Some(10),
            max_rows: Some(10_000_000),
            ..Default::default()
        };
        let l = Limits::of(&own, &defaults, 5_000_000);
        assert_eq!(l.requests_per_minute, 10);
        assert_eq!(l.request_burst, defaults.request_burst);
        assert_eq!(l.max_rows, 5_000_000);
    }

    #[test]
    fn the_secret_is_redacted() {
        let s = AuthSettings {
            jwt_secret: Some(SecretString::from("x".repeat(40))),
            ..Default::default()
        };
        assert!(!format!("{s:?}").contains("xxxx"));
        assert!(
            JwtVerifier::new(&AuthSettings {
                jwt_secret: Some(SecretString::from("short")),
                ..Default::default()
            })
            .is_err()
        );
    }
}
