//! sea-orm entities; only `store.rs` uses them.

pub mod media_item;
pub mod upload;
