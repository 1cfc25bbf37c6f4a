//! Which client a request came from, for limits kept per address (session creation, room
//! creation, password guessing). Behind nginx every TCP connection comes from nginx, so the
//! address nginx saw is read from `X-Forwarded-For` — but only when the TCP peer is a proxy
//! the operator trusts, or any client could claim any address.

use std::net::IpAddr;

/// The client's address, put on every request by the server (see [`resolve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddress(pub IpAddr);

impl ClientAddress {
    /// The address of the client behind `request`, when the server recorded one.
    #[must_use]
    pub fn of<T>(request: &tonic::Request<T>) -> Option<IpAddr> {
        request.extensions().get::<Self>().map(|address| address.0)
    }

    /// The address as a limiter key; requests without one share the key `unknown`.
    #[must_use]
    pub fn key_of<T>(request: &tonic::Request<T>) -> String {
        Self::of(request).map_or_else(|| "unknown".to_owned(), |address| address.to_string())
    }
}

/// The client behind a connection from `peer`: `peer` itself unless it is one of `trusted`;
/// then the nearest address in `X-Forwarded-For` (read from the right, where each proxy
/// appends the address it saw) that is not a trusted proxy. An entry that does not parse stops
/// the walk at the last trusted hop, which a client cannot forge.
#[must_use]
pub fn resolve(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpAddr]) -> IpAddr {
    let is_trusted = |address: &IpAddr| trusted.contains(&address.to_canonical());
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    for entry in forwarded_for.unwrap_or_default().rsplit(',') {
        let Ok(address) = entry.trim().parse::<IpAddr>() else { break };
        client = address.to_canonical();
        if !is_trusted(&client) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::resolve;
    use std::net::IpAddr;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|_| unreachable!("test address"))
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let trusted = [ip("127.0.0.1"), ip("::1")];
        // A direct client cannot name another address.
        assert_eq!(resolve(ip("203.0.113.7"), Some("198.51.100.1"), &trusted), ip("203.0.113.7"));
        // Behind the proxy: the address it appended, not what the client put before it.
        assert_eq!(resolve(ip("127.0.0.1"), Some("10.9.9.9, 198.51.100.1"), &trusted), ip("198.51.100.1"));
        // A chain of trusted proxies is walked through.
        assert_eq!(resolve(ip("::1"), Some("198.51.100.1, 127.0.0.1"), &trusted), ip("198.51.100.1"));
        // Nothing forwarded, or garbage: the proxy itself.
        assert_eq!(resolve(ip("127.0.0.1"), None, &trusted), ip("127.0.0.1"));
        assert_eq!(resolve(ip("127.0.0.1"), Some("not an address"), &trusted), ip("127.0.0.1"));
        // IPv4 written as IPv6 is the same address.
        assert_eq!(resolve(ip("::ffff:127.0.0.1"), Some("198.51.100.1"), &trusted), ip("198.51.100.1"));
    }
}
