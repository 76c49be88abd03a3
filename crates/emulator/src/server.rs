//! The HTTP side of the emulator: the API path, the fault switches, the
//! counters and the `/__emulator/*` control endpoints.
//!
//! Rule this module keeps: every request on the API path is counted before
//! anything else happens, consumes at most one fault, and gets an answer; a
//! malformed request gets a FastAPI-like 422, never a panic.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, serve};
use chrono::NaiveDate;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::fixtures::{self, FixtureKind};
use super::shape::{Reply, detail};
use super::synthetic::synthetic_response;
use super::{EmulatorConfig, Faults, Hostile};

const API_PATH: &str = "/api/v1/backend/gbdfl/";
/// A session id that never exists: 404 for any IIN.
const MISSING_SESSION: &str = "00000000-0000-0000-0000-000000000000";

struct Shared {
    api_key: Option<String>,
    today: Option<NaiveDate>,
    calls: AtomicU64,
    answered: AtomicU64,
    faults: Mutex<Faults>,
    /// (IIN, session) pairs that already got their PENDING answer.
    pending_seen: Mutex<HashSet<(String, String)>>,
    /// Calls per well-formed (IIN, session) request, faulted or not.
    per_request: Mutex<HashMap<(String, String), u64>>,
    /// Wakes answers held back (latency, `slow_first`) when the emulator
    /// stops, so that stopping never waits for them.
    stopping: tokio::sync::watch::Sender<bool>,
}

/// A poisoned lock only means another request panicked mid-update of a plain
/// value; the value is still usable, so the server keeps going.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

enum Fault {
    RateLimit(u64),
    Fail,
    Drop,
    Garbage,
    ServiceError,
    Hostile(Hostile),
    HangUp,
}

impl Shared {
    fn today(&self) -> NaiveDate {
        self.today
            .unwrap_or_else(|| chrono::Local::now().date_naive())
    }

    /// Takes at most one fault, in the documented order, and the latency.
    fn take_fault(&self) -> (Option<Fault>, u64) {
        let mut f = lock(&self.faults);
        let fault = if f.rate_limit_first > 0 {
            f.rate_limit_first -= 1;
            Some(Fault::RateLimit(f.retry_after_secs.max(1)))
        } else if f.fail_first > 0 {
            f.fail_first -= 1;
            Some(Fault::Fail)
        } else if f.drop_first > 0 {
            f.drop_first -= 1;
            Some(Fault::Drop)
        } else if f.garbage_first > 0 {
            f.garbage_first -= 1;
            Some(Fault::Garbage)
        } else if f.service_error_first > 0 {
            f.service_error_first -= 1;
            Some(Fault::ServiceError)
        } else if f.hostile_first > 0 {
            f.hostile_first -= 1;
            Some(Fault::Hostile(f.hostile))
        } else if f.hang_up_first > 0 {
            f.hang_up_first -= 1;
            Some(Fault::HangUp)
        } else {
            None
        };
        let mut delay = f.latency_ms;
        if f.slow_first > 0 {
            f.slow_first -= 1;
            delay = delay.saturating_add(f.slow_ms);
        }
        (fault, delay)
    }

    fn reset(&self) {
        self.calls.store(0, Ordering::SeqCst);
        self.answered.store(0, Ordering::SeqCst);
        *lock(&self.faults) = Faults::default();
        lock(&self.pending_seen).clear();
        lock(&self.per_request).clear();
    }

    /// (distinct requests, most calls for one request).
    fn per_request(&self) -> (u64, u64) {
        let m = lock(&self.per_request);
        (m.len() as u64, m.values().copied().max().unwrap_or(0))
    }
}

/// A running emulator on a background thread with its own tokio runtime.
/// Dropping it stops the server and joins the thread.
pub struct Emulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Emulator {
    /// Binds `addr` (e.g. "127.0.0.1:0") and serves on a background thread;
    /// returns once the socket is listening.
    pub fn start(addr: &str, config: EmulatorConfig) -> io::Result<Emulator> {
        let (listener, shared) = bind(addr, config)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = {
            let _in_runtime = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let (tx, rx) = oneshot::channel::<()>();
        let app = router(shared.clone());
        let thread = std::thread::Builder::new()
            .name("gbdfl-emulator".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let stop = async {
                        let _ = rx.await;
                    };
                    // An accept error ends the server; the owner sees
                    // connection errors, which is what a test wants.
                    let _ = serve(listener, app).with_graceful_shutdown(stop).await;
                });
            })?;
        Ok(Emulator {
            addr,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// The address it listens on; the real port when `start` was given port 0.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API URL, e.g. `http://127.0.0.1:PORT/api/v1/backend/gbdfl/`.
    pub fn url(&self) -> String {
        format!("http://{}{API_PATH}", self.addr)
    }

    /// Every request that reached the API path, whatever the answer.
    pub fn calls(&self) -> u64 {
        self.shared.calls.load(Ordering::SeqCst)
    }

    /// Calls answered with a 200 JSON GBDFL response (any status).
    pub fn answered(&self) -> u64 {
        self.shared.answered.load(Ordering::SeqCst)
    }

    /// How many distinct (IIN, session) requests reached the API path.
    pub fn distinct_requests(&self) -> u64 {
        self.shared.per_request().0
    }

    /// The most calls any one (IIN, session) request got: 1 means no
    /// request was sent (and paid for) twice.
    pub fn max_calls_per_request(&self) -> u64 {
        self.shared.per_request().1
    }

    /// Calls for one (IIN, session) request.
    pub fn calls_for(&self, iin: &str, session: &str) -> u64 {
        lock(&self.shared.per_request)
            .get(&(iin.to_owned(), session.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Replaces the fault switches.
    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.shared.faults) = faults;
    }

    /// Zeroes the counters, the faults and the PENDING memory.
    pub fn reset(&self) {
        self.shared.reset();
    }

    /// Graceful shutdown; joins the server thread.
    pub fn stop(self) {}
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shared.stopping.send_replace(true);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves in the foreground until the process is killed (`gbdfl
/// mock-server`); `on_ready` gets the bound address first.
pub fn run_blocking(
    addr: &str,
    config: EmulatorConfig,
    on_ready: impl FnOnce(SocketAddr),
) -> io::Result<()> {
    let (listener, shared) = bind(addr, config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        on_ready(listener.local_addr()?);
        serve(listener, router(shared)).await
    })
}

fn bind(addr: &str, config: EmulatorConfig) -> io::Result<(std::net::TcpListener, Arc<Shared>)> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let shared = Arc::new(Shared {
        api_key: config.api_key,
        today: config.today,
        calls: AtomicU64::new(0),
        answered: AtomicU64::new(0),
        faults: Mutex::new(config.faults),
        pending_seen: Mutex::new(HashSet::new()),
        per_request: Mutex::new(HashMap::new()),
        stopping: tokio::sync::watch::channel(false).0,
    });
    Ok((listener, shared))
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(API_PATH, post(api))
        .route(API_PATH.trim_end_matches('/'), post(api))
        .route("/__emulator/stats", get(stats))
        .route("/__emulator/faults", post(set_faults))
        .route("/__emulator/reset", post(reset))
        .with_state(shared)
}

async fn stats(State(s): State<Arc<Shared>>) -> Json<Value> {
    let (distinct, max) = s.per_request();
    Json(json!({
        "calls": s.calls.load(Ordering::SeqCst),
        "answered": s.answered.load(Ordering::SeqCst),
        "distinct_requests": distinct,
        "max_calls_per_request": max,
        "faults": *lock(&s.faults),
    }))
}

/// Takes the body as bytes so `curl -d` works without a Content-Type header.
async fn set_faults(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    match serde_json::from_slice::<Faults>(&body) {
        Ok(faults) => {
            *lock(&s.faults) = faults.clone();
            Json(faults).into_response()
        }
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(detail(&e.to_string())),
        )
            .into_response(),
    }
}

async fn reset(State(s): State<Arc<Shared>>) -> StatusCode {
    s.reset();
    StatusCode::NO_CONTENT
}

async fn api(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    s.calls.fetch_add(1, Ordering::SeqCst);
    let request = parse_request(&body).ok();
    if let Some(r) = &request {
        *lock(&s.per_request)
            .entry((r.iin.clone(), r.session.clone()))
            .or_default() += 1;
    }
    let (fault, latency_ms) = s.take_fault();
    if latency_ms > 0 {
        let mut stopping = s.stopping.subscribe();
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(latency_ms)) => {}
            _ = stopping.wait_for(|stop| *stop) => {}
        }
    }
    match (fault, &request) {
        (Some(Fault::ServiceError), Some(r)) => {
            s.answered.fetch_add(1, Ordering::SeqCst);
            let reply = fixtures::reply(
                FixtureKind::ServiceError,
                &r.iin,
                &r.session,
                s.today(),
                false,
            );
            if let Reply::Gbdfl(v) = reply {
                return Json(v).into_response();
            }
        }
        (Some(Fault::ServiceError), None) | (None, _) => {}
        (Some(fault), _) => return fault_response(fault, &body, s.today()),
    }
    match answer(&s, &body) {
        Reply::Gbdfl(v) => {
            s.answered.fetch_add(1, Ordering::SeqCst);
            Json(v).into_response()
        }
        Reply::Error(code, v) => {
            let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (code, Json(v)).into_response()
        }
        Reply::Html(page) => html(page),
    }
}

struct Request {
    api_key: String,
    iin: String,
    session: String,
}

fn answer(s: &Shared, body: &[u8]) -> Reply {
    let req = match parse_request(body) {
        Ok(req) => req,
        Err(errors) => return Reply::Error(422, json!({ "detail": errors })),
    };
    let key_ok = match &s.api_key {
        Some(key) => *key == req.api_key,
        None => !req.api_key.is_empty(),
    };
    if !key_ok {
        return Reply::Error(404, detail("Organization not found"));
    }
    if req.session == MISSING_SESSION {
        return Reply::Error(404, detail("Face2Face backend session not found"));
    }
    let today = s.today();
    match fixtures::find(&req.iin) {
        Some(fx) => {
            let pending = fx.kind == FixtureKind::PendingThenValid
                && lock(&s.pending_seen).insert((req.iin.clone(), req.session.clone()));
            fixtures::reply(fx.kind, &req.iin, &req.session, today, pending)
        }
        None => Reply::Gbdfl(synthetic_response(&req.iin, &req.session, today)),
    }
}

/// Validates like FastAPI does, but never echoes the input back: the body
/// holds the API key, and error texts end up in logs.
fn parse_request(body: &[u8]) -> Result<Request, Vec<Value>> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        vec![json!({
            "type": "json_invalid",
            "loc": ["body", e.column()],
            "msg": "JSON decode error",
            "ctx": { "error": e.to_string() },
        })]
    })?;
    let Some(obj) = value.as_object() else {
        return Err(vec![json!({
            "type": "model_attributes_type",
            "loc": ["body"],
            "msg": "Input should be a valid dictionary or object to extract fields from",
        })]);
    };
    let mut errors = Vec::new();
    let mut field = |name: &str| match obj.get(name) {
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            errors.push(json!({ "type": "string_type", "loc": ["body", name], "msg": "Input should be a valid string" }));
            String::new()
        }
        None => {
            errors
                .push(json!({ "type": "missing", "loc": ["body", name], "msg": "Field required" }));
            String::new()
        }
    };
    let req = Request {
        api_key: field("api_key"),
        iin: field("iin"),
        session: field("face2face_backend_session_id"),
    };
    if errors.is_empty() {
        Ok(req)
    } else {
        Err(errors)
    }
}

const BAD_GATEWAY_PAGE: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

fn html(page: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
}

fn fault_response(fault: Fault, request: &[u8], today: NaiveDate) -> Response {
    match fault {
        Fault::RateLimit(secs) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, secs.to_string())],
            Json(detail("Too Many Requests")),
        )
            .into_response(),
        Fault::Fail => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(detail("Service Unavailable")),
        )
            .into_response(),
        Fault::Garbage => html(BAD_GATEWAY_PAGE),
        Fault::Drop => dropped_body(today),
        // Answered in `api` with the request's own IIN; a malformed request never gets here.
        Fault::ServiceError => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(detail("Service Unavailable")),
        )
            .into_response(),
        Fault::Hostile(kind) => hostile_response(kind, request, today),
        Fault::HangUp => hang_up(),
    }
}

/// A response whose body fails before its first byte: hyper then closes
/// the connection without writing the status line, so the client sees the
/// request go out and the connection end with no answer.
fn hang_up() -> Response {
    let stream = futures_util::stream::once(async {
        Err::<Bytes, io::Error>(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "emulated hang-up",
        ))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Size of the `huge_body` answer: 100 MiB.
const HUGE_BODY_BYTES: usize = 100 * 1024 * 1024;

/// The hostile answers of [`Hostile`]; the IIN and session of the request
/// are used where the answer is otherwise a real one.
fn hostile_response(kind: Hostile, request: &[u8], today: NaiveDate) -> Response {
    let (iin, session) = match parse_request(request) {
        Ok(r) => (r.iin, r.session),
        Err(_) => (fixtures::iins::VALID.to_owned(), "hostile".to_owned()),
    };
    let json_body = |body: Vec<u8>| {
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
    };
    match kind {
        Hostile::HugeBody => {
            const CHUNK: usize = 64 * 1024;
            let head = Bytes::from_static(
                b"{\"status\":\"VALID\",\"result\":true,\"result_json\":{\"surname\":\"",
            );
            let filler = Bytes::from(vec![b'A'; CHUNK]);
            let tail = Bytes::from_static(b"\"}}");
            let chunks = HUGE_BODY_BYTES / CHUNK;
            let stream = futures_util::stream::iter(
                std::iter::once(head)
                    .chain(std::iter::repeat_n(filler, chunks))
                    .chain(std::iter::once(tail))
                    .map(Ok::<Bytes, io::Error>),
            );
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from_stream(stream))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
        Hostile::ManyDocuments => {
            let mut v = synthetic_response(&iin, &session, today);
            let doc = v["result_json"]["documents"][0].clone();
            let docs: Vec<Value> = (0..10_000)
                .map(|i| {
                    let mut d = doc.clone();
                    d["number"] = json!(format!("N{i:08}"));
                    d
                })
                .collect();
            v["result_json"]["documents"] = Value::Array(docs);
            json_body(v.to_string().into_bytes())
        }
        Hostile::DeepNesting => {
            let depth = 100_000;
            let mut b = b"{\"status\":\"VALID\",\"result\":true,\"result_json\":".to_vec();
            b.extend(std::iter::repeat_n(b'[', depth));
            b.extend(std::iter::repeat_n(b']', depth));
            b.push(b'}');
            json_body(b)
        }
        Hostile::InvalidUtf8 => {
            let v = synthetic_response(&iin, &session, today).to_string();
            // Swap the first string value after "surname" for bytes that are not UTF-8.
            let b = match v.find("\"surname\":\"") {
                Some(at) => {
                    let start = at + "\"surname\":\"".len();
                    let mut b = v.as_bytes()[..start].to_vec();
                    b.extend_from_slice(b"\xff\xfe\xc0\x80");
                    b.extend_from_slice(&v.as_bytes()[start..]);
                    b
                }
                None => b"{\"status\":\"VALID\",\"x\":\"\xff\xfe\"}".to_vec(),
            };
            json_body(b)
        }
    }
}

/// Headers with the full Content-Length, half the body, a pause so both
/// reach the client, then an error that makes hyper close the connection.
fn dropped_body(today: NaiveDate) -> Response {
    let full = synthetic_response(fixtures::iins::VALID, "dropped", today).to_string();
    let half = Bytes::copy_from_slice(&full.as_bytes()[..full.len() / 2]);
    let stream = futures_util::stream::unfold(0u8, move |step| {
        let half = half.clone();
        async move {
            let item: Result<Bytes, io::Error> = match step {
                0 => Ok(half),
                1 => {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "emulated drop",
                    ))
                }
                _ => return None,
            };
            Some((item, step + 1))
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, full.len())
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
