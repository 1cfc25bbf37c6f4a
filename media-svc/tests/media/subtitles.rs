//! Subtitle tracks end to end: files in every encoding and format converted to the WebVTT that
//! is served, hostile and broken files refused or repaired with counts, markup stripped, the
//! text streams of an MKV extracted when it is probed, and who may list, add, delete, set the
//! room's default and fetch a track.

use std::path::{Path, PathBuf};

use http::StatusCode;
use proto::media::v1 as pb;
use proto::room::v1 as room_pb;
use tonic::Code;

use crate::support::{Answer, Options, Stack, User, as_admin, as_user, bearer, eventually, short_mp4};

const CHINESE_SRT: &str = "1\r\n00:00:01,000 --> 00:00:04,000\r\n你好，世界。\r\n\r\n2\r\n00:00:05,000 --> 00:00:08,500\r\n<i>我们一起看电影吧！</i>\r\n";
const CHINESE_VTT: &str = "WEBVTT\n\n00:00:01.000 --> 00:00:04.000\n你好，世界。\n\n00:00:05.000 --> 00:00:08.500\n<i>我们一起看电影吧！</i>\n";

/// Alice's room playing her clip, with Bob as a member; the clip's id.
struct Room {
    alice: User,
    bob: User,
    room_id: String,
    media_item_id: String,
}

async fn room_with_clip(stack: &Stack) -> Room {
    let (alice, bob) = (stack.user("Alice").await, stack.user("Bob").await);
    let room_id = stack.open_room(&alice).await;
    stack.join(&bob, &room_id).await;
    let done = stack.http().upload(&alice, &short_mp4(), "clip.mp4", &room_id).await;
    let media_item_id = done.header("xiaowo-media-item-id").unwrap().to_owned();
    stack.queue(&alice, &room_id, &media_item_id).await;
    Room { alice, bob, room_id, media_item_id }
}

fn add_request(media_item_id: &str, room_id: &str, language: &str, content: &[u8]) -> pb::AddSubtitleTrackRequest {
    pb::AddSubtitleTrackRequest {
        media_item_id: media_item_id.to_owned(),
        room_id: room_id.to_owned(),
        language: language.to_owned(),
        label: String::new(),
        content: content.to_vec(),
    }
}

async fn add(
    stack: &Stack,
    user: &User,
    request: pb::AddSubtitleTrackRequest,
) -> Result<pb::AddSubtitleTrackResponse, tonic::Status> {
    stack.media().add_subtitle_track(as_user(request, user)).await.map(tonic::Response::into_inner)
}

async fn list(
    stack: &Stack,
    user: &User,
    media_item_id: &str,
    room_id: &str,
) -> Result<pb::ListSubtitleTracksResponse, tonic::Status> {
    let request =
        pb::ListSubtitleTracksRequest { media_item_id: media_item_id.to_owned(), room_id: room_id.to_owned() };
    stack.media().list_subtitle_tracks(as_user(request, user)).await.map(tonic::Response::into_inner)
}

/// The WebVTT of the track `track_id` as `user` fetches it through their signed URL.
async fn fetch(stack: &Stack, user: &User, room: &Room, track_id: &str) -> Answer {
    let listing = list(stack, user, &room.media_item_id, &room.room_id).await.unwrap();
    let track = listing.tracks.iter().find(|track| track.track_id == track_id).expect("the track is listed");
    assert!(
        track.url.starts_with(&format!("/media/{}/subtitles/{track_id}.vtt?", room.media_item_id)),
        "{}",
        track.url
    );
    stack.http().get(&track.url, &[bearer(user)]).await
}

async fn served_text(stack: &Stack, room: &Room, content: &[u8]) -> (pb::AddSubtitleTrackResponse, String) {
    let added = add(stack, &room.alice, add_request(&room.media_item_id, &room.room_id, "zh", content)).await.unwrap();
    let track_id = added.track.as_ref().unwrap().track_id.clone();
    let answer = fetch(stack, &room.bob, room, &track_id).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("content-type"), Some("text/vtt; charset=utf-8"));
    (added, String::from_utf8(answer.body.to_vec()).unwrap())
}

fn violation_of(status: &tonic::Status) -> (Vec<String>, String) {
    use tonic_types::StatusExt;
    let fields = svc_kit::testing::violations(status);
    let description = status
        .get_details_bad_request()
        .and_then(|bad| bad.field_violations.into_iter().next())
        .map(|violation| violation.description)
        .unwrap_or_default();
    (fields, description)
}

#[tokio::test]
async fn gb18030_big5_and_utf16_files_become_the_same_utf8_webvtt() {
    let stack = Stack::start(Options::new()).await;
    let room = room_with_clip(&stack).await;

    let (gb18030, _, _) = encoding_rs::GB18030.encode(CHINESE_SRT);
    let (added, vtt) = served_text(&stack, &room, &gb18030).await;
    assert_eq!(vtt, CHINESE_VTT);
    let track = added.track.unwrap();
    assert_eq!((track.encoding.as_str(), track.original_format.as_str(), track.cue_count), ("gb18030", "srt", 2));
    assert_eq!((added.repaired_cue_count, added.skipped_cue_count), (0, 0));

    let traditional = CHINESE_SRT.replace("我们一起看电影吧", "我們一起看電影吧");
    let (big5, _, _) = encoding_rs::BIG5.encode(&traditional);
    let (added, vtt) = served_text(&stack, &room, &big5).await;
    assert_eq!(vtt, CHINESE_VTT.replace("我们一起看电影吧", "我們一起看電影吧"));
    assert_eq!(added.track.unwrap().encoding, "Big5");

    let le: Vec<u8> = [0xff, 0xfe].into_iter().chain(CHINESE_SRT.encode_utf16().flat_map(u16::to_le_bytes)).collect();
    let be: Vec<u8> = [0xfe, 0xff].into_iter().chain(CHINESE_SRT.encode_utf16().flat_map(u16::to_be_bytes)).collect();
    for (bytes, encoding) in [(le, "UTF-16LE"), (be, "UTF-16BE")] {
        let (added, vtt) = served_text(&stack, &room, &bytes).await;
        assert_eq!((vtt.as_str(), added.track.unwrap().encoding.as_str()), (CHINESE_VTT, encoding));
    }
    let with_bom = [b"\xef\xbb\xbf".as_slice(), CHINESE_SRT.as_bytes()].concat();
    assert_eq!(served_text(&stack, &room, &with_bom).await.1, CHINESE_VTT);
}

#[tokio::test]
async fn webvtt_passes_and_ass_keeps_italics_and_positions() {
    let stack = Stack::start(Options::new()).await;
    let room = room_with_clip(&stack).await;

    let (added, vtt) = served_text(&stack, &room, CHINESE_VTT.as_bytes()).await;
    assert_eq!(vtt, CHINESE_VTT);
    assert_eq!(added.track.unwrap().original_format, "vtt");

    let ass = "[Script Info]\nScriptType: v4.00+\nPlayResX: 640\nPlayResY: 360\n\n[V4+ Styles]\n\
               Format: Name, Fontname, Fontsize, Bold, Italic, Alignment\nStyle: Default,Arial,20,0,0,2\n\n\
               [Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n\
               Dialogue: 0,0:00:03.00,0:00:05.00,Default,,0,0,0,,{\\an8}{\\i1}在上面{\\i0}的字\n\
               Dialogue: 0,0:00:01.00,0:00:02.50,Default,,0,0,0,,{\\pos(160,90)\\an5\\c&HFF0000&}一行\\N两行\n";
    let (added, vtt) = served_text(&stack, &room, ass.as_bytes()).await;
    assert_eq!(
        vtt,
        "WEBVTT\n\n00:00:01.000 --> 00:00:02.500 line:25%,center position:25%,center align:center\n一行\n两行\n\n\
         00:00:03.000 --> 00:00:05.000 line:0\n<i>在上面</i>的字\n"
    );
    assert_eq!(added.track.unwrap().original_format, "ass");
}

#[tokio::test]
async fn hostile_and_broken_files_are_refused_or_repaired_with_counts() {
    let mut options = Options::new();
    options.config.subtitle_max_bytes = 4096;
    options.config.subtitle_max_cues = 5;
    let stack = Stack::start(options).await;
    let room = room_with_clip(&stack).await;
    let refused = |content: Vec<u8>| add_request(&room.media_item_id, &room.room_id, "en", &content);

    // A video picked by mistake, an empty file, notes that are not subtitles.
    let (fields, description) =
        violation_of(&add(&stack, &room.alice, refused(short_mp4()[..4000].to_vec())).await.unwrap_err());
    assert_eq!((fields, description.contains("binary")), (vec!["content".to_owned()], true));
    assert_eq!(violation_of(&add(&stack, &room.alice, refused(Vec::new())).await.unwrap_err()).0, ["content"]);
    let (_, description) =
        violation_of(&add(&stack, &room.alice, refused(b"milk\neggs\n".to_vec())).await.unwrap_err());
    assert!(description.contains("not SRT"), "{description}");

    // Over the size limit: refused by media-svc with the limit; ten megabytes do not even reach
    // it (the message limit refuses them).
    let big: String = (0..200).map(|n| format!("{n}\n00:00:01,000 --> 00:00:02,000\nline {n}\n\n")).collect();
    let (_, description) = violation_of(&add(&stack, &room.alice, refused(big.into_bytes())).await.unwrap_err());
    assert_eq!(description, "must be at most 4096 bytes");
    let huge: String = std::iter::repeat_n("1\n00:00:01,000 --> 00:00:02,000\nline\n\n", 300_000).collect();
    assert!(huge.len() > 10 << 20);
    let status = add(&stack, &room.alice, refused(huge.into_bytes())).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);

    // Too many cues.
    let six: String = (1..=6).map(|n| format!("{n}\n00:00:0{n},000 --> 00:00:0{n},500\nline {n}\n\n")).collect();
    let (_, description) = violation_of(&add(&stack, &room.alice, refused(six.into_bytes())).await.unwrap_err());
    assert_eq!(description, "must have at most 5 cues");

    // Malformed timestamps: the unambiguous repaired, the rest skipped and counted; nothing left
    // refuses the file.
    let malformed = "1\n00:00:01.000 --> 00:00:02,000\ndot for comma\n\n2\n0:0:03,5 -> 00:00:04,000\nshort fields\n\n\
                     3\n00:00:09,000 --> 00:00:05,000\nbackwards\n\n4\n00:00:61,000 --> 00:01:02,000\nsixty-one seconds\n\n\
                     5\n00:00:10,000 --> 00:00:11,000\nfine\n";
    let added = add(&stack, &room.alice, refused(malformed.as_bytes().to_vec())).await.unwrap();
    assert_eq!((added.repaired_cue_count, added.skipped_cue_count, added.track.unwrap().cue_count), (2, 2, 3));
    let hopeless = "1\n00:00:09,000 --> 00:00:05,000\nbackwards\n\n2\n00:xx:01,000 --> 00:00:02,000\nletters\n";
    let (_, description) =
        violation_of(&add(&stack, &room.alice, refused(hopeless.as_bytes().to_vec())).await.unwrap_err());
    assert_eq!(description, "has no valid cues (2 with bad timestamps or no text)");

    // Bad fields.
    let mut request = refused(CHINESE_SRT.as_bytes().to_vec());
    request.language = "Chinese".to_owned();
    request.label = "x".repeat(101);
    assert_eq!(violation_of(&add(&stack, &room.alice, request).await.unwrap_err()).0, ["label", "language"]);

    // Only the repaired file was kept.
    let listing = list(&stack, &room.alice, &room.media_item_id, &room.room_id).await.unwrap();
    assert_eq!(listing.tracks.len(), 1);
    assert_eq!(listing.max_file_bytes, 4096);
}

#[tokio::test]
async fn markup_is_stripped_to_the_kept_tags_and_everything_else_escaped() {
    let stack = Stack::start(Options::new()).await;
    let room = room_with_clip(&stack).await;

    let srt = "1\n00:00:01,000 --> 00:00:02,000\n<script>alert(1)</script><img src=x onerror=alert(2)>\n\
               <b onmouseover=alert(3)>bold?</b> <font color=red>red</font> <u>u</u> a & b\n\n\
               2\n00:00:03,000 --> 00:00:04,000\n--> 00:00:05,000 not a timing\n\n";
    let (added, vtt) = served_text(&stack, &room, srt.as_bytes()).await;
    assert_eq!(
        vtt,
        "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\n&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;\n\
         &lt;b onmouseover=alert(3)&gt;bold? red <u>u</u> a &amp; b\n\n\
         00:00:03.000 --> 00:00:04.000\n--&gt; 00:00:05,000 not a timing\n"
    );
    assert_eq!(added.track.unwrap().cue_count, 2);

    let vtt_in = "WEBVTT\n\nSTYLE\n::cue { background-image: url(https://evil.example/x.png) }\n\n\
                  REGION\nid:top\n\n00:01.000 --> 00:02.000 region:top line:0 position:200% align:start\n\
                  <v.a.b Mei>hi</v> <c.x onclick=1>c</c> <lang zh>中</lang> <lang <i>>x</i> <ruby>漢<rt>kan</rt></ruby> <rt>loose</rt>\n";
    let (_, vtt) = served_text(&stack, &room, vtt_in.as_bytes()).await;
    assert_eq!(
        vtt,
        "WEBVTT\n\n00:00:01.000 --> 00:00:02.000 line:0 align:start\n\
         <v.a.b Mei>hi</v> <c.x>c</c> <lang zh>中</lang> &gt;x <ruby>漢<rt>kan</rt></ruby> loose\n",
        "a lang tag without a language tag is dropped"
    );
}

/// A 4 s H.264 MKV with two SubRip streams: Chinese (titled) and English.
fn mkv_with_subtitles() -> Vec<u8> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("subtitle-fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("two-tracks.mkv");
    if !path.exists() {
        let chinese = dir.join("zh.srt");
        let english = dir.join("en.srt");
        std::fs::write(
            &chinese,
            "1\n00:00:00,500 --> 00:00:02,000\n内嵌的中文字幕\n\n2\n00:00:02,500 --> 00:00:03,500\n第二句\n",
        )
        .unwrap();
        std::fs::write(&english, "1\n00:00:00,500 --> 00:00:02,000\n<i>Embedded English</i>\n").unwrap();
        let partial: PathBuf = dir.join("partial-two-tracks.mkv");
        let status = std::process::Command::new("ffmpeg")
            .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x180:rate=25", "-i"])
            .arg(&chinese)
            .arg("-i")
            .arg(&english)
            .args(["-t", "4", "-map", "0:v", "-map", "1:s", "-map", "2:s", "-c:v", "libx264", "-preset", "ultrafast"])
            .args([
                "-pix_fmt",
                "yuv420p",
                "-c:s",
                "srt",
                "-metadata:s:s:0",
                "language=chi",
                "-metadata:s:s:0",
                "title=中文字幕",
            ])
            .args(["-metadata:s:s:1", "language=eng", "-f", "matroska"])
            .arg(&partial)
            .status()
            .expect("ffmpeg runs");
        assert!(status.success(), "ffmpeg made the MKV");
        std::fs::rename(&partial, &path).unwrap();
    }
    std::fs::read(path).unwrap()
}

#[tokio::test]
async fn the_text_streams_of_an_mkv_become_tracks_when_it_is_probed() {
    let stack = Stack::start(Options::new()).await;
    let (alice, bob) = (stack.user("Alice").await, stack.user("Bob").await);
    let room_id = stack.open_room(&alice).await;
    stack.join(&bob, &room_id).await;
    let done = stack.http().upload(&alice, &mkv_with_subtitles(), "film.mkv", &room_id).await;
    assert_eq!(done.status, StatusCode::NO_CONTENT);
    let media_item_id = done.header("xiaowo-media-item-id").unwrap().to_owned();
    stack.queue(&alice, &room_id, &media_item_id).await;

    let listing = eventually("the embedded tracks", || async {
        let listing = list(&stack, &bob, &media_item_id, &room_id).await.unwrap();
        (listing.tracks.len() == 2).then_some(listing)
    })
    .await;
    let found: Vec<(&str, &str, pb::SubtitleSource, i32)> = listing
        .tracks
        .iter()
        .map(|track| (track.language.as_str(), track.label.as_str(), track.source(), track.cue_count))
        .collect();
    assert_eq!(
        found,
        [("zh", "中文字幕", pb::SubtitleSource::Embedded, 2), ("en", "", pb::SubtitleSource::Embedded, 1)]
    );
    let room = Room { alice, bob, room_id, media_item_id };
    let chinese = fetch(&stack, &room.bob, &room, &listing.tracks[0].track_id).await;
    assert_eq!(
        String::from_utf8(chinese.body.to_vec()).unwrap(),
        "WEBVTT\n\n00:00:00.500 --> 00:00:02.000\n内嵌的中文字幕\n\n00:00:02.500 --> 00:00:03.500\n第二句\n"
    );
    let english = fetch(&stack, &room.bob, &room, &listing.tracks[1].track_id).await;
    assert!(String::from_utf8(english.body.to_vec()).unwrap().ends_with("\n<i>Embedded English</i>\n"));

    // The item's deletion takes its tracks with it.
    let delete = pb::DeleteMediaItemRequest { media_item_id: room.media_item_id.clone() };
    stack.media().delete_media_item(as_user(delete, &room.alice)).await.unwrap();
    let gone = pb::ListLibrarySubtitleTracksRequest { media_item_id: room.media_item_id.clone() };
    assert_eq!(stack.admin().list_library_subtitle_tracks(as_admin(gone)).await.unwrap_err().code(), Code::NotFound);
    let answer = stack.http().get(&listing.tracks[0].url, &[bearer(&room.bob)]).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn serving_follows_the_signed_url_rule() {
    let mut options = Options::new();
    options.config.url_ttl = std::time::Duration::from_secs(60);
    let stack = Stack::start(options).await;
    let room = room_with_clip(&stack).await;
    let carol = stack.user("Carol").await;
    let added = add(&stack, &room.alice, add_request(&room.media_item_id, &room.room_id, "zh", CHINESE_SRT.as_bytes()))
        .await
        .unwrap();
    let track_id = added.track.unwrap().track_id;
    let http = stack.http();
    let listing = list(&stack, &room.bob, &room.media_item_id, &room.room_id).await.unwrap();
    let url = listing.tracks[0].url.clone();

    let ok = http.get(&url, &[bearer(&room.bob)]).await;
    assert_eq!((ok.status, ok.header("cache-control")), (StatusCode::OK, Some("private, max-age=600")));
    let etag = ok.header("etag").unwrap().to_owned();
    let again = http.get(&url, &[bearer(&room.bob), ("if-none-match", etag)]).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    // Someone else's URL, no session, no signature, a forged one: 403.
    assert_eq!(http.get(&url, &[bearer(&room.alice)]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(http.get(&url, &[bearer(&carol)]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(http.get(&url, &[]).await.status, StatusCode::FORBIDDEN);
    let unsigned = url.split('?').next().unwrap().to_owned();
    assert_eq!(http.get(&unsigned, &[bearer(&room.bob)]).await.reason(), "url-refused");
    assert_eq!(http.get(&format!("{url}x"), &[bearer(&room.bob)]).await.status, StatusCode::FORBIDDEN);
    // The item's signature does not reach another item's track, nor a track that is not there.
    let query = url.split_once('?').unwrap().1;
    let missing = format!("/media/{}/subtitles/{}.vtt?{query}", room.media_item_id, uuid_like());
    assert_eq!(http.get(&missing, &[bearer(&room.bob)]).await.status, StatusCode::NOT_FOUND);
    let not_vtt = format!("/media/{}/subtitles/{track_id}.srt?{query}", room.media_item_id);
    assert_eq!(http.get(&not_vtt, &[bearer(&room.bob)]).await.status, StatusCode::NOT_FOUND);
    let other = stack.http().upload(&room.alice, &short_mp4(), "other.mp4", &room.room_id).await;
    let other_id = other.header("xiaowo-media-item-id").unwrap().to_owned();
    let crossed = format!("/media/{other_id}/subtitles/{track_id}.vtt?{query}");
    assert_eq!(http.get(&crossed, &[bearer(&room.bob)]).await.status, StatusCode::FORBIDDEN);
    // Not a member of a room that plays it: no URL at all; a stranger asking from the room: no.
    let mine = list(&stack, &room.alice, &room.media_item_id, "").await.unwrap();
    assert!(mine.tracks[0].url.is_empty(), "the uploader without a room gets no URL");
    let stranger = list(&stack, &carol, &room.media_item_id, &room.room_id).await.unwrap_err();
    assert_eq!(stranger.code(), Code::PermissionDenied);
    assert_eq!(list(&stack, &carol, &room.media_item_id, "").await.unwrap_err().code(), Code::NotFound);
    // Expired.
    stack.clock().advance(std::time::Duration::from_secs(61));
    assert_eq!(http.get(&url, &[bearer(&room.bob)]).await.status, StatusCode::FORBIDDEN);
}

fn uuid_like() -> &'static str {
    "00000000-0000-4000-8000-000000000000"
}

#[tokio::test]
async fn who_may_add_delete_and_set_the_room_default() {
    let stack = Stack::start(Options::new()).await;
    let room = room_with_clip(&stack).await;
    let carol = stack.user("Carol").await;
    stack.join(&carol, &room.room_id).await;
    let content = CHINESE_SRT.as_bytes();
    let (item, room_id) = (room.media_item_id.as_str(), room.room_id.as_str());

    // The uploader, with or without the room; a member neither; the operator always.
    let first = add(&stack, &room.alice, add_request(item, "", "zh", content)).await.unwrap().track.unwrap();
    assert_eq!(
        add(&stack, &room.bob, add_request(item, room_id, "zh", content)).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let admin_add = pb::AddLibrarySubtitleTrackRequest {
        media_item_id: item.to_owned(),
        language: "en-us".to_owned(),
        label: "Operator's".to_owned(),
        content: CHINESE_VTT.as_bytes().to_vec(),
    };
    let by_admin = stack.admin().add_library_subtitle_track(as_admin(admin_add)).await.unwrap().into_inner();
    assert_eq!(by_admin.track.as_ref().unwrap().language, "en-US");
    assert!(!list(&stack, &room.bob, item, room_id).await.unwrap().can_edit);
    assert!(list(&stack, &room.alice, item, "").await.unwrap().can_edit);

    // A moderator of a room that queues the item may.
    let promote = room_pb::SetMemberRoleRequest {
        room_id: room_id.to_owned(),
        user_id: carol.user_id.clone(),
        role: room_pb::Role::Moderator.into(),
    };
    stack.rooms().set_member_role(as_user(promote, &room.alice)).await.unwrap();
    let by_moderator = eventually("the moderator's rights", || async {
        add(&stack, &carol, add_request(item, room_id, "zh-hant", content)).await.ok()
    })
    .await;
    assert_eq!(by_moderator.track.unwrap().language, "zh-Hant");

    // Deleting: a member may not, the moderator may; unknown tracks are NOT_FOUND.
    let delete = |track_id: &str, room_id: &str| pb::DeleteSubtitleTrackRequest {
        track_id: track_id.to_owned(),
        room_id: room_id.to_owned(),
    };
    let operator_track = by_admin.track.unwrap().track_id;
    assert_eq!(
        stack
            .media()
            .delete_subtitle_track(as_user(delete(&operator_track, room_id), &room.bob))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    stack.media().delete_subtitle_track(as_user(delete(&operator_track, room_id), &carol)).await.unwrap();
    assert_eq!(
        stack
            .media()
            .delete_subtitle_track(as_user(delete(&operator_track, room_id), &carol))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let bad = stack.media().delete_subtitle_track(as_user(delete("nope", room_id), &carol)).await.unwrap_err();
    assert_eq!(svc_kit::testing::violations(&bad), ["track_id"]);

    // The room's default: its owner only, a track of the item only; members see it.
    let set = |track_id: &str| pb::SetRoomSubtitleDefaultRequest {
        room_id: room_id.to_owned(),
        media_item_id: item.to_owned(),
        track_id: track_id.to_owned(),
    };
    assert_eq!(
        stack.media().set_room_subtitle_default(as_user(set(&first.track_id), &carol)).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    assert_eq!(
        stack.media().set_room_subtitle_default(as_user(set(uuid_like()), &room.alice)).await.unwrap_err().code(),
        Code::NotFound
    );
    let set_answer = stack.media().set_room_subtitle_default(as_user(set(&first.track_id), &room.alice)).await.unwrap();
    assert_eq!(set_answer.into_inner().room_default_track_id, first.track_id);
    let seen = list(&stack, &room.bob, item, room_id).await.unwrap();
    assert_eq!(seen.room_default_track_id, first.track_id);
    assert!(!seen.can_set_room_default);
    assert!(list(&stack, &room.alice, item, room_id).await.unwrap().can_set_room_default);
    // Cleared, set again, then the track deleted: the default goes with it.
    stack.media().set_room_subtitle_default(as_user(set(""), &room.alice)).await.unwrap();
    assert_eq!(list(&stack, &room.bob, item, room_id).await.unwrap().room_default_track_id, "");
    stack.media().set_room_subtitle_default(as_user(set(&first.track_id), &room.alice)).await.unwrap();
    stack.media().delete_subtitle_track(as_user(delete(&first.track_id, ""), &room.alice)).await.unwrap();
    assert_eq!(list(&stack, &room.bob, item, room_id).await.unwrap().room_default_track_id, "");

    // An item the room does not play: no default to set there.
    let elsewhere = stack.http().upload(&room.alice, &short_mp4(), "elsewhere.mp4", room_id).await;
    let elsewhere = elsewhere.header("xiaowo-media-item-id").unwrap().to_owned();
    let request = pb::SetRoomSubtitleDefaultRequest {
        room_id: room_id.to_owned(),
        media_item_id: elsewhere,
        track_id: String::new(),
    };
    assert_eq!(
        stack.media().set_room_subtitle_default(as_user(request, &room.alice)).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let request = pb::SetRoomSubtitleDefaultRequest {
        room_id: "x".to_owned(),
        media_item_id: item.to_owned(),
        track_id: String::new(),
    };
    assert_eq!(
        svc_kit::testing::violations(
            &stack.media().set_room_subtitle_default(as_user(request, &room.alice)).await.unwrap_err()
        ),
        ["room_id"]
    );
}
