//! Channels to peer services. Every internal call has a deadline, so that a peer that hangs
//! turns into a prompt `UNAVAILABLE`/`DEADLINE_EXCEEDED` instead of a stuck request.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

/// A lazily connecting channel to `url` (`http://host:port`): the peer may start after us.
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
