//! The exit codes of gbdfl: one documented enum (docs/reference.md, "Exit codes"),
//! and the mapping from every library error to one of them.
//!
//! Rule this module keeps: a code, once documented, keeps its meaning; scripts
//! at the branches depend on it.

use std::fmt;

use crate::config::ConfigError;
use gbdfl_client::ClientError;
use gbdfl_core::iin::IinError;
use gbdfl_service::batch_csv::BatchCsvError;
use gbdfl_store::StoreError;
use gbdfl_store::keyfile::KeyFileError;

pub use gbdfl_core::exit_code::ExitCode;

/// An error that carries its exit code: for outcomes that are not library
/// errors (a negative answer, nothing in the cache).
#[derive(Debug)]
pub struct Exit {
    pub code: ExitCode,
    pub message: String,
}

impl Exit {
    pub fn new(code: ExitCode, message: impl Into<String>) -> Exit {
        Exit {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// The exit code of a store error.
fn store_code(e: &StoreError) -> ExitCode {
    match e {
        e if e.is_key_or_integrity() => ExitCode::KeyOrIntegrity,
        StoreError::NotInitialised(_)
        | StoreError::AlreadyInitialised(_)
        | StoreError::NotADatabase(_)
        | StoreError::TooNew { .. }
        | StoreError::ReadOnly(_)
        | StoreError::WriteFailed(_)
        | StoreError::Busy { .. }
        | StoreError::NoRoom { .. }
        | StoreError::Spilled { .. } => ExitCode::Database,
        _ => ExitCode::Failure,
    }
}

/// The exit code for an error chain: the first error in it that gbdfl knows.
pub fn code_for(err: &anyhow::Error) -> ExitCode {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<Exit>() {
            return e.code;
        }
        if cause.downcast_ref::<IinError>().is_some()
            || cause.downcast_ref::<ConfigError>().is_some()
            || cause.downcast_ref::<BatchCsvError>().is_some()
            || cause
                .downcast_ref::<gbdfl_core::limits::InputError>()
                .is_some()
        {
            return ExitCode::InvalidInput;
        }
        if cause.downcast_ref::<ClientError>().is_some() {
            return ExitCode::InvalidInput;
        }
        // Every key file problem, reading or creating it, is one code.
        if cause.downcast_ref::<KeyFileError>().is_some() {
            return ExitCode::KeyOrIntegrity;
        }
        if let Some(e) = cause.downcast_ref::<StoreError>() {
            return store_code(e);
        }
        if let Some(e) = cause.downcast_ref::<gbdfl_central::CentralError>() {
            return match e {
                gbdfl_central::CentralError::Store(s) => store_code(s),
                e => e.exit_code(),
            };
        }
    }
    ExitCode::Failure
}

/// Whether the error is a closed pipe on output (`gbdfl ... | head`): not a failure.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
