//! Self-contained HTML reports (`report expiring --html`, `report summary
//! --html`): one file with its CSS, JavaScript and SVG charts inline, which
//! opens from a USB stick on a machine with no connection.
//!
//! Rules this module keeps:
//! - every text that comes from outside (names, numbers, statuses, notes,
//!   document types) goes through [`esc`] in HTML text and attributes, or
//!   through [`json_in_script`] inside a `<script type="application/json">`,
//!   which escapes `<`, `>`, `&`, U+2028 and U+2029 so no value can close
//!   the script or start markup; the page's own script fills the table
//!   with `textContent`, never with markup;
//! - the page may load nothing: its Content-Security-Policy is
//!   `default-src 'none'`, and the one style sheet and the scripts are
//!   allowed by their SHA-256 hashes, not by `'unsafe-inline'`;
//! - like the rest of `report`, it reads rows handed to it and never names
//!   the HTTP client.
//!
//! Plain Rust writing into a `String`/`Write` with one escaping helper is
//! the template engine: the pages are two, their markup is small, and a
//! template crate would add a build-time language for no safety gain
//! (escaping is explicit here and tested).

mod chart;
pub mod expiring;
pub mod summary;

use std::fmt::Write as _;

use sha2::Digest as _;

pub use crate::lang::Lang;
pub use crate::options::Price;

/// The style sheet of both pages (screen and print).
const STYLE: &str = include_str!("style.css");
/// Runs first: records any Content-Security-Policy violation for the
/// page's self-check.
const HEAD_SCRIPT: &str = include_str!("head.js");

/// Appends `s` escaped for HTML text and quoted attribute values.
pub fn esc_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// `s` escaped for HTML text and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    esc_into(&mut out, s);
    out
}

/// JSON made safe to sit inside `<script type="application/json">`: `<`,
/// `>` and `&` become `\u003c`, `\u003e`, `\u0026` (so neither
/// `</script>` nor `<!--` can appear), and U+2028/U+2029 become escapes
/// too. The result is the same JSON value. Outside strings JSON has none
/// of these characters, so replacing them anywhere is safe.
pub fn json_in_script(json: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < json.len() {
        let b = json[i];
        match b {
            b'<' => out.extend_from_slice(b"\\u003c"),
            b'>' => out.extend_from_slice(b"\\u003e"),
            b'&' => out.extend_from_slice(b"\\u0026"),
            0xE2 if json.get(i + 1) == Some(&0x80)
                && matches!(json.get(i + 2), Some(0xA8 | 0xA9)) =>
            {
                out.extend_from_slice(if json[i + 2] == 0xA8 {
                    b"\\u2028"
                } else {
                    b"\\u2029"
                });
                i += 3;
                continue;
            }
            b => out.push(b),
        }
        i += 1;
    }
}

/// A value as JSON, ready for a script data block.
pub fn json_value(v: &impl serde::Serialize) -> String {
    let json = serde_json::to_vec(v).expect("plain data serialises");
    let mut out = Vec::with_capacity(json.len() + 16);
    json_in_script(&json, &mut out);
    String::from_utf8(out).expect("escaping keeps UTF-8")
}

fn sha256_b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(s.as_bytes()))
}

/// The policy: nothing may be loaded or sent; only this style sheet and
/// these scripts (by hash) run.
fn content_security_policy(scripts: &[&str]) -> String {
    let mut csp = String::from("default-src 'none'; script-src");
    for s in scripts {
        let _ = write!(csp, " 'sha256-{}'", sha256_b64(s));
    }
    let _ = write!(
        csp,
        "; style-src 'sha256-{}'; img-src 'none'; connect-src 'none'; base-uri 'none'; form-action 'none'",
        sha256_b64(STYLE)
    );
    csp
}

/// The document up to and including `<body>`: language, policy, style,
/// the violation recorder. `scripts` are every inline script of the page,
/// for the policy.
fn head(out: &mut String, lang: Lang, title: &str, scripts: &[&str]) {
    let mut all = vec![HEAD_SCRIPT];
    all.extend_from_slice(scripts);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"{}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{}\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n<script>{HEAD_SCRIPT}</script>\n</head>\n<body>\n",
        lang.code(),
        esc(&content_security_policy(&all)),
        esc(title),
    );
}

/// Closes the page: the self-check element the scripts fill in, and the
/// page script.
fn tail(out: &mut String, script: &str) {
    let _ = write!(
        out,
        "<div id=\"selfcheck\" hidden data-ready=\"0\"></div>\n<script>{script}</script>\n</body>\n</html>\n"
    );
}

/// A whole number with thin groups: `1 234 567` (ru) or `1,234,567` (en).
pub fn number(n: u64, lang: Lang) -> String {
    let digits = n.to_string();
    let sep = match lang {
        Lang::Ru => '\u{a0}',
        Lang::En => ',',
    };
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(sep);
        }
        out.push(c);
    }
    out
}

/// Hundredths of a currency as `1 234,50` (ru) or `1,234.50` (en).
pub fn money(hundredths: u64, lang: Lang) -> String {
    let dec = match lang {
        Lang::Ru => ',',
        Lang::En => '.',
    };
    format!(
        "{}{dec}{:02}",
        number(hundredths / 100, lang),
        hundredths % 100
    )
}

/// One fact of a page's header: `k` escaped here, `v` already markup.
fn fact(out: &mut String, k: &str, v: &str) {
    let _ = writeln!(out, "<div><dt>{}</dt><dd>{}</dd></div>", esc(k), v);
}

/// The header fact saying when the page was made, as both pages write it.
fn generated_fact(out: &mut String, label: &str, lang: Lang, g: chrono::DateTime<chrono::Utc>) {
    fact(
        out,
        label,
        &format!(
            "<time id=\"generated\" datetime=\"{}\">{} {} UTC</time>",
            gbdfl_core::time::iso_seconds(g),
            esc(&lang.date(g.date_naive())),
            g.format("%H:%M")
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escaping_covers_text_and_both_quotes() {
        assert_eq!(
            esc("<img src=x onerror=alert(1)> & \"a\" 'b'"),
            "&lt;img src=x onerror=alert(1)&gt; &amp; &quot;a&quot; &#39;b&#39;"
        );
        assert_eq!(esc("Нурланов"), "Нурланов");
    }

    #[test]
    fn json_in_a_script_cannot_close_it_and_stays_the_same_value() {
        let hostile = "</script><script>alert(1)</script><!-- & \u{2028}\u{2029} é";
        let s = json_value(&hostile);
        assert!(
            !s.contains('<') && !s.contains('>') && !s.contains('&'),
            "{s}"
        );
        assert!(!s.contains('\u{2028}') && !s.contains('\u{2029}'), "{s}");
        let back: String = serde_json::from_str(&s).unwrap();
        assert_eq!(back, hostile);
    }

    #[test]
    fn prices_are_exact_hundredths() {
        let p = |s| Price::parse(s, "KZT").map(|p| p.hundredths);
        assert_eq!(p("35"), Ok(3500));
        assert_eq!(p("35.5"), Ok(3550));
        assert_eq!(p(" 0.05 "), Ok(5));
        for bad in [
            "",
            "-1",
            "1.234",
            "1,5",
            "abc",
            ".5",
            "99999999999999999999",
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
        assert!(Price::parse("1", " ").is_err());
        assert_eq!(money(123_456_750, Lang::En), "1,234,567.50");
        assert_eq!(money(5, Lang::Ru), "0,05");
        assert_eq!(number(1_000, Lang::Ru), "1\u{a0}000");
    }

    #[test]
    fn the_policy_forbids_every_load_and_allows_only_our_code() {
        let csp = content_security_policy(&["x"]);
        assert!(csp.starts_with("default-src 'none';"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        assert!(csp.contains(&sha256_b64("x")));
    }
}
