//! The application layer: what wacheck does, once, for every front door. Use cases take the
//! [`Caller`], decide there whether it may and whose quota applies, and return errors from
//! one catalogue ([`Code`]); the HTTP routes, the command line and every later front door only
//! translate to and from them.

pub mod accounts;
pub mod caller;
pub mod checks;
pub mod error;
pub mod history;
pub mod ingest;
pub mod progress;
pub mod quota;
pub mod services;
pub mod tasks;
pub mod users;

pub use caller::{Caller, LimitSettings, Limits, Scope};
pub use error::{Code, Error};
pub use services::{CheckSettings, Services, TaskSettings};
