//! The network between gbdfl and the service: which proxy a call goes
//! through, which certificates are trusted, and which failures are a
//! network set up wrongly (an untrusted certificate, a proxy that refuses)
//! rather than a line that dropped.
//!
//! Rules this module keeps, and what holds each:
//! - loopback is never proxied, and NO_PROXY is honoured
//!   (`loopback_is_never_proxied_and_no_proxy_is_honoured`,
//!   `tests/cli/network.rs`);
//! - certificates are always verified: [`NetworkConfig`] has no setting to
//!   turn that off, only `ca_file` to add roots (the compiler; an untrusted
//!   certificate stops every command: `tests/cli/network.rs`);
//! - a proxy password prints as `***` (`proxy_passwords_are_never_shown`);
//!   it is a private field, read outside this module only as the proxy's
//!   header, which is marked sensitive
//!   (`the_proxy_password_leaves_only_in_a_sensitive_header`);
//! - a certificate failure is recognised by its type (a `rustls::Error` in
//!   the error chain), the proxy's CONNECT answer by the two texts of
//!   hyper-util's private error type (see [`classify`];
//!   `certificate_errors_are_known_by_type_inside_io_errors`);
//! - the client and `doctor` both take the proxy from
//!   [`NetworkConfig::proxy_for`], so they never disagree (`tests/cli/network.rs`
//!   runs both through one proxy).

pub mod doctor;

use std::error::Error as StdError;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::HeaderValue;
use hyper_util::client::proxy::matcher::Matcher;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use url::Url;
use zeroize::Zeroizing;

/// The settings that name where to find the proxy password.
pub const PROXY_PASSWORD_SETTINGS: &str =
    "proxy_password_file in config.toml or GBDFL_PROXY_PASSWORD";

/// A proxy URL with its password held apart. Prints with the password as `***`.
#[derive(Clone)]
pub struct ProxyUrl {
    /// The URL without a password (a user name may be in it).
    url: Url,
    password: Option<Zeroizing<String>>,
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({self})")
    }
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.url.clone();
        if self.password.is_some() {
            let _ = shown.set_password(Some("***"));
        }
        f.write_str(shown.as_str())
    }
}

/// Problems with the network settings themselves (not the network).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(
        "{name}: {shown} is not a proxy URL; write it like http://proxy.example.kz:3128 (http or https, a host and a port)"
    )]
    /// A proxy setting is not a proxy URL.
    BadProxy {
        /// The setting.
        name: String,
        /// Its value as it may be shown.
        shown: String,
    },
    #[error(
        "{name}: the proxy password is written in the URL; in config.toml it is not allowed (the file is read by many): put the password in a file readable by you only and set proxy_password_file, or set GBDFL_PROXY_PASSWORD"
    )]
    /// A proxy URL in config.toml holds a password.
    PasswordInConfig {
        /// The setting.
        name: String,
    },
    /// The proxy password file cannot be used.
    #[error("proxy password file {path}: {message}")]
    PasswordFile {
        /// The file.
        path: PathBuf,
        /// Why not.
        message: String,
    },
    #[error(
        "ca_file {path}: {message}; ca_file must name a PEM file with one or more certificates (-----BEGIN CERTIFICATE-----), such as your organisation's root certificate"
    )]
    /// `ca_file` cannot be used.
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why not.
        message: String,
    },
}

impl ProxyUrl {
    /// Parses a proxy URL given by setting `name`. A password in it is kept
    /// apart, or refused when `password_allowed` is false (config.toml).
    pub fn parse(name: &str, s: &str, password_allowed: bool) -> Result<ProxyUrl, SetupError> {
        let s = s.trim();
        let with_scheme = Zeroizing::new(if s.contains("://") {
            s.to_owned()
        } else {
            format!("http://{s}")
        });
        let bad = || SetupError::BadProxy {
            name: name.to_owned(),
            shown: redact_proxy(s),
        };
        let mut url = Url::parse(&with_scheme).map_err(|_| bad())?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(bad());
        }
        let password = match url.password() {
            Some(_) if !password_allowed => {
                return Err(SetupError::PasswordInConfig {
                    name: name.to_owned(),
                });
            }
            Some(p) => Some(Zeroizing::new(
                percent_encoding::percent_decode_str(p)
                    .decode_utf8()
                    .map_err(|_| bad())?
                    .into_owned(),
            )),
            None => None,
        };
        url.set_password(None).map_err(|_| bad())?;
        Ok(ProxyUrl { url, password })
    }

    /// Sets the password (from GBDFL_PROXY_PASSWORD or a file) unless the
    /// URL carried one.
    pub fn with_password(mut self, password: Option<Zeroizing<String>>) -> ProxyUrl {
        if self.password.is_none() {
            self.password = password;
        }
        self
    }

    /// Whether a user name is given.
    pub fn has_user(&self) -> bool {
        !self.url.username().is_empty()
    }

    /// The URL with its password, for the proxy matcher only.
    fn full(&self) -> Zeroizing<String> {
        let mut u = self.url.clone();
        if let Some(p) = &self.password {
            let _ = u.set_password(Some(p));
        }
        Zeroizing::new(u.to_string())
    }
}

/// A proxy value as it may be shown: any password replaced by `***`; a
/// value that is not a URL is not shown at all (it may hold a secret).
pub fn redact_proxy(s: &str) -> String {
    let s = s.trim();
    let with_scheme = if s.contains("://") {
        s.to_owned()
    } else {
        format!("http://{s}")
    };
    match Url::parse(&with_scheme) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(set, but not a URL; not shown)".to_owned(),
    }
}

/// The proxy variables of the environment, as found. Debug shows any
/// password in them as `***`.
#[derive(Clone, Default)]
pub struct ProxyEnv {
    /// (variable name, value) of ALL_PROXY/all_proxy.
    pub all: Option<(&'static str, String)>,
    /// HTTPS_PROXY/https_proxy.
    pub https: Option<(&'static str, String)>,
    /// HTTP_PROXY/http_proxy.
    pub http: Option<(&'static str, String)>,
    /// NO_PROXY/no_proxy.
    pub no: Option<(&'static str, String)>,
}

impl fmt::Debug for ProxyEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |v: &Option<(&'static str, String)>| {
            v.as_ref().map(|(n, s)| format!("{n}={}", redact_proxy(s)))
        };
        f.debug_struct("ProxyEnv")
            .field("all", &shown(&self.all))
            .field("https", &shown(&self.https))
            .field("http", &shown(&self.http))
            .field("no", &self.no)
            .finish()
    }
}

impl ProxyEnv {
    /// Reads the variables through `env`, upper case first (as curl does).
    pub fn read(env: &dyn Fn(&str) -> Option<String>) -> ProxyEnv {
        let first = |names: [&'static str; 2]| {
            names
                .into_iter()
                .find_map(|n| env(n).filter(|v| !v.trim().is_empty()).map(|v| (n, v)))
        };
        ProxyEnv {
            all: first(["ALL_PROXY", "all_proxy"]),
            https: first(["HTTPS_PROXY", "https_proxy"]),
            http: first(["HTTP_PROXY", "http_proxy"]),
            no: first(["NO_PROXY", "no_proxy"]),
        }
    }
}

/// A password that prints as `***`.
#[derive(Clone, Default)]
pub struct Secret(pub Option<Zeroizing<String>>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Secret(***)"
        } else {
            "None"
        })
    }
}

/// Everything that shapes the path to the service.
#[derive(Debug, Clone, Default)]
pub struct NetworkConfig {
    /// gbdfl's own proxy (GBDFL_PROXY or `proxy`): used instead of the
    /// environment's HTTPS_PROXY/HTTP_PROXY/ALL_PROXY; NO_PROXY still applies.
    pub proxy: Option<(String, ProxyUrl)>,
    /// The proxy password from GBDFL_PROXY_PASSWORD.
    pub proxy_password: Secret,
    /// A file holding the proxy password.
    pub proxy_password_file: Option<PathBuf>,
    /// The environment's proxy variables.
    pub env: ProxyEnv,
    /// A PEM bundle of certificates trusted besides the system's.
    pub ca_file: Option<PathBuf>,
}

/// The proxy a call goes through.
pub struct ChosenProxy {
    /// The proxy's URI, without credentials.
    pub uri: http::Uri,
    /// The Proxy-Authorization header, marked sensitive.
    pub auth: Option<HeaderValue>,
    /// Where it was set (`config proxy`, `env HTTPS_PROXY`, ...).
    pub source: String,
    /// How it may be shown.
    pub shown: String,
}

impl fmt::Debug for ChosenProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChosenProxy")
            .field("proxy", &self.shown)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Whether `url` names this machine (never proxied).
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.');
            d.eq_ignore_ascii_case("localhost") || d.to_ascii_lowercase().ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

impl NetworkConfig {
    /// The proxy a call to `target` goes through, if any: none to
    /// loopback, none to a host NO_PROXY names; else gbdfl's own proxy,
    /// else the environment's (HTTPS_PROXY for https, HTTP_PROXY for http,
    /// ALL_PROXY for both), by curl's rules (hyper-util's matcher, the one
    /// reqwest itself uses).
    pub fn proxy_for(&self, target: &Url) -> Result<Option<ChosenProxy>, SetupError> {
        if is_loopback(target) {
            return Ok(None);
        }
        let no = self
            .env
            .no
            .as_ref()
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        // The one proxy that applies to this scheme, as curl picks it.
        let (source, proxy) = match &self.proxy {
            Some((origin, p)) => (origin.clone(), p.clone()),
            None => {
                let e = &self.env;
                let used = match target.scheme() {
                    "https" => e.https.as_ref().or(e.all.as_ref()),
                    _ => e.http.as_ref().or(e.all.as_ref()),
                };
                let Some((name, value)) = used else {
                    return Ok(None);
                };
                (format!("env {name}"), ProxyUrl::parse(name, value, true)?)
            }
        };
        // A user without a password in the URL: the password from
        // GBDFL_PROXY_PASSWORD, else proxy_password_file.
        let password = match (&proxy.password, &self.proxy_password.0) {
            (Some(_), _) => None,
            _ if !proxy.has_user() => None,
            (None, Some(p)) => Some(p.clone()),
            (None, None) => match &self.proxy_password_file {
                Some(path) => Some(read_password_file(path)?),
                None => None,
            },
        };
        let proxy = proxy.with_password(password);
        let shown = proxy.to_string();
        let matcher = Matcher::builder().all(proxy.full().as_str()).no(no).build();
        let uri: http::Uri = target.as_str().parse().map_err(|_| SetupError::BadProxy {
            name: "base_url".into(),
            shown: target.to_string(),
        })?;
        let Some(i) = matcher.intercept(&uri) else {
            return Ok(None);
        };
        let auth = i.basic_auth().cloned().map(|mut h| {
            h.set_sensitive(true);
            h
        });
        Ok(Some(ChosenProxy {
            uri: i.uri().clone(),
            auth,
            source,
            shown,
        }))
    }

    /// The extra trust roots of `ca_file` (none when it is not set).
    pub fn extra_roots(&self) -> Result<Vec<CertificateDer<'static>>, SetupError> {
        let Some(path) = &self.ca_file else {
            return Ok(Vec::new());
        };
        load_ca_file(path)
    }

    /// The certificate verifier of a connection to the service: the
    /// system's trust store plus `ca_file`, by rustls-platform-verifier, as
    /// reqwest's `rustls` feature verifies.
    pub fn verifier(
        &self,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<rustls_platform_verifier::Verifier, String> {
        let roots = self.extra_roots().map_err(|e| e.to_string())?;
        if roots.is_empty() {
            rustls_platform_verifier::Verifier::new(provider)
        } else {
            rustls_platform_verifier::Verifier::new_with_extra_roots(roots, provider)
        }
        .map_err(|e| e.to_string())
    }
}

fn read_password_file(path: &Path) -> Result<Zeroizing<String>, SetupError> {
    let err = |message: String| SetupError::PasswordFile {
        path: path.to_owned(),
        message,
    };
    gbdfl_core::private_file::check_private(path).map_err(|e| err(e.to_string()))?;
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?);
    let password = Zeroizing::new(text.trim_end_matches(['\r', '\n']).to_owned());
    if password.is_empty() {
        return Err(err("the file is empty".into()));
    }
    Ok(password)
}

/// Reads a PEM bundle of certificates.
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, SetupError> {
    let err = |message: String| SetupError::CaFile {
        path: path.to_owned(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("not a readable PEM file ({e})")))?;
    if certs.is_empty() {
        return Err(err("no certificate in it".into()));
    }
    Ok(certs)
}

/// A failure that is the network's set-up, not a dropped line: it happens
/// before the request is written, so nothing was sent, and it fails the
/// same way for every request until a setting changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The certificate chain leads to no trusted root.
    Untrusted {
        /// What was found, fit to show.
        detail: String,
    },
    /// The certificate is for another host.
    WrongHost {
        /// The hosts it names, fit to show.
        detail: String,
    },
    /// The certificate has expired, or is not valid yet.
    OutOfDate {
        /// Which of the two.
        detail: String,
    },
    /// Another reason the certificate was rejected (revoked, bad signature,
    /// a CA certificate used as the server's, ...).
    BadCertificate {
        /// The reason, fit to show.
        detail: String,
    },
    /// The proxy asks for a user name and password (HTTP 407).
    ProxyAuth,
    /// The proxy refused to open a tunnel to the service, with its answer
    /// to CONNECT when known (a 4xx: see [`refuses_for_good`]).
    ProxyRefused {
        /// The HTTP status of the refusal, when known.
        status: Option<u16>,
    },
}

/// Whether a proxy's answer to CONNECT refuses for good (403 Forbidden,
/// 405, ...) rather than for now: 5xx means the proxy could not reach the
/// service (the line), and 408 and 429 pass.
pub fn refuses_for_good(status: u16) -> bool {
    (400..500).contains(&status) && !matches!(status, 407 | 408 | 429)
}

impl Problem {
    /// A short name for tables and the audit trail.
    pub fn label(&self) -> &'static str {
        match self {
            Problem::Untrusted { .. } => "CERT_UNTRUSTED",
            Problem::WrongHost { .. } => "CERT_WRONG_HOST",
            Problem::OutOfDate { .. } => "CERT_OUT_OF_DATE",
            Problem::BadCertificate { .. } => "CERT_REJECTED",
            Problem::ProxyAuth => "PROXY_AUTH",
            Problem::ProxyRefused { .. } => "PROXY_REFUSED",
        }
    }

    /// What is wrong and which setting fixes it, in plain words.
    pub fn explain(&self, host: &str, proxy: Option<&str>) -> String {
        let via = proxy
            .map(|p| format!(" (reached through the proxy {p})"))
            .unwrap_or_default();
        match self {
            Problem::Untrusted { detail } => format!(
                "the service's certificate{via} is not trusted by this machine ({detail}). If your network inspects HTTPS, put your organisation's root certificate (a PEM file) in ca_file = \"/path/to/org-root.pem\" in config.toml (or GBDFL_CA_FILE), or have IT install it in the system's trust store; if it does not, the connection to {host} is being intercepted: tell IT"
            ),
            Problem::WrongHost { detail } => format!(
                "the certificate presented for {host}{via} is for another host ({detail}). Check base_url; if your network inspects HTTPS, its proxy is answering without a certificate for {host}: tell IT"
            ),
            Problem::OutOfDate { detail } => format!(
                "the certificate presented for {host}{via} is out of date ({detail}). Check this machine's date and time first; if they are right, the certificate (perhaps your network's HTTPS inspection) must be renewed: tell IT"
            ),
            Problem::BadCertificate { detail } => format!(
                "the certificate presented for {host}{via} was rejected ({detail}). If your network inspects HTTPS, ca_file must name the organisation's root certificate, not the server's; otherwise tell IT"
            ),
            Problem::ProxyAuth => format!(
                "the proxy{} asks for a user name and password (HTTP 407). Give the user in the proxy URL (proxy = \"http://USER@proxy.example.kz:3128\" in config.toml, GBDFL_PROXY or HTTPS_PROXY) and the password in {PROXY_PASSWORD_SETTINGS}; if they are given, they are wrong",
                proxy.map(|p| format!(" {p}")).unwrap_or_default()
            ),
            Problem::ProxyRefused { status } => format!(
                "the proxy{} refused to connect to {host}{}. Ask IT to allow {host} through the proxy, or check the proxy setting (proxy in config.toml, GBDFL_PROXY, HTTPS_PROXY, NO_PROXY)",
                proxy.map(|p| format!(" {p}")).unwrap_or_default(),
                status.map(|s| format!(" (HTTP {s})")).unwrap_or_default()
            ),
        }
    }
}

/// The set-up problem behind a failed call, if it is one. TLS errors are
/// found by type: a `rustls::Error`, alone or inside an `io::Error`, in the
/// chain. The proxy's answer to CONNECT comes as hyper-util's private
/// `TunnelError`, so it is known by the two texts that type prints for a
/// 407 and for any other answer; for the latter the caller asks the proxy
/// again ([`doctor::connect_status`]) to learn whether it refuses for good.
pub fn classify(err: &(dyn StdError + 'static)) -> Option<Problem> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return from_rustls(r);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            if let Some(r) = inner.downcast_ref::<rustls::Error>() {
                return from_rustls(r);
            }
            if let Some(p) = classify(inner) {
                return Some(p);
            }
        }
        match e.to_string().as_str() {
            "tunnel error: proxy authorization required" => return Some(Problem::ProxyAuth),
            "tunnel error: unsuccessful" => return Some(Problem::ProxyRefused { status: None }),
            _ => {}
        }
        cur = e.source();
    }
    None
}

/// Text from a certificate (the server's, so anyone's) made safe for a
/// terminal: control characters, which could move the cursor or rewrite
/// what is shown, become `?`; at most 300 characters.
pub fn printable(s: &str) -> String {
    s.chars()
        .take(300)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Advice for a client that could not be built because TLS could not be
/// set up (found by type: a `rustls::Error` in the chain, which at build
/// time comes from loading the trust roots).
pub fn setup_hint(err: &(dyn StdError + 'static)) -> Option<&'static str> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.downcast_ref::<rustls::Error>().is_some() {
            return Some(
                "no trusted root certificates could be loaded: install the system's CA certificates (the ca-certificates package, or SSL_CERT_FILE naming a bundle), or name your organisation's root in ca_file",
            );
        }
        cur = e.source();
    }
    None
}

fn from_rustls(e: &rustls::Error) -> Option<Problem> {
    use rustls::CertificateError as C;
    let rustls::Error::InvalidCertificate(c) = e else {
        return None;
    };
    Some(match c {
        C::UnknownIssuer => Problem::Untrusted {
            detail: "signed by an authority this machine does not know".into(),
        },
        C::NotValidForName | C::NotValidForNameContext { .. } => Problem::WrongHost {
            detail: match c {
                C::NotValidForNameContext { presented, .. } => {
                    printable(&format!("it names {}", presented.join(", ")))
                }
                _ => "it names other hosts".into(),
            },
        },
        C::Expired | C::ExpiredContext { .. } => Problem::OutOfDate {
            detail: "it has expired".into(),
        },
        C::NotValidYet | C::NotValidYetContext { .. } => Problem::OutOfDate {
            detail: "it is not valid yet".into(),
        },
        other => Problem::BadCertificate {
            detail: printable(&format!("{other:?}")),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_passwords_are_never_shown() {
        let p = ProxyUrl::parse(
            "GBDFL_PROXY",
            "http://anna:s%40cret@proxy.bank.kz:3128",
            true,
        )
        .unwrap();
        assert_eq!(p.to_string(), "http://anna:***@proxy.bank.kz:3128/");
        assert!(!format!("{p:?}").contains("cret"));
        assert_eq!(p.password.as_deref().map(String::as_str), Some("s@cret"));
        assert_eq!(
            redact_proxy("anna:secret@proxy:3128"),
            "http://anna:***@proxy:3128/"
        );
        assert!(!redact_proxy("not a url at all:secret@").contains("secret"));
        let e = ProxyUrl::parse("proxy", "http://anna:secret@proxy:3128", false).unwrap_err();
        assert!(e.to_string().contains("proxy_password_file"), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
        assert!(ProxyUrl::parse("proxy", "socks5://proxy:1080", false).is_err());
    }

    #[test]
    fn loopback_is_never_proxied_and_no_proxy_is_honoured() {
        let cfg = NetworkConfig {
            proxy_password: Secret(Some(Zeroizing::new("pw".into()))),
            env: ProxyEnv {
                https: Some(("HTTPS_PROXY", "http://anna@proxy.bank.kz:3128".into())),
                no: Some(("NO_PROXY", "internal.bank.kz".into())),
                ..ProxyEnv::default()
            },
            ..NetworkConfig::default()
        };
        let at = |s: &str| cfg.proxy_for(&Url::parse(s).unwrap()).unwrap();
        let p = at("https://kyc.biometric.kz/api/").expect("proxied");
        assert_eq!(p.uri.host(), Some("proxy.bank.kz"));
        assert_eq!(p.source, "env HTTPS_PROXY");
        // GBDFL_PROXY_PASSWORD completes a user named in HTTPS_PROXY.
        assert_eq!(p.auth.as_ref().unwrap(), "Basic YW5uYTpwdw==");
        assert_eq!(p.shown, "http://anna:***@proxy.bank.kz:3128/");
        assert!(format!("{cfg:?}").contains("Secret(***)"));
        let leaky = ProxyEnv {
            https: Some(("HTTPS_PROXY", "http://anna:hunter2@proxy:3128".into())),
            ..ProxyEnv::default()
        };
        assert!(!format!("{leaky:?}").contains("hunter2"));
        assert!(at("https://127.0.0.1:8443/").is_none());
        assert!(at("https://localhost:8443/").is_none());
        assert!(at("https://[::1]:8443/").is_none());
        assert!(at("https://internal.bank.kz/").is_none());
        // gbdfl's own proxy wins over HTTPS_PROXY; NO_PROXY still applies.
        let own = NetworkConfig {
            proxy: Some((
                "config proxy".into(),
                ProxyUrl::parse("proxy", "http://other:8080", false).unwrap(),
            )),
            ..cfg.clone()
        };
        let p = own
            .proxy_for(&Url::parse("https://kyc.biometric.kz/").unwrap())
            .unwrap()
            .expect("proxied");
        assert_eq!(p.uri.host(), Some("other"));
        assert!(
            own.proxy_for(&Url::parse("https://internal.bank.kz/").unwrap())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn the_proxy_password_leaves_only_in_a_sensitive_header() {
        let cfg = NetworkConfig {
            proxy: Some((
                "config proxy".into(),
                ProxyUrl::parse("proxy", "http://anna@proxy.bank.kz:3128", false).unwrap(),
            )),
            proxy_password: Secret(Some(Zeroizing::new("hunter2".into()))),
            ..NetworkConfig::default()
        };
        let p = cfg
            .proxy_for(&Url::parse("https://kyc.biometric.kz/").unwrap())
            .unwrap()
            .expect("proxied");
        let auth = p.auth.as_ref().expect("a Proxy-Authorization header");
        assert!(auth.is_sensitive());
        assert!(!p.uri.to_string().contains("hunter2"), "{}", p.uri);
        assert!(!p.shown.contains("hunter2"), "{}", p.shown);
        assert!(!format!("{p:?}").contains("hunter2"));
    }

    #[test]
    fn certificate_errors_are_known_by_type_inside_io_errors() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert!(matches!(classify(&io), Some(Problem::Untrusted { .. })));
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::Expired),
        );
        assert!(matches!(classify(&io), Some(Problem::OutOfDate { .. })));
        assert_eq!(printable("CN=evil\x1b[2J\nok"), "CN=evil?[2J?ok");
        let other = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(classify(&other), None);
        // hyper-util's private TunnelError prints these for a 407 and any other refusal.
        let proxy = std::io::Error::other("tunnel error: proxy authorization required");
        assert_eq!(classify(proxy.get_ref().unwrap()), Some(Problem::ProxyAuth));
    }
}
