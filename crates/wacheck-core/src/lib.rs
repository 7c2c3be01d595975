//! Domain types of wacheck: phone numbers, tasks, check outcomes, the readers that turn an
//! uploaded file into input rows and the writer of result tables. Pure logic and `std::io`
//! only: no async runtime, database, HTTP or storage code lives here.

pub mod account;
pub mod day;
pub mod dedupe;
pub mod input;
pub mod number;
pub mod outcome;
pub mod sanitize;
pub mod table;
pub mod task;
pub mod text;

pub use account::{AccountKind, AccountState};
pub use number::{E164, Invalid, Normalizer, NumberError};
pub use outcome::{Outcome, WhatsApp};
pub use task::{ResultFormat, TaskId, TaskKind, TaskStatus};
