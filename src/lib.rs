//! gbdfl: a client for the GBDFL service of biometric.kz and an encrypted
//! local cache of every lookup. The binary, the integration tests and the
//! demo all use this library.
//!
//! Who may use whom (the imports show it): `crypto` knows nothing of SQLite,
//! clap or HTTP; `store` knows crypto but no clap and no HTTP; `client`
//! knows no SQLite, and takes its proxy and trust roots from `network`
//! (which `doctor` uses too, and which knows no store); `lookup` is the
//! one library module joining store and client (and `sync`, which runs it
//! from several threads over the queue); `render` and the reports only
//! read; `cli` ties everything together.

pub mod api;
pub mod archive;
pub mod batch_csv;
pub mod cli;
pub mod client;
pub mod config;
pub mod crypto;
pub mod emulator;
pub mod exit;
pub mod expiry;
pub mod fsutil;
pub mod fuzzing;
pub mod html;
pub mod iin;
pub mod keyfile;
pub mod limits;
pub mod lookup;
pub mod network;
pub mod process;
pub mod render;
pub mod report;
pub mod store;
pub mod summary;
pub mod sync;
