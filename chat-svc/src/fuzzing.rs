//! Entry points for `fuzz/`: requests as bytes off the wire go through prost's decoder and the
//! validators the RPC handlers run before they touch the database, ending in the
//! `tonic::Status` a caller would see. Not part of the service's API.

use prost::Message;
use proto::chat::v1 as pb;
use svc_kit::status::Violation;
use tonic::body::Body;

use crate::Error;
use crate::chat::{
    DEFAULT_HISTORY_PAGE, MAX_HISTORY_PAGE, MAX_MUTE, MAX_ROOM_ID, MIN_MUTE, TEXT, check_client_message_id,
    check_room_id, into_result, page_size,
};
use crate::grpc::duration_from_pb;

/// Decodes one request, chosen by the first byte, and validates it.
pub fn request(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else { return };
    let outcome = match selector % 3 {
        0 => pb::SendMessageRequest::decode(bytes).map(send),
        1 => pb::ListMessagesRequest::decode(bytes).map(
            |pb::ListMessagesRequest { room_id, before_seq, page_size: size }| {
                let mut violations: Vec<Violation> = check_room_id(&room_id).err().into_iter().collect();
                if before_seq < 0 {
                    violations.push(Violation::new("before_seq", "must not be negative"));
                }
                violations.extend(page_size(size, DEFAULT_HISTORY_PAGE, MAX_HISTORY_PAGE).err());
                into_result(violations)
            },
        ),
        _ => pb::MuteMemberRequest::decode(bytes).map(|pb::MuteMemberRequest { room_id, user_id, duration }| {
            let mut violations: Vec<Violation> = check_room_id(&room_id).err().into_iter().collect();
            if user_id.is_empty() || user_id.len() > MAX_ROOM_ID {
                violations.push(Violation::new("user_id", "must name a member"));
            }
            if !duration_from_pb(duration).is_some_and(|duration| (MIN_MUTE..=MAX_MUTE).contains(&duration)) {
                violations.push(Violation::new("duration", "must be 1 s to 30 days"));
            }
            into_result(violations)
        }),
    };
    if let Ok(Err(error)) = outcome {
        let response = tonic::Status::from(error).into_http::<Body>();
        assert!(response.headers().contains_key("grpc-status"));
    }
}

fn send(request: pb::SendMessageRequest) -> Result<(), Error> {
    let pb::SendMessageRequest { room_id, text, client_message_id } = request;
    let mut violations = Vec::new();
    let text = TEXT.check(&text).map_err(|violation| violations.push(violation)).ok();
    violations.extend(check_room_id(&room_id).err());
    violations.extend(check_client_message_id(&client_message_id).err());
    into_result(violations)?;
    let text = text.unwrap_or_default();
    assert!(!text.is_empty() && !text.chars().any(|c| c.is_control() && c != '\n'));
    Ok(())
}
