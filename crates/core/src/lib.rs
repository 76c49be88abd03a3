//! The things every part of gbdfl shares and no part owns: the IIN, the
//! GBDFL answer model, the document summary, the expiry rules, the ranges
//! of every parsed value. No I/O beyond file-permission checks, no threads
//! of its own, no SQLite, no HTTP, no clap: the store, the client, the
//! service and the reports all build on it, and the compiler keeps it from
//! naming any of them.

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
