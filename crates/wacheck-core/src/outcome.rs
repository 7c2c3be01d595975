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

impl WhatsApp {
    /// A definite answer counts as `success`; invalid and unknown count as `failure`.
    pub fn is_definite(self) -> bool {
        matches!(self, WhatsApp::Yes | WhatsApp::No)
    }
}

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
}
