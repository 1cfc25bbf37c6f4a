//! sea-orm entities; only `store.rs` uses them.

pub mod conversion;
pub mod media_item;
pub mod room_subtitle_default;
pub mod subtitle_track;
pub mod upload;
