//! A bank's network on loopback: a CONNECT proxy (std threads, records
//! every CONNECT line, can ask for credentials with 407) in front of a TLS
//! front (tokio-rustls) to the emulator, whose certificate is signed by a
//! CA made here with rcgen. The client reaches `gbdfl.test`, a name only
//! the proxy resolves (to 127.0.0.1), so it must go through the proxy.
//!
//! SSL_CERT_FILE names another CA made here, so "the system's trust store"
//! is known and does not trust the test CA, on any machine.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use gbdfl_emulator::iins;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::harness::{Env, session};

/// "anna:s3cret p@ss" as HTTP Basic.
const ANNA_BASIC: &str = "Basic YW5uYTpzM2NyZXQgcEBzcw==";
const ANNA_PASSWORD: &str = "s3cret p@ss";

/// A test CA and a server certificate it signed.
struct Pki {
    ca_pem: String,
    /// Another CA: the stand-in for the system's trust store.
    system_pem: String,
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().expect("CA key");
    let pem = p.self_signed(&key).expect("CA certificate").pem();
    (p, key, pem)
}

/// A certificate for `names`, signed by a fresh test CA; `expired` makes
/// it one that ran out in 2020.
fn pki(names: &[&str], expired: bool) -> Pki {
    let (ca_params, ca_key, ca_pem) = ca("gbdfl test CA");
    let (_, _, system_pem) = ca("some other CA");
    let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .expect("server params");
    p.distinguished_name.push(DnType::CommonName, names[0]);
    if expired {
        p.not_before = rcgen::date_time_ymd(2019, 1, 1);
        p.not_after = rcgen::date_time_ymd(2020, 1, 1);
    }
    let key = KeyPair::generate().expect("server key");
    let issuer = Issuer::new(ca_params, ca_key);
    let cert = p.signed_by(&key, &issuer).expect("server certificate");
    Pki {
        ca_pem,
        system_pem,
        cert: cert.der().clone(),
        key: PrivatePkcs8KeyDer::from(key.serialize_der()),
    }
}

/// A TLS front on `bind` that hands every connection to `backend`.
struct TlsFront {
    addr: SocketAddr,
    _rt: tokio::runtime::Runtime,
}

fn tls_front(bind: &str, backend: SocketAddr, pki: &Pki) -> TlsFront {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![pki.cert.clone()],
            PrivateKeyDer::Pkcs8(pki.key.clone_key()),
        )
        .expect("server TLS config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(bind))
        .expect("TLS front binds");
    let addr = listener.local_addr().expect("address");
    rt.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Ok(mut up) = tokio::net::TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                }
            });
        }
    });
    TlsFront { addr, _rt: rt }
}

/// A CONNECT proxy on 127.0.0.1 that resolves `gbdfl.test` to 127.0.0.1.
struct Proxy {
    port: u16,
    /// The request line of every CONNECT it received.
    connects: Arc<Mutex<Vec<String>>>,
}

/// How the test proxy answers a CONNECT.
#[derive(Clone, Copy)]
enum Mode {
    /// Opens the tunnel unless `Some(auth)` is not the Proxy-Authorization sent (407).
    Open(Option<&'static str>),
    /// Answers every CONNECT with this status line.
    Refuse(&'static str),
}

impl Proxy {
    /// `required`: the Proxy-Authorization it demands (407 without it).
    fn start(required: Option<&'static str>) -> Proxy {
        Proxy::with_mode(Mode::Open(required))
    }

    fn with_mode(mode: Mode) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy binds");
        let port = listener.local_addr().expect("address").port();
        let connects = Arc::new(Mutex::new(Vec::new()));
        let seen = connects.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let seen = seen.clone();
                std::thread::spawn(move || serve(conn, mode, &seen));
            }
        });
        Proxy { port, connects }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn connects(&self) -> Vec<String> {
        self.connects.lock().expect("lock").clone()
    }
}

fn serve(conn: TcpStream, mode: Mode, seen: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" {
            break;
        }
        head.push(line.trim_end().to_owned());
    }
    let Some(first) = head.first().cloned() else {
        return;
    };
    seen.lock().expect("lock").push(first.clone());
    let mut out = conn.try_clone().expect("clone");
    let required = match mode {
        Mode::Open(required) => required,
        Mode::Refuse(status) => {
            let _ =
                out.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes());
            return;
        }
    };
    let auth = head.iter().find_map(|h| {
        let (k, v) = h.split_once(':')?;
        k.eq_ignore_ascii_case("proxy-authorization")
            .then(|| v.trim().to_owned())
    });
    if let Some(required) = required
        && auth.as_deref() != Some(required)
    {
        let _ = out.write_all(
            b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"bank\"\r\nContent-Length: 0\r\n\r\n",
        );
        return;
    }
    let mut parts = first.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (parts.next(), parts.next()) else {
        let _ = out.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    let (host, port) = target.rsplit_once(':').unwrap_or((target, "443"));
    let host = if host == "gbdfl.test" {
        "127.0.0.1"
    } else {
        host
    };
    let Ok(up) = TcpStream::connect((host, port.parse::<u16>().unwrap_or(443))) else {
        let _ = out.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    let _ = out.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
    let mut up_w = up.try_clone().expect("clone");
    let mut up_r = up;
    // What the reader already buffered belongs to the tunnel.
    let buffered = reader.buffer().to_vec();
    let _ = up_w.write_all(&buffered);
    std::thread::spawn(move || {
        let mut from_client = reader.into_inner();
        let _ = std::io::copy(&mut from_client, &mut up_w);
        let _ = up_w.shutdown(std::net::Shutdown::Write);
    });
    let mut buf = [0u8; 16 * 1024];
    loop {
        match up_r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if out.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = out.shutdown(std::net::Shutdown::Write);
}

/// An emulator, a TLS front to it for `gbdfl.test`, the test CA's file and
/// the stand-in system store.
struct Bank {
    env: Env,
    front: TlsFront,
    ca_file: PathBuf,
    system_file: PathBuf,
}

impl Bank {
    fn new(names: &[&str], bind: &str, expired: bool) -> Bank {
        Bank::with_pki(pki(names, expired), bind)
    }

    fn with_pki(pki: Pki, bind: &str) -> Bank {
        let mut env = Env::new();
        let front = tls_front(bind, env.emu().addr(), &pki);
        let ca_file = env.path().join("org-root.pem");
        std::fs::write(&ca_file, &pki.ca_pem).expect("CA file");
        let system_file = env.path().join("system-roots.pem");
        std::fs::write(&system_file, &pki.system_pem).expect("system roots");
        env.extra_env
            .push(("SSL_CERT_FILE".into(), system_file.display().to_string()));
        Bank {
            env,
            front,
            ca_file,
            system_file,
        }
    }

    /// The emulator's URL with `host` and the TLS front's port.
    fn url(&self, host: &str) -> String {
        let path = url::Url::parse(&self.env.emu().url())
            .expect("emulator URL")
            .path()
            .to_owned();
        format!("https://{host}:{}{path}", self.front.addr.port())
    }

    fn set_url(&mut self, host: &str) {
        self.env.base_url = self.url(host);
    }

    fn trust_ca_file(&self) {
        std::fs::write(
            self.env.path().join("config.toml"),
            format!("ca_file = {:?}\n", self.ca_file.display().to_string()),
        )
        .expect("config");
    }

    fn queue(&self) -> String {
        self.env.ok(&["queue", "--json"]).stdout
    }
}

#[test]
fn an_untrusted_certificate_stops_fetch_sync_and_batch_with_13_and_leaves_the_queue_as_it_was() {
    let mut bank = Bank::new(&["gbdfl.test"], "127.0.0.1:0", false);
    bank.set_url("gbdfl.test");
    let proxy = Proxy::start(None);
    bank.env.extra_env.push(("HTTPS_PROXY".into(), proxy.url()));
    let env = &bank.env;
    let before = bank.queue();

    let r = env.fails(&["fetch", iins::VALID, "--session", &session()], 13);
    assert!(
        r.stderr.contains("not trusted by this machine") && r.stderr.contains("ca_file"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("Nothing was sent"), "{}", r.stderr);
    assert_eq!(env.emu().calls(), 0);
    assert_eq!(bank.queue(), before, "the fetch queued nothing");
    assert!(
        proxy
            .connects()
            .iter()
            .all(|c| c.starts_with(&format!("CONNECT gbdfl.test:{} ", bank.front.addr.port()))),
        "{:?}",
        proxy.connects()
    );

    // Rows queued earlier stay exactly as they were: no attempt counted,
    // next try and deadline unchanged.
    let file = env.path().join("rows.csv");
    std::fs::write(
        &file,
        format!(
            "iin,session_id\n{},{}\n{},{}\n",
            iins::VALID,
            session(),
            crate::harness::synthetic_iin(1),
            session()
        ),
    )
    .unwrap();
    assert_eq!(
        env.run(&["batch", file.to_str().unwrap(), "--no-sync"])
            .code,
        0
    );
    let queued = bank.queue();
    // A fetch of a request already queued leaves it as it was, too.
    let rows = std::fs::read_to_string(&file).unwrap();
    let first: Vec<&str> = rows.lines().nth(1).unwrap().split(',').collect();
    env.fails(&["fetch", first[0], "--session", first[1]], 13);
    assert_eq!(
        bank.queue(),
        queued,
        "fetch left the queued request as it was"
    );
    let r = env.fails(&["sync"], 13);
    assert!(r.stderr.contains("ca_file"), "{}", r.stderr);
    assert_eq!(bank.queue(), queued, "sync left the queue as it was");
    let r = env.fails(&["batch", file.to_str().unwrap()], 13);
    assert!(r.stderr.contains("ca_file"), "{}", r.stderr);
    assert_eq!(bank.queue(), queued, "batch left the queue as it was");
    assert_eq!(env.emu().calls(), 0);

    // The audit trail says why, and that nothing was paid for.
    let audit = env.ok(&["audit", "log", "--json"]).stdout;
    assert!(audit.contains("CERT_UNTRUSTED"), "{audit}");
}

#[test]
fn with_ca_file_the_fetch_goes_through_the_proxy_and_doctor_shows_each_step() {
    let mut bank = Bank::new(&["gbdfl.test"], "127.0.0.1:0", false);
    bank.set_url("gbdfl.test");
    let proxy = Proxy::start(None);
    bank.env.extra_env.push(("HTTPS_PROXY".into(), proxy.url()));

    // Without ca_file, doctor fails at TLS and shows who signed the chain.
    let r = bank.env.fails(&["doctor"], 13);
    assert!(r.stdout.contains("ok   CONNECT"), "{}", r.stdout);
    assert!(r.stdout.contains("FAIL TLS"), "{}", r.stdout);
    assert!(r.stdout.contains("CN=gbdfl.test"), "{}", r.stdout);
    assert!(r.stdout.contains("CN=gbdfl test CA"), "{}", r.stdout);
    assert!(r.stderr.contains("ca_file"), "{}", r.stderr);

    bank.trust_ca_file();
    let r = bank.env.ok(&["doctor"]);
    assert!(
        r.stdout.contains("ca_file: CN=gbdfl test CA"),
        "{}",
        r.stdout
    );
    for step in [
        "ok   proxy",
        "ok   trust",
        "ok   resolve",
        "ok   connect",
        "ok   CONNECT",
        "ok   TLS",
    ] {
        assert!(r.stdout.contains(step), "{step}\n{}", r.stdout);
    }
    assert!(r.stdout.contains("env HTTPS_PROXY"), "{}", r.stdout);
    let r = bank.env.ok(&["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("doctor --json");
    assert_eq!(v["ok"], true);
    assert_eq!(v["chain"][0]["subject"], "CN=gbdfl.test");
    assert_eq!(v["steps"][4]["step"], "CONNECT");
    assert_eq!(bank.env.emu().calls(), 0, "doctor sends no request");

    let before = proxy.connects().len();
    let r = bank
        .env
        .ok(&["fetch", iins::VALID, "--session", &session()]);
    assert!(r.stderr.contains("paid call"), "{}", r.stderr);
    assert_eq!(bank.env.emu().calls(), 1);
    let connects = proxy.connects();
    assert_eq!(connects.len(), before + 1, "{connects:?}");
    assert_eq!(
        connects.last().unwrap(),
        &format!("CONNECT gbdfl.test:{} HTTP/1.1", bank.front.addr.port())
    );
}

#[test]
fn the_system_trust_store_is_used() {
    let mut bank = Bank::new(&["gbdfl.test"], "127.0.0.1:0", false);
    bank.set_url("gbdfl.test");
    let proxy = Proxy::start(None);
    bank.env.extra_env.push(("HTTPS_PROXY".into(), proxy.url()));
    // The test CA installed in the "system" store (SSL_CERT_FILE), no ca_file.
    std::fs::copy(&bank.ca_file, &bank.system_file).unwrap();
    bank.env
        .ok(&["fetch", iins::VALID, "--session", &session()]);
    assert_eq!(bank.env.emu().calls(), 1);
}

#[test]
fn a_proxy_asking_for_credentials_names_the_proxy_settings_and_a_password_file_answers_it() {
    let mut bank = Bank::new(&["gbdfl.test"], "127.0.0.1:0", false);
    bank.set_url("gbdfl.test");
    bank.trust_ca_file();
    let proxy = Proxy::start(Some(ANNA_BASIC));
    bank.env.extra_env.push(("HTTPS_PROXY".into(), proxy.url()));

    let r = bank
        .env
        .fails(&["fetch", iins::VALID, "--session", &session()], 13);
    assert!(r.stderr.contains("407"), "{}", r.stderr);
    assert!(
        r.stderr.contains("proxy_password_file") && r.stderr.contains("HTTPS_PROXY"),
        "{}",
        r.stderr
    );
    assert_eq!(bank.env.emu().calls(), 0);
    let r = bank.env.fails(&["doctor"], 13);
    assert!(r.stdout.contains("HTTP 407"), "{}", r.stdout);

    // gbdfl's own proxy setting, the password in a private file.
    let pw = bank.env.path().join("proxy.pw");
    std::fs::write(&pw, format!("{ANNA_PASSWORD}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut config = std::fs::read_to_string(bank.env.path().join("config.toml")).unwrap();
    config.push_str(&format!(
        "proxy = \"http://anna@127.0.0.1:{}\"\nproxy_password_file = {:?}\n",
        proxy.port,
        pw.display().to_string()
    ));
    std::fs::write(bank.env.path().join("config.toml"), config).unwrap();
    bank.env.ok(&["doctor"]);
    bank.env
        .ok(&["fetch", iins::VALID, "--session", &session()]);
    assert_eq!(bank.env.emu().calls(), 1);

    // The password is never shown, wherever it came from.
    let r = bank.env.ok(&["config"]);
    assert!(r.stdout.contains("http://anna@127.0.0.1"), "{}", r.stdout);
    assert!(!r.stdout.contains("s3cret"), "{}", r.stdout);
    let r = bank.env.run_with(
        &["config"],
        &[("GBDFL_PROXY", "http://anna:s3cret@127.0.0.1:1")],
    );
    assert!(
        r.stdout.contains("http://anna:***@127.0.0.1:1"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("s3cret"), "{}", r.stdout);
}

/// This machine's address on its first non-loopback interface: packets to
/// it stay on the machine, but it is not loopback, so a proxy applies.
fn local_address() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("198.51.100.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn no_proxy_bypasses_the_proxy_and_loopback_never_uses_it() {
    let Some(ip) = local_address() else {
        panic!("this test needs a non-loopback IPv4 address on this machine");
    };
    let ip = ip.to_string();
    let mut bank = Bank::new(&[ip.as_str(), "127.0.0.1"], &format!("{ip}:0"), false);
    // The TLS front listens on the interface address only; 127.0.0.1 needs its own.
    bank.set_url(&ip);
    bank.trust_ca_file();
    // A proxy that refuses everyone: any call through it fails.
    let proxy = Proxy::start(Some("Basic nobody"));
    bank.env.extra_env.push(("HTTPS_PROXY".into(), proxy.url()));
    bank.env
        .fails(&["fetch", iins::VALID, "--session", &session()], 13);
    assert_eq!(proxy.connects().len(), 1, "without NO_PROXY it is proxied");

    bank.env.extra_env.push(("NO_PROXY".into(), ip.clone()));
    bank.env
        .ok(&["fetch", iins::VALID, "--session", &session()]);
    let r = bank.env.ok(&["doctor"]);
    assert!(r.stdout.contains("NO_PROXY"), "{}", r.stdout);
    assert_eq!(proxy.connects().len(), 1, "NO_PROXY bypassed the proxy");
    assert_eq!(bank.env.emu().calls(), 1);
}

#[test]
fn loopback_is_never_proxied() {
    let mut bank = Bank::new(&["localhost"], "127.0.0.1:0", false);
    bank.set_url("localhost");
    bank.trust_ca_file();
    let proxy = Proxy::start(Some("Basic nobody"));
    bank.env.extra_env.push(("HTTPS_PROXY".into(), proxy.url()));
    bank.env.extra_env.push(("ALL_PROXY".into(), proxy.url()));
    bank.env
        .ok(&["fetch", iins::VALID, "--session", &session()]);
    assert!(proxy.connects().is_empty());
}

#[test]
fn a_certificate_for_another_host_or_out_of_date_is_a_configuration_error() {
    let mut bank = Bank::new(&["gbdfl.test"], "127.0.0.1:0", false);
    bank.set_url("localhost");
    bank.trust_ca_file();
    let r = bank
        .env
        .fails(&["fetch", iins::VALID, "--session", &session()], 13);
    assert!(r.stderr.contains("is for another host"), "{}", r.stderr);
    assert!(r.stderr.contains("gbdfl.test"), "{}", r.stderr);
    let r = bank.env.fails(&["doctor"], 13);
    assert!(r.stderr.contains("another host"), "{}", r.stderr);

    let mut bank = Bank::new(&["localhost"], "127.0.0.1:0", true);
    bank.set_url("localhost");
    bank.trust_ca_file();
    let r = bank
        .env
        .fails(&["fetch", iins::VALID, "--session", &session()], 13);
    assert!(r.stderr.contains("out of date"), "{}", r.stderr);
    assert!(r.stderr.contains("date and time"), "{}", r.stderr);
    assert_eq!(bank.env.emu().calls(), 0);
    assert_eq!(bank.queue().trim(), "[]");
}

#[test]
fn a_user_in_https_proxy_takes_its_password_from_gbdfl_proxy_password() {
    let mut bank = Bank::new(&["gbdfl.test"], "127.0.0.1:0", false);
    bank.set_url("gbdfl.test");
    bank.trust_ca_file();
    let proxy = Proxy::start(Some(ANNA_BASIC));
    bank.env.extra_env.push((
        "HTTPS_PROXY".into(),
        format!("http://anna@127.0.0.1:{}", proxy.port),
    ));
    bank.env
        .fails(&["fetch", iins::VALID, "--session", &session()], 13);
    bank.env
        .extra_env
        .push(("GBDFL_PROXY_PASSWORD".into(), ANNA_PASSWORD.into()));
    bank.env
        .ok(&["fetch", iins::VALID, "--session", &session()]);
    assert_eq!(bank.env.emu().calls(), 1);
    let r = bank.env.ok(&["config"]);
    assert!(r.stdout.contains("(set, redacted)"), "{}", r.stdout);
    assert!(!r.stdout.contains("s3cret"), "{}", r.stdout);
}

#[test]
fn a_proxy_that_forbids_the_service_stops_but_one_that_cannot_reach_it_queues() {
    let mut bank = Bank::new(&["gbdfl.test"], "127.0.0.1:0", false);
    bank.set_url("gbdfl.test");
    bank.trust_ca_file();
    let forbidding = Proxy::with_mode(Mode::Refuse("403 Forbidden"));
    bank.env
        .extra_env
        .push(("HTTPS_PROXY".into(), forbidding.url()));
    let r = bank
        .env
        .fails(&["fetch", iins::VALID, "--session", &session()], 13);
    assert!(
        r.stderr
            .contains("refused to connect to gbdfl.test (HTTP 403)"),
        "{}",
        r.stderr
    );
    assert_eq!(bank.queue().trim(), "[]");
    let r = bank.env.fails(&["doctor"], 13);
    assert!(r.stdout.contains("HTTP 403"), "{}", r.stdout);

    // 502: the proxy could not reach the service. A dropped line: queued.
    let cut = Proxy::with_mode(Mode::Refuse("502 Bad Gateway"));
    bank.env.extra_env.pop();
    bank.env.extra_env.push(("HTTPS_PROXY".into(), cut.url()));
    let r = bank
        .env
        .fails(&["fetch", iins::VALID, "--session", &session()], 11);
    assert!(r.stderr.contains("queued"), "{}", r.stderr);
    let r = bank.env.fails(&["doctor"], 13);
    assert!(
        r.stdout.contains("could not reach the service"),
        "{}",
        r.stdout
    );
    assert_eq!(bank.env.emu().calls(), 0);
}

/// The case the issue about bank networks began with: a server presenting a
/// self-signed CA certificate as its own. Not trusted, or (once in ca_file)
/// a CA used as a server: either way a configuration error, never queued.
#[test]
fn issue_24_a_self_signed_ca_certificate_as_the_servers_is_a_configuration_error() {
    let (mut params, key, pem) = ca("localhost");
    params.subject_alt_names = vec![rcgen::SanType::DnsName(
        "localhost".try_into().expect("DNS name"),
    )];
    let cert = params.self_signed(&key).expect("self-signed");
    let (_, _, system_pem) = ca("some other CA");
    let pki = Pki {
        ca_pem: pem,
        system_pem,
        cert: cert.der().clone(),
        key: PrivatePkcs8KeyDer::from(key.serialize_der()),
    };
    let mut bank = Bank::with_pki(pki, "127.0.0.1:0");
    bank.set_url("localhost");
    let r = bank
        .env
        .fails(&["fetch", iins::VALID, "--session", &session()], 13);
    assert!(r.stderr.contains("ca_file"), "{}", r.stderr);
    assert!(!r.stderr.contains("queued for"), "{}", r.stderr);
    // Its own certificate in ca_file: written to be the server's, not a CA's.
    std::fs::write(&bank.ca_file, cert.pem()).unwrap();
    bank.trust_ca_file();
    let r = bank
        .env
        .fails(&["fetch", iins::VALID, "--session", &session()], 13);
    assert!(r.stderr.contains("was rejected"), "{}", r.stderr);
    assert_eq!(bank.env.emu().calls(), 0);
    assert_eq!(bank.queue().trim(), "[]");
}
