//! session-svc end to end, one test binary: a real server started as an install starts it
//! (`xiaowo::testing::Stack`: the production path, the internal token set) on a loopback port
//! over a fresh SQLite file (or a fresh PostgreSQL database when `XIAOWO_TEST_POSTGRES` is
//! set), called through generated clients and through the validator the other services use.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and their helpers fail by panicking")]

mod changes;
mod helpers;
mod sessions;
