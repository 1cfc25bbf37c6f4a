//! sea-orm entities; only `store.rs` uses them.

pub mod closed_room;
pub mod member_cursor;
pub mod message;
pub mod moderation_action;
pub mod mute;
pub mod room_sequence;
