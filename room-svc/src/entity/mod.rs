//! sea-orm entities; only `store.rs` uses them.

pub mod audit_log;
pub mod room;
pub mod room_ban;
pub mod room_member;
