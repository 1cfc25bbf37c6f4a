//! svc-kit's own integration tests, one test binary: the database layer on both engines, and
//! the server's connection and stream limits under exhaustion.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and their helpers fail by panicking")]

mod db;
mod limits;
