//! svc-kit's own integration tests, one test binary: the database layer on both engines, and
//! the server's connection and stream limits under exhaustion.

mod db;
mod limits;
