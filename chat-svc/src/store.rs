//! The only code that touches chat-svc's tables.

use std::collections::{BTreeMap, HashMap};

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, SqliteTransactionMode, TransactionOptions, TransactionTrait,
};

use svc_kit::id::{RoomId, UserId};

use crate::entity::{closed_room, member_cursor, message, moderation_action, mute, room_sequence};
use crate::model::{Cursor, Message, MessageStatus, ModerationAction, ModerationKind, NewMessage, Outcome, Sent};

const STATUS_STORED: &str = "stored";
const STATUS_DELIVERED: &str = "delivered";

/// Access to chat-svc's tables.
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// Where the group commit writes ([`svc_kit::db::writer`]).
    writer: DatabaseConnection,
    /// Keeps SQLite's log checkpointed off the group commit's path.
    checkpoints: svc_kit::db::Checkpoints,
}

fn to_message(model: message::Model) -> Message {
    let message::Model {
        message_id: _,
        room_id,
        seq,
        sender_id,
        text,
        client_message_id,
        status,
        created_at,
        deleted_at,
        deleted_by,
    } = model;
    let status = match (deleted_at, status.as_str()) {
        (Some(_), _) => MessageStatus::Deleted,
        (None, STATUS_DELIVERED) => MessageStatus::Delivered,
        (None, _) => MessageStatus::Stored,
    };
    Message { room_id, seq, sender_id, text, client_message_id, status, created_at, deleted_at, deleted_by }
}

fn to_cursor(model: member_cursor::Model) -> Cursor {
    let member_cursor::Model { room_id: _, user_id, received_seq, read_seq, updated_at } = model;
    Cursor { user_id, received_seq, read_seq, updated_at }
}

fn to_action(model: moderation_action::Model) -> Option<ModerationAction> {
    let moderation_action::Model {
        moderation_action_id,
        room_id,
        actor_id,
        kind,
        target_user_id,
        seq,
        mute_until,
        created_at,
    } = model;
    Some(ModerationAction {
        moderation_action_id,
        created_at,
        kind: ModerationKind::parse(&kind)?,
        room_id,
        actor_id,
        target_user_id,
        seq,
        mute_until,
    })
}

async fn find_by_client_id<C: ConnectionTrait>(
    db: &C,
    room_id: &RoomId,
    sender_id: &UserId,
    client_message_id: &str,
) -> Result<Option<Message>, DbErr> {
    Ok(message::Entity::find()
        .filter(message::Column::RoomId.eq(room_id))
        .filter(message::Column::SenderId.eq(sender_id))
        .filter(message::Column::ClientMessageId.eq(client_message_id))
        .one(db)
        .await?
        .map(to_message))
}

/// Matches any one of `items`, each by its own condition.
fn any_of<T>(items: &[T], condition: impl Fn(&T) -> Condition) -> Condition {
    items.iter().fold(Condition::any(), |any, item| any.add(condition(item)))
}

/// What a batch does with one of its messages, decided before anything is written.
enum Plan {
    /// Answered without writing: its sender is muted, or it was stored before.
    Answered(Outcome),
    /// The same message as an earlier one of the batch (by index).
    CopyOf(usize),
    /// Gets the room's next number.
    New,
}

async fn record_action<C: ConnectionTrait>(db: &C, action: ModerationAction) -> Result<(), DbErr> {
    let ModerationAction {
        moderation_action_id: _,
        created_at,
        kind,
        room_id,
        actor_id,
        target_user_id,
        seq,
        mute_until,
    } = action;
    moderation_action::ActiveModel {
        room_id: Set(room_id),
        actor_id: Set(actor_id),
        kind: Set(kind.as_str().to_owned()),
        target_user_id: Set(target_user_id),
        seq: Set(seq),
        mute_until: Set(mute_until),
        created_at: Set(created_at),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}

impl Store {
    /// Wraps a migrated connection and the connection its writes go to ([`svc_kit::db::writer`]).
    #[must_use]
    pub fn new(db: DatabaseConnection, writer: DatabaseConnection) -> Self {
        Self { checkpoints: svc_kit::db::Checkpoints::new(db.clone()), db, writer }
    }

    /// Stores a batch of messages in one transaction (group commit), in a fixed number of
    /// statements however many messages and rooms the batch holds.
    ///
    /// Each room's sequence numbers come from `room_sequences` inside the transaction, so
    /// they are gap-free and no in-memory counter is trusted. A message whose (room, sender,
    /// client message id) is already stored — earlier, or earlier in this batch — is answered
    /// with the stored one; a sender muted past the message's time gets `Outcome::Muted` and
    /// nothing is stored for it. Answers come in the order of `messages`.
    pub async fn commit_batch(&self, messages: &[NewMessage]) -> Result<Vec<Outcome>, DbErr> {
        // On SQLite the transaction takes the write lock at `BEGIN`, so that it never has to
        // upgrade a read lock (which another writer in between would make fail).
        let txn = self
            .writer
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            })
            .await?;
        let mutes: HashMap<(String, String), i64> = mute::Entity::find()
            .filter(any_of(messages, |new| {
                Condition::all()
                    .add(mute::Column::RoomId.eq(new.room_id.as_str()))
                    .add(mute::Column::UserId.eq(new.sender_id.as_str()))
            }))
            .all(&txn)
            .await?
            .into_iter()
            .map(|row| ((row.room_id, row.user_id), row.muted_until))
            .collect();
        let mut stored: HashMap<(String, String, String), Message> = message::Entity::find()
            .filter(any_of(messages, |new| {
                Condition::all()
                    .add(message::Column::RoomId.eq(new.room_id.as_str()))
                    .add(message::Column::SenderId.eq(new.sender_id.as_str()))
                    .add(message::Column::ClientMessageId.eq(new.client_message_id.as_str()))
            }))
            .all(&txn)
            .await?
            .into_iter()
            .map(|row| ((row.room_id.clone(), row.sender_id.clone(), row.client_message_id.clone()), to_message(row)))
            .collect();

        // What becomes of each message; a retry repeated within the batch maps to its first copy.
        let mut plans: Vec<Plan> = Vec::with_capacity(messages.len());
        let mut first_by_key: HashMap<(&str, &str, &str), usize> = HashMap::new();
        let mut new_per_room: BTreeMap<&str, i64> = BTreeMap::new();
        for (index, new) in messages.iter().enumerate() {
            let sender = (new.room_id.to_string(), new.sender_id.to_string());
            if let Some(&until) = mutes.get(&sender)
                && until > new.created_at
            {
                plans.push(Plan::Answered(Outcome::Muted { until }));
                continue;
            }
            let key = (new.room_id.as_str(), new.sender_id.as_str(), new.client_message_id.as_str());
            if let Some(&first) = first_by_key.get(&key) {
                plans.push(Plan::CopyOf(first));
                continue;
            }
            first_by_key.insert(key, index);
            match stored.remove(&(sender.0, sender.1, new.client_message_id.clone())) {
                Some(message) => plans.push(Plan::Answered(Outcome::Sent(Sent { message, duplicate: true }))),
                None => {
                    *new_per_room.entry(new.room_id.as_str()).or_default() += 1;
                    plans.push(Plan::New);
                }
            }
        }

        // Reserve each room's numbers with one statement for all rooms, creating the counter
        // of a room's first message; the row lock (PostgreSQL) or the write lock (SQLite) keeps
        // any other writer out until commit.
        let mut next_seq: HashMap<String, i64> = HashMap::new();
        if !new_per_room.is_empty() {
            let reserved = room_sequence::Entity::insert_many(new_per_room.iter().map(|(room_id, count)| {
                room_sequence::ActiveModel { room_id: Set((*room_id).to_owned()), last_seq: Set(*count) }
            }))
            .on_conflict(
                OnConflict::column(room_sequence::Column::RoomId)
                    .value(
                        room_sequence::Column::LastSeq,
                        Expr::col((room_sequence::Entity, room_sequence::Column::LastSeq))
                            .add(Expr::cust("excluded.last_seq")),
                    )
                    .to_owned(),
            )
            .exec_with_returning(&txn)
            .await?;
            for row in reserved {
                let count = new_per_room
                    .get(row.room_id.as_str())
                    .ok_or_else(|| DbErr::Custom(format!("room_sequences answered for room {}", row.room_id)))?;
                let first = row.last_seq - count + 1;
                next_seq.insert(row.room_id, first);
            }
        }

        // Copies of an earlier message of the batch are answered after the commit, with it.
        let mut answers: Vec<Result<Outcome, usize>> = Vec::with_capacity(messages.len());
        let mut rows = Vec::new();
        for (new, plan) in messages.iter().zip(plans) {
            let answer = match plan {
                Plan::Answered(outcome) => Ok(outcome),
                Plan::CopyOf(first) => Err(first),
                Plan::New => {
                    let seq_slot = next_seq
                        .get_mut(new.room_id.as_str())
                        .ok_or_else(|| DbErr::Custom(format!("no sequence reserved for room {}", new.room_id)))?;
                    let seq = *seq_slot;
                    *seq_slot += 1;
                    let NewMessage { room_id, sender_id, text, client_message_id, created_at } = new.clone();
                    let (room_id, sender_id) = (room_id.into_string(), sender_id.into_string());
                    rows.push(message::ActiveModel {
                        room_id: Set(room_id.clone()),
                        seq: Set(seq),
                        sender_id: Set(sender_id.clone()),
                        text: Set(text.clone()),
                        client_message_id: Set(client_message_id.clone()),
                        status: Set(STATUS_STORED.to_owned()),
                        created_at: Set(created_at),
                        deleted_at: Set(None),
                        deleted_by: Set(None),
                        ..Default::default()
                    });
                    let message = Message {
                        room_id,
                        seq,
                        sender_id,
                        text,
                        client_message_id,
                        status: MessageStatus::Stored,
                        created_at,
                        deleted_at: None,
                        deleted_by: None,
                    };
                    Ok(Outcome::Sent(Sent { message, duplicate: false }))
                }
            };
            answers.push(answer);
        }
        if !rows.is_empty() {
            message::Entity::insert_many(rows).exec_without_returning(&txn).await?;
        }

        txn.commit().await?;
        self.checkpoints.committed();

        let mut resolved: Vec<Outcome> = Vec::with_capacity(answers.len());
        for answer in answers {
            let outcome = match answer {
                Ok(outcome) => outcome,
                Err(first) => match resolved.get(first) {
                    Some(Outcome::Sent(sent)) => Outcome::Sent(Sent { message: sent.message.clone(), duplicate: true }),
                    _ => return Err(DbErr::Custom("a copy without its first".to_owned())),
                },
            };
            resolved.push(outcome);
        }
        Ok(resolved)
    }

    /// The message a sender stored under `client_message_id`, if any.
    pub async fn find_by_client_id(
        &self,
        room_id: &RoomId,
        sender_id: &UserId,
        client_message_id: &str,
    ) -> Result<Option<Message>, DbErr> {
        find_by_client_id(&self.db, room_id, sender_id, client_message_id).await
    }

    /// The highest sequence number given out in the room (0 before the first message).
    pub async fn latest_seq(&self, room_id: &RoomId) -> Result<i64, DbErr> {
        let last: Option<i64> = room_sequence::Entity::find()
            .select_only()
            .column(room_sequence::Column::LastSeq)
            .filter(room_sequence::Column::RoomId.eq(room_id))
            .into_tuple()
            .one(&self.db)
            .await?;
        Ok(last.unwrap_or(0))
    }

    /// Up to `limit` messages after `after_seq`, oldest first.
    pub async fn messages_after(&self, room_id: &RoomId, after_seq: i64, limit: u64) -> Result<Vec<Message>, DbErr> {
        let rows = message::Entity::find()
            .filter(message::Column::RoomId.eq(room_id))
            .filter(message::Column::Seq.gt(after_seq))
            .order_by_asc(message::Column::Seq)
            .limit(limit)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(to_message).collect())
    }

    /// Up to `limit` messages before `before_seq` (all when `None`), newest first.
    pub async fn messages_before(
        &self,
        room_id: &RoomId,
        before_seq: Option<i64>,
        limit: u64,
    ) -> Result<Vec<Message>, DbErr> {
        let mut query = message::Entity::find().filter(message::Column::RoomId.eq(room_id));
        if let Some(before_seq) = before_seq {
            query = query.filter(message::Column::Seq.lt(before_seq));
        }
        let rows = query.order_by_desc(message::Column::Seq).limit(limit).all(&self.db).await?;
        Ok(rows.into_iter().map(to_message).collect())
    }

    /// Messages up to `up_to_seq` deleted at or after `since`, oldest deletion first.
    pub async fn deleted_since(&self, room_id: &RoomId, since: i64, up_to_seq: i64) -> Result<Vec<Message>, DbErr> {
        let rows = message::Entity::find()
            .filter(message::Column::RoomId.eq(room_id))
            .filter(message::Column::Seq.lte(up_to_seq))
            .filter(message::Column::DeletedAt.gte(since))
            .order_by_asc(message::Column::DeletedAt)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(to_message).collect())
    }

    /// Every member's cursor in the room.
    pub async fn cursors(&self, room_id: &RoomId) -> Result<Vec<Cursor>, DbErr> {
        let rows = member_cursor::Entity::find()
            .filter(member_cursor::Column::RoomId.eq(room_id))
            .order_by_asc(member_cursor::Column::UserId)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(to_cursor).collect())
    }

    /// Moves a member's cursors forward (never back): received becomes the largest of the
    /// stored value, `received_seq` and `read_seq`; read the largest of stored and `read_seq`.
    /// The member's client has then received every message up to it, so the messages of others
    /// among those newly received that were still only stored become delivered, in the same
    /// transaction; they are returned as (seq, sender) for their senders to hear of.
    pub async fn advance_cursor(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        received_seq: i64,
        read_seq: i64,
        now: i64,
    ) -> Result<(Cursor, Vec<(i64, String)>), DbErr> {
        let txn = self.db.begin().await?;
        member_cursor::Entity::insert(member_cursor::ActiveModel {
            room_id: Set(room_id.to_string()),
            user_id: Set(user_id.to_string()),
            received_seq: Set(0),
            read_seq: Set(0),
            updated_at: Set(now),
        })
        .on_conflict_do_nothing()
        .exec_without_returning(&txn)
        .await?;
        let stored = member_cursor::Entity::find_by_id((room_id.to_string(), user_id.to_string()))
            .one(&txn)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("member cursor".to_owned()))?;
        let read_seq = std::cmp::max(stored.read_seq, read_seq);
        let received_before = stored.received_seq;
        let received_seq = std::cmp::max(std::cmp::max(received_before, received_seq), read_seq);
        let mut active: member_cursor::ActiveModel = stored.into();
        active.received_seq = Set(received_seq);
        active.read_seq = Set(read_seq);
        active.updated_at = Set(now);
        let updated = active.update(&txn).await?;
        // Everything up to the old cursor was settled when it moved there. RETURNING names
        // exactly the rows this update changed, also when another member's cursor delivers the
        // same messages at the same moment on another instance.
        let delivered = if received_seq > received_before {
            message::Entity::update_many()
                .col_expr(message::Column::Status, Expr::value(STATUS_DELIVERED))
                .filter(message::Column::RoomId.eq(room_id))
                .filter(message::Column::Seq.gt(received_before))
                .filter(message::Column::Seq.lte(received_seq))
                .filter(message::Column::SenderId.ne(user_id))
                .filter(message::Column::Status.eq(STATUS_STORED))
                .exec_with_returning(&txn)
                .await?
                .into_iter()
                .map(|row| (row.seq, row.sender_id))
                .collect()
        } else {
            Vec::new()
        };
        txn.commit().await?;
        Ok((to_cursor(updated), delivered))
    }

    /// Deletes a message and records who did it, in one transaction. `None` when there is no
    /// such message; the flag says whether this call deleted it (false: it already was).
    pub async fn delete_message(
        &self,
        room_id: &RoomId,
        seq: i64,
        actor_id: &UserId,
        now: i64,
    ) -> Result<Option<(Message, bool)>, DbErr> {
        let txn = self.db.begin().await?;
        let result = message::Entity::update_many()
            .col_expr(message::Column::Text, Expr::value(""))
            .col_expr(message::Column::DeletedAt, Expr::value(now))
            .col_expr(message::Column::DeletedBy, Expr::value(actor_id))
            .filter(message::Column::RoomId.eq(room_id))
            .filter(message::Column::Seq.eq(seq))
            .filter(message::Column::DeletedAt.is_null())
            .exec(&txn)
            .await?;
        let Some(stored) = message::Entity::find()
            .filter(message::Column::RoomId.eq(room_id))
            .filter(message::Column::Seq.eq(seq))
            .one(&txn)
            .await?
            .map(to_message)
        else {
            return Ok(None);
        };
        let newly_deleted = result.rows_affected > 0;
        if newly_deleted {
            record_action(
                &txn,
                ModerationAction {
                    moderation_action_id: 0,
                    created_at: now,
                    kind: ModerationKind::DeleteMessage,
                    room_id: room_id.to_string(),
                    actor_id: actor_id.to_string(),
                    target_user_id: stored.sender_id.clone(),
                    seq: Some(seq),
                    mute_until: None,
                },
            )
            .await?;
        }
        txn.commit().await?;
        Ok(Some((stored, newly_deleted)))
    }

    /// Mutes a member until `until`, replacing any earlier mute, and records it.
    pub async fn mute(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        until: i64,
        actor_id: &UserId,
        now: i64,
    ) -> Result<(), DbErr> {
        let txn = self.db.begin().await?;
        mute::Entity::insert(mute::ActiveModel {
            room_id: Set(room_id.to_string()),
            user_id: Set(user_id.to_string()),
            muted_until: Set(until),
            muted_by: Set(actor_id.to_string()),
            created_at: Set(now),
        })
        .on_conflict(
            OnConflict::columns([mute::Column::RoomId, mute::Column::UserId])
                .update_columns([mute::Column::MutedUntil, mute::Column::MutedBy, mute::Column::CreatedAt])
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        record_action(
            &txn,
            ModerationAction {
                moderation_action_id: 0,
                created_at: now,
                kind: ModerationKind::MuteMember,
                room_id: room_id.to_string(),
                actor_id: actor_id.to_string(),
                target_user_id: user_id.to_string(),
                seq: None,
                mute_until: Some(until),
            },
        )
        .await?;
        txn.commit().await
    }

    /// Lifts a mute and records it; whether there was one in force.
    pub async fn unmute(&self, room_id: &RoomId, user_id: &UserId, actor_id: &UserId, now: i64) -> Result<bool, DbErr> {
        let txn = self.db.begin().await?;
        let result = mute::Entity::delete_many()
            .filter(mute::Column::RoomId.eq(room_id))
            .filter(mute::Column::UserId.eq(user_id))
            .exec(&txn)
            .await?;
        record_action(
            &txn,
            ModerationAction {
                moderation_action_id: 0,
                created_at: now,
                kind: ModerationKind::UnmuteMember,
                room_id: room_id.to_string(),
                actor_id: actor_id.to_string(),
                target_user_id: user_id.to_string(),
                seq: None,
                mute_until: None,
            },
        )
        .await?;
        txn.commit().await?;
        Ok(result.rows_affected > 0)
    }

    /// Until when the member is muted, if a mute was ever set and not lifted.
    pub async fn muted_until(&self, room_id: &RoomId, user_id: &UserId) -> Result<Option<i64>, DbErr> {
        mute::Entity::find()
            .select_only()
            .column(mute::Column::MutedUntil)
            .filter(mute::Column::RoomId.eq(room_id))
            .filter(mute::Column::UserId.eq(user_id))
            .into_tuple()
            .one(&self.db)
            .await
    }

    /// Up to `limit` moderation actions after id `after`, oldest first, optionally one room's.
    pub async fn moderation_actions(
        &self,
        room_id: Option<&RoomId>,
        after: i64,
        limit: u64,
    ) -> Result<Vec<ModerationAction>, DbErr> {
        let mut query =
            moderation_action::Entity::find().filter(moderation_action::Column::ModerationActionId.gt(after));
        if let Some(room_id) = room_id {
            query = query.filter(moderation_action::Column::RoomId.eq(room_id));
        }
        let rows = query.order_by_asc(moderation_action::Column::ModerationActionId).limit(limit).all(&self.db).await?;
        Ok(rows.into_iter().filter_map(to_action).collect())
    }
}

/// Retention: when rooms closed, and deleting the chat of those closed long enough ago.
impl Store {
    /// Records that `room_id` closed at `closed_at`; the first record wins.
    pub async fn record_closed_room(&self, room_id: &RoomId, closed_at: i64) -> Result<(), DbErr> {
        let row = closed_room::ActiveModel { room_id: Set(room_id.to_string()), closed_at: Set(closed_at) };
        closed_room::Entity::insert(row)
            .on_conflict(OnConflict::column(closed_room::Column::RoomId).do_nothing().to_owned())
            .exec_without_returning(&self.db)
            .await?;
        Ok(())
    }

    /// Deletes up to `limit` messages of rooms closed before `before`; how many.
    pub async fn prune_messages_of_closed_rooms(&self, before: i64, limit: u64) -> Result<u64, DbErr> {
        let due_rooms = Query::select()
            .column(closed_room::Column::RoomId)
            .from(closed_room::Entity)
            .and_where(closed_room::Column::ClosedAt.lt(before))
            .to_owned();
        let due_messages = Query::select()
            .column(message::Column::MessageId)
            .from(message::Entity)
            .and_where(message::Column::RoomId.in_subquery(due_rooms))
            .limit(limit)
            .to_owned();
        let result = message::Entity::delete_many()
            .filter(message::Column::MessageId.in_subquery(due_messages))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected)
    }

    /// Once their messages are gone, deletes the read cursors, mutes and sequence counters of
    /// up to `limit` rooms closed before `before`, and their closing records, in one
    /// transaction; the rows deleted per table.
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
        let txn = self.db.begin().await?;
        let messages =
            message::Entity::delete_many().filter(message::Column::RoomId.is_in(ids())).exec(&txn).await?.rows_affected;
        let cursors = member_cursor::Entity::delete_many()
            .filter(member_cursor::Column::RoomId.is_in(ids()))
            .exec(&txn)
            .await?
            .rows_affected;
        let mutes =
            mute::Entity::delete_many().filter(mute::Column::RoomId.is_in(ids())).exec(&txn).await?.rows_affected;
        room_sequence::Entity::delete_many().filter(room_sequence::Column::RoomId.is_in(ids())).exec(&txn).await?;
        let rooms = closed_room::Entity::delete_many()
            .filter(closed_room::Column::RoomId.is_in(ids()))
            .exec(&txn)
            .await?
            .rows_affected;
        txn.commit().await?;
        Ok(PrunedRooms { rooms, messages, cursors, mutes })
    }
}

/// What one batch of closed-room retention deleted, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrunedRooms {
    pub rooms: u64,
    /// Messages that arrived after the message batches (none in practice: the room is closed).
    pub messages: u64,
    pub cursors: u64,
    pub mutes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Migrator;

    async fn store(dir: &std::path::Path) -> Store {
        let url = svc_kit::testing::database_url(dir, "chat.db").await;
        let db = svc_kit::db::connect::<Migrator>(&url, &svc_kit::db::DbOptions::default()).await.unwrap();
        let writer = svc_kit::db::writer(&db).await.unwrap();
        Store::new(db, writer)
    }

    fn new(room: &str, sender: &str, client_message_id: &str, created_at: i64) -> NewMessage {
        NewMessage {
            room_id: RoomId::issued(room.to_owned()),
            sender_id: UserId::issued(sender.to_owned()),
            text: format!("{sender}: {client_message_id}"),
            client_message_id: client_message_id.to_owned(),
            created_at,
        }
    }

    fn seq(outcome: &Outcome) -> (i64, bool) {
        match outcome {
            Outcome::Sent(sent) => (sent.message.seq, sent.duplicate),
            Outcome::Muted { until } => panic!("muted until {until}"),
        }
    }

    /// One batch over several rooms with every kind of message in it: messages stored before,
    /// copies within the batch, muted senders (one mute still running, one over) and new ones.
    /// The new ones get each room's next numbers in batch order and nothing else is written.
    #[tokio::test]
    async fn a_batch_numbers_new_messages_per_room_and_answers_the_rest_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let (a, b) = ("room-a", "room-b");
        let first = store.commit_batch(&[new(a, "u1", "c1", 100)]).await.unwrap();
        assert_eq!(seq(&first[0]), (1, false));
        let moderator = UserId::issued("mod".to_owned());
        store
            .mute(&RoomId::issued(a.to_owned()), &UserId::issued("u3".to_owned()), 5_000, &moderator, 100)
            .await
            .unwrap();
        store
            .mute(&RoomId::issued(a.to_owned()), &UserId::issued("u5".to_owned()), 900, &moderator, 100)
            .await
            .unwrap();

        let batch = [
            new(a, "u1", "c1", 1_000), // stored before
            new(a, "u2", "x", 1_000),  // new: a/2
            new(b, "u1", "y", 1_000),  // new: b/1 (the room's first)
            new(a, "u3", "z", 1_000),  // muted until 5,000
            new(a, "u2", "x", 1_000),  // copy of the second
            new(a, "u5", "w", 1_000),  // muted until 900: over
            new(b, "u3", "v", 1_000),  // muted in room a only: b/2
        ];
        let outcomes = store.commit_batch(&batch).await.unwrap();
        assert_eq!(outcomes.len(), batch.len());
        assert_eq!(seq(&outcomes[0]), (1, true));
        assert_eq!(seq(&outcomes[1]), (2, false));
        assert_eq!(seq(&outcomes[2]), (1, false));
        assert_eq!(outcomes[3], Outcome::Muted { until: 5_000 });
        assert_eq!(seq(&outcomes[4]), (2, true));
        assert_eq!(seq(&outcomes[5]), (3, false));
        assert_eq!(seq(&outcomes[6]), (2, false));

        let stored = |room: &'static str| {
            let store = store.clone();
            async move {
                let messages = store.messages_after(&RoomId::issued(room.to_owned()), 0, 100).await.unwrap();
                messages.into_iter().map(|message| (message.seq, message.text)).collect::<Vec<_>>()
            }
        };
        assert_eq!(stored(a).await, [(1, "u1: c1".to_owned()), (2, "u2: x".to_owned()), (3, "u5: w".to_owned())]);
        assert_eq!(stored(b).await, [(1, "u1: y".to_owned()), (2, "u3: v".to_owned())]);
        assert_eq!(store.latest_seq(&RoomId::issued(a.to_owned())).await.unwrap(), 3);

        // The next batch goes on from there, and a batch of nothing but answers writes nothing.
        let next = store.commit_batch(&[new(b, "u2", "n", 2_000), new(a, "u3", "again", 2_000)]).await.unwrap();
        assert_eq!(seq(&next[0]), (3, false));
        assert_eq!(next[1], Outcome::Muted { until: 5_000 });
        let answers_only = store.commit_batch(&[new(a, "u1", "c1", 3_000), new(a, "u3", "z", 3_000)]).await.unwrap();
        assert_eq!(seq(&answers_only[0]), (1, true));
        assert_eq!(store.latest_seq(&RoomId::issued(a.to_owned())).await.unwrap(), 3);
        assert_eq!(store.latest_seq(&RoomId::issued(b.to_owned())).await.unwrap(), 3);
    }
}
