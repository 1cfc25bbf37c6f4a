//! Short-lived playback URLs: an HMAC-SHA256 over the item, the expiry and the user the URL was
//! made for. The key comes from the install's internal token, so every instance of media-svc
//! (and a restarted one) accepts the URLs another made; without that token it is random per
//! process.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use sha2_hmac::Sha256;

type HmacSha256 = hmac::Hmac<Sha256>;

/// Signs and checks playback URLs.
#[derive(Clone)]
pub struct UrlSigner {
    key: [u8; 32],
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSigner(redacted)")
    }
}

/// The query parameters of a playback URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedQuery {
    /// Unix seconds after which the URL is refused.
    pub expires: i64,
    /// The user it was made for.
    pub user_id: String,
    /// Base64url HMAC.
    pub signature: String,
}

fn message(media_item_id: &str, expires: i64, user_id: &str) -> String {
    // Newlines cannot occur in any part (ids are UUIDs), so the parts cannot run together.
    format!("xiaowo-media-url-v1\n{media_item_id}\n{expires}\n{user_id}")
}

impl UrlSigner {
    /// A signer whose key is derived from the install's secret (the internal token).
    #[must_use]
    pub fn from_secret(secret: &str) -> Self {
        let mut key = [0_u8; 32];
        if let Ok(mut mac) = HmacSha256::new_from_slice(secret.as_bytes()) {
            mac.update(b"xiaowo media playback url key");
            key.copy_from_slice(&mac.finalize().into_bytes());
        }
        Self { key }
    }

    /// A signer with a random key: URLs die with the process.
    #[must_use]
    pub fn random() -> Self {
        Self { key: rand::random() }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length; 32 bytes is never refused.
        HmacSha256::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
    }

    /// The signature for `user_id` playing `media_item_id` until `expires` (Unix seconds).
    #[must_use]
    pub fn sign(&self, media_item_id: &str, expires: i64, user_id: &str) -> String {
        let mut mac = self.mac();
        mac.update(message(media_item_id, expires, user_id).as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// The path and query that play `media_item_id` for `user_id` until `expires`.
    #[must_use]
    pub fn url(&self, media_item_id: &str, expires: i64, user_id: &str) -> String {
        let signature = self.sign(media_item_id, expires, user_id);
        format!("/media/{media_item_id}?expires={expires}&user={user_id}&signature={signature}")
    }

    /// The HLS playlist of `media_item_id` for `user_id` until `expires`. The grant (expiry,
    /// user, signature) is a path segment, so the segment URIs the playlist names relative to
    /// itself carry it too.
    #[must_use]
    pub fn hls_url(&self, media_item_id: &str, expires: i64, user_id: &str) -> String {
        let signature = self.sign(media_item_id, expires, user_id);
        format!("/media/{media_item_id}/hls/{expires}.{user_id}.{signature}/index.m3u8")
    }

    /// Whether `query` was made by this install for `media_item_id` (in constant time).
    #[must_use]
    pub fn verify(&self, media_item_id: &str, query: &SignedQuery) -> bool {
        let Ok(presented) = URL_SAFE_NO_PAD.decode(query.signature.as_bytes()) else {
            return false;
        };
        let mut mac = self.mac();
        mac.update(message(media_item_id, query.expires, &query.user_id).as_bytes());
        mac.verify_slice(&presented).is_ok()
    }
}

/// The signed parameters of a query string, if all are there.
#[must_use]
pub fn parse_query(query: &str) -> Option<SignedQuery> {
    let (mut expires, mut user_id, mut signature) = (None, None, None);
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("expires", value)) => expires = value.parse().ok(),
            Some(("user", value)) => user_id = Some(value.to_owned()),
            Some(("signature", value)) => signature = Some(value.to_owned()),
            _ => {}
        }
    }
    Some(SignedQuery { expires: expires?, user_id: user_id?, signature: signature? })
}

/// The grant of an HLS path segment (`<expires>.<user>.<signature>`), if well formed. User ids
/// and base64url signatures hold no `.`.
#[must_use]
pub fn parse_grant(grant: &str) -> Option<SignedQuery> {
    let mut parts = grant.split('.');
    let expires = parts.next()?.parse().ok()?;
    let user_id = parts.next()?.to_owned();
    let signature = parts.next()?.to_owned();
    if parts.next().is_some() || user_id.is_empty() || signature.is_empty() {
        return None;
    }
    Some(SignedQuery { expires, user_id, signature })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_url_verifies_and_any_change_breaks_it() {
        let signer = UrlSigner::from_secret("install secret");
        let url = signer.url("item-1", 1_900_000_000, "alice");
        let query = parse_query(url.split_once('?').unwrap().1).unwrap();
        assert!(signer.verify("item-1", &query));
        assert!(!signer.verify("item-2", &query));
        assert!(!signer.verify("item-1", &SignedQuery { user_id: "bob".to_owned(), ..query.clone() }));
        assert!(!signer.verify("item-1", &SignedQuery { expires: query.expires + 1, ..query.clone() }));
        assert!(!UrlSigner::from_secret("another install").verify("item-1", &query));
        assert!(!signer.verify("item-1", &SignedQuery { signature: "not base64!".to_owned(), ..query }));
        // The same secret gives the same key: another instance accepts the URL.
        let again = UrlSigner::from_secret("install secret");
        assert_eq!(again.url("item-1", 1_900_000_000, "alice"), url);
    }

    #[test]
    fn an_hls_grant_signs_like_a_query() {
        let signer = UrlSigner::from_secret("install secret");
        let url = signer.hls_url("item-1", 1_900_000_000, "alice");
        let grant = url.strip_prefix("/media/item-1/hls/").and_then(|rest| rest.strip_suffix("/index.m3u8")).unwrap();
        let signed = parse_grant(grant).unwrap();
        assert!(signer.verify("item-1", &signed));
        assert!(!signer.verify("item-2", &signed));
        assert_eq!(parse_grant("1.alice"), None);
        assert_eq!(parse_grant("1.alice.sig.more"), None);
        assert_eq!(parse_grant("soon.alice.sig"), None);
    }
}
