//! The library: the media directory indexed at start and on change, who sees, renames and
//! deletes what, search, and the operator's view.

use proto::media::v1 as pb;
use tonic::Code;

use crate::support::{Options, Stack, as_admin, as_user, eventually, short_avi, short_mp4};

async fn titles(stack: &Stack, user: &crate::support::User, room_id: &str, query: &str) -> Vec<String> {
    let request =
        pb::ListMediaItemsRequest { room_id: room_id.to_owned(), query: query.to_owned(), ..Default::default() };
    let listed = stack.media().list_media_items(as_user(request, user)).await.unwrap().into_inner();
    let mut titles: Vec<String> = listed.media_items.into_iter().map(|item| item.title).collect();
    titles.sort();
    titles
}

#[tokio::test]
async fn the_media_directory_is_indexed_at_start_and_when_it_changes() {
    // Files already there before the first start.
    let stack = Stack::start(Options::new()).await;
    let media_dir = stack.media_dir.clone();
    std::fs::create_dir_all(media_dir.join("films")).unwrap();
    std::fs::write(media_dir.join("films").join("Opening.mp4"), short_mp4()).unwrap();
    std::fs::write(media_dir.join("notes.mp4"), b"not a film at all").unwrap();
    std::fs::write(media_dir.join("readme.txt"), b"hello").unwrap();
    let outside = stack.stack.dir().join("elsewhere.mp4");
    std::fs::write(&outside, short_mp4()).unwrap();
    std::os::unix::fs::symlink(&outside, media_dir.join("link-out.mp4")).unwrap();
    let stack = stack.restart(Options::new()).await;
    let alice = stack.user("Alice").await;

    eventually("the file found at start", || async {
        (titles(&stack, &alice, "", "").await == ["Opening"]).then_some(())
    })
    .await;
    // Not media, and links out of the directory: left alone, not indexed, not deleted.
    assert!(media_dir.join("notes.mp4").exists());
    assert!(media_dir.join("link-out.mp4").exists());

    std::fs::write(media_dir.join("Second film.avi"), short_avi()).unwrap();
    eventually("a new file", || async {
        (titles(&stack, &alice, "", "").await == ["Opening", "Second film"]).then_some(())
    })
    .await;
    let listed = stack.media().list_media_items(as_user(pb::ListMediaItemsRequest::default(), &alice)).await.unwrap();
    let second = listed.into_inner().media_items.into_iter().find(|item| item.title == "Second film").unwrap();
    assert_eq!(second.source(), pb::Source::Directory);
    assert_eq!(second.playability(), pb::Playability::NeedsConversion);

    // Files of the media directory are everyone's to watch, the operator's to change.
    let rename = pb::RenameMediaItemRequest { media_item_id: second.media_item_id.clone(), title: "Mine".to_owned() };
    assert_eq!(
        stack.media().rename_media_item(as_user(rename, &alice)).await.unwrap_err().code(),
        Code::PermissionDenied
    );

    std::fs::remove_file(media_dir.join("films").join("Opening.mp4")).unwrap();
    eventually("a removed file", || async { (titles(&stack, &alice, "", "").await == ["Second film"]).then_some(()) })
        .await;
}

#[tokio::test]
async fn uploads_are_seen_by_their_uploader_and_their_rooms_members_and_changed_only_by_the_uploader() {
    let stack = Stack::start(Options::new()).await;
    let (alice, bob) = (stack.user("Alice").await, stack.user("Bob").await);
    let room_id = stack.open_room(&alice).await;
    let http = stack.http();
    let in_room = http.upload(&alice, &short_mp4(), "Beach day.mp4", &room_id).await;
    let in_room = in_room.header("xiaowo-media-item-id").unwrap().to_owned();
    http.upload(&alice, &short_mp4(), "Private diary.mp4", "").await;

    assert_eq!(titles(&stack, &alice, "", "").await, ["Beach day", "Private diary"]);
    assert!(titles(&stack, &bob, "", "").await.is_empty());
    // Bob sees the room's upload only as a member, and asking about a room needs membership.
    let outsider = pb::ListMediaItemsRequest { room_id: room_id.clone(), ..Default::default() };
    assert_eq!(
        stack.media().list_media_items(as_user(outsider, &bob)).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    assert_eq!(stack.item(&bob, "", &in_room).await.unwrap_err().code(), Code::NotFound);
    stack.join(&bob, &room_id).await;
    assert_eq!(titles(&stack, &bob, &room_id, "").await, ["Beach day"]);
    assert_eq!(stack.item(&bob, &room_id, &in_room).await.unwrap().title, "Beach day");
    // Search: every word, any case.
    assert_eq!(titles(&stack, &alice, "", "DAY beach").await, ["Beach day"]);
    assert!(titles(&stack, &alice, "", "50%_").await.is_empty());

    // Only the uploader renames or deletes; to anyone else the upload is not there.
    let rename = |title: &str| pb::RenameMediaItemRequest { media_item_id: in_room.clone(), title: title.to_owned() };
    assert_eq!(
        stack.media().rename_media_item(as_user(rename("Mine now"), &bob)).await.unwrap_err().code(),
        Code::NotFound
    );
    let renamed = stack.media().rename_media_item(as_user(rename("  Beach, day one "), &alice)).await.unwrap();
    assert_eq!(renamed.into_inner().media_item.unwrap().title, "Beach, day one");
    let empty = stack.media().rename_media_item(as_user(rename(" "), &alice)).await.unwrap_err();
    assert_eq!(svc_kit::testing::violations(&empty), ["title"]);
    let delete = pb::DeleteMediaItemRequest { media_item_id: in_room.clone() };
    assert_eq!(
        stack.media().delete_media_item(as_user(delete.clone(), &bob)).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(stack.uploaded_files().len(), 2);
    stack.media().delete_media_item(as_user(delete.clone(), &alice)).await.unwrap();
    assert_eq!(stack.uploaded_files().len(), 1);
    assert_eq!(stack.media().delete_media_item(as_user(delete, &alice)).await.unwrap_err().code(), Code::NotFound);

    // Bad input and no session.
    let bad = pb::GetMediaItemRequest { media_item_id: "../x".to_owned(), room_id: String::new() };
    assert_eq!(
        svc_kit::testing::violations(&stack.media().get_media_item(as_user(bad, &alice)).await.unwrap_err()),
        ["media_item_id"]
    );
    let anonymous = stack.media().list_media_items(pb::ListMediaItemsRequest::default()).await.unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn operators_see_the_whole_library_and_change_any_item() {
    let stack = Stack::start(Options::new()).await;
    let alice = stack.user("Alice").await;
    let http = stack.http();
    let clip = short_mp4();
    let done = http.upload(&alice, &clip, "One.mp4", "").await;
    let media_item_id = done.header("xiaowo-media-item-id").unwrap().to_owned();
    let pending = http.create_upload(&alice, 1234, "Pending.mp4", "").await;
    assert_eq!(pending.status, http::StatusCode::CREATED);

    let refused = stack.admin().list_library(pb::ListLibraryRequest::default()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    let overview = stack.admin().list_library(as_admin(pb::ListLibraryRequest::default())).await.unwrap().into_inner();
    assert_eq!((overview.total_items, overview.total_bytes), (1, i64::try_from(clip.len()).unwrap()));
    assert_eq!(overview.media_items.len(), 1);
    assert_eq!(overview.uploads.len(), 1);
    assert_eq!((overview.uploads[0].file_name.as_str(), overview.uploads[0].length_bytes), ("Pending.mp4", 1234));

    let renamed = pb::RenameLibraryItemRequest { media_item_id: media_item_id.clone(), title: "Renamed".to_owned() };
    stack.admin().rename_library_item(as_admin(renamed)).await.unwrap();
    assert_eq!(stack.item(&alice, "", &media_item_id).await.unwrap().title, "Renamed");
    let delete = pb::DeleteLibraryItemRequest { media_item_id };
    stack.admin().delete_library_item(as_admin(delete)).await.unwrap();
    assert!(stack.uploaded_files().is_empty());
}
