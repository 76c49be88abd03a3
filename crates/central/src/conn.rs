//! Where the central store is and how to reach it: the connection URL,
//! the password, TLS, the time allowed.
//!
//! Rules this module keeps (tests in this file): a server that is not on
//! this machine is reached only over TLS that checks the certificate and
//! the host name (`sslmode=verify-full`, the default); a weaker `sslmode`
//! is refused for it, never quietly used. Loopback and Unix sockets may go
//! without TLS. The password never comes from the command line: from the
//! URL (in the config file or `GBDFL_CENTRAL_URL`), `PGPASSWORD`, or a
//! password file.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::CentralError;

/// How to reach the central store, as the settings gave it.
#[derive(Clone)]
pub struct Target {
    /// `postgresql://user@host:port/db?sslmode=...`; the password may be in it.
    pub url: String,
    /// Where the URL came from (for messages): a setting's name.
    pub origin: String,
    /// The password when not in the URL (from `PGPASSWORD` or a file).
    pub password: Option<zeroize::Zeroizing<String>>,
    /// How long to wait for the connection (and each statement's start).
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Target({})", self.shown())
    }
}

/// The TLS a connection asks for, checked against where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// No TLS: loopback or a Unix socket only.
    Off,
    /// TLS checking the certificate chain and the host name, with the
    /// system's roots and those of `sslrootcert`, if given.
    VerifyFull(Option<PathBuf>),
}

/// A parsed target: the settings tokio-postgres takes, and the TLS.
pub struct Parsed {
    /// The connection settings, TLS mode set.
    pub config: postgres::Config,
    /// The TLS this connection uses.
    pub tls: Tls,
    /// `host:port/db`, for messages (no user, no password).
    pub shown: String,
}

impl Target {
    /// The URL without its password, for messages.
    pub fn shown(&self) -> String {
        match url::Url::parse(&self.url) {
            Ok(mut u) => {
                let _ = u.set_password(None);
                u.set_query(None);
                u.to_string()
            }
            Err(_) => "(not a URL)".into(),
        }
    }

    /// Checks the URL and the TLS it asks for against where it goes.
    pub fn parse(&self) -> Result<Parsed, CentralError> {
        let bad = |message: String| CentralError::Settings {
            origin: self.origin.clone(),
            message,
        };
        let mut u = url::Url::parse(&self.url).map_err(|e| {
            bad(format!(
                "not a URL ({e}): write it as postgresql://USER@HOST:PORT/DATABASE?sslmode=verify-full"
            ))
        })?;
        if u.scheme() != "postgresql" && u.scheme() != "postgres" {
            return Err(bad(format!(
                "the scheme is {:?}: write postgresql://USER@HOST:PORT/DATABASE",
                u.scheme()
            )));
        }
        let mut sslmode = None;
        let mut rootcert = None;
        let mut kept = Vec::new();
        for (k, v) in u.query_pairs() {
            match k.as_ref() {
                "sslmode" => sslmode = Some(v.into_owned()),
                "sslrootcert" => rootcert = Some(PathBuf::from(v.as_ref())),
                "host"
                | "connect_timeout"
                | "application_name"
                | "options"
                | "keepalives"
                | "keepalives_idle"
                | "target_session_attrs"
                | "channel_binding"
                | "port"
                | "dbname"
                | "user"
                | "password" => kept.push((k.into_owned(), v.into_owned())),
                other => {
                    return Err(bad(format!(
                        "unknown parameter {other:?}: gbdfl takes sslmode, sslrootcert, host, port, dbname, user, application_name, connect_timeout"
                    )));
                }
            }
        }
        // Every host the connection may try: the URL's (a comma-separated
        // list) and each `host=` parameter. Without TLS only when all of
        // them are this machine.
        let mut hosts: Vec<String> = kept
            .iter()
            .filter(|(k, _)| k == "host")
            .flat_map(|(_, v)| v.split(',').map(str::to_owned).collect::<Vec<_>>())
            .collect();
        if let Some(h) = u.host_str() {
            hosts.extend(h.split(',').map(str::to_owned));
        }
        hosts.retain(|h| !h.is_empty());
        if hosts.is_empty() {
            return Err(bad(
                "no host: write postgresql://USER@HOST:PORT/DATABASE (or ?host=/path/to/socket/dir)"
                    .into(),
            ));
        }
        let local = hosts.iter().all(|h| is_local(h));
        let host = hosts
            .iter()
            .find(|h| !is_local(h))
            .unwrap_or(&hosts[0])
            .clone();
        let tls = match sslmode.as_deref() {
            None | Some("verify-full") => {
                if local && sslmode.is_none() {
                    Tls::Off
                } else {
                    Tls::VerifyFull(rootcert)
                }
            }
            Some("disable" | "allow" | "prefer" | "require" | "verify-ca") if local => Tls::Off,
            Some(m @ ("disable" | "allow" | "prefer" | "require" | "verify-ca")) => {
                return Err(bad(format!(
                    "sslmode={m} for {host}, which is not this machine: personal data (sealed) and the organisation's audit trail go over this line, so gbdfl requires TLS that checks the server's certificate and name. Use sslmode=verify-full (and sslrootcert=FILE for a private CA)"
                )));
            }
            Some(m) => {
                return Err(bad(format!(
                    "unknown sslmode {m:?}: use verify-full (or, to this machine only, disable)"
                )));
            }
        };
        u.set_query(None);
        let mut text = u.to_string();
        let mut sep = '?';
        for (k, v) in &kept {
            text.push(sep);
            sep = '&';
            text.push_str(k);
            text.push('=');
            text.push_str(&percent(v));
        }
        let mut config: postgres::Config = text
            .parse()
            .map_err(|e: postgres::Error| bad(format!("{e}")))?;
        config.ssl_mode(match tls {
            Tls::Off => postgres::config::SslMode::Disable,
            Tls::VerifyFull(_) => postgres::config::SslMode::Require,
        });
        if config.get_password().is_none()
            && let Some(p) = &self.password
        {
            config.password(p.as_bytes());
        }
        if config.get_user().is_none() {
            return Err(bad(
                "no user: write postgresql://USER@HOST:PORT/DATABASE".into()
            ));
        }
        config.connect_timeout(self.connect_timeout);
        // A line that goes dead mid-statement is noticed within seconds,
        // not after TCP's quarter of an hour of retransmissions.
        let dead = self.connect_timeout.max(Duration::from_secs(10));
        config.tcp_user_timeout(dead);
        config.keepalives_idle(dead);
        config.application_name("gbdfl");
        let shown = self.shown();
        Ok(Parsed { config, tls, shown })
    }
}

/// Percent-encodes a query value (a socket path has slashes).
fn percent(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

/// Whether `host` is this machine: a loopback address, `localhost`, or a
/// Unix socket directory.
pub fn is_local(host: &str) -> bool {
    if host.starts_with('/') || host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The rustls settings of a verify-full connection: the system's roots
/// (rustls-platform-verifier) plus those of `rootcert`.
pub fn tls_config(rootcert: Option<&PathBuf>) -> Result<rustls::ClientConfig, CentralError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls_err = |message: String| CentralError::Settings {
        origin: "sslrootcert".into(),
        message,
    };
    let roots: Vec<CertificateDer<'static>> = match rootcert {
        None => Vec::new(),
        Some(path) => {
            let bytes =
                std::fs::read(path).map_err(|e| tls_err(format!("{}: {e}", path.display())))?;
            let certs = CertificateDer::pem_slice_iter(&bytes)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tls_err(format!("{}: not PEM certificates ({e})", path.display())))?;
            if certs.is_empty() {
                return Err(tls_err(format!(
                    "{}: no PEM certificate in it",
                    path.display()
                )));
            }
            certs
        }
    };
    let verifier = if roots.is_empty() {
        rustls_platform_verifier::Verifier::new(provider.clone())
    } else {
        rustls_platform_verifier::Verifier::new_with_extra_roots(roots, provider.clone())
    }
    .map_err(|e| tls_err(e.to_string()))?;
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        Target {
            url: url.into(),
            origin: "GBDFL_CENTRAL_URL".into(),
            password: None,
            connect_timeout: Duration::from_secs(2),
        }
    }

    #[test]
    fn a_remote_server_needs_verify_full() {
        let t = target("postgresql://b@db.example.kz/gbdfl")
            .parse()
            .unwrap();
        assert_eq!(t.tls, Tls::VerifyFull(None));
        for m in ["disable", "prefer", "require", "verify-ca"] {
            let e = target(&format!("postgresql://b@db.example.kz/gbdfl?sslmode={m}"))
                .parse()
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains("verify-full"), "{e}");
        }
    }

    #[test]
    fn loopback_may_go_without_tls_and_the_password_is_never_shown() {
        let t = target("postgresql://b:secret@127.0.0.1:5433/gbdfl?sslmode=disable");
        assert_eq!(t.parse().unwrap().tls, Tls::Off);
        assert!(!t.shown().contains("secret"));
        assert!(!format!("{t:?}").contains("secret"));
        assert!(is_local("/tmp/sock") && is_local("[::1]") && !is_local("10.0.0.1"));
    }

    #[test]
    fn a_remote_host_among_local_ones_still_needs_tls() {
        for url in [
            "postgresql://u@db.example.kz/g?host=127.0.0.1",
            "postgresql://u@127.0.0.1/g?host=db.example.kz",
            "postgresql://u@localhost/g?host=/tmp&host=db.example.kz",
            "postgresql://u@localhost/g?sslmode=disable&host=10.1.1.1",
        ] {
            match target(url).parse() {
                Ok(p) => assert_eq!(p.tls, Tls::VerifyFull(None), "{url}"),
                Err(e) => assert!(e.to_string().contains("verify-full"), "{url}: {e}"),
            }
        }
    }

    #[test]
    fn bad_urls_say_what_to_write() {
        for (url, says) in [
            ("db.example.kz", "not a URL"),
            ("mysql://a@b/c", "scheme"),
            (
                "postgresql://b@db.example.kz/g?sslmode=bogus",
                "unknown sslmode",
            ),
            ("postgresql://b@db.example.kz/g?frob=1", "unknown parameter"),
            ("postgresql://127.0.0.1/g", "no user"),
        ] {
            let e = target(url).parse().err().unwrap().to_string();
            assert!(e.contains(says), "{url}: {e}");
        }
    }
}
