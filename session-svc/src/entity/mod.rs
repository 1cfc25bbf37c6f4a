//! sea-orm entities; only `store.rs` uses them.

pub mod user_session;
