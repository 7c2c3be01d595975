//! Stand-ins for the WhatsApp gateways, for tests: local HTTP servers that take the requests
//! and give the answers WAHA and Evolution API document, status codes and error bodies
//! included. Numbers are answered by the simulation's rule (`wacheck_backends::simulated`),
//! so a test can tell every answer in advance; faults, logouts and pairing are switched on by
//! the test.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};
use wacheck_backends::simulated::rule_with_privacy;

/// The gateway's session, as the test sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    /// Working: numbers are answered.
    Working,
    /// Logged out or stopped.
    Stopped,
    /// Waiting for its QR code to be scanned.
    ScanQr,
}

/// A misbehaviour for the next calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// WhatsApp throttles: WAHA answers 500 with `rate-overlimit`, Evolution 429 from the
    /// proxy in front of it (with `Retry-After: 1`).
    RateLimited,
    /// A plain server error (500).
    ServerError,
    /// The answer comes after this long.
    Slow(Duration),
}

/// What a fake gateway knows and counts.
pub struct Gateway {
    pub key: String,
    pub session: String,
    pub registered_percent: u8,
    pub hidden_percent: u8,
    state: Mutex<Session>,
    faults: Mutex<VecDeque<Fault>>,
    /// Requests that reached a check route (answered or not), and numbers in them.
    pub check_calls: AtomicU64,
    pub numbers_checked: AtomicU64,
    /// Numbers answered by a check, in order (tests compare budgets with it).
    pub answered: Mutex<Vec<String>>,
    /// Detail requests (about, picture, profile).
    pub detail_calls: AtomicU64,
}

/// Numbers answered with a JID other than their digits, by that JID's user part: one
/// directory behind every gateway, as WhatsApp is one service behind all of them.
static RENAMED: std::sync::LazyLock<Mutex<HashMap<String, String>>> =
    std::sync::LazyLock::new(Mutex::default);

impl Gateway {
    fn new(key: &str, session: &str, registered_percent: u8, hidden_percent: u8) -> Arc<Self> {
        Arc::new(Gateway {
            key: key.into(),
            session: session.into(),
            registered_percent,
            hidden_percent,
            state: Mutex::new(Session::Working),
            faults: Mutex::default(),
            check_calls: AtomicU64::new(0),
            numbers_checked: AtomicU64::new(0),
            answered: Mutex::default(),
            detail_calls: AtomicU64::new(0),
        })
    }

    pub fn set_session(&self, s: Session) {
        *self.state.lock().expect("state") = s;
    }

    pub fn session_state(&self) -> Session {
        *self.state.lock().expect("state")
    }

    /// The next `n` calls (checks and details alike) misbehave so.
    pub fn fail_next(&self, fault: Fault, n: usize) {
        let mut f = self.faults.lock().expect("faults");
        f.extend(std::iter::repeat_n(fault, n));
    }

    fn next_fault(&self) -> Option<Fault> {
        self.faults.lock().expect("faults").pop_front()
    }

    pub fn answered_numbers(&self) -> Vec<String> {
        self.answered.lock().expect("answered").clone()
    }

    /// The user part of the JID a check answers `digits` with; the server remembers it.
    fn jid_user(&self, digits: &str) -> String {
        let user = whatsapp_user(digits);
        if user != digits {
            let mut renamed = RENAMED.lock().expect("renamed");
            renamed.insert(user.clone(), digits.to_owned());
        }
        user
    }

    /// The number a detail request's contact stands for: the server knows a contact by the
    /// JID it answered with, so a number that came back under another JID is unknown by its
    /// own digits (`None`).
    fn contact(&self, user: &str) -> Option<String> {
        if let Some(d) = RENAMED.lock().expect("renamed").get(user) {
            return Some(d.clone());
        }
        (whatsapp_user(user) == user).then(|| user.to_owned())
    }

    fn answer(&self, digits: &str) -> wacheck_backends::simulated::Simulated {
        rule_with_privacy(
            &format!("+{digits}"),
            self.registered_percent,
            self.hidden_percent,
        )
    }
}

/// A running fake gateway; stopped when dropped.
pub struct FakeGateway {
    pub addr: SocketAddr,
    pub state: Arc<Gateway>,
    handle: actix_web::dev::ServerHandle,
}

impl FakeGateway {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn serve(state: Arc<Gateway>, routes: fn(&mut web::ServiceConfig)) -> FakeGateway {
        Self::serve_on(0, state, routes)
    }

    fn serve_on(
        port: u16,
        state: Arc<Gateway>,
        routes: fn(&mut web::ServiceConfig),
    ) -> FakeGateway {
        let data = web::Data::from(state.clone());
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("a free port");
        let addr = listener.local_addr().expect("bound");
        let server = HttpServer::new(move || App::new().app_data(data.clone()).configure(routes))
            .workers(2)
            .disable_signals()
            .listen(listener)
            .expect("listening")
            .run();
        let handle = server.handle();
        tokio::spawn(server);
        FakeGateway {
            addr,
            state,
            handle,
        }
    }

    /// WAHA with one session named `session`, answering to `key`.
    pub fn waha(key: &str, session: &str, registered_percent: u8, hidden_percent: u8) -> Self {
        Self::serve(
            Gateway::new(key, session, registered_percent, hidden_percent),
            waha::routes,
        )
    }

    /// WAHA as [`FakeGateway::waha`], on a given port (a gateway that starts late).
    pub fn waha_on(
        port: u16,
        key: &str,
        session: &str,
        registered_percent: u8,
        hidden_percent: u8,
    ) -> Self {
        Self::serve_on(
            port,
            Gateway::new(key, session, registered_percent, hidden_percent),
            waha::routes,
        )
    }

    /// Evolution API with one instance named `instance`, answering to `key`.
    pub fn evolution(
        key: &str,
        instance: &str,
        registered_percent: u8,
        hidden_percent: u8,
    ) -> Self {
        Self::serve(
            Gateway::new(key, instance, registered_percent, hidden_percent),
            evolution::routes,
        )
    }
}

impl Drop for FakeGateway {
    fn drop(&mut self) {
        let h = self.handle.clone();
        // Stopping needs the runtime; without one the server dies with the process.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { h.stop(false).await });
        }
    }
}

/// The user part of the JID WhatsApp answers a number with: the digits, except that a
/// Brazilian mobile number registered before the ninth digit comes back without it
/// (+55 11 9xxxx-xxxx → 5511xxxxxxxx), as real gateways show.
pub fn whatsapp_user(digits: &str) -> String {
    if digits.len() == 13 && digits.starts_with("55") && digits.as_bytes()[4] == b'9' {
        format!("{}{}", &digits[..4], &digits[5..])
    } else {
        digits.to_owned()
    }
}

/// Applies a fault: `Some(answer)` when the fault answers instead of the route.
async fn fault(g: &Gateway, throttled: fn() -> HttpResponse) -> Option<HttpResponse> {
    match g.next_fault()? {
        Fault::RateLimited => Some(throttled()),
        Fault::ServerError => Some(
            HttpResponse::InternalServerError()
                .json(json!({"statusCode": 500, "message": "Internal server error"})),
        ),
        Fault::Slow(d) => {
            tokio::time::sleep(d).await;
            None
        }
    }
}

/// WAHA's routes and answers (NestJS error bodies, `@c.us` chat ids).
pub mod waha {
    use super::*;

    pub fn routes(cfg: &mut web::ServiceConfig) {
        cfg.route("/api/contacts/check-exists", web::get().to(check_exists))
            .route("/api/contacts/about", web::get().to(about))
            .route("/api/contacts/profile-picture", web::get().to(picture))
            .route("/api/sessions/{session}", web::get().to(session));
    }

    fn unauthorized() -> HttpResponse {
        HttpResponse::Unauthorized().json(json!({"message": "Unauthorized", "statusCode": 401}))
    }

    fn throttled() -> HttpResponse {
        HttpResponse::InternalServerError().json(json!({
            "statusCode": 500,
            "timestamp": "2024-10-31T02:20:39.428Z",
            "exception": {"message": "rate-overlimit", "data": 429, "isBoom": true,
                          "isServer": true, "output": {}, "name": "Error",
                          "stack": "Error: rate-overlimit\n    at ..."},
            "request": {"path": "/api/contacts/check-exists", "method": "GET", "body": {}, "query": {}},
            "version": {"version": "2024.7.6", "engine": "WEBJS", "tier": "CORE"}
        }))
    }

    /// Key, session and session state, as WAHA checks them before any contacts route.
    async fn gate(g: &Gateway, req: &HttpRequest, session: Option<&str>) -> Option<HttpResponse> {
        let key = req.headers().get("x-api-key").and_then(|v| v.to_str().ok());
        if key != Some(g.key.as_str()) {
            return Some(unauthorized());
        }
        let name = session.unwrap_or("default");
        if name != g.session || g.session_state() == Session::Stopped {
            return Some(HttpResponse::NotFound().json(json!({
                "statusCode": 404,
                "message": format!("We didn't find a session with name '{name}'.\nPlease start it first by using POST /api/sessions/{name}/start request"),
                "error": "Not Found"
            })));
        }
        if g.session_state() == Session::ScanQr {
            return Some(HttpResponse::UnprocessableEntity().json(json!({
                "error": "Session status is not as expected. Try again later or restart the session",
                "session": name,
                "status": "SCAN_QR_CODE",
                "expected": ["WORKING"]
            })));
        }
        None
    }

    fn query(req: &HttpRequest, name: &str) -> Option<String> {
        web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .ok()
            .and_then(|q| q.get(name).cloned())
    }

    fn digits(s: &str) -> String {
        s.split('@')
            .next()
            .unwrap_or(s)
            .chars()
            .filter(char::is_ascii_digit)
            .collect()
    }

    async fn check_exists(g: web::Data<Gateway>, req: HttpRequest) -> HttpResponse {
        g.check_calls.fetch_add(1, Ordering::Relaxed);
        if let Some(r) = gate(&g, &req, query(&req, "session").as_deref()).await {
            return r;
        }
        let Some(phone) = query(&req, "phone") else {
            return HttpResponse::InternalServerError().json(json!({
                "statusCode": 500, "timestamp": "2024-10-31T02:20:39.428Z",
                "exception": {"message": "Cannot read properties of undefined (reading 'replace')", "name": "TypeError"}
            }));
        };
        g.numbers_checked.fetch_add(1, Ordering::Relaxed);
        if let Some(r) = fault(&g, throttled).await {
            return r;
        }
        let d = digits(&phone);
        g.answered.lock().expect("answered").push(format!("+{d}"));
        if g.answer(&d).registered {
            HttpResponse::Ok()
                .json(json!({"numberExists": true, "chatId": format!("{}@c.us", g.jid_user(&d))}))
        } else {
            HttpResponse::Ok().json(json!({"numberExists": false}))
        }
    }

    /// What every detail route does first: count the call, check key, session and faults.
    /// The number the contact stands for (`None`: a JID the server does not know), or the
    /// answer that ends the request.
    async fn detail_contact(
        g: &Gateway,
        req: &HttpRequest,
    ) -> Result<Option<String>, HttpResponse> {
        g.detail_calls.fetch_add(1, Ordering::Relaxed);
        if let Some(r) = gate(g, req, query(req, "session").as_deref()).await {
            return Err(r);
        }
        if let Some(r) = fault(g, throttled).await {
            return Err(r);
        }
        Ok(g.contact(&digits(&query(req, "contactId").unwrap_or_default())))
    }

    async fn about(g: web::Data<Gateway>, req: HttpRequest) -> HttpResponse {
        let d = match detail_contact(&g, &req).await {
            Ok(d) => d,
            Err(r) => return r,
        };
        // An unknown contact has nothing to show, like a hidden one.
        let about = d
            .map(|d| g.answer(&d))
            .filter(|a| !a.about_hidden)
            .map(|a| a.signature);
        HttpResponse::Ok().json(json!({ "about": about }))
    }

    async fn picture(g: web::Data<Gateway>, req: HttpRequest) -> HttpResponse {
        let d = match detail_contact(&g, &req).await {
            Ok(d) => d,
            Err(r) => return r,
        };
        let url = d
            .filter(|d| g.answer(d).has_picture)
            .map(|d| format!("https://pps.whatsapp.net/v/t61.24694-24/{d}.jpg"));
        HttpResponse::Ok().json(json!({ "profilePictureURL": url }))
    }

    async fn session(
        g: web::Data<Gateway>,
        req: HttpRequest,
        name: web::Path<String>,
    ) -> HttpResponse {
        let key = req.headers().get("x-api-key").and_then(|v| v.to_str().ok());
        if key != Some(g.key.as_str()) {
            return unauthorized();
        }
        if *name != g.session {
            return HttpResponse::NotFound().json(
                json!({"statusCode": 404, "message": "Session not found", "error": "Not Found"}),
            );
        }
        let status = match g.session_state() {
            Session::Working => "WORKING",
            Session::Stopped => "STOPPED",
            Session::ScanQr => "SCAN_QR_CODE",
        };
        let me: Value = if status == "WORKING" {
            json!({"id": "41790000000@c.us", "pushName": "wacheck"})
        } else {
            Value::Null
        };
        HttpResponse::Ok().json(json!({
            "name": g.session, "status": status,
            "config": {"proxy": null, "webhooks": [], "debug": false},
            "me": me, "engine": {"engine": "WEBJS"}
        }))
    }
}

/// Evolution API's routes and answers (`{status, error, response: {message}}` errors,
/// `@s.whatsapp.net` JIDs). The instance is checked before the key, as Evolution does.
pub mod evolution {
    use super::*;

    pub fn routes(cfg: &mut web::ServiceConfig) {
        cfg.route("/chat/whatsappNumbers/{instance}", web::post().to(numbers))
            .route("/chat/fetchProfile/{instance}", web::post().to(profile))
            .route("/instance/connectionState/{instance}", web::get().to(state));
    }

    fn error(status: u16, error: &str, message: Value) -> HttpResponse {
        HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("status"))
            .json(json!({"status": status, "error": error, "response": {"message": message}}))
    }

    fn throttled() -> HttpResponse {
        let mut r = error(429, "Too Many Requests", json!("Internal Server Error"));
        r.headers_mut().insert(
            actix_web::http::header::RETRY_AFTER,
            actix_web::http::header::HeaderValue::from_static("1"),
        );
        r
    }

    fn gate(g: &Gateway, req: &HttpRequest, instance: &str) -> Option<HttpResponse> {
        if instance != g.session {
            return Some(error(
                404,
                "Not Found",
                json!([format!("The \"{instance}\" instance does not exist")]),
            ));
        }
        let key = req.headers().get("apikey").and_then(|v| v.to_str().ok());
        if key != Some(g.key.as_str()) {
            return Some(error(401, "Unauthorized", json!("Unauthorized")));
        }
        None
    }

    fn closed(g: &Gateway) -> Option<HttpResponse> {
        (g.session_state() != Session::Working)
            .then(|| error(500, "Internal Server Error", json!("Connection Closed")))
    }

    async fn numbers(
        g: web::Data<Gateway>,
        req: HttpRequest,
        instance: web::Path<String>,
        body: web::Bytes,
    ) -> HttpResponse {
        g.check_calls.fetch_add(1, Ordering::Relaxed);
        if let Some(r) = gate(&g, &req, &instance) {
            return r;
        }
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let Some(numbers) = body.get("numbers").and_then(Value::as_array) else {
            return error(
                500,
                "Internal Server Error",
                json!("Cannot read properties of undefined (reading 'map')"),
            );
        };
        if numbers.is_empty() {
            return error(
                400,
                "Bad Request",
                json!([["numbers does not meet minimum length of 1"]]),
            );
        }
        let strings: Vec<String> = numbers
            .iter()
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect();
        let mut seen = std::collections::HashSet::new();
        if strings.len() != numbers.len() || !strings.iter().all(|s| seen.insert(s.clone())) {
            return error(
                400,
                "Bad Request",
                json!([["numbers contains duplicate items"]]),
            );
        }
        g.numbers_checked
            .fetch_add(strings.len() as u64, Ordering::Relaxed);
        if let Some(r) = closed(&g) {
            return r;
        }
        if let Some(r) = fault(&g, throttled).await {
            return r;
        }
        let mut out = Vec::with_capacity(strings.len());
        for s in strings {
            let d: String = s.chars().filter(char::is_ascii_digit).collect();
            g.answered.lock().expect("answered").push(format!("+{d}"));
            let a = g.answer(&d);
            let mut item = json!({"jid": format!("{}@s.whatsapp.net", g.jid_user(&d)), "exists": a.registered, "number": s});
            if a.registered && a.business {
                item["name"] = json!("Contact");
            }
            out.push(item);
        }
        HttpResponse::Ok().json(out)
    }

    async fn profile(
        g: web::Data<Gateway>,
        req: HttpRequest,
        instance: web::Path<String>,
        body: web::Bytes,
    ) -> HttpResponse {
        g.detail_calls.fetch_add(1, Ordering::Relaxed);
        if let Some(r) = gate(&g, &req, &instance) {
            return r;
        }
        if let Some(r) = closed(&g) {
            return r;
        }
        if let Some(r) = fault(&g, throttled).await {
            return r;
        }
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let number = body
            .get("number")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let d: String = number.chars().filter(char::is_ascii_digit).collect();
        let a = g.contact(&d).map(|full| g.answer(&full));
        let jid = format!("{d}@s.whatsapp.net");
        let Some(a) = a.filter(|a| a.registered) else {
            return error(
                400,
                "Bad Request",
                json!([{"jid": jid, "exists": false, "number": number}]),
            );
        };
        let status = if a.about_hidden {
            json!({"status": "", "setAt": "1970-01-01T00:00:00.000Z"})
        } else {
            json!({"status": a.signature, "setAt": format!("{}T09:30:00.000Z", a.status_update)})
        };
        let picture = a
            .has_picture
            .then(|| format!("https://pps.whatsapp.net/v/t61.24694-24/{d}.jpg"));
        let mut p = json!({"wuid": jid, "numberExists": true, "picture": picture,
                           "status": status, "isBusiness": a.business});
        if a.business {
            p["email"] = json!("shop@example.com");
            p["description"] = json!("A shop");
            p["website"] = json!("https://example.com");
        }
        HttpResponse::Ok().json(p)
    }

    async fn state(
        g: web::Data<Gateway>,
        req: HttpRequest,
        instance: web::Path<String>,
    ) -> HttpResponse {
        if let Some(r) = gate(&g, &req, &instance) {
            return r;
        }
        let state = match g.session_state() {
            Session::Working => "open",
            Session::Stopped => "close",
            Session::ScanQr => "connecting",
        };
        HttpResponse::Ok().json(json!({"instance": {"instanceName": g.session, "state": state}}))
    }
}
