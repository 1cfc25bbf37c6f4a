//! Entry points for `fuzz/`: a request as bytes off the wire goes through prost's decoder and
//! then through the same conversions and validators the RPC handlers run before they touch the
//! database, ending in the `tonic::Status` a caller would see. Not part of the service's API.

use prost::Message;
use proto::room::v1 as pb;
use svc_kit::id::{RoomId, UserId};
use svc_kit::status::Violation;

use crate::Error;
use crate::grpc::{both, control_mode_from_pb, role_from_pb, visibility_from_pb};
use crate::model::{ControlMode, Visibility};
use crate::rooms::{
    DEFAULT_AUDIT_PAGE, MAX_AUDIT_PAGE, PASSWORD_MAX_BYTES, ROOM_DESCRIPTION, ROOM_NAME, audit_action, checked,
    decode_audit_token, page_size, password_violation, room_and_user, room_page,
};

/// Decodes one public or admin request, chosen by the first byte, and validates it.
pub fn request(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else { return };
    let outcome = match selector % 9 {
        0 => pb::CreateRoomRequest::decode(bytes).map(create),
        1 => pb::UpdateRoomRequest::decode(bytes).map(update),
        2 => pb::ListRoomsRequest::decode(bytes)
            .map(|pb::ListRoomsRequest { page_size, page_token }| room_page(page_size, &page_token).map(drop)),
        3 => pb::JoinRoomRequest::decode(bytes).map(|pb::JoinRoomRequest { room_id, password }| {
            // A join checks the id first; the password is compared, never validated.
            let _ = password.len();
            RoomId::parse("room_id", &room_id).map(drop).map_err(Error::from)
        }),
        4 => pb::SetMemberRoleRequest::decode(bytes).map(|pb::SetMemberRoleRequest { room_id, user_id, role }| {
            role_from_pb(role).map_err(Error::from).and_then(|_| room_and_user(&room_id, &user_id).map(drop))
        }),
        5 => pb::KickMemberRequest::decode(bytes)
            .map(|pb::KickMemberRequest { room_id, user_id }| room_and_user(&room_id, &user_id).map(drop)),
        6 => pb::CheckAccessRequest::decode(bytes)
            .map(|pb::CheckAccessRequest { room_id, user_id }| room_and_user(&room_id, &user_id).map(drop)),
        7 => pb::ListAuditLogsRequest::decode(bytes).map(audit),
        _ => pb::GetRoomRequest::decode(bytes)
            .map(|pb::GetRoomRequest { room_id }| RoomId::parse("room_id", &room_id).map(drop).map_err(Error::from)),
    };
    if let Ok(Err(error)) = outcome {
        answer(error);
    }
}

/// The status a caller would get must be a well-formed HTTP answer.
fn answer(error: Error) {
    let status = tonic::Status::from(error);
    let response = status.into_http::<tonic::body::Body>();
    assert!(response.headers().contains_key("grpc-status"));
}

fn create(request: pb::CreateRoomRequest) -> Result<(), Error> {
    let pb::CreateRoomRequest { name, description, visibility, password, control_mode } = request;
    both(
        visibility_from_pb(visibility, Some(Visibility::Public)),
        control_mode_from_pb(control_mode, Some(ControlMode::Everyone)),
    )?;
    let mut violations = Vec::new();
    let name = checked(&mut violations, ROOM_NAME.check(&name));
    let description = checked(&mut violations, ROOM_DESCRIPTION.check(&description));
    if !password.is_empty() {
        violations.extend(password_violation("password", &password));
        assert!(
            violations.iter().any(|violation| violation.field == "password") || password.len() <= PASSWORD_MAX_BYTES
        );
    }
    match (name, description) {
        (Some(name), Some(description)) if violations.is_empty() => {
            assert!(name == name.trim() && !name.is_empty());
            assert!(description == description.trim());
            Ok(())
        }
        _ => Err(Error::InvalidArgument(violations)),
    }
}

fn update(request: pb::UpdateRoomRequest) -> Result<(), Error> {
    let pb::UpdateRoomRequest { room_id, name, description, visibility, password, clear_password, control_mode } =
        request;
    both(
        visibility.map(|value| visibility_from_pb(value, None)).transpose(),
        control_mode.map(|value| control_mode_from_pb(value, None)).transpose(),
    )?;
    let mut violations = Vec::new();
    checked(&mut violations, RoomId::parse("room_id", &room_id));
    name.and_then(|name| checked(&mut violations, ROOM_NAME.check(&name)));
    description.and_then(|description| checked(&mut violations, ROOM_DESCRIPTION.check(&description)));
    if let Some(password) = &password {
        violations.extend(password_violation("password", password));
        if clear_password {
            violations.push(Violation::new("clear_password", "cannot be combined with password"));
        }
    }
    if violations.is_empty() { Ok(()) } else { Err(Error::InvalidArgument(violations)) }
}

fn audit(request: pb::ListAuditLogsRequest) -> Result<(), Error> {
    let pb::ListAuditLogsRequest {
        room_id,
        user_id,
        start_time,
        end_time,
        page_size: size,
        page_token,
        action,
        newest_first: _,
    } = request;
    let start = start_time.as_ref().map(proto::ms_from_timestamp);
    let end = end_time.as_ref().map(proto::ms_from_timestamp);
    let mut violations = Vec::new();
    if !room_id.is_empty() {
        checked(&mut violations, RoomId::parse("room_id", &room_id));
    }
    if !user_id.is_empty() {
        checked(&mut violations, UserId::parse("user_id", &user_id));
    }
    checked(&mut violations, audit_action(&action));
    checked(&mut violations, page_size(size, DEFAULT_AUDIT_PAGE, MAX_AUDIT_PAGE));
    checked(&mut violations, decode_audit_token(&page_token));
    if start.zip(end).is_some_and(|(start, end)| start > end) {
        violations.push(Violation::new("end_time", "must not be before start_time"));
    }
    if violations.is_empty() { Ok(()) } else { Err(Error::InvalidArgument(violations)) }
}
