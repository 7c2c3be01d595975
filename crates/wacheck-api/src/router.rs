//! Routes are declared once. A handler's `#[utoipa::path]` names its method and path; the
//! [`route!`] macro reads them from there, so the same declaration registers the handler with
//! actix and puts its operation in the OpenAPI document. Each route family lists its handlers
//! in one `routes` function, which [`crate::configure`] serves and [`crate::openapi`] documents.

use actix_web::{FromRequest, Handler, Responder, web};
use utoipa::openapi::path::{HttpMethod, Paths};
use utoipa::openapi::{RefOr, schema::Schema};

/// What the routes of a family go to: the HTTP service (under the family's path prefix), or
/// the OpenAPI document.
pub enum Router<'a> {
    Serve {
        cfg: &'a mut web::ServiceConfig,
        prefix: &'static str,
    },
    Document(&'a mut Documented),
}

/// The operations and schemas routes declare.
#[derive(Default)]
pub struct Documented {
    pub paths: Paths,
    pub schemas: Vec<(String, RefOr<Schema>)>,
}

impl Router<'_> {
    /// Adds `handler` as its annotation `P` declares it. `pattern` is the router's own pattern
    /// where it must differ from the documented path (a parameter that spans slashes).
    pub fn add<P, F, Args>(&mut self, handler: F, pattern: Option<&str>) -> &mut Self
    where
        // The operation's schemas and tags come through the traits the `OpenApi` derive uses
        // for the same purpose; they are part of utoipa's generated code, not of its API.
        P: utoipa::Path + utoipa::__dev::SchemaReferences + utoipa::__dev::Tags<'static>,
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        let path = P::path();
        match self {
            Router::Serve { cfg, prefix } => {
                let pattern = pattern.unwrap_or(&path);
                let pattern = pattern.strip_prefix(*prefix).unwrap_or_else(|| {
                    panic!("route {pattern} is outside its family's prefix {prefix}")
                });
                for method in P::methods() {
                    cfg.route(pattern, web::method(actix(method)).to(handler.clone()));
                }
            }
            Router::Document(doc) => {
                let mut operation = P::operation();
                let tags = P::tags();
                if !tags.is_empty() {
                    operation.tags = Some(tags.into_iter().map(str::to_owned).collect());
                }
                doc.paths.add_path_operation(&path, P::methods(), operation);
                P::schemas(&mut doc.schemas);
            }
        }
        self
    }
}

fn actix(method: HttpMethod) -> actix_web::http::Method {
    use actix_web::http::Method;
    match method {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Delete => Method::DELETE,
        HttpMethod::Options => Method::OPTIONS,
        HttpMethod::Head => Method::HEAD,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Trace => Method::TRACE,
    }
}

/// `route!(router, module::handler)`: registers `handler` at the method and path of its
/// `#[utoipa::path]`; `route!(router, module::handler, "/pattern/{tail:.*}")` with a pattern
/// of the router's own.
macro_rules! route {
    ($router:expr, $handler:ident $(, $pattern:expr)?) => {
        paste::paste! {
            $router.add::<[<__path_ $handler>], _, _>($handler, None $(.or(Some($pattern)))?)
        }
    };
    ($router:expr, $module:ident :: $handler:ident $(, $pattern:expr)?) => {
        paste::paste! {
            $router.add::<$module::[<__path_ $handler>], _, _>(
                $module::$handler,
                None $(.or(Some($pattern)))?,
            )
        }
    };
}
pub(crate) use route;
