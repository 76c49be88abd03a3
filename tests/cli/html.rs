//! `gbdfl report expiring|summary --html`: golden pages for a fixed as-of
//! date and database, and the pages opened in headless Chromium with the
//! network off: no console error, no request, no script from data, and
//! chart numbers equal to the CSV report's counts.
//!
//! The database is the CSV reports' golden one, plus forty of the
//! emulator's synthetic people and two people whose names, document type
//! and number are markup (`<img src=x onerror=alert(1)>`,
//! `</script><script>alert(1)</script>`). Chromium is Debian's `chromium`
//! package (`.ci/run` installs it); `GBDFL_BLESS=1 cargo test` rewrites
//! the golden pages and the README's screenshots under docs/img/.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use gbdfl_core::iin::Iin;
use gbdfl_emulator::synthetic_response;
use gbdfl_store::Store;
use gbdfl_store::crypto::MasterKey;

use crate::harness::{Env, synthetic_iin};
use crate::report::{SESSION, TODAY, golden, paid, report, seed_golden, today};

const IMG: &str = "<img src=x onerror=alert(1)>";
const SCRIPT: &str = "</script><script>alert(1)</script>";

/// Sets every `key` of every object in `v` to `to`.
fn set_all(v: &mut serde_json::Value, key: &str, to: &str) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == key && x.is_string() {
                    *x = to.into();
                } else {
                    set_all(x, key, to);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| set_all(x, key, to)),
        _ => {}
    }
}

/// The golden database of the CSV reports, forty synthetic people and the
/// two hostile ones.
fn seed(env: &Env) {
    seed_golden(env);
    let store = Store::open(&env.db, &MasterKey::from_bytes([7u8; 32])).unwrap();
    for n in 0..42u32 {
        let s = synthetic_iin(100 + n);
        let mut body = synthetic_response(&s, SESSION, today());
        if n >= 40 {
            let hostile = if n == 40 { IMG } else { SCRIPT };
            set_all(&mut body, "surname", hostile);
            set_all(&mut body, "name", hostile);
            set_all(&mut body, "type", hostile);
            set_all(&mut body, "number", "'\"><svg onload=alert(1)>");
        }
        let body = serde_json::to_vec(&body).unwrap();
        let iin = Iin::parse(&s).unwrap();
        let time = format!("2030-06-{:02}T08:{:02}:00Z", 3 + n % 20, n % 60);
        store
            .record(&paid(100 + u128::from(n), &iin, &time, &body), None)
            .unwrap();
    }
}

/// The page with its generation time replaced by a fixed one.
fn normalised(html: &[u8]) -> Vec<u8> {
    let s = String::from_utf8(html.to_vec()).expect("UTF-8");
    let start = s.find("<time id=\"generated\"").expect("a generation time");
    let end = start + s[start..].find("</time>").unwrap() + "</time>".len();
    format!(
        "{}<time id=\"generated\">(normalised)</time>{}",
        &s[..start],
        &s[end..]
    )
    .into_bytes()
}

fn price_config(env: &Env) {
    std::fs::write(
        env.path().join("config.toml"),
        "price_per_call = \"35.50\"\ncurrency = \"KZT\"\n",
    )
    .unwrap();
}

#[test]
fn golden_html_pages_for_a_fixed_day_and_database() {
    let env = Env::bare();
    seed(&env);
    price_config(&env);
    for lang in ["en", "ru"] {
        let cases: [(String, Vec<&str>); 2] = [
            (
                format!("expiring-{lang}.html"),
                vec!["expiring", "--html", "--as-of", TODAY, "--lang", lang],
            ),
            (
                format!("summary-{lang}.html"),
                vec!["summary", "--html", "--lang", lang],
            ),
        ];
        for (name, args) in cases {
            let page = normalised(&report(&env, &name, &args));
            golden(&name, &page);
            let again = normalised(&report(&env, &format!("again-{name}"), &args));
            assert!(page == again, "{name}: a second run gives the same page");
        }
    }
}

#[test]
fn html_language_follows_the_locale_and_the_price_is_never_invented() {
    let env = Env::bare();
    seed(&env);
    let out = env.path().join("s.html");
    let run = |lang_env: &str| {
        let r = env.run_with(
            &[
                "report",
                "summary",
                "--html",
                "--out",
                out.to_str().unwrap(),
            ],
            &[("LANG", lang_env)],
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        std::fs::read_to_string(&out).unwrap()
    };
    let ru = run("ru_RU.UTF-8");
    assert!(
        ru.contains("<html lang=\"ru\">") && ru.contains("цена не задана"),
        "{ru}"
    );
    let en = run("C.UTF-8");
    assert!(en.contains("<html lang=\"en\">") && en.contains("price not set"));
    // The default name and folder are the CSV reports', with .html.
    let r = env.ok(&["report", "expiring", "--html", "--lang", "en"]);
    let path = r.stdout.trim();
    assert!(
        path.starts_with("reports/expiring-") && path.ends_with(".html"),
        "{path}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(env.path().join(path))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the page is private like the CSV reports"
        );
    }
    // Masked by default: no full IIN of the hostile people in the page.
    let page = std::fs::read_to_string(env.path().join(path)).unwrap();
    assert!(!page.contains(&synthetic_iin(140)), "IINs are masked");
    // Bad values are named.
    let r = env.fails(&["report", "summary", "--html", "--lang", "kk"], 2);
    assert!(r.stderr.contains("--lang \"kk\""), "{}", r.stderr);
    let r = env.fails(&["report", "lookups", "--html"], 2);
    assert!(r.stderr.contains("lookups is CSV only"), "{}", r.stderr);
    std::fs::write(
        env.path().join("config.toml"),
        "price_per_call = \"1.234\"\ncurrency = \"KZT\"\n",
    )
    .unwrap();
    let r = env.run(&["report", "summary", "--html"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("price_per_call \"1.234\""),
        "{}",
        r.stderr
    );
    std::fs::write(env.path().join("config.toml"), "price_per_call = 35\n").unwrap();
    let r = env.run(&["report", "summary", "--html"]);
    assert!(r.stderr.contains("go together"), "{}", r.stderr);
}

#[test]
fn csv_headers_in_russian_keep_the_columns() {
    let env = Env::bare();
    seed_golden(&env);
    let keys = report(&env, "k.csv", &["expiring", "--as-of", TODAY]);
    let ru = report(
        &env,
        "r.csv",
        &["expiring", "--as-of", TODAY, "--headers", "ru"],
    );
    let (k, r) = (
        String::from_utf8(keys).unwrap(),
        String::from_utf8(ru).unwrap(),
    );
    assert!(k.starts_with("iin,full_name,document_type,"), "{k}");
    assert!(r.starts_with("ИИН,ФИО,Тип документа,"), "{r}");
    assert_eq!(
        k.split_once('\n').unwrap().1,
        r.split_once('\n').unwrap().1,
        "same rows"
    );
    let s = report(&env, "s.csv", &["summary", "--headers", "ru"]);
    assert!(
        String::from_utf8(s)
            .unwrap()
            .starts_with("День (UTC),Запросов,Платных запросов,")
    );
}

// ---- Chromium ----

/// Debian's chromium, or a clear failure saying how to get it.
fn chromium() -> Option<PathBuf> {
    for p in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(p).exists() {
            return Some(PathBuf::from(p));
        }
    }
    if std::env::var_os("GBDFL_NO_BROWSER").is_some() {
        eprintln!("GBDFL_NO_BROWSER set: the browser checks are skipped");
        return None;
    }
    panic!(
        "no chromium: `apt-get install -y chromium` (.ci/run does), or set GBDFL_NO_BROWSER=1 to skip the browser checks"
    );
}

/// What Chromium made of a page.
struct Opened {
    dom: String,
    console: Vec<String>,
    /// Requests that reached the loopback proxy, Chromium's own left out.
    requests: usize,
}

/// Opens `page` in headless Chromium with the network off: every request
/// would go to a proxy on loopback that refuses and counts it, and no
/// name resolves. Returns the DOM after the scripts ran, the console
/// lines, and the connections the proxy saw.
fn open(browser: &Path, page: &Path, extra: &[String]) -> Opened {
    let profile = tempfile::tempdir().unwrap();
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = proxy.local_addr().unwrap();
    // The proxy answers every request with 403 at once (a request left
    // unanswered would hold Chromium's virtual clock) and counts them.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let counter = {
        let (stop, seen) = (stop.clone(), seen.clone());
        std::thread::spawn(move || {
            for s in proxy.incoming() {
                // After Chromium exits, the test's own connection ends this.
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut s) = s else { continue };
                s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                    .ok();
                let mut head = [0u8; 512];
                let n = s.read(&mut head).unwrap_or(0);
                let line = String::from_utf8_lossy(&head[..n]);
                let line = line.lines().next().unwrap_or("").to_owned();
                eprintln!("request to the proxy: {line}");
                seen.lock().unwrap().push(line);
                let _ = s.write_all(
                    b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        })
    };
    let url = format!("file://{}", page.display());
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=20000",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        ])
        .arg(format!("--proxy-server=http://{addr}"))
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(&url)
        .env("HOME", profile.path())
        .output()
        .expect("run chromium");
    stop.store(true, Ordering::SeqCst);
    let _ = std::net::TcpStream::connect(addr);
    counter.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed: {stderr}");
    Opened {
        dom: String::from_utf8_lossy(&out.stdout).into_owned(),
        console: stderr
            .lines()
            .filter(|l| l.contains("CONSOLE"))
            .map(str::to_owned)
            .collect(),
        requests: page_requests(&seen.lock().unwrap()),
    }
}

/// Chromium's own services, which it calls whatever the page (time, component
/// updates, account checks) despite --disable-background-networking.
const BROWSER_OWN: [&str; 3] = [".google.com", ".googleapis.com", ".gvt1.com"];

/// The requests (first lines) that did not come from Chromium itself.
fn page_requests(lines: &[String]) -> usize {
    lines
        .iter()
        .filter(|l| {
            let target = l.split(' ').nth(1).unwrap_or("");
            let host = target
                .trim_start_matches("http://")
                .trim_start_matches("https://")
                .split(['/', ':'])
                .next()
                .unwrap_or("");
            !BROWSER_OWN.iter().any(|own| host.ends_with(own))
        })
        .count()
}

/// The attributes of every `<tag ...>` in `html` that has `data-chart`.
fn chart_marks(html: &str, tag: &str) -> Vec<BTreeMap<String, String>> {
    let open = format!("<{tag} ");
    let mut marks = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(&open) {
        rest = &rest[i + open.len()..];
        let end = rest.find('>').unwrap();
        let mut attrs = BTreeMap::new();
        let mut a = &rest[..end];
        while let Some(eq) = a.find("=\"") {
            let name = a[..eq].trim().to_owned();
            let v_end = a[eq + 2..].find('"').unwrap();
            attrs.insert(name, unescape(&a[eq + 2..eq + 2 + v_end]));
            a = &a[eq + 2 + v_end + 1..];
        }
        if attrs.contains_key("data-chart") {
            marks.push(attrs);
        }
    }
    marks
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The self-check the page's script wrote.
fn selfcheck(dom: &str) -> BTreeMap<String, String> {
    let i = dom.find("id=\"selfcheck\"").expect("a self-check element");
    let start = dom[..i].rfind('<').unwrap();
    let tag = &dom[start..start + dom[start..].find('>').unwrap() + 1];
    let mut m = BTreeMap::new();
    for part in tag.split("data-").skip(1) {
        if let Some((k, v)) = part.split_once("=\"") {
            m.insert(k.to_owned(), v.split('"').next().unwrap().to_owned());
        }
    }
    m
}

/// No console message, no request, no violation, no resource, script done.
fn assert_clean(what: &str, o: &Opened) {
    assert!(
        o.console.is_empty(),
        "{what}: console says {:#?}",
        o.console
    );
    assert_eq!(o.requests, 0, "{what}: Chromium tried the network");
    let sc = selfcheck(&o.dom);
    assert_eq!(
        sc.get("ready").map(String::as_str),
        Some("1"),
        "{what}: script did not finish: {sc:?}"
    );
    assert_eq!(
        sc.get("violations").map(String::as_str),
        Some("0"),
        "{what}: {sc:?}"
    );
    assert_eq!(
        sc.get("resources").map(String::as_str),
        Some("0"),
        "{what}: {sc:?}"
    );
    // Nothing from the data became markup.
    for bad in [
        "<img src=\"x\"",
        "<img src=x",
        "<script>alert",
        "<svg onload",
        "onerror=\"alert",
    ] {
        assert!(
            !o.dom.contains(bad),
            "{what}: the page turned data into markup: {bad}"
        );
    }
}

/// The bucket and series of a CSV row of the expiring report (90-day window).
fn week_mark(days_left: &str, reasons: &str) -> (usize, &'static str) {
    let bucket = match days_left.parse::<i64>() {
        Ok(d) if d < 0 => 0,
        Ok(d) if d <= 90 => 1 + (d / 7) as usize,
        _ => 14,
    };
    let has = |r: &str| reasons.split(' ').any(|x| x == r);
    let series = if has("expired") {
        "expired"
    } else if has("expires_soon") {
        "expires_soon"
    } else if has("document_not_valid") {
        "document_not_valid"
    } else if has("life_status_not_normal") {
        "life_status_not_normal"
    } else {
        "other"
    };
    (bucket, series)
}

#[test]
fn pages_open_offline_in_chromium_run_nothing_from_data_and_chart_the_csv_counts() {
    let Some(browser) = chromium() else { return };
    let env = Env::bare();
    // The detectors work: a page without our policy that asks for an
    // address reaches the loopback proxy, and its console line is seen.
    let control = env.path().join("control.html");
    std::fs::write(
        &control,
        "<script>fetch('http://example.com/x').catch(function () { console.log('failed'); });</script>",
    )
    .unwrap();
    let o = open(&browser, &control, &["--dump-dom".into()]);
    assert!(o.requests >= 1, "the proxy sees a page's request");
    assert!(!o.console.is_empty(), "console lines are read");
    seed(&env);
    price_config(&env);
    let csv = report(&env, "e.csv", &["expiring", "--as-of", TODAY]);
    let rows: Vec<csv::StringRecord> = csv::Reader::from_reader(&csv[..])
        .records()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut weeks: BTreeMap<(usize, &str), u64> = BTreeMap::new();
    let mut types: BTreeMap<String, u64> = BTreeMap::new();
    for r in &rows {
        *weeks.entry(week_mark(&r[5], &r[9])).or_default() += 1;
        *types.entry(r[2].to_owned()).or_default() += 1;
    }
    assert!(
        types.contains_key(IMG) && types.contains_key(SCRIPT),
        "hostile rows listed"
    );
    let summary = report(&env, "s.csv", &["summary"]);
    let days: Vec<csv::StringRecord> = csv::Reader::from_reader(&summary[..])
        .records()
        .collect::<Result<_, _>>()
        .unwrap();

    for lang in ["en", "ru"] {
        let name = format!("expiring-{lang}.html");
        report(
            &env,
            &name,
            &["expiring", "--html", "--as-of", TODAY, "--lang", lang],
        );
        let o = open(&browser, &env.path().join(&name), &["--dump-dom".into()]);
        assert_clean(&name, &o);
        let sc = selfcheck(&o.dom);
        assert_eq!(
            sc["rows"],
            rows.len().to_string(),
            "{name}: every CSV row is in the data"
        );
        assert_eq!(sc["charts"], "agree", "{name}: the charts match the data");
        // The weeks chart against the CSV's rows.
        let mut drawn: BTreeMap<(usize, String), u64> = BTreeMap::new();
        for m in chart_marks(&o.dom, "rect")
            .iter()
            .filter(|m| m["data-chart"] == "weeks")
        {
            drawn.insert(
                (m["data-c"].parse().unwrap(), m["data-s"].clone()),
                m["data-n"].parse().unwrap(),
            );
        }
        let want: BTreeMap<(usize, String), u64> = weeks
            .iter()
            .map(|((b, s), n)| ((*b, s.to_string()), *n))
            .collect();
        assert_eq!(drawn, want, "{name}: weeks chart = CSV counts");
        // The types chart against the CSV's document types.
        let no_doc = if lang == "ru" {
            "(нет документа)"
        } else {
            "(no document)"
        };
        let drawn: BTreeMap<String, u64> = chart_marks(&o.dom, "g")
            .iter()
            .filter(|m| m["data-chart"] == "types")
            .map(|m| {
                (
                    m["data-label"].replace(no_doc, ""),
                    m["data-n"].parse().unwrap(),
                )
            })
            .collect();
        assert_eq!(drawn, types, "{name}: types chart = CSV counts");
        // The hostile rows are shown, as text, with their reasons written.
        for hostile in [IMG, SCRIPT] {
            let shown = format!(
                "<td>{}</td>",
                gbdfl_report::html::esc(hostile)
                    .replace("&#39;", "'")
                    .replace("&quot;", "\"")
            );
            assert!(o.dom.contains(&shown), "{name}: {hostile} shown as text");
        }
        let expired = if lang == "ru" {
            "срок истёк"
        } else {
            "expired"
        };
        assert!(
            o.dom.contains("<tr class=\"expired\">"),
            "{name}: expired rows marked"
        );
        assert!(
            o.dom.contains(&format!("<td>{expired}")),
            "{name}: the reason is written, not only coloured"
        );
    }

    for lang in ["en", "ru"] {
        let name = format!("summary-{lang}.html");
        report(&env, &name, &["summary", "--html", "--lang", lang]);
        let o = open(&browser, &env.path().join(&name), &["--dump-dom".into()]);
        assert_clean(&name, &o);
        let mut drawn: BTreeMap<(usize, String), u64> = BTreeMap::new();
        for m in chart_marks(&o.dom, "rect")
            .iter()
            .filter(|m| m["data-chart"] == "days")
        {
            drawn.insert(
                (m["data-c"].parse().unwrap(), m["data-s"].clone()),
                m["data-n"].parse().unwrap(),
            );
        }
        let mut want = BTreeMap::new();
        for (c, d) in days.iter().enumerate() {
            let n = |i: usize| d[i].parse::<u64>().unwrap();
            let failed = n(13) + n(14) + n(15);
            for (s, v) in [("paid", n(2) - failed), ("failed", failed), ("cache", n(3))] {
                if v > 0 {
                    want.insert((c, s.to_owned()), v);
                }
            }
        }
        assert_eq!(drawn, want, "{name}: days chart = CSV summary");
        let paid: u64 = days.iter().map(|d| d[2].parse::<u64>().unwrap()).sum();
        let spent = gbdfl_report::html::money(
            3550 * paid,
            if lang == "ru" {
                gbdfl_report::html::Lang::Ru
            } else {
                gbdfl_report::html::Lang::En
            },
        );
        // Chromium writes the no-break space of Russian digit groups as &nbsp;.
        let spent = spent.replace('\u{a0}', "&nbsp;");
        assert!(
            o.dom.contains(&format!("{spent} KZT")),
            "{name}: spent = paid calls x price"
        );
    }

    // Screenshots for the README, on GBDFL_BLESS=1.
    if std::env::var_os("GBDFL_BLESS").is_some_and(|v| !v.is_empty()) {
        let img = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/img");
        std::fs::create_dir_all(&img).unwrap();
        for page in ["expiring-en", "expiring-ru", "summary-en", "summary-ru"] {
            let png = img.join(format!("report-{page}.png"));
            let o = open(
                &browser,
                &env.path().join(format!("{page}.html")),
                &[
                    format!("--screenshot={}", png.display()),
                    "--window-size=1280,1400".into(),
                ],
            );
            assert_eq!(o.requests, 0);
            assert!(png.exists(), "{}", png.display());
        }
    }
}
