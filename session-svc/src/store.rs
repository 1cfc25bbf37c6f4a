//! The only code that touches session-svc's tables.

use std::collections::HashMap;

use sea_orm::sea_query::{Condition, Expr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use svc_kit::id::UserId;

use crate::entity::user_session::{self, Column, Entity as UserSessions};
use crate::sessions::Session;

/// Access to the `user_sessions` table.
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
}

/// A session row to insert.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub session: Session,
    pub token_hash: String,
    pub absolute_expires_at: i64,
}

/// A live session with the limit its sliding expiry may not pass.
#[derive(Debug, Clone)]
pub struct LiveSession {
    pub session: Session,
    pub absolute_expires_at: i64,
}

fn to_session(model: user_session::Model) -> LiveSession {
    let user_session::Model {
        session_id,
        token_hash: _,
        display_name,
        created_at,
        last_accessed,
        expires_at,
        absolute_expires_at,
    } = model;
    LiveSession {
        session: Session { user_id: UserId::issued(session_id), display_name, created_at, last_accessed, expires_at },
        absolute_expires_at,
    }
}

impl Store {
    /// Wraps a migrated connection.
    #[must_use]
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    pub async fn insert(&self, new: NewSession) -> Result<(), DbErr> {
        let NewSession { session, token_hash, absolute_expires_at } = new;
        let Session { user_id, display_name, created_at, last_accessed, expires_at } = session;
        user_session::ActiveModel {
            session_id: Set(user_id.into_string()),
            token_hash: Set(token_hash),
            display_name: Set(display_name),
            created_at: Set(created_at),
            last_accessed: Set(last_accessed),
            expires_at: Set(expires_at),
            absolute_expires_at: Set(absolute_expires_at),
        }
        .insert(&self.db)
        .await?;
        Ok(())
    }

    /// The unexpired session whose token hashes to `token_hash`.
    pub async fn find_live_by_token(&self, token_hash: &str, now: i64) -> Result<Option<LiveSession>, DbErr> {
        Ok(UserSessions::find()
            .filter(Column::TokenHash.eq(token_hash))
            .filter(Column::ExpiresAt.gt(now))
            .one(&self.db)
            .await?
            .map(to_session))
    }

    /// Records a use of the session.
    pub async fn touch(&self, user_id: &UserId, now: i64, expires_at: i64) -> Result<(), DbErr> {
        UserSessions::update_many()
            .col_expr(Column::LastAccessed, Expr::value(now))
            .col_expr(Column::ExpiresAt, Expr::value(expires_at))
            .filter(Column::SessionId.eq(user_id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    pub async fn rename(&self, user_id: &UserId, display_name: &str) -> Result<(), DbErr> {
        UserSessions::update_many()
            .col_expr(Column::DisplayName, Expr::value(display_name))
            .filter(Column::SessionId.eq(user_id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Gives the session a new token hash if `old_token_hash` is still its hash; whether it did
    /// (not when the session ended or was rotated meanwhile).
    pub async fn replace_token(
        &self,
        user_id: &UserId,
        old_token_hash: &str,
        new_token_hash: &str,
    ) -> Result<bool, DbErr> {
        let result = UserSessions::update_many()
            .col_expr(Column::TokenHash, Expr::value(new_token_hash))
            .filter(Column::SessionId.eq(user_id))
            .filter(Column::TokenHash.eq(old_token_hash))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// Deletes a session; whether there was one.
    pub async fn delete(&self, user_id: &UserId) -> Result<bool, DbErr> {
        let result = UserSessions::delete_many().filter(Column::SessionId.eq(user_id)).exec(&self.db).await?;
        Ok(result.rows_affected > 0)
    }

    /// Display names of the live sessions among `user_ids`.
    pub async fn display_names(&self, user_ids: &[String], now: i64) -> Result<HashMap<String, String>, DbErr> {
        if user_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows: Vec<(String, String)> = UserSessions::find()
            .select_only()
            .column(Column::SessionId)
            .column(Column::DisplayName)
            .filter(Column::SessionId.is_in(user_ids.iter().cloned()))
            .filter(Column::ExpiresAt.gt(now))
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().collect())
    }

    /// Up to `limit` live sessions, newest first, strictly after the `(created_at, user_id)`
    /// position `after`.
    pub async fn page(&self, now: i64, after: Option<(i64, String)>, limit: u64) -> Result<Vec<Session>, DbErr> {
        let mut query = UserSessions::find().filter(Column::ExpiresAt.gt(now));
        if let Some((created_at, user_id)) = after {
            query = query.filter(
                Condition::any()
                    .add(Column::CreatedAt.lt(created_at))
                    .add(Condition::all().add(Column::CreatedAt.eq(created_at)).add(Column::SessionId.lt(user_id))),
            );
        }
        let rows =
            query.order_by_desc(Column::CreatedAt).order_by_desc(Column::SessionId).limit(limit).all(&self.db).await?;
        Ok(rows.into_iter().map(|row| to_session(row).session).collect())
    }

    /// Deletes up to `batch` expired sessions; how many went.
    pub async fn delete_expired(&self, now: i64, batch: u64) -> Result<u64, DbErr> {
        let expired: Vec<String> = UserSessions::find()
            .select_only()
            .column(Column::SessionId)
            .filter(Column::ExpiresAt.lte(now))
            .limit(batch)
            .into_tuple()
            .all(&self.db)
            .await?;
        if expired.is_empty() {
            return Ok(0);
        }
        let result = UserSessions::delete_many()
            .filter(Column::SessionId.is_in(expired))
            .filter(Column::ExpiresAt.lte(now))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected)
    }

    /// Live sessions.
    pub async fn count_live(&self, now: i64) -> Result<u64, DbErr> {
        UserSessions::find().filter(Column::ExpiresAt.gt(now)).count(&self.db).await
    }
}
