//! The Individual Identification Number (IIN) of Kazakhstan.
//!
//! Rule this module keeps: an [`Iin`] value is either a number that passed every
//! published check, or one the operator explicitly let through with
//! `--skip-iin-check` (and that fact travels with it). Its `Debug` and `Display`
//! never print the full number; only [`Iin::as_str`] does, on purpose.

use std::fmt;

use chrono::NaiveDate;
use zeroize::Zeroize;

/// Why a string is not a valid IIN. Each variant names the rule that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IinError {
    /// Not 12 characters long: the number of characters given.
    #[error("an IIN has exactly 12 digits, this one has {0} characters")]
    Length(usize),
    #[error("an IIN has only digits 0-9, found {0:?} at position {1}")]
    /// A character other than 0-9, and its position from 1.
    NotDigit(char, usize),
    /// The 7th digit, which encodes the century of birth and the sex, is
    /// not 1 to 6.
    #[error("the 7th digit (century and sex) must be 1 to 6, found {0}")]
    CenturyDigit(u8),
    /// The first six digits (YYMMDD) are no calendar day in the century of
    /// the 7th digit.
    #[error("the first six digits must be a real birth date YYMMDD, {0} is not")]
    BirthDate(String),
    #[error(
        "the check digit (12th) does not match the other 11 digits: check the number against the subject's ID document (a typo in any digit gives this)"
    )]
    /// The 12th digit is not the one the published check-digit algorithm
    /// gives for the first 11: a typo, most often.
    CheckDigit {
        /// The check digit the first 11 digits call for.
        expected: u8,
        /// The 12th digit given.
        found: u8,
    },
    /// Both passes of the check-digit algorithm give 10: no IIN is issued
    /// with these first 11 digits.
    #[error("no check digit can be computed for these 11 digits, so no such IIN is issued")]
    NoCheckDigit,
    #[error("its birth date {0} is in the future, so no such IIN is issued yet")]
    /// The birth date it encodes is after the day it was checked on
    /// ([`Iin::check_born_by`]).
    BornInFuture(NaiveDate),
}

/// Sex as encoded in the 7th digit (odd: male, even: female).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sex {
    /// An odd 7th digit.
    Male,
    /// An even 7th digit.
    Female,
}

/// A validated (or knowingly unvalidated) IIN.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Iin {
    digits: String,
    checked: bool,
}

impl Drop for Iin {
    fn drop(&mut self) {
        self.digits.zeroize();
    }
}

const W1: [u32; 11] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
const W2: [u32; 11] = [3, 4, 5, 6, 7, 8, 9, 10, 11, 1, 2];

/// The published check digit for the first 11 digits, or `None` when the
/// second pass also gives 10 (no IIN is issued with such a prefix).
pub fn check_digit(first11: &[u8; 11]) -> Option<u8> {
    let sum = |w: &[u32; 11]| -> u32 {
        first11
            .iter()
            .zip(w)
            .map(|(&d, &w)| u32::from(d) * w)
            .sum::<u32>()
            % 11
    };
    let first = sum(&W1);
    let c = if first == 10 { sum(&W2) } else { first };
    (c != 10).then_some(c as u8)
}

fn digits_of(s: &str) -> Result<Vec<u8>, IinError> {
    let count = s.chars().count();
    if count != 12 {
        return Err(IinError::Length(count));
    }
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            c.to_digit(10)
                .map(|d| d as u8)
                .ok_or(IinError::NotDigit(c, i + 1))
        })
        .collect()
}

fn birth_date_of(d: &[u8]) -> Result<NaiveDate, IinError> {
    let century = match d[6] {
        1 | 2 => 1800,
        3 | 4 => 1900,
        5 | 6 => 2000,
        other => return Err(IinError::CenturyDigit(other)),
    };
    let yy = i32::from(d[0] * 10 + d[1]);
    let mm = u32::from(d[2] * 10 + d[3]);
    let dd = u32::from(d[4] * 10 + d[5]);
    NaiveDate::from_ymd_opt(century + yy, mm, dd)
        .ok_or_else(|| IinError::BirthDate(d[..6].iter().map(|x| (b'0' + x) as char).collect()))
}

impl Iin {
    /// Parses and validates: 12 digits, 7th digit 1-6, a real YYMMDD date, the
    /// check digit. Surrounding whitespace is ignored.
    pub fn parse(s: &str) -> Result<Iin, IinError> {
        let s = s.trim();
        let d = digits_of(s)?;
        birth_date_of(&d)?;
        let first11: [u8; 11] = d[..11].try_into().expect("12 digits");
        let expected = check_digit(&first11).ok_or(IinError::NoCheckDigit)?;
        if expected != d[11] {
            return Err(IinError::CheckDigit {
                expected,
                found: d[11],
            });
        }
        Ok(Iin {
            digits: s.to_owned(),
            checked: true,
        })
    }

    /// For the rare real number that fails the published checks: only 12
    /// digits are required. The returned value remembers it was not checked.
    pub fn parse_unchecked(s: &str) -> Result<Iin, IinError> {
        let s = s.trim();
        digits_of(s)?;
        let checked = Iin::parse(s).is_ok();
        Ok(Iin {
            digits: s.to_owned(),
            checked,
        })
    }

    /// Parses with or without the published checks.
    pub fn parse_with(s: &str, skip_check: bool) -> Result<Iin, IinError> {
        if skip_check {
            Iin::parse_unchecked(s)
        } else {
            Iin::parse(s)
        }
    }

    /// Refuses a number whose birth date is after `today` (the caller's
    /// clock); callers skip this with the other checks (`--skip-iin-check`).
    pub fn check_born_by(&self, today: NaiveDate) -> Result<(), IinError> {
        match self.birth_date() {
            Some(born) if born > today => Err(IinError::BornInFuture(born)),
            _ => Ok(()),
        }
    }

    /// The full 12 digits. Personal data: callers decide where it may go.
    pub fn as_str(&self) -> &str {
        &self.digits
    }

    /// Whether the number passed every published check.
    pub fn is_checked(&self) -> bool {
        self.checked
    }

    /// The birth date encoded in the number, if it is a real date.
    pub fn birth_date(&self) -> Option<NaiveDate> {
        birth_date_of(
            self.digits
                .as_bytes()
                .iter()
                .map(|b| b - b'0')
                .collect::<Vec<_>>()
                .as_slice(),
        )
        .ok()
    }

    /// The sex encoded in the 7th digit, if it is 1-6.
    pub fn sex(&self) -> Option<Sex> {
        match self.digits.as_bytes()[6] - b'0' {
            1 | 3 | 5 => Some(Sex::Male),
            2 | 4 | 6 => Some(Sex::Female),
            _ => None,
        }
    }

    /// The masked form used in listings and logs: `950215*****4`.
    pub fn masked(&self) -> String {
        mask(&self.digits)
    }
}

/// Masks any IIN-like string: first six and last one shown, the rest starred.
pub fn mask(s: &str) -> String {
    if s.is_ascii() {
        // The usual case, without a vector of chars.
        let n = s.len();
        if n < 8 {
            return "*".repeat(n);
        }
        let mut out = String::with_capacity(n);
        out.push_str(&s[..6]);
        out.extend(std::iter::repeat_n('*', n - 7));
        out.push_str(&s[n - 1..]);
        return out;
    }
    mask_chars(s)
}

/// [`mask`] of any text, character by character.
fn mask_chars(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() < 8 {
        return "*".repeat(chars.len());
    }
    let n = chars.len();
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| if i < 6 || i == n - 1 { *c } else { '*' })
        .collect()
}

impl fmt::Debug for Iin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Iin({})", self.masked())
    }
}

impl fmt::Display for Iin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Completes 11 digits with their check digit, for fixtures and synthetic
/// data. `None` when no check digit exists for that prefix.
pub fn complete(first11: &str) -> Option<String> {
    let d: Vec<u8> = first11
        .chars()
        .map(|c| c.to_digit(10).map(|d| d as u8))
        .collect::<Option<_>>()?;
    let arr: [u8; 11] = d.try_into().ok()?;
    let c = check_digit(&arr)?;
    Some(format!("{first11}{c}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_page_example_fails_check_digit() {
        assert!(matches!(
            Iin::parse("950215301234"),
            Err(IinError::CheckDigit { .. })
        ));
    }

    #[test]
    fn a_birth_date_after_today_is_refused() {
        let iin = Iin::parse("530301662085").unwrap();
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert_eq!(
            iin.check_born_by(day(2026, 12, 3)),
            Err(IinError::BornInFuture(day(2053, 3, 1)))
        );
        assert_eq!(iin.check_born_by(day(2053, 3, 1)), Ok(()));
    }

    #[test]
    fn completes_and_validates() {
        let iin = complete("95021530123").expect("has a check digit");
        let parsed = Iin::parse(&iin).unwrap();
        assert_eq!(parsed.birth_date(), NaiveDate::from_ymd_opt(1995, 2, 15));
        assert_eq!(parsed.sex(), Some(Sex::Male));
        assert!(parsed.is_checked());
    }

    #[test]
    fn second_weights_used_when_first_sum_is_ten() {
        // Find a prefix whose first pass gives 10 and check the second pass is used.
        let mut found = false;
        for n in 0..2000u32 {
            let p = format!("900101300{:02}", n % 100);
            let d: Vec<u8> = p.bytes().map(|b| b - b'0').collect();
            let arr: [u8; 11] = d.clone().try_into().unwrap();
            let s1: u32 = arr
                .iter()
                .zip(W1)
                .map(|(&d, w)| u32::from(d) * w)
                .sum::<u32>()
                % 11;
            if s1 == 10 {
                let s2: u32 = arr
                    .iter()
                    .zip(W2)
                    .map(|(&d, w)| u32::from(d) * w)
                    .sum::<u32>()
                    % 11;
                assert_eq!(check_digit(&arr), (s2 != 10).then_some(s2 as u8));
                found = true;
            }
        }
        assert!(found);
    }

    #[test]
    fn names_the_failed_rule() {
        assert_eq!(Iin::parse("12345"), Err(IinError::Length(5)));
        assert_eq!(Iin::parse("95021530123x"), Err(IinError::NotDigit('x', 12)));
        assert_eq!(Iin::parse("950215701234"), Err(IinError::CenturyDigit(7)));
        assert!(matches!(
            Iin::parse("951315301234"),
            Err(IinError::BirthDate(_))
        ));
        assert!(matches!(
            Iin::parse("950230301234"),
            Err(IinError::BirthDate(_))
        ));
    }

    #[test]
    fn masking_ascii_and_other_text_agree() {
        // The ASCII fast path against the general one, on every length.
        for n in 0..20 {
            let s: String = "0123456789abcdefghij"[..n].into();
            assert_eq!(mask(&s), mask_chars(&s), "{s:?}");
        }
        assert_eq!(mask("950215301234"), "950215*****4");
        assert_eq!(mask("ЖЖЖЖЖЖЖЖЖ"), "ЖЖЖЖЖЖ**Ж");
    }

    #[test]
    fn masks_and_never_debug_prints_digits() {
        let iin = Iin::parse(&complete("95021530123").unwrap()).unwrap();
        assert_eq!(iin.masked(), format!("950215*****{}", &iin.as_str()[11..]));
        assert!(!format!("{iin:?}").contains(iin.as_str()));
    }

    #[test]
    fn unchecked_keeps_flag() {
        let iin = Iin::parse_unchecked("950215301234").unwrap();
        assert!(!iin.is_checked());
        assert!(Iin::parse_unchecked("95021530123").is_err());
    }
}
