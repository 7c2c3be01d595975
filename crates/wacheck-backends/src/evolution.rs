//! Evolution API gateway: one instance of it is one account.
//!
//! - check: `POST /chat/whatsappNumbers/{instance}` with header `apikey` and body
//!   `{"numbers": ["41791234567", …]}` → `[{"jid", "exists", "number", "name"?, "lid"?}]`, many
//!   numbers per call, `number` echoing the input.
//! - details: `POST /chat/fetchProfile/{instance}` with `{"number": …}` → `{"wuid", "numberExists",
//!   "picture", "status": {"status", "setAt"}, "isBusiness"}`; hidden about texts come back empty
//!   with `setAt` 1970-01-01.
//! - probe: `GET /instance/connectionState/{instance}` → `{"instance": {"state": "open" | …}}`.
//!
//! Errors are `{"status", "error", "response": {"message"}}`: 401 wrong key, 404 unknown instance,
//! 400 bad request (fetchProfile answers 400 for a number not on WhatsApp), 500 with
//! "Connection Closed" when the instance's WhatsApp connection is down.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::{Value, json};
use wacheck_core::E164;

use crate::http::{GatewaySettings, excerpt, parse_json, retry_after, transport_error};
use crate::{AccountDown, BackendError, CheckBackend, CheckResult, Contact, Details, Presence};

const NAME: &str = "Evolution API";
/// Numbers per check call unless the account's settings say otherwise.
pub const DEFAULT_BATCH: usize = 50;

pub struct EvolutionBackend {
    settings: GatewaySettings,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct OnWhatsApp {
    #[serde(default)]
    jid: Option<String>,
    exists: bool,
    number: String,
    #[serde(default)]
    lid: Option<String>,
}

#[derive(Deserialize)]
struct Profile {
    #[serde(rename = "numberExists", default)]
    number_exists: Option<bool>,
    #[serde(default)]
    picture: Option<String>,
    #[serde(default)]
    status: Option<Value>,
    #[serde(rename = "isBusiness", default)]
    is_business: Option<bool>,
}

#[derive(Deserialize)]
struct ConnectionState {
    instance: InstanceState,
}

#[derive(Deserialize)]
struct InstanceState {
    #[serde(default)]
    state: Option<String>,
}

struct Answer {
    status: u16,
    wait: Option<std::time::Duration>,
    body: String,
}

impl EvolutionBackend {
    pub fn new(settings: GatewaySettings) -> Result<Self, String> {
        settings.validate()?;
        if settings.batch == Some(0) {
            return Err("batch must be at least 1".into());
        }
        Ok(EvolutionBackend {
            http: settings.client(),
            settings,
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Answer, BackendError> {
        let req = match &self.settings.api_key {
            Some(key) => req.header("apikey", key),
            None => req,
        };
        let resp = req.send().await.map_err(|e| transport_error(NAME, e))?;
        let status = resp.status().as_u16();
        let wait = retry_after(resp.headers());
        let body = resp.text().await.map_err(|e| transport_error(NAME, e))?;
        Ok(Answer { status, wait, body })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}/{}", self.settings.base(), self.settings.session)
    }

    async fn profile(&self, c: &Contact) -> Result<Details, BackendError> {
        let n = &c.number;
        let req = self
            .http
            .post(self.url("/chat/fetchProfile"))
            .json(&json!({ "number": c.user() }));
        let a = self.send(req).await?;
        if a.status == 400 && not_on_whatsapp(&a.body) {
            // Gone from WhatsApp since the check: nothing to tell.
            return Ok(Details {
                number: Some(n.clone()),
                ..Default::default()
            });
        }
        if !(200..300).contains(&a.status) {
            return Err(classify(a.status, a.wait, &a.body, &self.settings.session));
        }
        let p: Profile = parse_json(NAME, &a.body)?;
        Ok(profile_details(n, p))
    }
}

/// A fetchProfile 400 whose message is the check answer `{"exists": false}`.
fn not_on_whatsapp(body: &str) -> bool {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let msg = &v["response"]["message"];
    let first = msg.as_array().and_then(|a| a.first()).unwrap_or(msg);
    first.get("exists").and_then(Value::as_bool) == Some(false)
}

/// The about text and its date from a profile: a hidden text comes back empty (or null)
/// with the date 1970-01-01; a profile without a `status` object (the server could not read
/// it) says nothing.
fn profile_details(n: &E164, p: Profile) -> Details {
    let (mut about, mut set_at, mut hidden) = (None, None, false);
    if p.number_exists != Some(false)
        && let Some(status) = p.status.as_ref().filter(|s| s.is_object())
    {
        let text = status
            .get("status")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty());
        let date = status
            .get("setAt")
            .and_then(Value::as_str)
            .and_then(|d| d.get(..10))
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .filter(|d| d.format("%Y").to_string() != "1970");
        match text {
            Some(t) => {
                about = Some(t.to_owned());
                set_at = date;
            }
            None => hidden = true,
        }
    }
    let known = p.number_exists.is_some();
    Details {
        number: Some(n.clone()),
        about,
        about_set_at: set_at,
        about_hidden: hidden,
        // The fallback profile (no `numberExists`) says `isBusiness: false` without knowing.
        business: p.is_business.filter(|_| known),
        has_picture: known.then(|| p.picture.is_some_and(|u| !u.is_empty())),
    }
}

/// The text of `response.message`, which may be a string or (nested) arrays.
fn message_text(json: &Value) -> String {
    fn flat(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| flat(x, out)),
            Value::Null => {}
            other => out.push(other.to_string()),
        }
    }
    let mut out = Vec::new();
    flat(&json["response"]["message"], &mut out);
    out.join("; ")
}

/// What a non-2xx answer of Evolution API means.
pub(crate) fn classify(
    status: u16,
    wait: Option<std::time::Duration>,
    body: &str,
    instance: &str,
) -> BackendError {
    let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let message = match message_text(&json) {
        m if m.is_empty() => excerpt(body),
        m => excerpt(&m),
    };
    match status {
        401 | 403 => BackendError::Account {
            down: AccountDown::Failed,
            reason: format!("Evolution API refused the API key (HTTP {status})"),
        },
        404 => BackendError::Account {
            down: AccountDown::Failed,
            reason: format!("Evolution API has no instance `{instance}` (HTTP 404): {message}"),
        },
        429 => BackendError::RateLimited { backoff: wait },
        500..=599 if message.contains("rate-overlimit") => {
            BackendError::RateLimited { backoff: wait }
        }
        500..=599 if message.contains("Connection Closed") => BackendError::Account {
            down: AccountDown::LoggedOut,
            reason: format!(
                "the WhatsApp connection of Evolution instance `{instance}` is closed: {message}"
            ),
        },
        500..=599 => BackendError::Transient(format!(
            "Evolution API: server error (HTTP {status}): {message}"
        )),
        _ => BackendError::Permanent(format!(
            "Evolution API refused the request (HTTP {status}): {message}"
        )),
    }
}

#[async_trait]
impl CheckBackend for EvolutionBackend {
    fn kind(&self) -> &'static str {
        "evolution"
    }

    fn max_batch(&self) -> usize {
        self.settings.batch.unwrap_or(DEFAULT_BATCH).max(1)
    }

    fn details_batch(&self) -> usize {
        // One fetchProfile per number: a call is one request, inside the call timeout.
        1
    }

    async fn check(&self, numbers: &[E164]) -> Result<Vec<CheckResult>, BackendError> {
        let digits: Vec<&str> = numbers.iter().map(E164::digits).collect();
        let req = self
            .http
            .post(self.url("/chat/whatsappNumbers"))
            .json(&json!({ "numbers": digits }));
        let a = self.send(req).await?;
        if !(200..300).contains(&a.status) {
            return Err(classify(a.status, a.wait, &a.body, &self.settings.session));
        }
        let answers: Vec<OnWhatsApp> = parse_json(NAME, &a.body)?;
        Ok(match_answers(numbers, answers))
    }

    async fn details(&self, contacts: &[Contact]) -> Result<Vec<Details>, BackendError> {
        let mut out = Vec::with_capacity(contacts.len());
        for c in contacts {
            out.push(self.profile(c).await?);
        }
        Ok(out)
    }

    async fn probe(&self) -> Result<(), BackendError> {
        let req = self.http.get(self.url("/instance/connectionState"));
        let a = self.send(req).await?;
        if !(200..300).contains(&a.status) {
            return Err(classify(a.status, a.wait, &a.body, &self.settings.session));
        }
        let s: ConnectionState = parse_json(NAME, &a.body)?;
        let instance = &self.settings.session;
        match s.instance.state.as_deref() {
            Some("open") => Ok(()),
            Some("connecting") => Err(BackendError::Account {
                down: AccountDown::Pairing,
                reason: format!("Evolution instance `{instance}` is connecting (pairing)"),
            }),
            Some(other) => Err(BackendError::Account {
                down: AccountDown::LoggedOut,
                reason: format!("Evolution instance `{instance}` is {other}"),
            }),
            None => Err(BackendError::Account {
                down: AccountDown::LoggedOut,
                reason: format!("Evolution instance `{instance}` is not loaded"),
            }),
        }
    }
}

/// One result per asked number, matched by the `number` the server echoes; a number it did
/// not answer is `unknown`, never `no`.
fn match_answers(numbers: &[E164], answers: Vec<OnWhatsApp>) -> Vec<CheckResult> {
    let mut by_number: HashMap<String, OnWhatsApp> = HashMap::with_capacity(answers.len());
    for a in answers {
        let key: String = a.number.chars().filter(char::is_ascii_digit).collect();
        by_number.insert(key, a);
    }
    numbers
        .iter()
        .map(|n| {
            let presence = match by_number.remove(n.digits()) {
                Some(a) if a.exists => Presence::Yes {
                    jid: a
                        .jid
                        .filter(|j| !j.is_empty())
                        .unwrap_or_else(|| format!("{}@s.whatsapp.net", n.digits())),
                    lid: a.lid.filter(|l| l.contains('@')),
                    business: None,
                },
                Some(_) => Presence::No,
                None => Presence::Unknown {
                    reason: "Evolution API gave no answer for this number".into(),
                },
            };
            CheckResult {
                number: n.clone(),
                presence,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> E164 {
        E164::from_canonical(s).unwrap()
    }

    #[test]
    fn answers_match_by_echoed_number_and_missing_ones_are_unknown() {
        let answers: Vec<OnWhatsApp> = serde_json::from_str(
            r#"[{"jid":"5511999999999@s.whatsapp.net","exists":true,"number":"5511999999999","name":"J"},
                {"jid":"5511888888888@s.whatsapp.net","exists":false,"number":"5511888888888"}]"#,
        )
        .unwrap();
        let r = match_answers(
            &[
                n("+5511888888888"),
                n("+5511999999999"),
                n("+5511777777777"),
            ],
            answers,
        );
        assert_eq!(r[0].presence, Presence::No);
        assert!(
            matches!(&r[1].presence, Presence::Yes { jid, .. } if jid == "5511999999999@s.whatsapp.net")
        );
        assert!(matches!(r[2].presence, Presence::Unknown { .. }));
    }

    #[test]
    fn profiles_tell_hidden_about_texts_from_unknown_ones() {
        let p = |s: &str| profile_details(&n("+5511999999999"), serde_json::from_str(s).unwrap());
        let shown = p(
            r#"{"wuid":"x","numberExists":true,"picture":"https://p","status":{"status":"Busy","setAt":"2024-05-01T12:00:00.000Z"},"isBusiness":true}"#,
        );
        assert_eq!(shown.about.as_deref(), Some("Busy"));
        assert_eq!(shown.about_set_at, NaiveDate::from_ymd_opt(2024, 5, 1));
        assert_eq!(
            (shown.business, shown.has_picture, shown.about_hidden),
            (Some(true), Some(true), false)
        );
        let hidden = p(
            r#"{"wuid":"x","numberExists":true,"picture":null,"status":{"status":"","setAt":"1970-01-01T00:00:00.000Z"},"isBusiness":false}"#,
        );
        assert_eq!(
            (hidden.about, hidden.about_set_at, hidden.about_hidden),
            (None, None, true)
        );
        assert_eq!(hidden.has_picture, Some(false));
        let fallback = p(
            r#"{"wuid":"x","name":null,"picture":null,"status":null,"os":null,"isBusiness":false}"#,
        );
        assert_eq!(
            (
                fallback.about_hidden,
                fallback.business,
                fallback.has_picture
            ),
            (false, None, None)
        );
    }

    #[test]
    fn errors_are_classified() {
        let i = "main";
        assert!(matches!(
            classify(
                401,
                None,
                r#"{"status":401,"error":"Unauthorized","response":{"message":"Unauthorized"}}"#,
                i
            ),
            BackendError::Account {
                down: AccountDown::Failed,
                ..
            }
        ));
        let e = classify(
            404,
            None,
            r#"{"status":404,"error":"Not Found","response":{"message":["The \"main\" instance does not exist"]}}"#,
            i,
        );
        assert!(
            matches!(&e, BackendError::Account { down: AccountDown::Failed, reason } if reason.contains("does not exist")),
            "{e:?}"
        );
        assert!(matches!(
            classify(
                500,
                None,
                r#"{"status":500,"error":"Internal Server Error","response":{"message":["Error: Connection Closed"]}}"#,
                i
            ),
            BackendError::Account {
                down: AccountDown::LoggedOut,
                ..
            }
        ));
        assert!(matches!(
            classify(
                500,
                None,
                r#"{"status":500,"error":"Internal Server Error","response":{"message":"boom"}}"#,
                i
            ),
            BackendError::Transient(_)
        ));
        assert!(matches!(
            classify(429, None, "", i),
            BackendError::RateLimited { .. }
        ));
        assert!(matches!(
            classify(400, None, r#"{"status":400,"error":"Bad Request","response":{"message":[["numbers does not meet minimum length of 1"]]}}"#, i),
            BackendError::Permanent(m) if m.contains("minimum length")
        ));
        assert!(not_on_whatsapp(
            r#"{"status":400,"error":"Bad Request","response":{"message":[{"jid":"1@s.whatsapp.net","exists":false,"number":"1"}]}}"#
        ));
    }
}
