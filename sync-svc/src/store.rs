//! The only code that touches sync-svc's tables. The optimistic lock lives here: a change is
//! written by a conditional `UPDATE … WHERE room_id = ? AND version = ?` (or an insert that
//! loses to a concurrent one), so that any number of instances sharing the database agree on
//! which command won.

use std::sync::Arc;

use sea_orm::sea_query::{OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, Order, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, Set, Statement, TransactionTrait,
};

use crate::entity::{closed_room, queue_item, room_state, sync_log};
use crate::timeline::{Action, Media, QueueItem, RoomState, Timeline};
use svc_kit::id::RoomId;

/// What one batch of closed-room retention deleted, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrunedRooms {
    pub rooms: u64,
    pub room_states: u64,
    pub queue_items: u64,
}

/// Access to `room_states`, `queue_items`, `sync_logs` and `closed_rooms`.
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// Where the writes of several statements go ([`svc_kit::db::writer`]).
    writer: DatabaseConnection,
    /// Where a write of one statement goes, nearly every command's
    /// ([`svc_kit::db::HeldConnection`]); `writer` where there is none (PostgreSQL, or SQLite
    /// with `synchronous = FULL`).
    held: Option<svc_kit::db::HeldConnection>,
    /// SQLite takes one writer at a time; writers of this process queue here in order instead
    /// of in SQLite's busy handler, which sleeps and retries and so stretches commits under
    /// load. Other instances are still arbitrated by the conditional update alone.
    write_lock: Arc<tokio::sync::Mutex<()>>,
    /// Keeps SQLite's log checkpointed off the commit path, so that no command waits for a
    /// checkpoint behind `write_lock`.
    checkpoints: svc_kit::db::Checkpoints,
}

/// A `sync_logs` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncLog {
    pub sync_log_id: i64,
    pub room_id: String,
    pub user_id: String,
    pub action: String,
    pub position_ms: i64,
    pub version: i64,
    pub created_at: i64,
}

/// What [`Store::commit`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Commit {
    Accepted,
    /// Another change got there first: the stored version is no longer the expected one.
    Stale,
}

impl Commit {
    /// What a state write that changed `written` rows decided.
    fn of(written: u64) -> Self {
        if written == 1 { Self::Accepted } else { Self::Stale }
    }
}

fn to_state(row: room_state::Model, queue: Vec<queue_item::Model>) -> RoomState {
    let room_state::Model {
        room_id,
        version,
        media_id,
        media_url,
        media_title,
        media_duration_ms,
        media_library_item_id,
        paused,
        rate,
        position_ms,
        anchor_ms,
        lead_in_rate,
        wait_for_everyone,
        waiting_for,
        last_action,
        last_action_user_id,
        updated_at,
    } = row;
    let media = (!media_id.is_empty()).then_some(Media {
        media_id,
        url: media_url,
        title: media_title,
        duration_ms: media_duration_ms,
        library_item_id: media_library_item_id,
    });
    RoomState {
        // This install issued the ids of the rooms it stored.
        room_id: RoomId::issued(room_id),
        version,
        timeline: Timeline { media, paused, rate, position_ms, anchor_ms, lead_in_rate },
        queue: queue.into_iter().map(to_queue_item).collect(),
        wait_for_everyone,
        waiting_for: waiting_for.split(',').filter(|id| !id.is_empty()).map(str::to_owned).collect(),
        last_action: Action::from_name(&last_action),
        last_action_user_id,
        updated_at,
    }
}

fn to_queue_item(row: queue_item::Model) -> QueueItem {
    let queue_item::Model {
        item_id,
        room_id: _,
        ordinal: _,
        url,
        title,
        duration_ms,
        library_item_id,
        added_by_user_id,
        added_at,
    } = row;
    QueueItem {
        media: Media { media_id: item_id, url, title, duration_ms, library_item_id },
        added_by_user_id,
        added_at,
    }
}

fn to_row(state: &RoomState) -> room_state::ActiveModel {
    let RoomState {
        room_id,
        version,
        timeline,
        queue: _,
        wait_for_everyone,
        waiting_for,
        last_action,
        last_action_user_id,
        updated_at,
    } = state;
    let Timeline { media, paused, rate, position_ms, anchor_ms, lead_in_rate } = timeline;
    let (media_id, media_url, media_title, media_duration_ms, media_library_item_id) = match media {
        Some(Media { media_id, url, title, duration_ms, library_item_id }) => {
            (media_id.clone(), url.clone(), title.clone(), *duration_ms, library_item_id.clone())
        }
        None => (String::new(), String::new(), String::new(), 0, String::new()),
    };
    room_state::ActiveModel {
        room_id: Set(room_id.to_string()),
        version: Set(*version),
        media_id: Set(media_id),
        media_url: Set(media_url),
        media_title: Set(media_title),
        media_duration_ms: Set(media_duration_ms),
        media_library_item_id: Set(media_library_item_id),
        paused: Set(*paused),
        rate: Set(*rate),
        position_ms: Set(*position_ms),
        anchor_ms: Set(*anchor_ms),
        lead_in_rate: Set(*lead_in_rate),
        wait_for_everyone: Set(*wait_for_everyone),
        waiting_for: Set(waiting_for.join(",")),
        last_action: Set(last_action.as_str().to_owned()),
        last_action_user_id: Set(last_action_user_id.clone()),
        updated_at: Set(*updated_at),
    }
}

impl Store {
    /// Wraps a migrated connection and the connections its writes go to
    /// ([`svc_kit::db::writer`], [`svc_kit::db::HeldConnection`]).
    #[must_use]
    pub fn new(db: DatabaseConnection, writer: DatabaseConnection, held: Option<svc_kit::db::HeldConnection>) -> Self {
        Self { checkpoints: svc_kit::db::Checkpoints::new(db.clone()), db, writer, held, write_lock: Arc::default() }
    }

    /// The stored state of a room, `None` when it never changed.
    pub async fn load(&self, room_id: &RoomId) -> Result<Option<RoomState>, DbErr> {
        let Some(row) = room_state::Entity::find_by_id(room_id.to_string()).one(&self.db).await? else {
            return Ok(None);
        };
        let queue = queue_item::Entity::find()
            .filter(queue_item::Column::RoomId.eq(room_id))
            .order_by_asc(queue_item::Column::Ordinal)
            .all(&self.db)
            .await?;
        Ok(Some(to_state(row, queue)))
    }

    /// Writes `next` if the stored version is still `expected_version`; nothing is written when
    /// another change won. Its sync log row comes from the database's trigger on `room_states`
    /// (migration m0003), in the same statement: a change that leaves the queue alone is that
    /// one statement, and one that changes the queue is a transaction with the queue's rows.
    pub async fn commit(&self, expected_version: i64, next: &RoomState) -> Result<Commit, DbErr> {
        let _writer = self.write_lock.lock().await;
        let write = state_write(self.writer.get_database_backend(), expected_version, next);
        if !queue_changed(next.last_action) {
            let written = match &self.held {
                Some(held) => held.execute(write).await?,
                None => self.writer.execute_raw(write).await?.rows_affected(),
            };
            let commit = Commit::of(written);
            if commit == Commit::Accepted {
                self.checkpoints.committed();
            }
            return Ok(commit);
        }
        let txn = self.writer.begin().await?;
        let commit = Commit::of(txn.execute_raw(write).await?.rows_affected());
        if commit != Commit::Accepted {
            txn.rollback().await?;
            return Ok(commit);
        }
        write_queue(&txn, next).await?;
        txn.commit().await?;
        self.checkpoints.committed();
        Ok(Commit::Accepted)
    }

    /// Records that `room_id` closed at `closed_at`; the first record wins.
    pub async fn record_closed_room(&self, room_id: &RoomId, closed_at: i64) -> Result<(), DbErr> {
        let row = closed_room::ActiveModel { room_id: Set(room_id.to_string()), closed_at: Set(closed_at) };
        let _writer = self.write_lock.lock().await;
        closed_room::Entity::insert(row)
            .on_conflict(OnConflict::column(closed_room::Column::RoomId).do_nothing().to_owned())
            .exec_without_returning(&self.writer)
            .await?;
        Ok(())
    }

    /// Deletes the timeline and queue of up to `limit` rooms closed before `before`, and their
    /// closing records, in one transaction; the rows deleted per table. Log rows stay until
    /// their own period ends.
    pub async fn prune_closed_rooms(&self, before: i64, limit: u64) -> Result<PrunedRooms, DbErr> {
        let room_ids: Vec<String> = closed_room::Entity::find()
            .select_only()
            .column(closed_room::Column::RoomId)
            .filter(closed_room::Column::ClosedAt.lt(before))
            .order_by_asc(closed_room::Column::ClosedAt)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        if room_ids.is_empty() {
            return Ok(PrunedRooms::default());
        }
        let ids = || room_ids.iter().map(String::as_str);
        let _writer = self.write_lock.lock().await;
        let txn = self.writer.begin().await?;
        let queue_items = queue_item::Entity::delete_many()
            .filter(queue_item::Column::RoomId.is_in(ids()))
            .exec(&txn)
            .await?
            .rows_affected;
        let room_states = room_state::Entity::delete_many()
            .filter(room_state::Column::RoomId.is_in(ids()))
            .exec(&txn)
            .await?
            .rows_affected;
        let rooms = closed_room::Entity::delete_many()
            .filter(closed_room::Column::RoomId.is_in(ids()))
            .exec(&txn)
            .await?
            .rows_affected;
        txn.commit().await?;
        Ok(PrunedRooms { rooms, room_states, queue_items })
    }

    /// Deletes up to `limit` log rows written before `before`, oldest first; how many. Queues
    /// behind this process's other writers like any commit.
    pub async fn prune_sync_logs(&self, before: i64, limit: u64) -> Result<u64, DbErr> {
        let oldest = Query::select()
            .column(sync_log::Column::SyncLogId)
            .from(sync_log::Entity)
            .and_where(sync_log::Column::CreatedAt.lt(before))
            .order_by(sync_log::Column::SyncLogId, Order::Asc)
            .limit(limit)
            .to_owned();
        let _writer = self.write_lock.lock().await;
        let result = sync_log::Entity::delete_many()
            .filter(sync_log::Column::SyncLogId.in_subquery(oldest))
            .exec(&self.writer)
            .await?;
        Ok(result.rows_affected)
    }

    /// Up to `limit` log rows of `room_id` created in `[start_ms, end_ms)` with ids above
    /// `after_id`, oldest first.
    pub async fn sync_logs(
        &self,
        room_id: &RoomId,
        start_ms: i64,
        end_ms: i64,
        after_id: i64,
        limit: u64,
    ) -> Result<Vec<SyncLog>, DbErr> {
        let rows = sync_log::Entity::find()
            .filter(sync_log::Column::RoomId.eq(room_id))
            .filter(sync_log::Column::CreatedAt.gte(start_ms))
            .filter(sync_log::Column::CreatedAt.lt(end_ms))
            .filter(sync_log::Column::SyncLogId.gt(after_id))
            .order_by_asc(sync_log::Column::SyncLogId)
            .limit(limit)
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let sync_log::Model { sync_log_id, room_id, user_id, action, position_ms, version, created_at } = row;
                SyncLog { sync_log_id, room_id, user_id, action, position_ms, version, created_at }
            })
            .collect())
    }
}

/// Whether `action` may have changed the queue (then it is rewritten with the row).
fn queue_changed(action: Action) -> bool {
    matches!(
        action,
        Action::QueueAdd | Action::QueueRemove | Action::QueueMove | Action::PlayNext | Action::AutoAdvance
    )
}

/// The conditional write of a room's state (an insert for a room's first change); it wrote one
/// row when it won.
fn state_write(backend: DbBackend, expected_version: i64, next: &RoomState) -> Statement {
    if expected_version == 0 {
        room_state::Entity::insert(to_row(next))
            .on_conflict(OnConflict::column(room_state::Column::RoomId).do_nothing().to_owned())
            .build(backend)
    } else {
        state_update(expected_version, next).build(backend)
    }
}

/// The update of a room's row from `expected_version` to `next`. The key stays out of the SET
/// list: SQLite takes an assigned key column for a changed one, rewriting its index entry and
/// looking up the queue rows that refer to it on every command.
fn state_update(expected_version: i64, next: &RoomState) -> sea_orm::UpdateMany<room_state::Entity> {
    room_state::Entity::update_many()
        .set(room_state::ActiveModel { room_id: sea_orm::NotSet, ..to_row(next) })
        .filter(room_state::Column::RoomId.eq(next.room_id.as_str()))
        .filter(room_state::Column::Version.eq(expected_version))
}

async fn write_queue(txn: &impl ConnectionTrait, state: &RoomState) -> Result<(), DbErr> {
    queue_item::Entity::delete_many().filter(queue_item::Column::RoomId.eq(state.room_id.as_str())).exec(txn).await?;
    if state.queue.is_empty() {
        return Ok(());
    }
    let rows = state.queue.iter().enumerate().map(|(ordinal, item)| {
        let QueueItem { media, added_by_user_id, added_at } = item;
        queue_item::ActiveModel {
            item_id: Set(media.media_id.clone()),
            room_id: Set(state.room_id.to_string()),
            ordinal: Set(i32::try_from(ordinal).unwrap_or(i32::MAX)),
            url: Set(media.url.clone()),
            title: Set(media.title.clone()),
            duration_ms: Set(media.duration_ms),
            library_item_id: Set(media.library_item_id.clone()),
            added_by_user_id: Set(added_by_user_id.clone()),
            added_at: Set(*added_at),
        }
    });
    queue_item::Entity::insert_many(rows).exec_without_returning(txn).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::state_update;
    use crate::timeline::RoomState;
    use sea_orm::{DbBackend, QueryTrait};

    #[test]
    fn a_state_update_assigns_everything_but_the_key() {
        let room_id = svc_kit::id::RoomId::generate();
        let state = RoomState { version: 4, ..RoomState::initial(&room_id, 0) };
        let sql = state_update(3, &state).build(DbBackend::Sqlite).to_string();
        let (assignments, condition) = sql.split_once(" WHERE ").unwrap();
        assert!(assignments.contains(r#""version" = 4"#), "{sql}");
        assert!(!assignments.contains(r#""room_id""#), "{sql}");
        assert!(condition.contains(&format!(r#""room_id" = '{}'"#, room_id.as_str())), "{sql}");
        assert!(condition.contains(r#""version" = 3"#), "{sql}");
    }
}
