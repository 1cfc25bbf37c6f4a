//! sea-orm entities; only `store.rs` uses them.

pub mod closed_room;
pub mod queue_item;
pub mod room_state;
pub mod sync_log;
