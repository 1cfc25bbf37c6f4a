//! sea-orm entities; only `store.rs` uses them.

pub mod conversion;
pub mod media_item;
pub mod upload;
