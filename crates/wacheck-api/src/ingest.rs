//! Upload forms: the multipart body is streamed to a temporary file (the size limit holds
//! while streaming), and its text fields are collected for the use case that reads the file.

use actix_multipart::Multipart;
use actix_web::http::header;
use actix_web::{HttpRequest, web};
use futures::TryStreamExt;
use tokio::io::AsyncWriteExt;
pub use wacheck_app::tasks::Upload;

use crate::{ApiError, Code};

const MAX_TEXT_FIELD: usize = 1024;

fn multipart_error(e: actix_multipart::MultipartError) -> ApiError {
    ApiError::new(
        Code::InvalidMultipart,
        format!("the body is not a valid multipart form: {e}"),
    )
}

/// Refuses a body that is not a multipart form, with `message` (which says what to send).
pub fn require_multipart(req: &HttpRequest, message: &str) -> Result<(), ApiError> {
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.to_ascii_lowercase().starts_with("multipart/form-data"));
    if multipart {
        Ok(())
    } else {
        Err(ApiError::new(Code::InvalidContentType, message))
    }
}

/// Reads a whole upload form of at most `max_bytes`; the file goes to a temporary file, never
/// into memory.
pub async fn read_form(
    req: &HttpRequest,
    payload: web::Payload,
    max_bytes: u64,
) -> Result<Upload, ApiError> {
    let mut form = Multipart::new(req.headers(), payload);
    let mut up = Upload {
        user_id: None,
        default_region: None,
        result_format: None,
        cache: None,
        file: None,
        file_name: None,
        result_columns: None,
    };
    let mut seen: u64 = 0;
    let too_large = || {
        ApiError::new(
            Code::PayloadTooLarge,
            format!(
                "the upload is larger than the limit of {}: split the file, or ask the operator \
             to raise api.max_upload_bytes",
                human_bytes(max_bytes)
            ),
        )
    };
    while let Some(mut field) = form.try_next().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            if up.file.is_some() {
                return Err(ApiError::new(
                    Code::DuplicateFile,
                    "send exactly one `file` part",
                ));
            }
            let file_name = field
                .content_disposition()
                .and_then(|cd| cd.get_filename())
                .map(str::to_owned);
            let tmp = tempfile::NamedTempFile::new().map_err(ApiError::internal)?;
            let mut out = tokio::fs::File::from_std(tmp.reopen().map_err(ApiError::internal)?);
            let mut out = tokio::io::BufWriter::with_capacity(256 * 1024, &mut out);
            while let Some(chunk) = field.try_next().await.map_err(multipart_error)? {
                seen += chunk.len() as u64;
                if seen > max_bytes {
                    return Err(too_large());
                }
                out.write_all(&chunk).await.map_err(ApiError::internal)?;
            }
            out.flush().await.map_err(ApiError::internal)?;
            up.file = Some(tmp);
            up.file_name = file_name;
            continue;
        }
        let mut value = Vec::new();
        while let Some(chunk) = field.try_next().await.map_err(multipart_error)? {
            seen += chunk.len() as u64;
            if seen > max_bytes {
                return Err(too_large());
            }
            if value.len() + chunk.len() > MAX_TEXT_FIELD {
                return Err(ApiError::new(
                    Code::InvalidParameter,
                    format!("the `{name}` field is too long"),
                ));
            }
            value.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(value)
            .map_err(|_| {
                ApiError::new(
                    Code::InvalidParameter,
                    format!("the `{name}` field is not UTF-8 text"),
                )
            })?
            .trim()
            .to_owned();
        match name.as_str() {
            "user_id" => up.user_id = Some(text),
            "default_region" => up.default_region = Some(text).filter(|t| !t.is_empty()),
            "result_format" => up.result_format = Some(text).filter(|t| !t.is_empty()),
            "cache" => up.cache = Some(text).filter(|t| !t.is_empty()),
            "result_columns" => up.result_columns = Some(text).filter(|t| !t.is_empty()),
            _ => {} // unknown fields are ignored, as form posts often carry extras
        }
    }
    Ok(up)
}

/// A size in the units people use: `100 MiB`, `512 KiB`, `300 bytes`.
pub(crate) fn human_bytes(n: u64) -> String {
    let unit = |size: u64, name: &str| {
        if n.is_multiple_of(size) {
            format!("{} {name}", n / size)
        } else {
            format!("{:.1} {name}", n as f64 / size as f64)
        }
    };
    match n {
        n if n >= 1 << 30 => unit(1 << 30, "GiB"),
        n if n >= 1 << 20 => unit(1 << 20, "MiB"),
        n if n >= 1 << 10 => unit(1 << 10, "KiB"),
        n => format!("{n} bytes"),
    }
}
