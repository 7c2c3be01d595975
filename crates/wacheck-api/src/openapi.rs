//! The OpenAPI 3.1 document of every route, generated from the handlers' annotations and
//! served at `GET /openapi.json`.

use actix_web::HttpResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::router::{Documented, Router};

/// Every error: a stable machine `code` and a human `message`.
#[derive(Debug, serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

/// What any authenticated route may answer besides its own answers.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documentation only
pub enum Refusals {
    /// No credentials, or wrong ones.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The key or token lacks the scope this needs.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// A request rate or quota is used up.
    #[response(
        status = 429,
        headers(("Retry-After" = u64, description = "Seconds to wait"))
    )]
    TooManyRequests(ErrorBody),
    /// A dependency (database, storage) cannot be reached.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// The multipart form of an upload.
#[derive(ToSchema)]
#[allow(dead_code)] // documentation only: the form is read field by field
pub struct UploadForm {
    /// Your user id (the key's user; admins may name another).
    user_id: String,
    /// The file of numbers: .txt, .csv or .xlsx.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// Two-letter country code for numbers written without an international prefix.
    default_region: Option<String>,
    /// `xlsx` (default) or `csv`.
    result_format: Option<String>,
    /// `false`: check every number afresh instead of using cached answers.
    cache: Option<String>,
    /// `full` (default): the answer columns, a `reason`, then the upload's own columns;
    /// `ekycpro`: the answer columns alone.
    result_columns: Option<String>,
}

/// A file's bytes.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // documentation only
pub struct FileBody(Vec<u8>);

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("API key or JWT")
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "wacheck",
        description = "Tells whether phone numbers are on WhatsApp: bulk tasks, accounts, users and keys. \
                       See docs/api.md for every field and error code."
    ),
    components(schemas(ErrorBody)),
    modifiers(&Security),
    security(("api_key" = []), ("bearer" = [])),
    tags(
        (name = "tasks", description = "Bulk checks: upload, poll, download"),
        (name = "accounts", description = "The WhatsApp accounts that check numbers"),
        (name = "users", description = "Users, keys and limits"),
        (name = "numbers", description = "Single-number checks answered in the request"),
        (name = "walytic", description = "Walytic-compatible number verification"),
        (name = "commbox", description = "CommBox-compatible contact validation"),
        (name = "service", description = "The service itself"),
    )
)]
pub struct ApiDoc;

/// The document, built once from the routes as they are served.
pub fn document() -> &'static str {
    static DOC: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let mut routes = Documented::default();
        crate::all_routes(&mut Router::Document(&mut routes));
        let mut doc = ApiDoc::openapi();
        doc.paths.paths.extend(routes.paths.paths);
        let components = doc.components.get_or_insert_with(Default::default);
        components.schemas.extend(routes.schemas);
        doc.to_pretty_json()
            .expect("the OpenAPI document serialises")
    });
    &DOC
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "service",
    summary = "This document",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")),
    security(())
)]
pub(crate) async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_in_the_document_with_its_errors() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        // A handful of routes from docs/api.md's table, as a reader would look for them.
        for p in [
            "/wa/api/{kind}/tasks/{task_id}/export",
            "/files/{key}",
            "/v1/numbers:check",
            "/api/verify/{session_id}/bulk-verify",
            "/whatsapp/validatecontact/{stream_id}/{phone}",
        ] {
            assert!(paths.contains_key(p), "{p} is missing");
        }
        let upload = &paths["/wa/api/{kind}/tasks"]["post"];
        for code in ["200", "400", "401", "403", "404", "413", "429", "503"] {
            assert!(
                upload["responses"].get(code).is_some(),
                "upload lacks {code}"
            );
        }
        let single = &paths["/api/verify/{session_id}/verify-single"]["post"];
        for code in ["200", "400", "401", "403", "404", "409", "429", "503"] {
            let r = &single["responses"][code];
            assert!(r.is_object(), "verify-single lacks {code}");
            if code != "200" {
                let body = &r["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(body, "#/components/schemas/WalyticErrorBody", "{code}");
            }
        }
        assert!(
            upload["requestBody"]["content"]
                .get("multipart/form-data")
                .is_some()
        );
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["api_key"]["name"], "X-API-Key");
        assert_eq!(schemes["bearer"]["scheme"], "bearer");
        assert_eq!(paths["/health"]["get"]["security"], serde_json::json!([{}]));
    }

    /// Every operation of the document answers from its handler, not from the "no such route"
    /// fallback, and a path that is not in the document does not.
    #[actix_web::test]
    async fn the_document_and_the_router_hold_the_same_routes() {
        use actix_web::{App, test};
        let app = test::init_service(App::new().configure(crate::configure)).await;
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        let mut operations = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            let concrete = path
                .split('/')
                .map(|s| if s.starts_with('{') { "x" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            for method in item.as_object().unwrap().keys() {
                operations += 1;
                let req = test::TestRequest::default()
                    .method(method.to_uppercase().parse().unwrap())
                    .uri(&concrete)
                    .to_request();
                let res = test::call_service(&app, req).await;
                let body = test::read_body(res).await;
                assert!(
                    !String::from_utf8_lossy(&body).contains("no such route"),
                    "{method} {path} is documented but not served"
                );
            }
        }
        assert!(operations >= 36, "only {operations} operations");
        for (method, uri) in [
            ("GET", "/v1/nothing"),
            ("POST", "/health"),
            ("GET", "/api/verify/x"),
        ] {
            let req = test::TestRequest::default()
                .method(method.parse().unwrap())
                .uri(uri)
                .to_request();
            let res = test::call_service(&app, req).await;
            assert!(res.status().is_client_error(), "{method} {uri}");
        }
    }
}
