//! WhatsApp check backends behind one trait: the simulation, gateways (WAHA, Evolution API)
//! and, with the `native` feature, a session of our own through whatsapp-rust.

pub mod evolution;
mod http;
#[cfg(feature = "native")]
pub mod native;
pub mod simulated;
pub mod waha;

pub use http::GatewaySettings;

use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDate;
use wacheck_core::E164;

/// What a backend says about one number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    /// On WhatsApp. `jid` is the id the server answered with (it can differ from the number).
    Yes {
        jid: String,
        lid: Option<String>,
        business: Option<bool>,
    },
    No,
    /// The server gave no definite answer for this number.
    Unknown {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub number: E164,
    pub presence: Presence,
}

/// A number on WhatsApp and the JID the server answered for it. Detail queries address that
/// JID: it can differ from the number (Brazil's ninth digit), and the server knows the contact
/// by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub number: E164,
    pub jid: Option<String>,
}

impl Contact {
    /// The user part of the server's JID (`5511987654321` of `5511987654321@c.us`), or the
    /// number's digits when there is none.
    pub fn user(&self) -> &str {
        self.jid
            .as_deref()
            .and_then(|j| j.split(['@', ':']).next())
            .filter(|u| !u.is_empty() && u.bytes().all(|b| b.is_ascii_digit()))
            .unwrap_or(self.number.digits())
    }
}

impl From<E164> for Contact {
    fn from(number: E164) -> Self {
        Contact { number, jid: None }
    }
}

/// Profile details of a number that is on WhatsApp. `None` means the backend does not know.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Details {
    pub number: Option<E164>,
    /// About text; `None` when hidden, never set, or not offered by the backend.
    pub about: Option<String>,
    pub about_set_at: Option<NaiveDate>,
    /// The about text exists but privacy settings hide it from this account.
    pub about_hidden: bool,
    pub business: Option<bool>,
    pub has_picture: Option<bool>,
}

/// Why an account cannot work, and so which state it moves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountDown {
    /// Not paired yet, or waiting for its QR code to be scanned.
    Pairing,
    /// The session ended (logged out from the phone, or stopped on the gateway).
    LoggedOut,
    /// WhatsApp banned the number; `for_secs` when the ban is temporary.
    Banned { for_secs: Option<u64> },
    /// Anything else that needs the operator (wrong gateway key, unknown instance).
    Failed,
}

/// Errors, classified by what the caller should do about them. None of them means "no".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// Slow down; retry after the server's backoff when it gave one.
    #[error("rate limited by the server")]
    RateLimited { backoff: Option<Duration> },
    /// Retry later (timeouts, 5xx, dropped connections).
    #[error("transient backend error: {0}")]
    Transient(String),
    /// The account cannot work (logged out, banned, not paired): take it out of rotation.
    #[error("account unusable: {reason}")]
    Account { down: AccountDown, reason: String },
    /// The request itself is wrong; retrying will not help.
    #[error("request refused: {0}")]
    Permanent(String),
}

impl BackendError {
    /// Whether the gateway gave no HTTP answer at all (refused connection, timeout): it is down
    /// or cannot be reached, unlike a gateway that answered with an error.
    pub fn is_no_answer(&self) -> bool {
        matches!(self, BackendError::Transient(m)
            if m.contains(http::NO_ANSWER) || m.contains(http::CANNOT_CONNECT))
    }
}

/// A WhatsApp account (or a gateway for one) that can check numbers.
#[async_trait]
pub trait CheckBackend: Send + Sync + 'static {
    /// Kind of backend, for logs and the health endpoint.
    fn kind(&self) -> &'static str;
    /// Whether results are made up (the simulation). Said loudly wherever results are shown.
    fn is_simulated(&self) -> bool {
        false
    }
    /// Most numbers one `check` call may carry.
    fn max_batch(&self) -> usize;
    /// Most numbers one `details` call may carry.
    fn details_batch(&self) -> usize {
        self.max_batch()
    }
    /// Whether this process can use the account now (a native session runs in one process).
    fn ready(&self) -> bool {
        true
    }
    /// Checks many numbers in one call; one result per number, in order.
    async fn check(&self, numbers: &[E164]) -> Result<Vec<CheckResult>, BackendError>;
    /// Profile details of numbers on WhatsApp; one result per number, in order.
    async fn details(&self, contacts: &[Contact]) -> Result<Vec<Details>, BackendError>;
    /// Asks whether the account works, without spending check budget (a gateway's session
    /// state). `Ok` when it does; an `Account` error says why not.
    async fn probe(&self) -> Result<(), BackendError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contact_is_addressed_by_the_servers_jid() {
        let number = E164::from_canonical("+5511987654321").unwrap();
        let contact = |jid: Option<&str>| Contact {
            number: number.clone(),
            jid: jid.map(str::to_owned),
        };
        assert_eq!(contact(Some("551187654321@c.us")).user(), "551187654321");
        assert_eq!(
            contact(Some("551187654321:12@s.whatsapp.net")).user(),
            "551187654321"
        );
        assert_eq!(contact(None).user(), "5511987654321");
        assert_eq!(contact(Some("@c.us")).user(), "5511987654321");
        assert_eq!(contact(Some("not-a-jid")).user(), "5511987654321");
    }
}
