//! Result files in a local directory; links point at the API's `/files/{key}` route and carry
//! an expiry and an HMAC-SHA256 signature over key and expiry.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::{BlobError, BlobStore, validate_key};

pub struct LocalStore {
    root: PathBuf,
    public_url: String,
    secret: SecretString,
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStore")
            .field("root", &self.root)
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

/// Why a download link was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    Expired,
    BadSignature,
}

impl LocalStore {
    /// `public_url`: the API's external base URL (links are `{public_url}/files/{key}?...`).
    pub fn new(
        root: impl Into<PathBuf>,
        public_url: &str,
        secret: SecretString,
    ) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(Self {
            root,
            public_url: public_url.trim_end_matches('/').to_owned(),
            secret,
        })
    }

    fn path(&self, key: &str) -> Result<PathBuf, BlobError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    fn mac(&self, key: &str, expires_at: i64, filename: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret.expose_secret().as_bytes())
            .expect("HMAC takes any key length");
        mac.update(format!("{key}\n{expires_at}\n{filename}").as_bytes());
        mac
    }

    /// Checks a link's signature and expiry; returns the file to send.
    pub fn verify(
        &self,
        key: &str,
        expires_at: i64,
        filename: &str,
        sig: &str,
    ) -> Result<PathBuf, LinkError> {
        let given = hex::decode(sig).map_err(|_| LinkError::BadSignature)?;
        self.mac(key, expires_at, filename)
            .verify_slice(&given)
            .map_err(|_| LinkError::BadSignature)?;
        if chrono::Utc::now().timestamp() > expires_at {
            return Err(LinkError::Expired);
        }
        self.path(key).map_err(|_| LinkError::BadSignature)
    }
}

#[async_trait]
impl BlobStore for LocalStore {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn put_file(&self, key: &str, path: &Path, _content_type: &str) -> Result<(), BlobError> {
        let dest = self.path(key)?;
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        // Copy to a temporary name, then rename: a reader never sees half a file.
        let tmp = dest.with_extension(format!("part-{}", std::process::id()));
        tokio::fs::copy(path, &tmp).await?;
        tokio::fs::rename(&tmp, &dest).await?;
        Ok(())
    }

    async fn url(&self, key: &str, filename: &str, expires: Duration) -> Result<String, BlobError> {
        validate_key(key)?;
        let exp = chrono::Utc::now().timestamp() + expires.as_secs() as i64;
        let sig = hex::encode(self.mac(key, exp, filename).finalize().into_bytes());
        Ok(format!(
            "{}/files/{key}?filename={}&expires={exp}&sig={sig}",
            self.public_url,
            encode_component(filename)
        ))
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, BlobError> {
        match tokio::fs::read(self.path(key)?).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(BlobError::NotFound(key.into()))
            }
            other => Ok(other?),
        }
    }

    async fn get_file(&self, key: &str, path: &Path) -> Result<(), BlobError> {
        match tokio::fs::copy(self.path(key)?, path).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(BlobError::NotFound(key.into()))
            }
            other => other.map(|_| ()).map_err(BlobError::from),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => Ok(other?),
        }
    }

    fn as_local(&self) -> Option<&LocalStore> {
        Some(self)
    }
}

fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
