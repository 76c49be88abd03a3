//! Lookups and queue sync: the one crate that joins the store and the
//! client. A request is sent only after its queue row is written; an
//! answer is stored before anything is shown.

pub mod backoff;
pub mod batch_csv;
pub mod lookup;
pub mod sync;
