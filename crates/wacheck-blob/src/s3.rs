//! S3-compatible storage through aws-sdk-s3; links are presigned GETs.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, timeout::TimeoutConfig};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::{BlobError, BlobStore, validate_key};

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// e.g. `https://s3.eu-central-1.amazonaws.com` or `http://127.0.0.1:9000`.
    pub endpoint: String,
    #[serde(default = "default_region")]
    pub region: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: SecretString,
    /// Path-style addressing (`endpoint/bucket/key`), as MinIO-likes need.
    #[serde(default = "yes")]
    pub path_style: bool,
}

fn default_region() -> String {
    "us-east-1".into()
}

fn yes() -> bool {
    true
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key", &self.access_key)
            .field("secret_key", &"[redacted]")
            .field("path_style", &self.path_style)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
}

fn remote<E: std::error::Error>(e: E) -> BlobError {
    BlobError::Remote(DisplayErrorContext(e).to_string())
}

impl S3Store {
    pub fn new(config: &S3Config) -> Self {
        let creds = Credentials::new(
            config.access_key.clone(),
            config.secret_key.expose_secret().to_owned(),
            None,
            None,
            "wacheck-config",
        );
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&config.endpoint)
            .region(Region::new(config.region.clone()))
            .credentials_provider(creds)
            .force_path_style(config.path_style)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(600))
                    .build(),
            )
            .build();
        Self {
            client: aws_sdk_s3::Client::from_conf(conf),
            bucket: config.bucket.clone(),
        }
    }

    /// Creates the bucket when it does not exist yet.
    pub async fn ensure_bucket(&self) -> Result<(), BlobError> {
        if self
            .client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error().is_some_and(|se| {
                    se.is_bucket_already_exists() || se.is_bucket_already_owned_by_you()
                }) =>
            {
                Ok(())
            }
            Err(e) => Err(remote(e)),
        }
    }
}

impl S3Store {
    /// The body of `key`, as it streams in.
    async fn body(&self, key: &str) -> Result<ByteStream, BlobError> {
        validate_key(key)?;
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(out.body),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_no_such_key()) => {
                Err(BlobError::NotFound(key.into()))
            }
            Err(e) => Err(remote(e)),
        }
    }
}

#[async_trait]
impl BlobStore for S3Store {
    fn kind(&self) -> &'static str {
        "s3"
    }

    async fn put_file(&self, key: &str, path: &Path, content_type: &str) -> Result<(), BlobError> {
        validate_key(key)?;
        let body = ByteStream::from_path(path).await.map_err(remote)?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(body)
            .send()
            .await
            .map_err(remote)?;
        Ok(())
    }

    async fn url(&self, key: &str, filename: &str, expires: Duration) -> Result<String, BlobError> {
        validate_key(key)?;
        let cfg = PresigningConfig::expires_in(expires).map_err(remote)?;
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .response_content_disposition(format!("attachment; filename=\"{filename}\""))
            .presigned(cfg)
            .await
            .map_err(remote)?;
        Ok(req.uri().to_string())
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, BlobError> {
        let bytes = self.body(key).await?.collect().await.map_err(remote)?;
        Ok(bytes.into_bytes().to_vec())
    }

    async fn get_file(&self, key: &str, path: &Path) -> Result<(), BlobError> {
        use tokio::io::AsyncWriteExt;
        let mut body = self.body(key).await?;
        let mut file = tokio::io::BufWriter::new(tokio::fs::File::create(path).await?);
        while let Some(bytes) = body.try_next().await.map_err(remote)? {
            file.write_all(&bytes).await?;
        }
        file.flush().await?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        validate_key(key)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(remote)?;
        Ok(())
    }
}
