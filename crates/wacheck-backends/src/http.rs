//! What the HTTP gateways (WAHA, Evolution API) share: their settings, the client, and how
//! transport failures and throttling answers become [`BackendError`]s.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::BackendError;

/// How to reach one session of a gateway.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GatewaySettings {
    /// Base URL of the gateway, e.g. `http://waha:3000`.
    pub base_url: String,
    /// The WAHA session or Evolution instance name.
    pub session: String,
    /// The gateway's API key (WAHA `X-Api-Key`, Evolution `apikey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// Numbers per check call (Evolution takes many; WAHA one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    /// Longest a request may take, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    20_000
}

impl std::fmt::Debug for GatewaySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewaySettings")
            .field("base_url", &self.base_url)
            .field("session", &self.session)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("batch", &self.batch)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

impl GatewaySettings {
    pub(crate) fn validate(&self) -> Result<(), String> {
        let url = self.base_url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "base_url must start with http:// or https://, not `{url}`"
            ));
        }
        if self.session.trim().is_empty() {
            return Err("the session (instance) name is empty".into());
        }
        Ok(())
    }

    pub(crate) fn base(&self) -> &str {
        self.base_url.trim().trim_end_matches('/')
    }

    pub(crate) fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_millis(self.timeout_ms.max(1)))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client with a timeout builds")
    }
}

/// How [`transport_error`] words a gateway that did not answer at all.
pub(crate) const NO_ANSWER: &str = "no answer in time";
pub(crate) const CANNOT_CONNECT: &str = "cannot connect";

/// A request that got no HTTP answer: timeouts, refused or dropped connections. Always worth
/// another try; the URL is left out because it may carry the key.
pub(crate) fn transport_error(gateway: &str, e: reqwest::Error) -> BackendError {
    let what = if e.is_timeout() {
        NO_ANSWER
    } else if e.is_connect() {
        CANNOT_CONNECT
    } else if e.is_decode() {
        "unreadable answer"
    } else {
        "request failed"
    };
    BackendError::Transient(format!("{gateway}: {what}: {}", e.without_url()))
}

/// The server's `Retry-After` (seconds form), if it sent one.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// At most 300 characters of an answer's body, for error messages.
pub(crate) fn excerpt(body: &str) -> String {
    let body = body.trim();
    match body.char_indices().nth(300) {
        Some((at, _)) => format!("{}…", &body[..at]),
        None => body.to_owned(),
    }
}

/// An answer body that should be JSON of type `T`; anything else is a malformed answer, a
/// transient error like a timeout.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    gateway: &str,
    body: &str,
) -> Result<T, BackendError> {
    serde_json::from_str(body).map_err(|e| {
        BackendError::Transient(format!(
            "{gateway}: malformed answer ({e}): {}",
            excerpt(body)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_gateway_key() {
        let s = GatewaySettings {
            base_url: "http://127.0.0.1:1".into(),
            session: "default".into(),
            api_key: Some("very-secret".into()),
            batch: None,
            timeout_ms: 1000,
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("[redacted]"));
    }

    #[test]
    fn settings_are_checked() {
        let mut s = GatewaySettings {
            base_url: "ftp://x".into(),
            session: "s".into(),
            api_key: None,
            batch: None,
            timeout_ms: 1000,
        };
        assert!(s.validate().is_err());
        s.base_url = "https://gw.example/".into();
        assert!(s.validate().is_ok());
        assert_eq!(s.base(), "https://gw.example");
        s.session = " ".into();
        assert!(s.validate().is_err());
    }

    #[test]
    fn excerpts_are_short() {
        assert_eq!(excerpt(&"é".repeat(400)).chars().count(), 301);
        assert_eq!(excerpt(" short "), "short");
    }
}
