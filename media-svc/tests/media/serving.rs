//! Serving files: signed URLs only for members of a room that plays or queues the item, Range
//! and conditional requests through tower-http, 403 for expired, forged and other people's
//! URLs, nothing outside the media directory.

use http::StatusCode;
use tonic::Code;

use crate::support::{KeptConnection, Options, Stack, User, bearer, short_mp4};

/// Alice uploads the clip into her room, Bob joins it, the clip is queued.
async fn shared_clip(stack: &Stack) -> (User, User, String, String, Vec<u8>) {
    let (alice, bob) = (stack.user("Alice").await, stack.user("Bob").await);
    let room_id = stack.open_room(&alice).await;
    stack.join(&bob, &room_id).await;
    let clip = short_mp4();
    let done = stack.http().upload(&alice, &clip, "clip.mp4", &room_id).await;
    let media_item_id = done.header("xiaowo-media-item-id").unwrap().to_owned();
    stack.queue(&alice, &room_id, &media_item_id).await;
    (alice, bob, room_id, media_item_id, clip)
}

#[tokio::test]
async fn a_signed_url_serves_ranges_and_conditional_requests() {
    let stack = Stack::start(Options::new()).await;
    let (alice, _bob, room_id, media_item_id, clip) = shared_clip(&stack).await;
    let http = stack.http();
    let url = stack.playback_url(&alice, &room_id, &media_item_id).await.unwrap();
    assert!(url.starts_with(&format!("/media/{media_item_id}?")), "{url}");

    let full = http.get(&url, &[bearer(&alice)]).await;
    assert_eq!(full.status, StatusCode::OK);
    assert_eq!(full.body.as_ref(), clip.as_slice());
    assert_eq!(full.header("content-type"), Some("video/mp4"));
    assert_eq!(full.header("accept-ranges"), Some("bytes"));
    assert!(full.header("cache-control").unwrap().starts_with("private"));
    let etag = full.header("etag").unwrap().to_owned();
    let last_modified = full.header("last-modified").unwrap().to_owned();

    let range = http.get(&url, &[bearer(&alice), ("range", "bytes=100-1123".to_owned())]).await;
    assert_eq!(range.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(range.body.as_ref(), &clip[100..1124]);
    assert_eq!(range.header("content-range"), Some(format!("bytes 100-1123/{}", clip.len()).as_str()));
    let tail = http.get(&url, &[bearer(&alice), ("range", "bytes=-10".to_owned())]).await;
    assert_eq!(tail.body.as_ref(), &clip[clip.len() - 10..]);
    let past = http.get(&url, &[bearer(&alice), ("range", format!("bytes={}-", clip.len() + 5))]).await;
    assert_eq!(past.status, StatusCode::RANGE_NOT_SATISFIABLE);

    let unchanged = http.get(&url, &[bearer(&alice), ("if-none-match", etag.clone())]).await;
    assert_eq!(unchanged.status, StatusCode::NOT_MODIFIED);
    assert!(unchanged.body.is_empty());
    let not_since = http.get(&url, &[bearer(&alice), ("if-modified-since", last_modified.clone())]).await;
    assert_eq!(not_since.status, StatusCode::NOT_MODIFIED);
    // If-Range: the range while the validator matches, the whole file once it does not.
    let same = http.get(&url, &[bearer(&alice), ("range", "bytes=0-9".to_owned()), ("if-range", etag)]).await;
    assert_eq!((same.status, same.body.len()), (StatusCode::PARTIAL_CONTENT, 10));
    let changed =
        http.get(&url, &[bearer(&alice), ("range", "bytes=0-9".to_owned()), ("if-range", "\"old\"".to_owned())]).await;
    assert_eq!((changed.status, changed.body.len()), (StatusCode::OK, clip.len()));
    let head = http.send(http::Method::HEAD, &url, &[bearer(&alice)], Vec::new()).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), Some(clip.len().to_string().as_str()));
}

/// An HTTP/1.1 connection sends files from the page cache (`sendfile`): what arrives is the
/// file byte for byte across many pieces read through a small receive buffer, and the
/// same connection carries the answers after it in order; HTTP/2 gets the same bytes its own way.
#[tokio::test]
async fn large_files_reach_kept_connections_and_http2_byte_for_byte() {
    let stack = Stack::start(Options::new()).await;
    let alice = stack.user("Alice").await;
    let room_id = stack.open_room(&alice).await;
    // A playable clip, then 6 MiB that repeat nowhere (a piece sent from the wrong offset shows).
    let mut file = short_mp4();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    file.extend((0..6 << 20).map(|_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state.to_le_bytes()[3]
    }));
    let done = stack.http().upload(&alice, &file, "large.mp4", &room_id).await;
    let media_item_id = done.header("xiaowo-media-item-id").expect("the upload is accepted").to_owned();
    stack.queue(&alice, &room_id, &media_item_id).await;
    let url = stack.playback_url(&alice, &room_id, &media_item_id).await.unwrap();

    let mut connection = KeptConnection::open(&stack.http(), 16 * 1024).await;
    let full = connection.send(http::Method::GET, &url, &[bearer(&alice)]).await;
    assert_eq!((full.status, full.header("content-length")), (StatusCode::OK, Some(file.len().to_string().as_str())));
    assert!(full.body == file, "the whole file differs from what was sent");
    let (first, last) = (1_000_000, 3_500_000);
    let range =
        connection.send(http::Method::GET, &url, &[bearer(&alice), ("range", format!("bytes={first}-{last}"))]).await;
    assert_eq!(range.status, StatusCode::PARTIAL_CONTENT);
    assert!(range.body == file[first..=last], "the range differs");
    let head = connection.send(http::Method::HEAD, &url, &[bearer(&alice)]).await;
    assert_eq!((head.status, head.header("content-length")), (StatusCode::OK, Some(file.len().to_string().as_str())));
    let tail = connection.send(http::Method::GET, &url, &[bearer(&alice), ("range", "bytes=-5000".to_owned())]).await;
    assert!(tail.body == file[file.len() - 5000..], "the tail differs");
    let refused = connection.send(http::Method::GET, &format!("{url}x"), &[bearer(&alice)]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let over_http2 = stack.http().get_http2(&url, &[bearer(&alice), ("range", format!("bytes={first}-{last}"))]).await;
    assert_eq!(over_http2.status, StatusCode::PARTIAL_CONTENT);
    assert!(over_http2.body == file[first..=last], "the range over HTTP/2 differs");
}

#[tokio::test]
async fn urls_are_refused_to_anyone_else_and_once_expired_or_altered() {
    let mut options = Options::new();
    options.config.url_ttl = std::time::Duration::from_secs(60);
    let stack = Stack::start(options).await;
    let (alice, bob, room_id, media_item_id, _clip) = shared_clip(&stack).await;
    let carol = stack.user("Carol").await;
    let http = stack.http();
    let url = stack.playback_url(&alice, &room_id, &media_item_id).await.unwrap();

    // A member gets a URL of their own; nobody may use another's, members or not.
    let bobs = stack.playback_url(&bob, &room_id, &media_item_id).await.unwrap();
    assert_eq!(http.get(&bobs, &[bearer(&bob)]).await.status, StatusCode::OK);
    assert_eq!(http.get(&url, &[bearer(&bob)]).await.status, StatusCode::FORBIDDEN);
    let stolen = http.get(&url, &[bearer(&carol)]).await;
    assert_eq!((stolen.status, stolen.reason()), (StatusCode::FORBIDDEN, "url-refused"));
    assert_eq!(http.get(&url, &[]).await.status, StatusCode::FORBIDDEN);
    // A non-member gets no URL at all.
    let refused = stack.playback_url(&carol, &room_id, &media_item_id).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    // Altered parts break the signature.
    let later = url.replace("expires=", "expires=9");
    assert_eq!(http.get(&later, &[bearer(&alice)]).await.status, StatusCode::FORBIDDEN);
    let forged = format!("{}x", url);
    assert_eq!(http.get(&forged, &[bearer(&alice)]).await.status, StatusCode::FORBIDDEN);
    let unsigned = url.split('?').next().unwrap().to_owned();
    assert_eq!(http.get(&unsigned, &[bearer(&alice)]).await.status, StatusCode::FORBIDDEN);

    stack.clock().advance(std::time::Duration::from_secs(61));
    let expired = http.get(&url, &[bearer(&alice)]).await;
    assert_eq!(expired.status, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&expired.body).contains("expired"));
    // A fresh one plays again.
    let fresh = stack.playback_url(&alice, &room_id, &media_item_id).await.unwrap();
    assert_eq!(http.get(&fresh, &[bearer(&alice)]).await.status, StatusCode::OK);
}

/// Behind nginx in split mode (`deploy/nginx` given the media directory): after its checks
/// media-svc hands the file to nginx by `X-Accel-Redirect` instead of sending it, and refuses
/// exactly as before.
#[tokio::test]
async fn behind_nginx_files_are_handed_over_only_after_the_checks() {
    let stack = Stack::start(Options::new()).await;
    let (alice, bob, room_id, media_item_id, clip) = shared_clip(&stack).await;
    let http = stack.http();
    let url = stack.playback_url(&alice, &room_id, &media_item_id).await.unwrap();
    let prefix = ("x-xiaowo-accel-prefix", "/xiaowo-media-files/".to_owned());
    let range = ("range", "bytes=100-1123".to_owned());

    let handed = http.get(&url, &[bearer(&alice), prefix.clone(), range.clone()]).await;
    assert_eq!(handed.status, StatusCode::OK);
    assert!(handed.body.is_empty(), "{} bytes sent", handed.body.len());
    let stored = stack.uploaded_files().pop().unwrap();
    let name = stored.file_name().unwrap().to_str().unwrap();
    assert_eq!(handed.header("x-accel-redirect"), Some(format!("/xiaowo-media-files/uploads/{name}").as_str()));
    assert_eq!(handed.header("content-type"), Some("video/mp4"));
    assert!(handed.header("cache-control").unwrap().starts_with("private"));

    // Refusals are the same with or without the proxy, and never name a file.
    for (answer, who) in [
        (http.get(&url, &[bearer(&bob), prefix.clone()]).await, "another member"),
        (http.get(&format!("{url}x"), &[bearer(&alice), prefix.clone()]).await, "an altered URL"),
        (http.get(&url, std::slice::from_ref(&prefix)).await, "no session"),
    ] {
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{who}");
        assert_eq!(answer.header("x-accel-redirect"), None, "{who}");
    }
    // A prefix that is not a plain location is ignored: the file is served here.
    let served = http.get(&url, &[bearer(&alice), ("x-xiaowo-accel-prefix", "/../etc/".to_owned()), range]).await;
    assert_eq!(served.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(served.body.as_ref(), &clip[100..1124]);
    assert_eq!(served.header("x-accel-redirect"), None);
}

#[tokio::test]
async fn only_items_the_room_plays_or_queues_get_urls() {
    let stack = Stack::start(Options::new()).await;
    let alice = stack.user("Alice").await;
    let room_id = stack.open_room(&alice).await;
    let done = stack.http().upload(&alice, &short_mp4(), "clip.mp4", "").await;
    let media_item_id = done.header("xiaowo-media-item-id").unwrap().to_owned();
    let refused = stack.playback_url(&alice, &room_id, &media_item_id).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    stack.queue(&alice, &room_id, &media_item_id).await;
    assert!(stack.playback_url(&alice, &room_id, &media_item_id).await.is_ok());
    let bad = stack.playback_url(&alice, "not-a-room", &media_item_id).await.unwrap_err();
    assert_eq!(svc_kit::testing::violations(&bad), ["room_id"]);
}

#[tokio::test]
async fn nothing_outside_the_media_directory_is_served() {
    // The directory scan would drop the item while its file is swapped for a link below (the
    // file is briefly missing); what is tested here is serving, so the scan waits.
    let mut options = Options::new();
    options.config.scan_interval = std::time::Duration::from_secs(3600);
    let stack = Stack::start(options).await;
    let (alice, _bob, room_id, media_item_id, _clip) = shared_clip(&stack).await;
    let http = stack.http();
    for path in [
        "/media/../../etc/passwd",
        "/media/..%2f..%2fetc%2fpasswd",
        "/media/%2e%2e/%2e%2e/etc/passwd",
        "/media/uploads/../../../etc/passwd",
        "/media/a/b/c",
    ] {
        let status = http.raw_status(path, &alice).await;
        assert!(status == 404 || status == 400, "{path}: {status}");
    }
    // The item's file replaced by a link to a file outside: refused, not followed.
    let outside = stack.stack.dir().join("secret.txt");
    std::fs::write(&outside, b"top secret").unwrap();
    let stored = stack.uploaded_files().pop().unwrap();
    std::fs::remove_file(&stored).unwrap();
    std::os::unix::fs::symlink(&outside, &stored).unwrap();
    let url = stack.playback_url(&alice, &room_id, &media_item_id).await.unwrap();
    let answer = http.get(&url, &[bearer(&alice)]).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert!(!String::from_utf8_lossy(&answer.body).contains("top secret"));
}
