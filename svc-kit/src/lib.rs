//! The small runtime that every Xiaowo service shares and nothing domain-specific: connecting
//! and migrating a database, assembling one tonic server (gRPC, gRPC-web, reflection, health,
//! `/metrics`, static files), the request metrics layer, caller identity (session tokens
//! validated by session-svc, the admin token), room access and events from room-svc, shared input validation, an injectable clock,
//! the retention policy with its batched pruning, and signal-driven shutdown.

pub mod address;
pub mod auth;
pub mod bus;
pub mod clock;
pub mod config;
mod connections;
pub mod db;
pub mod feed;
pub mod metrics;
pub mod peer;
pub mod ratelimit;
pub mod retention;
pub mod rooms;
pub mod server;
pub mod shutdown;
pub mod status;
pub mod testing;
pub mod text;
