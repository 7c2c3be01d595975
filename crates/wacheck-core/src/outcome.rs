//! What a check says about one number.

use chrono::NaiveDate;

use crate::task::{UnknownValue, str_enum};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

str_enum!(
    /// The `whatsapp` column: `unknown` is never silently turned into `no`.
    WhatsApp { Yes => "yes", No => "no", Invalid => "invalid", Unknown => "unknown" }
);

/// The stored result of checking one valid number.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    pub whatsapp: Option<WhatsApp>,
    /// Why the answer is `unknown`.
    pub reason: Option<String>,
    /// The JID the server answered with (it can differ from the number asked).
    pub jid: Option<String>,
    pub lid: Option<String>,
    pub business: Option<bool>,
    /// About text (detail tasks).
    pub signature: Option<String>,
    /// Date of the about text (detail tasks).
    pub status_update: Option<NaiveDate>,
    /// Whether a profile picture is visible (detail tasks).
    pub has_picture: Option<bool>,
    /// What privacy settings hid (detail tasks), e.g. the about text.
    pub privacy: Option<String>,
    /// The account that answered (None for answers that no account gave).
    pub account: Option<String>,
    /// Answered from the result cache, at no cost to any account.
    pub cached: bool,
    /// Answered by a simulated account.
    pub simulated: bool,
    /// The details call answered for this number (detail tasks): what it said, hidden parts
    /// included, is the whole truth and may be cached.
    pub details_checked: bool,
    /// When the answer was obtained, for answers taken from the cache (fresh ones: now).
    pub checked_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The `privacy` note of a number whose about text privacy settings hide.
pub const ABOUT_HIDDEN: &str = "about hidden by privacy settings";
