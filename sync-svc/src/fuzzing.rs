//! Entry points for `fuzz/`: a run of commands as bytes off the wire goes through prost's
//! decoder, the same validators the RPC handlers use, and the timeline rules
//! ([`timeline::apply`]), and every state reached is encoded as watchers would receive it.
//! Not part of the service's API.

use prost::Message;
use proto::sync::v1 as pb;
use svc_kit::status::Violation;

use crate::Error;
use crate::grpc::{conflict_status, state_to_pb, validated, wire};
use crate::rooms::MAX_START_AHEAD;
use crate::timeline::{self, Command, Media, QueueItem, RoomState};

/// The server's time when the run starts (a fixed instant keeps runs reproducible).
const START_MS: i64 = 1_800_000_000_000;

/// Splits `data` into commands (selector byte, milliseconds to advance the clock as two bytes,
/// length byte, that many bytes of protobuf) and applies each accepted one to one room.
pub fn commands(data: &[u8]) {
    let room_id = svc_kit::id::RoomId::issued("00000000-0000-4000-8000-000000000000".to_owned());
    let user_id = svc_kit::id::UserId::issued("00000000-0000-4000-8000-000000000001".to_owned());
    let mut state = RoomState::initial(&room_id, START_MS);
    let mut now_ms = START_MS;
    let mut rest = data;
    let mut next_item = 0_u32;
    while let [selector, advance_high, advance_low, length, tail @ ..] = rest {
        let length = usize::from(*length).min(tail.len());
        let (bytes, after) = tail.split_at(length);
        rest = after;
        now_ms += i64::from(u16::from_be_bytes([*advance_high, *advance_low]));
        next_item += 1;
        let item_id = format!("item-{next_item}");
        let command = match command(*selector, bytes, now_ms, &item_id) {
            Some(Ok(command)) => command,
            Some(Err(error)) => {
                answer(error);
                continue;
            }
            None => continue,
        };
        match timeline::apply(&state, command, Some(&user_id), now_ms) {
            Ok(next) => {
                assert_eq!(next.version, state.version + 1);
                assert!(next.timeline.position_at(now_ms) >= 0, "{next:?}");
                assert!((timeline::MIN_RATE..=timeline::MAX_RATE).contains(&next.timeline.rate));
                state = next;
                let encoded = wire::encode_state(&state, now_ms);
                assert!(pb::WatchRoomResponse::decode(encoded).is_ok());
            }
            Err(error) => answer(error),
        }
        let _ = state_to_pb(&state);
        let _ = conflict_status(&state).into_http::<tonic::body::Body>();
    }
}

/// The command one request asks for, its validation error, or `None` for undecodable bytes.
fn command(selector: u8, bytes: &[u8], now_ms: i64, item_id: &str) -> Option<Result<Command, Error>> {
    let one = |result: Result<Command, Violation>| result.map_err(|violation| vec![violation]);
    let (room_id, command) = match selector % 9 {
        0 => {
            let pb::PlayRequest { room_id, expected_version: _, start_time } = pb::PlayRequest::decode(bytes).ok()?;
            match schedule(now_ms, start_time.as_ref()) {
                Ok(start_at_ms) => (room_id, Ok(Command::Play { start_at_ms })),
                Err(violation) => return Some(Err(violation.into())),
            }
        }
        1 => {
            let pb::PauseRequest { room_id, expected_version: _, position_ms } =
                pb::PauseRequest::decode(bytes).ok()?;
            let position = position_ms.map(|position| timeline::check_non_negative("position_ms", position));
            (room_id, one(position.transpose().map(|position_ms| Command::Pause { position_ms })))
        }
        2 => {
            let pb::SeekRequest { room_id, expected_version: _, position_ms } = pb::SeekRequest::decode(bytes).ok()?;
            let position = timeline::check_non_negative("position_ms", position_ms);
            (room_id, one(position.map(|position_ms| Command::Seek { position_ms })))
        }
        3 => {
            let pb::SetRateRequest { room_id, expected_version: _, rate, start_time } =
                pb::SetRateRequest::decode(bytes).ok()?;
            let command = match (timeline::check_rate("rate", rate), schedule(now_ms, start_time.as_ref())) {
                (Ok(rate), Ok(start_at_ms)) => Ok(Command::SetRate { rate, start_at_ms }),
                (rate, start) => Err(rate.err().into_iter().chain(start.err()).collect()),
            };
            (room_id, command)
        }
        4 => {
            let pb::ChangeMediaRequest { room_id, expected_version: _, url, title, duration_ms, library_item_id } =
                pb::ChangeMediaRequest::decode(bytes).ok()?;
            let media = media(item_id, &url, &library_item_id, &title, duration_ms);
            (room_id, media.map(|media| Command::ChangeMedia { media }))
        }
        5 => {
            let pb::AddQueueItemRequest { room_id, expected_version: _, url, title, duration_ms, library_item_id } =
                pb::AddQueueItemRequest::decode(bytes).ok()?;
            let item = media(item_id, &url, &library_item_id, &title, duration_ms).map(|media| QueueItem {
                media,
                added_by_user_id: "fuzz-user".to_owned(),
                added_at: now_ms,
            });
            (room_id, item.map(|item| Command::QueueAdd { item }))
        }
        6 => {
            let pb::MoveQueueItemRequest { room_id, expected_version: _, item_id, new_index } =
                pb::MoveQueueItemRequest::decode(bytes).ok()?;
            let command = match usize::try_from(new_index) {
                Ok(_) if item_id.is_empty() => Err(vec![Violation::new("item_id", "must not be empty")]),
                Ok(new_index) => Ok(Command::QueueMove { item_id, new_index }),
                Err(_) => Err(vec![Violation::new("new_index", "must not be negative")]),
            };
            (room_id, command)
        }
        7 => {
            let pb::RemoveQueueItemRequest { room_id, expected_version: _, item_id } =
                pb::RemoveQueueItemRequest::decode(bytes).ok()?;
            let command = if item_id.is_empty() {
                Err(vec![Violation::new("item_id", "must not be empty")])
            } else {
                Ok(Command::QueueRemove { item_id })
            };
            (room_id, command)
        }
        _ => {
            let pb::PlayNextRequest { room_id, expected_version: _ } = pb::PlayNextRequest::decode(bytes).ok()?;
            (room_id, Ok(Command::PlayNext { start_at_ms: now_ms + 500 }))
        }
    };
    // Room ids are checked by the handlers; an empty one stands for "this room" so that the
    // fuzzer reaches the timeline rules without having to invent a UUID.
    let room_id = if room_id.is_empty() { "00000000-0000-4000-8000-000000000000" } else { room_id.as_str() };
    Some(validated(room_id, command).map(|(_, command)| command))
}

/// When a Play or SetRate starts, as the handlers decide it (with a fixed default lead).
fn schedule(now_ms: i64, start_time: Option<&prost_types::Timestamp>) -> Result<i64, Violation> {
    let ahead_ms = i64::try_from(MAX_START_AHEAD.as_millis()).unwrap_or(i64::MAX);
    timeline::schedule_at(now_ms, start_time.map(proto::ms_from_timestamp), 500, ahead_ms, "start_time")
}

/// The media item a request describes, checked as `ChangeMedia` and `AddQueueItem` check it,
/// with a predictable id instead of a random one.
fn media(
    media_id: &str,
    url: &str,
    library_item_id: &str,
    title: &str,
    duration_ms: i64,
) -> Result<Media, Vec<Violation>> {
    let mut violations = Vec::new();
    let source =
        timeline::check_media_source(url, library_item_id).map_err(|mut found| violations.append(&mut found)).ok();
    let title = timeline::TITLE.check(title).map_err(|violation| violations.push(violation)).ok();
    let duration_ms =
        timeline::check_non_negative("duration_ms", duration_ms).map_err(|violation| violations.push(violation)).ok();
    match (source, title, duration_ms) {
        (Some((url, library_item_id)), Some(title), Some(duration_ms)) => {
            Ok(Media { media_id: media_id.to_owned(), url, title, duration_ms, library_item_id })
        }
        _ => Err(violations),
    }
}

fn answer(error: Error) {
    let response = tonic::Status::from(error).into_http::<tonic::body::Body>();
    assert!(response.headers().contains_key("grpc-status"));
}
