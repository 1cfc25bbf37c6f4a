//! The other services, as a service sees them: channels with a deadline on every call, and the
//! two typed clients that several services share — [`session`] (who is calling) and [`room`]
//! (what they may do in a room, room activity and room events). These are the only parts of
//! svc-kit that know another service's API; the peer's protobuf stays inside them.

pub mod room;
pub mod session;

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

/// Channels to the services a service may call. They connect lazily, so a peer may start after
/// the service that calls it, and a service that calls nobody (session-svc, monitor-svc) never
/// opens them.
#[derive(Debug, Clone)]
pub struct Peers {
    /// session-svc: validating callers, display names, session changes.
    pub session: Channel,
    /// room-svc: access checks, room activity, room events.
    pub room: Channel,
    /// sync-svc: what a room's queue and timeline hold (media-svc's access rule).
    pub sync: Channel,
}

/// A lazily connecting channel to `url` (`http://host:port`): the peer may start after us.
/// Every call on it fails after `deadline`, so that a peer that hangs turns into a prompt
/// `UNAVAILABLE`/`DEADLINE_EXCEEDED` instead of a stuck request.
///
/// # Errors
/// When `url` is not a valid URI.
pub fn channel(url: &str, deadline: Duration) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(deadline)
        .timeout(deadline)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .connect_lazy())
}
