//! media-svc's integration tests: one binary, a real stack per test (session, room, sync and
//! media services on a loopback port over SQLite files), real ffprobe/ffmpeg, media made by
//! ffmpeg at test time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_possible_truncation)]

mod library;
mod serving;
mod support;
mod uploads;
