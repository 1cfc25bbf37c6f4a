//! How chat-svc reads room-svc's answers. The shared client (`svc_kit::peer::room`) does the
//! calling, caching and event following; here its answers become chat's rules (members may
//! chat, owners and moderators may moderate), its errors become chat's, and room events end
//! the chat streams of removed members and closed rooms.

use std::sync::Arc;

use prometheus::IntGauge;
use svc_kit::peer::room::{RoomAccess, RoomAccessClient, RoomAccessError, RoomChange, RoomRole};
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::model::RoomEvent;
use crate::pubsub::PubSub;
use crate::retention::ClosedRoom;

/// Why a member who is not an owner or moderator is refused moderation.
pub(crate) const MODERATOR_REQUIRED: &str = "moderator rights required";

/// Chat's rules on top of room-svc's answer.
pub trait ChatRights: Sized {
    /// Refuses non-members and closed rooms.
    ///
    /// # Errors
    /// `NotMember`, `RoomClosed`.
    fn require_member(self) -> Result<Self, Error>;

    /// Refuses anyone who may not moderate.
    ///
    /// # Errors
    /// As [`Self::require_member`], then `Forbidden`.
    fn require_moderator(self) -> Result<Self, Error>;
}

impl ChatRights for RoomAccess {
    fn require_member(self) -> Result<Self, Error> {
        if !self.active {
            return Err(Error::RoomClosed);
        }
        if self.role == RoomRole::None {
            return Err(Error::NotMember);
        }
        Ok(self)
    }

    fn require_moderator(self) -> Result<Self, Error> {
        let access = self.require_member()?;
        if access.can_moderate { Ok(access) } else { Err(Error::Forbidden(MODERATOR_REQUIRED)) }
    }
}

impl From<RoomAccessError> for Error {
    fn from(error: RoomAccessError) -> Self {
        match error {
            RoomAccessError::RoomNotFound => Self::RoomNotFound,
            RoomAccessError::Unavailable(reason) => {
                tracing::warn!(%reason, "room access check failed");
                Self::Unavailable
            }
        }
    }
}

/// Follows room-svc's events until `shutdown`: publishes removals and closings to the room's
/// watchers, records closings for retention before the watchers hear of them (the janitor
/// only stops at shutdown), and keeps `connected` at 1 while the subscription is live.
pub async fn follow_room_events(
    access: Arc<RoomAccessClient>,
    pubsub: Arc<dyn PubSub>,
    connected: IntGauge,
    closed: tokio::sync::mpsc::UnboundedSender<ClosedRoom>,
    shutdown: CancellationToken,
) {
    let on_change = |change: RoomChange| match change {
        RoomChange::MemberRemoved { room_id, user_id } => {
            pubsub.publish(&room_id, RoomEvent::MemberRemoved { user_id });
        }
        RoomChange::Closed { room_id, closed_at_ms } => {
            let _ = closed.send(ClosedRoom { room_id: room_id.clone(), closed_at: closed_at_ms });
            pubsub.publish(&room_id, RoomEvent::RoomClosed);
        }
        RoomChange::MemberJoined { .. }
        | RoomChange::RoleChanged { .. }
        | RoomChange::Updated { .. }
        | RoomChange::Reconnected => {}
    };
    let on_connected = |live: bool| connected.set(i64::from(live));
    access.follow_events(on_change, on_connected, shutdown).await;
}
