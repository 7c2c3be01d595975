//! The query-string extractor of every route: like actix's, but a refusal names the parameter
//! and the mistake (`the details query parameter must be true or false, not "yes"`), in the
//! error shape of the route's family.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use serde::de::DeserializeOwned;

use crate::{ApiError, Code};

/// Query parameters deserialised into `T`.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T> std::ops::Deref for Query<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            parse(req.query_string())
                .map(Query)
                .map_err(|message| ApiError::new(Code::InvalidParameter, message)),
        )
    }
}

/// Parses a query string; the error says which parameter is wrong and how.
pub fn parse<T: DeserializeOwned>(query: &str) -> Result<T, String> {
    let pairs = form_urlencoded::parse(query.as_bytes());
    serde_path_to_error::deserialize(serde_urlencoded::Deserializer::new(pairs))
        .map_err(|e| explain(query, &e.path().to_string(), &e.into_inner().to_string()))
}

/// The refusal in words, naming the parameter (and the value given, when there was one).
fn explain(query: &str, path: &str, error: &str) -> String {
    if let Some(name) = error
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        return format!("the `{name}` query parameter is required");
    }
    if path.is_empty() || path == "." {
        return format!("the query string cannot be read: {error}");
    }
    let given = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == path)
        .map(|(_, v)| v.into_owned());
    let what = if error.contains("`true` or `false`") {
        "must be true or false".to_owned()
    } else if error.contains("invalid digit") || error.contains("number") {
        "must be a whole number".to_owned()
    } else {
        format!("is not valid ({error})")
    };
    match given {
        Some(v) => format!("the `{path}` query parameter {what}, not `{v}`"),
        None => format!("the `{path}` query parameter {what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Q {
        #[allow(dead_code)]
        details: Option<bool>,
        #[allow(dead_code)]
        limit: Option<u32>,
        #[allow(dead_code)]
        sig: String,
    }

    #[test]
    fn refusals_name_the_parameter_and_the_mistake() {
        let e = parse::<Q>("sig=x&details=yes").unwrap_err();
        assert_eq!(
            e,
            "the `details` query parameter must be true or false, not `yes`"
        );
        let e = parse::<Q>("sig=x&limit=ten").unwrap_err();
        assert_eq!(
            e,
            "the `limit` query parameter must be a whole number, not `ten`"
        );
        let e = parse::<Q>("details=true").unwrap_err();
        assert_eq!(e, "the `sig` query parameter is required");
        assert!(parse::<Q>("sig=x&details=false&limit=3").is_ok());
    }
}
