//! sync-svc end to end, one test binary: real servers started as an install starts them
//! (`xiaowo::testing::Stack`: the production path, the internal token set) on loopback ports
//! over fresh SQLite files (or a fresh PostgreSQL database when `XIAOWO_TEST_POSTGRES` is set),
//! called through generated clients.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and their helpers fail by panicking")]

mod helpers;
mod instances;
mod reliability;
mod retention;
mod service;
mod with_room_svc;
