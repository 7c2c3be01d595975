//! Where result files live: S3-compatible storage, or a local directory served by the API.
//! One trait, one shared test suite for both.

mod local;
mod s3;

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;

pub use local::{LinkError, LocalStore};
pub use s3::{S3Config, S3Store};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("object `{0}` not found")]
    NotFound(String),
    #[error("invalid object key `{0}`")]
    InvalidKey(String),
    #[error("storage I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("object store request failed: {0}")]
    Remote(String),
}

/// A store of result files.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// `s3` or `local`.
    fn kind(&self) -> &'static str;
    /// Stores the file at `path` under `key`, replacing what was there.
    async fn put_file(&self, key: &str, path: &Path, content_type: &str) -> Result<(), BlobError>;
    /// A link that downloads `key` as `filename`, valid for `expires`. Signed afresh each call.
    async fn url(&self, key: &str, filename: &str, expires: Duration) -> Result<String, BlobError>;
    /// The stored bytes (for tests and tools; downloads go through `url`).
    async fn get(&self, key: &str) -> Result<Vec<u8>, BlobError>;
    /// Copies the object into the file at `path`, streaming (memory stays flat whatever its
    /// size).
    async fn get_file(&self, key: &str, path: &Path) -> Result<(), BlobError>;
    /// Removes `key`; removing a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<(), BlobError>;
    /// The local store, when this is one (the API serves its links).
    fn as_local(&self) -> Option<&LocalStore> {
        None
    }
}

/// Keys are `a-z0-9_-./` paths without `..`, empty segments or a leading `/`.
pub fn validate_key(key: &str) -> Result<(), BlobError> {
    let ok = !key.is_empty()
        && key.len() <= 512
        && key
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'));
    if ok {
        Ok(())
    } else {
        Err(BlobError::InvalidKey(key.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::validate_key;

    #[test]
    fn keys_cannot_escape() {
        assert!(validate_key("results/u1/01J.xlsx").is_ok());
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "a//b",
            "a/./b",
            "a b",
            "a\\b",
            "..",
        ] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
    }
}
