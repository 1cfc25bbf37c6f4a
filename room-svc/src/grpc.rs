//! The gRPC edge: protobuf in, domain calls, protobuf out. Nothing else knows `proto`, including
//! the one outbound call (display names from session-svc).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use proto::room::v1 as pb;
use proto::session::v1::BatchGetDisplayNamesRequest;
use proto::session::v1::session_internal_service_client::SessionInternalServiceClient;
use svc_kit::address::ClientAddress;
use svc_kit::auth::{Caller, InternalToken};
use svc_kit::clock::SharedClock;
use svc_kit::id::{RoomId, UserId};
use svc_kit::status::Violation;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::Error;
use crate::events::{Change, RoomEvent};
use crate::model::{AuditEntry, CloseReason, ControlMode, Member, RemovalReason, Role, Room, RoomStatus, Visibility};
use crate::rooms::{
    Access, AuditQuery, CreateRoom, DisplayNames, Membership, Rooms, UpdateRoom, audit_action, audit_page, checked,
    room_and_user,
};
use svc_kit::feed::{Delivery, FeedEnded};

fn visibility_to_pb(visibility: Visibility) -> pb::Visibility {
    match visibility {
        Visibility::Public => pb::Visibility::Public,
        Visibility::Unlisted => pb::Visibility::Unlisted,
    }
}

fn control_mode_to_pb(mode: ControlMode) -> pb::ControlMode {
    match mode {
        ControlMode::Everyone => pb::ControlMode::Everyone,
        ControlMode::Moderators => pb::ControlMode::Moderators,
        ControlMode::Owner => pb::ControlMode::Owner,
    }
}

fn role_to_pb(role: Option<Role>) -> pb::Role {
    match role {
        None => pb::Role::Unspecified,
        Some(Role::Member) => pb::Role::Member,
        Some(Role::Moderator) => pb::Role::Moderator,
        Some(Role::Owner) => pb::Role::Owner,
    }
}

fn status_to_pb(status: RoomStatus) -> pb::RoomStatus {
    match status {
        RoomStatus::Active => pb::RoomStatus::Active,
        RoomStatus::Closed => pb::RoomStatus::Closed,
    }
}

fn close_reason_to_pb(reason: CloseReason) -> pb::CloseReason {
    match reason {
        CloseReason::ClosedByOwner => pb::CloseReason::ClosedByOwner,
        CloseReason::Empty => pb::CloseReason::Empty,
        CloseReason::Idle => pb::CloseReason::Idle,
        CloseReason::ClosedByAdmin => pb::CloseReason::ClosedByAdmin,
    }
}

fn removal_reason_to_pb(reason: RemovalReason) -> pb::RemovalReason {
    match reason {
        RemovalReason::Left => pb::RemovalReason::Left,
        RemovalReason::Kicked => pb::RemovalReason::Kicked,
    }
}

/// A visibility from the wire; `UNSPECIFIED` is `default` (or refused when `None`).
pub(crate) fn visibility_from_pb(value: i32, default: Option<Visibility>) -> Result<Visibility, Violation> {
    match pb::Visibility::try_from(value) {
        Ok(pb::Visibility::Public) => Ok(Visibility::Public),
        Ok(pb::Visibility::Unlisted) => Ok(Visibility::Unlisted),
        Ok(pb::Visibility::Unspecified) => default.ok_or_else(|| Violation::new("visibility", "must be set")),
        Err(_) => Err(Violation::new("visibility", "unknown value")),
    }
}

/// A control mode from the wire; `UNSPECIFIED` is `default` (or refused when `None`).
pub(crate) fn control_mode_from_pb(value: i32, default: Option<ControlMode>) -> Result<ControlMode, Violation> {
    match pb::ControlMode::try_from(value) {
        Ok(pb::ControlMode::Everyone) => Ok(ControlMode::Everyone),
        Ok(pb::ControlMode::Moderators) => Ok(ControlMode::Moderators),
        Ok(pb::ControlMode::Owner) => Ok(ControlMode::Owner),
        Ok(pb::ControlMode::Unspecified) => default.ok_or_else(|| Violation::new("control_mode", "must be set")),
        Err(_) => Err(Violation::new("control_mode", "unknown value")),
    }
}

pub(crate) fn role_from_pb(value: i32) -> Result<Role, Violation> {
    match pb::Role::try_from(value) {
        Ok(pb::Role::Member) => Ok(Role::Member),
        Ok(pb::Role::Moderator) => Ok(Role::Moderator),
        Ok(pb::Role::Owner) => Ok(Role::Owner),
        Ok(pb::Role::Unspecified) | Err(_) => Err(Violation::new("role", "must be MEMBER or MODERATOR")),
    }
}

/// Both converted values, or every violation among them.
pub(crate) fn both<A, B>(first: Result<A, Violation>, second: Result<B, Violation>) -> Result<(A, B), Error> {
    match (first, second) {
        (Ok(first), Ok(second)) => Ok((first, second)),
        (first, second) => Err(Error::InvalidArgument(first.err().into_iter().chain(second.err()).collect())),
    }
}

fn room_to_pb(room: Room) -> pb::Room {
    let Room {
        room_id,
        name,
        description,
        visibility,
        control_mode,
        has_password,
        status,
        owner_id,
        member_count,
        created_at,
        last_active_at,
        closed_at,
    } = room;
    pb::Room {
        room_id,
        name,
        description,
        visibility: visibility_to_pb(visibility).into(),
        control_mode: control_mode_to_pb(control_mode).into(),
        has_password,
        status: status_to_pb(status).into(),
        owner_id,
        member_count: i32::try_from(member_count).unwrap_or(i32::MAX),
        create_time: Some(proto::timestamp_from_ms(created_at)),
        last_active_time: Some(proto::timestamp_from_ms(last_active_at)),
        close_time: closed_at.map(proto::timestamp_from_ms),
    }
}

fn member_to_pb(member: Member) -> pb::Member {
    let Member { user_id, display_name, role, joined_at } = member;
    pb::Member {
        user_id,
        display_name,
        role: role_to_pb(Some(role)).into(),
        join_time: Some(proto::timestamp_from_ms(joined_at)),
    }
}

fn audit_to_pb(entry: AuditEntry) -> pb::AuditLog {
    let AuditEntry { audit_log_id, created_at, action, user_id, room_id, target_user_id, detail } = entry;
    pb::AuditLog {
        audit_log_id,
        create_time: Some(proto::timestamp_from_ms(created_at)),
        action,
        user_id: user_id.unwrap_or_default(),
        room_id,
        target_user_id: target_user_id.unwrap_or_default(),
        detail,
    }
}

fn event_to_pb(event: RoomEvent) -> pb::WatchRoomEventsResponse {
    use pb::watch_room_events_response::Event;
    let RoomEvent { room_id, at_ms, change } = event;
    let event = match change {
        Change::MemberJoined { user_id } => Event::MemberJoined(pb::MemberJoined { user_id: user_id.into() }),
        Change::MemberRemoved { user_id, reason } => Event::MemberRemoved(pb::MemberRemoved {
            user_id: user_id.into(),
            reason: removal_reason_to_pb(reason).into(),
        }),
        Change::RoleChanged { user_id, role } => {
            Event::RoleChanged(pb::RoleChanged { user_id: user_id.into(), role: role_to_pb(Some(role)).into() })
        }
        Change::RoomUpdated { control_mode } => {
            Event::RoomUpdated(pb::RoomUpdated { control_mode: control_mode_to_pb(control_mode).into() })
        }
        Change::RoomClosed { reason } => {
            Event::RoomClosed(pb::RoomClosed { reason: close_reason_to_pb(reason).into() })
        }
    };
    pb::WatchRoomEventsResponse {
        room_id: room_id.into(),
        event_time: Some(proto::timestamp_from_ms(at_ms)),
        event: Some(event),
    }
}

fn page(rooms: Vec<Room>, next: Option<String>) -> (Vec<pb::Room>, String) {
    (rooms.into_iter().map(room_to_pb).collect(), next.unwrap_or_default())
}

/// `xiaowo.room.v1.RoomService`, the browser-facing part, behind a session guard: every call
/// carries its [`Caller`].
#[derive(Debug, Clone)]
pub struct PublicApi {
    pub(crate) rooms: Arc<Rooms>,
}

#[tonic::async_trait]
impl pb::room_service_server::RoomService for PublicApi {
    #[tracing::instrument(skip_all)]
    async fn create_room(
        &self,
        request: Request<pb::CreateRoomRequest>,
    ) -> Result<Response<pb::CreateRoomResponse>, Status> {
        let caller = Caller::of(&request)?;
        let address = ClientAddress::key_of(&request);
        let pb::CreateRoomRequest { name, description, visibility, password, control_mode } = request.into_inner();
        let (visibility, control_mode) = both(
            visibility_from_pb(visibility, Some(Visibility::Public)),
            control_mode_from_pb(control_mode, Some(ControlMode::Everyone)),
        )?;
        let request = CreateRoom { name, description, visibility, password, control_mode };
        let room = self.rooms.create(&caller.user_id, &address, request).await?;
        Ok(Response::new(pb::CreateRoomResponse { room: Some(room_to_pb(room)) }))
    }

    #[tracing::instrument(skip_all, fields(room_id = %request.get_ref().room_id))]
    async fn get_room(&self, request: Request<pb::GetRoomRequest>) -> Result<Response<pb::GetRoomResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::GetRoomRequest { room_id } = request.into_inner();
        let room_id = RoomId::parse("room_id", &room_id).map_err(Error::from)?;
        let (room, role) = self.rooms.get(&caller.user_id, &room_id).await?;
        Ok(Response::new(pb::GetRoomResponse { room: Some(room_to_pb(room)), role: role_to_pb(role).into() }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_rooms(
        &self,
        request: Request<pb::ListRoomsRequest>,
    ) -> Result<Response<pb::ListRoomsResponse>, Status> {
        let pb::ListRoomsRequest { page_size, page_token } = request.into_inner();
        let (rooms, next) = self.rooms.list_public(page_size, &page_token).await?;
        let (rooms, next_page_token) = page(rooms, next);
        Ok(Response::new(pb::ListRoomsResponse { rooms, next_page_token }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_my_rooms(
        &self,
        request: Request<pb::ListMyRoomsRequest>,
    ) -> Result<Response<pb::ListMyRoomsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::ListMyRoomsRequest { page_size, page_token } = request.into_inner();
        let (rooms, next) = self.rooms.list_mine(&caller.user_id, page_size, &page_token).await?;
        let (rooms, next_page_token) = page(rooms, next);
        Ok(Response::new(pb::ListMyRoomsResponse { rooms, next_page_token }))
    }

    #[tracing::instrument(skip_all, fields(room_id = %request.get_ref().room_id))]
    async fn join_room(&self, request: Request<pb::JoinRoomRequest>) -> Result<Response<pb::JoinRoomResponse>, Status> {
        let caller = Caller::of(&request)?;
        let address = ClientAddress::key_of(&request);
        let pb::JoinRoomRequest { room_id, password } = request.into_inner();
        let room_id = RoomId::parse("room_id", &room_id).map_err(Error::from)?;
        let (room, member) = self.rooms.join(&caller, &address, &room_id, password).await?;
        Ok(Response::new(pb::JoinRoomResponse { room: Some(room_to_pb(room)), member: Some(member_to_pb(member)) }))
    }

    #[tracing::instrument(skip_all, fields(room_id = %request.get_ref().room_id))]
    async fn leave_room(
        &self,
        request: Request<pb::LeaveRoomRequest>,
    ) -> Result<Response<pb::LeaveRoomResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::LeaveRoomRequest { room_id } = request.into_inner();
        let room_id = RoomId::parse("room_id", &room_id).map_err(Error::from)?;
        self.rooms.leave(&caller.user_id, &room_id).await?;
        Ok(Response::new(pb::LeaveRoomResponse {}))
    }

    #[tracing::instrument(skip_all, fields(room_id = %request.get_ref().room_id))]
    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::ListMembersRequest { room_id } = request.into_inner();
        let room_id = RoomId::parse("room_id", &room_id).map_err(Error::from)?;
        let members = self.rooms.members(&caller.user_id, &room_id).await?;
        Ok(Response::new(pb::ListMembersResponse { members: members.into_iter().map(member_to_pb).collect() }))
    }

    #[tracing::instrument(skip_all, fields(room_id = %request.get_ref().room_id))]
    async fn get_my_membership(
        &self,
        request: Request<pb::GetMyMembershipRequest>,
    ) -> Result<Response<pb::GetMyMembershipResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::GetMyMembershipRequest { room_id } = request.into_inner();
        let room_id = RoomId::parse("room_id", &room_id).map_err(Error::from)?;
        let Membership { member, can_control, can_moderate, can_manage } =
            self.rooms.membership(&caller, &room_id).await?;
        Ok(Response::new(pb::GetMyMembershipResponse {
            member: Some(member_to_pb(member)),
            can_control,
            can_moderate,
            can_manage,
        }))
    }

    #[tracing::instrument(skip_all, fields(room_id = %request.get_ref().room_id))]
    async fn update_room(
        &self,
        request: Request<pb::UpdateRoomRequest>,
    ) -> Result<Response<pb::UpdateRoomResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::UpdateRoomRequest { room_id, name, description, visibility, password, clear_password, control_mode } =
            request.into_inner();
        let (visibility, control_mode) = both(
            visibility.map(|value| visibility_from_pb(value, None)).transpose(),
            control_mode.map(|value| control_mode_from_pb(value, None)).transpose(),
        )?;
        let update = UpdateRoom { name, description, visibility, password, clear_password, control_mode };
        let room_id = match RoomId::parse("room_id", &room_id) {
            Ok(room_id) => room_id,
            // Every problem with the request is reported, the settings' as well.
            Err(violation) => {
                let violations = std::iter::once(violation).chain(update.checked().err().unwrap_or_default());
                return Err(Error::InvalidArgument(violations.collect()).into());
            }
        };
        let room = self.rooms.update(&caller.user_id, &room_id, update).await?;
        Ok(Response::new(pb::UpdateRoomResponse { room: Some(room_to_pb(room)) }))
    }

    #[tracing::instrument(skip_all, fields(room_id = %request.get_ref().room_id))]
    async fn set_member_role(
        &self,
        request: Request<pb::SetMemberRoleRequest>,
    ) -> Result<Response<pb::SetMemberRoleResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::SetMemberRoleRequest { room_id, user_id, role } = request.into_inner();
        let role = role_from_pb(role).map_err(Error::from)?;
        let (room_id, user_id) = room_and_user(&room_id, &user_id)?;
        let member = self.rooms.set_role(&caller.user_id, &room_id, &user_id, role).await?;
        Ok(Response::new(pb::SetMemberRoleResponse { member: Some(member_to_pb(member)) }))
    }

    #[tracing::instrument(skip_all, fields(room_id = %request.get_ref().room_id))]
    async fn kick_member(
        &self,
        request: Request<pb::KickMemberRequest>,
    ) -> Result<Response<pb::KickMemberResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::KickMemberRequest { room_id, user_id } = request.into_inner();
        let (room_id, user_id) = room_and_user(&room_id, &user_id)?;
        self.rooms.kick(&caller.user_id, &room_id, &user_id).await?;
        Ok(Response::new(pb::KickMemberResponse {}))
    }

    #[tracing::instrument(skip_all, fields(room_id = %request.get_ref().room_id))]
    async fn transfer_ownership(
        &self,
        request: Request<pb::TransferOwnershipRequest>,
    ) -> Result<Response<pb::TransferOwnershipResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::TransferOwnershipRequest { room_id, user_id } = request.into_inner();
        let (room_id, user_id) = room_and_user(&room_id, &user_id)?;
        let room = self.rooms.transfer(&caller.user_id, &room_id, &user_id).await?;
        Ok(Response::new(pb::TransferOwnershipResponse { room: Some(room_to_pb(room)) }))
    }

    #[tracing::instrument(skip_all, fields(room_id = %request.get_ref().room_id))]
    async fn close_room(
        &self,
        request: Request<pb::CloseRoomRequest>,
    ) -> Result<Response<pb::CloseRoomResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::CloseRoomRequest { room_id } = request.into_inner();
        let room_id = RoomId::parse("room_id", &room_id).map_err(Error::from)?;
        let room = self.rooms.close(&caller.user_id, &room_id).await?;
        Ok(Response::new(pb::CloseRoomResponse { room: Some(room_to_pb(room)) }))
    }
}

/// `xiaowo.room.v1.RoomInternalService`, for sync-svc and chat-svc.
#[derive(Debug, Clone)]
pub struct InternalApi {
    pub(crate) rooms: Arc<Rooms>,
    pub(crate) clock: SharedClock,
    pub(crate) heartbeat: Duration,
    pub(crate) shutdown: CancellationToken,
}

/// `xiaowo.room.v1.RoomAccessInternalService`: access checks in bulk, for sync-svc and chat-svc.
#[derive(Debug, Clone)]
pub struct AccessApi {
    pub(crate) rooms: Arc<Rooms>,
}

#[tonic::async_trait]
impl pb::room_access_internal_service_server::RoomAccessInternalService for AccessApi {
    #[tracing::instrument(skip_all, fields(checks = request.get_ref().checks.len()))]
    async fn batch_check_access(
        &self,
        request: Request<pb::BatchCheckAccessRequest>,
    ) -> Result<Response<pb::BatchCheckAccessResponse>, Status> {
        let pb::BatchCheckAccessRequest { checks } = request.into_inner();
        let pairs = batch_pairs(&checks)?;
        let answers = self.rooms.check_access_many(&pairs).await?;
        let results = answers
            .into_iter()
            .map(|answer| {
                let outcome = match answer {
                    Some(access) => pb::check_access_result::Outcome::Access(access_to_pb(access)),
                    None => pb::check_access_result::Outcome::RoomNotFound(true),
                };
                pb::CheckAccessResult { outcome: Some(outcome) }
            })
            .collect();
        Ok(Response::new(pb::BatchCheckAccessResponse { results }))
    }

    async fn batch_record_activity(
        &self,
        request: Request<pb::BatchRecordActivityRequest>,
    ) -> Result<Response<pb::BatchRecordActivityResponse>, Status> {
        let pb::BatchRecordActivityRequest { room_ids } = request.into_inner();
        let room_ids = batch_rooms(&room_ids)?;
        self.rooms.record_activity_many(&room_ids).await?;
        Ok(Response::new(pb::BatchRecordActivityResponse {}))
    }
}

/// Most pairs one `BatchCheckAccess` may ask about: two queries with twice as many bound ids
/// stay well inside every database's parameter limit.
pub const MAX_BATCH_CHECKS: usize = 500;

/// A batch's pairs, checked: 1 to [`MAX_BATCH_CHECKS`] of them, each id valid (every bad one
/// reported, as `checks[i].room_id`).
fn batch_pairs(checks: &[pb::CheckAccessRequest]) -> Result<Vec<(RoomId, UserId)>, Error> {
    batch_size("checks", checks.len(), "checks")?;
    let mut violations = Vec::new();
    let mut pairs = Vec::with_capacity(checks.len());
    for (index, pb::CheckAccessRequest { room_id, user_id }) in checks.iter().enumerate() {
        let room_id = checked(&mut violations, RoomId::parse(&format!("checks[{index}].room_id"), room_id));
        let user_id = checked(&mut violations, UserId::parse(&format!("checks[{index}].user_id"), user_id));
        if let (Some(room_id), Some(user_id)) = (room_id, user_id) {
            pairs.push((room_id, user_id));
        }
    }
    if violations.is_empty() { Ok(pairs) } else { Err(Error::InvalidArgument(violations)) }
}

/// 1 to [`MAX_BATCH_CHECKS`] `items` in batch field `field`.
fn batch_size(field: &str, len: usize, items: &str) -> Result<(), Error> {
    if (1..=MAX_BATCH_CHECKS).contains(&len) {
        return Ok(());
    }
    let violation = Violation::new(field, format!("must hold 1 to {MAX_BATCH_CHECKS} {items}"));
    Err(Error::InvalidArgument(vec![violation]))
}

/// A batch's rooms, checked: 1 to [`MAX_BATCH_CHECKS`] of them, each id valid (every bad one
/// reported, as `room_ids[i]`).
fn batch_rooms(room_ids: &[String]) -> Result<Vec<RoomId>, Error> {
    batch_size("room_ids", room_ids.len(), "room ids")?;
    let mut violations = Vec::new();
    let rooms: Vec<RoomId> = room_ids
        .iter()
        .enumerate()
        .filter_map(|(index, room_id)| checked(&mut violations, RoomId::parse(&format!("room_ids[{index}]"), room_id)))
        .collect();
    if violations.is_empty() { Ok(rooms) } else { Err(Error::InvalidArgument(violations)) }
}

fn access_to_pb(access: Access) -> pb::CheckAccessResponse {
    let Access { status, control_mode, role, can_control, can_moderate } = access;
    pb::CheckAccessResponse {
        status: status_to_pb(status).into(),
        control_mode: control_mode_to_pb(control_mode).into(),
        role: role_to_pb(role).into(),
        can_control,
        can_moderate,
    }
}

/// The `WatchRoomEvents` response stream.
pub type RoomEventStream = Pin<Box<dyn Stream<Item = Result<pb::WatchRoomEventsResponse, Status>> + Send>>;

/// Items a watcher's stream may hold before it stops pulling from the bus (and, if it stays
/// stuck, falls behind and is ended).
const WATCH_BUFFER: usize = 64;

#[tonic::async_trait]
impl pb::room_internal_service_server::RoomInternalService for InternalApi {
    #[tracing::instrument(skip_all, fields(room_id = %request.get_ref().room_id))]
    async fn check_access(
        &self,
        request: Request<pb::CheckAccessRequest>,
    ) -> Result<Response<pb::CheckAccessResponse>, Status> {
        let pb::CheckAccessRequest { room_id, user_id } = request.into_inner();
        let (room_id, user_id) = room_and_user(&room_id, &user_id)?;
        let access = self.rooms.check_access(&room_id, &user_id).await?;
        Ok(Response::new(access_to_pb(access)))
    }

    #[tracing::instrument(skip_all, fields(room_id = %request.get_ref().room_id))]
    async fn record_activity(
        &self,
        request: Request<pb::RecordActivityRequest>,
    ) -> Result<Response<pb::RecordActivityResponse>, Status> {
        let pb::RecordActivityRequest { room_id } = request.into_inner();
        let room_id = RoomId::parse("room_id", &room_id).map_err(Error::from)?;
        self.rooms.record_activity(&room_id).await?;
        Ok(Response::new(pb::RecordActivityResponse {}))
    }

    type WatchRoomEventsStream = RoomEventStream;

    #[tracing::instrument(skip_all)]
    async fn watch_room_events(
        &self,
        request: Request<pb::WatchRoomEventsRequest>,
    ) -> Result<Response<Self::WatchRoomEventsStream>, Status> {
        let pb::WatchRoomEventsRequest {} = request.into_inner();
        let clock = Arc::clone(&self.clock);
        let deliveries =
            crate::events::watch(self.rooms.events(), self.heartbeat, WATCH_BUFFER, self.shutdown.child_token());
        let stream = deliveries.map(move |delivery| match delivery {
            Ok(Delivery::Heartbeat) => Ok(pb::WatchRoomEventsResponse {
                room_id: String::new(),
                event_time: Some(proto::timestamp_from_ms(clock.now_ms())),
                event: Some(pb::watch_room_events_response::Event::Heartbeat(pb::Heartbeat {})),
            }),
            Ok(Delivery::Item(event)) => Ok(event_to_pb(event)),
            Err(FeedEnded::FellBehind { missed }) => {
                tracing::warn!(missed, "room event watcher fell behind; ending its stream");
                Err(Status::unavailable("fell behind the room events; reconnect and re-check access"))
            }
            Err(FeedEnded::ShuttingDown) => Err(Status::unavailable("room service shutting down; reconnect")),
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// `xiaowo.room.v1.RoomAdminService`, for operators holding the admin token (its guard checks
/// it).
#[derive(Debug, Clone)]
pub struct AdminApi {
    pub(crate) rooms: Arc<Rooms>,
}

#[tonic::async_trait]
impl pb::room_admin_service_server::RoomAdminService for AdminApi {
    #[tracing::instrument(skip_all, fields(room_id = %request.get_ref().room_id))]
    async fn list_audit_logs(
        &self,
        request: Request<pb::ListAuditLogsRequest>,
    ) -> Result<Response<pb::ListAuditLogsResponse>, Status> {
        let pb::ListAuditLogsRequest {
            room_id,
            user_id,
            start_time,
            end_time,
            page_size,
            page_token,
            action,
            newest_first,
        } = request.into_inner();
        let (start, end) =
            (start_time.as_ref().map(proto::ms_from_timestamp), end_time.as_ref().map(proto::ms_from_timestamp));
        // Every filter is optional: empty means every room, every user, every action.
        let mut violations = Vec::new();
        let room_id = (!room_id.is_empty()).then(|| RoomId::parse("room_id", &room_id)).transpose();
        let user_id = (!user_id.is_empty()).then(|| UserId::parse("user_id", &user_id)).transpose();
        let (room_id, user_id) = (checked(&mut violations, room_id), checked(&mut violations, user_id));
        let action = checked(&mut violations, audit_action(&action));
        let (Some(room_id), Some(user_id), Some(action)) = (room_id, user_id, action) else {
            // Every problem with the request is reported, the page's as well.
            violations
                .extend(audit_page(page_size, &page_token, start, end.unwrap_or(i64::MAX)).err().unwrap_or_default());
            return Err(Error::InvalidArgument(violations).into());
        };
        let query = AuditQuery { room_id, user_id, start, end, action, newest_first, page_size, page_token };
        let (entries, next) = self.rooms.audit_logs(query).await?;
        Ok(Response::new(pb::ListAuditLogsResponse {
            audit_logs: entries.into_iter().map(audit_to_pb).collect(),
            next_page_token: next.unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_rooms(
        &self,
        request: Request<pb::RoomAdminServiceListRoomsRequest>,
    ) -> Result<Response<pb::RoomAdminServiceListRoomsResponse>, Status> {
        let pb::RoomAdminServiceListRoomsRequest { status, page_size, page_token } = request.into_inner();
        let status = match pb::RoomStatus::try_from(status) {
            Ok(pb::RoomStatus::Unspecified) => None,
            Ok(pb::RoomStatus::Active) => Some(RoomStatus::Active),
            Ok(pb::RoomStatus::Closed) => Some(RoomStatus::Closed),
            Err(_) => return Err(Error::from(Violation::new("status", "unknown value")).into()),
        };
        let (rooms, next) = self.rooms.list_all(status, page_size, &page_token).await?;
        let (rooms, next_page_token) = page(rooms, next);
        Ok(Response::new(pb::RoomAdminServiceListRoomsResponse { rooms, next_page_token }))
    }

    #[tracing::instrument(skip_all, fields(room_id = %request.get_ref().room_id))]
    async fn close_room(
        &self,
        request: Request<pb::RoomAdminServiceCloseRoomRequest>,
    ) -> Result<Response<pb::RoomAdminServiceCloseRoomResponse>, Status> {
        let pb::RoomAdminServiceCloseRoomRequest { room_id } = request.into_inner();
        let room_id = RoomId::parse("room_id", &room_id).map_err(Error::from)?;
        let room = self.rooms.close_as_admin(&room_id).await?;
        Ok(Response::new(pb::RoomAdminServiceCloseRoomResponse { room: Some(room_to_pb(room)) }))
    }
}

/// Display names through session-svc's `BatchGetDisplayNames`.
#[derive(Debug, Clone)]
pub struct SessionNames {
    client: SessionInternalServiceClient<Channel>,
    internal_token: Option<InternalToken>,
}

impl SessionNames {
    /// Asks session-svc over `channel`, presenting `internal_token` when the install has one.
    #[must_use]
    pub fn new(channel: Channel, internal_token: Option<InternalToken>) -> Self {
        Self { client: SessionInternalServiceClient::new(channel), internal_token }
    }
}

#[tonic::async_trait]
impl DisplayNames for SessionNames {
    async fn display_names(&self, user_ids: Vec<String>) -> Result<HashMap<String, String>, Error> {
        if user_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let response = self
            .client
            .clone()
            .batch_get_display_names(InternalToken::request(
                self.internal_token.as_ref(),
                BatchGetDisplayNamesRequest { user_ids },
            ))
            .await
            .map_err(|status| Error::Unavailable(format!("session-svc BatchGetDisplayNames: {}", status.message())))?;
        let proto::session::v1::BatchGetDisplayNamesResponse { display_names } = response.into_inner();
        Ok(display_names)
    }
}
