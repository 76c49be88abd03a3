//! What a report is asked for: its kind, the CSV layout, the period, the
//! HTML page's settings, and where the file goes by default.

use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};

use crate::lang::Lang;
use crate::workers::default_threads;
use gbdfl_core::expiry::Rules;
use gbdfl_core::limits;

/// The kinds of report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Documents that need attention, sorted by expiry.
    Expiring,
    /// Every lookup of a period.
    Lookups,
    /// The counts of each day of a period.
    Summary,
}

impl Kind {
    /// The report's name, as `gbdfl report` takes it and its file starts.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Expiring => "expiring",
            Kind::Lookups => "lookups",
            Kind::Summary => "summary",
        }
    }
}

/// How the CSV is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    /// The byte between fields.
    pub delimiter: u8,
    /// UTF-8 byte order mark and CRLF line ends, so Excel reads Cyrillic.
    pub excel: bool,
    /// The language of the header row: English keeps the stable column
    /// keys (`--headers ru` translates them).
    pub headers: Lang,
}

impl Default for Format {
    fn default() -> Self {
        Format {
            delimiter: b',',
            excel: false,
            headers: Lang::En,
        }
    }
}

/// A period of whole UTC days, both ends included; `None` is open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Period {
    /// The first day.
    pub from: Option<NaiveDate>,
    /// The last day.
    pub to: Option<NaiveDate>,
}

impl Period {
    /// `[from 00:00Z, the day after to 00:00Z)`, as the store takes it.
    pub fn bounds(self) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        let start = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
        (
            self.from.and_then(start),
            self.to.and_then(|d| d.succ_opt()).and_then(start),
        )
    }
}

/// An HTML report instead of CSV: its language, the price of a call
/// (summary) and the time it says it was made.
#[derive(Debug, Clone)]
pub struct HtmlOptions {
    /// The language of the page's words.
    pub lang: Lang,
    /// The price of a paid call, if configured (summary).
    pub price: Option<Price>,
    /// When the page says it was made.
    pub generated_at: DateTime<Utc>,
}

/// Money per paid call, in hundredths of the currency unit, and the
/// currency's name as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    /// The price of one paid call, in hundredths of the currency unit.
    pub hundredths: u64,
    /// The currency's name as configured (shown, never converted).
    pub currency: String,
}

impl Price {
    /// Parses `price_per_call` (a decimal with at most two places: `35`,
    /// `35.5`, `35.50`) with its `currency`.
    pub fn parse(price: &str, currency: &str) -> Result<Price, String> {
        let p = price.trim();
        let bad = || {
            format!(
                "price_per_call {price:?} is not a price: write a number with at most two decimals, e.g. 35.50"
            )
        };
        let (whole, frac) = p.split_once('.').unwrap_or((p, ""));
        if whole.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || frac.len() > 2
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let whole: u64 = whole.parse().map_err(|_| bad())?;
        let frac: u64 = format!("{frac:0<2}").parse().map_err(|_| bad())?;
        let hundredths = whole
            .checked_mul(100)
            .and_then(|w| w.checked_add(frac))
            .ok_or_else(bad)?;
        let currency = currency.trim();
        if currency.is_empty()
            || currency.chars().count() > 16
            || currency.chars().any(char::is_control)
        {
            return Err(format!(
                "currency {currency:?}: give the currency's code or sign, e.g. KZT or ₸ (16 characters at most)"
            ));
        }
        Ok(Price {
            hundredths,
            currency: currency.to_owned(),
        })
    }

    /// `calls` times the price, or `None` if it does not fit.
    pub fn times(&self, calls: u64) -> Option<u64> {
        self.hundredths.checked_mul(calls)
    }
}

/// Everything a report needs besides the store.
#[derive(Debug, Clone)]
pub struct Options {
    /// How the CSV is laid out.
    pub format: Format,
    /// Set for `--html`.
    pub html: Option<HtmlOptions>,
    /// Whole IINs instead of masked ones.
    pub full_iin: bool,
    /// The days of the lookups and summary reports.
    pub period: Period,
    /// The as-of date and window of the expiring report.
    pub rules: Rules,
    /// Workers for the expiry scan (the output does not depend on it).
    pub threads: usize,
}

/// The report options as typed, before they are checked.
#[derive(Debug, Clone, Copy)]
pub struct OptionText<'a> {
    /// `--delimiter`.
    pub delimiter: &'a str,
    /// `--excel`.
    pub excel: bool,
    /// `--full-iin`.
    pub full_iin: bool,
    /// `--from`.
    pub from: Option<&'a str>,
    /// `--to`.
    pub to: Option<&'a str>,
    /// `--within`.
    pub within: &'a str,
    /// `--as-of`.
    pub as_of: Option<&'a str>,
}

impl Options {
    /// Checks every option of `kind`; the message names the bad one.
    pub fn parse(kind: Kind, t: &OptionText<'_>, today: NaiveDate) -> Result<Options, String> {
        let day = |flag, v: Option<&str>| {
            v.map(|s| limits::parse_date(flag, s).map_err(|e| e.message))
                .transpose()
        };
        let period = Period {
            from: day("--from", t.from)?,
            to: day("--to", t.to)?,
        };
        if let (Some(f), Some(to)) = (period.from, period.to)
            && f > to
        {
            return Err(format!("--from {f} is after --to {to}"));
        }
        if kind == Kind::Expiring && period != Period::default() {
            return Err("--from/--to apply to lookups and summary; expiring takes --as-of".into());
        }
        Ok(Options {
            format: Format {
                delimiter: parse_delimiter(t.delimiter)?,
                excel: t.excel,
                headers: Lang::En,
            },
            html: None,
            full_iin: t.full_iin,
            period,
            rules: Rules::parse(t.within, t.as_of, today)?,
            threads: default_threads(),
        })
    }
}

/// Parses `--delimiter`: one ASCII character other than a quote or a line
/// break, or the word `tab`.
pub fn parse_delimiter(s: &str) -> Result<u8, String> {
    let c = match s {
        "tab" | "\\t" | "\t" => b'\t',
        s if s.len() == 1 && s.is_ascii() => s.as_bytes()[0],
        _ => {
            return Err(format!(
                "--delimiter {}: give one ASCII character such as ',' or ';', or `tab`",
                gbdfl_core::limits::shown(s)
            ));
        }
    };
    if matches!(c, b'"' | b'\n' | b'\r') {
        return Err(format!(
            "--delimiter {} cannot separate CSV fields",
            gbdfl_core::limits::shown(s)
        ));
    }
    Ok(c)
}

/// `reports/KIND-YYYYMMDD-HHMMSS.csv` (`.html` for an HTML report),
/// relative to the current folder, in local time.
pub fn default_path(kind: Kind, now: DateTime<chrono::Local>, html: bool) -> PathBuf {
    let csv = default_path_named(kind.name(), now);
    if html {
        csv.with_extension("html")
    } else {
        csv
    }
}

/// `reports/NAME-YYYYMMDD-HHMMSS.csv`, for reports that are not a [`Kind`] (batch outcomes).
pub fn default_path_named(name: &str, now: DateTime<chrono::Local>) -> PathBuf {
    Path::new("reports").join(format!("{name}-{}.csv", now.format("%Y%m%d-%H%M%S")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimiters() {
        assert_eq!(parse_delimiter(";"), Ok(b';'));
        assert_eq!(parse_delimiter("tab"), Ok(b'\t'));
        assert!(parse_delimiter(";;").is_err());
        assert!(parse_delimiter("\"").is_err());
        assert!(parse_delimiter("ж").is_err());
    }

    #[test]
    fn periods_include_both_days() {
        let d = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
        let (from, to) = Period {
            from: d("2030-06-01"),
            to: d("2030-06-02"),
        }
        .bounds();
        assert_eq!(
            gbdfl_core::time::iso_seconds(from.unwrap()),
            "2030-06-01T00:00:00Z"
        );
        assert_eq!(
            gbdfl_core::time::iso_seconds(to.unwrap()),
            "2030-06-03T00:00:00Z"
        );
    }
}
