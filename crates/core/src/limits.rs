//! Ranges of every duration, count, size and date that comes from outside
//! (a flag, the environment, the config file), and the one parser of each.
//!
//! Rules this module keeps: a value is checked against its documented range
//! where it is parsed (docs/reference.md, "Configuration and environment"),
//! so nothing downstream can overflow on it; a bare number is a number of
//! days for every duration; a date has a four-digit year; the error names
//! the source, the value (cut when long) and the range, and maps to exit
//! code 2.

use std::time::Duration;

use chrono::NaiveDate;

const DAY: u64 = 86_400;

/// A value from outside that is malformed or out of its range. Exit code 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InputError {
    /// The whole message: source, value (cut), what is wrong, what to write.
    pub message: String,
}

fn err(message: String) -> InputError {
    InputError { message }
}

/// Text from outside as shown in a message: quoted, and cut to its first
/// 20 characters when longer ("…" and the length follow).
pub fn shown(s: &str) -> String {
    format!("{:?}", cut(s, 20))
}

/// `s` whole when it has at most `max` characters, else its first `max`
/// characters, "…" and how many characters it has.
pub fn cut(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_owned();
    }
    let head: String = s.chars().take(max).collect();
    format!("{head}… ({n} characters)")
}

/// The inclusive range of a duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationRange {
    /// The shortest duration accepted.
    pub min: Duration,
    /// The longest duration accepted.
    pub max: Duration,
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A hundred years: the longest age, window or retention anyone needs.
const CENTURY: Duration = secs(36_500 * DAY);

/// `max_age`, `--max-age`: 0 to 36500 days.
pub const MAX_AGE: DurationRange = DurationRange {
    min: Duration::ZERO,
    max: CENTURY,
};
/// `retention`, `purge --older-than`: 0 to 36500 days.
pub const RETENTION: DurationRange = MAX_AGE;
/// `expiring --within`: 0 to 36500 days.
pub const WITHIN: DurationRange = MAX_AGE;
/// `expiring --stale`: 0 to 36500 days.
pub const STALE: DurationRange = MAX_AGE;
/// `connect_timeout`, `timeout`: 100 ms to 1 hour.
pub const TIMEOUT: DurationRange = DurationRange {
    min: ms(100),
    max: secs(3_600),
};
/// `retry_base`, `retry_cap`: 1 ms to 1 day.
pub const RETRY: DurationRange = DurationRange {
    min: ms(1),
    max: secs(DAY),
};
/// `busy_timeout`: 0 s (do not wait) to 1 hour.
pub const BUSY_TIMEOUT: DurationRange = DurationRange {
    min: Duration::ZERO,
    max: secs(3_600),
};

/// The inclusive range of a whole number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountRange {
    /// The smallest number accepted.
    pub min: u64,
    /// The largest number accepted.
    pub max: u64,
}

/// `max_response_bytes`: 1 KiB to 1 GiB.
pub const MAX_RESPONSE_BYTES: CountRange = CountRange {
    min: 1024,
    max: 1 << 30,
};
/// `retry_attempts`: 1 to 100.
pub const RETRY_ATTEMPTS: CountRange = CountRange { min: 1, max: 100 };
/// `--threads`, `GBDFL_THREADS`: 1 to 64 (as `--jobs` of batch and sync).
pub const THREADS: CountRange = CountRange { min: 1, max: 64 };

/// A duration bound as written in docs/reference.md: `36500d`, `1h`, `100ms`.
pub fn format_bound(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_nanos() != 0 || s == 0 {
        if d.is_zero() {
            return "0s".into();
        }
        return format!("{}ms", d.as_millis());
    }
    for (unit, name) in [(DAY, "d"), (3_600, "h"), (60, "m")] {
        if s.is_multiple_of(unit) {
            return format!("{}{name}", s / unit);
        }
    }
    format!("{s}s")
}

impl DurationRange {
    fn describe(&self) -> String {
        format!("{} to {}", format_bound(self.min), format_bound(self.max))
    }
}

/// Parses a duration from `source` (a flag, an environment variable or a
/// config key, named in the error): `30d`, `12h`, `90s`, `1h 30m`,
/// `250ms`, or a bare number of days (`30` is `30d`), within `range`.
pub fn parse_duration(source: &str, s: &str, range: DurationRange) -> Result<Duration, InputError> {
    let t = s.trim();
    let hint = "write e.g. 30d, 12h, 90s, or a bare number of days";
    let out_of_range = || {
        err(format!(
            "{source} {} is out of range: give {}",
            shown(s),
            range.describe()
        ))
    };
    if t.is_empty() {
        return Err(err(format!("{source} is empty: {hint}")));
    }
    if t.starts_with('-') {
        return Err(err(format!(
            "{source} {} cannot be negative: give {}",
            shown(s),
            range.describe()
        )));
    }
    let d = if t.bytes().all(|b| b.is_ascii_digit()) {
        let days: u64 = t.parse().map_err(|_| out_of_range())?;
        secs(days.checked_mul(DAY).ok_or_else(out_of_range)?)
    } else {
        match humantime::parse_duration(t) {
            Ok(d) => d,
            Err(humantime::DurationError::NumberOverflow) => return Err(out_of_range()),
            Err(e) => {
                return Err(err(format!(
                    "{source} {} is not a duration ({e}): {hint}",
                    shown(s)
                )));
            }
        }
    };
    if d < range.min || d > range.max {
        return Err(out_of_range());
    }
    Ok(d)
}

/// Parses a duration into whole days (partial days dropped), within `range`.
pub fn parse_days(source: &str, s: &str, range: DurationRange) -> Result<i64, InputError> {
    let d = parse_duration(source, s, range)?;
    // At most 36500 days by the range: fits.
    Ok(i64::try_from(d.as_secs() / DAY).unwrap_or(i64::MAX))
}

/// Parses a whole number from `source` within `range`.
pub fn parse_count(source: &str, s: &str, range: CountRange) -> Result<u64, InputError> {
    let t = s.trim();
    let out_of_range = || {
        err(format!(
            "{source} {} is out of range: give a whole number from {} to {}",
            shown(s),
            range.min,
            range.max
        ))
    };
    if t.is_empty() {
        return Err(err(format!(
            "{source} is empty: give a whole number from {} to {}",
            range.min, range.max
        )));
    }
    let digits = t.strip_prefix('+').unwrap_or(t);
    if t.starts_with('-') && t.len() > 1 && t[1..].bytes().all(|b| b.is_ascii_digit()) {
        return Err(out_of_range());
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) || digits.is_empty() {
        return Err(err(format!(
            "{source} {} is not a whole number: give one from {} to {}",
            shown(s),
            range.min,
            range.max
        )));
    }
    let n: u64 = digits.parse().map_err(|_| out_of_range())?;
    if n < range.min || n > range.max {
        return Err(out_of_range());
    }
    Ok(n)
}

/// Checks a number that was already read (a config file integer).
pub fn check_count(source: &str, n: i128, range: CountRange) -> Result<u64, InputError> {
    u64::try_from(n)
        .ok()
        .filter(|n| (range.min..=range.max).contains(n))
        .ok_or_else(|| {
            err(format!(
                "{source} {n} is out of range: give a whole number from {} to {}",
                range.min, range.max
            ))
        })
}

/// `--threads N` as clap reads it (the flag is named by clap).
pub fn threads_flag(s: &str) -> Result<usize, String> {
    parse_count("--threads", s, THREADS)
        .map(|n| n as usize)
        .map_err(|_| {
            format!(
                "give a whole number from {} to {}",
                THREADS.min, THREADS.max
            )
        })
}

/// The worker threads: the flag, else GBDFL_THREADS, else one per core
/// (at most [`THREADS`]'s maximum).
pub fn threads(
    flag: Option<usize>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<usize, InputError> {
    if let Some(n) = flag {
        return Ok(n);
    }
    if let Some(v) = env("GBDFL_THREADS").filter(|v| !v.trim().is_empty()) {
        return parse_count("GBDFL_THREADS", &v, THREADS).map(|n| n as usize);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(cores.clamp(THREADS.min as usize, THREADS.max as usize))
}

/// Parses a calendar day `YYYY-MM-DD` with a four-digit year.
pub fn parse_date(source: &str, s: &str) -> Result<NaiveDate, InputError> {
    let t = s.trim();
    let b = t.as_bytes();
    let shaped = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    let bad = || {
        err(format!(
            "{source} {} is not a date: write YYYY-MM-DD with a four-digit year, e.g. 2026-12-03",
            shown(s)
        ))
    };
    if !shaped {
        return Err(bad());
    }
    NaiveDate::parse_from_str(t, "%Y-%m-%d").map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_bare_number_is_days_everywhere() {
        assert_eq!(
            parse_duration("--stale", "30", STALE).unwrap(),
            secs(30 * DAY)
        );
        assert_eq!(parse_days("--within", "30", WITHIN).unwrap(), 30);
        assert_eq!(parse_days("--within", "90d", WITHIN).unwrap(), 90);
        assert_eq!(
            parse_duration("--older-than", "0s", RETENTION).unwrap(),
            Duration::ZERO
        );
    }

    #[test]
    fn out_of_range_names_source_value_and_range() {
        let e = parse_duration("--older-than", "1000000y", RETENTION).unwrap_err();
        assert_eq!(
            e.message,
            "--older-than \"1000000y\" is out of range: give 0s to 36500d"
        );
        let e = parse_duration("GBDFL_TIMEOUT", "99999999999999s", TIMEOUT).unwrap_err();
        assert!(e.message.contains("GBDFL_TIMEOUT"), "{e}");
        assert!(e.message.contains("100ms to 1h"), "{e}");
        let e = parse_count("GBDFL_THREADS", "100000", THREADS).unwrap_err();
        assert_eq!(
            e.message,
            "GBDFL_THREADS \"100000\" is out of range: give a whole number from 1 to 64"
        );
        let e = parse_duration("--stale", "-3", STALE).unwrap_err();
        assert!(e.message.contains("cannot be negative"), "{e}");
        let e = parse_duration("--stale", "", STALE).unwrap_err();
        assert!(e.message.contains("is empty"), "{e}");
    }

    #[test]
    fn long_input_is_cut() {
        let long = "9".repeat(100_000);
        let e = parse_count("GBDFL_THREADS", &long, THREADS).unwrap_err();
        assert!(e.message.len() < 200, "{e}");
        assert!(e.message.contains("(100000 characters)"), "{e}");
    }

    #[test]
    fn dates_need_four_digit_years() {
        assert_eq!(
            parse_date("--as-of", "2026-12-03").unwrap(),
            NaiveDate::from_ymd_opt(2026, 12, 3).unwrap()
        );
        for bad in [
            "26-12-03",
            "0026-12-3",
            "2026-13-01",
            "+2026-12-03",
            "",
            "2026-02-30",
        ] {
            let e = parse_date("--as-of", bad).unwrap_err();
            assert!(e.message.contains("e.g. 2026-12-03"), "{bad}: {e}");
        }
    }

    #[test]
    fn bounds_are_written_as_in_the_readme() {
        assert_eq!(format_bound(CENTURY), "36500d");
        assert_eq!(format_bound(ms(100)), "100ms");
        assert_eq!(format_bound(secs(3600)), "1h");
        assert_eq!(format_bound(Duration::ZERO), "0s");
    }

    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u128>().prop_map(|n| format!("{n}s")),
            any::<u64>().prop_map(|n| format!("{n}d")),
            any::<u64>().prop_map(|n| format!("{n}ms")),
            any::<u64>().prop_map(|n| format!("{n}y")),
            any::<f64>().prop_map(|n| format!("{n}s")),
            Just("1e30s".to_owned()),
            Just(String::new()),
            Just(u64::MAX.to_string()),
            ".{0,40}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Any text: a value within its range, or an error that names the
        /// source; never a panic.
        #[test]
        fn every_parser_takes_any_text(s in any_text()) {
            for r in [MAX_AGE, TIMEOUT, RETRY] {
                match parse_duration("SRC", &s, r) {
                    Ok(d) => prop_assert!(d >= r.min && d <= r.max),
                    Err(e) => prop_assert!(e.message.starts_with("SRC"), "{}", e),
                }
            }
            let _ = parse_days("SRC", &s, WITHIN);
            for r in [MAX_RESPONSE_BYTES, RETRY_ATTEMPTS, THREADS] {
                match parse_count("SRC", &s, r) {
                    Ok(n) => prop_assert!(n >= r.min && n <= r.max),
                    Err(e) => prop_assert!(e.message.starts_with("SRC"), "{}", e),
                }
            }
            let _ = parse_date("SRC", &s);
        }
    }
}
