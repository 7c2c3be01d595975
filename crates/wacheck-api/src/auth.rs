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

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use anyhow::Context;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use wacheck_app::quota::QuotaReport;
use wacheck_app::{Caller, Scope};
use wacheck_engine::rate::{Gcra, Rates, Verdict};

use crate::{ApiError, AppState, Code};

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

/// The caller: the user a request's key or token belongs to, what it may do, and its limits.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub caller: Caller,
}

impl std::ops::Deref for AuthUser {
    type Target = Caller;
    fn deref(&self) -> &Caller {
        &self.caller
    }
}

/// The scope a [`Need`] extractor asks for.
pub trait Required {
    const SCOPE: Scope;
}

/// The `check` scope: single-number checks.
pub struct Check;
/// The `tasks` scope: tasks and the caller's own accounts.
pub struct Tasks;
/// The `admin` scope: everything, for every user.
pub struct Admin;

impl Required for Check {
    const SCOPE: Scope = Scope::Check;
}
impl Required for Tasks {
    const SCOPE: Scope = Scope::Tasks;
}
impl Required for Admin {
    const SCOPE: Scope = Scope::Admin;
}

/// A caller who holds the scope `S` (or is an admin): handlers that need a scope take this,
/// and a caller without it is refused 403 `missing_scope` before the handler runs.
pub struct Need<S>(pub AuthUser, std::marker::PhantomData<S>);

impl<S> std::ops::Deref for Need<S> {
    type Target = AuthUser;
    fn deref(&self) -> &AuthUser {
        &self.0
    }
}

impl<S: Required> FromRequest for Need<S> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        ready(
            AuthUser::from_request(req, payload)
                .into_inner()
                .and_then(|user| {
                    user.require(S::SCOPE)?;
                    Ok(Need(user, std::marker::PhantomData))
                }),
        )
    }
}

/// `X-Quota-*` headers from what the request's use cases found of the caller's quotas.
fn quota_headers(report: &QuotaReport, headers: &mut HeaderMap) {
    let seen = report.seen();
    if let Some((limit, used)) = seen.numbers {
        set(headers, "x-quota-numbers-limit", limit);
        set(
            headers,
            "x-quota-numbers-remaining",
            limit.saturating_sub(used),
        );
        let tomorrow = wacheck_core::day::next_utc_midnight(chrono::Utc::now());
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

impl AuthUser {
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
            ApiError::new(
                Code::Unauthorized,
                "missing credentials: send an API key in the X-API-Key header, or \
                 `Authorization: Bearer <API key or JWT>`",
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
    let bad = || ApiError::new(Code::Unauthorized, "credentials must be plain text");
    if let Some(key) = key {
        let key = key.map_err(|_| bad())?;
        if key.is_empty() {
            return Err(ApiError::new(
                Code::Unauthorized,
                "the X-API-Key header is empty",
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
            return Err(ApiError::new(
                Code::Unauthorized,
                "use `Authorization: Bearer <API key or JWT>`",
            ));
        }
    };
    if token.is_empty() {
        return Err(ApiError::new(
            Code::Unauthorized,
            "the bearer token is empty",
        ));
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
    let (db, defaults, max_rows) = (&state.pool, &state.limits, state.api.max_rows);
    let caller = match creds {
        Credentials::Key(key) => Caller::by_key(db, defaults, max_rows, &key)
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    Code::Unauthorized,
                    "unknown or revoked API key (or its user is disabled)",
                )
            })?,
        Credentials::Token(token) => {
            let claims = state.jwt.verify(&token).map_err(|why| {
                ApiError::new(Code::Unauthorized, format!("invalid token: {why}"))
            })?;
            let scope = claims.scope.as_deref();
            Caller::by_token(db, defaults, max_rows, &claims.sub, scope)
                .await?
                .ok_or_else(|| {
                    ApiError::new(
                        Code::Unauthorized,
                        "invalid token: its user does not exist or is disabled",
                    )
                })?
        }
    };
    Ok(AuthUser { caller })
}

/// Request rates of callers.
pub struct RateLimiter {
    rates: Rates,
    prefix: String,
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
            rates: Rates::new(redis),
            prefix: prefix.to_owned(),
        }
    }

    /// `None` for an unlimited caller, or while Redis cannot be asked (the request goes
    /// through: availability before strictness; account budgets stay strict).
    async fn check(&self, user: &AuthUser) -> Option<RateDecision> {
        let per_minute = user.limits.requests_per_minute;
        let rate = Gcra::per_minute(per_minute, user.limits.request_burst)?;
        let key = format!("{}:req:{}", self.prefix, user.rate_key());
        let verdict = match self.rates.book(&key, Some(rate), 1, None).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(
                    "request rate unknown (Redis unreachable?), letting it through: {e}"
                );
                return None;
            }
        };
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let secs = |d: std::time::Duration| d.as_micros().div_ceil(1_000_000) as u64;
        Some(match verdict {
            Verdict::Booked {
                remaining, reset, ..
            } => RateDecision {
                allowed: true,
                limit: per_minute,
                remaining,
                reset: now + secs(reset),
                retry_after: 1,
            },
            Verdict::Wait { wait, reset } => RateDecision {
                allowed: false,
                limit: per_minute,
                remaining: 0,
                reset: now + secs(reset),
                retry_after: secs(wait).max(1),
            },
            // Without a daily cap, nothing else is answered.
            Verdict::Capped | Verdict::Unseeded => return None,
        })
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

/// The middleware: authenticates requests that carry credentials, applies the caller's
/// request rate, and reports it in the response headers. A request without credentials goes
/// on: the handler's [`AuthUser`] refuses it, and public routes need none.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    authenticate_then(req, next, false).await
}

/// [`guard`] for route families whose clients expect a missing key refused before anything
/// else about the request is looked at.
pub async fn guard_required(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    authenticate_then(req, next, true).await
}

async fn authenticate_then(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    required: bool,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let creds = match credentials(req.headers()) {
        Ok(Some(c)) => c,
        Ok(None) if required => {
            let e = ApiError::new(Code::Unauthorized, "missing credentials: send your API key");
            return Ok(req.error_response(e));
        }
        Ok(None) => return Ok(next.call(req).await?.map_into_boxed_body()),
        Err(e) => return Ok(req.error_response(e)),
    };
    let user = match authenticate(&state, creds).await {
        Ok(u) => u,
        Err(e) => return Ok(req.error_response(e)),
    };
    let decision = state.rate.check(&user).await;
    if let Some(d) = decision.filter(|d| !d.allowed) {
        let e = ApiError::new(
            Code::RateLimited,
            format!(
                "more than {} requests a minute for this key; retry in {} s",
                d.limit, d.retry_after
            ),
        )
        .retry_after(d.retry_after);
        let mut res = req.error_response(e);
        rate_headers(res.headers_mut(), &d);
        return Ok(res);
    }
    let quota = user.quota.clone();
    req.extensions_mut().insert(user);
    let mut res = next.call(req).await?.map_into_boxed_body();
    if let Some(d) = decision {
        rate_headers(res.headers_mut(), &d);
    }
    quota_headers(&quota, res.headers_mut());
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
