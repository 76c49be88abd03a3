//! The exit codes of gbdfl (docs/reference.md, "Exit codes"). Here, not in
//! the CLI, because the audit trail records the code of every lookup.
//!
//! Rule: a code, once documented, keeps its meaning; scripts at the
//! branches depend on it. The integration tests (tests/cli) expect each
//! code by its number, and a code no longer given stays here so its
//! number is not given to another meaning.

/// How a gbdfl process ended, as its exit status and in the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// Done; for fetch, a VALID record was fetched or found in the cache.
    Ok = 0,
    /// An unexpected failure (I/O error, a bug). The message says what.
    Failure = 1,
    /// Invalid input: arguments, IIN, session id, config file, CSV; for
    /// `import`, an unreadable file or lines that were skipped (the rest was
    /// stored).
    InvalidInput = 2,
    /// No record for that IIN in the cache (`show`, `history`).
    NotCached = 3,
    /// The service refused the request (HTTP 400/404: subscription,
    /// organisation, session).
    Refused = 4,
    /// The service answered, but not with a VALID record (INVALID,
    /// NOT_FOUND, TIMEOUT, FAILED, UNAPPROVED, ERROR_ACCEPTED, ...).
    NotValid = 5,
    /// No longer given: an unreachable or busy service queues the request
    /// (`Queued`, 11). Kept so the number is never reused for another meaning.
    #[allow(dead_code)]
    Unreachable = 6,
    /// No longer given: an answer that is not a GBDFL answer is kept for
    /// inspection and leaves its request in doubt (`InDoubt`, 14). Kept so
    /// the number is never reused for another meaning.
    #[allow(dead_code)]
    Garbled = 7,
    /// The key file is missing, unreadable, not a regular file, open to the
    /// group or others, or wrong for the database; or stored data failed
    /// its integrity check.
    KeyOrIntegrity = 8,
    /// The database cannot be used: missing, not a gbdfl database, too new,
    /// read-only, busy (another process held its write lock for longer
    /// than busy_timeout), or a write to it failed (disk full, file size
    /// limit).
    Database = 9,
    /// The answer is not ready yet (PENDING): the request is queued, and
    /// `gbdfl sync` asks again.
    Pending = 10,
    /// The service could not be reached or was busy (connection, timeout,
    /// HTTP 5xx or 429, SERVICE_ERROR): the request is queued, and `gbdfl
    /// sync` sends it. Also: requests remain queued after `sync`.
    Queued = 11,
    /// The request's 3-hour window passed before it could be sent: it was
    /// not sent, and the subject must go through the checks again.
    Expired = 12,
    /// The network between gbdfl and the service is set up wrongly: the
    /// service's certificate is not trusted (or expired, or for another
    /// host), or the proxy refused or asked for credentials. Nothing was sent;
    /// the queue is as it was; the message names the setting that fixes it.
    NetworkConfig = 13,
    /// A request may have reached the service and been billed, but no answer
    /// was recorded (timeout after sending, connection dropped after sending,
    /// an unreadable answer, gbdfl stopped mid-call). It is IN_DOUBT: never
    /// sent again on its own; the operator decides (`sync --resend-in-doubt`
    /// or `queue drop`).
    InDoubt = 14,
}

impl ExitCode {
    /// The number the process exits with.
    pub fn code(self) -> u8 {
        self as u8
    }
}
