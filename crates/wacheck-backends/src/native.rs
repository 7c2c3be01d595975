//! The native backend: a WhatsApp session of our own, through whatsapp-rust.
//!
//! A session is a linked device of the account's phone, paired by QR code or pair code, kept
//! in a SQLite file. It runs in one process at a time ([`NativeSession::start`]); what it
//! lives through (QR codes, pairing, logouts, bans) arrives as [`SessionEvent`]s for the
//! caller to record.
//!
//! - check: `contacts().is_on_whatsapp(&[Jid])`, many numbers per query; the server's JID (and
//!   LID) are kept, matched back to the number asked (Brazil's ninth digit may differ).
//! - details: a usync query with the Status (about text and its timestamp), Picture and
//!   Business protocols. An about text hidden by privacy answers with error 401.
//! - errors: `ServerError { code: 429, backoff }` (`rate-overlimit`) is a rate limit with the
//!   server's backoff; 401 means logged out; a lost connection is transient (the session's
//!   events say whether it is a logout).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use wacheck_core::E164;
use whatsapp_rust::pair_code::PairCodeOptions;
use whatsapp_rust::prelude::{Bot, BotHandle, Client, Event, IqError, SqliteStore};
use whatsapp_rust::usync::{
    UsyncContext, UsyncMode, UsyncOutcome, UsyncProtocol, UsyncProtocolKind, UsyncProtocolResult,
    UsyncQuery, UsyncUser, UsyncUserResult,
};
use whatsapp_rust::{ContactError, IsOnWhatsAppResult, Jid};

use crate::{AccountDown, BackendError, CheckBackend, CheckResult, Contact, Details, Presence};

/// Numbers per query unless the account's settings say otherwise.
pub const DEFAULT_BATCH: usize = 50;

/// What a native account's settings hold.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NativeSettings {
    /// Numbers per check query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    /// The account's own number (digits): pair with a code typed on the phone instead of a
    /// QR code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// What happened to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// Show this QR code (WhatsApp > Linked devices > Link a device) within `valid_for`.
    Qr { code: String, valid_for: Duration },
    /// Type this code on the phone within `valid_for`.
    PairCode { code: String, valid_for: Duration },
    /// Paired (or connected again) as `me`.
    Connected { me: Option<String> },
    /// The phone unlinked the device, or the server ended the session for good.
    LoggedOut { reason: String },
    /// WhatsApp banned the number; `for_secs` when it is temporary.
    Banned {
        for_secs: Option<u64>,
        reason: String,
    },
    /// The session cannot go on and needs the operator (client outdated, replaced).
    Failed { reason: String },
    /// The connection dropped; the session reconnects by itself.
    Disconnected { reason: String },
}

/// Reads an event of the library into ours; `None` for events a checker does not care about.
pub fn session_event(event: &Event) -> Option<SessionEvent> {
    Some(match event {
        Event::PairingQrCode(q) => SessionEvent::Qr {
            code: q.code.clone(),
            valid_for: q.timeout,
        },
        Event::PairingCode(p) => SessionEvent::PairCode {
            code: p.code.clone(),
            valid_for: p.timeout,
        },
        Event::PairSuccess(p) => SessionEvent::Connected {
            me: Some(p.id.to_string()),
        },
        Event::Connected(_) => SessionEvent::Connected { me: None },
        Event::LoggedOut(l) => SessionEvent::LoggedOut {
            reason: format!("logged out ({:?})", l.reason),
        },
        Event::TemporaryBan(b) => SessionEvent::Banned {
            for_secs: u64::try_from(b.expire.num_seconds()).ok(),
            reason: format!("temporarily banned: {}", b.code),
        },
        Event::ConnectFailure(f) => {
            let reason = format!(
                "connection refused ({:?}){}",
                f.reason,
                f.message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            );
            if f.reason.is_logged_out() {
                SessionEvent::LoggedOut { reason }
            } else {
                SessionEvent::Failed { reason }
            }
        }
        Event::ClientOutdated(_) => SessionEvent::Failed {
            reason: "WhatsApp says this client version is outdated".into(),
        },
        Event::StreamReplaced(_) => SessionEvent::Failed {
            reason: "another client took over this session".into(),
        },
        Event::PairingQrCodesExhausted(_) => SessionEvent::Failed {
            reason: "no QR code was scanned in time; remove and add the account again".into(),
        },
        Event::Disconnected(d) => SessionEvent::Disconnected {
            reason: d.reason.to_string(),
        },
        _ => return None,
    })
}

/// A running session and the backend that checks through it.
pub struct NativeSession {
    backend: Arc<NativeBackend>,
    handle: BotHandle,
}

impl NativeSession {
    /// Opens (or creates) the session stored at `db` and connects it. Events go to `events`.
    pub async fn start(
        db: &Path,
        settings: &NativeSettings,
        pair_with_phone: bool,
        events: mpsc::UnboundedSender<SessionEvent>,
    ) -> Result<NativeSession, String> {
        let path = db
            .to_str()
            .ok_or_else(|| format!("the session path {} is not UTF-8", db.display()))?;
        let store = SqliteStore::new(path)
            .await
            .map_err(|e| format!("opening the session store {path}: {e}"))?;
        let mut builder = Bot::builder()
            .with_backend(store)
            .skip_history_sync()
            .on_event(move |event, _client| {
                let events = events.clone();
                async move {
                    if let Some(e) = session_event(&event) {
                        let _ = events.send(e);
                    }
                }
            });
        if pair_with_phone && let Some(phone) = &settings.phone {
            builder = builder.with_pair_code(PairCodeOptions {
                phone_number: phone.chars().filter(char::is_ascii_digit).collect(),
                ..Default::default()
            });
        }
        let bot = builder
            .build()
            .await
            .map_err(|e| format!("starting the session: {e}"))?;
        let handle = bot.spawn();
        let backend = Arc::new(NativeBackend {
            client: handle.client(),
            batch: settings.batch.unwrap_or(DEFAULT_BATCH).max(1),
        });
        Ok(NativeSession { backend, handle })
    }

    pub fn backend(&self) -> Arc<NativeBackend> {
        self.backend.clone()
    }

    /// Disconnects; the session stays stored for the next start.
    pub async fn stop(self) {
        self.handle.shutdown().await;
    }
}

/// Checks through a connected session.
pub struct NativeBackend {
    client: Arc<Client>,
    batch: usize,
}

/// One row of an `is_on_whatsapp` answer, in plain fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registration {
    /// The JID the server answered with (`user@server`), its user part, and whether it is a
    /// LID.
    pub jid: String,
    pub user: String,
    pub is_lid: bool,
    /// The phone-number JID when the server answered with a LID first.
    pub pn_jid: Option<String>,
    pub lid: Option<String>,
    pub registered: bool,
    pub business: bool,
    /// The contact protocol's error code for this user, if any.
    pub error: Option<u16>,
}

impl From<&IsOnWhatsAppResult> for Registration {
    fn from(r: &IsOnWhatsAppResult) -> Self {
        Registration {
            jid: r.jid.to_string(),
            user: r.jid.user.to_string(),
            is_lid: r.jid.is_lid(),
            pn_jid: r.pn_jid.as_ref().map(ToString::to_string),
            lid: r.lid.as_ref().map(ToString::to_string),
            registered: r.is_registered,
            business: r.is_business,
            error: r.contact_error.as_ref().and_then(|e| e.code),
        }
    }
}

/// Whether a phone number the server answered with is the one asked: the same digits, or for
/// Brazil (+55) the same number with or without the ninth digit after the area code.
pub fn same_number(asked: &str, answered: &str) -> bool {
    if asked == answered {
        return true;
    }
    let brazil = |s: &str| s.starts_with("55") && (s.len() == 12 || s.len() == 13);
    if !(brazil(asked) && brazil(answered)) || asked.len() == answered.len() {
        return false;
    }
    let (long, short) = if asked.len() > answered.len() {
        (asked, answered)
    } else {
        (answered, asked)
    };
    // 55 + two-digit area code, then the ninth digit.
    long.as_bytes()[4] == b'9' && long[..4] == short[..4] && long[5..] == short[4..]
}

/// The user part of a `user@server` JID.
fn user_of(jid: &str) -> &str {
    jid.split(['@', ':']).next().unwrap_or(jid)
}

/// One result per asked number: matched on the phone-number JID the server returned (the
/// answer's own, or its `pn_jid` when the answer is a LID). A number without a matching
/// answer, or whose answer carries an error, is `unknown`, never `no`.
pub fn match_registrations(numbers: &[E164], regs: &[Registration]) -> Vec<CheckResult> {
    numbers
        .iter()
        .map(|n| {
            let found = regs.iter().find(|r| {
                let pn = match (&r.pn_jid, r.is_lid) {
                    (Some(pn), _) => user_of(pn),
                    (None, false) => r.user.as_str(),
                    (None, true) => return false,
                };
                same_number(n.digits(), pn)
            });
            let presence = match found {
                None => Presence::Unknown {
                    reason: "WhatsApp gave no answer for this number".into(),
                },
                Some(r) if r.error.is_some() => Presence::Unknown {
                    reason: format!(
                        "WhatsApp answered error {} for this number",
                        r.error.unwrap_or(0)
                    ),
                },
                Some(r) if r.registered => {
                    let (jid, lid) = match (&r.pn_jid, r.is_lid) {
                        (Some(pn), true) => (pn.clone(), Some(r.jid.clone())),
                        _ => (r.jid.clone(), r.lid.clone()),
                    };
                    Presence::Yes {
                        jid,
                        lid,
                        business: Some(r.business),
                    }
                }
                Some(_) => Presence::No,
            };
            CheckResult {
                number: n.clone(),
                presence,
            }
        })
        .collect()
}

/// What an IQ error means for the account.
pub fn iq_error(e: &IqError) -> BackendError {
    match e {
        IqError::ServerError {
            code: 429, backoff, ..
        } => BackendError::RateLimited {
            backoff: backoff.map(|s| Duration::from_secs(u64::from(s))),
        },
        IqError::ServerError {
            code: 401, text, ..
        } => BackendError::Account {
            down: AccountDown::LoggedOut,
            reason: format!("WhatsApp answered 401 ({text}): the session is logged out"),
        },
        IqError::ServerError { code, text, .. } if *code >= 500 => {
            BackendError::Transient(format!("WhatsApp server error {code} ({text})"))
        }
        IqError::ServerError { code, text, .. } => {
            BackendError::Permanent(format!("WhatsApp refused the query: {code} ({text})"))
        }
        IqError::ParseError(inner) => {
            let text = format!("{inner:#}");
            if text.contains("429") || text.contains("rate-overlimit") {
                BackendError::RateLimited { backoff: None }
            } else {
                BackendError::Transient(format!("unreadable answer: {text}"))
            }
        }
        IqError::Timeout => BackendError::Transient("WhatsApp did not answer in time".into()),
        IqError::NotConnected | IqError::Disconnected(_) | IqError::InternalChannelClosed => {
            BackendError::Transient("the session is not connected".into())
        }
        other => BackendError::Transient(format!("query failed: {other}")),
    }
}

fn contact_error(e: &ContactError) -> BackendError {
    match e {
        ContactError::Iq(iq) => iq_error(iq),
        ContactError::InvalidJid(j) => BackendError::Permanent(format!("invalid JID {j}")),
        other => BackendError::Transient(other.to_string()),
    }
}

/// The about text, its date, and whether privacy hides it, from the Status protocol's answer:
/// a text with its timestamp (seconds), or an error (401: hidden by privacy).
pub fn about_of(
    text: Option<&str>,
    timestamp: Option<i64>,
    error: Option<u16>,
) -> (Option<String>, Option<NaiveDate>, bool) {
    if error == Some(401) {
        return (None, None, true);
    }
    let text = text.filter(|t| !t.is_empty()).map(str::to_owned);
    let date = timestamp
        .filter(|&t| t > 0 && text.is_some())
        .and_then(|t| DateTime::from_timestamp(t, 0))
        .map(|d| d.date_naive());
    (text, date, false)
}

/// Details of one user of a usync answer.
fn user_details(n: &E164, user: Option<&UsyncUserResult>) -> Details {
    let Some(user) = user else {
        return Details {
            number: Some(n.clone()),
            ..Default::default()
        };
    };
    let (about, about_set_at, about_hidden) = match user.protocol(UsyncProtocolKind::Status) {
        Some(UsyncProtocolResult::Status(UsyncOutcome::Value(s))) => {
            about_of(s.status.as_deref(), s.timestamp, None)
        }
        Some(UsyncProtocolResult::Status(UsyncOutcome::Error(e))) => about_of(None, None, e.code),
        _ => (None, None, false),
    };
    let has_picture = match user.protocol(UsyncProtocolKind::Picture) {
        Some(UsyncProtocolResult::Picture(UsyncOutcome::Value(_))) => Some(true),
        // 404: none; 401: hidden by privacy. Either way none is visible.
        Some(UsyncProtocolResult::Picture(UsyncOutcome::Error(e))) => {
            matches!(e.code, Some(401 | 404)).then_some(false)
        }
        _ => None,
    };
    let business = match user.protocol(UsyncProtocolKind::Business) {
        Some(UsyncProtocolResult::Business(UsyncOutcome::Value(_))) => Some(true),
        Some(UsyncProtocolResult::Business(UsyncOutcome::Error(_))) => None,
        _ => Some(false),
    };
    Details {
        number: Some(n.clone()),
        about,
        about_set_at,
        about_hidden,
        business,
        has_picture,
    }
}

#[async_trait]
impl CheckBackend for NativeBackend {
    fn kind(&self) -> &'static str {
        "native"
    }

    fn max_batch(&self) -> usize {
        self.batch
    }

    fn ready(&self) -> bool {
        self.client.is_connected() && self.client.is_logged_in()
    }

    async fn check(&self, numbers: &[E164]) -> Result<Vec<CheckResult>, BackendError> {
        let jids: Vec<Jid> = numbers.iter().map(|n| Jid::pn(n.digits())).collect();
        let results = self
            .client
            .contacts()
            .is_on_whatsapp(&jids)
            .await
            .map_err(|e| contact_error(&e))?;
        let regs: Vec<Registration> = results.iter().map(Registration::from).collect();
        Ok(match_registrations(numbers, &regs))
    }

    async fn details(&self, contacts: &[Contact]) -> Result<Vec<Details>, BackendError> {
        let users = contacts
            .iter()
            .map(|c| UsyncUser::from_jid(Jid::pn(c.user())))
            .collect();
        let protocols = vec![
            UsyncProtocol::Status,
            UsyncProtocol::Picture,
            UsyncProtocol::BusinessVerifiedName,
        ];
        let query = UsyncQuery::new(UsyncMode::Full, UsyncContext::Background, protocols, users)
            .map_err(|e| BackendError::Permanent(format!("usync query: {e}")))?;
        let answer = self
            .client
            .query_usync(query)
            .await
            .map_err(|e| iq_error(&e))?;
        // A throttled protocol answers for everyone at once.
        if let Some(e) = answer
            .protocol_states
            .iter()
            .filter_map(|s| s.error.as_ref())
            .find(|e| e.code == Some(429))
        {
            return Err(BackendError::RateLimited {
                backoff: e.backoff.map(|s| Duration::from_secs(u64::from(s))),
            });
        }
        Ok(contacts
            .iter()
            .map(|c| {
                let user = answer.users.iter().find(|u| {
                    let pn = u.pn_jid.as_ref().or(u.id.as_ref().filter(|j| j.is_pn()));
                    pn.is_some_and(|j| {
                        j.user == c.user() || same_number(c.number.digits(), &j.user)
                    })
                });
                user_details(&c.number, user)
            })
            .collect())
    }

    async fn probe(&self) -> Result<(), BackendError> {
        if self.ready() {
            Ok(())
        } else {
            Err(BackendError::Transient(
                "the session is not connected".into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> E164 {
        E164::from_canonical(s).unwrap()
    }

    fn reg(jid: &str, registered: bool) -> Registration {
        Registration {
            jid: jid.into(),
            user: user_of(jid).into(),
            is_lid: jid.ends_with("@lid"),
            registered,
            ..Default::default()
        }
    }

    #[test]
    fn answers_match_the_numbers_asked_and_missing_ones_are_unknown() {
        let mut lid_first = reg("123456789@lid", true);
        lid_first.pn_jid = Some("41791234568@s.whatsapp.net".into());
        let mut business = reg("41791234567@s.whatsapp.net", true);
        business.business = true;
        business.lid = Some("987@lid".into());
        let mut errored = reg("41791234570@s.whatsapp.net", true);
        errored.error = Some(500);
        let regs = [
            reg("41791234569@s.whatsapp.net", false),
            business,
            lid_first,
            errored,
        ];
        let r = match_registrations(
            &[
                n("+41791234567"),
                n("+41791234568"),
                n("+41791234569"),
                n("+41791234570"),
                n("+41791234571"),
            ],
            &regs,
        );
        assert_eq!(
            r[0].presence,
            Presence::Yes {
                jid: "41791234567@s.whatsapp.net".into(),
                lid: Some("987@lid".into()),
                business: Some(true)
            }
        );
        assert_eq!(
            r[1].presence,
            Presence::Yes {
                jid: "41791234568@s.whatsapp.net".into(),
                lid: Some("123456789@lid".into()),
                business: Some(false)
            }
        );
        assert_eq!(r[2].presence, Presence::No);
        assert!(matches!(r[3].presence, Presence::Unknown { .. }));
        assert!(matches!(r[4].presence, Presence::Unknown { .. }));
    }

    #[test]
    fn brazilian_numbers_match_with_or_without_the_ninth_digit() {
        assert!(same_number("5511987654321", "551187654321"));
        assert!(same_number("551187654321", "5511987654321"));
        assert!(!same_number("5511887654321", "551187654321"));
        assert!(!same_number("5511987654321", "5521987654321"));
        assert!(!same_number("41791234567", "4179123456"));
        let r = match_registrations(
            &[n("+5511987654321")],
            &[reg("551187654321@s.whatsapp.net", true)],
        );
        assert!(
            matches!(&r[0].presence, Presence::Yes { jid, .. } if jid == "551187654321@s.whatsapp.net"),
            "the server's JID is kept"
        );
    }

    #[test]
    fn server_errors_are_classified() {
        let server = |code: u16, backoff: Option<u32>| IqError::ServerError {
            code,
            text: "x".into(),
            error_type: None,
            backoff,
        };
        assert_eq!(
            iq_error(&server(429, Some(30))),
            BackendError::RateLimited {
                backoff: Some(Duration::from_secs(30))
            }
        );
        assert!(matches!(
            iq_error(&server(401, None)),
            BackendError::Account {
                down: AccountDown::LoggedOut,
                ..
            }
        ));
        assert!(matches!(
            iq_error(&server(503, None)),
            BackendError::Transient(_)
        ));
        assert!(matches!(
            iq_error(&server(400, None)),
            BackendError::Permanent(_)
        ));
        assert!(matches!(
            iq_error(&IqError::Timeout),
            BackendError::Transient(_)
        ));
        assert!(matches!(
            iq_error(&IqError::NotConnected),
            BackendError::Transient(_)
        ));
        assert_eq!(
            iq_error(&IqError::ParseError(whatsapp_rust::anyhow::anyhow!(
                "usync contact error 429: rate-overlimit"
            ))),
            BackendError::RateLimited { backoff: None }
        );
    }

    #[test]
    fn about_texts_hidden_by_privacy_say_so() {
        assert_eq!(
            about_of(Some("Busy"), Some(1_700_000_000), None),
            (
                Some("Busy".into()),
                NaiveDate::from_ymd_opt(2023, 11, 14),
                false
            )
        );
        assert_eq!(about_of(None, None, Some(401)), (None, None, true));
        assert_eq!(about_of(Some(""), Some(0), None), (None, None, false));
        assert_eq!(
            about_of(Some("Hi"), None, None),
            (Some("Hi".into()), None, false)
        );
    }

    #[test]
    fn library_events_become_session_events() {
        use whatsapp_rust::types::events::{Connected, PairingQrCode};
        let qr = PairingQrCode::builder()
            .code("2@abc".to_owned())
            .timeout(Duration::from_secs(60))
            .build();
        assert_eq!(
            session_event(&Event::PairingQrCode(qr)),
            Some(SessionEvent::Qr {
                code: "2@abc".into(),
                valid_for: Duration::from_secs(60)
            })
        );
        assert_eq!(
            session_event(&Event::Connected(Connected::builder().build())),
            Some(SessionEvent::Connected { me: None })
        );
    }
}
