//! Every accepted change of a room's state gets its `sync_logs` row from the database itself: a
//! trigger on `room_states` writes it as part of the statement that writes the state. A change
//! is then one statement, atomic on its own, instead of a transaction of four round trips to
//! the database (begin, state, log, commit), which is what a sync command's latency and CPU
//! went to under load.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The log row a state row stands for, as each backend spells the trigger body.
const SQLITE_UP: &str = "
CREATE TRIGGER IF NOT EXISTS sync_logs_on_room_insert AFTER INSERT ON room_states
BEGIN
    INSERT INTO sync_logs (room_id, user_id, action, position_ms, version, created_at)
    VALUES (NEW.room_id, NEW.last_action_user_id, NEW.last_action, NEW.position_ms, NEW.version, NEW.updated_at);
END;
CREATE TRIGGER IF NOT EXISTS sync_logs_on_room_update AFTER UPDATE ON room_states
BEGIN
    INSERT INTO sync_logs (room_id, user_id, action, position_ms, version, created_at)
    VALUES (NEW.room_id, NEW.last_action_user_id, NEW.last_action, NEW.position_ms, NEW.version, NEW.updated_at);
END;
";

const SQLITE_DOWN: &str = "
DROP TRIGGER IF EXISTS sync_logs_on_room_insert;
DROP TRIGGER IF EXISTS sync_logs_on_room_update;
";

const POSTGRES_UP: &str = "
CREATE OR REPLACE FUNCTION sync_log_room_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sync_logs (room_id, user_id, action, position_ms, version, created_at)
    VALUES (NEW.room_id, NEW.last_action_user_id, NEW.last_action, NEW.position_ms, NEW.version, NEW.updated_at);
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS sync_logs_on_room_change ON room_states;
CREATE TRIGGER sync_logs_on_room_change AFTER INSERT OR UPDATE ON room_states
    FOR EACH ROW EXECUTE FUNCTION sync_log_room_change();
";

const POSTGRES_DOWN: &str = "
DROP TRIGGER IF EXISTS sync_logs_on_room_change ON room_states;
DROP FUNCTION IF EXISTS sync_log_room_change();
";

fn statements(backend: DatabaseBackend, up: bool) -> Result<&'static str, DbErr> {
    match (backend, up) {
        (DatabaseBackend::Sqlite, true) => Ok(SQLITE_UP),
        (DatabaseBackend::Sqlite, false) => Ok(SQLITE_DOWN),
        (DatabaseBackend::Postgres, true) => Ok(POSTGRES_UP),
        (DatabaseBackend::Postgres, false) => Ok(POSTGRES_DOWN),
        (other, _) => Err(DbErr::Migration(format!("sync-svc supports SQLite and PostgreSQL, not {other:?}"))),
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = statements(manager.get_database_backend(), true)?;
        manager.get_connection().execute_unprepared(sql).await.map(|_| ())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = statements(manager.get_database_backend(), false)?;
        manager.get_connection().execute_unprepared(sql).await.map(|_| ())
    }
}
