//! Entry points for `fuzz/`: requests as bytes off the wire go through prost's decoder and the
//! validators the RPC handlers run before they touch the database, ending in the
//! `tonic::Status` a caller would see. Not part of the service's API.

use prost::Message;
use proto::chat::v1 as pb;
use svc_kit::id::UserId;
use tonic::body::Body;

use crate::Error;
use crate::chat::{Draft, HistoryPage, mute_duration};
use crate::grpc::{all_of, duration_from_pb, in_room};

/// Decodes one request, chosen by the first byte, and validates it as its handler does.
pub fn request(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else { return };
    let outcome = match selector % 3 {
        0 => pb::SendMessageRequest::decode(bytes).map(send),
        1 => {
            pb::ListMessagesRequest::decode(bytes).map(|pb::ListMessagesRequest { room_id, before_seq, page_size }| {
                in_room(&room_id, HistoryPage::new(before_seq, page_size)).map(drop)
            })
        }
        _ => pb::MuteMemberRequest::decode(bytes).map(|pb::MuteMemberRequest { room_id, user_id, duration }| {
            let target = UserId::parse("user_id", &user_id);
            in_room(&room_id, all_of(target, mute_duration(duration_from_pb(duration)))).map(drop)
        }),
    };
    if let Ok(Err(error)) = outcome {
        let response = tonic::Status::from(error).into_http::<Body>();
        assert!(response.headers().contains_key("grpc-status"));
    }
}

fn send(request: pb::SendMessageRequest) -> Result<(), Error> {
    let pb::SendMessageRequest { room_id, text, client_message_id } = request;
    let (_, draft) = in_room(&room_id, Draft::new(&text, &client_message_id))?;
    let text = draft.text();
    assert!(!text.is_empty() && !text.chars().any(|c| c.is_control() && c != '\n'));
    Ok(())
}
