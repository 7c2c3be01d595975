//! WAHA (WhatsApp HTTP API) gateway: one session of it is one account.
//!
//! - check: `GET /api/contacts/check-exists?phone=<digits>&session=<name>` →
//!   `{"numberExists": true, "chatId": "…@c.us"}` (`chatId` absent when false); one number per call.
//! - details: `GET /api/contacts/about?contactId=&session=` → `{"about": "…"}` (`null` when privacy
//!   hides it; no date), and `GET /api/contacts/profile-picture` → `{"profilePictureURL": …}`.
//! - probe: `GET /api/sessions/{session}` → `{"status": "WORKING" | "SCAN_QR_CODE" | …}`.
//!
//! Answers: 401 the key is wrong; 404 the session is unknown or stopped; 422 the session is not
//! WORKING (`{"status": …}` says which state); 501 the engine lacks the feature; a 500 whose
//! `exception` says `rate-overlimit` (or 429) is WhatsApp throttling; 429 from a proxy in front.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

use crate::http::{GatewaySettings, excerpt, parse_json, retry_after, transport_error};
use crate::{AccountDown, BackendError, CheckBackend, CheckResult, Contact, Details, Presence};
use wacheck_core::E164;

const NAME: &str = "WAHA";

pub struct WahaBackend {
    settings: GatewaySettings,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Exists {
    #[serde(rename = "numberExists")]
    number_exists: bool,
    #[serde(rename = "chatId", default)]
    chat_id: Option<String>,
}

#[derive(Deserialize)]
struct About {
    #[serde(default)]
    about: Option<String>,
}

#[derive(Deserialize)]
struct Picture {
    #[serde(rename = "profilePictureURL", default)]
    url: Option<String>,
}

#[derive(Deserialize)]
struct Session {
    status: String,
}

impl WahaBackend {
    pub fn new(settings: GatewaySettings) -> Result<Self, String> {
        settings.validate()?;
        Ok(WahaBackend {
            http: settings.client(),
            settings,
        })
    }

    /// One GET: the status, `Retry-After` and body of whatever answer came.
    async fn request(&self, path: &str, query: &[(&str, &str)]) -> Result<Answer, BackendError> {
        let mut req = self
            .http
            .get(format!("{}{path}", self.settings.base()))
            .query(query);
        if let Some(key) = &self.settings.api_key {
            req = req.header("X-Api-Key", key);
        }
        let resp = req.send().await.map_err(|e| transport_error(NAME, e))?;
        let status = resp.status().as_u16();
        let wait = retry_after(resp.headers());
        let body = resp.text().await.map_err(|e| transport_error(NAME, e))?;
        Ok(Answer { status, wait, body })
    }

    /// The body of a 2xx answer, or the error its status means.
    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<String, BackendError> {
        let a = self.request(path, query).await?;
        if (200..300).contains(&a.status) {
            return Ok(a.body);
        }
        Err(classify(a.status, a.wait, &a.body, &self.settings.session))
    }

    /// Like `get`, but `None` when the session's engine lacks the feature (HTTP 501).
    async fn get_optional(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Option<String>, BackendError> {
        let a = self.request(path, query).await?;
        match a.status {
            200..=299 => Ok(Some(a.body)),
            501 => Ok(None),
            status => Err(classify(status, a.wait, &a.body, &self.settings.session)),
        }
    }

    /// The about text, and whether privacy settings hide it.
    async fn about(&self, contact: &str) -> Result<(Option<String>, bool), BackendError> {
        let q = [("contactId", contact), ("session", &self.settings.session)];
        let Some(body) = self.get_optional("/api/contacts/about", &q).await? else {
            return Ok((None, false));
        };
        let a: About = parse_json(NAME, &body)?;
        let hidden = a.about.is_none();
        Ok((a.about.filter(|t| !t.is_empty()), hidden))
    }

    async fn picture(&self, contact: &str) -> Result<Option<bool>, BackendError> {
        let q = [("contactId", contact), ("session", &self.settings.session)];
        let Some(body) = self
            .get_optional("/api/contacts/profile-picture", &q)
            .await?
        else {
            return Ok(None);
        };
        let p: Picture = parse_json(NAME, &body)?;
        Ok(Some(p.url.is_some_and(|u| !u.is_empty())))
    }
}

struct Answer {
    status: u16,
    wait: Option<std::time::Duration>,
    body: String,
}

/// What a non-2xx answer of WAHA means.
pub(crate) fn classify(
    status: u16,
    wait: Option<std::time::Duration>,
    body: &str,
    session: &str,
) -> BackendError {
    let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let text = excerpt(body);
    match status {
        401 | 403 => BackendError::Account {
            down: AccountDown::Failed,
            reason: format!("WAHA refused the API key (HTTP {status})"),
        },
        404 => BackendError::Account {
            down: AccountDown::LoggedOut,
            reason: format!("WAHA has no running session `{session}` (HTTP 404): {text}"),
        },
        422 => match json.get("status").and_then(Value::as_str) {
            Some("SCAN_QR_CODE") => BackendError::Account {
                down: AccountDown::Pairing,
                reason: format!("WAHA session `{session}` waits for its QR code to be scanned"),
            },
            Some("STARTING") => {
                BackendError::Transient(format!("WAHA session `{session}` is starting"))
            }
            Some("STOPPED") => BackendError::Account {
                down: AccountDown::LoggedOut,
                reason: format!("WAHA session `{session}` is stopped"),
            },
            Some(other) => BackendError::Account {
                down: AccountDown::Failed,
                reason: format!("WAHA session `{session}` is {other}"),
            },
            None => BackendError::Account {
                down: AccountDown::Failed,
                reason: format!("WAHA cannot use session `{session}` (HTTP 422): {text}"),
            },
        },
        429 => BackendError::RateLimited { backoff: wait },
        500..=599 => {
            let exception = json.get("exception");
            let throttled = exception.is_some_and(|e| {
                e.get("message").and_then(Value::as_str) == Some("rate-overlimit")
                    || e.get("data").and_then(Value::as_u64) == Some(429)
            }) || json.get("error").and_then(Value::as_str)
                == Some("rate-overlimit");
            if throttled {
                BackendError::RateLimited { backoff: wait }
            } else if status == 501 {
                BackendError::Permanent(format!("WAHA: the engine lacks this (HTTP 501): {text}"))
            } else {
                BackendError::Transient(format!("WAHA: server error (HTTP {status}): {text}"))
            }
        }
        _ => BackendError::Permanent(format!("WAHA refused the request (HTTP {status}): {text}")),
    }
}

#[async_trait]
impl CheckBackend for WahaBackend {
    fn kind(&self) -> &'static str {
        "waha"
    }

    fn max_batch(&self) -> usize {
        1
    }

    async fn check(&self, numbers: &[E164]) -> Result<Vec<CheckResult>, BackendError> {
        let mut out = Vec::with_capacity(numbers.len());
        for n in numbers {
            let q = [("phone", n.digits()), ("session", &self.settings.session)];
            let body = self.get("/api/contacts/check-exists", &q).await?;
            let e: Exists = parse_json(NAME, &body)?;
            let presence = match (e.number_exists, e.chat_id) {
                (true, Some(jid)) if !jid.is_empty() => Presence::Yes {
                    jid,
                    lid: None,
                    business: None,
                },
                (true, _) => Presence::Yes {
                    jid: format!("{}@c.us", n.digits()),
                    lid: None,
                    business: None,
                },
                (false, _) => Presence::No,
            };
            out.push(CheckResult {
                number: n.clone(),
                presence,
            });
        }
        Ok(out)
    }

    async fn details(&self, contacts: &[Contact]) -> Result<Vec<Details>, BackendError> {
        let mut out = Vec::with_capacity(contacts.len());
        for c in contacts {
            let contact = format!("{}@c.us", c.user());
            let (about, about_hidden) = self.about(&contact).await?;
            let has_picture = self.picture(&contact).await?;
            out.push(Details {
                number: Some(c.number.clone()),
                about,
                about_set_at: None,
                about_hidden,
                business: None,
                has_picture,
            });
        }
        Ok(out)
    }

    async fn probe(&self) -> Result<(), BackendError> {
        let session = &self.settings.session;
        let body = self.get(&format!("/api/sessions/{session}"), &[]).await?;
        let s: Session = parse_json(NAME, &body)?;
        match s.status.as_str() {
            "WORKING" => Ok(()),
            other => Err(classify(
                422,
                None,
                &serde_json::json!({ "status": other }).to_string(),
                session,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified() {
        let s = "default";
        assert!(matches!(
            classify(
                401,
                None,
                r#"{"message":"Unauthorized","statusCode":401}"#,
                s
            ),
            BackendError::Account {
                down: AccountDown::Failed,
                ..
            }
        ));
        assert!(matches!(
            classify(
                404,
                None,
                r#"{"statusCode":404,"message":"We didn't find a session","error":"Not Found"}"#,
                s
            ),
            BackendError::Account {
                down: AccountDown::LoggedOut,
                ..
            }
        ));
        assert!(matches!(
            classify(
                422,
                None,
                r#"{"error":"Session status is not as expected","session":"default","status":"SCAN_QR_CODE","expected":["WORKING"]}"#,
                s
            ),
            BackendError::Account {
                down: AccountDown::Pairing,
                ..
            }
        ));
        assert!(matches!(
            classify(422, None, r#"{"status":"STARTING"}"#, s),
            BackendError::Transient(_)
        ));
        assert!(matches!(
            classify(
                500,
                None,
                r#"{"statusCode":500,"exception":{"message":"rate-overlimit","data":429}}"#,
                s
            ),
            BackendError::RateLimited { backoff: None }
        ));
        assert!(matches!(
            classify(429, Some(std::time::Duration::from_secs(7)), "", s),
            BackendError::RateLimited { backoff: Some(d) } if d.as_secs() == 7
        ));
        assert!(matches!(
            classify(502, None, "<html>bad gateway</html>", s),
            BackendError::Transient(_)
        ));
        assert!(matches!(
            classify(400, None, "{}", s),
            BackendError::Permanent(_)
        ));
    }
}
