#![deny(missing_docs)]

//! Lookups and queue sync: the one crate that joins the store and the
//! client.
//!
//! The modules follow a request: [`lookup`] answers it from the cache or
//! makes the paid call through the queue; [`sync`] sends what is queued,
//! waiting [`backoff`] between tries of one item; [`batch_csv`] reads a
//! batch file into requests.
//!
//! Rules this crate keeps, and what holds each:
//! - it reaches neither the reports nor the emulator (`tests/cli/layers.rs`);
//! - a request is queued and claimed in the database before it is sent, so
//!   no two processes pay for it (`two_syncs_at_once_send_every_item_exactly_once`,
//!   `a_fetch_racing_a_sync_never_pays_twice`,
//!   `sigkill_at_random_moments_never_pays_twice`);
//! - a request is sent again on its own only when it provably never reached
//!   the service; else it is in doubt until the operator says
//!   (`tests/cli/billing.rs`);
//! - an answer reaches the caller only once it is committed with its audit
//!   entry; when the commit fails, the answer is kept in a sealed spill file
//!   and the error says so (the compiler: [`lookup::Attempt`] comes only from
//!   past the commit; `a_paid_answer_the_full_database_cannot_take_is_kept_and_stored_later`).

pub mod backoff;
pub mod batch_csv;
pub mod lookup;
pub mod org;
pub mod sync;
