//! WhatsApp accounts: which backend speaks for them and what state they are in.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::task::{UnknownValue, str_enum};

str_enum!(
    /// How an account reaches WhatsApp: the simulation, a session of our own (native), or a
    /// session of a WAHA or Evolution API gateway.
    AccountKind { Simulated => "simulated", Native => "native", Waha => "waha", Evolution => "evolution" }
);

str_enum!(
    /// `connected` accounts get work; `cooling_down` ones get it again once their cool-down
    /// ends; `unreachable` gateways get it again when they answer; the others wait for the
    /// operator (or, for gateways, for their session to work again).
    AccountState {
        Pairing => "pairing",
        Unreachable => "unreachable",
        Connected => "connected",
        CoolingDown => "cooling_down",
        LoggedOut => "logged_out",
        Banned => "banned",
        Failed => "failed",
    }
);

/// A valid account name: 1-64 characters of `a-z`, `A-Z`, `0-9`, `-`, `_` and `.`.
pub fn valid_account_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A valid user id: like an account name, and `@` too (so that e-mail addresses fit).
pub fn valid_user_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_back() {
        for s in AccountState::ALL {
            assert_eq!(s.as_str().parse::<AccountState>().unwrap(), *s);
        }
    }

    #[test]
    fn account_names() {
        assert!(valid_account_id("waha-1.main_2"));
        assert!(!valid_account_id(""));
        assert!(!valid_account_id("a/b"));
        assert!(!valid_account_id(&"x".repeat(65)));
        assert!(valid_user_id("ops@example.com"));
        assert!(!valid_user_id("a b") && !valid_user_id("../x") && !valid_user_id(""));
    }
}
