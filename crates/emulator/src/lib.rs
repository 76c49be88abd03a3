//! The built-in emulator of the paid GBDFL API, for `gbdfl mock-server`,
//! `gbdfl demo` and the tests.
//!
//! Rule this module keeps: it answers like the API page describes (same URL
//! path, request fields, statuses, failure reasons and HTTP errors); apart
//! from the fresh `backend_session_id` of fixture answers, every answer is a
//! function of the request, the configured "today" and the emulator's own
//! state (faults, PENDING memory); no request, however malformed, panics it.
//! It counts every request on the API path, so a test can prove that no paid
//! call was made.
//!
//! Layout: `fixtures` holds the documented table of special IINs,
//! `synthetic` the deterministic person for every other valid IIN,
//! `shape` the JSON shapes both share, `server` the HTTP side.

#![deny(missing_docs)]

pub mod dictionary;
mod fixtures;
mod server;
mod shape;
mod strategies;
mod synthetic;
#[cfg(test)]
mod tests;

use std::fmt;

pub use fixtures::{Fixture, FixtureKind, fixtures, iins};
pub use server::{Emulator, run_blocking};
pub use strategies::answer_like;
pub use synthetic::{
    dictionary_samples, synthetic_archive, synthetic_iin, synthetic_person, synthetic_response,
};

/// `n` distinct valid IINs that are not fixtures: the emulator makes up a
/// person for each (for tests and benchmarks that need many subjects).
pub fn synthetic_iins(n: usize) -> Vec<String> {
    (0u32..)
        .filter_map(|k| {
            gbdfl_core::iin::complete(&format!(
                "8806{:02}4{:04}",
                10 + (k / 10_000) % 18,
                k % 10_000
            ))
        })
        .filter(|iin| !fixtures().iter().any(|f| f.iin == iin))
        .take(n)
        .collect()
}

/// How an emulator instance behaves.
#[derive(Clone, Default)]
pub struct EmulatorConfig {
    /// If set, any other key gets 404 `Organization not found`; if `None`,
    /// any non-empty key is accepted (an empty one gets the same 404).
    pub api_key: Option<String>,
    /// "Today" for synthetic expiry dates; `None` means the local date.
    pub today: Option<chrono::NaiveDate>,
    /// Fault switches in force at start.
    pub faults: Faults,
}

// The API key is a secret: never printed, not even by the emulator.
impl fmt::Debug for EmulatorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatorConfig")
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("today", &self.today)
            .field("faults", &self.faults)
            .finish()
    }
}

/// Fault switches. Each call on the API path consumes at most one fault, in
/// field order below (rate limit, fail, drop, garbage, service error,
/// hostile, hang up); latency applies to every call, and
/// `slow_ms` to the first `slow_first`. Faulted calls still count in
/// [`Emulator::calls`] and per request, since the request was read.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Delay in milliseconds before every answer on the API path.
    pub latency_ms: u64,
    /// The next N calls get HTTP 503 `{"detail":"Service Unavailable"}`.
    pub fail_first: u32,
    /// The next N calls get HTTP 429 with `Retry-After: retry_after_secs`.
    pub rate_limit_first: u32,
    /// Seconds in `Retry-After`; 0 means 1.
    pub retry_after_secs: u64,
    /// The next N calls get 200 and headers, part of a body, then the
    /// connection is dropped.
    pub drop_first: u32,
    /// The next N calls get 200 with an HTML page instead of JSON (a
    /// gateway's error page answering in the service's place).
    pub garbage_first: u32,
    /// The next N well-formed calls get 200 FAILED, SERVICE_ERROR "Can`t
    /// connect to GBDFL service" (biometric.kz could not reach GBDFL).
    pub service_error_first: u32,
    /// The next N calls wait `slow_ms` more before their (normal) answer:
    /// slower than the client's timeout, the answer never arrives.
    pub slow_first: u32,
    /// Extra delay in milliseconds for the `slow_first` calls.
    pub slow_ms: u64,
    /// The next N calls get 200 with the hostile answer chosen by `hostile`.
    pub hostile_first: u32,
    /// Which hostile answer `hostile_first` sends.
    pub hostile: Hostile,
    /// The next N calls are read in full, then the connection is closed
    /// without a byte of answer.
    pub hang_up_first: u32,
}

/// Answers a malicious or broken server might send, all with HTTP 200.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Hostile {
    /// A 100 MiB JSON body (one endless surname), streamed without a length.
    #[default]
    HugeBody,
    /// A VALID answer for the requested IIN with 10,000 documents.
    ManyDocuments,
    /// A VALID answer whose `result_json` is nested 100,000 arrays deep.
    DeepNesting,
    /// A VALID answer whose surname is not UTF-8.
    InvalidUtf8,
}
