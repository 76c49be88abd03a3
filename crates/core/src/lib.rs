//! The things every part of gbdfl shares and no part owns: the IIN, the
//! GBDFL answer model, the document summary, the expiry rules, the ranges
//! of every parsed value, sessions, times and the clock.
//!
//! Rules this crate keeps, and what keeps them:
//! - the store, the client, the service and the reports all build on it,
//!   and it names none of them (tests/cli/layers.rs);
//! - it reaches no SQLite, no HTTP, no clap and no thread pool: the
//!   reports' row arena, which sorts and lays rows out on workers, lives
//!   in `gbdfl-report` (tests/cli/layers.rs).

#![deny(missing_docs)]

pub mod api;
pub mod clock;
pub mod exit_code;
pub mod expiry;
pub mod fsutil;
pub mod iin;
pub mod limits;
pub mod os_user;
pub mod private_file;
pub mod session;
pub mod summary;
pub mod time;
