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
    pub name: &'static str,
    pub ok: bool,
    /// How long it took; `None` for a step that is a decision, not a wait.
    pub took: Option<Duration>,
    pub detail: String,
}

/// Everything `doctor` found.
#[derive(Debug, Default)]
pub struct Report {
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
            report.steps.push(Step {
                name: "start",
                ok: false,
                took: None,
                detail: format!("could not start the network runtime: {e}"),
            });
            return report;
        }
    };
    rt.block_on(checks(net, base_url, timeout, &mut report));
    report
}

async fn checks(net: &NetworkConfig, base_url: &Url, timeout: Duration, report: &mut Report) {
    let host = base_url.host_str().unwrap_or_default().to_owned();
    let host_bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = base_url.port_or_known_default().unwrap_or(443);
    let fail = |report: &mut Report, name, took, detail: String| {
        report.steps.push(Step {
            name,
            ok: false,
            took,
            detail,
        });
    };
    let proxy = match net.proxy_for(base_url) {
        Ok(p) => p,
        Err(e) => {
            fail(report, "proxy", None, e.to_string());
            return;
        }
    };
    report.steps.push(Step {
        name: "proxy",
        ok: true,
        took: None,
        detail: match &proxy {
            Some(p) => format!("{} (from {})", p.shown, p.source),
            None if super::is_loopback(base_url) => {
                "none: the service is on this machine (loopback is never proxied)".into()
            }
            None if net.proxy.is_some()
                || match base_url.scheme() {
                    "https" => net.env.https.is_some() || net.env.all.is_some(),
                    _ => net.env.http.is_some() || net.env.all.is_some(),
                } =>
            {
                format!(
                    "none: {host_bare} is in {}",
                    net.env.no.as_ref().map(|(n, _)| *n).unwrap_or("NO_PROXY")
                )
            }
            None => "none: direct connection (no proxy setting applies)".into(),
        },
    });
    match net.extra_roots() {
        Ok(roots) if roots.is_empty() => report.steps.push(Step {
            name: "trust",
            ok: true,
            took: None,
            detail: "the system's trust store (no ca_file)".into(),
        }),
        Ok(roots) => report.steps.push(Step {
            name: "trust",
            ok: true,
            took: None,
            detail: format!(
                "the system's trust store and ca_file: {}",
                roots
                    .iter()
                    .map(|c| describe_cert(c).0)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        }),
        Err(e) => {
            fail(report, "trust", None, e.to_string());
            return;
        }
    }
    // Where the TCP connection goes: the proxy, or the service.
    let (dial_host, dial_port) = match &proxy {
        Some(p) => (
            p.uri.host().unwrap_or_default().to_owned(),
            p.uri
                .port_u16()
                .unwrap_or(if p.uri.scheme_str() == Some("https") {
                    443
                } else {
                    80
                }),
        ),
        None => (host_bare.clone(), port),
    };
    let dial_host = dial_host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let started = Instant::now();
    let addrs: Vec<SocketAddr> = match tokio::time::timeout(
        timeout,
        tokio::net::lookup_host((dial_host.as_str(), dial_port)),
    )
    .await
    {
        Ok(Ok(a)) => a.collect(),
        Ok(Err(e)) => {
            fail(
                report,
                "resolve",
                Some(started.elapsed()),
                format!("{dial_host}: {e}"),
            );
            return;
        }
        Err(_) => {
            fail(
                report,
                "resolve",
                Some(started.elapsed()),
                format!(
                    "{dial_host}: no answer in {}",
                    humantime::format_duration(timeout)
                ),
            );
            return;
        }
    };
    report.steps.push(Step {
        name: "resolve",
        ok: true,
        took: Some(started.elapsed()),
        detail: format!(
            "{dial_host} -> {}",
            addrs
                .iter()
                .map(|a| a.ip().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    });
    let started = Instant::now();
    let mut tcp = None;
    let mut last_err = String::from("no address");
    for a in &addrs {
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(a)).await {
            Ok(Ok(s)) => {
                tcp = Some((s, *a));
                break;
            }
            Ok(Err(e)) => last_err = format!("{a}: {e}"),
            Err(_) => {
                last_err = format!("{a}: no answer in {}", humantime::format_duration(timeout))
            }
        }
    }
    let Some((tcp, addr)) = tcp else {
        let what = if proxy.is_some() {
            "the proxy"
        } else {
            "the service"
        };
        fail(
            report,
            "connect",
            Some(started.elapsed()),
            format!("could not connect to {what} ({last_err})"),
        );
        return;
    };
    report.steps.push(Step {
        name: "connect",
        ok: true,
        took: Some(started.elapsed()),
        detail: format!(
            "TCP to {addr}{}",
            if proxy.is_some() { " (the proxy)" } else { "" }
        ),
    });
    let io: Box<dyn Io> = match &proxy {
        None => Box::new(tcp),
        Some(p) => {
            if p.uri.scheme_str() == Some("https") {
                fail(
                    report,
                    "CONNECT",
                    None,
                    "doctor tests http:// proxies only; this one is reached over TLS".into(),
                );
                return;
            }
            let started = Instant::now();
            let proxy_shown = p.shown.clone();
            match tokio::time::timeout(timeout, tunnel(tcp, p, &host, port)).await {
                Ok(Ok(io)) => {
                    report.steps.push(Step {
                        name: "CONNECT",
                        ok: true,
                        took: Some(started.elapsed()),
                        detail: format!("the proxy opened a tunnel to {host}:{port}"),
                    });
                    io
                }
                Ok(Err(TunnelFail::Status(code))) => {
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
                    fail(
                        report,
                        "CONNECT",
                        Some(started.elapsed()),
                        format!("the proxy answered HTTP {code}{why}"),
                    );
                    report.problem = problem.map(|p| {
                        let advice = p.explain(&host, Some(&proxy_shown));
                        (p, advice)
                    });
                    return;
                }
                Ok(Err(TunnelFail::Other(e))) => {
                    fail(report, "CONNECT", Some(started.elapsed()), e);
                    return;
                }
                Err(_) => {
                    fail(
                        report,
                        "CONNECT",
                        Some(started.elapsed()),
                        format!(
                            "the proxy did not answer in {}",
                            humantime::format_duration(timeout)
                        ),
                    );
                    return;
                }
            }
        }
    };
    if base_url.scheme() != "https" {
        report.steps.push(Step {
            name: "TLS",
            ok: true,
            took: None,
            detail: "not used: plain http to this machine".into(),
        });
        return;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = match net.verifier(provider.clone()) {
        Ok(v) => Arc::new(Recording {
            inner: v,
            seen: Mutex::new(Vec::new()),
        }),
        Err(e) => {
            fail(report, "TLS", None, format!("cannot set up TLS: {e}"));
            return;
        }
    };
    let config = match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(b) => b
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth(),
        Err(e) => {
            fail(report, "TLS", None, format!("cannot set up TLS: {e}"));
            return;
        }
    };
    let name = match ServerName::try_from(host_bare.clone()) {
        Ok(n) => n,
        Err(e) => {
            fail(report, "TLS", None, format!("{host_bare}: {e}"));
            return;
        }
    };
    let started = Instant::now();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let done = tokio::time::timeout(timeout, connector.connect(name, io)).await;
    let took = Some(started.elapsed());
    if let Ok(seen) = verifier.seen.lock() {
        report.chain = seen.iter().map(describe_cert).collect();
    }
    match done {
        Ok(Ok(tls)) => {
            let (_, conn) = tls.get_ref();
            report.steps.push(Step {
                name: "TLS",
                ok: true,
                took,
                detail: format!(
                    "{} with {host_bare}, certificate trusted",
                    conn.protocol_version()
                        .map(|v| format!("{v:?}"))
                        .unwrap_or_else(|| "TLS".into())
                        .replace('_', ".")
                ),
            });
        }
        Ok(Err(e)) => {
            let shown = proxy.as_ref().map(|p| p.shown.as_str());
            let problem = super::classify(&e);
            fail(
                report,
                "TLS",
                took,
                super::printable(&format!("handshake failed: {e}")),
            );
            if let Some(p) = problem {
                let advice = p.explain(&host_bare, shown);
                report.problem = Some((p, advice));
            }
        }
        Err(_) => fail(
            report,
            "TLS",
            took,
            format!("no handshake in {}", humantime::format_duration(timeout)),
        ),
    }
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
