//! Resumable uploads: tus requests, a cut connection and a restart resumed from the stored
//! byte, every limit refused before bytes are sent, and every refused file leaving nothing.

use http::StatusCode;
use proto::media::v1 as pb;

use crate::support::{Options, Stack, as_user, eventually, minute_mp4, short_avi, short_mp4};

#[tokio::test]
async fn a_cut_upload_resumes_from_the_stored_byte_and_becomes_a_probed_item_with_a_thumbnail() {
    let stack = Stack::start(Options::new()).await;
    let http = stack.http();
    let alice = stack.user("Alice").await;
    let room_id = stack.open_room(&alice).await;
    let file = minute_mp4();

    let created = http.create_upload(&alice, file.len() as u64, "Holiday 2024.mp4", &room_id).await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.header("tus-resumable"), Some("1.0.0"));
    assert!(created.header("upload-expires").is_some());
    let location = created.header("location").unwrap().to_owned();

    // The connection drops at ~40 %: everything that arrived is kept.
    let cut_at = file.len() * 2 / 5;
    http.patch_and_cut(&alice, &location, 0, &file, cut_at).await;
    let offset = http.settled_offset(&alice, &location, cut_at as u64).await;
    let head = http.head(&alice, &location).await;
    assert_eq!(head.header("upload-length"), Some(file.len().to_string().as_str()));
    assert_eq!(head.header("cache-control"), Some("no-store"));

    // A PATCH at any other offset is refused with the stored one.
    let wrong = http.patch(&alice, &location, 0, &file).await;
    assert_eq!(wrong.status, StatusCode::CONFLICT);
    assert_eq!(wrong.header("upload-offset"), Some(offset.to_string().as_str()));

    let done = http.patch(&alice, &location, offset, &file[usize::try_from(offset).unwrap()..]).await;
    assert_eq!(done.status, StatusCode::NO_CONTENT, "{:?}", done.body);
    assert_eq!(done.header("upload-offset"), Some(file.len().to_string().as_str()));
    let media_item_id = done.header("xiaowo-media-item-id").unwrap().to_owned();

    let item = stack.item(&alice, &room_id, &media_item_id).await.unwrap();
    assert_eq!(item.title, "Holiday 2024");
    assert_eq!(item.size_bytes, i64::try_from(file.len()).unwrap());
    assert!((59_000..=61_000).contains(&item.duration_ms), "{}", item.duration_ms);
    assert_eq!((item.video_codec.as_str(), item.audio_codec.as_str()), ("h264", "aac"));
    assert_eq!((item.width, item.height), (320, 180));
    assert_eq!(item.playability(), pb::Playability::Browser);
    assert_eq!(item.source(), pb::Source::Upload);
    assert_eq!(item.added_by_user_id, alice.user_id);
    assert_eq!(item.room_id, room_id);
    // The stored file is the uploaded one, byte for byte, and the upload is gone.
    let stored = stack.uploaded_files();
    assert_eq!(stored.len(), 1);
    assert_eq!(std::fs::read(&stored[0]).unwrap(), file);
    assert!(stack.partial_files().is_empty());
    assert_eq!(http.head(&alice, &location).await.status, StatusCode::NOT_FOUND);

    let thumbnail_url = eventually("a thumbnail", || async {
        let item = stack.item(&alice, &room_id, &media_item_id).await.ok()?;
        (!item.thumbnail_url.is_empty()).then_some(item.thumbnail_url)
    })
    .await;
    let thumbnail = http.get(&thumbnail_url, &[crate::support::bearer(&alice)]).await;
    assert_eq!(thumbnail.status, StatusCode::OK);
    assert_eq!(thumbnail.header("content-type"), Some("image/jpeg"));
    assert!(thumbnail.body.starts_with(&[0xff, 0xd8]), "a JPEG");
    assert_eq!(http.get(&thumbnail_url, &[]).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_upload_interrupted_by_a_restart_resumes_after_it() {
    let stack = Stack::start(Options::new()).await;
    let alice = stack.user("Alice").await;
    let file = short_mp4();
    let created = stack.http().create_upload(&alice, file.len() as u64, "clip.mp4", "").await;
    let location = created.header("location").unwrap().to_owned();
    let half = file.len() / 2;
    assert_eq!(stack.http().patch(&alice, &location, 0, &file[..half]).await.status, StatusCode::NO_CONTENT);

    let stack = stack.restart(Options::new()).await;
    let http = stack.http();
    let offset = http.settled_offset(&alice, &location, half as u64).await;
    let done = http.patch(&alice, &location, offset, &file[half..]).await;
    assert_eq!(done.status, StatusCode::NO_CONTENT, "{:?}", done.body);
    let media_item_id = done.header("xiaowo-media-item-id").unwrap();
    assert_eq!(stack.item(&alice, "", media_item_id).await.unwrap().size_bytes, i64::try_from(file.len()).unwrap());
}

/// Nothing of a refused upload stays: no part file, no placed file, no item, no quota used.
async fn assert_nothing_left(stack: &Stack, user: &crate::support::User) {
    assert!(stack.partial_files().is_empty(), "{:?}", stack.partial_files());
    assert!(stack.uploaded_files().is_empty(), "{:?}", stack.uploaded_files());
    let quota = stack.media().get_upload_quota(as_user(pb::GetUploadQuotaRequest {}, user)).await.unwrap().into_inner();
    assert_eq!((quota.used_bytes, quota.active_uploads), (0, 0));
    let request = pb::ListMediaItemsRequest::default();
    let listed = stack.media().list_media_items(as_user(request, user)).await.unwrap().into_inner();
    assert!(listed.media_items.is_empty());
}

#[tokio::test]
async fn files_that_are_not_playable_media_are_refused_each_with_its_reason_and_leave_nothing() {
    let stack = Stack::start(Options::new()).await;
    let http = stack.http();
    let alice = stack.user("Alice").await;

    let text = b"This is a shopping list, not a film.\nEggs\nMilk\n".repeat(50);
    let refused = http.upload(&alice, &text, "film.mp4", "").await;
    assert_eq!((refused.status, refused.reason()), (StatusCode::UNSUPPORTED_MEDIA_TYPE, "not-media"));
    assert!(String::from_utf8_lossy(&refused.body).contains("not a video or audio file"));
    assert_nothing_left(&stack, &alice).await;

    // The first 60 % of an MP4 whose index is at the end.
    let file = minute_mp4();
    let truncated = &file[..file.len() * 3 / 5];
    let refused = http.upload(&alice, truncated, "cut.mp4", "").await;
    assert_eq!((refused.status, refused.reason()), (StatusCode::UNPROCESSABLE_ENTITY, "damaged"));
    assert_nothing_left(&stack, &alice).await;

    let empty = http.create_upload(&alice, 0, "empty.mp4", "").await;
    assert_eq!((empty.status, empty.reason()), (StatusCode::BAD_REQUEST, "empty"));
    assert_nothing_left(&stack, &alice).await;
}

#[tokio::test]
async fn limits_are_refused_before_any_byte_is_sent() {
    let mut options = Options::new();
    let clip = short_mp4();
    options.config.max_file_bytes = clip.len() as u64 * 2;
    options.config.quota_bytes = clip.len() as u64 * 3 / 2;
    options.config.max_concurrent_uploads = 1;
    let stack = Stack::start(options).await;
    let http = stack.http();
    let alice = stack.user("Alice").await;

    let over = http.create_upload(&alice, clip.len() as u64 * 2 + 1, "big.mp4", "").await;
    assert_eq!((over.status, over.reason()), (StatusCode::PAYLOAD_TOO_LARGE, "too-large"));
    let options = http.send(http::Method::OPTIONS, "/media/uploads", &[], Vec::new()).await;
    assert_eq!(options.header("tus-max-size"), Some((clip.len() * 2).to_string().as_str()));
    assert_eq!(options.header("tus-extension"), Some("creation,termination,expiration"));
    assert_nothing_left(&stack, &alice).await;

    let first = http.create_upload(&alice, clip.len() as u64, "one.mp4", "").await;
    assert_eq!(first.status, StatusCode::CREATED);
    let second = http.create_upload(&alice, 1000, "two.mp4", "").await;
    assert_eq!((second.status, second.reason()), (StatusCode::TOO_MANY_REQUESTS, "too-many-uploads"));
    let location = first.header("location").unwrap().to_owned();
    assert_eq!(http.patch(&alice, &location, 0, &clip).await.status, StatusCode::NO_CONTENT);

    // The quota counts the stored file: another of the same size does not fit.
    let over_quota = http.create_upload(&alice, clip.len() as u64, "again.mp4", "").await;
    assert_eq!((over_quota.status, over_quota.reason()), (StatusCode::PAYLOAD_TOO_LARGE, "quota"));
    assert!(String::from_utf8_lossy(&over_quota.body).contains("quota"));
    assert_eq!(stack.uploaded_files().len(), 1);
    assert!(stack.partial_files().is_empty());
    // Someone else has a quota of their own.
    let bob = stack.user("Bob").await;
    assert_eq!(http.create_upload(&bob, clip.len() as u64, "mine.mp4", "").await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn the_free_disk_floor_refuses_an_upload_before_it_starts() {
    let mut options = Options::new();
    options.config.min_free_disk_bytes = u64::MAX / 4;
    let stack = Stack::start(options).await;
    let alice = stack.user("Alice").await;
    let refused = stack.http().create_upload(&alice, 1000, "clip.mp4", "").await;
    assert_eq!((refused.status, refused.reason()), (StatusCode::INSUFFICIENT_STORAGE, "disk-full"));
    assert_nothing_left(&stack, &alice).await;
}

#[tokio::test]
async fn tus_rules_termination_and_other_peoples_uploads() {
    let stack = Stack::start(Options::new()).await;
    let http = stack.http();
    let (alice, bob) = (stack.user("Alice").await, stack.user("Bob").await);
    let created = http.create_upload(&alice, 5000, "clip.mp4", "").await;
    let location = created.header("location").unwrap().to_owned();

    // No tus version: 412 with the version spoken.
    let unversioned = http.send(http::Method::HEAD, &location, &[crate::support::bearer(&alice)], Vec::new()).await;
    assert_eq!(unversioned.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(unversioned.header("tus-version"), Some("1.0.0"));
    // Another content type for data: 415.
    let wrong_type = http
        .send(
            http::Method::PATCH,
            &location,
            &[crate::support::bearer(&alice), ("tus-resumable", "1.0.0".to_owned()), ("upload-offset", "0".to_owned())],
            vec![0; 10],
        )
        .await;
    assert_eq!(wrong_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Without a session, or as someone else, the upload does not exist.
    assert_eq!(
        http.send(
            http::Method::POST,
            "/media/uploads",
            &[("tus-resumable", "1.0.0".to_owned()), ("upload-length", "10".to_owned())],
            Vec::new()
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(http.head(&bob, &location).await.status, StatusCode::NOT_FOUND);
    assert_eq!(http.patch(&bob, &location, 0, &[1, 2, 3]).await.status, StatusCode::NOT_FOUND);
    assert_eq!(http.terminate(&bob, &location).await.status, StatusCode::NOT_FOUND);
    // More bytes than declared are refused.
    assert_eq!(http.patch(&alice, &location, 0, &[0; 6000]).await.status, StatusCode::BAD_REQUEST);
    // Uploading into a room needs membership of it.
    let room_id = stack.open_room(&bob).await;
    let outsider = http.create_upload(&alice, 100, "clip.mp4", &room_id).await;
    assert_eq!(outsider.status, StatusCode::FORBIDDEN);

    // Termination removes the bytes and the upload.
    assert_eq!(stack.partial_files().len(), 1);
    assert_eq!(http.terminate(&alice, &location).await.status, StatusCode::NO_CONTENT);
    assert!(stack.partial_files().is_empty());
    assert_eq!(http.head(&alice, &location).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn abandoned_uploads_expire_and_their_bytes_are_deleted() {
    let mut options = Options::new();
    options.config.upload_expiry = std::time::Duration::from_secs(600);
    let stack = Stack::start(options).await;
    let http = stack.http();
    let alice = stack.user("Alice").await;
    let created = http.create_upload(&alice, 5000, "clip.mp4", "").await;
    let location = created.header("location").unwrap().to_owned();
    assert_eq!(http.patch(&alice, &location, 0, &[7; 2000]).await.status, StatusCode::NO_CONTENT);
    assert_eq!(stack.partial_files().len(), 1);

    stack.clock().advance(std::time::Duration::from_secs(601));
    eventually("the janitor to delete the expired upload", || async { stack.partial_files().is_empty().then_some(()) })
        .await;
    assert_eq!(http.head(&alice, &location).await.status, StatusCode::NOT_FOUND);
    let quota =
        stack.media().get_upload_quota(as_user(pb::GetUploadQuotaRequest {}, &alice)).await.unwrap().into_inner();
    assert_eq!(quota.active_uploads, 0);
}

#[tokio::test]
async fn media_browsers_cannot_play_is_kept_and_marked_for_conversion() {
    let stack = Stack::start(Options::new()).await;
    let alice = stack.user("Alice").await;
    let room_id = stack.open_room(&alice).await;
    let done = stack.http().upload(&alice, &short_avi(), "old camera.avi", &room_id).await;
    assert_eq!(done.status, StatusCode::NO_CONTENT, "{:?}", done.body);
    let media_item_id = done.header("xiaowo-media-item-id").unwrap().to_owned();
    let item = stack.item(&alice, &room_id, &media_item_id).await.unwrap();
    assert_eq!(item.playability(), pb::Playability::NeedsConversion);
    assert_eq!(item.video_codec, "mpeg4");
    stack.queue(&alice, &room_id, &media_item_id).await;
    let refused = stack.playback_url(&alice, &room_id, &media_item_id).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
}
