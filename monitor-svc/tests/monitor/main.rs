//! monitor-svc end to end, one test binary: a real session-svc on a loopback port as the scrape
//! target, the monitor on its own port over a fresh SQLite file (or a fresh PostgreSQL database
//! when `XIAOWO_TEST_POSTGRES` is set), both started as an install starts them
//! (`xiaowo::testing::Stack`), a real SMTP server (aiosmtpd) and real HTTP receivers for the
//! webhook and the SMS gateway. A manual clock decides the time of each round, which the test
//! runs itself through the `Monitor` monitor-svc exposes.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and their helpers fail by panicking")]

mod end_to_end;
