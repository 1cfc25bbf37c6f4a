//! The `xiaowo` binary and its library end to end, one test binary: the real binary as a child
//! process (`xiaowo up`, `xiaowo serve`) driven by the real grpcurl and generated clients, and
//! the node started in-process over a data directory (backups, encryption, the internal token
//! file). The scale-out scenario runs only when scripts/test-scaleout.sh provides its engines.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and their helpers fail by panicking")]

mod backup;
mod browser_streams;
mod cli;
mod encryption;
mod helpers;
mod internal_token;
mod monitor_up;
mod reliability;
mod scaleout;
mod security;
mod smoke;
