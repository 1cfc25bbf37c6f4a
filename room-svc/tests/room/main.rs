//! room-svc end to end, one test binary: real session-svc and room-svc started as an install
//! starts them (`xiaowo::testing::Stack`: the production path, the internal token set) on
//! loopback ports over fresh SQLite files (or a fresh PostgreSQL database when
//! `XIAOWO_TEST_POSTGRES` is set).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and their helpers fail by panicking")]

mod admin;
mod events;
mod helpers;
mod internal_token;
mod retention;
mod rooms;
