//! The `gbdfl` command line: clap definitions, the config file, exit codes
//! and one file per command. Everything else lives in the crates under
//! `crates/`, whose dependencies are the layering (see
//! docs/development.md): `gbdfl-core` names nothing of ours; the store
//! names only the core; the client names only the core; the service joins
//! store and client; the reports name the core and the store, never the
//! client or the service. The emulator is here only with the `dev`
//! feature (on by default, off in a production build).

pub mod cli;
pub mod config;
pub mod exit;
pub mod process;
