//! The room domain's own types, free of protobuf and of the database's representation.

/// Who may find a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Listed in the public room list.
    Public,
    /// Reachable only by id (a shared link).
    Unlisted,
}

impl Visibility {
    /// The stored and audit-logged word.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Unlisted => "unlisted",
        }
    }
}

/// Who may control playback and the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlMode {
    Everyone,
    Moderators,
    Owner,
}

impl ControlMode {
    /// The stored and audit-logged word.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Everyone => "everyone",
            Self::Moderators => "moderators",
            Self::Owner => "owner",
        }
    }
}

/// A member's role, weakest first (so `>=` reads as "at least").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Member,
    Moderator,
    Owner,
}

impl Role {
    /// The stored and audit-logged word.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Moderator => "moderator",
            Self::Owner => "owner",
        }
    }
}

/// Whether a room is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomStatus {
    Active,
    Closed,
}

/// Why someone stopped being a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalReason {
    Left,
    Kicked,
}

/// Why a room was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The owner closed it.
    ClosedByOwner,
    /// The last member left.
    Empty,
    /// Nobody did anything for longer than the idle limit.
    Idle,
    /// An operator closed it.
    ClosedByAdmin,
}

impl CloseReason {
    /// The word recorded in the audit log.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClosedByOwner => "closed_by_owner",
            Self::Empty => "empty",
            Self::Idle => "idle",
            Self::ClosedByAdmin => "closed_by_admin",
        }
    }
}

/// A room as callers see it. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    pub room_id: String,
    pub name: String,
    pub description: String,
    pub visibility: Visibility,
    pub control_mode: ControlMode,
    pub has_password: bool,
    pub status: RoomStatus,
    pub owner_id: String,
    pub member_count: u64,
    pub created_at: i64,
    pub last_active_at: i64,
    pub closed_at: Option<i64>,
}

/// A member of a room; `display_name` is empty when session-svc no longer knows the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: String,
    pub display_name: String,
    pub role: Role,
    pub joined_at: i64,
}

/// One audit log row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub audit_log_id: i64,
    pub created_at: i64,
    pub action: String,
    /// `None` for the system (the idle janitor).
    pub user_id: Option<String>,
    pub room_id: String,
    pub target_user_id: Option<String>,
    /// A JSON object describing the change.
    pub detail: String,
}
