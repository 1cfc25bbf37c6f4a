//! What every Xiaowo service is built from, so that each crate holds only its domain.
//!
//! * The runtime: [`service`] (the one entry shape, `build(config, Deps, &mut Assembly)`),
//!   [`server`] (one tonic server per process: gRPC, gRPC-web, reflection, health, `/metrics`,
//!   static files, bounded shutdown), [`db`] (connect and migrate, SQLite or PostgreSQL),
//!   [`metrics`], [`auth`] (the [`auth::Guard`] layer that authenticates every call once),
//!   [`id`] (room and user ids as types, checked once where they come in),
//!   [`feed`] (serving and following change feeds), [`bus`] (the NATS broker between
//!   instances), [`channels`] (a broadcast channel per room inside a process), [`clock`],
//!   [`ratelimit`], [`address`] (client addresses behind proxies),
//!   [`connections`] (connections per address, and what a request knows of its connection),
//!   [`sendfile`] (files from the page cache to HTTP/1.1 connections), [`status`] and [`text`]
//!   (input validation), and [`shutdown`].
//! * The contracts several services share, and so the only domain knowledge here: [`peer`]
//!   (the clients of session-svc's and room-svc's internal APIs that room-scoped services all
//!   need) and [`retention`] (one policy block for every service's periods, each service
//!   enforcing its own tables).
//! * With the `testing` feature (dev-dependencies only, never in the binary): [`testing`], the
//!   pieces of the integration-test harness that need no service.

pub mod address;
pub mod auth;
pub mod bus;
pub mod channels;
pub mod clock;
pub mod connections;
pub mod db;
pub mod feed;
pub mod id;
pub mod metrics;
pub mod peer;
pub mod ratelimit;
pub mod retention;
pub mod sendfile;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod status;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod text;
pub mod web_stream;
