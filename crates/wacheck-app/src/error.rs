//! The error catalogue: every error code wacheck answers, once, with its HTTP status and what
//! it means. docs/api.md's error table is this list (a test keeps the two the same); front
//! doors render an [`Error`] in their own shape but never invent a code.

use std::fmt;

use wacheck_store::StoreError;

macro_rules! catalogue {
    ($($variant:ident = ($name:literal, $status:literal, $when:literal),)*) => {
        /// A stable machine code of an error.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $($variant,)*
        }

        impl Code {
            /// Every code, in the order of the documentation.
            pub const ALL: &[Code] = &[$(Code::$variant,)*];

            /// The code as clients see it.
            pub fn name(self) -> &'static str {
                match self {
                    $(Code::$variant => $name,)*
                }
            }

            /// The HTTP status an error with this code answers.
            pub fn status(self) -> u16 {
                match self {
                    $(Code::$variant => $status,)*
                }
            }

            /// When this error is answered, in words (docs/api.md).
            pub fn when(self) -> &'static str {
                match self {
                    $(Code::$variant => $when,)*
                }
            }
        }
    };
}

catalogue! {
    InvalidContentType = ("invalid_content_type", 400, "the upload is not `multipart/form-data`"),
    InvalidMultipart = ("invalid_multipart", 400, "the body is not a valid multipart form"),
    DuplicateFile = ("duplicate_file", 400, "more than one `file` part"),
    InvalidParameter = ("invalid_parameter", 400, "a text field is longer than 1024 bytes or not UTF-8; `result_columns` other than `full` or `ekycpro`; a malformed or incomplete query string. The message names the parameter and what was given: ``the `details` query parameter must be true or false, not `yes` ``"),
    MissingParameter = ("missing_parameter", 400, "`user_id` missing or empty (form field on upload, query parameter on read)"),
    MissingFile = ("missing_file", 400, "no `file` part"),
    InvalidDefaultRegion = ("invalid_default_region", 400, "`default_region` is not a known two-letter country code"),
    InvalidResultFormat = ("invalid_result_format", 400, "`result_format` is neither `xlsx` nor `csv`"),
    UnsupportedFile = ("unsupported_file", 400, "legacy `.xls`, OpenDocument (`.ods`), a zip archive that is no workbook, UTF-16 text, binary content, or malformed csv"),
    InvalidXlsx = ("invalid_xlsx", 400, "a zip that is not a readable workbook, a workbook without worksheets, a `.xlsx` name on a non-zip file, or a workbook that would inflate too much (a zip bomb: more than 10,000 parts, 2 GiB in all, 256 MiB of shared strings, or a part over 1 MiB inflating more than 200-fold)"),
    TooManyRows = ("too_many_rows", 400, "more input rows than allowed (default 5,000,000)"),
    NoNumbers = ("no_numbers", 400, "the file is empty, has no input rows, or no row is a valid number"),
    Unauthorized = ("unauthorized", 401, "missing, unknown or revoked API key"),
    MissingScope = ("missing_scope", 403, "the key or token lacks the scope the route needs; a non-admin adding an account"),
    RateLimited = ("rate_limited", 429, "more requests than the caller's rate; `Retry-After` says when to try again"),
    QuotaExceeded = ("quota_exceeded", 429, "the upload or check would take the user's numbers of today past `numbers_per_day`"),
    TooManyTasks = ("too_many_tasks", 429, "the user has `max_concurrent_tasks` tasks being checked already"),
    LineTooLong = ("line_too_long", 400, "a line of a text or csv file is longer than 64 KiB"),
    UserExists = ("user_exists", 409, "creating a user whose id is taken"),
    LinkExpired = ("link_expired", 403, "a `/files/` link whose expiry has passed"),
    LinkInvalid = ("link_invalid", 403, "a `/files/` link whose signature does not match, or that lacks `filename`, `expires` or `sig` (cut short: \"this download link is incomplete …\")"),
    NotFound = ("not_found", 404, "unknown `{kind}`; `user_id` not the key's user; unknown task or another user's task (`no such task for this user`); your own task read under the other kind (`task … is a detail task: use /wa/api/detail/tasks/…`); a `/files/` file that is not there, or no local result directory"),
    TaskFinished = ("task_finished", 409, "cancelling a task whose numbers were all checked (`completed` or `exported`)"),
    TaskNotFinished = ("task_not_finished", 409, "asking for the file of a task that is still being checked"),
    InvalidBody = ("invalid_body", 400, "an accounts or admin request whose JSON body is malformed or has unknown fields"),
    InvalidAccount = ("invalid_account", 400, "an account name, kind or settings that cannot work"),
    AccountExists = ("account_exists", 409, "adding an account whose name is taken"),
    NotPairing = ("not_pairing", 409, "the QR code of an account that is not `pairing`"),
    AliasTaken = ("alias_taken", 409, "an alias that names another account (or is an account's own name)"),
    SessionNotConnected = ("session_not_connected", 409, "a Walytic session whose account cannot check now (shown as `{\"error\": …}` there)"),
    CannotDisableSelf = ("cannot_disable_self", 409, "an admin asked to disable their own user"),
    KeyInUse = ("key_in_use", 409, "an admin asked to revoke the key the request is made with"),
    NoBudget = ("no_budget", 429, "a single-number check found no account with budget within `api.check_max_wait_ms`"),
    PayloadTooLarge = ("payload_too_large", 413, "the upload exceeds the size limit (default 100 MiB)"),
    InternalError = ("internal_error", 500, "a fault inside wacheck; details go to its log, not to the answer"),
    Unavailable = ("unavailable", 503, "the database cannot be reached, or a `result_url` cannot be signed; retry later"),
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An error of a use case: a catalogued code, a message for people, and for 429s when to try
/// again. Internal errors keep their cause for the log and show no details.
#[derive(Debug)]
pub struct Error {
    code: Code,
    message: String,
    retry_after: Option<u64>,
    cause: Option<anyhow::Error>,
}

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            retry_after: None,
            cause: None,
        }
    }

    /// A fault inside wacheck: the cause goes to the log, not to the answer.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Error {
            cause: Some(cause.into()),
            ..Error::new(Code::InternalError, "internal error")
        }
    }

    /// Try again after `secs` seconds (`Retry-After`).
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn code(&self) -> Code {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after
    }

    /// What went wrong inside, for the log (internal errors).
    pub fn cause(&self) -> Option<&anyhow::Error> {
        self.cause.as_ref()
    }

    pub fn task_not_found() -> Self {
        Error::new(Code::NotFound, "no such task for this user")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Error::new(
                Code::Unavailable,
                "the database is unreachable; retry later",
            ),
            StoreError::UnsupportedText(_) => Error::new(
                Code::InvalidParameter,
                "text with NUL characters (\\u0000) is not accepted",
            ),
            other => Error::internal(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// docs/api.md's error table, row by row: (code, status, when).
    fn documented() -> Vec<(String, u16, String)> {
        let doc = include_str!("../../../docs/api.md");
        let table = doc
            .split("## Errors")
            .nth(1)
            .expect("docs/api.md has an Errors section");
        table
            .lines()
            .skip_while(|l| !l.starts_with("| `code`"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| {
                let cells: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
                (
                    cells[0].trim_matches('`').to_owned(),
                    cells[1].parse().expect("a status"),
                    cells[2].to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn the_documentation_lists_every_code_as_the_catalogue_does() {
        let catalogue: Vec<(String, u16, String)> = Code::ALL
            .iter()
            .map(|c| (c.name().to_owned(), c.status(), c.when().to_owned()))
            .collect();
        assert_eq!(documented(), catalogue);
    }

    #[test]
    fn codes_are_unique_snake_case_with_error_statuses() {
        let mut seen = HashSet::new();
        for c in Code::ALL {
            assert!(seen.insert(c.name()), "{} twice", c.name());
            assert!(
                c.name()
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch == '_'),
                "{}",
                c.name()
            );
            assert!((400..600).contains(&c.status()), "{}", c.name());
        }
        assert_eq!(Code::NotFound.name(), "not_found");
        assert_eq!(Code::PayloadTooLarge.status(), 413);
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let e = Error::internal(anyhow::anyhow!("password=hunter2"));
        assert_eq!(e.code(), Code::InternalError);
        assert_eq!(e.to_string(), "internal error");
        assert!(e.cause().is_some());
    }
}
