//! `gbdfl doctor`'s checks: the way to the service step by step (which
//! proxy, name resolution, TCP connect, the proxy's CONNECT, the TLS
//! handshake), each timed, with the certificate chain the service (or
//! whatever answers in its place) presents.
//!
//! Rule this module keeps: no HTTP request is ever sent to the service;
//! the connection is closed after the TLS handshake. The proxy and the
//! trust roots are decided by [`NetworkConfig`], as for a real call.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use url::Url;

use super::{ChosenProxy, NetworkConfig, Problem};

/// One step's result.
#[derive(Debug, Clone)]
pub struct Step {
    /// What was checked: `proxy`, `trust`, `resolve`, `connect`, `CONNECT`, `TLS`.
    pub name: &'static str,
    /// Whether it succeeded.
    pub ok: bool,
    /// How long it took; `None` for a step that is a decision, not a wait.
    pub took: Option<Duration>,
    /// What was found, or why it failed.
    pub detail: String,
}

/// Everything `doctor` found.
#[derive(Debug, Default)]
pub struct Report {
    /// The steps run, in order; the first to fail is the last.
    pub steps: Vec<Step>,
    /// The certificates presented, leaf first: (subject, issuer, valid until).
    pub chain: Vec<(String, String, String)>,
    /// A set-up problem found, with what to do.
    pub problem: Option<(Problem, String)>,
}

impl Report {
    /// Whether every step succeeded.
    pub fn ok(&self) -> bool {
        self.steps.iter().all(|s| s.ok)
    }

    /// The report as text, one line a step.
    pub fn render(&self) -> String {
        let mut t = String::new();
        for s in &self.steps {
            let took = s
                .took
                .map(|d| format!("{:>7.1} ms", d.as_secs_f64() * 1000.0))
                .unwrap_or_else(|| " ".repeat(10));
            let _ = writeln!(
                t,
                "{:<4} {:<9} {took}  {}",
                if s.ok { "ok" } else { "FAIL" },
                s.name,
                s.detail
            );
        }
        if !self.chain.is_empty() {
            t.push_str("certificate chain presented (leaf first):\n");
            for (i, (subject, issuer, until)) in self.chain.iter().enumerate() {
                let _ = writeln!(
                    t,
                    "  {i}: subject {subject}\n     issuer  {issuer}\n     valid until {until}"
                );
            }
        }
        t
    }
}

/// Records the chain the server presents, then lets `inner` decide.
#[derive(Debug)]
struct Recording {
    inner: rustls_platform_verifier::Verifier,
    seen: Mutex<Vec<CertificateDer<'static>>>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut seen) = self.seen.lock() {
            seen.clear();
            seen.push(end_entity.clone().into_owned());
            seen.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn describe_cert(der: &CertificateDer<'_>) -> (String, String, String) {
    match x509_parser::parse_x509_certificate(der.as_ref()) {
        Ok((_, c)) => (
            super::printable(&c.subject().to_string()),
            super::printable(&c.issuer().to_string()),
            c.validity()
                .not_after
                .to_rfc2822()
                .unwrap_or_else(|_| "(unreadable)".into()),
        ),
        Err(_) => (
            "(not a readable X.509 certificate)".into(),
            String::new(),
            String::new(),
        ),
    }
}

/// Runs the checks against `base_url`, each step given `timeout`.
pub fn run(net: &NetworkConfig, base_url: &Url, timeout: Duration) -> Report {
    let mut report = Report::default();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            report.fail(
                "start",
                None,
                format!("could not start the network runtime: {e}"),
            );
            return report;
        }
    };
    let target = Target::of(base_url, timeout);
    // A step that fails is in the report already; the checks stop there.
    let _stopped = rt.block_on(checks(net, &target, &mut report));
    report
}

/// A step failed: it is in the report, and the steps after it are not run.
struct Stopped;

impl Report {
    fn pass(&mut self, name: &'static str, took: Option<Duration>, detail: String) {
        self.steps.push(Step {
            name,
            ok: true,
            took,
            detail,
        });
    }

    fn fail(&mut self, name: &'static str, took: Option<Duration>, detail: String) -> Stopped {
        self.steps.push(Step {
            name,
            ok: false,
            took,
            detail,
        });
        Stopped
    }
}

/// The service the checks go to, and how long each step may wait.
struct Target<'a> {
    url: &'a Url,
    /// The host as the URL writes it (an IPv6 address in brackets).
    host: String,
    /// The host without brackets: the name resolved and the TLS name.
    host_bare: String,
    port: u16,
    timeout: Duration,
}

impl Target<'_> {
    fn of(url: &Url, timeout: Duration) -> Target<'_> {
        let host = url.host_str().unwrap_or_default().to_owned();
        let host_bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Target {
            url,
            host,
            host_bare,
            port: url.port_or_known_default().unwrap_or(443),
            timeout,
        }
    }

    /// "no answer in 5s": how a step that timed out ends its message.
    fn waited(&self) -> humantime::FormattedDuration {
        humantime::format_duration(self.timeout)
    }
}

/// The steps in order, each recording itself in `report`.
async fn checks(net: &NetworkConfig, to: &Target<'_>, report: &mut Report) -> Result<(), Stopped> {
    let proxy = check_proxy(net, to, report)?;
    check_trust(net, report)?;
    let addrs = resolve(proxy.as_ref(), to, report).await?;
    let tcp = connect(&addrs, proxy.is_some(), to, report).await?;
    let io: Box<dyn Io> = match &proxy {
        None => Box::new(tcp),
        Some(p) => open_tunnel(tcp, p, to, report).await?,
    };
    if to.url.scheme() != "https" {
        report.pass("TLS", None, "not used: plain http to this machine".into());
        return Ok(());
    }
    handshake(net, io, proxy.as_ref(), to, report).await
}

/// Step "proxy": which proxy a call goes through, and where it was set.
fn check_proxy(
    net: &NetworkConfig,
    to: &Target<'_>,
    report: &mut Report,
) -> Result<Option<ChosenProxy>, Stopped> {
    let proxy = net
        .proxy_for(to.url)
        .map_err(|e| report.fail("proxy", None, e.to_string()))?;
    let detail = match &proxy {
        Some(p) => format!("{} (from {})", p.shown, p.source),
        None => why_direct(net, to),
    };
    report.pass("proxy", None, detail);
    Ok(proxy)
}

/// Why a call goes to the service with no proxy.
fn why_direct(net: &NetworkConfig, to: &Target<'_>) -> String {
    let env = &net.env;
    let proxy_set = net.proxy.is_some()
        || match to.url.scheme() {
            "https" => env.https.is_some() || env.all.is_some(),
            _ => env.http.is_some() || env.all.is_some(),
        };
    if super::is_loopback(to.url) {
        "none: the service is on this machine (loopback is never proxied)".into()
    } else if proxy_set {
        format!(
            "none: {} is in {}",
            to.host_bare,
            env.no.as_ref().map(|(n, _)| *n).unwrap_or("NO_PROXY")
        )
    } else {
        "none: direct connection (no proxy setting applies)".into()
    }
}

/// Step "trust": the trust roots, with those `ca_file` adds.
fn check_trust(net: &NetworkConfig, report: &mut Report) -> Result<(), Stopped> {
    let roots = net
        .extra_roots()
        .map_err(|e| report.fail("trust", None, e.to_string()))?;
    let detail = if roots.is_empty() {
        "the system's trust store (no ca_file)".into()
    } else {
        format!(
            "the system's trust store and ca_file: {}",
            roots
                .iter()
                .map(|c| describe_cert(c).0)
                .collect::<Vec<_>>()
                .join("; ")
        )
    };
    report.pass("trust", None, detail);
    Ok(())
}

/// Step "resolve": the addresses of the first hop, the proxy or the service.
async fn resolve(
    proxy: Option<&ChosenProxy>,
    to: &Target<'_>,
    report: &mut Report,
) -> Result<Vec<SocketAddr>, Stopped> {
    let (dial_host, dial_port) = match proxy {
        Some(p) => (
            p.uri.host().unwrap_or_default(),
            p.uri
                .port_u16()
                .unwrap_or(if p.uri.scheme_str() == Some("https") {
                    443
                } else {
                    80
                }),
        ),
        None => (to.host_bare.as_str(), to.port),
    };
    let dial_host = dial_host.trim_start_matches('[').trim_end_matches(']');
    let started = Instant::now();
    let found =
        tokio::time::timeout(to.timeout, tokio::net::lookup_host((dial_host, dial_port))).await;
    let addrs: Vec<SocketAddr> = match found {
        Ok(Ok(a)) => a.collect(),
        Ok(Err(e)) => {
            let detail = format!("{dial_host}: {e}");
            return Err(report.fail("resolve", Some(started.elapsed()), detail));
        }
        Err(_) => {
            let detail = format!("{dial_host}: no answer in {}", to.waited());
            return Err(report.fail("resolve", Some(started.elapsed()), detail));
        }
    };
    let shown = addrs
        .iter()
        .map(|a| a.ip().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    report.pass(
        "resolve",
        Some(started.elapsed()),
        format!("{dial_host} -> {shown}"),
    );
    Ok(addrs)
}

/// Step "connect": TCP to the first of `addrs` that answers.
async fn connect(
    addrs: &[SocketAddr],
    via_proxy: bool,
    to: &Target<'_>,
    report: &mut Report,
) -> Result<tokio::net::TcpStream, Stopped> {
    let started = Instant::now();
    let mut last_err = String::from("no address");
    for a in addrs {
        match tokio::time::timeout(to.timeout, tokio::net::TcpStream::connect(a)).await {
            Ok(Ok(tcp)) => {
                let took = Some(started.elapsed());
                let whose = if via_proxy { " (the proxy)" } else { "" };
                report.pass("connect", took, format!("TCP to {a}{whose}"));
                return Ok(tcp);
            }
            Ok(Err(e)) => last_err = format!("{a}: {e}"),
            Err(_) => last_err = format!("{a}: no answer in {}", to.waited()),
        }
    }
    let what = if via_proxy {
        "the proxy"
    } else {
        "the service"
    };
    let detail = format!("could not connect to {what} ({last_err})");
    Err(report.fail("connect", Some(started.elapsed()), detail))
}

/// Step "CONNECT": the proxy on `tcp` opens a tunnel to the service.
async fn open_tunnel(
    tcp: tokio::net::TcpStream,
    proxy: &ChosenProxy,
    to: &Target<'_>,
    report: &mut Report,
) -> Result<Box<dyn Io>, Stopped> {
    if proxy.uri.scheme_str() == Some("https") {
        let detail = "doctor tests http:// proxies only; this one is reached over TLS";
        return Err(report.fail("CONNECT", None, detail.into()));
    }
    let started = Instant::now();
    let (host, port) = (to.host.as_str(), to.port);
    match tokio::time::timeout(to.timeout, tunnel(tcp, proxy, host, port)).await {
        Ok(Ok(io)) => {
            let detail = format!("the proxy opened a tunnel to {host}:{port}");
            report.pass("CONNECT", Some(started.elapsed()), detail);
            Ok(io)
        }
        Ok(Err(TunnelFail::Status(code))) => {
            Err(tunnel_refused(code, started.elapsed(), proxy, to, report))
        }
        Ok(Err(TunnelFail::Other(e))) => Err(report.fail("CONNECT", Some(started.elapsed()), e)),
        Err(_) => {
            let detail = format!("the proxy did not answer in {}", to.waited());
            Err(report.fail("CONNECT", Some(started.elapsed()), detail))
        }
    }
}

/// The proxy answered CONNECT with `code`: a set-up problem when it refuses
/// for good (with advice), else the line beyond it is down.
fn tunnel_refused(
    code: u16,
    took: Duration,
    proxy: &ChosenProxy,
    to: &Target<'_>,
    report: &mut Report,
) -> Stopped {
    let problem = if code == 407 {
        Some(Problem::ProxyAuth)
    } else if super::refuses_for_good(code) {
        Some(Problem::ProxyRefused { status: Some(code) })
    } else {
        None
    };
    let why = if problem.is_none() && code >= 500 {
        " (it could not reach the service: the line or the service is down)"
    } else {
        ""
    };
    let stopped = report.fail(
        "CONNECT",
        Some(took),
        format!("the proxy answered HTTP {code}{why}"),
    );
    report.problem = problem.map(|p| {
        let advice = p.explain(&to.host, Some(&proxy.shown));
        (p, advice)
    });
    stopped
}

/// Step "TLS": the handshake with the service over `io`; the chain
/// presented is kept in the report, trusted or not.
async fn handshake(
    net: &NetworkConfig,
    io: Box<dyn Io>,
    proxy: Option<&ChosenProxy>,
    to: &Target<'_>,
    report: &mut Report,
) -> Result<(), Stopped> {
    let (connector, verifier, name) =
        tls_setup(net, &to.host_bare).map_err(|detail| report.fail("TLS", None, detail))?;
    let started = Instant::now();
    let done = tokio::time::timeout(to.timeout, connector.connect(name, io)).await;
    let took = Some(started.elapsed());
    if let Ok(seen) = verifier.seen.lock() {
        report.chain = seen.iter().map(describe_cert).collect();
    }
    let tls = match done {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            let detail = super::printable(&format!("handshake failed: {e}"));
            let stopped = report.fail("TLS", took, detail);
            if let Some(p) = super::classify(&e) {
                let advice = p.explain(&to.host_bare, proxy.map(|p| p.shown.as_str()));
                report.problem = Some((p, advice));
            }
            return Err(stopped);
        }
        Err(_) => {
            let detail = format!("no handshake in {}", to.waited());
            return Err(report.fail("TLS", took, detail));
        }
    };
    let (_, conn) = tls.get_ref();
    let version = conn
        .protocol_version()
        .map(|v| format!("{v:?}"))
        .unwrap_or_else(|| "TLS".into())
        .replace('_', ".");
    let detail = format!("{version} with {}, certificate trusted", to.host_bare);
    report.pass("TLS", took, detail);
    Ok(())
}

/// What the handshake needs: the connector, its verifier (which records
/// the chain) and the name the certificate must carry. `Err` is the
/// "TLS" step's message.
fn tls_setup(
    net: &NetworkConfig,
    host_bare: &str,
) -> Result<
    (
        tokio_rustls::TlsConnector,
        Arc<Recording>,
        ServerName<'static>,
    ),
    String,
> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let inner = net
        .verifier(provider.clone())
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    let verifier = Arc::new(Recording {
        inner,
        seen: Mutex::new(Vec::new()),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let name =
        ServerName::try_from(host_bare.to_owned()).map_err(|e| format!("{host_bare}: {e}"))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    Ok((connector, verifier, name))
}

/// The proxy's answer to CONNECT `host:port` (200 when it opens the
/// tunnel), or `None` when it cannot be reached or does not answer in
/// `timeout`. Asked again after a failed call, to tell a refusal for good
/// from a proxy that cannot reach the service now; nothing is sent through.
pub fn connect_status(
    proxy: &ChosenProxy,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Option<u16> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let dial_host = proxy
        .uri
        .host()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let dial_port = proxy.uri.port_u16().unwrap_or(80);
    if proxy.uri.scheme_str() == Some("https") {
        return None;
    }
    rt.block_on(async {
        tokio::time::timeout(timeout, async {
            let tcp = tokio::net::TcpStream::connect((dial_host.as_str(), dial_port))
                .await
                .ok()?;
            match tunnel(tcp, proxy, host, port).await {
                Ok(_) => Some(200),
                Err(TunnelFail::Status(code)) => Some(code),
                Err(TunnelFail::Other(_)) => None,
            }
        })
        .await
        .ok()
        .flatten()
    })
}

/// A connection TLS can run over.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

enum TunnelFail {
    Status(u16),
    Other(String),
}

/// Asks the proxy on `tcp` for a tunnel to `host:port` (HTTP CONNECT, by hyper).
async fn tunnel(
    tcp: tokio::net::TcpStream,
    proxy: &ChosenProxy,
    host: &str,
    port: u16,
) -> Result<Box<dyn Io>, TunnelFail> {
    let other = |e: &dyn std::fmt::Display| TunnelFail::Other(format!("CONNECT failed: {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, String>(TokioIo::new(tcp))
        .await
        .map_err(|e| other(&e))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let authority = format!("{host}:{port}");
    let mut req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(authority.as_str())
        .header(http::header::HOST, authority.as_str());
    if let Some(auth) = &proxy.auth {
        req = req.header(http::header::PROXY_AUTHORIZATION, auth.clone());
    }
    let req = req.body(String::new()).map_err(|e| other(&e))?;
    let res = sender.send_request(req).await.map_err(|e| other(&e))?;
    if !res.status().is_success() {
        return Err(TunnelFail::Status(res.status().as_u16()));
    }
    let upgraded = hyper::upgrade::on(res).await.map_err(|e| other(&e))?;
    Ok(Box::new(TokioIo::new(upgraded)))
}
