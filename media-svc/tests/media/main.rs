//! media-svc end to end, one test binary: session, room, sync and media services started as an
//! install starts them (`xiaowo::testing::Stack`: the production path, the internal token set)
//! on a loopback port over fresh SQLite files (or PostgreSQL databases when
//! `XIAOWO_TEST_POSTGRES` is set), real ffprobe/ffmpeg, media made by ffmpeg at test time.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and their helpers fail by panicking")]

mod conversion;
mod library;
mod serving;
mod subtitles;
mod support;
mod uploads;
