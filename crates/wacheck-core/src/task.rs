//! Task identity, kinds and the status machine.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A task id: a ULID, written in its 26-character Crockford base32 form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub ulid::Ulid);

impl TaskId {
    pub fn new() -> Self {
        TaskId(ulid::Ulid::generate())
    }
}

impl Default for TaskId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for TaskId {
    type Err = ulid::DecodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ulid::Ulid::from_string(s).map(TaskId)
    }
}

macro_rules! str_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s { $($text => Ok($name::$variant),)+ _ => Err(UnknownValue(s.to_owned())) }
            }
        }
    };
}
pub(crate) use str_enum;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown value `{0}`")]
pub struct UnknownValue(pub String);

str_enum!(
    /// `simple`: yes/no only. `detail`: also the about text, its date and the business flag.
    TaskKind { Simple => "simple", Detail => "detail" }
);

str_enum!(
    /// pending -> processing -> completed -> exported; or cancelled by the user before the
    /// last chunk was checked.
    TaskStatus {
        Pending => "pending",
        Processing => "processing",
        Completed => "completed",
        Exported => "exported",
        Cancelled => "cancelled",
    }
);

str_enum!(
    ResultFormat { Xlsx => "xlsx", Csv => "csv" }
);

impl TaskStatus {
    /// Whether workers still check numbers of this task.
    pub fn is_checking(self) -> bool {
        matches!(self, TaskStatus::Pending | TaskStatus::Processing)
    }
}

impl ResultFormat {
    pub fn extension(self) -> &'static str {
        self.as_str()
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ResultFormat::Xlsx => {
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            }
            ResultFormat::Csv => "text/csv; charset=utf-8",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for s in TaskStatus::ALL {
            assert_eq!(s.as_str().parse::<TaskStatus>().unwrap(), *s);
        }
        assert_eq!("detail".parse::<TaskKind>().unwrap(), TaskKind::Detail);
        assert!("XLSX".parse::<ResultFormat>().is_err());
    }

    #[test]
    fn task_ids_are_ulids() {
        let id = TaskId::new();
        let s = id.to_string();
        assert_eq!(s.len(), 26);
        assert_eq!(s.parse::<TaskId>().unwrap(), id);
        assert!("cs9viu7i61pkfs4oavvg".parse::<TaskId>().is_err());
    }
}
