//! sea-orm entities; only `store.rs` uses them.

pub mod alert;
pub mod metric_sample;
pub mod notification;
