//! The HTTP client of the paid GBDFL service: one POST, one classified answer.
//!
//! Rules this crate keeps, and what holds each:
//! - it knows nothing of SQLite: it has no path to the store or rusqlite
//!   (`tests/cli/layers.rs`);
//! - the API key goes into the request body only, and a redirect is not
//!   followed, since it would carry the body elsewhere (the test
//!   `the_key_goes_in_the_body_only_and_a_redirect_is_not_followed`);
//! - the key is never in a message, on disk or in `Debug` output
//!   (`api_key_is_never_debug_printed`, `tests/cli/privacy.rs`);
//! - plain http is refused except to loopback (`plain_http_only_to_loopback`);
//! - a body larger than `max_response_bytes` is not read past it
//!   (`tests/cli/hostile.rs`);
//! - every [`Answer`] that came over HTTP carries the body as received, so
//!   the caller can keep it exactly (the compiler: a field of each variant).

#![deny(missing_docs)]

pub mod network;

use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::blocking;
use zeroize::Zeroizing;

use crate::network::{NetworkConfig, Problem, SetupError};
use gbdfl_core::api::{self, Response};
use gbdfl_core::clock::{Clock, SystemClock};
use gbdfl_core::iin::Iin;

/// The organisation's API key. Never printed.
pub struct ApiKey(Zeroizing<String>);

impl ApiKey {
    /// Holds `key`, without the whitespace around it.
    pub fn new(key: String) -> ApiKey {
        ApiKey(Zeroizing::new(key.trim().to_owned()))
    }

    /// Whether no key was given (an empty file, a blank variable).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// Problems with the client's own settings.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `base_url` does not parse as a URL (the URL, the parser's reason).
    #[error("base URL {0:?} is not a valid URL: {1}")]
    BadUrl(String, String),
    #[error(
        "base URL {0} uses plain http to a host that is not this machine; the API key and personal data would cross the network unencrypted. Use https, or http only to 127.0.0.1/localhost"
    )]
    /// `base_url` is plain http to another machine.
    PlainHttp(String),
    /// `base_url` is neither https nor http.
    #[error("base URL {0} must use https (or http to loopback)")]
    Scheme(String),
    /// The HTTP client could not be built (no trust roots, a proxy it rejects).
    #[error("could not set up the HTTP client: {0}")]
    Build(String),
    /// The proxy or trust-root settings are wrong.
    #[error(transparent)]
    Network(#[from] SetupError),
}

/// Settings of the client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The service's endpoint (`base_url`): https, or http to loopback.
    pub base_url: String,
    /// The longest wait for a connection (`connect_timeout`).
    pub connect_timeout: Duration,
    /// The longest wait for a whole call once connected (`timeout`).
    pub timeout: Duration,
    /// The largest answer body read (`max_response_bytes`).
    pub max_body_bytes: u64,
    /// The proxy and the trust roots.
    pub network: NetworkConfig,
}

/// Whether a request that got no readable answer reached the service: what
/// decides whether it may have been billed, and so whether it may be sent
/// again without an operator's word. Decided here, from the transport's own
/// error kinds and the HTTP status, never from message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Provably never reached the service: the connection could not be made
    /// (refused, DNS failure, TLS failure before the request was written,
    /// connect timeout), or the service itself refused to take it now (HTTP
    /// 429 or 503 with its own JSON error body). Nothing was billed.
    NotSent,
    /// The request was written, or may have been: a timeout after sending,
    /// a connection dropped after sending, any other HTTP 5xx (a gateway's
    /// page, an error of the service mid-request), an unreadable HTTP 2xx.
    /// The service may have answered and billed it.
    MaybeBilled,
}

/// The longest Retry-After honoured: a longer (or absurd) value is cut to
/// this. A request's whole window is 3 hours, so waiting longer is never
/// useful; the sync's own backoff applies on top.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How one call ended.
#[derive(Debug)]
pub enum Answer {
    /// HTTP 2xx. `parsed` is `Err` with a reason when the body is not a GBDFL
    /// answer (then the call may have been billed: [`Delivery::MaybeBilled`]).
    Answered {
        /// The HTTP status.
        http_status: u16,
        /// The body as received (cut at `max_body_bytes`).
        body: Vec<u8>,
        /// The GBDFL answer, or why the body is not one.
        parsed: Result<Box<Response>, String>,
    },
    /// HTTP 4xx other than 429: the service refused the request.
    Refused {
        /// The HTTP status.
        http_status: u16,
        /// The body as received.
        body: Vec<u8>,
        /// The service's reason, fit to show.
        message: String,
    },
    /// No usable answer: connect error, timeout, dropped connection, 5xx,
    /// 429. `delivery` says whether the request may have reached the service.
    Unavailable {
        /// The HTTP status, when an HTTP answer came.
        http_status: Option<u16>,
        /// The body as received (empty when no answer came).
        body: Vec<u8>,
        /// What went wrong, fit to show.
        message: String,
        /// At most [`MAX_RETRY_AFTER`].
        retry_after: Option<Duration>,
        /// Whether the request may have reached the service.
        delivery: Delivery,
    },
    /// The network between here and the service is set up wrongly (the
    /// certificate is not trusted, the proxy refuses): found before the
    /// request was written, so nothing was sent, and every call fails the
    /// same way until a setting changes. `message` says which.
    Misconfigured {
        /// Which set-up problem.
        problem: Problem,
        /// What is wrong and which setting fixes it.
        message: String,
    },
}

/// Checks a base URL: https anywhere, http only to loopback.
pub fn validate_base_url(s: &str) -> Result<Url, ClientError> {
    let url = Url::parse(s).map_err(|e| ClientError::BadUrl(s.to_owned(), e.to_string()))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
                Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
                None => false,
            };
            if loopback {
                Ok(url)
            } else {
                Err(ClientError::PlainHttp(s.to_owned()))
            }
        }
        _ => Err(ClientError::Scheme(s.to_owned())),
    }
}

/// The GBDFL client.
pub struct Client {
    http: blocking::Client,
    url: Url,
    api_key: ApiKey,
    max_body_bytes: u64,
    /// Connect timeout plus request timeout: no call lasts longer.
    longest_call: Duration,
    /// The proxy calls go through, as it may be shown (for messages).
    proxy_shown: Option<String>,
    /// The proxy, asked again after a refused CONNECT; and how long to wait.
    proxy: Option<crate::network::ChosenProxy>,
    connect_timeout: Duration,
    /// Turns a Retry-After date into a wait.
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// This client, reading the time from `clock` (the binary's one clock).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Client {
        self.clock = clock;
        self
    }

    /// A client for `config`'s service, calling with `api_key`.
    pub fn new(config: &ClientConfig, api_key: ApiKey) -> Result<Client, ClientError> {
        let url = validate_base_url(&config.base_url)?;
        let build = |e: reqwest::Error| {
            let hint = crate::network::setup_hint(&e)
                .map(|h| format!(": {h}"))
                .unwrap_or_default();
            let mut cause: &dyn std::error::Error = &e;
            while let Some(next) = cause.source() {
                cause = next;
            }
            ClientError::Build(format!("{cause}{hint}"))
        };
        let mut builder = blocking::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("gbdfl/", env!("CARGO_PKG_VERSION")));
        // The proxy is decided once, for this URL, by the same rules
        // `doctor` uses; reqwest reads no proxy variable itself.
        let proxy = config.network.proxy_for(&url)?;
        let proxy_shown = proxy.as_ref().map(|p| p.shown.clone());
        builder = match &proxy {
            Some(p) => {
                let mut rp = reqwest::Proxy::all(p.uri.to_string()).map_err(build)?;
                if let Some(auth) = &p.auth {
                    rp = rp.custom_http_auth(auth.clone());
                }
                builder.proxy(rp)
            }
            None => builder.no_proxy(),
        };
        let roots = config
            .network
            .extra_roots()?
            .iter()
            .map(|c| reqwest::Certificate::from_der(c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(build)?;
        if !roots.is_empty() {
            builder = builder.tls_certs_merge(roots);
        }
        let http = builder.build().map_err(build)?;
        Ok(Client {
            http,
            url,
            api_key,
            max_body_bytes: config.max_body_bytes,
            longest_call: config.connect_timeout.saturating_add(config.timeout),
            proxy_shown,
            proxy,
            connect_timeout: config.connect_timeout,
            clock: SystemClock::shared(),
        })
    }

    /// Until when a queue item claimed at `now` for one call of this client
    /// stays claimed: the longest a call can last, and a margin. A claim
    /// that runs out while still set means its process died mid-call.
    pub fn claim_until(&self, now: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
        // Checked: it is also computed after a call, before its answer is
        // recorded, where nothing may panic.
        // A century at most: claim times are compared as RFC 3339 text,
        // which sorts right only for four-digit years.
        let century = chrono::TimeDelta::days(36_500);
        let lease =
            chrono::TimeDelta::from_std(self.longest_call.saturating_add(Duration::from_secs(5)))
                .map_or(century, |d| d.min(century));
        now.checked_add_signed(lease).unwrap_or(now)
    }

    /// The service's endpoint, for messages and the audit trail.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// The largest answer body read (`max_response_bytes`).
    pub fn max_body_bytes(&self) -> u64 {
        self.max_body_bytes
    }

    /// Makes the paid call for `iin` and `session_id`.
    pub fn lookup(&self, iin: &Iin, session_id: &str) -> Answer {
        match self.send(iin, session_id) {
            Ok(resp) => self.receive(resp),
            Err(e) => self.not_answered(&e),
        }
    }

    /// Writes the request. The API key goes into the body, nowhere else.
    fn send(&self, iin: &Iin, session_id: &str) -> reqwest::Result<blocking::Response> {
        let body = Zeroizing::new(
            serde_json::json!({
                "api_key": self.api_key.0.as_str(),
                "iin": iin.as_str(),
                "face2face_backend_session_id": session_id,
            })
            .to_string(),
        );
        self.http
            .post(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.as_bytes().to_vec())
            .send()
    }

    /// A call that got no HTTP answer: a set-up problem, or the line.
    fn not_answered(&self, e: &reqwest::Error) -> Answer {
        if let Some(problem) = crate::network::classify(e).and_then(|p| self.confirm(p)) {
            let message = problem.explain(
                self.url.host_str().unwrap_or_default(),
                self.proxy_shown.as_deref(),
            );
            return Answer::Misconfigured { problem, message };
        }
        Answer::Unavailable {
            http_status: None,
            body: Vec::new(),
            message: transport_message(e),
            retry_after: None,
            delivery: transport_delivery(e),
        }
    }

    /// Reads the answer's body, at most `max_body_bytes` of it.
    fn receive(&self, resp: blocking::Response) -> Answer {
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, self.clock.now()));
        let mut body = Vec::new();
        let read = resp
            .take(self.max_body_bytes.saturating_add(1))
            .read_to_end(&mut body);
        if let Err(e) = read {
            // The status line came back: the request was read by someone.
            return Answer::Unavailable {
                http_status: Some(status.as_u16()),
                body,
                message: format!(
                    "the connection broke while reading the answer, after the request was sent ({e})"
                ),
                retry_after,
                delivery: Delivery::MaybeBilled,
            };
        }
        let too_large = body.len() as u64 > self.max_body_bytes;
        if too_large {
            body.truncate(usize::try_from(self.max_body_bytes).unwrap_or(usize::MAX));
        }
        self.outcome(status, body, too_large, retry_after)
    }

    /// What an HTTP answer read whole (or cut at the limit) means.
    fn outcome(
        &self,
        status: reqwest::StatusCode,
        body: Vec<u8>,
        too_large: bool,
        retry_after: Option<Duration>,
    ) -> Answer {
        let code = status.as_u16();
        if status.is_success() {
            let parsed = if too_large {
                Err(format!(
                    "the answer is larger than the limit of {} bytes (max_response_bytes); only the first part was kept",
                    self.max_body_bytes
                ))
            } else {
                api::parse_response(&body)
                    .map(Box::new)
                    .map_err(|e| format!("the answer is not GBDFL JSON ({e})"))
            };
            Answer::Answered {
                http_status: code,
                body,
                parsed,
            }
        } else if code == 429 || status.is_server_error() {
            let delivery = if (code == 429 || code == 503) && api::is_json_error(&body) {
                Delivery::NotSent
            } else {
                Delivery::MaybeBilled
            };
            let message = format!("HTTP {code}: {}", api::error_message(&body));
            Answer::Unavailable {
                http_status: Some(code),
                body,
                message,
                retry_after,
                delivery,
            }
        } else {
            let message = api::error_message(&body);
            Answer::Refused {
                http_status: code,
                body,
                message,
            }
        }
    }
}

/// A transport error's delivery: a failure while connecting (TCP, DNS, TLS
/// handshake, connect timeout) comes before a byte of the request is
/// written; anything later may come after the service read it.
fn transport_delivery(e: &reqwest::Error) -> Delivery {
    if e.is_connect() {
        Delivery::NotSent
    } else {
        Delivery::MaybeBilled
    }
}

impl Client {
    /// A refused CONNECT is a set-up problem only when the proxy refuses
    /// for good; asked again, a proxy that cannot reach the service now
    /// (5xx) makes it a dropped line.
    fn confirm(&self, problem: Problem) -> Option<Problem> {
        let Problem::ProxyRefused { status: None } = problem else {
            return Some(problem);
        };
        let proxy = self.proxy.as_ref()?;
        let host = self.url.host_str()?;
        let port = self.url.port_or_known_default()?;
        let status =
            crate::network::doctor::connect_status(proxy, host, port, self.connect_timeout)?;
        match status {
            407 => Some(Problem::ProxyAuth),
            s if crate::network::refuses_for_good(s) => {
                Some(Problem::ProxyRefused { status: Some(s) })
            }
            _ => None,
        }
    }
}

fn transport_message(e: &reqwest::Error) -> String {
    let what = if e.is_connect() {
        api::NOT_CONNECTED
    } else if e.is_timeout() {
        "the service did not answer in time"
    } else {
        "the request failed"
    };
    // The reqwest error names the URL, never the body; walk its sources for the cause.
    let mut cause = String::new();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        cause = s.to_string();
        src = s.source();
    }
    if cause.is_empty() {
        what.to_owned()
    } else {
        format!("{what} ({cause})")
    }
}

/// Retry-After (RFC 9110): delay-seconds, or an HTTP date (a date in the
/// past means now), cut to [`MAX_RETRY_AFTER`]. A number too large for any
/// type is the maximum too: the server asked for a long wait.
fn parse_retry_after(v: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = v.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        let secs = v.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let wait = at
        .with_timezone(&chrono::Utc)
        .signed_duration_since(now)
        .to_std()
        .unwrap_or(Duration::ZERO);
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> chrono::DateTime<chrono::Utc> {
        "2030-06-01T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn retry_after_as_seconds_or_an_http_date() {
        assert_eq!(
            parse_retry_after(" 7 ", now()),
            Some(Duration::from_secs(7))
        );
        let later = (now() + chrono::TimeDelta::seconds(90)).to_rfc2822();
        assert_eq!(
            parse_retry_after(&later, now()),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now()),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now()), None);
    }

    #[test]
    fn an_absurd_retry_after_is_cut_to_the_maximum() {
        for v in [
            "9000000000000",
            "18446744073709551615",
            "99999999999999999999999999",
            "Fri, 31 Dec 9999 23:59:59 GMT",
        ] {
            assert_eq!(parse_retry_after(v, now()), Some(MAX_RETRY_AFTER), "{v}");
        }
        assert_eq!(parse_retry_after("-5", now()), None);
    }

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(validate_base_url("https://kyc.biometric.kz/api/v1/backend/gbdfl/").is_ok());
        assert!(validate_base_url("http://127.0.0.1:8080/x").is_ok());
        assert!(validate_base_url("http://localhost:8080/x").is_ok());
        assert!(validate_base_url("http://[::1]:8080/x").is_ok());
        assert!(matches!(
            validate_base_url("http://kyc.biometric.kz/"),
            Err(ClientError::PlainHttp(_))
        ));
        assert!(matches!(
            validate_base_url("http://10.0.0.1/"),
            Err(ClientError::PlainHttp(_))
        ));
        assert!(matches!(
            validate_base_url("ftp://x/"),
            Err(ClientError::Scheme(_))
        ));
        assert!(matches!(
            validate_base_url("not a url"),
            Err(ClientError::BadUrl(..))
        ));
    }

    /// Answers one request on loopback with `answer`, then stops
    /// listening; the handle gives the request as it arrived.
    fn serve_once(answer: &'static str) -> (String, std::thread::JoinHandle<String>) {
        use std::io::Write as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/api/", listener.local_addr().unwrap());
        let served = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = conn.read(&mut buf).unwrap();
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).into_owned();
                let whole = text.split_once("\r\n\r\n").is_some_and(|(head, body)| {
                    let length = head.lines().find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().unwrap())
                    });
                    body.len() >= length.unwrap_or(0)
                });
                if whole || n == 0 {
                    break;
                }
            }
            conn.write_all(answer.as_bytes()).unwrap();
            String::from_utf8(request).unwrap()
        });
        (url, served)
    }

    #[test]
    fn the_key_goes_in_the_body_only_and_a_redirect_is_not_followed() {
        // A 307 keeps the method and the body: followed, it would send the
        // key to wherever Location points.
        let (base_url, served) = serve_once(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: /elsewhere\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        let config = ClientConfig {
            base_url,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
            max_body_bytes: 1024,
            network: NetworkConfig::default(),
        };
        let client = Client::new(&config, ApiKey::new("super-secret-key".into())).unwrap();
        let iin = Iin::parse("950215300016").unwrap();
        let answer = client.lookup(&iin, "session-1");
        let request = served.join().unwrap();
        let (head, body) = request.split_once("\r\n\r\n").unwrap();
        assert!(!head.contains("super-secret-key"), "{head}");
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["api_key"], "super-secret-key");
        assert!(
            matches!(
                answer,
                Answer::Refused {
                    http_status: 307,
                    ..
                }
            ),
            "{answer:?}"
        );
    }

    #[test]
    fn api_key_is_never_debug_printed() {
        let k = ApiKey::new("super-secret-key".into());
        assert_eq!(format!("{k:?}"), "ApiKey(***)");
    }
}
