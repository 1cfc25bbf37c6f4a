//! The only code that touches room-svc's tables. Enums are stored as readable words
//! (`status = 'active'`, as in the seed) and read back strictly.
//!
//! Reads that a decision depends on happen inside the same write transaction as the change
//! ([`Tx`]), so two concurrent requests cannot both act on the state before either of them.

use std::collections::HashMap;

use sea_orm::sea_query::{Condition, Expr, Func, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait, Order,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set, SqliteTransactionMode, TransactionOptions,
    TransactionTrait,
};

use svc_kit::id::{RoomId, UserId};

use crate::entity::{audit_log, room, room_ban, room_member};
use crate::model::{AuditEntry, ControlMode, Role, Room, RoomStatus, Visibility};

const ACTIVE: &str = "active";
const CLOSED: &str = "closed";

/// The stored word for a status.
fn status_word(status: RoomStatus) -> &'static str {
    match status {
        RoomStatus::Active => ACTIVE,
        RoomStatus::Closed => CLOSED,
    }
}

fn unknown(column: &str, word: &str) -> DbErr {
    DbErr::Custom(format!("unknown {column} {word:?} in the database"))
}

fn parse_role(word: &str) -> Result<Role, DbErr> {
    match word {
        "member" => Ok(Role::Member),
        "moderator" => Ok(Role::Moderator),
        "owner" => Ok(Role::Owner),
        other => Err(unknown("role", other)),
    }
}

fn to_room(model: room::Model, member_count: u64) -> Result<StoredRoom, DbErr> {
    let room::Model {
        room_id,
        name,
        description,
        visibility,
        control_mode,
        password_hash,
        status,
        creator_id: _,
        owner_id,
        created_at,
        last_active_at,
        closed_at,
    } = model;
    let visibility = match visibility.as_str() {
        "public" => Visibility::Public,
        "unlisted" => Visibility::Unlisted,
        other => return Err(unknown("visibility", other)),
    };
    let control_mode = match control_mode.as_str() {
        "everyone" => ControlMode::Everyone,
        "moderators" => ControlMode::Moderators,
        "owner" => ControlMode::Owner,
        other => return Err(unknown("control_mode", other)),
    };
    let status = match status.as_str() {
        ACTIVE => RoomStatus::Active,
        CLOSED => RoomStatus::Closed,
        other => return Err(unknown("status", other)),
    };
    Ok(StoredRoom {
        room: Room {
            room_id,
            name,
            description,
            visibility,
            control_mode,
            has_password: password_hash.is_some(),
            status,
            owner_id,
            member_count,
            created_at,
            last_active_at,
            closed_at,
        },
        password_hash,
    })
}

/// A room with its password hash, which never leaves the domain layer.
#[derive(Debug, Clone)]
pub struct StoredRoom {
    pub room: Room,
    pub password_hash: Option<String>,
}

/// A room to insert; its creator becomes the owner member.
#[derive(Debug, Clone)]
pub struct NewRoom {
    pub room_id: RoomId,
    pub name: String,
    pub description: String,
    pub visibility: Visibility,
    pub control_mode: ControlMode,
    pub password_hash: Option<String>,
    pub owner_id: UserId,
    pub now: i64,
}

/// Settings to change; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct RoomChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub visibility: Option<Visibility>,
    pub control_mode: Option<ControlMode>,
    /// `Some(None)` removes the password.
    pub password_hash: Option<Option<String>>,
}

/// An audit row to write.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub at: i64,
    pub action: &'static str,
    pub user_id: Option<UserId>,
    pub room_id: RoomId,
    pub target_user_id: Option<UserId>,
    pub detail: serde_json::Value,
}

/// Which audit rows to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub room_id: Option<RoomId>,
    /// Rows where this user acted or was acted upon.
    pub user_id: Option<UserId>,
    /// Inclusive.
    pub start: Option<i64>,
    /// Exclusive.
    pub end: i64,
    /// Only rows of this action.
    pub action: Option<&'static str>,
    /// Newest first (and `after` counts backwards) instead of oldest first.
    pub newest_first: bool,
}

/// What one batch of closed-room retention deleted, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrunedRooms {
    pub rooms: u64,
    pub members: u64,
    pub bans: u64,
}

/// Access to room-svc's tables.
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
}

/// An open write transaction; dropped without [`Tx::commit`], it rolls back.
#[derive(Debug)]
pub struct Tx {
    tx: DatabaseTransaction,
}

async fn find_room<C: ConnectionTrait>(db: &C, room_id: &RoomId) -> Result<Option<StoredRoom>, DbErr> {
    let Some(model) = room::Entity::find_by_id(room_id.to_string()).one(db).await? else {
        return Ok(None);
    };
    with_member_count(db, model).await
}

async fn with_member_count<C: ConnectionTrait>(db: &C, model: room::Model) -> Result<Option<StoredRoom>, DbErr> {
    let room_id = model.room_id.as_str();
    let count = room_member::Entity::find().filter(room_member::Column::RoomId.eq(room_id)).count(db).await?;
    to_room(model, count).map(Some)
}

async fn find_role<C: ConnectionTrait>(db: &C, room_id: &RoomId, user_id: &UserId) -> Result<Option<Role>, DbErr> {
    let role: Option<String> = room_member::Entity::find()
        .select_only()
        .column(room_member::Column::Role)
        .filter(room_member::Column::RoomId.eq(room_id))
        .filter(room_member::Column::UserId.eq(user_id))
        .into_tuple()
        .one(db)
        .await?;
    role.as_deref().map(parse_role).transpose()
}

async fn find_ban<C: ConnectionTrait>(db: &C, room_id: &RoomId, user_id: &UserId) -> Result<Option<i64>, DbErr> {
    Ok(room_ban::Entity::find_by_id((room_id.to_string(), user_id.to_string()))
        .one(db)
        .await?
        .map(|ban| ban.banned_until))
}

/// Rooms with their member counts, in the order given.
async fn with_counts<C: ConnectionTrait>(db: &C, rooms: Vec<room::Model>) -> Result<Vec<Room>, DbErr> {
    let ids: Vec<String> = rooms.iter().map(|room| room.room_id.clone()).collect();
    let counts: HashMap<String, i64> = if ids.is_empty() {
        HashMap::new()
    } else {
        room_member::Entity::find()
            .select_only()
            .column(room_member::Column::RoomId)
            .column_as(Expr::from(Func::count(Expr::col(room_member::Column::UserId))), "member_count")
            .filter(room_member::Column::RoomId.is_in(ids))
            .group_by(room_member::Column::RoomId)
            .into_tuple::<(String, i64)>()
            .all(db)
            .await?
            .into_iter()
            .collect()
    };
    rooms
        .into_iter()
        .map(|model| {
            let count = counts.get(&model.room_id).copied().unwrap_or(0);
            to_room(model, u64::try_from(count).unwrap_or(0)).map(|stored| stored.room)
        })
        .collect()
}

/// Active rooms by most recent activity, strictly after the `(last_active_at, room_id)`
/// position `after`.
fn newest_active(after: Option<(i64, String)>) -> sea_orm::Select<room::Entity> {
    newest(after).filter(room::Column::Status.eq(ACTIVE))
}

/// Rooms in any status by most recent activity, strictly after the `(last_active_at, room_id)`
/// position `after`.
fn newest(after: Option<(i64, String)>) -> sea_orm::Select<room::Entity> {
    let mut query = room::Entity::find();
    if let Some((last_active_at, room_id)) = after {
        query = query.filter(Condition::any().add(room::Column::LastActiveAt.lt(last_active_at)).add(
            Condition::all().add(room::Column::LastActiveAt.eq(last_active_at)).add(room::Column::RoomId.lt(room_id)),
        ));
    }
    query.order_by_desc(room::Column::LastActiveAt).order_by_desc(room::Column::RoomId)
}

impl Store {
    /// Wraps a migrated connection.
    #[must_use]
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`), so that a transaction that reads before it writes waits for other writers
    /// instead of failing when it upgrades. PostgreSQL has no database-wide write lock: there
    /// [`Tx::room`] locks the room's row, which every change to a room reads first, so that
    /// changes to one room are serialised across all instances (capacity, roles, ownership).
    pub async fn write(&self) -> Result<Tx, DbErr> {
        let options = TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        };
        Ok(Tx { tx: self.db.begin_with_options(options).await? })
    }

    pub async fn room(&self, room_id: &RoomId) -> Result<Option<StoredRoom>, DbErr> {
        find_room(&self.db, room_id).await
    }

    /// `user_id`'s role in the room, `None` when not a member.
    pub async fn role(&self, room_id: &RoomId, user_id: &UserId) -> Result<Option<Role>, DbErr> {
        find_role(&self.db, room_id, user_id).await
    }

    /// What access checks need for many (room, user) pairs in two queries however many pairs
    /// there are: each known room's status and control mode, and the role of each pair that is
    /// a membership. The second query asks for those users in those rooms, which may also find
    /// pairs nobody asked about; callers look up only theirs.
    pub async fn access_rows(
        &self,
        pairs: &[(RoomId, UserId)],
    ) -> Result<(HashMap<String, (RoomStatus, ControlMode)>, HashMap<(String, String), Role>), DbErr> {
        let mut room_ids: Vec<String> = pairs.iter().map(|(room_id, _)| room_id.to_string()).collect();
        let mut user_ids: Vec<String> = pairs.iter().map(|(_, user_id)| user_id.to_string()).collect();
        for ids in [&mut room_ids, &mut user_ids] {
            ids.sort_unstable();
            ids.dedup();
        }
        let mut rooms = HashMap::new();
        for model in room::Entity::find().filter(room::Column::RoomId.is_in(room_ids.clone())).all(&self.db).await? {
            let room = to_room(model, 0)?.room;
            rooms.insert(room.room_id, (room.status, room.control_mode));
        }
        let memberships: Vec<(String, String, String)> = room_member::Entity::find()
            .select_only()
            .column(room_member::Column::RoomId)
            .column(room_member::Column::UserId)
            .column(room_member::Column::Role)
            .filter(room_member::Column::RoomId.is_in(room_ids))
            .filter(room_member::Column::UserId.is_in(user_ids))
            .into_tuple()
            .all(&self.db)
            .await?;
        let mut roles = HashMap::with_capacity(memberships.len());
        for (room_id, user_id, role) in memberships {
            roles.insert((room_id, user_id), parse_role(&role)?);
        }
        Ok((rooms, roles))
    }

    /// `user_id`'s role and join time, when they are a member.
    pub async fn member(&self, room_id: &RoomId, user_id: &UserId) -> Result<Option<(Role, i64)>, DbErr> {
        room_member::Entity::find_by_id((room_id.to_string(), user_id.to_string()))
            .one(&self.db)
            .await?
            .map(|member| Ok((parse_role(&member.role)?, member.joined_at)))
            .transpose()
    }

    /// Until when `user_id` may not rejoin the room, if they were ever kicked from it.
    pub async fn ban_until(&self, room_id: &RoomId, user_id: &UserId) -> Result<Option<i64>, DbErr> {
        find_ban(&self.db, room_id, user_id).await
    }

    /// Up to `limit` public active rooms, most recently active first.
    pub async fn list_public(&self, after: Option<(i64, String)>, limit: u64) -> Result<Vec<Room>, DbErr> {
        let rooms = newest_active(after)
            .filter(room::Column::Visibility.eq(Visibility::Public.as_str()))
            .limit(limit)
            .all(&self.db)
            .await?;
        with_counts(&self.db, rooms).await
    }

    /// Up to `limit` rooms of any visibility, in `status` (`None` for all), most recently active
    /// first.
    pub async fn list_all(
        &self,
        status: Option<RoomStatus>,
        after: Option<(i64, String)>,
        limit: u64,
    ) -> Result<Vec<Room>, DbErr> {
        let mut query = newest(after);
        if let Some(status) = status {
            query = query.filter(room::Column::Status.eq(status_word(status)));
        }
        let rooms = query.limit(limit).all(&self.db).await?;
        with_counts(&self.db, rooms).await
    }

    /// Up to `limit` active rooms `user_id` is a member of, most recently active first.
    pub async fn list_for_member(
        &self,
        user_id: &UserId,
        after: Option<(i64, String)>,
        limit: u64,
    ) -> Result<Vec<Room>, DbErr> {
        let memberships = Query::select()
            .column(room_member::Column::RoomId)
            .from(room_member::Entity)
            .and_where(room_member::Column::UserId.eq(user_id))
            .to_owned();
        let rooms = newest_active(after)
            .filter(room::Column::RoomId.in_subquery(memberships))
            .limit(limit)
            .all(&self.db)
            .await?;
        with_counts(&self.db, rooms).await
    }

    /// Every member as `(user_id, role, joined_at)`, strongest role first, then by join time.
    pub async fn members(&self, room_id: &RoomId) -> Result<Vec<(String, Role, i64)>, DbErr> {
        let rows = room_member::Entity::find()
            .filter(room_member::Column::RoomId.eq(room_id))
            .order_by_asc(room_member::Column::JoinedAt)
            .order_by_asc(room_member::Column::UserId)
            .all(&self.db)
            .await?;
        let mut members = rows
            .into_iter()
            .map(|row| Ok((row.user_id, parse_role(&row.role)?, row.joined_at)))
            .collect::<Result<Vec<_>, DbErr>>()?;
        // Stable: join order is kept within each role.
        members.sort_by_key(|(_, role, _)| std::cmp::Reverse(*role));
        Ok(members)
    }

    /// Marks an active room as active at `now`; whether it was (an active room with that id).
    pub async fn touch(&self, room_id: &RoomId, now: i64) -> Result<bool, DbErr> {
        let result = room::Entity::update_many()
            .col_expr(room::Column::LastActiveAt, Expr::value(now))
            .filter(room::Column::RoomId.eq(room_id))
            .filter(room::Column::Status.eq(ACTIVE))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected > 0)
    }

    /// Marks the active rooms among `room_ids` as active at `now`.
    pub async fn touch_many(&self, room_ids: &[RoomId], now: i64) -> Result<(), DbErr> {
        room::Entity::update_many()
            .col_expr(room::Column::LastActiveAt, Expr::value(now))
            .filter(room::Column::RoomId.is_in(room_ids.iter().map(RoomId::as_str)))
            .filter(room::Column::Status.eq(ACTIVE))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Up to `limit` active rooms last active before `before`, oldest first.
    pub async fn idle_rooms(&self, before: i64, limit: u64) -> Result<Vec<RoomId>, DbErr> {
        let ids: Vec<String> = room::Entity::find()
            .select_only()
            .column(room::Column::RoomId)
            .filter(room::Column::Status.eq(ACTIVE))
            .filter(room::Column::LastActiveAt.lt(before))
            .order_by_asc(room::Column::LastActiveAt)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(ids.into_iter().map(RoomId::issued).collect())
    }

    /// Deletes up to `limit` rooms closed before `before` with their members and bans, in one
    /// short write transaction; the rows deleted from each table.
    pub async fn prune_closed_rooms(&self, before: i64, limit: u64) -> Result<PrunedRooms, DbErr> {
        // Looked up before taking the write lock: closing is final and `closed_at` never
        // changes, so the rooms found stay due.
        let room_ids: Vec<String> = room::Entity::find()
            .select_only()
            .column(room::Column::RoomId)
            .filter(room::Column::Status.eq(CLOSED))
            .filter(room::Column::ClosedAt.lt(before))
            .order_by_asc(room::Column::ClosedAt)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        if room_ids.is_empty() {
            return Ok(PrunedRooms::default());
        }
        let tx = self.write().await?;
        let members = room_member::Entity::delete_many()
            .filter(room_member::Column::RoomId.is_in(room_ids.iter().map(String::as_str)))
            .exec(&tx.tx)
            .await?
            .rows_affected;
        let bans = room_ban::Entity::delete_many()
            .filter(room_ban::Column::RoomId.is_in(room_ids.iter().map(String::as_str)))
            .exec(&tx.tx)
            .await?
            .rows_affected;
        let rooms = room::Entity::delete_many()
            .filter(room::Column::RoomId.is_in(room_ids.iter().map(String::as_str)))
            .filter(room::Column::Status.eq(CLOSED))
            .exec(&tx.tx)
            .await?
            .rows_affected;
        tx.commit().await?;
        Ok(PrunedRooms { rooms, members, bans })
    }

    /// Deletes up to `limit` audit rows written before `before`, oldest first; how many.
    pub async fn prune_audit_logs(&self, before: i64, limit: u64) -> Result<u64, DbErr> {
        let oldest = Query::select()
            .column(audit_log::Column::Id)
            .from(audit_log::Entity)
            .and_where(audit_log::Column::CreatedAt.lt(before))
            .order_by(audit_log::Column::CreatedAt, sea_orm::Order::Asc)
            .order_by(audit_log::Column::Id, sea_orm::Order::Asc)
            .limit(limit)
            .to_owned();
        let result =
            audit_log::Entity::delete_many().filter(audit_log::Column::Id.in_subquery(oldest)).exec(&self.db).await?;
        Ok(result.rows_affected)
    }

    /// Active rooms.
    pub async fn count_active(&self) -> Result<u64, DbErr> {
        room::Entity::find().filter(room::Column::Status.eq(ACTIVE)).count(&self.db).await
    }

    /// Up to `limit` audit rows matching `filter`, oldest first, strictly after the
    /// `(created_at, id)` position `after`.
    pub async fn audit_page(
        &self,
        filter: AuditFilter,
        after: Option<(i64, i64)>,
        limit: u64,
    ) -> Result<Vec<AuditEntry>, DbErr> {
        let AuditFilter { room_id, user_id, start, end, action, newest_first } = filter;
        let mut query = audit_log::Entity::find().filter(audit_log::Column::CreatedAt.lt(end));
        if let Some(start) = start {
            query = query.filter(audit_log::Column::CreatedAt.gte(start));
        }
        if let Some(room_id) = room_id {
            query = query.filter(audit_log::Column::RoomId.eq(room_id));
        }
        if let Some(user_id) = user_id {
            query = query.filter(
                Condition::any()
                    .add(audit_log::Column::UserId.eq(&user_id))
                    .add(audit_log::Column::TargetUserId.eq(&user_id)),
            );
        }
        if let Some(action) = action {
            query = query.filter(audit_log::Column::Action.eq(action));
        }
        let order = if newest_first { Order::Desc } else { Order::Asc };
        if let Some((created_at, id)) = after {
            let (time_beyond, id_beyond) = if newest_first {
                (audit_log::Column::CreatedAt.lt(created_at), audit_log::Column::Id.lt(id))
            } else {
                (audit_log::Column::CreatedAt.gt(created_at), audit_log::Column::Id.gt(id))
            };
            query = query.filter(
                Condition::any()
                    .add(time_beyond)
                    .add(Condition::all().add(audit_log::Column::CreatedAt.eq(created_at)).add(id_beyond)),
            );
        }
        let rows = query
            .order_by(audit_log::Column::CreatedAt, order.clone())
            .order_by(audit_log::Column::Id, order)
            .limit(limit)
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let audit_log::Model { id, created_at, action, user_id, room_id, target_user_id, detail } = row;
                AuditEntry { audit_log_id: id, created_at, action, user_id, room_id, target_user_id, detail }
            })
            .collect())
    }
}

impl Tx {
    pub async fn commit(self) -> Result<(), DbErr> {
        self.tx.commit().await
    }

    /// The room, its row locked until commit (`FOR UPDATE` on PostgreSQL; SQLite's write lock
    /// is already held).
    pub async fn room(&self, room_id: &RoomId) -> Result<Option<StoredRoom>, DbErr> {
        let Some(model) = room::Entity::find_by_id(room_id.to_string()).lock_exclusive().one(&self.tx).await? else {
            return Ok(None);
        };
        with_member_count(&self.tx, model).await
    }

    pub async fn role(&self, room_id: &RoomId, user_id: &UserId) -> Result<Option<Role>, DbErr> {
        find_role(&self.tx, room_id, user_id).await
    }

    /// When `user_id` joined the room, if they are in it.
    pub async fn joined_at(&self, room_id: &RoomId, user_id: &UserId) -> Result<Option<i64>, DbErr> {
        Ok(room_member::Entity::find_by_id((room_id.to_string(), user_id.to_string()))
            .one(&self.tx)
            .await?
            .map(|member| member.joined_at))
    }

    pub async fn ban_until(&self, room_id: &RoomId, user_id: &UserId) -> Result<Option<i64>, DbErr> {
        find_ban(&self.tx, room_id, user_id).await
    }

    /// How many open rooms `owner_id` owns, and the least recent activity among them (the
    /// room the idle janitor will close first).
    pub async fn open_rooms_owned_by(&self, owner_id: &UserId) -> Result<(u64, Option<i64>), DbErr> {
        let row: Option<(i64, Option<i64>)> = room::Entity::find()
            .select_only()
            .column_as(room::Column::RoomId.count(), "open")
            .column_as(room::Column::LastActiveAt.min(), "least_active")
            .filter(room::Column::OwnerId.eq(owner_id))
            .filter(room::Column::Status.eq(ACTIVE))
            .into_tuple()
            .one(&self.tx)
            .await?;
        let (open, least_active) = row.unwrap_or((0, None));
        Ok((u64::try_from(open).unwrap_or(0), least_active))
    }

    /// Inserts the room and its owner.
    pub async fn insert_room(&self, new: NewRoom) -> Result<(), DbErr> {
        let NewRoom { room_id, name, description, visibility, control_mode, password_hash, owner_id, now } = new;
        room::ActiveModel {
            room_id: Set(room_id.to_string()),
            name: Set(name),
            description: Set(description),
            visibility: Set(visibility.as_str().to_owned()),
            control_mode: Set(control_mode.as_str().to_owned()),
            password_hash: Set(password_hash),
            status: Set(ACTIVE.to_owned()),
            creator_id: Set(owner_id.to_string()),
            owner_id: Set(owner_id.to_string()),
            created_at: Set(now),
            last_active_at: Set(now),
            closed_at: Set(None),
        }
        .insert(&self.tx)
        .await?;
        self.insert_member(&room_id, &owner_id, Role::Owner, now).await
    }

    pub async fn insert_member(&self, room_id: &RoomId, user_id: &UserId, role: Role, now: i64) -> Result<(), DbErr> {
        room_member::ActiveModel {
            room_id: Set(room_id.to_string()),
            user_id: Set(user_id.to_string()),
            role: Set(role.as_str().to_owned()),
            joined_at: Set(now),
        }
        .insert(&self.tx)
        .await?;
        Ok(())
    }

    /// Removes a member; whether they were one.
    pub async fn delete_member(&self, room_id: &RoomId, user_id: &UserId) -> Result<bool, DbErr> {
        let result = room_member::Entity::delete_many()
            .filter(room_member::Column::RoomId.eq(room_id))
            .filter(room_member::Column::UserId.eq(user_id))
            .exec(&self.tx)
            .await?;
        Ok(result.rows_affected > 0)
    }

    pub async fn member_count(&self, room_id: &RoomId) -> Result<u64, DbErr> {
        room_member::Entity::find().filter(room_member::Column::RoomId.eq(room_id)).count(&self.tx).await
    }

    pub async fn set_role(&self, room_id: &RoomId, user_id: &UserId, role: Role) -> Result<(), DbErr> {
        room_member::Entity::update_many()
            .col_expr(room_member::Column::Role, Expr::value(role.as_str()))
            .filter(room_member::Column::RoomId.eq(room_id))
            .filter(room_member::Column::UserId.eq(user_id))
            .exec(&self.tx)
            .await?;
        Ok(())
    }

    /// The member who inherits the room: the longest-standing moderator, else member.
    pub async fn successor(&self, room_id: &RoomId) -> Result<Option<UserId>, DbErr> {
        for role in [Role::Moderator, Role::Member] {
            let found: Option<String> = room_member::Entity::find()
                .select_only()
                .column(room_member::Column::UserId)
                .filter(room_member::Column::RoomId.eq(room_id))
                .filter(room_member::Column::Role.eq(role.as_str()))
                .order_by_asc(room_member::Column::JoinedAt)
                .order_by_asc(room_member::Column::UserId)
                .into_tuple()
                .one(&self.tx)
                .await?;
            if let Some(found) = found {
                return Ok(Some(UserId::issued(found)));
            }
        }
        Ok(None)
    }

    /// Makes `user_id` the owner, recorded both on the room and on the member row.
    pub async fn set_owner(&self, room_id: &RoomId, user_id: &UserId) -> Result<(), DbErr> {
        self.set_role(room_id, user_id, Role::Owner).await?;
        room::Entity::update_many()
            .col_expr(room::Column::OwnerId, Expr::value(user_id.as_str()))
            .filter(room::Column::RoomId.eq(room_id))
            .exec(&self.tx)
            .await?;
        Ok(())
    }

    pub async fn update_room(&self, room_id: &RoomId, changes: RoomChanges, now: i64) -> Result<(), DbErr> {
        let RoomChanges { name, description, visibility, control_mode, password_hash } = changes;
        let mut update = room::Entity::update_many()
            .col_expr(room::Column::LastActiveAt, Expr::value(now))
            .filter(room::Column::RoomId.eq(room_id));
        if let Some(name) = name {
            update = update.col_expr(room::Column::Name, Expr::value(name));
        }
        if let Some(description) = description {
            update = update.col_expr(room::Column::Description, Expr::value(description));
        }
        if let Some(visibility) = visibility {
            update = update.col_expr(room::Column::Visibility, Expr::value(visibility.as_str()));
        }
        if let Some(mode) = control_mode {
            update = update.col_expr(room::Column::ControlMode, Expr::value(mode.as_str()));
        }
        if let Some(password_hash) = password_hash {
            update = update.col_expr(room::Column::PasswordHash, Expr::value(password_hash));
        }
        update.exec(&self.tx).await?;
        Ok(())
    }

    /// Marks the room active at `now` (a join, a change).
    pub async fn touch(&self, room_id: &RoomId, now: i64) -> Result<(), DbErr> {
        room::Entity::update_many()
            .col_expr(room::Column::LastActiveAt, Expr::value(now))
            .filter(room::Column::RoomId.eq(room_id))
            .exec(&self.tx)
            .await?;
        Ok(())
    }

    /// Closes an active room; whether it was active.
    pub async fn close(&self, room_id: &RoomId, now: i64) -> Result<bool, DbErr> {
        let result = room::Entity::update_many()
            .col_expr(room::Column::Status, Expr::value(CLOSED))
            .col_expr(room::Column::ClosedAt, Expr::value(now))
            .filter(room::Column::RoomId.eq(room_id))
            .filter(room::Column::Status.eq(ACTIVE))
            .exec(&self.tx)
            .await?;
        Ok(result.rows_affected > 0)
    }

    /// Keeps `user_id` out of the room until `until` (replacing an earlier ban).
    pub async fn ban(&self, room_id: &RoomId, user_id: &UserId, until: i64) -> Result<(), DbErr> {
        room_ban::Entity::delete_many()
            .filter(room_ban::Column::RoomId.eq(room_id))
            .filter(room_ban::Column::UserId.eq(user_id))
            .exec(&self.tx)
            .await?;
        room_ban::ActiveModel {
            room_id: Set(room_id.to_string()),
            user_id: Set(user_id.to_string()),
            banned_until: Set(until),
        }
        .insert(&self.tx)
        .await?;
        Ok(())
    }

    pub async fn audit(&self, record: AuditRecord) -> Result<(), DbErr> {
        let AuditRecord { at, action, user_id, room_id, target_user_id, detail } = record;
        audit_log::ActiveModel {
            id: sea_orm::NotSet,
            created_at: Set(at),
            action: Set(action.to_owned()),
            user_id: Set(user_id.map(String::from)),
            room_id: Set(room_id.into_string()),
            target_user_id: Set(target_user_id.map(String::from)),
            detail: Set(detail.to_string()),
        }
        .insert(&self.tx)
        .await?;
        Ok(())
    }
}
