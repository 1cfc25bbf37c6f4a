//! Conversion to HLS with real ffmpeg: an HEVC + AC-3 MKV becomes H.264 + AAC fMP4 segments
//! under a playlist that ends with ENDLIST; H.264 video is copied; the growing playlist is an
//! EVENT playlist that is never cached; deleting mid-conversion leaves no ffmpeg and no files;
//! a restart mid-conversion finishes the item; WatchMedia streams progress then completion;
//! bad requests get their precise statuses.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::StatusCode;
use proto::media::v1 as pb;
use tonic::Code;

use crate::support::{Options, Stack, User, as_user, bearer, eventually, fixture};

/// A 30 s 320×180 test pattern with a tone in Matroska, its video and audio encoded so.
fn thirty_second_mkv(name: &str, video: &[&str], audio: &[&str]) -> Vec<u8> {
    let inputs = ["-f", "lavfi", "-i", "testsrc=size=320x180:rate=25", "-f", "lavfi", "-i", "sine=frequency=440"];
    let path =
        fixture(name, &[&inputs[..], &["-t", "30", "-pix_fmt", "yuv420p"], video, audio, &["-f", "matroska"]].concat());
    std::fs::read(path).unwrap()
}

/// HEVC + AC-3 (5.1): nothing a browser plays.
fn hevc_ac3_mkv() -> Vec<u8> {
    let video = ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error"];
    thirty_second_mkv("hevc-ac3.mkv", &video, &["-c:a", "ac3", "-ac", "6"])
}

/// H.264 (Constrained Baseline, which the conversion's own encoder never makes) + AC-3: only
/// its audio keeps browsers from playing it.
fn h264_ac3_mkv() -> Vec<u8> {
    let video = ["-c:v", "libx264", "-preset", "ultrafast", "-profile:v", "baseline", "-g", "50"];
    thirty_second_mkv("h264-ac3.mkv", &video, &["-c:a", "ac3"])
}

/// Conversions paced to `readrate` times real time (0: as fast as ffmpeg goes).
fn paced(readrate: f64) -> Options {
    let mut options = Options::new();
    options.config.convert_readrate = readrate;
    options
}

/// Alice uploads `bytes` in her room, Bob joins, the item is queued there.
async fn shared_upload(stack: &Stack, bytes: &[u8], name: &str) -> (User, User, String, String) {
    let (alice, bob) = (stack.user("Alice").await, stack.user("Bob").await);
    let room_id = stack.open_room(&alice).await;
    stack.join(&bob, &room_id).await;
    let done = stack.http().upload(&alice, bytes, name, &room_id).await;
    assert_eq!(done.status, StatusCode::NO_CONTENT, "{:?}", done.body);
    let media_item_id = done.header("xiaowo-media-item-id").unwrap().to_owned();
    stack.queue(&alice, &room_id, &media_item_id).await;
    (alice, bob, room_id, media_item_id)
}

/// Waits until the item's conversion is at least `state` (in the order of the enum).
async fn wait_for(
    stack: &Stack,
    user: &User,
    room_id: &str,
    media_item_id: &str,
    state: pb::ConversionState,
) -> pb::MediaItem {
    eventually(&format!("conversion {state:?}"), || async {
        let item = stack.item(user, room_id, media_item_id).await.unwrap();
        assert_ne!(item.conversion_state(), pb::ConversionState::Failed, "{}", item.conversion_error);
        (item.conversion_state() as i32 >= state as i32).then_some(item)
    })
    .await
}

fn hls_dir(stack: &Stack, media_item_id: &str) -> PathBuf {
    stack.media_dir.join(".xiaowo").join("hls").join(media_item_id)
}

/// Processes whose command line names the item's HLS folder (its ffmpeg), with their parent.
fn ffmpeg_processes(media_item_id: &str) -> Vec<(u32, u32)> {
    let needle = format!("hls/{media_item_id}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        if !String::from_utf8_lossy(&cmdline).contains(&needle) {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // `pid (comm) state ppid …`: the parent is the second field after the command.
        let parent = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok());
        found.push((pid, parent.unwrap_or(0)));
    }
    found
}

/// What ffprobe says of a file's streams and length.
fn ffprobe(path: &Path) -> serde_json::Value {
    let output = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json", "-show_streams", "-show_format"])
        .arg(path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn stream<'a>(probe: &'a serde_json::Value, kind: &str) -> &'a serde_json::Value {
    probe["streams"].as_array().unwrap().iter().find(|stream| stream["codec_type"] == kind).unwrap()
}

/// The playlist at `url` and its segments (init first) joined into one file under `dir`.
async fn fetch_hls(stack: &Stack, user: &User, url: &str, dir: &Path) -> (String, PathBuf) {
    let http = stack.http();
    let playlist = http.get(url, &[bearer(user)]).await;
    assert_eq!(playlist.status, StatusCode::OK);
    let text = String::from_utf8(playlist.body.to_vec()).unwrap();
    let base = url.rsplit_once('/').unwrap().0;
    let mut bytes = Vec::new();
    let names = std::iter::once("init.mp4").chain(text.lines().filter(|line| line.ends_with(".m4s")));
    for name in names {
        let part = http.get(&format!("{base}/{name}"), &[bearer(user)]).await;
        assert_eq!(part.status, StatusCode::OK, "{name}");
        let expected = if name == "init.mp4" { "video/mp4" } else { "video/iso.segment" };
        assert_eq!(part.header("content-type"), Some(expected), "{name}");
        bytes.extend_from_slice(&part.body);
    }
    let joined = dir.join("joined.mp4");
    std::fs::write(&joined, bytes).unwrap();
    (text, joined)
}

#[tokio::test]
async fn an_hevc_ac3_mkv_converts_to_hls_that_plays_through_signed_paths() {
    let stack = Stack::start(paced(0.0)).await;
    let (alice, bob, room_id, media_item_id) = shared_upload(&stack, &hevc_ac3_mkv(), "Night train.mkv").await;
    let item = stack.item(&alice, &room_id, &media_item_id).await.unwrap();
    assert_eq!(item.playability(), pb::Playability::NeedsConversion);

    let item = wait_for(&stack, &alice, &room_id, &media_item_id, pb::ConversionState::Complete).await;
    assert_eq!(item.converted_ms, item.duration_ms);
    assert!(item.conversion_error.is_empty());
    let request = pb::CreatePlaybackUrlRequest { room_id: room_id.clone(), media_item_id: media_item_id.clone() };
    let playback = stack.media().create_playback_url(as_user(request, &alice)).await.unwrap().into_inner();
    assert_eq!(playback.content_type, "application/vnd.apple.mpegurl");
    let url = playback.url;
    assert!(url.starts_with(&format!("/media/{media_item_id}/hls/")) && url.ends_with("/index.m3u8"), "{url}");

    let head = stack.http().get(&url, &[bearer(&alice)]).await;
    assert_eq!(head.header("content-type"), Some("application/vnd.apple.mpegurl"));
    assert!(head.header("cache-control").unwrap().starts_with("private"));
    let (playlist, joined) = fetch_hls(&stack, &alice, &url, stack.stack.dir()).await;
    assert!(playlist.contains("#EXT-X-PLAYLIST-TYPE:EVENT"), "{playlist}");
    assert!(playlist.contains("#EXT-X-START:TIME-OFFSET=0"), "{playlist}");
    assert!(playlist.trim_end().ends_with("#EXT-X-ENDLIST"), "{playlist}");
    let lengths: Vec<f64> =
        playlist.lines().filter_map(|line| line.strip_prefix("#EXTINF:")?.trim_end_matches(',').parse().ok()).collect();
    assert_eq!(lengths.len(), 15, "two-second segments: {lengths:?}");
    assert!(lengths.iter().all(|length| *length <= 2.05), "{lengths:?}");

    // Browsers' codecs, the source's size (not enlarged), the whole length; the video was
    // encoded by the conversion (High profile), the audio too.
    let probe = ffprobe(&joined);
    let (video, audio) = (stream(&probe, "video"), stream(&probe, "audio"));
    assert_eq!((video["codec_name"].as_str(), video["profile"].as_str()), (Some("h264"), Some("High")));
    assert_eq!((video["width"].as_i64(), video["height"].as_i64()), (Some(320), Some(180)));
    assert_eq!(video["pix_fmt"], "yuv420p");
    assert_eq!((audio["codec_name"].as_str(), audio["channels"].as_i64()), (Some("aac"), Some(2)));
    let seconds: f64 = probe["format"]["duration"].as_str().unwrap().parse().unwrap();
    assert!((seconds - 30.0).abs() < 0.5, "{seconds} s");

    // The grant in the path is Alice's: nobody else may use it, and no part of it may change.
    let http = stack.http();
    let segment = url.replace("index.m3u8", "seg00003.m4s");
    assert_eq!(http.get(&segment, &[bearer(&alice)]).await.status, StatusCode::OK);
    assert_eq!(http.get(&segment, &[bearer(&bob)]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(http.get(&segment, &[]).await.status, StatusCode::FORBIDDEN);
    let grant = url.split('/').nth(4).unwrap().to_owned();
    let forged = url.replace(&grant, &format!("{grant}x"));
    assert_eq!(http.get(&forged, &[bearer(&alice)]).await.status, StatusCode::FORBIDDEN);
    let missing = url.replace(&grant, "1.2.3");
    assert_eq!(http.get(&missing, &[bearer(&alice)]).await.status, StatusCode::FORBIDDEN);
    let bobs = stack.playback_url(&bob, &room_id, &media_item_id).await.unwrap();
    assert_eq!(http.get(&bobs, &[bearer(&bob)]).await.status, StatusCode::OK);
    // Only the folder's own files, nothing beside or above it.
    for name in ["index.m3u8.tmp", "secret.txt", "seg.m4s", "..%2f..%2fuploads"] {
        let other = url.replace("index.m3u8", name);
        assert_eq!(http.get(&other, &[bearer(&alice)]).await.status, StatusCode::NOT_FOUND, "{name}");
    }
    let above = format!("/media/{media_item_id}/hls/{grant}/../../../../etc/passwd");
    let status = http.raw_status(&above, &alice).await;
    assert!(status == 404 || status == 400 || status == 403, "{above}: {status}");
    // Once expired, refused like any signed URL.
    stack.clock().advance(Duration::from_secs(31 * 60));
    assert_eq!(http.get(&url, &[bearer(&alice)]).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn h264_video_is_copied_and_only_the_audio_converted() {
    let stack = Stack::start(paced(0.0)).await;
    let (alice, _bob, room_id, media_item_id) = shared_upload(&stack, &h264_ac3_mkv(), "Copied.mkv").await;
    wait_for(&stack, &alice, &room_id, &media_item_id, pb::ConversionState::Complete).await;
    let url = stack.playback_url(&alice, &room_id, &media_item_id).await.unwrap();
    let (playlist, joined) = fetch_hls(&stack, &alice, &url, stack.stack.dir()).await;
    assert!(playlist.contains("#EXT-X-ENDLIST"));
    let probe = ffprobe(&joined);
    let (video, audio) = (stream(&probe, "video"), stream(&probe, "audio"));
    // The source's own profile: copied, not encoded again (the encoder makes High).
    assert_eq!((video["codec_name"].as_str(), video["profile"].as_str()), (Some("h264"), Some("Constrained Baseline")));
    assert_eq!(audio["codec_name"], "aac");
    // Segments follow the source's keyframes (every 2 s here).
    assert_eq!(playlist.lines().filter(|line| line.starts_with("#EXTINF:")).count(), 15);
}

#[tokio::test]
async fn watch_media_streams_progress_then_completion_and_the_start_plays_early() {
    let stack = Stack::start(paced(3.0)).await;
    let (alice, _bob, room_id, media_item_id) = shared_upload(&stack, &hevc_ac3_mkv(), "Slow.mkv").await;
    let duration_ms = stack.item(&alice, &room_id, &media_item_id).await.unwrap().duration_ms;
    let request = pb::WatchMediaRequest { media_item_ids: vec![media_item_id.clone()], room_id: room_id.clone() };
    let mut stream = stack.media().watch_media(as_user(request, &alice)).await.unwrap().into_inner();
    let mut seen: Vec<(pb::ConversionState, i64)> = Vec::new();
    let mut checked_growing = false;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(90), stream.message()).await.expect("a message in time");
        let Some(message) = message.unwrap() else { break };
        let item = match message.event.unwrap() {
            pb::watch_media_response::Event::MediaItem(item) => item,
            pb::watch_media_response::Event::Heartbeat(_) => continue,
            pb::watch_media_response::Event::RemovedMediaItemId(id) => panic!("{id} removed"),
        };
        assert_eq!(item.media_item_id, media_item_id);
        seen.push((item.conversion_state(), item.converted_ms));
        if item.conversion_state() == pb::ConversionState::Playable && !checked_growing {
            // Ready to start: a URL, and a playlist that is still growing, never cached.
            checked_growing = true;
            let url = stack.playback_url(&alice, &room_id, &media_item_id).await.unwrap();
            let playlist = stack.http().get(&url, &[bearer(&alice)]).await;
            assert_eq!(playlist.header("cache-control"), Some("no-store"));
            let text = String::from_utf8_lossy(&playlist.body).into_owned();
            assert!(text.contains("#EXT-X-PLAYLIST-TYPE:EVENT") && text.contains(".m4s"), "{text}");
            assert!(!text.contains("#EXT-X-ENDLIST"), "{text}");
        }
    }
    // The stream ended after completion; the states only move forward, progress only grows.
    let (last_state, last_ms) = *seen.last().unwrap();
    assert_eq!((last_state, last_ms), (pb::ConversionState::Complete, duration_ms), "{seen:?}");
    assert!(seen.windows(2).all(|pair| pair[0].0 as i32 <= pair[1].0 as i32 && pair[0].1 <= pair[1].1), "{seen:?}");
    let playable: Vec<i64> =
        seen.iter().filter(|(state, _)| *state == pb::ConversionState::Playable).map(|(_, ms)| *ms).collect();
    assert!(
        playable.len() >= 3 && playable.windows(2).any(|pair| pair[0] < pair[1]),
        "progress while playable: {seen:?}"
    );
    assert!(checked_growing);
}

#[tokio::test]
async fn deleting_an_item_mid_conversion_stops_ffmpeg_and_removes_its_files() {
    let stack = Stack::start(paced(1.0)).await;
    let (alice, _bob, room_id, media_item_id) = shared_upload(&stack, &hevc_ac3_mkv(), "Deleted.mkv").await;
    let item = wait_for(&stack, &alice, &room_id, &media_item_id, pb::ConversionState::Playable).await;
    assert!(item.converted_ms < item.duration_ms, "still converting");
    let processes = ffmpeg_processes(&media_item_id);
    assert_eq!(processes.len(), 1, "one ffmpeg: {processes:?}");
    let (pid, parent) = processes[0];
    assert_eq!(parent, std::process::id(), "ffmpeg is the service's own child");
    let dir = hls_dir(&stack, &media_item_id);
    assert!(dir.join("index.m3u8").exists());
    let request = pb::WatchMediaRequest { media_item_ids: vec![media_item_id.clone()], room_id: room_id.clone() };
    let mut watching = stack.media().watch_media(as_user(request, &alice)).await.unwrap().into_inner();

    let request = pb::DeleteMediaItemRequest { media_item_id: media_item_id.clone() };
    stack.media().delete_media_item(as_user(request, &alice)).await.unwrap();
    // Gone when the call returns: the process (killed and reaped) and every file.
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "ffmpeg {pid} is still there");
    assert!(ffmpeg_processes(&media_item_id).is_empty());
    assert!(!dir.exists(), "the HLS folder is removed");
    assert!(stack.uploaded_files().is_empty(), "the upload is removed");
    assert_eq!(stack.item(&alice, &room_id, &media_item_id).await.unwrap_err().code(), Code::NotFound);
    // A watcher hears that it went, then its stream ends.
    let mut removed = false;
    while let Some(message) = tokio::time::timeout(Duration::from_secs(30), watching.message()).await.unwrap().unwrap()
    {
        if let Some(pb::watch_media_response::Event::RemovedMediaItemId(id)) = message.event {
            assert_eq!(id, media_item_id);
            removed = true;
        }
    }
    assert!(removed);
}

#[tokio::test]
async fn a_restart_mid_conversion_finishes_the_item() {
    let stack = Stack::start(paced(1.0)).await;
    let (alice, _bob, room_id, media_item_id) = shared_upload(&stack, &hevc_ac3_mkv(), "Restarted.mkv").await;
    let item = wait_for(&stack, &alice, &room_id, &media_item_id, pb::ConversionState::Playable).await;
    assert!(item.converted_ms < item.duration_ms, "still converting");
    let (pid, _) = ffmpeg_processes(&media_item_id)[0];

    // The stop kills the conversion (no ffmpeg outlives the server); the new server, on the
    // same database and media directory, converts the item again and finishes it.
    let stack = stack.restart(paced(0.0)).await;
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "ffmpeg {pid} outlived the server");
    let item = wait_for(&stack, &alice, &room_id, &media_item_id, pb::ConversionState::Complete).await;
    assert_eq!(item.converted_ms, item.duration_ms);
    let url = stack.playback_url(&alice, &room_id, &media_item_id).await.unwrap();
    let (playlist, _) = fetch_hls(&stack, &alice, &url, stack.stack.dir()).await;
    assert!(playlist.contains("#EXT-X-ENDLIST"));
    assert_eq!(playlist.lines().filter(|line| line.starts_with("#EXTINF:")).count(), 15);
}

#[tokio::test]
async fn waiting_and_bad_requests_get_precise_statuses() {
    // No conversion slots: the item stays queued.
    let mut options = Options::new();
    options.config.convert_jobs = 0;
    let stack = Stack::start(options).await;
    let (alice, bob, room_id, media_item_id) = shared_upload(&stack, &hevc_ac3_mkv(), "Waiting.mkv").await;
    let carol = stack.user("Carol").await;
    let item = stack.item(&alice, &room_id, &media_item_id).await.unwrap();
    assert_eq!(item.conversion_state(), pb::ConversionState::Queued);
    let refused = stack.playback_url(&bob, &room_id, &media_item_id).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);

    let watch = |user: &User, ids: Vec<String>, room: &str| {
        let request = pb::WatchMediaRequest { media_item_ids: ids, room_id: room.to_owned() };
        let request = as_user(request, user);
        let mut client = stack.media();
        async move { client.watch_media(request).await.map(tonic::Response::into_inner) }
    };
    let unknown = uuid::Uuid::new_v4().to_string();
    let invalid = |status: tonic::Status| svc_kit::testing::violations(&status);
    assert_eq!(invalid(watch(&alice, vec![], "").await.unwrap_err()), ["media_item_ids"]);
    assert_eq!(invalid(watch(&alice, vec!["nope".to_owned()], "").await.unwrap_err()), ["media_item_ids[0]"]);
    let twice = vec![media_item_id.clone(), media_item_id.clone()];
    assert_eq!(invalid(watch(&alice, twice, "").await.unwrap_err()), ["media_item_ids[1]"]);
    let many: Vec<String> = (0..101).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    assert_eq!(invalid(watch(&alice, many, "").await.unwrap_err()), ["media_item_ids"]);
    assert_eq!(invalid(watch(&alice, vec![media_item_id.clone()], "not-a-room").await.unwrap_err()), ["room_id"]);
    assert_eq!(watch(&alice, vec![unknown.clone()], "").await.unwrap_err().code(), Code::NotFound);
    // Bob sees the room's upload only as a member asking with the room; Carol is no member.
    assert_eq!(watch(&bob, vec![media_item_id.clone()], "").await.unwrap_err().code(), Code::NotFound);
    assert_eq!(watch(&carol, vec![media_item_id.clone()], &room_id).await.unwrap_err().code(), Code::PermissionDenied);
    let anonymous = pb::WatchMediaRequest { media_item_ids: vec![media_item_id.clone()], room_id: String::new() };
    assert_eq!(stack.media().watch_media(anonymous).await.unwrap_err().code(), Code::Unauthenticated);

    // A member watching the item and an unknown one: the item as it is, the other dropped.
    let mut stream = watch(&bob, vec![media_item_id.clone(), unknown.clone()], &room_id).await.unwrap();
    let mut item_state = None;
    let mut dropped = None;
    while item_state.is_none() || dropped.is_none() {
        match stream.message().await.unwrap().unwrap().event.unwrap() {
            pb::watch_media_response::Event::MediaItem(item) => item_state = Some(item.conversion_state()),
            pb::watch_media_response::Event::RemovedMediaItemId(id) => dropped = Some(id),
            pb::watch_media_response::Event::Heartbeat(_) => {}
        }
    }
    assert_eq!((item_state, dropped), (Some(pb::ConversionState::Queued), Some(unknown)));
}

#[tokio::test]
async fn a_failed_conversion_says_why_and_leaves_nothing() {
    // An ffmpeg that fails the way a broken one does: a word on stderr and a bad status.
    let programs = tempfile::tempdir().unwrap();
    let failing = programs.path().join("failing-ffmpeg");
    std::fs::write(&failing, "#!/bin/sh\necho 'Conversion failed: codec not supported' >&2\nexit 1\n").unwrap();
    let mut permissions = std::fs::metadata(&failing).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&failing, permissions).unwrap();
    let mut options = Options::new();
    options.config.ffmpeg = failing;
    let stack = Stack::start(options).await;
    let (alice, _bob, room_id, media_item_id) = shared_upload(&stack, &hevc_ac3_mkv(), "Broken.mkv").await;
    let item = eventually("the conversion to fail", || async {
        let item = stack.item(&alice, &room_id, &media_item_id).await.unwrap();
        (item.conversion_state() == pb::ConversionState::Failed).then_some(item)
    })
    .await;
    assert!(item.conversion_error.contains("codec not supported"), "{}", item.conversion_error);
    let refused = stack.playback_url(&alice, &room_id, &media_item_id).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(!hls_dir(&stack, &media_item_id).exists());
}
